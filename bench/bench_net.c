/* bench_net — handshakes per second against a running peerd on loopback,
 * and the peerd's resident memory while it holds N authenticated peers.
 *
 *   bench_net HOST:PORT [--conns N] [--parallel P] [--pid PID] [--hold-ms MS]
 *
 * Opens N TCP connections (at most P connecting/handshaking at once), each
 * from its own loopback source address 127.20.x.y (so per-IP inbound limits
 * do not apply) and with its own ed25519 identity, and runs the real peer
 * state machine (host/core/peer.c) over each: the full signed handshake, then
 * PING/PONG and GETADDR as peerd asks. With protocol v3 each handshake is
 * KEYX both ways (ephemeral X25519, the seed from randombytes_buf as the
 * daemon draws it), sealed HELLOs and HELLO_ACKs (ChaCha20-Poly1305) and an
 * Ed25519 signature each way over the transcript.
 *
 * Prints handshakes/s: N divided by the time from the first connect to the
 * N-th HANDSHAKE_DONE on this side (TCP connects included; this program's
 * own half of each handshake runs on the same machine, so on 2 cores the two
 * processes share them). With --pid, the VmRSS of that process before the
 * first connect ("idle") and after holding all N for --hold-ms (default
 * 1000), and (held - idle) / N per connection; and the CPU time peerd's
 * main thread (its event loop) spent from the first connect to the timer
 * tick (100 ms) after the N-th handshake, per handshake: unlike the rate,
 * it hardly depends on what else runs on the machine. Then closes all and
 * exits. The last line is machine-readable for bench_net.sh:
 *   result conns=N secs=S hs_per_s=R rss_idle_kb=I rss_held_kb=H peerd_cpu_us_per_hs=C
 * The target must allow N inbound peers (e.g. peerd --max-inbound 1100).
 * Exit status 1 when fewer than N handshakes complete within 120 s.
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <sodium.h>
#include <uv.h>

#include "identity.h"
#include "netaddr.h"
#include "peer.h"
#include "wire.h"

typedef struct bench bench_t;

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  bench_t *b;
  pd_identity_t id;
  pd_peer_t *peer;
  int index;
  bool ready;
  bool dead;
} conn_t;

struct bench {
  uv_loop_t *loop;
  uv_timer_t timer;
  struct sockaddr_storage target;
  conn_t *conns;
  int n, parallel, started, connecting, ready, failed;
  long pid;
  long rss0;  /* target's VmRSS before we connected, kB */
  long rss1;  /* and after holding all N for hold_ms, kB */
  long long cpu0, cpu1; /* target's main-thread CPU ns before / once all N are up */
  uint64_t t0, t_all;
  uint64_t hold_ms;
  pd_rng_t rng;
  bool done;
  char buf[65536];
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static long rss_kb(long pid) {
  char path[64], line[256];
  snprintf(path, sizeof path, "/proc/%ld/status", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long kb = -1;
  while (fgets(line, sizeof line, f)) {
    if (strncmp(line, "VmRSS:", 6) == 0) kb = strtol(line + 6, NULL, 10);
  }
  fclose(f);
  return kb;
}

/* CPU time of the process's main thread in ns (/proc/PID/schedstat, first
 * field: time spent on a CPU), -1 when unreadable. peerd runs its event
 * loop, and so every handshake, on the main thread. */
static long long cpu_ns(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/schedstat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  long long ns = -1;
  if (fscanf(f, "%lld", &ns) != 1) ns = -1;
  fclose(f);
  return ns;
}

static void start_more(bench_t *b);

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void conn_dead(conn_t *c) {
  if (c->dead) return;
  c->dead = true;
  if (!c->ready) {
    c->b->failed++;
    c->b->connecting--;
  }
  if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
  start_more(c->b);
}

static void drain(conn_t *c) {
  pd_peer_action_t a;
  while (c->peer && pd_peer_poll(c->peer, &a)) {
    if (a.type == PD_PEER_A_SEND) {
      uv_write_t *w = malloc(sizeof *w);
      char *copy = malloc(a.send.len);
      if (!w || !copy) {
        free(w);
        free(copy);
        conn_dead(c);
        return;
      }
      memcpy(copy, a.send.data, a.send.len);
      w->data = copy;
      uv_buf_t buf = uv_buf_init(copy, (unsigned)a.send.len);
      if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(copy);
        free(w);
      }
    } else if (a.type == PD_PEER_A_HANDSHAKE_DONE && !c->ready) {
      c->ready = true;
      bench_t *b = c->b;
      b->ready++;
      b->connecting--;
      if (b->ready == b->n) b->t_all = uv_hrtime();
      start_more(b);
    } else if (a.type == PD_PEER_A_CLOSE) {
      fprintf(stderr, "conn %d closed: %s\n", c->index, a.close.reason);
      conn_dead(c);
      return;
    }
  }
}

static void alloc_cb(uv_handle_t *h, size_t s, uv_buf_t *buf) {
  (void)s;
  conn_t *c = h->data;
  buf->base = c->b->buf;
  buf->len = sizeof c->b->buf;
}

static void on_read(uv_stream_t *s, ssize_t n, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (n < 0) {
    conn_dead(c);
    return;
  }
  if (n > 0 && c->peer) {
    pd_peer_on_bytes(c->peer, (const uint8_t *)buf->base, (size_t)n, now_ms());
    drain(c);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (status < 0) {
    fprintf(stderr, "conn %d: connect: %s\n", c->index, uv_strerror(status));
    conn_dead(c);
    return;
  }
  static const uint8_t magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  uint8_t challenge[32], eph_seed[32];
  randombytes_buf(challenge, sizeof challenge);
  randombytes_buf(eph_seed, sizeof eph_seed);
  pd_peer_params_t prm = {
      .self = &c->id,
      .magic = magic,
      .network = PD_WIRE_NETWORK_DEFAULT,
      .agent = "bench_net",
      .dir = PD_PEER_OUTBOUND,
      .challenge = challenge,
      .eph_seed = eph_seed,
  };
  if (pd_peer_new(&c->peer, &prm, &c->b->rng, now_ms()) != 0) {
    conn_dead(c);
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  drain(c);
}

static void start_one(bench_t *b, int i) {
  conn_t *c = &b->conns[i];
  c->b = b;
  c->index = i;
  uint8_t seed[32];
  randombytes_buf(seed, sizeof seed);
  pd_identity_from_seed(&c->id, seed);
  uv_tcp_init(b->loop, &c->tcp);
  c->tcp.data = c;
  struct sockaddr_in src;
  char ip[32];
  snprintf(ip, sizeof ip, "127.20.%d.%d", i / 250, i % 250 + 1);
  uv_ip4_addr(ip, 0, &src);
  b->connecting++;
  int rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
  c->creq.data = c;
  if (rc == 0) rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&b->target, on_connect);
  if (rc != 0) {
    fprintf(stderr, "conn %d: %s\n", i, uv_strerror(rc));
    conn_dead(c);
  }
}

static void start_more(bench_t *b) {
  while (b->started < b->n && b->connecting < b->parallel) start_one(b, b->started++);
}

static void on_timer(uv_timer_t *t) {
  bench_t *b = t->data;
  int64_t now = now_ms();
  for (int i = 0; i < b->started; i++) {
    conn_t *c = &b->conns[i];
    if (c->peer && !c->dead) {
      pd_peer_on_tick(c->peer, now);
      drain(c);
    }
  }
  double elapsed = (double)(uv_hrtime() - b->t0) / 1e9;
  if (b->t_all && !b->done) {
    b->done = true;
    double secs = (double)(b->t_all - b->t0) / 1e9;
    printf("handshakes: %d in %.3f s = %.0f handshakes/s (parallel %d)\n", b->ready, secs,
           b->ready / secs, b->parallel);
    if (b->pid > 0) {
      b->cpu1 = cpu_ns(b->pid);
      if (b->cpu0 >= 0 && b->cpu1 >= 0)
        printf("peerd main thread CPU: %.3f s, %.1f us per handshake\n",
               (double)(b->cpu1 - b->cpu0) / 1e9, (double)(b->cpu1 - b->cpu0) / 1e3 / b->ready);
    }
    fflush(stdout);
  }
  bool held = b->done && elapsed * 1000 > (double)(b->t_all - b->t0) / 1e6 + (double)b->hold_ms;
  if (held && b->pid > 0 && !b->rss1) {
    b->rss1 = rss_kb(b->pid);
    printf("peerd pid %ld RSS: %ld kB idle, %ld kB holding %d peers for %llu ms = %.2f kB per "
           "connection\n",
           b->pid, b->rss0, b->rss1, b->ready, (unsigned long long)b->hold_ms,
           b->ready ? (double)(b->rss1 - b->rss0) / b->ready : 0.0);
  }
  if (held || elapsed > 120 ||
      (b->started == b->n && b->connecting == 0 && b->ready + b->failed == b->n &&
       b->failed > 0)) {
    for (int i = 0; i < b->started; i++) {
      conn_t *c = &b->conns[i];
      if (!uv_is_closing((uv_handle_t *)&c->tcp)) uv_close((uv_handle_t *)&c->tcp, on_closed);
    }
    uv_close((uv_handle_t *)&b->timer, NULL);
  }
}

int main(int argc, char **argv) {
  if (argc < 2) {
    fprintf(stderr, "usage: bench_net HOST:PORT [--conns N] [--parallel P] [--pid PID] [--hold-ms MS]\n");
    return 2;
  }
  if (sodium_init() < 0) return 1;
  bench_t *b = calloc(1, sizeof *b);
  if (!b) return 1;
  b->n = 1000;
  b->parallel = 64;
  b->hold_ms = 1000;
  for (int i = 2; i + 1 < argc; i += 2) {
    if (strcmp(argv[i], "--conns") == 0) b->n = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--parallel") == 0) b->parallel = atoi(argv[i + 1]);
    else if (strcmp(argv[i], "--pid") == 0) b->pid = atol(argv[i + 1]);
    else if (strcmp(argv[i], "--hold-ms") == 0) b->hold_ms = (uint64_t)atol(argv[i + 1]);
  }
  pd_netaddr_t target;
  const char *why = NULL;
  if (pd_netaddr_parse(argv[1], 0, &target, NULL, NULL, &why) != 0 ||
      pd_netaddr_to_sockaddr(&target, &b->target, sizeof b->target) < 0) {
    fprintf(stderr, "bad target %s: %s\n", argv[1], why ? why : "?");
    return 2;
  }
  if (b->n < 1 || b->n > 60000 || b->parallel < 1) return 2;
  b->conns = calloc((size_t)b->n, sizeof *b->conns);
  if (!b->conns) return 1;
  pd_rng_seed(&b->rng, 1);
  b->loop = uv_default_loop();
  uv_timer_init(b->loop, &b->timer);
  b->timer.data = b;
  uv_timer_start(&b->timer, on_timer, 100, 100);
  if (b->pid > 0) {
    b->rss0 = rss_kb(b->pid);
    b->cpu0 = cpu_ns(b->pid);
  }
  b->t0 = uv_hrtime();
  start_more(b);
  uv_run(b->loop, UV_RUN_DEFAULT);
  int ok = b->ready == b->n;
  if (!ok) printf("only %d of %d handshakes completed (%d failed)\n", b->ready, b->n, b->failed);
  if (ok) {
    double secs = (double)(b->t_all - b->t0) / 1e9;
    double cpu_us = b->pid > 0 && b->cpu0 >= 0 && b->cpu1 >= 0
                        ? (double)(b->cpu1 - b->cpu0) / 1e3 / b->n
                        : 0.0;
    printf("result conns=%d secs=%.4f hs_per_s=%.1f rss_idle_kb=%ld rss_held_kb=%ld "
           "peerd_cpu_us_per_hs=%.1f\n",
           b->n, secs, b->n / secs, b->rss0, b->rss1, cpu_us);
  }
  for (int i = 0; i < b->n; i++) {
    pd_peer_free(b->conns[i].peer);
    pd_identity_wipe(&b->conns[i].id);
  }
  uv_loop_close(b->loop);
  free(b->conns);
  free(b);
  return ok ? 0 : 1;
}
