/* Unit tests for peer: two state machines wired back to back through
 * in-memory byte pipes (each side's SEND actions delivered as the other's
 * on_bytes in random chunk sizes from a fixed seed), and a scripted remote
 * for the hostile cases. Everything is deterministic from the seeds; time is
 * a fake `now` in milliseconds. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <sodium.h>

#include "err.h"
#include "identity.h"
#include "peer.h"
#include "record.h"
#include "seal.h"
#include "wire.h"

static const uint8_t MAGIC[4] = PD_WIRE_MAGIC_DEFAULT_INIT;
#define T0 ((int64_t)1700000000000) /* ms */

/* --- harness ---------------------------------------------------------------- */
typedef struct side {
  pd_peer_t *p;
  uint8_t *out; /* bytes this side sent */
  size_t out_len, out_cap, delivered;
  uint64_t hash; /* FNV-1a of every byte sent */
  int hs_done;
  pd_peer_remote_t remote;
  int closed;
  const char *reason;
  bool close_misbehaved, close_remote;
  uint16_t bye_code;
  char bye_text[PD_WIRE_TEXT_MAX + 1];
  int getaddr_rx;
  int addr_msgs;
  size_t addrs_total, addrs_dropped, last_count, last_received;
  bool last_solicited, last_relayable;
  pd_wire_addr_entry_t last_addrs[PD_WIRE_MAX_ADDRS];
  int latencies;
  int64_t last_latency;
  int misb;
  const char *misb_reason;
  size_t answer_n; /* answer GETADDR with this many addresses (0 = do not) */
  int after_close; /* actions seen after CLOSE: must stay 0 */
  /* The other end when it is a real peer (pair_make): inject() sends
   * through it, sealed under its session. */
  struct side *partner;
  /* Otherwise a scripted remote (v3): its ephemeral key, its session with
   * this side (rseal0: as keyed, to read this side's output from the
   * start), the hash of the HELLO it sent. */
  bool rkeyed;
  uint8_t rpk[32], rsk[32];
  pd_seal_t rseal, rseal0;
  uint8_t r_hello_hash[32];
} side_t;

static side_t *side_new(void) {
  side_t *s = calloc(1, sizeof *s);
  assert_non_null(s);
  s->hash = 1469598103934665603ull;
  return s;
}

static void side_free(side_t *s) {
  if (!s) return;
  pd_peer_free(s->p);
  free(s->out);
  free(s);
}

static pd_netaddr_t v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  pd_netaddr_t n;
  memset(&n, 0, sizeof n);
  n.ip[10] = n.ip[11] = 0xff;
  n.ip[12] = a;
  n.ip[13] = b;
  n.ip[14] = c;
  n.ip[15] = d;
  n.port = port;
  return n;
}

static void fill_addrs(pd_wire_addr_entry_t *e, size_t n, uint32_t salt) {
  for (size_t i = 0; i < n; i++) {
    memset(&e[i], 0, sizeof e[i]);
    uint32_t k = (uint32_t)i + salt * 7919u;
    e[i].addr = v4((uint8_t)(11 + k % 180), (uint8_t)(k >> 3), (uint8_t)(k >> 11),
                   (uint8_t)(1 + k % 250), (uint16_t)(1000 + k % 50000));
    e[i].timestamp = 1700000000 - (int64_t)i;
    e[i].has_id = i % 2;
    if (e[i].has_id) memset(e[i].id, (int)(k & 0xff), PD_NODE_ID_LEN);
  }
}

static bool entry_eq(const pd_wire_addr_entry_t *x, const pd_wire_addr_entry_t *y) {
  return pd_netaddr_equal(&x->addr, &y->addr) && x->timestamp == y->timestamp &&
         x->has_id == y->has_id && (!x->has_id || memcmp(x->id, y->id, PD_NODE_ID_LEN) == 0);
}

static void drain(side_t *s, int64_t now) {
  pd_peer_action_t a;
  while (pd_peer_poll(s->p, &a)) {
    if (s->closed) s->after_close++;
    switch (a.type) {
    case PD_PEER_A_SEND:
      assert_true(a.send.len > 0);
      if (s->out_len + a.send.len > s->out_cap) {
        size_t ncap = s->out_cap ? s->out_cap : 4096;
        while (ncap < s->out_len + a.send.len) ncap *= 2;
        s->out = realloc(s->out, ncap);
        assert_non_null(s->out);
        s->out_cap = ncap;
      }
      memcpy(s->out + s->out_len, a.send.data, a.send.len);
      for (size_t i = 0; i < a.send.len; i++) s->hash = (s->hash ^ a.send.data[i]) * 1099511628211ull;
      s->out_len += a.send.len;
      break;
    case PD_PEER_A_CLOSE:
      s->closed++;
      s->reason = a.close.reason;
      s->close_misbehaved = a.close.misbehaved;
      s->close_remote = a.close.remote;
      if (a.close.remote) {
        s->bye_code = a.close.remote_code;
        strcpy(s->bye_text, a.close.remote_text);
      }
      break;
    case PD_PEER_A_HANDSHAKE_DONE:
      s->hs_done++;
      s->remote = *a.hs.remote;
      break;
    case PD_PEER_A_ADDRS_RECEIVED:
      s->addr_msgs++;
      s->addrs_total += a.addrs.count;
      s->addrs_dropped += a.addrs.dropped;
      s->last_count = a.addrs.count;
      s->last_received = a.addrs.received;
      assert_int_equal(a.addrs.count + a.addrs.dropped, a.addrs.received);
      s->last_solicited = a.addrs.solicited;
      s->last_relayable = a.addrs.relayable;
      if (a.addrs.count) memcpy(s->last_addrs, a.addrs.entries, a.addrs.count * sizeof *a.addrs.entries);
      break;
    case PD_PEER_A_GETADDR_RECEIVED:
      s->getaddr_rx++;
      if (s->answer_n) {
        pd_wire_addr_entry_t *e = calloc(s->answer_n, sizeof *e);
        assert_non_null(e);
        fill_addrs(e, s->answer_n, 1);
        assert_int_equal(pd_peer_send_addrs(s->p, e, s->answer_n, now), 0);
        free(e);
      }
      break;
    case PD_PEER_A_LATENCY:
      s->latencies++;
      s->last_latency = a.latency.ms;
      break;
    case PD_PEER_A_MISBEHAVED:
      s->misb++;
      s->misb_reason = a.misbehaved.reason;
      break;
    default: fail_msg("unknown action %d", (int)a.type);
    }
  }
}

/* Deliver everything `from` has sent to `to`, in random chunks. */
static void deliver(side_t *from, side_t *to, pd_rng_t *rng, size_t maxchunk, int64_t now) {
  while (from->delivered < from->out_len) {
    size_t chunk = 1 + (size_t)pd_rng_range(rng, maxchunk);
    if (chunk > from->out_len - from->delivered) chunk = from->out_len - from->delivered;
    int rc = pd_peer_on_bytes(to->p, from->out + from->delivered, chunk, now);
    assert_int_equal(rc, 0);
    from->delivered += chunk;
    drain(to, now);
  }
}

/* Rounds: a -> b, then b -> a, `hop` ms apart, until nothing is in flight. */
static void pump(side_t *a, side_t *b, pd_rng_t *rng, size_t maxchunk, int64_t *now, int64_t hop) {
  for (int round = 0; round < 100; round++) {
    if (a->delivered == a->out_len && b->delivered == b->out_len) return;
    deliver(a, b, rng, maxchunk, *now);
    *now += hop;
    deliver(b, a, rng, maxchunk, *now);
    *now += hop;
  }
  fail_msg("pump did not settle");
}

static void make_identity(pd_identity_t *id, uint8_t salt) {
  uint8_t seed[32];
  for (int i = 0; i < 32; i++) seed[i] = (uint8_t)(salt * 31 + i);
  assert_int_equal(pd_identity_from_seed(id, seed), 0);
}

typedef struct {
  pd_identity_t ia, ib, ic;
  pd_netaddr_t la, lb;
  pd_peer_config_t cfg;
} world_t;

static void world_init(world_t *w) {
  make_identity(&w->ia, 1);
  make_identity(&w->ib, 2);
  make_identity(&w->ic, 3);
  w->la = v4(1, 2, 3, 4, 7411);
  w->lb = v4(5, 6, 7, 8, 7412);
  pd_peer_config_default(&w->cfg);
}

static void peer_make(side_t *s, const pd_identity_t *id, pd_peer_dir_t dir, const uint8_t *expect,
                      const pd_netaddr_t *listen, const pd_peer_config_t *cfg, const char *network,
                      pd_rng_t *rng, int64_t now) {
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = id;
  prm.magic = MAGIC;
  prm.network = network ? network : PD_WIRE_NETWORK_DEFAULT;
  prm.agent = "peerd-test/1";
  prm.dir = dir;
  prm.expect_id = expect;
  prm.listen = listen;
  prm.cfg = cfg;
  assert_int_equal(pd_peer_new(&s->p, &prm, rng, now), 0);
  assert_int_equal(pd_peer_state(s->p), PD_PEER_HANDSHAKE);
  drain(s, now);
  assert_true(s->out_len > 0); /* our HELLO, at once */
}

/* A dials B (outbound, expecting B's ID); B accepts (inbound). */
static void pair_make(world_t *w, side_t *a, side_t *b, pd_rng_t *rng, int64_t now) {
  peer_make(a, &w->ia, PD_PEER_OUTBOUND, w->ib.id, &w->la, &w->cfg, NULL, rng, now);
  peer_make(b, &w->ib, PD_PEER_INBOUND, NULL, &w->lb, &w->cfg, NULL, rng, now);
  a->partner = b;
  b->partner = a;
}

/* Complete a handshake between fresh sides (B answers GETADDR with 50). */
static void pair_ready(world_t *w, side_t *a, side_t *b, pd_rng_t *rng, int64_t *now) {
  pair_make(w, a, b, rng, *now);
  b->answer_n = 50;
  pump(a, b, rng, 64, now, 7);
  assert_int_equal(pd_peer_state(a->p), PD_PEER_READY);
  assert_int_equal(pd_peer_state(b->p), PD_PEER_READY);
}

/* Raw bytes from the test into a side, as they are. */
static void inject_raw(side_t *s, const uint8_t *buf, size_t len, int64_t now) {
  assert_int_equal(pd_peer_on_bytes(s->p, buf, len, now), 0);
  drain(s, now);
}

/* The scripted remote answers this side's KEYX (the first frame it sent)
 * with its own and keys its session: the remote is the other role. */
static void remote_key(side_t *s, int64_t now) {
  if (s->rkeyed) return;
  assert_true(s->out_len >= PD_WIRE_HEADER_LEN + 32);
  assert_int_equal(s->out[4], PD_WIRE_KEYX);
  uint8_t seed[32];
  memset(seed, 0x5a, sizeof seed);
  assert_int_equal(pd_seal_keypair(seed, s->rpk, s->rsk, false), 0);
  uint8_t f[64];
  size_t n = 0;
  assert_int_equal(pd_wire_encode_keyx(MAGIC, s->rpk, f, sizeof f, &n), 0);
  int role = pd_peer_dir(s->p) == PD_PEER_OUTBOUND ? PD_SEAL_LISTENER : PD_SEAL_DIALLER;
  assert_int_equal(pd_seal_init(&s->rseal, role, s->rpk, s->rsk, s->out + PD_WIRE_HEADER_LEN, false), 0);
  s->rseal0 = s->rseal;
  s->rkeyed = true;
  inject_raw(s, f, n, now);
}

/* One whole frame from the test into a side, sealed as v3 wants it: through
 * the partner's session when there is one, else the scripted remote's
 * (which first sends its KEYX). Anything that is not one whole valid frame
 * (garbage, a KEYX, a cut frame) goes in raw. */
static void inject(side_t *s, const uint8_t *buf, size_t len, int64_t now) {
  static pd_wire_msg_t m;
  if (pd_wire_decode_frame(MAGIC, buf, len, &m) != PD_WIRE_R_NONE || m.type == PD_WIRE_KEYX) {
    inject_raw(s, buf, len, now);
    return;
  }
  if (s->partner) {
    assert_int_equal(pd_peer_send_frame(s->partner->p, buf, len), 0);
    drain(s->partner, now);
    size_t from = s->partner->delivered;
    s->partner->delivered = s->partner->out_len;
    inject_raw(s, s->partner->out + from, s->partner->out_len - from, now);
    return;
  }
  remote_key(s, now);
  if (m.type == PD_WIRE_HELLO) pd_seal_hash(buf, len, s->r_hello_hash);
  uint8_t *sf = malloc(len + PD_WIRE_SEAL_OVERHEAD);
  assert_non_null(sf);
  memcpy(sf + PD_WIRE_HEADER_LEN, buf, len);
  size_t n = pd_seal_frame(&s->rseal, MAGIC, sf, len);
  assert_true(n > 0);
  inject_raw(s, sf, n, now);
  free(sf);
}

static size_t frame_ping(uint8_t type, uint64_t nonce, uint8_t *buf) {
  size_t n = 0;
  if (type == PD_WIRE_PING)
    assert_int_equal(pd_wire_encode_ping(MAGIC, nonce, buf, 64, &n), 0);
  else
    assert_int_equal(pd_wire_encode_pong(MAGIC, nonce, buf, 64, &n), 0);
  return n;
}

/* Decode frame number `skip` (0 = the first, its KEYX) of a side's output,
 * opening SEALED frames with the scripted remote's keys. When out_frame is
 * given, the inner frame's bytes are copied there (at most 2 KiB). */
static void nth_frame(const side_t *s, size_t skip, pd_wire_msg_t *m, uint8_t *out_frame,
                      size_t *out_len) {
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  pd_seal_t rx = s->rseal0;
  size_t used = 0, off = 0;
  static uint8_t pt[PD_WIRE_MAX_FRAME];
  for (size_t i = 0; i <= skip; i++) {
    assert_int_equal(pd_wire_decoder_feed(&d, s->out + off, s->out_len - off, &used, m),
                     PD_WIRE_MESSAGE);
    off += used;
    if (m->type == PD_WIRE_SEALED) {
      assert_true(s->rkeyed);
      size_t n = m->sealed.len - PD_WIRE_TAG_LEN;
      assert_int_equal(pd_seal_open(&rx, m->sealed.hdr, m->sealed.data, m->sealed.len, pt), 0);
      assert_int_equal(pd_wire_decode_frame(MAGIC, pt, n, m), PD_WIRE_R_NONE);
      if (out_frame && i == skip) {
        assert_true(n <= 2048);
        memcpy(out_frame, pt, n);
        *out_len = n;
      }
    }
  }
  pd_wire_decoder_free(&d);
}

static void first_frame(const side_t *s, size_t skip, pd_wire_msg_t *m) {
  nth_frame(s, skip, m, NULL, NULL);
}

/* The scripted remote signs the handshake transcript as `signer` would:
 * both KEYX keys, this side's HELLO (its frame 1) and the remote's. */
static void remote_sign(const side_t *s, const pd_identity_t *signer, uint8_t sig[64]) {
  static pd_wire_msg_t m;
  uint8_t hf[2048], hh[32], t[32], msg[PD_SEAL_AUTH_MSG_LEN];
  size_t hn = 0;
  nth_frame(s, 1, &m, hf, &hn);
  assert_int_equal(m.type, PD_WIRE_HELLO);
  pd_seal_hash(hf, hn, hh);
  const uint8_t *side_eph = s->out + PD_WIRE_HEADER_LEN;
  bool side_dials = pd_peer_dir(s->p) == PD_PEER_OUTBOUND;
  pd_seal_transcript(t, MAGIC, side_dials ? side_eph : s->rpk, side_dials ? s->rpk : side_eph,
                     side_dials ? hh : s->r_hello_hash, side_dials ? s->r_hello_hash : hh);
  pd_seal_auth_message(msg, side_dials ? PD_SEAL_LISTENER : PD_SEAL_DIALLER, t);
  assert_int_equal(pd_identity_sign(signer, msg, sizeof msg, sig), 0);
}

/* --- the happy path ------------------------------------------------------------- */
typedef struct {
  uint64_t ha, hb;
  uint64_t bytes_ab, bytes_ba;
} transcript_t;

static void run_session(uint64_t seed, size_t maxchunk, bool b_dials, transcript_t *t) {
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, seed);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  /* the dialler is "a" in the pipe sense; swap identities when B dials. */
  if (b_dials) {
    peer_make(a, &w.ib, PD_PEER_OUTBOUND, w.ia.id, &w.lb, &w.cfg, NULL, &rng, now);
    peer_make(b, &w.ia, PD_PEER_INBOUND, NULL, &w.la, &w.cfg, NULL, &rng, now);
  } else {
    pair_make(&w, a, b, &rng, now);
  }
  b->answer_n = 50;
  pump(a, b, &rng, maxchunk, &now, 7);

  const pd_identity_t *ida = b_dials ? &w.ib : &w.ia, *idb = b_dials ? &w.ia : &w.ib;
  const pd_netaddr_t *lb = b_dials ? &w.la : &w.lb, *la = b_dials ? &w.lb : &w.la;
  for (int k = 0; k < 2; k++) {
    side_t *s = k ? b : a;
    const pd_identity_t *other = k ? ida : idb;
    assert_int_equal(s->hs_done, 1);
    assert_int_equal(s->closed, 0);
    assert_int_equal(pd_peer_state(s->p), PD_PEER_READY);
    assert_memory_equal(s->remote.id, other->id, PD_NODE_ID_LEN);
    assert_memory_equal(s->remote.pubkey, other->pk, 32);
    assert_true(s->remote.has_listen);
    assert_true(pd_netaddr_equal(&s->remote.listen, k ? la : lb));
    assert_int_equal(s->remote.version, 3);
    assert_int_equal(s->remote.timestamp, T0 / 1000);
    assert_string_equal(s->remote.agent, "peerd-test/1");
    assert_non_null(pd_peer_remote(s->p));
    /* PING at READY, PONG back: round trip is two hops of 7 ms. */
    assert_int_equal(s->latencies, 1);
    assert_int_equal(s->last_latency, 14);
    assert_int_equal(pd_peer_stats(s->p)->latency_ms, 14);
    assert_int_equal(s->misb, 0);
  }
  /* PEX: the dialler asked (outbound), the listener did not (inbound). */
  assert_int_equal(b->getaddr_rx, 1);
  assert_int_equal(a->getaddr_rx, 0);
  assert_int_equal(a->addr_msgs, 1);
  assert_int_equal(a->last_count, 50);
  assert_int_equal(a->addrs_dropped, 0);
  assert_true(a->last_solicited);
  assert_false(a->last_relayable);
  pd_wire_addr_entry_t want[50];
  fill_addrs(want, 50, 1);
  for (size_t i = 0; i < 50; i++) assert_true(entry_eq(&a->last_addrs[i], &want[i]));
  assert_int_equal(b->addr_msgs, 0);

  /* Counters agree across the pipe. */
  const pd_peer_stats_t *sa = pd_peer_stats(a->p), *sb = pd_peer_stats(b->p);
  assert_int_equal(sa->bytes_out, a->out_len);
  assert_int_equal(sa->bytes_out, sb->bytes_in);
  assert_int_equal(sb->bytes_out, sa->bytes_in);
  for (int ty = 1; ty < PD_WIRE_TYPE_COUNT; ty++) {
    assert_int_equal(sa->frames_out[ty], sb->frames_in[ty]);
    assert_int_equal(sb->frames_out[ty], sa->frames_in[ty]);
  }
  assert_int_equal(sa->frames_out[PD_WIRE_HELLO], 1);
  assert_int_equal(sa->frames_out[PD_WIRE_HELLO_ACK], 1);
  assert_int_equal(sa->frames_out[PD_WIRE_PING], 1);
  assert_int_equal(sa->frames_out[PD_WIRE_PONG], 1);
  assert_int_equal(sa->frames_out[PD_WIRE_GETADDR], 1);
  assert_int_equal(sb->frames_out[PD_WIRE_ADDR], 1);
  assert_int_equal(sa->addrs_accepted, 50);
  assert_int_equal(sb->getaddr_answered, 1);
  assert_int_equal(sa->dir, PD_PEER_OUTBOUND);
  assert_int_equal(sb->dir, PD_PEER_INBOUND);
  assert_true(sa->ready_ms > 0);

  t->ha = a->hash;
  t->hb = b->hash;
  t->bytes_ab = a->out_len;
  t->bytes_ba = b->out_len;
  side_free(a);
  side_free(b);
}

static void handshake_pex_ping_both_directions(void **state) {
  (void)state;
  static const size_t chunks[] = {1, 3, 10, 64, 1500, 100000};
  for (int dir = 0; dir < 2; dir++)
    for (size_t c = 0; c < sizeof chunks / sizeof chunks[0]; c++)
      for (uint64_t seed = 1; seed <= 4; seed++) {
        transcript_t t1, t2;
        run_session(seed * 1000 + c, chunks[c], dir, &t1);
        run_session(seed * 1000 + c, chunks[c], dir, &t2);
        assert_memory_equal(&t1, &t2, sizeof t1); /* deterministic from the seed */
      }
  /* Another seed gives other challenges, so other bytes (same lengths). */
  transcript_t x, y;
  run_session(1, 64, false, &x);
  run_session(2, 64, false, &y);
  assert_int_equal(x.bytes_ab, y.bytes_ab);
  assert_true(x.ha != y.ha);
}

/* --- identity failures ---------------------------------------------------------- */
static void wrong_expected_id(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 11);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  /* A dials "C@B's address" and finds B. */
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ic.id, &w.la, &w.cfg, NULL, &rng, now);
  peer_make(b, &w.ib, PD_PEER_INBOUND, NULL, &w.lb, &w.cfg, NULL, &rng, now);
  pump(a, b, &rng, 5, &now, 1);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "id_mismatch");
  assert_false(a->close_misbehaved);
  assert_int_equal(a->hs_done, 0);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_HELLO_ACK], 0); /* never signed */
  /* B hears why. */
  assert_int_equal(b->closed, 1);
  assert_string_equal(b->reason, "goodbye");
  assert_true(b->close_remote);
  assert_int_equal(b->bye_code, PD_WIRE_BYE_ID_MISMATCH);
  assert_string_equal(b->bye_text, "id_mismatch");
  assert_int_equal(b->hs_done, 0);
  assert_int_equal(a->after_close + b->after_close, 0);
  assert_int_equal(pd_peer_next_deadline(a->p), INT64_MAX);
  side_free(a);
  side_free(b);
}

static void self_connection(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 12);
  int64_t now = T0;
  /* Dialling our own listen address: both ends are us. */
  side_t *a = side_new(), *b = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, NULL, &w.la, &w.cfg, NULL, &rng, now);
  peer_make(b, &w.ia, PD_PEER_INBOUND, NULL, &w.la, &w.cfg, NULL, &rng, now);
  pump(a, b, &rng, 7, &now, 1);
  assert_int_equal(a->closed, 1);
  assert_int_equal(b->closed, 1);
  assert_string_equal(b->reason, "self_connection"); /* B reads A's HELLO first */
  assert_false(b->close_misbehaved);
  assert_string_equal(a->reason, "self_connection");
  assert_int_equal(a->hs_done + b->hs_done, 0);
  side_free(a);
  side_free(b);

  /* A reflector: another key, but our own challenge echoed back. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, NULL, &w.la, &w.cfg, NULL, &rng, now);
  pd_wire_msg_t *m = malloc(sizeof *m);
  assert_non_null(m);
  remote_key(a, now); /* its HELLO follows our KEYX, sealed */
  first_frame(a, 1, m);
  assert_int_equal(m->type, PD_WIRE_HELLO);
  pd_wire_hello_t h = m->hello;
  memcpy(h.node_id, w.ic.id, 20);
  memcpy(h.pubkey, w.ic.pk, 32);
  uint8_t f[PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX];
  size_t n;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
  inject(a, f, n, now);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "self_connection");
  free(m);
  side_free(a);
}

/* HELLO as another node would send it, from identity id with challenge ch. */
static size_t craft_hello(const pd_identity_t *id, const uint8_t *pk, const uint8_t ch[32],
                          const char *network, uint16_t minv, uint16_t maxv, uint8_t *f) {
  pd_wire_hello_t h;
  memset(&h, 0, sizeof h);
  h.max_version = maxv;
  h.min_version = minv;
  memcpy(h.node_id, id->id, 20);
  memcpy(h.pubkey, pk, 32);
  memcpy(h.challenge, ch, 32);
  h.timestamp = T0 / 1000;
  strcpy(h.network, network);
  size_t n;
  assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX, &n),
                   0);
  return n;
}

static void replayed_ack_and_forged_identity(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 13);
  int64_t now = T0;
  /* Session 1: record every byte B sent A. */
  side_t *a = side_new(), *b = side_new();
  pair_ready(&w, a, b, &rng, &now);
  uint8_t *rec = malloc(b->out_len);
  assert_non_null(rec);
  memcpy(rec, b->out, b->out_len);
  size_t rec_len = b->out_len;
  side_free(a);
  side_free(b);

  /* Session 2: a fresh A (new ephemeral key) gets session 1 replayed. B's
   * old KEYX is taken (it is public), but B's sealed HELLO was sealed for
   * another session and does not open. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ib.id, &w.la, &w.cfg, NULL, &rng, now);
  inject_raw(a, rec, rec_len, now);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "bad_mac");
  assert_false(a->close_misbehaved); /* an on-path attacker can cause it */
  assert_int_equal(a->hs_done, 0);
  assert_null(pd_peer_remote(a->p));
  free(rec);
  side_free(a);

  /* Claiming B's ID with another key: the ID does not match the key. */
  uint8_t f[PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX], ch[32], sig[64];
  size_t n;
  memset(ch, 9, 32);
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ib.id, &w.la, &w.cfg, NULL, &rng, now);
  n = craft_hello(&w.ib, w.ic.pk, ch, "peerd", 3, 3, f);
  inject(a, f, n, now);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "auth_failed");
  assert_true(a->close_misbehaved);
  side_free(a);

  /* Claiming B's ID with B's public key but no secret key: a signature made
   * with C's key over the right transcript does not verify. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ib.id, &w.la, &w.cfg, NULL, &rng, now);
  n = craft_hello(&w.ib, w.ib.pk, ch, "peerd", 3, 3, f);
  inject(a, f, n, now);
  assert_int_equal(a->closed, 0);
  remote_sign(a, &w.ic, sig);
  assert_int_equal(pd_wire_encode_ack(MAGIC, sig, f, sizeof f, &n), 0);
  inject(a, f, n, now);
  assert_string_equal(a->reason, "auth_failed");
  side_free(a);

  /* A downgrade: B's signature over a HELLO other than the one A received
   * (here one that offers versions 3..4 where A got 3..3) fails: the
   * versions, addresses and record are all inside the signed transcript. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ib.id, &w.la, &w.cfg, NULL, &rng, now);
  n = craft_hello(&w.ib, w.ib.pk, ch, "peerd", 3, 3, f);
  inject(a, f, n, now);
  n = craft_hello(&w.ib, w.ib.pk, ch, "peerd", 3, 4, f);
  pd_seal_hash(f, n, a->r_hello_hash); /* what B believes it sent */
  remote_sign(a, &w.ib, sig);
  assert_int_equal(pd_wire_encode_ack(MAGIC, sig, f, sizeof f, &n), 0);
  inject(a, f, n, now);
  assert_string_equal(a->reason, "auth_failed");
  side_free(a);

  /* Control: the same construction signed with B's key is accepted. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_OUTBOUND, w.ib.id, &w.la, &w.cfg, NULL, &rng, now);
  n = craft_hello(&w.ib, w.ib.pk, ch, "peerd", 3, 3, f);
  inject(a, f, n, now);
  remote_sign(a, &w.ib, sig);
  assert_int_equal(pd_wire_encode_ack(MAGIC, sig, f, sizeof f, &n), 0);
  inject(a, f, n, now);
  assert_int_equal(a->closed, 0);
  assert_int_equal(a->hs_done, 1);
  side_free(a);
}

static void network_and_version(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 14);
  int64_t now = T0;
  uint8_t f[PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX], ch[32];
  memset(ch, 3, 32);
  side_t *a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  inject(a, f, craft_hello(&w.ib, w.ib.pk, ch, "testnet", 3, 3, f), now);
  assert_string_equal(a->reason, "wrong_network");
  assert_false(a->close_misbehaved);
  side_free(a);

  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  /* A v2 peer (plain HELLO first, no key exchange): incompatible_version,
   * said in a plain GOODBYE it can read. */
  inject_raw(a, f, craft_hello(&w.ib, w.ib.pk, ch, "peerd", 2, 2, f), now);
  assert_string_equal(a->reason, "incompatible_version");
  assert_false(a->close_misbehaved);
  {
    static pd_wire_msg_t bye;
    first_frame(a, 1, &bye); /* our KEYX, then the GOODBYE */
    assert_int_equal(bye.type, PD_WIRE_GOODBYE);
    assert_int_equal(bye.bye.code, PD_WIRE_BYE_VERSION);
    assert_non_null(strstr(bye.bye.text, "encrypted sessions"));
    assert_non_null(strstr(bye.bye.text, "you 2..2"));
  }
  side_free(a);

  /* A v3 session whose HELLO offers only 1..2: refused the same way. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  inject(a, f, craft_hello(&w.ib, w.ib.pk, ch, "peerd", 1, 2, f), now);
  assert_string_equal(a->reason, "incompatible_version");
  side_free(a);

  /* A newer peer (3..5) and us (3..3) agree on 3. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  inject(a, f, craft_hello(&w.ib, w.ib.pk, ch, "peerd", 3, 5, f), now);
  assert_int_equal(a->closed, 0);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_HELLO_ACK], 1);
  side_free(a);

  /* Bad parameters. */
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = &w.ia;
  prm.magic = MAGIC;
  prm.network = "has space";
  pd_peer_t *p = (pd_peer_t *)&prm; /* must be reset to NULL */
  assert_int_equal(pd_peer_new(&p, &prm, &rng, now), PD_EINVAL);
  assert_null(p);
  prm.network = "peerd";
  pd_netaddr_t bad = v4(0, 0, 0, 0, 7411);
  prm.listen = &bad;
  assert_int_equal(pd_peer_new(&p, &prm, &rng, now), PD_EINVAL);
  prm.listen = NULL;
  uint8_t given[32];
  memset(given, 0x42, 32);
  prm.challenge = given;
  side_t *g = side_new();
  assert_int_equal(pd_peer_new(&g->p, &prm, &rng, now), 0);
  drain(g, now);
  assert_int_equal(g->out_len, PD_WIRE_HEADER_LEN + 32); /* KEYX only, until theirs */
  remote_key(g, now);
  static pd_wire_msg_t hm;
  first_frame(g, 1, &hm);
  assert_int_equal(hm.type, PD_WIRE_HELLO);
  assert_memory_equal(hm.hello.challenge, given, 32);
  side_free(g);
  /* The ephemeral key from the given seed: the daemon's randomness. */
  uint8_t eseed[32], epk[32], esk[32];
  memset(eseed, 0x17, 32);
  prm.eph_seed = eseed;
  assert_int_equal(pd_peer_new(&p, &prm, &rng, now), 0);
  pd_peer_action_t act;
  assert_true(pd_peer_poll(p, &act));
  assert_int_equal(act.type, PD_PEER_A_SEND);
  assert_int_equal(pd_seal_keypair(eseed, epk, esk, false), 0);
  assert_memory_equal(act.send.data + PD_WIRE_HEADER_LEN, epk, 32);
  assert_false(pd_peer_poll(p, &act));
  pd_peer_free(p);
}

/* --- hostile bytes -------------------------------------------------------------- */
static void garbage_and_oversized(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 15);
  int64_t now = T0;
  side_t *a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, &w.la, &w.cfg, NULL, &rng, now);
  size_t hello_len = a->out_len;
  const char *http = "GET / HTTP/1.1\r\nHost: x\r\n\r\n";
  inject(a, (const uint8_t *)http, strlen(http), now);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "bad_magic");
  assert_true(a->close_misbehaved);
  assert_int_equal(pd_peer_stats(a->p)->bytes_in, 1); /* refused at the first byte */
  /* The GOODBYE protocol_error "bad_magic" went out before CLOSE. */
  pd_wire_msg_t *m = malloc(sizeof *m);
  assert_non_null(m);
  first_frame(a, 1, m);
  assert_int_equal(m->type, PD_WIRE_GOODBYE);
  assert_int_equal(m->bye.code, PD_WIRE_BYE_PROTOCOL);
  assert_string_equal(m->bye.text, "bad_magic");
  assert_true(a->out_len > hello_len);
  /* Input after CLOSE is ignored. */
  size_t out_before = a->out_len;
  inject(a, (const uint8_t *)http, strlen(http), now);
  assert_int_equal(a->out_len, out_before);
  assert_int_equal(a->after_close, 0);
  side_free(a);

  /* Random bytes from a seeded generator, many times: always a clean
   * rejection, never a handshake. */
  for (int it = 0; it < 200; it++) {
    a = side_new();
    peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
    uint8_t junk[256];
    pd_rng_fill(&rng, junk, sizeof junk);
    if (it % 2) memcpy(junk, MAGIC, 4); /* get past the magic sometimes */
    inject(a, junk, sizeof junk, now);
    assert_int_equal(a->closed, 1);
    assert_true(a->close_misbehaved);
    assert_int_equal(a->hs_done, 0);
    side_free(a);
  }

  /* A header announcing 300,000 bytes: refused before any payload. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  uint8_t big[PD_WIRE_HEADER_LEN] = {0xf5, 0x70, 0x64, 0x31, PD_WIRE_ADDR, 0, 0, 0x04, 0x93, 0xe0};
  inject(a, big, sizeof big, now);
  assert_string_equal(a->reason, "oversized");
  assert_true(a->close_misbehaved);
  side_free(a);

  /* A message other than HELLO first. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  uint8_t f[128];
  inject(a, f, frame_ping(PD_WIRE_PING, 5, f), now);
  assert_string_equal(a->reason, "unexpected_message");
  assert_true(a->close_misbehaved);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PONG], 0);
  side_free(a);

  /* HELLO_ACK before HELLO. */
  a = side_new();
  peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  uint8_t sig[64] = {0};
  size_t n;
  assert_int_equal(pd_wire_encode_ack(MAGIC, sig, f, sizeof f, &n), 0);
  inject(a, f, n, now);
  assert_string_equal(a->reason, "unexpected_message");
  side_free(a);

  /* A second HELLO after the handshake. */
  side_t *b = side_new();
  a = side_new();
  pair_ready(&w, a, b, &rng, &now);
  uint8_t hf[PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX], ch[32] = {1};
  inject(b, hf, craft_hello(&w.ia, w.ia.pk, ch, "peerd", 3, 3, hf), now);
  assert_string_equal(b->reason, "unexpected_message");
  assert_true(b->close_misbehaved);
  free(m);
  side_free(a);
  side_free(b);
}

/* --- timers --------------------------------------------------------------------- */
static void handshake_timeout_slowloris(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 16);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  pair_make(&w, a, b, &rng, now);
  assert_int_equal(pd_peer_next_deadline(a->p), T0 + 10000);
  /* B trickles its KEYX to A one byte a second. */
  for (int s = 0; s < 10; s++) {
    now = T0 + s * 1000;
    inject_raw(a, b->out + s, 1, now);
    assert_int_equal(pd_peer_on_tick(a->p, now), 0);
    drain(a, now);
    assert_int_equal(a->closed, 0);
  }
  assert_int_equal(pd_peer_on_tick(a->p, T0 + 9999), 0);
  drain(a, T0 + 9999);
  assert_int_equal(a->closed, 0);
  assert_int_equal(pd_peer_on_tick(a->p, T0 + 10000), 0);
  drain(a, T0 + 10000);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "handshake_timeout");
  assert_false(a->close_misbehaved);
  pd_wire_msg_t *m = malloc(sizeof *m);
  assert_non_null(m);
  first_frame(a, 1, m);
  assert_int_equal(m->type, PD_WIRE_GOODBYE);
  assert_int_equal(m->bye.code, PD_WIRE_BYE_TIMEOUT);
  free(m);
  side_free(a);
  side_free(b);
}

static void ping_cycle_and_timeout(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 17);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  pair_ready(&w, a, b, &rng, &now);
  assert_int_equal(a->latencies, 1);
  /* Both ends pinged on READY; the next PING is ours two intervals after
   * our own (one after the peer's, which came just as early). */
  int64_t sent0 = pd_peer_stats(a->p)->ready_ms; /* A's first PING */
  int64_t dl0 = pd_peer_next_deadline(a->p);
  assert_int_equal(dl0, sent0 + 120000);
  /* The peer's PING takes the turn: one just before the deadline puts ours
   * off by an interval. */
  uint64_t pings0 = pd_peer_stats(a->p)->frames_out[PD_WIRE_PING];
  uint8_t f[64];
  inject(a, f, frame_ping(PD_WIRE_PING, 0x99, f), dl0 - 1);
  assert_int_equal(pd_peer_on_tick(a->p, dl0), 0);
  drain(a, dl0);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PING], pings0);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PONG], 2);
  assert_int_equal(pd_peer_next_deadline(a->p), dl0 - 1 + 60000);
  now = dl0;
  /* Thirty minutes of ticks every second with delivery: the two ends take
   * turns, so the link carries about one PING per interval (30), not two
   * (60); both ends measure their latency; nobody dies. */
  uint64_t pa = pd_peer_stats(a->p)->frames_out[PD_WIRE_PING];
  uint64_t pb = pd_peer_stats(b->p)->frames_out[PD_WIRE_PING];
  int la = a->latencies, lb = b->latencies;
  int64_t end = now + 1800000;
  while (now < end) {
    now += 1000;
    assert_int_equal(pd_peer_on_tick(a->p, now), 0);
    drain(a, now);
    assert_int_equal(pd_peer_on_tick(b->p, now), 0);
    drain(b, now);
    pump(a, b, &rng, 100, &now, 3);
  }
  assert_int_equal(a->closed + b->closed, 0);
  uint64_t turns = pd_peer_stats(a->p)->frames_out[PD_WIRE_PING] - pa +
                   pd_peer_stats(b->p)->frames_out[PD_WIRE_PING] - pb;
  assert_true(turns >= 24 && turns <= 32);
  assert_true(a->latencies - la >= 8);
  assert_true(b->latencies - lb >= 8);
  assert_true(a->last_latency == 3 || a->last_latency == 6); /* one or two pump hops */
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PING], (uint64_t)a->latencies);
  /* The periodic GETADDR (30 min) has not come yet; none from inbound B. */
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_GETADDR], 1);
  assert_int_equal(pd_peer_stats(b->p)->frames_out[PD_WIRE_GETADDR], 0);

  /* A PONG with a nonce nobody asked for is counted and ignored. */
  inject(a, f, frame_ping(PD_WIRE_PONG, 0x1234, f), now);
  assert_int_equal(pd_peer_stats(a->p)->pongs_unexpected, 1);
  assert_int_equal(a->closed, 0);

  /* B goes silent: A pings once more and gives up after the dead timeout. */
  int64_t silent = now;
  int pings = (int)pd_peer_stats(a->p)->frames_out[PD_WIRE_PING];
  for (int64_t t = silent; t < silent + 179000; t += 1000) {
    assert_int_equal(pd_peer_on_tick(a->p, t), 0);
    drain(a, t);
  }
  assert_int_equal(a->closed, 0);
  assert_int_equal((int)pd_peer_stats(a->p)->frames_out[PD_WIRE_PING], pings + 1);
  int64_t dl = pd_peer_next_deadline(a->p);
  assert_true(dl <= silent + 180000);
  assert_int_equal(pd_peer_on_tick(a->p, dl), 0);
  drain(a, dl);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "ping_timeout");
  assert_false(a->close_misbehaved);
  side_free(a);
  side_free(b);

  /* A peer that pings every interval still gets ours every four: A hears a
   * PING each minute (B answers A's but never ticks, so never pings by
   * itself) and pings on READY, then at 4 and 8 minutes. */
  a = side_new();
  b = side_new();
  now = T0;
  pair_ready(&w, a, b, &rng, &now);
  int64_t t0 = now;
  for (int64_t t = t0; t < t0 + 600000; t += 1000) {
    if ((t - t0) % 60000 == 30000) inject(a, f, frame_ping(PD_WIRE_PING, (uint64_t)t, f), t);
    assert_int_equal(pd_peer_on_tick(a->p, t), 0);
    drain(a, t);
    int64_t u = t;
    pump(a, b, &rng, 100, &u, 0);
  }
  assert_int_equal(a->closed, 0);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PING], 3);
  assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_PONG], 10 + 1);
  side_free(a);
  side_free(b);

  /* A peer that talks but never answers PING dies too. */
  a = side_new();
  b = side_new();
  now = T0;
  pair_ready(&w, a, b, &rng, &now);
  int64_t start = now;
  uint8_t junkpong[64];
  size_t jn = frame_ping(PD_WIRE_PONG, 77, junkpong);
  for (int64_t t = start; !a->closed && t < start + 400000; t += 10000) {
    inject(a, junkpong, jn, t); /* traffic, but not the answer */
    assert_int_equal(pd_peer_on_tick(a->p, t), 0);
    drain(a, t);
    if (t == start) { /* answer the first PING, then never again */
      pump(a, b, &rng, 100, &t, 0);
    }
  }
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "ping_timeout");
  side_free(a);
  side_free(b);
}

/* --- PEX limits ----------------------------------------------------------------- */
static void getaddr_flood(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 18);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  pair_ready(&w, a, b, &rng, &now);
  assert_int_equal(b->getaddr_rx, 1); /* A's GETADDR on connect */
  b->answer_n = 0;
  uint8_t f[16];
  size_t n;
  assert_int_equal(pd_wire_encode_getaddr(MAGIC, f, sizeof f, &n), 0);
  for (int i = 1; i <= 4; i++) {
    inject(b, f, n, now + i);
    assert_int_equal(b->getaddr_rx, 1); /* ignored */
    assert_int_equal(b->misb, 0);
  }
  inject(b, f, n, now + 5); /* the 5th ignored one in the period */
  assert_int_equal(b->misb, 1);
  assert_string_equal(b->misb_reason, "getaddr_flood");
  for (int i = 0; i < 20; i++) inject(b, f, n, now + 6 + i);
  assert_int_equal(b->misb, 1); /* once per period */
  assert_int_equal(b->closed, 0); /* the reputation policy decides */
  assert_int_equal(pd_peer_stats(b->p)->getaddr_ignored, 25);
  assert_int_equal(pd_peer_stats(b->p)->misbehaved, 1);
  /* A new period: answered again. */
  inject(b, f, n, now + 600000);
  assert_int_equal(b->getaddr_rx, 2);
  assert_int_equal(pd_peer_stats(b->p)->getaddr_answered, 2);
  /* A GETADDR is legal only after the handshake. */
  side_t *c = side_new();
  peer_make(c, &w.ic, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
  inject(c, f, n, now);
  assert_string_equal(c->reason, "unexpected_message");
  side_free(a);
  side_free(b);
  side_free(c);
}

static size_t frame_addr(size_t count, uint32_t salt, uint8_t *buf, size_t cap) {
  pd_wire_addr_entry_t *e = calloc(count ? count : 1, sizeof *e);
  assert_non_null(e);
  fill_addrs(e, count, salt);
  size_t n = 0;
  assert_int_equal(pd_wire_encode_addr(MAGIC, e, count, buf, cap, &n), 0);
  free(e);
  return n;
}

static void addr_token_bucket_and_flood(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 19);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  /* Ready at once (hop 0) so the bucket arithmetic is exact. */
  pair_make(&w, a, b, &rng, now);
  b->answer_n = 0;
  pump(a, b, &rng, 1000, &now, 0);
  assert_int_equal(now, T0);
  size_t cap = PD_WIRE_HEADER_LEN + PD_WIRE_ADDR_MAX_PAYLOAD;
  uint8_t *f = malloc(cap);
  assert_non_null(f);

  /* An empty ADDR before any other (no address buffer allocated yet) is
   * harmless: a regression test for a NULL + 0 that UBSan caught. */
  inject(b, f, frame_addr(0, 1, f, cap), T0);
  assert_int_equal(b->last_received, 0);
  assert_int_equal(b->closed, 0);

  /* B (inbound, never asked) starts with 1 token. */
  assert_true(pd_peer_addr_tokens(b->p, T0) == 1.0);
  inject(b, f, frame_addr(10, 2, f, cap), T0);
  assert_int_equal(b->last_received, 10);
  assert_int_equal(b->last_count, 1);
  assert_false(b->last_solicited);
  assert_true(b->last_relayable); /* unsolicited, <= 10 */
  assert_true(pd_peer_addr_tokens(b->p, T0) == 0.0);
  /* 0.1 / s: 100 s later 10 tokens; 15 s more, 1.5. */
  assert_true(pd_peer_addr_tokens(b->p, T0 + 100000) == 10.0);
  inject(b, f, frame_addr(1000, 3, f, cap), T0 + 100000);
  assert_int_equal(b->last_count, 10);
  assert_false(b->last_relayable);
  pd_wire_addr_entry_t sent[1000];
  fill_addrs(sent, 1000, 3);
  /* The survivors are sent entries, all distinct, and not simply the first
   * ten (the sender does not choose which ones get through). */
  bool prefix = true;
  for (size_t i = 0; i < 10; i++) {
    bool found = false;
    for (size_t j = 0; j < 1000; j++)
      if (entry_eq(&b->last_addrs[i], &sent[j])) {
        found = true;
        prefix &= j == i;
      }
    assert_true(found);
    for (size_t k = 0; k < i; k++)
      assert_false(entry_eq(&b->last_addrs[i], &b->last_addrs[k]));
  }
  assert_false(prefix);
  double t = pd_peer_addr_tokens(b->p, T0 + 115000);
  assert_true(t > 1.4999 && t < 1.5001);
  /* Flooding: 9 + 990 dropped so far; four more full messages reach 4,999
   * and the fifth crosses 5,000: one MISBEHAVED "addr_flood". */
  for (int i = 0; i < 4; i++) inject(b, f, frame_addr(1000, 4, f, cap), T0 + 100000);
  assert_int_equal(b->addrs_dropped, 4999);
  assert_int_equal(b->misb, 0);
  inject(b, f, frame_addr(1000, 5, f, cap), T0 + 100000);
  assert_int_equal(b->misb, 1);
  assert_string_equal(b->misb_reason, "addr_flood");
  assert_int_equal(b->closed, 0);
  const pd_peer_stats_t *st = pd_peer_stats(b->p);
  assert_int_equal(st->addrs_received, 10 + 6000);
  assert_int_equal(st->addrs_accepted, 11);
  assert_int_equal(st->addrs_rate_limited, 5999);
  /* A long silence refills to the burst (1,000), never beyond. */
  assert_true(pd_peer_addr_tokens(b->p, T0 + 100000 + 1000000000) == 1000.0);
  /* The clock going backwards adds nothing. */
  assert_true(pd_peer_addr_tokens(b->p, T0) == 0.0);

  /* Solicited: A asked on connect (B did not answer) and asks again; the
   * answer is taken whole, outside the bucket, which stays as it was. */
  assert_true(pd_peer_addr_tokens(a->p, T0) == 1.0);
  assert_int_equal(pd_peer_request_addrs(a->p, T0 + 1000), 0);
  drain(a, T0 + 1000);
  inject(a, f, frame_addr(1000, 6, f, cap), T0 + 1000);
  assert_int_equal(a->last_count, 1000);
  assert_true(a->last_solicited);
  assert_false(a->last_relayable);
  double ta = pd_peer_addr_tokens(a->p, T0 + 1000);
  assert_true(ta > 1.0999 && ta < 1.1001);
  /* The next, unsolicited one pays: one token, one address. */
  inject(a, f, frame_addr(1000, 7, f, cap), T0 + 1000);
  assert_false(a->last_solicited);
  assert_int_equal(a->last_count, 1);
  assert_int_equal(pd_peer_stats(a->p)->addrs_rate_limited, 999);
  /* An empty ADDR is valid. */
  inject(a, f, frame_addr(0, 0, f, cap), T0 + 1000);
  assert_int_equal(a->last_received, 0);
  assert_int_equal(a->closed, 0);
  free(f);
  side_free(a);
  side_free(b);
}

static void periodic_getaddr_and_goodbye(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  w.cfg.getaddr_interval_ms = 120000;
  w.cfg.getaddr_period_ms = 60000;
  pd_rng_t rng;
  pd_rng_seed(&rng, 20);
  side_t *a = side_new(), *b = side_new();
  int64_t now = T0;
  pair_ready(&w, a, b, &rng, &now);
  b->answer_n = 3;
  int64_t end = now + 500000;
  while (now < end) {
    now += 10000;
    assert_int_equal(pd_peer_on_tick(a->p, now), 0);
    drain(a, now);
    assert_int_equal(pd_peer_on_tick(b->p, now), 0);
    drain(b, now);
    pump(a, b, &rng, 50, &now, 2);
  }
  /* On connect, then every 2 minutes: about 5 in 500 s; all answered. */
  int asked = (int)pd_peer_stats(a->p)->frames_out[PD_WIRE_GETADDR];
  assert_true(asked >= 4 && asked <= 6);
  assert_int_equal(b->getaddr_rx, asked);
  assert_int_equal(a->addr_msgs, asked);
  assert_int_equal(b->misb + a->misb, 0);

  /* pd_peer_close: GOODBYE with our code, then CLOSE; the other side hears. */
  assert_int_equal(pd_peer_close(b->p, PD_WIRE_BYE_TOO_MANY, "full"), 0);
  drain(b, now);
  assert_int_equal(b->closed, 1);
  assert_string_equal(b->reason, "too_many_peers");
  assert_int_equal(pd_peer_close(b->p, PD_WIRE_BYE_NORMAL, NULL), 0); /* no-op */
  drain(b, now);
  assert_int_equal(b->closed, 1);
  deliver(b, a, &rng, 9, now);
  assert_int_equal(a->closed, 1);
  assert_string_equal(a->reason, "goodbye");
  assert_true(a->close_remote);
  assert_false(a->close_misbehaved);
  assert_int_equal(a->bye_code, PD_WIRE_BYE_TOO_MANY);
  assert_string_equal(a->bye_text, "full");
  assert_int_equal(pd_peer_state(a->p), PD_PEER_CLOSED);
  /* Nothing can be sent once closed. */
  pd_wire_addr_entry_t e[1];
  fill_addrs(e, 1, 0);
  assert_int_equal(pd_peer_send_addrs(a->p, e, 1, now), PD_EINVAL);
  assert_int_equal(pd_peer_request_addrs(a->p, now), PD_EINVAL);
  assert_int_equal(a->after_close + b->after_close, 0);
  side_free(a);
  side_free(b);
}


/* --- pluggable signature scheme (the lab's) ------------------------------------- */

typedef struct test_auth {
  uint8_t key;
  int signs, verifies;
} test_auth_t;

/* A toy keyed scheme: sig[i] = key ^ pk[i % 32] ^ msg[i % len]. */
static void toy_sig(uint8_t key, const uint8_t *pk, const uint8_t *msg, size_t len, uint8_t *sig) {
  for (size_t i = 0; i < PD_WIRE_SIG_LEN; i++)
    sig[i] = (uint8_t)(key ^ pk[i % PD_WIRE_PUBKEY_LEN] ^ msg[i % len]);
}

static int toy_sign(void *ud, const pd_identity_t *self, const uint8_t *msg, size_t len,
                    uint8_t sig[PD_WIRE_SIG_LEN]) {
  test_auth_t *t = ud;
  t->signs++;
  toy_sig(t->key, self->pk, msg, len, sig);
  return 0;
}

static int toy_verify(void *ud, const uint8_t pk[PD_WIRE_PUBKEY_LEN], const uint8_t *msg, size_t len,
                      const uint8_t sig[PD_WIRE_SIG_LEN]) {
  test_auth_t *t = ud;
  t->verifies++;
  uint8_t want[PD_WIRE_SIG_LEN];
  toy_sig(t->key, pk, msg, len, want);
  return memcmp(want, sig, PD_WIRE_SIG_LEN) == 0 ? 0 : PD_EINVAL;
}

static void auth_peer(side_t *s, const pd_identity_t *id, pd_peer_dir_t dir, const pd_netaddr_t *l,
                      const pd_peer_auth_t *auth, pd_rng_t *rng, int64_t now) {
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = id;
  prm.magic = MAGIC;
  prm.network = PD_WIRE_NETWORK_DEFAULT;
  prm.dir = dir;
  prm.listen = l;
  prm.auth = auth;
  assert_int_equal(pd_peer_new(&s->p, &prm, rng, now), 0);
  drain(s, now);
}

/* Both sides with the same scheme: READY, and ed25519 was not used (the
 * scheme signed and verified once each side). Different keys, or one side
 * on ed25519: auth_failed, reported as misbehaviour. */
static void pluggable_auth(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 21);
  for (int variant = 0; variant < 3; variant++) {
    test_auth_t ta = {.key = 0x5a}, tb = {.key = variant == 1 ? 0x33 : 0x5a};
    /* the lab's setting: its signatures and the null cipher */
    pd_peer_auth_t aa = {toy_sign, toy_verify, &ta, true}, ab = {toy_sign, toy_verify, &tb, true};
    int64_t now = T0;
    side_t *a = side_new(), *b = side_new();
    auth_peer(a, &w.ia, PD_PEER_OUTBOUND, &w.la, variant == 2 ? NULL : &aa, &rng, now);
    auth_peer(b, &w.ib, PD_PEER_INBOUND, &w.lb, &ab, &rng, now);
    b->answer_n = 5;
    pump(a, b, &rng, 64, &now, 7);
    if (variant == 0) {
      assert_int_equal(pd_peer_state(a->p), PD_PEER_READY);
      assert_int_equal(pd_peer_state(b->p), PD_PEER_READY);
      assert_int_equal(ta.signs, 1);
      assert_int_equal(ta.verifies, 1);
      assert_int_equal(tb.signs, 1);
      assert_int_equal(tb.verifies, 1);
      /* the same frames as on the wire: KEYX, then SEALED with a zero tag
       * around the inner frame in clear */
      assert_int_equal(a->out[4], PD_WIRE_KEYX);
      const uint8_t *sf = a->out + PD_WIRE_HEADER_LEN + 32;
      assert_int_equal(sf[4], PD_WIRE_SEALED);
      assert_int_equal(sf[PD_WIRE_HEADER_LEN + 4], PD_WIRE_HELLO);
      assert_int_equal(pd_peer_stats(a->p)->frames_out[PD_WIRE_KEYX], 1);
    } else {
      /* other keys: auth_failed; one side without the null cipher: its
       * sealed frames do not open on the other (bad_mac) */
      const char *want = variant == 1 ? "auth_failed" : "bad_mac";
      bool failed = (a->closed && strcmp(a->reason, want) == 0) ||
                    (b->closed && strcmp(b->reason, want) == 0);
      assert_true(failed);
      assert_true(pd_peer_state(a->p) != PD_PEER_READY || pd_peer_state(b->p) != PD_PEER_READY);
    }
    side_free(a);
    side_free(b);
  }
}

/* pd_peer_trim: a no-op while actions are queued (their bytes stay
 * valid); once all were polled, the output, address and action buffers go
 * (the footprint falls back to the struct and decoder), and the peer goes
 * on working: the next ADDR and PING round trip still flow both ways. */
static void trim_releases_buffers(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 31);
  int64_t now = T0;
  side_t *a = side_new(), *b = side_new();
  pair_ready(&w, a, b, &rng, &now);
  pd_peer_trim(a->p);
  size_t idle = pd_peer_footprint(a->p);
  pd_wire_addr_entry_t e[300];
  fill_addrs(e, 300, 7);
  assert_int_equal(pd_peer_send_addrs(a->p, e, 300, now), 0);
  size_t busy = pd_peer_footprint(a->p);
  assert_true(busy > idle + 300 * 16); /* the encoded ADDR frame is held */
  pd_peer_action_t x;
  assert_true(pd_peer_poll(a->p, &x));
  assert_int_equal(x.type, PD_PEER_A_SEND);
  /* The bytes of a polled SEND are the driver's to write: keep them for B
   * (sealed frames must arrive in order). */
  uint8_t *kept = malloc(2 * x.send.len);
  assert_non_null(kept);
  memcpy(kept, x.send.data, x.send.len);
  size_t kept_len = x.send.len;
  pd_peer_trim(a->p); /* nothing queued any more, but the frame is not sent yet */
  assert_int_equal(pd_peer_footprint(a->p), idle);
  /* The same frame again, through the harness (drain copies, then trim);
   * the same header, another ciphertext (the next nonce). */
  assert_int_equal(pd_peer_send_addrs(a->p, e, 300, now), 0);
  assert_true(pd_peer_poll(a->p, &x));
  assert_int_equal(x.send.len, kept_len);
  assert_memory_equal(x.send.data, kept, PD_WIRE_HEADER_LEN);
  assert_memory_not_equal(x.send.data + PD_WIRE_HEADER_LEN, kept + PD_WIRE_HEADER_LEN, 16);
  memcpy(kept + kept_len, x.send.data, x.send.len);
  kept_len += x.send.len;
  inject_raw(b, kept, kept_len, now);
  free(kept);
  pd_peer_trim(a->p);
  assert_int_equal(pd_peer_footprint(a->p), idle);
  assert_int_equal(pd_peer_send_addrs(a->p, e, 300, now), 0);
  drain(a, now);
  pd_peer_trim(a->p);
  pump(a, b, &rng, 1500, &now, 7);
  assert_int_equal(b->last_count + b->addrs_dropped >= 300, true);
  int lat = a->latencies;
  now = pd_peer_next_deadline(a->p); /* A's next PING */
  assert_int_equal(pd_peer_on_tick(a->p, now), 0);
  drain(a, now);
  pd_peer_trim(a->p);
  pump(a, b, &rng, 64, &now, 7);
  pd_peer_trim(a->p);
  assert_int_equal(a->latencies, lat + 1);
  assert_int_equal(pd_peer_footprint(a->p), idle);
  assert_int_equal(pd_peer_state(a->p), PD_PEER_READY);
  assert_int_equal(pd_peer_state(b->p), PD_PEER_READY);
  side_free(a);
  side_free(b);
}

/* An ADDR is the answer to our GETADDR only within getaddr_answer_ms of
 * it: B ignores A's second ask (one answer per 10 min), and a one-address
 * ADDR B sends 61 s later is unsolicited (relayable); sent 5 s after an ask
 * it is taken for the answer (not relayable), as before. */
static void unanswered_getaddr_expires(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 33);
  int64_t now = T0;
  side_t *a = side_new(), *b = side_new();
  pair_ready(&w, a, b, &rng, &now); /* A's first GETADDR is answered (50) */
  b->answer_n = 0;
  pd_wire_addr_entry_t e[1];
  for (int variant = 0; variant < 2; variant++) {
    assert_int_equal(pd_peer_request_addrs(a->p, now), 0);
    drain(a, now);
    pump(a, b, &rng, 64, &now, 7);
    now += variant == 0 ? 61000 : 5000;
    int msgs = a->addr_msgs;
    fill_addrs(e, 1, 40 + (uint32_t)variant);
    assert_int_equal(pd_peer_send_addrs(b->p, e, 1, now), 0);
    drain(b, now);
    pump(a, b, &rng, 64, &now, 7);
    assert_int_equal(a->addr_msgs, msgs + 1);
    assert_int_equal(a->last_solicited, variant == 1);
    assert_int_equal(a->last_relayable, variant == 0);
  }
  side_free(a);
  side_free(b);
}

/* A node record for id, on `network`, with one service endpoint. */
static size_t make_record(const pd_identity_t *id, const char *network, uint8_t *out) {
  pd_record_t r;
  assert_int_equal(pd_record_init(&r, network, 5, NULL), 0);
  pd_netaddr_t svc = v4(1, 2, 3, 4, 26656);
  assert_int_equal(pd_record_set_service(&r, "p2p", &svc, NULL), 0);
  size_t n = 0;
  assert_int_equal(pd_record_sign(&r, id, NULL, out, PD_RECORD_MAX, &n), 0);
  return n;
}

/* v2 handshakes carry records: both ends get the other's, verified, with the
 * address each sees the other at; a HELLO whose record is forged, names
 * another node or another network is refused with the record's reason, as
 * misbehaviour; a v1 peer is told why it is refused. */
static void records_in_handshake(void **state) {
  (void)state;
  world_t w;
  world_init(&w);
  pd_rng_t rng;
  pd_rng_seed(&rng, 21);
  int64_t now = T0;
  uint8_t ra[PD_RECORD_MAX], rb[PD_RECORD_MAX];
  size_t la = make_record(&w.ia, "peerd", ra), lb = make_record(&w.ib, "peerd", rb);
  side_t *a = side_new(), *b = side_new();
  pd_netaddr_t seen_b = w.lb, seen_a = v4(9, 8, 7, 6, 40000);
  pd_peer_params_t prm;
  memset(&prm, 0, sizeof prm);
  prm.self = &w.ia;
  prm.magic = MAGIC;
  prm.network = "peerd";
  prm.dir = PD_PEER_OUTBOUND;
  prm.expect_id = w.ib.id;
  prm.listen = &w.la;
  prm.record = ra;
  prm.record_len = la;
  prm.observed = &seen_b;
  assert_int_equal(pd_peer_new(&a->p, &prm, &rng, now), 0);
  drain(a, now);
  prm.self = &w.ib;
  prm.dir = PD_PEER_INBOUND;
  prm.expect_id = NULL;
  prm.listen = &w.lb;
  prm.record = rb;
  prm.record_len = lb;
  prm.observed = &seen_a;
  assert_int_equal(pd_peer_new(&b->p, &prm, &rng, now), 0);
  drain(b, now);
  pump(a, b, &rng, 64, &now, 7);
  assert_int_equal(a->hs_done, 1);
  assert_int_equal(b->hs_done, 1);
  const pd_peer_remote_t *r = pd_peer_remote(a->p);
  assert_int_equal(r->record_len, lb);
  assert_memory_equal(r->record, rb, lb);
  assert_true(r->has_observed);
  assert_true(pd_netaddr_equal(&r->observed, &seen_a)); /* where B sees A */
  r = pd_peer_remote(b->p);
  assert_memory_equal(r->record, ra, la);
  assert_true(pd_netaddr_equal(&r->observed, &seen_b));
  side_free(a);
  side_free(b);

  /* Refusals: B's HELLO with C's record; with a flipped signature byte;
   * with a record of another network. */
  uint8_t rc_[PD_RECORD_MAX], rn[PD_RECORD_MAX], f[PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX];
  size_t lc = make_record(&w.ic, "peerd", rc_), ln = make_record(&w.ib, "testnet", rn);
  uint8_t forged[PD_RECORD_MAX];
  memcpy(forged, rb, lb);
  forged[lb - 1] ^= 1;
  const struct { const uint8_t *rec; size_t len; const char *why; } cases[] = {
      {rc_, lc, "record_id"}, {forged, lb, "record_signature"}, {rn, ln, "record_network"},
      {rb, 100, "record_malformed"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    a = side_new();
    peer_make(a, &w.ia, PD_PEER_INBOUND, NULL, NULL, &w.cfg, NULL, &rng, now);
    pd_wire_hello_t h;
    memset(&h, 0, sizeof h);
    h.max_version = h.min_version = 3;
    memcpy(h.node_id, w.ib.id, 20);
    memcpy(h.pubkey, w.ib.pk, 32);
    memset(h.challenge, (int)(40 + i), 32);
    h.timestamp = T0 / 1000;
    strcpy(h.network, "peerd");
    h.record = cases[i].rec;
    h.record_len = (uint16_t)cases[i].len;
    size_t n = 0;
    assert_int_equal(pd_wire_encode_hello(MAGIC, &h, f, sizeof f, &n), 0);
    inject(a, f, n, now);
    assert_int_equal(a->closed, 1);
    assert_string_equal(a->reason, cases[i].why);
    assert_true(a->close_misbehaved);
    assert_int_equal(a->hs_done, 0);
    side_free(a);
  }
}

int main(void) {
  if (sodium_init() < 0) return 1;
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(pluggable_auth),
      cmocka_unit_test(trim_releases_buffers),
      cmocka_unit_test(unanswered_getaddr_expires),
      cmocka_unit_test(handshake_pex_ping_both_directions),
      cmocka_unit_test(wrong_expected_id),
      cmocka_unit_test(self_connection),
      cmocka_unit_test(replayed_ack_and_forged_identity),
      cmocka_unit_test(network_and_version),
      cmocka_unit_test(records_in_handshake),
      cmocka_unit_test(garbage_and_oversized),
      cmocka_unit_test(handshake_timeout_slowloris),
      cmocka_unit_test(ping_cycle_and_timeout),
      cmocka_unit_test(getaddr_flood),
      cmocka_unit_test(addr_token_bucket_and_flood),
      cmocka_unit_test(periodic_getaddr_and_goodbye),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
