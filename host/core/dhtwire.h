/* dhtwire — the DHT's packet and message codec (sans-I/O). Spec:
 * docs/protocol.md §11.1–11.2.
 *
 * Owns: the byte layout of the DHT's UDP packets (the 38-byte header, the
 * MESSAGE, WHOAREYOU and HANDSHAKE kinds) and of the messages sealed inside
 * them (PING, PONG, FINDNODE, NODES), every size limit, strict decoding
 * with a named rejection reason per failure, encoders into a caller buffer,
 * the log2 distance of two node ids and the greedy split of a NODES answer
 * over packets.
 * Does not own: crypto (sealing, opening, key derivation and signatures are
 * dhtsess.h's; a packet's ciphertext is opaque bytes here), verifying the
 * records a NODES message carries (record.h), sessions, time, sockets.
 *
 * Decoding never allocates and never copies: a decoded packet or message
 * points into the buffer it was decoded from (records in NODES too).
 */
#ifndef PD_DHTWIRE_H
#define PD_DHTWIRE_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PD_DHT_MAGIC "pdht" /* 70 64 68 74 */
#define PD_DHT_VERSION 1
#define PD_DHT_ID_LEN 20
#define PD_DHT_NONCE_LEN 12
#define PD_DHT_TAG_LEN 16
#define PD_DHT_PK_LEN 32
#define PD_DHT_SIG_LEN 64
#define PD_DHT_ID_NONCE_LEN 16
#define PD_DHT_HEADER_LEN 38      /* magic 4 + version 1 + kind 1 + nonce 12 + src_id 20 */
#define PD_DHT_MIN_PACKET 63      /* header + type/request id 9 + tag 16 */
#define PD_DHT_MAX_PACKET 1280
#define PD_DHT_WHOAREYOU_LEN 94   /* header + id_nonce 16 + pubkey 32 + record_seq 8 */
#define PD_DHT_HANDSHAKE_FIXED (PD_DHT_HEADER_LEN + 32 + 32 + 64 + 2) /* 168: before the record */
#define PD_DHT_HANDSHAKE_MIN 193  /* fixed 168 + message 9 + tag 16 (no record) */
#define PD_DHT_MSG_HEAD 9         /* type 1 + request id 8 */
#define PD_DHT_RANDOM_MIN 25      /* a MESSAGE without a session: at least this many random bytes */
#define PD_DHT_RECORD_MIN 130     /* == PD_RECORD_MIN */
#define PD_DHT_RECORD_MAX 512     /* == PD_RECORD_MAX */
#define PD_DHT_MAX_DISTANCES 4    /* FINDNODE distances */
#define PD_DHT_MAX_DISTANCE 160
#define PD_DHT_MAX_NODES 16       /* records in one NODES packet and in one answer */
#define PD_DHT_MAX_TOTAL 16       /* packets in one NODES answer */
/* The largest plaintext message a MESSAGE packet carries. */
#define PD_DHT_MAX_MSG (PD_DHT_MAX_PACKET - PD_DHT_HEADER_LEN - PD_DHT_TAG_LEN) /* 1226 */

enum pd_dht_kind { PD_DHT_MESSAGE = 0, PD_DHT_WHOAREYOU = 1, PD_DHT_HANDSHAKE = 2 };
enum pd_dht_msg_type { PD_DHT_PING = 1, PD_DHT_PONG = 2, PD_DHT_FINDNODE = 3, PD_DHT_NODES = 4 };

/* Why a packet or message was refused. Names (pd_dhtwire_reason_name) are
 * metric label values: peerd_dht_rejected_total{reason}. The engine adds
 * its own (dht.h) after PD_DHTW_R_COUNT. */
typedef enum pd_dhtwire_reason {
  PD_DHTW_OK = 0,           /* "none" */
  PD_DHTW_R_MAGIC,          /* "dht_magic" */
  PD_DHTW_R_VERSION,        /* "dht_version" */
  PD_DHTW_R_KIND,           /* "dht_kind" */
  PD_DHTW_R_MALFORMED,      /* "dht_malformed": sizes, lengths, trailing bytes */
  PD_DHTW_R_MESSAGE,        /* "dht_message": unknown type, bad body, counts/distances out of range */
  PD_DHTW_R_COUNT
} pd_dhtwire_reason_t;

const char *pd_dhtwire_reason_name(pd_dhtwire_reason_t r); /* "invalid" from PD_DHTW_R_COUNT on */

/* A decoded packet; pointers into the decoded buffer. */
typedef struct pd_dht_packet {
  uint8_t kind;
  const uint8_t *header;          /* the 38 header bytes (AEAD associated data for MESSAGE) */
  const uint8_t *nonce;           /* 12 bytes */
  const uint8_t *src_id;          /* 20 bytes */
  /* WHOAREYOU */
  const uint8_t *id_nonce;        /* 16 */
  const uint8_t *pubkey;          /* 32: WHOAREYOU and HANDSHAKE */
  uint64_t record_seq;
  /* HANDSHAKE */
  const uint8_t *eph_pubkey;      /* 32 */
  const uint8_t *id_signature;    /* 64 */
  const uint8_t *record;          /* NULL when record_len == 0 */
  size_t record_len;
  size_t ad_len;                  /* MESSAGE: 38; HANDSHAKE: bytes before the ciphertext; WHOAREYOU: 0 */
  /* MESSAGE and HANDSHAKE */
  const uint8_t *ciphertext;      /* message + 16-byte tag (WHOAREYOU: NULL, length 0) */
  size_t ciphertext_len;          /* >= 9 + 16 */
} pd_dht_packet_t;

/* Decode one datagram. PD_DHTW_OK and *out, or a reason (*out undefined). */
pd_dhtwire_reason_t pd_dht_packet_decode(const uint8_t *buf, size_t len, pd_dht_packet_t *out);

/* Write the 38-byte header into out. */
void pd_dht_header_encode(uint8_t out[PD_DHT_HEADER_LEN], uint8_t kind,
                          const uint8_t nonce[PD_DHT_NONCE_LEN], const uint8_t src_id[PD_DHT_ID_LEN]);
/* A whole WHOAREYOU (94 bytes) into out. */
void pd_dht_whoareyou_encode(uint8_t out[PD_DHT_WHOAREYOU_LEN], const uint8_t nonce[PD_DHT_NONCE_LEN],
                             const uint8_t src_id[PD_DHT_ID_LEN],
                             const uint8_t id_nonce[PD_DHT_ID_NONCE_LEN],
                             const uint8_t pubkey[PD_DHT_PK_LEN], uint64_t record_seq);
/* A HANDSHAKE's bytes up to the ciphertext (the associated data) into out
 * (cap bytes). 0 and *len, or PD_ETOOBIG / PD_EINVAL (record_len not 0 or
 * 130..512, the sizes the decoder accepts; record NULL with a length). */
int pd_dht_handshake_head_encode(uint8_t *out, size_t cap, size_t *len,
                                 const uint8_t nonce[PD_DHT_NONCE_LEN],
                                 const uint8_t src_id[PD_DHT_ID_LEN],
                                 const uint8_t eph_pubkey[PD_DHT_PK_LEN],
                                 const uint8_t pubkey[PD_DHT_PK_LEN],
                                 const uint8_t id_signature[PD_DHT_SIG_LEN],
                                 const uint8_t *record, size_t record_len);

/* A record as carried in NODES: pointer into the decoded buffer. */
typedef struct pd_dht_rec_ref {
  const uint8_t *bytes;
  uint16_t len;
} pd_dht_rec_ref_t;

/* A decoded message (the plaintext of a MESSAGE or HANDSHAKE). */
typedef struct pd_dht_msg {
  uint8_t type;
  uint64_t request_id;
  uint64_t record_seq;            /* PING, PONG */
  pd_netaddr_t observed;          /* PONG: the requester's endpoint as the responder saw it */
  uint8_t ndist;                  /* FINDNODE */
  uint8_t dist[PD_DHT_MAX_DISTANCES];
  uint8_t total;                  /* NODES */
  uint8_t nrec;                   /* NODES */
  pd_dht_rec_ref_t rec[PD_DHT_MAX_NODES];
} pd_dht_msg_t;

/* Decode a plaintext message. PD_DHTW_OK, or PD_DHTW_R_MESSAGE. Records'
 * lengths are checked (130..512), not their content. */
pd_dhtwire_reason_t pd_dht_msg_decode(const uint8_t *buf, size_t len, pd_dht_msg_t *out);
/* Encode a message into out (cap bytes): the fields the type uses. 0 and
 * *len, PD_ETOOBIG (does not fit cap), PD_EINVAL (counts, distances or
 * record lengths out of range). */
int pd_dht_msg_encode(const pd_dht_msg_t *m, uint8_t *out, size_t cap, size_t *len);

/* Split n records (lengths len[i]) over NODES packets: how many go in each
 * so that every message fits PD_DHT_MAX_MSG (greedy, in order). Writes at
 * most PD_DHT_MAX_TOTAL counts into per_packet and returns how many packets
 * (at least 1: an empty answer is one packet with count 0), or PD_EINVAL
 * (n > PD_DHT_MAX_NODES, a length out of range). */
int pd_dht_nodes_split(const uint16_t *len, size_t n, uint8_t per_packet[PD_DHT_MAX_TOTAL]);

/* Log2 distance of two ids: 0 when equal, else 160 - leading zero bits of
 * a XOR b (1..160). */
unsigned pd_dht_logdist(const uint8_t a[PD_DHT_ID_LEN], const uint8_t b[PD_DHT_ID_LEN]);
/* Compare the XOR distances of a and b to target: <0, 0, >0. */
int pd_dht_distcmp(const uint8_t target[PD_DHT_ID_LEN], const uint8_t a[PD_DHT_ID_LEN],
                   const uint8_t b[PD_DHT_ID_LEN]);

#endif
