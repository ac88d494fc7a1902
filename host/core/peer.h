/* peer — one connection's protocol state machine (sans-I/O).
 *
 * Owns: the order of messages on one connection (docs/protocol.md §5, §9):
 * the v3 key exchange (our KEYX, the session keys from theirs, every later
 * frame sealed and opened through seal.h), sending our HELLO, checking the
 * peer's HELLO (network, version, node ID
 * against its key, self-connection, the dialled ID), signing and verifying
 * HELLO_ACK over the transcript, the handshake timeout; PING/PONG (keep-alive, latency, dead
 * peer timeout); the PEX exchange on this connection (GETADDR on connect and
 * periodically, the per-peer GETADDR limit, Bitcoin's addr token bucket,
 * flood detection); GOODBYE; per-connection counters.
 * Does not own: sockets, timers, clocks, entropy (the driver feeds bytes,
 * `now_ms` and a seeded pd_rng_t, and performs the actions), the set of
 * connections and their limits, duplicate detection, bans, which addresses
 * to share or keep (node, addrbook, pex policy), the frame codec (wire).
 *
 * Usage: pd_peer_new() queues our KEYX (our HELLO follows, sealed, once the
 * peer's KEYX arrives). The driver then loops:
 *   feed: pd_peer_on_bytes() for bytes read, pd_peer_on_tick() when the
 *         timer armed for pd_peer_next_deadline() fires (or any time);
 *   drain: while (pd_peer_poll(p, &a)) perform a.
 * SEND actions are written in order; CLOSE comes last (after any GOODBYE
 * frame it queued, which the driver writes best-effort before closing).
 * Pointers inside an action (send bytes, addresses, strings) stay valid
 * until the next call into the peer other than pd_peer_poll / getters.
 *
 * Time: every `now_ms` is Unix time in milliseconds (the HELLO timestamp is
 * now_ms / 1000), from the driver's clock. Going backwards is tolerated.
 */
#ifndef PD_PEER_H
#define PD_PEER_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "netaddr.h"
#include "rng.h"
#include "wire.h"

typedef enum pd_peer_dir { PD_PEER_INBOUND = 0, PD_PEER_OUTBOUND = 1 } pd_peer_dir_t;

typedef enum pd_peer_state {
  PD_PEER_HANDSHAKE = 0, /* HELLO sent, waiting for the peer's HELLO and HELLO_ACK */
  PD_PEER_READY = 1,     /* authenticated: PING/PONG, GETADDR/ADDR, GOODBYE */
  PD_PEER_CLOSED = 2,    /* CLOSE queued; the peer ignores further input */
} pd_peer_state_t;

typedef struct pd_peer_config {
  int64_t handshake_timeout_ms; /* HELLO to both HELLO and HELLO_ACK received; 10 s */
  /* Keep-alive: a PING once READY (first at once), then the two ends take
   * turns: ours one interval after the peer's last PING, two after our own
   * (four at most), so a link carries one PING per interval; 60 s. */
  int64_t ping_interval_ms;
  int64_t dead_timeout_ms;      /* no frame received, or a PING unanswered, this long; 180 s */
  int64_t getaddr_interval_ms;  /* re-ask an auto-asking peer this often; 0 = on connect only; 24 h */
  bool getaddr_on_connect_outbound; /* send GETADDR when an outbound handshake completes; true */
  bool getaddr_on_connect_inbound;  /* same for inbound; false (Bitcoin asks outbound only) */
  /* An ADDR counts as the answer to our last GETADDR only this long after
   * it (<= 0: no limit). A peer answers one GETADDR per getaddr_period_ms
   * and ignores the rest; without a limit the next unsolicited ADDR after
   * an ignored ask (a self-announcement, say) was taken for the answer:
   * free of the token bucket and never relayed. 60 s. */
  int64_t getaddr_answer_ms;
  /* Answering: at most getaddr_max GETADDR per getaddr_period_ms are passed
   * on (GETADDR_RECEIVED); more are ignored and counted, and the
   * getaddr_flood-th ignored one in a period is MISBEHAVED "getaddr_flood". */
  int64_t getaddr_period_ms; /* 10 min */
  unsigned getaddr_max;      /* 1 */
  unsigned getaddr_flood;    /* 5 */
  /* Bitcoin Core's addr token bucket (net_processing.cpp): starts at
   * addr_initial tokens, refills addr_rate per second up to addr_burst, each
   * received address costs one token, an address without a token is
   * dropped. The first ADDR after a GETADDR we sent is the answer and is
   * free (up to PD_WIRE_MAX_ADDRS, i.e. all of it); unlike Bitcoin, unused
   * credit does not stay in the bucket. Every addr_flood_drops addresses
   * dropped is one MISBEHAVED "addr_flood". */
  double addr_rate;           /* 0.1 / s */
  double addr_burst;          /* 1000 */
  double addr_initial;        /* 1 */
  uint64_t addr_flood_drops;  /* 5000 */
  /* An ADDR with at most this many entries that we did not ask for is
   * marked relayable (a fresh self-announcement, as in Bitcoin). */
  unsigned relay_max;         /* 10 */
  uint16_t min_version, max_version; /* PD_WIRE_MIN_VERSION, PD_WIRE_VERSION */
} pd_peer_config_t;

void pd_peer_config_default(pd_peer_config_t *c);

/* The handshake's signature scheme. NULL in the params = ed25519 through
 * pd_identity_sign / pd_identity_verify (the daemon, always). The lab may
 * plug in a cheaper scheme with the same shape -- signatures of
 * PD_WIRE_SIG_LEN bytes over the auth message, bound to the public key --
 * because it simulates the transport's authentication as it simulates the
 * transport; everything above the handshake is unchanged. Both return 0 or
 * a negative code (verify: PD_EINVAL for a bad signature). */
typedef struct pd_peer_auth {
  int (*sign)(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
              uint8_t sig[PD_WIRE_SIG_LEN]);
  int (*verify)(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg, size_t len,
                const uint8_t sig[PD_WIRE_SIG_LEN]);
  void *ud;
  /* The lab's transport needs no secrecy: KEYX and SEALED frames are sent
   * and parsed exactly as on the wire, but without X25519 and the cipher
   * (seal.h's null session). Both ends must agree. */
  bool null_cipher;
} pd_peer_auth_t;

typedef struct pd_peer_params {
  const pd_identity_t *self; /* borrowed; must outlive the peer */
  const uint8_t *magic;      /* PD_WIRE_MAGIC_LEN bytes, copied */
  const char *network;       /* network id, copied (1..32 printable, no space) */
  const char *agent;         /* user agent, copied; NULL = "peerd/" PEERD_VERSION or "peerd" */
  pd_peer_dir_t dir;
  const uint8_t *expect_id;  /* PD_NODE_ID_LEN bytes (`ID@host:port` dials) or NULL */
  const pd_netaddr_t *listen; /* our announced listen address or NULL (must be valid, port != 0) */
  /* Our 32-byte HELLO challenge. In v3 the ephemeral keys make each
   * session fresh (the transcript binds them); the challenge stays in HELLO
   * for self-connection detection. The daemon draws it with
   * randombytes_buf; NULL draws it from rng (tests, the lab). */
  const uint8_t *challenge;
  /* 32 bytes of secret randomness for our ephemeral X25519 key (KEYX), new
   * for every connection: the daemon draws them with randombytes_buf; NULL
   * draws them from rng (tests, the lab). */
  const uint8_t *eph_seed;
  const pd_peer_config_t *cfg; /* NULL = defaults; copied */
  const pd_peer_auth_t *auth;  /* NULL = ed25519; borrowed, must outlive the peer */
  /* v2: our signed node record for the HELLO (bytes copied into it; NULL:
   * none) and the address we see the remote at (the address we dialled, or
   * the one it connected from). */
  const uint8_t *record;
  size_t record_len;
  const pd_netaddr_t *observed;
} pd_peer_params_t;

/* Remote facts learnt from its HELLO (valid once HANDSHAKE_DONE). */
typedef struct pd_peer_remote {
  uint8_t id[PD_NODE_ID_LEN];
  uint8_t pubkey[PD_WIRE_PUBKEY_LEN];
  bool has_listen;
  pd_netaddr_t listen;
  uint16_t version;     /* negotiated */
  int64_t timestamp;    /* the peer's clock at HELLO, Unix s */
  char agent[PD_WIRE_AGENT_MAX + 1];
  /* v2: its node record, verified (signature, id = the HELLO's node id,
   * our network) before the handshake completes; NULL when it sent none. */
  const uint8_t *record;
  uint16_t record_len;
  bool has_observed; /* where it sees us (its claim: identify-style) */
  pd_netaddr_t observed;
} pd_peer_remote_t;

typedef struct pd_peer_stats {
  pd_peer_dir_t dir;
  int64_t created_ms, ready_ms; /* ready_ms 0 until READY */
  uint64_t bytes_in, bytes_out;
  uint64_t frames_in[PD_WIRE_TYPE_COUNT], frames_out[PD_WIRE_TYPE_COUNT]; /* by type */
  uint64_t addrs_received;     /* entries in ADDR frames */
  uint64_t addrs_accepted;     /* passed on in ADDRS_RECEIVED */
  uint64_t addrs_rate_limited; /* dropped by the token bucket */
  uint64_t getaddr_answered;   /* passed on in GETADDR_RECEIVED */
  uint64_t getaddr_ignored;    /* over the per-period limit */
  uint64_t pongs_unexpected;   /* nonce not the outstanding one */
  uint64_t misbehaved;         /* MISBEHAVED actions raised */
  int64_t latency_ms;          /* last PING round trip; -1 until measured */
  int64_t min_latency_ms;      /* -1 until measured */
} pd_peer_stats_t;

typedef enum pd_peer_action_type {
  PD_PEER_A_SEND = 1,           /* write send.data[0..len) */
  PD_PEER_A_CLOSE,              /* close the connection; last action */
  PD_PEER_A_HANDSHAKE_DONE,     /* authenticated: see hs.remote */
  PD_PEER_A_ADDRS_RECEIVED,     /* addresses that passed the rate limit */
  PD_PEER_A_GETADDR_RECEIVED,   /* answer with pd_peer_send_addrs (or not) */
  PD_PEER_A_LATENCY,            /* a PING round trip in ms */
  PD_PEER_A_MISBEHAVED,         /* report to reputation; the connection stays */
} pd_peer_action_type_t;

typedef struct pd_peer_action {
  pd_peer_action_type_t type;
  union {
    struct {
      const uint8_t *data;
      size_t len;
    } send;
    struct {
      /* One of: a wire rejection name (pd_wire_reason_name: "bad_magic",
       * ..., "bad_mac" for a SEALED frame that does not open -- not
       * reported as misbehaviour: an on-path attacker can cause it --,
       * "not_sealed"), a record rejection name for its HELLO's record
       * (pd_record_reason_name: "record_signature", ...), "unexpected_message", "wrong_network",
       * "incompatible_version", "auth_failed", "self_connection",
       * "id_mismatch", "handshake_timeout", "ping_timeout", "goodbye" (the
       * peer said GOODBYE: see remote_code), or for pd_peer_close the
       * GOODBYE name we sent (pd_wire_bye_name). Static string. */
      const char *reason;
      bool misbehaved;      /* a protocol violation to report to reputation */
      bool remote;          /* the peer ended it with GOODBYE */
      uint16_t remote_code; /* its GOODBYE code (pd_wire_bye_name) when remote */
      const char *remote_text; /* its GOODBYE text when remote */
    } close;
    struct {
      const pd_peer_remote_t *remote;
    } hs;
    struct {
      const pd_wire_addr_entry_t *entries; /* accepted, a random subset when limited;
                                              records (unverified) valid as long as they */
      size_t count;    /* accepted */
      size_t received; /* in the frame */
      size_t dropped;  /* rate limited = received - count */
      bool solicited;  /* an answer to our GETADDR */
      bool relayable;  /* unsolicited and <= relay_max entries */
    } addrs;
    struct {
      int64_t ms;
    } latency;
    struct {
      const char *reason; /* "getaddr_flood" or "addr_flood" */
    } misbehaved;
  };
} pd_peer_action_t;

typedef struct pd_peer pd_peer_t;

/* Create a connection's state machine and queue our HELLO. rng is used now
 * (challenge if not given, the seed of the peer's own nonce generator) and
 * not kept. Returns 0, PD_EINVAL (bad params: listen address invalid,
 * network id bad, versions) or PD_ENOMEM. */
int pd_peer_new(pd_peer_t **out, const pd_peer_params_t *prm, pd_rng_t *rng, int64_t now_ms);
void pd_peer_free(pd_peer_t *p);

/* Feed bytes read from the socket. Returns 0 (check the actions) or
 * PD_ENOMEM (the peer is then CLOSED; a CLOSE "no_memory" is queued when
 * possible). Input after CLOSE is ignored. */
int pd_peer_on_bytes(pd_peer_t *p, const uint8_t *buf, size_t len, int64_t now_ms);
/* Timers: handshake timeout, PING, dead peer, periodic GETADDR. */
int pd_peer_on_tick(pd_peer_t *p, int64_t now_ms);
/* When on_tick next has something to do (Unix ms); INT64_MAX when CLOSED. */
int64_t pd_peer_next_deadline(const pd_peer_t *p);

/* Next queued action: true and *out, or false when the queue is empty. */
bool pd_peer_poll(pd_peer_t *p, pd_peer_action_t *out);
/* Once every action was polled and performed: release the output and
 * action buffers (pointers from polled actions become invalid), so an idle
 * connection holds none. A no-op while actions are queued. */
void pd_peer_trim(pd_peer_t *p);

/* Send an ADDR (count <= PD_WIRE_MAX_ADDRS, entries valid for the codec).
 * Only when READY. Returns 0, PD_EINVAL (not READY, bad entry) or
 * PD_ETOOBIG / PD_ENOMEM. */
int pd_peer_send_addrs(pd_peer_t *p, const pd_wire_addr_entry_t *entries, size_t count,
                       int64_t now_ms);
/* Send a GETADDR now (and credit the token bucket for the answer). Only
 * when READY. Returns 0 or PD_EINVAL / PD_ENOMEM. */
int pd_peer_request_addrs(pd_peer_t *p, int64_t now_ms);
/* Close from our side: queue GOODBYE code/text (text may be NULL) and CLOSE
 * with reason pd_wire_bye_name(code). No-op when already CLOSED. */
int pd_peer_close(pd_peer_t *p, uint16_t code, const char *text);

pd_peer_state_t pd_peer_state(const pd_peer_t *p);
pd_peer_dir_t pd_peer_dir(const pd_peer_t *p);
const pd_peer_stats_t *pd_peer_stats(const pd_peer_t *p);
/* The remote's HELLO facts; NULL until READY. */
const pd_peer_remote_t *pd_peer_remote(const pd_peer_t *p);
/* True while part of a frame has arrived (EOF now cuts a frame: the driver
 * reports "truncated"). */
bool pd_peer_mid_frame(const pd_peer_t *p);
/* Test tools only (the MITM and hostile clients): queue one encoded frame
 * as it is, sealed when the session is keyed, as if the state machine had
 * sent it. Returns 0, PD_EINVAL (CLOSED, or not a whole frame) or PD_ENOMEM. */
int pd_peer_send_frame(pd_peer_t *p, const uint8_t *frame, size_t len);
/* Bytes this peer holds on the heap now (struct, buffers, decoder). */
size_t pd_peer_footprint(const pd_peer_t *p);
/* Current addr token bucket level (after refilling to now_ms). */
double pd_peer_addr_tokens(const pd_peer_t *p, int64_t now_ms);

#endif
