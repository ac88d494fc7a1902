/* notify — systemd's service notification protocol, without libsystemd.
 *
 * Owns: pd_daemon_notify (daemon.h): one datagram with the state text to
 * the AF_UNIX socket named by $NOTIFY_SOCKET (a file path, or "@name" for a
 * name in the abstract namespace), as sd_notify(3) sends it; dmn_notify and
 * dmn_notify_reloading, which the daemon calls when it is ready (READY=1),
 * when a SIGHUP reload starts (RELOADING=1 with MONOTONIC_USEC) and ends
 * (READY=1 again), and when it begins to stop (STOPPING=1). Without
 * $NOTIFY_SOCKET (not started by systemd with Type=notify) nothing happens.
 * Does not own: when those moments are (daemon.c), the unit file
 * (packaging/peerd.service).
 */
#include <errno.h>
#include <stddef.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon_int.h"
#include "err.h"

int pd_daemon_notify(const char *socket_path, const char *state) {
  if (!socket_path || !*socket_path) return 0;
  if (socket_path[0] != '/' && socket_path[0] != '@') return PD_EINVAL;
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(socket_path);
  if (n >= sizeof sa.sun_path || (socket_path[0] == '@' && n < 2)) return PD_EINVAL;
  memcpy(sa.sun_path, socket_path, n);
  if (sa.sun_path[0] == '@') sa.sun_path[0] = '\0'; /* abstract: the length says where it ends */
  socklen_t salen = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -errno;
  ssize_t w = sendto(fd, state, strlen(state), MSG_NOSIGNAL | MSG_DONTWAIT,
                     (const struct sockaddr *)&sa, salen);
  int e = errno;
  close(fd);
  if (w < 0) return -e;
  return 1;
}

void dmn_notify(pd_daemon_t *d, const char *state) {
  const char *sock = getenv(PD_DAEMON_NOTIFY_ENV);
  int rc = pd_daemon_notify(sock, state);
  if (rc < 0) {
    char first[32];
    snprintf(first, sizeof first, "%.*s", (int)strcspn(state, "\n"), state);
    LOG(d, PD_LOG_WARN, "cannot notify systemd", "socket", sock, "state", first, "error",
        rc == PD_EINVAL ? "NOTIFY_SOCKET is not a path or @abstract name" : strerror(-rc));
  } else if (rc > 0) {
    LOG(d, PD_LOG_DEBUG, "notified systemd", "state", state);
  }
}

void dmn_notify_reloading(pd_daemon_t *d) {
  char msg[64];
  snprintf(msg, sizeof msg, "RELOADING=1\nMONOTONIC_USEC=%llu",
           (unsigned long long)(uv_hrtime() / 1000));
  dmn_notify(d, msg);
}
