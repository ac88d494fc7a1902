/* Unit tests for intern: one copy per distinct string, references counted
 * and the last one freeing it, and the index (growth, backward-shift
 * deletion under long probe runs) checked against a plain model after
 * every step of a randomised run. */
#include <setjmp.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "intern.h"
#include "rng.h"

static pd_intern_t *store(void) {
  uint8_t key[PD_INTERN_KEY_LEN] = {9};
  pd_intern_t *s = NULL;
  assert_int_equal(pd_intern_create(&s, key), 0);
  return s;
}

static void test_one_copy(void **state) {
  (void)state;
  pd_intern_t *s = store();
  uint8_t a[40], b[40];
  memset(a, 'a', sizeof a);
  memcpy(b, a, sizeof b);
  const uint8_t *p = pd_intern_get(s, a, sizeof a);
  const uint8_t *q = pd_intern_get(s, b, sizeof b);
  assert_non_null(p);
  assert_ptr_equal(p, q);
  assert_ptr_not_equal(p, a);
  assert_memory_equal(p, a, sizeof a);
  assert_int_equal(pd_intern_refs(s, p), 2);
  /* a prefix, or one byte changed, is another string */
  const uint8_t *r = pd_intern_get(s, a, sizeof a - 1);
  b[39] = 'b';
  const uint8_t *t = pd_intern_get(s, b, sizeof b);
  assert_ptr_not_equal(r, p);
  assert_ptr_not_equal(t, p);
  assert_int_equal(pd_intern_count(s), 3);
  assert_int_equal(pd_intern_bytes(s), 40 + 39 + 40);
  pd_intern_put(s, p);
  assert_int_equal(pd_intern_count(s), 3);
  assert_memory_equal(q, a, sizeof a); /* still referenced */
  pd_intern_put(s, q);
  pd_intern_put(s, r);
  pd_intern_put(s, t);
  pd_intern_put(s, NULL);
  assert_int_equal(pd_intern_count(s), 0);
  assert_int_equal(pd_intern_bytes(s), 0);
  /* bad arguments */
  assert_null(pd_intern_get(s, a, 0));
  assert_null(pd_intern_get(s, NULL, 3));
  assert_null(pd_intern_get(NULL, a, 3));
  assert_int_equal(pd_intern_create(NULL, (uint8_t[PD_INTERN_KEY_LEN]){0}), PD_EINVAL);
  pd_intern_destroy(s);
  pd_intern_destroy(NULL);
}

/* A randomised run: strings of 1..300 bytes from a small alphabet of
 * contents (so gets often hit), references taken and dropped at random,
 * the store compared with a model of (contents, refs, pointer) after
 * every step. Thousands of strings grow the index several times, and the
 * drops exercise deletion inside long probe runs. */
#define NSTR 3000
typedef struct {
  uint8_t b[300];
  size_t len;
  uint32_t refs;
  const uint8_t *p;
} model_t;

static void make(pd_rng_t *rng, model_t *m, unsigned i) {
  m->len = 1 + (size_t)pd_rng_range(rng, 300);
  if (m->len < sizeof i) m->len = sizeof i; /* i itself first: every string distinct */
  memcpy(m->b, &i, sizeof i);
  for (size_t k = sizeof i; k < m->len; k++) m->b[k] = (uint8_t)(i * 31 + k);
}

static void test_random_against_model(void **state) {
  (void)state;
  pd_intern_t *s = store();
  pd_rng_t rng;
  pd_rng_seed(&rng, 5);
  model_t *m = calloc(NSTR, sizeof *m);
  assert_non_null(m);
  for (unsigned i = 0; i < NSTR; i++) make(&rng, &m[i], i);
  size_t live = 0, bytes = 0;
  for (unsigned step = 0; step < 60000; step++) {
    unsigned i = (unsigned)pd_rng_range(&rng, NSTR);
    bool get = m[i].refs == 0 || pd_rng_range(&rng, 100) < 55;
    if (get) {
      const uint8_t *p = pd_intern_get(s, m[i].b, m[i].len);
      assert_non_null(p);
      if (m[i].refs) assert_ptr_equal(p, m[i].p);
      else {
        live++;
        bytes += m[i].len;
      }
      m[i].p = p;
      m[i].refs++;
    } else {
      pd_intern_put(s, m[i].p);
      if (--m[i].refs == 0) {
        live--;
        bytes -= m[i].len;
      }
    }
    assert_int_equal(pd_intern_count(s), live);
    assert_int_equal(pd_intern_bytes(s), bytes);
    if (step % 5000 == 4999) { /* everything live still found, at its pointer */
      for (unsigned k = 0; k < NSTR; k++) {
        if (!m[k].refs) continue;
        assert_int_equal(pd_intern_refs(s, m[k].p), m[k].refs);
        assert_memory_equal(m[k].p, m[k].b, m[k].len);
        const uint8_t *p = pd_intern_get(s, m[k].b, m[k].len);
        assert_ptr_equal(p, m[k].p);
        pd_intern_put(s, p);
      }
    }
  }
  for (unsigned k = 0; k < NSTR; k++)
    while (m[k].refs) {
      pd_intern_put(s, m[k].p);
      m[k].refs--;
    }
  assert_int_equal(pd_intern_count(s), 0);
  free(m);
  pd_intern_destroy(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_one_copy),
      cmocka_unit_test(test_random_against_model),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
