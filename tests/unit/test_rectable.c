/* Unit tests for rectable: the sequence rules on put, lookup by id and by
 * service endpoint (and an endpoint that moves), the bound with the oldest
 * inserted dropped first, explicit removal, and a randomised run checked
 * against a plain model after every step. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "identity.h"
#include "intern.h"
#include "netaddr.h"
#include "record.h"
#include "rectable.h"
#include "rng.h"

#define NOW 1700000000

typedef struct signed_rec {
  pd_record_t rec;
  uint8_t bytes[PD_RECORD_MAX];
  size_t len;
} signed_rec_t;

static void ident(pd_identity_t *id, unsigned k) {
  uint8_t seed[32];
  memset(seed, 0, sizeof seed);
  memcpy(seed, &k, sizeof k);
  assert_int_equal(pd_identity_from_seed(id, seed), 0);
}

/* Node k's record at seq with its p2p service on 10.(k/250).(k%250).1:port. */
static void make(signed_rec_t *s, unsigned k, uint64_t seq, uint16_t port) {
  pd_identity_t id;
  ident(&id, k);
  assert_int_equal(pd_record_init(&s->rec, "peerd", seq, NULL), 0);
  pd_netaddr_t a;
  char txt[64];
  snprintf(txt, sizeof txt, "10.%u.%u.1:%u", k / 250, k % 250, port);
  assert_int_equal(pd_netaddr_parse(txt, 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_record_set_service(&s->rec, "p2p", &a, NULL), 0);
  assert_int_equal(pd_record_sign(&s->rec, &id, NULL, s->bytes, sizeof s->bytes, &s->len), 0);
}

static pd_rectable_t *table(size_t cap) {
  uint8_t key[PD_RECTABLE_KEY_LEN] = {7};
  pd_rectable_t *t = NULL;
  assert_int_equal(pd_rectable_create(&t, cap, key), 0);
  return t;
}

static void test_sequence_and_lookup(void **state) {
  (void)state;
  pd_rectable_t *t = table(16);
  signed_rec_t a1, a1b, a2, a0;
  make(&a1, 1, 10, 26656);
  make(&a1b, 1, 10, 26657); /* same seq, other content */
  make(&a2, 1, 11, 26700);  /* the node moved its port */
  make(&a0, 1, 9, 26656);
  assert_int_equal(pd_rectable_put(t, a1.bytes, a1.len, &a1.rec, NOW), PD_REC_NEW);
  assert_int_equal(pd_rectable_put(t, a1.bytes, a1.len, &a1.rec, NOW + 1), PD_REC_SAME);
  assert_int_equal(pd_rectable_put(t, a1b.bytes, a1b.len, &a1b.rec, NOW + 1), PD_REC_CONFLICT);
  assert_int_equal(pd_rectable_put(t, a0.bytes, a0.len, &a0.rec, NOW + 1), PD_REC_STALE);
  const pd_rec_t *r = pd_rectable_find(t, a1.rec.id);
  assert_non_null(r);
  assert_int_equal(r->seq, 10);
  assert_memory_equal(r->bytes, a1.bytes, a1.len);
  assert_ptr_equal(pd_rectable_find_service(t, &a1.rec.services[0].addr), r);
  assert_int_equal(pd_rectable_put(t, a2.bytes, a2.len, &a2.rec, NOW + 2), PD_REC_UPDATED);
  r = pd_rectable_find(t, a1.rec.id);
  assert_int_equal(r->seq, 11);
  assert_int_equal(r->updated, NOW + 2);
  assert_null(pd_rectable_find_service(t, &a1.rec.services[0].addr)); /* the old port is gone */
  assert_ptr_equal(pd_rectable_find_service(t, &a2.rec.services[0].addr), r);
  pd_record_t dec;
  assert_int_equal(pd_rec_decode(r, &dec), 0);
  assert_int_equal(dec.services[0].addr.port, 26700);
  assert_int_equal(pd_rectable_count(t), 1);
  assert_int_equal(pd_rectable_remove(t, a1.rec.id), 0);
  assert_int_equal(pd_rectable_remove(t, a1.rec.id), PD_ENOENT);
  assert_null(pd_rectable_find(t, a1.rec.id));
  assert_null(pd_rectable_find_service(t, &a2.rec.services[0].addr));
  assert_int_equal(pd_rectable_count(t), 0);
  pd_rectable_destroy(t);
}

static void test_bound_drops_oldest(void **state) {
  (void)state;
  pd_rectable_t *t = table(5);
  static signed_rec_t s[8];
  for (unsigned k = 0; k < 8; k++) {
    make(&s[k], 100 + k, 1, 26656);
    assert_int_equal(pd_rectable_put(t, s[k].bytes, s[k].len, &s[k].rec, NOW + k), PD_REC_NEW);
  }
  assert_int_equal(pd_rectable_count(t), 5);
  for (unsigned k = 0; k < 8; k++) {
    const pd_rec_t *r = pd_rectable_find(t, s[k].rec.id);
    if (k < 3) {
      assert_null(r);
      assert_null(pd_rectable_find_service(t, &s[k].rec.services[0].addr));
    } else {
      assert_non_null(r);
      assert_ptr_equal(pd_rectable_find_service(t, &s[k].rec.services[0].addr), r);
    }
  }
  /* insertion order is kept for saving */
  for (size_t i = 0; i < 5; i++) assert_memory_equal(pd_rectable_at(t, i)->id, s[3 + i].rec.id, 20);
  assert_null(pd_rectable_at(t, 5));
  assert_true(pd_rectable_memory(t) > 5 * s[0].len);
  pd_rectable_destroy(t);
}

/* Random puts (new, updates, stale), removes, against a model of what must
 * be findable; cap 300 over 600 nodes forces eviction and ring growth. */
static void test_random_against_model(void **state) {
  (void)state;
  enum { NODES = 600, CAP = 300, STEPS = 5000 };
  pd_rectable_t *t = table(CAP);
  static signed_rec_t cur[NODES];
  static uint64_t seq[NODES];
  static bool present[NODES];
  static uint64_t order[NODES]; /* insertion stamp of present nodes */
  uint64_t stamp = 0;
  pd_rng_t r;
  pd_rng_seed(&r, 99);
  for (int step = 0; step < STEPS; step++) {
    unsigned k = (unsigned)pd_rng_range(&r, NODES);
    unsigned op = (unsigned)pd_rng_range(&r, 10);
    if (op == 0 && present[k]) {
      assert_int_equal(pd_rectable_remove(t, cur[k].rec.id), 0);
      present[k] = false;
    } else {
      seq[k]++;
      make(&cur[k], k, seq[k], (uint16_t)(20000 + seq[k]));
      int rc = pd_rectable_put(t, cur[k].bytes, cur[k].len, &cur[k].rec, NOW + step);
      if (present[k]) {
        assert_int_equal(rc, PD_REC_UPDATED);
      } else {
        assert_int_equal(rc, PD_REC_NEW);
        /* the model evicts the oldest inserted when full */
        size_t n = 0;
        unsigned oldest = 0;
        for (unsigned j = 0; j < NODES; j++) {
          if (!present[j]) continue;
          if (n == 0 || order[j] < order[oldest]) oldest = j;
          n++;
        }
        if (n == CAP) present[oldest] = false;
        present[k] = true;
        order[k] = stamp++;
      }
    }
    if (step % 97 == 0 || step == STEPS - 1) {
      size_t n = 0;
      for (unsigned j = 0; j < NODES; j++) {
        const pd_rec_t *f = pd_rectable_find(t, cur[j].rec.id);
        if (!present[j]) {
          assert_null(f);
          continue;
        }
        n++;
        assert_non_null(f);
        assert_int_equal(f->seq, seq[j]);
        assert_ptr_equal(pd_rectable_find_service(t, &cur[j].rec.services[0].addr), f);
      }
      assert_int_equal(pd_rectable_count(t), n);
    }
  }
  pd_rectable_destroy(t);
}

/* Tables that share one store (the lab's hosts) keep a record every one of
 * them holds once: the same bytes pointer, one reference per table; an
 * update or a removal in one table leaves the others' records as they
 * were, and the last reference frees the copy. */
static void test_shared_store(void **state) {
  (void)state;
  uint8_t k[PD_INTERN_KEY_LEN] = {3};
  pd_intern_t *store = NULL;
  assert_int_equal(pd_intern_create(&store, k), 0);
  uint8_t key[PD_RECTABLE_KEY_LEN] = {7};
  pd_rectable_t *t1 = NULL, *t2 = NULL;
  assert_int_equal(pd_rectable_create_shared(&t1, 16, key, store), 0);
  assert_int_equal(pd_rectable_create_shared(&t2, 16, key, store), 0);
  signed_rec_t a1, a2, b1;
  make(&a1, 1, 10, 26656);
  make(&a2, 1, 11, 26657);
  make(&b1, 2, 10, 26656);
  assert_int_equal(pd_rectable_put(t1, a1.bytes, a1.len, &a1.rec, NOW), PD_REC_NEW);
  assert_int_equal(pd_rectable_put(t2, a1.bytes, a1.len, &a1.rec, NOW + 1), PD_REC_NEW);
  assert_int_equal(pd_rectable_put(t2, b1.bytes, b1.len, &b1.rec, NOW), PD_REC_NEW);
  const pd_rec_t *r1 = pd_rectable_find(t1, a1.rec.id), *r2 = pd_rectable_find(t2, a1.rec.id);
  assert_non_null(r1);
  assert_non_null(r2);
  assert_ptr_equal(r1->bytes, r2->bytes);
  assert_memory_equal(r1->bytes, a1.bytes, a1.len);
  assert_int_equal(r1->updated, NOW);
  assert_int_equal(r2->updated, NOW + 1);
  assert_int_equal(pd_intern_count(store), 2);
  assert_int_equal(pd_intern_bytes(store), a1.len + b1.len);
  assert_int_equal(pd_intern_refs(store, r1->bytes), 2);
  /* t1 moves to node 1's next record; t2 keeps the first */
  assert_int_equal(pd_rectable_put(t1, a2.bytes, a2.len, &a2.rec, NOW + 2), PD_REC_UPDATED);
  r1 = pd_rectable_find(t1, a1.rec.id);
  r2 = pd_rectable_find(t2, a1.rec.id);
  assert_memory_equal(r1->bytes, a2.bytes, a2.len);
  assert_memory_equal(r2->bytes, a1.bytes, a1.len);
  assert_int_equal(pd_intern_refs(store, r2->bytes), 1);
  assert_int_equal(pd_intern_count(store), 3);
  /* the same record again in t2 is the same record: nothing new kept */
  assert_int_equal(pd_rectable_put(t2, a1.bytes, a1.len, &a1.rec, NOW + 3), PD_REC_SAME);
  assert_int_equal(pd_intern_count(store), 3);
  assert_int_equal(pd_rectable_remove(t2, a1.rec.id), 0);
  assert_int_equal(pd_intern_count(store), 2);
  pd_rectable_destroy(t1);
  assert_int_equal(pd_intern_count(store), 1); /* b1, t2's */
  const pd_rec_t *rb = pd_rectable_find(t2, b1.rec.id);
  assert_non_null(rb);
  assert_memory_equal(rb->bytes, b1.bytes, b1.len);
  pd_rectable_destroy(t2);
  assert_int_equal(pd_intern_count(store), 0);
  assert_int_equal(pd_intern_bytes(store), 0);
  pd_intern_destroy(store);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_sequence_and_lookup),
      cmocka_unit_test(test_bound_drops_oldest),
      cmocka_unit_test(test_random_against_model),
      cmocka_unit_test(test_shared_store),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
