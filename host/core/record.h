/* record — signed node records (sans-I/O). Spec: docs/protocol.md §10.
 *
 * Owns: the byte layout of a node record (the idea of Ethereum's ENR,
 * EIP-778, and libp2p's signed peer records: a node says, under its own
 * ed25519 key, where its peerd listens for the overlay — the discovery
 * endpoint — and where the node itself listens — its named service
 * endpoints — plus a few short attributes), the canonical encoding (so equal
 * content is equal bytes), signing, strict decoding with a named reason per
 * failure, verification (signature, node id = SHA-256(public key)[0..20),
 * network) and the sequence rules (higher replaces lower; the same sequence
 * with other bytes is a conflict).
 * Does not own: where records come from or go (handshake, PEX, the API), what
 * the book keeps of them, which endpoint a policy prefers, the clock (the
 * caller picks the sequence: pd_record_next_seq), drawing keys.
 *
 * Layout (all integers big-endian), at most PD_RECORD_MAX bytes:
 *   u8 version (1) | pubkey[32] | node_id[20] | u64 seq |
 *   u8 nlen, network[nlen] (1..32) | u8 flags (bit 0: discovery endpoint) |
 *   [ip[16] port u16]            (the discovery endpoint, when flag 0 is set) |
 *   u8 nservices (0..8), each: u8 len, name[len] (1..16), ip[16], port u16 |
 *   u8 nattrs (0..8), each: u8 klen, key[klen] (1..16), u8 vlen, value[vlen] (0..64) |
 *   signature[64] over "peerd-record-v1" || every byte before the signature.
 * Names and keys are [a-z0-9._-] starting with a letter or digit; services
 * sorted by name and attributes by key, strictly (no duplicates); values are
 * printable ASCII. Addresses: IPv4 as ::ffff:a.b.c.d, no unspecified IP,
 * port not 0.
 */
#ifndef PD_RECORD_H
#define PD_RECORD_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "netaddr.h"

#define PD_RECORD_VERSION 1
#define PD_RECORD_MAX 512          /* bytes, signature included */
#define PD_RECORD_MIN (1 + 32 + 20 + 8 + 1 + 1 + 1 + 1 + 1 + 64) /* 130: network of 1 byte, nothing else */
#define PD_RECORD_MAX_SERVICES 8
#define PD_RECORD_MAX_ATTRS 8
#define PD_RECORD_NAME_MAX 16      /* service name, attribute key */
#define PD_RECORD_VALUE_MAX 64     /* attribute value */
#define PD_RECORD_NETWORK_MAX 32
#define PD_RECORD_SIG_CONTEXT "peerd-record-v1" /* 15 bytes, no NUL, signed first */

typedef struct pd_record_service {
  char name[PD_RECORD_NAME_MAX + 1];
  pd_netaddr_t addr;
} pd_record_service_t;

typedef struct pd_record_attr {
  char key[PD_RECORD_NAME_MAX + 1];
  char value[PD_RECORD_VALUE_MAX + 1];
} pd_record_attr_t;

/* A decoded record. Build one with pd_record_init, the setters and
 * pd_record_sign; or get one from pd_record_decode. */
typedef struct pd_record {
  uint8_t pubkey[PD_IDENTITY_PK_LEN];
  uint8_t id[PD_NODE_ID_LEN];
  uint64_t seq;
  char network[PD_RECORD_NETWORK_MAX + 1];
  bool has_discovery;
  pd_netaddr_t discovery;
  uint8_t nservices;
  pd_record_service_t services[PD_RECORD_MAX_SERVICES];
  uint8_t nattrs;
  pd_record_attr_t attrs[PD_RECORD_MAX_ATTRS];
  uint8_t sig[PD_IDENTITY_SIG_LEN];
} pd_record_t;

/* Why a record was refused (pd_record_reason_name: metric label values,
 * peerd_records_rejected_total{reason}). */
typedef enum pd_record_reason {
  PD_RECORD_OK = 0,          /* "none" */
  PD_RECORD_R_MALFORMED,     /* "record_malformed": layout, lengths, counts, trailing bytes */
  PD_RECORD_R_BAD_VERSION,   /* "record_version": not a version-1 record */
  PD_RECORD_R_BAD_ID,        /* "record_id": node id is not SHA-256(pubkey)[0..20) */
  PD_RECORD_R_BAD_SIGNATURE, /* "record_signature" */
  PD_RECORD_R_BAD_NAME,      /* "record_name": a name, key or value outside its alphabet/length */
  PD_RECORD_R_UNSORTED,      /* "record_order": services or attributes not strictly sorted */
  PD_RECORD_R_BAD_ADDRESS,   /* "record_address": unspecified IP or port 0 */
  PD_RECORD_R_WRONG_NETWORK, /* "record_network": another network's record */
  PD_RECORD_R_CONFLICT,      /* "record_conflict": same sequence, other content */
  PD_RECORD_R_STALE,         /* "record_stale": lower sequence than the one known */
  PD_RECORD_R_COUNT
} pd_record_reason_t;

const char *pd_record_reason_name(pd_record_reason_t r);

/* Signature scheme: NULL means ed25519 (pd_identity_sign / _verify), which the
 * daemon always uses; the lab may plug in its cheaper scheme, as for the
 * handshake (pd_peer_auth_t has the same shape). */
typedef struct pd_record_auth {
  int (*sign)(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
              uint8_t sig[PD_IDENTITY_SIG_LEN]);
  int (*verify)(void *ud, const uint8_t pk[PD_IDENTITY_PK_LEN], const uint8_t *msg, size_t len,
                const uint8_t sig[PD_IDENTITY_SIG_LEN]);
  void *ud;
} pd_record_auth_t;

/* An empty record for network (1..32 printable bytes) at sequence seq. */
int pd_record_init(pd_record_t *r, const char *network, uint64_t seq, const char **why);
/* Set (add or replace) a service endpoint / an attribute, keeping the sorted
 * order. value NULL removes the attribute; pd_record_del_service removes a
 * service. PD_EINVAL (bad name, value or address, *why), PD_EFULL (8 already). */
int pd_record_set_service(pd_record_t *r, const char *name, const pd_netaddr_t *addr,
                          const char **why);
int pd_record_del_service(pd_record_t *r, const char *name);
int pd_record_set_attr(pd_record_t *r, const char *key, const char *value, const char **why);
const pd_record_service_t *pd_record_service(const pd_record_t *r, const char *name);
const char *pd_record_attr(const pd_record_t *r, const char *key);

/* Fill pubkey and id from self, encode, sign; the bytes go to out (cap >=
 * the encoded size; PD_RECORD_MAX always suffices). 0 and *len, PD_ETOOBIG
 * (the content does not fit in PD_RECORD_MAX or cap), PD_EINVAL. */
int pd_record_sign(pd_record_t *r, const pd_identity_t *self, const pd_record_auth_t *auth,
                   uint8_t *out, size_t cap, size_t *len);

/* Strict decode of len bytes, signature checked (auth as for sign), id
 * checked; network NULL accepts any network, else it must match. Returns
 * PD_RECORD_OK and fills *out (may be NULL), or a reason (and *why: a short
 * static message naming the field, may be NULL). *out is untouched on
 * failure. */
pd_record_reason_t pd_record_decode(const uint8_t *buf, size_t len, const char *network,
                                    const pd_record_auth_t *auth, pd_record_t *out,
                                    const char **why);

/* Decode bytes that were verified before (kept by the record table): the
 * same checks but the signature's. Never for bytes from outside. */
pd_record_reason_t pd_record_parse_trusted(const uint8_t *buf, size_t len, pd_record_t *out);

/* The sequence rule, for a record (bytes b, sequence bseq) arriving where
 * (bytes a, sequence aseq) is known: PD_RECORD_OK when b replaces a (higher
 * sequence), PD_RECORD_R_STALE when b is older, PD_RECORD_R_CONFLICT when
 * the sequences are equal and the bytes differ. Equal bytes: *same = true
 * and PD_RECORD_OK (nothing to do). */
pd_record_reason_t pd_record_compare(const uint8_t *a, size_t alen, uint64_t aseq,
                                     const uint8_t *b, size_t blen, uint64_t bseq, bool *same);

/* The sequence for a new version of our own record: above prev, and at
 * least now_ms (the driver's wall clock in ms), so a restart that forgot prev
 * still goes up while the clock does. */
uint64_t pd_record_next_seq(uint64_t prev, int64_t now_ms);

/* The sequence field of an encoded record (len >= 61) without decoding. */
uint64_t pd_record_peek_seq(const uint8_t *buf, size_t len);

/* Valid service name / attribute key ([a-z0-9._-], first a letter or digit,
 * 1..16) and attribute value (printable ASCII, 0..64). */
bool pd_record_name_ok(const char *s);
bool pd_record_value_ok(const char *s);

#endif
