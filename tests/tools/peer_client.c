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
 *
 * More hostile scripts (bench/soak.sh uses them; each prints one summary
 * line, then the closing line as above, and exits 0):
 *   --forge-records K   after the handshake (and any --flood-addrs), K ADDR
 *       frames of one entry each whose node record is forged, the kinds in
 *       turn: a flipped signature byte, a node id that is not its key's, a
 *       record signed for another network, and a well-signed record of a
 *       fresh key claiming --victim HOST:PORT (default: the target) as its
 *       discovery endpoint; --forge-kind 0..3 sends only that kind;
 *       --gap-ms MS between frames (default 0). peerd closes (and bans)
 *       at the first record that fails verification, so kinds 0..2 get
 *       one record in per connection. Prints "sent N forged records".
 *   --slowloris MS      connect and trickle our handshake bytes one byte
 *       every MS ms (0: send nothing at all) until the peer closes or
 *       --wait-ms passes; prints "slowloris: sent N bytes in T ms".
 *   --connect-flood N   N TCP connections one after another, each closed as
 *       soon as it is connected, no byte sent; prints
 *       "connect flood: N connects, F failed".
 *   --handshake-flood N N connections one after another, each completing
 *       the handshake (fresh identity each) and closing with GOODBYE;
 *       prints "handshake flood: N ok, F failed".
 * Every frame comes from host/core/peer.c (pd_peer_*), none is made here.
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
#include "record.h"
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

static int open_socket(const struct sockaddr_storage *ss, const char *from) {
  int fd = socket(ss->ss_family, SOCK_STREAM, 0);
  if (fd < 0) return -2;
  if (from) {
    pd_netaddr_t src;
    struct sockaddr_storage sss;
    if (pd_netaddr_parse_ip(from, &src, NULL) != 0) {
      close(fd);
      return -2;
    }
    int len = pd_netaddr_to_sockaddr(&src, &sss, sizeof sss);
    if (len < 0 || bind(fd, (struct sockaddr *)&sss, (socklen_t)len) != 0) {
      perror("bind");
      close(fd);
      return -2;
    }
  }
  socklen_t tl = ss->ss_family == AF_INET ? sizeof(struct sockaddr_in) : sizeof(struct sockaddr_in6);
  if (connect(fd, (const struct sockaddr *)ss, tl) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static const uint8_t k_magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;

/* A fresh identity and a peer state machine that dials. */
static int new_peer(pd_peer_t **p, pd_identity_t *id, pd_rng_t *rng) {
  uint8_t seed[32], challenge[32];
  randombytes_buf(seed, sizeof seed);
  randombytes_buf(challenge, sizeof challenge);
  pd_identity_from_seed(id, seed);
  pd_peer_params_t prm = {.self = id, .magic = k_magic, .network = PD_WIRE_NETWORK_DEFAULT,
                          .agent = "peer_client", .dir = PD_PEER_OUTBOUND, .challenge = challenge};
  return pd_peer_new(p, &prm, rng, now_ms());
}

/* Run the handshake until done (1), closed (-1) or the deadline (0). */
static int handshake(pd_peer_t *p, int fd, uint8_t *buf, size_t cap, bool quiet) {
  int64_t deadline = now_ms() + 10000;
  while (now_ms() < deadline) {
    int d = quiet ? 0 : drain(p, fd);
    if (quiet) {
      pd_peer_action_t a;
      while (pd_peer_poll(p, &a)) {
        if (a.type == PD_PEER_A_SEND && write_all(fd, a.send.data, a.send.len) != 0) d = -1;
        if (a.type == PD_PEER_A_HANDSHAKE_DONE) d = 1;
        if (a.type == PD_PEER_A_CLOSE) d = -1;
        if (d < 0) break;
      }
    }
    if (d != 0) return d;
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    if (poll(&pfd, 1, 100) > 0) {
      ssize_t n = read(fd, buf, cap);
      if (n <= 0) {
        if (!quiet) printf("closed: eof\n");
        return -1;
      }
      pd_peer_on_bytes(p, buf, (size_t)n, now_ms());
    }
  }
  return 0;
}

/* --connect-flood and --handshake-flood. */
static int run_flood(const struct sockaddr_storage *ss, const char *from, long n, bool hs,
                     pd_rng_t *rng) {
  static uint8_t buf[65536];
  long ok = 0, failed = 0;
  for (long i = 0; i < n; i++) {
    int fd = open_socket(ss, from);
    if (fd == -2) return 2;
    if (fd < 0) {
      failed++;
      continue;
    }
    if (!hs) {
      ok++;
      close(fd);
      continue;
    }
    pd_identity_t id;
    pd_peer_t *p = NULL;
    if (new_peer(&p, &id, rng) != 0) return 2;
    if (handshake(p, fd, buf, sizeof buf, true) == 1) {
      ok++;
      pd_peer_close(p, PD_WIRE_BYE_NORMAL, "done");
      pd_peer_action_t a;
      while (pd_peer_poll(p, &a))
        if (a.type == PD_PEER_A_SEND) (void)write_all(fd, a.send.data, a.send.len);
    } else {
      failed++;
    }
    pd_peer_free(p);
    pd_identity_wipe(&id);
    close(fd);
  }
  if (hs) printf("handshake flood: %ld ok, %ld failed\n", ok, failed);
  else printf("connect flood: %ld connects, %ld failed\n", ok, failed);
  return 0;
}

/* --slowloris: our handshake bytes, one every gap_ms (none when 0). */
static int run_slowloris(int fd, pd_peer_t *p, long gap_ms, long wait_ms) {
  static uint8_t buf[65536];
  uint8_t *out = NULL;
  size_t olen = 0, ocap = 0, sent = 0;
  bool closed = false;
  int64_t t0 = now_ms(), deadline = t0 + wait_ms, next = t0;
  while (!closed && now_ms() < deadline) {
    pd_peer_action_t a;
    while (pd_peer_poll(p, &a)) {
      if (a.type == PD_PEER_A_SEND) {
        if (olen + a.send.len > ocap) {
          size_t nc = (olen + a.send.len) * 2;
          uint8_t *q = realloc(out, nc);
          if (!q) {
            free(out);
            return 2;
          }
          out = q;
          ocap = nc;
        }
        memcpy(out + olen, a.send.data, a.send.len);
        olen += a.send.len;
      } else if (a.type == PD_PEER_A_CLOSE) {
        /* its GOODBYE or our timeout: report what the peer did, below */
        if (a.close.remote)
          printf("closed by peer: GOODBYE %s %s\n", pd_wire_bye_name(a.close.remote_code),
                 a.close.remote_text ? a.close.remote_text : "");
        else
          printf("closed: %s\n", a.close.reason);
        closed = true;
      }
    }
    if (closed) break;
    if (gap_ms > 0 && sent < olen && now_ms() >= next) {
      if (write_all(fd, out + sent, 1) != 0) {
        printf("closed: eof\n");
        closed = true;
        break;
      }
      sent++;
      next = now_ms() + gap_ms;
    }
    struct pollfd pfd = {.fd = fd, .events = POLLIN};
    int wait = gap_ms > 0 && gap_ms < 50 ? (int)gap_ms : 50;
    if (poll(&pfd, 1, wait) > 0) {
      ssize_t n = read(fd, buf, sizeof buf);
      if (n <= 0) {
        printf("closed: eof\n");
        closed = true;
        break;
      }
      pd_peer_on_bytes(p, buf, (size_t)n, now_ms());
    }
  }
  printf("slowloris: sent %zu bytes in %lld ms\n", sent, (long long)(now_ms() - t0));
  if (!closed) printf("open\n");
  free(out);
  return 0;
}

/* --forge-records: one forged record per ADDR frame, the kinds in turn. */
static int send_forged(pd_peer_t *p, int fd, long k, long kind_only, long gap_ms,
                       const pd_netaddr_t *victim, bool *closed) {
  static uint8_t buf[65536];
  long sent = 0;
  for (long i = 0; i < k && !*closed; i++) {
    uint8_t seed[32], rec[PD_RECORD_MAX];
    randombytes_buf(seed, sizeof seed);
    pd_identity_t fid;
    pd_identity_from_seed(&fid, seed);
    int kind = kind_only >= 0 && kind_only < 4 ? (int)kind_only : (int)(i % 4);
    pd_record_t r;
    if (pd_record_init(&r, kind == 2 ? "not-this-network" : PD_WIRE_NETWORK_DEFAULT,
                       (uint64_t)now_ms(), NULL) != 0)
      return 2;
    pd_netaddr_t at;
    char ip[32];
    snprintf(ip, sizeof ip, "127.66.%ld.%ld", (i / 250) % 250, i % 250 + 1);
    pd_netaddr_parse_ip(ip, &at, NULL);
    at.port = 26656;
    if (kind == 3) at = *victim;
    r.has_discovery = true;
    r.discovery = at;
    size_t len = 0;
    if (pd_record_sign(&r, &fid, NULL, rec, sizeof rec, &len) != 0) return 2;
    pd_wire_addr_entry_t e;
    memset(&e, 0, sizeof e);
    e.addr = at;
    e.timestamp = now_ms() / 1000;
    e.has_id = true;
    memcpy(e.id, r.id, PD_NODE_ID_LEN);
    if (kind == 0) rec[len - 1] ^= 0x01;          /* signature no longer verifies */
    if (kind == 1) {                               /* node id not SHA-256(pubkey) */
      randombytes_buf(rec + 1 + 32, PD_NODE_ID_LEN);
      memcpy(e.id, rec + 1 + 32, PD_NODE_ID_LEN);
    }
    e.record = rec;
    e.record_len = (uint16_t)len;
    pd_identity_wipe(&fid);
    if (pd_peer_send_addrs(p, &e, 1, now_ms()) != 0) return 2;
    if (drain(p, fd) < 0) {
      *closed = true;
      break;
    }
    sent++;
    /* read between frames: answer PINGs, see a GOODBYE */
    int64_t until = now_ms() + gap_ms;
    do {
      struct pollfd pfd = {.fd = fd, .events = POLLIN};
      int64_t left = until - now_ms();
      if (poll(&pfd, 1, left > 0 ? (int)(left < 50 ? left : 50) : 0) > 0) {
        ssize_t n = read(fd, buf, sizeof buf);
        if (n <= 0) {
          printf("closed: eof\n");
          *closed = true;
          break;
        }
        pd_peer_on_bytes(p, buf, (size_t)n, now_ms());
        if (drain(p, fd) < 0) *closed = true;
      }
    } while (!*closed && now_ms() < until);
  }
  printf("sent %ld forged records\n", sent);
  return 0;
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: peer_client HOST:PORT [--from IP] [--flood-addrs K] [--wait-ms MS]\n"
                    "       [--forge-records K] [--forge-kind 0-3] [--gap-ms MS] [--victim HOST:PORT]\n"
                    "       [--slowloris MS] [--connect-flood N] [--handshake-flood N]\n");
    return 2;
  }
  const char *from = NULL, *victim_s = NULL;
  long flood = 0, wait_ms = 5000, forge = 0, gap_ms = 0, slow = -1, cflood = 0, hflood = 0;
  long kind = -1;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--from") == 0) from = argv[i + 1];
    else if (strcmp(argv[i], "--flood-addrs") == 0) flood = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--wait-ms") == 0) wait_ms = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--forge-records") == 0) forge = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--gap-ms") == 0) gap_ms = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--forge-kind") == 0) kind = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--victim") == 0) victim_s = argv[i + 1];
    else if (strcmp(argv[i], "--slowloris") == 0) slow = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--connect-flood") == 0) cflood = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--handshake-flood") == 0) hflood = atol(argv[i + 1]);
  }
  if (sodium_init() < 0) return 2;
  signal(SIGPIPE, SIG_IGN); /* a peer that bans us mid-flood closes the socket */
  setvbuf(stdout, NULL, _IOLBF, 0);
  pd_netaddr_t target, victim;
  struct sockaddr_storage ss;
  if (pd_netaddr_parse(argv[1], 0, &target, NULL, NULL, NULL) != 0 ||
      pd_netaddr_to_sockaddr(&target, &ss, sizeof ss) < 0)
    return 2;
  victim = target;
  if (victim_s && pd_netaddr_parse(victim_s, 0, &victim, NULL, NULL, NULL) != 0) return 2;
  pd_rng_t rng;
  pd_rng_seed(&rng, (uint64_t)now_ms());
  if (cflood > 0 || hflood > 0) return run_flood(&ss, from, cflood > 0 ? cflood : hflood, hflood > 0, &rng);
  int fd = open_socket(&ss, from);
  if (fd == -2) return 2;
  if (fd < 0) {
    perror("connect");
    return 1;
  }
  pd_identity_t id;
  pd_peer_t *p = NULL;
  if (new_peer(&p, &id, &rng) != 0) return 2;
  static uint8_t buf[65536];
  if (slow >= 0) {
    int rc = run_slowloris(fd, p, slow, wait_ms);
    pd_peer_free(p);
    pd_identity_wipe(&id);
    close(fd);
    return rc;
  }
  bool closed = false;
  int hs = handshake(p, fd, buf, sizeof buf, false);
  if (hs < 0) closed = true;
  if (hs != 1) {
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
      if (pd_peer_send_addrs(p, e, PD_WIRE_MAX_ADDRS, now_ms()) != 0) return 2;
      /* write it as the socket takes it (a CLOSE cannot come: nothing is read) */
      pd_peer_action_t a;
      bool broken = false;
      while (pd_peer_poll(p, &a))
        if (a.type == PD_PEER_A_SEND && write_all(fd, a.send.data, a.send.len) != 0) broken = true;
      pd_peer_trim(p);
      if (broken) break;
      sent += PD_WIRE_MAX_ADDRS;
    }
    printf("sent %ld addrs\n", sent);
    free(e);
  }
  if (forge > 0) {
    int rc = send_forged(p, fd, forge, kind, gap_ms, &victim, &closed);
    if (rc) return rc;
  }
  int64_t deadline = now_ms() + wait_ms;
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
