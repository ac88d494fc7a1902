/* seal — the session cipher of protocol v3. See seal.h and
 * docs/protocol.md §5. */
#include "seal.h"

#include <string.h>

#include <sodium.h>

#include "err.h"

#define NONCE_LEN crypto_aead_chacha20poly1305_IETF_NPUBBYTES /* 12 */
static const char REKEY_CTX[crypto_kdf_CONTEXTBYTES] = {'p', 'e', 'e', 'r', 'd', 'r', 'k', '3'};

_Static_assert(crypto_kx_PUBLICKEYBYTES == PD_WIRE_KEYX_LEN, "KEYX carries an X25519 key");
_Static_assert(crypto_kx_SESSIONKEYBYTES == PD_SEAL_KEY_LEN, "session key size");
_Static_assert(crypto_aead_chacha20poly1305_IETF_ABYTES == PD_WIRE_TAG_LEN, "tag size");
_Static_assert(crypto_kdf_CONTEXTBYTES == 8, "kdf context");

int pd_seal_keypair(const uint8_t seed[PD_WIRE_KEYX_LEN], uint8_t pk[PD_WIRE_KEYX_LEN],
                    uint8_t sk[PD_WIRE_KEYX_LEN], bool null_cipher) {
  if (!seed || !pk || !sk) return PD_EINVAL;
  if (null_cipher) {
    memcpy(pk, seed, PD_WIRE_KEYX_LEN);
    memcpy(sk, seed, PD_WIRE_KEYX_LEN);
    return 0;
  }
  return crypto_kx_seed_keypair(pk, sk, seed) == 0 ? 0 : PD_EINVAL;
}

int pd_seal_init(pd_seal_t *s, int role, const uint8_t pk[PD_WIRE_KEYX_LEN],
                 const uint8_t sk[PD_WIRE_KEYX_LEN], const uint8_t their_pk[PD_WIRE_KEYX_LEN],
                 bool null_cipher) {
  memset(s, 0, sizeof *s);
  s->null_cipher = null_cipher;
  if (null_cipher) return 0;
  int rc = role == PD_SEAL_DIALLER
               ? crypto_kx_client_session_keys(s->rx.key, s->tx.key, pk, sk, their_pk)
               : crypto_kx_server_session_keys(s->rx.key, s->tx.key, pk, sk, their_pk);
  if (rc != 0) {
    pd_seal_wipe(s);
    return PD_EINVAL;
  }
  return 0;
}

static void nonce_of(const pd_seal_dir_t *d, uint8_t n[NONCE_LEN]) {
  memset(n, 0, NONCE_LEN);
  for (int i = 0; i < 8; i++) n[4 + i] = (uint8_t)(d->frames >> (8 * i)); /* u64 LE after 4 zeros */
}

/* Count one frame of inner_len bytes; rotate the key when due. */
static void advance(pd_seal_dir_t *d, size_t inner_len) {
  d->frames++;
  d->bytes += inner_len;
  if (d->frames < PD_SEAL_REKEY_FRAMES && d->bytes < PD_SEAL_REKEY_BYTES) return;
  uint8_t next[PD_SEAL_KEY_LEN];
  d->epoch++;
  crypto_kdf_derive_from_key(next, sizeof next, d->epoch, REKEY_CTX, d->key);
  memcpy(d->key, next, sizeof next);
  sodium_memzero(next, sizeof next);
  d->frames = 0;
  d->bytes = 0;
}

size_t pd_seal_frame(pd_seal_t *s, const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t *buf,
                     size_t inner_len) {
  if (inner_len < PD_WIRE_HEADER_LEN || inner_len > PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN) return 0;
  pd_wire_write_header(magic, PD_WIRE_SEALED, (uint32_t)(inner_len + PD_WIRE_TAG_LEN), buf);
  uint8_t *body = buf + PD_WIRE_HEADER_LEN, *tag = body + inner_len;
  if (s->null_cipher) {
    memset(tag, 0, PD_WIRE_TAG_LEN);
  } else {
    uint8_t n[NONCE_LEN];
    nonce_of(&s->tx, n);
    crypto_aead_chacha20poly1305_ietf_encrypt_detached(body, tag, NULL, body, inner_len, buf,
                                                       PD_WIRE_HEADER_LEN, NULL, n, s->tx.key);
  }
  advance(&s->tx, inner_len);
  return inner_len + PD_WIRE_SEAL_OVERHEAD;
}

int pd_seal_open(pd_seal_t *s, const uint8_t hdr[PD_WIRE_HEADER_LEN], const uint8_t *payload,
                 size_t len, uint8_t *out) {
  if (len < PD_WIRE_SEALED_MIN) return PD_EINVAL;
  size_t inner = len - PD_WIRE_TAG_LEN;
  const uint8_t *tag = payload + inner;
  if (s->null_cipher) {
    static const uint8_t zero[PD_WIRE_TAG_LEN] = {0};
    if (memcmp(tag, zero, PD_WIRE_TAG_LEN) != 0) return PD_EINVAL;
    memcpy(out, payload, inner);
  } else {
    uint8_t n[NONCE_LEN];
    nonce_of(&s->rx, n);
    if (crypto_aead_chacha20poly1305_ietf_decrypt_detached(out, NULL, payload, inner, tag, hdr,
                                                           PD_WIRE_HEADER_LEN, n, s->rx.key) != 0)
      return PD_EINVAL;
  }
  advance(&s->rx, inner);
  return 0;
}

void pd_seal_wipe(pd_seal_t *s) { sodium_memzero(s, sizeof *s); }

void pd_seal_hash(const uint8_t *data, size_t len, uint8_t out[PD_SEAL_HASH_LEN]) {
  crypto_generichash(out, PD_SEAL_HASH_LEN, data, len, NULL, 0);
}

void pd_seal_transcript(uint8_t out[PD_SEAL_HASH_LEN], const uint8_t magic[PD_WIRE_MAGIC_LEN],
                        const uint8_t eph_dialler[PD_WIRE_KEYX_LEN],
                        const uint8_t eph_listener[PD_WIRE_KEYX_LEN],
                        const uint8_t hello_dialler[PD_SEAL_HASH_LEN],
                        const uint8_t hello_listener[PD_SEAL_HASH_LEN]) {
  crypto_generichash_state st;
  crypto_generichash_init(&st, NULL, 0, PD_SEAL_HASH_LEN);
  crypto_generichash_update(&st, (const uint8_t *)PD_SEAL_TRANSCRIPT_CONTEXT,
                            sizeof PD_SEAL_TRANSCRIPT_CONTEXT - 1);
  crypto_generichash_update(&st, magic, PD_WIRE_MAGIC_LEN);
  crypto_generichash_update(&st, eph_dialler, PD_WIRE_KEYX_LEN);
  crypto_generichash_update(&st, eph_listener, PD_WIRE_KEYX_LEN);
  crypto_generichash_update(&st, hello_dialler, PD_SEAL_HASH_LEN);
  crypto_generichash_update(&st, hello_listener, PD_SEAL_HASH_LEN);
  crypto_generichash_final(&st, out, PD_SEAL_HASH_LEN);
}

void pd_seal_auth_message(uint8_t out[PD_SEAL_AUTH_MSG_LEN], int signer_role,
                          const uint8_t transcript[PD_SEAL_HASH_LEN]) {
  memcpy(out, PD_SEAL_AUTH_CONTEXT, 13);
  out[13] = (uint8_t)signer_role;
  memcpy(out + 14, transcript, PD_SEAL_HASH_LEN);
}
