/* Unit tests for sweep's statistics (host/lab/sweep.c): the Wilson score
 * interval, Student's t 0.975 quantile, the summary of numbers with its t
 * interval, and the trial seed derivation. The reference values were
 * computed independently with Python's mpmath at 30 digits (Wilson from its
 * formula with z = sqrt(2) erfinv(0.95); t by solving the regularized
 * incomplete beta CDF = 0.975; the seeds by splitmix64 in Python integers)
 * and pasted here. */
#include <math.h>
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include "err.h"
#include "sweep.h"

#define near(a, b, eps) assert_true(fabs((a) - (b)) <= (eps))

static void wilson_known_values(void **state) {
  (void)state;
  static const struct {
    uint64_t k, n;
    double lo, hi;
  } ref[] = {
      {0, 20, 0.0, 0.16112515805281939},
      {10, 20, 0.29929800819821233, 0.70070199180178767},
      {20, 20, 0.83887484194718061, 1.0},
      {1, 1, 0.20654931437723739, 1.0},
      {0, 1, 0.0, 0.79345068562276261},
      {1, 3, 0.061491944720396231, 0.79234039919795228},
      {3, 7, 0.15821985525146969, 0.74954163547234281},
      {999, 1000, 0.99435744140204206, 0.99982345362937392},
  };
  for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) {
    double lo = -1, hi = -1;
    assert_int_equal(pd_sweep_wilson(ref[i].k, ref[i].n, PD_SWEEP_Z95, &lo, &hi), 0);
    near(lo, ref[i].lo, 1e-12);
    near(hi, ref[i].hi, 1e-12);
    assert_true(lo >= 0 && lo <= (double)ref[i].k / (double)ref[i].n);
    assert_true(hi <= 1 && hi >= (double)ref[i].k / (double)ref[i].n);
  }
  /* the bounds at 0 and n are exactly 0 and 1 */
  double lo, hi;
  assert_int_equal(pd_sweep_wilson(0, 20, PD_SWEEP_Z95, &lo, &hi), 0);
  assert_true(lo == 0.0);
  assert_int_equal(pd_sweep_wilson(20, 20, PD_SWEEP_Z95, &lo, &hi), 0);
  assert_true(hi == 1.0);
  /* no trials, more successes than trials */
  assert_int_equal(pd_sweep_wilson(0, 0, PD_SWEEP_Z95, &lo, &hi), PD_EINVAL);
  assert_int_equal(pd_sweep_wilson(3, 2, PD_SWEEP_Z95, &lo, &hi), PD_EINVAL);
}

static void t_quantile_known_values(void **state) {
  (void)state;
  static const struct {
    uint64_t df;
    double t;
  } ref[] = {
      {1, 12.706204736174705}, {2, 4.3026527297494639}, {3, 3.1824463052837096},
      {5, 2.5705818356363155}, {10, 2.2281388519862747}, {20, 2.0859634472658648},
      {29, 2.0452296421327043}, {30, 2.0422724563012383}, {31, 2.0395134463964085},
      {40, 2.0210753903062734}, {60, 2.0002978220142605}, {100, 1.9839715185235523},
      {1000, 1.9623390808264085},
  };
  for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) near(pd_sweep_t975(ref[i].df), ref[i].t, 1e-7);
  assert_true(pd_sweep_t975(0) == 0);
  /* decreasing towards the normal quantile */
  for (uint64_t df = 1; df < 500; df++) assert_true(pd_sweep_t975(df + 1) < pd_sweep_t975(df));
  near(pd_sweep_t975(1000000), PD_SWEEP_Z95, 1e-5);
}

static void number_summary(void **state) {
  (void)state;
  const double v[] = {3, 6, 6, 1.5};
  pd_sweep_num_t s;
  pd_sweep_num_stats(v, 4, &s);
  assert_int_equal(s.n, 4);
  assert_true(s.has_mean && s.has_sd);
  near(s.mean, 4.125, 1e-12);
  near(s.sd, 2.25, 1e-12);
  near(s.min, 1.5, 0);
  near(s.max, 6, 0);
  near(s.lo, 0.54474790655582671, 1e-9);
  near(s.hi, 7.7052520934441733, 1e-9);
  pd_sweep_num_stats(v, 1, &s);
  assert_true(s.has_mean && !s.has_sd);
  near(s.mean, 3, 0);
  pd_sweep_num_stats(v, 0, &s);
  assert_true(!s.has_mean && !s.has_sd);
  assert_int_equal(s.n, 0);
}

static void trial_seeds(void **state) {
  (void)state;
  assert_true(pd_sweep_trial_seed(1, 0) == 5103132997656651ull);
  assert_true(pd_sweep_trial_seed(1, 1) == 6717404888216029ull);
  assert_true(pd_sweep_trial_seed(7, 0) == 3511274219185729ull);
  assert_true(pd_sweep_trial_seed(0, 0) == 7956156453446585ull);
  assert_true(pd_sweep_trial_seed(123456789, 41) == 5620782749438296ull);
  for (uint64_t t = 0; t < 1000; t++) assert_true(pd_sweep_trial_seed(99, t) < (1ull << 53));
}

static void durations(void **state) {
  (void)state;
  static const struct {
    double s;
    const char *want;
  } ref[] = {{0, "0.0s"},        {-1, "0.0s"},        {41.14, "41.1s"},     {119.94, "119.9s"},
             {119.96, "2m00s"},  {2219.96, "37m00s"}, {2333.42, "38m53s"}, {7199.4, "119m59s"},
             {7199.6, "2h00m"},  {7260, "2h01m"},     {7289.9, "2h01m"},    {7290, "2h02m"}};
  for (size_t i = 0; i < sizeof ref / sizeof *ref; i++) {
    char b[32];
    pd_sweep_fmt_duration(b, sizeof b, ref[i].s);
    assert_string_equal(b, ref[i].want);
  }
}

/* A shared run's branches start longest expected first: never-timed points
 * first in point order, then by mean wall seconds; ties in point order. */
static void branch_order(void **state) {
  (void)state;
  /* 4 points, 10 trials each; trial number 3 at every point: g = pt*10+3 */
  uint64_t g[4] = {3, 13, 23, 33};
  pd_sweep_branch_order(g, 4, 10, NULL, NULL); /* nothing known: point order */
  for (size_t i = 0; i < 4; i++) assert_true(g[i] == 10 * i + 3);
  double secs[4] = {20, 90, 0, 60};
  uint32_t runs[4] = {2, 3, 0, 2}; /* means 10, 30, untimed, 30 */
  pd_sweep_branch_order(g, 4, 10, secs, runs);
  static const uint64_t want[4] = {23, 13, 33, 3};
  for (size_t i = 0; i < 4; i++) assert_true(g[i] == want[i]);
  /* the same order from any starting order */
  uint64_t h[4] = {33, 3, 13, 23};
  pd_sweep_branch_order(h, 4, 10, secs, runs);
  for (size_t i = 0; i < 4; i++) assert_true(h[i] == want[i]);
  /* a group that is a subset of the points (some read before the branch) */
  uint64_t k[2] = {3, 33};
  pd_sweep_branch_order(k, 2, 10, secs, runs);
  assert_true(k[0] == 33 && k[1] == 3);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(wilson_known_values),
      cmocka_unit_test(t_quantile_known_values),
      cmocka_unit_test(number_summary),
      cmocka_unit_test(trial_seeds),
      cmocka_unit_test(durations),
      cmocka_unit_test(branch_order),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
