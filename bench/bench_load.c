/* bench_load — many concurrent authenticated overlay connections against one
 * running peerd on loopback: handshakes/s while filling, handshake latency
 * under load, and the daemon's RSS, CPU and file descriptors while it holds
 * them with keep-alive running.
 *
 *   bench_load HOST:PORT [--conns N] [--per-ip K] [--groups G] [--base B]
 *              [--pending-ip P] [--pending-group Q] [--hold-s S] [--pid PID]
 *              [--ping-ms MS] [--fill-timeout-s T]
 *
 * Source addresses: ceil(N/K) loopback IPs, spread round-robin over G /16
 * groups 127.B.0.0/16 .. 127.(B+G-1).0.0/16 (IP j is 127.(B + j%G).h.l with
 * h.l counting 0.1, 0.2, .., 0.250, 1.1, ..); connection i comes from IP
 * i mod ceil(N/K), so no IP holds more than K connections (peerd admits 3
 * finished handshakes per IP without --allow-private).
 *
 * Pacing (so every connection is admitted under peerd's limits on inbound
 * connections still in the handshake, docs/protocol.md "Inbound slots"): at
 * most P connections per IP and Q per group are "pending" at once. A
 * connection stops being pending when the daemon has demonstrably finished
 * its side of the handshake: the first frame it sends after it (peerd PINGs
 * a peer as soon as it is ready; the handshake's own frames come before our
 * HANDSHAKE_DONE), or when it closes. Without --allow-private all of
 * loopback is one network group to peerd, so G = 1, Q = 4 is its real
 * limit; with --allow-private each 127.x/16 is a group and the limits are
 * off (the pacing still keeps to them).
 *
 * Every connection runs the real peer state machine (host/core/peer.c,
 * pd_peer_*) with its own ed25519 identity: the handshake peerd speaks,
 * then PING/PONG keep-alive (its defaults, or our PING every --ping-ms).
 * No frame is made by hand here, so the bench follows protocol changes made
 * in peer.c.
 *
 * Phases: fill (until all N are admitted, at most --fill-timeout-s, default
 * 300), hold (--hold-s seconds, default 150, every connection kept alive:
 * with both ends at the default 60 s PING interval, a link's first
 * keep-alive PING after the one at connect is due 120 s later),
 * close (all closed at once, until the daemon's fd count is back to its idle
 * count, at most 30 s). With --pid it
 * reads the daemon's VmRSS (/proc/PID/status), CPU (utime+stime of
 * /proc/PID/stat) and open fds (/proc/PID/fd) at each phase boundary.
 * Exit status: 0 when all N were admitted and none closed during the hold,
 * 1 otherwise, 2 on bad arguments.
 */
#include <dirent.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>
#include <uv.h>

#include "identity.h"
#include "netaddr.h"
#include "peer.h"
#include "wire.h"

typedef struct bench bench_t;

enum conn_state { C_IDLE = 0, C_PENDING, C_ADMITTED, C_DEAD };

typedef struct conn {
  uv_tcp_t tcp;
  uv_connect_t creq;
  bench_t *b;
  pd_identity_t id;
  pd_peer_t *peer;
  int index, ip, group;
  enum conn_state st;
  bool hs_done;          /* our side's HANDSHAKE_DONE */
  uint64_t frames_at_hs; /* frames received when it came */
  uint64_t t_start, t_hs, t_admit; /* uv_hrtime */
  bool tcp_open;
} conn_t;

typedef struct proc_sample {
  long rss_kb;
  double cpu_s; /* utime + stime */
  long fds;
} proc_sample_t;

enum phase { PH_FILL = 0, PH_HOLD, PH_CLOSE, PH_DONE };

struct bench {
  uv_loop_t *loop;
  uv_timer_t timer;
  uv_signal_t sigint, sigterm;
  struct sockaddr_storage target;
  conn_t *conns;
  int n, per_ip, groups, base, pend_ip_max, pend_group_max, nips;
  int *group_next;  /* next conn index (within the group's sequence) to start */
  int *group_count; /* conns in the group */
  int **group_conns;
  int *pend_group, *pend_ip;
  int started, pending, admitted, failed, hs_done, closed_in_hold;
  long pid;
  int64_t ping_ms;
  double fill_timeout_s, hold_s;
  enum phase phase;
  uint64_t t0, t_fill, t_hold_end, t_close;
  proc_sample_t s_idle, s_fill, s_hold, s_close;
  double cpu_tenth[11]; /* daemon CPU when the k-th tenth was admitted */
  uint64_t ka_in0[PD_WIRE_TYPE_COUNT], ka_out0[PD_WIRE_TYPE_COUNT];
  uint64_t ka_in1[PD_WIRE_TYPE_COUNT], ka_out1[PD_WIRE_TYPE_COUNT];
  char fail_reason[8][48];
  int fail_count[8], nfail_reasons;
  char hold_reason[8][48];
  int hold_count[8], nhold_reasons;
  pd_rng_t rng;
  bool interrupted;
  bool starting; /* inside start_more: a failed start does not recurse */
  char buf[65536];
};

static int64_t now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* --- the daemon's /proc figures ------------------------------------------------------------- */

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

/* utime + stime in seconds (fields 14 and 15 of /proc/PID/stat). */
static double cpu_s(long pid) {
  char path[64], line[1024];
  snprintf(path, sizeof path, "/proc/%ld/stat", pid);
  FILE *f = fopen(path, "r");
  if (!f) return -1;
  size_t n = fread(line, 1, sizeof line - 1, f);
  fclose(f);
  line[n] = 0;
  const char *p = strrchr(line, ')'); /* the command name may hold spaces */
  if (!p) return -1;
  p += 2; /* field 3, state */
  unsigned long long ut = 0, st = 0;
  if (sscanf(p, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu", &ut, &st) != 2) return -1;
  return (double)(ut + st) / (double)sysconf(_SC_CLK_TCK);
}

static long count_fds(long pid) {
  char path[64];
  snprintf(path, sizeof path, "/proc/%ld/fd", pid);
  DIR *d = opendir(path);
  if (!d) return -1;
  long n = 0;
  struct dirent *e;
  while ((e = readdir(d)) != NULL)
    if (e->d_name[0] != '.') n++;
  closedir(d);
  return n;
}

static void sample(const bench_t *b, proc_sample_t *s) {
  s->rss_kb = b->pid > 0 ? rss_kb(b->pid) : -1;
  s->cpu_s = b->pid > 0 ? cpu_s(b->pid) : -1;
  s->fds = b->pid > 0 ? count_fds(b->pid) : -1;
}

/* --- connections ---------------------------------------------------------------------------- */

static void note_reason(char names[8][48], int counts[8], int *n, const char *why) {
  for (int i = 0; i < *n; i++)
    if (strcmp(names[i], why) == 0) {
      counts[i]++;
      return;
    }
  if (*n < 8) {
    snprintf(names[*n], 48, "%s", why);
    counts[(*n)++] = 1;
  }
}

static void start_more(bench_t *b, int group);

static void on_write(uv_write_t *w, int status) {
  (void)status;
  free(w->data);
  free(w);
}

static void on_closed(uv_handle_t *h) { (void)h; }

static void close_tcp(conn_t *c) {
  if (c->tcp_open && !uv_is_closing((uv_handle_t *)&c->tcp))
    uv_close((uv_handle_t *)&c->tcp, on_closed);
}

/* Leaves the pending set (admitted or dead): its group may start another. */
static void unpend(conn_t *c) {
  bench_t *b = c->b;
  b->pending--;
  b->pend_group[c->group]--;
  b->pend_ip[c->ip]--;
}

static void conn_dead(conn_t *c, const char *why) {
  bench_t *b = c->b;
  if (c->st == C_DEAD) return;
  if (c->st == C_PENDING) {
    unpend(c);
    b->failed++;
    note_reason(b->fail_reason, b->fail_count, &b->nfail_reasons, why);
  } else if (c->st == C_ADMITTED && b->phase == PH_HOLD) {
    b->closed_in_hold++;
    note_reason(b->hold_reason, b->hold_count, &b->nhold_reasons, why);
  }
  c->st = C_DEAD;
  close_tcp(c);
  if (b->phase == PH_FILL && !b->starting) start_more(b, c->group);
}

static void admitted(conn_t *c) {
  bench_t *b = c->b;
  c->st = C_ADMITTED;
  c->t_admit = uv_hrtime();
  unpend(c);
  b->admitted++;
  if (b->pid > 0 && b->n >= 10 && b->admitted % (b->n / 10) == 0 && b->admitted / (b->n / 10) <= 10)
    b->cpu_tenth[b->admitted / (b->n / 10)] = cpu_s(b->pid);
  start_more(b, c->group);
}

static uint64_t frames_in(const pd_peer_t *p) {
  const pd_peer_stats_t *s = pd_peer_stats(p);
  uint64_t n = 0;
  for (int t = 0; t < PD_WIRE_TYPE_COUNT; t++) n += s->frames_in[t];
  return n;
}

static void drain(conn_t *c) {
  pd_peer_action_t a;
  while (c->peer && c->st != C_DEAD && pd_peer_poll(c->peer, &a)) {
    if (a.type == PD_PEER_A_SEND) {
      uv_write_t *w = malloc(sizeof *w);
      char *copy = malloc(a.send.len);
      if (!w || !copy) {
        free(w);
        free(copy);
        conn_dead(c, "no_memory");
        return;
      }
      memcpy(copy, a.send.data, a.send.len);
      w->data = copy;
      uv_buf_t buf = uv_buf_init(copy, (unsigned)a.send.len);
      if (uv_write(w, (uv_stream_t *)&c->tcp, &buf, 1, on_write) != 0) {
        free(copy);
        free(w);
      }
    } else if (a.type == PD_PEER_A_HANDSHAKE_DONE && !c->hs_done) {
      c->hs_done = true;
      c->t_hs = uv_hrtime();
      c->frames_at_hs = frames_in(c->peer);
      c->b->hs_done++;
    } else if (a.type == PD_PEER_A_CLOSE) {
      conn_dead(c, a.close.remote ? pd_wire_bye_name(a.close.remote_code) : a.close.reason);
      return;
    }
  }
  if (c->peer && c->st == C_PENDING && c->hs_done && frames_in(c->peer) > c->frames_at_hs)
    admitted(c);
  if (c->peer) pd_peer_trim(c->peer);
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
    conn_dead(c, n == UV_EOF ? "eof" : uv_err_name((int)n));
    return;
  }
  if (n > 0 && c->peer && c->st != C_DEAD) {
    pd_peer_on_bytes(c->peer, (const uint8_t *)buf->base, (size_t)n, now_ms());
    drain(c);
  }
}

static void on_connect(uv_connect_t *req, int status) {
  conn_t *c = req->data;
  if (c->st == C_DEAD) return;
  if (status < 0) {
    conn_dead(c, uv_err_name(status));
    return;
  }
  static const uint8_t magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  uint8_t challenge[32];
  randombytes_buf(challenge, sizeof challenge);
  pd_peer_config_t cfg;
  pd_peer_config_default(&cfg);
  if (c->b->ping_ms > 0) cfg.ping_interval_ms = c->b->ping_ms;
  pd_peer_params_t prm = {
      .self = &c->id,
      .magic = magic,
      .network = PD_WIRE_NETWORK_DEFAULT,
      .agent = "bench_load",
      .dir = PD_PEER_OUTBOUND,
      .challenge = challenge,
      .cfg = &cfg,
  };
  if (pd_peer_new(&c->peer, &prm, &c->b->rng, now_ms()) != 0) {
    conn_dead(c, "peer_new");
    return;
  }
  uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read);
  drain(c);
}

static void ip_of(const bench_t *b, int j, char *out, size_t cap) {
  int g = j % b->groups, k = j / b->groups;
  snprintf(out, cap, "127.%d.%d.%d", b->base + g, k / 250, k % 250 + 1);
}

static void start_one(bench_t *b, conn_t *c) {
  uint8_t seed[32];
  randombytes_buf(seed, sizeof seed);
  pd_identity_from_seed(&c->id, seed);
  c->st = C_PENDING;
  b->started++;
  b->pending++;
  b->pend_group[c->group]++;
  b->pend_ip[c->ip]++;
  c->t_start = uv_hrtime();
  uv_tcp_init(b->loop, &c->tcp);
  c->tcp_open = true;
  c->tcp.data = c;
  struct sockaddr_in src;
  char ip[32];
  ip_of(b, c->ip, ip, sizeof ip);
  uv_ip4_addr(ip, 0, &src);
  int rc = uv_tcp_bind(&c->tcp, (const struct sockaddr *)&src, 0);
  c->creq.data = c;
  if (rc == 0) rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&b->target, on_connect);
  if (rc != 0) conn_dead(c, uv_err_name(rc));
}

/* Start the group's next connections while the pacing allows. */
static void start_more(bench_t *b, int g) {
  if (b->starting) return;
  b->starting = true;
  while (b->phase == PH_FILL && b->group_next[g] < b->group_count[g] &&
         b->pend_group[g] < b->pend_group_max) {
    conn_t *c = &b->conns[b->group_conns[g][b->group_next[g]]];
    if (b->pend_ip[c->ip] >= b->pend_ip_max) break; /* retried at the next event or tick */
    b->group_next[g]++;
    start_one(b, c);
  }
  b->starting = false;
}

/* --- report --------------------------------------------------------------------------------- */

static int cmp_u64(const void *a, const void *b) {
  uint64_t x = *(const uint64_t *)a, y = *(const uint64_t *)b;
  return x < y ? -1 : x > y;
}

static double pct_ms(const uint64_t *v, size_t n, double p) {
  if (n == 0) return 0;
  size_t i = (size_t)(p * (double)(n - 1) + 0.5);
  return (double)v[i] / 1e6;
}

static void keepalive_counts(const bench_t *b, uint64_t in[PD_WIRE_TYPE_COUNT],
                             uint64_t out[PD_WIRE_TYPE_COUNT]) {
  memset(in, 0, sizeof(uint64_t) * PD_WIRE_TYPE_COUNT);
  memset(out, 0, sizeof(uint64_t) * PD_WIRE_TYPE_COUNT);
  for (int i = 0; i < b->n; i++) {
    const conn_t *c = &b->conns[i];
    if (!c->peer) continue;
    const pd_peer_stats_t *s = pd_peer_stats(c->peer);
    for (int t = 0; t < PD_WIRE_TYPE_COUNT; t++) {
      in[t] += s->frames_in[t];
      out[t] += s->frames_out[t];
    }
  }
}

static void report_fill(bench_t *b) {
  double secs = (double)(b->t_fill - b->t0) / 1e9;
  printf("fill: %d of %d admitted in %.3f s = %.0f handshakes/s (%d failed)\n", b->admitted, b->n,
         secs, secs > 0 ? b->admitted / secs : 0.0, b->failed);
  for (int i = 0; i < b->nfail_reasons; i++)
    printf("fill: failed %d: %s\n", b->fail_count[i], b->fail_reason[i]);
  /* rate per tenth of the fill: admissions ordered by time */
  uint64_t *ta = malloc(sizeof *ta * (size_t)(b->n ? b->n : 1));
  uint64_t *lat = malloc(sizeof *lat * (size_t)(b->n ? b->n : 1));
  if (!ta || !lat) {
    free(ta);
    free(lat);
    return;
  }
  size_t na = 0, nl = 0;
  for (int i = 0; i < b->n; i++) {
    const conn_t *c = &b->conns[i];
    if (c->t_admit) ta[na++] = c->t_admit - b->t0;
    if (c->t_hs) lat[nl++] = c->t_hs - c->t_start;
  }
  qsort(ta, na, sizeof *ta, cmp_u64);
  qsort(lat, nl, sizeof *lat, cmp_u64);
  if (na >= 10) {
    printf("fill: handshakes/s by tenth of the connections:");
    uint64_t prev = 0;
    for (int k = 1; k <= 10; k++) {
      size_t lo = na * (size_t)(k - 1) / 10, hi = na * (size_t)k / 10;
      uint64_t t = ta[hi - 1];
      double dt = (double)(t - prev) / 1e9;
      printf(" %.0f", dt > 0 ? (double)(hi - lo) / dt : 0.0);
      prev = t;
    }
    printf("\n");
  }
  printf("latency connect->HANDSHAKE_DONE ms (n=%zu): median %.2f p90 %.2f p99 %.2f max %.2f\n", nl,
         pct_ms(lat, nl, 0.5), pct_ms(lat, nl, 0.9), pct_ms(lat, nl, 0.99),
         nl ? (double)lat[nl - 1] / 1e6 : 0.0);
  free(ta);
  free(lat);
  if (b->pid > 0) {
    double cpu = b->s_fill.cpu_s - b->s_idle.cpu_s;
    printf("daemon pid %ld RSS: %ld kB idle, %ld kB holding %d = %.2f kB per connection\n", b->pid,
           b->s_idle.rss_kb, b->s_fill.rss_kb, b->admitted,
           b->admitted ? (double)(b->s_fill.rss_kb - b->s_idle.rss_kb) / b->admitted : 0.0);
    printf("daemon CPU fill: %.2f s user+sys (%.0f us per handshake, %.0f%% of one core)\n", cpu,
           b->admitted ? cpu * 1e6 / b->admitted : 0.0, secs > 0 ? 100 * cpu / secs : 0.0);
    if (b->n >= 10 && b->admitted == b->n) {
      /* CPU, unlike wall time, does not depend on what else the machine runs */
      printf("fill: daemon CPU us per handshake by tenth of the connections:");
      b->cpu_tenth[0] = b->s_idle.cpu_s;
      for (int k = 1; k <= 10; k++)
        printf(" %.0f", (b->cpu_tenth[k] - b->cpu_tenth[k - 1]) * 1e6 / (b->n / 10));
      printf("\n");
    }
    printf("daemon fds: %ld idle, %ld holding %d\n", b->s_idle.fds, b->s_fill.fds, b->admitted);
  }
  fflush(stdout);
}

static void report_hold(bench_t *b) {
  double secs = (double)(b->t_hold_end - b->t_fill) / 1e9;
  uint64_t pi = b->ka_in1[PD_WIRE_PING] - b->ka_in0[PD_WIRE_PING];
  uint64_t po = b->ka_out1[PD_WIRE_PING] - b->ka_out0[PD_WIRE_PING];
  uint64_t qi = b->ka_in1[PD_WIRE_PONG] - b->ka_in0[PD_WIRE_PONG];
  uint64_t qo = b->ka_out1[PD_WIRE_PONG] - b->ka_out0[PD_WIRE_PONG];
  printf("hold: %.1f s, %d connections open at the end, %d closed during the hold\n", secs,
         b->admitted - b->closed_in_hold, b->closed_in_hold);
  for (int i = 0; i < b->nhold_reasons; i++)
    printf("hold: closed %d: %s\n", b->hold_count[i], b->hold_reason[i]);
  printf("hold: keep-alive frames: daemon sent %llu PING %llu PONG, we sent %llu PING %llu PONG\n",
         (unsigned long long)pi, (unsigned long long)qi, (unsigned long long)po,
         (unsigned long long)qo);
  if (b->pid > 0) {
    double cpu = b->s_hold.cpu_s - b->s_fill.cpu_s;
    printf("daemon CPU hold: %.2f s user+sys in %.1f s (%.2f%% of one core)\n", cpu, secs,
           secs > 0 ? 100 * cpu / secs : 0.0);
    printf("daemon after hold: RSS %ld kB, fds %ld\n", b->s_hold.rss_kb, b->s_hold.fds);
  }
  fflush(stdout);
}

/* --- the clock ------------------------------------------------------------------------------ */

static void close_all(bench_t *b) {
  for (int i = 0; i < b->n; i++) {
    conn_t *c = &b->conns[i];
    if (c->st == C_PENDING) unpend(c);
    if (c->st != C_IDLE) c->st = C_DEAD;
    close_tcp(c);
  }
}

static void finish(bench_t *b) {
  uv_close((uv_handle_t *)&b->timer, NULL);
  uv_close((uv_handle_t *)&b->sigint, NULL);
  uv_close((uv_handle_t *)&b->sigterm, NULL);
  b->phase = PH_DONE;
}

static void on_timer(uv_timer_t *t) {
  bench_t *b = t->data;
  int64_t now = now_ms();
  uint64_t hr = uv_hrtime();
  if (b->phase == PH_FILL || b->phase == PH_HOLD) {
    for (int i = 0; i < b->n; i++) {
      conn_t *c = &b->conns[i];
      if (c->peer && c->st != C_DEAD && pd_peer_next_deadline(c->peer) <= now) {
        pd_peer_on_tick(c->peer, now);
        drain(c);
      }
    }
  }
  if (b->phase == PH_FILL) {
    for (int g = 0; g < b->groups; g++) start_more(b, g);
    bool all = b->started == b->n && b->pending == 0;
    if (all || (double)(hr - b->t0) / 1e9 > b->fill_timeout_s || b->interrupted) {
      b->t_fill = hr;
      sample(b, &b->s_fill);
      report_fill(b);
      if (b->admitted < b->n || b->interrupted) {
        close_all(b);
        finish(b);
        return;
      }
      keepalive_counts(b, b->ka_in0, b->ka_out0);
      b->phase = PH_HOLD;
      printf("hold: keeping %d connections for %.0f s\n", b->admitted, b->hold_s);
      fflush(stdout);
    }
  } else if (b->phase == PH_HOLD) {
    if ((double)(hr - b->t_fill) / 1e9 >= b->hold_s || b->interrupted) {
      b->t_hold_end = hr;
      sample(b, &b->s_hold);
      keepalive_counts(b, b->ka_in1, b->ka_out1);
      report_hold(b);
      close_all(b);
      b->phase = PH_CLOSE;
      b->t_close = hr;
    }
  } else if (b->phase == PH_CLOSE) {
    /* until the daemon is back to its idle fd count (it has processed every
     * close), at most 30 s */
    double secs = (double)(hr - b->t_close) / 1e9;
    long fds = b->pid > 0 ? count_fds(b->pid) : -1;
    if (fds <= b->s_idle.fds || secs >= 30 || b->interrupted) {
      sample(b, &b->s_close);
      if (b->pid > 0)
        printf("close: daemon %s in %.1f s (fds %ld, idle %ld), CPU %.2f s user+sys, RSS %ld kB\n",
               fds <= b->s_idle.fds ? "released every connection" : "still holds connections",
               secs, b->s_close.fds, b->s_idle.fds, b->s_close.cpu_s - b->s_hold.cpu_s,
               b->s_close.rss_kb);
      finish(b);
    }
  }
}

static void on_signal(uv_signal_t *s, int sig) {
  bench_t *b = s->data;
  (void)sig;
  if (!b->interrupted) printf("interrupted: reporting and closing\n");
  b->interrupted = true;
}

/* --- main ----------------------------------------------------------------------------------- */

static int usage(void) {
  fprintf(stderr,
          "usage: bench_load HOST:PORT [--conns N] [--per-ip K] [--groups G] [--base B]\n"
          "                  [--pending-ip P] [--pending-group Q] [--hold-s S] [--pid PID]\n"
          "                  [--ping-ms MS] [--fill-timeout-s T]\n");
  return 2;
}

int main(int argc, char **argv) {
  if (argc < 2 || argv[1][0] == '-') return usage();
  if (sodium_init() < 0) return 1;
  bench_t *b = calloc(1, sizeof *b);
  if (!b) return 1;
  b->n = 10000;
  b->per_ip = 3;
  b->groups = 1;
  b->base = 64;
  b->pend_ip_max = 2;
  b->pend_group_max = 4;
  b->hold_s = 150;
  b->fill_timeout_s = 300;
  for (int i = 2; i < argc; i += 2) {
    if (i + 1 >= argc) return usage();
    const char *k = argv[i], *v = argv[i + 1];
    if (strcmp(k, "--conns") == 0) b->n = atoi(v);
    else if (strcmp(k, "--per-ip") == 0) b->per_ip = atoi(v);
    else if (strcmp(k, "--groups") == 0) b->groups = atoi(v);
    else if (strcmp(k, "--base") == 0) b->base = atoi(v);
    else if (strcmp(k, "--pending-ip") == 0) b->pend_ip_max = atoi(v);
    else if (strcmp(k, "--pending-group") == 0) b->pend_group_max = atoi(v);
    else if (strcmp(k, "--hold-s") == 0) b->hold_s = atof(v);
    else if (strcmp(k, "--pid") == 0) b->pid = atol(v);
    else if (strcmp(k, "--ping-ms") == 0) b->ping_ms = atol(v);
    else if (strcmp(k, "--fill-timeout-s") == 0) b->fill_timeout_s = atof(v);
    else return usage();
  }
  if (b->n < 1 || b->n > 60000 || b->per_ip < 1 || b->groups < 1 || b->base < 1 ||
      b->base + b->groups > 255 || b->pend_ip_max < 1 || b->pend_group_max < 1 || b->hold_s < 0 ||
      b->fill_timeout_s <= 0)
    return usage();
  b->nips = (b->n + b->per_ip - 1) / b->per_ip;
  if (b->nips / b->groups + 1 > 250 * 256) return usage();
  pd_netaddr_t target;
  const char *why = NULL;
  if (pd_netaddr_parse(argv[1], 0, &target, NULL, NULL, &why) != 0 ||
      pd_netaddr_to_sockaddr(&target, &b->target, sizeof b->target) < 0) {
    fprintf(stderr, "bad target %s: %s\n", argv[1], why ? why : "?");
    return 2;
  }
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY &&
      rl.rlim_cur < (rlim_t)b->n + 64) {
    fprintf(stderr, "bench_load: ulimit -n is %llu; %d connections need at least %d\n",
            (unsigned long long)rl.rlim_cur, b->n, b->n + 64);
    return 2;
  }
  b->conns = calloc((size_t)b->n, sizeof *b->conns);
  b->pend_group = calloc((size_t)b->groups, sizeof(int));
  b->group_next = calloc((size_t)b->groups, sizeof(int));
  b->group_count = calloc((size_t)b->groups, sizeof(int));
  b->group_conns = calloc((size_t)b->groups, sizeof(int *));
  b->pend_ip = calloc((size_t)b->nips, sizeof(int));
  if (!b->conns || !b->pend_group || !b->group_next || !b->group_count || !b->group_conns ||
      !b->pend_ip)
    return 1;
  for (int i = 0; i < b->n; i++) {
    conn_t *c = &b->conns[i];
    c->b = b;
    c->index = i;
    c->ip = i % b->nips;
    c->group = c->ip % b->groups;
    b->group_count[c->group]++;
  }
  for (int g = 0; g < b->groups; g++) {
    b->group_conns[g] = malloc(sizeof(int) * (size_t)(b->group_count[g] ? b->group_count[g] : 1));
    if (!b->group_conns[g]) return 1;
    b->group_count[g] = 0;
  }
  for (int i = 0; i < b->n; i++) {
    int g = b->conns[i].group;
    b->group_conns[g][b->group_count[g]++] = i;
  }
  char first[32], last[32];
  ip_of(b, 0, first, sizeof first);
  ip_of(b, b->nips - 1, last, sizeof last);
  printf("bench_load: %d connections to %s from %d source IPs (%s .. %s) in %d /16 group%s "
         "127.%d-%d.0.0, <= %d per IP (%d..%d per group); pacing: <= %d per IP and <= %d per "
         "group in the handshake at once\n",
         b->n, argv[1], b->nips, first, last, b->groups, b->groups > 1 ? "s" : "", b->base,
         b->base + b->groups - 1, b->per_ip, b->n / b->groups, (b->n + b->groups - 1) / b->groups,
         b->pend_ip_max, b->pend_group_max);
  fflush(stdout);
  signal(SIGPIPE, SIG_IGN);
  pd_rng_seed(&b->rng, 1);
  b->loop = uv_default_loop();
  uv_timer_init(b->loop, &b->timer);
  b->timer.data = b;
  uv_signal_init(b->loop, &b->sigint);
  uv_signal_init(b->loop, &b->sigterm);
  b->sigint.data = b->sigterm.data = b;
  uv_signal_start(&b->sigint, on_signal, SIGINT);
  uv_signal_start(&b->sigterm, on_signal, SIGTERM);
  uv_timer_start(&b->timer, on_timer, 100, 100);
  sample(b, &b->s_idle);
  b->t0 = uv_hrtime();
  for (int g = 0; g < b->groups; g++) start_more(b, g);
  uv_run(b->loop, UV_RUN_DEFAULT);
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) == 0)
    printf("client CPU (this process, all phases): %.2f s user+sys\n",
           (double)ru.ru_utime.tv_sec + (double)ru.ru_utime.tv_usec / 1e6 +
               (double)ru.ru_stime.tv_sec + (double)ru.ru_stime.tv_usec / 1e6);
  int ok = b->admitted == b->n && b->closed_in_hold == 0 && !b->interrupted;
  printf("result: %s\n", ok ? "ok" : "FAILED");
  for (int i = 0; i < b->n; i++) {
    pd_peer_free(b->conns[i].peer);
    pd_identity_wipe(&b->conns[i].id);
  }
  for (int g = 0; g < b->groups; g++) free(b->group_conns[g]);
  int lrc = uv_loop_close(b->loop);
  free(b->group_conns);
  free(b->group_count);
  free(b->group_next);
  free(b->pend_group);
  free(b->pend_ip);
  free(b->conns);
  free(b);
  return ok && lrc == 0 ? 0 : 1;
}
