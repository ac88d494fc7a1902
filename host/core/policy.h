/* policy — the Lua 5.4 policy host: every decision in hot-reloadable,
 * sandboxed policies; every mechanism stays in C.
 *
 * Owns: one lua_State per policy generation (a "set" of policy files) with a
 * capped allocator; the sandbox (allow-listed, read-only globals, no io/os/
 * debug/load/dofile, text chunks only, `require` limited to the other
 * modules of the same set); loading a new set into a fresh state, checking it
 * and swapping it in only on success; calling hooks under an instruction
 * budget and a wall-clock deadline, with a traceback handler; validating
 * every returned value; counting failures by hook and reason and reporting
 * each kind once (with file:line) for the driver to log; the `peerd` global
 * and the `book` object that policies see (docs/policies.md).
 * Does not own: files (the driver reads the policy directory and hands the
 * texts in), the clock (the deadline clock is a function the driver passes;
 * NULL in the scenario lab, where only the instruction budget applies, so
 * runs stay deterministic), the built-in C defaults (the caller applies them
 * whenever a call returns non-zero), logging (driver).
 *
 * Modules and the hooks they provide (a module is a file NAME.lua returning
 * a table; the hook is a function field of that table):
 *   select.lua      select(book, n, ctx)                 -> array of entry ids
 *   score.lua       score(peer)                          -> number
 *   evict.lua       evict_new(book, incumbent, candidate) -> "keep"|"replace"|nil
 *                   evict_tried(book, incumbent, candidate) -> "keep"|"replace"|"wait"|nil
 *                   evict_inbound(candidates, newcomer)  -> conn id | false | nil
 *   reputation.lua  on_event(peer, event, reason)        -> {reputation=, ban=, reason=} | nil
 *   pex.lua         accept(addr, from)                   -> boolean
 *                   share(addr, to)                      -> boolean
 *   dht.lua         admit(node, bucket)                  -> boolean
 *                   feed(node, from)                     -> boolean
 * A hook that is absent (file missing, or no such field in the module's
 * table) is "not provided": the call returns PD_ENOENT and the caller uses
 * its C default without counting a failure; a hook field that is present
 * but not a function is a load error.
 *
 * Under load (docs/policies.md, "Policies under load"): a caller may open a
 * request budget (pd_policy_budget_begin/end) around all the calls one API
 * request or one received message makes; once it is spent, the remaining
 * calls are not run (the caller applies its C default). Each hook has a
 * circuit breaker: PD_POLICY_TRIP_AFTER failures in a row switch it to the C
 * default until the next successful load. With a clock, each call that runs
 * is timed into a latency histogram per hook. `nil` from evict_new, evict_tried,
 * evict_inbound and on_event means "use the default" too. In evict hooks the book is read-only:
 * book:random() raises there (it would draw from the book's RNG mid-add).
 */
#ifndef PD_POLICY_H
#define PD_POLICY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrbook.h"
#include "netaddr.h"
#include "rng.h"

enum pd_policy_hook {
  PD_HOOK_SELECT = 0,
  PD_HOOK_SCORE,
  PD_HOOK_EVICT_NEW,
  PD_HOOK_EVICT_TRIED,
  PD_HOOK_REPUTATION,
  PD_HOOK_PEX_ACCEPT,
  PD_HOOK_PEX_SHARE,
  PD_HOOK_EVICT_INBOUND,
  PD_HOOK_DHT_ADMIT, /* dht.lua admit: a node enters the DHT routing table */
  PD_HOOK_DHT_FEED,  /* dht.lua feed: a DHT lookup's record feeds the book */
  PD_HOOK_COUNT
};

enum pd_policy_reason {
  PD_POLICY_ERROR = 0,    /* the hook raised an error */
  PD_POLICY_INSTRUCTIONS, /* ran out of its instruction budget */
  PD_POLICY_TIMEOUT,      /* passed its wall-clock deadline */
  PD_POLICY_MEMORY,       /* the state hit its memory cap */
  PD_POLICY_BAD_RETURN,   /* returned a value of the wrong type/shape */
  PD_POLICY_REQUEST_BUDGET, /* ran out of what was left of its request's budget */
  PD_POLICY_REASON_COUNT
};

/* "select", "score", "evict_new", "evict_tried", "reputation", "pex_accept",
 * "pex_share", "evict_inbound", "dht_admit", "dht_feed"; and "error",
 * "instructions", "timeout", "memory", "bad_return", "request_budget" (the
 * label values of peerd_policy_failures_total). */
const char *pd_policy_hook_name(int hook);
const char *pd_policy_reason_name(int reason);

/* Monotonic nanoseconds (the daemon passes a uv_hrtime wrapper). */
typedef uint64_t (*pd_policy_clock_fn)(void *ud);

typedef struct pd_policy_limits {
  uint64_t call_instructions; /* per hook call; default 1,000,000 */
  uint64_t call_deadline_ms;  /* per hook call; default 50 */
  size_t memory_bytes;        /* per state (generation); default 64 MiB */
  uint64_t load_instructions; /* running the files of a set; default 10,000,000 */
  uint64_t load_deadline_ms;  /* loading a set; default 500 */
  /* Per request budget (pd_policy_budget_begin): every call of one API
   * request or received message together. 0 = 10 x call_instructions and
   * 5 x call_deadline_ms (10,000,000 and 250 ms by default). */
  uint64_t request_instructions;
  uint64_t request_deadline_ms;
} pd_policy_limits_t;

void pd_policy_limits_default(pd_policy_limits_t *l);

typedef struct pd_policy_file {
  const char *name; /* "select.lua": one of the six module names + ".lua" */
  const char *text;
  size_t len;
} pd_policy_file_t;

/* What score, reputation and pex hooks see about a peer or address
 * (docs/policies.md, "peer"). Fields not known are 0/false; latency_ms < 0
 * means unknown. */
typedef struct pd_peer_view {
  pd_netaddr_t addr;
  bool has_node_id;
  uint8_t node_id[PD_NODE_ID_LEN];
  bool known; /* in the book */
  bool tried;
  int attempts;
  int64_t last_try, last_success, time; /* Unix s, 0 = never */
  int64_t first_seen;                   /* 0 = unknown */
  double latency_ms;                    /* < 0: unknown */
  double reputation;                    /* current reputation value */
  int misbehaviours;                    /* count so far */
  bool banned;
  bool private_peer; /* never shared through PEX, whatever the policy says */
  bool routable;
  uint8_t group[PD_GROUP_MAX];
  size_t group_len;
  bool service_only; /* an address the node gave: the node dials it, peerd never does */
} pd_peer_view_t;

/* What on_event decided. */
typedef struct pd_rep_verdict {
  double reputation; /* the peer's new reputation value */
  int64_t ban_secs;  /* 0 = no ban; > 0 ban for that long; -1 = permanent */
  char reason[96];   /* ban reason ("" = none given) */
} pd_rep_verdict_t;

typedef struct pd_policy_status {
  uint64_t generation; /* increments on every successful load; 0 = none yet */
  int64_t loaded_at;   /* `now` of the successful load */
  char hash[65];       /* SHA-256 hex of the set (see pd_policy_load) */
  size_t nfiles;
  char files[8][64]; /* names of the files in force */
  bool has_hook[PD_HOOK_COUNT];
  /* The most recent error of any kind: a failed load, a failed read of
   * the directory (pd_policy_note_error) or a failed hook call. */
  int64_t last_error_at;   /* its `now`, 0 = none */
  char last_error[512];    /* "select.lua:3: message" */
  int last_error_hook;     /* the hook of a failed call; -1: a load */
  int last_error_reason;   /* its enum pd_policy_reason; -1: a load */
  size_t memory_bytes;     /* bytes the current state holds */
  /* The current state's small blocks (<= 256 bytes: views, strings,
   * tables): allocations served from its freed blocks, and those that went
   * to malloc. A steady run of calls reuses nearly all (policy.c). */
  uint64_t small_reused, small_fresh;
} pd_policy_status_t;

typedef struct pd_policy pd_policy_t;

/* clock may be NULL: no wall-clock deadline (instruction budget only). */
int pd_policy_create(pd_policy_t **out, const pd_policy_limits_t *limits,
                     pd_policy_clock_fn clock, void *clock_ud);
void pd_policy_destroy(pd_policy_t *p);

/* The records of other nodes that views read (peer.services, peer.attrs,
 * peer.peerd, peer.record_seq), by the view's node id. Borrowed; NULL:
 * none. The fields are looked up when read. */
struct pd_rectable;
void pd_policy_set_records(pd_policy_t *p, const struct pd_rectable *records);

/* Load a set into a fresh state: each file is compiled as text (chunk name
 * "@NAME.lua"), run in its own sandboxed environment under the load budget,
 * and must return a table; unknown file names are an error. On success the
 * new generation replaces the old (which is closed) and 0 is returned. On
 * any failure the generation in force is kept, err gets "NAME.lua:LINE:
 * message" (or "NAME.lua: message"), status.last_error records it, and
 * PD_EINVAL is returned. n == 0 loads an empty set (all C defaults).
 * The hash is SHA-256 over, for each file in name order: name, a 0 byte,
 * the length as 8 bytes little endian, the text. */
int pd_policy_load(pd_policy_t *p, const pd_policy_file_t *files, size_t n, int64_t now,
                   char *err, size_t cap);

void pd_policy_status(const pd_policy_t *p, pd_policy_status_t *out);
bool pd_policy_has_hook(const pd_policy_t *p, int hook);

/* Record an error that happened outside the host (the driver could not read
 * the policy directory) as the most recent error. */
void pd_policy_note_error(pd_policy_t *p, const char *msg, int64_t now);

/* Failures of (hook, reason) since creation. */
uint64_t pd_policy_failures(const pd_policy_t *p, int hook, int reason);
/* The driver logs each kind once: returns true with the first message of a
 * (hook, reason) kind that has not been reported yet, marking it reported.
 * Call until it returns false. Kinds are reported again after a reload. */
bool pd_policy_next_unreported(pd_policy_t *p, int *hook, int *reason, char *msg, size_t cap);

/* ---- under load ------------------------------------------------------------
 * Request budget. begin opens a budget of `instructions` VM instructions
 * and `deadline_ms` wall-clock milliseconds (measured with the host's clock;
 * none without one) shared by every hook call until the matching end; 0
 * takes the limits' request_instructions / request_deadline_ms. Each call
 * runs under the smaller of its own budget and what is left; a call that
 * runs out of what is left fails with PD_POLICY_REQUEST_BUDGET (not counted
 * by the breaker); once nothing is left the remaining calls return PD_ERANGE
 * without running Lua (counted as skipped). Instructions are counted at the
 * count hook's granularity (1,000). Nested begin/end pairs are one budget
 * (the outermost). */
void pd_policy_budget_begin(pd_policy_t *p, uint64_t instructions, uint64_t deadline_ms);
void pd_policy_budget_end(pd_policy_t *p);
/* Instructions counted against the open budget so far (0: none open). */
uint64_t pd_policy_budget_used(const pd_policy_t *p);

/* Circuit breaker: a hook whose calls fail PD_POLICY_TRIP_AFTER times in a
 * row (error, instructions, timeout, memory, bad_return) is tripped: its
 * calls return PD_EINVAL without running Lua (counted as skipped) until
 * the next successful load (pd_policy_load, pd_policy_adopt). A call that
 * decides or chooses the default resets the run. */
#define PD_POLICY_TRIP_AFTER 8

enum pd_policy_hook_state {
  PD_HOOK_STATE_ABSENT = 0, /* no such hook in the set: the C default */
  PD_HOOK_STATE_OK,         /* the last call did not fail */
  PD_HOOK_STATE_FAILING,    /* the last call(s) failed; not tripped yet */
  PD_HOOK_STATE_TRIPPED,    /* switched to the C default until the next load */
  PD_HOOK_STATE_COUNT
};
/* "absent", "ok", "failing", "tripped". */
const char *pd_policy_hook_state_name(int state);

enum pd_policy_skip {
  PD_POLICY_SKIP_TRIPPED = 0, /* the hook's breaker is open */
  PD_POLICY_SKIP_BUDGET,      /* the request's budget is spent */
  PD_POLICY_SKIP_COUNT
};
/* "tripped", "request_budget" (label values of peerd_policy_skipped_total). */
const char *pd_policy_skip_name(int why);

typedef struct pd_policy_hook_health {
  int state;             /* enum pd_policy_hook_state */
  uint64_t calls;        /* calls that ran Lua, since creation */
  uint64_t failures;     /* of those, failed (every reason), since creation */
  uint32_t consecutive;  /* failures in a row, now */
  uint64_t skipped[PD_POLICY_SKIP_COUNT]; /* calls not run, since creation */
  int64_t tripped_at;    /* `now` of the trip; 0 = not tripped */
  int64_t last_error_at; /* 0 = none since creation */
  int last_error_reason; /* enum pd_policy_reason */
  char last_error[256];  /* "pex.lua:3: instruction budget exceeded ..." */
} pd_policy_hook_health_t;

void pd_policy_hook_health(const pd_policy_t *p, int hook, pd_policy_hook_health_t *out);
uint64_t pd_policy_skipped(const pd_policy_t *p, int hook, int why);
/* The driver logs each trip once: returns true with the hook and its last
 * error for a trip not reported yet. Call until it returns false. */
bool pd_policy_next_tripped(pd_policy_t *p, int *hook, char *msg, size_t cap);

/* Latency of the calls that ran, per hook (only with a clock: the lab's host
 * has none and times nothing). Bucket upper bounds in seconds: */
#define PD_POLICY_LATENCY_BUCKETS 14
/* The bounds (seconds, increasing; +Inf is implied after the last). */
const double *pd_policy_latency_bounds(void);
/* buckets[i] for i < PD_POLICY_LATENCY_BUCKETS: calls that took <= bound i
 * (cumulative); buckets[PD_POLICY_LATENCY_BUCKETS]: every call (+Inf).
 * *sum in seconds. */
void pd_policy_latency(const pd_policy_t *p, int hook,
                       uint64_t buckets[PD_POLICY_LATENCY_BUCKETS + 1], double *sum);

/* Promote: dst takes src's set in force as a new generation (as a
 * successful load would: generation + 1, loaded_at = now, breakers reset);
 * src is left with none (every decision its C default). PD_ENOENT when src
 * has no set loaded (nothing changes). Counters stay with their host. */
int pd_policy_adopt(pd_policy_t *dst, pd_policy_t *src, int64_t now);

/* Hook calls. Return 0 when the policy decided (outputs filled and
 * validated), PD_ENOENT when the hook is not provided or chose the default
 * (not a failure), or another negative code after a counted failure (or a
 * call not run: PD_EINVAL when the hook is tripped, PD_ERANGE when the
 * request budget is spent). In every non-zero case the caller applies its C
 * default. `rng` feeds
 * peerd.random during the call; `now` is what peerd.now() returns. */
int pd_policy_select(pd_policy_t *p, pd_book_t *b, pd_rng_t *rng, size_t n, int64_t now,
                     uint32_t *out, size_t *nout);
/* What select's third argument, the `ctx` table, says about the caller's
 * connections: ctx.outbound and ctx.max_outbound (a field below 0 is left
 * out of the table: unknown). pd_policy_select passes an empty ctx table. */
typedef struct pd_policy_select_ctx {
  int32_t outbound;     /* outbound connections now (peerd's dialer: feelers excluded) */
  int32_t max_outbound; /* the dialer's limit */
} pd_policy_select_ctx_t;
/* pd_policy_select with a ctx (NULL: an empty table). */
int pd_policy_select_ctx(pd_policy_t *p, pd_book_t *b, pd_rng_t *rng, size_t n,
                         const pd_policy_select_ctx_t *ctx, int64_t now, uint32_t *out,
                         size_t *nout);
int pd_policy_score(pd_policy_t *p, const pd_peer_view_t *peer, pd_rng_t *rng, int64_t now,
                    double *score);
int pd_policy_evict_new(pd_policy_t *p, const pd_book_t *b, uint32_t incumbent,
                        const pd_book_info_t *candidate, pd_rng_t *rng, int64_t now,
                        int *verdict /* PD_BOOK_KEEP / PD_BOOK_REPLACE */);
int pd_policy_evict_tried(pd_policy_t *p, const pd_book_t *b, uint32_t incumbent,
                          uint32_t candidate, pd_rng_t *rng, int64_t now,
                          int *verdict /* PD_BOOK_KEEP / PD_BOOK_REPLACE / PD_BOOK_WAIT */);
int pd_policy_reputation(pd_policy_t *p, const pd_peer_view_t *peer, const char *event,
                         const char *reason, pd_rng_t *rng, int64_t now, pd_rep_verdict_t *out);
int pd_policy_pex_accept(pd_policy_t *p, const pd_peer_view_t *addr, const pd_peer_view_t *from,
                         pd_rng_t *rng, int64_t now, bool *accept);
int pd_policy_pex_share(pd_policy_t *p, const pd_peer_view_t *addr, const pd_peer_view_t *to,
                        pd_rng_t *rng, int64_t now, bool *share);

/* An inbound peer that may be evicted (evict_inbound's candidates). */
typedef struct pd_policy_inbound {
  pd_peer_view_t view;  /* its address, node id, latency, ... */
  uint64_t conn_id;
  int64_t connected;    /* Unix s it became ready */
  int64_t useful;       /* Unix s an address it gave last led to an outbound handshake; 0 never */
  bool protected_by_default; /* the C rule (inevict.h) protects it */
} pd_policy_inbound_t;

/* evict_inbound(candidates, newcomer): *victim = the index in cands of the
 * conn id returned, or -1 for `false` (evict nobody: the newcomer is
 * refused). nil: PD_ENOENT (the C default). Another value, or an id not
 * among the candidates, is a bad return. */
int pd_policy_evict_inbound(pd_policy_t *p, const pd_policy_inbound_t *cands, size_t n,
                            const pd_peer_view_t *newcomer, pd_rng_t *rng, int64_t now,
                            long *victim);

/* Pex decisions in batches: the addresses of one ADDR message (accept) or
 * of one GETADDR answer (share), all against the same peer. Each address is
 * one hook call exactly as pd_policy_pex_accept/share makes it (its own
 * instruction budget and deadline, its own validation and failure
 * accounting, C default for that address alone on failure), but the
 * `from`/`to` table is built once and the same table is passed to every
 * call of the batch (policies must treat it as read-only).
 *
 * pd_policy_pex_batch, for callers that interleave work with the calls: for
 * i = 0..n-1 in order, next(ud, i, addr, other, changed) fills *addr; *other
 * holds the previous call's peer view (initially *other of the batch): when
 * that view changed, next writes the new one there and sets *changed (left
 * false otherwise; a changed view gets a fresh table); false skips i (no
 * call, no done). Then done(ud, i, rc, decision) gets the call's return code (as
 * pd_policy_pex_accept's) and, when rc == 0, the decision. hook is
 * PD_HOOK_PEX_ACCEPT or PD_HOOK_PEX_SHARE. Returns 0 or PD_EINVAL. */
typedef bool (*pd_policy_pex_next_fn)(void *ud, size_t i, pd_peer_view_t *addr,
                                      pd_peer_view_t *other, bool *changed);
/* Whether two peer views are the same in every field a policy can read. */
bool pd_peer_view_same(const pd_peer_view_t *a, const pd_peer_view_t *b);
typedef void (*pd_policy_pex_done_fn)(void *ud, size_t i, int rc, bool decision);
int pd_policy_pex_batch(pd_policy_t *p, int hook, const pd_peer_view_t *other, size_t n,
                        pd_policy_pex_next_fn next, pd_policy_pex_done_fn done, void *ud,
                        pd_rng_t *rng, int64_t now);
/* Array forms: out[i] gets the policy's decision for addrs[i] when call i
 * decided (returned 0) and is left as it was otherwise, so pre-fill out
 * with the C default. Return the number of decided calls, or PD_EINVAL. */
int pd_policy_pex_accept_batch(pd_policy_t *p, const pd_peer_view_t *addrs, size_t n,
                               const pd_peer_view_t *from, pd_rng_t *rng, int64_t now,
                               bool *accept_out);
int pd_policy_pex_share_batch(pd_policy_t *p, const pd_peer_view_t *addrs, size_t n,
                              const pd_peer_view_t *to, pd_rng_t *rng, int64_t now,
                              bool *share_out);

/* What dht.lua's admit sees about a candidate for the DHT routing table
 * (docs/protocol.md §11.6, docs/policies.md "dht.lua"). */
typedef struct pd_policy_dht_node {
  pd_netaddr_t addr;              /* its discovery endpoint */
  uint8_t node_id[PD_NODE_ID_LEN];
  uint64_t seq;                   /* its record's sequence */
  bool routable;
  unsigned bucket, bucket_size, k; /* bucket index 1..160, nodes in it now, capacity */
  unsigned subnet_in_bucket, subnet_in_table; /* nodes of its /24 (/48) there now */
} pd_policy_dht_node_t;

/* admit(node, bucket): node = {id = "<40 hex>", ip = "1.2.3.4", port = n,
 * addr = "1.2.3.4:7411", seq = n, routable = bool, subnet_in_bucket = n,
 * subnet_in_table = n}, bucket = {index = n, size = n, k = n}; returns a
 * boolean (anything else is a bad return). The caller's C default:
 * !routable || (subnet_in_bucket < 2 && subnet_in_table < 10). */
int pd_policy_dht_admit(pd_policy_t *p, const pd_policy_dht_node_t *node, pd_rng_t *rng,
                        int64_t now, bool *admit);
/* feed(node, from): node = the peer view of a record a DHT lookup found (its
 * placed endpoint and node id), from = the peer view of the DHT node that
 * answered with it; returns a boolean. The caller's C default: true. */
int pd_policy_dht_feed(pd_policy_t *p, const pd_peer_view_t *node, const pd_peer_view_t *from,
                       pd_rng_t *rng, int64_t now, bool *feed);

/* Hooks for pd_book_set_hooks that route the book's eviction decisions to
 * evict.lua (falling back to the built-in rule). rng and now_ptr are read at
 * call time (the book passes `now` itself; rng feeds peerd.random). */
void pd_policy_book_hooks(pd_policy_t *p, pd_rng_t *rng, pd_book_hooks_t *out);

#endif
