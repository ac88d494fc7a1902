/* seal — the session cipher of protocol v3 (sans-I/O). Spec: docs/protocol.md §5.
 *
 * Owns: ephemeral X25519 key pairs from a given seed, the per-direction
 * session keys (libsodium crypto_kx: BLAKE2b-512 of the X25519 secret and
 * both public keys), sealing one inner frame into a SEALED frame and opening
 * it again (ChaCha20-Poly1305 IETF, the frame's 10-byte header as associated
 * data, the count of frames under the current key as nonce), key rotation
 * after PD_SEAL_REKEY_FRAMES frames or PD_SEAL_REKEY_BYTES bytes
 * (crypto_kdf), the handshake transcript hash (BLAKE2b-256) and the exact
 * bytes each side's HELLO_ACK signs.
 * Does not own: drawing the ephemeral seed (the caller passes 32 bytes: the
 * daemon from randombytes_buf, tests and the lab from their seeded RNG),
 * signing and verifying (identity.h), the frame codec (wire.h), which
 * message may come when (peer.h).
 *
 * Every primitive is libsodium's; nothing here is hand-made crypto. A
 * "null" session (the lab, which simulates the transport) keeps the frame
 * layout and every counter but skips X25519 and the cipher: the ephemeral
 * public key is the seed itself, SEALED payloads are the inner frame in
 * clear with a zero tag, and opening checks that the tag is zero.
 */
#ifndef PD_SEAL_H
#define PD_SEAL_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "wire.h"

#define PD_SEAL_KEY_LEN 32
#define PD_SEAL_HASH_LEN 32
/* A direction's key is replaced after this many frames or once this many
 * inner bytes went under it, whichever comes first (§5.4). */
#define PD_SEAL_REKEY_FRAMES 4096u
#define PD_SEAL_REKEY_BYTES (16u * 1024 * 1024)
/* HELLO_ACK signs "peerd-auth-v3" || role || transcript hash (46 bytes). */
#define PD_SEAL_AUTH_CONTEXT "peerd-auth-v3"
#define PD_SEAL_AUTH_MSG_LEN (13 + 1 + PD_SEAL_HASH_LEN)
#define PD_SEAL_TRANSCRIPT_CONTEXT "peerd-transcript-v3" /* 19 bytes */
enum { PD_SEAL_DIALLER = 0, PD_SEAL_LISTENER = 1 };

typedef struct pd_seal_dir {
  uint8_t key[PD_SEAL_KEY_LEN]; /* secret */
  uint64_t frames;              /* frames under this key so far: the next nonce */
  uint64_t bytes;               /* inner bytes under this key so far */
  uint32_t epoch;               /* rotations so far */
} pd_seal_dir_t;

typedef struct pd_seal {
  pd_seal_dir_t tx, rx;
  bool null_cipher;
} pd_seal_t;

/* An ephemeral key pair from 32 bytes of the caller's randomness:
 * crypto_kx_seed_keypair (sk = BLAKE2b-256(seed), pk = X25519 base point
 * times sk). Null: pk = sk = seed. Returns 0 or PD_EINVAL. */
int pd_seal_keypair(const uint8_t seed[PD_WIRE_KEYX_LEN], uint8_t pk[PD_WIRE_KEYX_LEN],
                    uint8_t sk[PD_WIRE_KEYX_LEN], bool null_cipher);

/* Both directions' keys from our key pair and the peer's KEYX. role is
 * PD_SEAL_DIALLER for the side that opened the TCP connection. Returns 0,
 * or PD_EINVAL when X25519 refuses the peer's key (a low-order point gives
 * an all-zero secret). */
int pd_seal_init(pd_seal_t *s, int role, const uint8_t pk[PD_WIRE_KEYX_LEN],
                 const uint8_t sk[PD_WIRE_KEYX_LEN], const uint8_t their_pk[PD_WIRE_KEYX_LEN],
                 bool null_cipher);

/* Seal in place: the inner frame is at buf + PD_WIRE_HEADER_LEN (inner_len
 * bytes, at most PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN); buf must hold
 * inner_len + PD_WIRE_SEAL_OVERHEAD bytes. Writes the SEALED header at buf
 * and the tag after the ciphertext; returns the frame's whole length, or 0
 * when inner_len is out of range. Advances the send counter (may rotate). */
size_t pd_seal_frame(pd_seal_t *s, const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t *buf,
                     size_t inner_len);

/* Open a SEALED frame (hdr: its 10-byte header; payload: len bytes,
 * ciphertext then tag) into out (len - PD_WIRE_TAG_LEN bytes; may not
 * overlap payload). Returns 0 and advances the receive counter (may
 * rotate), or PD_EINVAL ("bad_mac": nothing is advanced; close). */
int pd_seal_open(pd_seal_t *s, const uint8_t hdr[PD_WIRE_HEADER_LEN], const uint8_t *payload,
                 size_t len, uint8_t *out);

/* Zero the keys. */
void pd_seal_wipe(pd_seal_t *s);

/* BLAKE2b-256 of a HELLO frame as sent (inner frame, header included). */
void pd_seal_hash(const uint8_t *data, size_t len, uint8_t out[PD_SEAL_HASH_LEN]);

/* The transcript hash both sides sign (§5.2):
 *   BLAKE2b-256("peerd-transcript-v3" || magic || dialler KEYX key ||
 *               listener KEYX key || hash(dialler HELLO) || hash(listener HELLO)) */
void pd_seal_transcript(uint8_t out[PD_SEAL_HASH_LEN], const uint8_t magic[PD_WIRE_MAGIC_LEN],
                        const uint8_t eph_dialler[PD_WIRE_KEYX_LEN],
                        const uint8_t eph_listener[PD_WIRE_KEYX_LEN],
                        const uint8_t hello_dialler[PD_SEAL_HASH_LEN],
                        const uint8_t hello_listener[PD_SEAL_HASH_LEN]);

/* What the side of this role signs: "peerd-auth-v3" || role || transcript. */
void pd_seal_auth_message(uint8_t out[PD_SEAL_AUTH_MSG_LEN], int signer_role,
                          const uint8_t transcript[PD_SEAL_HASH_LEN]);

#endif
