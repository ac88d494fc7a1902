/* dht — the Kademlia DHT engine: packets in, requests, lookups, the
 * discovery loop, actions out. See dht.h and docs/protocol.md §11. */
#include "dht.h"

#include <sodium.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

/* Records verified lately, by BLAKE2b-256 of their bytes: the same record
 * arrives from many responders, and an ed25519 check costs ~50 us. */
#define VERIFIED_SLOTS 256
#define REQ_BLOCK 16

enum purpose { RQ_CONTACT = 1, RQ_REVALIDATE, RQ_EVICT, RQ_FETCH, RQ_LOOKUP };
enum cand_state { C_NEW = 0, C_ASKED, C_ANSWERED, C_FAILED };

typedef struct req {
  bool used, handshaken, any;
  uint8_t purpose, type, msg_len, ndist, got, total;
  uint8_t id[PD_DHT_ID_LEN];
  pd_netaddr_t ep;
  uint8_t msg[32]; /* the request in clear: PING 17 bytes, FINDNODE at most 14 */
  uint8_t nonce[PD_DHT_NONCE_LEN];
  uint8_t dist[PD_DHT_MAX_DISTANCES];
  uint64_t rid, lookup;
  int64_t deadline;
  unsigned nrec;
  uint8_t *rec; /* RQ_CONTACT: the record given with the node (owned), or NULL */
  uint16_t rec_len;
} req_t;

typedef struct challenge {
  uint8_t id[PD_DHT_ID_LEN];
  pd_netaddr_t ep;
  uint8_t bytes[PD_DHT_WHOAREYOU_LEN];
  int64_t sent_ms;
} challenge_t;

typedef struct cand {
  pd_dht_result_t r;
  uint8_t state;
} cand_t;

typedef struct lookup {
  pd_dht_lookup_info_t info;
  cand_t c[PD_DHT_LOOKUP_MAX_CANDIDATES];
  size_t n;
  unsigned inflight;
  pd_dht_result_t res[PD_DHTT_K];
} lookup_t;

typedef struct out {
  int kind;
  pd_netaddr_t to;
  uint64_t lookup_id;
  size_t len;
  uint8_t bytes[PD_DHT_MAX_PACKET];
} out_t;

struct pd_dht {
  pd_dht_config_t cfg;
  pd_dht_crypto_t crypto;
  pd_rng_t *rng;
  pd_dht_table_t *table;
  pd_dht_sessions_t *sessions;
  uint8_t my_rec[PD_DHT_RECORD_MAX];
  size_t my_rec_len;
  uint64_t my_seq;
  /* requests out, in blocks allocated as needed (addresses stay put) */
  req_t *rblk[PD_DHT_MAX_REQUESTS / REQ_BLOCK];
  size_t nblk, nreq;
  challenge_t *ch; /* grown as needed, at most PD_DHT_MAX_CHALLENGES */
  size_t nch, chcap;
  lookup_t *lk[PD_DHT_MAX_LOOKUPS];
  uint64_t next_lookup_id, loop_lookup;
  int64_t next_reval, next_loop, next_expire;
  out_t *outq;
  size_t nout, outcap, outhead;
  pd_dht_stats_t st;
  uint8_t (*verified)[32]; /* VERIFIED_SLOTS digests; allocated for ed25519 only */
};

static size_t req_cap(const pd_dht_t *d) { return d->nblk * REQ_BLOCK; }
static req_t *req_at(const pd_dht_t *d, size_t i) { return &d->rblk[i / REQ_BLOCK][i % REQ_BLOCK]; }

static const char *const reason_names[PD_DHT_R_COUNT] = {
    "none",          "dht_magic",  "dht_version",   "dht_kind",       "dht_malformed",
    "dht_message",   "dht_id",     "dht_signature", "dht_decrypt",    "dht_replay",
    "dht_unsolicited", "dht_record", "dht_distance", "dht_throttled",
};

const char *pd_dht_reason_name(int reason) {
  if (reason < 0 || reason >= PD_DHT_R_COUNT) return "unknown";
  return reason_names[reason];
}

static bool ep_eq(const pd_netaddr_t *a, const pd_netaddr_t *b) {
  return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

static int reject(pd_dht_t *d, int reason) {
  d->st.rejected[reason]++;
  return reason;
}

static void secret(pd_dht_t *d, uint8_t *buf, size_t len) {
  if (d->cfg.secret_fn)
    d->cfg.secret_fn(d->cfg.secret_ctx, buf, len);
  else
    pd_rng_fill(d->rng, buf, len);
}

/* Decode and verify a record from outside (§10: signature, id, network),
 * skipping the signature for bytes verified lately. */
static bool verify_record(pd_dht_t *d, const uint8_t *bytes, size_t len, pd_record_t *rec) {
  /* a cheaper scheme (the lab's) needs no cache */
  if (!d->verified && !d->cfg.auth) d->verified = calloc(VERIFIED_SLOTS, sizeof *d->verified);
  if (!d->verified)
    return pd_record_decode(bytes, len, d->cfg.network, d->cfg.auth, rec, NULL) == PD_RECORD_OK;
  uint8_t h[32];
  crypto_generichash(h, sizeof h, bytes, len, NULL, 0);
  uint8_t *slot = d->verified[(h[0] | (unsigned)h[1] << 8) % VERIFIED_SLOTS];
  if (memcmp(slot, h, sizeof h) == 0)
    return pd_record_parse_trusted(bytes, len, rec) == PD_RECORD_OK;
  if (pd_record_decode(bytes, len, d->cfg.network, d->cfg.auth, rec, NULL) != PD_RECORD_OK)
    return false;
  memcpy(slot, h, sizeof h);
  return true;
}

bool pd_dht_passive(const pd_dht_t *d) { return d->cfg.passive; }

bool pd_dht_record_endpoint(const pd_record_t *r, pd_netaddr_t *ep) {
  if (!r->has_discovery) return false;
  *ep = r->discovery;
  const char *v = pd_record_attr(r, PD_DHT_PORT_ATTR);
  if (v) {
    unsigned long port = 0;
    for (const char *q = v; *q; q++) {
      if (*q < '0' || *q > '9' || port > 65535) return false;
      port = port * 10 + (unsigned long)(*q - '0');
    }
    if (port == 0 || port > 65535) return false;
    ep->port = (uint16_t)port;
  }
  return true;
}

/* Does r name `at` as its DHT endpoint? */
static bool record_at(const pd_record_t *r, const pd_netaddr_t *at) {
  pd_netaddr_t ep;
  return pd_dht_record_endpoint(r, &ep) && ep_eq(&ep, at);
}

/* ---- the action queue ---- */

static out_t *push_out(pd_dht_t *d) {
  if (d->outhead == d->nout) d->outhead = d->nout = 0;
  if (d->nout == d->outcap) {
    size_t cap = d->outcap ? d->outcap * 2 : 8;
    out_t *q = realloc(d->outq, cap * sizeof *q);
    if (!q) return NULL;
    d->outq = q;
    d->outcap = cap;
  }
  out_t *o = &d->outq[d->nout++];
  memset(o, 0, offsetof(out_t, bytes));
  return o;
}

static void queue_send(pd_dht_t *d, const pd_netaddr_t *to, const uint8_t *bytes, size_t len) {
  out_t *o = push_out(d);
  if (!o) return;
  o->kind = PD_DHT_A_SEND;
  o->to = *to;
  o->len = len;
  memcpy(o->bytes, bytes, len);
  d->st.bytes_out += len;
  if (len > 5 && bytes[5] <= PD_DHT_HANDSHAKE) d->st.packets_out[bytes[5]]++;
}

bool pd_dht_poll(pd_dht_t *d, pd_dht_action_t *a) {
  if (d->outhead >= d->nout) return false;
  out_t *o = &d->outq[d->outhead++];
  memset(a, 0, sizeof *a);
  a->kind = o->kind;
  a->to = o->to;
  a->bytes = o->bytes;
  a->len = o->len;
  a->lookup_id = o->lookup_id;
  return true;
}

/* ---- lifecycle ---- */

pd_dht_t *pd_dht_new(const pd_dht_config_t *cfg, pd_rng_t *rng, int64_t now_ms) {
  if (!cfg || !cfg->self || !cfg->network || !rng) return NULL;
  pd_dht_t *d = calloc(1, sizeof *d);
  if (!d) return NULL;
  d->cfg = *cfg;
  if (!d->cfg.k) d->cfg.k = PD_DHTT_K;
  if (d->cfg.k > PD_DHTT_K) d->cfg.k = PD_DHTT_K;
  if (!d->cfg.alpha) d->cfg.alpha = PD_DHT_ALPHA;
  if (!d->cfg.request_timeout_ms) d->cfg.request_timeout_ms = PD_DHT_REQUEST_TIMEOUT_MS;
  if (!d->cfg.revalidate_ms) d->cfg.revalidate_ms = PD_DHT_REVALIDATE_MS;
  if (!d->cfg.lookup_fast_ms) d->cfg.lookup_fast_ms = PD_DHT_LOOKUP_FAST_MS;
  if (!d->cfg.lookup_slow_ms) d->cfg.lookup_slow_ms = PD_DHT_LOOKUP_SLOW_MS;
  d->crypto.self = cfg->self;
  d->crypto.auth = cfg->auth;
  d->crypto.null_cipher = cfg->null_cipher;
  d->rng = rng;
  d->table = pd_dht_table_new(cfg->self->id, d->cfg.k, 0);
  d->sessions = pd_dht_sessions_new(cfg->max_sessions);
  if (!d->table || !d->sessions) {
    pd_dht_free(d);
    return NULL;
  }
  d->next_lookup_id = 1;
  if (d->cfg.passive) d->cfg.revalidate_ms = d->cfg.lookup_fast_ms = d->cfg.lookup_slow_ms = -1;
  d->next_reval = d->cfg.revalidate_ms > 0 ? now_ms + d->cfg.revalidate_ms : INT64_MAX;
  d->next_loop = d->cfg.lookup_fast_ms > 0 || d->cfg.lookup_slow_ms > 0 ? now_ms : INT64_MAX;
  d->next_expire = now_ms + 60000;
  return d;
}

static void req_free(pd_dht_t *d, req_t *r) {
  free(r->rec);
  memset(r, 0, sizeof *r);
  if (d->nreq) d->nreq--;
}

void pd_dht_free(pd_dht_t *d) {
  if (!d) return;
  for (size_t i = 0; i < req_cap(d); i++)
    if (req_at(d, i)->used) free(req_at(d, i)->rec);
  for (size_t b = 0; b < d->nblk; b++) free(d->rblk[b]);
  free(d->ch);
  free(d->verified);
  for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++) free(d->lk[i]);
  pd_dht_table_free(d->table);
  pd_dht_sessions_free(d->sessions);
  free(d->outq);
  free(d);
}

int pd_dht_set_record(pd_dht_t *d, const uint8_t *bytes, size_t len) {
  if (!bytes || len < PD_DHT_RECORD_MIN || len > PD_DHT_RECORD_MAX) return PD_EINVAL;
  memcpy(d->my_rec, bytes, len);
  d->my_rec_len = len;
  d->my_seq = pd_record_peek_seq(bytes, len);
  return 0;
}

const pd_dht_stats_t *pd_dht_stats(const pd_dht_t *d) { return &d->st; }
const pd_dht_table_t *pd_dht_table(const pd_dht_t *d) { return d->table; }
size_t pd_dht_sessions(const pd_dht_t *d) { return pd_dht_sessions_count(d->sessions); }
size_t pd_dht_requests_out(const pd_dht_t *d) { return d->nreq; }
size_t pd_dht_lookups_running(const pd_dht_t *d) {
  size_t n = 0;
  for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++)
    if (d->lk[i] && !d->lk[i]->info.done) n++;
  return n;
}

/* ---- sending ---- */

/* Seal msg for the session with (id, ep) and queue it; 0, or PD_ENOENT when
 * there is no session. *nonce_out (may be NULL) gets the packet's nonce. */
static int send_sealed(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                       const uint8_t *msg, size_t len, uint8_t *nonce_out, int64_t now) {
  pd_dht_session_t *s = pd_dht_sessions_find(d->sessions, id, ep);
  if (!s) return PD_ENOENT;
  uint8_t pkt[PD_DHT_MAX_PACKET];
  size_t n = 0;
  int rc = pd_dht_seal_message(s, &d->crypto, msg, len, pkt, sizeof pkt, &n, now);
  if (rc != 0) return rc;
  if (nonce_out) memcpy(nonce_out, pkt + 6, PD_DHT_NONCE_LEN);
  queue_send(d, ep, pkt, n);
  if (msg[0] >= 1 && msg[0] <= 4) d->st.msgs_out[msg[0]]++;
  return 0;
}

/* Send a request's message: sealed when a session exists, else a packet of
 * random bytes that gets us a WHOAREYOU (§11.3 step 1). */
static void send_req(pd_dht_t *d, req_t *r, int64_t now) {
  if (send_sealed(d, r->id, &r->ep, r->msg, r->msg_len, r->nonce, now) == 0) return;
  uint8_t pkt[PD_DHT_HEADER_LEN + 32 + PD_DHT_TAG_LEN];
  size_t body = (size_t)r->msg_len + PD_DHT_TAG_LEN;
  if (body < PD_DHT_RANDOM_MIN) body = PD_DHT_RANDOM_MIN;
  pd_rng_fill(d->rng, r->nonce, PD_DHT_NONCE_LEN);
  r->nonce[0] |= 0x80; /* never a counter nonce (those start 00 00 00 00) */
  pd_dht_header_encode(pkt, PD_DHT_MESSAGE, r->nonce, d->cfg.self->id);
  pd_rng_fill(d->rng, pkt + PD_DHT_HEADER_LEN, body);
  queue_send(d, &r->ep, pkt, PD_DHT_HEADER_LEN + body);
  if (r->type >= 1 && r->type <= 4) d->st.msgs_out[r->type]++;
}

static req_t *new_req(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                      uint8_t purpose, int64_t now) {
  if (d->nreq >= PD_DHT_MAX_REQUESTS) return NULL;
  if (d->nreq == req_cap(d)) { /* every slot taken: one more block */
    req_t *blk = calloc(REQ_BLOCK, sizeof *blk);
    if (!blk) return NULL;
    d->rblk[d->nblk++] = blk;
  }
  for (size_t i = 0; i < req_cap(d); i++) {
    req_t *r = req_at(d, i);
    if (r->used) continue;
    memset(r, 0, sizeof *r);
    r->used = true;
    r->purpose = purpose;
    memcpy(r->id, id, PD_DHT_ID_LEN);
    r->ep = *ep;
    do r->rid = pd_rng_u64(d->rng);
    while (r->rid == 0);
    r->deadline = now + d->cfg.request_timeout_ms;
    d->nreq++;
    d->st.requests++;
    return r;
  }
  return NULL;
}

static int send_ping(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                     uint8_t purpose, int64_t now, req_t **out) {
  req_t *r = new_req(d, id, ep, purpose, now);
  if (!r) return PD_EFULL;
  pd_dht_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = PD_DHT_PING;
  m.request_id = r->rid;
  m.record_seq = d->my_seq;
  size_t len = 0;
  if (pd_dht_msg_encode(&m, r->msg, sizeof r->msg, &len) != 0) {
    req_free(d, r);
    return PD_EINVAL;
  }
  r->type = PD_DHT_PING;
  r->msg_len = (uint8_t)len;
  send_req(d, r, now);
  if (out) *out = r;
  return 0;
}

static int send_findnode(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                         const uint8_t *dist, uint8_t ndist, uint8_t purpose, uint64_t lookup,
                         int64_t now) {
  req_t *r = new_req(d, id, ep, purpose, now);
  if (!r) return PD_EFULL;
  pd_dht_msg_t m;
  memset(&m, 0, sizeof m);
  m.type = PD_DHT_FINDNODE;
  m.request_id = r->rid;
  m.ndist = ndist;
  memcpy(m.dist, dist, ndist);
  size_t len = 0;
  if (pd_dht_msg_encode(&m, r->msg, sizeof r->msg, &len) != 0) {
    req_free(d, r);
    return PD_EINVAL;
  }
  r->type = PD_DHT_FINDNODE;
  r->msg_len = (uint8_t)len;
  r->ndist = ndist;
  memcpy(r->dist, dist, ndist);
  r->lookup = lookup;
  send_req(d, r, now);
  return 0;
}

/* ---- the table ---- */

static void table_insert(pd_dht_t *d, const pd_record_t *rec, const uint8_t *bytes, size_t len,
                         const pd_netaddr_t *ep, int64_t now) {
  uint8_t ping_id[PD_DHT_ID_LEN];
  bool ping_set = false;
  int rc = pd_dht_table_seen(d->table, rec->id, ep, bytes, len, rec->seq, now, d->cfg.admit,
                             d->cfg.admit_ctx, ping_id, &ping_set);
  if (rc == PD_DHTT_ADDED) d->st.table_added++;
  if (rc == PD_DHTT_REFUSED) d->st.table_refused++;
  if (rc == PD_DHTT_CACHED && ping_set) {
    const pd_dht_entry_t *e = pd_dht_table_find(d->table, ping_id);
    if (e && send_ping(d, e->id, &e->ep, RQ_EVICT, now, NULL) != 0)
      pd_dht_table_ping_result(d->table, ping_id, true, now, d->cfg.admit, d->cfg.admit_ctx);
  }
}

static void table_ping_done(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], bool ok, int64_t now) {
  int rc = pd_dht_table_ping_result(d->table, id, ok, now, d->cfg.admit, d->cfg.admit_ctx);
  if (rc == 1) d->st.table_removed++;
}

/* A record the engine verified: tell the driver (not for our own). */
static void found(pd_dht_t *d, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                  const pd_netaddr_t *from, int64_t now) {
  if (memcmp(rec->id, d->cfg.self->id, PD_DHT_ID_LEN) == 0) return;
  d->st.records_found++;
  if (d->cfg.found) d->cfg.found(d->cfg.found_ctx, bytes, len, rec, from, now);
}

/* ---- lookups ---- */

static lookup_t *lookup_by_id(pd_dht_t *d, uint64_t id) {
  for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++)
    if (d->lk[i] && d->lk[i]->info.id == id) return d->lk[i];
  return NULL;
}

/* Add (or update) a candidate, keeping c[] sorted by distance to target. */
static void lookup_add(lookup_t *l, const uint8_t *self_id, const uint8_t id[PD_DHT_ID_LEN],
                       const pd_netaddr_t *ep, const uint8_t *rec, size_t rec_len, uint8_t hop) {
  if (memcmp(id, self_id, PD_DHT_ID_LEN) == 0) return;
  for (size_t i = 0; i < l->n; i++) {
    if (memcmp(l->c[i].r.id, id, PD_DHT_ID_LEN) != 0) continue;
    if (hop < l->c[i].r.hop) l->c[i].r.hop = hop;
    if (pd_record_peek_seq(rec, rec_len) > pd_record_peek_seq(l->c[i].r.rec, l->c[i].r.rec_len) &&
        l->c[i].state == C_NEW) {
      memcpy(l->c[i].r.rec, rec, rec_len);
      l->c[i].r.rec_len = (uint16_t)rec_len;
      l->c[i].r.ep = *ep;
    }
    return;
  }
  size_t pos = l->n;
  while (pos > 0 && pd_dht_distcmp(l->info.target, id, l->c[pos - 1].r.id) < 0) pos--;
  if (pos >= PD_DHT_LOOKUP_MAX_CANDIDATES) return;
  size_t last = l->n < PD_DHT_LOOKUP_MAX_CANDIDATES ? l->n : PD_DHT_LOOKUP_MAX_CANDIDATES - 1;
  memmove(&l->c[pos + 1], &l->c[pos], (last - pos) * sizeof l->c[0]);
  if (l->n < PD_DHT_LOOKUP_MAX_CANDIDATES) l->n++;
  cand_t *c = &l->c[pos];
  c->r.answered = false;
  memcpy(c->r.id, id, PD_DHT_ID_LEN);
  c->r.ep = *ep;
  memcpy(c->r.rec, rec, rec_len);
  c->r.rec_len = (uint16_t)rec_len;
  c->r.hop = hop;
  c->state = C_NEW;
}

/* Does the lookup hold a candidate with exactly these record bytes? (The
 * node id sits at bytes [33, 53) of a record, docs/protocol.md §10.1.) */
static bool lookup_holds(const lookup_t *l, const uint8_t *rec, size_t len) {
  for (size_t i = 0; i < l->n; i++)
    if (l->c[i].r.rec_len == len && memcmp(l->c[i].r.id, rec + 33, PD_DHT_ID_LEN) == 0)
      return memcmp(l->c[i].r.rec, rec, len) == 0;
  return false;
}

static void lookup_finish(pd_dht_t *d, lookup_t *l, int64_t now) {
  l->info.done = true;
  l->info.ended_ms = now;
  size_t k = 0;
  for (size_t i = 0; i < l->n && k < d->cfg.k; i++)
    if (l->c[i].state == C_ANSWERED) {
      l->res[k] = l->c[i].r;
      l->res[k++].answered = true;
    }
  l->info.nresults = k;
  l->info.hops = k ? l->res[0].hop : 0;
  l->info.found = l->n && memcmp(l->c[0].r.id, l->info.target, PD_DHT_ID_LEN) == 0;
  if (l->info.found) l->info.hops = l->c[0].r.hop;
  d->st.lookups_done++;
  d->st.lookup_hops_sum += l->info.hops;
  if (l->info.found) d->st.lookups_found++;
  if (l->info.user) {
    out_t *o = push_out(d);
    if (o) {
      o->kind = PD_DHT_A_LOOKUP_DONE;
      o->lookup_id = l->info.id;
    }
  } else {
    if (d->loop_lookup == l->info.id) d->loop_lookup = 0;
    for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++)
      if (d->lk[i] == l) {
        free(l);
        d->lk[i] = NULL;
      }
  }
}

static void lookup_step(pd_dht_t *d, lookup_t *l, int64_t now) {
  if (l->info.done) return;
  /* Done when the k closest that did not fail have all answered. */
  size_t seen = 0;
  bool all = true;
  for (size_t i = 0; i < l->n && seen < d->cfg.k; i++) {
    if (l->c[i].state == C_FAILED) continue;
    seen++;
    if (l->c[i].state != C_ANSWERED) all = false;
  }
  if (seen > 0 && all && l->inflight == 0) {
    lookup_finish(d, l, now);
    return;
  }
  while (l->inflight < d->cfg.alpha && l->info.queries < PD_DHT_LOOKUP_MAX_QUERIES) {
    cand_t *c = NULL;
    size_t considered = 0;
    for (size_t i = 0; i < l->n && considered < d->cfg.k; i++) {
      if (l->c[i].state == C_FAILED) continue;
      considered++;
      if (l->c[i].state == C_NEW) {
        c = &l->c[i];
        break;
      }
    }
    if (!c) break;
    unsigned dd = pd_dht_logdist(l->info.target, c->r.id);
    if (dd == 0) dd = 1;
    uint8_t dist[3];
    uint8_t nd = 0;
    dist[nd++] = (uint8_t)dd;
    if (dd + 1 <= PD_DHT_MAX_DISTANCE) dist[nd++] = (uint8_t)(dd + 1);
    if (dd - 1 >= 1) dist[nd++] = (uint8_t)(dd - 1);
    if (send_findnode(d, c->r.id, &c->r.ep, dist, nd, RQ_LOOKUP, l->info.id, now) != 0) break;
    c->state = C_ASKED;
    l->inflight++;
    l->info.queries++;
  }
  if (l->inflight == 0) lookup_finish(d, l, now);
}

static void lookup_answered(pd_dht_t *d, uint64_t lookup, const uint8_t id[PD_DHT_ID_LEN], bool ok,
                            int64_t now) {
  lookup_t *l = lookup_by_id(d, lookup);
  if (!l || l->info.done) return;
  if (l->inflight) l->inflight--;
  if (ok)
    l->info.answered++;
  else
    l->info.failed++;
  for (size_t i = 0; i < l->n; i++) {
    if (memcmp(l->c[i].r.id, id, PD_DHT_ID_LEN) != 0) continue;
    l->c[i].state = ok ? C_ANSWERED : C_FAILED;
    if (ok) {
      pd_record_t rec;
      if (pd_record_parse_trusted(l->c[i].r.rec, l->c[i].r.rec_len, &rec) == PD_RECORD_OK)
        table_insert(d, &rec, l->c[i].r.rec, l->c[i].r.rec_len, &l->c[i].r.ep, now);
    }
    break;
  }
  lookup_step(d, l, now);
}

static int lookup_new(pd_dht_t *d, const uint8_t target[PD_DHT_ID_LEN], bool user, int64_t now,
                      uint64_t *id) {
  size_t slot = PD_DHT_MAX_LOOKUPS;
  for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++)
    if (!d->lk[i]) {
      slot = i;
      break;
    }
  if (slot == PD_DHT_MAX_LOOKUPS) return PD_EFULL;
  lookup_t *l = calloc(1, sizeof *l);
  if (!l) return PD_ENOMEM;
  d->lk[slot] = l;
  l->info.id = d->next_lookup_id++;
  memcpy(l->info.target, target, PD_DHT_ID_LEN);
  l->info.user = user;
  l->info.started_ms = now;
  d->st.lookups_started++;
  const pd_dht_entry_t *near[PD_DHTT_K];
  size_t n = pd_dht_table_closest(d->table, target, d->cfg.k, near);
  for (size_t i = 0; i < n; i++)
    lookup_add(l, d->cfg.self->id, near[i]->id, &near[i]->ep, near[i]->rec, near[i]->rec_len, 0);
  if (id) *id = l->info.id;
  lookup_step(d, l, now);
  return 0;
}

int pd_dht_lookup_start(pd_dht_t *d, const uint8_t target[PD_DHT_ID_LEN], int64_t now_ms,
                        uint64_t *id) {
  if (d->cfg.passive) return PD_EINVAL;
  return lookup_new(d, target, true, now_ms, id);
}

bool pd_dht_lookup_get(pd_dht_t *d, uint64_t id, pd_dht_lookup_info_t *out) {
  lookup_t *l = lookup_by_id(d, id);
  if (!l) return false;
  *out = l->info;
  out->results = l->res;
  out->target_rec = l->info.found ? &l->c[0].r : NULL;
  return true;
}

void pd_dht_lookup_release(pd_dht_t *d, uint64_t id) {
  for (size_t i = 0; i < PD_DHT_MAX_LOOKUPS; i++)
    if (d->lk[i] && d->lk[i]->info.id == id && d->lk[i]->info.done) {
      free(d->lk[i]);
      d->lk[i] = NULL;
    }
}

/* ---- requests ---- */

static req_t *find_req(pd_dht_t *d, uint64_t rid, const uint8_t id[PD_DHT_ID_LEN],
                       const pd_netaddr_t *ep) {
  if (rid == 0) return NULL;
  for (size_t i = 0; i < req_cap(d); i++) {
    req_t *r = req_at(d, i);
    if (r->used && r->rid == rid && memcmp(r->id, id, PD_DHT_ID_LEN) == 0 && ep_eq(&r->ep, ep))
      return r;
  }
  return NULL;
}

/* A request ended: answered (ok) or timed out. */
static void req_done(pd_dht_t *d, req_t *r, bool ok, int64_t now) {
  uint8_t id[PD_DHT_ID_LEN];
  memcpy(id, r->id, sizeof id);
  uint8_t purpose = r->purpose;
  uint64_t lookup = r->lookup;
  req_free(d, r);
  if (!ok) d->st.timeouts++;
  switch (purpose) {
  case RQ_REVALIDATE:
  case RQ_EVICT:
    table_ping_done(d, id, ok, now);
    break;
  case RQ_LOOKUP:
    lookup_answered(d, lookup, id, ok, now);
    break;
  default:
    break;
  }
}

/* ---- the discovery loop and timers ---- */

int pd_dht_add_node(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN], const pd_netaddr_t *ep,
                    const uint8_t *rec, size_t rec_len, int64_t now_ms) {
  if (d->cfg.passive || memcmp(id, d->cfg.self->id, PD_DHT_ID_LEN) == 0) return PD_EINVAL;
  if (rec && (rec_len < PD_DHT_RECORD_MIN || rec_len > PD_DHT_RECORD_MAX)) return PD_EINVAL;
  const pd_dht_entry_t *e = pd_dht_table_find(d->table, id);
  if (e && ep_eq(&e->ep, ep)) return PD_EEXIST;
  for (size_t i = 0; i < req_cap(d); i++)
    if (req_at(d, i)->used && req_at(d, i)->purpose == RQ_CONTACT &&
        memcmp(req_at(d, i)->id, id, PD_DHT_ID_LEN) == 0 && ep_eq(&req_at(d, i)->ep, ep))
      return PD_EEXIST;
  req_t *r = NULL;
  int rc = send_ping(d, id, ep, RQ_CONTACT, now_ms, &r);
  if (rc != 0) return rc;
  if (rec) {
    r->rec = malloc(rec_len);
    if (r->rec) {
      memcpy(r->rec, rec, rec_len);
      r->rec_len = (uint16_t)rec_len;
    }
  }
  return 0;
}

void pd_dht_on_tick(pd_dht_t *d, int64_t now) {
  for (size_t i = 0; i < req_cap(d) && d->nreq; i++) {
    req_t *r = req_at(d, i);
    if (!r->used || r->deadline > now) continue;
    /* A NODES answer cut short still counts as an answer. */
    req_done(d, r, r->any, now);
  }
  if (now >= d->next_reval) {
    d->next_reval = now + d->cfg.revalidate_ms;
    const pd_dht_entry_t *e = pd_dht_table_revalidate_pick(d->table, d->rng);
    if (e && send_ping(d, e->id, &e->ep, RQ_REVALIDATE, now, NULL) != 0)
      pd_dht_table_ping_result(d->table, e->id, true, now, d->cfg.admit, d->cfg.admit_ctx);
  }
  if (now >= d->next_loop) {
    bool fast = d->cfg.want_more && d->cfg.want_more(d->cfg.want_ctx);
    int64_t gap = fast ? d->cfg.lookup_fast_ms : d->cfg.lookup_slow_ms;
    if (gap <= 0) gap = fast ? d->cfg.lookup_slow_ms : d->cfg.lookup_fast_ms; /* the one that is on */
    d->next_loop = gap > 0 ? now + gap : INT64_MAX;
    if (d->loop_lookup == 0 && pd_dht_table_size(d->table) > 0) {
      uint8_t target[PD_DHT_ID_LEN];
      /* The first lookup is for our own id (Kademlia's join), then random. */
      if (d->st.lookups_started == 0)
        memcpy(target, d->cfg.self->id, sizeof target);
      else
        pd_rng_fill(d->rng, target, sizeof target);
      uint64_t id = 0;
      if (lookup_new(d, target, false, now, &id) == 0 && lookup_by_id(d, id)) d->loop_lookup = id;
    } else if (pd_dht_table_size(d->table) == 0 && gap > 0) {
      d->next_loop = now + (gap < 2000 ? gap : 2000); /* nothing to ask yet: look again soon */
    }
  }
  if (now >= d->next_expire) {
    d->next_expire = now + 60000;
    pd_dht_sessions_expire(d->sessions, now);
  }
  size_t w = 0;
  for (size_t i = 0; i < d->nch; i++)
    if (now - d->ch[i].sent_ms < PD_DHT_CHALLENGE_TTL_MS) d->ch[w++] = d->ch[i];
  d->nch = w;
}

int64_t pd_dht_next_deadline_ms(const pd_dht_t *d) {
  int64_t t = d->next_reval;
  if (d->next_loop < t) t = d->next_loop;
  if (d->next_expire < t) t = d->next_expire;
  for (size_t i = 0, seen = 0; i < req_cap(d) && seen < d->nreq; i++) {
    const req_t *r = req_at(d, i);
    if (!r->used) continue;
    seen++;
    if (r->deadline < t) t = r->deadline;
  }
  for (size_t i = 0; i < d->nch; i++)
    if (d->ch[i].sent_ms + PD_DHT_CHALLENGE_TTL_MS < t) t = d->ch[i].sent_ms + PD_DHT_CHALLENGE_TTL_MS;
  return t;
}

/* ---- challenges (we are the responder) ---- */

static challenge_t *find_challenge(pd_dht_t *d, const uint8_t id[PD_DHT_ID_LEN],
                                   const pd_netaddr_t *ep) {
  for (size_t i = 0; i < d->nch; i++)
    if (memcmp(d->ch[i].id, id, PD_DHT_ID_LEN) == 0 && ep_eq(&d->ch[i].ep, ep)) return &d->ch[i];
  return NULL;
}

static int send_whoareyou(pd_dht_t *d, const pd_dht_packet_t *p, const pd_netaddr_t *from,
                          int64_t now) {
  for (size_t i = 0; i < d->nch; i++)
    if (ep_eq(&d->ch[i].ep, from) && now - d->ch[i].sent_ms < PD_DHT_CHALLENGE_GAP_MS)
      return reject(d, PD_DHT_R_THROTTLED);
  challenge_t *c = find_challenge(d, p->src_id, from);
  if (!c) {
    if (d->nch == PD_DHT_MAX_CHALLENGES) return reject(d, PD_DHT_R_THROTTLED);
    if (d->nch == d->chcap) {
      size_t cap = d->chcap ? d->chcap * 2 : 8;
      challenge_t *g = realloc(d->ch, cap * sizeof *g);
      if (!g) return reject(d, PD_DHT_R_THROTTLED);
      d->ch = g;
      d->chcap = cap;
    }
    c = &d->ch[d->nch++];
  }
  memcpy(c->id, p->src_id, PD_DHT_ID_LEN);
  c->ep = *from;
  c->sent_ms = now;
  uint8_t id_nonce[PD_DHT_ID_NONCE_LEN];
  secret(d, id_nonce, sizeof id_nonce);
  const pd_dht_entry_t *e = pd_dht_table_find(d->table, p->src_id);
  pd_dht_whoareyou_encode(c->bytes, p->nonce, d->cfg.self->id, id_nonce, d->cfg.self->pk,
                          e ? e->seq : 0);
  queue_send(d, from, c->bytes, PD_DHT_WHOAREYOU_LEN);
  return 0;
}

/* ---- messages ---- */

static void on_nodes(pd_dht_t *d, const pd_dht_msg_t *m, const uint8_t src[PD_DHT_ID_LEN],
                     const pd_netaddr_t *from, int64_t now) {
  req_t *r = find_req(d, m->request_id, src, from);
  if (!r || r->type != PD_DHT_FINDNODE) {
    reject(d, PD_DHT_R_UNSOLICITED);
    return;
  }
  if (!r->any) r->total = m->total;
  r->any = true;
  r->got++;
  uint8_t hop = 1;
  lookup_t *l = r->purpose == RQ_LOOKUP ? lookup_by_id(d, r->lookup) : NULL;
  if (l) {
    for (size_t i = 0; i < l->n; i++)
      if (memcmp(l->c[i].r.id, src, PD_DHT_ID_LEN) == 0) hop = (uint8_t)(l->c[i].r.hop + 1);
  }
  for (size_t i = 0; i < m->nrec && r->nrec < PD_DHT_MAX_NODES; i++) {
    /* a record this lookup holds already, byte for byte, was verified,
     * found and added when it first came: the lookup's other responders
     * return the same ones */
    if (l && lookup_holds(l, m->rec[i].bytes, m->rec[i].len)) {
      r->nrec++;
      continue;
    }
    pd_record_t rec;
    if (!verify_record(d, m->rec[i].bytes, m->rec[i].len, &rec)) {
      reject(d, PD_DHT_R_RECORD);
      continue;
    }
    unsigned ld = pd_dht_logdist(rec.id, src);
    bool asked = false;
    for (size_t j = 0; j < r->ndist; j++)
      if (r->dist[j] == ld) asked = true;
    if (!asked) {
      reject(d, PD_DHT_R_DISTANCE);
      continue;
    }
    r->nrec++;
    if (memcmp(rec.id, d->cfg.self->id, PD_DHT_ID_LEN) == 0) continue;
    found(d, m->rec[i].bytes, m->rec[i].len, &rec, from, now);
    pd_netaddr_t rep;
    bool has_ep = pd_dht_record_endpoint(&rec, &rep);
    if (ld == 0 && has_ep && ep_eq(&rep, from))
      table_insert(d, &rec, m->rec[i].bytes, m->rec[i].len, from, now);
    if (l && has_ep)
      lookup_add(l, d->cfg.self->id, rec.id, &rep, m->rec[i].bytes, m->rec[i].len, hop);
  }
  if (r->got >= r->total || r->nrec >= PD_DHT_MAX_NODES) req_done(d, r, true, now);
}

static void on_pong(pd_dht_t *d, const pd_dht_msg_t *m, const uint8_t src[PD_DHT_ID_LEN],
                    const pd_netaddr_t *from, int64_t now) {
  req_t *r = find_req(d, m->request_id, src, from);
  if (!r || r->type != PD_DHT_PING) {
    reject(d, PD_DHT_R_UNSOLICITED);
    return;
  }
  d->st.has_observed = true;
  d->st.observed = m->observed;
  uint8_t purpose = r->purpose;
  const pd_dht_entry_t *e = pd_dht_table_find(d->table, src);
  bool fetch = false;
  if (purpose == RQ_CONTACT) {
    pd_record_t rec;
    if (r->rec && pd_record_peek_seq(r->rec, r->rec_len) >= m->record_seq &&
        verify_record(d, r->rec, r->rec_len, &rec) &&
        memcmp(rec.id, src, PD_DHT_ID_LEN) == 0 && record_at(&rec, from))
      table_insert(d, &rec, r->rec, r->rec_len, from, now);
    else
      fetch = true;
  } else if (e && m->record_seq > e->seq) {
    fetch = true;
  }
  req_done(d, r, true, now);
  if (fetch) {
    uint8_t zero = 0;
    send_findnode(d, src, from, &zero, 1, RQ_FETCH, 0, now);
  }
}

static void on_findnode(pd_dht_t *d, const pd_dht_msg_t *m, const uint8_t src[PD_DHT_ID_LEN],
                        const pd_netaddr_t *from, int64_t now) {
  const uint8_t *recs[PD_DHT_MAX_NODES];
  uint16_t lens[PD_DHT_MAX_NODES];
  size_t n = 0;
  for (size_t i = 0; i < m->ndist && n < d->cfg.k; i++) {
    if (m->dist[i] == 0) {
      if (d->my_rec_len) {
        recs[n] = d->my_rec;
        lens[n++] = (uint16_t)d->my_rec_len;
      }
      continue;
    }
    size_t bn = 0;
    const pd_dht_entry_t *b = pd_dht_table_bucket(d->table, m->dist[i], &bn);
    for (size_t j = 0; j < bn && n < d->cfg.k; j++) {
      if (memcmp(b[j].id, src, PD_DHT_ID_LEN) == 0) continue; /* not the asker itself */
      recs[n] = b[j].rec;
      lens[n++] = b[j].rec_len;
    }
  }
  uint8_t per[PD_DHT_MAX_TOTAL];
  int np = pd_dht_nodes_split(lens, n, per);
  if (np <= 0) return;
  size_t at = 0;
  for (int p = 0; p < np; p++) {
    pd_dht_msg_t out;
    memset(&out, 0, sizeof out);
    out.type = PD_DHT_NODES;
    out.request_id = m->request_id;
    out.total = (uint8_t)np;
    out.nrec = per[p];
    for (size_t j = 0; j < per[p]; j++) {
      out.rec[j].bytes = recs[at + j];
      out.rec[j].len = lens[at + j];
    }
    at += per[p];
    uint8_t buf[PD_DHT_MAX_MSG];
    size_t len = 0;
    if (pd_dht_msg_encode(&out, buf, sizeof buf, &len) != 0) return;
    if (send_sealed(d, src, from, buf, len, NULL, now) != 0) return;
  }
}

static void on_ping(pd_dht_t *d, const pd_dht_msg_t *m, const uint8_t src[PD_DHT_ID_LEN],
                    const pd_netaddr_t *from, int64_t now) {
  pd_dht_msg_t out;
  memset(&out, 0, sizeof out);
  out.type = PD_DHT_PONG;
  out.request_id = m->request_id;
  out.record_seq = d->my_seq;
  out.observed = *from;
  uint8_t buf[64];
  size_t len = 0;
  if (pd_dht_msg_encode(&out, buf, sizeof buf, &len) == 0) send_sealed(d, src, from, buf, len, NULL, now);
  const pd_dht_entry_t *e = pd_dht_table_find(d->table, src);
  if (e && m->record_seq > e->seq) {
    uint8_t zero = 0;
    send_findnode(d, src, from, &zero, 1, RQ_FETCH, 0, now);
  }
}

static int on_message(pd_dht_t *d, const uint8_t *plain, size_t len,
                      const uint8_t src[PD_DHT_ID_LEN], const pd_netaddr_t *from, int64_t now) {
  pd_dht_msg_t m;
  pd_dhtwire_reason_t why = pd_dht_msg_decode(plain, len, &m);
  if (why != PD_DHTW_OK) return reject(d, (int)why);
  if (m.type >= 1 && m.type <= 4) d->st.msgs_in[m.type]++;
  switch (m.type) {
  case PD_DHT_PING: on_ping(d, &m, src, from, now); break;
  case PD_DHT_PONG: on_pong(d, &m, src, from, now); break;
  case PD_DHT_FINDNODE: on_findnode(d, &m, src, from, now); break;
  case PD_DHT_NODES: on_nodes(d, &m, src, from, now); break;
  default: break;
  }
  return 0;
}

/* ---- packets in ---- */

static int on_whoareyou(pd_dht_t *d, const pd_dht_packet_t *p, const uint8_t *raw,
                        const pd_netaddr_t *from, int64_t now) {
  req_t *r = NULL;
  for (size_t i = 0; i < req_cap(d); i++) {
    req_t *q = req_at(d, i);
    if (q->used && !q->handshaken && memcmp(q->nonce, p->nonce, PD_DHT_NONCE_LEN) == 0 &&
        memcmp(q->id, p->src_id, PD_DHT_ID_LEN) == 0 && ep_eq(&q->ep, from)) {
      r = q;
      break;
    }
  }
  if (!r) return reject(d, PD_DHT_R_UNSOLICITED);
  uint8_t seed[32];
  secret(d, seed, sizeof seed);
  pd_dht_session_t s;
  uint8_t pkt[PD_DHT_MAX_PACKET];
  size_t n = 0;
  int rc = pd_dht_handshake_initiate(&d->crypto, raw, p, from, seed, d->my_rec_len ? d->my_rec : NULL,
                                     d->my_rec_len, d->my_seq, r->msg, r->msg_len, &s, pkt,
                                     sizeof pkt, &n, now);
  if (rc != 0) {
    d->st.handshakes_failed++;
    return reject(d, PD_DHT_R_ID);
  }
  int ev = 0;
  if (!pd_dht_sessions_put(d->sessions, &s, &ev)) return 0;
  if (ev) d->st.sessions_evicted++;
  r->handshaken = true;
  memcpy(r->nonce, pkt + 6, PD_DHT_NONCE_LEN);
  queue_send(d, from, pkt, n);
  d->st.handshakes_ok++;
  return 0;
}

static int on_handshake(pd_dht_t *d, const pd_dht_packet_t *p, const pd_netaddr_t *from,
                        int64_t now) {
  challenge_t *c = find_challenge(d, p->src_id, from);
  if (!c) return reject(d, PD_DHT_R_UNSOLICITED);
  pd_record_t rec;
  bool has_rec = false;
  if (p->record_len) {
    if (!verify_record(d, p->record, p->record_len, &rec) ||
        memcmp(rec.id, p->src_id, PD_DHT_ID_LEN) != 0) {
      d->st.handshakes_failed++;
      return reject(d, PD_DHT_R_RECORD);
    }
    has_rec = true;
  }
  pd_dht_session_t s;
  uint8_t plain[PD_DHT_MAX_MSG];
  size_t len = 0;
  int rc = pd_dht_handshake_accept(&d->crypto, c->bytes, p, from, &s, plain, sizeof plain, &len, now);
  if (rc != 0) {
    d->st.handshakes_failed++;
    return reject(d, rc == PD_ENOENT ? PD_DHT_R_ID : rc == PD_EINVAL ? PD_DHT_R_SIGNATURE
                                                                       : PD_DHT_R_DECRYPT);
  }
  /* The challenge is spent: a replayed HANDSHAKE is unsolicited. */
  *c = d->ch[--d->nch];
  int ev = 0;
  if (!pd_dht_sessions_put(d->sessions, &s, &ev)) return 0;
  if (ev) d->st.sessions_evicted++;
  d->st.handshakes_ok++;
  if (has_rec) {
    found(d, p->record, p->record_len, &rec, from, now);
    if (record_at(&rec, from))
      table_insert(d, &rec, p->record, p->record_len, from, now);
  }
  uint8_t src[PD_DHT_ID_LEN];
  memcpy(src, p->src_id, sizeof src);
  return on_message(d, plain, len, src, from, now);
}

int pd_dht_on_packet(pd_dht_t *d, const pd_netaddr_t *from, const uint8_t *buf, size_t len,
                     int64_t now) {
  d->st.bytes_in += len;
  pd_dht_packet_t p;
  pd_dhtwire_reason_t why = pd_dht_packet_decode(buf, len, &p);
  if (why != PD_DHTW_OK) return reject(d, (int)why);
  d->st.packets_in[p.kind]++;
  if (memcmp(p.src_id, d->cfg.self->id, PD_DHT_ID_LEN) == 0) return reject(d, PD_DHT_R_ID);
  switch (p.kind) {
  case PD_DHT_WHOAREYOU:
    return on_whoareyou(d, &p, buf, from, now);
  case PD_DHT_HANDSHAKE:
    return on_handshake(d, &p, from, now);
  default: {
    pd_dht_session_t *s = pd_dht_sessions_find(d->sessions, p.src_id, from);
    if (!s) return send_whoareyou(d, &p, from, now);
    uint8_t plain[PD_DHT_MAX_MSG];
    size_t n = 0;
    int rc = pd_dht_open_message(s, &d->crypto, &p, plain, sizeof plain, &n, now);
    if (rc == PD_EEXIST) return reject(d, PD_DHT_R_REPLAY);
    if (rc != 0) return send_whoareyou(d, &p, from, now);
    uint8_t src[PD_DHT_ID_LEN];
    memcpy(src, p.src_id, sizeof src);
    return on_message(d, plain, n, src, from, now);
  }
  }
}
