/* Unit tests for the DHT engine (dht.c) over an in-memory datagram network
 * with real crypto (ed25519, X25519, ChaCha20-Poly1305): the handshake from
 * a bare ID@endpoint, both tables filled, tampered / replayed / spoofed /
 * unsolicited packets refused with their reasons, the amplification bound
 * towards an unverified endpoint, FINDNODE distance rules, and lookups on 64
 * nodes that return the true k closest and find a node by id. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "dht.h"
#include "err.h"
#include "identity.h"
#include "netaddr.h"
#include "record.h"
#include "rng.h"

#define T0 1700000000000LL
#define MAXN 64
#define MAXQ 20000
#define LAT 5 /* ms per datagram */

typedef struct pkt {
  int64_t at;
  pd_netaddr_t from, to;
  size_t len;
  uint8_t b[PD_DHT_MAX_PACKET];
} pkt_t;

typedef struct net {
  size_t n;
  pd_identity_t id[MAXN];
  pd_netaddr_t ep[MAXN];
  uint8_t rec[MAXN][PD_RECORD_MAX];
  size_t rec_len[MAXN];
  pd_rng_t rng[MAXN];
  pd_dht_t *d[MAXN];
  pkt_t *q;     /* in flight, unordered; delivered by time */
  size_t nq;
  int64_t now;
  /* a tap: every packet sent, for the tamper and replay tests */
  pkt_t *tap;
  size_t ntap;
  /* packets that were sent to an address no node has */
  size_t lost;
  size_t found_calls;
  int64_t due[MAXN]; /* each node's next deadline, refreshed when it is called */
} net_t;

static void ep_of(unsigned i, pd_netaddr_t *a) {
  char txt[64];
  snprintf(txt, sizeof txt, "10.%u.%u.%u:%u", i / 200, (i * 7) % 200, 1 + i % 250, 7000 + i);
  assert_int_equal(pd_netaddr_parse(txt, 0, a, NULL, NULL, NULL), 0);
}

static void on_found(void *ctx, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                     const pd_netaddr_t *from, int64_t now) {
  (void)bytes, (void)len, (void)rec, (void)from, (void)now;
  ((net_t *)ctx)->found_calls++;
}

static void net_init(net_t *w, size_t n, const pd_dht_config_t *tmpl) {
  memset(w, 0, sizeof *w);
  w->n = n;
  w->now = T0;
  w->q = calloc(MAXQ, sizeof *w->q);
  w->tap = calloc(MAXQ, sizeof *w->tap);
  assert_non_null(w->q);
  assert_non_null(w->tap);
  for (unsigned i = 0; i < n; i++) {
    uint8_t seed[32] = {0};
    seed[0] = (uint8_t)i;
    seed[1] = (uint8_t)(i >> 8);
    seed[2] = 0x5a;
    assert_int_equal(pd_identity_from_seed(&w->id[i], seed), 0);
    ep_of(i, &w->ep[i]);
    pd_record_t r;
    assert_int_equal(pd_record_init(&r, "peerd", 1 + i, NULL), 0);
    r.has_discovery = true;
    r.discovery = w->ep[i];
    assert_int_equal(pd_record_sign(&r, &w->id[i], NULL, w->rec[i], sizeof w->rec[i], &w->rec_len[i]), 0);
    pd_rng_seed(&w->rng[i], 1000 + i);
    pd_dht_config_t c;
    if (tmpl)
      c = *tmpl;
    else
      memset(&c, 0, sizeof c);
    c.self = &w->id[i];
    c.network = "peerd";
    c.found = on_found;
    c.found_ctx = w;
    w->d[i] = pd_dht_new(&c, &w->rng[i], w->now);
    assert_non_null(w->d[i]);
    assert_int_equal(pd_dht_set_record(w->d[i], w->rec[i], w->rec_len[i]), 0);
    w->due[i] = pd_dht_next_deadline_ms(w->d[i]);
  }
}

static void net_free(net_t *w) {
  for (size_t i = 0; i < w->n; i++) {
    pd_dht_free(w->d[i]);
    pd_identity_wipe(&w->id[i]);
  }
  free(w->q);
  free(w->tap);
}

static int node_at(const net_t *w, const pd_netaddr_t *a) {
  for (size_t i = 0; i < w->n; i++)
    if (w->ep[i].port == a->port && memcmp(w->ep[i].ip, a->ip, 16) == 0) return (int)i;
  return -1;
}

/* Move node i's actions into the network queue. */
static void drain(net_t *w, size_t i) {
  w->due[i] = pd_dht_next_deadline_ms(w->d[i]);
  pd_dht_action_t a;
  while (pd_dht_poll(w->d[i], &a)) {
    if (a.kind != PD_DHT_A_SEND) continue;
    assert_true(a.len <= PD_DHT_MAX_PACKET);
    assert_true(w->nq < MAXQ);
    pkt_t *p = &w->q[w->nq++];
    p->at = w->now + LAT;
    p->from = w->ep[i];
    p->to = a.to;
    p->len = a.len;
    memcpy(p->b, a.bytes, a.len);
    if (w->ntap < MAXQ) w->tap[w->ntap++] = *p;
  }
}

/* Run the network until `until` (virtual ms): deliver due packets in time
 * order, tick nodes at their deadlines. Bounded by the queue's size. */
static void run(net_t *w, int64_t until) {
  for (int guard = 0; guard < 2000000; guard++) {
    int64_t next = until;
    size_t best = SIZE_MAX;
    for (size_t k = 0; k < w->nq; k++)
      if (w->q[k].at <= next) {
        next = w->q[k].at;
        best = k;
      }
    for (size_t i = 0; i < w->n; i++) {
      int64_t t = w->due[i];
      if (t < next) {
        next = t;
        best = SIZE_MAX;
      }
    }
    if (next >= until && best == SIZE_MAX) {
      w->now = until;
      return;
    }
    if (next > w->now) w->now = next;
    if (best != SIZE_MAX) {
      pkt_t p = w->q[best];
      w->q[best] = w->q[--w->nq];
      int to = node_at(w, &p.to);
      if (to < 0) {
        w->lost++;
        continue;
      }
      pd_dht_on_packet(w->d[to], &p.from, p.b, p.len, w->now);
      drain(w, (size_t)to);
    } else {
      for (size_t i = 0; i < w->n; i++)
        if (w->due[i] <= w->now) {
          pd_dht_on_tick(w->d[i], w->now);
          drain(w, i);
        }
    }
  }
  fail_msg("network did not settle");
}

static pd_dht_config_t quiet(void) {
  pd_dht_config_t c;
  memset(&c, 0, sizeof c);
  c.revalidate_ms = -1;
  c.lookup_fast_ms = -1;
  c.lookup_slow_ms = -1;
  return c;
}

static void test_handshake_fills_both_tables(void **state) {
  (void)state;
  net_t w;
  pd_dht_config_t c = quiet();
  net_init(&w, 2, &c);
  /* A knows only B's id and endpoint (an ID@host:port bootnode). */
  assert_int_equal(pd_dht_add_node(w.d[0], w.id[1].id, &w.ep[1], NULL, 0, w.now), 0);
  assert_int_equal(pd_dht_add_node(w.d[0], w.id[1].id, &w.ep[1], NULL, 0, w.now), PD_EEXIST);
  drain(&w, 0);
  run(&w, w.now + 2000);
  assert_non_null(pd_dht_table_find(pd_dht_table(w.d[0]), w.id[1].id));
  assert_non_null(pd_dht_table_find(pd_dht_table(w.d[1]), w.id[0].id));
  const pd_dht_stats_t *a = pd_dht_stats(w.d[0]), *b = pd_dht_stats(w.d[1]);
  assert_int_equal(a->handshakes_ok, 1);
  assert_int_equal(b->handshakes_ok, 1);
  assert_int_equal(b->packets_out[PD_DHT_WHOAREYOU], 1);
  assert_int_equal(a->packets_out[PD_DHT_HANDSHAKE], 1);
  /* PING, then FINDNODE [0] for the record A did not have. */
  assert_int_equal(a->msgs_out[PD_DHT_PING], 1);
  assert_int_equal(a->msgs_out[PD_DHT_FINDNODE], 1);
  assert_int_equal(b->msgs_out[PD_DHT_NODES], 1);
  assert_true(a->has_observed);
  assert_int_equal(a->observed.port, w.ep[0].port);
  assert_int_equal(a->timeouts, 0);
  for (int r = 0; r < PD_DHT_R_COUNT; r++) {
    assert_int_equal(a->rejected[r], 0);
    assert_int_equal(b->rejected[r], 0);
  }
  /* Records heard: B's record by A (NODES) and A's by B (handshake). */
  assert_int_equal(w.found_calls, 2);
  assert_int_equal(pd_dht_sessions(w.d[0]), 1);
  assert_int_equal(pd_dht_requests_out(w.d[0]), 0);
  net_free(&w);
}

/* The index in the tap of the first packet of that kind sent by node i. */
static size_t tapped(const net_t *w, size_t i, int kind, size_t from) {
  for (size_t k = from; k < w->ntap; k++)
    if (node_at(w, &w->tap[k].from) == (int)i && w->tap[k].b[5] == kind) return k;
  fail_msg("no such packet in the tap");
  return 0;
}

/* Run the exchange 0 -> 1 but hold A's HANDSHAKE; return it. */
static void held_handshake(net_t *w, pkt_t *hs) {
  pd_dht_config_t c = quiet();
  net_init(w, 2, &c);
  assert_int_equal(pd_dht_add_node(w->d[0], w->id[1].id, &w->ep[1], NULL, 0, w->now), 0);
  drain(w, 0);
  /* deliver the random MESSAGE, then the WHOAREYOU, by hand */
  for (int step = 0; step < 2; step++) {
    assert_int_equal(w->nq, 1);
    pkt_t p = w->q[0];
    w->nq = 0;
    int to = node_at(w, &p.to);
    pd_dht_on_packet(w->d[to], &p.from, p.b, p.len, w->now);
    drain(w, (size_t)to);
  }
  assert_int_equal(w->nq, 1);
  *hs = w->q[0];
  assert_int_equal(hs->b[5], PD_DHT_HANDSHAKE);
  w->nq = 0;
}

static void test_tampered_handshake(void **state) {
  (void)state;
  struct { size_t off; int reason; } cases[] = {
      {PD_DHT_HEADER_LEN + 32 + 5, PD_DHT_R_ID},           /* pubkey: does not hash to src_id */
      {PD_DHT_HEADER_LEN + 64 + 10, PD_DHT_R_SIGNATURE},   /* id signature */
      {PD_DHT_HEADER_LEN + 3, PD_DHT_R_SIGNATURE},         /* ephemeral key (signed) */
      {PD_DHT_HANDSHAKE_FIXED + 40, PD_DHT_R_RECORD},      /* the record */
      {(size_t)-1, PD_DHT_R_DECRYPT},                      /* last byte: the tag */
  };
  for (size_t k = 0; k < sizeof cases / sizeof cases[0]; k++) {
    net_t w;
    pkt_t hs;
    held_handshake(&w, &hs);
    size_t off = cases[k].off == (size_t)-1 ? hs.len - 1 : cases[k].off;
    hs.b[off] ^= 0x01;
    int rc = pd_dht_on_packet(w.d[1], &hs.from, hs.b, hs.len, w.now);
    assert_int_equal(rc, cases[k].reason);
    assert_int_equal(pd_dht_stats(w.d[1])->rejected[cases[k].reason], 1);
    assert_int_equal(pd_dht_sessions(w.d[1]), 0);
    /* the untouched packet still works: nothing was lost */
    hs.b[off] ^= 0x01;
    assert_int_equal(pd_dht_on_packet(w.d[1], &hs.from, hs.b, hs.len, w.now), 0);
    assert_int_equal(pd_dht_sessions(w.d[1]), 1);
    net_free(&w);
  }
}

static void test_replay_and_spoof(void **state) {
  (void)state;
  net_t w;
  pkt_t hs;
  held_handshake(&w, &hs);
  assert_int_equal(pd_dht_on_packet(w.d[1], &hs.from, hs.b, hs.len, w.now), 0);
  /* replayed HANDSHAKE: its challenge is spent */
  assert_int_equal(pd_dht_on_packet(w.d[1], &hs.from, hs.b, hs.len, w.now), PD_DHT_R_UNSOLICITED);
  drain(&w, 1);
  run(&w, w.now + 2000);
  assert_non_null(pd_dht_table_find(pd_dht_table(w.d[0]), w.id[1].id));
  /* A's FINDNODE [0] went as a sealed MESSAGE: replay it */
  size_t m = tapped(&w, 0, PD_DHT_MESSAGE, 1);
  pkt_t msg = w.tap[m];
  uint64_t nodes_before = pd_dht_stats(w.d[1])->msgs_out[PD_DHT_NODES];
  assert_int_equal(pd_dht_on_packet(w.d[1], &msg.from, msg.b, msg.len, w.now), PD_DHT_R_REPLAY);
  assert_int_equal(pd_dht_stats(w.d[1])->msgs_out[PD_DHT_NODES], nodes_before);
  /* the same packet from a spoofed source: no session there, a 94-byte
   * challenge goes to the spoofed address and nothing else */
  pd_netaddr_t spoof;
  ep_of(50, &spoof);
  size_t before = pd_dht_stats(w.d[1])->bytes_out;
  assert_int_equal(pd_dht_on_packet(w.d[1], &spoof, msg.b, msg.len, w.now), 0);
  assert_int_equal(pd_dht_stats(w.d[1])->bytes_out - before, PD_DHT_WHOAREYOU_LEN);
  /* a second one within a second: throttled, nothing sent */
  assert_int_equal(pd_dht_on_packet(w.d[1], &spoof, msg.b, msg.len, w.now), PD_DHT_R_THROTTLED);
  assert_int_equal(pd_dht_stats(w.d[1])->bytes_out - before, PD_DHT_WHOAREYOU_LEN);
  /* a WHOAREYOU nobody asked for */
  size_t wy = tapped(&w, 1, PD_DHT_WHOAREYOU, 0);
  assert_int_equal(pd_dht_on_packet(w.d[0], &w.ep[1], w.tap[wy].b, w.tap[wy].len, w.now),
                   PD_DHT_R_UNSOLICITED);
  /* a tampered sealed MESSAGE does not open: challenged, not answered */
  msg = w.tap[m];
  msg.b[msg.len - 3] ^= 0x40;
  before = pd_dht_stats(w.d[1])->msgs_out[PD_DHT_NODES];
  w.now += PD_DHT_CHALLENGE_GAP_MS;
  assert_int_equal(pd_dht_on_packet(w.d[1], &msg.from, msg.b, msg.len, w.now), 0);
  assert_int_equal(pd_dht_stats(w.d[1])->msgs_out[PD_DHT_NODES], before);
  net_free(&w);
}

/* From one unverified address, bytes out never exceed 1.5x bytes in. */
static void test_amplification_bound(void **state) {
  (void)state;
  net_t w;
  pd_dht_config_t c = quiet();
  net_init(&w, 1, &c);
  pd_rng_t r;
  pd_rng_seed(&r, 9);
  pd_netaddr_t att;
  ep_of(33, &att);
  uint64_t in = 0;
  for (int i = 0; i < 3000; i++) {
    uint8_t b[PD_DHT_MAX_PACKET];
    size_t len = PD_DHT_MIN_PACKET + pd_rng_range(&r, 200);
    pd_rng_fill(&r, b, len);
    memcpy(b, PD_DHT_MAGIC, 4);
    b[4] = PD_DHT_VERSION;
    b[5] = (uint8_t)pd_rng_range(&r, 3);
    if (i % 2) b[5] = PD_DHT_MESSAGE;
    if (b[5] == PD_DHT_WHOAREYOU) len = PD_DHT_WHOAREYOU_LEN;
    in += len;
    pd_dht_on_packet(w.d[0], &att, b, len, w.now);
    w.now += 100;
    pd_dht_on_tick(w.d[0], w.now);
  }
  uint64_t out = 0;
  pd_dht_action_t a;
  while (pd_dht_poll(w.d[0], &a)) {
    assert_int_equal(a.kind, PD_DHT_A_SEND);
    assert_int_equal(a.len, PD_DHT_WHOAREYOU_LEN);
    out += a.len;
  }
  assert_true(out > 0);
  assert_true(out * 2 <= in * 3);
  assert_int_equal(pd_dht_sessions(w.d[0]), 0);
  net_free(&w);
}

static const uint8_t *sort_target;
static int cmp_ids(const void *a, const void *b) {
  return pd_dht_distcmp(sort_target, *(const uint8_t *const *)a, *(const uint8_t *const *)b);
}

static void test_lookups_converge(void **state) {
  (void)state;
  net_t w;
  pd_dht_config_t c;
  memset(&c, 0, sizeof c);
  c.lookup_fast_ms = 2000;
  c.lookup_slow_ms = 10000;
  /* under valgrind (~30x slower) half the nodes and half the warm-up */
  bool thin = getenv("PEERD_UNDER_VALGRIND") != NULL;
  net_init(&w, thin ? MAXN / 2 : MAXN, &c);
  /* every node knows node 0 only */
  for (size_t i = 1; i < w.n; i++) {
    assert_int_equal(pd_dht_add_node(w.d[i], w.id[0].id, &w.ep[0], w.rec[0], w.rec_len[0], w.now), 0);
    drain(&w, i);
    w.now += 3;
  }
  run(&w, w.now + (thin ? 30000 : 60000));
  size_t total = 0;
  for (size_t i = 0; i < w.n; i++) {
    assert_int_equal(pd_dht_table_check(pd_dht_table(w.d[i])), 0);
    total += pd_dht_table_size(pd_dht_table(w.d[i]));
  }
  assert_true(total > w.n * 8); /* tables are not stuck at the bootnode */
  /* node 5 looks up node 40: found, and the results are the true closest */
  for (unsigned trial = 0; trial < 4; trial++) {
    size_t asker = (5 + trial * 13) % w.n, target = (40 + trial * 7) % w.n;
    if (asker == target) target = (target + 1) % w.n;
    uint64_t id = 0;
    assert_int_equal(pd_dht_lookup_start(w.d[asker], w.id[target].id, w.now, &id), 0);
    drain(&w, asker);
    run(&w, w.now + 10000);
    pd_dht_lookup_info_t info;
    assert_true(pd_dht_lookup_get(w.d[asker], id, &info));
    assert_true(info.done);
    assert_true(info.found);
    assert_non_null(info.target_rec);
    assert_memory_equal(info.target_rec->id, w.id[target].id, PD_DHT_ID_LEN);
    assert_true(info.hops <= 4);
    /* brute force: the k closest ids to the target, excluding the asker */
    const uint8_t *ids[MAXN];
    size_t n = 0;
    for (size_t i = 0; i < w.n; i++)
      if (i != asker) ids[n++] = w.id[i].id;
    sort_target = w.id[target].id;
    qsort(ids, n, sizeof ids[0], cmp_ids);
    /* Log-distance FINDNODE over incomplete tables is not exact Kademlia:
     * the target first, and most of the true 16 closest. */
    assert_int_equal(info.nresults, PD_DHTT_K);
    assert_memory_equal(info.results[0].id, w.id[target].id, PD_DHT_ID_LEN);
    size_t overlap = 0;
    for (size_t i = 0; i < info.nresults; i++)
      for (size_t j = 0; j < PD_DHTT_K; j++)
        if (memcmp(info.results[i].id, ids[j], PD_DHT_ID_LEN) == 0) overlap++;
    print_message("lookup %u: %zu of the 16 closest, %u queries, %u hops\n", trial, overlap,
                  info.queries, info.hops);
    assert_true(overlap >= 12);
    pd_dht_lookup_release(w.d[asker], id);
    assert_false(pd_dht_lookup_get(w.d[asker], id, &info));
  }
  net_free(&w);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_handshake_fills_both_tables),
      cmocka_unit_test(test_tampered_handshake),
      cmocka_unit_test(test_replay_and_spoof),
      cmocka_unit_test(test_amplification_bound),
      cmocka_unit_test(test_lookups_converge),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
