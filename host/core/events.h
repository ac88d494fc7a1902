/* events — the core's audit events: what they are, how they travel, how
 * they are written (sans-I/O).
 *
 * Owns: the event kinds and their names (connected, disconnected, dial_ok,
 * dial_failed, ban, unban, evict, tried_collision, collision_resolved,
 * policy_loaded, policy_failed, bootstrap_started, bootstrap_finished,
 * below_minimum, minimum_recovered); pd_event_t, one event built on the
 * emitter's stack with its fields in order (strings and addresses are
 * borrowed: valid only during the sink call); the sink a driver installs
 * (a callback: the core never stores, counts or allocates for an event
 * when no sink is installed); the JSON object of an event, its
 * server-sent-events frame ("id: N\nevent: KIND\ndata: JSON\n\n"); the
 * `kinds=a,b` filter; a ring of recent frames (pd_event_ring_t) that a
 * driver keeps for replay.
 * Does not own: where events come from (addrbook, node, netmgr, api emit
 * them), sequence numbers and timestamps (the driver's ring assigns seq;
 * the driver stamps the wall clock), sockets, logs (the daemon).
 * No clock, no I/O.
 */
#ifndef PD_EVENTS_H
#define PD_EVENTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#include "netaddr.h"

enum pd_event_kind {
  PD_EV_CONNECTED = 0,      /* a peer finished its handshake and stays (inbound/outbound) */
  PD_EV_DISCONNECTED,       /* a connection ended (reason, remote, misbehaved) */
  PD_EV_DIAL_OK,            /* an outbound or feeler dial completed its handshake */
  PD_EV_DIAL_FAILED,        /* an outbound or feeler dial ended before that (reason) */
  PD_EV_BAN,                /* a ban was added (by api | policy | reputation) */
  PD_EV_UNBAN,              /* a ban was lifted (by api | expiry) */
  PD_EV_EVICT,              /* an entry lost its place: left the book, or tried -> new */
  PD_EV_TRIED_COLLISION,    /* a good address's tried slot is taken: test before evict */
  PD_EV_COLLISION_RESOLVED, /* ... and how that ended (replaced | kept) */
  PD_EV_POLICY_LOADED,      /* a policy set is in force (generation, hash) */
  PD_EV_POLICY_FAILED,      /* a policy load failed; the set in force stays */
  PD_EV_BOOTSTRAP_STARTED,  /* below the outbound minimum: a bootstrap round (seeds) */
  PD_EV_BOOTSTRAP_FINISHED, /* the minimum is reached again after bootstrapping */
  PD_EV_BELOW_MINIMUM,      /* outbound peers under the minimum for a while */
  PD_EV_MINIMUM_RECOVERED,  /* ... and back at it */
  PD_EV_POLICY_TRIPPED,     /* a policy hook failed too often in a row: the C default decides */
  PD_EV_KIND_COUNT
};

/* "connected", ...; NULL when out of range. */
const char *pd_event_kind_name(enum pd_event_kind k);
/* The kind named s (n bytes); -1 when none. */
int pd_event_kind_parse(const char *s, size_t n);
/* Whether a kind is a failure or a ban (logged at warn rather than info). */
bool pd_event_kind_warns(enum pd_event_kind k);

/* A comma-separated list of kind names ("connected,ban"), as in ?kinds=,
 * into a bit mask (bit k = kind k). Empty items are skipped; an empty list
 * is every kind. 0, or PD_EINVAL with *bad (may be NULL) pointing at the
 * first unknown name (not NUL-terminated: *bad_len bytes). */
int pd_event_kinds_parse(const char *list, uint32_t *mask, const char **bad, size_t *bad_len);
#define PD_EVENT_ALL_KINDS ((uint32_t)((1u << PD_EV_KIND_COUNT) - 1))

/* ---- one event --------------------------------------------------------- */

#define PD_EVENT_MAX_FIELDS 14

enum pd_event_ftype {
  PD_EVF_STR = 0, /* s; NULL is left out */
  PD_EVF_INT,
  PD_EVF_BOOL,
  PD_EVF_ADDR,   /* "host:port" */
  PD_EVF_ID,     /* a node id, 40 hex */
  PD_EVF_SUBNET, /* "1.2.3.0/24" (a bare IP for one host) */
  PD_EVF_TIME,   /* Unix s; 0 is written as null (e.g. a permanent ban's until) */
};

typedef struct pd_event_field {
  const char *key; /* static */
  enum pd_event_ftype type;
  union {
    const char *s;
    int64_t i;
    bool b;
    const pd_netaddr_t *addr;
    const uint8_t *id;
    const pd_subnet_t *subnet;
  };
} pd_event_field_t;

typedef struct pd_event {
  enum pd_event_kind kind;
  int64_t now_ms; /* the `now` of the call that emitted it (s * 1000 where the call has s) */
  bool warn;      /* worth a warning beyond its kind (a misbehaving peer's disconnect) */
  size_t nfields;
  pd_event_field_t f[PD_EVENT_MAX_FIELDS];
} pd_event_t;

void pd_event_init(pd_event_t *e, enum pd_event_kind kind, int64_t now_ms);
/* Append a field (beyond PD_EVENT_MAX_FIELDS it is dropped; NULL
 * pointers are skipped). Keys are static strings; values are borrowed. */
void pd_event_str(pd_event_t *e, const char *key, const char *s);
void pd_event_int(pd_event_t *e, const char *key, int64_t v);
void pd_event_bool(pd_event_t *e, const char *key, bool v);
void pd_event_addr(pd_event_t *e, const char *key, const pd_netaddr_t *a);
void pd_event_id(pd_event_t *e, const char *key, const uint8_t *id);
void pd_event_subnet(pd_event_t *e, const char *key, const pd_subnet_t *s);
void pd_event_time(pd_event_t *e, const char *key, int64_t t);

/* A field's value as text (a log line's value): the string itself, or
 * written into buf (cap >= PD_ADDR_STRLEN): numbers in decimal, booleans
 * "true"/"false", a TIME of 0 as "none". */
const char *pd_event_field_text(const pd_event_field_t *f, char *buf, size_t cap);

/* The sink a driver installs: called synchronously at the moment of the
 * decision, with an event valid only during the call. It must not call
 * back into the core. fn NULL: no sink (nothing is built). */
typedef void (*pd_event_fn)(void *ud, const pd_event_t *e);
typedef struct pd_event_sink {
  pd_event_fn fn;
  void *ud;
} pd_event_sink_t;

static inline bool pd_event_sink_on(const pd_event_sink_t *s) { return s && s->fn; }
static inline void pd_event_emit(const pd_event_sink_t *s, const pd_event_t *e) {
  if (s && s->fn) s->fn(s->ud, e);
}

/* The event as a JSON object: {"seq":N,"ts":MS,"kind":"...", fields...}
 * in field order. NULL when out of memory. */
json_t *pd_event_json(const pd_event_t *e, uint64_t seq, int64_t ts_ms);

/* ---- server-sent events ----------------------------------------------- */

/* "id: SEQ\nevent: KIND\ndata: JSON\n\n" into a malloc'd string (*len its
 * length). json is one line (JSON_COMPACT never writes a newline). 0 or
 * PD_ENOMEM. */
int pd_event_sse_frame(uint64_t seq, enum pd_event_kind kind, const char *json, size_t json_len,
                       char **out, size_t *len);

/* ---- the ring of recent events ------------------------------------------ */

typedef struct pd_event_rec {
  uint64_t seq;
  enum pd_event_kind kind;
  char *frame; /* the SSE frame (owned by the ring) */
  size_t len;
  size_t data_off, data_len; /* the JSON inside the frame */
} pd_event_rec_t;

typedef struct pd_event_ring pd_event_ring_t;

/* A ring of cap frames (cap >= 1). 0 or PD_ENOMEM / PD_EINVAL. */
int pd_event_ring_create(pd_event_ring_t **out, size_t cap);
void pd_event_ring_destroy(pd_event_ring_t *r);
/* Give e the next sequence number (1, 2, ...), encode it (stamped ts_ms)
 * and keep its frame, dropping the oldest when full. Returns the kept
 * record (valid until the next push) or NULL when out of memory (the
 * sequence number is used up all the same, so a gap shows it). *json_out
 * (may be NULL) gets the JSON object (the caller decrefs it). */
const pd_event_rec_t *pd_event_ring_push(pd_event_ring_t *r, const pd_event_t *e, int64_t ts_ms,
                                         json_t **json_out);
/* Records held, oldest first: i in [0, count). */
size_t pd_event_ring_count(const pd_event_ring_t *r);
const pd_event_rec_t *pd_event_ring_get(const pd_event_ring_t *r, size_t i);
/* The index of the first record with seq > after (count when none). */
size_t pd_event_ring_after(const pd_event_ring_t *r, uint64_t after);
/* The last sequence number given (0: none yet). */
uint64_t pd_event_ring_last_seq(const pd_event_ring_t *r);

#endif
