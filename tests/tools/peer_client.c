/* peer_client — a scripted peer for the hostile-client integration specs.
 *
 *   peer_client HOST:PORT [--from IP] [--flood-addrs K] [--wait-ms MS]
 *
 * Connects (from source IP --from when given), completes the real signed
 * handshake with a fresh identity through host/core/peer.c, then, with
 * --flood-addrs K, sends K ADDR frames of 1,000 routable addresses each as
 * fast as the socket takes them. It then reads until the other side closes
 * or --wait-ms (default 5000) passes, answering PINGs as a peer would, and
 * prints one line per event: "handshake ok", "sent N addrs", and
 * "closed by peer: GOODBYE <code-name> <text>" or "closed: eof" or "open".
 * Exit status: 0 when it ran its script, 1 when the handshake failed.
 * Blocking sockets and poll(): it is a test tool, not part of peerd.
 */
#include <errno.h>
#include <netinet/in.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "identity.h"
#include "netaddr.h"
#include "peer.h"
#include "wire.h"

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static int write_all(int fd, const uint8_t *p, size_t n) {
  while (n > 0) {
    ssize_t w = write(fd, p, n);
    if (w < 0 && errno == EINTR) continue;
    if (w <= 0) return -1;
    p += w;
    n -= (size_t)w;
  }
  return 0;
}

/* Drain the peer's actions; returns 1 on HANDSHAKE_DONE, -1 on CLOSE. */
static int drain(pd_peer_t *p, int fd) {
  int r = 0;
  pd_peer_action_t a;
  while (pd_peer_poll(p, &a)) {
    if (a.type == PD_PEER_A_SEND) {
      if (write_all(fd, a.send.data, a.send.len) != 0) r = -1;
    } else if (a.type == PD_PEER_A_HANDSHAKE_DONE) {
      r = 1;
    } else if (a.type == PD_PEER_A_CLOSE) {
      if (a.close.remote) {
        printf("closed by peer: GOODBYE %s %s\n", pd_wire_bye_name(a.close.remote_code),
               a.close.remote_text ? a.close.remote_text : "");
      } else {
        printf("closed: %s\n", a.close.reason);
      }
      return -1;
    }
  }
  return r;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: peer_client HOST:PORT [--from IP] [--flood-addrs K] [--wait-ms MS]\n");
    return 2;
  }
  const char *from = NULL;
  long flood = 0, wait_ms = 5000;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--from") == 0) from = argv[i + 1];
    else if (strcmp(argv[i], "--flood-addrs") == 0) flood = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--wait-ms") == 0) wait_ms = atol(argv[i + 1]);
  }
  if (sodium_init() < 0) return 2;
  signal(SIGPIPE, SIG_IGN); /* a peer that bans us mid-flood closes the socket */
  setvbuf(stdout, NULL, _IOLBF, 0);
  pd_netaddr_t target, src;
  struct sockaddr_storage ss, sss;
  if (pd_netaddr_parse(argv[1], 0, &target, NULL, NULL, NULL) != 0 ||
      pd_netaddr_to_sockaddr(&target, &ss, sizeof ss) < 0)
    return 2;
  int fd = socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return 2;
  if (from) {
    if (pd_netaddr_parse_ip(from, &src, NULL) != 0) return 2;
    int len = pd_netaddr_to_sockaddr(&src, &sss, sizeof sss);
    if (len < 0 || bind(fd, (struct sockaddr *)&sss, (socklen_t)len) != 0) {
      perror("bind");
      return 2;
    }
  }
  socklen_t tl = ss.ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (connect(fd, (struct sockaddr *)&ss, tl) != 0) {
    perror("connect");
    return 1;
  }
  uint8_t seed[32], challenge[32];
  randombytes_buf(seed, sizeof seed);
  randombytes_buf(challenge, sizeof challenge);
  pd_identity_t id;
  pd_identity_from_seed(&id, seed);
  static const uint8_t magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  pd_rng_t rng;
  pd_rng_seed(&rng, (uint64_t)now_ms());
  pd_peer_params_t prm = {.self = &id, .magic = magic, .network = PD_WIRE_NETWORK_DEFAULT,
                          .agent = "peer_client", .dir = PD_PEER_OUTBOUND, .challenge = challenge};
  pd_peer_t *p = NULL;
  if (pd_peer_new(&p, &prm, &rng, now_ms()) != 0) return 2;
  static uint8_t buf[65536];
  bool ready = false, closed = false;
  int64_t deadline = now_ms() + 10000; /* handshake */
  while (!closed && !ready && now_ms() < deadline) {
    int d = drain(p, fd);
    if (d < 0) closed = true;
    if (d > 0) ready = true;
    if (closed || ready) break;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 100) > 0) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        printf("closed: eof\n");
        closed = true;
        break;
      }
      pd_peer_on_bytes(p, buf, (size_t)n, now_ms());
    }
  }
  if (!ready) {
    printf("handshake failed\n");
    return 1;
  }
  printf("handshake ok\n");
  if (flood > 0) {
    pd_wire_addr_entry_t *e = calloc(PD_WIRE_MAX_ADDRS, sizeof *e);
    if (!e) return 2;
    long sent = 0;
    for (long k = 0; k < flood; k++) {
      for (size_t i = 0; i < PD_WIRE_MAX_ADDRS; i++) {
        char ip[32];
        snprintf(ip, sizeof ip, "%ld.%zu.%zu.7", 11 + k % 200, i / 250, i % 250 + 1);
        pd_netaddr_parse_ip(ip, &e[i].addr, NULL);
        e[i].addr.port = 26656;
        e[i].timestamp = now_ms() / 1000;
      }
      /* sealed in this session, as the state machine sends every frame */
      if (pd_peer_send_addrs(p, e, PD_WIRE_MAX_ADDRS, now_ms()) != 0) return 2;
      if (drain(p, fd) < 0) break;
      sent += PD_WIRE_MAX_ADDRS;
    }
    printf("sent %ld addrs\n", sent);
    free(e);
  }
  deadline = now_ms() + wait_ms;
  while (!closed && now_ms() < deadline) {
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 50) > 0) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        printf("closed: eof\n");
        closed = true;
        break;
      }
      pd_peer_on_bytes(p, buf, (size_t)n, now_ms());
    }
    pd_peer_on_tick(p, now_ms());
    if (drain(p, fd) < 0) closed = true;
  }
  if (!closed) printf("open\n");
  pd_peer_free(p);
  pd_identity_wipe(&id);
  close(fd);
  return 0;
}
