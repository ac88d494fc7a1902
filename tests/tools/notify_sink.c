/* notify_sink — stands in for systemd's notification socket in tests.
 *
 *   notify_sink SOCKET MAX SECONDS
 *
 * Binds an AF_UNIX datagram socket at SOCKET (a path, or "@name" in the
 * abstract namespace, as $NOTIFY_SOCKET names them), prints "listening" and
 * then one line per datagram received: "pid=<sender pid> <text>", the
 * text's newlines turned into spaces (the sender's pid comes from the
 * kernel, SCM_CREDENTIALS, as systemd checks it). Exits 0 after MAX
 * datagrams, 1 when SECONDS pass first or on an error. Used by
 * tests/integration/install_spec.lua to check that peerd speaks the
 * protocol (READY=1, RELOADING=1, STOPPING=1).
 */
#include <errno.h>
#include <poll.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <time.h>
#include <unistd.h>

static long long now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (long long)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

int main(int argc, char **argv) {
  if (argc != 4) {
    fprintf(stderr, "usage: notify_sink SOCKET MAX SECONDS\n");
    return 2;
  }
  const char *path = argv[1];
  int max = atoi(argv[2]);
  int secs = atoi(argv[3]);
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(path);
  if (n < 2 || n >= sizeof sa.sun_path || (path[0] != '/' && path[0] != '@') || max < 1 ||
      secs < 1) {
    fprintf(stderr, "notify_sink: bad arguments\n");
    return 2;
  }
  memcpy(sa.sun_path, path, n);
  if (path[0] == '@') sa.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) {
    perror("notify_sink: socket");
    return 1;
  }
  int one = 1;
  if (setsockopt(fd, SOL_SOCKET, SO_PASSCRED, &one, sizeof one) < 0 ||
      bind(fd, (struct sockaddr *)&sa, (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n)) <
          0) {
    perror("notify_sink: bind");
    close(fd);
    return 1;
  }
  printf("listening\n");
  fflush(stdout);
  long long deadline = now_ms() + (long long)secs * 1000;
  int got = 0, rc = 1;
  while (got < max) {
    long long left = deadline - now_ms();
    if (left <= 0) break;
    struct pollfd p = {.fd = fd, .events = POLLIN};
    int pr = poll(&p, 1, (int)left);
    if (pr < 0 && errno == EINTR) continue;
    if (pr <= 0) break;
    char buf[4096];
    union {
      struct cmsghdr h;
      char b[CMSG_SPACE(sizeof(struct ucred))];
    } ctl;
    struct iovec iov = {.iov_base = buf, .iov_len = sizeof buf - 1};
    struct msghdr msg = {.msg_iov = &iov, .msg_iovlen = 1, .msg_control = ctl.b,
                         .msg_controllen = sizeof ctl.b};
    ssize_t r = recvmsg(fd, &msg, 0);
    if (r < 0) {
      if (errno == EINTR) continue;
      perror("notify_sink: recvmsg");
      break;
    }
    buf[r] = '\0';
    for (ssize_t i = 0; i < r; i++) {
      if (buf[i] == '\n') buf[i] = ' ';
    }
    long pid = -1;
    for (struct cmsghdr *c = CMSG_FIRSTHDR(&msg); c; c = CMSG_NXTHDR(&msg, c)) {
      if (c->cmsg_level == SOL_SOCKET && c->cmsg_type == SCM_CREDENTIALS) {
        struct ucred cred;
        memcpy(&cred, CMSG_DATA(c), sizeof cred);
        pid = (long)cred.pid;
      }
    }
    printf("pid=%ld %s\n", pid, buf);
    fflush(stdout);
    got++;
  }
  if (got == max) rc = 0;
  close(fd);
  if (path[0] == '/') unlink(path);
  return rc;
}
