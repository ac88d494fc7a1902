/* transport — the peer-to-peer TCP sockets.
 *
 * Owns: the P2P listener (--listen; an inbound socket is offered to the
 * connection manager, which may refuse it), outbound connects with a
 * timeout (bound to the listen IP when it is not a wildcard), reads handed
 * to the manager, bounded writes (a peer that does not read is dropped),
 * closes (a GOODBYE gets a bounded time to drain); it reports every socket
 * event to the manager and performs its DIAL, SEND and CLOSE actions.
 * Does not own: any decision (netmgr.c: whom to dial, what to send, when
 * to close), the manager's start, stop, timer and seed DNS (network.c).
 */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "daemon_int.h"
#include "err.h"

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
    pd_netmgr_on_closed(d->net, id, dmn_wall_now_ms());
    dmn_net_flush(d);
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
  pd_netmgr_on_bytes(d->net, c->id, (const uint8_t *)buf->base, (size_t)nread, dmn_wall_now_ms());
  dmn_net_flush(d);
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
    dmn_fmt_u64(q, sizeof q, c->queued + rest);
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
      pd_netmgr_on_dial_failed(d->net, id, dial_outcome_of(status), dmn_wall_now_ms());
      dmn_net_flush(d);
    }
    return;
  }
  uv_tcp_nodelay(&c->tcp, 1);
  pconn_read_start(c);
  if (d->net && !d->stopping && c->in_map) {
    pd_netmgr_on_connected(d->net, c->id, dmn_wall_now_ms());
    dmn_net_flush(d);
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
    pd_netmgr_on_dial_failed(d->net, id, PD_DIAL_TIMEOUT, dmn_wall_now_ms());
    dmn_net_flush(d);
  }
}

/* DIAL: connect with a timeout. A dial that cannot even start fails at once. */
void dmn_p2p_dial(pd_daemon_t *d, uint64_t id, const pd_netaddr_t *addr) {
  pconn_t *c = d->npconns < d->max_pconns ? pconn_new(d) : NULL;
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
                           dmn_wall_now_ms());
}

/* SEND: a peer that cannot take the bytes is closed and reported. */
void dmn_p2p_send(pd_daemon_t *d, const pd_netmgr_action_t *a) {
  pconn_t *c = pconn_find(d, a->conn_id);
  if (!c || c->draining) return;
  if (!pconn_send(c, a->send.data, a->send.len)) {
    uint64_t id = c->id;
    pconn_close(c);
    pd_netmgr_on_closed(d->net, id, dmn_wall_now_ms());
  }
}

/* CLOSE: logged, then drained (pconn_drain). */
void dmn_p2p_close(pd_daemon_t *d, const pd_netmgr_action_t *a) {
  pconn_t *c = pconn_find(d, a->conn_id);
  const char *reason = a->close.reason ? a->close.reason : "?";
  if (c) {
    char addr[80];
    pd_netaddr_format(&c->addr, addr, sizeof addr);
    /* the audit line is the core's disconnected / dial_failed event (audit.c) */
    LOG(d, PD_LOG_DEBUG, "peer closed", "peer", addr, "reason", reason, "misbehaved",
        a->close.misbehaved ? "true" : "false");
    pconn_drain(c);
  }
}

/* At stop: close every socket now, but those draining a GOODBYE. */
void dmn_p2p_close_all(pd_daemon_t *d) {
  for (pconn_t *c = d->pconns, *next; c; c = next) {
    next = c->next;
    if (!c->draining) pconn_close(c);
  }
}

static void on_p2p_connection(uv_stream_t *server, int status) {
  pd_daemon_t *d = server->data;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "p2p accept failed", "error", uv_strerror(status));
    return;
  }
  if (!d->net || d->stopping || d->npconns >= d->max_pconns) {
    if (d->net && !d->stopping && (d->pconns_refused++ % 1000) == 0) {
      char n[24], cap[24];
      dmn_fmt_u64(n, sizeof n, d->pconns_refused);
      dmn_fmt_u64(cap, sizeof cap, d->max_pconns);
      LOG(d, PD_LOG_WARN, "peer socket cap reached: connection refused", "cap", cap,
          "refused_total", n);
    }
    dmn_refuse(d, server);
    return;
  }
  pconn_t *c = pconn_new(d);
  if (!c) {
    dmn_refuse(d, server);
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
  pd_netmgr_refuse_t v = pd_netmgr_on_inbound(d->net, &c->addr, dmn_wall_now_ms(), &id);
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
  dmn_net_flush(d);
}

/* ------------------------------------------------------ p2p listener */

int dmn_start_p2p(pd_daemon_t *d) {
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
  dmn_fmt_sockaddr(&bound, d->p2p_addr, sizeof d->p2p_addr);
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
