/* dialer — whom to dial and when, and which connections to keep (sans-I/O).
 *
 * Owns: the set of live connections as far as limits are concerned
 * (direction, address, network group, node ID), the outbound dial queue
 * (persistent peers, anchors, seeds, the selection's picks, one feeler),
 * in-flight dials de-duplicated by address, the concurrency limit,
 * per-address exponential backoff with jitter, a cap and a retry limit
 * (a bounded table), outbound spread over distinct network groups, inbound
 * limits (total and per IP) with unconditional peers exempt, the bootstrap
 * trigger (too few outbound peers) and its rate limit, the feeler cadence,
 * anchors, the private-peer predicate, and counters for /metrics.
 * Does not own: sockets, DNS, timers or clocks (the driver connects,
 * resolves, arms timers and passes `now`), the choice of candidates (the
 * select policy, reached through a callback), the address book (the driver
 * reports outcomes to the book and the reputation policy itself), the
 * handshake (the peer module), files (anchors.json is the driver's).
 *
 * How a driver uses it:
 *   1. pd_dialer_create with a config and a seeded RNG (borrowed; jitter
 *      is the only randomness used). Optionally pd_dialer_set_anchors.
 *   2. Every second or so, and after events, call pd_dialer_tick. Perform
 *      every action it returns, in order:
 *        DIAL(target)      connect to target.addr; if target.has_id, the
 *                          handshake must prove that node ID.
 *        FEELER(target)    the same, but a short-lived test connection:
 *                          close it once the handshake completes.
 *        BOOTSTRAP         informational: outbound peers are below the
 *                          minimum; seeds given as IP literals are queued
 *                          already, and RESOLVE actions follow for names.
 *        RESOLVE(reason, index)  resolve the host of seed/persistent peer
 *                          `index` (pd_dialer_endpoint), then call
 *                          pd_dialer_on_resolved (with n = 0 on failure).
 *      A DIAL/FEELER is in flight from the moment tick returns it.
 *   3. Each dial ends in exactly one pd_dialer_on_dial_result (outcome).
 *      A successful one is followed by pd_dialer_on_connected (direction
 *      OUTBOUND or FEELER); a lost dial is expired after inflight_timeout.
 *   4. For an inbound connection call pd_dialer_accept_inbound (at TCP
 *      accept with id NULL as a cheap pre-check, and again after the
 *      handshake with the proven ID so unconditional peers get through);
 *      when it allows, call pd_dialer_on_connected(INBOUND) right away.
 *   5. Every closed connection: pd_dialer_on_disconnected.
 *   6. At shutdown, pd_dialer_anchors gives the outbound peers to save.
 *
 * Times are Unix seconds (int64). All tables are bounded; work per tick is
 * O(connections + in-flight + backoff table) per candidate considered.
 */
#ifndef PD_DIALER_H
#define PD_DIALER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "rng.h"

#define PD_DIALER_MAX_CANDIDATES 64 /* most candidates asked for per call */
#define PD_DIALER_MAX_ANCHORS 32    /* anchors kept by pd_dialer_set_anchors */
#define PD_DIALER_SEED_QUEUE 64     /* resolved seed addresses waiting to be dialled */
#define PD_DIALER_MAX_SELF 16       /* own addresses remembered (config + learned) */
#define PD_DIALER_MAX_LIST 1024     /* most entries in each config list */

/* An address to dial, with the node ID it must prove when known. */
typedef struct pd_dial_target {
  pd_netaddr_t addr;
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
} pd_dial_target_t;

enum pd_conn_dir {
  PD_CONN_INBOUND = 0,
  PD_CONN_OUTBOUND = 1,
  PD_CONN_FEELER = 2, /* outbound test connection, not counted as outbound */
  PD_CONN_DIR_COUNT
};

/* Why a DIAL/FEELER/RESOLVE was emitted. */
enum pd_dial_reason {
  PD_DIAL_REASON_PERSISTENT = 0, /* --persistent-peers: dialled regardless of slots */
  PD_DIAL_REASON_ANCHOR = 1,     /* saved at the last shutdown */
  PD_DIAL_REASON_SEED = 2,       /* --seeds, during bootstrap */
  PD_DIAL_REASON_SELECT = 3,     /* picked by the selection (select policy) */
  PD_DIAL_REASON_FEELER = 4,     /* feeler test */
  PD_DIAL_REASON_COUNT
};

enum pd_dial_action_kind {
  PD_DIAL_ACT_DIAL = 0,
  PD_DIAL_ACT_FEELER = 1,
  PD_DIAL_ACT_BOOTSTRAP = 2,
  PD_DIAL_ACT_RESOLVE = 3,
};

typedef struct pd_dial_action {
  enum pd_dial_action_kind kind;
  enum pd_dial_reason reason; /* DIAL: PERSISTENT/ANCHOR/SEED/SELECT; FEELER: FEELER;
                                 RESOLVE: SEED or PERSISTENT; BOOTSTRAP: SEED */
  pd_dial_target_t target;    /* DIAL, FEELER */
  size_t index;               /* RESOLVE: index into the config's seeds/persistent list */
} pd_dial_action_t;

/* How a dial ended (metrics label: pd_dialer_outcome_name). */
enum pd_dial_outcome {
  PD_DIAL_OK = 0,           /* connected and handshake done: resets backoff */
  PD_DIAL_REFUSED = 1,      /* connection refused / reset */
  PD_DIAL_TIMEOUT = 2,      /* connect or handshake timed out */
  PD_DIAL_UNREACHABLE = 3,  /* no route, network down, DNS gave nothing */
  PD_DIAL_HANDSHAKE = 4,    /* handshake failed (bad signature, version, magic) */
  PD_DIAL_ID_MISMATCH = 5,  /* the peer proved a different node ID */
  PD_DIAL_SELF = 6,         /* we reached ourselves: address remembered, never dialled again */
  PD_DIAL_DUPLICATE = 7,    /* already connected to that node ID: no backoff */
  PD_DIAL_ERROR = 8,        /* anything else (local error) */
  PD_DIAL_OUTCOME_COUNT
};

/* Verdict on an inbound connection (metrics label: pd_dialer_verdict_name). */
enum pd_inbound_verdict {
  PD_INBOUND_ALLOW = 0,        /* "allow" */
  PD_INBOUND_FULL = 1,         /* "inbound_full" */
  PD_INBOUND_PER_IP = 2,       /* "per_ip_limit" */
  PD_INBOUND_SELF = 3,         /* "self": the peer has our node ID */
  PD_INBOUND_DUPLICATE = 4,    /* "duplicate": already connected to that node ID */
  PD_INBOUND_VERDICT_COUNT
};

typedef struct pd_dialer_config {
  uint32_t max_outbound;         /* outbound connections (feelers, unconditional not counted);
                                  * 0: dialling off, the dialer never dials or resolves */
  uint32_t max_inbound;          /* inbound connections (unconditional not counted) */
  uint32_t max_inbound_per_ip;   /* inbound connections from one IP (0: no per-IP limit) */
  uint8_t ipv6_prefix;           /* an IPv6 "IP" for that limit is its /ipv6_prefix (0 = 64) */
  uint32_t dial_concurrency;     /* dials in flight at once (the feeler has its own slot) */
  uint32_t min_outbound;         /* below this, bootstrap (and no feelers) */
  int64_t backoff_base;          /* s, delay after the first failure */
  uint32_t backoff_factor;       /* growth per further failure (>= 1) */
  int64_t backoff_cap;           /* s, longest delay (before giving up) */
  double backoff_jitter;         /* 0..0.9: each delay is scaled by 1 +- jitter */
  uint32_t retry_limit;          /* consecutive failures before the long pause (0: never) */
  int64_t giveup_pause;          /* s, the long pause once retry_limit is reached */
  int64_t persistent_backoff_cap;/* s, cap for persistent peers (never give up) */
  int64_t bootstrap_interval;    /* s, a shortfall with dials in flight waits this long
                                  * before a bootstrap round (none in flight: at once) */
  int64_t bootstrap_interval_cap;/* s, longest gap between bootstrap rounds */
  int64_t bootstrap_retry;       /* s, first gap between rounds; doubles up to _cap (0: no
                                  * gap, a round whenever stuck) */
  int64_t feeler_interval;       /* s, mean gap between feelers (jittered); 0: no feelers */
  int64_t inflight_timeout;      /* s, a dial not reported by then is a timeout (0: never) */
  int64_t stable_secs;           /* s, an outbound connection shorter than this is a flap */
  size_t backoff_max;            /* backoff records kept (oldest-due evicted) */
  bool allow_private;            /* network groups as pd_netaddr_group(.., allow_private) */

  /* Lists, copied at create (each at most PD_DIALER_MAX_LIST). */
  const pd_endpoint_t *persistent;  /* always reconnected; host names via RESOLVE */
  size_t npersistent;
  const pd_endpoint_t *seeds;       /* dialled at bootstrap; host names via RESOLVE */
  size_t nseeds;
  const uint8_t (*unconditional_ids)[PD_NODE_ID_LEN]; /* exempt from limits */
  size_t nunconditional;
  const uint8_t (*private_ids)[PD_NODE_ID_LEN];       /* never shared through PEX */
  size_t nprivate;
  bool has_self_id;                 /* our own node ID: never dialled, inbound "self" */
  uint8_t self_id[PD_NODE_ID_LEN];
  const pd_netaddr_t *self_addrs;   /* our own listen addresses: never dialled */
  size_t nself_addrs;               /* at most PD_DIALER_MAX_SELF */
} pd_dialer_config_t;

/* Counters for /metrics (monotonic) and gauges (current). */
typedef struct pd_dialer_counters {
  uint64_t dials_started[PD_DIAL_REASON_COUNT];
  uint64_t dials[PD_DIAL_OUTCOME_COUNT];            /* peerd_dials_total{outcome} */
  uint64_t inbound[PD_INBOUND_VERDICT_COUNT];       /* accept_inbound verdicts */
  uint64_t connections_opened[PD_CONN_DIR_COUNT];   /* peerd_connections_opened_total{direction} */
  uint64_t connections_closed[PD_CONN_DIR_COUNT];
  uint64_t bootstraps;
  uint64_t candidates_skipped;                      /* filtered out of the selection's picks */
  /* gauges */
  uint32_t connected[PD_CONN_DIR_COUNT];            /* peerd_connections{direction} */
  uint32_t in_flight;
  uint32_t backoff_entries;
} pd_dialer_counters_t;

/* Flag passed to the candidate callback. */
enum {
  PD_DIALER_WANT_FEELER = 1 << 0, /* give new-table entries / tried collisions to test */
};

/* How the dialer asks the selection for candidates: write up to n targets
 * to out and return how many were written (<= n). flags is 0 for ordinary
 * outbound picks or PD_DIALER_WANT_FEELER. The dialer filters the answer
 * (in flight, connected, backing off, self, same group as an outbound). */
typedef size_t (*pd_dialer_candidate_fn)(void *ud, size_t n, int64_t now, unsigned flags,
                                          pd_dial_target_t *out);

typedef struct pd_dialer pd_dialer_t;

/* The inbound limit of a node in seed mode when none is configured (the
 * daemon's --max-inbound and the lab's max_inbound unset): a seed's
 * connections last one exchange (KEYX, HELLO, GETADDR/ADDR, goodbye: ~4
 * one-way latencies), so its slots bound how many nodes it can bootstrap
 * per second: 40 slots serve ~170 nodes/s at 60 ms, and a thousand nodes
 * starting together wait for retry rounds (docs/scenarios.md, "Bootstrap at
 * 1,000 hosts"). The pending-handshake limits per IP and per group still
 * apply. */
#define PD_DIALER_SEED_MAX_INBOUND 256

/* Defaults: 8 out, 40 in, 3 per IP, 3 concurrent, min 4 out, backoff 1 s
 * x2 capped at 600 s, jitter 0.2, retry limit 10 then 3600 s, persistent
 * cap 60 s, bootstrap rounds 1 s apart doubling to 300 s (a shortfall with
 * dials in flight waits 10 s first), feeler every 120 s,
 * in-flight timeout 60 s, stable after 60 s, 4096 backoff records. */
void pd_dialer_config_default(pd_dialer_config_t *cfg);

/* Copies cfg (and its lists); rng is borrowed and must outlive the dialer.
 * PD_EINVAL (with *why) for a nonsensical config (zero concurrency or
 * factor 0, jitter outside [0, 0.9], negative times, lists
 * too long), PD_ENOMEM. why may be NULL. */
int pd_dialer_create(const pd_dialer_config_t *cfg, pd_rng_t *rng, pd_dialer_t **out,
                     const char **why);
void pd_dialer_destroy(pd_dialer_t *d);

/* Decide what to do at now: writes up to cap actions, returns the count.
 * Order: expire lost dials; BOOTSTRAP and RESOLVEs when due; DIALs for
 * persistent peers (not connected, backoff expired; they ignore the
 * outbound limit but not the concurrency limit), then anchors, then seeds,
 * then the selection's picks (candidate_fn, may be NULL) while dial slots
 * and outbound slots are free; finally one FEELER when due. Work that did
 * not fit in cap waits for the next tick. */
size_t pd_dialer_tick(pd_dialer_t *d, int64_t now, pd_dialer_candidate_fn candidate_fn, void *ud,
                      pd_dial_action_t *out, size_t cap);

/* The earliest time (Unix s) at which pd_dialer_tick could act or change
 * state when no other event arrives in between: `now` when it has work at
 * once (queued anchors or seeds, free outbound slots to fill, a name to
 * resolve, a persistent peer down, state to update), else the next dial
 * timeout, persistent-name resolve, bootstrap round or feeler, or
 * INT64_MAX. Earlier is always safe (a tick with nothing due changes
 * nothing and draws no randomness); the driver may sleep until then. Any
 * connection, dial result or resolve answer can move it earlier: ask
 * again after each. */
int64_t pd_dialer_next_deadline(const pd_dialer_t *d, int64_t now);

/* A dial emitted by tick ended. Removes it from in flight; OK resets the
 * address's failure count, a failure grows its backoff (the long pause
 * after retry_limit consecutive failures; persistent peers are capped at
 * persistent_backoff_cap and never give up), SELF remembers the address,
 * DUPLICATE changes nothing. PD_ENOENT if addr was not in flight (the
 * outcome is still counted and the backoff still updated). */
int pd_dialer_on_dial_result(pd_dialer_t *d, const pd_netaddr_t *addr, enum pd_dial_outcome outcome,
                             int64_t now);

/* A host name asked for by a RESOLVE action resolved to addrs[0..n) (n = 0:
 * it failed). A seed's addresses are queued for dialling (port 0 takes the
 * endpoint's port); a persistent peer takes the first. PD_ERANGE for a bad
 * index or reason. */
int pd_dialer_on_resolved(pd_dialer_t *d, enum pd_dial_reason reason, size_t index,
                          const pd_netaddr_t *addrs, size_t n, int64_t now);
/* The endpoint behind a RESOLVE (reason SEED or PERSISTENT), or NULL. */
const pd_endpoint_t *pd_dialer_endpoint(const pd_dialer_t *d, enum pd_dial_reason reason,
                                        size_t index);

/* Should this inbound connection be kept? id is the proven node ID or NULL
 * (before the handshake). Unconditional peers (by ID) are always allowed and
 * not counted. Counted in counters.inbound. Does not register the
 * connection: call pd_dialer_on_connected when allowed. */
enum pd_inbound_verdict pd_dialer_accept_inbound(pd_dialer_t *d, const pd_netaddr_t *addr,
                                                 const uint8_t *id, int64_t now);

/* A connection is up (id may be NULL if unknown). An OUTBOUND/FEELER one
 * still in flight is taken as a successful dial. PD_EEXIST if (dir, addr)
 * is already registered, PD_ENOMEM. */
int pd_dialer_on_connected(pd_dialer_t *d, enum pd_conn_dir dir, const pd_netaddr_t *addr,
                           const uint8_t *id, int64_t now);
/* A connection closed. An outbound connection shorter than stable_secs is a
 * flap and backs the address off (so a peer that accepts and drops is not
 * hammered); a stable one leaves only backoff_base before a redial of a
 * persistent peer. PD_ENOENT if unknown. */
int pd_dialer_on_disconnected(pd_dialer_t *d, enum pd_conn_dir dir, const pd_netaddr_t *addr,
                              int64_t now);

/* The outbound (non-feeler, non-persistent) peers connected now, oldest
 * first: the anchors to save at shutdown. Writes up to cap, returns the
 * number of such peers (may exceed cap). */
size_t pd_dialer_anchors(const pd_dialer_t *d, pd_dial_target_t *out, size_t cap);
/* Make these the first dials (after persistent peers), each tried once.
 * Keeps at most PD_DIALER_MAX_ANCHORS; replaces any previous list. */
void pd_dialer_set_anchors(pd_dialer_t *d, const pd_dial_target_t *list, size_t n);

/* Predicates. */
bool pd_dialer_is_private(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]);
bool pd_dialer_is_unconditional(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]);
bool pd_dialer_is_connected_id(const pd_dialer_t *d, const uint8_t id[PD_NODE_ID_LEN]);
bool pd_dialer_in_flight(const pd_dialer_t *d, const pd_netaddr_t *addr);
/* Earliest time addr may be dialled again (0: no record, dial any time). */
int64_t pd_dialer_backoff_until(const pd_dialer_t *d, const pd_netaddr_t *addr);
/* Consecutive failures recorded for addr. */
uint32_t pd_dialer_failures(const pd_dialer_t *d, const pd_netaddr_t *addr);

/* Why the selection's pick t would or would not be dialled now (as the
 * tick filters picks), for the operator's explain. */
typedef struct pd_dialer_explain {
  bool self;                 /* our own address or node id */
  bool in_flight;            /* a dial to it (or its id) is in flight */
  bool connected;            /* connected to it (by address outbound, or by id any direction) */
  enum pd_conn_dir dir;      /* when connected */
  bool group_taken;          /* an outbound peer or dial shares its network group */
  int64_t backoff_until;     /* > now: backing off */
  uint32_t failures;
  bool dialling_off;         /* max_outbound 0 */
  bool slots_full;           /* no free dial slot or outbound slot now */
  uint32_t outbound, max_outbound; /* counted outbound (connected + dialling) and the limit */
} pd_dialer_explain_t;
void pd_dialer_explain(const pd_dialer_t *d, const pd_dial_target_t *t, int64_t now,
                       pd_dialer_explain_t *out);

/* Counters and gauges. */
void pd_dialer_counters(const pd_dialer_t *d, pd_dialer_counters_t *out);

/* Metric label names ("ok", "refused", ...; "inbound", "outbound",
 * "feeler"; "allow", "inbound_full", ...; "persistent", "anchor", ...). */
const char *pd_dialer_outcome_name(enum pd_dial_outcome o);
const char *pd_dialer_dir_name(enum pd_conn_dir dir);
const char *pd_dialer_verdict_name(enum pd_inbound_verdict v);
const char *pd_dialer_reason_name(enum pd_dial_reason r);

#endif
