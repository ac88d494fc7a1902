/* peer — one connection's protocol state machine. See peer.h and
 * docs/protocol.md §5 and §9. */
#include "peer.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"
#include "record.h"
#include "seal.h"

#ifdef PEERD_VERSION
#define DEFAULT_AGENT "peerd/" PEERD_VERSION
#else
#define DEFAULT_AGENT "peerd"
#endif

/* Buffers above these sizes are released when the action queue is drained,
 * so an idle connection keeps no output buffer at all (small frames are
 * encoded on the stack and appended at their exact size, so the next one
 * mallocs a few dozen bytes: a thread-cache hit) and no 47 KB ADDR frame.
 * The lab runs ~16 connections per host for 100,000 hosts: a 2 KiB buffer
 * kept per connection was 3 GiB. */
#define OUT_KEEP 0
#define ADDR_KEEP 16
#define SMALL_FRAME (PD_WIRE_HEADER_LEN + PD_WIRE_HELLO_MAX) /* any frame but ADDR */
/* An opened SEALED frame this small is decrypted on the stack. */
#define SMALL_OPEN (SMALL_FRAME + PD_WIRE_HEADER_LEN)

typedef struct {
  pd_peer_action_t a;
  size_t off; /* SEND: offset in out; ADDRS: offset in ab */
} queued_t;

struct pd_peer {
  pd_peer_config_t cfg;
  const pd_identity_t *self;
  const pd_peer_auth_t *auth; /* NULL = ed25519 */
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  /* Of our HELLO (encoded and sent at creation), what the handshake checks
   * against: ~215 B less per connection than keeping the whole HELLO. */
  uint8_t my_challenge[PD_WIRE_CHALLENGE_LEN];
  char network[PD_WIRE_NETWORK_MAX + 1];
  pd_peer_dir_t dir;
  bool has_expect;
  uint8_t expect[PD_NODE_ID_LEN];
  pd_rng_t rng; /* ping nonces, which addresses survive the rate limit */
  pd_peer_state_t state;

  /* v3 session (docs/protocol.md §5): our ephemeral key pair until the
   * peer's KEYX arrives (then the secret is wiped), our HELLO frame until it
   * can go sealed, the hashes the transcript binds, the cipher state. */
  bool keyed; /* their KEYX arrived: every frame from here on is SEALED */
  uint8_t eph_pk[PD_WIRE_KEYX_LEN], eph_sk[PD_WIRE_KEYX_LEN];
  uint8_t their_eph[PD_WIRE_KEYX_LEN];
  uint8_t my_hello_hash[PD_SEAL_HASH_LEN], their_hello_hash[PD_SEAL_HASH_LEN];
  uint8_t transcript[PD_SEAL_HASH_LEN];
  uint8_t *my_hello; /* heap, freed once sent */
  size_t my_hello_len;
  pd_seal_t seal;

  /* handshake */
  bool got_hello, got_ack;
  pd_peer_remote_t remote;
  pd_wire_decoder_t dec;

  /* liveness */
  int64_t last_recv_ms;
  bool ping_outstanding;
  uint64_t ping_nonce;
  int64_t ping_sent_ms;
  int64_t ping_recv_ms; /* the peer's last PING; 0 = none yet */

  /* PEX, asking */
  bool auto_getaddr;
  int64_t next_getaddr_ms;
  bool getaddr_pending;
  int64_t getaddr_sent_ms; /* our last GETADDR */
  /* PEX, answering */
  int64_t ga_period_start;
  unsigned ga_answered, ga_ignored;
  /* addr token bucket */
  double tokens;
  int64_t tokens_ms;
  uint64_t drops_unreported;

  pd_peer_stats_t st;
  char *bye_text; /* the remote's GOODBYE text, once received (heap) */

  /* output of the current call */
  uint8_t *out;
  size_t out_len, out_cap;
  pd_wire_addr_entry_t *ab;
  size_t ab_len, ab_cap;
  uint32_t *rboff; /* per ab entry: offset of its record in rb */
  size_t rboff_cap;
  uint8_t *rb;     /* the accepted entries' record bytes */
  size_t rb_len, rb_cap;
  queued_t *q;
  size_t q_head, q_len, q_cap;
};

void pd_peer_config_default(pd_peer_config_t *c) {
  memset(c, 0, sizeof *c);
  c->handshake_timeout_ms = 10 * 1000;
  c->ping_interval_ms = 60 * 1000;
  c->dead_timeout_ms = 180 * 1000;
  c->getaddr_interval_ms = 24LL * 3600 * 1000; /* = the answer cache's lifetime */
  c->getaddr_on_connect_outbound = true;
  c->getaddr_answer_ms = 60 * 1000;
  c->getaddr_on_connect_inbound = false;
  c->getaddr_period_ms = 10 * 60 * 1000;
  c->getaddr_max = 1;
  c->getaddr_flood = 5;
  c->addr_rate = 0.1;
  c->addr_burst = 1000.0;
  c->addr_initial = 1.0;
  c->addr_flood_drops = 5000;
  c->relay_max = 10;
  c->min_version = PD_WIRE_MIN_VERSION;
  c->max_version = PD_WIRE_VERSION;
}

/* --- output queue -------------------------------------------------------- */
/* At the start of every feeding call: if everything was drained, reuse the
 * buffers from the start (and drop oversized ones). */
static void begin_call(pd_peer_t *p) {
  if (p->q_head < p->q_len) return;
  p->q_head = p->q_len = 0;
  p->out_len = 0;
  p->ab_len = 0;
  if (p->out_cap > OUT_KEEP) {
    free(p->out);
    p->out = NULL;
    p->out_cap = 0;
  }
  if (p->ab_cap > ADDR_KEEP) {
    free(p->ab);
    p->ab = NULL;
    p->ab_cap = 0;
  }
}

static int push(pd_peer_t *p, const pd_peer_action_t *a, size_t off) {
  if (p->q_len == p->q_cap) {
    size_t ncap = p->q_cap ? 2 * p->q_cap : 8;
    queued_t *nq = realloc(p->q, ncap * sizeof *nq);
    if (!nq) return PD_ENOMEM;
    p->q = nq;
    p->q_cap = ncap;
  }
  p->q[p->q_len].a = *a;
  p->q[p->q_len].off = off;
  p->q_len++;
  return 0;
}

static int reserve_out(pd_peer_t *p, size_t n) {
  if (p->out_cap - p->out_len >= n) return 0;
  size_t ncap = p->out_cap ? p->out_cap : 64;
  while (ncap - p->out_len < n) ncap *= 2;
  uint8_t *nb = realloc(p->out, ncap);
  if (!nb) return PD_ENOMEM;
  p->out = nb;
  p->out_cap = ncap;
  return 0;
}

/* A frame of len bytes was written at out + out_len: account and queue it,
 * extending the previous SEND when it is still queued and adjacent. */
static int commit(pd_peer_t *p, size_t len, uint8_t type) {
  size_t off = p->out_len;
  p->out_len += len;
  p->st.bytes_out += len;
  p->st.frames_out[type]++;
  if (p->q_len > p->q_head) {
    queued_t *last = &p->q[p->q_len - 1];
    if (last->a.type == PD_PEER_A_SEND && last->off + last->a.send.len == off) {
      last->a.send.len += len;
      return 0;
    }
  }
  pd_peer_action_t a = {.type = PD_PEER_A_SEND};
  a.send.len = len;
  return push(p, &a, off);
}

/* The frame of n bytes just encoded at out + out_len + (keyed ? header : 0)
 * goes out: sealed in place when the session is keyed (§5.3). */
static int commit_frame(pd_peer_t *p, size_t n, uint8_t type) {
  if (p->keyed) {
    n = pd_seal_frame(&p->seal, p->magic, p->out + p->out_len, n);
    if (n == 0) return PD_EINVAL;
  }
  return commit(p, n, type);
}

/* Append a frame encoded on the stack, at its exact size (sealed when keyed). */
static int append_small(pd_peer_t *p, const uint8_t *frame, size_t n, uint8_t type) {
  size_t pre = p->keyed ? PD_WIRE_HEADER_LEN : 0;
  int rc = reserve_out(p, n + (p->keyed ? PD_WIRE_SEAL_OVERHEAD : 0));
  if (rc) return rc;
  memcpy(p->out + p->out_len + pre, frame, n);
  return commit_frame(p, n, type);
}

static int send_keyx(pd_peer_t *p) {
  uint8_t f[SMALL_FRAME];
  size_t n = 0;
  int rc = pd_wire_encode_keyx(p->magic, p->eph_pk, f, sizeof f, &n);
  return rc ? rc : append_small(p, f, n, PD_WIRE_KEYX);
}

static int send_ack(pd_peer_t *p, const uint8_t sig[PD_WIRE_SIG_LEN]) {
  uint8_t f[SMALL_FRAME];
  size_t n = 0;
  int rc = pd_wire_encode_ack(p->magic, sig, f, sizeof f, &n);
  return rc ? rc : append_small(p, f, n, PD_WIRE_HELLO_ACK);
}

static int send_goodbye(pd_peer_t *p, uint16_t code, const char *text) {
  uint8_t f[SMALL_FRAME];
  size_t n = 0;
  int rc = pd_wire_encode_goodbye(p->magic, code, text, f, sizeof f, &n);
  return rc ? rc : append_small(p, f, n, PD_WIRE_GOODBYE);
}

static int send_nonce(pd_peer_t *p, uint8_t type, uint64_t nonce) {
  uint8_t f[SMALL_FRAME];
  size_t n = 0;
  int rc = type == PD_WIRE_PING ? pd_wire_encode_ping(p->magic, nonce, f, sizeof f, &n)
                                : pd_wire_encode_pong(p->magic, nonce, f, sizeof f, &n);
  return rc ? rc : append_small(p, f, n, type);
}

/* Queue CLOSE (after an optional GOODBYE) and stop. bye_code < 0: none. */
/* Close: GOODBYE (when bye_code >= 0) with text, else the reason, then CLOSE. */
static int close_with_text(pd_peer_t *p, int bye_code, const char *reason, const char *text,
                           bool misbehaved) {
  int rc = 0;
  if (bye_code >= 0) rc = send_goodbye(p, (uint16_t)bye_code, text ? text : reason);
  pd_peer_action_t a = {.type = PD_PEER_A_CLOSE};
  a.close.reason = reason;
  a.close.misbehaved = misbehaved;
  p->state = PD_PEER_CLOSED;
  int rc2 = push(p, &a, 0);
  return rc ? rc : rc2;
}

static int close_with(pd_peer_t *p, int bye_code, const char *reason, bool misbehaved) {
  return close_with_text(p, bye_code, reason, NULL, misbehaved);
}

/* Allocation failed: the peer is dead; tell the driver if we still can. */
static int no_memory(pd_peer_t *p) {
  if (p->state != PD_PEER_CLOSED) {
    pd_peer_action_t a = {.type = PD_PEER_A_CLOSE};
    a.close.reason = "no_memory";
    p->state = PD_PEER_CLOSED;
    (void)push(p, &a, 0);
  }
  return PD_ENOMEM;
}

static int misbehaved(pd_peer_t *p, const char *reason) {
  pd_peer_action_t a = {.type = PD_PEER_A_MISBEHAVED};
  a.misbehaved.reason = reason;
  p->st.misbehaved++;
  return push(p, &a, 0);
}

/* --- token bucket ---------------------------------------------------------- */
/* Bitcoin Core's rule: refill only while below the burst, never above it;
 * the timestamp always moves (so a clock going back adds nothing). */
static double refilled(const pd_peer_t *p, int64_t now_ms) {
  double t = p->tokens;
  if (t < p->cfg.addr_burst) {
    int64_t dt = now_ms - p->tokens_ms;
    if (dt < 0) dt = 0;
    t += (double)dt / 1000.0 * p->cfg.addr_rate;
    if (t > p->cfg.addr_burst) t = p->cfg.addr_burst;
  }
  return t;
}

static void refill(pd_peer_t *p, int64_t now_ms) {
  p->tokens = refilled(p, now_ms);
  p->tokens_ms = now_ms;
}

double pd_peer_addr_tokens(const pd_peer_t *p, int64_t now_ms) { return refilled(p, now_ms); }

size_t pd_peer_footprint(const pd_peer_t *p) {
  return sizeof *p + p->out_cap + p->ab_cap * (sizeof *p->ab + sizeof *p->rboff) + p->rb_cap +
         p->q_cap * sizeof *p->q + p->dec.cap + p->remote.record_len;
}

/* --- lifecycle ------------------------------------------------------------- */
int pd_peer_new(pd_peer_t **out, const pd_peer_params_t *prm, pd_rng_t *rng, int64_t now_ms) {
  if (!out || !prm || !prm->self || !prm->magic || !prm->network || !rng) return PD_EINVAL;
  *out = NULL;
  pd_peer_t *p = calloc(1, sizeof *p);
  if (!p) return PD_ENOMEM;
  if (prm->cfg)
    p->cfg = *prm->cfg;
  else
    pd_peer_config_default(&p->cfg);
  p->self = prm->self;
  p->auth = prm->auth;
  memcpy(p->magic, prm->magic, PD_WIRE_MAGIC_LEN);
  p->dir = prm->dir;
  if (prm->expect_id) {
    p->has_expect = true;
    memcpy(p->expect, prm->expect_id, PD_NODE_ID_LEN);
  }
  pd_rng_seed(&p->rng, pd_rng_u64(rng));

  pd_wire_hello_t hello;
  memset(&hello, 0, sizeof hello);
  pd_wire_hello_t *h = &hello;
  h->max_version = p->cfg.max_version;
  h->min_version = p->cfg.min_version;
  memcpy(h->node_id, prm->self->id, PD_NODE_ID_LEN);
  memcpy(h->pubkey, prm->self->pk, PD_WIRE_PUBKEY_LEN);
  if (prm->challenge)
    memcpy(h->challenge, prm->challenge, PD_WIRE_CHALLENGE_LEN);
  else
    pd_rng_fill(rng, h->challenge, PD_WIRE_CHALLENGE_LEN);
  h->timestamp = now_ms < 0 ? 0 : now_ms / 1000;
  if (prm->listen) {
    h->has_listen = true;
    h->listen = *prm->listen;
  }
  if (prm->record && prm->record_len && prm->record_len <= PD_WIRE_RECORD_MAX) {
    h->record = prm->record;
    h->record_len = (uint16_t)prm->record_len;
  }
  if (prm->observed && pd_netaddr_is_valid(prm->observed) && prm->observed->port != 0) {
    h->has_observed = true;
    h->observed = *prm->observed;
  }
  size_t nlen = strnlen(prm->network, PD_WIRE_NETWORK_MAX + 1);
  const char *agent = prm->agent ? prm->agent : DEFAULT_AGENT;
  size_t alen = strnlen(agent, PD_WIRE_AGENT_MAX + 1);
  if (nlen > PD_WIRE_NETWORK_MAX || alen > PD_WIRE_AGENT_MAX) {
    free(p);
    return PD_EINVAL;
  }
  memcpy(h->network, prm->network, nlen);
  memcpy(h->agent, agent, alen);
  memcpy(p->network, h->network, sizeof p->network);
  memcpy(p->my_challenge, h->challenge, PD_WIRE_CHALLENGE_LEN);

  /* v3: our HELLO waits, encoded, for the session keys; its hash goes into
   * the transcript. The ephemeral key goes out first, in KEYX. */
  uint8_t eseed[PD_WIRE_KEYX_LEN];
  if (prm->eph_seed)
    memcpy(eseed, prm->eph_seed, sizeof eseed);
  else
    pd_rng_fill(rng, eseed, sizeof eseed);
  bool null_cipher = prm->auth && prm->auth->null_cipher;
  int krc = pd_seal_keypair(eseed, p->eph_pk, p->eph_sk, null_cipher);
  sodium_memzero(eseed, sizeof eseed);
  uint8_t hf[SMALL_FRAME];
  size_t hn = 0;
  if (krc || pd_wire_encode_hello(p->magic, h, hf, sizeof hf, &hn) != 0) {
    pd_peer_free(p);
    return PD_EINVAL;
  }
  p->my_hello = malloc(hn);
  if (!p->my_hello) {
    pd_peer_free(p);
    return PD_ENOMEM;
  }
  memcpy(p->my_hello, hf, hn);
  p->my_hello_len = hn;
  pd_seal_hash(hf, hn, p->my_hello_hash);

  pd_wire_decoder_init(&p->dec, p->magic);
  p->state = PD_PEER_HANDSHAKE;
  p->st.dir = p->dir;
  p->st.created_ms = now_ms;
  p->st.latency_ms = -1;
  p->st.min_latency_ms = -1;
  p->last_recv_ms = now_ms;
  p->tokens = p->cfg.addr_initial;
  p->tokens_ms = now_ms;

  int rc = send_keyx(p);
  if (rc) {
    pd_peer_free(p);
    return rc == PD_ENOMEM ? PD_ENOMEM : PD_EINVAL;
  }
  *out = p;
  return 0;
}

void pd_peer_free(pd_peer_t *p) {
  if (!p) return;
  pd_wire_decoder_free(&p->dec);
  free(p->out);
  free(p->ab);
  free(p->rboff);
  free(p->rb);
  free(p->q);
  free(p->bye_text);
  free((void *)p->remote.record);
  free(p->my_hello);
  pd_seal_wipe(&p->seal);
  sodium_memzero(p->eph_sk, sizeof p->eph_sk);
  free(p);
}

void pd_peer_trim(pd_peer_t *p) {
  if (!p || p->q_head < p->q_len) return;
  begin_call(p); /* resets, and frees the out buffer (OUT_KEEP 0) */
  free(p->q);
  p->q = NULL;
  p->q_cap = 0;
  free(p->ab);
  p->ab = NULL;
  p->ab_cap = 0;
  free(p->rboff);
  p->rboff = NULL;
  p->rboff_cap = 0;
  free(p->rb);
  p->rb = NULL;
  p->rb_len = p->rb_cap = 0;
}

bool pd_peer_poll(pd_peer_t *p, pd_peer_action_t *out) {
  if (p->q_head >= p->q_len) return false;
  queued_t *e = &p->q[p->q_head++];
  *out = e->a;
  if (out->type == PD_PEER_A_SEND) out->send.data = p->out + e->off;
  if (out->type == PD_PEER_A_ADDRS_RECEIVED) {
    out->addrs.entries = p->ab ? p->ab + e->off : NULL;
    /* the records were copied into rb, which may have moved since */
    for (size_t i = 0; i < out->addrs.count; i++) {
      pd_wire_addr_entry_t *a = &p->ab[e->off + i];
      a->record = a->record_len ? p->rb + p->rboff[e->off + i] : NULL;
    }
  }
  return true;
}

pd_peer_state_t pd_peer_state(const pd_peer_t *p) { return p->state; }
pd_peer_dir_t pd_peer_dir(const pd_peer_t *p) { return p->dir; }
const pd_peer_stats_t *pd_peer_stats(const pd_peer_t *p) { return &p->st; }
const pd_peer_remote_t *pd_peer_remote(const pd_peer_t *p) {
  return p->got_hello && p->got_ack ? &p->remote : NULL;
}

/* --- handshake ------------------------------------------------------------- */
static int send_ping(pd_peer_t *p, int64_t now_ms) {
  uint64_t nonce = pd_rng_u64(&p->rng);
  int rc = send_nonce(p, PD_WIRE_PING, nonce);
  if (rc) return rc;
  p->ping_outstanding = true;
  p->ping_nonce = nonce;
  p->ping_sent_ms = now_ms;
  return 0;
}

/* The two ends of a link take turns at the keep-alive: our next PING is due
 * one interval after the peer's last PING and two after our own, so a link
 * carries one PING+PONG per interval instead of two, and each end still
 * measures its latency every other interval. Two ends that ping at the
 * same moment (both do on READY) stay in step at half the rate each, which
 * comes to the same. Whatever the peer does, we ping at least every four
 * intervals: a peer that pings every interval does not leave us without
 * latency samples. The peer's PINGs also keep it from dead_timeout. */
static int64_t ping_due(const pd_peer_t *p) {
  int64_t i = p->cfg.ping_interval_ms;
  int64_t due = p->ping_sent_ms + 2 * i;
  if (p->ping_recv_ms + i > due) due = p->ping_recv_ms + i;
  if (due > p->ping_sent_ms + 4 * i) due = p->ping_sent_ms + 4 * i;
  return due;
}

static int send_getaddr(pd_peer_t *p, int64_t now_ms) {
  uint8_t f[SMALL_FRAME];
  size_t n = 0;
  int rc = pd_wire_encode_getaddr(p->magic, f, sizeof f, &n);
  if (rc) return rc;
  rc = append_small(p, f, n, PD_WIRE_GETADDR);
  if (rc) return rc;
  /* The answer is wanted: it may carry up to PD_WIRE_MAX_ADDRS addresses
   * outside the bucket (Bitcoin: m_addr_token_bucket += MAX_ADDR_TO_SEND).
   * Asking again before an answer does not add more. */
  p->getaddr_pending = true;
  p->getaddr_sent_ms = now_ms;
  if (p->cfg.getaddr_interval_ms > 0) p->next_getaddr_ms = now_ms + p->cfg.getaddr_interval_ms;
  return 0;
}

static int become_ready(pd_peer_t *p, int64_t now_ms) {
  p->state = PD_PEER_READY;
  p->st.ready_ms = now_ms;
  p->ga_period_start = now_ms;
  pd_peer_action_t a = {.type = PD_PEER_A_HANDSHAKE_DONE};
  a.hs.remote = &p->remote;
  int rc = push(p, &a, 0);
  if (!rc) rc = send_ping(p, now_ms); /* first latency sample at once */
  p->auto_getaddr = p->dir == PD_PEER_OUTBOUND ? p->cfg.getaddr_on_connect_outbound
                                               : p->cfg.getaddr_on_connect_inbound;
  if (!rc && p->auto_getaddr) rc = send_getaddr(p, now_ms);
  return rc;
}

static int on_hello(pd_peer_t *p, const pd_wire_hello_t *h) {
  p->got_hello = true;
  pd_peer_remote_t *r = &p->remote;
  memcpy(r->id, h->node_id, PD_NODE_ID_LEN);
  memcpy(r->pubkey, h->pubkey, PD_WIRE_PUBKEY_LEN);
  r->has_listen = h->has_listen;
  r->listen = h->listen;
  r->timestamp = h->timestamp;
  memcpy(r->agent, h->agent, sizeof r->agent);
  r->has_observed = h->has_observed;
  r->observed = h->observed;

  /* The checks, in the order of docs/protocol.md §5. */
  if (strcmp(h->network, p->network) != 0)
    return close_with(p, PD_WIRE_BYE_NETWORK, "wrong_network", false);
  if (pd_wire_negotiate_version(p->cfg.min_version, p->cfg.max_version, h->min_version,
                                h->max_version, &r->version) != 0) {
    /* Say why: a v1 peer learns that v2 carries signed node records. */
    char text[PD_WIRE_TEXT_MAX + 1];
    snprintf(text, sizeof text,
             "incompatible_version: this peer speaks %u..%u (v3: encrypted sessions), you %u..%u",
             (unsigned)p->cfg.min_version, (unsigned)p->cfg.max_version, (unsigned)h->min_version,
             (unsigned)h->max_version);
    return close_with_text(p, PD_WIRE_BYE_VERSION, "incompatible_version", text, false);
  }
  if (!pd_identity_id_matches(h->pubkey, h->node_id))
    return close_with(p, PD_WIRE_BYE_AUTH, "auth_failed", true);
  if (memcmp(h->node_id, p->self->id, PD_NODE_ID_LEN) == 0 ||
      memcmp(h->challenge, p->my_challenge, PD_WIRE_CHALLENGE_LEN) == 0)
    return close_with(p, PD_WIRE_BYE_SELF, "self_connection", false);
  if (p->has_expect && memcmp(h->node_id, p->expect, PD_NODE_ID_LEN) != 0)
    return close_with(p, PD_WIRE_BYE_ID_MISMATCH, "id_mismatch", false);
  /* Its record: signed by the key it proves, for our network. */
  if (h->record_len) {
    pd_record_t rec;
    pd_record_auth_t ra = {0};
    if (p->auth) ra = (pd_record_auth_t){.sign = p->auth->sign, .verify = p->auth->verify, .ud = p->auth->ud};
    pd_record_reason_t why =
        pd_record_decode(h->record, h->record_len, p->network, p->auth ? &ra : NULL, &rec, NULL);
    if (why == PD_RECORD_OK && memcmp(rec.id, h->node_id, PD_NODE_ID_LEN) != 0)
      why = PD_RECORD_R_BAD_ID;
    if (why != PD_RECORD_OK)
      return close_with(p, PD_WIRE_BYE_PROTOCOL, pd_record_reason_name(why), true);
    uint8_t *copy = malloc(h->record_len);
    if (!copy) return no_memory(p);
    memcpy(copy, h->record, h->record_len);
    r->record = copy;
    r->record_len = h->record_len;
  }

  /* We sign the transcript (both KEYX keys, both HELLOs as sent: versions,
   * addresses, records, the network), under our role (§5.2). */
  bool dialler = p->dir == PD_PEER_OUTBOUND;
  pd_seal_transcript(p->transcript, p->magic, dialler ? p->eph_pk : p->their_eph,
                     dialler ? p->their_eph : p->eph_pk,
                     dialler ? p->my_hello_hash : p->their_hello_hash,
                     dialler ? p->their_hello_hash : p->my_hello_hash);
  uint8_t msg[PD_SEAL_AUTH_MSG_LEN], sig[PD_WIRE_SIG_LEN];
  pd_seal_auth_message(msg, dialler ? PD_SEAL_DIALLER : PD_SEAL_LISTENER, p->transcript);
  int src = p->auth ? p->auth->sign(p->auth->ud, p->self, msg, sizeof msg, sig)
                    : pd_identity_sign(p->self, msg, sizeof msg, sig);
  if (src != 0)
    return close_with(p, -1, "auth_failed", false); /* our key is unusable */
  return send_ack(p, sig);
}

static int on_ack(pd_peer_t *p, const uint8_t sig[PD_WIRE_SIG_LEN], int64_t now_ms) {
  uint8_t msg[PD_SEAL_AUTH_MSG_LEN];
  pd_seal_auth_message(msg, p->dir == PD_PEER_OUTBOUND ? PD_SEAL_LISTENER : PD_SEAL_DIALLER,
                       p->transcript);
  int vrc = p->auth ? p->auth->verify(p->auth->ud, p->remote.pubkey, msg, sizeof msg, sig)
                    : pd_identity_verify(p->remote.pubkey, msg, sizeof msg, sig);
  if (vrc != 0)
    return close_with(p, PD_WIRE_BYE_AUTH, "auth_failed", true);
  p->got_ack = true;
  return become_ready(p, now_ms);
}

/* --- PEX ------------------------------------------------------------------- */
static int on_getaddr(pd_peer_t *p, int64_t now_ms) {
  if (now_ms - p->ga_period_start >= p->cfg.getaddr_period_ms || now_ms < p->ga_period_start) {
    p->ga_period_start = now_ms;
    p->ga_answered = 0;
    p->ga_ignored = 0;
  }
  if (p->ga_answered < p->cfg.getaddr_max) {
    p->ga_answered++;
    p->st.getaddr_answered++;
    pd_peer_action_t a = {.type = PD_PEER_A_GETADDR_RECEIVED};
    return push(p, &a, 0);
  }
  p->ga_ignored++;
  p->st.getaddr_ignored++;
  if (p->cfg.getaddr_flood && p->ga_ignored == p->cfg.getaddr_flood)
    return misbehaved(p, "getaddr_flood");
  return 0;
}

static int on_addr(pd_peer_t *p, pd_wire_msg_t *m, int64_t now_ms) {
  size_t n = m->addr.count;
  bool solicited = p->getaddr_pending && (p->cfg.getaddr_answer_ms <= 0 ||
                                          now_ms - p->getaddr_sent_ms <= p->cfg.getaddr_answer_ms);
  p->getaddr_pending = false;
  refill(p, now_ms);
  /* An answer to our GETADDR is free up to PD_WIRE_MAX_ADDRS (the codec's
   * cap, so all of it); unused credit does not linger. Anything else pays
   * one token per address. */
  size_t free_n = solicited ? (n < PD_WIRE_MAX_ADDRS ? n : PD_WIRE_MAX_ADDRS) : 0;
  size_t paid = n - free_n, accept_paid = paid;
  if (p->tokens < (double)paid) accept_paid = p->tokens < 1.0 ? 0 : (size_t)p->tokens;
  p->tokens -= (double)accept_paid;
  size_t accept = free_n + accept_paid;
  size_t dropped = n - accept;
  /* Which ones survive is random (Bitcoin shuffles), not the sender's
   * choice of order: a partial Fisher-Yates in the scratch message. */
  if (dropped) {
    for (size_t i = 0; i < accept; i++) {
      size_t j = i + (size_t)pd_rng_range(&p->rng, n - i);
      pd_wire_addr_entry_t t = m->addr.entries[i];
      m->addr.entries[i] = m->addr.entries[j];
      m->addr.entries[j] = t;
    }
  }
  if (p->ab_cap - p->ab_len < accept) {
    size_t ncap = p->ab_len + accept;
    pd_wire_addr_entry_t *nb = realloc(p->ab, ncap * sizeof *nb);
    if (!nb) return PD_ENOMEM;
    p->ab = nb;
    p->ab_cap = ncap;
  }
  size_t off = p->ab_len;
  if (accept) memcpy(p->ab + off, m->addr.entries, accept * sizeof *p->ab);
  /* Records point into the frame: copy them; poll points them at rb. */
  size_t rneed = 0;
  for (size_t i = 0; i < accept; i++) rneed += m->addr.entries[i].record_len;
  if (p->ab_cap && p->rboff_cap < p->ab_cap) {
    uint32_t *nro = realloc(p->rboff, p->ab_cap * sizeof *nro);
    if (!nro) return PD_ENOMEM;
    p->rboff = nro;
    p->rboff_cap = p->ab_cap;
  }
  if (rneed && p->rb_cap - p->rb_len < rneed) {
    size_t ncap = p->rb_len + rneed;
    uint8_t *nb = realloc(p->rb, ncap);
    if (!nb) return PD_ENOMEM;
    p->rb = nb;
    p->rb_cap = ncap;
  }
  for (size_t i = 0; i < accept; i++) {
    const pd_wire_addr_entry_t *src = &m->addr.entries[i];
    p->rboff[off + i] = (uint32_t)p->rb_len;
    if (src->record_len) {
      memcpy(p->rb + p->rb_len, src->record, src->record_len);
      p->rb_len += src->record_len;
    }
    p->ab[off + i].record = NULL;
  }
  p->ab_len += accept;

  p->st.addrs_received += n;
  p->st.addrs_accepted += accept;
  p->st.addrs_rate_limited += dropped;
  pd_peer_action_t a = {.type = PD_PEER_A_ADDRS_RECEIVED};
  a.addrs.count = accept;
  a.addrs.received = n;
  a.addrs.dropped = dropped;
  a.addrs.solicited = solicited;
  a.addrs.relayable = !solicited && n <= p->cfg.relay_max;
  int rc = push(p, &a, off);
  if (rc) return rc;
  p->drops_unreported += dropped;
  if (p->cfg.addr_flood_drops && p->drops_unreported >= p->cfg.addr_flood_drops) {
    p->drops_unreported = 0;
    return misbehaved(p, "addr_flood");
  }
  return 0;
}

/* --- input ----------------------------------------------------------------- */
static int handle(pd_peer_t *p, pd_wire_msg_t *m, int64_t now_ms) {
  p->st.frames_in[m->type]++;
  p->last_recv_ms = now_ms;
  switch (m->type) {
  case PD_WIRE_GOODBYE: {
    free(p->bye_text);
    p->bye_text = malloc((size_t)m->bye.text_len + 1);
    if (p->bye_text) memcpy(p->bye_text, m->bye.text, (size_t)m->bye.text_len + 1);
    pd_peer_action_t a = {.type = PD_PEER_A_CLOSE};
    a.close.reason = "goodbye";
    a.close.remote = true;
    a.close.remote_code = m->bye.code;
    a.close.remote_text = p->bye_text ? p->bye_text : "";
    p->state = PD_PEER_CLOSED;
    return push(p, &a, 0);
  }
  case PD_WIRE_HELLO:
    if (p->got_hello) break;
    return on_hello(p, &m->hello);
  case PD_WIRE_HELLO_ACK:
    if (!p->got_hello || p->got_ack) break;
    return on_ack(p, m->ack.sig, now_ms);
  default:
    if (p->state != PD_PEER_READY) break;
    switch (m->type) {
    case PD_WIRE_PING:
      p->ping_recv_ms = now_ms;
      return send_nonce(p, PD_WIRE_PONG, m->nonce);
    case PD_WIRE_PONG:
      if (!p->ping_outstanding || m->nonce != p->ping_nonce) {
        p->st.pongs_unexpected++;
        return 0;
      } else {
        int64_t ms = now_ms - p->ping_sent_ms;
        if (ms < 0) ms = 0;
        p->ping_outstanding = false;
        p->st.latency_ms = ms;
        if (p->st.min_latency_ms < 0 || ms < p->st.min_latency_ms) p->st.min_latency_ms = ms;
        pd_peer_action_t a = {.type = PD_PEER_A_LATENCY};
        a.latency.ms = ms;
        return push(p, &a, 0);
      }
    case PD_WIRE_GETADDR: return on_getaddr(p, now_ms);
    case PD_WIRE_ADDR: return on_addr(p, m, now_ms);
    default: break;
    }
  }
  return close_with(p, PD_WIRE_BYE_PROTOCOL, "unexpected_message", true);
}

/* The peer's KEYX: derive the session, then our HELLO goes out sealed. */
static int on_keyx(pd_peer_t *p, const uint8_t pk[PD_WIRE_KEYX_LEN]) {
  p->st.frames_in[PD_WIRE_KEYX]++;
  memcpy(p->their_eph, pk, PD_WIRE_KEYX_LEN);
  int role = p->dir == PD_PEER_OUTBOUND ? PD_SEAL_DIALLER : PD_SEAL_LISTENER;
  int rc = pd_seal_init(&p->seal, role, p->eph_pk, p->eph_sk, pk,
                        p->auth && p->auth->null_cipher);
  sodium_memzero(p->eph_sk, sizeof p->eph_sk);
  if (rc) /* a low-order key: unauthenticated, maybe substituted on the path */
    return close_with(p, PD_WIRE_BYE_AUTH, "auth_failed", false);
  p->keyed = true;
  rc = append_small(p, p->my_hello, p->my_hello_len, PD_WIRE_HELLO);
  free(p->my_hello);
  p->my_hello = NULL;
  p->my_hello_len = 0;
  return rc;
}

/* Before the key exchange: KEYX, or a GOODBYE (a peer that refuses us at
 * once), or the plain HELLO of an older version, which learns why. */
static int handle_plain(pd_peer_t *p, pd_wire_msg_t *m, int64_t now_ms) {
  if (m->type == PD_WIRE_KEYX) {
    p->last_recv_ms = now_ms;
    return on_keyx(p, m->keyx.pk);
  }
  if (m->type == PD_WIRE_GOODBYE) return handle(p, m, now_ms);
  if (m->type == PD_WIRE_HELLO) {
    p->st.frames_in[PD_WIRE_HELLO]++;
    char text[PD_WIRE_TEXT_MAX + 1];
    snprintf(text, sizeof text,
             "incompatible_version: this peer speaks %u..%u (v3: encrypted sessions), you %u..%u",
             (unsigned)p->cfg.min_version, (unsigned)p->cfg.max_version,
             (unsigned)m->hello.min_version, (unsigned)m->hello.max_version);
    return close_with_text(p, PD_WIRE_BYE_VERSION, "incompatible_version", text, false);
  }
  if (m->type == PD_WIRE_SEALED) return close_with(p, PD_WIRE_BYE_PROTOCOL, "not_sealed", true);
  return close_with(p, PD_WIRE_BYE_PROTOCOL, "unexpected_message", true);
}

/* After it: only SEALED frames, each holding exactly one inner frame. A
 * frame that does not open closes the connection as "bad_mac" without
 * blaming the peer (an on-path attacker can cause it). */
static int handle_sealed(pd_peer_t *p, pd_wire_msg_t *m, int64_t now_ms) {
  /* Only what opened under the session key is the peer's own doing: a
   * plain frame here, like a bad outer header, may be an on-path attacker's
   * (not misbehaviour, as bad_mac). */
  if (m->type != PD_WIRE_SEALED) return close_with(p, PD_WIRE_BYE_PROTOCOL, "not_sealed", false);
  const uint8_t *hdr = m->sealed.hdr, *data = m->sealed.data;
  size_t n = m->sealed.len - PD_WIRE_TAG_LEN;
  uint8_t small[SMALL_OPEN];
  uint8_t *pt = n <= sizeof small ? small : malloc(n);
  if (!pt) return PD_ENOMEM;
  int rc = 0;
  if (pd_seal_open(&p->seal, hdr, data, m->sealed.len, pt) != 0) {
    rc = close_with(p, PD_WIRE_BYE_PROTOCOL, "bad_mac", false);
  } else {
    pd_wire_reason_t why = pd_wire_decode_frame(p->magic, pt, n, m);
    if (why)
      rc = close_with(p, PD_WIRE_BYE_PROTOCOL, pd_wire_reason_name(why), true);
    else if (m->type == PD_WIRE_SEALED || m->type == PD_WIRE_KEYX)
      rc = close_with(p, PD_WIRE_BYE_PROTOCOL,
                      m->type == PD_WIRE_SEALED ? "not_sealed" : "unexpected_message", true);
    else {
      if (m->type == PD_WIRE_HELLO && !p->got_hello) pd_seal_hash(pt, n, p->their_hello_hash);
      rc = handle(p, m, now_ms); /* copies what it keeps out of pt */
    }
  }
  if (pt != small) free(pt);
  return rc;
}

int pd_peer_on_bytes(pd_peer_t *p, const uint8_t *buf, size_t len, int64_t now_ms) {
  begin_call(p);
  if (p->state == PD_PEER_CLOSED || len == 0) return 0;
  pd_wire_msg_t *m = malloc(sizeof *m); /* 56 KB scratch, not kept per peer */
  if (!m) return no_memory(p);
  size_t off = 0;
  int rc = 0;
  while (off < len && p->state != PD_PEER_CLOSED) {
    size_t used = 0;
    int r = pd_wire_decoder_feed(&p->dec, buf + off, len - off, &used, m);
    off += used;
    if (r == PD_WIRE_NEED_MORE) break;
    if (r == PD_WIRE_MESSAGE) {
      rc = p->keyed ? handle_sealed(p, m, now_ms) : handle_plain(p, m, now_ms);
      if (rc) break;
      continue;
    }
    pd_wire_reason_t why = pd_wire_decoder_reason(&p->dec);
    if (why == PD_WIRE_R_NO_MEMORY) {
      rc = PD_ENOMEM;
      break;
    }
    /* once keyed, a frame whose header does not parse is unauthenticated
     * bytes: anyone on the path may have sent them */
    rc = close_with(p, PD_WIRE_BYE_PROTOCOL, pd_wire_reason_name(why), !p->keyed);
    break;
  }
  p->st.bytes_in += off;
  free(m);
  if (rc == PD_ENOMEM) return no_memory(p);
  return rc;
}

int pd_peer_on_tick(pd_peer_t *p, int64_t now_ms) {
  begin_call(p);
  int rc = 0;
  if (p->state == PD_PEER_HANDSHAKE) {
    if (now_ms - p->st.created_ms >= p->cfg.handshake_timeout_ms)
      rc = close_with(p, PD_WIRE_BYE_TIMEOUT, "handshake_timeout", false);
  } else if (p->state == PD_PEER_READY) {
    if (now_ms - p->last_recv_ms >= p->cfg.dead_timeout_ms ||
        (p->ping_outstanding && now_ms - p->ping_sent_ms >= p->cfg.dead_timeout_ms))
      rc = close_with(p, PD_WIRE_BYE_TIMEOUT, "ping_timeout", false);
    else {
      if (!p->ping_outstanding && now_ms >= ping_due(p)) rc = send_ping(p, now_ms);
      if (!rc && p->auto_getaddr && p->cfg.getaddr_interval_ms > 0 &&
          now_ms >= p->next_getaddr_ms)
        rc = send_getaddr(p, now_ms);
    }
  }
  if (rc == PD_ENOMEM) return no_memory(p);
  return rc;
}

int64_t pd_peer_next_deadline(const pd_peer_t *p) {
  if (p->state == PD_PEER_HANDSHAKE) return p->st.created_ms + p->cfg.handshake_timeout_ms;
  if (p->state != PD_PEER_READY) return INT64_MAX;
  int64_t d = p->last_recv_ms + p->cfg.dead_timeout_ms;
  int64_t t = p->ping_outstanding ? p->ping_sent_ms + p->cfg.dead_timeout_ms : ping_due(p);
  if (t < d) d = t;
  if (p->auto_getaddr && p->cfg.getaddr_interval_ms > 0 && p->next_getaddr_ms < d)
    d = p->next_getaddr_ms;
  return d;
}

/* --- calls from the node --------------------------------------------------- */
int pd_peer_send_addrs(pd_peer_t *p, const pd_wire_addr_entry_t *entries, size_t count,
                       int64_t now_ms) {
  (void)now_ms;
  begin_call(p);
  if (p->state != PD_PEER_READY) return PD_EINVAL;
  if (count > PD_WIRE_MAX_ADDRS) return PD_ETOOBIG;
  size_t need = PD_WIRE_SEAL_OVERHEAD + PD_WIRE_HEADER_LEN + 2 + count * PD_WIRE_ADDR_ENTRY_MAX;
  for (size_t i = 0; i < count; i++)
    if (entries[i].record_len) need += 2 + (size_t)entries[i].record_len;
  int rc = reserve_out(p, need);
  if (rc) return rc;
  size_t n = 0;
  rc = pd_wire_encode_addr(p->magic, entries, count, p->out + p->out_len + PD_WIRE_HEADER_LEN,
                           need - PD_WIRE_SEAL_OVERHEAD, &n);
  if (rc) return rc;
  return commit_frame(p, n, PD_WIRE_ADDR);
}

int pd_peer_send_frame(pd_peer_t *p, const uint8_t *frame, size_t len) {
  begin_call(p);
  if (p->state == PD_PEER_CLOSED || len < PD_WIRE_HEADER_LEN ||
      len > PD_WIRE_MAX_PAYLOAD - PD_WIRE_TAG_LEN)
    return PD_EINVAL;
  int rc = reserve_out(p, len + PD_WIRE_SEAL_OVERHEAD);
  if (rc) return rc;
  memcpy(p->out + p->out_len + (p->keyed ? PD_WIRE_HEADER_LEN : 0), frame, len);
  return commit_frame(p, len, frame[4] < PD_WIRE_TYPE_COUNT ? frame[4] : 0);
}

bool pd_peer_mid_frame(const pd_peer_t *p) { return pd_wire_decoder_mid_frame(&p->dec); }

int pd_peer_request_addrs(pd_peer_t *p, int64_t now_ms) {
  begin_call(p);
  if (p->state != PD_PEER_READY) return PD_EINVAL;
  return send_getaddr(p, now_ms);
}

int pd_peer_close(pd_peer_t *p, uint16_t code, const char *text) {
  begin_call(p);
  if (p->state == PD_PEER_CLOSED) return 0;
  int rc = send_goodbye(p, code, text);
  pd_peer_action_t a = {.type = PD_PEER_A_CLOSE};
  a.close.reason = pd_wire_bye_name(code);
  p->state = PD_PEER_CLOSED;
  int rc2 = push(p, &a, 0);
  if (rc == PD_ENOMEM || rc2 == PD_ENOMEM) return no_memory(p);
  return rc;
}
