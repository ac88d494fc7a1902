/* netmgr — the network manager: every connection of one peerd (sans-I/O).
 *
 * Owns: the table of connections (named by a uint64 conn id it assigns),
 * one pd_peer state machine per connection, the pd_dialer (whom to dial,
 * limits, backoff, feelers, anchors, bootstrap) and the glue between them
 * and the node: dial candidates from pd_node_dial / the new table; dial and
 * handshake outcomes to the dialer, the book and the reputation policy
 * (pd_node_event: "failed", "good", "connected", "misbehaved"); duplicate
 * connections; received addresses through pd_node_pex_accept and pd_book_add
 * (source = the peer's IP, 2 h time penalty as Bitcoin Core); GETADDR
 * answers from a per-requesting-network cache (IPv4/IPv6 x routable); latency to the reputation
 * table; seed mode (crawl and disconnect); counters for /metrics and the
 * peer list for GET /v1/peers.
 * Does not own: sockets, DNS, timers, clocks, entropy, files (the driver:
 * daemon.c with libuv, or the scenario lab with simulated links), the frame
 * codec (wire), the handshake and per-connection protocol (peer), the book,
 * policies and periodic node housekeeping (node: the driver still calls
 * pd_node_tick and saves the book), anchors.json (the driver writes what
 * pd_netmgr_anchors returns and passes it back in the config at start).
 *
 * Driver loop:
 *   events in:  pd_netmgr_on_tick (timer / any time), on_inbound (TCP
 *               accept), on_connected (an outbound TCP connect succeeded),
 *               on_dial_failed (it did not), on_bytes, on_closed (remote
 *               closed / socket error), on_resolved (DNS answer).
 *   actions out: after every event, drain `while (pd_netmgr_poll(m, &a))`
 *               and perform a: DIAL, SEND, CLOSE, RESOLVE. Then arm a timer
 *               for pd_netmgr_next_deadline_ms(m).
 * Pointers inside an action (send bytes, host name) stay valid until the
 * next call into the manager (pd_netmgr_poll included).
 *
 * Connection ids: DIAL carries a new id (the driver connects and reports
 * on_connected or on_dial_failed for it); on_inbound returns a new id. A
 * CLOSE action ends the id: the driver writes the SENDs queued before it
 * (best effort) and closes the socket; it need not call on_closed for it
 * (events for a dead id are ignored with PD_ENOENT). on_closed ends the id
 * from the driver's side; no CLOSE follows. A CLOSE may also name a
 * connection still being dialled (no on_connected yet): the driver cancels
 * the connect (this happens when the driver did not answer a DIAL within
 * the dialer's inflight_timeout, or at shutdown).
 *
 * Limits: at accept, banned IPs, the per-IP limit and a full inbound table
 * are refused at once (a full table is let through to the handshake only
 * when unconditional or protected ids are configured, or for a protected
 * address), and
 * at most max_pending_inbound connections may be in the handshake, of
 * them at most max_pending_inbound_per_ip from one IP and
 * max_pending_inbound_per_group from one network group (refused
 * "per_ip_limit" / "pending_group"; a protected address is exempt); after
 * the handshake the dialer's verdict with the proven ID decides (GOODBYE
 * too_many_peers / self / duplicate otherwise). A protected peer
 * (pd_node_protect: by id or address) is never refused by the inbound or
 * per-IP limit; bans, self and duplicates still apply.
 *
 * The listen address must be a valid IP (not 0.0.0.0 / ::): an unspecified
 * one is not announced (HELLO has_listen = 0), so peers cannot learn our
 * address from us; the driver should pass the --listen address when it is
 * specific, or an announce address.
 *
 * Time: `now_ms` is Unix time in milliseconds from the driver's clock (the
 * dialer, book and node get now_ms / 1000). The manager calls nothing that
 * blocks and never reads a clock; all randomness comes from the pd_rng_t
 * handed in (and, for HELLO challenges, the optional challenge callback).
 * Same config, seeds and event sequence => same actions.
 *
 * Rules worth knowing:
 * - Only connections this peerd made (OUTBOUND and FEELER) move an address
 *   to tried (node event "good" when the handshake completes). An inbound
 *   peer never touches tried; its announced listen address (HELLO, or its
 *   record's discovery endpoint) is offered to the book's new table like a
 *   received ADDR entry -- only when it names the IP the peer connects
 *   from, or the book has it tried under the peer's node id; otherwise it
 *   is neither added nor relayed (listen_ignored).
 * - Duplicates: a second READY connection to a node ID already connected
 *   is closed (GOODBYE "duplicate"). When the two have opposite directions
 *   both sides keep the one dialled by the smaller node ID, so a
 *   simultaneous cross-dial does not end with both closed; otherwise the
 *   newer one is closed.
 * - Relay (as Bitcoin Core): an address that is new to the book, came in an
 *   unsolicited ADDR of at most relay_max (10) entries and is fresh (its
 *   time within PD_NETMGR_RELAY_FRESH_S, 10 min) goes on to two random
 *   ready peers other than its source. Each peer gathers what it is sent in
 *   a queue (at most 1,000; full: a random entry is replaced) flushed as one
 *   ADDR after an exponential delay of mean relay_trickle_ms (30 s, Bitcoin's
 *   AVG_ADDRESS_BROADCAST_INTERVAL) drawn when the queue starts.
 * - GETADDR cache: keyed by the requester's network (IPv4 / IPv6) and
 *   whether it is routable (as Bitcoin Core: per network, not per /16, so
 *   asking from many groups does not get many samples); an entry is
 *   built from pd_node_pex_sample (at most 1,000, 23% cap) and reused
 *   until getaddr_cache_ttl_ms passes, or sooner when the book has grown
 *   while under 250 entries (it is shared whole then) or has at least
 *   doubled since it was built (a young node's tiny first answer is not
 *   frozen for a day; beyond 250 the number of such rebuilds is
 *   logarithmic in the book size, so asking again cannot scrape the book).
 *   Seed mode does not cache: every GETADDR gets a fresh sample, so
 *   newcomers bootstrapping together spread over the network.
 * - Starving: below the outbound minimum with nothing left to dial (every
 *   known address already connected, typically inbound), the manager asks
 *   its ready peers -- inbound ones too -- for addresses, once per peer per
 *   5 minutes, so it can learn a node it may still dial.
 * - Small book: below book_want (1,000) addresses the manager asks one
 *   ready peer (inbound ones too) for addresses every 30 s, at random among
 *   those not asked in the last 10 min (as CometBFT's PEX below 1,000;
 *   outbound peers count as asked when they became ready): a node whose
 *   outbound slots filled early does not keep only the partial answers it
 *   got then. The interval doubles (up to 24 h) while asks bring nothing
 *   new (a network smaller than book_want is known whole) and is back at
 *   30 s once the book grows. Never in seed mode.
 * - Seed mode: an address is crawled again only seed_recrawl_ms (1 h) after
 *   the book last tried it, so a seed's crawl rate is its book size per hour
 *   at most, not its dial concurrency.
 * - Seed mode: outbound connections are closed with GOODBYE "seed_done"
 *   once the GETADDR answer arrived (or seed_crawl_timeout_ms after the
 *   handshake); inbound ones after we answered their GETADDR (or the same
 *   timeout). Feelers close right after the handshake in every mode.
 */
#ifndef PD_NETMGR_H
#define PD_NETMGR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dialer.h"
#include "identity.h"
#include "netaddr.h"
#include "node.h"
#include "peer.h"
#include "rng.h"
#include "wire.h"

#define PD_NETMGR_GETADDR_TTL_MS (24LL * 3600 * 1000) /* GETADDR cache lifetime default */
#define PD_NETMGR_RELAY_PENALTY 7200                    /* s, nTime penalty of relayed addrs */
#define PD_NETMGR_RELAY_TRICKLE_MS (30 * 1000)          /* mean delay of a peer's relay ADDR */
#define PD_NETMGR_RELAY_FRESH_S 600                     /* only addrs this fresh are relayed */
#define PD_NETMGR_SEED_CRAWL_TIMEOUT_MS (30 * 1000)     /* seed mode: longest crawl connection */
#define PD_NETMGR_SEED_RECRAWL_MS (3600 * 1000)         /* seed mode: least time between crawls */
#define PD_NETMGR_BOOK_WANT 1000                        /* below: ask a peer for addresses every 30 s */
#define PD_NETMGR_TICK_MS 1000                          /* dialer cadence */
#define PD_NETMGR_PENDING_PER_IP 2                      /* inbound handshakes at once from one IP */
#define PD_NETMGR_PENDING_PER_GROUP 4                   /* ... from one network group (/16, /32) */
#define PD_NETMGR_GETADDR_CACHE_MAX 4                   /* networks cached: IPv4/IPv6 x routable or not */

/* Draws 32 fresh secret random bytes (the daemon: randombytes_buf): the HELLO
 * challenge, and the seed of the ephemeral key of each connection. */
typedef void (*pd_netmgr_challenge_fn)(void *ud, uint8_t out[PD_WIRE_CHALLENGE_LEN]);

typedef struct pd_netmgr_config {
  /* Announced in HELLO (has_listen false: none). Also given to the dialer as
   * one of our own addresses (never dialled). */
  bool has_listen;
  pd_netaddr_t listen;
  uint8_t magic[PD_WIRE_MAGIC_LEN]; /* network magic */
  const char *network;              /* network id; NULL = PD_WIRE_NETWORK_DEFAULT; copied */
  const char *agent;                /* user agent; NULL = peer default; copied */
  /* Dialer settings and lists (seeds, persistent, unconditional ids,
   * private ids, self addresses), copied by the dialer at create. The
   * manager sets has_self_id/self_id from the identity and adds `listen` to
   * self_addrs itself. allow_private should match the node's. */
  pd_dialer_config_t dialer;
  pd_peer_config_t peer;            /* per-connection protocol settings (copied) */
  bool seed_mode;                   /* --seed-mode: crawl, answer, disconnect */
  int64_t seed_crawl_timeout_ms;    /* 0 = PD_NETMGR_SEED_CRAWL_TIMEOUT_MS */
  size_t book_want;                 /* a book below this many addresses asks one ready peer
                                       for more every 30 s (each peer at most once per
                                       10 min); 0 = PD_NETMGR_BOOK_WANT, SIZE_MAX = never */
  int64_t seed_recrawl_ms;          /* seed mode: an address is crawled at most once per this
                                       (its book last_try / last_success); 0 = default 1 h,
                                       < 0 = no limit */
  int64_t getaddr_cache_ttl_ms;     /* 0 = PD_NETMGR_GETADDR_TTL_MS */
  int64_t relay_time_penalty;       /* s subtracted from relayed addrs' time; 0 = default 7200,
                                       < 0 = none */
  int64_t relay_trickle_ms;         /* relayed addresses wait per peer for one ADDR sent after an
                                       exponential delay of this mean; 0 = default 30 s,
                                       < 0 = each relay at once */
  int64_t tick_interval_ms;         /* dialer cadence; 0 = PD_NETMGR_TICK_MS */
  size_t max_pending_inbound;       /* inbound connections still in handshake; 0 = max_inbound */
  /* Of those, at most this many from one IP / one network group (so silent
   * connects from one host or /16 cannot take every handshake slot).
   * pd_netmgr_config_default sets PD_NETMGR_PENDING_PER_IP / _PER_GROUP;
   * 0 = no such limit. Protected addresses are exempt. */
  size_t max_pending_inbound_per_ip;
  size_t max_pending_inbound_per_group;
  /* Anchors (from anchors.json) dialled first; copied. */
  const pd_dial_target_t *anchors;
  size_t nanchors;
  /* HELLO challenges: NULL draws them from rng (tests, the lab). */
  pd_netmgr_challenge_fn challenge_fn;
  void *challenge_ud;
  /* The handshake's signature scheme (pd_peer_auth_t); NULL = ed25519, as
   * the daemon always uses. Borrowed: must outlive the manager. */
  const pd_peer_auth_t *auth;
  /* Node records (docs/protocol.md §10): our record goes into every HELLO
   * (the node's, pd_node_self; without one the manager makes one naming
   * only its discovery endpoint), peers' records are verified and kept
   * (pd_node_learn_record), ADDR entries carry their records, and a new
   * version of ours is sent to every peer at once. no_records: none of it
   * (HELLOs without a record; records received are still verified). */
  bool no_records;
} pd_netmgr_config_t;

/* Defaults: no listen address, the default magic and network, dialer and
 * peer defaults, not seed mode, the default TTL/penalty/timeouts. */
void pd_netmgr_config_default(pd_netmgr_config_t *cfg);

typedef enum pd_netmgr_action_type {
  PD_NETMGR_A_DIAL = 1, /* connect conn_id to dial.addr; report on_connected / on_dial_failed */
  PD_NETMGR_A_SEND,     /* write send.data[0..len) on conn_id */
  PD_NETMGR_A_CLOSE,    /* flush queued SENDs best effort, then close conn_id (id is dead) */
  PD_NETMGR_A_RESOLVE,  /* resolve resolve.host (port resolve.port); answer on_resolved(token) */
} pd_netmgr_action_type_t;

typedef struct pd_netmgr_action {
  pd_netmgr_action_type_t type;
  uint64_t conn_id; /* DIAL, SEND, CLOSE */
  union {
    struct {
      pd_dial_target_t target;   /* address, and the node ID it must prove when has_id */
      enum pd_dial_reason reason;
      bool feeler;               /* a short test connection */
    } dial;
    struct {
      const uint8_t *data;
      size_t len;
    } send;
    struct {
      const char *reason; /* static label: peer close reason or "duplicate", "seed_done", ... */
      bool misbehaved;    /* reported to reputation as misbehaviour */
    } close;
    struct {
      uint64_t token;
      const char *host;
      uint16_t port;
    } resolve;
  };
} pd_netmgr_action_t;

typedef struct pd_netmgr pd_netmgr_t;

/* Create. node, identity and rng are borrowed and must outlive the manager
 * (rng: the dialer's jitter, peers' nonces; may be the node's rng). The
 * lists in cfg are copied. Returns 0, PD_EINVAL (*why set; why may be NULL)
 * or PD_ENOMEM. */
int pd_netmgr_create(pd_netmgr_t **out, const pd_netmgr_config_t *cfg, pd_node_t *node,
                     const pd_identity_t *identity, pd_rng_t *rng, int64_t now_ms,
                     const char **why);
/* A ban added anywhere (the API, a policy) disconnects the connected peers
 * inside it at once: close them (GOODBYE banned) when the ban list changed
 * since the last check. Every tick does it; a driver calls it after an API
 * request too. Then poll. */
void pd_netmgr_enforce_bans(pd_netmgr_t *m, int64_t now_ms);

/* Send an ADDR of the caller's choosing on a READY connection, sealed like
 * any frame of that session (the lab's attackers flood with it). Returns
 * 0, PD_ENOENT (no such connection), PD_EINVAL (not READY, bad entries) or
 * PD_ENOMEM. */
int pd_netmgr_send_addrs(pd_netmgr_t *m, uint64_t conn_id, const pd_wire_addr_entry_t *entries,
                         size_t count, int64_t now_ms);

/* --- operator control (the API through the driver; then poll) ---------- */
/* Close (GOODBYE "normal", text "operator") every connection to node id
 * (may be NULL) or at addr (may be NULL; any_port: any connection from or
 * to that IP; else the socket address, the address dialled or the listen
 * address an inbound peer announced). Up to cap closed ones are described
 * in out. Returns how many were closed. */
size_t pd_netmgr_disconnect(pd_netmgr_t *m, const pd_netaddr_t *addr, bool any_port,
                            const uint8_t *id, int64_t now_ms, pd_node_closed_t *out, size_t cap);
/* Dial addr now (OUTBOUND; id: the node id the handshake must prove, or
 * NULL), past the outbound limit. The caller checked acceptability and
 * bans. 0 (*conn_id set when not NULL), PD_EEXIST (connected or a dial in
 * flight to it), PD_EINVAL (ourselves), PD_EFULL (dialling off: max_outbound
 * 0, or shutting down), PD_ENOMEM; *why says which. */
int pd_netmgr_connect(pd_netmgr_t *m, const pd_dial_target_t *t, int64_t now_ms,
                      uint64_t *conn_id, const char **why);
/* The dialer's view of t for explain (pd_dialer_explain). */
void pd_netmgr_dial_state(pd_netmgr_t *m, const pd_dial_target_t *t, int64_t now_ms,
                          pd_node_dial_state_t *out);

/* Frees everything (no actions; call pd_netmgr_shutdown first for GOODBYEs). */
void pd_netmgr_destroy(pd_netmgr_t *m);

/* --- events ------------------------------------------------------------- */
/* Timers: peers' deadlines, the dialer (every tick_interval_ms), seed-mode
 * timeouts, GETADDR cache expiry. Any time is fine. Returns 0. */
int pd_netmgr_on_tick(pd_netmgr_t *m, int64_t now_ms);

/* Why an inbound connection is refused (metric label: pd_netmgr_refuse_name). */
typedef enum pd_netmgr_refuse {
  PD_NETMGR_ACCEPT = 0,          /* "accept" */
  PD_NETMGR_REFUSE_FULL,         /* "inbound_full" (dialer limit or too many in handshake) */
  PD_NETMGR_REFUSE_PER_IP,       /* "per_ip_limit" */
  PD_NETMGR_REFUSE_BANNED,       /* "banned" */
  PD_NETMGR_REFUSE_ERROR,        /* "error": bad argument, no memory */
  PD_NETMGR_REFUSE_PENDING_GROUP, /* "pending_group": its group has too many in handshake */
  PD_NETMGR_REFUSE_COUNT
} pd_netmgr_refuse_t;

/* A TCP connection was accepted from remote. PD_NETMGR_ACCEPT: *conn_id is
 * its new id and our HELLO is queued (poll). Otherwise the driver closes
 * the socket at once (no id exists). */
pd_netmgr_refuse_t pd_netmgr_on_inbound(pd_netmgr_t *m, const pd_netaddr_t *remote, int64_t now_ms,
                                        uint64_t *conn_id);
/* A DIALed connection is up (TCP): our HELLO is queued. 0, or PD_ENOENT
 * when the id is no longer known (the dial was given up on): the driver
 * then closes the socket. */
int pd_netmgr_on_connected(pd_netmgr_t *m, uint64_t conn_id, int64_t now_ms);
/* A DIAL failed before connecting (REFUSED, TIMEOUT, UNREACHABLE, ERROR).
 * The id is dead. 0 or PD_ENOENT. */
int pd_netmgr_on_dial_failed(pd_netmgr_t *m, uint64_t conn_id, enum pd_dial_outcome outcome,
                             int64_t now_ms);
/* Bytes read on conn_id (not kept after the call). 0, PD_ENOENT. */
int pd_netmgr_on_bytes(pd_netmgr_t *m, uint64_t conn_id, const uint8_t *buf, size_t len,
                       int64_t now_ms);
/* The remote closed conn_id or the socket failed. The id is dead; no CLOSE
 * follows. 0 or PD_ENOENT. */
int pd_netmgr_on_closed(pd_netmgr_t *m, uint64_t conn_id, int64_t now_ms);
/* The answer to RESOLVE(token): addrs[0..n) (n = 0: failed; port 0 takes
 * the endpoint's port). 0 or PD_ENOENT (unknown token). */
int pd_netmgr_on_resolved(pd_netmgr_t *m, uint64_t token, const pd_netaddr_t *addrs, size_t n,
                          int64_t now_ms);

/* Shutdown: GOODBYE "normal" and CLOSE for every connection (poll them),
 * after which no DIAL is emitted. Take anchors (pd_netmgr_anchors) BEFORE
 * calling this. */
void pd_netmgr_shutdown(pd_netmgr_t *m, int64_t now_ms);

/* --- actions ------------------------------------------------------------ */
bool pd_netmgr_poll(pd_netmgr_t *m, pd_netmgr_action_t *out);
/* When pd_netmgr_on_tick next has work (Unix ms); INT64_MAX if never. */
int64_t pd_netmgr_next_deadline_ms(const pd_netmgr_t *m);

/* --- introspection ------------------------------------------------------ */
typedef enum pd_netmgr_conn_state {
  PD_NETMGR_DIALING = 0,   /* DIAL emitted, TCP not up yet */
  PD_NETMGR_HANDSHAKE = 1, /* TCP up, handshake running */
  PD_NETMGR_READY = 2,     /* authenticated */
} pd_netmgr_conn_state_t;

typedef struct pd_netmgr_peer_info {
  uint64_t conn_id;
  bool has_id;                        /* node ID known (READY, or dialled ID@) */
  uint8_t id[PD_NODE_ID_LEN];
  char id_hex[PD_NODE_ID_HEXLEN + 1]; /* "" when !has_id */
  pd_netaddr_t addr;                  /* remote socket address (outbound: the dialled one) */
  bool has_listen;                    /* the listen address it announced */
  pd_netaddr_t listen;
  enum pd_conn_dir dir;               /* INBOUND, OUTBOUND, FEELER */
  pd_netmgr_conn_state_t state;
  int64_t since_ms;                   /* connection began (DIAL / accept) */
  int64_t ready_ms;                   /* 0 until READY */
  uint64_t bytes_in, bytes_out;
  int64_t latency_ms;                 /* -1 unknown */
  double score;                       /* pd_node_score of the peer's book address */
  char agent[PD_WIRE_AGENT_MAX + 1];
  bool is_protected;                  /* pd_node_is_protected (its id or address) */
} pd_netmgr_peer_info_t;

/* Connections in conn id order (oldest first): writes up to cap, returns
 * the total number. now_ms is for the score. */
size_t pd_netmgr_peers(pd_netmgr_t *m, int64_t now_ms, pd_netmgr_peer_info_t *out, size_t cap);
/* Number of connections (any state). */
size_t pd_netmgr_conn_count(const pd_netmgr_t *m);

/* Rejections by reason (peerd_wire_rejected_total{reason}): indices below
 * PD_WIRE_R_COUNT are the codec's pd_wire_reason_t; the rest are protocol
 * rejections from the peer state machine and the manager. */
enum {
  PD_NETMGR_REJ_UNEXPECTED = PD_WIRE_R_COUNT, /* "unexpected_message" */
  PD_NETMGR_REJ_AUTH,                         /* "auth_failed" */
  PD_NETMGR_REJ_WRONG_NETWORK,                /* "wrong_network" */
  PD_NETMGR_REJ_VERSION,                      /* "incompatible_version" */
  PD_NETMGR_REJ_SELF,                         /* "self_connection" */
  PD_NETMGR_REJ_ID_MISMATCH,                  /* "id_mismatch" */
  PD_NETMGR_REJ_HANDSHAKE_TIMEOUT,            /* "handshake_timeout" */
  PD_NETMGR_REJ_PING_TIMEOUT,                 /* "ping_timeout" */
  PD_NETMGR_REJ_GETADDR_FLOOD,                /* "getaddr_flood" */
  PD_NETMGR_REJ_ADDR_FLOOD,                   /* "addr_flood" */
  PD_NETMGR_REJ_DUPLICATE,                    /* "duplicate" */
  PD_NETMGR_REJ_RECORD,                       /* "record_malformed" .. "record_network": */
  PD_NETMGR_REJ_RECORD_LAST = PD_NETMGR_REJ_RECORD + 7, /* a bad node record (pd_record_reason_t 1..8) */
  PD_NETMGR_REJ_COUNT
};
/* Label of a rejection index; NULL when out of range. */
const char *pd_netmgr_reject_name(unsigned i);
const char *pd_netmgr_refuse_name(pd_netmgr_refuse_t r);

typedef struct pd_netmgr_counters {
  pd_dialer_counters_t dialer;          /* dials by outcome, connections by direction, ... */
  uint64_t frames_in[PD_WIRE_TYPE_COUNT];  /* peerd_frames_total{type,dir="in"} */
  uint64_t frames_out[PD_WIRE_TYPE_COUNT];
  uint64_t bytes_in, bytes_out;
  uint64_t rejected[PD_NETMGR_REJ_COUNT];  /* peerd_wire_rejected_total{reason} */
  uint64_t refused[PD_NETMGR_REFUSE_COUNT]; /* inbound verdicts at accept */
  uint64_t handshakes;                  /* READY reached */
  uint64_t addrs_received;              /* entries in ADDRs after the rate limit */
  uint64_t addrs_added;                 /* of those, new in the book (pd_book_add == 1) */
  uint64_t addrs_refused;               /* refused by pex accept / the book */
  uint64_t records_learnt;              /* peers' records new or updated (handshake, ADDR) */
  uint64_t records_stale;               /* older than the one kept, or a conflict: ignored */
  uint64_t records_announced;           /* ADDRs sent with a new version of our record */
  uint64_t getaddr_answered;            /* ADDR answers sent */
  uint64_t relay_msgs;                  /* ADDRs sent relaying fresh addresses (trickles) */
  uint64_t getaddr_cache_builds;        /* cache entries (re)built */
  uint64_t seed_crawls;                 /* seed mode: connections closed "seed_done" */
  uint64_t feelers_done;                /* feelers that completed their handshake */
  uint64_t feelers_failed;              /* feelers that ended before it (dial failed, timeout, ...) */
  uint64_t misbehaviour_reports;        /* node events "misbehaved" sent */
  uint64_t bans;                        /* of those, ending in a ban */
  uint64_t inbound_evictions;           /* inbound peers closed "evicted" for a newcomer */
  uint64_t listen_ignored;              /* inbound peers' announced addresses not at their IP */
  uint64_t evictions_by_policy;         /* evict_inbound decided (a victim or nobody) */
} pd_netmgr_counters_t;

/* Counters summed over live and closed connections. */
void pd_netmgr_counters(const pd_netmgr_t *m, pd_netmgr_counters_t *out);

/* The outbound peers in use now, for anchors.json (pd_dialer_anchors).
 * Writes up to cap, returns the number available. */
size_t pd_netmgr_anchors(const pd_netmgr_t *m, pd_dial_target_t *out, size_t cap);

/* Borrowed views (tests, the lab, the API). */
pd_dialer_t *pd_netmgr_dialer(pd_netmgr_t *m);
pd_node_t *pd_netmgr_node(pd_netmgr_t *m);

#endif
