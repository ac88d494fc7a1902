/* daemon — the libuv driver. See daemon.h. */
#include "daemon.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netdb.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <time.h>
#include <unistd.h>

#include <jansson.h>
#include <sodium.h>
#include <uv.h>

#include "api.h"
#include "bookstore.h"
#include "err.h"
#include "fsio.h"
#include "http.h"
#include "identity.h"
#include "netmgr.h"
#include "node.h"
#include "wire.h"

#define READ_BUF_SIZE (64 * 1024)
#define LINGER_MS 5000                                 /* after an error reply */
#define LINGER_MAX_DISCARD (2 * PD_API_MAX_BODY + 65536) /* bytes drained then */
#define PATH_CAP 4096

typedef struct pd_daemon pd_daemon_t;

typedef struct conn {
  uv_tcp_t tcp; /* first: handle->data is the conn too */
  uv_timer_t timer;
  uv_shutdown_t shutdown_req;
  pd_daemon_t *d;
  pd_http_t *http;
  struct conn *prev, *next;
  int open_handles;   /* handles not yet closed */
  bool closing;       /* uv_close called */
  bool busy;          /* a response is being produced or written */
  bool close_after;   /* close (or linger) once the write completes */
  bool linger;        /* drain input after an error reply, then close */
  bool reading;
  bool head_only;     /* HEAD request: no body */
  size_t discarded;
  uint64_t save_wait; /* id of the save this conn waits for, 0 = none */
  bool have_resp;
  bool resp_keep_alive;
  pd_api_response_t resp; /* held while a save is performed */
  struct resolve_job *rjob; /* host names being resolved for this conn */
  char peer[64];
} conn_t;

/* DNS for one POST /v1/book: one uv_getaddrinfo per host name, all in
 * flight at once on libuv's thread pool; the loop never blocks. The job
 * outlives its connection if the client goes away (c becomes NULL). */
typedef struct resolve_req {
  uv_getaddrinfo_t req;
  struct resolve_job *job;
  size_t index;
  uint16_t port;
} resolve_req_t;

typedef struct resolve_job {
  conn_t *c;
  pd_daemon_t *d;
  pd_api_response_t resp;
  bool keep_alive;
  size_t outstanding;
  resolve_req_t reqs[PD_API_MAX_NAMES];
} resolve_job_t;

typedef struct write_req {
  uv_write_t req;
  conn_t *c; /* NULL for fire-and-forget interim responses */
  char *head;
  char *body;
  bool track; /* completion ends c->busy */
} write_req_t;

typedef struct save_job {
  uv_work_t work;
  pd_daemon_t *d;
  char *buf;
  size_t len;
  size_t entries;
  uint64_t id;
  const char *why; /* static: "periodic", "api" */
  int rc;
} save_job_t;

struct pd_daemon {
  uv_loop_t loop;
  uv_tcp_t server;
  uv_timer_t tick;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_signal_t sighup;
  uv_fs_event_t policy_watch;
  uv_timer_t policy_debounce;
  bool policy_watching;
  bool server_open;
  pd_daemon_config_t cfg;
  pd_rng_t rng;
  pd_node_t *node;
  conn_t *conns;
  size_t nconns;
  uint64_t refused;
  /* saves */
  bool saving;
  uint64_t save_started; /* id of the last save started */
  /* shutdown */
  bool stopping;
  bool stopped;
  int exit_code;
  char listen_addr[80];
  /* peer-to-peer */
  pd_identity_t ident;
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  uv_tcp_t p2p_server;
  bool p2p_open;
  char p2p_addr[80];
  pd_netaddr_t p2p_bound; /* the bound listen address */
  bool bind_out;          /* outbound sockets bind to p2p_bound's IP (not a wildcard) */
  pd_netmgr_t *net;
  uv_timer_t net_timer; /* armed at the manager's next deadline */
  bool net_timer_open;
  bool flushing;        /* inside net_flush */
  struct pconn *pconns; /* every peer socket */
  size_t npconns;
  struct pconn *pbuckets[1024]; /* by conn id (PCONN_BUCKETS) */
  struct presolve *presolves;   /* DNS requests in flight */
  uint64_t slow_readers;        /* peers dropped for not reading */
  pd_netmgr_counters_t net_counters; /* last read, for /metrics */
  const char *dial_names[PD_DIAL_OUTCOME_COUNT];
  const char *type_names[PD_WIRE_TYPE_COUNT];
  const char *reason_names[PD_NETMGR_REJ_COUNT];
  char readbuf[READ_BUF_SIZE];
};

/* ------------------------------------------------------------------ log */

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int pd_log_level_parse(const char *s) {
  if (!s) return -1;
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) return i;
  }
  return -1;
}

/* Append s to the line, quoted and escaped when it needs to be. */
static void log_value(char *line, size_t cap, size_t *off, const char *s) {
  bool quote = (*s == '\0');
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f) quote = true;
  }
  size_t o = *off;
#define PUT(ch_)                        \
  do {                                  \
    if (o + 1 < cap) line[o++] = (ch_); \
  } while (0)
  if (quote) PUT('"');
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\') {
      PUT('\\');
      PUT((char)ch);
    } else if (ch == '\n') {
      PUT('\\');
      PUT('n');
    } else if (ch < ' ' || ch == 0x7f) {
      PUT('?');
    } else {
      PUT((char)ch);
    }
  }
  if (quote) PUT('"');
#undef PUT
  line[o < cap ? o : cap - 1] = '\0';
  *off = o;
}

void pd_log(int min_level, int level, const char *msg, ...) {
  if (level < min_level) return;
  if (level < 0 || level > 3) level = PD_LOG_ERROR;
  char line[2048];
  size_t off = 0;
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  off = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%SZ", &tm);
  off += (size_t)snprintf(line + off, sizeof line - off, " level=%s msg=", level_names[level]);
  log_value(line, sizeof line, &off, msg ? msg : "");
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    if (off + 2 < sizeof line) {
      int n = snprintf(line + off, sizeof line - off, " %s=", k);
      if (n > 0) off += (size_t)n;
      if (off >= sizeof line) off = sizeof line - 1;
    }
    log_value(line, sizeof line, &off, v ? v : "");
  }
  va_end(ap);
  if (off + 1 >= sizeof line) off = sizeof line - 2;
  line[off++] = '\n';
  line[off] = '\0';
  fputs(line, stderr);
  fflush(stderr);
}

#define LOG(d, lvl, ...) pd_log((d)->cfg.log_level, (lvl), __VA_ARGS__, (const char *)NULL)

/* ------------------------------------------------------------- config */

void pd_daemon_config_defaults(pd_daemon_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->data_dir = PD_DAEMON_DEFAULT_DATA_DIR;
  cfg->api = PD_DAEMON_DEFAULT_API;
  cfg->save_interval = (int64_t)PD_DAEMON_DEFAULT_SAVE_MINUTES * 60;
  cfg->ban_time = PD_DAEMON_DEFAULT_BAN_SECS;
  cfg->log_level = PD_LOG_INFO;
  cfg->policy_dir = PEERD_POLICY_DIR;
  cfg->policy_instructions = PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS;
  cfg->policy_timeout_ms = PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS;
  cfg->policy_memory_mb = PD_DAEMON_DEFAULT_POLICY_MEMORY_MB;
  cfg->listen = PD_DAEMON_DEFAULT_LISTEN;
  cfg->max_outbound = PD_DAEMON_DEFAULT_MAX_OUTBOUND;
  cfg->max_inbound = PD_DAEMON_DEFAULT_MAX_INBOUND;
  cfg->min_outbound = PD_DAEMON_DEFAULT_MIN_OUTBOUND;
  cfg->network = PD_WIRE_NETWORK_DEFAULT;
  cfg->handshake_timeout_ms = PD_DAEMON_DEFAULT_HANDSHAKE_TIMEOUT_MS;
}

void pd_daemon_network_magic(const char *network, uint8_t magic[4]) {
  static const uint8_t def[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  if (!network || strcmp(network, PD_WIRE_NETWORK_DEFAULT) == 0) {
    memcpy(magic, def, PD_WIRE_MAGIC_LEN);
    return;
  }
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)network, strlen(network));
  magic[0] = 0xF5;
  memcpy(magic + 1, h, 3);
}

int pd_daemon_parse_listen(const char *s, void *ss, unsigned cap, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  if (!s || !*s) {
    *why = "empty address";
    return PD_EINVAL;
  }
  if (cap < sizeof(struct sockaddr_storage)) {
    *why = "buffer too small";
    return PD_EINVAL;
  }
  size_t n = strlen(s);
  if (n > 100) {
    *why = "address too long";
    return PD_EINVAL;
  }
  char host[128];
  const char *colon;
  bool v6 = false;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close) {
      *why = "unclosed [";
      return PD_EINVAL;
    }
    size_t hl = (size_t)(close - s - 1);
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    if (close[1] != ':') {
      *why = "missing port";
      return PD_EINVAL;
    }
    colon = close + 1;
    v6 = true;
  } else {
    colon = strrchr(s, ':');
    if (!colon) {
      *why = "missing port";
      return PD_EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (strchr(host, ':')) {
      *why = "IPv6 addresses need brackets: [addr]:port";
      return PD_EINVAL;
    }
  }
  const char *ps = colon + 1;
  if (!*ps || strlen(ps) > 5) {
    *why = "bad port";
    return PD_EINVAL;
  }
  unsigned long port = 0;
  for (const char *p = ps; *p; p++) {
    if (*p < '0' || *p > '9') {
      *why = "bad port";
      return PD_EINVAL;
    }
    port = port * 10 + (unsigned long)(*p - '0');
  }
  if (port > 65535) {
    *why = "port above 65535";
    return PD_EINVAL;
  }
  memset(ss, 0, cap);
  if (!v6 && strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (v6) {
    struct sockaddr_in6 *a6 = ss;
    if (uv_ip6_addr(host, (int)port, a6) != 0) {
      *why = "not an IPv6 address";
      return PD_EINVAL;
    }
  } else {
    struct sockaddr_in *a4 = ss;
    struct in_addr ia;
    if (inet_pton(AF_INET, host, &ia) != 1) {
      *why = "not an IPv4 address (use [v6]:port for IPv6)";
      return PD_EINVAL;
    }
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    a4->sin_addr = ia;
  }
  return 0;
}

/* The wall clock, as the core's `now`. */
static int64_t wall_now(void) { return (int64_t)time(NULL); }

static void fmt_i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }
static void fmt_u64(char *buf, size_t cap, uint64_t v) {
  snprintf(buf, cap, "%llu", (unsigned long long)v);
}

static void fmt_sockaddr(const struct sockaddr_storage *ss, char *buf, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(buf, cap, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(buf, cap, "[%s]:%d", ip, port);
  } else {
    snprintf(buf, cap, "?");
  }
}

/* ----------------------------------------------------------- policies */

const char *const pd_daemon_policy_files[5] = {
    "select.lua", "score.lua", "evict.lua", "reputation.lua", "pex.lua",
};

int pd_daemon_read_policies(const char *dir, pd_policy_file_t files[5], char *err, size_t cap) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    snprintf(err, cap, "policy directory %s: %s", dir, strerror(errno));
    return PD_ENOENT;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "policy directory %s: not a directory", dir);
    return PD_EINVAL;
  }
  int n = 0;
  for (size_t i = 0; i < 5; i++) {
    char path[PATH_CAP];
    int pl = snprintf(path, sizeof path, "%s/%s", dir, pd_daemon_policy_files[i]);
    if (pl < 0 || (size_t)pl >= sizeof path) {
      snprintf(err, cap, "policy directory path too long");
      goto fail;
    }
    char *buf = NULL;
    size_t len = 0;
    int rc = pd_fs_read_all(path, PD_DAEMON_MAX_POLICY_FILE, &buf, &len);
    if (rc == -ENOENT) continue;
    if (rc < 0) {
      snprintf(err, cap, "%s: cannot read: %s", pd_daemon_policy_files[i], pd_strerror(rc));
      goto fail;
    }
    files[n].name = pd_daemon_policy_files[i];
    files[n].text = buf;
    files[n].len = len;
    n++;
  }
  return n;
fail:
  for (int k = 0; k < n; k++) free((char *)files[k].text);
  return PD_EINVAL;
}

static uint64_t hr_clock(void *ud) {
  (void)ud;
  return uv_hrtime();
}

/* Log each policy failure kind not reported yet (once per kind and load). */
static void drain_policy_failures(pd_daemon_t *d) {
  int hook = 0, reason = 0;
  char msg[512];
  while (pd_policy_next_unreported(pd_node_policy(d->node), &hook, &reason, msg, sizeof msg)) {
    const char *h = pd_policy_hook_name(hook), *r = pd_policy_reason_name(reason);
    LOG(d, PD_LOG_WARN, "policy failure", "hook", h ? h : "?", "reason", r ? r : "?", "error",
        msg);
  }
}

/* Read the directory afresh and load the set; the old set stays on failure.
 * Returns 0 when the new set is in force. */
static int reload_policies(pd_daemon_t *d, const char *why) {
  pd_policy_file_t files[5];
  char err[600] = "";
  int64_t now = wall_now();
  int n = pd_daemon_read_policies(d->cfg.policy_dir, files, err, sizeof err);
  if (n < 0) {
    pd_node_policy_load_failed(d->node, err, now);
    LOG(d, PD_LOG_WARN, "policy load failed", "dir", d->cfg.policy_dir, "reason", why, "error",
        err);
    return n;
  }
  int rc = pd_node_policy_load(d->node, files, (size_t)n, now, err, sizeof err);
  for (int i = 0; i < n; i++) free((char *)files[i].text);
  if (rc < 0) {
    LOG(d, PD_LOG_WARN, "policy load failed", "dir", d->cfg.policy_dir, "reason", why, "error",
        err);
    return rc;
  }
  pd_policy_status_t ps;
  pd_policy_status(pd_node_policy(d->node), &ps);
  char gen[32], nf[32], fl[600] = "";
  fmt_u64(gen, sizeof gen, ps.generation);
  fmt_u64(nf, sizeof nf, ps.nfiles);
  size_t off = 0;
  for (size_t i = 0; i < ps.nfiles && i < 8; i++) {
    int w = snprintf(fl + off, sizeof fl - off, "%s%.63s", i ? "," : "", ps.files[i]);
    if (w > 0 && (size_t)w < sizeof fl - off) off += (size_t)w;
  }
  LOG(d, PD_LOG_INFO, "policy loaded", "dir", d->cfg.policy_dir, "reason", why, "generation", gen,
      "hash", ps.hash, "files", fl);
  return 0;
}

static void on_policy_debounce(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (d->stopping) return;
  reload_policies(d, "file change");
}

static void on_policy_change(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)filename;
  (void)events;
  pd_daemon_t *d = h->data;
  if (d->stopping) return;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "policy directory watch error", "dir", d->cfg.policy_dir, "error",
        uv_strerror(status));
    return;
  }
  /* editors write in bursts: reload once things are quiet */
  uv_timer_start(&d->policy_debounce, on_policy_debounce, PD_DAEMON_POLICY_DEBOUNCE_MS, 0);
}

/* -------------------------------------------------------------- saves */

static void start_save(pd_daemon_t *d, const char *why);
static void finish_stop(pd_daemon_t *d);
static void send_response(conn_t *c, pd_api_response_t *resp, bool keep_alive);
static void conn_process(conn_t *c);

static void save_work(uv_work_t *w) {
  save_job_t *job = w->data;
  job->rc = pd_fs_write_atomic(job->d->cfg.data_dir, PD_DAEMON_BOOK_FILE, job->buf, job->len,
                               0600);
}

/* Answer every API connection that waited for save `id` (or an earlier one). */
static void complete_waiters(pd_daemon_t *d, uint64_t id) {
  int64_t now = wall_now();
  conn_t *c = d->conns;
  while (c) {
    conn_t *next = c->next; /* send_response never frees synchronously */
    if (c->save_wait && c->save_wait <= id && c->have_resp && !c->closing) {
      c->save_wait = 0;
      c->have_resp = false;
      pd_api_complete(d->node, now, &c->resp);
      pd_api_response_t r = c->resp;
      memset(&c->resp, 0, sizeof c->resp);
      send_response(c, &r, c->resp_keep_alive);
    }
    c = next;
  }
}

static bool anyone_waiting(pd_daemon_t *d, uint64_t after) {
  for (conn_t *c = d->conns; c; c = c->next) {
    if (c->save_wait > after && !c->closing) return true;
  }
  return false;
}

static void log_save(pd_daemon_t *d, int rc, size_t len, size_t entries, const char *why) {
  char b[32], e[32];
  fmt_u64(b, sizeof b, len);
  fmt_u64(e, sizeof e, entries);
  if (rc == 0) {
    LOG(d, PD_LOG_INFO, "book saved", "reason", why, "bytes", b, "entries", e);
  } else {
    LOG(d, PD_LOG_ERROR, "book save failed", "reason", why, "error", pd_strerror(rc));
  }
}

static void save_after(uv_work_t *w, int status) {
  save_job_t *job = w->data;
  pd_daemon_t *d = job->d;
  int rc = status == UV_ECANCELED ? PD_EIO : job->rc;
  pd_node_note_save(d->node, rc, rc < 0 ? pd_strerror(rc) : NULL, job->len, job->entries,
                    wall_now());
  log_save(d, rc, job->len, job->entries, job->why);
  uint64_t id = job->id;
  free(job->buf);
  free(job);
  d->saving = false;
  if (d->stopping) {
    finish_stop(d);
    return;
  }
  complete_waiters(d, id);
  if (anyone_waiting(d, id)) start_save(d, "api");
}

/* Encode on the loop thread, write on the thread pool. */
static void start_save(pd_daemon_t *d, const char *why) {
  if (d->saving || d->stopping) return;
  int64_t now = wall_now();
  save_job_t *job = calloc(1, sizeof *job);
  int rc = job ? 0 : PD_ENOMEM;
  if (job) {
    pd_book_t *b = pd_node_book(d->node);
    job->d = d;
    job->why = why;
    job->entries = pd_book_size(b);
    rc = pd_bookstore_encode(b, now, &job->buf, &job->len);
  }
  d->save_started++;
  if (rc == 0) {
    job->id = d->save_started;
    job->work.data = job;
    rc = uv_queue_work(&d->loop, &job->work, save_work, save_after);
    if (rc == 0) {
      d->saving = true;
      LOG(d, PD_LOG_DEBUG, "book save started", "reason", why);
      return;
    }
  }
  /* could not even start: record the failure and answer the waiters */
  pd_node_note_save(d->node, rc, pd_strerror(rc), 0, 0, now);
  log_save(d, rc, 0, 0, why);
  if (job) free(job->buf);
  free(job);
  complete_waiters(d, d->save_started);
}

/* Synchronous save (shutdown). */
static int save_now(pd_daemon_t *d, const char *why) {
  int64_t now = wall_now();
  pd_book_t *b = pd_node_book(d->node);
  size_t entries = pd_book_size(b);
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_bookstore_encode(b, now, &buf, &len);
  if (rc == 0) rc = pd_fs_write_atomic(d->cfg.data_dir, PD_DAEMON_BOOK_FILE, buf, len, 0600);
  free(buf);
  pd_node_note_save(d->node, rc, rc < 0 ? pd_strerror(rc) : NULL, len, entries, now);
  log_save(d, rc, len, entries, why);
  return rc;
}

/* -------------------------------------------------------- connections */

static void conn_on_close(uv_handle_t *h) {
  conn_t *c = h->data;
  if (--c->open_handles > 0) return;
  pd_http_destroy(c->http);
  if (c->have_resp) pd_api_response_free(&c->resp);
  if (c->rjob) c->rjob->c = NULL; /* the job finishes on its own */
  free(c);
}

static void conn_close(conn_t *c) {
  if (c->closing) return;
  c->closing = true;
  pd_daemon_t *d = c->d;
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    d->conns = c->next;
  }
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  d->nconns--;
  uv_close((uv_handle_t *)&c->tcp, conn_on_close);
  uv_close((uv_handle_t *)&c->timer, conn_on_close);
}

static void conn_arm_timer(conn_t *c, uint64_t ms);

static void conn_on_timeout(uv_timer_t *t) {
  conn_t *c = t->data;
  LOG(c->d, PD_LOG_DEBUG, "api connection timed out", "peer", c->peer);
  conn_close(c);
}

static void conn_arm_timer(conn_t *c, uint64_t ms) {
  if (c->closing) return;
  uv_timer_start(&c->timer, conn_on_timeout, ms, 0);
}

static void alloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  conn_t *c = h->data;
  buf->base = c->d->readbuf;
  buf->len = sizeof c->d->readbuf;
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf);

static void conn_read_start(conn_t *c) {
  if (c->closing || c->reading) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, alloc_cb, on_read) == 0) c->reading = true;
}

static void conn_read_stop(conn_t *c) {
  if (c->closing || !c->reading) return;
  uv_read_stop((uv_stream_t *)&c->tcp);
  c->reading = false;
}

static void on_shutdown(uv_shutdown_t *req, int status) {
  (void)req;
  (void)status; /* the conn closes on EOF, the linger timer, or a close */
}

static void on_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  conn_t *c = w->c;
  bool track = w->track;
  free(w->head);
  free(w->body);
  free(w);
  if (!track || !c || c->closing) return;
  c->busy = false;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->close_after) {
    if (c->linger) {
      /* drain what the client is still sending, so it reads our reply
       * instead of a reset; bounded in bytes and time */
      if (uv_shutdown(&c->shutdown_req, (uv_stream_t *)&c->tcp, on_shutdown) != 0) {
        conn_close(c);
        return;
      }
      conn_arm_timer(c, LINGER_MS);
      conn_read_start(c);
    } else {
      conn_close(c);
    }
    return;
  }
  conn_arm_timer(c, PD_DAEMON_IDLE_TIMEOUT_MS);
  conn_read_start(c);
  conn_process(c); /* pipelined requests already buffered */
}

/* Write head + body; takes ownership of resp's body. */
static void send_response(conn_t *c, pd_api_response_t *resp, bool keep_alive) {
  if (c->closing) {
    pd_api_response_free(resp);
    return;
  }
  write_req_t *w = calloc(1, sizeof *w);
  char *head = malloc(512);
  if (!w || !head) {
    free(w);
    free(head);
    pd_api_response_free(resp);
    conn_close(c);
    return;
  }
  size_t blen = c->head_only ? 0 : resp->body_len;
  int hl = pd_http_format_head(head, 512, resp->status, resp->content_type, resp->body_len,
                               keep_alive);
  if (hl < 0) hl = pd_http_format_head(head, 512, resp->status, NULL, resp->body_len, keep_alive);
  w->c = c;
  w->track = true;
  w->head = head;
  w->body = resp->body; /* ownership moves to the write */
  resp->body = NULL;
  resp->body_len = 0;
  uv_buf_t bufs[2];
  bufs[0] = uv_buf_init(head, (unsigned)(hl > 0 ? hl : 0));
  bufs[1] = uv_buf_init(w->body ? w->body : head, (unsigned)(w->body ? blen : 0));
  c->busy = true;
  if (!keep_alive) c->close_after = true;
  conn_read_stop(c);
  uv_timer_stop(&c->timer);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, bufs, 2, on_write) != 0) {
    free(w->head);
    free(w->body);
    free(w);
    c->busy = false;
    conn_close(c);
  }
}

static void send_continue(conn_t *c) {
  static const char msg[] = "HTTP/1.1 100 Continue\r\n\r\n";
  write_req_t *w = calloc(1, sizeof *w);
  if (!w) return;
  uv_buf_t b = uv_buf_init((char *)msg, sizeof msg - 1);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_write) != 0) free(w);
}

static void send_error(conn_t *c, int status, const char *msg) {
  pd_api_response_t r;
  memset(&r, 0, sizeof r);
  pd_api_error(&r, status, msg);
  pd_metrics_count_request(pd_node_metrics(c->d->node), r.status);
  c->linger = true;
  c->head_only = false;
  send_response(c, &r, false);
}

static void resolve_finish(resolve_job_t *job) {
  pd_daemon_t *d = job->d;
  pd_api_complete(d->node, wall_now(), &job->resp);
  drain_policy_failures(d);
  conn_t *c = job->c;
  if (c && !c->closing) {
    c->rjob = NULL;
    send_response(c, &job->resp, job->keep_alive);
  } else {
    if (c) c->rjob = NULL;
    pd_api_response_free(&job->resp);
  }
  free(job);
}

static void on_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  resolve_req_t *rr = req->data;
  resolve_job_t *job = rr->job;
  pd_netaddr_t addrs[32];
  memset(addrs, 0, sizeof addrs);
  size_t n = 0;
  if (status == 0) {
    for (struct addrinfo *ai = res; ai && n < sizeof addrs / sizeof addrs[0]; ai = ai->ai_next) {
      pd_netaddr_t a;
      if (pd_netaddr_from_sockaddr(ai->ai_addr, &a) != 0) continue;
      a.port = rr->port;
      bool dup = false;
      for (size_t k = 0; k < n && !dup; k++) dup = pd_netaddr_equal(&addrs[k], &a);
      if (!dup) addrs[n++] = a;
    }
  }
  pd_api_resolved(&job->resp, rr->index, addrs, n, status < 0 ? uv_strerror(status) : NULL);
  if (res) uv_freeaddrinfo(res);
  if (--job->outstanding == 0) resolve_finish(job);
}

/* Start resolving every host name of resp; the connection's response is
 * sent by resolve_finish once all of them have answered. */
static void start_resolve(conn_t *c, pd_api_response_t *resp, bool keep_alive) {
  pd_daemon_t *d = c->d;
  resolve_job_t *job = calloc(1, sizeof *job);
  if (!job) {
    pd_api_complete(d->node, wall_now(), resp); /* every name: not resolved */
    send_response(c, resp, keep_alive);
    return;
  }
  job->c = c;
  job->d = d;
  job->resp = *resp;
  job->keep_alive = keep_alive;
  c->rjob = job;
  size_t names = pd_api_pending_names(&job->resp);
  job->outstanding = names + 1; /* +1 until every request is started */
  struct addrinfo hints;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  for (size_t i = 0; i < names; i++) {
    resolve_req_t *rr = &job->reqs[i];
    rr->job = job;
    rr->index = i;
    rr->req.data = rr;
    const char *host = pd_api_pending_name(&job->resp, i, &rr->port);
    LOG(d, PD_LOG_DEBUG, "resolving host name", "host", host);
    int rc = uv_getaddrinfo(&d->loop, &rr->req, on_resolved, host, NULL, &hints);
    if (rc < 0) {
      pd_api_resolved(&job->resp, i, NULL, 0, uv_strerror(rc));
      job->outstanding--;
    }
  }
  if (--job->outstanding == 0) resolve_finish(job);
}

/* Serve buffered requests one at a time, in order. */
static void conn_process(conn_t *c) {
  pd_daemon_t *d = c->d;
  while (!c->busy && !c->closing && !c->close_after) {
    int rc = pd_http_next(c->http);
    if (pd_http_take_continue(c->http)) send_continue(c);
    if (rc == 0) {
      /* waiting for more: a partial request is on the idle clock too */
      return;
    }
    if (rc < 0) {
      char st[24];
      fmt_i64(st, sizeof st, pd_http_error_status(c->http));
      LOG(d, PD_LOG_DEBUG, "bad api request", "peer", c->peer, "status", st, "error",
          pd_http_error_message(c->http));
      send_error(c, pd_http_error_status(c->http), pd_http_error_message(c->http));
      return;
    }
    const pd_http_request_t *hr = pd_http_request(c->http);
    pd_api_request_t req = {
        .method = hr->method,
        .target = hr->target,
        .body = hr->body_len ? hr->body : NULL,
        .body_len = hr->body_len,
    };
    bool head = strcmp(hr->method, "HEAD") == 0;
    if (head) req.method = "GET";
    c->head_only = head;
    pd_api_response_t resp;
    memset(&resp, 0, sizeof resp);
    pd_api_handle(d->node, &req, wall_now(), &resp);
    if (resp.action == PD_API_ACTION_RELOAD) {
      reload_policies(d, "api");
      pd_api_complete(d->node, wall_now(), &resp);
    }
    drain_policy_failures(d);
    char st[24];
    fmt_i64(st, sizeof st, resp.status);
    LOG(d, PD_LOG_DEBUG, "api request", "peer", c->peer, "method", hr->method, "target",
        hr->target, "status", st);
    bool keep = hr->keep_alive && !d->stopping;
    if (resp.action == PD_API_ACTION_RESOLVE) {
      c->busy = true;
      conn_read_stop(c);
      uv_timer_stop(&c->timer);
      start_resolve(c, &resp, keep);
      return;
    }
    if (resp.action == PD_API_ACTION_SAVE) {
      c->busy = true;
      c->resp = resp;
      c->have_resp = true;
      c->resp_keep_alive = keep;
      c->save_wait = d->save_started + 1; /* a save that starts from now on */
      conn_read_stop(c);
      uv_timer_stop(&c->timer);
      start_save(d, "api");
      return;
    }
    send_response(c, &resp, keep);
  }
}

static void on_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  conn_t *c = s->data;
  if (c->closing) return;
  if (nread < 0) {
    conn_close(c); /* EOF or error; pending writes are cancelled */
    return;
  }
  if (nread == 0) return;
  if (c->linger) {
    c->discarded += (size_t)nread;
    if (c->discarded > LINGER_MAX_DISCARD) conn_close(c);
    return;
  }
  /* The clock runs per request, not per read: a request must arrive whole
   * within the timeout (a slow trickle of bytes does not keep it alive). */
  bool started = !pd_http_busy(c->http);
  int rc = pd_http_feed(c->http, buf->base, (size_t)nread);
  if (rc < 0) {
    if (!c->busy) {
      send_error(c, pd_http_error_status(c->http) ? pd_http_error_status(c->http) : 413,
                 "too much data");
    } else {
      conn_close(c);
    }
    return;
  }
  if (started) conn_arm_timer(c, PD_DAEMON_IDLE_TIMEOUT_MS);
  conn_process(c);
}

static void refuse_on_close(uv_handle_t *h) { free(h); }

static void on_connection(uv_stream_t *server, int status) {
  pd_daemon_t *d = server->data;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "api accept failed", "error", uv_strerror(status));
    return;
  }
  if (d->nconns >= PD_DAEMON_MAX_CONNS || d->stopping) {
    uv_tcp_t *t = malloc(sizeof *t);
    if (!t) return;
    uv_tcp_init(&d->loop, t);
    uv_accept(server, (uv_stream_t *)t);
    uv_close((uv_handle_t *)t, refuse_on_close);
    d->refused++;
    char n[32];
    fmt_u64(n, sizeof n, d->refused);
    LOG(d, PD_LOG_WARN, "api connection refused: too many connections", "refused_total", n);
    return;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return;
  c->d = d;
  if (pd_http_create(&c->http, PD_HTTP_MAX_HEADER, PD_API_MAX_BODY) != 0) {
    free(c);
    return;
  }
  uv_tcp_init(&d->loop, &c->tcp);
  uv_timer_init(&d->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->next = d->conns;
  if (d->conns) d->conns->prev = c;
  d->conns = c;
  d->nconns++;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0) {
    conn_close(c);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
    fmt_sockaddr(&ss, c->peer, sizeof c->peer);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  conn_arm_timer(c, PD_DAEMON_IDLE_TIMEOUT_MS);
  conn_read_start(c);
}

/* A peer connection we cannot take: accept and close at once. */
static void p2p_refuse(pd_daemon_t *d, uv_stream_t *server) {
  uv_tcp_t *t = malloc(sizeof *t);
  if (!t) return;
  uv_tcp_init(&d->loop, t);
  uv_accept(server, (uv_stream_t *)t);
  uv_close((uv_handle_t *)t, refuse_on_close);
}

static void on_handle_closed(uv_handle_t *h);

/* ----------------------------------------------------- p2p connections
 *
 * Every peer socket is a pconn: a TCP handle and a timer (connect timeout,
 * then the flush deadline of a close), freed in the close callback of the
 * last of the two. The connection manager (netmgr) names it by a conn id;
 * `dead` means the id has ended on the manager's side (CLOSE or on_closed
 * already happened), so no further event is reported for it. */

#define PCONN_BUCKETS 1024
#define CLOSE_FLUSH_MS 2000 /* a GOODBYE gets this long to drain before the close */

typedef struct pconn {
  uv_tcp_t tcp; /* first: handle->data is the pconn too */
  uv_timer_t timer;
  uv_connect_t creq;
  uv_shutdown_t sreq;
  pd_daemon_t *d;
  uint64_t id;
  pd_netaddr_t addr;
  struct pconn *prev, *next; /* all pconns */
  struct pconn *hnext;       /* id bucket */
  size_t queued;             /* bytes handed to uv_write and not yet written */
  int open_handles;
  bool in_map;      /* reachable by id */
  bool dialing;     /* uv_tcp_connect outstanding */
  bool timed_out;   /* the connect timer fired */
  bool closing;     /* uv_close called */
  bool draining;    /* CLOSE received: flushing, then close */
  bool reading;
} pconn_t;

typedef struct pwrite {
  uv_write_t req;
  pconn_t *c;
  size_t len;
  uint8_t data[]; /* copy of the frame bytes */
} pwrite_t;

typedef struct presolve {
  uv_getaddrinfo_t req;
  pd_daemon_t *d;
  uint64_t token;
  uint16_t port;
  struct presolve *prev, *next;
} presolve_t;

static void net_flush(pd_daemon_t *d);

/* Unix time in ms, the network side's clock. */
static int64_t wall_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

static pconn_t *pconn_find(pd_daemon_t *d, uint64_t id) {
  for (pconn_t *c = d->pbuckets[id % PCONN_BUCKETS]; c; c = c->hnext) {
    if (c->id == id) return c;
  }
  return NULL;
}

static void pconn_map_add(pd_daemon_t *d, pconn_t *c) {
  size_t b = c->id % PCONN_BUCKETS;
  c->hnext = d->pbuckets[b];
  d->pbuckets[b] = c;
  c->in_map = true;
}

static void pconn_map_del(pd_daemon_t *d, pconn_t *c) {
  if (!c->in_map) return;
  pconn_t **pp = &d->pbuckets[c->id % PCONN_BUCKETS];
  while (*pp && *pp != c) pp = &(*pp)->hnext;
  if (*pp) *pp = c->hnext;
  c->hnext = NULL;
  c->in_map = false;
}

static pconn_t *pconn_new(pd_daemon_t *d) {
  pconn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->d = d;
  uv_tcp_init(&d->loop, &c->tcp);
  uv_timer_init(&d->loop, &c->timer);
  c->tcp.data = c;
  c->timer.data = c;
  c->open_handles = 2;
  c->next = d->pconns;
  if (d->pconns) d->pconns->prev = c;
  d->pconns = c;
  d->npconns++;
  return c;
}

static void pconn_on_close(uv_handle_t *h) {
  pconn_t *c = h->data;
  if (--c->open_handles > 0) return;
  free(c);
}

/* Close the socket now (pending writes are cancelled). The id must already
 * be dead on the manager's side or be reported by the caller. */
static void pconn_close(pconn_t *c) {
  if (c->closing) return;
  c->closing = true;
  pd_daemon_t *d = c->d;
  pconn_map_del(d, c);
  if (c->prev) {
    c->prev->next = c->next;
  } else {
    d->pconns = c->next;
  }
  if (c->next) c->next->prev = c->prev;
  c->prev = c->next = NULL;
  d->npconns--;
  uv_close((uv_handle_t *)&c->tcp, pconn_on_close);
  uv_close((uv_handle_t *)&c->timer, pconn_on_close);
}

/* The socket failed or the remote went away: tell the manager, close. */
static void pconn_lost(pconn_t *c) {
  pd_daemon_t *d = c->d;
  bool report = c->in_map && !c->draining && d->net && !d->stopping;
  uint64_t id = c->id;
  pconn_close(c);
  if (report) {
    pd_netmgr_on_closed(d->net, id, wall_now_ms());
    net_flush(d);
  }
}

static void palloc_cb(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  pconn_t *c = h->data;
  buf->base = c->d->readbuf;
  buf->len = sizeof c->d->readbuf;
}

static void pon_read(uv_stream_t *s, ssize_t nread, const uv_buf_t *buf) {
  pconn_t *c = s->data;
  pd_daemon_t *d = c->d;
  if (c->closing) return;
  if (nread < 0) {
    if (c->draining) {
      pconn_close(c);
    } else {
      pconn_lost(c);
    }
    return;
  }
  if (nread == 0 || c->draining || !c->in_map || !d->net || d->stopping) return;
  pd_netmgr_on_bytes(d->net, c->id, (const uint8_t *)buf->base, (size_t)nread, wall_now_ms());
  net_flush(d);
}

static void pconn_read_start(pconn_t *c) {
  if (c->closing || c->reading) return;
  if (uv_read_start((uv_stream_t *)&c->tcp, palloc_cb, pon_read) == 0) c->reading = true;
}

static void pon_write(uv_write_t *req, int status) {
  pwrite_t *w = (pwrite_t *)req;
  pconn_t *c = w->c;
  c->queued -= w->len;
  free(w);
  if (c->closing) return;
  if (status < 0) {
    if (c->draining) {
      pconn_close(c);
    } else {
      pconn_lost(c);
    }
    return;
  }
  if (c->draining && c->queued == 0) pconn_close(c);
}

/* Write bytes: straight to the socket when nothing is queued, the rest (or
 * all) copied into a uv_write. The queue is bounded: a peer that does not
 * read is dropped rather than allowed to grow our memory. Returns false
 * when the connection had to be dropped. */
static bool pconn_send(pconn_t *c, const uint8_t *data, size_t len) {
  pd_daemon_t *d = c->d;
  if (c->closing || len == 0) return true;
  size_t off = 0;
  if (c->queued == 0 && uv_stream_get_write_queue_size((uv_stream_t *)&c->tcp) == 0) {
    uv_buf_t b = uv_buf_init((char *)data, (unsigned)len);
    int n = uv_try_write((uv_stream_t *)&c->tcp, &b, 1);
    if (n > 0) off = (size_t)n;
    else if (n < 0 && n != UV_EAGAIN) return false;
  }
  if (off == len) return true;
  size_t rest = len - off;
  if (c->queued + rest > PD_DAEMON_MAX_WRITE_QUEUE) {
    char a[80], q[32];
    pd_netaddr_format(&c->addr, a, sizeof a);
    fmt_u64(q, sizeof q, c->queued + rest);
    LOG(d, PD_LOG_INFO, "peer dropped: not reading (write queue full)", "peer", a, "queued", q);
    d->slow_readers++;
    return false;
  }
  pwrite_t *w = malloc(sizeof *w + rest);
  if (!w) return false;
  w->c = c;
  w->len = rest;
  memcpy(w->data, data + off, rest);
  uv_buf_t b = uv_buf_init((char *)w->data, (unsigned)rest);
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, pon_write) != 0) {
    free(w);
    return false;
  }
  c->queued += rest;
  return true;
}

static void pon_shutdown(uv_shutdown_t *req, int status) {
  (void)status;
  pconn_t *c = req->data;
  if (!c->closing) pconn_close(c);
}

static void pon_flush_timeout(uv_timer_t *t) {
  pconn_t *c = t->data;
  pconn_close(c);
}

/* CLOSE from the manager: the id is dead; flush what is queued (GOODBYE),
 * bounded in time, then close. */
static void pconn_drain(pconn_t *c) {
  if (c->closing || c->draining) return;
  c->draining = true;
  pconn_map_del(c->d, c);
  if (c->dialing || c->queued == 0) {
    pconn_close(c);
    return;
  }
  c->sreq.data = c;
  if (uv_shutdown(&c->sreq, (uv_stream_t *)&c->tcp, pon_shutdown) != 0) {
    pconn_close(c);
    return;
  }
  uv_timer_start(&c->timer, pon_flush_timeout, CLOSE_FLUSH_MS, 0);
}

static enum pd_dial_outcome dial_outcome_of(int status) {
  switch (status) {
  case UV_ECONNREFUSED:
  case UV_ECONNRESET:
  case UV_ECONNABORTED: return PD_DIAL_REFUSED;
  case UV_ETIMEDOUT:
  case UV_ECANCELED: return PD_DIAL_TIMEOUT;
  case UV_ENETUNREACH:
  case UV_EHOSTUNREACH:
  case UV_ENETDOWN:
  case UV_EADDRNOTAVAIL:
  case UV_EAFNOSUPPORT: return PD_DIAL_UNREACHABLE;
  default: return PD_DIAL_ERROR;
  }
}

static void pon_connect(uv_connect_t *req, int status) {
  pconn_t *c = req->data;
  pd_daemon_t *d = c->d;
  c->dialing = false;
  if (c->closing) return; /* closed under us: connect timeout (already reported) or stop */
  uv_timer_stop(&c->timer);
  if (c->draining) {
    pconn_close(c);
    return;
  }
  if (status < 0) {
    uint64_t id = c->id;
    bool report = c->in_map && d->net && !d->stopping;
    pconn_close(c);
    if (report) {
      char a[80];
      pd_netaddr_format(&c->addr, a, sizeof a);
      LOG(d, PD_LOG_DEBUG, "dial failed", "peer", a, "error", uv_strerror(status));
      pd_netmgr_on_dial_failed(d->net, id, dial_outcome_of(status), wall_now_ms());
      net_flush(d);
    }
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  pconn_read_start(c);
  if (d->net && !d->stopping && c->in_map) {
    pd_netmgr_on_connected(d->net, c->id, wall_now_ms());
    net_flush(d);
  }
}

static void pon_connect_timeout(uv_timer_t *t) {
  pconn_t *c = t->data;
  pd_daemon_t *d = c->d;
  if (c->closing || !c->dialing) return;
  uint64_t id = c->id;
  bool report = c->in_map && d->net && !d->stopping;
  c->timed_out = true;
  pconn_close(c); /* the connect callback runs with UV_ECANCELED */
  if (report) {
    pd_netmgr_on_dial_failed(d->net, id, PD_DIAL_TIMEOUT, wall_now_ms());
    net_flush(d);
  }
}

/* DIAL: connect with a timeout. A dial that cannot even start fails at once. */
static void net_dial(pd_daemon_t *d, uint64_t id, const pd_netaddr_t *addr) {
  pconn_t *c = d->npconns < PD_DAEMON_MAX_PEER_CONNS ? pconn_new(d) : NULL;
  struct sockaddr_storage ss;
  int rc = PD_ENOMEM;
  if (c) {
    c->id = id;
    c->addr = *addr;
    pconn_map_add(d, c);
    rc = pd_netaddr_to_sockaddr(addr, &ss, sizeof ss);
    if (rc >= 0 && d->bind_out) {
      /* connect from our listen IP (the same family only), so that on a
       * host with several addresses the peer sees the one we announce */
      pd_netaddr_t local = d->p2p_bound;
      local.port = 0;
      struct sockaddr_storage ls;
      if (pd_netaddr_to_sockaddr(&local, &ls, sizeof ls) >= 0 && ls.ss_family == ss.ss_family) {
        uv_tcp_bind(&c->tcp, (const struct sockaddr *)&ls, 0);
      }
    }
    if (rc >= 0) {
      c->creq.data = c;
      rc = uv_tcp_connect(&c->creq, &c->tcp, (const struct sockaddr *)&ss, pon_connect);
    }
    if (rc == 0) {
      c->dialing = true;
      uv_timer_start(&c->timer, pon_connect_timeout, PD_DAEMON_CONNECT_TIMEOUT_MS, 0);
      return;
    }
    pconn_close(c);
  }
  pd_netmgr_on_dial_failed(d->net, id, rc < 0 ? dial_outcome_of(rc) : PD_DIAL_ERROR,
                           wall_now_ms());
}

static void presolve_free(presolve_t *r) {
  pd_daemon_t *d = r->d;
  if (r->prev) {
    r->prev->next = r->next;
  } else {
    d->presolves = r->next;
  }
  if (r->next) r->next->prev = r->prev;
  free(r);
}

static void pon_resolved(uv_getaddrinfo_t *req, int status, struct addrinfo *res) {
  presolve_t *r = req->data;
  pd_daemon_t *d = r->d;
  pd_netaddr_t addrs[16];
  size_t n = 0;
  if (status == 0) {
    for (struct addrinfo *ai = res; ai && n < 16; ai = ai->ai_next) {
      pd_netaddr_t a;
      if (pd_netaddr_from_sockaddr(ai->ai_addr, &a) != 0) continue;
      a.port = r->port;
      bool dup = false;
      for (size_t k = 0; k < n && !dup; k++) dup = pd_netaddr_equal(&addrs[k], &a);
      if (!dup) addrs[n++] = a;
    }
  }
  if (res) uv_freeaddrinfo(res);
  uint64_t token = r->token;
  presolve_free(r);
  if (!d->net || d->stopping) return;
  char nn[16];
  fmt_u64(nn, sizeof nn, n);
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "cannot resolve seed", "error", uv_strerror(status));
  } else {
    LOG(d, PD_LOG_DEBUG, "seed resolved", "addresses", nn);
  }
  pd_netmgr_on_resolved(d->net, token, addrs, n, wall_now_ms());
  net_flush(d);
}

static void net_resolve(pd_daemon_t *d, uint64_t token, const char *host, uint16_t port) {
  presolve_t *r = calloc(1, sizeof *r);
  int rc = PD_ENOMEM;
  if (r) {
    r->d = d;
    r->token = token;
    r->port = port;
    r->req.data = r;
    r->next = d->presolves;
    if (d->presolves) d->presolves->prev = r;
    d->presolves = r;
    struct addrinfo hints;
    memset(&hints, 0, sizeof hints);
    hints.ai_family = AF_UNSPEC;
    hints.ai_socktype = SOCK_STREAM;
    LOG(d, PD_LOG_DEBUG, "resolving seed", "host", host);
    rc = uv_getaddrinfo(&d->loop, &r->req, pon_resolved, host, NULL, &hints);
    if (rc == 0) return;
    presolve_free(r);
  }
  LOG(d, PD_LOG_WARN, "cannot resolve", "host", host, "error",
      rc < 0 && rc > -10000 ? uv_strerror(rc) : pd_strerror(rc));
  pd_netmgr_on_resolved(d->net, token, NULL, 0, wall_now_ms());
}

static void on_net_timer(uv_timer_t *t);

/* Perform every action the manager has queued, then re-arm its timer. */
static void net_flush(pd_daemon_t *d) {
  if (!d->net || d->flushing) return;
  d->flushing = true;
  pd_netmgr_action_t a;
  while (pd_netmgr_poll(d->net, &a)) {
    switch (a.type) {
    case PD_NETMGR_A_DIAL:
      if (d->stopping) {
        pd_netmgr_on_dial_failed(d->net, a.conn_id, PD_DIAL_ERROR, wall_now_ms());
      } else {
        pd_netaddr_t addr = a.dial.target.addr;
        net_dial(d, a.conn_id, &addr);
      }
      break;
    case PD_NETMGR_A_SEND: {
      pconn_t *c = pconn_find(d, a.conn_id);
      if (!c || c->draining) break;
      if (!pconn_send(c, a.send.data, a.send.len)) {
        uint64_t id = c->id;
        pconn_close(c);
        pd_netmgr_on_closed(d->net, id, wall_now_ms());
      }
      break;
    }
    case PD_NETMGR_A_CLOSE: {
      pconn_t *c = pconn_find(d, a.conn_id);
      const char *reason = a.close.reason ? a.close.reason : "?";
      if (c) {
        char addr[80];
        pd_netaddr_format(&c->addr, addr, sizeof addr);
        LOG(d, a.close.misbehaved ? PD_LOG_INFO : PD_LOG_DEBUG, "peer closed", "peer", addr,
            "reason", reason, "misbehaved", a.close.misbehaved ? "true" : "false");
        pconn_drain(c);
      }
      break;
    }
    case PD_NETMGR_A_RESOLVE: {
      char host[PD_HOST_MAX + 1];
      pd_node_copy_text(host, sizeof host, a.resolve.host);
      net_resolve(d, a.resolve.token, host, a.resolve.port);
      break;
    }
    }
  }
  d->flushing = false;
  if (d->stopping) return;
  int64_t next = pd_netmgr_next_deadline_ms(d->net);
  if (next == INT64_MAX) {
    uv_timer_stop(&d->net_timer);
  } else {
    int64_t wait = next - wall_now_ms();
    if (wait < 0) wait = 0;
    if (wait > 3600000) wait = 3600000;
    uv_timer_start(&d->net_timer, on_net_timer, (uint64_t)wait, 0);
  }
}

static void on_net_timer(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (!d->net || d->stopping) return;
  pd_netmgr_on_tick(d->net, wall_now_ms());
  net_flush(d);
}

static void on_p2p_connection(uv_stream_t *server, int status) {
  pd_daemon_t *d = server->data;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "p2p accept failed", "error", uv_strerror(status));
    return;
  }
  if (!d->net || d->stopping || d->npconns >= PD_DAEMON_MAX_PEER_CONNS) {
    p2p_refuse(d, server);
    return;
  }
  pconn_t *c = pconn_new(d);
  if (!c) {
    p2p_refuse(d, server);
    return;
  }
  struct sockaddr_storage ss;
  int sl = sizeof ss;
  if (uv_accept(server, (uv_stream_t *)&c->tcp) != 0 ||
      uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) != 0 ||
      pd_netaddr_from_sockaddr(&ss, &c->addr) != 0) {
    pconn_close(c);
    return;
  }
  uint64_t id = 0;
  pd_netmgr_refuse_t v = pd_netmgr_on_inbound(d->net, &c->addr, wall_now_ms(), &id);
  if (v != PD_NETMGR_ACCEPT) {
    char a[80];
    pd_netaddr_format(&c->addr, a, sizeof a);
    LOG(d, PD_LOG_DEBUG, "inbound peer refused", "peer", a, "reason", pd_netmgr_refuse_name(v));
    pconn_close(c);
    return;
  }
  c->id = id;
  pconn_map_add(d, c);
  uv_tcp_nodelay(&c->tcp, 1);
  pconn_read_start(c);
  net_flush(d);
}

/* ------------------------------------------- the API's view of the network */

static size_t net_peers_view(void *ud, int64_t now, pd_node_peer_info_t *out, size_t cap) {
  pd_daemon_t *d = ud;
  if (!d->net) return 0;
  (void)now;
  int64_t now_ms = wall_now_ms();
  size_t total = pd_netmgr_peers(d->net, now_ms, NULL, 0);
  size_t want = total < cap ? total : cap;
  if (want == 0) return total;
  pd_netmgr_peer_info_t *tmp = calloc(want, sizeof *tmp);
  if (!tmp) return 0;
  size_t got = pd_netmgr_peers(d->net, now_ms, tmp, want);
  if (got > want) got = want;
  for (size_t i = 0; i < got; i++) {
    pd_node_peer_info_t *o = &out[i];
    const pd_netmgr_peer_info_t *p = &tmp[i];
    memset(o, 0, sizeof *o);
    if (p->has_id) pd_node_id_format(p->id, o->id, sizeof o->id);
    pd_netaddr_format(&p->addr, o->addr, sizeof o->addr);
    o->direction = pd_dialer_dir_name(p->dir);
    o->since = p->since_ms / 1000;
    o->bytes_in = p->bytes_in;
    o->bytes_out = p->bytes_out;
    o->latency_ms = p->latency_ms;
    o->score = p->score;
  }
  free(tmp);
  return total;
}

static void net_counters_view(void *ud, pd_metrics_net_t *out) {
  pd_daemon_t *d = ud;
  pd_netmgr_counters_t *k = &d->net_counters;
  if (d->net) pd_netmgr_counters(d->net, k);
  out->connections_inbound = k->dialer.connected[PD_CONN_INBOUND];
  out->connections_outbound = k->dialer.connected[PD_CONN_OUTBOUND];
  out->ndials = PD_DIAL_OUTCOME_COUNT;
  out->dial_names = d->dial_names;
  out->dials = k->dialer.dials;
  out->ntypes = PD_WIRE_TYPE_COUNT;
  out->type_names = d->type_names;
  out->frames_in = k->frames_in;
  out->frames_out = k->frames_out;
  out->nreasons = PD_NETMGR_REJ_COUNT;
  out->reason_names = d->reason_names;
  out->rejected = k->rejected;
}

/* ------------------------------------------------------------ anchors */

#define ANCHORS_MAX_FILE (64 * 1024)

/* anchors.json: {"format":"peerd-anchors","version":1,
 *                "anchors":[{"addr":"1.2.3.4:7411","id":"<40 hex>"},...]}
 * Missing: none. Unreadable or malformed: logged and ignored (it is only a
 * hint for the first dials), never fatal. Returns the number loaded. */
static size_t load_anchors(pd_daemon_t *d, pd_dial_target_t *out, size_t cap) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_ANCHORS_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) return 0;
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, ANCHORS_MAX_FILE, &buf, &len);
  if (rc == -ENOENT) return 0;
  if (rc < 0) {
    LOG(d, PD_LOG_WARN, "cannot read anchors; ignoring them", "path", path, "error",
        pd_strerror(rc));
    return 0;
  }
  json_error_t jerr;
  json_t *doc = json_loadb(buf, len, 0, &jerr);
  free(buf);
  json_t *list = doc ? json_object_get(doc, "anchors") : NULL;
  if (!doc || !json_is_array(list) ||
      json_integer_value(json_object_get(doc, "version")) != 1) {
    LOG(d, PD_LOG_WARN, "anchors file malformed; ignoring it", "path", path);
    json_decref(doc);
    return 0;
  }
  size_t n = 0, i;
  json_t *e;
  json_array_foreach(list, i, e) {
    if (n >= cap) break;
    const char *as = json_string_value(json_object_get(e, "addr"));
    const char *ids = json_string_value(json_object_get(e, "id"));
    pd_dial_target_t t;
    memset(&t, 0, sizeof t);
    if (!as || pd_netaddr_parse(as, 0, &t.addr, NULL, NULL, NULL) < 0) continue;
    if (ids && pd_node_id_parse(ids, strlen(ids), t.id) == 0) t.has_id = true;
    out[n++] = t;
  }
  json_decref(doc);
  char nn[16];
  fmt_u64(nn, sizeof nn, n);
  LOG(d, PD_LOG_INFO, "anchors loaded", "path", path, "anchors", nn);
  return n;
}

static void save_anchors(pd_daemon_t *d) {
  pd_dial_target_t list[PD_DIALER_MAX_ANCHORS];
  size_t n = pd_netmgr_anchors(d->net, list, PD_DIALER_MAX_ANCHORS);
  if (n > PD_DIALER_MAX_ANCHORS) n = PD_DIALER_MAX_ANCHORS;
  json_t *doc = json_object();
  json_t *arr = json_array();
  int rc = (doc && arr) ? 0 : PD_ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    char a[80], id[PD_NODE_ID_HEXLEN + 1];
    json_t *e = json_object();
    if (!e) {
      rc = PD_ENOMEM;
      break;
    }
    pd_netaddr_format(&list[i].addr, a, sizeof a);
    json_object_set_new(e, "addr", json_string(a));
    if (list[i].has_id) {
      pd_node_id_format(list[i].id, id, sizeof id);
      json_object_set_new(e, "id", json_string(id));
    }
    json_array_append_new(arr, e);
  }
  char *text = NULL;
  if (rc == 0) {
    json_object_set_new(doc, "format", json_string("peerd-anchors"));
    json_object_set_new(doc, "version", json_integer(1));
    json_object_set(doc, "anchors", arr);
    text = json_dumps(doc, JSON_COMPACT);
    if (!text) rc = PD_ENOMEM;
  }
  if (rc == 0) {
    size_t tl = strlen(text);
    text[tl] = '\n'; /* json_dumps' NUL becomes the final newline */
    rc = pd_fs_write_atomic(d->cfg.data_dir, PD_DAEMON_ANCHORS_FILE, text, tl + 1, 0600);
  }
  free(text);
  json_decref(arr);
  json_decref(doc);
  char nn[16];
  fmt_u64(nn, sizeof nn, n);
  if (rc == 0) {
    LOG(d, PD_LOG_INFO, "anchors saved", "anchors", nn);
  } else {
    LOG(d, PD_LOG_WARN, "cannot save anchors", "error", pd_strerror(rc));
  }
}

/* --------------------------------------------------- the network manager */

static void draw_challenge(void *ud, uint8_t out[PD_WIRE_CHALLENGE_LEN]) {
  (void)ud;
  randombytes_buf(out, PD_WIRE_CHALLENGE_LEN);
}

static int start_net(pd_daemon_t *d) {
  for (int i = 0; i < PD_DIAL_OUTCOME_COUNT; i++) {
    d->dial_names[i] = pd_dialer_outcome_name((enum pd_dial_outcome)i);
  }
  for (unsigned i = 0; i < PD_WIRE_TYPE_COUNT; i++) {
    d->type_names[i] = i == 0 ? NULL : pd_wire_type_name(i);
  }
  for (unsigned i = 0; i < PD_NETMGR_REJ_COUNT; i++) {
    d->reason_names[i] = i == PD_WIRE_R_NONE ? NULL : pd_netmgr_reject_name(i);
  }
  pd_netmgr_config_t nc;
  pd_netmgr_config_default(&nc);
  /* Announce the bound address unless it is a wildcard (then none: peers
   * learn us from the address we connect from only as inbound, which the
   * book does not take; use a concrete --listen address in practice). */
  if (pd_netaddr_is_valid(&d->p2p_bound) && d->p2p_bound.port != 0) {
    nc.has_listen = true;
    nc.listen = d->p2p_bound;
  }
  memcpy(nc.magic, d->magic, sizeof nc.magic);
  nc.network = d->cfg.network;
  nc.agent = "peerd/" PEERD_VERSION;
  nc.dialer.max_outbound = d->cfg.max_outbound;
  nc.dialer.max_inbound = d->cfg.max_inbound;
  nc.dialer.min_outbound = d->cfg.min_outbound;
  nc.dialer.allow_private = d->cfg.allow_private;
  nc.dialer.seeds = d->cfg.seeds;
  nc.dialer.nseeds = d->cfg.nseeds;
  nc.dialer.persistent = d->cfg.persistent;
  nc.dialer.npersistent = d->cfg.npersistent;
  nc.dialer.unconditional_ids = d->cfg.unconditional_ids;
  nc.dialer.nunconditional = d->cfg.nunconditional_ids;
  nc.dialer.private_ids = d->cfg.private_ids;
  nc.dialer.nprivate = d->cfg.nprivate_ids;
  if (d->cfg.allow_private) nc.dialer.max_inbound_per_ip = 0; /* loopback test networks */
  if (d->cfg.max_outbound == 0) {
    /* listen only: the dialer (which needs one slot to exist) never runs
     * after its first tick, so nothing is dialled and no feeler is made */
    nc.dialer.max_outbound = 1;
    nc.dialer.min_outbound = 0;
    nc.dialer.feeler_interval = 0;
    nc.dialer.npersistent = 0;
    nc.dialer.nseeds = 0;
    nc.tick_interval_ms = 100LL * 365 * 86400 * 1000;
  }
  nc.peer.handshake_timeout_ms = d->cfg.handshake_timeout_ms;
  nc.seed_mode = d->cfg.seed_mode;
  pd_dial_target_t anchors[PD_DIALER_MAX_ANCHORS];
  nc.nanchors = load_anchors(d, anchors, PD_DIALER_MAX_ANCHORS);
  nc.anchors = anchors;
  nc.challenge_fn = draw_challenge;
  const char *why = NULL;
  int rc = pd_netmgr_create(&d->net, &nc, d->node, &d->ident, &d->rng, wall_now_ms(), &why);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot start the network manager", "error", pd_strerror(rc), "reason",
        why ? why : "?");
    d->net = NULL;
    return -1;
  }
  pd_node_net_ops_t ops = {.peers = net_peers_view, .counters = net_counters_view};
  pd_node_set_net(d->node, &ops, d);
  uv_timer_init(&d->loop, &d->net_timer);
  d->net_timer.data = d;
  d->net_timer_open = true;
  char so[16], si[16], mo[16], ns[16];
  fmt_u64(so, sizeof so, d->cfg.max_outbound);
  fmt_u64(si, sizeof si, d->cfg.max_inbound);
  fmt_u64(mo, sizeof mo, d->cfg.min_outbound);
  fmt_u64(ns, sizeof ns, d->cfg.nseeds);
  LOG(d, PD_LOG_INFO, "network started", "max_outbound", so, "max_inbound", si, "min_outbound",
      mo, "seeds", ns, "seed_mode", d->cfg.seed_mode ? "true" : "false");
  pd_netmgr_on_tick(d->net, wall_now_ms());
  net_flush(d);
  return 0;
}

/* Stop the network: anchors first, then GOODBYE to everyone, close every
 * socket (a GOODBYE gets a bounded time to drain), cancel DNS. */
static void stop_net(pd_daemon_t *d) {
  if (d->net) {
    save_anchors(d);
    pd_netmgr_shutdown(d->net, wall_now_ms());
    bool was = d->stopping;
    d->stopping = false; /* let net_flush perform the CLOSEs */
    net_flush(d);
    d->stopping = was;
    pd_node_set_net(d->node, NULL, NULL);
  }
  if (d->net_timer_open) {
    uv_close((uv_handle_t *)&d->net_timer, on_handle_closed);
    d->net_timer_open = false;
  }
  for (pconn_t *c = d->pconns, *next; c; c = next) {
    next = c->next;
    if (!c->draining) pconn_close(c);
  }
  for (presolve_t *r = d->presolves; r; r = r->next) uv_cancel((uv_req_t *)&r->req);
}

/* ------------------------------------------------------- tick/signals */

static void on_tick(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (d->stopping) return;
  if (pd_node_tick(d->node, wall_now()) && !d->saving) start_save(d, "periodic");
  if (d->net) {
    pd_netmgr_on_tick(d->net, wall_now_ms());
    net_flush(d);
  }
  drain_policy_failures(d);
}

static void on_handle_closed(uv_handle_t *h) { (void)h; }


static void begin_stop(pd_daemon_t *d, const char *signame) {
  LOG(d, PD_LOG_INFO, "shutting down", "signal", signame);
  d->stopping = true;
  uv_timer_stop(&d->tick);
  uv_timer_stop(&d->policy_debounce);
  if (d->server_open) {
    uv_close((uv_handle_t *)&d->server, on_handle_closed);
    d->server_open = false;
  }
  if (d->p2p_open) {
    uv_close((uv_handle_t *)&d->p2p_server, on_handle_closed);
    d->p2p_open = false;
  }
  stop_net(d);
  while (d->conns) conn_close(d->conns);
  if (!d->saving) finish_stop(d);
  /* else save_after() calls finish_stop() */
}

static void finish_stop(pd_daemon_t *d) {
  if (d->stopped) return;
  d->stopped = true;
  int rc = save_now(d, "shutdown");
  if (rc < 0) d->exit_code = 1;
  uv_close((uv_handle_t *)&d->tick, on_handle_closed);
  uv_close((uv_handle_t *)&d->sigterm, on_handle_closed);
  uv_close((uv_handle_t *)&d->sigint, on_handle_closed);
  uv_close((uv_handle_t *)&d->sighup, on_handle_closed);
  uv_close((uv_handle_t *)&d->policy_debounce, on_handle_closed);
  if (d->policy_watching) uv_close((uv_handle_t *)&d->policy_watch, on_handle_closed);
  d->policy_watching = false;
}

static void on_signal(uv_signal_t *s, int signum) {
  pd_daemon_t *d = s->data;
  if (signum == SIGHUP) {
    if (!d->stopping) reload_policies(d, "SIGHUP");
    return;
  }
  const char *name = signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "signal";
  if (d->stopping) {
    LOG(d, PD_LOG_WARN, "second signal: exiting now", "signal", name);
    _exit(1);
  }
  begin_stop(d, name);
}

/* -------------------------------------------------------------- start */

static int new_book(pd_daemon_t *d, pd_book_t **out) {
  uint8_t key[PD_BOOK_KEY_LEN];
  randombytes_buf(key, sizeof key);
  int rc = pd_book_create(out, key, &d->rng, d->cfg.allow_private ? PD_BOOK_ALLOW_PRIVATE : 0);
  sodium_memzero(key, sizeof key);
  return rc;
}

/* Load addrbook.json or start empty; a bad file is moved aside. */
static int load_book(pd_daemon_t *d, int64_t now) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_BOOK_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) {
    LOG(d, PD_LOG_ERROR, "data directory path too long", "dir", d->cfg.data_dir);
    return -1;
  }
  pd_node_config_t ncfg = {
      .allow_private = d->cfg.allow_private,
      .save_interval = d->cfg.save_interval,
      .default_ban_secs = d->cfg.ban_time,
      .policy_limits = {.call_instructions = d->cfg.policy_instructions,
                        .call_deadline_ms = d->cfg.policy_timeout_ms,
                        .memory_bytes = (size_t)d->cfg.policy_memory_mb * 1024 * 1024},
      .policy_clock = hr_clock,
      .policy_dir = d->cfg.policy_dir,
      .private_subnets = d->cfg.private_subnets,
      .nprivate_subnets = d->cfg.nprivate_subnets,
      .private_ids = d->cfg.private_ids,
      .nprivate_ids = d->cfg.nprivate_ids,
  };
  char *buf = NULL;
  size_t len = 0;
  pd_book_t *book = NULL;
  pd_bookstore_report_t report;
  memset(&report, 0, sizeof report);
  char err[256] = "";
  int load_rc = 0; /* < 0: the file was unusable */
  bool loaded = false;
  int rc = pd_fs_read_all(path, PD_DAEMON_MAX_BOOK_FILE, &buf, &len);
  if (rc == -ENOENT) {
    LOG(d, PD_LOG_INFO, "no saved book, starting empty", "path", path);
  } else if (rc < 0) {
    load_rc = rc;
    snprintf(err, sizeof err, "cannot read %s: %s", PD_DAEMON_BOOK_FILE, pd_strerror(rc));
  } else {
    unsigned flags = d->cfg.allow_private ? PD_BOOK_ALLOW_PRIVATE : 0;
    rc = pd_bookstore_decode(buf, len, &d->rng, flags, &book, &report, err, sizeof err);
    if (rc == 0) {
      loaded = true;
    } else {
      load_rc = rc;
      if (!err[0]) snprintf(err, sizeof err, "%s", pd_strerror(rc));
      book = NULL;
    }
  }
  free(buf);

  char moved[PATH_CAP] = "";
  if (load_rc < 0) {
    int mrc = pd_fs_move_aside(d->cfg.data_dir, PD_DAEMON_BOOK_FILE, now, moved, sizeof moved);
    if (mrc < 0) {
      /* never overwrite a file we could not use */
      LOG(d, PD_LOG_ERROR, "book unusable and cannot be moved aside; refusing to start", "path",
          path, "reason", err, "error", pd_strerror(mrc));
      return -1;
    }
    LOG(d, PD_LOG_ERROR, "book load failed; starting with an empty book", "path", path, "reason",
        err, "moved_to", moved);
  }
  if (!book) {
    rc = new_book(d, &book);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "cannot create the book", "error", pd_strerror(rc));
      return -1;
    }
  }
  rc = pd_node_create(&d->node, &ncfg, book, &d->rng, now);
  if (rc < 0) {
    pd_book_destroy(book);
    LOG(d, PD_LOG_ERROR, "cannot create the node", "error", pd_strerror(rc));
    return -1;
  }
  if (load_rc < 0) {
    pd_node_note_load(d->node, load_rc, err, moved, NULL);
  } else if (loaded) {
    pd_node_note_load(d->node, 0, NULL, NULL, &report);
    char e[32], s[32], bl[32], bs[32];
    fmt_u64(e, sizeof e, report.entries_loaded);
    fmt_u64(s, sizeof s, report.entries_skipped);
    fmt_u64(bl, sizeof bl, report.bans_loaded);
    fmt_u64(bs, sizeof bs, report.bans_skipped);
    LOG(d, PD_LOG_INFO, "book loaded", "path", path, "entries", e, "bans", bl);
    if (report.entries_skipped || report.bans_skipped) {
      LOG(d, PD_LOG_WARN, "book entries skipped at load", "entries_skipped", s, "bans_skipped", bs,
          "first_reason", report.first_skip);
    }
  }
  return 0;
}

static int start_api(pd_daemon_t *d) {
  struct sockaddr_storage ss;
  const char *why = NULL;
  int rc = pd_daemon_parse_listen(d->cfg.api, &ss, sizeof ss, &why);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "bad --api address", "addr", d->cfg.api, "reason", why);
    return -1;
  }
  uv_tcp_init(&d->loop, &d->server);
  d->server.data = d;
  d->server_open = true;
  rc = uv_tcp_bind(&d->server, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&d->server, 511, on_connection);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot listen", "addr", d->cfg.api, "error", uv_strerror(rc));
    return -1;
  }
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  uv_tcp_getsockname(&d->server, (struct sockaddr *)&bound, &bl);
  fmt_sockaddr(&bound, d->listen_addr, sizeof d->listen_addr);
  LOG(d, PD_LOG_INFO, "api listening", "addr", d->listen_addr);
  return 0;
}

/* ----------------------------------------------------------- identity */

/* DIR/node_key: load it, or create it (randombytes seed, mode 0600) when it
 * does not exist. A file that exists but does not decode is an error: the
 * node's identity is never silently replaced. */
static int load_identity(pd_daemon_t *d) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_KEY_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) {
    LOG(d, PD_LOG_ERROR, "data directory path too long", "dir", d->cfg.data_dir);
    return -1;
  }
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, PD_IDENTITY_FILE_MAX, &buf, &len);
  bool created = false;
  if (rc == -ENOENT) {
    uint8_t seed[PD_IDENTITY_SEED_LEN];
    randombytes_buf(seed, sizeof seed);
    rc = pd_identity_from_seed(&d->ident, seed);
    sodium_memzero(seed, sizeof seed);
    char text[PD_IDENTITY_FILE_LEN + 1];
    size_t tl = 0;
    if (rc == 0) rc = pd_identity_encode(&d->ident, text, sizeof text, &tl);
    if (rc == 0) rc = pd_fs_write_atomic(d->cfg.data_dir, PD_DAEMON_KEY_FILE, text, tl, 0600);
    sodium_memzero(text, sizeof text);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "cannot create the node key", "path", path, "error", pd_strerror(rc));
      return -1;
    }
    created = true;
  } else if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot read the node key; refusing to start", "path", path, "error",
        pd_strerror(rc));
    return -1;
  } else {
    const char *why = NULL;
    rc = pd_identity_decode(buf, len, &d->ident, &why);
    sodium_memzero(buf, len);
    free(buf);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "node key file is damaged; refusing to start (it is never overwritten)",
          "path", path, "error", pd_strerror(rc), "reason", why ? why : "?");
      return -1;
    }
  }
  pd_node_status_t *st = pd_node_status(d->node);
  pd_node_id_format(d->ident.id, st->node_id, sizeof st->node_id);
  LOG(d, PD_LOG_INFO, created ? "node key created" : "node key loaded", "node_id", st->node_id,
      "path", path);
  return 0;
}

/* ------------------------------------------------------ p2p listener */

static void on_p2p_connection(uv_stream_t *server, int status);

static int start_p2p(pd_daemon_t *d) {
  struct sockaddr_storage ss;
  const char *why = NULL;
  int rc = pd_daemon_parse_listen(d->cfg.listen, &ss, sizeof ss, &why);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "bad --listen address", "addr", d->cfg.listen, "reason", why);
    return -1;
  }
  uv_tcp_init(&d->loop, &d->p2p_server);
  d->p2p_server.data = d;
  d->p2p_open = true;
  rc = uv_tcp_bind(&d->p2p_server, (const struct sockaddr *)&ss, 0);
  if (rc == 0) rc = uv_listen((uv_stream_t *)&d->p2p_server, 511, on_p2p_connection);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot listen for peers", "addr", d->cfg.listen, "error",
        uv_strerror(rc));
    return -1;
  }
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  uv_tcp_getsockname(&d->p2p_server, (struct sockaddr *)&bound, &bl);
  fmt_sockaddr(&bound, d->p2p_addr, sizeof d->p2p_addr);
  pd_netaddr_from_sockaddr(&bound, &d->p2p_bound);
  d->bind_out = pd_netaddr_is_valid(&d->p2p_bound);
  pd_node_status_t *st = pd_node_status(d->node);
  pd_node_copy_text(st->listen, sizeof st->listen, d->p2p_addr);
  char magic[16];
  pd_wire_magic_format(d->magic, magic, sizeof magic);
  LOG(d, PD_LOG_INFO, "p2p listening", "addr", d->p2p_addr, "node_id", st->node_id, "network",
      d->cfg.network, "magic", magic);
  return 0;
}

/* The policy directory must exist; a set that does not load is logged and
 * the C defaults serve until a reload succeeds. */
static int start_policies(pd_daemon_t *d) {
  struct stat st;
  errno = 0;
  if (stat(d->cfg.policy_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    LOG(d, PD_LOG_ERROR, "policy directory missing", "dir", d->cfg.policy_dir, "error",
        errno ? strerror(errno) : "not a directory");
    return -1;
  }
  if (reload_policies(d, "start") < 0) {
    LOG(d, PD_LOG_WARN, "running with the built-in C defaults until a policy set loads", "dir",
        d->cfg.policy_dir);
  }
  return 0;
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int pd_daemon_run(const pd_daemon_config_t *cfg) {
  if (sodium_init() < 0) {
    pd_log(cfg->log_level, PD_LOG_ERROR, "libsodium init failed", (const char *)NULL);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  pd_daemon_t *d = calloc(1, sizeof *d);
  if (!d) return 1;
  d->cfg = *cfg;
  uint64_t seed = cfg->seed;
  if (!cfg->has_seed) randombytes_buf(&seed, sizeof seed);
  pd_rng_seed(&d->rng, seed);
  int rc = uv_loop_init(&d->loop);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "uv_loop_init failed", "error", uv_strerror(rc));
    free(d);
    return 1;
  }
  int64_t now = wall_now();
  char si[32];
  fmt_i64(si, sizeof si, cfg->save_interval);
  LOG(d, PD_LOG_INFO, "peerd starting", "version", PEERD_VERSION, "data_dir", cfg->data_dir,
      "allow_private", cfg->allow_private ? "true" : "false", "save_interval_s", si, "policies",
      cfg->policy_dir);

  int exit_code = 0;
  rc = pd_fs_ensure_dir(cfg->data_dir, 0700);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot create data directory", "dir", cfg->data_dir, "error",
        pd_strerror(rc));
    exit_code = 1;
  }
  pd_daemon_network_magic(cfg->network, d->magic);
  if (exit_code == 0 && load_book(d, now) < 0) exit_code = 1;
  if (exit_code == 0 && load_identity(d) < 0) exit_code = 1;
  if (exit_code == 0 && start_policies(d) < 0) exit_code = 1;
  if (exit_code == 0 && start_api(d) < 0) exit_code = 1;
  if (exit_code == 0 && start_p2p(d) < 0) exit_code = 1;
  if (exit_code == 0 && start_net(d) < 0) exit_code = 1;
  if (exit_code == 0) {
    uv_timer_init(&d->loop, &d->policy_debounce);
    d->policy_debounce.data = d;
    if (uv_fs_event_init(&d->loop, &d->policy_watch) == 0) {
      d->policy_watch.data = d;
      int wrc = uv_fs_event_start(&d->policy_watch, on_policy_change, d->cfg.policy_dir, 0);
      if (wrc == 0) {
        d->policy_watching = true;
      } else {
        uv_close((uv_handle_t *)&d->policy_watch, on_handle_closed);
        LOG(d, PD_LOG_WARN, "cannot watch the policy directory; reload with SIGHUP or the API",
            "dir", d->cfg.policy_dir, "error", uv_strerror(wrc));
      }
    }
    uv_signal_init(&d->loop, &d->sighup);
    d->sighup.data = d;
    uv_signal_start(&d->sighup, on_signal, SIGHUP);
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, 1000, 1000);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    d->sigterm.data = d;
    d->sigint.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    uv_run(&d->loop, UV_RUN_DEFAULT);
    exit_code = d->exit_code;
  } else {
    /* start-up failed: close what was opened (the server, maybe) */
    uv_walk(&d->loop, walk_close, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
  }
  rc = uv_loop_close(&d->loop);
  if (rc != 0) {
    LOG(d, PD_LOG_ERROR, "event loop did not close cleanly", "error", uv_strerror(rc));
    if (exit_code == 0) exit_code = 1;
  }
  if (exit_code == 0) LOG(d, PD_LOG_INFO, "peerd stopped");
  if (d->net) pd_netmgr_destroy(d->net);
  pd_node_destroy(d->node);
  pd_identity_wipe(&d->ident);
  free(d);
  return exit_code;
}
