/* wire — the peer-to-peer frame codec (sans-I/O). Spec: docs/protocol.md.
 *
 * Owns: the frame layout (network magic, type, flags, length, payload), the
 * payload layout of every message, every size limit, strict validation with
 * a named rejection reason per failure, the incremental decoder that is fed
 * arbitrary chunks of a TCP stream, encoders into a caller buffer, protocol
 * version negotiation arithmetic, the KEYX and SEALED frame types (v3).
 * Does not own: sockets, time, randomness, crypto (sealing and opening
 * SEALED frames, the key schedule and the transcript are seal.h's; signing,
 * verifying and node ID derivation are identity.h's), the order of messages on a
 * connection (the peer state machine), what to do with a rejected peer.
 *
 * No allocation happens per frame: a frame wholly inside the chunk handed to
 * pd_wire_decoder_feed is decoded in place; only a frame split across chunks
 * is copied into the decoder's buffer, which grows once to the largest frame
 * seen (at most PD_WIRE_MAX_MSG_PAYLOAD bytes in v1) and is then reused.
 * Messages are decoded into a caller-provided pd_wire_msg_t (ADDR entries
 * into its fixed array of PD_WIRE_MAX_ADDRS).
 */
#ifndef PD_WIRE_H
#define PD_WIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

/* --- protocol constants (docs/protocol.md) ------------------------------ */
#define PD_WIRE_VERSION 3     /* highest protocol version this code speaks */
#define PD_WIRE_MIN_VERSION 3 /* lowest: v3 encrypts and authenticates every frame after
                                 the key exchange (§5); an older peer gets GOODBYE
                                 incompatible_version */

#define PD_WIRE_MAGIC_LEN 4
/* Default network magic: F5 70 64 31 ("\xF5" "pd1"). */
#define PD_WIRE_MAGIC_DEFAULT_INIT {0xF5, 0x70, 0x64, 0x31}
#define PD_WIRE_NETWORK_DEFAULT "peerd"

#define PD_WIRE_HEADER_LEN 10            /* magic 4 + type 1 + flags 1 + length 4 */
#define PD_WIRE_MAX_PAYLOAD (256 * 1024) /* frame-level limit, any version */
#define PD_WIRE_MAX_FRAME (PD_WIRE_HEADER_LEN + PD_WIRE_MAX_PAYLOAD)

#define PD_WIRE_PUBKEY_LEN 32
#define PD_WIRE_CHALLENGE_LEN 32
#define PD_WIRE_SIG_LEN 64
#define PD_WIRE_NETWORK_MAX 32 /* HELLO network id, 1..32 bytes */
#define PD_WIRE_AGENT_MAX 128  /* HELLO user agent, 0..128 bytes */
#define PD_WIRE_TEXT_MAX 200   /* GOODBYE text, 0..200 bytes */
#define PD_WIRE_MAX_ADDRS 1000 /* entries per ADDR */
#define PD_WIRE_RECORD_MAX 512 /* a node record's bytes (== PD_RECORD_MAX, docs §10) */

/* Per-message payload bounds. HELLO may carry trailing extension bytes
 * up to PD_WIRE_HELLO_MAX, ignored by v1; no other message may. */
#define PD_WIRE_HELLO_MIN 100
#define PD_WIRE_HELLO_MAX 1024
#define PD_WIRE_ADDR_ENTRY_MIN 27 /* flags 1 + ip 16 + port 2 + timestamp 8 */
#define PD_WIRE_ADDR_ENTRY_MAX 47 /* ... + node id 20 (without a record) */
/* v2: an entry may carry its node's record (u16 length + bytes), so an ADDR
 * is bounded by the frame limit, not by its count. */
/* v3: every message after KEYX travels sealed inside a SEALED frame, whose
 * payload is the message's whole frame plus a 16-byte tag (§5.3), so an
 * inner frame's payload is bounded by the frame limit less that overhead. */
#define PD_WIRE_KEYX_LEN 32 /* KEYX payload: an ephemeral X25519 public key */
#define PD_WIRE_TAG_LEN 16  /* the AEAD tag at the end of a SEALED payload */
#define PD_WIRE_SEALED_MIN (PD_WIRE_HEADER_LEN + PD_WIRE_TAG_LEN) /* an empty inner payload */
#define PD_WIRE_SEAL_OVERHEAD (PD_WIRE_HEADER_LEN + PD_WIRE_TAG_LEN) /* outer header + tag */
#define PD_WIRE_MAX_MSG_PAYLOAD (PD_WIRE_MAX_PAYLOAD - PD_WIRE_SEAL_OVERHEAD) /* largest inner payload */
#define PD_WIRE_ADDR_MAX_PAYLOAD PD_WIRE_MAX_MSG_PAYLOAD

/* Message types (byte 4 of the header). 0 and 10..255 are unknown. */
enum pd_wire_type {
  PD_WIRE_HELLO = 1,
  PD_WIRE_HELLO_ACK = 2,
  PD_WIRE_PING = 3,
  PD_WIRE_PONG = 4,
  PD_WIRE_GETADDR = 5,
  PD_WIRE_ADDR = 6,
  PD_WIRE_GOODBYE = 7,
  PD_WIRE_KEYX = 8,   /* v3: the first frame each way, plain: an ephemeral key (§5.1) */
  PD_WIRE_SEALED = 9, /* v3: every later frame: one inner frame, encrypted (§5.3) */
};
#define PD_WIRE_TYPE_COUNT 10 /* types are < this; for per-type counters */

/* Why a frame was rejected. The names (pd_wire_reason_name) are metric label
 * values: peerd_wire_rejected_total{reason="..."}. */
typedef enum pd_wire_reason {
  PD_WIRE_R_NONE = 0,           /* "none" */
  PD_WIRE_R_BAD_MAGIC,          /* "bad_magic": not this network's magic */
  PD_WIRE_R_UNKNOWN_TYPE,       /* "unknown_type" */
  PD_WIRE_R_BAD_FLAGS,          /* "bad_flags": reserved header flags not 0 */
  PD_WIRE_R_OVERSIZED,          /* "oversized": length > PD_WIRE_MAX_PAYLOAD */
  PD_WIRE_R_BAD_LENGTH,         /* "bad_length": length outside the type's bounds, or trailing bytes */
  PD_WIRE_R_TRUNCATED,          /* "truncated": payload ends inside a field it announces */
  PD_WIRE_R_BAD_ADDRESS,        /* "bad_address": invalid IP or port 0 */
  PD_WIRE_R_TOO_MANY_ADDRESSES, /* "too_many_addresses": ADDR count > 1,000 */
  PD_WIRE_R_BAD_VERSION,        /* "bad_version": HELLO versions 0 or min > max */
  PD_WIRE_R_BAD_TEXT,           /* "bad_text": string empty/long/non-printable */
  PD_WIRE_R_BAD_FIELD,          /* "bad_field": reserved bits set, flag not 0/1, negative time */
  PD_WIRE_R_NO_MEMORY,          /* "no_memory": our allocation failed (not the peer's fault) */
  PD_WIRE_R_BAD_MAC,            /* "bad_mac": a SEALED frame failed to open (tampered, replayed,
                                   reordered, dropped before it, or cut); set by the session
                                   cipher (seal.h), never by the codec */
  PD_WIRE_R_NOT_SEALED,         /* "not_sealed": a plain frame after the key exchange, or a
                                   SEALED one before it or inside another */
  PD_WIRE_R_COUNT
} pd_wire_reason_t;

/* GOODBYE reason codes. Unknown codes are accepted (forward compatible) and
 * named "unknown". */
enum pd_wire_bye {
  PD_WIRE_BYE_NORMAL = 0,        /* "normal": shutting down / done */
  PD_WIRE_BYE_PROTOCOL = 1,      /* "protocol_error": frame rejected (text = reason name) */
  PD_WIRE_BYE_NETWORK = 2,       /* "wrong_network" */
  PD_WIRE_BYE_VERSION = 3,       /* "incompatible_version" */
  PD_WIRE_BYE_SELF = 4,          /* "self_connection" */
  PD_WIRE_BYE_ID_MISMATCH = 5,   /* "id_mismatch": not the node ID we dialled */
  PD_WIRE_BYE_AUTH = 6,          /* "auth_failed": bad signature / key */
  PD_WIRE_BYE_TOO_MANY = 7,      /* "too_many_peers" */
  PD_WIRE_BYE_BANNED = 8,        /* "banned" */
  PD_WIRE_BYE_DUPLICATE = 9,     /* "duplicate": already connected to this ID */
  PD_WIRE_BYE_TIMEOUT = 10,      /* "timeout": handshake or ping timeout */
  PD_WIRE_BYE_MISBEHAVIOUR = 11, /* "misbehaviour": flooding, rate limits */
  PD_WIRE_BYE_SEED_DONE = 12,    /* "seed_done": seed-mode crawler is done */
};

/* --- messages ----------------------------------------------------------- */
typedef struct pd_wire_hello {
  uint16_t max_version; /* highest version the sender speaks */
  uint16_t min_version; /* lowest version the sender speaks */
  uint8_t node_id[PD_NODE_ID_LEN];
  uint8_t pubkey[PD_WIRE_PUBKEY_LEN];       /* ed25519 public key */
  uint8_t challenge[PD_WIRE_CHALLENGE_LEN]; /* fresh random nonce */
  int64_t timestamp;                        /* sender's Unix seconds, >= 0 */
  bool has_listen;
  pd_netaddr_t listen; /* valid when has_listen */
  uint8_t network_len;
  char network[PD_WIRE_NETWORK_MAX + 1]; /* NUL-terminated */
  uint8_t agent_len;
  char agent[PD_WIRE_AGENT_MAX + 1]; /* NUL-terminated */
  /* v2 extension (§4.1): the sender's signed node record (opaque here: the
   * handshake verifies it) and the address the sender sees the receiver at.
   * Decoded, record points into the frame (valid until the next feed). */
  uint16_t record_len; /* 0: none */
  const uint8_t *record;
  bool has_observed;
  pd_netaddr_t observed;
} pd_wire_hello_t;

typedef struct pd_wire_addr_entry {
  pd_netaddr_t addr;
  int64_t timestamp; /* last seen, Unix seconds, >= 0 */
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  /* v2: the node's record (needs has_id); decoded, it points into the
   * frame (valid until the next feed). */
  uint16_t record_len; /* 0: none */
  const uint8_t *record;
} pd_wire_addr_entry_t;

typedef struct pd_wire_msg {
  uint8_t type; /* enum pd_wire_type */
  union {
    pd_wire_hello_t hello;                      /* HELLO */
    struct { uint8_t sig[PD_WIRE_SIG_LEN]; } ack; /* HELLO_ACK */
    struct { uint8_t pk[PD_WIRE_KEYX_LEN]; } keyx; /* KEYX */
    struct {
      const uint8_t *hdr;  /* the frame's 10-byte header (the AEAD's associated data) */
      const uint8_t *data; /* ciphertext then tag; both point into the input or the
                              decoder's buffer, valid until the next feed */
      size_t len;          /* payload length, >= PD_WIRE_SEALED_MIN */
    } sealed; /* SEALED */
    uint64_t nonce;                              /* PING, PONG */
    struct {
      uint16_t count;
      pd_wire_addr_entry_t entries[PD_WIRE_MAX_ADDRS];
    } addr; /* ADDR */
    struct {
      uint16_t code; /* enum pd_wire_bye, or unknown */
      uint8_t text_len;
      char text[PD_WIRE_TEXT_MAX + 1]; /* NUL-terminated */
    } bye; /* GOODBYE */
  };
} pd_wire_msg_t;

/* --- names -------------------------------------------------------------- */
const char *pd_wire_reason_name(pd_wire_reason_t r); /* "bad_magic", ...; "invalid" if out of range */
const char *pd_wire_type_name(unsigned type);       /* "hello", ..., "unknown" */
const char *pd_wire_bye_name(unsigned code);        /* "normal", ..., "unknown" */

/* --- encoders ----------------------------------------------------------- */
/* Each writes one whole frame into buf (cap bytes) and its length into
 * *len. Returns 0, PD_ETOOBIG if cap is too small (nothing useful written),
 * or PD_EINVAL if the message would be rejected by a decoder (the codec
 * never sends what it would refuse). */
int pd_wire_encode_hello(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_hello_t *h,
                         uint8_t *buf, size_t cap, size_t *len);
int pd_wire_encode_ack(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t sig[PD_WIRE_SIG_LEN],
                       uint8_t *buf, size_t cap, size_t *len);
int pd_wire_encode_ping(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint64_t nonce, uint8_t *buf,
                        size_t cap, size_t *len);
int pd_wire_encode_pong(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint64_t nonce, uint8_t *buf,
                        size_t cap, size_t *len);
int pd_wire_encode_getaddr(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t *buf, size_t cap,
                           size_t *len);
int pd_wire_encode_addr(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_addr_entry_t *entries,
                        size_t count, uint8_t *buf, size_t cap, size_t *len);
int pd_wire_encode_keyx(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t pk[PD_WIRE_KEYX_LEN],
                        uint8_t *buf, size_t cap, size_t *len);
/* The 10-byte header of a frame of this type and payload length (no checks:
 * the session cipher writes SEALED headers with it). */
void pd_wire_write_header(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t type, uint32_t payload_len,
                          uint8_t hdr[PD_WIRE_HEADER_LEN]);
/* text may be NULL (empty); it must be printable ASCII, <= PD_WIRE_TEXT_MAX. */
int pd_wire_encode_goodbye(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint16_t code, const char *text,
                           uint8_t *buf, size_t cap, size_t *len);
/* Any decoded message back into a frame (dispatches on msg->type). */
int pd_wire_encode(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_msg_t *msg, uint8_t *buf,
                   size_t cap, size_t *len);
/* Exact frame size pd_wire_encode would produce, or 0 if msg is invalid. */
size_t pd_wire_encoded_size(const pd_wire_msg_t *msg);

/* --- decoding ----------------------------------------------------------- */
/* Validate and decode one payload of a given type (no header). Returns
 * PD_WIRE_R_NONE and fills *out, or the rejection reason. */
pd_wire_reason_t pd_wire_parse_payload(unsigned type, const uint8_t *p, size_t len,
                                       pd_wire_msg_t *out);

/* Decode exactly one whole frame buf[0..len) (an opened SEALED payload):
 * the header checks of the decoder, then the payload's; a frame that does
 * not end exactly at len is "bad_length". SEALED payload pointers point
 * into buf. Returns PD_WIRE_R_NONE and *out, or the reason. */
pd_wire_reason_t pd_wire_decode_frame(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t *buf,
                                      size_t len, pd_wire_msg_t *out);

enum { PD_WIRE_NEED_MORE = 0, PD_WIRE_MESSAGE = 1 };

typedef struct pd_wire_decoder {
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  uint8_t hdr[PD_WIRE_HEADER_LEN];
  size_t hdr_have;      /* header bytes gathered (0..10) */
  size_t need;          /* payload length of the current frame */
  size_t have;          /* payload bytes gathered in buf */
  uint8_t *buf;         /* payload of a split frame */
  size_t cap;           /* capacity of buf */
  pd_wire_reason_t err; /* != NONE: stuck in the error state */
  uint64_t frames;      /* frames decoded */
  uint64_t bytes;       /* bytes consumed */
} pd_wire_decoder_t;

void pd_wire_decoder_init(pd_wire_decoder_t *d, const uint8_t magic[PD_WIRE_MAGIC_LEN]);
void pd_wire_decoder_free(pd_wire_decoder_t *d);

/* Consume bytes from data[0..len) and stop after at most one message.
 * *consumed is set to the bytes used. Returns
 *   PD_WIRE_MESSAGE   *msg holds a decoded message; feed the rest again;
 *   PD_WIRE_NEED_MORE every byte was consumed and no message is complete;
 *   PD_EINVAL         the input was rejected: pd_wire_decoder_reason() says
 *                     why; the decoder stays in this state (close the
 *                     connection); *consumed counts up to the offending byte;
 *   PD_ENOMEM         buffer growth failed (reason "no_memory").
 * The bytes of data are not kept after the call returns. */
int pd_wire_decoder_feed(pd_wire_decoder_t *d, const uint8_t *data, size_t len, size_t *consumed,
                         pd_wire_msg_t *msg);
pd_wire_reason_t pd_wire_decoder_reason(const pd_wire_decoder_t *d);
/* True if part of a frame has been received (EOF now would cut a frame). */
bool pd_wire_decoder_mid_frame(const pd_wire_decoder_t *d);

/* --- handshake helpers (no crypto) -------------------------------------- */
/* Lowest-common-version rule: the version used is min(a_max, b_max); it
 * must be >= max(a_min, b_min). Returns 0 and *out, or PD_ERANGE. */
int pd_wire_negotiate_version(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max,
                              uint16_t *out);

/* Magic as 8 hex characters ("f5706431"), for config and logs. */
int pd_wire_magic_parse(const char *hex, uint8_t magic[PD_WIRE_MAGIC_LEN]);
int pd_wire_magic_format(const uint8_t magic[PD_WIRE_MAGIC_LEN], char *buf, size_t cap);

#endif
