/* fuzz_sealed — libFuzzer target for protocol v3's sealed path into one
 * connection's state machine (host/core/peer.c through host/core/seal.c).
 *
 * Per input: peer A (inbound, under test, the real cipher) completes a
 * real v3 handshake with a scripted remote B written from the spec's
 * primitives (seal.h: KEYX, session keys, sealed HELLO, the transcript,
 * HELLO_ACK), not with a second pd_peer: B reads every frame A sends
 * through its own decoder and cipher. Seeds, challenges and clock are
 * fixed, so every input starts from the same session. Signatures use a
 * keyed BLAKE2b stand-in for ed25519 (the pd_peer_auth_t hook, as in
 * fuzz_peer): fuzz_record covers ed25519.
 *
 * Byte 0: bits 0-1 the mode, bits 2-3 how each frame is fed (whole, or in
 * pieces of 1, 3 or 16 bytes), bits 4-7 the clock step between frames
 * (0..15 s). The rest, by mode:
 *   0  inner frames built by the harness: chunks of [u16 length][type]
 *      [payload]; the harness writes the header (magic, type, flags 0,
 *      length) and B seals the frame;
 *   1  whole inner frames: chunks of [u16 length][frame bytes] (shorter
 *      than a header: padded with zeros), sealed by B as they are;
 *   2  sealed then tampered (a MITM in the harness): chunks of [u16
 *      length][op][u16 pos][val][type][payload]: built and sealed as in
 *      mode 0, then op % 6: 0 none, 1 XOR byte pos % n with val, 2 cut the
 *      stream after pos % n bytes of it, 3 send it twice, 4 drop it, 5 swap
 *      it with the next one;
 *   3  raw bytes, fed after the handshake as they are (tampered or forged
 *      SEALED frames, plain frames).
 * A GETADDR is answered with 20 addresses; after the stream the clock runs
 * 10 minutes on.
 *
 * Oracles beyond the sanitizers:
 *  - the handshake completes, and A's HELLO_ACK verifies over the
 *    transcript B computes;
 *  - everything A sends after its KEYX is SEALED, opens under B's session
 *    (including after key rotations) and holds one valid inner frame that
 *    is neither KEYX nor SEALED;
 *  - modes 0 and 1 (all sealed correctly): A never closes with "bad_mac",
 *    and "not_sealed" only after an inner frame of type SEALED;
 *  - "bad_mac" is never reported as misbehaviour;
 *  - mode 2, the first tamper that A meets open and between frames: a
 *    flipped ciphertext or tag byte, a replay, a frame after a dropped one
 *    and the first of two swapped ones close A with "bad_mac"; a flipped
 *    header byte closes A or leaves it inside a frame; a cut leaves it
 *    inside a frame (what the daemon counts as "truncated"); after any
 *    tamper A acts on nothing it receives (no ADDRS, GETADDR, LATENCY);
 *  - as fuzz_peer: ADDRS counts add up, nothing follows CLOSE, CLOSED
 *    stays CLOSED with no deadline.
 * What outlives an input is constant (key pairs, B's HELLO, B's session
 * for A's fixed ephemeral key) or scratch overwritten before it is read.
 * docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "peer.h"
#include "seal.h"
#include "wire.h"

static const uint8_t MAGIC[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
#define T0 ((int64_t)1700000000000)
#define SCRATCH (PD_WIRE_MAX_FRAME + PD_WIRE_SEAL_OVERHEAD)

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

/* Constants, made by the first input. */
typedef struct consts {
  pd_identity_t ia, ib;                        /* A's and B's node keys */
  uint8_t a_seed[32], b_pk[32], b_sk[32];      /* A's ephemeral seed; B's ephemeral pair */
  uint8_t b_hello[512];                        /* B's HELLO frame, plain */
  size_t b_hello_len;
  uint8_t b_hello_hash[PD_SEAL_HASH_LEN];
  uint8_t a_pk_seen[32];                       /* the A key b_seal0 was made for */
  pd_seal_t b_seal0;                           /* B's session, as keyed */
  bool ready, have_seal0;
} consts_t;

/* The scripted remote, per input. */
typedef struct remote {
  pd_seal_t seal;
  pd_wire_decoder_t dec;
  bool keyed, got_hello, got_ack;
  uint8_t a_pk[32], a_hello_hash[PD_SEAL_HASH_LEN];
} remote_t;

typedef struct run {
  consts_t *k;
  remote_t r;
  pd_peer_t *a;
  bool closed, tampered;
  const char *reason;
  bool misbehaved;
  pd_wire_msg_t *msg;   /* scratch */
  uint8_t *pt, *frame;  /* scratch: an opened inner frame; a frame being built */
} run_t;

/* --- B reads what A sends ----------------------------------------------------- */
static void b_read(run_t *x, const uint8_t *data, size_t len) {
  remote_t *r = &x->r;
  size_t off = 0;
  while (off < len) {
    size_t used = 0;
    int rc = pd_wire_decoder_feed(&r->dec, data + off, len - off, &used, x->msg);
    off += used;
    if (rc == PD_WIRE_NEED_MORE) break;
    if (rc != PD_WIRE_MESSAGE) abort(); /* A sent what a decoder refuses */
    if (!r->keyed) {
      if (x->msg->type != PD_WIRE_KEYX) abort(); /* A's first frame is its KEYX */
      memcpy(r->a_pk, x->msg->keyx.pk, 32);
      if (!x->k->have_seal0 || memcmp(r->a_pk, x->k->a_pk_seen, 32) != 0) {
        if (pd_seal_init(&x->k->b_seal0, PD_SEAL_DIALLER, x->k->b_pk, x->k->b_sk, r->a_pk, false) != 0)
          abort();
        memcpy(x->k->a_pk_seen, r->a_pk, 32);
        x->k->have_seal0 = true;
      }
      r->seal = x->k->b_seal0;
      r->keyed = true;
      continue;
    }
    if (x->msg->type != PD_WIRE_SEALED) abort(); /* plain after KEYX */
    size_t n = x->msg->sealed.len - PD_WIRE_TAG_LEN;
    if (pd_seal_open(&r->seal, x->msg->sealed.hdr, x->msg->sealed.data, x->msg->sealed.len, x->pt) != 0)
      abort(); /* A sealed it wrong, or the sessions disagree */
    if (pd_wire_decode_frame(MAGIC, x->pt, n, x->msg) != PD_WIRE_R_NONE) abort();
    if (x->msg->type == PD_WIRE_KEYX || x->msg->type == PD_WIRE_SEALED) abort();
    if (x->msg->type == PD_WIRE_HELLO && !r->got_hello) {
      pd_seal_hash(x->pt, n, r->a_hello_hash);
      r->got_hello = true;
    } else if (x->msg->type == PD_WIRE_HELLO_ACK && !r->got_ack) {
      uint8_t t[PD_SEAL_HASH_LEN], m[PD_SEAL_AUTH_MSG_LEN];
      if (!r->got_hello) abort();
      pd_seal_transcript(t, MAGIC, x->k->b_pk, r->a_pk, x->k->b_hello_hash, r->a_hello_hash);
      pd_seal_auth_message(m, PD_SEAL_LISTENER, t);
      if (fake_verify(NULL, x->k->ia.pk, m, sizeof m, x->msg->ack.sig) != 0) abort();
      r->got_ack = true;
    }
  }
}

/* --- A's actions ---------------------------------------------------------------- */
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

static void drain(run_t *x, int64_t now) {
  pd_peer_action_t act;
  while (pd_peer_poll(x->a, &act)) {
    if (x->closed) abort(); /* CLOSE is the last action */
    switch (act.type) {
    case PD_PEER_A_SEND:
      if (act.send.len == 0) abort();
      b_read(x, act.send.data, act.send.len);
      break;
    case PD_PEER_A_CLOSE:
      if (!act.close.reason) abort();
      if (strcmp(act.close.reason, "bad_mac") == 0 && act.close.misbehaved) abort();
      x->closed = true;
      x->reason = act.close.reason;
      x->misbehaved = act.close.misbehaved;
      break;
    case PD_PEER_A_ADDRS_RECEIVED:
      if (x->tampered) abort();
      if (act.addrs.count + act.addrs.dropped != act.addrs.received) abort();
      if (act.addrs.count > PD_WIRE_MAX_ADDRS) abort();
      break;
    case PD_PEER_A_GETADDR_RECEIVED: {
      if (x->tampered) abort();
      pd_wire_addr_entry_t e[20];
      addrs_for(e, 20);
      if (pd_peer_send_addrs(x->a, e, 20, now) != 0 && pd_peer_state(x->a) == PD_PEER_READY) abort();
      break;
    }
    case PD_PEER_A_LATENCY:
      if (x->tampered) abort();
      break;
    case PD_PEER_A_HANDSHAKE_DONE:
      if (x->tampered) abort();
      break;
    case PD_PEER_A_MISBEHAVED: break;
    default: abort();
    }
  }
  pd_peer_trim(x->a);
}

/* Feed bytes to A, whole or in pieces of `piece` bytes. */
static void feed(run_t *x, const uint8_t *p, size_t n, size_t piece, int64_t now) {
  size_t off = 0;
  while (off < n) {
    size_t k = piece ? piece : n - off;
    if (k > n - off) k = n - off;
    if (pd_peer_on_bytes(x->a, p + off, k, now) != 0) abort();
    off += k;
    drain(x, now);
  }
}

/* B seals the inner frame at x->frame + PD_WIRE_HEADER_LEN (n bytes) in place. */
static size_t b_seal(run_t *x, size_t n) {
  size_t m = pd_seal_frame(&x->r.seal, MAGIC, x->frame, n);
  if (m == 0) abort();
  return m;
}

/* --- the handshake -------------------------------------------------------------- */
static void consts_init(consts_t *k) {
  uint8_t seed[32];
  memset(seed, 1, sizeof seed);
  if (pd_identity_from_seed(&k->ia, seed) != 0) abort();
  memset(seed, 2, sizeof seed);
  if (pd_identity_from_seed(&k->ib, seed) != 0) abort();
  memset(k->a_seed, 0xa5, sizeof k->a_seed);
  memset(seed, 0xb5, sizeof seed);
  if (pd_seal_keypair(seed, k->b_pk, k->b_sk, false) != 0) abort();
  pd_wire_hello_t h;
  memset(&h, 0, sizeof h);
  h.max_version = h.min_version = PD_WIRE_VERSION;
  memcpy(h.node_id, k->ib.id, PD_NODE_ID_LEN);
  memcpy(h.pubkey, k->ib.pk, PD_WIRE_PUBKEY_LEN);
  memset(h.challenge, 0xb2, sizeof h.challenge);
  h.timestamp = T0 / 1000;
  h.has_listen = true;
  h.listen.ip[10] = h.listen.ip[11] = 0xff;
  h.listen.ip[12] = 10;
  h.listen.ip[15] = 0xb2;
  h.listen.port = 7411;
  h.network_len = (uint8_t)strlen(PD_WIRE_NETWORK_DEFAULT);
  memcpy(h.network, PD_WIRE_NETWORK_DEFAULT, h.network_len);
  h.agent_len = 6;
  memcpy(h.agent, "fuzz/b", 6);
  if (pd_wire_encode_hello(MAGIC, &h, k->b_hello, sizeof k->b_hello, &k->b_hello_len) != 0) abort();
  pd_seal_hash(k->b_hello, k->b_hello_len, k->b_hello_hash);
  k->ready = true;
}

static void handshake(run_t *x, int64_t now) {
  consts_t *k = x->k;
  pd_netaddr_t listen;
  memset(&listen, 0, sizeof listen);
  listen.ip[10] = listen.ip[11] = 0xff;
  listen.ip[12] = 10;
  listen.ip[15] = 0xa1;
  listen.port = 7411;
  uint8_t challenge[PD_WIRE_CHALLENGE_LEN];
  memset(challenge, 0xa1, sizeof challenge);
  pd_peer_params_t prm = {.self = &k->ia, .magic = MAGIC, .network = PD_WIRE_NETWORK_DEFAULT,
                          .agent = "fuzz/a", .dir = PD_PEER_INBOUND, .listen = &listen,
                          .challenge = challenge, .eph_seed = k->a_seed, .auth = &AUTH};
  pd_rng_t rng;
  pd_rng_seed(&rng, 0xa1);
  if (pd_peer_new(&x->a, &prm, &rng, now) != 0) abort();
  drain(x, now); /* A's KEYX: B keys its session */
  if (!x->r.keyed) abort();

  /* B: its KEYX (plain), then its HELLO (sealed) */
  size_t n = 0;
  if (pd_wire_encode_keyx(MAGIC, k->b_pk, x->frame, SCRATCH, &n) != 0) abort();
  feed(x, x->frame, n, 0, now);
  memcpy(x->frame + PD_WIRE_HEADER_LEN, k->b_hello, k->b_hello_len);
  feed(x, x->frame, b_seal(x, k->b_hello_len), 0, now);
  if (!x->r.got_hello || !x->r.got_ack) abort(); /* A's HELLO and HELLO_ACK came, and verify */

  /* B's HELLO_ACK over the same transcript, as the dialler */
  uint8_t t[PD_SEAL_HASH_LEN], m[PD_SEAL_AUTH_MSG_LEN], sig[PD_WIRE_SIG_LEN];
  pd_seal_transcript(t, MAGIC, k->b_pk, x->r.a_pk, k->b_hello_hash, x->r.a_hello_hash);
  pd_seal_auth_message(m, PD_SEAL_DIALLER, t);
  if (fake_sign(NULL, &k->ib, m, sizeof m, sig) != 0) abort();
  if (pd_wire_encode_ack(MAGIC, sig, x->frame + PD_WIRE_HEADER_LEN, SCRATCH, &n) != 0) abort();
  feed(x, x->frame, b_seal(x, n), 0, now);
  if (pd_peer_state(x->a) != PD_PEER_READY || x->closed) abort();
}

/* --- input ---------------------------------------------------------------------- */
/* The next [u16 length][bytes] chunk of the input: *p and *n, or false at the end. */
static bool next_chunk(const uint8_t **data, size_t *size, const uint8_t **p, size_t *n) {
  if (*size < 2) return false;
  size_t len = (size_t)(*data)[0] << 8 | (*data)[1];
  *data += 2;
  *size -= 2;
  if (len > *size) len = *size;
  *p = *data;
  *n = len;
  *data += len;
  *size -= len;
  return true;
}

/* Build an inner frame from [type][payload] at x->frame + header; its length. */
static size_t build_typed(run_t *x, const uint8_t *p, size_t n) {
  uint8_t type = n ? p[0] : 0;
  size_t plen = n ? n - 1 : 0;
  uint8_t *f = x->frame + PD_WIRE_HEADER_LEN;
  pd_wire_write_header(MAGIC, type, (uint32_t)plen, f);
  if (plen) memcpy(f + PD_WIRE_HEADER_LEN, p + 1, plen);
  return PD_WIRE_HEADER_LEN + plen;
}

/* A meets the first tamper: was it open and between frames? */
static bool fresh(const run_t *x) { return !x->closed && !pd_peer_mid_frame(x->a); }

static void must_bad_mac(const run_t *x) {
  if (!x->closed || strcmp(x->reason, "bad_mac") != 0 || x->misbehaved) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  static const size_t pieces[4] = {0, 1, 3, 16};
  unsigned mode = data[0] & 3;
  size_t piece = pieces[(data[0] >> 2) & 3];
  int64_t step = (data[0] >> 4) * 1000;
  data++;
  size--;

  static consts_t k;
  if (!k.ready) consts_init(&k);
  static pd_wire_msg_t msg;
  static uint8_t pt[SCRATCH], frame[SCRATCH];
  static uint8_t held[SCRATCH];
  run_t x;
  memset(&x, 0, sizeof x);
  x.k = &k;
  x.msg = &msg;
  x.pt = pt;
  x.frame = frame;
  pd_wire_decoder_init(&x.r.dec, MAGIC);
  int64_t now = T0;
  handshake(&x, now);

  bool sent_inner_sealed = false, cut = false, drop_pending = false;
  size_t held_len = 0;
  if (mode == 3) {
    feed(&x, data, size, piece, now);
    now += step;
    if (pd_peer_on_tick(x.a, now) != 0) abort();
    drain(&x, now);
  } else {
    const uint8_t *p;
    size_t n;
    while (!cut && next_chunk(&data, &size, &p, &n)) {
      uint8_t op = 0, val = 0;
      size_t pos = 0;
      if (mode == 2) {
        if (n < 4) continue;
        op = (uint8_t)(p[0] % 6);
        pos = (size_t)p[1] << 8 | p[2];
        val = p[3];
        p += 4;
        n -= 4;
      }
      size_t in;
      if (mode == 1) {
        in = n < PD_WIRE_HEADER_LEN ? PD_WIRE_HEADER_LEN : n;
        memset(frame + PD_WIRE_HEADER_LEN, 0, PD_WIRE_HEADER_LEN);
        memcpy(frame + PD_WIRE_HEADER_LEN, p, n);
      } else {
        in = build_typed(&x, p, n);
      }
      if (frame[PD_WIRE_HEADER_LEN + 4] == PD_WIRE_SEALED) sent_inner_sealed = true;
      size_t sn = b_seal(&x, in);
      bool check = !x.tampered && fresh(&x);
      if (drop_pending) { /* the frame after a dropped one */
        drop_pending = false;
        feed(&x, frame, sn, piece, now);
        if (check) must_bad_mac(&x);
      } else if (held_len) { /* swapped: this one first, then the held one */
        feed(&x, frame, sn, piece, now);
        if (check) must_bad_mac(&x);
        feed(&x, held, held_len, piece, now);
        held_len = 0;
      } else if (x.tampered || op == 0 || (op == 1 && val == 0)) {
        feed(&x, frame, sn, piece, now);
      } else if (op == 1) {
        size_t at = pos % sn;
        frame[at] ^= val;
        x.tampered = true;
        feed(&x, frame, sn, piece, now);
        if (check && at >= PD_WIRE_HEADER_LEN) must_bad_mac(&x);
        if (check && !x.closed && !pd_peer_mid_frame(x.a)) abort();
      } else if (op == 2) {
        size_t at = pos % sn;
        x.tampered = true;
        cut = true;
        feed(&x, frame, at, piece, now);
        if (check && at > 0 && (x.closed || !pd_peer_mid_frame(x.a))) abort();
      } else if (op == 3) {
        feed(&x, frame, sn, piece, now);
        check = !x.tampered && fresh(&x);
        x.tampered = true;
        feed(&x, frame, sn, piece, now);
        if (check) must_bad_mac(&x);
      } else if (op == 4) {
        x.tampered = true;
        drop_pending = true;
      } else { /* 5: hold it back */
        memcpy(held, frame, sn);
        held_len = sn;
        x.tampered = true;
      }
      now += step;
      if (pd_peer_on_tick(x.a, now) != 0) abort();
      drain(&x, now);
    }
    if (held_len) { /* nothing came to swap with: it goes late, still in order */
      x.tampered = false;
      feed(&x, held, held_len, piece, now);
    }
    if (mode <= 1 && x.closed) {
      if (strcmp(x.reason, "bad_mac") == 0) abort(); /* everything was sealed right */
      if (strcmp(x.reason, "not_sealed") == 0 && !sent_inner_sealed) abort();
    }
  }

  for (int i = 0; i < 10; i++) {
    now += 60000;
    int64_t dl = pd_peer_next_deadline(x.a);
    if (pd_peer_state(x.a) == PD_PEER_CLOSED && dl != INT64_MAX) abort();
    if (dl <= now && pd_peer_on_tick(x.a, now) != 0) abort();
    drain(&x, now);
  }
  if (x.closed != (pd_peer_state(x.a) == PD_PEER_CLOSED)) abort();
  (void)pd_peer_stats(x.a);
  (void)pd_peer_footprint(x.a);
  pd_peer_free(x.a);
  pd_wire_decoder_free(&x.r.dec);
  pd_seal_wipe(&x.r.seal);
  return 0;
}
