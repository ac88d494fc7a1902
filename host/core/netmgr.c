/* netmgr — the network manager (sans-I/O). See netmgr.h. */
#include "netmgr.h"

#include <assert.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "addrbook.h"
#include "banlist.h"
#include "err.h"
#include "inevict.h"
#include "policy.h"
#include "record.h"
#include "rectable.h"
#include "self.h"

/* --- internal types --------------------------------------------------------------------- */

typedef struct conn {
  uint64_t cid;
  int64_t deadline;         /* pd_peer_next_deadline, cached after every drain_peer */
  enum pd_conn_dir dir;
  pd_netmgr_conn_state_t state;
  pd_netaddr_t addr;        /* socket address (outbound: the dialled one) */
  pd_dial_target_t target;  /* outbound: what was dialled */
  enum pd_dial_reason reason;
  pd_peer_t *peer;          /* NULL while DIALING */
  bool registered;          /* pd_dialer_on_connected done */
  bool dial_reported;       /* outbound: the dial outcome already went to the dialer */
  bool announced;           /* a "connected" audit event went out for it */
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  int64_t since_ms, ready_ms;
  int64_t crawl_deadline_ms; /* seed mode; 0 = none */
  int64_t min_latency_ms;    /* smallest ping round trip seen; -1 = none yet */
  int64_t useful_ms;         /* inbound: an address it gave last led to an outbound handshake */
  const char *close_label;   /* our close's reason label instead of the GOODBYE code's */
  /* deferred work after draining the peer */
  bool want_answer;          /* GETADDR_RECEIVED */
  bool want_close;
  uint16_t close_code;
  const char *close_text;
  bool counted_reject_dup;
  int64_t starve_ask_ms;     /* last GETADDR sent because we were starving; 0 = never */
  int64_t hungry_ask_ms;     /* last GETADDR sent because the book was small; 0 = never */
  /* Addresses waiting for this peer's next relay trickle (at rq_due_ms). */
  pd_wire_addr_entry_t *rq;
  uint16_t rq_n, rq_cap;
  int64_t rq_due_ms;
} conn_t;

typedef struct qitem {
  pd_netmgr_action_t a;
  uint8_t *buf; /* owned copy of SEND bytes */
} qitem_t;

typedef struct gcache {
  uint8_t group[PD_GROUP_MAX];
  size_t glen;
  int64_t built_ms;
  int64_t used_ms;
  size_t book_size;
  size_t n;
  pd_wire_addr_entry_t *e;
} gcache_t;

struct pd_netmgr {
  pd_netmgr_config_t cfg;
  char network[PD_WIRE_NETWORK_MAX + 1];
  char agent[PD_WIRE_AGENT_MAX + 1];
  bool has_agent;
  pd_node_t *node;
  const pd_identity_t *self;
  pd_self_t *own_self;   /* the record we made when the node had none */
  uint64_t announced_seq; /* the version of our record peers were last sent */
  uint64_t bans_seen;     /* pd_banlist_adds when the connections were last checked */
  pd_rng_t *rng;
  pd_dialer_t *dialer;
  int64_t seed_crawl_timeout_ms, ttl_ms, penalty, tick_ms;
  int64_t recrawl_s; /* seed mode: least time between two crawls of one address; 0 = none */
  size_t book_want;  /* below this many addresses ask a peer every HUNGRY_ASK_MS; 0 = never */
  int64_t trickle_ms; /* mean relay trickle delay; 0 = relay at once */
  int64_t next_hungry_ms, hungry_every_ms;
  size_t hungry_book; /* book size at the last ask */
  size_t max_pending_in;
  bool has_evict_key;      /* drawn from rng at the first eviction */
  uint8_t evict_key[PD_INEVICT_KEY_LEN];

  conn_t **conns; /* sorted by id (ids only grow, so appends keep order) */
  size_t nconns, conns_cap;
  uint64_t *cids; /* conns[i]->cid, side by side: conn_get's binary search stays in one array */
  /* due[i]: when conns[i] next needs on_tick (conn_due), side by side too,
   * so a tick and next_deadline read one array, not every connection. */
  int64_t *due;
  uint64_t next_id;
  size_t pending_in;

  qitem_t *q;
  size_t qhead, qlen, qcap;
  uint8_t *cur_buf; /* bytes of the action last polled */

  int64_t dialer_due_ms;
  bool shutting_down;

  gcache_t cache[PD_NETMGR_GETADDR_CACHE_MAX];
  size_t ncache;

  pd_netmgr_counters_t c; /* closed connections' frames/bytes + manager counters */

  /* Bootstrap episode, for the audit events: rounds since the outbound
   * minimum was last met (0: not bootstrapping) and when the first began. */
  uint32_t boot_rounds;
  int64_t boot_since_ms;
};

static const char *const k_rej_extra[] = {
    "unexpected_message", "auth_failed",       "wrong_network", "incompatible_version",
    "self_connection",    "id_mismatch",       "handshake_timeout", "ping_timeout",
    "getaddr_flood",      "addr_flood",        "duplicate",
    /* pd_record_reason_name 1..8, in its order */
    "record_malformed", "record_version", "record_id", "record_signature", "record_name",
    "record_order", "record_address", "record_network",
};
_Static_assert(sizeof k_rej_extra / sizeof k_rej_extra[0] == PD_NETMGR_REJ_COUNT - PD_WIRE_R_COUNT,
               "a name per rejection");

static const char *const k_refuse[] = {"accept", "inbound_full", "per_ip_limit", "banned", "error",
                                       "pending_group"};
_Static_assert(sizeof k_refuse / sizeof k_refuse[0] == PD_NETMGR_REFUSE_COUNT, "a name per verdict");

const char *pd_netmgr_reject_name(unsigned i) {
  if (i < PD_WIRE_R_COUNT) return pd_wire_reason_name((pd_wire_reason_t)i);
  i -= PD_WIRE_R_COUNT;
  if (i < sizeof k_rej_extra / sizeof k_rej_extra[0]) return k_rej_extra[i];
  return NULL;
}

const char *pd_netmgr_refuse_name(pd_netmgr_refuse_t r) {
  if ((unsigned)r < PD_NETMGR_REFUSE_COUNT) return k_refuse[r];
  return NULL;
}

static int reject_index(const char *reason) {
  if (!reason) return -1;
  for (unsigned i = 1; i < PD_NETMGR_REJ_COUNT; i++) {
    const char *n = pd_netmgr_reject_name(i);
    if (n && strcmp(n, reason) == 0) return (int)i;
  }
  return -1;
}

static int64_t secs(int64_t ms) { return ms / 1000; }

/* --- config ------------------------------------------------------------------------------ */

void pd_netmgr_config_default(pd_netmgr_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  static const uint8_t magic[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  memcpy(cfg->magic, magic, sizeof magic);
  pd_dialer_config_default(&cfg->dialer);
  pd_peer_config_default(&cfg->peer);
  cfg->max_pending_inbound_per_ip = PD_NETMGR_PENDING_PER_IP;
  cfg->max_pending_inbound_per_group = PD_NETMGR_PENDING_PER_GROUP;
}

/* --- queue --------------------------------------------------------------------------------- */

static int q_push(pd_netmgr_t *m, const pd_netmgr_action_t *a, const uint8_t *data, size_t len) {
  if (m->qhead == m->qlen) m->qhead = m->qlen = 0;
  if (m->qlen == m->qcap) {
    if (m->qhead > 0) {
      memmove(m->q, m->q + m->qhead, (m->qlen - m->qhead) * sizeof *m->q);
      m->qlen -= m->qhead;
      m->qhead = 0;
    }
    if (m->qlen == m->qcap) {
      size_t nc = m->qcap ? m->qcap * 2 : 32;
      qitem_t *p = realloc(m->q, nc * sizeof *p);
      if (!p) return PD_ENOMEM;
      m->q = p;
      m->qcap = nc;
    }
  }
  qitem_t *it = &m->q[m->qlen];
  it->a = *a;
  it->buf = NULL;
  if (data && len) {
    it->buf = malloc(len);
    if (!it->buf) return PD_ENOMEM;
    memcpy(it->buf, data, len);
    it->a.send.data = it->buf;
    it->a.send.len = len;
  }
  m->qlen++;
  return 0;
}

bool pd_netmgr_poll(pd_netmgr_t *m, pd_netmgr_action_t *out) {
  if (!m) return false;
  free(m->cur_buf);
  m->cur_buf = NULL;
  if (m->qhead >= m->qlen) {
    m->qhead = m->qlen = 0;
    return false;
  }
  qitem_t *it = &m->q[m->qhead++];
  *out = it->a;
  m->cur_buf = it->buf;
  return true;
}

static void release_cur(pd_netmgr_t *m) {
  free(m->cur_buf);
  m->cur_buf = NULL;
}

/* --- connection table ---------------------------------------------------------------------- */

/* The index of connection id, or nconns. */
static size_t conn_index(const pd_netmgr_t *m, uint64_t id) {
  size_t lo = 0, hi = m->nconns;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (m->cids[mid] < id) lo = mid + 1;
    else hi = mid;
  }
  return lo < m->nconns && m->cids[lo] == id ? lo : m->nconns;
}

static conn_t *conn_get(const pd_netmgr_t *m, uint64_t id) {
  size_t i = conn_index(m, id);
  return i < m->nconns ? m->conns[i] : NULL;
}

/* When on_tick next has work for c: DUE_ALWAYS for a connection without a
 * peer yet (a DIAL the driver has not answered: every tick checks its
 * timeout, and next_deadline ignores it, as before), else the earliest of
 * its peer's deadline, relay trickle and seed crawl deadline. */
#define DUE_ALWAYS INT64_MIN
static int64_t conn_due(const conn_t *c) {
  if (!c->peer) return DUE_ALWAYS;
  int64_t t = c->deadline;
  if (c->crawl_deadline_ms && c->crawl_deadline_ms < t) t = c->crawl_deadline_ms;
  if (c->rq_due_ms && c->rq_due_ms < t) t = c->rq_due_ms;
  return t;
}

/* After any change to c's deadline, relay trickle or crawl deadline. */
static void set_due(pd_netmgr_t *m, const conn_t *c) {
  size_t i = conn_index(m, c->cid);
  if (i < m->nconns) m->due[i] = conn_due(c);
}

static conn_t *conn_add(pd_netmgr_t *m, enum pd_conn_dir dir, const pd_netaddr_t *addr,
                        int64_t now_ms) {
  if (m->nconns == m->conns_cap) {
    size_t nc = m->conns_cap ? m->conns_cap * 2 : 16;
    conn_t **p = realloc(m->conns, nc * sizeof *p);
    if (!p) return NULL;
    m->conns = p;
    uint64_t *q = realloc(m->cids, nc * sizeof *q);
    if (!q) return NULL; /* conns keeps its (bigger) block; cap unchanged */
    m->cids = q;
    int64_t *d = realloc(m->due, nc * sizeof *d);
    if (!d) return NULL; /* likewise */
    m->due = d;
    m->conns_cap = nc;
  }
  conn_t *c = calloc(1, sizeof *c);
  if (!c) return NULL;
  c->cid = m->next_id++;
  c->dir = dir;
  c->addr = *addr;
  c->since_ms = now_ms;
  c->min_latency_ms = -1;
  m->cids[m->nconns] = c->cid;
  m->due[m->nconns] = DUE_ALWAYS;
  m->conns[m->nconns++] = c;
  return c;
}

static void conn_remove(pd_netmgr_t *m, conn_t *c) {
  for (size_t i = 0; i < m->nconns; i++) {
    if (m->conns[i] == c) {
      memmove(&m->conns[i], &m->conns[i + 1], (m->nconns - i - 1) * sizeof *m->conns);
      memmove(&m->cids[i], &m->cids[i + 1], (m->nconns - i - 1) * sizeof *m->cids);
      memmove(&m->due[i], &m->due[i + 1], (m->nconns - i - 1) * sizeof *m->due);
      m->nconns--;
      break;
    }
  }
  if (c->peer) {
    const pd_peer_stats_t *s = pd_peer_stats(c->peer);
    m->c.bytes_in += s->bytes_in;
    m->c.bytes_out += s->bytes_out;
    for (unsigned t = 0; t < PD_WIRE_TYPE_COUNT; t++) {
      m->c.frames_in[t] += s->frames_in[t];
      m->c.frames_out[t] += s->frames_out[t];
    }
    pd_peer_free(c->peer);
  }
  free(c->rq);
  free(c);
}

/* The address the book and reputation know this peer by. */
static pd_netaddr_t book_addr(const conn_t *c) {
  if (c->dir != PD_CONN_INBOUND) return c->target.addr;
  const pd_peer_remote_t *r = c->peer ? pd_peer_remote(c->peer) : NULL;
  if (r && r->has_listen && pd_netaddr_same_ip(&r->listen, &c->addr)) return r->listen;
  return c->addr;
}

static pd_netaddr_t ip_only(const pd_netaddr_t *a) {
  pd_netaddr_t x = *a;
  x.port = 0;
  return x;
}

/* --- audit events (events.h, through the node's sink) --------------------------------------- */

static bool audit_on(const pd_netmgr_t *m) { return pd_event_sink_on(pd_node_events(m->node)); }

/* The fields every connection event starts with. */
static void audit_conn(pd_event_t *ev, const conn_t *c, const pd_netaddr_t *addr) {
  pd_event_addr(ev, "addr", addr);
  if (c->has_id) pd_event_id(ev, "node_id", c->id);
  pd_event_str(ev, "direction", pd_dialer_dir_name(c->dir));
  pd_event_int(ev, "conn", (int64_t)c->cid);
}

/* c finished its handshake: dial_ok (outbound, feeler), then connected
 * (a peer in use: not a feeler, and registered with the dialer). */
static void audit_ready(pd_netmgr_t *m, conn_t *c, int64_t now_ms) {
  if (!audit_on(m)) return;
  const pd_peer_remote_t *r = c->peer ? pd_peer_remote(c->peer) : NULL;
  pd_event_t ev;
  if (c->dir != PD_CONN_INBOUND) {
    pd_event_init(&ev, PD_EV_DIAL_OK, now_ms);
    audit_conn(&ev, c, &c->target.addr);
    pd_event_str(&ev, "dial_reason", pd_dialer_reason_name(c->reason));
    pd_node_emit(m->node, &ev);
  }
  if (c->dir == PD_CONN_FEELER || !c->registered) return;
  c->announced = true;
  pd_event_init(&ev, PD_EV_CONNECTED, now_ms);
  audit_conn(&ev, c, c->dir == PD_CONN_INBOUND ? &c->addr : &c->target.addr);
  if (r && r->has_listen) pd_event_addr(&ev, "listen", &r->listen);
  if (r && r->agent[0]) pd_event_str(&ev, "agent", r->agent);
  pd_node_emit(m->node, &ev);
}

/* An outbound or feeler dial ended before its handshake completed. */
static void audit_dial_failed(pd_netmgr_t *m, const conn_t *c, enum pd_dial_outcome o,
                              const char *detail, int64_t now_ms) {
  if (!audit_on(m)) return;
  pd_event_t ev;
  pd_event_init(&ev, PD_EV_DIAL_FAILED, now_ms);
  audit_conn(&ev, c, &c->target.addr);
  pd_event_str(&ev, "reason", pd_dialer_outcome_name(o));
  if (detail && strcmp(detail, pd_dialer_outcome_name(o)) != 0) pd_event_str(&ev, "detail", detail);
  pd_event_str(&ev, "dial_reason", pd_dialer_reason_name(c->reason));
  pd_node_emit(m->node, &ev);
}

/* A connection that was announced (or an inbound one that never got that
 * far: ready false) ended. */
static void audit_disconnected(pd_netmgr_t *m, const conn_t *c, const char *reason,
                               bool misbehaved, bool remote, uint16_t remote_code,
                               int64_t now_ms) {
  if (!audit_on(m)) return;
  pd_event_t ev;
  pd_event_init(&ev, PD_EV_DISCONNECTED, now_ms);
  ev.warn = misbehaved;
  audit_conn(&ev, c, c->dir == PD_CONN_INBOUND ? &c->addr : &c->target.addr);
  pd_event_str(&ev, "reason", reason ? reason : "closed");
  if (remote) pd_event_str(&ev, "remote_reason", pd_wire_bye_name(remote_code));
  pd_event_bool(&ev, "remote", remote || (reason && strcmp(reason, "closed") == 0));
  pd_event_bool(&ev, "misbehaved", misbehaved);
  pd_event_bool(&ev, "ready", c->announced);
  if (c->ready_ms) pd_event_int(&ev, "duration_ms", now_ms - c->ready_ms);
  pd_node_emit(m->node, &ev);
}

/* Bootstrap rounds and their end (the outbound minimum met again). */
static void audit_bootstrap(pd_netmgr_t *m, bool round, int64_t now_ms) {
  if (round) {
    if (m->boot_rounds == 0) m->boot_since_ms = now_ms;
    m->boot_rounds++;
  }
  if (!round && m->boot_rounds == 0) return;
  pd_dialer_counters_t dc;
  pd_dialer_counters(m->dialer, &dc);
  uint32_t out = dc.connected[PD_CONN_OUTBOUND];
  bool done = !round && out >= m->cfg.dialer.min_outbound;
  if (!round && !done) return;
  if (audit_on(m)) {
    pd_event_t ev;
    pd_event_init(&ev, round ? PD_EV_BOOTSTRAP_STARTED : PD_EV_BOOTSTRAP_FINISHED, now_ms);
    pd_event_int(&ev, round ? "round" : "rounds", m->boot_rounds);
    if (round) pd_event_int(&ev, "seeds", (int64_t)m->cfg.dialer.nseeds);
    pd_event_int(&ev, "outbound", out);
    pd_event_int(&ev, "min_outbound", m->cfg.dialer.min_outbound);
    if (!round) pd_event_int(&ev, "duration_ms", now_ms - m->boot_since_ms);
    pd_node_emit(m->node, &ev);
  }
  if (done) m->boot_rounds = 0;
}

/* --- forward declarations ------------------------------------------------------------------ */
static void drain_peer(pd_netmgr_t *m, conn_t *c, int64_t now_ms);
static void close_conn(pd_netmgr_t *m, conn_t *c, uint16_t code, const char *text, int64_t now_ms);

/* --- misbehaviour and bans ------------------------------------------------------------------- */

static void close_banned(pd_netmgr_t *m, int64_t now_ms) {
  pd_banlist_t *bl = pd_book_bans(pd_node_book(m->node));
  for (size_t i = 0; i < m->nconns;) {
    conn_t *c = m->conns[i];
    if (c->peer && pd_peer_state(c->peer) != PD_PEER_CLOSED &&
        pd_banlist_is_banned(bl, &c->addr, secs(now_ms), NULL)) {
      size_t before = m->nconns;
      close_conn(m, c, PD_WIRE_BYE_BANNED, NULL, now_ms);
      if (m->nconns < before) continue; /* c removed; the same index holds the next */
    }
    i++;
  }
}

/* Who a ban for this misbehaviour is counted against (peerd_bans_total). */
static enum pd_metrics_ban_cause ban_cause(const char *reason) {
  int ri = reject_index(reason);
  if (ri >= PD_NETMGR_REJ_RECORD && ri <= PD_NETMGR_REJ_RECORD_LAST) return PD_METRICS_BAN_RECORD;
  if (ri == PD_NETMGR_REJ_GETADDR_FLOOD || ri == PD_NETMGR_REJ_ADDR_FLOOD) return PD_METRICS_BAN_PEX;
  return PD_METRICS_BAN_WIRE;
}

/* Report misbehaviour of the peer at addr; returns true if it led to a ban. */
static bool report_misbehaviour(pd_netmgr_t *m, const pd_netaddr_t *addr, const char *reason,
                                int64_t now_ms) {
  pd_node_event_result_t r;
  m->c.misbehaviour_reports++;
  if (pd_node_event_ex(m->node, addr, PD_METRICS_EV_MISBEHAVED, reason, false, "wire",
                       ban_cause(reason), secs(now_ms), &r) == 0 &&
      r.banned) {
    m->c.bans++;
    return true;
  }
  return false;
}

/* --- teardown -------------------------------------------------------------------------------- */

static enum pd_dial_outcome outcome_of(const char *reason, bool remote, uint16_t remote_code) {
  if (!reason) return PD_DIAL_ERROR;
  if (strcmp(reason, "id_mismatch") == 0) return PD_DIAL_ID_MISMATCH;
  if (strcmp(reason, "self_connection") == 0) return PD_DIAL_SELF;
  if (strcmp(reason, "handshake_timeout") == 0 || strcmp(reason, "dial_timeout") == 0)
    return PD_DIAL_TIMEOUT;
  if (strcmp(reason, "duplicate") == 0) return PD_DIAL_DUPLICATE;
  if (strcmp(reason, "closed") == 0) return PD_DIAL_REFUSED;
  if (remote) {
    if (remote_code == PD_WIRE_BYE_SELF) return PD_DIAL_SELF;
    if (remote_code == PD_WIRE_BYE_DUPLICATE) return PD_DIAL_DUPLICATE;
    if (remote_code == PD_WIRE_BYE_ID_MISMATCH) return PD_DIAL_ID_MISMATCH;
    if (remote_code == PD_WIRE_BYE_TOO_MANY || remote_code == PD_WIRE_BYE_BANNED ||
        remote_code == PD_WIRE_BYE_NORMAL || remote_code == PD_WIRE_BYE_SEED_DONE)
      return PD_DIAL_REFUSED;
  }
  return PD_DIAL_HANDSHAKE;
}

/* The connection is over: bookkeeping, then free. emit_close: tell the driver. */
static void conn_end(pd_netmgr_t *m, conn_t *c, const char *reason, bool misbehaved, bool remote,
                     uint16_t remote_code, bool emit_close, int64_t now_ms) {
  int64_t now = secs(now_ms);
  if (emit_close) {
    pd_netmgr_action_t a;
    memset(&a, 0, sizeof a);
    a.type = PD_NETMGR_A_CLOSE;
    a.conn_id = c->cid;
    a.close.reason = reason ? reason : "closed";
    a.close.misbehaved = misbehaved;
    q_push(m, &a, NULL, 0);
  }
  int ri = reject_index(reason);
  if (ri >= 0 && strcmp(reason, "duplicate") != 0) m->c.rejected[ri]++;

  pd_netaddr_t baddr = book_addr(c);
  if (c->announced || (c->dir == PD_CONN_INBOUND && c->peer))
    audit_disconnected(m, c, reason, misbehaved, remote, remote_code, now_ms);
  if (c->dir == PD_CONN_INBOUND) {
    if (c->registered) pd_dialer_on_disconnected(m->dialer, c->dir, &c->addr, now);
    else if (m->pending_in > 0) m->pending_in--;
  } else if (c->registered) {
    pd_dialer_on_disconnected(m->dialer, c->dir, &c->target.addr, now);
    pd_node_event_result_t r;
    pd_node_event(m->node, &c->target.addr, PD_METRICS_EV_DISCONNECTED, NULL, now, &r);
  } else if (!c->dial_reported) {
    enum pd_dial_outcome o = outcome_of(reason, remote, remote_code);
    if (c->dir == PD_CONN_FEELER) m->c.feelers_failed++;
    audit_dial_failed(m, c, o, remote ? pd_wire_bye_name(remote_code) : reason, now_ms);
    pd_dialer_on_dial_result(m->dialer, &c->target.addr, o, now);
    if (o != PD_DIAL_SELF && o != PD_DIAL_DUPLICATE) {
      pd_node_event_result_t r;
      pd_node_event(m->node, &c->target.addr, PD_METRICS_EV_FAILED, reason, now, &r);
    }
  }
  bool banned = false;
  if (misbehaved) banned = report_misbehaviour(m, &baddr, reason, now_ms);
  m->dialer_due_ms = now_ms;
  conn_remove(m, c);
  if (banned) close_banned(m, now_ms);
}

/* Close from our side (GOODBYE + CLOSE through the peer). */
static void close_conn(pd_netmgr_t *m, conn_t *c, uint16_t code, const char *text, int64_t now_ms) {
  if (!c->peer) {
    conn_end(m, c, pd_wire_bye_name(code), false, false, 0, true, now_ms);
    return;
  }
  pd_peer_close(c->peer, code, text);
  drain_peer(m, c, now_ms);
}

/* --- PEX ------------------------------------------------------------------------------------- */

static int64_t sane_time(int64_t t, int64_t now) {
  if (t <= 100000000 || t > now + 600) return now - 5 * 86400;
  return t;
}

/* One relay ADDR to a ready peer, counted and drained. */
/* --- node records -------------------------------------------------------------------------- */

/* The scheme records are signed with: the handshake's. */
static const pd_record_auth_t *rec_auth(const pd_netmgr_t *m, pd_record_auth_t *buf) {
  if (!m->cfg.auth) return NULL;
  *buf = (pd_record_auth_t){.sign = m->cfg.auth->sign, .verify = m->cfg.auth->verify,
                            .ud = m->cfg.auth->ud};
  return buf;
}

/* The endpoint a record's node is placed by in books (pd_record_placed). */
static const pd_netaddr_t *placed_by(const pd_record_t *r) { return pd_record_placed(r, NULL); }

/* The kept record of an entry's node when it is byte for byte the one the
 * entry carries: nothing to decode or verify. */
static const pd_rec_t *kept_same(pd_netmgr_t *m, const pd_wire_addr_entry_t *e,
                                 const uint64_t *hash) {
  if (!e->has_id || !e->record_len) return NULL;
  const pd_rectable_t *t = pd_node_records(m->node);
  const pd_rec_t *r = hash ? pd_rectable_find_hashed(t, e->id, *hash) : pd_rectable_find(t, e->id);
  return r && r->len == e->record_len && memcmp(r->bytes, e->record, r->len) == 0 ? r : NULL;
}

/* A copy of entries with each node's record attached where we keep one
 * that places it at that entry's address; records stop before the frame
 * would pass RECORDS_BUDGET bytes (the entries still go, without). NULL:
 * out of memory (send them without records). The records point into the
 * table: use the copy before anything is learnt. */
#define RECORDS_BUDGET (PD_WIRE_MAX_MSG_PAYLOAD - 48 * PD_WIRE_MAX_ADDRS)
/* The next PREFETCH_AHEAD entries' records (of those carrying a node id,
 * and with carried: of those carrying a record too) start loading from the table, index first, then the records: a 1,000-entry
 * ADDR's lookups then overlap their cache misses instead of taking them one
 * after another (in a 1,000-host lab these lookups were a fifth of the CPU). */
#define PREFETCH_AHEAD 32
/* hash[i]: entry i's id hashed for the table (set for those prefetched),
 * for pd_rectable_find_hashed. */
static void prefetch_records(pd_netmgr_t *m, const pd_wire_addr_entry_t *e, size_t n,
                             bool carried, uint64_t hash[PREFETCH_AHEAD]) {
  const pd_rectable_t *t = pd_node_records(m->node);
  if (!t) return;
  if (n > PREFETCH_AHEAD) n = PREFETCH_AHEAD;
  for (int pass = 0; pass < 2; pass++)
    for (size_t i = 0; i < n; i++)
      if (e[i].has_id && (!carried || e[i].record_len))
        pd_rectable_prefetch(t, e[i].id, &hash[i], pass);
}

static pd_wire_addr_entry_t *with_records(pd_netmgr_t *m, const pd_wire_addr_entry_t *e, size_t n) {
  pd_rectable_t *t = pd_node_records(m->node);
  pd_self_t *me = pd_node_self(m->node);
  if (m->cfg.no_records || (!t && !me) || n == 0) return NULL;
  pd_wire_addr_entry_t *out = malloc(n * sizeof *out);
  if (!out) return NULL;
  size_t budget = RECORDS_BUDGET;
  uint64_t hash[PREFETCH_AHEAD] = {0};
  for (size_t i = 0; i < n; i++) {
    if (i % PREFETCH_AHEAD == 0) prefetch_records(m, e + i, n - i, false, hash);
    out[i] = e[i];
    out[i].record = NULL;
    out[i].record_len = 0;
    if (!e[i].has_id) continue;
    const uint8_t *bytes = NULL;
    size_t len = 0;
    if (me && memcmp(e[i].id, m->self->id, PD_NODE_ID_LEN) == 0) {
      const pd_netaddr_t *at = placed_by(pd_self_record(me));
      if (!at || !pd_netaddr_equal(at, &e[i].addr)) continue;
      bytes = pd_self_bytes(me, &len);
    } else {
      const pd_rec_t *r = pd_rectable_find_hashed(t, e[i].id, hash[i % PREFETCH_AHEAD]);
      if (!r || !pd_netaddr_equal(&r->placed, &e[i].addr)) continue;
      bytes = r->bytes;
      len = r->len;
    }
    if (!bytes || len + 2 > budget) continue;
    out[i].record = bytes;
    out[i].record_len = (uint16_t)len;
    budget -= len + 2;
  }
  return out;
}

/* pd_peer_send_addrs with the records we keep attached. */
static int send_addrs(pd_netmgr_t *m, conn_t *c, const pd_wire_addr_entry_t *e, size_t n,
                      int64_t now_ms) {
  pd_wire_addr_entry_t *wr = with_records(m, e, n);
  int rc = pd_peer_send_addrs(c->peer, wr ? wr : e, n, now_ms);
  free(wr);
  return rc;
}

/* An ADDR entry's record: verified (unless it is byte for byte the one we
 * keep), for our network, naming the entry's node and placing it at the
 * entry's address. PD_RECORD_OK and *rec, or why not. */
static pd_record_reason_t check_entry_record(pd_netmgr_t *m, const pd_wire_addr_entry_t *e,
                                             const uint64_t *hash, pd_record_t *rec, bool *kept) {
  const pd_rec_t *same = kept_same(m, e, hash);
  *kept = same != NULL;
  if (same) /* checked when it was kept: only where it places the node is left */
    return pd_netaddr_equal(&same->placed, &e->addr) ? PD_RECORD_OK : PD_RECORD_R_BAD_ADDRESS;
  pd_record_auth_t ab;
  pd_record_reason_t why =
      pd_record_decode(e->record, e->record_len, m->network, rec_auth(m, &ab), rec, NULL);
  if (why != PD_RECORD_OK) return why;
  if (!e->has_id || memcmp(rec->id, e->id, PD_NODE_ID_LEN) != 0) return PD_RECORD_R_BAD_ID;
  const pd_netaddr_t *at = placed_by(rec);
  if (!at || !pd_netaddr_equal(at, &e->addr)) return PD_RECORD_R_BAD_ADDRESS;
  return PD_RECORD_OK;
}

/* Keep a verified record; true when it was new or newer (worth relaying). */
static bool learn_record(pd_netmgr_t *m, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                         const pd_netaddr_t *from, int64_t addr_time, int64_t now_ms) {
  int brc = 0;
  int rc = pd_node_learn_record(m->node, bytes, len, rec, from, addr_time, secs(now_ms), &brc);
  if (rc == PD_REC_NEW || rc == PD_REC_UPDATED) {
    m->c.records_learnt++;
    if (brc == 1) m->c.addrs_added++;
    return true;
  }
  if (rc == PD_REC_STALE || rc == PD_REC_CONFLICT) m->c.records_stale++;
  return false;
}

/* Our record changed (a service set through the API, the announced
 * address learnt): every READY peer gets it now, in one ADDR with our
 * entry; they keep it and relay it on as any fresh news. */
static void announce_self(pd_netmgr_t *m, int64_t now_ms) {
  pd_self_t *me = pd_node_self(m->node);
  if (!me || m->cfg.no_records) return;
  const pd_record_t *r = pd_self_record(me);
  if (r->seq == m->announced_seq) return;
  m->announced_seq = r->seq;
  const pd_netaddr_t *at = placed_by(r);
  if (!at) return;
  size_t len = 0;
  const uint8_t *bytes = pd_self_bytes(me, &len);
  pd_wire_addr_entry_t e;
  memset(&e, 0, sizeof e);
  e.addr = *at;
  e.timestamp = secs(now_ms);
  e.has_id = true;
  memcpy(e.id, m->self->id, PD_NODE_ID_LEN);
  e.record = bytes;
  e.record_len = (uint16_t)len;
  size_t n = m->nconns;
  uint64_t few[64];
  uint64_t *ids = n <= 64 ? few : malloc(n * sizeof *ids);
  if (!ids) return;
  if (n) memcpy(ids, m->cids, n * sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    conn_t *c = conn_get(m, ids[i]);
    if (!c || !c->peer || c->state != PD_NETMGR_READY || c->dir == PD_CONN_FEELER) continue;
    if (pd_peer_state(c->peer) != PD_PEER_READY) continue;
    if (pd_peer_send_addrs(c->peer, &e, 1, now_ms) == 0) {
      m->c.records_announced++;
      drain_peer(m, c, now_ms);
    }
  }
  if (ids != few) free(ids);
}

static void send_relay(pd_netmgr_t *m, conn_t *c, const pd_wire_addr_entry_t *e, size_t n,
                       int64_t now_ms) {
  if (n && c->peer && pd_peer_state(c->peer) == PD_PEER_READY &&
      send_addrs(m, c, e, n, now_ms) == 0) {
    m->c.relay_msgs++;
    drain_peer(m, c, now_ms);
  }
}

/* Send a peer's relay queue now (one ADDR) and forget it. */
static void flush_relay(pd_netmgr_t *m, conn_t *c, int64_t now_ms) {
  /* Detached first: an idle connection holds no queue, and draining may
   * end the connection. */
  pd_wire_addr_entry_t *q = c->rq;
  size_t n = c->rq_n;
  c->rq = NULL;
  c->rq_n = c->rq_cap = 0;
  c->rq_due_ms = 0;
  set_due(m, c);
  send_relay(m, c, q, n, now_ms); /* the peer copied the entries into its frame */
  free(q);
}

/* Queue addresses for a peer's next trickle, as Bitcoin Core's
 * m_addrs_to_send: at most PD_WIRE_MAX_ADDRS (a full queue has a random
 * entry replaced), sent together after an exponentially distributed delay
 * (mean trickle_ms) drawn when the queue starts, so one ADDR carries what
 * a node learnt meanwhile and the timing says little about where an
 * address came from. trickle_ms 0: one ADDR at once. */
static void relay_to(pd_netmgr_t *m, conn_t *c, const pd_wire_addr_entry_t *e, size_t n,
                     int64_t now_ms) {
  if (m->trickle_ms == 0) {
    send_relay(m, c, e, n, now_ms);
    return;
  }
  for (size_t i = 0; i < n; i++) {
    if (c->rq_n == c->rq_cap && c->rq_cap < PD_WIRE_MAX_ADDRS) {
      size_t nc = c->rq_cap ? 2u * c->rq_cap : 4u;
      if (nc > PD_WIRE_MAX_ADDRS) nc = PD_WIRE_MAX_ADDRS;
      pd_wire_addr_entry_t *q = realloc(c->rq, nc * sizeof *q);
      if (!q) return; /* best effort: relaying is gossip */
      c->rq = q;
      c->rq_cap = (uint16_t)nc;
    }
    if (c->rq_n < c->rq_cap) c->rq[c->rq_n++] = e[i];
    else c->rq[pd_rng_range(m->rng, c->rq_n)] = e[i];
  }
  if (c->rq_n && c->rq_due_ms == 0) {
    double u = 1.0 - pd_rng_unit(m->rng); /* (0, 1] */
    double d = -log(u) * (double)m->trickle_ms;
    if (d > 20.0 * (double)m->trickle_ms) d = 20.0 * (double)m->trickle_ms;
    c->rq_due_ms = now_ms + 1 + (int64_t)d;
    set_due(m, c);
  }
}

static void relay(pd_netmgr_t *m, const conn_t *from, const pd_wire_addr_entry_t *e, size_t n,
                  int64_t now_ms) {
  if (n == 0) return;
  /* Up to two random READY peers other than the source. */
  conn_t *pick[2] = {NULL, NULL};
  size_t seen = 0;
  for (size_t i = 0; i < m->nconns; i++) {
    conn_t *c = m->conns[i];
    if (c == from || c->state != PD_NETMGR_READY || c->dir == PD_CONN_FEELER) continue;
    if (pd_peer_state(c->peer) != PD_PEER_READY) continue;
    seen++;
    if (seen <= 2) pick[seen - 1] = c;
    else {
      uint64_t j = pd_rng_range(m->rng, seen);
      if (j < 2) pick[j] = c;
    }
  }
  for (int k = 0; k < 2; k++)
    if (pick[k]) relay_to(m, pick[k], e, n, now_ms);
}

/* Add an address pex.lua accepted. Returns pd_book_add's rc. */
static int add_accepted(pd_netmgr_t *m, const pd_wire_addr_entry_t *e, const pd_netaddr_t *from,
                        int64_t now_ms, int64_t penalty) {
  int64_t now = secs(now_ms);
  const uint8_t *id = e->has_id ? e->id : NULL;
  int rc = pd_book_add(pd_node_book(m->node), &e->addr, id, sane_time(e->timestamp, now), from,
                       penalty, now, NULL);
  if (rc == 1) m->c.addrs_added++;
  else if (rc < 0) m->c.addrs_refused++;
  return rc;
}

/* Offer one address to the book (after pex.lua). Returns pd_book_add's rc or -1 refused. */
static int offer_addr(pd_netmgr_t *m, const pd_wire_addr_entry_t *e, const pd_netaddr_t *from,
                      int64_t now_ms, int64_t penalty) {
  int64_t now = secs(now_ms);
  if (m->cfg.has_listen && pd_netaddr_equal(&e->addr, &m->cfg.listen)) return 0;
  const uint8_t *id = e->has_id ? e->id : NULL;
  if (id && memcmp(id, m->self->id, PD_NODE_ID_LEN) == 0) return 0;
  if (!pd_node_pex_accept(m->node, &e->addr, id, from, now)) {
    m->c.addrs_refused++;
    return -1;
  }
  return add_accepted(m, e, from, now_ms, penalty);
}

/* One received ADDR message, offered to the book address by address (after
 * pex.lua's accept, decided for the whole message in one batch). */
typedef struct {
  pd_netmgr_t *m;
  const pd_peer_action_t *a;
  const pd_netaddr_t *from;
  int64_t now_ms;
  pd_wire_addr_entry_t *relay; /* this message's addresses to relay, allocated at first */
  size_t nrelay;
  /* entry i's record was the one kept (kept_same) when checked: bit i, while
   * the record table's changes are still `changes` */
  const uint64_t *same;
  uint64_t changes;
} addrs_batch_t;

/* Skipped (no decision, not added): our own listen address or node id. */
static bool addrs_entry(void *ud, size_t i, pd_netaddr_t *addr, const uint8_t **id) {
  addrs_batch_t *b = ud;
  pd_netmgr_t *m = b->m;
  const pd_wire_addr_entry_t *e = &b->a->addrs.entries[i];
  if (m->cfg.has_listen && pd_netaddr_equal(&e->addr, &m->cfg.listen)) return false;
  const uint8_t *eid = e->has_id ? e->id : NULL;
  if (eid && memcmp(eid, m->self->id, PD_NODE_ID_LEN) == 0) return false;
  *addr = e->addr;
  *id = eid;
  return true;
}

static void addrs_result(void *ud, size_t i, bool accept) {
  addrs_batch_t *b = ud;
  pd_netmgr_t *m = b->m;
  const pd_wire_addr_entry_t *e = &b->a->addrs.entries[i];
  if (!accept) {
    m->c.addrs_refused++;
    return;
  }
  int rc;
  int64_t now = secs(b->now_ms);
  if (e->record_len) {
    /* Checked before the batch (on_addrs): valid, ours to keep. The record
     * we keep already: only the book hears of the node again. */
    pd_record_t rec;
    /* as checked, unless a record was learnt (or dropped) since */
    bool same = b->changes == pd_rectable_changes(pd_node_records(m->node))
                    ? (b->same[i / 64] >> (i % 64) & 1) != 0
                    : kept_same(m, e, NULL) != NULL;
    if (same) {
      pd_book_add(pd_node_book(m->node), &e->addr, e->id, sane_time(e->timestamp, now), b->from,
                  0, now, NULL);
      rc = 0;
    } else if (pd_record_parse_trusted(e->record, e->record_len, &rec) == PD_RECORD_OK) {
      rc = learn_record(m, e->record, e->record_len, &rec, b->from, sane_time(e->timestamp, now),
                        b->now_ms)
               ? 1
               : 0;
    } else {
      return;
    }
  } else {
    rc = add_accepted(m, e, b->from, b->now_ms, m->penalty);
  }
  /* Relayed on: new to us (an address, or a newer record), in a small
   * unsolicited message, and fresh (its time within PD_NETMGR_RELAY_FRESH_S
   * of now, as Bitcoin Core), so a self-announcement spreads once and old
   * addresses do not circulate. */
  if (rc != 1 || !b->a->addrs.relayable || b->nrelay >= b->a->addrs.count ||
      sane_time(e->timestamp, now) < now - PD_NETMGR_RELAY_FRESH_S ||
      pd_node_is_private(m->node, &e->addr, e->has_id ? e->id : NULL))
    return;
  /* Scratch for this message only (relayable: at most relay_max entries):
   * nothing is kept per node between messages. */
  if (!b->relay && !(b->relay = malloc(b->a->addrs.count * sizeof *b->relay))) return;
  b->relay[b->nrelay] = *e;
  b->relay[b->nrelay].record = NULL; /* attached again when sent */
  b->relay[b->nrelay].record_len = 0;
  b->nrelay++;
}

static void on_addrs(pd_netmgr_t *m, conn_t *c, const pd_peer_action_t *a, int64_t now_ms) {
  pd_netaddr_t from = ip_only(&c->addr);
  m->c.addrs_received += a->addrs.count;
  uint64_t same[(PD_WIRE_MAX_ADDRS + 63) / 64] = {0}, hash[PREFETCH_AHEAD] = {0};
  /* Every record is checked before anything is learnt: one bad record is a
   * protocol violation (an honest peer checks what it passes on), and the
   * connection ends with the reason, reported as misbehaviour. */
  for (size_t i = 0; i < a->addrs.count; i++) {
    const pd_wire_addr_entry_t *e = &a->addrs.entries[i];
    /* only the entries with a record are looked up below */
    if (i % PREFETCH_AHEAD == 0)
      prefetch_records(m, a->addrs.entries + i, a->addrs.count - i, true, hash);
    if (!e->record_len) continue;
    pd_record_t rec;
    bool kept = false;
    pd_record_reason_t why = check_entry_record(m, e, &hash[i % PREFETCH_AHEAD], &rec, &kept);
    if (kept) same[i / 64] |= (uint64_t)1 << (i % 64);
    if (why != PD_RECORD_OK) {
      pd_peer_close(c->peer, PD_WIRE_BYE_PROTOCOL, pd_record_reason_name(why));
      m->c.rejected[PD_NETMGR_REJ_RECORD + (unsigned)why - 1]++;
      report_misbehaviour(m, &c->addr, pd_record_reason_name(why), now_ms);
      c->want_close = true;
      return;
    }
  }
  addrs_batch_t b = {m, a, &from, now_ms, NULL, 0, same, pd_rectable_changes(pd_node_records(m->node))};
  pd_node_pex_accept_batch(m->node, &from, a->addrs.count, addrs_entry, addrs_result, &b,
                           secs(now_ms));
  if (b.nrelay) relay(m, c, b.relay, b.nrelay, now_ms);
  free(b.relay);
  if (m->cfg.seed_mode && a->addrs.solicited && c->dir == PD_CONN_OUTBOUND) {
    c->want_close = true;
    c->close_code = PD_WIRE_BYE_SEED_DONE;
  }
}

/* The cache key of a requester: its network (IPv4 / IPv6) and whether it is
 * routable, as Bitcoin Core keys its GETADDR cache by the network a peer
 * came through: one answer per network per TTL, however many /16s ask. */
static size_t cache_key(const pd_netaddr_t *to, uint8_t g[PD_GROUP_MAX]) {
  static const uint8_t v4[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
  g[0] = memcmp(to->ip, v4, sizeof v4) == 0 ? PD_NET_IPV4 : PD_NET_IPV6;
  g[1] = pd_netaddr_is_routable(to) ? 1 : 0;
  return 2;
}

static gcache_t *cache_for(pd_netmgr_t *m, const pd_netaddr_t *to, int64_t now_ms) {
  uint8_t g[PD_GROUP_MAX];
  size_t glen = cache_key(to, g);
  pd_book_t *book = pd_node_book(m->node);
  size_t bsize = pd_book_size(book);
  gcache_t *ce = NULL;
  for (size_t i = 0; i < m->ncache; i++) {
    if (m->cache[i].glen == glen && memcmp(m->cache[i].group, g, glen) == 0) {
      ce = &m->cache[i];
      break;
    }
  }
  if (ce) {
    bool expired = now_ms - ce->built_ms >= m->ttl_ms || now_ms < ce->built_ms;
    /* A book still small enough to be shared whole (< 250) is re-shared as
     * it grows: there is nothing to scrape, and a tiny network's first
     * answer must not stay frozen. Beyond that only a doubling rebuilds. */
    bool grown = (bsize >= 2 * ce->book_size + 2 ||
                  (ce->book_size < 250 && bsize > ce->book_size)) &&
                 ce->n < PD_BOOK_GETADDR_MAX;
    /* A seed answers every request with a fresh sample (as CometBFT's seed
     * mode): newcomers asking it all at once must not all get the same
     * few hundred addresses and crowd onto those nodes. */
    if (!expired && !grown && !m->cfg.seed_mode) {
      ce->used_ms = now_ms;
      return ce;
    }
  } else if (m->ncache < PD_NETMGR_GETADDR_CACHE_MAX) {
    ce = &m->cache[m->ncache++];
    memset(ce, 0, sizeof *ce);
  } else {
    ce = &m->cache[0];
    for (size_t i = 1; i < m->ncache; i++)
      if (m->cache[i].used_ms < ce->used_ms) ce = &m->cache[i];
  }
  /* (Re)build. At most 1,000 and 23% of the book, but never fewer than
   * min(book, 250): a small network's book is shared whole. */
  size_t max = bsize * PD_BOOK_GETADDR_PCT / 100;
  size_t floor_ = bsize < 250 ? bsize : 250;
  if (max < floor_) max = floor_;
  if (max > PD_BOOK_GETADDR_MAX) max = PD_BOOK_GETADDR_MAX;
  uint32_t *ids = malloc((max ? max : 1) * sizeof *ids);
  if (!ids) return NULL;
  size_t n = pd_node_pex_sample(m->node, to, max, false, secs(now_ms), ids, max);
  pd_wire_addr_entry_t *e = n ? malloc(n * sizeof *e) : NULL;
  if (n && !e) {
    free(ids);
    return NULL;
  }
  size_t w = 0;
  for (size_t i = 0; i < n; i++) {
    pd_book_info_t inf;
    if (pd_book_info(book, ids[i], &inf) != 0) continue;
    e[w].addr = inf.addr;
    e[w].timestamp = inf.time > 0 ? inf.time : 0;
    e[w].has_id = inf.has_node_id;
    memcpy(e[w].id, inf.node_id, PD_NODE_ID_LEN);
    e[w].record = NULL; /* attached when sent (send_addrs) */
    e[w].record_len = 0;
    w++;
  }
  free(ids);
  free(ce->e);
  memcpy(ce->group, g, glen);
  ce->glen = glen;
  ce->e = e;
  ce->n = w;
  ce->built_ms = ce->used_ms = now_ms;
  ce->book_size = bsize;
  m->c.getaddr_cache_builds++;
  return ce;
}

static void answer_getaddr(pd_netmgr_t *m, conn_t *c, int64_t now_ms) {
  pd_netaddr_t to = book_addr(c);
  gcache_t *ce = cache_for(m, &to, now_ms);
  size_t w = 0;
  /* The answer minus the asker itself, in a scratch array of this call. */
  pd_wire_addr_entry_t *out = ce && ce->n ? malloc(ce->n * sizeof *out) : NULL;
  if (out) {
    for (size_t i = 0; i < ce->n && w < PD_WIRE_MAX_ADDRS; i++) {
      if (pd_netaddr_same_ip(&ce->e[i].addr, &c->addr) && ce->e[i].addr.port == to.port) continue;
      if (c->has_id && ce->e[i].has_id && memcmp(ce->e[i].id, c->id, PD_NODE_ID_LEN) == 0) continue;
      out[w++] = ce->e[i];
    }
  }
  /* Nothing to share: no ADDR at all (as Bitcoin Core; an empty ADDR is
   * valid on the wire but says nothing). */
  if (w > 0 && send_addrs(m, c, out, w, now_ms) == 0) m->c.getaddr_answered++;
  free(out);
  if (m->cfg.seed_mode && c->dir == PD_CONN_INBOUND) {
    c->want_close = true;
    c->close_code = PD_WIRE_BYE_SEED_DONE;
  }
}

/* --- handshake done ------------------------------------------------------------------------- */

static bool id_less(const uint8_t *a, const uint8_t *b) { return memcmp(a, b, PD_NODE_ID_LEN) < 0; }

/* Who dialled connection c: its dialler's node id. */
static const uint8_t *dialler_of(const pd_netmgr_t *m, const conn_t *c) {
  return c->dir == PD_CONN_INBOUND ? c->id : m->self->id;
}

/* Does the address inbound peer c announces (its record's discovery
 * endpoint, or HELLO's listen address) count? Only when it names the IP c
 * connects from, or the book has it tried under node id `id` (a dial of
 * ours reached that node there). Otherwise it is neither added nor relayed
 * (counted in listen_ignored): a peer cannot plant someone else's address. */
static bool listen_counts(pd_netmgr_t *m, const conn_t *c, const pd_netaddr_t *at,
                          const uint8_t *id) {
  if (pd_netaddr_same_ip(at, &c->addr)) return true;
  pd_book_t *b = pd_node_book(m->node);
  uint32_t eid = pd_book_find(b, at);
  pd_book_info_t e;
  if (eid != PD_BOOK_NO_ID && pd_book_info(b, eid, &e) == 0 && e.in_tried && e.has_node_id &&
      memcmp(e.node_id, id, PD_NODE_ID_LEN) == 0)
    return true;
  m->c.listen_ignored++;
  return false;
}

/* --- inbound eviction ------------------------------------------------------------------------ */

/* An outbound handshake with addr completed: the inbound peers at the IP
 * that told us about it (its book entry's source) were useful just now. */
static void credit_source(pd_netmgr_t *m, const pd_netaddr_t *addr, int64_t now_ms) {
  pd_book_t *b = pd_node_book(m->node);
  uint32_t id = pd_book_find(b, addr);
  pd_book_info_t e;
  if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &e) != 0) return;
  for (size_t i = 0; i < m->nconns; i++) {
    conn_t *o = m->conns[i];
    if (o->dir == PD_CONN_INBOUND && o->state == PD_NETMGR_READY &&
        pd_netaddr_same_ip(&o->addr, &e.source))
      o->useful_ms = now_ms;
  }
}

/* May inbound peer o be evicted at all? Authenticated, registered, neither
 * unconditional nor protected by the node (id, address or announced listen
 * address), not closing. */
static bool evictable(pd_netmgr_t *m, const conn_t *o) {
  if (o->dir != PD_CONN_INBOUND || o->state != PD_NETMGR_READY || !o->registered || !o->has_id)
    return false;
  if (!o->peer || pd_peer_state(o->peer) == PD_PEER_CLOSED || o->want_close) return false;
  if (pd_dialer_is_unconditional(m->dialer, o->id)) return false;
  if (pd_node_is_protected(m->node, &o->addr, o->id)) return false;
  const pd_peer_remote_t *r = pd_peer_remote(o->peer);
  if (r && r->has_listen && pd_node_is_protected(m->node, &r->listen, NULL)) return false;
  return true;
}

/* The inbound slots are full and newcomer c (authenticated) wants one:
 * pick a victim (evict_inbound in evict.lua, else pd_inevict_select) and
 * close it (GOODBYE too_many_peers, reason "evicted"). True when one was
 * closed. At accept (c NULL, the newcomer is only an address `from`,
 * no node id yet) nothing is closed: true when someone would be evicted
 * (the hook, asked with that newcomer, or else the C rule), so the
 * newcomer may go on to its handshake, where the choice is made again. */
static bool evict_inbound(pd_netmgr_t *m, conn_t *c, const pd_netaddr_t *from, int64_t now_ms) {
  pd_policy_t *pol = pd_node_policy(m->node);
  if (!m->has_evict_key) {
    pd_rng_fill(m->rng, m->evict_key, sizeof m->evict_key);
    m->has_evict_key = true;
  }
  size_t n = 0;
  for (size_t i = 0; i < m->nconns; i++)
    if (m->conns[i] != c && evictable(m, m->conns[i])) n++;
  if (n == 0) return false;
  pd_inevict_cand_t *cand = calloc(n, sizeof *cand);
  bool *prot = calloc(n, sizeof *prot);
  conn_t **who = calloc(n, sizeof *who);
  pd_policy_inbound_t *pv = NULL;
  bool done = false;
  if (!cand || !prot || !who) goto out;
  size_t k = 0;
  for (size_t i = 0; i < m->nconns && k < n; i++) {
    conn_t *o = m->conns[i];
    if (o == c || !evictable(m, o)) continue;
    who[k] = o;
    cand[k].conn_id = o->cid;
    cand[k].group_len = pd_netaddr_group(&o->addr, m->cfg.dialer.allow_private, cand[k].group);
    cand[k].connected_ms = o->ready_ms;
    cand[k].latency_ms = o->min_latency_ms;
    cand[k].useful_ms = o->useful_ms;
    k++;
  }
  long victim = pd_inevict_select(cand, n, m->evict_key, prot);
  bool hook = pol && pd_policy_has_hook(pol, PD_HOOK_EVICT_INBOUND);
  if (hook && (pv = calloc(n, sizeof *pv)) != NULL) {
    int64_t now = secs(now_ms);
    for (size_t i = 0; i < n; i++) {
      pd_node_peer_view(m->node, &who[i]->addr, now, &pv[i].view);
      pv[i].view.has_node_id = true;
      memcpy(pv[i].view.node_id, who[i]->id, PD_NODE_ID_LEN);
      if (who[i]->min_latency_ms >= 0) pv[i].view.latency_ms = (double)who[i]->min_latency_ms;
      pv[i].conn_id = who[i]->cid;
      pv[i].connected = secs(who[i]->ready_ms);
      pv[i].useful = who[i]->useful_ms ? secs(who[i]->useful_ms) : 0;
      pv[i].protected_by_default = prot[i];
    }
    pd_peer_view_t nv;
    pd_node_peer_view(m->node, c ? &c->addr : from, now, &nv);
    if (c) {
      nv.has_node_id = true;
      memcpy(nv.node_id, c->id, PD_NODE_ID_LEN);
    }
    long pick = -1;
    if (pd_policy_evict_inbound(pol, pv, n, &nv, pd_node_rng(m->node), now, &pick) == 0) {
      victim = pick;
      if (c) m->c.evictions_by_policy++;
    }
  }
  if (!c) {
    done = victim >= 0;
  } else if (victim >= 0) {
    conn_t *o = who[victim];
    m->c.inbound_evictions++;
    o->close_label = "evicted";
    close_conn(m, o, PD_WIRE_BYE_TOO_MANY, "evicted", now_ms); /* o may be gone */
    done = true;
  }
out:
  free(cand);
  free(prot);
  free(who);
  free(pv);
  return done;
}

static void on_ready(pd_netmgr_t *m, conn_t *c, const pd_peer_remote_t *r, int64_t now_ms) {
  int64_t now = secs(now_ms);
  c->state = PD_NETMGR_READY;
  c->ready_ms = now_ms;
  c->has_id = true;
  memcpy(c->id, r->id, PD_NODE_ID_LEN);
  m->c.handshakes++;

  /* Duplicates (feelers are short-lived and never count). */
  if (c->dir != PD_CONN_FEELER) {
    for (size_t i = 0; i < m->nconns; i++) {
      conn_t *o = m->conns[i];
      if (o == c || o->state != PD_NETMGR_READY || !o->has_id || o->dir == PD_CONN_FEELER) continue;
      if (!o->peer || pd_peer_state(o->peer) == PD_PEER_CLOSED) continue;
      if (memcmp(o->id, c->id, PD_NODE_ID_LEN) != 0) continue;
      bool close_new = true;
      if ((o->dir == PD_CONN_INBOUND) != (c->dir == PD_CONN_INBOUND)) {
        /* Keep the one dialled by the smaller node ID (both sides agree). */
        close_new = !id_less(dialler_of(m, c), dialler_of(m, o));
      }
      m->c.rejected[PD_NETMGR_REJ_DUPLICATE]++;
      if (close_new) {
        if (c->dir != PD_CONN_INBOUND) {
          /* The address is fine: it proved itself. */
          pd_node_event_result_t er;
          pd_book_add(pd_node_book(m->node), &c->target.addr, c->id, now, &c->target.addr, 0, now,
                      NULL);
          pd_node_event(m->node, &c->target.addr, PD_METRICS_EV_GOOD, NULL, now, &er);
        }
        c->want_close = true;
        c->close_code = PD_WIRE_BYE_DUPLICATE;
        return;
      }
      close_conn(m, o, PD_WIRE_BYE_DUPLICATE, NULL, now_ms);
      break;
    }
  }

  if (c->dir == PD_CONN_INBOUND) {
    enum pd_inbound_verdict v = pd_dialer_accept_inbound(m->dialer, &c->addr, c->id, now);
    if ((v == PD_INBOUND_FULL || v == PD_INBOUND_PER_IP) &&
        (pd_node_is_protected(m->node, &c->addr, c->id) ||
         (r->has_listen && pd_node_is_protected(m->node, &r->listen, NULL))))
      v = PD_INBOUND_ALLOW; /* a protected peer is never refused by limits */
    if (v == PD_INBOUND_FULL && evict_inbound(m, c, NULL, now_ms))
      v = pd_dialer_accept_inbound(m->dialer, &c->addr, c->id, now);
    if (v != PD_INBOUND_ALLOW) {
      c->want_close = true;
      c->close_code = v == PD_INBOUND_SELF        ? PD_WIRE_BYE_SELF
                      : v == PD_INBOUND_DUPLICATE ? PD_WIRE_BYE_DUPLICATE
                                                  : PD_WIRE_BYE_TOO_MANY;
      return;
    }
    if (m->pending_in > 0) m->pending_in--;
    if (pd_dialer_on_connected(m->dialer, PD_CONN_INBOUND, &c->addr, c->id, now) == 0)
      c->registered = true;
    else
      m->pending_in++; /* conn_end will undo */
    audit_ready(m, c, now_ms);
    /* Its record (verified in the handshake): kept, its node placed in the
     * new table (never tried) and relayed when news. Else, as before
     * records, its announced listen address. */
    pd_record_t rec;
    if (r->record_len && pd_record_parse_trusted(r->record, r->record_len, &rec) == PD_RECORD_OK) {
      pd_netaddr_t from = ip_only(&c->addr);
      const pd_netaddr_t *at = placed_by(&rec);
      if (at && !listen_counts(m, c, at, rec.id)) at = NULL;
      if (at && !m->cfg.seed_mode && pd_node_pex_accept(m->node, at, rec.id, &from, now) &&
          learn_record(m, r->record, r->record_len, &rec, &from, now, now_ms) &&
          !pd_node_is_private(m->node, at, rec.id)) {
        pd_wire_addr_entry_t e;
        memset(&e, 0, sizeof e);
        e.addr = *at;
        e.timestamp = now;
        e.has_id = true;
        memcpy(e.id, rec.id, PD_NODE_ID_LEN);
        relay(m, c, &e, 1, now_ms);
      } else if (at && m->cfg.seed_mode && pd_node_pex_accept(m->node, at, rec.id, &from, now)) {
        learn_record(m, r->record, r->record_len, &rec, &from, now, now_ms);
      }
    } else if (r->has_listen && listen_counts(m, c, &r->listen, r->id)) {
      pd_wire_addr_entry_t e;
      memset(&e, 0, sizeof e);
      e.addr = r->listen;
      e.timestamp = now;
      e.has_id = true;
      memcpy(e.id, r->id, PD_NODE_ID_LEN);
      pd_netaddr_t from = ip_only(&c->addr);
      if (offer_addr(m, &e, &from, now_ms, 0) == 1 &&
          !pd_node_is_private(m->node, &e.addr, e.id) && !m->cfg.seed_mode)
        relay(m, c, &e, 1, now_ms);
    }
    if (m->cfg.seed_mode) {
      c->crawl_deadline_ms = now_ms + m->seed_crawl_timeout_ms;
      set_due(m, c);
    }
    return;
  }

  /* Outbound / feeler: the dial worked; the address moves to tried. */
  credit_source(m, &c->target.addr, now_ms);
  if (pd_dialer_on_connected(m->dialer, c->dir, &c->target.addr, c->id, now) == 0)
    c->registered = true;
  else
    pd_dialer_on_dial_result(m->dialer, &c->target.addr, PD_DIAL_OK, now);
  c->dial_reported = true;
  audit_ready(m, c, now_ms);
  m->dialer_due_ms = now_ms; /* outbound count changed: feelers, bootstrap state */
  pd_book_add(pd_node_book(m->node), &c->target.addr, c->id, now, &c->target.addr, 0, now, NULL);
  pd_node_event_result_t er;
  pd_node_event(m->node, &c->target.addr, PD_METRICS_EV_GOOD, NULL, now, &er);
  /* Its record, heard from itself; and where it sees us, which (agreed by
   * enough outbound peers) becomes our announced address. */
  pd_record_t rec;
  if (r->record_len && pd_record_parse_trusted(r->record, r->record_len, &rec) == PD_RECORD_OK)
    learn_record(m, r->record, r->record_len, &rec, &c->target.addr, now, now_ms);
  pd_self_t *me = m->cfg.no_records ? NULL : pd_node_self(m->node);
  if (me && r->has_observed && c->dir == PD_CONN_OUTBOUND)
    pd_self_observed(me, r->id, &r->observed, now_ms);
  if (c->dir == PD_CONN_FEELER) {
    m->c.feelers_done++;
    c->want_close = true;
    c->close_code = PD_WIRE_BYE_NORMAL;
    c->close_text = "feeler";
    return;
  }
  if (m->cfg.seed_mode) {
    c->crawl_deadline_ms = now_ms + m->seed_crawl_timeout_ms;
    set_due(m, c);
  }
}

/* --- peer actions --------------------------------------------------------------------------- */

static void drain_peer(pd_netmgr_t *m, conn_t *c, int64_t now_ms) {
  for (int round = 0; round < 8; round++) {
    pd_peer_action_t a;
    while (pd_peer_poll(c->peer, &a)) {
      switch (a.type) {
      case PD_PEER_A_SEND: {
        pd_netmgr_action_t x;
        memset(&x, 0, sizeof x);
        x.type = PD_NETMGR_A_SEND;
        x.conn_id = c->cid;
        q_push(m, &x, a.send.data, a.send.len);
        break;
      }
      case PD_PEER_A_CLOSE: {
        const char *reason = a.close.reason;
        if (a.close.remote) reason = "goodbye";
        else if (c->close_label && !a.close.misbehaved) reason = c->close_label;
        if (c->close_code == PD_WIRE_BYE_SEED_DONE && !a.close.remote && !a.close.misbehaved &&
            strcmp(a.close.reason, "seed_done") == 0)
          m->c.seed_crawls++;
        /* each received message's policy calls share one budget */
        pd_node_budget_begin(m->node);
        conn_end(m, c, reason, a.close.misbehaved, a.close.remote, a.close.remote_code, true,
                 now_ms);
        pd_node_budget_end(m->node);
        return; /* c is gone */
      }
      case PD_PEER_A_HANDSHAKE_DONE:
        pd_node_budget_begin(m->node);
        on_ready(m, c, a.hs.remote, now_ms);
        pd_node_budget_end(m->node);
        break;
      case PD_PEER_A_ADDRS_RECEIVED:
        pd_node_budget_begin(m->node);
        on_addrs(m, c, &a, now_ms);
        pd_node_budget_end(m->node);
        break;
      case PD_PEER_A_GETADDR_RECEIVED:
        c->want_answer = true;
        break;
      case PD_PEER_A_LATENCY: {
        pd_netaddr_t ba = book_addr(c);
        pd_reputation_set_latency(pd_node_reputation(m->node), &ba, (double)a.latency.ms,
                                  secs(now_ms));
        if (c->min_latency_ms < 0 || (int64_t)a.latency.ms < c->min_latency_ms)
          c->min_latency_ms = (int64_t)a.latency.ms;
        break;
      }
      case PD_PEER_A_MISBEHAVED: {
        int ri = reject_index(a.misbehaved.reason);
        if (ri >= 0) m->c.rejected[ri]++;
        pd_netaddr_t ba = book_addr(c);
        pd_node_budget_begin(m->node);
        if (report_misbehaviour(m, &ba, a.misbehaved.reason, now_ms)) {
          c->want_close = true;
          c->close_code = PD_WIRE_BYE_BANNED;
        }
        pd_node_budget_end(m->node);
        break;
      }
      }
    }
    /* Deferred work (calls into the peer once its queue is drained). */
    if (c->want_answer) {
      c->want_answer = false;
      if (pd_peer_state(c->peer) == PD_PEER_READY) {
        pd_node_budget_begin(m->node); /* the GETADDR's answer */
        answer_getaddr(m, c, now_ms);
        pd_node_budget_end(m->node);
      }
      continue;
    }
    if (c->want_close) {
      c->want_close = false;
      pd_peer_close(c->peer, c->close_code, c->close_text);
      continue;
    }
    break;
  }
  /* SEND bytes were copied into our queue: the peer's buffers can go. */
  pd_peer_trim(c->peer);
  /* A peer's deadline depends on its state only, and every call into a
   * peer is followed by this drain: cache it for next_deadline. */
  c->deadline = pd_peer_next_deadline(c->peer);
  set_due(m, c);
}

/* --- dialer glue --------------------------------------------------------------------------- */

static bool banned_addr(pd_netmgr_t *m, const pd_netaddr_t *a, int64_t now) {
  return pd_banlist_is_banned(pd_book_bans(pd_node_book(m->node)), a, now, NULL);
}

static bool target_from_id(pd_netmgr_t *m, uint32_t id, int64_t now, pd_dial_target_t *t) {
  pd_book_info_t inf;
  if (pd_book_info(pd_node_book(m->node), id, &inf) != 0) return false;
  /* An address the node gave (a service endpoint): the node dials it,
   * peerd never does, not even as a feeler. */
  if (inf.service_only) return false;
  if (banned_addr(m, &inf.addr, now)) return false;
  memset(t, 0, sizeof *t);
  t->addr = inf.addr;
  t->has_id = inf.has_node_id;
  if (t->has_id) memcpy(t->id, inf.node_id, PD_NODE_ID_LEN);
  return true;
}

/* Seed mode: an address tried (crawled or failed) less than seed_recrawl
 * ago is not crawled again, so a seed's crawl rate is bounded by its book
 * size / seed_recrawl instead of by its dial concurrency. */
static bool crawled_recently(pd_netmgr_t *m, uint32_t id, int64_t now) {
  if (m->recrawl_s <= 0) return false;
  pd_book_info_t inf;
  if (pd_book_info(pd_node_book(m->node), id, &inf) != 0) return false;
  int64_t last = inf.last_try > inf.last_success ? inf.last_try : inf.last_success;
  return last > 0 && now - last < m->recrawl_s;
}

static size_t candidates(void *ud, size_t n, int64_t now, unsigned flags, pd_dial_target_t *out) {
  pd_netmgr_t *m = ud;
  pd_book_t *book = pd_node_book(m->node);
  size_t w = 0;
  if (n > PD_DIALER_MAX_CANDIDATES) n = PD_DIALER_MAX_CANDIDATES;
  if (flags & PD_DIALER_WANT_FEELER) {
    uint32_t id = pd_book_select_tried_collision(book);
    if (id != PD_BOOK_NO_ID && target_from_id(m, id, now, &out[w])) w++;
    for (size_t tries = 0; w < n && tries < 4 * n; tries++) {
      id = pd_book_random(book, PD_TABLE_NEW, now);
      if (id == PD_BOOK_NO_ID) break;
      if (target_from_id(m, id, now, &out[w])) w++;
    }
    return w;
  }
  if (m->cfg.seed_mode) {
    /* The crawler favours addresses it has not connected to yet. */
    for (size_t tries = 0; w < n / 2 + 1 && w < n && tries < 2 * n; tries++) {
      uint32_t id = pd_book_random(book, PD_TABLE_NEW, now);
      if (id == PD_BOOK_NO_ID) break;
      if (!crawled_recently(m, id, now) && target_from_id(m, id, now, &out[w])) w++;
    }
  }
  if (w < n) {
    uint32_t ids[PD_DIALER_MAX_CANDIDATES];
    /* select.lua's ctx: our outbound connections now (feelers are not) */
    pd_dialer_counters_t dc;
    pd_dialer_counters(m->dialer, &dc);
    pd_policy_select_ctx_t ctx = {.outbound = (int32_t)dc.connected[PD_CONN_OUTBOUND],
                                  .max_outbound = (int32_t)m->cfg.dialer.max_outbound};
    size_t got = pd_node_dial_ctx(m->node, n - w, &ctx, now, ids, NULL);
    for (size_t i = 0; i < got && w < n; i++)
      if (!(m->cfg.seed_mode && crawled_recently(m, ids[i], now)) &&
          target_from_id(m, ids[i], now, &out[w]))
        w++;
  }
  return w;
}

/* Below the outbound minimum with nothing left to dial: every address we
 * know is connected already (in a small, dense network most of them
 * inbound, and we never dial a node that is connected to us). Ask the ready
 * peers for addresses -- inbound ones too, which are otherwise never asked
 * -- so we learn nodes we can dial. At most once per peer per
 * STARVE_ASK_MS; a peer answers one GETADDR per connection per 10 min, so
 * this cannot become a flood. */
#define STARVE_ASK_MS (5 * 60 * 1000)

static void ask_when_starving(pd_netmgr_t *m, int64_t now_ms) {
  uint32_t ready_out = 0;
  for (size_t i = 0; i < m->nconns; i++) {
    const conn_t *c = m->conns[i];
    ready_out += c->state == PD_NETMGR_READY && c->dir == PD_CONN_OUTBOUND;
  }
  if (ready_out >= m->cfg.dialer.min_outbound) return;
  /* Collect ids first: draining a peer may close and remove connections. */
  uint64_t ids[64];
  size_t k = 0;
  for (size_t i = 0; i < m->nconns && k < 64; i++) {
    const conn_t *c = m->conns[i];
    if (c->state != PD_NETMGR_READY || c->dir == PD_CONN_FEELER || !c->peer) continue;
    if (c->starve_ask_ms && now_ms - c->starve_ask_ms < STARVE_ASK_MS) continue;
    if (c->hungry_ask_ms && now_ms - c->hungry_ask_ms < STARVE_ASK_MS) continue;
    ids[k++] = c->cid;
  }
  for (size_t i = 0; i < k; i++) {
    conn_t *c = conn_get(m, ids[i]);
    if (!c || !c->peer || c->state != PD_NETMGR_READY) continue;
    c->starve_ask_ms = now_ms;
    if (pd_peer_request_addrs(c->peer, now_ms) == 0) drain_peer(m, c, now_ms);
  }
}

/* A small book: every HUNGRY_ASK_MS ask one ready peer (inbound ones too),
 * at random among those not asked (on connect or since) for HUNGRY_PEER_MS,
 * for addresses (CometBFT's PEX does the same below 1,000 addresses). In a
 * small network a node whose outbound slots filled early otherwise keeps
 * the partial answers it got then. A peer answers one GETADDR per 10 min
 * per connection, so HUNGRY_PEER_MS stays at that. */
#define HUNGRY_ASK_MS (30 * 1000)
#define HUNGRY_PEER_MS (10 * 60 * 1000)

static bool book_hungry(const pd_netmgr_t *m) {
  return m->book_want > 0 && !m->cfg.seed_mode &&
         pd_book_size(pd_node_book(m->node)) < m->book_want;
}

static void ask_when_hungry(pd_netmgr_t *m, int64_t now_ms) {
  if (now_ms < m->next_hungry_ms) return;
  /* The interval doubles (to 24 h) while asking brings nothing new -- a
   * network smaller than book_want is known whole -- and is back at 30 s
   * as soon as the book grows. */
  size_t bsize = pd_book_size(pd_node_book(m->node));
  if (m->hungry_book && bsize <= m->hungry_book) {
    if (m->hungry_every_ms < 24LL * 3600 * 1000) m->hungry_every_ms *= 2;
  } else {
    m->hungry_every_ms = HUNGRY_ASK_MS;
  }
  m->next_hungry_ms = now_ms + m->hungry_every_ms;
  if (!book_hungry(m)) return;
  uint64_t ids[64];
  size_t k = 0;
  for (size_t i = 0; i < m->nconns && k < 64; i++) {
    const conn_t *c = m->conns[i];
    if (c->state != PD_NETMGR_READY || c->dir == PD_CONN_FEELER || !c->peer) continue;
    /* outbound ones were asked when they became ready; inbound ones not */
    int64_t last = c->dir == PD_CONN_OUTBOUND ? c->ready_ms : 0;
    if (c->hungry_ask_ms > last) last = c->hungry_ask_ms;
    if (c->starve_ask_ms > last) last = c->starve_ask_ms;
    if (now_ms - last < HUNGRY_PEER_MS) continue;
    ids[k++] = c->cid;
  }
  if (k == 0) return;
  conn_t *c = conn_get(m, ids[pd_rng_range(m->rng, k)]);
  if (!c || !c->peer) return;
  c->hungry_ask_ms = now_ms;
  m->hungry_book = bsize;
  if (pd_peer_request_addrs(c->peer, now_ms) == 0) drain_peer(m, c, now_ms);
}

static void run_dialer(pd_netmgr_t *m, int64_t now_ms) {
  pd_dial_action_t acts[32];
  size_t n = pd_dialer_tick(m->dialer, secs(now_ms), candidates, m, acts, 32);
  for (size_t i = 0; i < n; i++) {
    const pd_dial_action_t *da = &acts[i];
    pd_netmgr_action_t a;
    memset(&a, 0, sizeof a);
    if (da->kind == PD_DIAL_ACT_DIAL || da->kind == PD_DIAL_ACT_FEELER) {
      conn_t *c = conn_add(m, da->kind == PD_DIAL_ACT_FEELER ? PD_CONN_FEELER : PD_CONN_OUTBOUND,
                           &da->target.addr, now_ms);
      if (!c) {
        if (da->kind == PD_DIAL_ACT_FEELER) m->c.feelers_failed++;
        pd_dialer_on_dial_result(m->dialer, &da->target.addr, PD_DIAL_ERROR, secs(now_ms));
        continue;
      }
      c->state = PD_NETMGR_DIALING;
      c->target = da->target;
      c->reason = da->reason;
      if (da->target.has_id) {
        c->has_id = true;
        memcpy(c->id, da->target.id, PD_NODE_ID_LEN);
      }
      a.type = PD_NETMGR_A_DIAL;
      a.conn_id = c->cid;
      a.dial.target = da->target;
      a.dial.reason = da->reason;
      a.dial.feeler = da->kind == PD_DIAL_ACT_FEELER;
      q_push(m, &a, NULL, 0);
    } else if (da->kind == PD_DIAL_ACT_RESOLVE) {
      const pd_endpoint_t *ep = pd_dialer_endpoint(m->dialer, da->reason, da->index);
      if (!ep) continue;
      a.type = PD_NETMGR_A_RESOLVE;
      a.resolve.token = ((uint64_t)da->reason << 32) | (uint64_t)da->index;
      a.resolve.host = ep->host;
      a.resolve.port = ep->port;
      q_push(m, &a, NULL, 0);
    } else if (da->kind == PD_DIAL_ACT_BOOTSTRAP) {
      audit_bootstrap(m, true, now_ms); /* counted by the dialer; an audit event */
    }
  }
  audit_bootstrap(m, false, now_ms); /* the minimum met again: finished */
  /* Next run: at the tick cadence while the dialer has work, else when it
   * next will (a feeler, a bootstrap round, a dial timeout); any event that
   * can give it work (a connection, a close, a dial result) pulls
   * dialer_due_ms back to now. */
  int64_t next_s = pd_dialer_next_deadline(m->dialer, secs(now_ms));
  int64_t due = next_s >= INT64_MAX / 1000 ? INT64_MAX : next_s * 1000;
  m->dialer_due_ms = due > now_ms + m->tick_ms ? due : now_ms + m->tick_ms;
  size_t dials = 0;
  for (size_t i = 0; i < n; i++) dials += acts[i].kind == PD_DIAL_ACT_DIAL;
  if (dials == 0 && !m->cfg.seed_mode) ask_when_starving(m, now_ms);
}

/* --- create / destroy ---------------------------------------------------------------------- */

int pd_netmgr_create(pd_netmgr_t **out, const pd_netmgr_config_t *cfg, pd_node_t *node,
                     const pd_identity_t *identity, pd_rng_t *rng, int64_t now_ms,
                     const char **why) {
  const char *w_ = NULL;
  if (why) *why = NULL;
  if (!out || !cfg || !node || !identity || !rng) {
    if (why) *why = "missing argument";
    return PD_EINVAL;
  }
  *out = NULL;
  pd_netmgr_t *m = calloc(1, sizeof *m);
  if (!m) return PD_ENOMEM;
  m->cfg = *cfg;
  m->cfg.anchors = NULL;
  m->cfg.nanchors = 0;
  const char *net = cfg->network ? cfg->network : PD_WIRE_NETWORK_DEFAULT;
  size_t nl = strlen(net);
  if (nl == 0 || nl > PD_WIRE_NETWORK_MAX) {
    free(m);
    if (why) *why = "bad network id";
    return PD_EINVAL;
  }
  memcpy(m->network, net, nl + 1);
  m->cfg.network = m->network;
  if (cfg->agent) {
    size_t al = strlen(cfg->agent);
    if (al > PD_WIRE_AGENT_MAX) al = PD_WIRE_AGENT_MAX;
    memcpy(m->agent, cfg->agent, al);
    m->agent[al] = '\0';
    m->has_agent = true;
    m->cfg.agent = m->agent;
  }
  if (cfg->has_listen && (!pd_netaddr_is_valid(&cfg->listen) || cfg->listen.port == 0))
    m->cfg.has_listen = false; /* an unspecified IP cannot be announced */
  m->node = node;
  m->self = identity;
  m->rng = rng;
  m->seed_crawl_timeout_ms =
      cfg->seed_crawl_timeout_ms > 0 ? cfg->seed_crawl_timeout_ms : PD_NETMGR_SEED_CRAWL_TIMEOUT_MS;
  m->ttl_ms = cfg->getaddr_cache_ttl_ms > 0 ? cfg->getaddr_cache_ttl_ms : PD_NETMGR_GETADDR_TTL_MS;
  m->book_want = cfg->book_want == 0 ? PD_NETMGR_BOOK_WANT : cfg->book_want == SIZE_MAX ? 0 : cfg->book_want;
  m->hungry_every_ms = HUNGRY_ASK_MS;
  m->next_hungry_ms = now_ms + HUNGRY_ASK_MS;
  m->recrawl_s = cfg->seed_recrawl_ms == 0 ? PD_NETMGR_SEED_RECRAWL_MS / 1000
                 : cfg->seed_recrawl_ms < 0 ? 0
                                            : (cfg->seed_recrawl_ms + 999) / 1000;
  m->penalty = cfg->relay_time_penalty == 0  ? PD_NETMGR_RELAY_PENALTY
               : cfg->relay_time_penalty < 0 ? 0
                                             : cfg->relay_time_penalty;
  m->tick_ms = cfg->tick_interval_ms > 0 ? cfg->tick_interval_ms : PD_NETMGR_TICK_MS;
  m->trickle_ms = cfg->relay_trickle_ms == 0 ? PD_NETMGR_RELAY_TRICKLE_MS
                  : cfg->relay_trickle_ms < 0 ? 0
                                              : cfg->relay_trickle_ms;
  m->max_pending_in = cfg->max_pending_inbound ? cfg->max_pending_inbound : cfg->dialer.max_inbound;
  if (m->max_pending_in == 0) m->max_pending_in = 1;
  m->next_id = 1;

  pd_dialer_config_t dc = cfg->dialer;
  dc.has_self_id = true;
  memcpy(dc.self_id, identity->id, PD_NODE_ID_LEN);
  pd_netaddr_t selfs[PD_DIALER_MAX_SELF];
  size_t ns = 0;
  for (size_t i = 0; i < cfg->dialer.nself_addrs && ns < PD_DIALER_MAX_SELF - 1; i++)
    selfs[ns++] = cfg->dialer.self_addrs[i];
  if (m->cfg.has_listen) selfs[ns++] = m->cfg.listen;
  dc.self_addrs = ns ? selfs : NULL;
  dc.nself_addrs = ns;
  int rc = pd_dialer_create(&dc, rng, &m->dialer, &w_);
  if (rc < 0) {
    free(m);
    if (why) *why = w_ ? w_ : "bad dialer config";
    return rc;
  }
  m->cfg.dialer.persistent = NULL;
  m->cfg.dialer.seeds = NULL;
  m->cfg.dialer.unconditional_ids = NULL;
  m->cfg.dialer.private_ids = NULL;
  m->cfg.dialer.self_addrs = NULL;
  if (cfg->anchors && cfg->nanchors) pd_dialer_set_anchors(m->dialer, cfg->anchors, cfg->nanchors);
  m->dialer_due_ms = now_ms;
  if (!cfg->no_records && !pd_node_self(node)) {
    /* No record from the node: one that names our discovery endpoint. */
    pd_self_config_t sc;
    memset(&sc, 0, sizeof sc);
    sc.network = m->network;
    sc.identity = identity;
    pd_record_auth_t ra;
    if (cfg->auth) {
      ra = (pd_record_auth_t){.sign = cfg->auth->sign, .verify = cfg->auth->verify, .ud = cfg->auth->ud};
      sc.auth = &ra;
    }
    sc.has_listen = m->cfg.has_listen;
    sc.listen = m->cfg.listen;
    rc = pd_self_create(&m->own_self, &sc, now_ms, &w_);
    if (rc < 0) {
      pd_dialer_destroy(m->dialer);
      free(m);
      if (why) *why = w_ ? w_ : "cannot make our node record";
      return rc;
    }
    pd_node_set_self(node, m->own_self);
  }
  pd_self_t *me = pd_node_self(node);
  if (me) m->announced_seq = pd_self_record(me)->seq;
  *out = m;
  return 0;
}

void pd_netmgr_destroy(pd_netmgr_t *m) {
  if (!m) return;
  for (size_t i = 0; i < m->nconns; i++) {
    if (m->conns[i]->peer) pd_peer_free(m->conns[i]->peer);
    free(m->conns[i]->rq);
    free(m->conns[i]);
  }
  free(m->conns);
  free(m->cids);
  free(m->due);
  for (size_t i = m->qhead; i < m->qlen; i++) free(m->q[i].buf);
  free(m->q);
  free(m->cur_buf);
  for (size_t i = 0; i < m->ncache; i++) free(m->cache[i].e);
  pd_dialer_destroy(m->dialer);
  if (m->own_self) {
    if (pd_node_self(m->node) == m->own_self) pd_node_set_self(m->node, NULL);
    pd_self_destroy(m->own_self);
  }
  free(m);
}

/* --- events ---------------------------------------------------------------------------------- */

static int start_peer(pd_netmgr_t *m, conn_t *c, int64_t now_ms) {
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  uint8_t chal[PD_WIRE_CHALLENGE_LEN];
  prm.self = m->self;
  prm.magic = m->cfg.magic;
  prm.network = m->network;
  prm.agent = m->has_agent ? m->agent : NULL;
  prm.dir = c->dir == PD_CONN_INBOUND ? PD_PEER_INBOUND : PD_PEER_OUTBOUND;
  prm.expect_id = (c->dir != PD_CONN_INBOUND && c->target.has_id) ? c->target.id : NULL;
  prm.listen = m->cfg.has_listen ? &m->cfg.listen : NULL;
  uint8_t eseed[PD_WIRE_KEYX_LEN];
  if (m->cfg.challenge_fn) {
    m->cfg.challenge_fn(m->cfg.challenge_ud, chal);
    prm.challenge = chal;
    m->cfg.challenge_fn(m->cfg.challenge_ud, eseed); /* the ephemeral key: secret */
    prm.eph_seed = eseed;
  }
  prm.auth = m->cfg.auth;
  pd_self_t *me = m->cfg.no_records ? NULL : pd_node_self(m->node);
  if (me) prm.record = pd_self_bytes(me, &prm.record_len);
  prm.observed = &c->addr; /* where we see it: the address dialled, or it came from */
  pd_peer_config_t pc = m->cfg.peer;
  if (c->dir == PD_CONN_FEELER) pc.getaddr_on_connect_outbound = false; /* test only */
  prm.cfg = &pc;
  int rc = pd_peer_new(&c->peer, &prm, m->rng, now_ms);
  sodium_memzero(eseed, sizeof eseed);
  if (rc < 0) {
    c->peer = NULL;
    return rc;
  }
  c->state = PD_NETMGR_HANDSHAKE;
  drain_peer(m, c, now_ms);
  return 0;
}

/* Inbound connections still in the handshake from remote's IP and from its
 * network group (their dialer slot is not taken yet). */
static void pending_from(const pd_netmgr_t *m, const pd_netaddr_t *remote, size_t *same_ip,
                         size_t *same_group) {
  uint8_t g[PD_GROUP_MAX], og[PD_GROUP_MAX];
  size_t glen = pd_netaddr_group(remote, m->cfg.dialer.allow_private, g);
  *same_ip = *same_group = 0;
  for (size_t i = 0; i < m->nconns; i++) {
    const conn_t *c = m->conns[i];
    if (c->dir != PD_CONN_INBOUND || c->registered) continue;
    if (pd_netaddr_same_host(&c->addr, remote, m->cfg.dialer.ipv6_prefix)) (*same_ip)++;
    size_t olen = pd_netaddr_group(&c->addr, m->cfg.dialer.allow_private, og);
    if (olen == glen && memcmp(og, g, glen) == 0) (*same_group)++;
  }
}

pd_netmgr_refuse_t pd_netmgr_on_inbound(pd_netmgr_t *m, const pd_netaddr_t *remote, int64_t now_ms,
                                        uint64_t *conn_id) {
  if (!m || !remote || !conn_id) return PD_NETMGR_REFUSE_ERROR;
  release_cur(m);
  pd_netmgr_refuse_t v = PD_NETMGR_ACCEPT;
  if (m->shutting_down) {
    v = PD_NETMGR_REFUSE_FULL;
  } else if (banned_addr(m, remote, secs(now_ms))) {
    v = PD_NETMGR_REFUSE_BANNED;
  } else if (m->pending_in >= m->max_pending_in) {
    v = PD_NETMGR_REFUSE_FULL;
  } else {
    enum pd_inbound_verdict dv = pd_dialer_accept_inbound(m->dialer, remote, NULL, secs(now_ms));
    bool prot = (dv == PD_INBOUND_FULL || dv == PD_INBOUND_PER_IP) &&
                pd_node_is_protected(m->node, remote, NULL);
    if (prot) v = PD_NETMGR_ACCEPT; /* protected: past the limits (the handshake decides) */
    else if (dv == PD_INBOUND_PER_IP) v = PD_NETMGR_REFUSE_PER_IP;
    /* When full, an unconditional peer can only be recognised after the
     * handshake: with unconditional ids configured, let it try (bounded by
     * max_pending_inbound); the verdict with the proven ID decides. */
    else if (dv == PD_INBOUND_FULL && m->cfg.dialer.nunconditional == 0 &&
             !pd_node_protects_ids(m->node) && !evict_inbound(m, NULL, remote, now_ms))
      v = PD_NETMGR_REFUSE_FULL; /* nobody could be evicted for it either */
    else if (dv != PD_INBOUND_ALLOW && dv != PD_INBOUND_FULL) v = PD_NETMGR_REFUSE_FULL;
    if (v == PD_NETMGR_ACCEPT &&
        (m->cfg.max_pending_inbound_per_ip || m->cfg.max_pending_inbound_per_group) &&
        !pd_node_is_protected(m->node, remote, NULL)) {
      size_t same_ip, same_group;
      pending_from(m, remote, &same_ip, &same_group);
      if (m->cfg.max_pending_inbound_per_ip && same_ip >= m->cfg.max_pending_inbound_per_ip)
        v = PD_NETMGR_REFUSE_PER_IP;
      else if (m->cfg.max_pending_inbound_per_group &&
               same_group >= m->cfg.max_pending_inbound_per_group)
        v = PD_NETMGR_REFUSE_PENDING_GROUP;
    }
  }
  if (v == PD_NETMGR_ACCEPT) {
    conn_t *c = conn_add(m, PD_CONN_INBOUND, remote, now_ms);
    if (!c) {
      v = PD_NETMGR_REFUSE_ERROR;
    } else {
      m->pending_in++;
      uint64_t id = c->cid;
      if (start_peer(m, c, now_ms) < 0) {
        m->pending_in--;
        conn_remove(m, c);
        v = PD_NETMGR_REFUSE_ERROR;
      } else {
        *conn_id = id;
      }
    }
  }
  m->c.refused[v]++;
  return v;
}

int pd_netmgr_on_connected(pd_netmgr_t *m, uint64_t conn_id, int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  conn_t *c = conn_get(m, conn_id);
  if (!c || c->peer) return PD_ENOENT;
  if (start_peer(m, c, now_ms) < 0) {
    conn_end(m, c, "no_memory", false, false, 0, true, now_ms);
    return PD_ENOMEM;
  }
  return 0;
}

int pd_netmgr_on_dial_failed(pd_netmgr_t *m, uint64_t conn_id, enum pd_dial_outcome outcome,
                             int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  conn_t *c = conn_get(m, conn_id);
  if (!c || c->dir == PD_CONN_INBOUND) return PD_ENOENT;
  if ((unsigned)outcome >= PD_DIAL_OUTCOME_COUNT || outcome == PD_DIAL_OK) outcome = PD_DIAL_ERROR;
  int64_t now = secs(now_ms);
  if (c->dir == PD_CONN_FEELER) m->c.feelers_failed++;
  audit_dial_failed(m, c, outcome, NULL, now_ms);
  pd_dialer_on_dial_result(m->dialer, &c->target.addr, outcome, now);
  pd_node_event_result_t r;
  pd_node_event(m->node, &c->target.addr, PD_METRICS_EV_FAILED, pd_dialer_outcome_name(outcome),
                now, &r);
  m->dialer_due_ms = now_ms;
  conn_remove(m, c);
  return 0;
}

int pd_netmgr_on_bytes(pd_netmgr_t *m, uint64_t conn_id, const uint8_t *buf, size_t len,
                       int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  conn_t *c = conn_get(m, conn_id);
  if (!c || !c->peer) return PD_ENOENT;
  pd_peer_on_bytes(c->peer, buf, len, now_ms);
  drain_peer(m, c, now_ms);
  return 0;
}

int pd_netmgr_on_closed(pd_netmgr_t *m, uint64_t conn_id, int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  conn_t *c = conn_get(m, conn_id);
  if (!c) return PD_ENOENT;
  /* The stream ended inside a frame: a cut frame (a sealed one cannot be
   * completed by anyone else), counted as "truncated"; not misbehaviour. */
  bool cut = c->peer && pd_peer_state(c->peer) != PD_PEER_CLOSED && pd_peer_mid_frame(c->peer);
  conn_end(m, c, cut ? "truncated" : "closed", false, false, 0, false, now_ms);
  return 0;
}

int pd_netmgr_on_resolved(pd_netmgr_t *m, uint64_t token, const pd_netaddr_t *addrs, size_t n,
                          int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  enum pd_dial_reason reason = (enum pd_dial_reason)(token >> 32);
  size_t index = (size_t)(token & 0xffffffffu);
  int rc = pd_dialer_on_resolved(m->dialer, reason, index, addrs, n, secs(now_ms));
  if (rc < 0) return PD_ENOENT;
  m->dialer_due_ms = now_ms;
  return 0;
}

void pd_netmgr_enforce_bans(pd_netmgr_t *m, int64_t now_ms) {
  if (!m) return;
  uint64_t adds = pd_banlist_adds(pd_book_bans(pd_node_book(m->node)));
  if (adds == m->bans_seen) return;
  m->bans_seen = adds;
  close_banned(m, now_ms);
}

int pd_netmgr_on_tick(pd_netmgr_t *m, int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  pd_netmgr_enforce_bans(m, now_ms);
  announce_self(m, now_ms);
  /* Snapshot ids: connections may go away while we work. */
  size_t n = m->nconns;
  uint64_t few[64];
  uint64_t *ids = n <= 64 ? few : malloc(n * sizeof *ids);
  if (!ids) return PD_ENOMEM;
  if (n) memcpy(ids, m->cids, n * sizeof *ids);
  int64_t dial_to_ms = m->cfg.dialer.inflight_timeout > 0 ? m->cfg.dialer.inflight_timeout * 1000 : 0;
  for (size_t i = 0; i < n; i++) {
    size_t j = conn_index(m, ids[i]);
    if (j == m->nconns || m->due[j] > now_ms) continue; /* gone, or nothing due */
    conn_t *c = m->conns[j];
    if (!c->peer) {
      /* A DIAL the driver never answered: give up on it (CLOSE cancels). */
      if (dial_to_ms && now_ms - c->since_ms >= dial_to_ms)
        conn_end(m, c, "dial_timeout", false, false, 0, true, now_ms);
      continue;
    }
    if (c->rq_due_ms && now_ms >= c->rq_due_ms) {
      flush_relay(m, c, now_ms);
      if (!(c = conn_get(m, ids[i])) || !c->peer) continue;
    }
    if (c->crawl_deadline_ms && now_ms >= c->crawl_deadline_ms &&
        pd_peer_state(c->peer) == PD_PEER_READY) {
      c->crawl_deadline_ms = 0;
      set_due(m, c);
      c->close_code = PD_WIRE_BYE_SEED_DONE;
      pd_peer_close(c->peer, PD_WIRE_BYE_SEED_DONE, NULL);
      drain_peer(m, c, now_ms);
      continue;
    }
    if (now_ms >= c->deadline) {
      pd_peer_on_tick(c->peer, now_ms);
      drain_peer(m, c, now_ms);
    }
  }
  if (ids != few) free(ids);
  if (!m->shutting_down && now_ms >= m->dialer_due_ms) run_dialer(m, now_ms);
  if (!m->shutting_down) ask_when_hungry(m, now_ms);
  return 0;
}

void pd_netmgr_shutdown(pd_netmgr_t *m, int64_t now_ms) {
  if (!m) return;
  release_cur(m);
  m->shutting_down = true;
  while (m->nconns > 0) {
    conn_t *c = m->conns[m->nconns - 1];
    size_t before = m->nconns;
    close_conn(m, c, PD_WIRE_BYE_NORMAL, NULL, now_ms);
    if (m->nconns == before) conn_end(m, c, "normal", false, false, 0, true, now_ms);
  }
}

int64_t pd_netmgr_next_deadline_ms(const pd_netmgr_t *m) {
  if (!m) return INT64_MAX;
  int64_t t = m->shutting_down ? INT64_MAX : m->dialer_due_ms;
  if (!m->shutting_down && book_hungry(m) && m->next_hungry_ms < t) t = m->next_hungry_ms;
  for (size_t i = 0; i < m->nconns; i++) {
    int64_t d = m->due[i];
#ifndef NDEBUG
    const conn_t *c = m->conns[i];
    assert(!c->peer || c->deadline == pd_peer_next_deadline(c->peer)); /* every peer call is drained */
    assert(d == conn_due(c)); /* every change is recorded */
#endif
    if (d != DUE_ALWAYS && d < t) t = d;
  }
  return t;
}

/* --- introspection ------------------------------------------------------------------------- */

size_t pd_netmgr_peers(pd_netmgr_t *m, int64_t now_ms, pd_netmgr_peer_info_t *out, size_t cap) {
  if (!m) return 0;
  for (size_t i = 0; i < m->nconns && i < cap && out; i++) {
    const conn_t *c = m->conns[i];
    pd_netmgr_peer_info_t *p = &out[i];
    memset(p, 0, sizeof *p);
    p->conn_id = c->cid;
    p->has_id = c->has_id;
    memcpy(p->id, c->id, PD_NODE_ID_LEN);
    if (c->has_id) pd_node_id_format(c->id, p->id_hex, sizeof p->id_hex);
    p->addr = c->addr;
    p->dir = c->dir;
    p->state = c->state;
    p->since_ms = c->since_ms;
    p->ready_ms = c->ready_ms;
    p->latency_ms = -1;
    if (c->peer) {
      const pd_peer_stats_t *s = pd_peer_stats(c->peer);
      p->bytes_in = s->bytes_in;
      p->bytes_out = s->bytes_out;
      p->latency_ms = s->latency_ms;
      const pd_peer_remote_t *r = pd_peer_remote(c->peer);
      if (r) {
        p->has_listen = r->has_listen;
        p->listen = r->listen;
        memcpy(p->agent, r->agent, sizeof p->agent);
      }
    }
    pd_netaddr_t ba = book_addr(c);
    pd_peer_view_t v;
    pd_node_peer_view(m->node, &ba, secs(now_ms), &v);
    p->score = pd_node_score(m->node, &v, secs(now_ms));
    p->is_protected = pd_node_is_protected(m->node, &c->addr, c->has_id ? c->id : NULL) ||
                      pd_node_is_protected(m->node, &ba, NULL);
  }
  return m->nconns;
}

/* --- operator control ------------------------------------------------------------------------ */

static bool conn_matches(const conn_t *c, const pd_netaddr_t *addr, bool any_port,
                         const uint8_t *id) {
  if (id && c->has_id && memcmp(c->id, id, PD_NODE_ID_LEN) == 0) return true;
  if (!addr) return false;
  if (any_port) return pd_netaddr_same_ip(&c->addr, addr);
  if (pd_netaddr_equal(&c->addr, addr)) return true;
  if (c->dir != PD_CONN_INBOUND) return pd_netaddr_equal(&c->target.addr, addr);
  pd_netaddr_t ba = book_addr(c);
  return pd_netaddr_equal(&ba, addr);
}

int pd_netmgr_send_addrs(pd_netmgr_t *m, uint64_t conn_id, const pd_wire_addr_entry_t *entries,
                         size_t count, int64_t now_ms) {
  if (!m) return PD_EINVAL;
  release_cur(m);
  conn_t *c = conn_get(m, conn_id);
  if (!c || !c->peer) return PD_ENOENT;
  int rc = pd_peer_send_addrs(c->peer, entries, count, now_ms);
  drain_peer(m, c, now_ms);
  return rc;
}

size_t pd_netmgr_disconnect(pd_netmgr_t *m, const pd_netaddr_t *addr, bool any_port,
                            const uint8_t *id, int64_t now_ms, pd_node_closed_t *out, size_t cap) {
  if (!m || (!addr && !id)) return 0;
  release_cur(m);
  size_t n = m->nconns, closed = 0;
  uint64_t few[64];
  uint64_t *ids = n <= 64 ? few : malloc(n * sizeof *ids);
  if (!ids) return 0;
  if (n) memcpy(ids, m->cids, n * sizeof *ids);
  for (size_t i = 0; i < n; i++) {
    conn_t *c = conn_get(m, ids[i]);
    if (!c || !conn_matches(c, addr, any_port, id)) continue;
    if (c->peer && pd_peer_state(c->peer) == PD_PEER_CLOSED) continue;
    if (out && closed < cap) {
      pd_node_closed_t *o = &out[closed];
      memset(o, 0, sizeof *o);
      if (c->has_id) pd_node_id_format(c->id, o->id, sizeof o->id);
      pd_netaddr_format(&c->addr, o->addr, sizeof o->addr);
      o->direction = pd_dialer_dir_name(c->dir);
    }
    closed++;
    close_conn(m, c, PD_WIRE_BYE_NORMAL, "operator", now_ms);
  }
  if (ids != few) free(ids);
  return closed;
}

int pd_netmgr_connect(pd_netmgr_t *m, const pd_dial_target_t *t, int64_t now_ms,
                      uint64_t *conn_id, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  *why = NULL;
  if (!m || !t) return PD_EINVAL;
  release_cur(m);
  pd_dialer_explain_t x;
  pd_dialer_explain(m->dialer, t, secs(now_ms), &x);
  if (m->shutting_down || x.dialling_off) {
    *why = m->shutting_down ? "shutting down" : "dialling is off (--max-outbound 0)";
    return PD_EFULL;
  }
  if (x.self || (m->cfg.has_listen && pd_netaddr_equal(&t->addr, &m->cfg.listen))) {
    *why = "that is this peerd";
    return PD_EINVAL;
  }
  for (size_t i = 0; i < m->nconns; i++) {
    const conn_t *c = m->conns[i];
    if (conn_matches(c, &t->addr, false, t->has_id ? t->id : NULL)) {
      *why = c->state == PD_NETMGR_DIALING ? "a dial to it is in flight" : "already connected";
      return PD_EEXIST;
    }
  }
  if (x.in_flight) {
    *why = "a dial to it is in flight";
    return PD_EEXIST;
  }
  conn_t *c = conn_add(m, PD_CONN_OUTBOUND, &t->addr, now_ms);
  if (!c) {
    *why = "out of memory";
    return PD_ENOMEM;
  }
  c->state = PD_NETMGR_DIALING;
  c->target = *t;
  c->reason = PD_DIAL_REASON_SELECT;
  if (t->has_id) {
    c->has_id = true;
    memcpy(c->id, t->id, PD_NODE_ID_LEN);
  }
  pd_netmgr_action_t a;
  memset(&a, 0, sizeof a);
  a.type = PD_NETMGR_A_DIAL;
  a.conn_id = c->cid;
  a.dial.target = *t;
  a.dial.reason = PD_DIAL_REASON_SELECT;
  if (q_push(m, &a, NULL, 0) < 0) {
    conn_remove(m, c);
    *why = "out of memory";
    return PD_ENOMEM;
  }
  if (conn_id) *conn_id = c->cid;
  return 0;
}

void pd_netmgr_dial_state(pd_netmgr_t *m, const pd_dial_target_t *t, int64_t now_ms,
                          pd_node_dial_state_t *out) {
  memset(out, 0, sizeof *out);
  if (!m || !t) return;
  pd_dialer_explain_t x;
  pd_dialer_explain(m->dialer, t, secs(now_ms), &x);
  out->self = x.self || (m->cfg.has_listen && pd_netaddr_equal(&t->addr, &m->cfg.listen));
  out->in_flight = x.in_flight;
  out->group_taken = x.group_taken;
  out->backoff_until = x.backoff_until;
  out->failures = x.failures;
  out->dialling_off = x.dialling_off;
  out->slots_full = x.slots_full;
  out->outbound = x.outbound;
  out->max_outbound = x.max_outbound;
  out->connected = x.connected;
  out->direction = x.connected ? pd_dialer_dir_name(x.dir) : NULL;
  /* an inbound peer is known by its announced listen address, which the dialer does not see */
  for (size_t i = 0; i < m->nconns && !out->connected; i++) {
    const conn_t *c = m->conns[i];
    if (c->state == PD_NETMGR_DIALING) {
      if (pd_netaddr_equal(&c->target.addr, &t->addr)) out->in_flight = true;
      continue;
    }
    if (conn_matches(c, &t->addr, false, t->has_id ? t->id : NULL)) {
      out->connected = true;
      out->direction = pd_dialer_dir_name(c->dir);
    }
  }
}

size_t pd_netmgr_conn_count(const pd_netmgr_t *m) { return m ? m->nconns : 0; }

void pd_netmgr_counters(const pd_netmgr_t *m, pd_netmgr_counters_t *out) {
  if (!m || !out) return;
  *out = m->c;
  pd_dialer_counters(m->dialer, &out->dialer);
  for (size_t i = 0; i < m->nconns; i++) {
    const conn_t *c = m->conns[i];
    if (!c->peer) continue;
    const pd_peer_stats_t *s = pd_peer_stats(c->peer);
    out->bytes_in += s->bytes_in;
    out->bytes_out += s->bytes_out;
    for (unsigned t = 0; t < PD_WIRE_TYPE_COUNT; t++) {
      out->frames_in[t] += s->frames_in[t];
      out->frames_out[t] += s->frames_out[t];
    }
  }
}

size_t pd_netmgr_anchors(const pd_netmgr_t *m, pd_dial_target_t *out, size_t cap) {
  if (!m) return 0;
  return pd_dialer_anchors(m->dialer, out, cap);
}

pd_dialer_t *pd_netmgr_dialer(pd_netmgr_t *m) { return m ? m->dialer : NULL; }
pd_node_t *pd_netmgr_node(pd_netmgr_t *m) { return m ? m->node : NULL; }
