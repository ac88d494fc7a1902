/* Unit tests for rng: determinism, ranges, and a crude uniformity check. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "rng.h"

static void same_seed_same_stream(void **state) {
  (void)state;
  pd_rng_t a, b, c;
  pd_rng_seed(&a, 42);
  pd_rng_seed(&b, 42);
  pd_rng_seed(&c, 43);
  int differ = 0;
  for (int i = 0; i < 1000; i++) {
    uint64_t x = pd_rng_u64(&a);
    assert_int_equal(x, pd_rng_u64(&b));
    differ += x != pd_rng_u64(&c);
  }
  assert_true(differ > 990);
}

static void range_bounds_and_spread(void **state) {
  (void)state;
  pd_rng_t r;
  pd_rng_seed(&r, 7);
  int hist[10] = {0};
  for (int i = 0; i < 100000; i++) {
    uint64_t v = pd_rng_range(&r, 10);
    assert_true(v < 10);
    hist[v]++;
  }
  for (int i = 0; i < 10; i++) {
    assert_true(hist[i] > 9500 && hist[i] < 10500);
  }
  assert_int_equal(pd_rng_range(&r, 0), 0);
  assert_int_equal(pd_rng_range(&r, 1), 0);
  for (int i = 0; i < 1000; i++) assert_true(pd_rng_bits(&r, 3) < 8);
  for (int i = 0; i < 1000; i++) {
    double d = pd_rng_unit(&r);
    assert_true(d >= 0.0 && d < 1.0);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(same_seed_same_stream),
      cmocka_unit_test(range_bounds_and_spread),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
