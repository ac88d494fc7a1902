/* hosts — the lab's hosts: creating, starting and stopping them (scenario
 * lab; lab.h).
 *
 * Owns: a host's creation from a sim.host spec (identity, book key and RNGs
 * derived from the run's seed and its index; its address: given, in a
 * chosen /16 group, or in an automatic one; its settings: outbound and
 * inbound limits, bandwidth, ping interval, book geometry, policies, seeds,
 * the DHT's switch and bootnodes, overlay off);
 * start (a pd_node + pd_netmgr over a fresh book or the one saved at the last
 * stop, anchors kept across restarts) and stop (anchors, counters of the
 * incarnation, the book saved to memory through the real bookstore; the
 * DHT engine started and stopped with it: labdht.c); policy
 * sets read once per directory and shared by hosts; the lab's handshake
 * signature (a keyed hash; sim.auth("ed25519") runs the real one).
 * Does not own: the Lua functions that call these (scenario.c,
 * scenario_host.c), links and a running host's transport (links.c), what
 * makes a host an attacker (attackers.c).
 */
#include "lab.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <lauxlib.h>

#include "bookstore.h"
#include "err.h"
#include "fsio.h"
#include "self.h"

#define SIM_MAX_POLICY_FILE (1024 * 1024)

/* ---- policies ---- */

static const char *const policy_names[SIM_POLICY_FILES] = {
    "select.lua", "score.lua", "evict.lua", "reputation.lua", "pex.lua", "dht.lua"};

int lab_policyset_get(sim_t *s, const char *dir, sim_policyset_t **out, char *err, size_t cap) {
  for (size_t i = 0; i < s->npsets; i++)
    if (strcmp(s->psets[i].dir, dir) == 0) {
      *out = &s->psets[i];
      return 0;
    }
  struct stat st;
  if (stat(dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "policy directory %s: not a readable directory", dir);
    return PD_ENOENT;
  }
  sim_policyset_t *ns = realloc(s->psets, (s->npsets + 1) * sizeof *ns);
  if (!ns) return PD_ENOMEM;
  s->psets = ns;
  sim_policyset_t *p = &s->psets[s->npsets];
  memset(p, 0, sizeof *p);
  p->dir = strdup(dir);
  if (!p->dir) return PD_ENOMEM;
  for (size_t i = 0; i < SIM_POLICY_FILES; i++) {
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/%s", dir, policy_names[i]);
    char *buf = NULL;
    size_t len = 0;
    int rc = pd_fs_read_all(path, SIM_MAX_POLICY_FILE, &buf, &len);
    if (rc == -ENOENT) continue;
    if (rc < 0) {
      if (snprintf(err, cap, "%s: cannot read: %s", path, pd_strerror(rc)) < 0) err[0] = 0;
      for (size_t k = 0; k < p->n; k++) free((char *)p->files[k].text);
      free(p->dir);
      return rc;
    }
    p->files[p->n++] = (pd_policy_file_t){.name = policy_names[i], .text = buf, .len = len};
  }
  s->npsets++;
  *out = p;
  return 0;
}

int lab_host_load_policies(sim_t *s, sim_host_t *h, char *err, size_t cap) {
  sim_policyset_t *ps = NULL;
  int rc = 0;
  if (h->atk_pset >= 0) {
    ps = &s->psets[h->atk_pset];
  } else {
    if (!h->policy_dir) return 0;
    rc = lab_policyset_get(s, h->policy_dir, &ps, err, cap);
    if (rc < 0) return rc;
  }
  char perr[512] = "";
  rc = pd_node_policy_load(h->node, ps->files, ps->n, lab_now_s(s), perr, sizeof perr);
  if (rc < 0) snprintf(err, cap, "policies %s: %s", h->policy_dir, perr);
  return rc;
}

/* ---- start / stop ---- */

/* The lab's handshake signature: BLAKE2b-512 keyed with a per-run key over
 * the public key and the auth message. It binds a signature to the key
 * that "made" it exactly as far as the handshake checks (a host can only
 * sign for its own key: the key pair is never exchanged), at ~0.3 us
 * instead of ed25519's ~70 us per sign + verify. sim.auth("ed25519") runs
 * the real thing. */
static int lab_mac(const uint8_t key[crypto_generichash_KEYBYTES], const uint8_t *pk,
                   const uint8_t *msg, size_t len, uint8_t sig[PD_WIRE_SIG_LEN]) {
  crypto_generichash_state st;
  if (crypto_generichash_init(&st, key, crypto_generichash_KEYBYTES, PD_WIRE_SIG_LEN) != 0 ||
      crypto_generichash_update(&st, pk, PD_WIRE_PUBKEY_LEN) != 0 ||
      crypto_generichash_update(&st, msg, len) != 0 ||
      crypto_generichash_final(&st, sig, PD_WIRE_SIG_LEN) != 0)
    return PD_EINVAL;
  return 0;
}

int lab_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
             uint8_t sig[PD_WIRE_SIG_LEN]) {
  return lab_mac(((sim_t *)ud)->auth_key, self->pk, msg, len, sig);
}

int lab_verify(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg,
               size_t len, const uint8_t sig[PD_WIRE_SIG_LEN]) {
  uint8_t want[PD_WIRE_SIG_LEN];
  if (lab_mac(((sim_t *)ud)->auth_key, pk, msg, len, want) != 0) return PD_EINVAL;
  return sodium_memcmp(want, sig, PD_WIRE_SIG_LEN) == 0 ? 0 : PD_EINVAL;
}

int lab_host_start(sim_t *s, uint32_t hi, char *err, size_t cap) {
  sim_host_t *h = s->hosts[hi];
  if (h->up) return 0;
  pd_book_t *book = NULL;
  int rc;
  if (h->saved) {
    pd_bookstore_report_t rep;
    char derr[256] = "";
    rc = pd_bookstore_decode_ex(h->saved, h->saved_len, &h->brng, PD_BOOK_ALLOW_PRIVATE, &h->geom,
                                &book, &rep, derr, sizeof derr);
    if (rc < 0) {
      snprintf(err, cap, "host %u: saved book does not decode: %s", hi, derr);
      return rc;
    }
  } else {
    rc = pd_book_create_ex(&book, h->key, &h->brng, PD_BOOK_ALLOW_PRIVATE, &h->geom);
    if (rc < 0) {
      snprintf(err, cap, "host %u: book: %s", hi, pd_strerror(rc));
      return rc;
    }
  }
  pd_node_config_t nc;
  memset(&nc, 0, sizeof nc);
  nc.allow_private = true;
  nc.save_interval = 0; /* the sim saves at stop */
  nc.default_ban_secs = 24 * 3600;
  nc.policy_dir = h->policy_dir;
  nc.record_store = s->records;
  rc = pd_node_create(&h->node, &nc, book, &h->brng, lab_now_s(s));
  if (rc < 0) {
    pd_book_destroy(book);
    snprintf(err, cap, "host %u: node: %s", hi, pd_strerror(rc));
    return rc;
  }
  rc = lab_host_load_policies(s, h, err, cap);
  if (rc < 0) {
    pd_node_destroy(h->node);
    h->node = NULL;
    return rc;
  }
  pd_netmgr_config_t cfg;
  pd_netmgr_config_default(&cfg);
  cfg.has_listen = true;
  cfg.listen = h->listen;
  cfg.seed_mode = h->seed_mode;
  cfg.no_records = h->no_records;
  cfg.dialer.allow_private = true;
  if (h->min_out) cfg.dialer.min_outbound = h->min_out;
  if (h->max_out) cfg.dialer.max_outbound = h->max_out;
  if (h->dial_off) cfg.dialer.max_outbound = 0; /* never dials: no seeds, anchors, feelers */
  if (h->max_in) cfg.dialer.max_inbound = h->max_in;
  else if (h->seed_mode) cfg.dialer.max_inbound = PD_DIALER_SEED_MAX_INBOUND; /* as the daemon's */
  if (cfg.dialer.min_outbound > cfg.dialer.max_outbound)
    cfg.dialer.min_outbound = cfg.dialer.max_outbound;
  cfg.dialer.seeds = h->seeds;
  cfg.dialer.nseeds = h->nseeds;
  cfg.dialer.persistent = h->persist;
  cfg.dialer.npersistent = h->npersist;
  cfg.anchors = h->anchors;
  cfg.nanchors = h->nanchors;
  cfg.auth = s->real_auth ? NULL : &s->auth;
  if (h->ping_ms > 0) {
    /* A dead peer is still one that stays silent for 3 intervals. */
    cfg.peer.ping_interval_ms = h->ping_ms;
    if (cfg.peer.dead_timeout_ms < 3 * h->ping_ms) cfg.peer.dead_timeout_ms = 3 * h->ping_ms;
  }
  const char *why = NULL;
  rc = pd_netmgr_create(&h->m, &cfg, h->node, &h->ident, &h->mrng, lab_now_ms(s), &why);
  if (rc < 0) {
    pd_node_destroy(h->node);
    h->node = NULL;
    snprintf(err, cap, "host %u: netmgr: %s", hi, why ? why : pd_strerror(rc));
    return rc;
  }
  /* Each simulated host stands for a node with a service endpoint: its
   * record (made by the manager, naming its discovery endpoint) also
   * names p2p -> its IP, port 26656, which is what other hosts' nodes
   * would dial (h:dialable(), stats' records_mean). */
  pd_self_t *me = pd_node_self(h->node);
  if (me) {
    pd_netaddr_t svc;
    memset(&svc, 0, sizeof svc);
    svc.port = LAB_SERVICE_PORT;
    pd_self_set_service(me, "p2p", false, &svc, lab_now_ms(s), NULL);
  }
  h->up = true;
  h->gen++;
  h->starts++;
  h->last_tick_s = lab_now_s(s) - 1;
  h->tx_free_at = 0;
  h->timer_at = s->now;
  lab_push_ev(s, s->now, EV_TIMER, hi, h->gen, 0, 0, NULL);
  /* The saved book now lives in the node: keeping its JSON too cost ~84 B
   * per address for every host that ever restarted (8 GB at 10,000 hosts
   * with full books, a day into churn). */
  free(h->saved);
  h->saved = NULL;
  h->saved_len = 0;
  if (h->attacker && h->starts == 1) lab_attacker_prefill(s, hi);
  rc = lab_dht_start(s, hi, err, cap);
  if (rc < 0) {
    lab_host_stop(s, hi);
    return rc;
  }
  if (h->flood_period > 0)
    lab_push_ev(s, s->now + h->flood_period, EV_FLOOD, hi, h->gen, 0, (uint64_t)h->flood_period,
                NULL);
  return 0;
}

void lab_host_policy_calls(const sim_host_t *h, uint64_t calls[PD_HOOK_COUNT]) {
  for (int k = 0; k < PD_HOOK_COUNT; k++) {
    pd_policy_hook_health_t hh;
    pd_policy_hook_health(pd_node_policy(h->node), k, &hh);
    calls[k] += hh.calls;
  }
}

void lab_host_stop(sim_t *s, uint32_t hi) {
  sim_host_t *h = s->hosts[hi];
  if (!h->up) return;
  h->nanchors = pd_netmgr_anchors(h->m, h->anchors, PD_DIALER_MAX_ANCHORS);
  if (h->nanchors > PD_DIALER_MAX_ANCHORS) h->nanchors = PD_DIALER_MAX_ANCHORS;
  lab_dht_stop(s, hi);
  pd_netmgr_shutdown(h->m, lab_now_ms(s));
  lab_drain(s, hi);
  /* Whatever the manager did not close (dials in progress) dies with it. */
  lab_host_close_links(s, hi);
  pd_netmgr_counters_t c;
  pd_netmgr_counters(h->m, &c);
  for (size_t i = 0; i < PD_WIRE_TYPE_COUNT; i++) {
    h->prev_frames_out += c.frames_out[i];
    s->frames_stopped[i] += c.frames_out[i];
  }
  h->prev_bytes_out += c.bytes_out;
  s->addrs_stopped[0] += c.addrs_received;
  s->addrs_stopped[1] += c.addrs_added;
  s->addrs_stopped[2] += c.addrs_refused;
  lab_host_policy_calls(h, s->calls_stopped);
  free(h->saved);
  h->saved = NULL;
  h->saved_len = 0;
  if (pd_bookstore_encode(pd_node_book(h->node), lab_now_s(s), &h->saved, &h->saved_len) != 0) {
    h->saved = NULL;
    h->saved_len = 0;
  }
  pd_netmgr_destroy(h->m);
  pd_node_destroy(h->node);
  h->m = NULL;
  h->node = NULL;
  h->up = false;
  h->timer_at = INT64_MAX;
}

/* ---- creating hosts ---- */

/* First octets of public-looking auto-assigned /16 groups. */
bool lab_public_octet(int a) {
  return a >= 1 && a <= 223 && a != 10 && a != 100 && a != 127 && a != 169 && a != 172 &&
         a != 192 && a != 198 && a != 203;
}

static int auto_group(size_t k) {
  int nth = (int)(k / 256), seen = 0;
  for (int rounds = 0; rounds < 4; rounds++)
    for (int a = 1; a <= 223; a++)
      if (lab_public_octet(a) && seen++ == nth % 214) return a * 256 + (int)(k % 256);
  return 11 * 256 + (int)(k % 256);
}

char *lab_resolve_path(sim_t *s, const char *p) {
  char buf[PATH_MAX];
  if (p[0] == '/' || !s->script_dir[0])
    return strdup(p);
  if (snprintf(buf, sizeof buf, "%s/%s", s->script_dir, p) >= (int)sizeof buf) return strdup(p);
  return strdup(buf);
}

/* A new host from the spec table at stack index spec (0: defaults), its
 * handle pushed (sim.host, sim.hosts, attackers). force_group >= 0: the
 * host's /16 (A*256+B) whatever spec says; defer: create it stopped (the
 * caller starts it). */
sim_host_t *lab_host_slot(lua_State *L, sim_t *s) {
  if (s->nhosts >= NO_IDX - 1 || s->nhosts + 1 >= LAB_AMAP_POOL) {
    luaL_error(L, "too many hosts");
    return NULL;
  }
  if (s->nhosts == s->hcap) {
    size_t nc = s->hcap ? s->hcap * 2 : 64;
    sim_host_t **nh = realloc(s->hosts, nc * sizeof *nh);
    if (!nh) {
      luaL_error(L, "out of memory");
      return NULL;
    }
    for (size_t i = s->hcap; i < nc; i++) nh[i] = NULL;
    s->hosts = nh;
    s->hcap = nc;
  }
  size_t hi = s->nhosts;
  if (!s->hosts[hi]) s->hosts[hi] = calloc(1, sizeof **s->hosts);
  sim_host_t *h = s->hosts[hi];
  if (!h) {
    luaL_error(L, "out of memory");
    return NULL;
  }
  /* A slot left by a host whose creation failed is reused. */
  free(h->seeds);
  free(h->policy_dir);
  free(h->targets);
  free(h->persist);
  free(h->bootnodes);
  free(h->waits);
  memset(h, 0, sizeof *h);
  h->timer_at = INT64_MAX;
  h->dht_timer_at = INT64_MAX;
  h->atk_pset = -1;
  return h;
}

int lab_host_new(lua_State *L, sim_t *s, int spec, int force_group, bool defer) {
  sim_host_t *h = lab_host_slot(L, s);
  uint32_t hi = (uint32_t)s->nhosts;
  pd_book_geometry_default(&h->geom);
  pd_rng_t hr;
  pd_rng_seed(&hr, s->seed ^ (0x9E3779B97F4A7C15ull * ((uint64_t)hi + 1)));
  uint8_t idseed[PD_IDENTITY_SEED_LEN];
  pd_rng_fill(&hr, idseed, sizeof idseed);
  pd_rng_fill(&hr, h->key, sizeof h->key);
  pd_rng_seed(&h->brng, pd_rng_u64(&hr));
  pd_rng_seed(&h->mrng, pd_rng_u64(&hr));
  pd_rng_seed(&h->drng, pd_rng_u64(&hr)); /* drawn last: the other streams are as before */
  h->dht_on = s->dht_default;
  if (pd_identity_from_seed(&h->ident, idseed) != 0) return luaL_error(L, "identity failed");

  /* address */
  int g = -1;
  const char *ip = spec ? lab_field_str(L, spec, "ip") : NULL;
  uint16_t port = (uint16_t)(spec ? lab_field_num(L, spec, "port", SIM_PORT) : SIM_PORT);
  if (ip) {
    const char *why = NULL;
    if (pd_netaddr_parse_ip(ip, &h->listen, &why) != 0)
      return luaL_error(L, "sim.host: bad ip '%s': %s", ip, why ? why : "?");
  } else {
    if (spec) {
      lua_getfield(L, spec, "group");
      if (lua_isinteger(L, -1)) {
        lua_Integer v = lua_tointeger(L, -1);
        if (v < 0 || v > 255) return luaL_error(L, "sim.host: group number must be 0..255 (10.G/16)");
        g = 10 * 256 + (int)v;
      } else if (lua_isstring(L, -1)) {
        int a = -1, b = -1;
        char junk;
        if (sscanf(lua_tostring(L, -1), "%d.%d%c", &a, &b, &junk) != 2 || a < 0 || a > 255 ||
            b < 0 || b > 255)
          return luaL_error(L, "sim.host: group must be \"A.B\" (a /16) or 0..255");
        g = a * 256 + b;
      } else if (!lua_isnil(L, -1)) {
        return luaL_error(L, "sim.host: group must be \"A.B\" or a number");
      }
      lua_pop(L, 1);
    }
    if (force_group >= 0) g = force_group;
    if (g < 0) g = auto_group(hi);
    uint32_t k = s->group_fill[g]++;
    if (k >= 254 * 254) return luaL_error(L, "sim.host: group %d.%d is full", g / 256, g % 256);
    memset(&h->listen, 0, sizeof h->listen);
    h->listen.ip[10] = h->listen.ip[11] = 0xff;
    h->listen.ip[12] = (uint8_t)(g / 256);
    h->listen.ip[13] = (uint8_t)(g % 256);
    h->listen.ip[14] = (uint8_t)(k / 254);
    h->listen.ip[15] = (uint8_t)(k % 254 + 1);
  }
  h->listen.port = port;

  if (spec) {
    h->seed_mode = lab_field_bool(L, spec, "seed_mode", false);
    h->no_records = !lab_field_bool(L, spec, "records", true);
    h->min_out = (uint32_t)lab_field_num(L, spec, "min_outbound", 0);
    double mo = lab_field_num(L, spec, "max_outbound", -1);
    h->dial_off = mo == 0;
    h->max_out = mo > 0 ? (uint32_t)mo : 0;
    h->max_in = (uint32_t)lab_field_num(L, spec, "max_inbound", 0);
    h->bw = lab_field_num(L, spec, "bandwidth", 0);
    double pi = lab_field_num(L, spec, "ping_interval", 0);
    if (pi < 0 || pi > 86400) return luaL_error(L, "sim.host: ping_interval must be 0..86400 s");
    h->ping_ms = (int64_t)(pi * 1000);
    lua_getfield(L, spec, "book");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      int bt = lua_gettop(L);
      h->geom.new_buckets = (uint32_t)lab_field_num(L, bt, "new_buckets", PD_BOOK_NEW_BUCKETS);
      h->geom.tried_buckets =
          (uint32_t)lab_field_num(L, bt, "tried_buckets", PD_BOOK_TRIED_BUCKETS);
      if (pd_book_geometry_check(&h->geom) != 0)
        return luaL_error(L, "sim.host: book: new_buckets must be a power of two in %d..%d and "
                             "tried_buckets one in %d..%d",
                          PD_BOOK_MIN_NEW_BUCKETS, PD_BOOK_NEW_BUCKETS, PD_BOOK_MIN_TRIED_BUCKETS,
                          PD_BOOK_TRIED_BUCKETS);
    }
    lua_pop(L, 1);
    h->dht_on = lab_field_bool(L, spec, "dht", s->dht_default);
    h->overlay_off = !lab_field_bool(L, spec, "overlay", true);
    double fast = lab_field_num(L, spec, "dht_fast", 0), slow = lab_field_num(L, spec, "dht_slow", 0);
    double sess = lab_field_num(L, spec, "dht_sessions", 0);
    if (fast > 86400 || slow > 86400 || sess < 0 || sess > 65536)
      return luaL_error(L, "sim.host: dht_fast and dht_slow are seconds (<= 86400, < 0: never), "
                           "dht_sessions 0..65536");
    h->dht_fast_ms = fast < 0 ? -1 : (int64_t)(fast * 1000);
    h->dht_slow_ms = slow < 0 ? -1 : (int64_t)(slow * 1000);
    h->dht_sessions = (uint32_t)sess;
    if (h->overlay_off) h->dial_off = true; /* DHT only: its overlay neither dials nor accepts */
    lua_getfield(L, spec, "bootnodes");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      size_t n = (size_t)lua_rawlen(L, -1);
      if (n > SIM_MAX_SEEDS) return luaL_error(L, "sim.host: at most %d bootnodes", SIM_MAX_SEEDS);
      h->bootnodes = calloc(n ? n : 1, sizeof *h->bootnodes);
      if (!h->bootnodes) return luaL_error(L, "out of memory");
      for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        if (!luaL_testudata(L, -1, SIM_HOST_MT))
          return luaL_error(L, "sim.host: bootnodes must be an array of hosts");
        h->bootnodes[h->nbootnodes++] = lab_checkhost(L, -1);
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
    const char *pol = lab_field_str(L, spec, "policies");
    if (pol) h->policy_dir = lab_resolve_path(s, pol);
    lua_getfield(L, spec, "seeds");
    if (!lua_isnil(L, -1)) {
      luaL_checktype(L, -1, LUA_TTABLE);
      size_t n = (size_t)lua_rawlen(L, -1);
      if (n > SIM_MAX_SEEDS) return luaL_error(L, "sim.host: at most %d seeds", SIM_MAX_SEEDS);
      h->seeds = calloc(n ? n : 1, sizeof *h->seeds);
      if (!h->seeds) return luaL_error(L, "out of memory");
      for (size_t i = 0; i < n; i++) {
        lua_rawgeti(L, -1, (lua_Integer)i + 1);
        pd_endpoint_t *e = &h->seeds[h->nseeds];
        if (lua_type(L, -1) == LUA_TSTRING) {
          snprintf(e->host, sizeof e->host, "%s", lua_tostring(L, -1));
          e->port = SIM_PORT;
        } else {
          uint32_t j = lab_checkhost(L, -1);
          e->is_ip = true;
          e->addr = s->hosts[j]->listen;
          e->port = e->addr.port;
          pd_netaddr_format_ip(&e->addr, e->host, sizeof e->host);
        }
        h->nseeds++;
        lua_pop(L, 1);
      }
    }
    lua_pop(L, 1);
  }
  if (lab_addr_insert(s, hi) != 0) {
    free(h->seeds);
    free(h->policy_dir);
    free(h->bootnodes);
    h->seeds = NULL;
    h->policy_dir = NULL;
    h->bootnodes = NULL;
    return luaL_error(L, "sim.host: address already taken");
  }
  s->nhosts++;
  if (!defer && (!spec || lab_field_bool(L, spec, "up", true))) {
    char err[512];
    if (lab_host_start(s, hi, err, sizeof err) != 0) return luaL_error(L, "%s", err);
  }
  lab_pushhost(L, hi);
  return 1;
}

