/* attackers — the lab's attacker hosts (scenario lab; docs/scenarios.md).
 *
 * Owns: sim.attacker / sim.attackers: attacker hosts in attacker /16 groups
 * (taken from the top of the IPv4 space down), their team's address pool
 * (their own addresses and phantom ones that no host answers), the book
 * prefilled with that pool, the generated attacker-only pex.lua
 * (getaddr_attacker_only), held inbound connections (hold_inbound, as
 * persistent dials), black holes and ADDR floods injected on their
 * connections (EV_FLOOD); which addresses are an attacker's (a hash set
 * over s->apool, lab_addr_is_attacker); the attacker share of a host's
 * peers (outbound, inbound, eclipsed, isolated).
 * Does not own: the hosts themselves (hosts.c: an attacker is a host with
 * these settings), links (links.c), the measurements that sum attacker
 * shares (measure.c).
 */
#include "lab.h"

#include <math.h>
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"

/* ---- an attacker's book and ADDR floods ---- */

/* A fresh attacker's book holds every attacker address (but its own), each
 * announced by itself, so its GETADDR answers are drawn from them. */
void lab_attacker_prefill(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  pd_book_t *b = pd_node_book(h->node);
  for (size_t i = h->pool_lo; i < h->pool_hi && i < s->napool; i++) {
    if (pd_netaddr_equal(&s->apool[i], &h->listen)) continue;
    pd_book_add(b, &s->apool[i], NULL, lab_now_s(s), &s->apool[i], 0, lab_now_s(s), NULL);
  }
}

static bool is_target(const sim_host_t *h, uint32_t j) {
  if (!h->ntargets) return true;
  for (size_t i = 0; i < h->ntargets; i++)
    if (h->targets[i] == j) return true;
  return false;
}

/* An ADDR frame of flood_size attacker addresses (fresh timestamps) on each
 * handshaken connection of the attacker to a target (any honest peer when
 * it has no targets), as if its core had sent it: queued behind the bytes
 * already in flight on that connection. */
void lab_flood_fire(sim_t *s, const pd_sim_event_t *e) {
  sim_host_t *h = s->hosts[e->a];
  if (!h->up || h->gen != e->b) return;
  lab_push_ev(s, s->now + (int64_t)e->x, EV_FLOOD, e->a, e->b, 0, e->x, NULL);
  if (h->pool_hi <= h->pool_lo || h->pool_hi > s->napool || !h->nlinks) return;
  size_t np = pd_netmgr_conn_count(h->m);
  pd_netmgr_peer_info_t *pi = malloc((np ? np : 1) * sizeof *pi);
  if (!pi) return;
  np = pd_netmgr_peers(h->m, lab_now_ms(s), pi, np);
  size_t cnt = h->flood_size ? h->flood_size : 10;
  if (cnt > PD_WIRE_MAX_ADDRS) cnt = PD_WIRE_MAX_ADDRS;
  pd_wire_addr_entry_t *ent = calloc(cnt, sizeof *ent);
  for (size_t k = 0; ent && k < np; k++) {
    if (pi[k].state != PD_NETMGR_READY) continue;
    int side = 0;
    uint32_t li = lab_link_find(s, e->a, pi[k].conn_id, &side);
    if (li == NO_IDX) continue;
    sim_link_t *l = &s->links[li];
    int o = 1 - side;
    if (!l->up || !l->open[o]) continue;
    uint32_t j = l->h[o];
    if (s->hosts[j]->attacker || !is_target(h, j) || !lab_reachable(s, e->a, j)) continue;
    for (size_t i = 0; i < cnt; i++) {
      ent[i].addr = s->apool[h->pool_lo + pd_rng_range(&s->atk_rng, h->pool_hi - h->pool_lo)];
      ent[i].timestamp = lab_now_s(s);
      ent[i].has_id = false;
    }
    /* sealed in the attacker's own session, sent as its core sends */
    (void)pd_netmgr_send_addrs(h->m, pi[k].conn_id, ent, cnt, lab_now_ms(s));
  }
  free(ent);
  free(pi);
  lab_drain(s, e->a);
}

/* ---- attacker addresses ---- */

static uint64_t aset_hash(const pd_netaddr_t *a) {
  uint64_t h = 1469598103934665603ull; /* FNV-1a over ip and port */
  for (int i = 0; i < 16; i++) h = (h ^ a->ip[i]) * 1099511628211ull;
  h = (h ^ (a->port & 0xff)) * 1099511628211ull;
  h = (h ^ (a->port >> 8)) * 1099511628211ull;
  return h ^ (h >> 29);
}

/* Put apool index i in the table (a duplicate address is kept once). */
static void aset_put(uint32_t *t, size_t mask, const pd_netaddr_t *pool, uint32_t i) {
  for (size_t k = aset_hash(&pool[i]) & mask;; k = (k + 1) & mask) {
    if (t[k] == NO_IDX) {
      t[k] = i;
      return;
    }
    if (pd_netaddr_equal(&pool[t[k]], &pool[i])) return;
  }
}

int lab_aset_sync(sim_t *s) {
  if (s->aset_n >= s->napool) return 0;
  size_t size = s->aset ? s->aset_mask + 1 : 0;
  if (s->napool * 2 > size) { /* load factor <= 1/2: rebuild bigger */
    size_t ns = size ? size : 1024;
    while (s->napool * 2 > ns) ns *= 2;
    uint32_t *t = malloc(ns * sizeof *t);
    if (!t) return PD_ENOMEM;
    memset(t, 0xff, ns * sizeof *t);
    free(s->aset);
    s->aset = t;
    s->aset_mask = ns - 1;
    s->aset_n = 0;
  }
  for (; s->aset_n < s->napool; s->aset_n++)
    aset_put(s->aset, s->aset_mask, s->apool, (uint32_t)s->aset_n);
  return 0;
}

bool lab_addr_is_attacker(const sim_t *s, const pd_netaddr_t *a) {
  uint32_t j = lab_addr_lookup(s, a);
  if (j != NO_IDX) return s->hosts[j]->attacker;
  if (s->aset)
    for (size_t k = aset_hash(a) & s->aset_mask;; k = (k + 1) & s->aset_mask) {
      uint32_t v = s->aset[k];
      if (v == NO_IDX) break;
      if (pd_netaddr_equal(&s->apool[v], a)) return true;
    }
  for (size_t i = s->aset_n; i < s->napool; i++) /* appended since the last sync */
    if (pd_netaddr_equal(&s->apool[i], a)) return true;
  return false;
}

/* ---- attacker share ---- */

/* Outbound: the dialer's outbound peers (as anchors), an attacker's when
 * its address is (lab_addr_is_attacker). Inbound: the dialer's inbound
 * count, of which those whose link comes from an attacker host. Eclipsed:
 * outbound peers, all attackers' (0 outbound is not eclipsed). Isolated:
 * not one honest peer either way; a host with no peer at all, or down, is
 * isolated too. */
void lab_attacker_share(sim_t *s, uint32_t hi, atk_share_t *r) {
  memset(r, 0, sizeof *r);
  r->isolated = true;
  sim_host_t *h = s->hosts[hi];
  if (!h->up) return;
  (void)lab_aset_sync(s); /* on failure lookups stay right, only slower */
  pd_dial_target_t out[64];
  size_t n = pd_netmgr_anchors(h->m, out, 64);
  if (n > 64) n = 64;
  r->out = (uint32_t)n;
  for (size_t k = 0; k < n; k++)
    if (lab_addr_is_attacker(s, &out[k].addr)) r->out_atk++;
  uint32_t in = lab_host_inbound(h), in_atk = 0;
  for (uint32_t i = 0; i < h->nlinks; i++) {
    const sim_link_t *l = &s->links[h->links[i]];
    if (l->h[1] == hi && l->up && l->open[0] && l->open[1] && s->hosts[l->h[0]]->attacker) in_atk++;
  }
  if (in_atk > in) in_atk = in;
  r->in = in;
  r->in_atk = in_atk;
  r->all = r->out + in;
  r->all_atk = r->out_atk + in_atk;
  r->eclipsed = r->out > 0 && r->out_atk == r->out;
  r->isolated = r->all_atk == r->all;
}

/* ---- sim.attacker / sim.attackers ---- */

/* The k-th attacker /16: public-looking groups taken from the top of the
 * IPv4 space down (honest hosts' automatic groups start at the bottom). */
static int atk_group(uint32_t k) {
  uint32_t nth = k / 256, seen = 0;
  for (int a = 223; a >= 1; a--)
    if (lab_public_octet(a) && seen++ == nth % 200) return a * 256 + (int)(k % 256);
  return 223 * 256 + (int)(k % 256);
}

/* Append an attacker address; `host` is the pool answering for it (NO_IDX:
 * an attacker host's own address, or a phantom). Returns its index or a
 * negative code. */
long lab_apool_add(sim_t *s, const pd_netaddr_t *a, uint32_t host) {
  if (s->napool == s->apcap) {
    size_t nc = s->apcap ? s->apcap * 2 : 256;
    pd_netaddr_t *np = realloc(s->apool, nc * sizeof *np);
    if (!np) return PD_ENOMEM;
    s->apool = np;
    uint32_t *nh = realloc(s->apool_host, nc * sizeof *nh);
    if (!nh) return PD_ENOMEM;
    s->apool_host = nh;
    s->apcap = nc;
  }
  s->apool[s->napool] = *a;
  s->apool_host[s->napool] = host;
  return (long)s->napool++;
}

static int pool_add(sim_t *s, const pd_netaddr_t *a) {
  long rc = lab_apool_add(s, a, NO_IDX);
  return rc < 0 ? (int)rc : 0;
}

/* The k-th fresh attacker /16 (A*256+B). */
int lab_atk_group_next(sim_t *s) { return atk_group(s->atk_groups++); }

/* A policy set: the files of base_dir (may be NULL) but pex.lua, which is
 * generated: accept nothing (the book stays the attackers' addresses) and
 * share only addresses of the attacker pool as it is now. Returns the
 * index in s->psets, or a negative code. */
static int attacker_pset(sim_t *s, const char *base_dir, size_t lo, size_t hi, char *err,
                         size_t cap) {
  sim_policyset_t *base = NULL;
  if (base_dir) {
    int rc = lab_policyset_get(s, base_dir, &base, err, cap);
    if (rc < 0) return rc;
  }
  size_t bi = base ? (size_t)(base - s->psets) : 0;
  char key[PATH_MAX + 64];
  snprintf(key, sizeof key, "<attackers:%zu-%zu>%s", lo, hi, base_dir ? base_dir : "");
  for (size_t i = 0; i < s->npsets; i++)
    if (strcmp(s->psets[i].dir, key) == 0) return (int)i;
  size_t tcap = 256 + (hi - lo) * (PD_ADDR_STRLEN + 16), tl = 0;
  char *text = malloc(tcap);
  if (!text) return PD_ENOMEM;
  tl += (size_t)snprintf(text + tl, tcap - tl,
                         "-- generated by peerd sim: an attacker's pex.lua\nlocal A = {\n");
  for (size_t i = lo; i < hi; i++) {
    char a[PD_ADDR_STRLEN];
    pd_netaddr_format(&s->apool[i], a, sizeof a);
    tl += (size_t)snprintf(text + tl, tcap - tl, "[\"%s\"]=true,\n", a);
  }
  tl += (size_t)snprintf(text + tl, tcap - tl,
                         "}\nreturn { accept = function() return false end,\n"
                         "  share = function(addr) return A[addr.addr] == true end }\n");
  sim_policyset_t *ns = realloc(s->psets, (s->npsets + 1) * sizeof *ns);
  if (!ns) {
    free(text);
    return PD_ENOMEM;
  }
  s->psets = ns;
  if (base) base = &s->psets[bi];
  sim_policyset_t *p = &s->psets[s->npsets];
  memset(p, 0, sizeof *p);
  p->dir = strdup(key);
  if (!p->dir) {
    free(text);
    return PD_ENOMEM;
  }
  for (size_t i = 0; base && i < base->n; i++) {
    if (strcmp(base->files[i].name, "pex.lua") == 0) continue;
    char *copy = malloc(base->files[i].len + 1);
    if (!copy) continue;
    memcpy(copy, base->files[i].text, base->files[i].len);
    p->files[p->n++] = (pd_policy_file_t){.name = base->files[i].name, .text = copy,
                                          .len = base->files[i].len};
  }
  p->files[p->n++] = (pd_policy_file_t){.name = "pex.lua", .text = text, .len = tl};
  return (int)s->npsets++;
}

/* sim.attacker{...} / sim.attackers(n, {...}): see docs/scenarios.md. */
int lab_make_attackers(lua_State *L, sim_t *s, lua_Integer n, int spec) {
  if (n < 0 || n > 1000000) return luaL_argerror(L, 1, "0..1,000,000");
  /* groups: a count of fresh attacker /16s, or an array of "A.B" */
  int *groups = NULL;
  size_t ng = 0;
  int single_group = -1;
  if (spec) {
    lua_getfield(L, spec, "group");
    bool has_group = !lua_isnil(L, -1);
    lua_pop(L, 1);
    if (has_group) single_group = -2; /* lab_host_new reads spec.group */
  }
  lua_getfield(L, spec, "groups");
  if (lua_istable(L, -1)) {
    ng = (size_t)lua_rawlen(L, -1);
    groups = lua_newuserdatauv(L, (ng ? ng : 1) * sizeof *groups, 0); /* freed by the GC */
    for (size_t i = 0; i < ng; i++) {
      lua_rawgeti(L, -2, (lua_Integer)i + 1);
      int a = -1, b = -1;
      char junk;
      if (!lua_isstring(L, -1) || sscanf(lua_tostring(L, -1), "%d.%d%c", &a, &b, &junk) != 2 ||
          a < 0 || a > 255 || b < 0 || b > 255)
        return luaL_error(L, "sim.attackers: groups must be a number or an array of \"A.B\"");
      groups[i] = a * 256 + b;
      lua_pop(L, 1);
    }
    lua_remove(L, -2); /* keep the userdata */
  } else if (lua_isnil(L, -1) || lua_isnumber(L, -1)) {
    lua_Integer g = lua_isnil(L, -1) ? n : lua_tointeger(L, -1);
    if (g < 1) g = 1;
    if (g > 65536) return luaL_error(L, "sim.attackers: too many groups");
    ng = (size_t)g;
    groups = lua_newuserdatauv(L, ng * sizeof *groups, 0);
    for (size_t i = 0; i < ng; i++) groups[i] = atk_group(s->atk_groups++);
    lua_remove(L, -2);
  } else {
    return luaL_error(L, "sim.attackers: groups must be a number or an array of \"A.B\"");
  }
  bool black_hole = lab_field_bool(L, spec, "black_hole", false);
  bool getaddr_only = lab_field_bool(L, spec, "getaddr_attacker_only", false);
  lua_Integer hold = (lua_Integer)lab_field_num(L, spec, "hold_inbound", 0);
  double frate = 0;
  lua_Integer fsize = 10, fgroups = 0, fper = 16;
  lua_getfield(L, spec, "flood_addrs");
  if (lua_istable(L, -1)) {
    int ft = lua_gettop(L);
    frate = lab_field_num(L, ft, "rate", 1.0);
    fsize = (lua_Integer)lab_field_num(L, ft, "size", 10);
    fgroups = (lua_Integer)lab_field_num(L, ft, "groups", 0);
    fper = (lua_Integer)lab_field_num(L, ft, "per_group", 16);
    if (!(frate > 0) || frate > 1000 || fsize < 1 || fsize > PD_WIRE_MAX_ADDRS || fgroups < 0 ||
        fgroups > 4096 || fper < 1 || fper > 4096)
      return luaL_error(L, "sim.attackers: flood_addrs wants rate in (0, 1000], size 1..1000, "
                           "groups 0..4096, per_group 1..4096");
  } else if (!lua_isnil(L, -1)) {
    return luaL_error(L, "sim.attackers: flood_addrs must be a table");
  }
  lua_pop(L, 1);
  /* targets */
  uint32_t *targets = NULL;
  size_t nt = 0;
  lua_getfield(L, spec, "targets");
  if (!lua_isnil(L, -1)) {
    luaL_checktype(L, -1, LUA_TTABLE);
    nt = (size_t)lua_rawlen(L, -1);
    if (nt > SIM_MAX_SEEDS) return luaL_error(L, "sim.attackers: at most %d targets", SIM_MAX_SEEDS);
    targets = lua_newuserdatauv(L, (nt ? nt : 1) * sizeof *targets, 0);
    for (size_t i = 0; i < nt; i++) {
      lua_rawgeti(L, -2, (lua_Integer)i + 1);
      targets[i] = lab_checkhost(L, -1);
      lua_pop(L, 1);
    }
    lua_remove(L, -2); /* keep the userdata, drop the table */
  } else {
    lua_pop(L, 1);
    lua_pushnil(L);
  }
  if (hold > 0 && nt == 0) return luaL_error(L, "sim.attackers: hold_inbound needs targets");
  if (hold < 0) hold = 0;
  /* this call's team: its phantoms, then its hosts */
  size_t pool_lo = s->napool;
  /* phantom addresses: in fresh groups, never a host (dials time out) */
  for (lua_Integer g = 0; g < fgroups; g++) {
    int grp = atk_group(s->atk_groups++);
    for (lua_Integer k = 0; k < fper; k++) {
      uint32_t f = s->group_fill[grp]++;
      if (f >= 254 * 254) break;
      pd_netaddr_t a;
      memset(&a, 0, sizeof a);
      a.ip[10] = a.ip[11] = 0xff;
      a.ip[12] = (uint8_t)(grp / 256);
      a.ip[13] = (uint8_t)(grp % 256);
      a.ip[14] = (uint8_t)(f / 254);
      a.ip[15] = (uint8_t)(f % 254 + 1);
      a.port = SIM_PORT;
      if (pool_add(s, &a) != 0) return luaL_error(L, "out of memory");
    }
  }
  /* the hosts, created stopped */
  size_t first = s->nhosts;
  lua_createtable(L, (int)n, 0);
  for (lua_Integer i = 0; i < n; i++) {
    int g = single_group == -2 ? -1 : groups[(size_t)i % ng];
    lab_host_new(L, s, spec, g, true);
    lua_rawseti(L, -2, i + 1);
    sim_host_t *h = s->hosts[s->nhosts - 1];
    h->attacker = true;
    h->black_hole = black_hole;
    if (frate > 0 && !black_hole) {
      h->flood_period = (int64_t)llround(1000.0 / frate);
      if (h->flood_period < 1) h->flood_period = 1;
      h->flood_size = (uint32_t)fsize;
    }
    if (nt) {
      h->targets = malloc(nt * sizeof *h->targets);
      if (!h->targets) return luaL_error(L, "out of memory");
      memcpy(h->targets, targets, nt * sizeof *targets);
      h->ntargets = nt;
    }
    if (i < hold && !black_hole) {
      h->persist = calloc(nt, sizeof *h->persist);
      if (!h->persist) return luaL_error(L, "out of memory");
      for (size_t k = 0; k < nt; k++) {
        pd_endpoint_t *e = &h->persist[k];
        e->is_ip = true;
        e->addr = s->hosts[targets[k]]->listen;
        e->port = e->addr.port;
        pd_netaddr_format_ip(&e->addr, e->host, sizeof e->host);
      }
      h->npersist = nt;
    }
    if (pool_add(s, &h->listen) != 0) return luaL_error(L, "out of memory");
  }
  for (size_t i = first; i < s->nhosts; i++) {
    s->hosts[i]->pool_lo = pool_lo;
    s->hosts[i]->pool_hi = s->napool;
  }
  if (getaddr_only) {
    char err[700] = "";
    const char *pol = lab_field_str(L, spec, "policies");
    char *dir = pol ? lab_resolve_path(s, pol) : NULL;
    int pi = attacker_pset(s, dir, pool_lo, s->napool, err, sizeof err);
    free(dir);
    if (pi < 0) return luaL_error(L, "sim.attackers: %s", err[0] ? err : pd_strerror(pi));
    for (size_t i = first; i < s->nhosts; i++) s->hosts[i]->atk_pset = pi;
  }
  if (lab_field_bool(L, spec, "up", true)) {
    for (size_t i = first; i < s->nhosts; i++) {
      char err[700];
      if (lab_host_start(s, (uint32_t)i, err, sizeof err) != 0) return luaL_error(L, "%s", err);
    }
  }
  return 1;
}

