/* network — the driver's side of the connection manager (netmgr).
 *
 * Owns: starting the manager (its configuration from the daemon's, the
 * anchors, the challenge entropy from libsodium) and stopping it (anchors
 * saved, GOODBYE to everyone, sockets closed, DNS cancelled); draining its
 * actions after every event (dmn_net_flush) and the timer at its next
 * deadline; DNS for seeds (uv_getaddrinfo on libuv's thread pool); the
 * API's view of the network (peers and counters for /v1/peers, /metrics).
 * Does not own: the sockets (transport.c), any decision (netmgr.c),
 * anchors.json (persist.c).
 */
#include <netdb.h>
#include <sys/resource.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "daemon_int.h"
#include "err.h"

/* ----------------------------------------------------------- seed DNS */

typedef struct presolve {
  uv_getaddrinfo_t req;
  pd_daemon_t *d;
  uint64_t token;
  uint16_t port;
  struct presolve *prev, *next;
} presolve_t;

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
  dmn_fmt_u64(nn, sizeof nn, n);
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "cannot resolve seed", "error", uv_strerror(status));
  } else {
    LOG(d, PD_LOG_DEBUG, "seed resolved", "addresses", nn);
  }
  pd_netmgr_on_resolved(d->net, token, addrs, n, dmn_wall_now_ms());
  dmn_net_flush(d);
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
  pd_netmgr_on_resolved(d->net, token, NULL, 0, dmn_wall_now_ms());
}

/* ---------------------------------------------- actions and the timer */

static void on_net_timer(uv_timer_t *t);

/* Perform every action the manager has queued, then re-arm its timer. */
void dmn_net_flush(pd_daemon_t *d) {
  if (!d->net || d->flushing) return;
  d->flushing = true;
  pd_netmgr_action_t a;
  while (pd_netmgr_poll(d->net, &a)) {
    switch (a.type) {
    case PD_NETMGR_A_DIAL:
      if (d->stopping) {
        pd_netmgr_on_dial_failed(d->net, a.conn_id, PD_DIAL_ERROR, dmn_wall_now_ms());
      } else {
        pd_netaddr_t addr = a.dial.target.addr;
        dmn_p2p_dial(d, a.conn_id, &addr);
      }
      break;
    case PD_NETMGR_A_SEND: dmn_p2p_send(d, &a); break;
    case PD_NETMGR_A_CLOSE: dmn_p2p_close(d, &a); break;
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
    int64_t wait = next - dmn_wall_now_ms();
    if (wait < 0) wait = 0;
    if (wait > 3600000) wait = 3600000;
    uv_timer_start(&d->net_timer, on_net_timer, (uint64_t)wait, 0);
  }
}

void dmn_net_tick(pd_daemon_t *d) {
  if (!d->net || d->stopping) return;
  pd_netmgr_on_tick(d->net, dmn_wall_now_ms());
  dmn_net_flush(d);
}

static void on_net_timer(uv_timer_t *t) { dmn_net_tick(t->data); }

/* ------------------------------------------- the API's view of the network */

static size_t net_peers_view(void *ud, int64_t now, pd_node_peer_info_t *out, size_t cap) {
  pd_daemon_t *d = ud;
  if (!d->net) return 0;
  (void)now;
  int64_t now_ms = dmn_wall_now_ms();
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
    o->is_protected = p->is_protected;
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
  out->records_learnt = k->records_learnt;
  out->records_stale = k->records_stale;
  out->records_announced = k->records_announced;
  out->addrs_received = k->addrs_received;
  out->addrs_added = k->addrs_added;
  out->addrs_refused = k->addrs_refused;
  out->bootstraps = k->dialer.bootstraps;
  out->seed_crawls = k->seed_crawls;
  out->inbound_evictions = k->inbound_evictions;
  out->below_min = d->below_warned;
  dmn_process_stats(d, out);
  dmn_events_metrics(d, out);
  dmn_api_stats_metrics(d, out);
}

/* Operator control (DELETE/POST /v1/peers, explain): the manager's actions
 * are flushed after the API request (apiserver.c ticks the network). */
static size_t net_disconnect(void *ud, const pd_netaddr_t *addr, bool any_port, const uint8_t *id,
                             int64_t now, pd_node_closed_t *out, size_t cap) {
  pd_daemon_t *d = ud;
  (void)now;
  if (!d->net || d->stopping) return 0;
  size_t n = pd_netmgr_disconnect(d->net, addr, any_port, id, dmn_wall_now_ms(), out, cap);
  for (size_t i = 0; out && i < n && i < cap; i++)
    LOG(d, PD_LOG_INFO, "peer disconnected on request", "addr", out[i].addr, "peer_id",
        out[i].id[0] ? out[i].id : "unknown", "direction", out[i].direction, "by", "api");
  return n;
}

static int net_connect(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                       const char **why) {
  pd_daemon_t *d = ud;
  (void)now;
  if (!d->net || d->stopping) {
    if (why) *why = "shutting down";
    return PD_EFULL;
  }
  pd_dial_target_t t;
  memset(&t, 0, sizeof t);
  t.addr = *addr;
  if (id) {
    t.has_id = true;
    memcpy(t.id, id, PD_NODE_ID_LEN);
  }
  char a[64];
  pd_netaddr_format(addr, a, sizeof a);
  int rc = pd_netmgr_connect(d->net, &t, dmn_wall_now_ms(), NULL, why);
  if (rc == 0) LOG(d, PD_LOG_INFO, "dialling on request", "addr", a, "by", "api");
  return rc;
}

static void net_dial_state(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                           pd_node_dial_state_t *out) {
  pd_daemon_t *d = ud;
  (void)now;
  pd_dial_target_t t;
  memset(&t, 0, sizeof t);
  t.addr = *addr;
  if (id) {
    t.has_id = true;
    memcpy(t.id, id, PD_NODE_ID_LEN);
  }
  pd_netmgr_dial_state(d->net, &t, dmn_wall_now_ms(), out);
}

void dmn_install_net_views(pd_daemon_t *d) {
  pd_node_net_ops_t ops = {.peers = net_peers_view, .counters = net_counters_view};
  if (d->net) {
    ops.disconnect = net_disconnect;
    ops.connect = net_connect;
    ops.dial_state = net_dial_state;
  }
  pd_node_set_net(d->node, &ops, d);
}

/* --------------------------------------------------- the network manager */

static void draw_challenge(void *ud, uint8_t out[PD_WIRE_CHALLENGE_LEN]) {
  (void)ud;
  randombytes_buf(out, PD_WIRE_CHALLENGE_LEN);
}

int dmn_start_net(pd_daemon_t *d) {
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
  nc.dialer.ipv6_prefix = d->cfg.ipv6_prefix;
  pd_node_set_ipv6_prefix(d->node, d->cfg.ipv6_prefix);
  if (d->cfg.allow_private) { /* loopback test networks */
    nc.dialer.max_inbound_per_ip = 0;
    nc.max_pending_inbound_per_ip = nc.max_pending_inbound_per_group = 0;
  }
  /* --max-outbound 0: dialling off. The dialer never dials or resolves
   * (not at start, not anchors or seeds, not after a close: dialer.h). */
  if (d->cfg.max_outbound == 0) nc.dialer.min_outbound = 0;
  nc.peer.handshake_timeout_ms = d->cfg.handshake_timeout_ms;
  nc.seed_mode = d->cfg.seed_mode;
  pd_dial_target_t anchors[PD_DIALER_MAX_ANCHORS];
  nc.nanchors = dmn_load_anchors(d, anchors, PD_DIALER_MAX_ANCHORS);
  nc.anchors = anchors;
  nc.challenge_fn = draw_challenge;
  const char *why = NULL;
  int rc = pd_netmgr_create(&d->net, &nc, d->node, &d->ident, &d->rng, dmn_wall_now_ms(), &why);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot start the network manager", "error", pd_strerror(rc), "reason",
        why ? why : "?");
    d->net = NULL;
    return -1;
  }
  dmn_install_net_views(d);
  uv_timer_init(&d->loop, &d->net_timer);
  d->net_timer.data = d;
  d->net_timer_open = true;
  /* The socket cap follows the configured limits and the open-file limit. */
  uint64_t want = (uint64_t)d->cfg.max_inbound + d->cfg.max_outbound + PD_DAEMON_PEER_CONN_SLACK;
  struct rlimit rl;
  if (getrlimit(RLIMIT_NOFILE, &rl) == 0 && rl.rlim_cur != RLIM_INFINITY) {
    uint64_t room = rl.rlim_cur > 2 * PD_DAEMON_FD_RESERVE ? rl.rlim_cur - PD_DAEMON_FD_RESERVE
                                                           : PD_DAEMON_FD_RESERVE;
    if (want > room) {
      char w[24], r[24];
      dmn_fmt_u64(w, sizeof w, want);
      dmn_fmt_u64(r, sizeof r, (uint64_t)rl.rlim_cur);
      LOG(d, PD_LOG_WARN, "open-file limit below the connection limits: peer sockets capped",
          "wanted", w, "nofile", r);
      want = room;
    }
  }
  d->max_pconns = (size_t)want;
  char so[16], si[16], mo[16], ns[16], cap[24];
  dmn_fmt_u64(cap, sizeof cap, d->max_pconns);
  dmn_fmt_u64(so, sizeof so, d->cfg.max_outbound);
  dmn_fmt_u64(si, sizeof si, d->cfg.max_inbound);
  dmn_fmt_u64(mo, sizeof mo, d->cfg.min_outbound);
  dmn_fmt_u64(ns, sizeof ns, d->cfg.nseeds);
  LOG(d, PD_LOG_INFO, "network started", "max_outbound", so, "max_inbound", si, "min_outbound",
      mo, "seeds", ns, "seed_mode", d->cfg.seed_mode ? "true" : "false", "peer_socket_cap", cap);
  pd_netmgr_on_tick(d->net, dmn_wall_now_ms());
  dmn_net_flush(d);
  return 0;
}

/* Stop the network: anchors first, then GOODBYE to everyone, close every
 * socket (a GOODBYE gets a bounded time to drain), cancel DNS. */
void dmn_stop_net(pd_daemon_t *d) {
  if (d->net) {
    dmn_save_anchors(d);
    pd_netmgr_shutdown(d->net, dmn_wall_now_ms());
    bool was = d->stopping;
    d->stopping = false; /* let dmn_net_flush perform the CLOSEs */
    dmn_net_flush(d);
    d->stopping = was;
    pd_node_set_net(d->node, NULL, NULL);
  }
  if (d->net_timer_open) {
    uv_close((uv_handle_t *)&d->net_timer, dmn_on_handle_closed);
    d->net_timer_open = false;
  }
  dmn_p2p_close_all(d);
  for (presolve_t *r = d->presolves; r; r = r->next) uv_cancel((uv_req_t *)&r->req);
}

/* The audit events (and so the log) say when outbound peers stay under
 * --min-outbound: below_minimum (a warning) once the shortfall has lasted
 * --below-min-warn seconds, again every 10 minutes while it lasts, and
 * minimum_recovered when the minimum is back. The decision is the
 * driver's: its thresholds are the daemon's flags and the wall clock it
 * ticks by; the core's deadlines (and so the lab's runs) are untouched. */
void dmn_watch_outbound(pd_daemon_t *d, int64_t now) {
  if (!d->net || d->stopping || d->cfg.min_outbound == 0 || d->cfg.max_outbound == 0) return;
  pd_netmgr_counters(d->net, &d->net_counters);
  uint32_t out = d->net_counters.dialer.connected[PD_CONN_OUTBOUND];
  uint32_t in = d->net_counters.dialer.connected[PD_CONN_INBOUND];
  pd_event_t ev;
  if (out >= d->cfg.min_outbound) {
    if (d->below_warned) {
      pd_event_init(&ev, PD_EV_MINIMUM_RECOVERED, now * 1000);
      pd_event_int(&ev, "outbound", out);
      pd_event_int(&ev, "min_outbound", d->cfg.min_outbound);
      pd_event_int(&ev, "was_below_s", now - d->below_since);
      dmn_event(d, &ev);
    }
    d->below_since = 0;
    d->below_warned = false;
    d->below_next_warn = 0;
    return;
  }
  if (d->below_since == 0) d->below_since = now;
  if (now - d->below_since < d->cfg.below_min_warn || now < d->below_next_warn) return;
  pd_event_init(&ev, PD_EV_BELOW_MINIMUM, now * 1000);
  pd_event_int(&ev, "outbound", out);
  pd_event_int(&ev, "min_outbound", d->cfg.min_outbound);
  pd_event_int(&ev, "for_s", now - d->below_since);
  pd_event_int(&ev, "inbound", in);
  pd_event_int(&ev, "book", (int64_t)pd_book_size(pd_node_book(d->node)));
  dmn_event(d, &ev);
  d->below_warned = true;
  d->below_next_warn = now + 600;
}
