/* labdht — the DHT in the lab: each host's Kademlia engine (host/core/dht.c,
 * the daemon's code) driven on the virtual clock (scenario lab; lab.h,
 * docs/scenarios.md "DHT").
 *
 * Owns: a host's engine from its start to its stop (null cipher, the lab's
 * signature scheme, draws from the host's own seeded stream, its endpoint
 * the host's listen address, answer-only when the host never dials), the
 * glue to its node exactly as host/daemon/dhtnet.c does it (dht.lua's admit
 * through pd_node_dht_admit; found records through pd_node_dht_feed, then
 * pd_node_learn_record with the answering node's IP as the source; "want
 * more" while the book holds fewer than 1,000 addresses; this node's record
 * handed over when it changes; bootstrap from the spec's bootnodes every
 * 30 s and from the records the node holds while the table is small), its
 * datagrams (a SEND becomes an EV_DHT_PKT at the host whose listen address
 * it names, after one latency draw; partitions, loss, unknown addresses,
 * attacker pools' addresses and stopped hosts drop it) and its timer
 * (EV_DHT_TIMER at pd_dht_next_deadline_ms).
 * Does not own: the protocol, the table's rules and every decision (the
 * core: dht.c, dhttable.c, dht.lua through the node), the Lua API and the
 * lookups' callbacks (scenario_dht.c), links and the overlay (links.c).
 */
#include "lab.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"
#include "self.h"

#define LAB_DHT_RECORDS_PER_TICK 8 /* held records offered per wake-up (dhtnet.c's) */
#define LAB_DHT_BOOT_EVERY_MS 30000

typedef struct sim_dht_ctx hook_ctx_t;

/* The hooks get the run and the host's index through h->dht_ctx (each host
 * is allocated apart: the pointer stays valid). */
static bool admit_hook(void *ctx, const pd_dht_admit_info_t *in) {
  sim_t *s = ((hook_ctx_t *)ctx)->s;
  return pd_node_dht_admit_entry(s->hosts[((hook_ctx_t *)ctx)->hi]->node, in, lab_now_s(s));
}

static void found_hook(void *ctx, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                       const pd_netaddr_t *from, int64_t now_ms) {
  sim_t *s = ((hook_ctx_t *)ctx)->s;
  sim_host_t *h = s->hosts[((hook_ctx_t *)ctx)->hi];
  (void)pd_node_dht_found(h->node, bytes, len, rec, from, now_ms / 1000);
}

static bool want_more(void *ctx) {
  sim_t *s = ((hook_ctx_t *)ctx)->s;
  return pd_node_dht_wants_more(s->hosts[((hook_ctx_t *)ctx)->hi]->node);
}

/* While the table is small: the bootnodes again (at most every 30 s), and
 * records the node holds (dhtnet.c's bootstrap). */
static void bootstrap(sim_t *s, sim_host_t *h) {
  if (pd_dht_passive(h->dht)) return;
  if (pd_dht_table_size(pd_dht_table(h->dht)) >= PD_DHTT_K) return;
  int64_t now = lab_now_ms(s);
  if (s->now >= h->dht_next_boot) {
    h->dht_next_boot = s->now + LAB_DHT_BOOT_EVERY_MS;
    for (size_t i = 0; i < h->nbootnodes; i++) {
      const sim_host_t *b = s->hosts[h->bootnodes[i]];
      (void)pd_dht_add_node(h->dht, b->ident.id, &b->listen, NULL, 0, now);
    }
  }
  pd_node_dht_offer_records(h->node, &h->dht_rec_cursor, LAB_DHT_RECORDS_PER_TICK, now);
}

int lab_dht_start(sim_t *s, uint32_t hi, char *err, size_t cap) {
  sim_host_t *h = s->hosts[hi];
  if (!h->dht_on || h->black_hole || h->dht || !h->up) return 0;
  h->dht_ctx = (hook_ctx_t){.s = s, .hi = hi};
  pd_dht_config_t c;
  memset(&c, 0, sizeof c);
  c.self = &h->ident;
  c.auth = s->real_auth ? NULL : &s->rec_auth;
  c.null_cipher = !s->real_auth;
  c.network = PD_WIRE_NETWORK_DEFAULT;
  c.admit = admit_hook;
  c.admit_ctx = &h->dht_ctx;
  c.found = found_hook;
  c.found_ctx = &h->dht_ctx;
  c.want_more = want_more;
  c.want_ctx = &h->dht_ctx;
  c.lookup_fast_ms = h->dht_fast_ms;
  c.lookup_slow_ms = h->dht_slow_ms;
  c.max_sessions = h->dht_sessions;
  /* A host that never dials (max_outbound = 0) answers only, as the
   * daemon with --max-outbound 0; a DHT-only host (overlay = false) asks. */
  c.passive = h->dial_off && !h->overlay_off;
  h->dht = pd_dht_new(&c, &h->drng, lab_now_ms(s));
  if (!h->dht) {
    snprintf(err, cap, "host %u: DHT: cannot create the engine", hi);
    return PD_ENOMEM;
  }
  h->dht_next_boot = s->now;
  h->dht_timer_at = INT64_MAX;
  pd_node_set_dht(h->node, h->dht);
  pd_node_dht_sync_record(h->node);
  lab_push_ev(s, s->now, EV_DHT_TIMER, hi, h->gen, 0, 0, NULL);
  h->dht_timer_at = s->now;
  return 0;
}

void lab_dht_stop(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  for (size_t i = 0; i < h->nwaits; i++)
    if (h->waits[i].ref != LUA_NOREF && s->L) luaL_unref(s->L, LUA_REGISTRYINDEX, h->waits[i].ref);
  h->nwaits = 0;
  if (!h->dht) return;
  if (h->node) pd_node_set_dht(h->node, NULL);
  pd_dht_free(h->dht);
  h->dht = NULL;
  h->dht_timer_at = INT64_MAX;
}

/* A datagram from host hi to a.to. */
static void send_datagram(sim_t *s, uint32_t hi, const pd_dht_action_t *a) {
  s->dht_sent++;
  uint32_t paddr = NO_IDX;
  uint32_t j = lab_addr_lookup_ex(s, &a->to, &paddr);
  if (j == NO_IDX || paddr != NO_IDX || !lab_reachable(s, hi, j) || lab_lost(s)) {
    s->dht_dropped++;
    return;
  }
  int64_t lat = lab_draw_latency(s);
  uint8_t *copy = malloc(a->len ? a->len : 1);
  if (!copy) {
    s->dht_dropped++;
    return;
  }
  memcpy(copy, a->bytes, a->len);
  if (lab_push_ev(s, s->now + lat, EV_DHT_PKT, j, 0, hi, a->len, copy) != 0) {
    free(copy);
    s->dht_dropped++;
  }
}

void lab_dht_after(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  if (!h->dht) return;
  pd_dht_action_t a;
  while (h->dht && pd_dht_poll(h->dht, &a)) {
    if (a.kind == PD_DHT_A_SEND) send_datagram(s, hi, &a);
    else if (a.kind == PD_DHT_A_LOOKUP_DONE) lab_dht_lookup_ended(s, hi, a.lookup_id);
  }
  if (!h->dht) return;
  int64_t next = pd_dht_next_deadline_ms(h->dht);
  if (next == INT64_MAX) {
    if (h->dht_timer_at <= s->now) h->dht_timer_at = INT64_MAX;
    return;
  }
  int64_t d = next - PD_SIM_EPOCH_MS;
  if (d <= s->now) d = s->now + 1;
  if (h->dht_timer_at <= s->now || d < h->dht_timer_at) {
    h->dht_timer_at = d;
    lab_push_ev(s, d, EV_DHT_TIMER, hi, h->gen, 0, 0, NULL);
  }
}

void lab_dht_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_host_t *h = s->hosts[e->a];
  if (e->kind == EV_DHT_PKT) {
    if (h->up && h->dht) {
      s->dht_delivered++;
      pd_dht_on_packet(h->dht, &s->hosts[e->c]->listen, e->p, (size_t)e->x, lab_now_ms(s));
      lab_dht_after(s, e->a);
    } else {
      s->dht_dropped++;
    }
    free(e->p);
    return;
  }
  /* EV_DHT_TIMER */
  if (!h->up || !h->dht || h->gen != e->b || h->dht_timer_at != e->t) return;
  h->dht_timer_at = INT64_MAX;
  pd_node_dht_sync_record(h->node);
  bootstrap(s, h);
  pd_dht_on_tick(h->dht, lab_now_ms(s));
  lab_dht_after(s, e->a);
}
