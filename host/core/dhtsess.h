/* dhtsess — the DHT's sessions (sans-I/O). Spec: docs/protocol.md §11.3–11.4.
 *
 * Owns: the handshake's cryptography (the ephemeral X25519 key from given
 * randomness, static-ephemeral key agreement with the ed25519 key converted
 * to X25519, the BLAKE2b-512 key schedule, the id signature and its check),
 * sealing a message into a MESSAGE or HANDSHAKE packet and opening one
 * (ChaCha20-Poly1305 IETF, header as associated data, counter nonces), the
 * 64-packet replay window, and the bounded table of sessions keyed by
 * (node id, endpoint) with least-recently-used eviction and idle expiry.
 * Does not own: the packet layout (dhtwire.h), which packet to send when
 * (dht.h), drawing randomness (callers pass bytes), the clock (now_ms).
 *
 * Every primitive is libsodium's. The null cipher (the lab) keeps layouts
 * and counters but skips X25519 and ChaCha20: ciphertext = plaintext,
 * tag = 16 zero bytes; signatures go through the given pd_record_auth_t
 * (NULL: ed25519).
 */
#ifndef PD_DHTSESS_H
#define PD_DHTSESS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "dhtwire.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"

#define PD_DHT_KEY_LEN 32
#define PD_DHT_MAX_SESSIONS 1024
#define PD_DHT_SESSION_IDLE_MS (10 * 60 * 1000)
#define PD_DHT_REPLAY_WINDOW 64
#define PD_DHT_KEYS_CONTEXT "peerd-dht-keys-v1"   /* 17 bytes */
#define PD_DHT_IDSIG_CONTEXT "peerd-dht-idsig-v1" /* 18 bytes */

typedef struct pd_dht_session {
  uint8_t id[PD_DHT_ID_LEN];
  pd_netaddr_t ep;
  uint8_t pubkey[PD_DHT_PK_LEN];  /* the remote's ed25519 key */
  uint8_t tx_key[PD_DHT_KEY_LEN]; /* secret */
  uint8_t rx_key[PD_DHT_KEY_LEN]; /* secret */
  uint64_t tx_ctr;                /* last counter sent */
  uint64_t rx_max;                /* highest counter opened */
  uint64_t rx_bits;               /* bit i: rx_max - i was opened */
  int64_t used_ms;                /* last packet opened or sealed */
  bool initiator;
} pd_dht_session_t;

/* The crypto context of one node. */
typedef struct pd_dht_crypto {
  const pd_identity_t *self;     /* borrowed */
  const pd_record_auth_t *auth;  /* NULL: ed25519 */
  bool null_cipher;
} pd_dht_crypto_t;

/* Seal plaintext msg into a MESSAGE packet for session s (counter + 1).
 * 0 and *len, PD_ETOOBIG (does not fit cap or PD_DHT_MAX_PACKET). */
int pd_dht_seal_message(pd_dht_session_t *s, const pd_dht_crypto_t *c, const uint8_t *msg,
                        size_t msg_len, uint8_t *out, size_t cap, size_t *len, int64_t now_ms);

/* Open a decoded MESSAGE packet under s into plain (cap bytes; at most
 * PD_DHT_MAX_MSG needed). 0 and *len; PD_EINVAL: the tag does not check
 * (the caller challenges); PD_EEXIST: replayed or too old (counted as
 * dht_replay); the window moves only on success. */
int pd_dht_open_message(pd_dht_session_t *s, const pd_dht_crypto_t *c, const pd_dht_packet_t *p,
                        uint8_t *plain, size_t cap, size_t *len, int64_t now_ms);

/* Initiator: answer challenge (the 94 WHOAREYOU bytes, decoded as wp) from
 * endpoint ep with a HANDSHAKE carrying msg. eph_seed: 32 bytes of fresh
 * randomness. record/record_len: this node's record, sent when
 * wp->record_seq < my_seq (pass my_seq). Fills *s (a new session with the
 * challenger, its message counter 1 used) and the packet in out.
 * 0; PD_EINVAL (the challenger's pubkey does not hash to its id, a
 * low-order key); PD_ETOOBIG. */
int pd_dht_handshake_initiate(const pd_dht_crypto_t *c, const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                              const pd_dht_packet_t *wp, const pd_netaddr_t *ep,
                              const uint8_t eph_seed[32], const uint8_t *record, size_t record_len,
                              uint64_t my_seq, const uint8_t *msg, size_t msg_len,
                              pd_dht_session_t *s, uint8_t *out, size_t cap, size_t *len,
                              int64_t now_ms);

/* Responder: a decoded HANDSHAKE p from ep answering our challenge (the 94
 * bytes we sent). Checks the key against src_id (PD_ENOENT: "dht_id"), the
 * signature (PD_EINVAL: "dht_signature"), derives the keys and opens the
 * message into plain (PD_ERANGE: "dht_decrypt"). 0: *s is the new session
 * (counter 1 seen) and plain (*len bytes) the message. The record, if any, is the
 * caller's to verify (p->record). */
int pd_dht_handshake_accept(const pd_dht_crypto_t *c, const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                            const pd_dht_packet_t *p, const pd_netaddr_t *ep, pd_dht_session_t *s,
                            uint8_t *plain, size_t cap, size_t *len, int64_t now_ms);

/* ---- the session table ---- */
typedef struct pd_dht_sessions pd_dht_sessions_t;

pd_dht_sessions_t *pd_dht_sessions_new(size_t max); /* max 0 = PD_DHT_MAX_SESSIONS */
void pd_dht_sessions_free(pd_dht_sessions_t *t);
/* The session for (id, ep), or NULL. */
pd_dht_session_t *pd_dht_sessions_find(pd_dht_sessions_t *t, const uint8_t id[PD_DHT_ID_LEN],
                                       const pd_netaddr_t *ep);
/* Put s (copied), replacing one for the same (id, ep); when full the least
 * recently used goes (*evicted = 1). Returns the stored session. */
pd_dht_session_t *pd_dht_sessions_put(pd_dht_sessions_t *t, const pd_dht_session_t *s,
                                      int *evicted);
/* Drop sessions idle for PD_DHT_SESSION_IDLE_MS; returns how many. */
size_t pd_dht_sessions_expire(pd_dht_sessions_t *t, int64_t now_ms);
size_t pd_dht_sessions_count(const pd_dht_sessions_t *t);
/* Any session with endpoint ep (the endpoint is verified). */
bool pd_dht_sessions_has_ep(const pd_dht_sessions_t *t, const pd_netaddr_t *ep);

#endif
