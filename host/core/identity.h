/* identity — this node's ed25519 key pair and node ID (sans-I/O).
 *
 * Owns: building the key pair from a 32-byte seed (libsodium
 * crypto_sign_seed_keypair), the node ID derivation (first 20 bytes of
 * SHA-256 of the 32-byte public key, CometBFT's rule, docs/protocol.md §5),
 * signing and verifying (pure Ed25519, RFC 8032), and the text content of
 * the `node_key` file (encode / strict decode, docs/protocol.md §9.1).
 * Does not own: drawing the seed (the driver calls randombytes_buf), reading
 * or writing the file (the driver, with fsio, mode 0600), sodium_init()
 * (the driver calls it once at start; Ed25519 and SHA-256 do not depend on
 * it), what is signed (seal.h's transcript and auth message, the peer state
 * machine).
 *
 * The key file content is text:
 *     peerd-node-key v1\n
 *     seed <64 hex>\n
 *     id <40 hex>\n
 * The id line is redundant (derived from the seed) and is checked on decode,
 * so a damaged file is detected rather than silently becoming a new node.
 * CometBFT's node_key.json is read too (pd_identity_decode_cometbft), so a
 * node can lend peerd its own identity (`--node-key`).
 */
#ifndef PD_IDENTITY_H
#define PD_IDENTITY_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_IDENTITY_SEED_LEN 32
#define PD_IDENTITY_PK_LEN 32
#define PD_IDENTITY_SK_LEN 64 /* libsodium form: seed || public key */
#define PD_IDENTITY_SIG_LEN 64
#define PD_IDENTITY_ID_LEN 20 /* == PD_NODE_ID_LEN */
/* Exact length of the encoded key file content. */
#define PD_IDENTITY_FILE_LEN (18 + 5 + 64 + 1 + 3 + 40 + 1)
/* Longest input pd_identity_decode looks at (a CRLF file is still refused). */
#define PD_IDENTITY_FILE_MAX 512

typedef struct pd_identity {
  uint8_t pk[PD_IDENTITY_PK_LEN];
  uint8_t sk[PD_IDENTITY_SK_LEN]; /* secret: wipe with pd_identity_wipe */
  uint8_t id[PD_IDENTITY_ID_LEN];
} pd_identity_t;

/* Derive the key pair and node ID from a seed. Returns 0 or PD_EINVAL. */
int pd_identity_from_seed(pd_identity_t *id, const uint8_t seed[PD_IDENTITY_SEED_LEN]);
/* Zero the secret key (sodium_memzero) and the rest of the struct. */
void pd_identity_wipe(pd_identity_t *id);

/* Node ID of a public key: SHA-256(pk)[0..20). */
void pd_identity_node_id(const uint8_t pk[PD_IDENTITY_PK_LEN], uint8_t out[PD_IDENTITY_ID_LEN]);
/* True if id == SHA-256(pk)[0..20). */
bool pd_identity_id_matches(const uint8_t pk[PD_IDENTITY_PK_LEN],
                            const uint8_t id[PD_IDENTITY_ID_LEN]);

/* Detached Ed25519 signature over msg[0..len). Returns 0 or PD_EINVAL. */
int pd_identity_sign(const pd_identity_t *id, const uint8_t *msg, size_t len,
                     uint8_t sig[PD_IDENTITY_SIG_LEN]);
/* 0 if sig is a valid signature of msg by pk; PD_EINVAL otherwise (bad
 * signature, or a public key libsodium refuses: small order, non-canonical). */
int pd_identity_verify(const uint8_t pk[PD_IDENTITY_PK_LEN], const uint8_t *msg, size_t len,
                       const uint8_t sig[PD_IDENTITY_SIG_LEN]);

/* The key file content (PD_IDENTITY_FILE_LEN bytes + NUL) into buf.
 * Returns 0 and *len (without the NUL), or PD_ETOOBIG. The caller should
 * wipe buf after writing it (it holds the seed). */
int pd_identity_encode(const pd_identity_t *id, char *buf, size_t cap, size_t *len);
/* Parse key file content of len bytes (need not be NUL-terminated). Lines
 * end in "\n"; the last newline may be missing; seed hex may be upper or
 * lower case. Returns 0, PD_EFORMAT (not a peerd key file or another
 * version), PD_ECORRUPT (damaged: bad hex, missing line, id does not match
 * the seed, trailing junk) or PD_ETOOBIG (longer than PD_IDENTITY_FILE_MAX),
 * with *why (may be NULL) a short static reason. *out is untouched on
 * failure. */
int pd_identity_decode(const char *text, size_t len, pd_identity_t *out, const char **why);

/* Parse CometBFT's node_key.json content:
 *     {"priv_key":{"type":"tendermint/PrivKeyEd25519","value":"<base64 of 64 bytes>"}}
 * The 64 bytes are the ed25519 seed then the public key; the public key must
 * be the seed's (else PD_ECORRUPT), so the node id is CometBFT's own. Returns
 * 0, PD_EFORMAT (not JSON, or another key type), PD_ECORRUPT (bad base64,
 * wrong length, key mismatch) or PD_ETOOBIG (over PD_IDENTITY_FILE_MAX),
 * with *why. *out untouched on failure. */
int pd_identity_decode_cometbft(const char *text, size_t len, pd_identity_t *out,
                                const char **why);
/* Either form: CometBFT's JSON when the text starts with '{' (after
 * whitespace), else peerd's own key file. */
int pd_identity_decode_any(const char *text, size_t len, pd_identity_t *out, const char **why);

#endif
