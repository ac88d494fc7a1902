/* mitm — a man in the middle for protocol v3 tests (docs/protocol.md §6).
 *
 *   mitm --target HOST:PORT [--listen HOST:PORT] [--from IP] [--dir c2s|s2c]
 *        [--magic HEX] [--timeout-ms MS] [ATTACK]
 *   ATTACK: --flip N | --flip-header N | --flip-flags N | --replay N | --reorder N |
 *           --drop N | --truncate N | --inject-plain ping|addr
 *
 * Listens on --listen (default 127.0.0.1:0) and prints "listening HOST:PORT";
 * accepts ONE connection (the client: the side that dials), connects to
 * --target (from source IP --from when given: a peer that is banned for what
 * the MITM did is banned under that IP) and relays bytes both ways. It cuts
 * each direction's stream into frames with the frame codec (host/core/wire.h:
 * every frame has a 10-byte plain header whose length field says where the
 * next one starts, so no key is needed) and classifies each whole frame with
 * pd_wire_decode_frame. The handshake (KEYX, then the sealed HELLO and
 * HELLO_ACK) always passes untouched; then, in the direction --dir (c2s:
 * client to server, the default; s2c: back), it makes one attack on the Nth
 * SEALED frame after the handshake (N = 1: the first sealed frame after
 * HELLO_ACK):
 *   --flip N         flip one bit of a ciphertext byte (the middle one)
 *   --flip-header N  forward the frame with its length field one less (the
 *                    header is the AEAD's associated data; the receiver
 *                    reads one byte less, so the tag is not where it was)
 *   --flip-flags N   set a reserved flags bit in the header (the codec
 *                    rejects it before the cipher: "bad_flags")
 *   --replay N       forward frame N, then the same bytes again
 *   --reorder N      hold frame N back, forward N+1, then N
 *   --drop N         never forward frame N
 *   --truncate N     forward the header and half the payload of frame N,
 *                    then close both connections (FIN, not RST: the
 *                    receiver reads the partial frame, then the end)
 *   --inject-plain K right after the handshake, send a PLAIN frame of kind
 *                    K (ping: a PING; addr: an ADDR of one loopback address)
 * It prints one line per thing it did: "accepted ...", "upstream ...",
 * "relayed handshake c2s", "flipped byte X of frame N (c2s)", ..., and at the
 * end "done c2s=A s2c=B" (sealed frames seen each way). It relays until both
 * sides closed or --timeout-ms (default 10000) passed.
 * Exit status: 0 when the attack was made (or none was asked for), 3 when
 * the stream ended before frame N came, 1 when nothing connected or the
 * target refused, 2 on a usage error.
 * Blocking sockets and poll(), every wait bounded by the deadline: it is a
 * test tool, not part of peerd.
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

#include "netaddr.h"
#include "wire.h"

enum attack {
  A_NONE,
  A_FLIP,
  A_FLIP_HEADER,
  A_FLIP_FLAGS,
  A_REPLAY,
  A_REORDER,
  A_DROP,
  A_TRUNCATE,
  A_INJECT
};

#define HANDSHAKE_SEALED 2 /* HELLO and HELLO_ACK */
#define READ_CHUNK 65536
#define BUF_CAP (PD_WIRE_MAX_FRAME + READ_CHUNK)

typedef struct dir {
  const char *name; /* "c2s" / "s2c" */
  int from, to;
  uint8_t *buf; /* bytes read and not yet relayed: at most one frame and a chunk */
  size_t len;
  bool blind;   /* the framing was lost (a length over the limit): relay raw */
  bool eof;     /* `from` ended; `to` was shut down for writing */
  bool attacked; /* this is the --dir direction */
  unsigned sealed, plain;
  uint8_t *held; /* --reorder: frame N waiting for N+1 */
  size_t held_len;
} dir_t;

typedef struct mitm {
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  enum attack attack;
  long n;
  const char *inject_kind;
  bool done;      /* the attack was made */
  bool cut;       /* --truncate closed everything */
  pd_wire_msg_t *msg; /* scratch for pd_wire_decode_frame (56 KB) */
} mitm_t;

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
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

static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static void fmt_sock(int fd, bool peer, char *out, size_t cap) {
  struct sockaddr_storage ss;
  socklen_t sl = sizeof ss;
  pd_netaddr_t a;
  int rc = peer ? getpeername(fd, (struct sockaddr *)&ss, &sl)
                : getsockname(fd, (struct sockaddr *)&ss, &sl);
  if (rc != 0 || pd_netaddr_from_sockaddr(&ss, &a) != 0 || pd_netaddr_format(&a, out, cap) < 0)
    snprintf(out, cap, "?");
}

/* A plain frame of the --inject-plain kind. */
static size_t plain_frame(const mitm_t *m, uint8_t *buf, size_t cap) {
  size_t n = 0;
  if (strcmp(m->inject_kind, "addr") == 0) {
    pd_wire_addr_entry_t e;
    memset(&e, 0, sizeof e);
    pd_netaddr_parse("127.0.0.9:7411", 0, &e.addr, NULL, NULL, NULL);
    e.timestamp = 1700000000;
    if (pd_wire_encode_addr(m->magic, &e, 1, buf, cap, &n) != 0) return 0;
  } else if (pd_wire_encode_ping(m->magic, 0x6d69746dULL, buf, cap, &n) != 0) {
    return 0;
  }
  return n;
}

/* One whole frame f[0..n) read from d->from: forward it, or attack it. */
static int on_frame(mitm_t *m, dir_t *d, uint8_t *f, size_t n) {
  pd_wire_reason_t why = pd_wire_decode_frame(m->magic, f, n, m->msg);
  if (why != PD_WIRE_R_NONE) {
    printf("%s: a frame the codec refuses (%s, type %u, %zu bytes), relayed\n", d->name,
           pd_wire_reason_name(why), f[4], n);
    return write_all(d->to, f, n);
  }
  if (f[4] != PD_WIRE_SEALED) {
    d->plain++;
    return write_all(d->to, f, n);
  }
  d->sealed++;
  long k = (long)d->sealed - HANDSHAKE_SEALED; /* 1 = the first frame after the handshake */
  if (k == 0) printf("relayed handshake %s\n", d->name);
  if (d->held) { /* --reorder: N+1 first, then N */
    int rc = write_all(d->to, f, n);
    if (!rc) rc = write_all(d->to, d->held, d->held_len);
    printf("swapped frames %ld and %ld (%s)\n", m->n, m->n + 1, d->name);
    free(d->held);
    d->held = NULL;
    m->done = true;
    return rc;
  }
  if (!d->attacked || m->done || m->attack == A_NONE) return write_all(d->to, f, n);
  if (m->attack == A_INJECT) {
    int rc = write_all(d->to, f, n);
    if (rc || k != 0) return rc;
    uint8_t pf[256];
    size_t pn = plain_frame(m, pf, sizeof pf);
    if (pn == 0) return -1;
    rc = write_all(d->to, pf, pn);
    printf("injected a plain %s frame (%zu bytes) after the handshake (%s)\n", m->inject_kind, pn,
           d->name);
    m->done = true;
    return rc;
  }
  if (k != m->n) return write_all(d->to, f, n);
  size_t payload = n - PD_WIRE_HEADER_LEN;
  switch (m->attack) {
  case A_FLIP: {
    size_t x = PD_WIRE_HEADER_LEN + (payload - PD_WIRE_TAG_LEN) / 2; /* inside the ciphertext */
    f[x] ^= 0x01;
    printf("flipped byte %zu of frame %ld (%s, %zu bytes)\n", x, m->n, d->name, n);
    m->done = true;
    return write_all(d->to, f, n);
  }
  case A_FLIP_HEADER: {
    uint32_t len = be32(f + 6) - 1;
    f[6] = (uint8_t)(len >> 24);
    f[7] = (uint8_t)(len >> 16);
    f[8] = (uint8_t)(len >> 8);
    f[9] = (uint8_t)len;
    printf("changed the length of frame %ld from %zu to %u (%s)\n", m->n, payload, len, d->name);
    m->done = true;
    return write_all(d->to, f, n);
  }
  case A_FLIP_FLAGS:
    f[5] ^= 0x01;
    printf("flipped the flags byte of frame %ld (%s)\n", m->n, d->name);
    m->done = true;
    return write_all(d->to, f, n);
  case A_REPLAY: {
    int rc = write_all(d->to, f, n);
    if (!rc) rc = write_all(d->to, f, n);
    printf("replayed frame %ld (%s, %zu bytes)\n", m->n, d->name, n);
    m->done = true;
    return rc;
  }
  case A_REORDER:
    d->held = malloc(n);
    if (!d->held) return -1;
    memcpy(d->held, f, n);
    d->held_len = n;
    printf("holding frame %ld back (%s)\n", m->n, d->name);
    return 0;
  case A_DROP:
    printf("dropped frame %ld (%s, %zu bytes)\n", m->n, d->name, n);
    m->done = true;
    return 0;
  case A_TRUNCATE: {
    size_t part = PD_WIRE_HEADER_LEN + payload / 2;
    int rc = write_all(d->to, f, part);
    printf("forwarded %zu of %zu bytes of frame %ld, then closed (%s)\n", part, n, m->n, d->name);
    m->done = true;
    m->cut = true;
    return rc;
  }
  default: return write_all(d->to, f, n);
  }
}

/* Relay every whole frame in d->buf (or everything, once blind). */
static int pump(mitm_t *m, dir_t *d) {
  size_t off = 0;
  int rc = 0;
  while (!rc && !m->cut && d->len - off > 0) {
    const uint8_t *p = d->buf + off;
    size_t have = d->len - off;
    if (d->blind) {
      rc = write_all(d->to, p, have);
      off = d->len;
      break;
    }
    if (have < PD_WIRE_HEADER_LEN) break;
    uint32_t plen = be32(p + 6);
    if (plen > PD_WIRE_MAX_PAYLOAD) {
      printf("%s: a frame length over the limit (%u): relaying the rest raw\n", d->name, plen);
      d->blind = true;
      continue;
    }
    size_t n = PD_WIRE_HEADER_LEN + (size_t)plen;
    if (have < n) break;
    rc = on_frame(m, d, d->buf + off, n);
    off += n;
  }
  memmove(d->buf, d->buf + off, d->len - off);
  d->len -= off;
  return rc;
}

/* d->from ended: pass on what is left of a frame, then the end. */
static void end_dir(const mitm_t *m, dir_t *d) {
  if (d->len && !m->cut) (void)write_all(d->to, d->buf, d->len);
  d->len = 0;
  d->eof = true;
  shutdown(d->to, SHUT_WR);
  printf("%s: end of stream after %u sealed frames\n", d->name, d->sealed);
}

static int parse_attack(mitm_t *m, const char *flag, const char *val) {
  static const struct {
    const char *flag;
    enum attack a;
  } tab[] = {{"--flip", A_FLIP},       {"--flip-header", A_FLIP_HEADER},
             {"--flip-flags", A_FLIP_FLAGS}, {"--replay", A_REPLAY},
             {"--reorder", A_REORDER}, {"--drop", A_DROP},
             {"--truncate", A_TRUNCATE}};
  if (strcmp(flag, "--inject-plain") == 0) {
    if (strcmp(val, "ping") != 0 && strcmp(val, "addr") != 0) return -1;
    m->attack = A_INJECT;
    m->inject_kind = val;
    return 0;
  }
  for (size_t i = 0; i < sizeof tab / sizeof tab[0]; i++) {
    if (strcmp(flag, tab[i].flag) != 0) continue;
    char *end = NULL;
    long n = strtol(val, &end, 10);
    if (!end || *end || n < 1 || n > 1000000) return -1;
    m->attack = tab[i].a;
    m->n = n;
    return 0;
  }
  return -1;
}

static int usage(void) {
  fprintf(stderr,
          "usage: mitm --target HOST:PORT [--listen HOST:PORT] [--from IP] [--dir c2s|s2c]\n"
          "            [--magic HEX] [--timeout-ms MS]\n"
          "            [--flip N | --flip-header N | --flip-flags N | --replay N | --reorder N |\n"
          "             --drop N | --truncate N | --inject-plain ping|addr]\n");
  return 2;
}

/* "IP:PORT" or "[IPv6]:PORT", port 0 allowed (pd_netaddr_parse refuses it). */
static int parse_listen(const char *spec, pd_netaddr_t *a) {
  const char *colon = strrchr(spec, ':');
  char ip[64];
  if (!colon || (size_t)(colon - spec) >= sizeof ip) return -1;
  memcpy(ip, spec, (size_t)(colon - spec));
  ip[colon - spec] = '\0';
  char *end = NULL;
  long port = strtol(colon + 1, &end, 10);
  if (!end || *end || end == colon + 1 || port < 0 || port > 65535) return -1;
  if (pd_netaddr_parse_ip(ip, a, NULL) != 0) return -1;
  a->port = (uint16_t)port;
  return 0;
}

static int listen_on(const char *spec, char *shown, size_t cap) {
  pd_netaddr_t a;
  struct sockaddr_storage ss;
  if (parse_listen(spec, &a) != 0) return -1;
  int len = pd_netaddr_to_sockaddr(&a, &ss, sizeof ss);
  int fd = len < 0 ? -1 : socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  if (bind(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0 || listen(fd, 1) != 0) {
    close(fd);
    return -1;
  }
  fmt_sock(fd, false, shown, cap);
  return fd;
}

static int connect_to(const char *target, const char *from) {
  pd_netaddr_t t, s;
  struct sockaddr_storage ss, sss;
  if (pd_netaddr_parse(target, 0, &t, NULL, NULL, NULL) != 0) return -2;
  int len = pd_netaddr_to_sockaddr(&t, &ss, sizeof ss);
  int fd = len < 0 ? -1 : socket(ss.ss_family, SOCK_STREAM, 0);
  if (fd < 0) return -1;
  if (from) {
    int sl = pd_netaddr_parse_ip(from, &s, NULL) == 0 ? pd_netaddr_to_sockaddr(&s, &sss, sizeof sss)
                                                      : -1;
    if (sl < 0 || bind(fd, (struct sockaddr *)&sss, (socklen_t)sl) != 0) {
      close(fd);
      return -2;
    }
  }
  if (connect(fd, (struct sockaddr *)&ss, (socklen_t)len) != 0) {
    close(fd);
    return -1;
  }
  return fd;
}

int main(int argc, char **argv) {
  const char *listen_spec = "127.0.0.1:0", *target = NULL, *from = NULL, *dirname = "c2s";
  const char *magic_hex = NULL;
  long timeout_ms = 10000;
  mitm_t m;
  memset(&m, 0, sizeof m);
  for (int i = 1; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    const char *f = argv[i], *v = argv[i + 1];
    if (strcmp(f, "--target") == 0) target = v;
    else if (strcmp(f, "--listen") == 0) listen_spec = v;
    else if (strcmp(f, "--from") == 0) from = v;
    else if (strcmp(f, "--dir") == 0) dirname = v;
    else if (strcmp(f, "--magic") == 0) magic_hex = v;
    else if (strcmp(f, "--timeout-ms") == 0) timeout_ms = atol(v);
    else if (m.attack != A_NONE || parse_attack(&m, f, v) != 0) return usage();
  }
  if (!target || timeout_ms <= 0 || (strcmp(dirname, "c2s") != 0 && strcmp(dirname, "s2c") != 0))
    return usage();
  static const uint8_t def_magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  memcpy(m.magic, def_magic, sizeof def_magic);
  if (magic_hex && pd_wire_magic_parse(magic_hex, m.magic) != 0) return usage();
  signal(SIGPIPE, SIG_IGN);
  setvbuf(stdout, NULL, _IOLBF, 0);
  int64_t deadline = now_ms() + timeout_ms;

  char shown[PD_ADDR_STRLEN + 8];
  int lfd = listen_on(listen_spec, shown, sizeof shown);
  if (lfd < 0) {
    fprintf(stderr, "mitm: cannot listen on %s: %s\n", listen_spec, strerror(errno));
    return 2;
  }
  printf("listening %s\n", shown);
  struct pollfd lp = {.fd = lfd, .events = POLLIN};
  int left = (int)(deadline - now_ms());
  int cfd = left > 0 && poll(&lp, 1, left) > 0 ? accept(lfd, NULL, NULL) : -1;
  close(lfd); /* one connection only */
  if (cfd < 0) {
    printf("no connection\n");
    return 1;
  }
  fmt_sock(cfd, true, shown, sizeof shown);
  printf("accepted %s\n", shown);
  int sfd = connect_to(target, from);
  if (sfd < 0) {
    printf("upstream %s: %s\n", target, sfd == -2 ? "bad --target or --from" : strerror(errno));
    close(cfd);
    return sfd == -2 ? 2 : 1;
  }
  fmt_sock(sfd, false, shown, sizeof shown);
  printf("upstream %s -> %s\n", shown, target);

  dir_t dirs[2] = {{.name = "c2s", .from = cfd, .to = sfd}, {.name = "s2c", .from = sfd, .to = cfd}};
  dirs[strcmp(dirname, "s2c") == 0].attacked = true;
  m.msg = malloc(sizeof *m.msg);
  dirs[0].buf = malloc(BUF_CAP);
  dirs[1].buf = malloc(BUF_CAP);
  if (!m.msg || !dirs[0].buf || !dirs[1].buf) return 2;

  bool timed_out = false;
  bool shut = false;
  while (!(dirs[0].eof && dirs[1].eof)) {
    if (m.cut && !shut) { /* --truncate: both ends get FIN now; what they still send is dropped */
      shut = true;
      shutdown(cfd, SHUT_WR);
      shutdown(sfd, SHUT_WR);
    }
    left = (int)(deadline - now_ms());
    if (left <= 0) {
      timed_out = true;
      break;
    }
    struct pollfd p[2];
    nfds_t np = 0;
    dir_t *which[2];
    for (int i = 0; i < 2; i++) {
      if (dirs[i].eof) continue;
      p[np] = (struct pollfd){.fd = dirs[i].from, .events = POLLIN};
      which[np++] = &dirs[i];
    }
    int r = poll(p, np, left);
    if (r < 0 && errno != EINTR) break;
    for (nfds_t i = 0; r > 0 && i < np; i++) {
      if (!(p[i].revents & (POLLIN | POLLHUP | POLLERR))) continue;
      dir_t *d = which[i];
      size_t room = BUF_CAP - d->len;
      if (room > READ_CHUNK) room = READ_CHUNK;
      ssize_t got = read(d->from, d->buf + d->len, room);
      if (got < 0 && errno == EINTR) continue;
      if (got <= 0) {
        end_dir(&m, d);
        continue;
      }
      if (m.cut) continue; /* after --truncate: read and drop until both ends close */
      d->len += (size_t)got;
      if (pump(&m, d) != 0) end_dir(&m, d); /* the receiver is gone */
    }
  }
  int status = 0;
  if (timed_out) printf("timeout after %ld ms\n", timeout_ms);
  for (int i = 0; i < 2; i++) {
    if (dirs[i].held) {
      printf("frame %ld+1 never came: frame %ld held back (%s)\n", m.n, m.n, dirs[i].name);
      free(dirs[i].held);
    }
  }
  if (m.attack != A_NONE && !m.done) {
    printf("the attack was not made: the stream had too few frames\n");
    status = 3;
  }
  printf("done c2s=%u s2c=%u\n", dirs[0].sealed, dirs[1].sealed);
  close(cfd);
  close(sfd);
  free(dirs[0].buf);
  free(dirs[1].buf);
  free(m.msg);
  return status;
}
