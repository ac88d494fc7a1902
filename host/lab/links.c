/* links — the lab's network: addresses, links, and each host's transport
 * (scenario lab; sim.h for the model, lab.h).
 *
 * Owns: the address map (listen address -> host, open addressing); simulated
 * links (a pool of sim_link_t with a free list: a link is freed once both
 * sides are closed and no queued event names it), per-connection latency
 * (fixed, uniform or normal around sim.link's latency_ms), loss, the
 * sender's bandwidth delay, in-order arrival per direction, reachability
 * across partitions; the driver loop of each host's netmgr: performing its
 * actions (DIAL, SEND, CLOSE, RESOLVE), delivering what arrives (connect,
 * connected, dial failure, bytes, close, name answers) and arming its timer
 * at pd_netmgr_next_deadline_ms (with the node's tick at whole seconds).
 * Does not own: starting and stopping hosts (hosts.c), the event queue
 * (queue.c), attackers' floods (attackers.c, which send on these links),
 * the scenario's settings of the link model (sim.link: scenario.c), any
 * protocol logic (the core's netmgr).
 */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* An event naming link li (a: li): counted in the link's pending events. */
int lab_push_link_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t li, uint32_t b, uint64_t x,
                     void *p) {
  int rc = lab_push_ev(s, t, kind, li, b, 0, x, p);
  if (rc == 0) s->links[li].pending++;
  return rc;
}

/* ---- address map ---- */

static uint64_t addr_hash(const pd_netaddr_t *a) {
  uint64_t h = 1469598103934665603ull;
  for (int i = 0; i < 16; i++) h = (h ^ a->ip[i]) * 1099511628211ull;
  h = (h ^ (a->port & 0xff)) * 1099511628211ull;
  h = (h ^ (a->port >> 8)) * 1099511628211ull;
  return h ^ (h >> 29);
}

static const pd_netaddr_t *amap_addr(const sim_t *s, uint32_t v) {
  return (v & LAB_AMAP_POOL) ? &s->apool[v & ~LAB_AMAP_POOL] : &s->hosts[v]->listen;
}

uint32_t lab_addr_lookup_ex(const sim_t *s, const pd_netaddr_t *a, uint32_t *paddr) {
  if (paddr) *paddr = NO_IDX;
  if (!s->amap) return NO_IDX;
  for (size_t i = addr_hash(a) & s->amask;; i = (i + 1) & s->amask) {
    uint32_t v = s->amap[i];
    if (v == NO_IDX) return NO_IDX;
    if (pd_netaddr_equal(amap_addr(s, v), a)) {
      if (!(v & LAB_AMAP_POOL)) return v;
      if (paddr) *paddr = v & ~LAB_AMAP_POOL;
      return s->apool_host[v & ~LAB_AMAP_POOL];
    }
  }
}

uint32_t lab_addr_lookup(const sim_t *s, const pd_netaddr_t *a) {
  return lab_addr_lookup_ex(s, a, NULL);
}

static int addr_insert_raw(const sim_t *s, uint32_t *map, size_t mask, uint32_t v) {
  const pd_netaddr_t *a = amap_addr(s, v);
  for (size_t i = addr_hash(a) & mask;; i = (i + 1) & mask) {
    if (map[i] == NO_IDX) {
      map[i] = v;
      return 0;
    }
    if (pd_netaddr_equal(amap_addr(s, map[i]), a)) return PD_EEXIST;
  }
}

static int amap_insert(sim_t *s, uint32_t v) {
  size_t size = s->amap ? s->amask + 1 : 0;
  if ((s->amap_n + 1) * 2 > size) {
    size_t ns = size ? size * 2 : 1024;
    uint32_t *nm = malloc(ns * sizeof *nm);
    if (!nm) return PD_ENOMEM;
    memset(nm, 0xff, ns * sizeof *nm);
    for (size_t i = 0; i < size; i++)
      if (s->amap[i] != NO_IDX) addr_insert_raw(s, nm, ns - 1, s->amap[i]);
    free(s->amap);
    s->amap = nm;
    s->amask = ns - 1;
  }
  int rc = addr_insert_raw(s, s->amap, s->amask, v);
  if (rc == 0) s->amap_n++;
  return rc;
}

int lab_addr_insert(sim_t *s, uint32_t idx) { return amap_insert(s, idx); }

int lab_addr_insert_pool(sim_t *s, uint32_t p) {
  if (p >= LAB_AMAP_POOL) return PD_ENOMEM;
  return amap_insert(s, LAB_AMAP_POOL | p);
}

/* ---- links ---- */

uint32_t lab_link_new(sim_t *s) {
  uint32_t li;
  if (s->free_link != NO_IDX) {
    li = s->free_link;
    s->free_link = s->links[li].next_free;
  } else {
    if (s->nlinks == s->lcap) {
      uint32_t nc = s->lcap ? s->lcap * 2 : 1024;
      sim_link_t *nl = realloc(s->links, nc * sizeof *nl);
      if (!nl) return NO_IDX;
      s->links = nl;
      s->lcap = nc;
    }
    li = s->nlinks++;
  }
  memset(&s->links[li], 0, sizeof s->links[li]);
  s->links[li].h[0] = s->links[li].h[1] = NO_IDX;
  return li;
}

static void link_maybe_free(sim_t *s, uint32_t li) {
  sim_link_t *l = &s->links[li];
  if (l->open[0] || l->open[1] || l->pending) return;
  l->h[0] = l->h[1] = NO_IDX;
  l->next_free = s->free_link;
  s->free_link = li;
}

/* Adds li to h's links; cid: h's conn id on it. A link's side gets its
 * conn id before it is added and keeps it, so the pair (li, cid) names one
 * side, a link from a host to itself included. */
static int host_add_link(sim_host_t *h, uint32_t li, uint64_t cid) {
  if (h->nlinks == h->linkcap) {
    uint32_t nc = h->linkcap ? h->linkcap * 2 : 16;
    uint32_t *nl = realloc(h->links, nc * sizeof *nl);
    if (!nl) return PD_ENOMEM;
    h->links = nl;
    uint64_t *nk = realloc(h->link_cid, nc * sizeof *nk);
    if (!nk) return PD_ENOMEM;
    h->link_cid = nk;
    h->linkcap = nc;
  }
  h->link_cid[h->nlinks] = cid;
  h->links[h->nlinks++] = li;
  return 0;
}

static void host_del_link(sim_host_t *h, uint32_t li, uint64_t cid) {
  for (uint32_t i = 0; i < h->nlinks; i++)
    if (h->links[i] == li && h->link_cid[i] == cid) {
      h->nlinks--;
      h->links[i] = h->links[h->nlinks];
      h->link_cid[i] = h->link_cid[h->nlinks];
      return;
    }
}

/* Arrival time for something sent towards `side` that would arrive at
 * `arr`: never before what is already in flight that way, so bytes and the
 * close keep their order per direction (TCP's in-order delivery). */
int64_t lab_arrival_in_order(sim_link_t *l, int side, int64_t arr) {
  if (arr < l->last_arr[side]) arr = l->last_arr[side];
  l->last_arr[side] = arr;
  return arr;
}

/* The link of host hi with conn id cid, and which side hi is. */
static bool link_side(const sim_link_t *l, uint32_t hi, uint64_t cid, int *side) {
  for (int k = 0; k < 2; k++)
    if (l->h[k] == hi && l->open[k] && l->cid[k] == cid) {
      *side = k;
      return true;
    }
  return false;
}

uint32_t lab_link_find(sim_t *s, uint32_t hi, uint64_t cid, int *side) {
  sim_host_t *h = s->hosts[hi];
  /* by the conn ids kept beside the list: one link read instead of one per
   * link (a host's links are scattered over the lab's array) */
  for (uint32_t i = 0; i < h->nlinks; i++)
    if (h->link_cid[i] == cid && link_side(&s->links[h->links[i]], hi, cid, side))
      return h->links[i];
  return NO_IDX;
}

bool lab_reachable(const sim_t *s, uint32_t a, uint32_t b) {
  int pa = s->hosts[a]->part, pb = s->hosts[b]->part;
  return pa == 0 || pb == 0 || pa == pb;
}

int64_t lab_draw_latency(sim_t *s) {
  double v = s->lat_ms;
  if (s->lat_kind == LAT_UNIFORM) {
    v += (pd_rng_unit(&s->net_rng) * 2.0 - 1.0) * s->jitter_ms;
  } else if (s->lat_kind == LAT_NORMAL) {
    /* Irwin-Hall: sum of 12 uniforms - 6 is close to a standard normal. */
    double z = -6.0;
    for (int i = 0; i < 12; i++) z += pd_rng_unit(&s->net_rng);
    v += z * s->jitter_ms;
  }
  if (v < 1.0) v = 1.0;
  return (int64_t)llround(v);
}

bool lab_lost(sim_t *s) { return s->loss > 0 && pd_rng_unit(&s->net_rng) < s->loss; }

/* ---- a host's transport: actions out, its timer ---- */

static void rearm(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  if (!h->up || h->black_hole) return;
  int64_t d = pd_netmgr_next_deadline_ms(h->m);
  d = d == INT64_MAX ? INT64_MAX : d - PD_SIM_EPOCH_MS;
  /* The node's housekeeping (ban expiry, tried collisions, saves) runs at
   * whole seconds like the daemon's 1 s tick, but only when something is
   * due: an idle host costs no events. */
  int64_t nd = pd_node_next_deadline(h->node, lab_now_s(s));
  if (nd != INT64_MAX) {
    if (nd <= h->last_tick_s) nd = h->last_tick_s + 1;
    int64_t tick = nd * 1000 - PD_SIM_EPOCH_MS;
    if (tick < d) d = tick;
  }
  if (d == INT64_MAX) {
    if (h->timer_at <= s->now) h->timer_at = INT64_MAX;
    return;
  }
  if (d <= s->now) d = s->now + 1;
  if (h->timer_at <= s->now || d < h->timer_at) {
    h->timer_at = d;
    lab_push_ev(s, d, EV_TIMER, hi, h->gen, 0, 0, NULL);
  }
}

/* Host hi (on `side` of link li) sends len bytes: they arrive after the
 * link's latency plus hi's bandwidth delay, in order. */
void lab_link_send(sim_t *s, uint32_t hi, uint32_t li, int side, const uint8_t *data, size_t len) {
  sim_host_t *h = s->hosts[hi];
  sim_link_t *l = &s->links[li];
  int o = 1 - side;
  double depart = (double)s->now;
  if (h->bw > 0) {
    double start = h->tx_free_at > depart ? h->tx_free_at : depart;
    h->tx_free_at = start + (double)len * 1000.0 / h->bw;
    depart = h->tx_free_at;
  }
  if (!l->up || !l->open[o] || !lab_reachable(s, l->h[0], l->h[1]) || lab_lost(s)) return;
  int64_t arr = lab_arrival_in_order(l, o, (int64_t)ceil(depart) + l->lat);
  uint8_t *copy = malloc(len ? len : 1);
  if (!copy) return;
  memcpy(copy, data, len);
  if (lab_push_link_ev(s, arr, EV_BYTES, li, (uint32_t)o, len, copy) != 0) free(copy);
}

/* Host hi closes its side of link li: the other side sees the close after
 * the bytes in flight. */
void lab_link_close(sim_t *s, uint32_t hi, uint32_t li, int side) {
  sim_link_t *l = &s->links[li];
  int o = 1 - side;
  l->open[side] = false;
  host_del_link(s->hosts[hi], li, l->cid[side]);
  if (l->up && l->open[o]) {
    int64_t arr = lab_arrival_in_order(l, o, s->now + l->lat);
    lab_push_link_ev(s, arr, EV_FIN, li, (uint32_t)o, 0, NULL);
  }
  link_maybe_free(s, li);
}

static void handle_action(sim_t *s, uint32_t hi, const pd_netmgr_action_t *a) {
  sim_host_t *h = s->hosts[hi];
  if (h->black_hole) return; /* a black hole's core is cut off: it never acts */
  switch (a->type) {
  case PD_NETMGR_A_DIAL: {
    uint32_t li = lab_link_new(s);
    if (li == NO_IDX) {
      pd_netmgr_on_dial_failed(h->m, a->conn_id, PD_DIAL_ERROR, lab_now_ms(s));
      return;
    }
    sim_link_t *l = &s->links[li];
    l->h[0] = hi;
    l->cid[0] = a->conn_id;
    l->open[0] = true;
    l->lat = lab_draw_latency(s);
    host_add_link(h, li, a->conn_id);
    uint32_t paddr = NO_IDX;
    uint32_t j = lab_addr_lookup_ex(s, &a->dial.target.addr, &paddr);
    if (j == NO_IDX || !lab_reachable(s, hi, j) ||
        (paddr != NO_IDX && !lab_pool_answers(s, j, paddr)) || lab_lost(s))
      lab_push_link_ev(s, s->now + s->connect_timeout_ms, EV_DIAL_FAIL, li, PD_DIAL_TIMEOUT, 0,
                       NULL);
    else /* x: the pool address dialled, + 1 (0: a host's own) */
      lab_push_link_ev(s, s->now + l->lat, EV_CONNECT, li, j,
                       paddr == NO_IDX ? 0 : (uint64_t)paddr + 1, NULL);
    return;
  }
  case PD_NETMGR_A_SEND: {
    int side = 0;
    uint32_t li = lab_link_find(s, hi, a->conn_id, &side);
    if (li != NO_IDX) lab_link_send(s, hi, li, side, a->send.data, a->send.len);
    return;
  }
  case PD_NETMGR_A_CLOSE: {
    int side = 0;
    uint32_t li = lab_link_find(s, hi, a->conn_id, &side);
    if (li != NO_IDX) lab_link_close(s, hi, li, side);
    return;
  }
  case PD_NETMGR_A_RESOLVE: {
    uint32_t ni = NO_IDX;
    for (size_t i = 0; i < s->nnames; i++)
      if (a->resolve.host && strcmp(s->names[i].name, a->resolve.host) == 0) ni = (uint32_t)i;
    lab_push_ev(s, s->now + 1, EV_RESOLVED, hi, h->gen, ni, a->resolve.token, NULL);
    return;
  }
  }
}

void lab_drain(sim_t *s, uint32_t hi) {
  pd_netmgr_action_t a;
  while (s->hosts[hi]->up && pd_netmgr_poll(s->hosts[hi]->m, &a)) handle_action(s, hi, &a);
}

static void after(sim_t *s, uint32_t hi) {
  lab_drain(s, hi);
  rearm(s, hi);
}

/* Close every link host hi still has open (what its stopped manager did not
 * close: dials in progress): the other side sees the close after the bytes
 * in flight. */
void lab_host_close_links(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  while (h->nlinks) {
    uint32_t li = h->links[h->nlinks - 1];
    sim_link_t *l = &s->links[li];
    for (int k = 0; k < 2; k++)
      if (l->h[k] == hi && l->open[k]) {
        l->open[k] = false;
        if (l->up && l->open[1 - k]) {
          int64_t arr = lab_arrival_in_order(l, 1 - k, s->now + l->lat);
          lab_push_link_ev(s, arr, EV_FIN, li, (uint32_t)(1 - k), 0, NULL);
        }
      }
    h->nlinks--;
    link_maybe_free(s, li);
  }
}

/* ---- events in ---- */

/* EV_TIMER (a: host, b: gen): the host's wake-up. */
void lab_timer_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_host_t *h = s->hosts[e->a];
  if (!h->up || h->gen != e->b || h->timer_at != e->t) return;
  h->timer_at = INT64_MAX;
  int64_t sec = lab_now_s(s);
  if (sec > h->last_tick_s) {
    pd_node_tick(h->node, sec);
    h->last_tick_s = sec;
  }
  pd_netmgr_on_tick(h->m, lab_now_ms(s));
  after(s, e->a);
}

/* EV_CONNECT, EV_CONNECTED, EV_DIAL_FAIL, EV_BYTES, EV_FIN (a: link): what
 * arrives on a link; the link is freed once nothing names it any more. */
void lab_link_fire(sim_t *s, const pd_sim_event_t *e) {
  switch (e->kind) {
  case EV_CONNECT: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    uint32_t j = e->b;
    if (!l->open[0]) break;
    sim_host_t *d = s->hosts[l->h[0]];
    sim_host_t *t = s->hosts[j];
    if (t->pool) {
      lab_pool_accept(s, j, e->a, e->x ? (uint32_t)(e->x - 1) : NO_IDX);
      break;
    }
    if (!t->up || t->overlay_off) { /* overlay = false: no overlay listener */
      lab_push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, e->a, PD_DIAL_REFUSED, 0, NULL);
      break;
    }
    if (t->black_hole) { /* accepts TCP, never says a word */
      l->h[1] = j;
      l->cid[1] = 0;
      l->open[1] = true;
      l->up = true;
      host_add_link(t, e->a, 0);
      l->last_arr[0] = s->now + l->lat;
      lab_push_link_ev(s, s->now + l->lat, EV_CONNECTED, e->a, 0, 0, NULL);
      break;
    }
    pd_netaddr_t remote = d->pool ? *lab_pool_conn_addr(s, l->h[0], l->cid[0]) : d->listen;
    remote.port = (uint16_t)(32768 + (s->eph++ % 28000));
    uint64_t cid = 0;
    if (pd_netmgr_on_inbound(t->m, &remote, lab_now_ms(s), &cid) != PD_NETMGR_ACCEPT) {
      lab_push_link_ev(s, s->now + l->lat, EV_DIAL_FAIL, e->a, PD_DIAL_REFUSED, 0, NULL);
      after(s, j);
      break;
    }
    l->h[1] = j;
    l->cid[1] = cid;
    l->open[1] = true;
    l->up = true;
    host_add_link(t, e->a, cid);
    l->last_arr[0] = s->now + l->lat;
    lab_push_link_ev(s, s->now + l->lat, EV_CONNECTED, e->a, 0, 0, NULL);
    after(s, j);
    break;
  }
  case EV_CONNECTED: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    if (!l->open[0]) break;
    if (s->hosts[l->h[0]]->pool) {
      lab_pool_connected(s, l->h[0], e->a);
      break;
    }
    pd_netmgr_on_connected(s->hosts[l->h[0]]->m, l->cid[0], lab_now_ms(s));
    after(s, l->h[0]);
    break;
  }
  case EV_DIAL_FAIL: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    if (!l->open[0]) break;
    uint32_t hi = l->h[0];
    l->open[0] = false;
    host_del_link(s->hosts[hi], e->a, l->cid[0]);
    if (s->hosts[hi]->pool) {
      lab_pool_dial_failed(s, hi, e->a);
      break;
    }
    pd_netmgr_on_dial_failed(s->hosts[hi]->m, l->cid[0], (enum pd_dial_outcome)e->b, lab_now_ms(s));
    after(s, hi);
    break;
  }
  case EV_BYTES: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    int side = (int)e->b;
    if (l->open[side] && s->hosts[l->h[side]]->pool) {
      lab_pool_bytes(s, l->h[side], e->a, side, e->p, (size_t)e->x);
    } else if (l->open[side] && !s->hosts[l->h[side]]->black_hole) {
      uint32_t hi = l->h[side];
      pd_netmgr_on_bytes(s->hosts[hi]->m, l->cid[side], e->p, (size_t)e->x, lab_now_ms(s));
      after(s, hi);
    }
    free(e->p);
    break;
  }
  case EV_FIN: {
    sim_link_t *l = &s->links[e->a];
    l->pending--;
    int side = (int)e->b;
    if (l->open[side]) {
      uint32_t hi = l->h[side];
      l->open[side] = false;
      host_del_link(s->hosts[hi], e->a, l->cid[side]);
      if (s->hosts[hi]->pool) {
        lab_pool_fin(s, hi, e->a, side);
      } else if (!s->hosts[hi]->black_hole) {
        pd_netmgr_on_closed(s->hosts[hi]->m, l->cid[side], lab_now_ms(s));
        after(s, hi);
      }
    }
    break;
  }
  default:
    return;
  }
  link_maybe_free(s, e->a);
}

/* EV_RESOLVED (a: host, b: gen, c: name index, x: token): a name's answer. */
void lab_resolve_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_host_t *h = s->hosts[e->a];
  if (!h->up || h->gen != e->b) return;
  pd_netaddr_t addrs[SIM_MAX_SEEDS];
  size_t n = 0;
  if (e->c != NO_IDX) {
    const sim_name_t *nm = &s->names[e->c];
    for (size_t i = 0; i < nm->n && n < SIM_MAX_SEEDS; i++)
      addrs[n++] = s->hosts[nm->hosts[i]]->listen;
  }
  pd_netmgr_on_resolved(h->m, e->x, addrs, n, lab_now_ms(s));
  after(s, e->a);
}
