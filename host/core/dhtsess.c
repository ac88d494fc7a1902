/* dhtsess — the DHT's sessions: handshake crypto, sealing, replay windows,
 * the session table. See dhtsess.h and docs/protocol.md §11.3–11.4. */
#include "dhtsess.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* ---- small helpers ---- */

static void ctr_nonce(uint8_t nonce[PD_DHT_NONCE_LEN], uint64_t ctr) {
  memset(nonce, 0, 4);
  for (int i = 0; i < 8; i++) nonce[4 + i] = (uint8_t)(ctr >> (56 - 8 * i));
}

static uint64_t nonce_ctr(const uint8_t nonce[PD_DHT_NONCE_LEN], bool *ok) {
  uint64_t v = 0;
  *ok = nonce[0] == 0 && nonce[1] == 0 && nonce[2] == 0 && nonce[3] == 0;
  for (int i = 0; i < 8; i++) v = (v << 8) | nonce[4 + i];
  return v;
}

/* AEAD seal: out = ciphertext || tag (msg_len + 16 bytes). */
static int aead_seal(const pd_dht_crypto_t *c, const uint8_t key[PD_DHT_KEY_LEN],
                     const uint8_t nonce[PD_DHT_NONCE_LEN], const uint8_t *ad, size_t ad_len,
                     const uint8_t *msg, size_t msg_len, uint8_t *out) {
  if (c->null_cipher) {
    memmove(out, msg, msg_len);
    memset(out + msg_len, 0, PD_DHT_TAG_LEN);
    return 0;
  }
  unsigned long long clen = 0;
  crypto_aead_chacha20poly1305_ietf_encrypt(out, &clen, msg, msg_len, ad, ad_len, NULL, nonce, key);
  return 0;
}

static int aead_open(const pd_dht_crypto_t *c, const uint8_t key[PD_DHT_KEY_LEN],
                     const uint8_t nonce[PD_DHT_NONCE_LEN], const uint8_t *ad, size_t ad_len,
                     const uint8_t *ct, size_t ct_len, uint8_t *plain, size_t cap, size_t *len) {
  if (ct_len < PD_DHT_TAG_LEN || ct_len - PD_DHT_TAG_LEN > cap) return PD_EINVAL;
  size_t n = ct_len - PD_DHT_TAG_LEN;
  if (c->null_cipher) {
    static const uint8_t zero[PD_DHT_TAG_LEN] = {0};
    if (memcmp(ct + n, zero, PD_DHT_TAG_LEN) != 0) return PD_EINVAL;
    memmove(plain, ct, n);
    *len = n;
    return 0;
  }
  unsigned long long plen = 0;
  if (crypto_aead_chacha20poly1305_ietf_decrypt(plain, &plen, NULL, ct, ct_len, ad, ad_len, nonce,
                                                key) != 0)
    return PD_EINVAL;
  *len = (size_t)plen;
  return 0;
}

static int sign(const pd_dht_crypto_t *c, const uint8_t *msg, size_t len,
                uint8_t sig[PD_DHT_SIG_LEN]) {
  if (c->auth) return c->auth->sign(c->auth->ud, c->self, msg, len, sig);
  return pd_identity_sign(c->self, msg, len, sig);
}

static int verify(const pd_dht_crypto_t *c, const uint8_t pk[PD_DHT_PK_LEN], const uint8_t *msg,
                  size_t len, const uint8_t sig[PD_DHT_SIG_LEN]) {
  if (c->auth) return c->auth->verify(c->auth->ud, pk, msg, len, sig);
  return pd_identity_verify(pk, msg, len, sig);
}

/* The id-signature input: context || challenge || eph_pk || dest id. */
#define IDSIG_CTX_LEN (sizeof PD_DHT_IDSIG_CONTEXT - 1)
#define IDSIG_LEN (IDSIG_CTX_LEN + PD_DHT_WHOAREYOU_LEN + PD_DHT_PK_LEN + PD_DHT_ID_LEN)
static void idsig_input(uint8_t out[IDSIG_LEN], const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                        const uint8_t eph_pk[PD_DHT_PK_LEN], const uint8_t dest[PD_DHT_ID_LEN]) {
  memcpy(out, PD_DHT_IDSIG_CONTEXT, IDSIG_CTX_LEN);
  memcpy(out + IDSIG_CTX_LEN, challenge, PD_DHT_WHOAREYOU_LEN);
  memcpy(out + IDSIG_CTX_LEN + PD_DHT_WHOAREYOU_LEN, eph_pk, PD_DHT_PK_LEN);
  memcpy(out + IDSIG_CTX_LEN + PD_DHT_WHOAREYOU_LEN + PD_DHT_PK_LEN, dest, PD_DHT_ID_LEN);
}

/* keys = BLAKE2b-512(context || shared || challenge || init id || recp id || eph_pk). */
static void derive(const uint8_t shared[32], const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                   const uint8_t init_id[PD_DHT_ID_LEN], const uint8_t recp_id[PD_DHT_ID_LEN],
                   const uint8_t eph_pk[PD_DHT_PK_LEN], uint8_t init_key[PD_DHT_KEY_LEN],
                   uint8_t recp_key[PD_DHT_KEY_LEN]) {
  crypto_generichash_state st;
  uint8_t out[64];
  crypto_generichash_init(&st, NULL, 0, sizeof out);
  crypto_generichash_update(&st, (const uint8_t *)PD_DHT_KEYS_CONTEXT,
                            sizeof PD_DHT_KEYS_CONTEXT - 1);
  crypto_generichash_update(&st, shared, 32);
  crypto_generichash_update(&st, challenge, PD_DHT_WHOAREYOU_LEN);
  crypto_generichash_update(&st, init_id, PD_DHT_ID_LEN);
  crypto_generichash_update(&st, recp_id, PD_DHT_ID_LEN);
  crypto_generichash_update(&st, eph_pk, PD_DHT_PK_LEN);
  crypto_generichash_final(&st, out, sizeof out);
  memcpy(init_key, out, PD_DHT_KEY_LEN);
  memcpy(recp_key, out + PD_DHT_KEY_LEN, PD_DHT_KEY_LEN);
  sodium_memzero(out, sizeof out);
  sodium_memzero(&st, sizeof st);
}

/* ---- messages ---- */

int pd_dht_seal_message(pd_dht_session_t *s, const pd_dht_crypto_t *c, const uint8_t *msg,
                        size_t msg_len, uint8_t *out, size_t cap, size_t *len, int64_t now_ms) {
  size_t total = PD_DHT_HEADER_LEN + msg_len + PD_DHT_TAG_LEN;
  if (total > cap || total > PD_DHT_MAX_PACKET) return PD_ETOOBIG;
  uint8_t nonce[PD_DHT_NONCE_LEN];
  ctr_nonce(nonce, ++s->tx_ctr);
  pd_dht_header_encode(out, PD_DHT_MESSAGE, nonce, c->self->id);
  aead_seal(c, s->tx_key, nonce, out, PD_DHT_HEADER_LEN, msg, msg_len, out + PD_DHT_HEADER_LEN);
  *len = total;
  s->used_ms = now_ms;
  return 0;
}

/* The replay window (WireGuard's idea): may counter n still be opened? */
static bool window_fresh(const pd_dht_session_t *s, uint64_t n) {
  if (n == 0) return false;
  if (n > s->rx_max) return true;
  uint64_t back = s->rx_max - n;
  if (back >= PD_DHT_REPLAY_WINDOW) return false;
  return !(s->rx_bits & ((uint64_t)1 << back));
}

static void window_mark(pd_dht_session_t *s, uint64_t n) {
  if (n > s->rx_max) {
    uint64_t shift = n - s->rx_max;
    s->rx_bits = shift >= PD_DHT_REPLAY_WINDOW ? 0 : s->rx_bits << shift;
    s->rx_max = n;
    s->rx_bits |= 1;
  } else {
    s->rx_bits |= (uint64_t)1 << (s->rx_max - n);
  }
}

int pd_dht_open_message(pd_dht_session_t *s, const pd_dht_crypto_t *c, const pd_dht_packet_t *p,
                        uint8_t *plain, size_t cap, size_t *len, int64_t now_ms) {
  bool ok = false;
  uint64_t n = nonce_ctr(p->nonce, &ok);
  if (!ok) return PD_EINVAL; /* a random nonce: no session packet, challenge */
  int rc = aead_open(c, s->rx_key, p->nonce, p->header, PD_DHT_HEADER_LEN, p->ciphertext,
                     p->ciphertext_len, plain, cap, len);
  if (rc != 0) return PD_EINVAL;
  if (!window_fresh(s, n)) return PD_EEXIST;
  window_mark(s, n);
  s->used_ms = now_ms;
  return 0;
}

/* ---- handshake ---- */

static int ecdh_initiator(const pd_dht_crypto_t *c, const uint8_t eph_sk[32],
                          const uint8_t remote_pk[PD_DHT_PK_LEN], uint8_t shared[32]) {
  if (c->null_cipher) {
    memset(shared, 0, 32);
    return 0;
  }
  uint8_t xpk[32];
  if (crypto_sign_ed25519_pk_to_curve25519(xpk, remote_pk) != 0) return PD_EINVAL;
  if (crypto_scalarmult(shared, eph_sk, xpk) != 0) return PD_EINVAL;
  return 0;
}

static int ecdh_responder(const pd_dht_crypto_t *c, const uint8_t eph_pk[PD_DHT_PK_LEN],
                          uint8_t shared[32]) {
  if (c->null_cipher) {
    memset(shared, 0, 32);
    return 0;
  }
  uint8_t xsk[32];
  crypto_sign_ed25519_sk_to_curve25519(xsk, c->self->sk);
  int rc = crypto_scalarmult(shared, xsk, eph_pk);
  sodium_memzero(xsk, sizeof xsk);
  return rc == 0 ? 0 : PD_EINVAL;
}

int pd_dht_handshake_initiate(const pd_dht_crypto_t *c, const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                              const pd_dht_packet_t *wp, const pd_netaddr_t *ep,
                              const uint8_t eph_seed[32], const uint8_t *record, size_t record_len,
                              uint64_t my_seq, const uint8_t *msg, size_t msg_len,
                              pd_dht_session_t *s, uint8_t *out, size_t cap, size_t *len,
                              int64_t now_ms) {
  if (!pd_identity_id_matches(wp->pubkey, wp->src_id)) return PD_EINVAL;
  uint8_t eph_pk[32], eph_sk[32], shared[32];
  if (c->null_cipher) {
    memcpy(eph_pk, eph_seed, 32);
    memcpy(eph_sk, eph_seed, 32);
  } else if (crypto_kx_seed_keypair(eph_pk, eph_sk, eph_seed) != 0) {
    return PD_EINVAL;
  }
  int rc = ecdh_initiator(c, eph_sk, wp->pubkey, shared);
  sodium_memzero(eph_sk, sizeof eph_sk);
  if (rc != 0) return rc;
  memset(s, 0, sizeof *s);
  memcpy(s->id, wp->src_id, PD_DHT_ID_LEN);
  s->ep = *ep;
  memcpy(s->pubkey, wp->pubkey, PD_DHT_PK_LEN);
  s->initiator = true;
  derive(shared, challenge, c->self->id, wp->src_id, eph_pk, s->tx_key, s->rx_key);
  sodium_memzero(shared, sizeof shared);

  uint8_t sin[IDSIG_LEN], sig[PD_DHT_SIG_LEN];
  idsig_input(sin, challenge, eph_pk, wp->src_id);
  if (sign(c, sin, sizeof sin, sig) != 0) return PD_EINVAL;

  const uint8_t *rec = NULL;
  size_t rlen = 0;
  if (record && wp->record_seq < my_seq) {
    rec = record;
    rlen = record_len;
  }
  uint8_t nonce[PD_DHT_NONCE_LEN];
  s->tx_ctr = 1;
  ctr_nonce(nonce, s->tx_ctr);
  size_t head = 0;
  rc = pd_dht_handshake_head_encode(out, cap, &head, nonce, c->self->id, eph_pk, c->self->pk, sig,
                                    rec, rlen);
  if (rc != 0) return rc;
  size_t total = head + msg_len + PD_DHT_TAG_LEN;
  if (total > cap || total > PD_DHT_MAX_PACKET) return PD_ETOOBIG;
  aead_seal(c, s->tx_key, nonce, out, head, msg, msg_len, out + head);
  *len = total;
  s->used_ms = now_ms;
  return 0;
}

int pd_dht_handshake_accept(const pd_dht_crypto_t *c, const uint8_t challenge[PD_DHT_WHOAREYOU_LEN],
                            const pd_dht_packet_t *p, const pd_netaddr_t *ep, pd_dht_session_t *s,
                            uint8_t *plain, size_t cap, size_t *len, int64_t now_ms) {
  if (!pd_identity_id_matches(p->pubkey, p->src_id)) return PD_ENOENT;
  uint8_t sin[IDSIG_LEN];
  idsig_input(sin, challenge, p->eph_pubkey, c->self->id);
  if (verify(c, p->pubkey, sin, sizeof sin, p->id_signature) != 0) return PD_EINVAL;
  uint8_t shared[32];
  if (ecdh_responder(c, p->eph_pubkey, shared) != 0) return PD_EINVAL;
  pd_dht_session_t n;
  memset(&n, 0, sizeof n);
  memcpy(n.id, p->src_id, PD_DHT_ID_LEN);
  n.ep = *ep;
  memcpy(n.pubkey, p->pubkey, PD_DHT_PK_LEN);
  derive(shared, challenge, p->src_id, c->self->id, p->eph_pubkey, n.rx_key, n.tx_key);
  sodium_memzero(shared, sizeof shared);
  bool ok = false;
  uint64_t ctr = nonce_ctr(p->nonce, &ok);
  if (!ok || ctr != 1) return PD_ERANGE;
  if (aead_open(c, n.rx_key, p->nonce, p->header, p->ad_len, p->ciphertext, p->ciphertext_len,
                plain, cap, len) != 0)
    return PD_ERANGE;
  window_mark(&n, 1);
  n.used_ms = now_ms;
  *s = n;
  sodium_memzero(&n, sizeof n);
  return 0;
}

/* ---- the session table ---- */

struct pd_dht_sessions {
  pd_dht_session_t *v;
  size_t n, max;
  /* (id, endpoint) -> position + 1 in v, linear probing (0: empty); at
   * least twice max slots, so a probe ends soon */
  uint32_t *idx;
  size_t mask;
};

static bool ep_eq(const pd_netaddr_t *a, const pd_netaddr_t *b) {
  return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

/* Node ids are hashes already: their first bytes with the port spread well
 * enough for a table nobody outside chooses the size of. */
static size_t slot_of(const pd_dht_sessions_t *t, const uint8_t id[PD_DHT_ID_LEN],
                      const pd_netaddr_t *ep) {
  uint64_t h = 0;
  memcpy(&h, id, sizeof h);
  h ^= (uint64_t)ep->port * 0x9E3779B97F4A7C15ull;
  h ^= (uint64_t)ep->ip[15] << 17 ^ (uint64_t)ep->ip[14] << 29;
  h *= 0xBF58476D1CE4E5B9ull;
  return (size_t)(h >> 20) & t->mask;
}

static long idx_find(const pd_dht_sessions_t *t, const uint8_t id[PD_DHT_ID_LEN],
                     const pd_netaddr_t *ep) {
  for (size_t i = slot_of(t, id, ep);; i = (i + 1) & t->mask) {
    uint32_t v = t->idx[i];
    if (!v) return -1;
    const pd_dht_session_t *s = &t->v[v - 1];
    if (memcmp(s->id, id, PD_DHT_ID_LEN) == 0 && ep_eq(&s->ep, ep)) return (long)i;
  }
}

static void idx_put(pd_dht_sessions_t *t, size_t pos) {
  size_t i = slot_of(t, t->v[pos].id, &t->v[pos].ep);
  while (t->idx[i]) i = (i + 1) & t->mask;
  t->idx[i] = (uint32_t)pos + 1;
}

/* Remove slot i, shifting later entries of its run back (no tombstones). */
static void idx_del(pd_dht_sessions_t *t, size_t i) {
  t->idx[i] = 0;
  for (size_t j = (i + 1) & t->mask; t->idx[j]; j = (j + 1) & t->mask) {
    uint32_t v = t->idx[j];
    size_t home = slot_of(t, t->v[v - 1].id, &t->v[v - 1].ep);
    /* move v to i when its home is not cyclically in (i, j] */
    bool stays = i <= j ? (home > i && home <= j) : (home > i || home <= j);
    if (stays) continue;
    t->idx[i] = v;
    t->idx[j] = 0;
    i = j;
  }
}

static void idx_rebuild(pd_dht_sessions_t *t) {
  memset(t->idx, 0, (t->mask + 1) * sizeof *t->idx);
  for (size_t k = 0; k < t->n; k++) idx_put(t, k);
}

pd_dht_sessions_t *pd_dht_sessions_new(size_t max) {
  pd_dht_sessions_t *t = calloc(1, sizeof *t);
  if (!t) return NULL;
  t->max = max ? max : PD_DHT_MAX_SESSIONS;
  size_t slots = 16;
  while (slots < 2 * t->max) slots *= 2;
  t->idx = calloc(slots, sizeof *t->idx);
  if (!t->idx) {
    free(t);
    return NULL;
  }
  t->mask = slots - 1;
  return t;
}

void pd_dht_sessions_free(pd_dht_sessions_t *t) {
  if (!t) return;
  if (t->v) sodium_memzero(t->v, t->n * sizeof *t->v);
  free(t->v);
  free(t->idx);
  free(t);
}

pd_dht_session_t *pd_dht_sessions_find(pd_dht_sessions_t *t, const uint8_t id[PD_DHT_ID_LEN],
                                       const pd_netaddr_t *ep) {
  long i = idx_find(t, id, ep);
  return i < 0 ? NULL : &t->v[t->idx[i] - 1];
}

pd_dht_session_t *pd_dht_sessions_put(pd_dht_sessions_t *t, const pd_dht_session_t *s,
                                      int *evicted) {
  if (evicted) *evicted = 0;
  pd_dht_session_t *old = pd_dht_sessions_find(t, s->id, &s->ep);
  if (old) {
    *old = *s;
    return old;
  }
  if (t->n == t->max) {
    size_t lru = 0;
    for (size_t i = 1; i < t->n; i++)
      if (t->v[i].used_ms < t->v[lru].used_ms) lru = i;
    idx_del(t, (size_t)idx_find(t, t->v[lru].id, &t->v[lru].ep));
    t->v[lru] = *s;
    idx_put(t, lru);
    if (evicted) *evicted = 1;
    return &t->v[lru];
  }
  if (t->n % 16 == 0) {
    pd_dht_session_t *v = realloc(t->v, (t->n + 16) * sizeof *v);
    if (!v) return NULL;
    t->v = v;
  }
  t->v[t->n] = *s;
  idx_put(t, t->n);
  return &t->v[t->n++];
}

size_t pd_dht_sessions_expire(pd_dht_sessions_t *t, int64_t now_ms) {
  size_t w = 0, dropped = 0;
  for (size_t i = 0; i < t->n; i++) {
    if (now_ms - t->v[i].used_ms >= PD_DHT_SESSION_IDLE_MS) {
      dropped++;
      continue;
    }
    if (w != i) t->v[w] = t->v[i];
    w++;
  }
  if (dropped) {
    sodium_memzero(t->v + w, dropped * sizeof *t->v);
    t->n = w;
    idx_rebuild(t);
  }
  return dropped;
}

size_t pd_dht_sessions_count(const pd_dht_sessions_t *t) { return t->n; }

bool pd_dht_sessions_has_ep(const pd_dht_sessions_t *t, const pd_netaddr_t *ep) {
  for (size_t i = 0; i < t->n; i++)
    if (ep_eq(&t->v[i].ep, ep)) return true;
  return false;
}
