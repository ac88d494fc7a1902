/* dht — the Kademlia DHT engine of one peerd (sans-I/O). Spec:
 * docs/protocol.md §11.
 *
 * Owns: what happens to each received datagram (decode, challenge, open,
 * handshake, answer), the requests this node has out (PING, FINDNODE) with
 * their timeouts and what their answers do (the table's ping-before-evict
 * and revalidation results, records fetched, lookup progress), WHOAREYOU
 * rate limits and the challenge table, the amplification rule (several-packet
 * answers only to verified endpoints), iterative lookups (α in flight,
 * k closest, hops), the discovery loop (self lookup at start, random-target
 * lookups fast while the driver says it wants more, slow otherwise),
 * bootnodes, counters.
 * Does not own: sockets and timers (the driver performs SEND actions and
 * calls on_tick by next_deadline), the packet codec (dhtwire), crypto and
 * sessions (dhtsess), the table's rules (dhttable; the admit decision is a
 * callback: dht.lua through the node, or the built-in rule), what a found
 * record does to the book (a callback), the clock, entropy (handed in).
 *
 * Driver loop (as netmgr): events in — pd_dht_on_packet (a datagram),
 * pd_dht_on_tick (any time; due work runs), pd_dht_add_node (a bootnode or
 * a record heard elsewhere), pd_dht_lookup_start (the API); actions out —
 * drain `while (pd_dht_poll(d, &a))`: SEND (a datagram to a.to), LOOKUP_DONE
 * (a.lookup_id finished: read it with pd_dht_lookup_get). Then arm a timer
 * for pd_dht_next_deadline_ms. A SEND's bytes stay valid until the next
 * call into the engine.
 */
#ifndef PD_DHT_H
#define PD_DHT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dhtsess.h"
#include "dhttable.h"
#include "dhtwire.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"
#include "rng.h"

#define PD_DHT_ALPHA 3
#define PD_DHT_REQUEST_TIMEOUT_MS 1000
#define PD_DHT_REVALIDATE_MS 5000
#define PD_DHT_LOOKUP_MAX_QUERIES 64
#define PD_DHT_LOOKUP_MAX_CANDIDATES 64
#define PD_DHT_MAX_CHALLENGES 256
#define PD_DHT_CHALLENGE_TTL_MS 5000
#define PD_DHT_CHALLENGE_GAP_MS 1000  /* no second WHOAREYOU to one endpoint within this */
#define PD_DHT_MAX_REQUESTS 512
#define PD_DHT_MAX_LOOKUPS 32
#define PD_DHT_LOOKUP_FAST_MS 2000    /* random lookups while the driver wants more records */
#define PD_DHT_LOOKUP_SLOW_MS 60000   /* ... otherwise */

/* Rejection reasons: the codec's (pd_dhtwire_reason_t) then the engine's.
 * Names are metric labels (peerd_dht_rejected_total{reason}). */
enum pd_dht_reason {
  PD_DHT_R_ID = PD_DHTW_R_COUNT, /* "dht_id": a public key that does not hash to its id */
  PD_DHT_R_SIGNATURE,            /* "dht_signature" */
  PD_DHT_R_DECRYPT,              /* "dht_decrypt": a handshake whose message does not open */
  PD_DHT_R_REPLAY,               /* "dht_replay" */
  PD_DHT_R_UNSOLICITED,          /* "dht_unsolicited": WHOAREYOU/HANDSHAKE/response nobody asked for */
  PD_DHT_R_RECORD,               /* "dht_record": a record that does not verify (§10) */
  PD_DHT_R_DISTANCE,             /* "dht_distance": a NODES record at a distance not asked */
  PD_DHT_R_THROTTLED,            /* "dht_throttled": a WHOAREYOU not sent (rate, full table) */
  PD_DHT_R_COUNT
};
const char *pd_dht_reason_name(int reason);

/* Where a record's node takes DHT packets: its discovery endpoint, with the
 * port of its "dht" attribute when it has one (a peerd whose --dht-listen
 * port differs from its overlay port says so there). false: no discovery
 * endpoint (no peerd runs there) or a bad attribute. */
#define PD_DHT_PORT_ATTR "dht"
bool pd_dht_record_endpoint(const pd_record_t *r, pd_netaddr_t *ep);

typedef struct pd_dht_config {
  const pd_identity_t *self;     /* borrowed */
  const pd_record_auth_t *auth;  /* NULL: ed25519 */
  bool null_cipher;              /* the lab */
  bool passive;                  /* answer only: no bootstrap, loop, revalidation or
                                    lookups (pd_dht_add_node / lookup_start: PD_EINVAL);
                                    a daemon whose dialer is off (--max-outbound 0) */
  const char *network;           /* records of other networks are refused */
  unsigned k, alpha;             /* 0: 16, 3 */
  int64_t request_timeout_ms;    /* 0: 1000 */
  int64_t revalidate_ms;         /* 0: 5000; < 0: never */
  int64_t lookup_fast_ms, lookup_slow_ms; /* 0: defaults; < 0: no random lookups */
  size_t max_sessions;           /* 0: 1024 */
  /* Randomness for ephemeral keys and challenges (32 bytes at a time);
   * NULL: drawn from the pd_rng_t (tests, the lab). */
  void (*secret_fn)(void *ctx, uint8_t *buf, size_t len);
  void *secret_ctx;
  /* Admission to the table (dht.lua's admit); NULL: pd_dht_admit_default. */
  pd_dht_admit_fn admit;
  void *admit_ctx;
  /* A verified record (not this node's) learnt from the node at `from`:
   * lookups' NODES, record fetches, handshakes. NULL: ignored. */
  void (*found)(void *ctx, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                const pd_netaddr_t *from, int64_t now_ms);
  void *found_ctx;
  /* Does the driver want more records now (the book below its target)?
   * Picks the fast or the slow random-lookup interval. NULL: slow. */
  bool (*want_more)(void *ctx);
  void *want_ctx;
} pd_dht_config_t;

typedef struct pd_dht pd_dht_t;

enum pd_dht_action_kind { PD_DHT_A_SEND = 1, PD_DHT_A_LOOKUP_DONE };
typedef struct pd_dht_action {
  int kind;
  pd_netaddr_t to;       /* SEND */
  const uint8_t *bytes;  /* SEND */
  size_t len;
  uint64_t lookup_id;    /* LOOKUP_DONE */
} pd_dht_action_t;

/* A new engine. *cfg is copied (pointers in it are borrowed); rng is
 * borrowed. NULL on bad config or allocation failure. */
pd_dht_t *pd_dht_new(const pd_dht_config_t *cfg, pd_rng_t *rng, int64_t now_ms);
void pd_dht_free(pd_dht_t *d);

/* This node's record (copied; its seq is read from it). 0 or PD_EINVAL. */
int pd_dht_set_record(pd_dht_t *d, const uint8_t *bytes, size_t len);

/* A datagram from `from`. Returns 0 when it was used, or a reason > 0
 * (enum pd_dht_reason / pd_dhtwire_reason_t; counted) when it was refused. */
int pd_dht_on_packet(pd_dht_t *d, const pd_netaddr_t *from, const uint8_t *buf, size_t len,
                     int64_t now_ms);
void pd_dht_on_tick(pd_dht_t *d, int64_t now_ms);
/* When on_tick next has work (INT64_MAX: none). */
int64_t pd_dht_next_deadline_ms(const pd_dht_t *d);
bool pd_dht_poll(pd_dht_t *d, pd_dht_action_t *a);

/* Contact a node: ping `id` at ep; when it answers (and its record, fetched
 * if not given, names ep as its discovery endpoint) it may enter the table.
 * rec may be NULL (an ID@host:port bootnode). 0, PD_EINVAL (own id, bad
 * record), PD_EFULL (too many requests out), PD_EEXIST (already in the
 * table: nothing sent). */
int pd_dht_add_node(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                    const uint8_t *rec, size_t rec_len, int64_t now_ms);

/* ---- lookups ---- */
typedef struct pd_dht_result {
  uint8_t id[PD_DHT_ID_LEN];
  pd_netaddr_t ep;
  uint8_t rec[PD_DHT_RECORD_MAX];
  uint16_t rec_len;
  uint8_t hop;
  bool answered;          /* it answered a FINDNODE of this lookup */
} pd_dht_result_t;

typedef struct pd_dht_lookup_info {
  uint64_t id;
  uint8_t target[PD_DHT_ID_LEN];
  bool done, user;        /* user: started by pd_dht_lookup_start, not the loop */
  int64_t started_ms, ended_ms;
  unsigned queries, answered, failed;
  unsigned hops;          /* hop at which the closest result was learnt */
  bool found;             /* a record of the target itself was learnt */
  size_t nresults;        /* the k closest that answered, closest first */
  const pd_dht_result_t *results;
  const pd_dht_result_t *target_rec; /* found: the target's record (may not have answered) */
} pd_dht_lookup_info_t;

/* Start an iterative lookup for target. 0 and *id; PD_EFULL (too many
 * running). A lookup with nothing to ask ends at once (LOOKUP_DONE). */
int pd_dht_lookup_start(pd_dht_t *d, const uint8_t target[PD_DHT_ID_LEN], int64_t now_ms,
                        uint64_t *id);
/* A lookup's state (running or done); false when unknown. Pointers valid
 * until the next call into the engine. */
bool pd_dht_lookup_get(pd_dht_t *d, uint64_t id, pd_dht_lookup_info_t *out);
/* Forget a finished user lookup (the loop's own are forgotten when done). */
void pd_dht_lookup_release(pd_dht_t *d, uint64_t id);

/* ---- counters and state ---- */
typedef struct pd_dht_stats {
  uint64_t packets_in[3], packets_out[3];      /* by kind */
  uint64_t bytes_in, bytes_out;
  uint64_t msgs_in[5], msgs_out[5];            /* by message type (1..4) */
  uint64_t rejected[PD_DHT_R_COUNT];
  uint64_t handshakes_ok, handshakes_failed;
  uint64_t requests, timeouts;
  uint64_t lookups_started, lookups_done, lookups_found;
  uint64_t lookup_hops_sum;                    /* over done lookups */
  uint64_t records_found;                      /* found callbacks */
  uint64_t table_added, table_removed, table_refused;
  uint64_t sessions_evicted;
  bool has_observed;
  pd_netaddr_t observed;                       /* the last endpoint a PONG said we have */
} pd_dht_stats_t;

const pd_dht_stats_t *pd_dht_stats(const pd_dht_t *d);
const pd_dht_table_t *pd_dht_table(const pd_dht_t *d);
size_t pd_dht_sessions(const pd_dht_t *d);
size_t pd_dht_requests_out(const pd_dht_t *d);
size_t pd_dht_lookups_running(const pd_dht_t *d);
bool pd_dht_passive(const pd_dht_t *d);

#endif
