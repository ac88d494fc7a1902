/* Unit tests for netmgr: several network managers (each with its own node,
 * book, identity and RNGs) wired together through an in-memory switchboard
 * on a fake clock. DIAL is delivered as the target's on_inbound +
 * the dialler's on_connected, SEND as the other side's on_bytes, CLOSE as
 * the other side's on_closed. "Raw" endpoints are bare pd_peer state
 * machines (or byte scripts) driven by the test, for hostile and PEX cases.
 * Everything is deterministic from the seeds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "addrbook.h"
#include "banlist.h"
#include "err.h"
#include <jansson.h>

#include "identity.h"
#include "inevict.h"
#include "netmgr.h"
#include "node.h"
#include "peer.h"
#include "record.h"
#include "rectable.h"
#include "self.h"
#include "wire.h"

#define T0 ((int64_t)1700000000000) /* ms */
#define MAXH 24
#define PORT 7411

enum { MGR = 0, RAW = 1 };

typedef struct host {
  int kind;
  bool up;
  pd_rng_t brng, mrng;
  pd_identity_t ident;
  pd_node_t *node;
  pd_netmgr_t *m;
  pd_netaddr_t listen;
  /* raw endpoints */
  pd_peer_t *peer;
  int link;
  bool raw_ready, raw_closed, raw_remote, raw_eof;
  uint16_t raw_bye;
  const char *raw_reason;
  pd_wire_addr_entry_t raw_addrs[PD_WIRE_MAX_ADDRS];
  size_t raw_naddrs;
  int raw_addr_msgs;
  /* GETADDR answers: when raw_has_answer, every passed-on GETADDR is
   * answered with this one address. */
  bool raw_has_answer;
  pd_netaddr_t raw_answer;
  int raw_answers_sent;
  /* unsolicited ADDRs (relays) received */
  int raw_relay_msgs;
  /* DIAL and RESOLVE actions this manager emitted */
  int dial_acts, resolve_acts;
  pd_wire_addr_entry_t raw_relayed[64];
  size_t raw_nrelayed;
} host_t;

typedef struct link {
  int a, b;
  uint64_t ca, cb;
  bool open;
} link_t;

/* A feeler DIAL seen on the switchboard and what became of it. */
typedef struct feeler_rec {
  int host;
  uint64_t conn;
  pd_netaddr_t target;
  int64_t dial_ms, close_ms; /* close_ms: -1 while open */
  const char *close_reason;
  bool answered; /* a live host accepted it */
} feeler_rec_t;

#define MAXF 64

typedef struct world {
  host_t h[MAXH];
  int n;
  link_t *links;
  size_t nl, lcap;
  int64_t now;
  uint64_t hash;
  unsigned eph;
  bool has_blackhole; /* DIALs to this address are never answered */
  pd_netaddr_t blackhole;
  uint64_t bh_conn;
  int bh_closed;
  feeler_rec_t fl[MAXF];
  int nfl;
  bool has_raw_listen; /* the next add_raw announces this listen address */
  pd_netaddr_t raw_listen;
} world_t;

static void mix(world_t *w, const void *p, size_t len) {
  const uint8_t *b = p;
  for (size_t i = 0; i < len; i++) {
    w->hash ^= b[i];
    w->hash *= 1099511628211ull;
  }
}

static pd_netaddr_t ip4(int a, int b, int c, int d, uint16_t port) {
  pd_netaddr_t x;
  memset(&x, 0, sizeof x);
  x.ip[10] = 0xff;
  x.ip[11] = 0xff;
  x.ip[12] = (uint8_t)a;
  x.ip[13] = (uint8_t)b;
  x.ip[14] = (uint8_t)c;
  x.ip[15] = (uint8_t)d;
  x.port = port;
  return x;
}

static world_t *world_new(void) {
  world_t *w = calloc(1, sizeof *w);
  assert_non_null(w);
  w->now = T0;
  w->hash = 1469598103934665603ull;
  return w;
}

static void make_identity(pd_identity_t *id, uint64_t seed) {
  uint8_t s[PD_IDENTITY_SEED_LEN];
  pd_rng_t r;
  pd_rng_seed(&r, seed * 7919 + 17);
  pd_rng_fill(&r, s, sizeof s);
  assert_int_equal(pd_identity_from_seed(id, s), 0);
}

typedef struct hostopts {
  bool seed_mode;
  int seed_host; /* -1: none */
  bool seed_with_id;
  uint32_t min_out, max_out, max_in;
  int64_t ttl_ms;
  int persistent_host; /* -1: none */
  bool no_feelers;
  bool no_hungry; /* book_want = never */
  bool relay_at_once; /* relay_trickle_ms < 0 */
  const pd_dial_target_t *anchors; /* as loaded from anchors.json */
  size_t nanchors;
} hostopts_t;

static void opts_default(hostopts_t *o) {
  memset(o, 0, sizeof *o);
  o->seed_host = -1;
  o->persistent_host = -1;
  o->min_out = 3;
  o->max_out = 3;
}

/* Host i listens on 127.(i+1).0.1:7411 (distinct /16 groups). */
static int add_mgr(world_t *w, uint64_t seed, const hostopts_t *o) {
  int i = w->n++;
  host_t *h = &w->h[i];
  h->kind = MGR;
  h->up = true;
  h->link = -1;
  h->listen = ip4(127, i + 1, 0, 1, PORT);
  pd_rng_seed(&h->brng, seed * 31 + 1);
  pd_rng_seed(&h->mrng, seed * 31 + 2);
  make_identity(&h->ident, seed);
  uint8_t key[PD_BOOK_KEY_LEN];
  pd_rng_fill(&h->brng, key, sizeof key);
  pd_book_t *book = NULL;
  assert_int_equal(pd_book_create(&book, key, &h->brng, PD_BOOK_ALLOW_PRIVATE), 0);
  pd_node_config_t nc = {.allow_private = true, .save_interval = 300, .default_ban_secs = 3600};
  assert_int_equal(pd_node_create(&h->node, &nc, book, &h->brng, w->now / 1000), 0);

  pd_netmgr_config_t cfg;
  pd_netmgr_config_default(&cfg);
  cfg.has_listen = true;
  cfg.listen = h->listen;
  cfg.seed_mode = o->seed_mode;
  cfg.getaddr_cache_ttl_ms = o->ttl_ms;
  cfg.dialer.allow_private = true;
  cfg.dialer.min_outbound = o->min_out;
  cfg.dialer.max_outbound = o->max_out;
  if (o->max_in) cfg.dialer.max_inbound = o->max_in;
  if (o->no_feelers) cfg.dialer.feeler_interval = 0;
  if (o->no_hungry) cfg.book_want = SIZE_MAX;
  if (o->relay_at_once) cfg.relay_trickle_ms = -1;
  cfg.anchors = o->anchors;
  cfg.nanchors = o->nanchors;
  pd_endpoint_t seeds[1], pers[1];
  if (o->seed_host >= 0) {
    memset(seeds, 0, sizeof seeds);
    seeds[0].is_ip = true;
    seeds[0].addr = w->h[o->seed_host].listen;
    seeds[0].port = PORT;
    snprintf(seeds[0].host, sizeof seeds[0].host, "127.%d.0.1", o->seed_host + 1);
    if (o->seed_with_id) {
      seeds[0].has_id = true;
      memcpy(seeds[0].id, w->h[o->seed_host].ident.id, PD_NODE_ID_LEN);
    }
    cfg.dialer.seeds = seeds;
    cfg.dialer.nseeds = 1;
  }
  if (o->persistent_host >= 0) {
    memset(pers, 0, sizeof pers);
    pers[0].is_ip = true;
    pers[0].addr = ip4(127, o->persistent_host + 1, 0, 1, PORT);
    pers[0].port = PORT;
    snprintf(pers[0].host, sizeof pers[0].host, "127.%d.0.1", o->persistent_host + 1);
    cfg.dialer.persistent = pers;
    cfg.dialer.npersistent = 1;
  }
  const char *why = NULL;
  int rc = pd_netmgr_create(&h->m, &cfg, h->node, &h->ident, &h->mrng, w->now, &why);
  if (rc != 0) fail_msg("create: %s", why ? why : "?");
  return i;
}

static size_t link_new(world_t *w, int a, uint64_t ca, int b, uint64_t cb) {
  if (w->nl == w->lcap) {
    w->lcap = w->lcap ? w->lcap * 2 : 64;
    w->links = realloc(w->links, w->lcap * sizeof *w->links);
    assert_non_null(w->links);
  }
  w->links[w->nl] = (link_t){.a = a, .ca = ca, .b = b, .cb = cb, .open = true};
  return w->nl++;
}

static link_t *link_find(world_t *w, int host, uint64_t cid) {
  for (size_t i = w->nl; i-- > 0;) {
    link_t *l = &w->links[i];
    if (!l->open) continue;
    if ((l->a == host && l->ca == cid) || (l->b == host && l->cb == cid)) return l;
  }
  return NULL;
}

static void deliver(world_t *w, int to, uint64_t cid, const uint8_t *data, size_t len) {
  host_t *h = &w->h[to];
  if (h->kind == MGR) {
    if (h->up) pd_netmgr_on_bytes(h->m, cid, data, len, w->now);
  } else if (h->peer) {
    pd_peer_on_bytes(h->peer, data, len, w->now);
  }
}

static void peer_closed(world_t *w, int to, uint64_t cid) {
  host_t *h = &w->h[to];
  if (h->kind == MGR) {
    if (h->up) pd_netmgr_on_closed(h->m, cid, w->now);
  } else {
    h->raw_eof = true;
  }
}

static void handle(world_t *w, int i, const pd_netmgr_action_t *a) {
  host_t *h = &w->h[i];
  mix(w, &i, sizeof i);
  mix(w, &a->type, sizeof a->type);
  mix(w, &a->conn_id, sizeof a->conn_id);
  switch (a->type) {
  case PD_NETMGR_A_DIAL: {
    h->dial_acts++;
    mix(w, &a->dial.target.addr, sizeof a->dial.target.addr);
    feeler_rec_t *fr = NULL;
    if (a->dial.feeler) {
      assert_true(w->nfl < MAXF);
      fr = &w->fl[w->nfl++];
      *fr = (feeler_rec_t){.host = i, .conn = a->conn_id, .target = a->dial.target.addr,
                           .dial_ms = w->now, .close_ms = -1};
    }
    if (w->has_blackhole && pd_netaddr_equal(&w->blackhole, &a->dial.target.addr)) {
      w->bh_conn = a->conn_id;
      break;
    }
    int j = -1;
    for (int k = 0; k < w->n; k++)
      if (w->h[k].kind == MGR && w->h[k].up && k != i &&
          pd_netaddr_equal(&w->h[k].listen, &a->dial.target.addr))
        j = k;
    /* A host dialling its own address reaches itself. */
    if (pd_netaddr_equal(&h->listen, &a->dial.target.addr)) j = i;
    if (j < 0) {
      pd_netmgr_on_dial_failed(h->m, a->conn_id, PD_DIAL_REFUSED, w->now);
      break;
    }
    pd_netaddr_t remote = h->listen;
    remote.port = (uint16_t)(40000 + (w->eph++ % 20000));
    uint64_t cb = 0;
    if (pd_netmgr_on_inbound(w->h[j].m, &remote, w->now, &cb) != PD_NETMGR_ACCEPT) {
      pd_netmgr_on_dial_failed(h->m, a->conn_id, PD_DIAL_REFUSED, w->now);
      break;
    }
    link_new(w, i, a->conn_id, j, cb);
    if (fr) fr->answered = true;
    pd_netmgr_on_connected(h->m, a->conn_id, w->now);
    break;
  }
  case PD_NETMGR_A_SEND: {
    mix(w, a->send.data, a->send.len);
    link_t *l = link_find(w, i, a->conn_id);
    if (!l) break;
    bool me_a = l->a == i && l->ca == a->conn_id;
    /* The bytes are valid until the next call into this manager, which
     * the delivery is when a host reached itself: copy them. */
    uint8_t *copy = malloc(a->send.len ? a->send.len : 1);
    assert_non_null(copy);
    memcpy(copy, a->send.data, a->send.len);
    deliver(w, me_a ? l->b : l->a, me_a ? l->cb : l->ca, copy, a->send.len);
    free(copy);
    break;
  }
  case PD_NETMGR_A_CLOSE: {
    if (w->has_blackhole && a->conn_id == w->bh_conn && i == 0) w->bh_closed++;
    if (getenv("NM_DEBUG")) print_message("close host %d conn %llu reason %s\n", i, (unsigned long long)a->conn_id, a->close.reason);
    for (int k = 0; k < w->nfl; k++) {
      feeler_rec_t *fr = &w->fl[k];
      if (fr->host == i && fr->conn == a->conn_id && fr->close_ms < 0) {
        fr->close_ms = w->now;
        fr->close_reason = a->close.reason;
      }
    }
    link_t *l = link_find(w, i, a->conn_id);
    if (!l) break;
    l->open = false;
    bool me_a = l->a == i && l->ca == a->conn_id;
    peer_closed(w, me_a ? l->b : l->a, me_a ? l->cb : l->ca);
    break;
  }
  case PD_NETMGR_A_RESOLVE:
    h->resolve_acts++;
    pd_netmgr_on_resolved(h->m, a->resolve.token, NULL, 0, w->now);
    break;
  }
}

static void raw_handle(world_t *w, int i, const pd_peer_action_t *a) {
  host_t *h = &w->h[i];
  link_t *l = h->link >= 0 ? &w->links[h->link] : NULL;
  switch (a->type) {
  case PD_PEER_A_SEND:
    if (l && l->open) deliver(w, l->b, l->cb, a->send.data, a->send.len);
    break;
  case PD_PEER_A_CLOSE:
    h->raw_closed = true;
    h->raw_reason = a->close.reason;
    h->raw_remote = a->close.remote;
    h->raw_bye = a->close.remote_code;
    if (l && l->open) {
      l->open = false;
      peer_closed(w, l->b, l->cb);
    }
    break;
  case PD_PEER_A_HANDSHAKE_DONE:
    h->raw_ready = true;
    break;
  case PD_PEER_A_ADDRS_RECEIVED:
    if (!a->addrs.solicited) { /* relayed announcements */
      h->raw_relay_msgs++;
      for (size_t k = 0; k < a->addrs.count && h->raw_nrelayed < 64; k++)
        h->raw_relayed[h->raw_nrelayed++] = a->addrs.entries[k];
      break;
    }
    h->raw_addr_msgs++;
    h->raw_naddrs = a->addrs.count;
    memcpy(h->raw_addrs, a->addrs.entries, a->addrs.count * sizeof *a->addrs.entries);
    break;
  case PD_PEER_A_GETADDR_RECEIVED:
    if (h->raw_has_answer) {
      pd_wire_addr_entry_t e;
      memset(&e, 0, sizeof e);
      e.addr = h->raw_answer;
      e.timestamp = w->now / 1000;
      assert_int_equal(pd_peer_send_addrs(h->peer, &e, 1, w->now), 0);
      h->raw_answers_sent++;
    }
    break;
  default:
    break;
  }
}

static void pump(world_t *w) {
  for (int rounds = 0; rounds < 100000; rounds++) {
    bool any = false;
    for (int i = 0; i < w->n; i++) {
      host_t *h = &w->h[i];
      if (h->kind == MGR) {
        pd_netmgr_action_t a;
        while (h->up && pd_netmgr_poll(h->m, &a)) {
          any = true;
          handle(w, i, &a);
        }
      } else if (h->peer) {
        pd_peer_action_t a;
        while (pd_peer_poll(h->peer, &a)) {
          any = true;
          raw_handle(w, i, &a);
        }
      }
    }
    if (!any) return;
  }
  fail_msg("pump did not settle");
}

static void step(world_t *w, int64_t dt_ms) {
  w->now += dt_ms;
  for (int i = 0; i < w->n; i++) {
    host_t *h = &w->h[i];
    if (h->kind == MGR && h->up) pd_netmgr_on_tick(h->m, w->now);
    else if (h->kind == RAW && h->peer) pd_peer_on_tick(h->peer, w->now);
  }
  pump(w);
}

static void run(world_t *w, int64_t ms) {
  for (int64_t t = 0; t < ms; t += 100) step(w, 100);
}

/* A raw endpoint (a bare peer state machine with its own identity) that
 * connects to manager `to` from `from`. */
static int add_raw(world_t *w, uint64_t seed, int to, pd_netaddr_t from, bool ask) {
  int i = w->n++;
  host_t *h = &w->h[i];
  h->kind = RAW;
  h->up = true;
  h->listen = from;
  if (w->has_raw_listen) h->listen = w->raw_listen;
  w->has_raw_listen = false;
  pd_rng_seed(&h->mrng, seed * 131 + 5);
  make_identity(&h->ident, seed);
  uint64_t cid = 0;
  pd_netmgr_refuse_t v = pd_netmgr_on_inbound(w->h[to].m, &from, w->now, &cid);
  if (v != PD_NETMGR_ACCEPT) {
    h->link = -1;
    h->raw_closed = true;
    h->raw_reason = pd_netmgr_refuse_name(v);
    return i;
  }
  h->link = (int)link_new(w, i, 0, to, cid);
  static const uint8_t magic[4] = PD_WIRE_MAGIC_DEFAULT_INIT;
  pd_peer_config_t pc;
  pd_peer_config_default(&pc);
  pc.getaddr_on_connect_outbound = ask;
  pc.getaddr_interval_ms = 0; /* ask once */
  pd_peer_params_t prm = {.self = &h->ident,
                          .magic = magic,
                          .network = PD_WIRE_NETWORK_DEFAULT,
                          .dir = PD_PEER_OUTBOUND,
                          .listen = &h->listen,
                          .cfg = &pc};
  assert_int_equal(pd_peer_new(&h->peer, &prm, &h->mrng, w->now), 0);
  pump(w);
  return i;
}

static void raw_free(host_t *h) {
  pd_peer_free(h->peer);
  h->peer = NULL;
}

static void world_free(world_t *w) {
  for (int i = 0; i < w->n; i++) {
    host_t *h = &w->h[i];
    if (h->kind == MGR) {
      pd_netmgr_destroy(h->m);
      pd_node_destroy(h->node);
    } else {
      raw_free(h);
    }
  }
  free(w->links);
  free(w);
}

static size_t count_ready(host_t *h, int64_t now, enum pd_conn_dir dir) {
  pd_netmgr_peer_info_t info[64];
  size_t n = pd_netmgr_peers(h->m, now, info, 64);
  size_t k = 0;
  for (size_t i = 0; i < n && i < 64; i++)
    if (info[i].dir == dir && info[i].state == PD_NETMGR_READY) k++;
  return k;
}

static bool in_tried(host_t *h, const pd_netaddr_t *a) {
  pd_book_t *b = pd_node_book(h->node);
  uint32_t id = pd_book_find(b, a);
  pd_book_info_t inf;
  if (id == PD_BOOK_NO_ID || pd_book_info(b, id, &inf) != 0) return false;
  return inf.in_tried;
}

static bool in_book(host_t *h, const pd_netaddr_t *a) {
  return pd_book_find(pd_node_book(h->node), a) != PD_BOOK_NO_ID;
}

/* --- tests ---------------------------------------------------------------------- */

/* 1 seed (seed mode) + 9 nodes find each other. Returns the transcript hash. */
static uint64_t discovery_run(uint64_t base, int64_t *converged_ms) {
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.seed_mode = true;
  o.max_out = 8;
  int seed = add_mgr(w, base, &o);
  for (int k = 0; k < 9; k++) {
    opts_default(&o);
    o.seed_host = seed;
    o.seed_with_id = (k % 2) == 0;
    o.max_in = 5; /* 9 nodes x 3 outbound: keep early nodes from taking every edge */
    add_mgr(w, base + 1 + (uint64_t)k, &o);
  }
  pump(w);
  *converged_ms = -1;
  for (int64_t t = 0; t < 300000; t += 100) {
    step(w, 100);
    bool ok = true;
    for (int i = 1; i < w->n && ok; i++) {
      host_t *h = &w->h[i];
      if (count_ready(h, w->now, PD_CONN_OUTBOUND) < 3) ok = false;
      if (pd_book_size(pd_node_book(h->node)) < 7) ok = false;
    }
    if (ok) {
      *converged_ms = t + 100;
      break;
    }
  }
  /* Afterwards: the seed holds no long-lived connections and crawled. */
  run(w, 60000);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[seed].m, &c);
  assert_true(c.seed_crawls > 0);
  assert_true(c.getaddr_answered > 0);
  assert_true(pd_book_size(pd_node_book(w->h[seed].node)) >= 9);
  for (int i = 1; i < w->n; i++) {
    host_t *h = &w->h[i];
    assert_true(count_ready(h, w->now, PD_CONN_OUTBOUND) >= 3);
    size_t known = 0;
    for (int j = 0; j < w->n; j++)
      if (j != i && in_book(h, &w->h[j].listen)) known++;
    assert_true(known >= 7);
    pd_netmgr_counters_t hc;
    pd_netmgr_counters(h->m, &hc);
    assert_true(hc.handshakes >= 3);
    assert_int_equal(hc.rejected[PD_WIRE_R_BAD_MAGIC], 0);
    assert_int_equal(hc.misbehaviour_reports, 0);
  }
  uint64_t hash = w->hash;
  world_free(w);
  return hash;
}

static void test_discovery(void **state) {
  (void)state;
  int64_t conv = -1, conv2 = -1;
  uint64_t h1 = discovery_run(100, &conv);
  print_message("# discovery: 1 seed + 9 nodes converged in %lld ms (simulated)\n",
                (long long)conv);
  assert_true(conv > 0 && conv <= 120000);
  uint64_t h2 = discovery_run(100, &conv2);
  assert_int_equal(h1, h2); /* deterministic given seeds */
  assert_int_equal(conv, conv2);
  uint64_t h3 = discovery_run(200, &conv2);
  assert_int_not_equal(h1, h3);
}

/* Outbound good moves the dialled address to tried; inbound never does. */
static void test_outbound_tried_inbound_not(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  int b = add_mgr(w, 7, &o);
  o.seed_host = b;
  int a = add_mgr(w, 8, &o);
  run(w, 5000);
  assert_int_equal(count_ready(&w->h[a], w->now, PD_CONN_OUTBOUND), 1);
  assert_int_equal(count_ready(&w->h[b], w->now, PD_CONN_INBOUND), 1);
  /* A dialled B: B is in A's tried table. */
  assert_true(in_tried(&w->h[a], &w->h[b].listen));
  /* B learnt A's listen address from the HELLO, in new only. */
  assert_true(in_book(&w->h[b], &w->h[a].listen));
  assert_false(in_tried(&w->h[b], &w->h[a].listen));
  assert_int_equal(pd_book_count_tried(pd_node_book(w->h[b].node)), 0);
  /* Peers list: ids, directions, bytes. */
  pd_netmgr_peer_info_t info[4];
  assert_int_equal(pd_netmgr_peers(w->h[b].m, w->now, info, 4), 1);
  assert_int_equal(info[0].dir, PD_CONN_INBOUND);
  assert_true(info[0].has_id);
  assert_memory_equal(info[0].id, w->h[a].ident.id, PD_NODE_ID_LEN);
  assert_int_equal(strlen(info[0].id_hex), 40);
  assert_true(info[0].bytes_in > 0 && info[0].bytes_out > 0);
  assert_true(info[0].latency_ms >= 0);
  /* Anchors: A's outbound peer is B. */
  pd_dial_target_t anc[4];
  assert_int_equal(pd_netmgr_anchors(w->h[a].m, anc, 4), 1);
  assert_true(pd_netaddr_equal(&anc[0].addr, &w->h[b].listen));
  /* Frame counters. */
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[a].m, &c);
  assert_true(c.frames_out[PD_WIRE_HELLO] == 1 && c.frames_in[PD_WIRE_HELLO] == 1);
  assert_true(c.frames_out[PD_WIRE_GETADDR] >= 1);
  assert_int_equal(c.dialer.connected[PD_CONN_OUTBOUND], 1);
  /* Shutdown says goodbye to everyone. */
  pd_netmgr_shutdown(w->h[a].m, w->now);
  pump(w);
  assert_int_equal(pd_netmgr_conn_count(w->h[a].m), 0);
  assert_int_equal(pd_netmgr_conn_count(w->h[b].m), 0);
  world_free(w);
}

static void fill_book(host_t *h, size_t n, int64_t now) {
  pd_netaddr_t src = ip4(10, 200, 0, 1, 0);
  size_t added = 0;
  for (size_t i = 0; added < n && i < 10 * n; i++) {
    pd_netaddr_t a = ip4(20 + (int)(i % 50), (int)(i / 50) % 250, (int)(i % 7), 1, 8000);
    if (pd_book_add(pd_node_book(h->node), &a, NULL, now - 3600, &src, 0, now, NULL) == 1) added++;
  }
  assert_true(pd_book_size(pd_node_book(h->node)) >= n);
}

static bool same_answer(const host_t *x, const host_t *y) {
  if (x->raw_naddrs != y->raw_naddrs) return false;
  for (size_t i = 0; i < x->raw_naddrs; i++)
    if (!pd_netaddr_equal(&x->raw_addrs[i].addr, &y->raw_addrs[i].addr)) return false;
  return true;
}

/* Repeated GETADDRs from one network get the same cached sample; after the
 * TTL a new one. */
static void test_getaddr_cache(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.ttl_ms = 3600 * 1000;
  int x = add_mgr(w, 9, &o);
  fill_book(&w->h[x], 600, w->now / 1000);
  int r1 = add_raw(w, 50, x, ip4(10, 9, 1, 1, 50001), true);
  run(w, 1000);
  assert_true(w->h[r1].raw_ready);
  assert_int_equal(w->h[r1].raw_addr_msgs, 1);
  size_t got = w->h[r1].raw_naddrs;
  assert_true(got >= 138 && got <= 1000); /* >= 23% of the book */
  int r2 = add_raw(w, 51, x, ip4(10, 9, 7, 7, 50002), true); /* same /16 */
  run(w, 1000);
  assert_int_equal(w->h[r2].raw_addr_msgs, 1);
  assert_true(same_answer(&w->h[r1], &w->h[r2]));
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.getaddr_cache_builds, 1);
  /* Another /16 of the same network gets the same sample (the cache is
   * per network, as Bitcoin Core's: many groups do not scrape the book)... */
  int r3 = add_raw(w, 52, x, ip4(10, 77, 1, 1, 50003), true);
  run(w, 1000);
  assert_int_equal(w->h[r3].raw_addr_msgs, 1);
  assert_true(same_answer(&w->h[r1], &w->h[r3]));
  /* ...another network (IPv6) its own. */
  pd_netaddr_t v6;
  assert_int_equal(pd_netaddr_parse("[fd00::7]:50005", 0, &v6, NULL, NULL, NULL), 0);
  int r5 = add_raw(w, 54, x, v6, true);
  run(w, 1000);
  assert_int_equal(w->h[r5].raw_addr_msgs, 1);
  assert_false(same_answer(&w->h[r1], &w->h[r5]));
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.getaddr_cache_builds, 2);
  /* After the TTL the first network's sample is rebuilt. */
  run(w, 3600 * 1000);
  int r4 = add_raw(w, 53, x, ip4(10, 9, 9, 9, 50004), true);
  run(w, 1000);
  assert_int_equal(w->h[r4].raw_addr_msgs, 1);
  assert_false(same_answer(&w->h[r1], &w->h[r4]));
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.getaddr_cache_builds, 3);
  world_free(w);
}

/* A seed does not cache: two newcomers from one network get different
 * samples (a node would give both the same cached one). */
static void test_seed_fresh_samples(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.seed_mode = true;
  int x = add_mgr(w, 19, &o);
  fill_book(&w->h[x], 600, w->now / 1000);
  int r1 = add_raw(w, 70, x, ip4(10, 9, 1, 1, 50001), true);
  run(w, 1000);
  int r2 = add_raw(w, 71, x, ip4(10, 9, 7, 7, 50002), true);
  run(w, 1000);
  assert_int_equal(w->h[r1].raw_addr_msgs, 1);
  assert_int_equal(w->h[r2].raw_addr_msgs, 1);
  assert_true(w->h[r1].raw_naddrs >= 138 && w->h[r2].raw_naddrs >= 138);
  assert_false(same_answer(&w->h[r1], &w->h[r2]));
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.getaddr_cache_builds, 2);
  world_free(w);
}

/* Seed mode: an inbound peer is answered and then disconnected; an
 * outbound crawl closes after the answer. */
static void test_seed_mode(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.seed_mode = true;
  int s = add_mgr(w, 11, &o);
  fill_book(&w->h[s], 50, w->now / 1000);
  int r = add_raw(w, 60, s, ip4(10, 3, 0, 1, 50010), true);
  run(w, 2000);
  assert_true(w->h[r].raw_ready);
  assert_int_equal(w->h[r].raw_addr_msgs, 1);
  assert_true(w->h[r].raw_naddrs > 0);
  assert_true(w->h[r].raw_closed);
  assert_true(w->h[r].raw_remote);
  assert_int_equal(w->h[r].raw_bye, PD_WIRE_BYE_SEED_DONE);
  /* A raw peer that never asks is dropped after the crawl timeout. */
  int q = add_raw(w, 61, s, ip4(10, 4, 0, 1, 50011), false);
  run(w, 5000);
  assert_true(w->h[q].raw_ready);
  assert_false(w->h[q].raw_closed);
  run(w, PD_NETMGR_SEED_CRAWL_TIMEOUT_MS);
  assert_true(w->h[q].raw_closed);
  assert_int_equal(w->h[q].raw_bye, PD_WIRE_BYE_SEED_DONE);

  /* Outbound crawl: the seed learns of node n and crawls it. */
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  int n = add_mgr(w, 12, &o);
  fill_book(&w->h[n], 5, w->now / 1000); /* so that it has an answer */
  pd_netaddr_t src = ip4(10, 3, 0, 1, 0);
  assert_int_equal(pd_book_add(pd_node_book(w->h[s].node), &w->h[n].listen, NULL, w->now / 1000,
                               &src, 0, w->now / 1000, NULL),
                   1);
  pd_netmgr_counters_t c0, c1;
  pd_netmgr_counters(w->h[s].m, &c0);
  bool crawled = false;
  for (int t = 0; t < 600 && !crawled; t++) {
    step(w, 100);
    crawled = in_tried(&w->h[s], &w->h[n].listen);
  }
  assert_true(crawled);
  run(w, 2000);
  pd_netmgr_counters(w->h[s].m, &c1);
  assert_true(c1.seed_crawls > c0.seed_crawls);
  assert_int_equal(pd_netmgr_conn_count(w->h[s].m), 0);
  assert_int_equal(count_ready(&w->h[n], w->now, PD_CONN_INBOUND), 0);

  /* It is not crawled again for an hour (seed_recrawl_ms), then it is. */
  pd_book_t *sb = pd_node_book(w->h[s].node);
  pd_book_info_t inf;
  assert_int_equal(pd_book_info(sb, pd_book_find(sb, &w->h[n].listen), &inf), 0);
  int64_t crawled_at = inf.last_try;
  assert_true(crawled_at > 0);
  for (int t = 0; t < 55 * 6; t++) step(w, 10000);
  assert_int_equal(pd_book_info(sb, pd_book_find(sb, &w->h[n].listen), &inf), 0);
  assert_int_equal(inf.last_try, crawled_at);
  int64_t again = 0;
  for (int t = 0; t < 30 * 12 && !again; t++) {
    step(w, 5000);
    assert_int_equal(pd_book_info(sb, pd_book_find(sb, &w->h[n].listen), &inf), 0);
    if (inf.last_try != crawled_at) again = inf.last_try;
  }
  assert_true(again >= crawled_at + PD_NETMGR_SEED_RECRAWL_MS / 1000);
  world_free(w);
}

/* Garbage bytes: closed with the codec's reason, reported as misbehaviour,
 * banned by the default reputation rule, refused at the next accept; the
 * manager keeps serving others. */
static void test_misbehaving_banned(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int x = add_mgr(w, 13, &o);
  pd_netaddr_t bad = ip4(10, 66, 6, 6, 40404);
  uint64_t cid = 0;
  assert_int_equal(pd_netmgr_on_inbound(w->h[x].m, &bad, w->now, &cid), PD_NETMGR_ACCEPT);
  uint8_t junk[64];
  for (size_t i = 0; i < sizeof junk; i++) junk[i] = (uint8_t)(i * 37 + 11);
  assert_int_equal(pd_netmgr_on_bytes(w->h[x].m, cid, junk, sizeof junk, w->now), 0);
  pd_netmgr_action_t a;
  bool closed = false, misb = false;
  const char *reason = NULL;
  while (pd_netmgr_poll(w->h[x].m, &a)) {
    if (a.type == PD_NETMGR_A_CLOSE && a.conn_id == cid) {
      closed = true;
      misb = a.close.misbehaved;
      reason = a.close.reason;
    }
  }
  assert_true(closed);
  assert_true(misb);
  assert_string_equal(reason, "bad_magic");
  assert_int_equal(pd_netmgr_conn_count(w->h[x].m), 0);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.rejected[PD_WIRE_R_BAD_MAGIC], 1);
  assert_int_equal(c.misbehaviour_reports, 1);
  assert_int_equal(c.bans, 1);
  /* counted as a wire ban (peerd_bans_total{cause="wire"}) */
  const pd_metrics_t *mt = pd_node_metrics(w->h[x].node);
  assert_int_equal(mt->bans_added[PD_METRICS_BAN_WIRE], 1);
  assert_int_equal(mt->bans_added[PD_METRICS_BAN_REPUTATION] + mt->bans_added[PD_METRICS_BAN_API] +
                       mt->bans_added[PD_METRICS_BAN_PEX] + mt->bans_added[PD_METRICS_BAN_RECORD],
                   0);
  assert_true(pd_banlist_is_banned(pd_book_bans(pd_node_book(w->h[x].node)), &bad, w->now / 1000,
                                   NULL));
  uint64_t cid2 = 0;
  bad.port = 40405;
  assert_int_equal(pd_netmgr_on_inbound(w->h[x].m, &bad, w->now, &cid2), PD_NETMGR_REFUSE_BANNED);
  /* Later bytes for the dead id are ignored. */
  assert_int_equal(pd_netmgr_on_bytes(w->h[x].m, cid, junk, 4, w->now), PD_ENOENT);
  /* Others still get served. */
  int r = add_raw(w, 70, x, ip4(10, 5, 0, 1, 50020), true);
  run(w, 1000);
  assert_true(w->h[r].raw_ready);
  assert_false(w->h[r].raw_closed);
  assert_string_equal(pd_netmgr_reject_name(PD_NETMGR_REJ_DUPLICATE), "duplicate");
  assert_null(pd_netmgr_reject_name(PD_NETMGR_REJ_COUNT));
  world_free(w);
}

/* ---- audit events ------------------------------------------------------------------- */

typedef struct ev_rec {
  char kind[24][32];
  char line[24][400];
  int n;
} ev_rec_t;

static void ev_record(void *ud, const pd_event_t *e) {
  ev_rec_t *r = ud;
  if (r->n >= 24) return;
  json_t *o = pd_event_json(e, (uint64_t)r->n + 1, e->now_ms);
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  snprintf(r->kind[r->n], sizeof r->kind[r->n], "%s", pd_event_kind_name(e->kind));
  snprintf(r->line[r->n], sizeof r->line[r->n], "%s", s ? s : "");
  r->n++;
  free(s);
  json_decref(o);
}

/* The n-th event of a kind (its JSON), or NULL. */
static const char *ev_find(const ev_rec_t *r, const char *kind, int nth) {
  for (int i = 0; i < r->n; i++)
    if (strcmp(r->kind[i], kind) == 0 && nth-- == 0) return r->line[i];
  return NULL;
}

/* The connection events of a pair: b dials a (its persistent peer), which
 * is down first (dial_failed, a bootstrap round), then up (dial_ok and
 * connected on b, connected inbound on a, bootstrap finished); a ban on b
 * closes it (disconnected "banned" on b; on a, the goodbye). */
static void test_audit_events(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.no_feelers = true;
  int a = add_mgr(w, 21, &o);
  o.persistent_host = a;
  o.min_out = 1;
  o.max_out = 1;
  int b = add_mgr(w, 22, &o);
  ev_rec_t ra, rb;
  memset(&ra, 0, sizeof ra);
  memset(&rb, 0, sizeof rb);
  pd_event_sink_t sa = {ev_record, &ra}, sb = {ev_record, &rb};
  pd_node_set_events(w->h[a].node, &sa);
  pd_node_set_events(w->h[b].node, &sb);
  w->h[a].up = false;
  run(w, 1000);
  const char *e = ev_find(&rb, "dial_failed", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"addr\":\"127.1.0.1:7411\",\"direction\":\"outbound\""));
  assert_non_null(strstr(e, "\"reason\":\"refused\",\"dial_reason\":\"persistent\""));
  e = ev_find(&rb, "bootstrap_started", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"round\":1,\"seeds\":0,\"outbound\":0,\"min_outbound\":1"));
  assert_null(ev_find(&rb, "connected", 0));
  w->h[a].up = true;
  run(w, 5000);
  char want[160], hex_a[PD_NODE_ID_HEXLEN + 1], hex_b[PD_NODE_ID_HEXLEN + 1];
  pd_node_id_format(w->h[a].ident.id, hex_a, sizeof hex_a);
  pd_node_id_format(w->h[b].ident.id, hex_b, sizeof hex_b);
  snprintf(want, sizeof want, "\"addr\":\"127.1.0.1:7411\",\"node_id\":\"%s\",\"direction\":\"outbound\"",
           hex_a);
  e = ev_find(&rb, "dial_ok", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, want));
  e = ev_find(&rb, "connected", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, want));
  assert_non_null(strstr(e, "\"listen\":\"127.1.0.1:7411\""));
  e = ev_find(&ra, "connected", 0);
  assert_non_null(e);
  snprintf(want, sizeof want, "\"node_id\":\"%s\",\"direction\":\"inbound\"", hex_b);
  assert_non_null(strstr(e, want));
  e = ev_find(&rb, "bootstrap_finished", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"rounds\":1,\"outbound\":1,\"min_outbound\":1"));
  assert_null(ev_find(&rb, "disconnected", 0));
  /* b bans a: b closes it; a hears the goodbye */
  pd_subnet_t sn;
  pd_subnet_from_addr(&w->h[a].listen, &sn);
  assert_true(pd_banlist_add(pd_book_bans(pd_node_book(w->h[b].node)), &sn, w->now / 1000, 0,
                             "test") >= 0);
  pd_netmgr_enforce_bans(w->h[b].m, w->now);
  pump(w);
  run(w, 200);
  e = ev_find(&rb, "disconnected", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"reason\":\"banned\",\"remote\":false,\"misbehaved\":false,\"ready\":true"));
  e = ev_find(&ra, "disconnected", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"direction\":\"inbound\""));
  assert_non_null(strstr(e, "\"reason\":\"goodbye\",\"remote_reason\":\"banned\",\"remote\":true"));
  /* without a sink nothing is emitted, and nothing else changes */
  pd_node_set_events(w->h[b].node, NULL);
  int before = rb.n;
  run(w, 2000);
  assert_int_equal(rb.n, before);
  world_free(w);
}

/* Two connections from the same node ID: the newer is closed "duplicate".
 * Two managers dialling each other keep exactly one connection. */
static void test_duplicate(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int x = add_mgr(w, 14, &o);
  int r1 = add_raw(w, 80, x, ip4(10, 8, 0, 1, 50030), false);
  run(w, 500);
  assert_true(w->h[r1].raw_ready);
  int r2 = add_raw(w, 80, x, ip4(10, 8, 0, 1, 50031), false); /* same identity */
  run(w, 500);
  assert_true(w->h[r2].raw_closed);
  assert_true(w->h[r2].raw_remote);
  assert_int_equal(w->h[r2].raw_bye, PD_WIRE_BYE_DUPLICATE);
  assert_false(w->h[r1].raw_closed);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.rejected[PD_NETMGR_REJ_DUPLICATE], 1);
  world_free(w);

  /* Cross-dial: each is the other's persistent peer. */
  w = world_new();
  opts_default(&o);
  o.persistent_host = 1;
  int a = add_mgr(w, 15, &o);
  opts_default(&o);
  o.persistent_host = 0;
  int b = add_mgr(w, 16, &o);
  run(w, 30000);
  size_t na = count_ready(&w->h[a], w->now, PD_CONN_OUTBOUND) +
              count_ready(&w->h[a], w->now, PD_CONN_INBOUND);
  size_t nb = count_ready(&w->h[b], w->now, PD_CONN_OUTBOUND) +
              count_ready(&w->h[b], w->now, PD_CONN_INBOUND);
  assert_int_equal(na, 1);
  assert_int_equal(nb, 1);
  world_free(w);
}

/* A dial to our own address is detected and never repeated. */
static void test_self_dial(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int x = add_mgr(w, 17, &o);
  /* Our address under another port is in the book (someone told us). */
  pd_netaddr_t me2 = w->h[x].listen;
  me2.port = PORT + 1;
  w->h[x].listen = me2; /* the switchboard routes me2 to x */
  pd_netaddr_t src = ip4(10, 3, 0, 1, 0);
  assert_int_equal(pd_book_add(pd_node_book(w->h[x].node), &me2, NULL, w->now / 1000, &src, 0,
                               w->now / 1000, NULL),
                   1);
  run(w, 20000);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.dialer.dials[PD_DIAL_SELF], 1);
  assert_int_equal(pd_netmgr_conn_count(w->h[x].m), 0);
  world_free(w);
}

/* Dials that fail, dials never answered, handshakes that never finish. */
static void test_timeouts(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int x = add_mgr(w, 18, &o);
  pd_book_t *book = pd_node_book(w->h[x].node);
  pd_netaddr_t src = ip4(10, 3, 0, 1, 0);
  pd_netaddr_t gone = ip4(10, 50, 0, 1, PORT); /* nobody there: refused */
  w->has_blackhole = true;
  w->blackhole = ip4(10, 51, 0, 1, PORT);
  assert_int_equal(pd_book_add(book, &gone, NULL, w->now / 1000, &src, 0, w->now / 1000, NULL), 1);
  assert_int_equal(
      pd_book_add(book, &w->blackhole, NULL, w->now / 1000, &src, 0, w->now / 1000, NULL), 1);
  /* Slowloris: a TCP connection that never says HELLO. */
  uint64_t slow = 0;
  pd_netaddr_t sl = ip4(10, 52, 0, 1, 40000);
  assert_int_equal(pd_netmgr_on_inbound(w->h[x].m, &sl, w->now, &slow), PD_NETMGR_ACCEPT);
  pump(w);
  run(w, 70000);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_true(c.dialer.dials[PD_DIAL_REFUSED] >= 1);
  assert_true(c.dialer.dials[PD_DIAL_TIMEOUT] >= 1);
  assert_int_equal(w->bh_closed, 1); /* the unanswered DIAL was cancelled */
  assert_int_equal(c.rejected[PD_NETMGR_REJ_HANDSHAKE_TIMEOUT], 1);
  assert_int_equal(c.misbehaviour_reports, 0);
  pd_book_info_t inf;
  assert_int_equal(pd_book_info(book, pd_book_find(book, &gone), &inf), 0);
  assert_true(inf.attempts >= 1);
  assert_true(pd_netmgr_conn_count(w->h[x].m) <= 1); /* at most a fresh re-dial */
  assert_int_equal(pd_netmgr_on_bytes(w->h[x].m, slow, (const uint8_t *)"x", 1, w->now), PD_ENOENT);
  world_free(w);
}

/* Issue 14: silent TCP connects (never a HELLO) from one IP, then from one
 * /16, take at most PD_NETMGR_PENDING_PER_IP / _PER_GROUP handshake slots;
 * an honest peer from another group still gets in. */
static void test_pending_per_ip_and_group(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = o.max_out = 0;
  int x = add_mgr(w, 61, &o);
  int accepted = 0, per_ip = 0, per_group = 0;
  for (int k = 0; k < 40; k++) { /* 40 silent connects from 127.66.6.6 */
    pd_netaddr_t a = ip4(127, 66, 6, 6, (uint16_t)(40000 + k));
    uint64_t cid = 0;
    pd_netmgr_refuse_t v = pd_netmgr_on_inbound(w->h[x].m, &a, w->now, &cid);
    if (v == PD_NETMGR_ACCEPT) accepted++;
    else if (v == PD_NETMGR_REFUSE_PER_IP) per_ip++;
  }
  assert_int_equal(accepted, PD_NETMGR_PENDING_PER_IP);
  assert_int_equal(per_ip, 40 - PD_NETMGR_PENDING_PER_IP);
  for (int k = 0; k < 10; k++) { /* then one each from 10 more IPs of 127.66/16 */
    pd_netaddr_t a = ip4(127, 66, 7, (uint8_t)(k + 1), 40000);
    uint64_t cid = 0;
    pd_netmgr_refuse_t v = pd_netmgr_on_inbound(w->h[x].m, &a, w->now, &cid);
    if (v == PD_NETMGR_ACCEPT) accepted++;
    else if (v == PD_NETMGR_REFUSE_PENDING_GROUP) per_group++;
  }
  assert_int_equal(accepted, PD_NETMGR_PENDING_PER_GROUP);
  assert_int_equal(per_group, 10 - (PD_NETMGR_PENDING_PER_GROUP - PD_NETMGR_PENDING_PER_IP));
  assert_string_equal(pd_netmgr_refuse_name(PD_NETMGR_REFUSE_PENDING_GROUP), "pending_group");
  pump(w);
  /* An honest peer from another group completes its handshake. */
  int r = add_raw(w, 62, x, ip4(127, 77, 0, 1, 40000), false);
  assert_false(w->h[r].raw_closed);
  assert_true(w->h[r].raw_ready);
  /* Once a pending handshake is over (here: timed out), its IP may try again. */
  run(w, 70000);
  pd_netaddr_t again = ip4(127, 66, 6, 6, 41000);
  uint64_t cid = 0;
  assert_int_equal(pd_netmgr_on_inbound(w->h[x].m, &again, w->now, &cid), PD_NETMGR_ACCEPT);
  world_free(w);
}

/* Issue 14: inbound slots full, a newcomer (after its handshake) evicts an
 * inbound peer: the C rule takes the youngest unprotected peer of the group
 * with the most connections; evict_inbound in evict.lua may choose another;
 * a protected peer is never a candidate. */
static void test_inbound_eviction(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = o.max_out = 0;
  o.max_in = 16;
  int x = add_mgr(w, 71, &o);
  ev_rec_t rx;
  memset(&rx, 0, sizeof rx);
  pd_event_sink_t sx = {ev_record, &rx};
  pd_node_set_events(w->h[x].node, &sx);
  int raw[16];
  for (int k = 0; k < 16; k++) { /* 10 groups of one, then 6 peers in 127.90/16 */
    pd_netaddr_t from = k < 10 ? ip4(127, 50 + k, 0, 1, 40000) : ip4(127, 90, k, 1, 40000);
    raw[k] = add_raw(w, (uint64_t)(200 + k), x, from, false);
    assert_true(w->h[raw[k]].raw_ready);
    run(w, 1000); /* distinct uptimes */
  }
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.dialer.connected[PD_CONN_INBOUND], 16);
  /* A newcomer from a new group: one 127.90 peer makes room. */
  int n1 = add_raw(w, 300, x, ip4(127, 200, 0, 1, 40000), false);
  pump(w);
  assert_true(w->h[n1].raw_ready);
  assert_false(w->h[n1].raw_closed);
  int gone = -1, ngone = 0;
  for (int k = 0; k < 16; k++)
    if (w->h[raw[k]].raw_closed) {
      gone = k;
      ngone++;
    }
  assert_int_equal(ngone, 1);
  assert_true(gone >= 10); /* from the crowded group */
  assert_true(w->h[raw[gone]].raw_remote);
  assert_int_equal(w->h[raw[gone]].raw_bye, PD_WIRE_BYE_TOO_MANY);
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.inbound_evictions, 1);
  assert_int_equal(c.evictions_by_policy, 0);
  assert_int_equal(c.dialer.connected[PD_CONN_INBOUND], 16);
  const char *e = ev_find(&rx, "disconnected", 0);
  assert_non_null(e);
  assert_non_null(strstr(e, "\"reason\":\"evicted\""));
  /* The policy picks the first candidate (the oldest): raw 0 is protected
   * by id, so raw 1 goes. */
  pd_node_protect_t pr;
  memset(&pr, 0, sizeof pr);
  pr.has_id = true;
  memcpy(pr.id, w->h[raw[0]].ident.id, PD_NODE_ID_LEN);
  assert_int_equal(pd_node_protect(w->h[x].node, &pr, w->now / 1000), 0);
  static const char pol[] = "return { evict_inbound = function(c, n) return c[1].conn end }";
  pd_policy_file_t f = {"evict.lua", pol, sizeof pol - 1};
  char err[256];
  assert_int_equal(pd_node_policy_load(w->h[x].node, &f, 1, w->now / 1000, err, sizeof err), 0);
  int n2 = add_raw(w, 301, x, ip4(127, 201, 0, 1, 40000), false);
  pump(w);
  assert_true(w->h[n2].raw_ready);
  assert_false(w->h[n2].raw_closed);
  assert_false(w->h[raw[0]].raw_closed);
  assert_true(w->h[raw[1]].raw_closed);
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.inbound_evictions, 2);
  assert_int_equal(c.evictions_by_policy, 1);
  /* A policy that evicts nobody: the newcomer is refused after its handshake. */
  static const char pol2[] = "return { evict_inbound = function() return false end }";
  pd_policy_file_t f2 = {"evict.lua", pol2, sizeof pol2 - 1};
  assert_int_equal(pd_node_policy_load(w->h[x].node, &f2, 1, w->now / 1000, err, sizeof err), 0);
  int n3 = add_raw(w, 302, x, ip4(127, 202, 0, 1, 40000), false);
  pump(w);
  assert_true(w->h[n3].raw_closed);
  assert_int_equal(w->h[n3].raw_bye, PD_WIRE_BYE_TOO_MANY); /* after its handshake: ids are
                                                               protected, so it got that far */
  /* Without protected ids, the hook is asked at accept too: refused there. */
  assert_int_equal(pd_node_unprotect(w->h[x].node, &pr), 0);
  int n4 = add_raw(w, 303, x, ip4(127, 203, 0, 1, 40000), false);
  assert_true(w->h[n4].raw_closed);
  assert_string_equal(w->h[n4].raw_reason, "inbound_full");
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.inbound_evictions, 2);
  world_free(w);
}

/* The C rule alone (inevict.h): 20 candidates, protection by keyed group,
 * latency, usefulness and uptime, then the crowded group's newest. */
static void test_inevict_rule(void **state) {
  (void)state;
  pd_inevict_cand_t c[20];
  memset(c, 0, sizeof c);
  for (int i = 0; i < 20; i++) {
    pd_netaddr_t a = i < 14 ? ip4(10, i + 1, 0, 1, 1) : ip4(10, 99, i, 1, 1);
    c[i].conn_id = (uint64_t)(i + 1);
    c[i].group_len = pd_netaddr_group(&a, true, c[i].group);
    c[i].connected_ms = 1000 * i; /* i = 19 is the newest */
    c[i].latency_ms = -1;
  }
  c[19].latency_ms = 5; /* fastest: protected */
  c[18].useful_ms = 77; /* useful: protected */
  uint8_t key[PD_INEVICT_KEY_LEN] = {1, 2, 3};
  bool prot[20];
  long v = pd_inevict_select(c, 20, key, prot);
  assert_true(v >= 14 && v < 18); /* the 10.99 group's newest unprotected */
  assert_true(prot[19] && prot[18]);
  assert_false(prot[v]);
  for (int i = (int)v + 1; i < 20; i++) /* none newer in its group is left */
    if (i >= 14) assert_true(prot[i]);
  int np = 0;
  for (int i = 0; i < 20; i++) np += prot[i];
  /* 4 by group + 1 latency + 1 useful + half of the 14 left */
  assert_int_equal(np, 4 + 1 + 1 + 7);
  assert_int_equal(pd_inevict_select(c, 20, key, NULL), v); /* deterministic */
  /* 12 candidates: group + latency (all measured) protect them all. */
  for (int i = 0; i < 12; i++) c[i].latency_ms = 10 + i;
  assert_int_equal(pd_inevict_select(c, 12, key, prot), -1);
}

/* Issue 14: an IPv6 host is its /64 -- for the pending per-IP limit and
 * for misbehaviour bans; network groups stay /32. */
static void test_ipv6_host_prefix(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = o.max_out = 0;
  int x = add_mgr(w, 81, &o);
  const char *silent[] = {"2001:db8:1:2::a", "2001:db8:1:2::b", "2001:db8:1:2:ffff::c",
                          "2001:db8:1:3::a"};
  pd_netmgr_refuse_t want[] = {PD_NETMGR_ACCEPT, PD_NETMGR_ACCEPT, PD_NETMGR_REFUSE_PER_IP,
                               PD_NETMGR_ACCEPT}; /* the third is in the first two's /64 */
  for (int k = 0; k < 4; k++) {
    pd_netaddr_t a;
    assert_int_equal(pd_netaddr_parse_ip(silent[k], &a, NULL), 0);
    a.port = 40000;
    uint64_t cid = 0;
    assert_int_equal(pd_netmgr_on_inbound(w->h[x].m, &a, w->now, &cid), want[k]);
  }
  pd_netaddr_t bad, same64, other64, v4a, v4b;
  assert_int_equal(pd_netaddr_parse_ip("2001:db8:9:9::1", &bad, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("2001:db8:9:9:abcd::7", &same64, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("2001:db8:9:8::1", &other64, NULL), 0);
  pd_node_event_result_t r;
  int64_t now = w->now / 1000;
  assert_int_equal(pd_node_event(w->h[x].node, &bad, PD_METRICS_EV_MISBEHAVED, "test", now, &r), 0);
  assert_true(r.banned);
  assert_int_equal(r.ban_subnet.prefix, 64);
  const pd_banlist_t *bl = pd_book_bans(pd_node_book(w->h[x].node));
  assert_true(pd_banlist_is_banned(bl, &same64, now, NULL));
  assert_false(pd_banlist_is_banned(bl, &other64, now, NULL));
  /* --ipv6-prefix 128: only the address; IPv4 is always the address */
  pd_node_set_ipv6_prefix(w->h[x].node, 128);
  assert_int_equal(pd_node_event(w->h[x].node, &other64, PD_METRICS_EV_MISBEHAVED, "t", now, &r), 0);
  assert_int_equal(r.ban_subnet.prefix, 128);
  v4a = ip4(10, 1, 2, 3, 0);
  v4b = ip4(10, 1, 2, 4, 0);
  assert_int_equal(pd_node_event(w->h[x].node, &v4a, PD_METRICS_EV_MISBEHAVED, "t", now, &r), 0);
  assert_true(pd_banlist_is_banned(bl, &v4a, now, NULL));
  assert_false(pd_banlist_is_banned(bl, &v4b, now, NULL));
  assert_true(pd_netaddr_same_host(&bad, &same64, 0));
  assert_false(pd_netaddr_same_host(&bad, &same64, 128));
  assert_false(pd_netaddr_same_host(&v4a, &v4b, 0));
  /* groups stay /32 */
  uint8_t g1[PD_GROUP_MAX], g2[PD_GROUP_MAX];
  size_t l1 = pd_netaddr_group(&bad, true, g1), l2 = pd_netaddr_group(&other64, true, g2);
  assert_true(l1 == l2 && memcmp(g1, g2, l1) == 0);
  world_free(w);
}

/* Issue 14: an inbound peer's announced listen address is added (and
 * relayed) only when it names the IP the peer connects from. */
static void test_inbound_listen_must_match(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = o.max_out = 0;
  int x = add_mgr(w, 91, &o);
  pd_book_t *book = pd_node_book(w->h[x].node);
  pd_netaddr_t planted = ip4(127, 99, 0, 1, PORT), own = ip4(127, 67, 0, 1, PORT);
  w->has_raw_listen = true;
  w->raw_listen = planted; /* someone else's address */
  int a = add_raw(w, 92, x, ip4(127, 66, 0, 1, 40000), false);
  assert_true(w->h[a].raw_ready);
  w->has_raw_listen = true;
  w->raw_listen = own; /* its own IP, the listening port */
  int b = add_raw(w, 93, x, ip4(127, 67, 0, 1, 40001), false);
  assert_true(w->h[b].raw_ready);
  assert_int_equal(pd_book_find(book, &planted), PD_BOOK_NO_ID);
  assert_true(pd_book_find(book, &own) != PD_BOOK_NO_ID);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[x].m, &c);
  assert_int_equal(c.listen_ignored, 1);
  world_free(w);
}

/* The last feeler host `from` dialled to `to`, or NULL. */
static const feeler_rec_t *feeler_to(const world_t *w, int from, const pd_netaddr_t *to) {
  for (int k = w->nfl; k-- > 0;)
    if (w->fl[k].host == from && pd_netaddr_equal(&w->fl[k].target, to)) return &w->fl[k];
  return NULL;
}

static int feelers_from(const world_t *w, int from) {
  int k = 0;
  for (int i = 0; i < w->nfl; i++)
    if (w->fl[i].host == from) k++;
  return k;
}

/* Node a (min_out = max_out = 1) with its one outbound peer b; c is a live
 * host nobody knows yet (no seed, empty book, so it dials nobody). */
static void feeler_world(world_t *w, uint64_t seed, bool no_feelers, int *a, int *b, int *c) {
  hostopts_t o;
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  *b = add_mgr(w, seed, &o);
  *c = add_mgr(w, seed + 1, &o);
  o.seed_host = *b;
  o.no_feelers = no_feelers;
  *a = add_mgr(w, seed + 2, &o);
  run(w, 5000);
  assert_int_equal(count_ready(&w->h[*a], w->now, PD_CONN_OUTBOUND), 1);
  assert_true(in_tried(&w->h[*a], &w->h[*b].listen));
  assert_false(in_book(&w->h[*a], &w->h[*c].listen));
}

/* A successful feeler to `to` by host `from`: answered, handshake done and
 * closed by the dialler at once (same fake-clock instant), "feeler" label. */
static void assert_feeler_done(world_t *w, int from, const pd_netaddr_t *to) {
  const feeler_rec_t *fr = feeler_to(w, from, to);
  assert_non_null(fr);
  assert_true(fr->answered);
  assert_int_equal(fr->close_ms, fr->dial_ms);
  assert_non_null(fr->close_reason);
  assert_string_equal(fr->close_reason, "normal"); /* a plain goodbye, not an error */
  assert_null(link_find(w, from, fr->conn));
  pd_netmgr_counters_t c;
  pd_netmgr_counters(w->h[from].m, &c);
  assert_true(c.feelers_done >= 1);
  assert_true(c.dialer.dials_started[PD_DIAL_REASON_FEELER] >= 1);
  assert_true(c.dialer.connections_opened[PD_CONN_FEELER] >= 1);
  assert_int_equal(c.dialer.connections_closed[PD_CONN_FEELER],
                   c.dialer.connections_opened[PD_CONN_FEELER]);
  assert_int_equal(c.dialer.connected[PD_CONN_FEELER], 0);
  assert_int_equal(count_ready(&w->h[from], w->now, PD_CONN_FEELER), 0);
  /* The feeler never took the outbound slot. */
  assert_int_equal(count_ready(&w->h[from], w->now, PD_CONN_OUTBOUND), 1);
  assert_int_equal(c.misbehaviour_reports, 0);
}

/* Once a node has its minimum outbound, a feeler tests a new-table entry
 * that is a live host: handshake, immediate close, entry moves to tried. */
static void test_feeler_new_entry(void **state) {
  (void)state;
  world_t *w = world_new();
  int a, b, c;
  feeler_world(w, 31, false, &a, &b, &c);
  pd_book_t *book = pd_node_book(w->h[a].node);
  int64_t now_s = w->now / 1000;
  assert_int_equal(
      pd_book_add(book, &w->h[c].listen, NULL, now_s - 600, &w->h[b].listen, 0, now_s, NULL), 1);
  assert_false(in_tried(&w->h[a], &w->h[c].listen));
  /* The outbound slot is full: only a feeler can reach c. */
  bool tried = false;
  int64_t t;
  for (t = 0; t < 1800 && !tried; t++) {
    step(w, 1000);
    tried = in_tried(&w->h[a], &w->h[c].listen);
  }
  print_message("# feeler: new entry tested and moved to tried after %lld s (simulated)\n",
                (long long)t);
  assert_true(tried);
  assert_feeler_done(w, a, &w->h[c].listen);
  /* c saw the connection from a end (it is not holding it). */
  pd_netmgr_peer_info_t info[8];
  size_t n = pd_netmgr_peers(w->h[c].m, w->now, info, 8);
  for (size_t i = 0; i < n && i < 8; i++)
    if (info[i].dir == PD_CONN_INBOUND && info[i].state == PD_NETMGR_READY)
      assert_memory_not_equal(info[i].id, w->h[a].ident.id, PD_NODE_ID_LEN);
  pd_book_info_t inf;
  assert_int_equal(pd_book_info(book, pd_book_find(book, &w->h[c].listen), &inf), 0);
  assert_true(inf.in_tried);
  world_free(w);

  /* Below its minimum outbound a node makes no feelers (every dial is a
   * test then): d wants 2 outbound but can reach only b. */
  w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  b = add_mgr(w, 35, &o);
  o.min_out = 2;
  o.max_out = 2;
  o.seed_host = b;
  int d = add_mgr(w, 36, &o);
  pd_netaddr_t dead = ip4(10, 99, 0, 1, PORT);
  now_s = w->now / 1000;
  assert_int_equal(pd_book_add(pd_node_book(w->h[d].node), &dead, NULL, now_s - 600,
                               &w->h[b].listen, 0, now_s, NULL),
                   1);
  run(w, 900 * 1000);
  assert_int_equal(count_ready(&w->h[d], w->now, PD_CONN_OUTBOUND), 1);
  pd_netmgr_counters_t cd;
  pd_netmgr_counters(w->h[d].m, &cd);
  assert_true(cd.dialer.dials[PD_DIAL_REFUSED] >= 1); /* it did try the dead one */
  assert_int_equal(feelers_from(w, d), 0);
  assert_int_equal(cd.dialer.dials_started[PD_DIAL_REASON_FEELER], 0);
  world_free(w);
}

/* Put c in a's tried table long ago, then make a new address collide with
 * c's tried slot (Good with test-before-evict). Returns the newcomer. */
static pd_netaddr_t make_collision(world_t *w, int a, int b, int c) {
  pd_book_t *book = pd_node_book(w->h[a].node);
  int64_t now_s = w->now / 1000;
  int64_t long_ago = now_s - 10 * 3600; /* older than PD_BOOK_REPLACEMENT */
  assert_int_equal(
      pd_book_add(book, &w->h[c].listen, NULL, long_ago, &w->h[b].listen, 0, long_ago, NULL), 1);
  assert_int_equal(pd_book_good(book, &w->h[c].listen, false, long_ago), 1);
  uint32_t inc = pd_book_find(book, &w->h[c].listen);
  assert_int_not_equal(inc, PD_BOOK_NO_ID);
  assert_int_equal(pd_book_collision_count(book), 0);
  pd_netaddr_t src = ip4(10, 201, 0, 1, 0);
  /* Same /16 as c (its 8 tried buckets): about one in 512 hits its slot. */
  for (unsigned k = 2; k < 65536; k++) {
    pd_netaddr_t x = ip4(127, c + 1, (int)(k >> 8), (int)(k & 0xff), 9100);
    if (pd_book_add(book, &x, NULL, now_s, &src, 0, now_s, NULL) != 1) continue;
    int rc = pd_book_good(book, &x, true, now_s);
    if (rc == 1) { /* free slot: it went to tried; take it out again */
      assert_int_equal(pd_book_remove(book, &x), 0);
      continue;
    }
    assert_int_equal(rc, 0);
    assert_int_equal(pd_book_collision_count(book), 1);
    if (pd_book_select_tried_collision(book) == inc) {
      print_message("# feeler: collision with the incumbent after %u candidates\n", k - 1);
      return x;
    }
    /* Collided with someone else (b): drop it and the stale collision. */
    assert_int_equal(pd_book_remove(book, &x), 0);
    pd_book_resolve_collisions(book, now_s);
    assert_int_equal(pd_book_collision_count(book), 0);
  }
  fail_msg("no collision with the incumbent found");
  return src;
}

/* Test-before-evict: a pending tried collision whose incumbent is a live
 * host; the feeler tests the incumbent, which then keeps its slot and the
 * collision is gone. Without feelers the incumbent is evicted after the
 * test window (so the feeler is what saved it). */
static void test_feeler_tried_collision(void **state) {
  (void)state;
  for (int with_feelers = 1; with_feelers >= 0; with_feelers--) {
    world_t *w = world_new();
    int a, b, c;
    feeler_world(w, 41, !with_feelers, &a, &b, &c);
    pd_book_t *book = pd_node_book(w->h[a].node);
    pd_netaddr_t x = make_collision(w, a, b, c);
    uint32_t inc = pd_book_find(book, &w->h[c].listen);
    /* Housekeeping alone cannot decide yet: the incumbent is untested. */
    pd_node_tick(w->h[a].node, w->now / 1000);
    assert_int_equal(pd_book_collision_count(book), 1);
    assert_true(in_tried(&w->h[a], &w->h[c].listen));
    assert_false(in_tried(&w->h[a], &x));
    int64_t t;
    int64_t start_s = w->now / 1000;
    for (t = 0; t < 3600 && pd_book_collision_count(book) > 0; t++) {
      step(w, 1000);
      pd_node_tick(w->h[a].node, w->now / 1000); /* as the daemon does */
    }
    assert_int_equal(pd_book_collision_count(book), 0);
    if (with_feelers) {
      print_message("# feeler: collision resolved (incumbent kept) after %lld s (simulated)\n",
                    (long long)t);
      assert_true(t < PD_BOOK_TEST_WINDOW); /* by the test, not by the timeout */
      assert_feeler_done(w, a, &w->h[c].listen);
      /* The feeler dialled the incumbent, not the newcomer (a dead address). */
      assert_null(feeler_to(w, a, &x));
      assert_true(in_tried(&w->h[a], &w->h[c].listen));
      assert_int_equal(pd_book_find(book, &w->h[c].listen), inc);
      assert_false(in_tried(&w->h[a], &x));
      assert_true(in_book(&w->h[a], &x)); /* stays in new */
      pd_book_info_t inf;
      assert_int_equal(pd_book_info(book, inc, &inf), 0);
      assert_true(inf.last_success >= start_s);
    } else {
      assert_int_equal(feelers_from(w, a), 0);
      assert_true(t >= PD_BOOK_TEST_WINDOW);
      assert_true(in_tried(&w->h[a], &x));
      assert_false(in_tried(&w->h[a], &w->h[c].listen));
    }
    world_free(w);
  }
}

/* --- starving: ask inbound peers for addresses ------------------------------ */

#define STARVE_MS (5 * 60 * 1000) /* netmgr.c STARVE_ASK_MS */

static uint64_t raw_getaddrs_in(const host_t *h) {
  return pd_peer_stats(h->peer)->frames_in[PD_WIRE_GETADDR];
}

/* A (min outbound 2) knows only the two raw peers connected to it inbound,
 * so it has nothing to dial: it asks them for addresses, learns C from
 * r1's answer, dials C, and asks each of them again only once 5 minutes
 * have passed. */
static void test_starving_asks_inbound(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 2;
  o.max_out = 2;
  o.no_feelers = true;
  int a = add_mgr(w, 21, &o);
  opts_default(&o);
  int c = add_mgr(w, 22, &o); /* no seeds, empty book: dials nobody */
  int r1 = add_raw(w, 70, a, ip4(10, 21, 0, 1, 50021), false);
  int r2 = add_raw(w, 71, a, ip4(10, 22, 0, 1, 50022), false);
  w->h[r1].raw_has_answer = true;
  w->h[r1].raw_answer = w->h[c].listen;
  assert_true(w->h[r1].raw_ready && w->h[r2].raw_ready);
  host_t *ha = &w->h[a];
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 2);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_OUTBOUND), 0);
  /* All A knows: the listen addresses of its two inbound peers. */
  assert_int_equal(pd_book_size(pd_node_book(ha->node)), 2);
  assert_true(in_book(ha, &w->h[r1].listen) && in_book(ha, &w->h[r2].listen));
  assert_int_equal(raw_getaddrs_in(&w->h[r1]), 0);
  assert_int_equal(raw_getaddrs_in(&w->h[r2]), 0);

  int64_t t_ask = -1;
  for (int t = 0; t < 600 && t_ask < 0; t++) {
    assert_false(in_book(ha, &w->h[c].listen)); /* learnt only from the answer */
    step(w, 100);
    if (raw_getaddrs_in(&w->h[r1]) > 0) t_ask = w->now;
  }
  assert_true(t_ask > 0);
  print_message("# starving: first GETADDR to inbound peers after %lld ms (simulated)\n",
                (long long)(t_ask - T0));
  assert_int_equal(raw_getaddrs_in(&w->h[r1]), 1);
  assert_int_equal(raw_getaddrs_in(&w->h[r2]), 1);
  assert_int_equal(w->h[r1].raw_answers_sent, 1);
  assert_int_equal(pd_peer_stats(w->h[r1].peer)->getaddr_answered, 1);

  /* The answer names C; A dials it. */
  bool dialled = false;
  for (int t = 0; t < 100 && !dialled; t++) {
    step(w, 100);
    dialled = count_ready(ha, w->now, PD_CONN_OUTBOUND) == 1;
  }
  assert_true(dialled);
  assert_true(in_tried(ha, &w->h[c].listen));
  assert_int_equal(count_ready(&w->h[c], w->now, PD_CONN_INBOUND), 1);
  pd_netmgr_peer_info_t info[8];
  size_t np = pd_netmgr_peers(ha->m, w->now, info, 8);
  bool to_c = false;
  for (size_t i = 0; i < np && i < 8; i++)
    if (info[i].dir == PD_CONN_OUTBOUND && info[i].state == PD_NETMGR_READY &&
        pd_netaddr_equal(&info[i].addr, &w->h[c].listen))
      to_c = true;
  assert_true(to_c);

  /* Still below the minimum (1 < 2), but not asked again within 5 minutes. */
  while (w->now + 100 < t_ask + STARVE_MS) {
    step(w, 100);
    assert_int_equal(raw_getaddrs_in(&w->h[r1]), 1);
    assert_int_equal(raw_getaddrs_in(&w->h[r2]), 1);
  }
  assert_int_equal(count_ready(ha, w->now, PD_CONN_OUTBOUND), 1);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 2);
  /* Once the 5 minutes are up, a second ask each. */
  run(w, 2000);
  assert_int_equal(raw_getaddrs_in(&w->h[r1]), 2);
  assert_int_equal(raw_getaddrs_in(&w->h[r2]), 2);
  world_free(w);
}

/* Control: X (min outbound 1) holds its outbound peer Y all along, so its
 * inbound raw peer is never sent a GETADDR. */
static void test_not_starving_no_inbound_ask(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int y = add_mgr(w, 23, &o);
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 2;
  o.no_feelers = true;
  o.no_hungry = true; /* this test is about the starving rule alone */
  o.seed_host = y;
  int x = add_mgr(w, 24, &o);
  host_t *hx = &w->h[x];
  run(w, 5000);
  assert_int_equal(count_ready(hx, w->now, PD_CONN_OUTBOUND), 1);
  int r = add_raw(w, 72, x, ip4(10, 23, 0, 1, 50023), false);
  w->h[r].raw_has_answer = true;
  w->h[r].raw_answer = ip4(127, 9, 0, 1, PORT);
  assert_true(w->h[r].raw_ready);
  assert_int_equal(count_ready(hx, w->now, PD_CONN_INBOUND), 1);
  for (int64_t t = 0; t < 4 * STARVE_MS; t += 100) {
    step(w, 100);
    assert_int_equal(count_ready(hx, w->now, PD_CONN_OUTBOUND), 1);
  }
  assert_false(w->h[r].raw_closed);
  assert_int_equal(raw_getaddrs_in(&w->h[r]), 0);
  assert_int_equal(w->h[r].raw_answers_sent, 0);
  /* X does send GETADDRs: to its outbound peer. */
  pd_netmgr_counters_t cx;
  pd_netmgr_counters(hx->m, &cx);
  assert_true(cx.frames_out[PD_WIRE_GETADDR] >= 1);
  world_free(w);
}


/* A small book asks: X at its minimum, with a small book, asks its inbound
 * peer for addresses within ~30 s (the starving rule would not: X is not
 * starving) and learns from it; once asking brings nothing new the asks
 * thin out (the interval doubles) instead of coming every 10 min. */
static void test_hungry_asks_and_backs_off(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int y = add_mgr(w, 25, &o);
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 2;
  o.no_feelers = true;
  o.seed_host = y;
  int x = add_mgr(w, 26, &o);
  host_t *hx = &w->h[x];
  run(w, 5000);
  assert_int_equal(count_ready(hx, w->now, PD_CONN_OUTBOUND), 1);
  int r = add_raw(w, 73, x, ip4(10, 24, 0, 1, 50024), false);
  w->h[r].raw_has_answer = true;
  w->h[r].raw_answer = ip4(127, 9, 0, 1, PORT);
  assert_true(w->h[r].raw_ready);
  pd_netaddr_t learnt = ip4(127, 9, 0, 1, PORT);
  assert_false(in_book(hx, &learnt));
  run(w, 31000);
  assert_int_equal(raw_getaddrs_in(&w->h[r]), 1);
  assert_true(in_book(hx, &learnt));
  /* Three hours more: the raw peer has nothing new; at 10 min per peer the
   * asks would be 18, with the doubling interval they are a handful. */
  for (int t = 0; t < 3 * 360; t++) step(w, 10000);
  assert_false(w->h[r].raw_closed);
  uint64_t asks = raw_getaddrs_in(&w->h[r]);
  assert_true(asks >= 2 && asks <= 6);
  world_free(w);
}

/* How many times raw host h was relayed address a. */
static int relayed_count(const host_t *h, const pd_netaddr_t *a) {
  int k = 0;
  for (size_t i = 0; i < h->raw_nrelayed; i++) k += pd_netaddr_equal(&h->raw_relayed[i].addr, a);
  return k;
}

/* Relay: raw r1 tells manager A about fresh X1..X4 (four messages 5 s
 * apart) and a stale S (1 h old). A relays each fresh one, once, to both
 * of its other ready peers (r2, r3; never back to r1), S to nobody. With
 * the trickle nothing goes out at once and the four arrive in fewer ADDRs
 * than four; with relay_trickle_ms < 0 each goes out at once. */
static void relay_run(bool at_once) {
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.no_feelers = true;
  o.no_hungry = true;
  o.relay_at_once = at_once;
  int a = add_mgr(w, 27, &o);
  int r[3];
  for (int k = 0; k < 3; k++) {
    r[k] = add_raw(w, 80 + (uint64_t)k, a, ip4(10, 30 + k, 0, 1, 50030), false);
    /* A is starving (no outbound) and asks its inbound peers: they answer,
     * so their later ADDRs are not taken for answers. */
    w->h[r[k]].raw_has_answer = true;
    w->h[r[k]].raw_answer = ip4(10, 77, 0, 1, 8333);
  }
  /* The raws' own announcements are relayed and settle; tokens refill. A,
   * starving, asks each raw at once and every 5 min; a raw answers the
   * first ask only (one answer per 10 min), and an ADDR within 60 s of an
   * unanswered ask counts as its answer (not relayed): the four messages go
   * out well before the second ask (~301 s). */
  run(w, 200000);
  for (int k = 0; k < 3; k++) assert_true(w->h[r[k]].raw_ready && !w->h[r[k]].raw_closed);
  int before[3];
  for (int k = 0; k < 3; k++) {
    before[k] = w->h[r[k]].raw_relay_msgs;
    w->h[r[k]].raw_nrelayed = 0;
  }
  pd_netmgr_counters_t c0;
  pd_netmgr_counters(w->h[a].m, &c0);
  pd_netaddr_t x[4], stale = ip4(10, 99, 0, 9, 8333);
  for (int i = 0; i < 4; i++) x[i] = ip4(10, 90 + i, 0, 1, 8333);
  for (int i = 0; i < 4; i++) {
    pd_wire_addr_entry_t e[2];
    memset(e, 0, sizeof e);
    e[0].addr = x[i];
    e[0].timestamp = w->now / 1000;
    e[1].addr = stale;
    e[1].timestamp = w->now / 1000 - 3600;
    assert_int_equal(pd_peer_send_addrs(w->h[r[0]].peer, e, i == 0 ? 2 : 1, w->now), 0);
    pump(w);
    assert_true(in_book(&w->h[a], &x[i]));
    if (i == 0) {
      assert_true(in_book(&w->h[a], &stale));
      for (int k = 1; k < 3; k++) assert_int_equal(relayed_count(&w->h[r[k]], &x[0]), at_once);
    }
    run(w, 5000);
  }
  run(w, 600000);
  for (int i = 0; i < 4; i++)
    if (getenv("NM_DEBUG"))
      print_message("x%d: %d %d %d\n", i, relayed_count(&w->h[r[0]], &x[i]),
                    relayed_count(&w->h[r[1]], &x[i]), relayed_count(&w->h[r[2]], &x[i]));
  for (int i = 0; i < 4; i++) {
    assert_int_equal(relayed_count(&w->h[r[0]], &x[i]), 0); /* not back to its source */
    assert_int_equal(relayed_count(&w->h[r[1]], &x[i]), 1);
    assert_int_equal(relayed_count(&w->h[r[2]], &x[i]), 1);
  }
  for (int k = 0; k < 3; k++) assert_int_equal(relayed_count(&w->h[r[k]], &stale), 0);
  int msgs1 = w->h[r[1]].raw_relay_msgs - before[1], msgs2 = w->h[r[2]].raw_relay_msgs - before[2];
  assert_int_equal(w->h[r[0]].raw_relay_msgs, before[0]);
  if (at_once) {
    assert_int_equal(msgs1, 4);
    assert_int_equal(msgs2, 4);
  } else {
    assert_true(msgs1 >= 1 && msgs1 < 4);
    assert_true(msgs2 >= 1 && msgs2 < 4);
  }
  pd_netmgr_counters_t c1;
  pd_netmgr_counters(w->h[a].m, &c1);
  assert_int_equal(c1.relay_msgs - c0.relay_msgs, (uint64_t)(msgs1 + msgs2));
  print_message("# relay %s: r2 got 4 addresses in %d ADDR(s), r3 in %d\n",
                at_once ? "at once" : "trickled", msgs1, msgs2);
  world_free(w);
}

static void test_relay_trickle(void **state) {
  (void)state;
  relay_run(false);
  relay_run(true);
}

/* Dialling off (max_outbound 0) over three virtual hours: A has a seed, a
 * persistent peer, two anchors, a book of dialable entries and feelers on;
 * C connects to A (inbound), stays an hour, then leaves. A never emits a
 * DIAL or a RESOLVE, yet serves its inbound peer (handshake, PEX). */
static void test_dialling_off(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  int b = add_mgr(w, 81, &o); /* a live seed A could dial */
  pd_dial_target_t anchors[2];
  memset(anchors, 0, sizeof anchors);
  anchors[0].addr = w->h[b].listen;
  anchors[1].addr = ip4(127, 9, 0, 1, PORT);
  opts_default(&o);
  o.min_out = 0;
  o.max_out = 0;
  o.seed_host = b;
  o.persistent_host = b;
  o.anchors = anchors;
  o.nanchors = 2;
  int a = add_mgr(w, 82, &o);
  host_t *ha = &w->h[a];
  for (int i = 0; i < 20; i++) {
    pd_netaddr_t e = ip4(127, 30 + i, 0, 1, PORT);
    assert_int_equal(pd_book_add(pd_node_book(ha->node), &e, NULL, w->now / 1000, &e, 0, w->now / 1000, NULL), 1);
  }
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  o.seed_host = a;
  int c = add_mgr(w, 83, &o);
  for (int i = 0; i < 3600; i++) step(w, 1000); /* an hour in 1 s ticks (valgrind runs it too) */
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 1);
  assert_int_equal(count_ready(&w->h[c], w->now, PD_CONN_OUTBOUND), 1);
  pd_netmgr_shutdown(w->h[c].m, w->now);
  pump(w);
  w->h[c].up = false;
  for (int i = 0; i < 2 * 3600; i++) step(w, 1000);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 0);
  assert_int_equal(ha->dial_acts, 0);
  assert_int_equal(ha->resolve_acts, 0);
  assert_true(w->h[c].dial_acts > 0); /* the control dials */
  world_free(w);
}

/* Node records over the overlay. Managers exchange theirs in the
 * handshake (each keeps the other's); a raw peer's ADDR carrying a valid
 * record of a third node places that node by its discovery endpoint; an
 * ADDR carrying a forged record ends the connection as record_signature,
 * reported as misbehaviour, and nothing of it is learnt. */
static size_t third_record(pd_identity_t *id, pd_netaddr_t disc, uint8_t *out) {
  pd_record_t r;
  assert_int_equal(pd_record_init(&r, "peerd", 3, NULL), 0);
  r.has_discovery = true;
  r.discovery = disc;
  pd_netaddr_t svc = disc;
  svc.port = 26656;
  assert_int_equal(pd_record_set_service(&r, "p2p", &svc, NULL), 0);
  size_t n = 0;
  assert_int_equal(pd_record_sign(&r, id, NULL, out, PD_RECORD_MAX, &n), 0);
  return n;
}

static void test_records_over_overlay(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  o.no_feelers = true;
  int a = add_mgr(w, 61, &o);
  opts_default(&o);
  o.min_out = 1;
  o.max_out = 1;
  o.no_feelers = true;
  o.seed_host = a;
  int b = add_mgr(w, 62, &o);
  run(w, 3000);
  host_t *ha = &w->h[a], *hb = &w->h[b];
  /* each keeps the other's record (made by its manager: discovery only) */
  const pd_rec_t *rb = pd_rectable_find(pd_node_records(ha->node), hb->ident.id);
  const pd_rec_t *ra = pd_rectable_find(pd_node_records(hb->node), ha->ident.id);
  assert_non_null(ra);
  assert_non_null(rb);
  pd_record_t dec;
  assert_int_equal(pd_rec_decode(rb, &dec), 0);
  assert_true(dec.has_discovery);
  assert_true(pd_netaddr_equal(&dec.discovery, &hb->listen));
  pd_netmgr_counters_t c;
  pd_netmgr_counters(ha->m, &c);
  assert_true(c.records_learnt >= 1);

  /* a raw peer relays a third node's record: kept, placed, dialable by B */
  int r1 = add_raw(w, 90, a, ip4(10, 33, 0, 1, 50033), false);
  assert_true(w->h[r1].raw_ready);
  pd_identity_t third;
  make_identity(&third, 93);
  pd_netaddr_t disc = ip4(127, 40, 0, 1, PORT);
  uint8_t rec[PD_RECORD_MAX];
  size_t rl = third_record(&third, disc, rec);
  pd_wire_addr_entry_t e;
  memset(&e, 0, sizeof e);
  e.addr = disc;
  e.timestamp = w->now / 1000;
  e.has_id = true;
  memcpy(e.id, third.id, PD_NODE_ID_LEN);
  e.record = rec;
  e.record_len = (uint16_t)rl;
  assert_int_equal(pd_peer_send_addrs(w->h[r1].peer, &e, 1, w->now), 0);
  pump(w);
  assert_non_null(pd_rectable_find(pd_node_records(ha->node), third.id));
  assert_true(in_book(ha, &disc));
  assert_false(w->h[r1].raw_closed);

  /* a forged one: the connection ends, counted, nothing learnt */
  int r2 = add_raw(w, 91, a, ip4(10, 34, 0, 1, 50034), false);
  pd_identity_t fourth;
  make_identity(&fourth, 94);
  pd_netaddr_t disc4 = ip4(127, 41, 0, 1, PORT);
  rl = third_record(&fourth, disc4, rec);
  rec[rl - 3] ^= 1;
  e.addr = disc4;
  memcpy(e.id, fourth.id, PD_NODE_ID_LEN);
  e.record_len = (uint16_t)rl;
  uint64_t misb_before = c.misbehaviour_reports;
  assert_int_equal(pd_peer_send_addrs(w->h[r2].peer, &e, 1, w->now), 0);
  pump(w);
  assert_null(pd_rectable_find(pd_node_records(ha->node), fourth.id));
  assert_false(in_book(ha, &disc4));
  assert_true(w->h[r2].raw_closed || w->h[r2].raw_eof);
  pd_netmgr_counters(ha->m, &c);
  unsigned sig = PD_NETMGR_REJ_RECORD + (unsigned)PD_RECORD_R_BAD_SIGNATURE - 1;
  assert_string_equal(pd_netmgr_reject_name(sig), "record_signature");
  assert_int_equal(c.rejected[sig], 1);
  assert_int_equal(c.misbehaviour_reports, misb_before + 1);
  /* the ban it led to is counted as a record ban */
  assert_int_equal(pd_node_metrics(ha->node)->bans_added[PD_METRICS_BAN_RECORD], 1);
  world_free(w);
}

/* A subnet ban added from outside the manager (the API) disconnects the
 * peers inside it at the next enforce (the daemon calls it after every API
 * request) or tick; others stay. */
static void test_ban_disconnects(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 0;
  o.max_out = 0;
  int a = add_mgr(w, 71, &o);
  int r1 = add_raw(w, 72, a, ip4(10, 44, 3, 1, 50044), false);
  int r2 = add_raw(w, 73, a, ip4(10, 45, 3, 1, 50045), false);
  assert_true(w->h[r1].raw_ready && w->h[r2].raw_ready);
  host_t *ha = &w->h[a];
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 2);
  pd_netmgr_enforce_bans(ha->m, w->now); /* nothing changed: nothing happens */
  pump(w);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 2);
  pd_subnet_t sub;
  assert_int_equal(pd_subnet_parse("10.44.0.0/16", &sub, NULL), 0);
  assert_int_equal(pd_banlist_add(pd_book_bans(pd_node_book(ha->node)), &sub, w->now / 1000, 0, "api"),
                   0);
  pd_netmgr_enforce_bans(ha->m, w->now);
  pump(w);
  assert_true(w->h[r1].raw_closed || w->h[r1].raw_eof);
  assert_int_equal(w->h[r1].raw_bye, PD_WIRE_BYE_BANNED);
  assert_false(w->h[r2].raw_closed || w->h[r2].raw_eof);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 1);
  /* a ban added without an explicit call is enforced by the next tick */
  assert_int_equal(pd_subnet_parse("10.45.0.0/16", &sub, NULL), 0);
  assert_int_equal(pd_banlist_add(pd_book_bans(pd_node_book(ha->node)), &sub, w->now / 1000, 0, "api"),
                   0);
  step(w, 100);
  assert_int_equal(w->h[r2].raw_bye, PD_WIRE_BYE_BANNED);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_INBOUND), 0);
  world_free(w);
}

/* select.lua's ctx from peerd's dialer: ctx.outbound is the outbound
 * connections at the call, ctx.max_outbound the limit. A's policy dials
 * B only at outbound 0, C at 1 and D at 2, so A reaches its three outbound
 * peers only when the count arrives right at every call (B, C and D never
 * dial: they cannot race A). */
static void test_select_ctx_outbound(void **state) {
  (void)state;
  world_t *w = world_new();
  hostopts_t o;
  opts_default(&o);
  o.min_out = 0;
  o.max_out = 0;
  int peers[3];
  for (int i = 0; i < 3; i++) peers[i] = add_mgr(w, 90 + (uint64_t)i, &o);
  opts_default(&o);
  o.no_feelers = true;
  o.no_hungry = true;
  int a = add_mgr(w, 95, &o);
  host_t *ha = &w->h[a];
  for (int i = 0; i < 3; i++) {
    pd_netaddr_t e = w->h[peers[i]].listen;
    assert_int_equal(pd_book_add(pd_node_book(ha->node), &e, NULL, w->now / 1000, &e, 0,
                                 w->now / 1000, NULL), 1);
  }
  static const char pol[] =
      "local want = { [0] = '127.1.0.1:7411', '127.2.0.1:7411', '127.3.0.1:7411' }\n"
      "return { select = function(book, n, ctx)\n"
      "  if ctx.max_outbound ~= 3 then error('max_outbound ' .. tostring(ctx.max_outbound)) end\n"
      "  for id = 0, 63 do\n"
      "    local e = book:entry(id)\n"
      "    if e and e.addr == want[ctx.outbound] then return { id } end\n"
      "  end\n"
      "  return {}\n"
      "end }";
  pd_policy_file_t f = {"select.lua", pol, sizeof pol - 1};
  char err[256];
  assert_int_equal(pd_node_policy_load(ha->node, &f, 1, w->now / 1000, err, sizeof err), 0);
  run(w, 30000);
  assert_int_equal(count_ready(ha, w->now, PD_CONN_OUTBOUND), 3);
  pd_netmgr_peer_info_t info[4];
  size_t np = pd_netmgr_peers(ha->m, w->now, info, 4);
  assert_int_equal(np, 3);
  pd_policy_status_t st;
  pd_policy_status(pd_node_policy(ha->node), &st);
  assert_int_equal(st.last_error_at, 0); /* no call failed: the C default never stood in */
  world_free(w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_relay_trickle),
      cmocka_unit_test(test_outbound_tried_inbound_not),
      cmocka_unit_test(test_getaddr_cache),
      cmocka_unit_test(test_seed_mode),
      cmocka_unit_test(test_seed_fresh_samples),
      cmocka_unit_test(test_hungry_asks_and_backs_off),
      cmocka_unit_test(test_misbehaving_banned),
      cmocka_unit_test(test_audit_events),
      cmocka_unit_test(test_duplicate),
      cmocka_unit_test(test_self_dial),
      cmocka_unit_test(test_timeouts),
      cmocka_unit_test(test_feeler_new_entry),
      cmocka_unit_test(test_feeler_tried_collision),
      cmocka_unit_test(test_starving_asks_inbound),
      cmocka_unit_test(test_not_starving_no_inbound_ask),
      cmocka_unit_test(test_discovery),
      cmocka_unit_test(test_dialling_off),
      cmocka_unit_test(test_records_over_overlay),
      cmocka_unit_test(test_ban_disconnects),
      cmocka_unit_test(test_pending_per_ip_and_group),
      cmocka_unit_test(test_inbound_eviction),
      cmocka_unit_test(test_inevict_rule),
      cmocka_unit_test(test_ipv6_host_prefix),
      cmocka_unit_test(test_inbound_listen_must_match),
      cmocka_unit_test(test_select_ctx_outbound),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
