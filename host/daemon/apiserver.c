/* apiserver — the control API's HTTP server.
 *
 * Owns: the API listeners (--api HOST:PORT over TCP, --api unix:PATH on a
 * unix socket created mode 0660, refused when a live socket is there, a
 * stale one replaced; its clients are trusted as loopback ones) and their
 * connections: accept (refused
 * beyond PD_DAEMON_MAX_CONNS), per-connection HTTP parsing via http.h,
 * requests served one at a time in order (pipelining), idle and
 * slow-request timeouts, responses written with uv_write, lingering after
 * an error reply; the actions a response asks for: host names resolved
 * with uv_getaddrinfo before the response is completed, a policy reload,
 * a save whose completion the connection waits for (dmn_complete_waiters);
 * event streams (GET /v1/events/stream: a connection turned into a
 * server-sent-events stream that stays open, gets the events of the kinds
 * it asked for pushed (dmn_api_stream_push), replay from the ring, a
 * keep-alive comment every DMN_STREAM_KEEPALIVE_MS; a bounded queue per
 * stream: a client that falls DMN_STREAM_QUEUE bytes behind is dropped with
 * a final comment line, so a slow reader never blocks or bloats the daemon;
 * at most DMN_MAX_STREAMS at once); each request's latency (apistats.c).
 * Does not own: what a request means (api.c), HTTP framing (http.c), the
 * save itself (persist.c), reloading (reload.c).
 */
#include <errno.h>
#include <netdb.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <sodium.h>

#include "api.h"
#include "daemon_int.h"
#include "err.h"
#include "fsio.h"
#include "http.h"

#define LINGER_MS 5000                                 /* after an error reply */
#define LINGER_MAX_DISCARD (2 * PD_API_MAX_BODY + 65536) /* bytes drained then */

typedef struct conn {
  union {         /* first: handle->data is the conn too */
    uv_tcp_t tcp; /* a TCP client; every stream call goes through &c->tcp */
    uv_pipe_t pipe; /* a unix-socket client (unix_client) */
  };
  bool unix_client;
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
  uint64_t lookup_wait; /* id of the DHT lookup this conn waits for, 0 = none */
  bool have_resp;
  bool resp_keep_alive;
  pd_api_response_t resp; /* held while a save is performed */
  struct resolve_job *rjob; /* host names being resolved for this conn */
  char peer[64];
  /* the request being served: when it was complete (uv_hrtime, 0: none)
   * and its route label, for the latency histogram */
  uint64_t req_t0;
  const char *req_route;
  /* an event stream (GET /v1/events/stream) */
  bool streaming;
  bool stream_writing;  /* a write of sq's earlier bytes is in flight */
  bool stream_dropping; /* over its queue: the final comment, then close */
  uint32_t stream_kinds;
  char *sq;             /* bytes waiting for the next write */
  size_t sq_len, sq_cap;
  size_t sq_inflight;   /* bytes of the write in flight */
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
  free(c->sq);
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
  if (c->streaming) d->nstreams--;
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
  if (c->req_t0) {
    dmn_api_observe(c->d, c->req_route, (double)(uv_hrtime() - c->req_t0) / 1e9);
    c->req_t0 = 0;
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

/* ------------------------------------------------------ event streams */

static void stream_flush(conn_t *c);

static void on_stream_write(uv_write_t *req, int status) {
  write_req_t *w = (write_req_t *)req;
  conn_t *c = w->c;
  free(w->body);
  free(w);
  if (!c || c->closing) return;
  c->stream_writing = false;
  c->sq_inflight = 0;
  if (status < 0) {
    conn_close(c);
    return;
  }
  if (c->stream_dropping && c->sq_len == 0) {
    conn_close(c); /* the final comment is out */
    return;
  }
  stream_flush(c);
}

/* Write what is queued, one write at a time: the bytes move to the write. */
static void stream_flush(conn_t *c) {
  if (c->closing || c->stream_writing || c->sq_len == 0) return;
  write_req_t *w = calloc(1, sizeof *w);
  if (!w) return; /* the bytes wait for the next push or keep-alive */
  w->c = c;
  w->body = c->sq;
  uv_buf_t b = uv_buf_init(c->sq, (unsigned)c->sq_len);
  c->sq_inflight = c->sq_len;
  c->sq = NULL;
  c->sq_len = c->sq_cap = 0;
  c->stream_writing = true;
  if (uv_write(&w->req, (uv_stream_t *)&c->tcp, &b, 1, on_stream_write) != 0) {
    free(w->body);
    free(w);
    c->stream_writing = false;
    c->sq_inflight = 0;
    conn_close(c);
  }
}

static bool sq_append(conn_t *c, const char *data, size_t len) {
  if (c->sq_len + len > c->sq_cap) {
    size_t cap = c->sq_cap ? c->sq_cap : 4096;
    while (cap < c->sq_len + len) cap *= 2;
    char *p = realloc(c->sq, cap);
    if (!p) return false;
    c->sq = p;
    c->sq_cap = cap;
  }
  memcpy(c->sq + c->sq_len, data, len);
  c->sq_len += len;
  return true;
}

static void stream_on_drop_timeout(uv_timer_t *t) { conn_close(t->data); }

/* A client DMN_STREAM_QUEUE bytes behind is dropped: what waits is
 * discarded, a last comment line says why, and the connection closes once
 * that is written (or after DMN_STREAM_DROP_LINGER_MS if it never is). */
static void stream_drop(conn_t *c) {
  pd_daemon_t *d = c->d;
  c->stream_dropping = true;
  c->sq_len = 0;
  d->streams_dropped++;
  static const char bye[] = ": dropped: the client did not keep up with the events\n\n";
  (void)sq_append(c, bye, sizeof bye - 1);
  char q[24];
  dmn_fmt_u64(q, sizeof q, DMN_STREAM_QUEUE);
  LOG(d, PD_LOG_WARN, "event stream dropped: the client did not keep up", "peer", c->peer,
      "queue_bytes", q);
  uv_timer_stop(&c->timer);
  uv_timer_start(&c->timer, stream_on_drop_timeout, DMN_STREAM_DROP_LINGER_MS, 0);
  stream_flush(c);
}

/* Queue bytes for a stream (false: it was dropped instead). */
static bool stream_queue(conn_t *c, const char *data, size_t len) {
  if (c->closing || c->stream_dropping) return false;
  if (c->sq_len + c->sq_inflight + len > DMN_STREAM_QUEUE || !sq_append(c, data, len)) {
    stream_drop(c);
    return false;
  }
  return true;
}

static void stream_on_keepalive(uv_timer_t *t) {
  conn_t *c = t->data;
  /* only when the line is quiet: nothing queued or being written */
  if (c->streaming && !c->stream_dropping && c->sq_len == 0 && !c->stream_writing) {
    static const char ka[] = ": keep-alive\n\n";
    if (stream_queue(c, ka, sizeof ka - 1)) stream_flush(c);
  }
}

void dmn_api_stream_push(pd_daemon_t *d, const pd_event_rec_t *rec) {
  if (!rec) return;
  for (conn_t *c = d->conns, *next; c; c = next) {
    next = c->next; /* conn_close unlinks c, never frees it here */
    if (!c->streaming || c->closing || !(c->stream_kinds & (1u << rec->kind))) continue;
    if (stream_queue(c, rec->frame, rec->len)) stream_flush(c);
  }
}

/* Turn c into an event stream: the head, the replay, then live events. */
static void stream_start(conn_t *c, pd_api_response_t *resp) {
  pd_daemon_t *d = c->d;
  uint32_t kinds = PD_EVENT_ALL_KINDS;
  bool has_since = false;
  uint64_t since = 0;
  pd_api_stream_params(resp, &kinds, &has_since, &since);
  if (d->nstreams >= DMN_MAX_STREAMS || d->stopping) {
    pd_api_response_free(resp);
    memset(resp, 0, sizeof *resp);
    char msg[80];
    snprintf(msg, sizeof msg, "too many event streams (at most %d)", DMN_MAX_STREAMS);
    pd_api_error(resp, 503, msg);
    pd_metrics_count_request(pd_node_metrics(d->node), resp->status);
    send_response(c, resp, false);
    return;
  }
  pd_api_complete(d->node, dmn_wall_now(), resp); /* counted: 200 */
  if (c->head_only) {
    send_response(c, resp, false);
    return;
  }
  pd_api_response_free(resp);
  if (c->req_t0) {
    dmn_api_observe(d, c->req_route, (double)(uv_hrtime() - c->req_t0) / 1e9);
    c->req_t0 = 0;
  }
  c->streaming = true;
  c->busy = true; /* no further request on this connection */
  c->stream_kinds = kinds;
  d->nstreams++;
  /* A small kernel send buffer: a slow client's backlog then sits in our
   * queue, where it is bounded and seen, not in megabytes of socket buffer. */
  int sndbuf = DMN_STREAM_SNDBUF;
  (void)uv_send_buffer_size((uv_handle_t *)&c->tcp, &sndbuf);
  char head[256];
  int hl = pd_http_format_stream_head(head, sizeof head, "text/event-stream");
  if (hl < 0 || !sq_append(c, head, (size_t)hl)) {
    conn_close(c);
    return;
  }
  stream_flush(c); /* the head is on its way before anything can be dropped */
  if (has_since && d->events) {
    size_t n = pd_event_ring_count(d->events);
    size_t i = pd_event_ring_after(d->events, since);
    /* replay at most half a queue (the newest events): a new stream is
     * never dropped for its replay */
    size_t bytes = 0, from = n;
    while (from > i) {
      const pd_event_rec_t *r = pd_event_ring_get(d->events, from - 1);
      if (!(kinds & (1u << r->kind))) {
        from--;
        continue;
      }
      if (bytes + r->len > DMN_STREAM_QUEUE / 2) break;
      bytes += r->len;
      from--;
    }
    /* say what cannot be replayed: events the ring no longer holds, or
     * older ones left out to keep the replay bounded */
    const pd_event_rec_t *oldest = n ? pd_event_ring_get(d->events, 0) : NULL;
    uint64_t last = pd_event_ring_last_seq(d->events);
    uint64_t gap_to = 0;
    if (from > i) gap_to = from < n ? pd_event_ring_get(d->events, from)->seq - 1 : last;
    else if (oldest && oldest->seq > since + 1) gap_to = oldest->seq - 1;
    else if (!oldest && last > since) gap_to = last;
    if (gap_to > since) {
      char note[96];
      int nl = snprintf(note, sizeof note, ": events %llu to %llu are not replayed\n\n",
                        (unsigned long long)(since + 1), (unsigned long long)gap_to);
      if (nl > 0) (void)stream_queue(c, note, (size_t)nl);
    }
    for (i = from; i < n && !c->stream_dropping; i++) {
      const pd_event_rec_t *r = pd_event_ring_get(d->events, i);
      if (kinds & (1u << r->kind)) (void)stream_queue(c, r->frame, r->len);
    }
  }
  uv_timer_stop(&c->timer);
  if (!c->stream_dropping)
    uv_timer_start(&c->timer, stream_on_keepalive, DMN_STREAM_KEEPALIVE_MS, DMN_STREAM_KEEPALIVE_MS);
  conn_read_start(c); /* to see the client go (EOF); what it sends is ignored */
  char k[16];
  dmn_fmt_u64(k, sizeof k, d->nstreams);
  LOG(d, PD_LOG_DEBUG, "event stream opened", "peer", c->peer, "streams", k);
  stream_flush(c);
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
        /* a unix-socket client is trusted as a loopback one: only a token
         * file's token is asked of it, never the cookie's */
        .token = d->api_token[0] && !(c->unix_client && !d->cfg.api_token_file) ? d->api_token
                                                                              : NULL,
        .last_event_id = hr->has_last_event_id ? hr->last_event_id : NULL,
    };
    bool head = strcmp(hr->method, "HEAD") == 0;
    if (head) req.method = "GET";
    c->head_only = head;
    pd_api_response_t resp;
    memset(&resp, 0, sizeof resp);
    c->req_t0 = uv_hrtime();
    pd_api_handle(d->node, &req, dmn_wall_now(), &resp);
    c->req_route = resp.route;
    if (resp.action == PD_API_ACTION_RELOAD) {
      dmn_reload_policies(d, "api");
      pd_api_complete(d->node, dmn_wall_now(), &resp);
    }
    if (resp.action == PD_API_ACTION_PROMOTE) {
      dmn_policies_promoted(d);
      pd_api_complete(d->node, dmn_wall_now(), &resp);
    }
    if (resp.action == PD_API_ACTION_CHECK) {
      dmn_check_policies(d, &resp);
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
    if (resp.action == PD_API_ACTION_STREAM) {
      stream_start(c, &resp);
      return;
    }
    if (resp.action == PD_API_ACTION_LOOKUP && pd_api_pending_lookup(&resp) && d->dht) {
      c->busy = true;
      c->resp = resp;
      c->have_resp = true;
      c->resp_keep_alive = keep;
      c->lookup_wait = pd_api_pending_lookup(&resp);
      conn_read_stop(c);
      uv_timer_stop(&c->timer);
      dmn_dht_flush(d); /* the lookup's first requests */
      return;
    }
    if (resp.action == PD_API_ACTION_LOOKUP) pd_api_complete(d->node, dmn_wall_now(), &resp);
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
  if (c->streaming) return; /* an event stream: what the client sends is ignored */
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

/* A unix-socket client we cannot take: accept and close at once. */
static bool refuse_unix(pd_daemon_t *d, uv_stream_t *server) {
  uv_pipe_t *p = malloc(sizeof *p);
  if (!p) return false;
  uv_pipe_init(&d->loop, p, 0);
  uv_accept(server, (uv_stream_t *)p);
  uv_close((uv_handle_t *)p, refuse_on_close);
  return true;
}

static void on_connection(uv_stream_t *server, int status) {
  pd_daemon_t *d = server->data;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "api accept failed", "error", uv_strerror(status));
    return;
  }
  bool is_unix = server->type == UV_NAMED_PIPE;
  if (d->nconns >= PD_DAEMON_MAX_CONNS || d->stopping) {
    if (!(is_unix ? refuse_unix(d, server) : dmn_refuse(d, server))) return;
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
  if (is_unix) {
    uv_pipe_init(&d->loop, &c->pipe, 0);
    c->unix_client = true;
  } else {
    uv_tcp_init(&d->loop, &c->tcp);
  }
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
  if (is_unix) {
    snprintf(c->peer, sizeof c->peer, "unix");
  } else {
    struct sockaddr_storage ss;
    int sl = sizeof ss;
    if (uv_tcp_getpeername(&c->tcp, (struct sockaddr *)&ss, &sl) == 0) {
      dmn_fmt_sockaddr(&ss, c->peer, sizeof c->peer);
    }
    uv_tcp_nodelay(&c->tcp, 1);
  }
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

/* The DHT finished lookup `id`: answer the connection that waits for it,
 * or forget the lookup when that connection has gone. */
void dmn_complete_lookup(pd_daemon_t *d, uint64_t id) {
  for (conn_t *c = d->conns; c; c = c->next) {
    if (c->lookup_wait != id || !c->have_resp || c->closing) continue;
    c->lookup_wait = 0;
    c->have_resp = false;
    pd_api_complete(d->node, dmn_wall_now(), &c->resp);
    pd_api_response_t r = c->resp;
    memset(&c->resp, 0, sizeof c->resp);
    send_response(c, &r, c->resp_keep_alive);
    return;
  }
  if (d->dht) pd_dht_lookup_release(d->dht, id);
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
  if (!bound) return 0; /* a unix socket only: its mode is the access control */
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

/* --api unix:PATH: a socket file already there is replaced only when
 * nothing answers on it (a daemon that died); a live one, or anything that
 * is not a socket, is an error. Created mode 0660 (the umask is narrowed
 * around the bind, so it is never wider), removed when the listener
 * closes (libuv unlinks a bound pipe on close). */
static int start_unix_api(pd_daemon_t *d, const char *path) {
  struct stat st;
  if (lstat(path, &st) == 0) {
    if (!S_ISSOCK(st.st_mode)) {
      LOG(d, PD_LOG_ERROR, "cannot listen: the unix socket path exists and is not a socket", "path",
          path);
      return -1;
    }
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    snprintf(sa.sun_path, sizeof sa.sun_path, "%s", path);
    bool live = fd >= 0 && connect(fd, (struct sockaddr *)&sa, sizeof sa) == 0;
    int err = errno;
    if (fd >= 0) close(fd);
    if (live || (fd >= 0 && err != ECONNREFUSED && err != ENOENT)) {
      LOG(d, PD_LOG_ERROR, "cannot listen: the unix socket is in use (another peerd?)", "path",
          path, "error", live ? "it answers" : strerror(err));
      return -1;
    }
    LOG(d, PD_LOG_WARN, "removing a stale unix socket", "path", path);
    unlink(path);
  }
  uv_pipe_init(&d->loop, &d->userver, 0);
  d->userver.data = d;
  d->userver_open = true;
  mode_t old = umask(0117);
  int rc = uv_pipe_bind(&d->userver, path);
  umask(old);
  if (rc == 0 && chmod(path, 0660) != 0) rc = -errno;
  if (rc == 0) rc = uv_listen((uv_stream_t *)&d->userver, 511, on_connection);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot listen", "addr", path, "error", uv_strerror(rc));
    return -1;
  }
  LOG(d, PD_LOG_INFO, "api listening", "addr", path, "transport", "unix", "mode", "0660");
  return 0;
}

void dmn_stop_api_listeners(pd_daemon_t *d) {
  if (d->server_open) {
    uv_close((uv_handle_t *)&d->server, dmn_on_handle_closed);
    d->server_open = false;
  }
  if (d->userver_open) {
    uv_close((uv_handle_t *)&d->userver, dmn_on_handle_closed);
    d->userver_open = false;
  }
}

int dmn_start_api(pd_daemon_t *d) {
  if (d->cfg.api_unix) {
    if (start_unix_api(d, d->cfg.api_unix) < 0) return -1;
    if (!d->cfg.api_tcp_set) return api_token(d, NULL); /* unix only: no TCP listener */
  }
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
