/* sweep — `peerd sim SCENARIO --sweep ... --trials N --jobs J`, `--trial K`
 * and `peerd sim merge DIR...`: many runs of one scenario over a grid of
 * parameters, N seeded trials per point, J worker processes, aggregated into
 * sweep.json / sweep.csv with 95% intervals (docs/scenarios.md, "Sweeps").
 * This header is its API; what the file owns is in sweep.c's header. */
#ifndef PD_SWEEP_H
#define PD_SWEEP_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* The 95% two-sided normal quantile, Wilson's z. */
#define PD_SWEEP_Z95 1.959963984540054

/* Wilson score interval of k successes in n trials at normal quantile z:
 * *lo, *hi in [0, 1]. PD_EINVAL when n == 0 or k > n (then *lo = *hi = 0). */
int pd_sweep_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi);

/* Student's t 0.975 quantile with df degrees of freedom (df >= 1; a table to
 * df 30, a four-term Cornish-Fisher expansion beyond: |error| < 1e-7). 0 for df 0. */
double pd_sweep_t975(uint64_t df);

/* Summary of n numbers: mean, sample standard deviation (n - 1), min, max
 * and the 95% Student-t interval of the mean (mean -+ t975(n-1) sd/sqrt n).
 * has_mean is false for n == 0; has_sd (and the interval) false for n < 2. */
typedef struct pd_sweep_num {
  size_t n;
  bool has_mean, has_sd;
  double mean, sd, min, max, lo, hi;
} pd_sweep_num_t;
void pd_sweep_num_stats(const double *v, size_t n, pd_sweep_num_t *out);

/* The seed of trial t (0-based, the same for every point of a sweep: common
 * random numbers) of a sweep run with --seed seed: the (t+1)-th output of
 * splitmix64 started at seed, shifted right by 11 bits (53 bits, exact in
 * any JSON reader). */
uint64_t pd_sweep_trial_seed(uint64_t seed, uint64_t t);

/* A duration as the progress line shows it: "12.3s" under two minutes,
 * "37m05s" under two hours, "2h01m" beyond (rounded, never "36m60s"). */
void pd_sweep_fmt_duration(char *b, size_t cap, double s);

/* The order a shared run starts its branches in (longest expected first, so
 * the sweep does not end with one long branch running alone): g[0..n) are
 * trials of one plan with `trials` trials per point; secs[pt] and runs[pt]
 * the wall seconds and count of the point's branches finished so far (NULL:
 * none known). Points never timed go first, in point order (they may be the
 * longest); then the others by mean seconds, longest first, ties in point
 * order. Sorts g in place; only the wall time depends on it. */
void pd_sweep_branch_order(uint64_t *g, size_t n, uint64_t trials, const double *secs,
                           const uint32_t *runs);

/* True when argv (argv[0] "sim") asks for a sweep (--sweep, --trials,
 * --jobs, --trial or --trial-timeout among the flags). */
bool pd_sweep_wanted(int argc, char **argv);

/* `peerd sim SCENARIO --sweep ...`: argv[0] is "sim". Exit status: 0 every
 * trial ok, 1 a trial failed or an output could not be written (outputs
 * still written), 2 usage. */
int pd_sweep_main(int argc, char **argv);

/* `peerd sim merge [--out DIR] DIR...`: argv[0] is "merge". Same status. */
int pd_sweep_merge_main(int argc, char **argv);

#endif
