/* lab — the scenario lab's internal header: the world's types and what the
 * lab's files share (not for use outside host/lab; the API is sim.h).
 *
 * Owns: sim_t (one run: event queue and virtual clock, hosts, links, the
 * address map, names, policy sets, watches, series, results, the attacker
 * pool, the link model, the Lua state), sim_host_t, sim_link_t and the
 * smaller records, the event kinds, the virtual clock read as Unix time
 * (lab_now_ms, lab_now_s), and the prototypes of functions one lab file
 * calls in another. Everything of a run lives in its sim_t: no globals.
 * Does not own: any behaviour (the files below), the public API (sim.h).
 *
 * Files: queue.c (event queue, scheduling), links.c (address map, links,
 * each host's transport and timer), hosts.c (creating, starting, stopping
 * hosts; policy sets; the lab's handshake signature), attackers.c,
 * pool.c (attacker pools: many addresses, one actor), measure.c (connectivity, diameter, stats), scenario.c (Lua state and the
 * `sim` table), scenario_host.c (host handle methods), output.c (results,
 * series, plots, summary), sim.c (pd_sim_run, the run loop, pd_sim_main),
 * sweep.c (sweeps: the plan, merged statistics, the command lines),
 * trials.c (the trials' worker processes, sim.branch()'s forks), labdht.c
 * (each host's DHT engine, its datagrams and timer), scenario_dht.c (the
 * DHT's Lua API: h:dht(), h:dht_lookup(), h:dht_table(), sim.dht_stats()).
 */
#ifndef PD_LAB_H
#define LAB_SERVICE_PORT 26656 /* every host's node listens here (its record's p2p) */
#define PD_LAB_H

#include "sim.h"

#include <limits.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <time.h>

#include <jansson.h>
#include <lua.h>
#include <sodium.h>

#include "addrbook.h"
#include "dht.h"
#include "dialer.h"
#include "identity.h"
#include "netaddr.h"
#include "netmgr.h"
#include "node.h"
#include "policy.h"
#include "rng.h"
#include "wire.h"

#define NO_IDX UINT32_MAX
#define SIM_PORT 26656
#define SIM_HOST_MT "peerd.sim.host"
#define SIM_MAX_SEEDS 64
#define SIM_ERR_MAX 1024
#define LAB_AMAP_POOL 0x80000000u

enum {
  EV_TIMER = 1,  /* a: host, b: gen */
  EV_CONNECT,    /* a: link: the SYN reaches the target */
  EV_CONNECTED,  /* a: link: the dialler learns it is up */
  EV_DIAL_FAIL,  /* a: link, b: outcome */
  EV_BYTES,      /* a: link, b: side, x: len, p: bytes */
  EV_FIN,        /* a: link, b: side that learns of the close */
  EV_RESOLVED,   /* a: host, b: gen, c: name index (NO_IDX: none), x: token */
  EV_LUA,        /* a: registry ref, x: period ms (0 = once) */
  EV_WATCH,      /* a: watcher index */
  EV_FLOOD,      /* a: attacker host, b: gen: send ADDR floods on its connections */
  EV_POOL,       /* a: pool host, b: connection slot (NO_IDX: the pool's tick), x: conn id */
  EV_DHT_PKT,    /* a: host the datagram is for, c: host that sent it, x: len, p: bytes */
  EV_DHT_TIMER,  /* a: host, b: gen: its DHT engine's wake-up */
  EV_KINDS
};

enum { LAT_FIXED = 0, LAT_UNIFORM, LAT_NORMAL };

typedef struct sim_link {
  uint32_t h[2];       /* 0: dialler, 1: acceptor */
  uint64_t cid[2];
  bool open[2];        /* the side's conn id is alive on its host */
  bool up;             /* accepted (TCP established) */
  uint32_t pending;    /* queued events naming this link */
  int64_t last_arr[2]; /* latest arrival scheduled at each side */
  int64_t lat;         /* one-way latency, ms */
  uint32_t next_free;
} sim_link_t;

typedef struct sim_host {
  uint32_t gen;
  bool up, seed_mode;
  bool no_records; /* spec records = false: HELLOs and ADDRs without node records */
  int part;
  uint32_t min_out, max_out, max_in;
  bool dial_off; /* spec max_outbound = 0: dialling off (the daemon's --max-outbound 0) */
  double bw; /* bytes/s, 0 = unlimited */
  pd_book_geometry_t geom; /* its address book's tables (spec `book`) */
  int64_t ping_ms;         /* keep-alive PING interval (spec `ping_interval`), 0 = default */
  double tx_free_at;
  char *policy_dir; /* resolved path, or NULL: built-in defaults */
  pd_netaddr_t listen;
  pd_rng_t brng, mrng;
  uint8_t key[PD_BOOK_KEY_LEN];
  pd_identity_t ident;
  pd_node_t *node;
  pd_netmgr_t *m;
  char *saved; /* the book at the last stop (bookstore JSON) */
  size_t saved_len;
  pd_dial_target_t anchors[PD_DIALER_MAX_ANCHORS];
  size_t nanchors;
  pd_endpoint_t *seeds;
  size_t nseeds;
  int64_t timer_at;
  int64_t last_tick_s;
  uint32_t *links;
  uint64_t *link_cid; /* beside links[i]: this host's conn id on it when added (lab_link_find) */
  uint32_t nlinks, linkcap;
  uint64_t starts;
  /* counters of previous incarnations */
  uint64_t prev_frames_out, prev_bytes_out;
  /* attacker behaviour (sim.attacker) */
  bool attacker, black_hole;
  int atk_pset;           /* generated policy set (attacker-only GETADDR), -1: none */
  int64_t flood_period;   /* ms between ADDR floods, 0: none */
  uint32_t flood_size;    /* entries per flood ADDR */
  uint32_t *targets;      /* hosts flooded (none: every peer) */
  size_t ntargets;
  pd_endpoint_t *persist; /* hold_inbound: connections kept open to the targets */
  size_t npersist;
  size_t pool_lo, pool_hi; /* its team's addresses: s->apool[pool_lo..pool_hi) */
  /* An attacker pool (sim.pool, pool.c): one actor answering for many
   * addresses. Such a host is never `up` (no node, no manager): its
   * connections are pool.c's. */
  struct sim_pool *pool;
  /* The DHT (labdht.c): an engine per up host with dht_on (not black
   * holes, not pools), its endpoint the host's listen address. */
  bool dht_on;       /* spec dht (default: sim.dht()'s setting, off) */
  bool overlay_off;  /* spec overlay = false: no overlay connections (DHT only) */
  /* spec dht_fast, dht_slow (s; random-lookup intervals while the book is
   * short / after; 0: the daemon's 2 and 60 s; < 0 never) and dht_sessions
   * (0: the daemon's 1,024): knobs for large runs */
  int64_t dht_fast_ms, dht_slow_ms;
  uint32_t dht_sessions;
  pd_dht_t *dht;     /* NULL: off, stopped */
  pd_rng_t drng;     /* the engine's draws (ephemeral keys, challenges, targets) */
  int64_t dht_timer_at;
  int64_t dht_next_boot; /* virtual ms: bootnodes offered again */
  size_t dht_rec_cursor;
  uint32_t *bootnodes; /* host indices (spec bootnodes) */
  size_t nbootnodes;
  struct sim_dht_wait *waits; /* h:dht_lookup()s running, with their callbacks */
  size_t nwaits, waitcap;
  struct sim_dht_ctx {
    struct sim *s;
    uint32_t hi;
  } dht_ctx; /* what the engine's hooks get */
} sim_host_t;

typedef struct sim_dht_wait {
  uint64_t id;  /* the engine's lookup id */
  int ref;      /* the callback (LUA_NOREF: none) */
} sim_dht_wait_t;

#define LAB_DHT_HOPS_MAX 64 /* the hops histogram's last bin (a lookup asks at most 64 nodes) */

typedef struct sim_name {
  char *name;
  uint32_t *hosts;
  size_t n;
} sim_name_t;

#define SIM_POLICY_FILES 6 /* select, score, evict, reputation, pex, dht */
typedef struct sim_policyset {
  char *dir;
  pd_policy_file_t files[SIM_POLICY_FILES];
  size_t n;
} sim_policyset_t;

typedef struct sim_watch {
  char *name;
  int ref;
  int64_t period;
} sim_watch_t;

typedef struct sim_sample {
  int64_t t;
  char *name;
  double v;
  bool is_int;
  long long iv;
} sim_sample_t;

typedef struct sim {
  pd_sim_queue_t q;
  int64_t now; /* virtual ms */
  uint64_t events;
  uint64_t ev_kind[EV_KINDS]; /* events by kind (summary) */
  uint64_t frames_stopped[PD_WIRE_TYPE_COUNT]; /* frames sent by stopped incarnations */
  uint64_t addrs_stopped[3]; /* their addresses received, added, refused (summary) */
  uint64_t calls_stopped[PD_HOOK_COUNT]; /* their policy calls that ran Lua (summary) */
  uint64_t seed;
  pd_rng_t net_rng, lua_rng;
  sim_host_t **hosts; /* each host allocated apart: the core keeps pointers into it */
  size_t nhosts, hcap;
  sim_link_t *links;
  uint32_t nlinks, lcap, free_link;
  /* address -> host (open addressing). A value is a host index, or
   * LAB_AMAP_POOL | i for the pool address s->apool[i] (its host:
   * s->apool_host[i]). */
  uint32_t *amap;
  size_t amask, amap_n;
  uint32_t *group_fill; /* hosts per /16 (65,536 counters) */
  struct pd_intern *records; /* records' bytes, one copy for every host's record table */
  uint32_t eph;
  sim_name_t *names;
  size_t nnames;
  sim_policyset_t *psets;
  size_t npsets;
  sim_watch_t *watches;
  size_t nwatches;
  sim_sample_t *series;
  size_t nseries, scap;
  json_t *results;
  /* attackers: every attacker address (attacker hosts and phantoms) */
  pd_netaddr_t *apool;
  uint32_t *apool_host; /* per apool entry: the pool host answering it, or NO_IDX */
  size_t napool, apcap;
  size_t npools;
  /* lab_addr_is_attacker's hash set: indices into apool (NO_IDX: empty),
   * covering apool[0..aset_n); lab_aset_sync adds what was appended since */
  uint32_t *aset;
  size_t aset_mask, aset_n;
  uint32_t atk_groups; /* attacker /16 groups handed out */
  pd_rng_t atk_rng;
  pd_rng_t diam_rng; /* sim.diameter's sources (apart: sampling perturbs nothing else) */
  /* handshake signatures: the lab's keyed hash (default) or ed25519 */
  bool real_auth;
  pd_peer_auth_t auth;
  uint8_t auth_key[crypto_generichash_KEYBYTES];
  /* link model */
  int lat_kind;
  double lat_ms, jitter_ms, loss;
  int64_t connect_timeout_ms;
  /* run state */
  lua_State *L;
  bool running, in_callback, failed;
  char err[SIM_ERR_MAX];
  char script_dir[PATH_MAX];
  const pd_sim_options_t *o;
  const char *const *params; /* o->params, or the branch's after sim.branch() */
  size_t nparams;
  bool branched;         /* sim.branch() ran */
  uint32_t swept_read;   /* bit i: o->swept[i] read by sim.param before sim.branch() */
  FILE *log;
  struct timespec wall0;
  double wall_s;
  /* the DHT (labdht.c, scenario_dht.c) */
  bool dht_default;           /* sim.dht(on): hosts created from then on run it */
  pd_record_auth_t rec_auth;  /* s->auth as the engine's record/handshake signatures */
  uint64_t dht_sent, dht_dropped, dht_delivered; /* datagrams (summary) */
  uint64_t dht_user_done, dht_user_found;        /* h:dht_lookup()s ended, found */
  uint64_t dht_hops[LAB_DHT_HOPS_MAX + 1];       /* ... by hops (histogram) */
} sim_t;

typedef struct atk_share {
  uint32_t out, out_atk; /* outbound peers; of them attacker hosts */
  uint32_t in, in_atk;   /* inbound peers; of them from attacker hosts */
  uint32_t all, all_atk; /* outbound + inbound; of them attacker hosts */
  bool eclipsed;         /* out > 0 and every outbound peer an attacker */
  bool isolated;         /* no honest peer at all, either way (also: no peer at all, or down) */
} atk_share_t;

/* The virtual clock as the core sees it: Unix ms and s. */
static inline int64_t lab_now_ms(const sim_t *s) { return PD_SIM_EPOCH_MS + s->now; }
static inline int64_t lab_now_s(const sim_t *s) { return lab_now_ms(s) / 1000; }

/* ---- queue.c ---- */
int lab_push_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t a, uint32_t b, uint32_t c,
                uint64_t x, void *p);

/* ---- links.c ---- */
int lab_push_link_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t li, uint32_t b, uint64_t x,
                     void *p);
/* The host listening on a, or NO_IDX. */
uint32_t lab_addr_lookup(const sim_t *s, const pd_netaddr_t *a);
/* The same; for a pool address *paddr is its index in s->apool, else NO_IDX. */
uint32_t lab_addr_lookup_ex(const sim_t *s, const pd_netaddr_t *a, uint32_t *paddr);
/* Map host idx's listen address to it. 0, PD_EEXIST or PD_ENOMEM. */
int lab_addr_insert(sim_t *s, uint32_t idx);
/* Map pool address s->apool[p] to its pool (s->apool_host[p]). */
int lab_addr_insert_pool(sim_t *s, uint32_t p);
/* Links, for drivers of a connection other than a host's netmgr (pool.c). */
uint32_t lab_link_new(sim_t *s);
int64_t lab_draw_latency(sim_t *s);
bool lab_lost(sim_t *s);
void lab_link_send(sim_t *s, uint32_t hi, uint32_t li, int side, const uint8_t *data, size_t len);
void lab_link_close(sim_t *s, uint32_t hi, uint32_t li, int side);
int64_t lab_arrival_in_order(sim_link_t *l, int side, int64_t arr);
uint32_t lab_link_find(sim_t *s, uint32_t hi, uint64_t cid, int *side);
bool lab_reachable(const sim_t *s, uint32_t a, uint32_t b);
/* Perform every action host hi's manager has queued. */
void lab_drain(sim_t *s, uint32_t hi);
void lab_host_close_links(sim_t *s, uint32_t hi);
void lab_timer_fire(sim_t *s, const pd_sim_event_t *e);
void lab_link_fire(sim_t *s, const pd_sim_event_t *e);
void lab_resolve_fire(sim_t *s, const pd_sim_event_t *e);

/* ---- hosts.c ---- */
int lab_policyset_get(sim_t *s, const char *dir, sim_policyset_t **out, char *err, size_t cap);
int lab_host_load_policies(sim_t *s, sim_host_t *h, char *err, size_t cap);
int lab_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
             uint8_t sig[PD_WIRE_SIG_LEN]);
int lab_verify(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg, size_t len,
               const uint8_t sig[PD_WIRE_SIG_LEN]);
int lab_host_start(sim_t *s, uint32_t hi, char *err, size_t cap);
void lab_host_stop(sim_t *s, uint32_t hi);
bool lab_public_octet(int a);
/* A path of the scenario (relative to its directory), malloc'd. */
char *lab_resolve_path(sim_t *s, const char *p);
int lab_host_new(lua_State *L, sim_t *s, int spec, int force_group, bool defer);
/* The cleared slot s->hosts[s->nhosts] (not yet counted in nhosts); raises
 * a Lua error when there is no room. */
sim_host_t *lab_host_slot(lua_State *L, sim_t *s);

/* ---- attackers.c ---- */
void lab_attacker_prefill(sim_t *s, uint32_t hi);
void lab_flood_fire(sim_t *s, const pd_sim_event_t *e);
void lab_attacker_share(sim_t *s, uint32_t hi, atk_share_t *r);
/* Bring the attacker address set up to date with s->apool (append-only);
 * lab_addr_is_attacker stays right without it, only slower. 0 or PD_ENOMEM. */
int lab_aset_sync(sim_t *s);
/* a is an attacker's: the host listening there is an attacker, or a is in
 * s->apool (phantoms included). O(1) after lab_aset_sync. */
bool lab_addr_is_attacker(const sim_t *s, const pd_netaddr_t *a);
int lab_make_attackers(lua_State *L, sim_t *s, lua_Integer n, int spec);
long lab_apool_add(sim_t *s, const pd_netaddr_t *a, uint32_t host);
int lab_atk_group_next(sim_t *s);

/* ---- pool.c ---- */
int lab_make_pool(lua_State *L, sim_t *s, int spec);
void lab_pool_free(sim_host_t *h);
bool lab_pool_answers(const sim_t *s, uint32_t hi, uint32_t paddr);
/* The address a pool connection speaks from (its link's pool side). */
const pd_netaddr_t *lab_pool_conn_addr(const sim_t *s, uint32_t hi, uint64_t cid);
void lab_pool_accept(sim_t *s, uint32_t hi, uint32_t li, uint32_t paddr);
void lab_pool_connected(sim_t *s, uint32_t hi, uint32_t li);
void lab_pool_dial_failed(sim_t *s, uint32_t hi, uint32_t li);
void lab_pool_bytes(sim_t *s, uint32_t hi, uint32_t li, int side, const uint8_t *p, size_t n);
void lab_pool_fin(sim_t *s, uint32_t hi, uint32_t li, int side);
void lab_pool_fire(sim_t *s, const pd_sim_event_t *e);

/* ---- measure.c ---- */
uint32_t lab_host_outbound(const sim_host_t *h);
/* Add the policy calls that ran Lua in host h's node, by hook, to calls. */
void lab_host_policy_calls(const sim_host_t *h, uint64_t calls[PD_HOOK_COUNT]);
uint32_t lab_host_inbound(const sim_host_t *h);
uint32_t lab_host_min_out(const sim_host_t *h);
bool lab_is_node(const sim_host_t *h);
int lab_l_connectivity(lua_State *L);
int lab_l_diameter(lua_State *L);
int lab_l_stats(lua_State *L);

/* ---- scenario.c ---- */
sim_t *lab_getsim(lua_State *L);
uint32_t lab_checkhost(lua_State *L, int i);
void lab_pushhost(lua_State *L, uint32_t idx);
bool lab_pcall_top(sim_t *s, int nres, bool callback);
void lab_lua_fire(sim_t *s, const pd_sim_event_t *e);
void lab_watch_fire(sim_t *s, uint32_t wi);
const char *lab_field_str(lua_State *L, int t, const char *k);
double lab_field_num(lua_State *L, int t, const char *k, double dflt);
bool lab_field_bool(lua_State *L, int t, const char *k, bool dflt);
int lab_setup_state(lua_State *L);

/* ---- scenario_host.c ---- */
void lab_open_host_mt(lua_State *L, sim_t *s);

/* ---- output.c ---- */
char *lab_results_doc(sim_t *s, size_t *len);
int lab_write_series(sim_t *s, const char *dir);
size_t lab_write_plots(sim_t *s, const char *dir);
size_t lab_rss_bytes(void);
size_t lab_peak_rss_bytes(void);
void lab_summary(sim_t *s, const pd_sim_report_t *r);

/* ---- labdht.c ---- */
/* Start host hi's engine (its node and manager are up); 0, or < 0 and err. */
int lab_dht_start(sim_t *s, uint32_t hi, char *err, size_t cap);
/* Free its engine (the host is stopping); pending lookups never call back. */
void lab_dht_stop(sim_t *s, uint32_t hi);
/* Perform its engine's actions, then arm its timer. */
void lab_dht_after(sim_t *s, uint32_t hi);
void lab_dht_fire(sim_t *s, const pd_sim_event_t *e); /* EV_DHT_PKT, EV_DHT_TIMER */

/* ---- scenario_dht.c ---- */
void lab_open_dht_api(lua_State *L, sim_t *s); /* the host methods and sim.* functions */
/* A lookup of host hi ended (called from labdht.c while draining): its
 * callback, if any, is scheduled with the result at the current time. */
void lab_dht_lookup_ended(sim_t *s, uint32_t hi, uint64_t id);

/* ---- sim.c ---- */
bool lab_run_until(sim_t *s, int64_t until);

#endif
