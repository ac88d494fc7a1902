/* node — one peerd's core state, tied together (sans-I/O).
 *
 * Owns: the address book (and through it the ban list), the seeded RNG the
 * book draws from, the configuration the core needs, the status an operator
 * sees (start time, last save and its result, load error and report, the
 * last policy load error), the metrics counters, the policy host (a
 * pd_policy_t whose evict hooks it installs on the book) and the reputation
 * table. It routes every decision to the policy and applies the built-in C
 * default whenever the policy has no hook for it or the call fails: whom to
 * dial (pd_node_dial), a peer's score, what an event does to a peer's
 * reputation and whether it becomes a ban (pd_node_event), which addresses
 * to accept from and share with a peer (PEX), which nodes enter the DHT
 * routing table and which DHT lookup results feed the book (dht.lua; the
 * table and the feeding are the DHT's). The control API (api.c) and,
 * later, the peer protocol call into it with `now`; it never reads a clock,
 * draws entropy or touches a file or socket: the driver hands it time,
 * seeds, policy texts and bytes, and performs the actions it asks for
 * (e.g. "save the book now", "reload the policies").
 * With a shadow set (--shadow-policies) it also asks the shadow (shadow.c)
 * every decision it asks the live set, on the same inputs, and hands it
 * what the live side used; it opens the request budget of both sets
 * around one API request or received message (pd_node_budget_begin).
 * Does not own: HTTP (api.c), files and sockets (daemon.c, fsio.c), the
 * Lua states and their limits (policy.c), the comparison (shadow.c), the
 * records' storage (reputation.c).
 */
#ifndef PD_NODE_H
#define PD_NODE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrbook.h"
#include "bookstore.h"
#include "events.h"
#include "metrics.h"
#include "policy.h"
#include "record.h"
#include "reputation.h"

#define PD_NODE_ERR_MAX 256

typedef struct pd_node_config {
  bool allow_private;       /* --allow-private */
  int64_t save_interval;    /* seconds between periodic saves (--save-interval, minutes) */
  int64_t default_ban_secs; /* ban length for "misbehaved" and POST /v1/bans without duration */
  /* Policy host. Zero fields of policy_limits take pd_policy_limits_default.
   * policy_clock (NULL: no wall-clock deadline, instruction budget only) is
   * the driver's monotonic clock; the node never calls it itself. */
  pd_policy_limits_t policy_limits;
  pd_policy_clock_fn policy_clock;
  void *policy_clock_ud;
  const char *policy_dir;   /* shown in status only; borrowed; may be NULL */
  bool policy_builtin;      /* status: the policies are the copy built into the binary */
  const char *data_dir;     /* shown in status only (absolute); borrowed; may be NULL */
  size_t reputation_max;    /* records kept; 0 = PD_REP_DEFAULT_MAX */
  /* Private peers (--private-peer): never shared through PEX, whatever
   * pex.lua says. Copied at create. */
  const pd_subnet_t *private_subnets;
  size_t nprivate_subnets;
  const uint8_t (*private_ids)[PD_NODE_ID_LEN];
  size_t nprivate_ids;
  /* Where the record table keeps records' bytes (intern.h), borrowed: the
   * lab passes one store for all its hosts, so a record they all hold is
   * kept once. NULL: the table's own (the daemon). */
  struct pd_intern *record_store;
} pd_node_config_t;

typedef struct pd_node_status {
  int64_t started_at;    /* Unix s */
  int64_t last_save_at;  /* 0 = never */
  int last_save_rc;      /* 0 ok, < 0 error code */
  char last_save_error[PD_NODE_ERR_MAX];
  size_t last_save_bytes;
  size_t last_save_entries;
  bool load_failed;      /* the saved book could not be used */
  char load_error[PD_NODE_ERR_MAX];
  char load_moved_to[PD_NODE_ERR_MAX]; /* where the bad file was moved */
  pd_bookstore_report_t load_report;   /* skipped entries etc. */
  /* Policy loads (pd_node_policy_load / pd_node_policy_load_failed). */
  int last_policy_load_rc;             /* 0 ok, < 0 the last load failed */
  int64_t policy_error_at;             /* `now` of the last failed load; 0 = none */
  char policy_error[512];              /* "select.lua:3: message" */
  /* Peer-to-peer identity, set by the driver at start ("" = none). */
  char node_id[PD_NODE_ID_HEXLEN + 1]; /* 40 hex */
  char listen[80];                     /* the bound p2p listen address, "host:port" */
  /* The driver's effective config as JSON text, {"file":..,"settings":{..}}
   * (GET /v1/status merges it into "config"); NULL: none. Borrowed. */
  const char *settings_json;
} pd_node_status_t;

/* ---- the network, as the control API sees it ----------------------------
 * The connection manager lives above the node (it drives the node), so the
 * driver installs a view of it here; the API reads connected peers and the
 * network counters through it. Without one, there are no peers and the
 * network metric families have no samples. */
typedef struct pd_node_peer_info {
  char id[PD_NODE_ID_HEXLEN + 1]; /* "" until the handshake proved it */
  char addr[64];                  /* "host:port" of the connection */
  const char *direction;          /* static: "inbound", "outbound", "feeler" */
  int64_t since;                  /* Unix s the connection began */
  uint64_t bytes_in, bytes_out;
  int64_t latency_ms;             /* last PING round trip; -1 unknown */
  double score;                   /* the score policy's (or built-in) score */
  bool is_protected;              /* pd_node_is_protected (GET /v1/peers "protected") */
} pd_node_peer_info_t;

/* What the connection manager knows about one address (explain): filled by
 * the driver's dial_state view. */
typedef struct pd_node_dial_state {
  bool connected;          /* a connection to/from this address (or node id) is open */
  const char *direction;   /* static "inbound" | "outbound" | "feeler" when connected */
  bool in_flight;          /* a dial to it is in flight */
  bool self;               /* one of our own addresses or our node id */
  bool group_taken;        /* an outbound peer (or dial) is in its network group */
  int64_t backoff_until;   /* Unix s; 0 = no backoff record */
  uint32_t failures;       /* consecutive failed dials recorded */
  bool dialling_off;       /* --max-outbound 0 */
  bool slots_full;         /* outbound slots (or dial concurrency) all in use */
  uint32_t outbound, max_outbound;
} pd_node_dial_state_t;

/* A connection closed by pd_node_net_disconnect. */
typedef struct pd_node_closed {
  char id[PD_NODE_ID_HEXLEN + 1]; /* "" when not known */
  char addr[64];
  const char *direction;          /* static */
} pd_node_closed_t;

typedef struct pd_node_net_ops {
  /* Write up to cap connected peers to out; return how many there are in
   * total (may exceed cap: call again with a larger buffer). */
  size_t (*peers)(void *ud, int64_t now, pd_node_peer_info_t *out, size_t cap);
  /* Fill the network counters; arrays stay valid until the next call. */
  void (*counters)(void *ud, pd_metrics_net_t *out);
  /* Operator control (optional; NULL: the API answers 503). Close every
   * connection matching addr (any_port: by IP only) or node id (either may
   * be NULL); up to cap of them described in out; returns how many closed. */
  size_t (*disconnect)(void *ud, const pd_netaddr_t *addr, bool any_port, const uint8_t *id,
                       int64_t now, pd_node_closed_t *out, size_t cap);
  /* Dial addr now (id: the node id it must prove, or NULL). 0, or < 0 with
   * *why (PD_EEXIST: already connected or in flight; PD_EINVAL: ourselves). */
  int (*connect)(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                 const char **why);
  /* The manager's view of addr (id may be NULL) for explain. */
  void (*dial_state)(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                     pd_node_dial_state_t *out);
} pd_node_net_ops_t;

typedef struct pd_node pd_node_t;
struct pd_self;     /* self.h */
struct pd_rectable; /* rectable.h */

/* Create around an existing book (takes ownership of it). rng is borrowed:
 * it must be the one the book was created with and outlive the node. */
int pd_node_create(pd_node_t **out, const pd_node_config_t *cfg, pd_book_t *book, pd_rng_t *rng,
                   int64_t now);
void pd_node_destroy(pd_node_t *n);

pd_book_t *pd_node_book(pd_node_t *n);
pd_rng_t *pd_node_rng(pd_node_t *n);
const pd_node_config_t *pd_node_config(const pd_node_t *n);
pd_node_status_t *pd_node_status(pd_node_t *n);
pd_metrics_t *pd_node_metrics(pd_node_t *n);

/* This node's own record (borrowed; NULL: none). The API serves and
 * changes it (GET/PUT /v1/self); the network manager announces it. */
void pd_node_set_self(pd_node_t *n, struct pd_self *self);
struct pd_self *pd_node_self(pd_node_t *n);

/* Replace the book (e.g. after a load); the old one is destroyed. */
void pd_node_set_book(pd_node_t *n, pd_book_t *book);

/* Record what the driver did. */
void pd_node_note_save(pd_node_t *n, int rc, const char *error, size_t bytes, size_t entries,
                       int64_t now);
void pd_node_note_load(pd_node_t *n, int rc, const char *error, const char *moved_to,
                       const pd_bookstore_report_t *report);

/* Copy s (NULL = "") into dst of cap bytes, cutting an over-long text on a
 * UTF-8 character boundary; dst is always NUL-terminated. */
void pd_node_copy_text(char *dst, size_t cap, const char *s);

/* ---- policies, reputation, decisions ---------------------------------- */

pd_policy_t *pd_node_policy(pd_node_t *n);
pd_reputation_t *pd_node_reputation(pd_node_t *n);

/* Load a policy set (see pd_policy_load): counts the reload in metrics
 * (ok/error) and records the outcome in the status. 0 or PD_EINVAL (err
 * filled, the set in force stays). */
int pd_node_policy_load(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                        char *err, size_t cap);
/* A reload that failed before reaching the policy host (the driver could
 * not read the directory): counted and recorded like a failed load. */
void pd_node_policy_load_failed(pd_node_t *n, const char *error, int64_t now);

/* ---- policies under load (docs/policies.md) ---- */

/* Open / close the request budget (pd_policy_budget_begin/end with the
 * configured request limits) of the live set and of the shadow around all
 * the policy calls of one API request or one received message. Nested
 * pairs are one budget. */
void pd_node_budget_begin(pd_node_t *n);
void pd_node_budget_end(pd_node_t *n);

/* Shadow policies (--shadow-policies DIR): make the shadow's host (the live
 * one's limits and clock), empty until pd_node_shadow_load. dir is
 * borrowed (shown in status; the driver reads it). 0 or < 0. */
struct pd_shadow;
int pd_node_shadow_enable(pd_node_t *n, const char *dir);
/* The shadow (NULL: never enabled) and its directory (NULL: none, e.g. after
 * a promotion). */
struct pd_shadow *pd_node_shadow(pd_node_t *n);
const char *pd_node_shadow_dir(const pd_node_t *n);
/* Load the shadow's set (pd_shadow_load); a failure keeps the set it has
 * and is its last_error. PD_ENOENT without a shadow. */
int pd_node_shadow_load(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                        char *err, size_t cap);
/* The driver could not read the shadow's directory. */
void pd_node_shadow_load_failed(pd_node_t *n, const char *error, int64_t now);
/* POST /v1/policy/promote: the live host takes the shadow's set as a new
 * generation (pd_policy_adopt; counted as a successful reload), the live
 * policy directory becomes the shadow's, and the shadow is cleared (no
 * directory, nothing loaded; its totals stay). PD_ENOENT: no shadow set
 * loaded (nothing changes). */
int pd_node_shadow_promote(pd_node_t *n, int64_t now);

/* What policies see about an address: its book entry (if any), its
 * reputation record (if any; reputation 0, latency unknown otherwise), ban
 * state, routability, group and whether it is a private peer. */
void pd_node_peer_view(pd_node_t *n, const pd_netaddr_t *a, int64_t now, pd_peer_view_t *out);

/* The built-in score:
 *   reputation
 *   + 10 when in tried
 *   + 5 * 0.5^(days since last success / 7)   (0 when never)
 *   - 2 * failed attempts since the last success
 *   - min(latency_ms / 100, 5)                 (when known)
 *   - 1000 when banned. */
double pd_node_default_score(const pd_peer_view_t *v, int64_t now);
/* score.lua's score of v, or the built-in one. */
double pd_node_score(pd_node_t *n, const pd_peer_view_t *v, int64_t now);

/* Whom to dial: select.lua's picks (ids that are not in the book are
 * dropped), or pd_book_select when the hook is absent or fails. out holds
 * k ids. Returns the count; *by_policy (may be NULL) tells which decided. */
size_t pd_node_dial(pd_node_t *n, size_t k, int64_t now, uint32_t *out, bool *by_policy);
/* The same, telling select.lua about the caller's connections (its third
 * argument, ctx; NULL: an empty table). */
size_t pd_node_dial_ctx(pd_node_t *n, size_t k, const pd_policy_select_ctx_t *ctx, int64_t now,
                        uint32_t *out, bool *by_policy);

/* What POST /v1/events did. */
typedef struct pd_node_event_result {
  bool known;             /* the address was in the book before */
  bool was_tried;         /* ... in the tried table */
  const char *book_result; /* good: "moved_to_tried" | "already_tried" |
                              "tried_collision"; else NULL */
  double reputation;      /* the IP's reputation after the event */
  int misbehaviours;      /* its misbehaviour count after the event */
  bool by_policy;         /* reputation.lua decided (else the C default) */
  bool banned;            /* a ban was applied */
  pd_subnet_t ban_subnet; /* the IP (IPv6: its /ipv6_prefix, pd_node_set_ipv6_prefix) */
  int64_t ban_until;      /* 0 = permanent */
  char ban_reason[PD_BAN_REASON_MAX];
} pd_node_event_result_t;

/* Apply an event: the book's bookkeeping (attempt: Attempt without
 * counting a failure; failed: Attempt counting one; connected and
 * disconnected: Connected; good: Good with test-before-evict), then the
 * reputation: reputation.lua's on_event (which sees the peer as it is
 * after the book update, with the misbehaviour count *before* this event),
 * or pd_reputation_default with cfg.default_ban_secs. A verdict with a ban
 * bans the IP (reason: the verdict's, else `reason`, else the event name).
 * An address that is not in the book gets PD_ENOENT and nothing changes,
 * except for "misbehaved", which always applies. Other failures: < 0. */
int pd_node_event(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                  const char *reason, int64_t now, pd_node_event_result_t *out);

/* The same with the direction of the connection the node reports on:
 * inbound: a `good` does Connected only, never moving the entry to tried
 * (book_result "inbound"): an attacker who connects to the node must not
 * fill tried, exactly as over the overlay. */
int pd_node_event_dir(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                      const char *reason, bool inbound, int64_t now, pd_node_event_result_t *out);

/* The same with what set the event off, for the audit trail (a ban's
 * "trigger"): "node" (the node reported it: POST /v1/events, what
 * pd_node_event_dir says), "overlay" (peerd's own connections: what
 * pd_node_event says) or "wire" (a protocol violation peerd's overlay saw). */
/* It also names who reported it for the ban it may lead to (counted in
 * peerd_bans_total{cause}): pd_node_event and pd_node_event_dir report
 * PD_METRICS_BAN_REPUTATION (the node's POST /v1/events); the network
 * manager reports an overlay peer's misbehaviour as wire, pex or record. */
int pd_node_event_ex(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                     const char *reason, bool inbound, const char *trigger,
                     enum pd_metrics_ban_cause cause, int64_t now, pd_node_event_result_t *out);

/* ---- audit events (events.h) ---------------------------------------------
 * The driver installs one sink (fn NULL: none; copied); the node hands it
 * to its book (evictions, tried collisions, also after pd_node_set_book)
 * and emits itself: "ban" (a reputation verdict: by "policy" when
 * reputation.lua decided, else "reputation"; trigger "node" | "overlay" |
 * "wire"), "unban" by "expiry" (pd_node_tick), "policy_loaded" and
 * "policy_failed". The network manager and the API emit through
 * pd_node_emit. Without a sink nothing is built. */
void pd_node_set_events(pd_node_t *n, const pd_event_sink_t *sink);
/* The installed sink (never NULL; its fn may be NULL). */
const pd_event_sink_t *pd_node_events(const pd_node_t *n);
void pd_node_emit(pd_node_t *n, const pd_event_t *e);
/* Policy loads that say what started them ("start", "api", "SIGHUP",
 * "file change"; NULL: none) in their events; otherwise as
 * pd_node_policy_load and pd_node_policy_load_failed. */
int pd_node_policy_load_by(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles,
                           const char *trigger, int64_t now, char *err, size_t cap);
void pd_node_policy_load_failed_by(pd_node_t *n, const char *error, const char *trigger,
                                   int64_t now);

/* ---- records of other nodes ---- */

/* The records table (NULL until the first record is learnt). */
struct pd_rectable *pd_node_records(pd_node_t *n);

/* The DHT engine the driver runs (dht.h), for the API: GET /v1/dht,
 * /v1/dht/lookup, /v1/nodes/ID. Borrowed; NULL: no DHT (the default). */
struct pd_dht;
void pd_node_set_dht(pd_node_t *n, struct pd_dht *dht);
struct pd_dht *pd_node_dht(const pd_node_t *n);

/* Learn a verified record (bytes as signed, rec decoded from them) heard
 * from `source` (an IP) with the announcement time addr_time: keep it
 * (newer replaces older; stale and conflicting ones are refused) and put
 * the node in the book, placed by its discovery endpoint — or, without
 * one, by a service endpoint ("p2p" if it has one, else the first) marked
 * service-only (peerd cannot dial a node that runs no peerd). Returns the
 * table's verdict (enum pd_rec_put) or < 0; *book_rc (may be NULL) gets
 * pd_book_add's result (1 added, 0 known, < 0 refused) or 1 when nothing was
 * added because the record was stale/conflicting (then untouched: 0). */
int pd_node_learn_record(pd_node_t *n, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                         const pd_netaddr_t *source, int64_t addr_time, int64_t now, int *book_rc);

/* Which book entry a node's report names: an entry's own address, else a
 * service endpoint of a known record (its node's entry), else, by node id,
 * the record's entry or any entry with that id. PD_BOOK_NO_ID if none. */
uint32_t pd_node_find_peer(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *node_id);

/* What the node dials for a book entry: a service-only entry's own address
 * (node_id given only as claimed: proven false), or the service endpoint
 * `service` (NULL: "p2p", else the first by name) of the record of the
 * entry's node (proven true). false when the entry has no such endpoint
 * (a peerd's discovery endpoint is never handed out). */
typedef struct pd_node_endpoint {
  pd_netaddr_t addr;
  char service[PD_RECORD_NAME_MAX + 1]; /* "" for an address the node gave */
  bool has_id, proven;
  uint8_t node_id[PD_NODE_ID_LEN];
  bool peerd;        /* a peerd runs there (its record has a discovery endpoint) */
  pd_record_t rec;   /* valid when proven */
} pd_node_endpoint_t;
bool pd_node_dial_endpoint(pd_node_t *n, uint32_t id, const char *service, pd_node_endpoint_t *out);

/* Is a a private peer (--private-peer: by IP/subnet, or by node id when
 * id != NULL)? */
bool pd_node_is_private(const pd_node_t *n, const pd_netaddr_t *a, const uint8_t *id);

/* PEX: should `addr`, received from `from` (an IP, port 0), enter the book?
 * pex.lua's accept, or the built-in answer: yes. */
bool pd_node_pex_accept(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *addr_id,
                        const pd_netaddr_t *from, int64_t now);
/* DHT (docs/protocol.md §11.6): may the node v describes enter the routing
 * table? dht.lua's admit, or (hook absent, failing or tripped) the C default
 * pd_node_dht_admit_default. Only decides; the table is the caller's. */
bool pd_node_dht_admit(pd_node_t *n, const pd_policy_dht_node_t *v, int64_t now);
/* The C default: an unroutable node always (lab and test networks); a
 * routable one while its /24 (IPv4) or /48 (IPv6) has fewer than
 * PD_NODE_DHT_SUBNET_BUCKET nodes in the bucket and fewer than
 * PD_NODE_DHT_SUBNET_TABLE in the table (geth's limits, after Marcus et al.
 * 2018). */
#define PD_NODE_DHT_SUBNET_BUCKET 2
#define PD_NODE_DHT_SUBNET_TABLE 10
bool pd_node_dht_admit_default(const pd_policy_dht_node_t *v);
/* DHT: should rec, a verified record a lookup got from the DHT node at
 * `from` (its endpoint; the view is by IP as for pex), feed the book? dht.lua's
 * feed(node, from), node the view of rec's placed endpoint (pd_record_placed)
 * with its node id; or the built-in answer: yes. false when rec has no
 * endpoint to place. Only decides; adding to the book (with `from`'s group as
 * the source group) is the caller's. */
bool pd_node_dht_feed(pd_node_t *n, const pd_record_t *rec, const pd_netaddr_t *from,
                      int64_t now);

/* A verified record the DHT found, answered by the node at `from`: nothing
 * when the records table already holds this node at this sequence or a
 * higher one (decided before: no policy call, no book work); else
 * pd_node_dht_feed, and when it says yes pd_node_learn_record with from's
 * IP as the source (so the book places it by the answering node's group).
 * Both drivers' DHT hosts call this. true when the record was learnt. */
bool pd_node_dht_found(pd_node_t *n, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                       const pd_netaddr_t *from, int64_t now);

/* The rest of the glue both drivers' DHT hosts share (with the engine set
 * by pd_node_set_dht):
 * - admit: the table's candidate as dht.lua's admit sees it, through
 *   pd_node_dht_admit (the engine's admit hook);
 * - wants_more: the book holds fewer than PD_NODE_DHT_BOOK_TARGET
 *   addresses (the engine's want_more: fast random lookups);
 * - sync_record: hand this node's record to the engine when it changed;
 * - offer_records: up to max records held (PEX handshakes, the book's) to
 *   contact, round-robin from *cursor (the driver's: it outlives the node). */
#define PD_NODE_DHT_BOOK_TARGET 1000
struct pd_dht_admit_info;
bool pd_node_dht_admit_entry(pd_node_t *n, const struct pd_dht_admit_info *in, int64_t now);
bool pd_node_dht_wants_more(const pd_node_t *n);
void pd_node_dht_sync_record(pd_node_t *n);
void pd_node_dht_offer_records(pd_node_t *n, size_t *cursor, size_t max, int64_t now_ms);
/* PEX, one ADDR message from `from`: its count addresses decided in order
 * exactly as count calls of pd_node_pex_accept would decide them, with one
 * `from` table for the message (pd_policy_pex_batch). entry(ud, i, &addr,
 * &id) gives address i (id: its node id or NULL) just before its decision,
 * and may be asked for it earlier too (a read ahead, to prefetch): it must
 * have no side effects; false skips it. result(ud, i, accept) gets the
 * decision and may change the book before the next address is looked at. */
typedef bool (*pd_node_pex_entry_fn)(void *ud, size_t i, pd_netaddr_t *addr, const uint8_t **id);
typedef void (*pd_node_pex_result_fn)(void *ud, size_t i, bool accept);
void pd_node_pex_accept_batch(pd_node_t *n, const pd_netaddr_t *from, size_t count,
                              pd_node_pex_entry_fn entry, pd_node_pex_result_fn result, void *ud,
                              int64_t now);
/* PEX: the addresses to send `to` when it asks (GETADDR): a GetAddr sample
 * of the book (at most max, and at most 23% of the book when pct_cap; not
 * terrible), minus banned entries, private peers and `to` itself, filtered
 * by pex.lua's share (built-in: share). Writes ids to out (cap >= max);
 * returns the count. */
size_t pd_node_pex_sample(pd_node_t *n, const pd_netaddr_t *to, size_t max, bool pct_cap,
                          int64_t now, uint32_t *out, size_t cap);

/* Install (ops NULL: remove) the driver's view of the network; ops is
 * copied, ud borrowed. */
void pd_node_set_net(pd_node_t *n, const pd_node_net_ops_t *ops, void *ud);
/* Connected peers through the installed view (0 without one). */
size_t pd_node_peers(pd_node_t *n, int64_t now, pd_node_peer_info_t *out, size_t cap);
/* Network counters through the installed view: false (out untouched)
 * without one. */
bool pd_node_net_counters(pd_node_t *n, pd_metrics_net_t *out);

/* Operator control through the installed view. pd_node_net_control: the
 * view has disconnect, connect and dial_state (the daemon with its overlay
 * on); without, the wrappers do nothing (0 closed, PD_EINVAL, false). */
bool pd_node_net_control(const pd_node_t *n);
size_t pd_node_net_disconnect(pd_node_t *n, const pd_netaddr_t *addr, bool any_port,
                              const uint8_t *id, int64_t now, pd_node_closed_t *out, size_t cap);
int pd_node_net_connect(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                        const char **why);
bool pd_node_net_dial_state(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *id,
                            int64_t now, pd_node_dial_state_t *out);

/* ---- protected peers (POST /v1/protected) --------------------------------
 * A protected peer (by node id, by address, or by IP with any port) is never
 * refused or disconnected by the connection limits (a full inbound table,
 * the per-IP limit) and its book entry never loses its new-table slot or
 * its tried place to another address (the node's evict hooks keep it before
 * evict.lua or the built-in rule is asked). Bans still apply. Runtime only:
 * the set is not saved. */
#define PD_NODE_MAX_PROTECTED 256
typedef struct pd_node_protect {
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  bool has_addr;
  pd_netaddr_t addr; /* any_port: the port is ignored (0) */
  bool any_port;
  int64_t since;     /* Unix s it was protected */
} pd_node_protect_t;
/* 0 added, 1 already there (since kept), PD_EFULL at PD_NODE_MAX_PROTECTED,
 * PD_EINVAL without an id or address. */
int pd_node_protect(pd_node_t *n, const pd_node_protect_t *p, int64_t now);
/* 0 or PD_ENOENT (no entry with exactly that id / address). */
int pd_node_unprotect(pd_node_t *n, const pd_node_protect_t *p);
/* Misbehaviour bans of an IPv6 peer cover its /bits (0: 64, the default;
 * clamped to 16..128); IPv4 ones the address. --ipv6-prefix. */
void pd_node_set_ipv6_prefix(pd_node_t *n, unsigned bits);
/* Is a peer at a (may be NULL) with node id (may be NULL) protected? */
bool pd_node_is_protected(const pd_node_t *n, const pd_netaddr_t *a, const uint8_t *id);
/* Is any peer protected by node id? (An inbound connection from one can
 * only be recognised after the handshake.) */
bool pd_node_protects_ids(const pd_node_t *n);
/* The protected set, oldest first: writes up to cap, returns the count. */
size_t pd_node_protected(const pd_node_t *n, pd_node_protect_t *out, size_t cap);

/* ---- POST /v1/policy/check -------------------------------------------------
 * Load policy files into a scratch policy host with the node's limits,
 * never touching the set in force: each file alone (per-file errors), then
 * the whole set when every file loads. */
typedef struct pd_node_check_file {
  char name[32];
  bool ok;
  char error[512];                /* "select.lua:3: ..." when !ok */
  bool has_hook[PD_HOOK_COUNT];   /* hooks the file defines when ok */
} pd_node_check_file_t;
typedef struct pd_node_check {
  size_t nfiles;
  pd_node_check_file_t files[8];
  bool ok;              /* every file and the set loaded */
  char error[512];      /* the set's error when the files loaded alone but not together */
  char hash[65];        /* the set's hash when ok */
  size_t memory_bytes;  /* the set's Lua state when ok */
} pd_node_check_t;
void pd_node_policy_check(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                          pd_node_check_t *out);

/* Periodic housekeeping at now: expire bans, resolve tried collisions.
 * Returns true when a periodic save is due (the driver then saves). */
bool pd_node_tick(pd_node_t *n, int64_t now);
/* The earliest time (Unix s) at which pd_node_tick could change anything:
 * `now` while tried collisions are pending (they are re-examined, through
 * evict.lua, on every tick), else the next ban expiry or periodic save, or
 * INT64_MAX. A driver may tick every second (the daemon) or sleep until
 * then (the lab): the outcome is the same. */
int64_t pd_node_next_deadline(pd_node_t *n, int64_t now);

#endif
