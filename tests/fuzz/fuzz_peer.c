/* fuzz_peer — libFuzzer target for one connection's state machine
 * (host/core/peer.c) after its handshake: what an authenticated but
 * hostile peer can send.
 * Per input: peer A (inbound, under test) and a scripted remote B
 * (outbound) complete a handshake in memory, with fixed challenges and
 * seeds (the same bytes every time). Then the input's bytes arrive at A as
 * if B sent them: byte 0 picks the chunk size (1..16 or all at once) and
 * how far the clock moves between chunks (0..15 s, so keep-alives, the
 * GETADDR period and the dead-peer timeout fire); the rest is the stream,
 * plain frames as B means them. Since protocol v3 A accepts only SEALED
 * frames after the key exchange, so every whole frame the stream holds
 * (cut by its header's length) goes through B's session first
 * (pd_peer_send_frame seals it, real cipher); what follows the last whole
 * frame (a cut frame, a length over the limit) is appended as it is.
 * fuzz_sealed fuzzes the sealed layer itself (tampering, raw bytes).
 * A's actions are performed as a driver would: GETADDR is answered with 20
 * addresses, SEND bytes are dropped, and every fourth chunk A asks for
 * addresses itself. After the stream, the clock runs 10 minutes on.
 * The handshake signs with a keyed BLAKE2b stand-in for ed25519 (the shape
 * pd_peer_auth_t allows, as the lab does): the signature code is not what
 * is fuzzed here, and it keeps executions fast.
 * Oracle beyond the sanitizers: A is READY after the handshake; an ADDRS
 * action's count + dropped is what was received; nothing follows CLOSE;
 * once CLOSED, A stays CLOSED and its deadline is INT64_MAX.
 * Nothing outlives one input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "peer.h"

static const uint8_t MAGIC[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
#define T0 ((int64_t)1700000000000)

static int fake_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
                     uint8_t sig[PD_WIRE_SIG_LEN]) {
  (void)ud;
  return crypto_generichash(sig, PD_WIRE_SIG_LEN, msg, len, self->pk, PD_WIRE_PUBKEY_LEN) == 0 ? 0 : PD_EINVAL;
}

static int fake_verify(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg,
                       size_t len, const uint8_t sig[PD_WIRE_SIG_LEN]) {
  (void)ud;
  uint8_t want[PD_WIRE_SIG_LEN];
  if (crypto_generichash(want, sizeof want, msg, len, pk, PD_WIRE_PUBKEY_LEN) != 0) return PD_EINVAL;
  return memcmp(want, sig, sizeof want) == 0 ? 0 : PD_EINVAL;
}

static const pd_peer_auth_t AUTH = {.sign = fake_sign, .verify = fake_verify};

typedef struct side {
  pd_peer_t *p;
  uint8_t *out; /* bytes sent, kept only during the handshake */
  size_t len, cap;
  bool keep; /* collect SEND bytes */
  bool closed;
} side_t;

static void addrs_for(pd_wire_addr_entry_t *e, size_t n) {
  for (size_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof e[i]);
    e[i].addr.ip[10] = e[i].addr.ip[11] = 0xff;
    e[i].addr.ip[12] = (uint8_t)(20 + i);
    e[i].addr.ip[13] = 1;
    e[i].addr.ip[14] = 2;
    e[i].addr.ip[15] = (uint8_t)(1 + i);
    e[i].addr.port = (uint16_t)(7000 + i);
    e[i].timestamp = T0 / 1000 - (int64_t)i;
  }
}

static void drain(side_t *s, int64_t now) {
  pd_peer_action_t a;
  while (pd_peer_poll(s->p, &a)) {
    if (s->closed) abort(); /* CLOSE is the last action */
    switch (a.type) {
    case PD_PEER_A_SEND:
      if (a.send.len == 0) abort();
      if (!s->keep) break;
      if (s->len + a.send.len > s->cap) {
        size_t ncap = s->cap ? s->cap * 2 : 4096;
        while (ncap < s->len + a.send.len) ncap *= 2;
        uint8_t *nb = realloc(s->out, ncap);
        if (!nb) abort();
        s->out = nb;
        s->cap = ncap;
      }
      memcpy(s->out + s->len, a.send.data, a.send.len);
      s->len += a.send.len;
      break;
    case PD_PEER_A_CLOSE:
      if (!a.close.reason) abort();
      s->closed = true;
      break;
    case PD_PEER_A_ADDRS_RECEIVED:
      if (a.addrs.count + a.addrs.dropped != a.addrs.received) abort();
      if (a.addrs.count > PD_WIRE_MAX_ADDRS) abort();
      break;
    case PD_PEER_A_GETADDR_RECEIVED: {
      pd_wire_addr_entry_t e[20];
      addrs_for(e, 20);
      if (pd_peer_send_addrs(s->p, e, 20, now) != 0 && pd_peer_state(s->p) == PD_PEER_READY) abort();
      break;
    }
    case PD_PEER_A_HANDSHAKE_DONE:
    case PD_PEER_A_LATENCY:
    case PD_PEER_A_MISBEHAVED: break;
    default: abort();
    }
  }
  pd_peer_trim(s->p);
}

static void make(side_t *s, const pd_identity_t *id, pd_peer_dir_t dir, const uint8_t *expect,
                 uint8_t salt, int64_t now) {
  memset(s, 0, sizeof *s);
  s->keep = true;
  uint8_t challenge[PD_WIRE_CHALLENGE_LEN];
  memset(challenge, salt, sizeof challenge);
  pd_netaddr_t listen;
  memset(&listen, 0, sizeof listen);
  listen.ip[10] = listen.ip[11] = 0xff;
  listen.ip[12] = 10;
  listen.ip[15] = salt;
  listen.port = 7411;
  pd_peer_params_t prm = {.self = id, .magic = MAGIC, .network = PD_WIRE_NETWORK_DEFAULT,
                          .agent = "fuzz/1", .dir = dir, .expect_id = expect, .listen = &listen,
                          .challenge = challenge, .auth = &AUTH};
  pd_rng_t rng;
  pd_rng_seed(&rng, salt);
  if (pd_peer_new(&s->p, &prm, &rng, now) != 0) abort();
  drain(s, now);
}

/* Hand what `from` sent since *done to `to`. */
static void pass(side_t *from, size_t *done, side_t *to, int64_t now) {
  if (*done < from->len) {
    if (pd_peer_on_bytes(to->p, from->out + *done, from->len - *done, now) != 0) abort();
    *done = from->len;
  }
  drain(to, now);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = data[0] & 15;       /* 0: all at once */
  int64_t step = (data[0] >> 4) * 1000; /* ms between chunks */
  data++;
  size--;

  /* the two key pairs are constants: derived once, only read afterwards */
  static pd_identity_t ia, ib;
  static bool keys;
  if (!keys) {
    uint8_t seed[32];
    memset(seed, 1, sizeof seed);
    if (pd_identity_from_seed(&ia, seed) != 0) abort();
    memset(seed, 2, sizeof seed);
    if (pd_identity_from_seed(&ib, seed) != 0) abort();
    keys = true;
  }

  int64_t now = T0;
  side_t a, b;
  make(&a, &ia, PD_PEER_INBOUND, NULL, 0xa1, now);
  make(&b, &ib, PD_PEER_OUTBOUND, ia.id, 0xb2, now);
  size_t a_done = 0, b_done = 0;
  for (int round = 0; round < 4; round++) {
    pass(&b, &b_done, &a, now);
    pass(&a, &a_done, &b, now);
  }
  if (pd_peer_state(a.p) != PD_PEER_READY || pd_peer_state(b.p) != PD_PEER_READY) abort();
  free(a.out);
  a.out = NULL;
  a.len = a.cap = 0;
  a.keep = false;

  /* B seals the stream's whole frames; the rest follows raw */
  b.len = 0;
  size_t in = 0;
  while (size - in >= PD_WIRE_HEADER_LEN) {
    const uint8_t *h = data + in;
    size_t plen = (size_t)h[6] << 24 | (size_t)h[7] << 16 | (size_t)h[8] << 8 | h[9];
    if (plen > PD_WIRE_MAX_PAYLOAD - PD_WIRE_SEAL_OVERHEAD || PD_WIRE_HEADER_LEN + plen > size - in)
      break;
    if (pd_peer_send_frame(b.p, h, PD_WIRE_HEADER_LEN + plen) != 0) abort();
    drain(&b, now);
    in += PD_WIRE_HEADER_LEN + plen;
  }
  if (in < size) {
    side_t *s = &b;
    size_t rest = size - in;
    if (s->len + rest > s->cap) {
      size_t ncap = s->cap ? s->cap : 4096;
      while (ncap < s->len + rest) ncap *= 2;
      uint8_t *nb = realloc(s->out, ncap);
      if (!nb) abort();
      s->out = nb;
      s->cap = ncap;
    }
    memcpy(s->out + s->len, data + in, rest);
    s->len += rest;
  }
  pd_peer_free(b.p);
  const uint8_t *stream = b.out;
  size = b.len;

  size_t off = 0;
  unsigned n_chunks = 0;
  while (off < size) {
    size_t n = chunk ? chunk : size - off;
    if (n > size - off) n = size - off;
    if (pd_peer_on_bytes(a.p, stream + off, n, now) != 0) abort();
    off += n;
    drain(&a, now);
    if (++n_chunks % 4 == 0 && pd_peer_state(a.p) == PD_PEER_READY) {
      if (pd_peer_request_addrs(a.p, now) != 0) abort();
      drain(&a, now);
    }
    now += step;
    if (pd_peer_on_tick(a.p, now) != 0) abort();
    drain(&a, now);
  }
  for (int i = 0; i < 10; i++) {
    now += 60000;
    int64_t dl = pd_peer_next_deadline(a.p);
    if (pd_peer_state(a.p) == PD_PEER_CLOSED && dl != INT64_MAX) abort();
    if (dl <= now && pd_peer_on_tick(a.p, now) != 0) abort();
    drain(&a, now);
  }
  if (a.closed != (pd_peer_state(a.p) == PD_PEER_CLOSED)) abort();
  (void)pd_peer_stats(a.p);
  (void)pd_peer_footprint(a.p);
  pd_peer_free(a.p);
  free(b.out);
  return 0;
}
