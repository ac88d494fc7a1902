/* measure — the lab's measurements of the simulated network (scenario lab;
 * docs/scenarios.md).
 *
 * Owns: per-host connection counts (outbound, inbound, the minimum
 * outbound it aims at), which hosts are honest nodes; components of the
 * honest nodes' outbound graph (union-find: sim.connectivity); diameter and
 * mean path samples by breadth-first search (pd_sim_graph_sample, public
 * for tests; sim.diameter, its sources drawn from a stream of their own);
 * the network summary sim.stats (attacker shares, eclipsed and isolated
 * nodes summed from attackers.c's per-host share).
 * Does not own: the attacker share of one host (attackers.c; summed here),
 * the other Lua functions (scenario.c), output files (output.c).
 */
#include "lab.h"

#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"
#include "rectable.h"

uint32_t lab_host_outbound(const sim_host_t *h) {
  if (!h->up) return 0;
  pd_dialer_counters_t c;
  pd_dialer_counters(pd_netmgr_dialer(h->m), &c);
  return c.connected[PD_CONN_OUTBOUND];
}

uint32_t lab_host_inbound(const sim_host_t *h) {
  if (!h->up) return 0;
  pd_dialer_counters_t c;
  pd_dialer_counters(pd_netmgr_dialer(h->m), &c);
  return c.connected[PD_CONN_INBOUND];
}

uint32_t lab_host_min_out(const sim_host_t *h) {
  if (h->dial_off) return 0;
  if (h->min_out) return h->min_out;
  pd_dialer_config_t dc;
  pd_dialer_config_default(&dc);
  uint32_t m = dc.min_outbound;
  if (h->max_out && m > h->max_out) m = h->max_out;
  return m;
}

/* An honest node: up, not a seed, not an attacker (what stats count). */
bool lab_is_node(const sim_host_t *h) { return h->up && !h->seed_mode && !h->attacker; }

static uint32_t uf_find(uint32_t *p, uint32_t x) {
  while (p[x] != x) {
    p[x] = p[p[x]];
    x = p[x];
  }
  return x;
}

/* Components of the graph of honest nodes (lab_is_node; only those in mask
 * when mask is not NULL) joined by outbound connections. */
static int connectivity(sim_t *s, const uint8_t *mask, size_t *largest, size_t *ncomp,
                        size_t *nodes) {
  *largest = *ncomp = *nodes = 0;
  if (s->nhosts == 0) return 0;
  uint32_t *p = malloc(s->nhosts * sizeof *p);
  uint32_t *cnt = calloc(s->nhosts, sizeof *cnt);
  if (!p || !cnt) {
    free(p);
    free(cnt);
    return PD_ENOMEM;
  }
  for (uint32_t i = 0; i < s->nhosts; i++) p[i] = i;
  pd_dial_target_t out[64];
  for (uint32_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!lab_is_node(h) || (mask && !mask[i])) continue;
    size_t n = pd_netmgr_anchors(h->m, out, 64);
    if (n > 64) n = 64;
    for (size_t k = 0; k < n; k++) {
      uint32_t j = lab_addr_lookup(s, &out[k].addr);
      if (j == NO_IDX || !lab_is_node(s->hosts[j]) || (mask && !mask[j])) continue;
      uint32_t a = uf_find(p, i), b = uf_find(p, j);
      if (a != b) p[a < b ? b : a] = a < b ? a : b;
    }
  }
  for (uint32_t i = 0; i < s->nhosts; i++) {
    if (!lab_is_node(s->hosts[i]) || (mask && !mask[i])) continue;
    (*nodes)++;
    uint32_t r = uf_find(p, i);
    if (cnt[r]++ == 0) (*ncomp)++;
    if (cnt[r] > *largest) *largest = cnt[r];
  }
  free(p);
  free(cnt);
  return 0;
}

int pd_sim_graph_sample(size_t n, const uint32_t *off, const uint32_t *adj, const uint32_t *src,
                        size_t k, uint32_t *diameter, double *mean_path, uint64_t *pairs) {
  if (!diameter || !mean_path || !pairs) return PD_EINVAL;
  *diameter = 0;
  *mean_path = 0;
  *pairs = 0;
  if (n == 0 || k == 0) return 0;
  if (!off || !adj || !src || n >= UINT32_MAX) return PD_EINVAL;
  for (size_t i = 0; i < k; i++)
    if (src[i] >= n) return PD_EINVAL;
  uint32_t *dist = malloc(n * sizeof *dist);
  uint32_t *queue = malloc(n * sizeof *queue);
  if (!dist || !queue) {
    free(dist);
    free(queue);
    return PD_ENOMEM;
  }
  uint64_t sum = 0, np = 0;
  uint32_t diam = 0;
  for (size_t i = 0; i < k; i++) {
    for (size_t v = 0; v < n; v++) dist[v] = UINT32_MAX;
    size_t head = 0, tail = 0;
    dist[src[i]] = 0;
    queue[tail++] = src[i];
    while (head < tail) {
      uint32_t v = queue[head++];
      for (uint32_t e = off[v]; e < off[v + 1]; e++) {
        uint32_t w = adj[e];
        if (w >= n || dist[w] != UINT32_MAX) continue;
        dist[w] = dist[v] + 1;
        sum += dist[w];
        np++;
        if (dist[w] > diam) diam = dist[w];
        queue[tail++] = w;
      }
    }
  }
  free(dist);
  free(queue);
  *diameter = diam;
  *pairs = np;
  *mean_path = np ? (double)sum / (double)np : 0.0;
  return 0;
}

typedef struct diam_result {
  size_t hosts, samples;
  uint32_t diameter;
  double mean_path;
  uint64_t pairs;
} diam_result_t;

static bool diam_member(const sim_host_t *h, const uint8_t *mask, uint32_t i, bool atk, bool seeds) {
  if (!h->up || !h->m || (mask && !mask[i])) return false;
  if (h->attacker && !atk) return false;
  if (h->seed_mode && !seeds) return false;
  return true;
}

/* The graph of up hosts (honest non-seed ones unless atk / seeds; only
 * those in mask when given) joined by their ready outbound connections,
 * undirected; BFS from `samples` of them drawn with diam_rng (all of them,
 * in index order, when samples >= their number). */
static int diameter_sample(sim_t *s, const uint8_t *mask, bool atk, bool seeds, size_t samples,
                           diam_result_t *r) {
  memset(r, 0, sizeof *r);
  size_t nh = s->nhosts;
  if (nh == 0) return 0;
  int rc = PD_ENOMEM;
  uint32_t *vid = malloc(nh * sizeof *vid);
  uint32_t *hv = malloc(nh * sizeof *hv); /* vertex -> host */
  uint32_t *ea = NULL, *eb = NULL, *off = NULL, *adj = NULL, *src = NULL;
  size_t ne = 0, ecap = 0, nv = 0;
  if (!vid || !hv) goto out;
  for (uint32_t i = 0; i < nh; i++) {
    vid[i] = NO_IDX;
    if (diam_member(s->hosts[i], mask, i, atk, seeds)) {
      hv[nv] = i;
      vid[i] = (uint32_t)nv++;
    }
  }
  r->hosts = nv;
  if (nv == 0) {
    rc = 0;
    goto out;
  }
  pd_dial_target_t out[64];
  for (size_t v = 0; v < nv; v++) {
    size_t n = pd_netmgr_anchors(s->hosts[hv[v]]->m, out, 64);
    if (n > 64) n = 64;
    for (size_t k = 0; k < n; k++) {
      uint32_t j = lab_addr_lookup(s, &out[k].addr);
      if (j == NO_IDX || vid[j] == NO_IDX || vid[j] == v) continue;
      if (ne == ecap) {
        size_t nc = ecap ? ecap * 2 : 1024;
        uint32_t *na = realloc(ea, nc * sizeof *na);
        if (!na) goto out;
        ea = na;
        uint32_t *nb = realloc(eb, nc * sizeof *nb);
        if (!nb) goto out;
        eb = nb;
        ecap = nc;
      }
      ea[ne] = (uint32_t)v;
      eb[ne] = vid[j];
      ne++;
    }
  }
  off = calloc(nv + 1, sizeof *off);
  adj = malloc((2 * ne + 1) * sizeof *adj);
  src = malloc(nv * sizeof *src);
  if (!off || !adj || !src) goto out;
  for (size_t e = 0; e < ne; e++) {
    off[ea[e] + 1]++;
    off[eb[e] + 1]++;
  }
  for (size_t v = 0; v < nv; v++) off[v + 1] += off[v];
  for (size_t v = 0; v < nv; v++) src[v] = off[v]; /* fill cursors */
  for (size_t e = 0; e < ne; e++) {
    adj[src[ea[e]]++] = eb[e];
    adj[src[eb[e]]++] = ea[e];
  }
  for (size_t v = 0; v < nv; v++) src[v] = (uint32_t)v;
  size_t k = samples < nv ? samples : nv;
  if (k < nv) /* partial Fisher-Yates: k distinct sources */
    for (size_t i = 0; i < k; i++) {
      size_t j = i + (size_t)pd_rng_range(&s->diam_rng, nv - i);
      uint32_t t = src[i];
      src[i] = src[j];
      src[j] = t;
    }
  r->samples = k;
  rc = pd_sim_graph_sample(nv, off, adj, src, k, &r->diameter, &r->mean_path, &r->pairs);
out:
  free(vid);
  free(hv);
  free(ea);
  free(eb);
  free(off);
  free(adj);
  free(src);
  return rc;
}

/* ---- sim.connectivity, sim.diameter, sim.stats ---- */

/* Optional argument i: an array of hosts -> a mask over all hosts (malloc'd;
 * NULL when absent). Raises on a bad argument. */
static uint8_t *host_mask(lua_State *L, sim_t *s, int i) {
  if (lua_isnoneornil(L, i)) return NULL;
  luaL_checktype(L, i, LUA_TTABLE);
  lua_Integer n = (lua_Integer)lua_rawlen(L, i);
  for (lua_Integer k = 1; k <= n; k++) { /* check before allocating: no leak on error */
    lua_rawgeti(L, i, k);
    lab_checkhost(L, -1);
    lua_pop(L, 1);
  }
  uint8_t *m = calloc(s->nhosts ? s->nhosts : 1, 1);
  if (!m) luaL_error(L, "out of memory");
  for (lua_Integer k = 1; k <= n; k++) {
    lua_rawgeti(L, i, k);
    m[lab_checkhost(L, -1)] = 1;
    lua_pop(L, 1);
  }
  return m;
}

int lab_l_connectivity(lua_State *L) {
  sim_t *s = lab_getsim(L);
  size_t largest, ncomp, nodes;
  uint8_t *mask = host_mask(L, s, 1);
  int crc = connectivity(s, mask, &largest, &ncomp, &nodes);
  free(mask);
  if (crc != 0) return luaL_error(L, "out of memory");
  lua_createtable(L, 0, 3);
  lua_pushinteger(L, (lua_Integer)largest);
  lua_setfield(L, -2, "largest_component");
  lua_pushinteger(L, (lua_Integer)ncomp);
  lua_setfield(L, -2, "components");
  lua_pushinteger(L, (lua_Integer)nodes);
  lua_setfield(L, -2, "hosts");
  return 1;
}

/* sim.diameter{samples = 16, hosts = {...}, attackers = false, seeds = false} */
int lab_l_diameter(lua_State *L) {
  sim_t *s = lab_getsim(L);
  lua_Integer samples = 16;
  bool atk = false, seeds = false;
  uint8_t *mask = NULL;
  if (!lua_isnoneornil(L, 1)) {
    luaL_checktype(L, 1, LUA_TTABLE);
    lua_getfield(L, 1, "samples");
    if (!lua_isnil(L, -1)) samples = luaL_checkinteger(L, -1);
    lua_pop(L, 1);
    if (samples < 1) return luaL_error(L, "sim.diameter: samples must be >= 1");
    atk = lab_field_bool(L, 1, "attackers", false);
    seeds = lab_field_bool(L, 1, "seeds", false);
    lua_getfield(L, 1, "hosts");
    mask = host_mask(L, s, lua_gettop(L));
    lua_pop(L, 1);
  }
  diam_result_t r;
  int rc = diameter_sample(s, mask, atk, seeds, (size_t)samples, &r);
  free(mask);
  if (rc != 0) return luaL_error(L, "out of memory");
  lua_createtable(L, 0, 5);
  lua_pushinteger(L, (lua_Integer)r.diameter);
  lua_setfield(L, -2, "diameter");
  lua_pushnumber(L, r.mean_path);
  lua_setfield(L, -2, "mean_path");
  lua_pushinteger(L, (lua_Integer)r.samples);
  lua_setfield(L, -2, "samples");
  lua_pushinteger(L, (lua_Integer)r.hosts);
  lua_setfield(L, -2, "hosts");
  lua_pushinteger(L, (lua_Integer)r.pairs);
  lua_setfield(L, -2, "pairs");
  return 1;
}

int lab_l_stats(lua_State *L) {
  sim_t *s = lab_getsim(L);
  uint8_t *mask = host_mask(L, s, 1);
  size_t up = 0, cnt = 0, atmin = 0, attackers = 0, eclipsed = 0, isolated = 0;
  uint64_t out_sum = 0, in_sum = 0, book_sum = 0;
  uint32_t out_min = UINT32_MAX, out_max = 0;
  double share_out = 0, share_in = 0, share_all = 0;
  size_t rec_sum = 0;
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!h->up || (mask && !mask[i])) continue;
    up++;
    if (h->attacker) attackers++;
    if (!lab_is_node(h)) continue;
    cnt++;
    atk_share_t as; /* isolated counts without attackers too (no peer at all) */
    lab_attacker_share(s, (uint32_t)i, &as);
    if (as.out) share_out += (double)as.out_atk / (double)as.out;
    if (as.in) share_in += (double)as.in_atk / (double)as.in;
    if (as.all) share_all += (double)as.all_atk / (double)as.all;
    if (as.eclipsed) eclipsed++;
    if (as.isolated) isolated++;
    uint32_t o = lab_host_outbound(h);
    out_sum += o;
    in_sum += lab_host_inbound(h);
    book_sum += pd_book_size(pd_node_book(h->node));
    rec_sum += pd_rectable_count(pd_node_records(h->node));
    if (o < out_min) out_min = o;
    if (o > out_max) out_max = o;
    if (o >= lab_host_min_out(h)) atmin++;
  }
  lua_createtable(L, 0, 9);
  lua_pushinteger(L, (lua_Integer)s->nhosts);
  lua_setfield(L, -2, "hosts");
  lua_pushinteger(L, (lua_Integer)up);
  lua_setfield(L, -2, "up");
  lua_pushinteger(L, (lua_Integer)cnt);
  lua_setfield(L, -2, "nodes");
  lua_pushinteger(L, (lua_Integer)atmin);
  lua_setfield(L, -2, "at_min_outbound");
  lua_pushnumber(L, cnt ? (double)atmin / (double)cnt : 0.0);
  lua_setfield(L, -2, "at_min_fraction");
  lua_pushnumber(L, cnt ? (double)out_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "outbound_mean");
  lua_pushinteger(L, cnt ? (lua_Integer)out_min : 0);
  lua_setfield(L, -2, "outbound_min");
  lua_pushinteger(L, (lua_Integer)out_max);
  lua_setfield(L, -2, "outbound_max");
  lua_pushnumber(L, cnt ? (double)in_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "inbound_mean");
  lua_pushnumber(L, cnt ? (double)book_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "book_mean");
  lua_pushnumber(L, cnt ? (double)rec_sum / (double)cnt : 0.0);
  lua_setfield(L, -2, "records_mean");
  lua_pushinteger(L, (lua_Integer)attackers);
  lua_setfield(L, -2, "attackers");
  lua_pushnumber(L, cnt ? share_out / (double)cnt : 0.0);
  lua_setfield(L, -2, "attacker_share_outbound");
  lua_pushnumber(L, cnt ? share_in / (double)cnt : 0.0);
  lua_setfield(L, -2, "attacker_share_inbound");
  lua_pushnumber(L, cnt ? share_all / (double)cnt : 0.0);
  lua_setfield(L, -2, "attacker_share_all");
  lua_pushinteger(L, (lua_Integer)eclipsed);
  lua_setfield(L, -2, "eclipsed");
  lua_pushinteger(L, (lua_Integer)isolated);
  lua_setfield(L, -2, "isolated");
  free(mask);
  return 1;
}

