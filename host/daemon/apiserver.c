/* apiserver — the control API's HTTP server.
 *
 * Owns: the API listener (--api) and its connections: accept (refused
 * beyond PD_DAEMON_MAX_CONNS), per-connection HTTP parsing via http.h,
 * requests served one at a time in order (pipelining), idle and
 * slow-request timeouts, responses written with uv_write, lingering after
 * an error reply; the actions a response asks for: host names resolved
 * with uv_getaddrinfo before the response is completed, a policy reload,
 * a save whose completion the connection waits for (dmn_complete_waiters).
 * Does not own: what a request means (api.c), HTTP framing (http.c), the
 * save itself (persist.c), reloading (reload.c).
 */
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "api.h"
#include "daemon_int.h"
#include "err.h"
#include "fsio.h"
#include "http.h"

#define LINGER_MS 5000                                 /* after an error reply */
#define LINGER_MAX_DISCARD (2 * PD_API_MAX_BODY + 65536) /* bytes drained then */

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

/* -------------------------------------------------------- connections */

static void conn_process(conn_t *c);

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
  pd_api_complete(d->node, dmn_wall_now(), &job->resp);
  dmn_drain_policy_failures(d);
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
    pd_api_complete(d->node, dmn_wall_now(), resp); /* every name: not resolved */
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
      dmn_fmt_i64(st, sizeof st, pd_http_error_status(c->http));
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
        .host = hr->has_host ? hr->host : NULL,
        .origin = hr->has_origin ? hr->origin : NULL,
        .content_type = hr->has_content_type ? hr->content_type : NULL,
        .authorization = hr->has_authorization ? hr->authorization : NULL,
        .token = d->api_token[0] ? d->api_token : NULL,
    };
    bool head = strcmp(hr->method, "HEAD") == 0;
    if (head) req.method = "GET";
    c->head_only = head;
    pd_api_response_t resp;
    memset(&resp, 0, sizeof resp);
    pd_api_handle(d->node, &req, dmn_wall_now(), &resp);
    if (resp.action == PD_API_ACTION_RELOAD) {
      dmn_reload_policies(d, "api");
      pd_api_complete(d->node, dmn_wall_now(), &resp);
    }
    if (resp.action == PD_API_ACTION_PROMOTE) {
      dmn_policies_promoted(d);
      pd_api_complete(d->node, dmn_wall_now(), &resp);
    }
    dmn_drain_policy_failures(d);
    /* A ban (POST /v1/bans, or one an event's reputation verdict applied)
     * disconnects the peers inside it now, not at the next tick. A changed
     * record of ours (PUT /v1/self) goes to the peers now too. */
    if (d->net && !d->stopping) dmn_net_tick(d);
    char st[24];
    dmn_fmt_i64(st, sizeof st, resp.status);
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
      dmn_start_save(d, "api");
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

static void on_connection(uv_stream_t *server, int status) {
  pd_daemon_t *d = server->data;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "api accept failed", "error", uv_strerror(status));
    return;
  }
  if (d->nconns >= PD_DAEMON_MAX_CONNS || d->stopping) {
    if (!dmn_refuse(d, server)) return;
    d->refused++;
    char n[32];
    dmn_fmt_u64(n, sizeof n, d->refused);
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
    dmn_fmt_sockaddr(&ss, c->peer, sizeof c->peer);
  }
  uv_tcp_nodelay(&c->tcp, 1);
  conn_arm_timer(c, PD_DAEMON_IDLE_TIMEOUT_MS);
  conn_read_start(c);
}

/* -------------------------------------------------------- saves, stop */

/* Answer every API connection that waited for save `id` (or an earlier one). */
void dmn_complete_waiters(pd_daemon_t *d, uint64_t id) {
  int64_t now = dmn_wall_now();
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

bool dmn_anyone_waiting(pd_daemon_t *d, uint64_t after) {
  for (conn_t *c = d->conns; c; c = c->next) {
    if (c->save_wait > after && !c->closing) return true;
  }
  return false;
}

void dmn_api_close_all(pd_daemon_t *d) {
  while (d->conns) conn_close(d->conns);
}

/* ----------------------------------------------------------- listener */

/* The bearer token: --api-token-file's, else (an API not on loopback) a
 * random cookie written 0600 in the data directory, as bitcoind does; on
 * loopback without a file, none. */
static int api_token(pd_daemon_t *d, const struct sockaddr_storage *bound) {
  d->api_token[0] = '\0';
  if (d->cfg.api_token_file) {
    char *buf = NULL;
    size_t len = 0;
    int rc = pd_fs_read_all(d->cfg.api_token_file, sizeof d->api_token - 1, &buf, &len);
    while (rc == 0 && len > 0 && (buf[len - 1] == '\n' || buf[len - 1] == '\r' || buf[len - 1] == ' '))
      len--;
    bool ok = rc == 0 && len >= 16;
    for (size_t i = 0; ok && i < len; i++) ok = buf[i] > 0x20 && buf[i] < 0x7f;
    if (ok) {
      memcpy(d->api_token, buf, len);
      d->api_token[len] = '\0';
    }
    if (buf) sodium_memzero(buf, len);
    free(buf);
    if (!ok) {
      LOG(d, PD_LOG_ERROR, "bad --api-token-file: 16..128 printable characters without spaces",
          "path", d->cfg.api_token_file, "error", rc < 0 ? pd_strerror(rc) : "bad token");
      return -1;
    }
    LOG(d, PD_LOG_INFO, "api requires a bearer token", "from", d->cfg.api_token_file);
    return 0;
  }
  pd_netaddr_t a;
  if (pd_netaddr_from_sockaddr(bound, &a) == 0 && pd_netaddr_is_local(&a) && pd_netaddr_is_valid(&a))
    return 0; /* loopback: open, as before */
  uint8_t raw[32];
  randombytes_buf(raw, sizeof raw);
  sodium_bin2hex(d->api_token, sizeof d->api_token, raw, sizeof raw);
  sodium_memzero(raw, sizeof raw);
  char line[80];
  int n = snprintf(line, sizeof line, "%s\n", d->api_token);
  int rc = pd_fs_write_atomic(d->cfg.data_dir, PD_DAEMON_COOKIE_FILE, line, (size_t)n, 0600);
  sodium_memzero(line, sizeof line);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot write the api cookie", "dir", d->cfg.data_dir, "error",
        pd_strerror(rc));
    return -1;
  }
  LOG(d, PD_LOG_WARN, "api is not on loopback: it requires the bearer token in the cookie file",
      "addr", d->listen_addr, "cookie", PD_DAEMON_COOKIE_FILE);
  return 0;
}

int dmn_start_api(pd_daemon_t *d) {
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
  dmn_fmt_sockaddr(&bound, d->listen_addr, sizeof d->listen_addr);
  LOG(d, PD_LOG_INFO, "api listening", "addr", d->listen_addr);
  return api_token(d, &bound);
}
