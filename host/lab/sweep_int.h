/* sweep_int — what sweep.c (the plan, the statistics, the command lines)
 * and trials.c (the worker processes) share; not for use outside host/lab.
 * The public API is sweep.h.
 *
 * Owns: the plan's types (plan_t: scenario, seed, trials per point, axes,
 * --set parameters; trial g of the plan is point g / trials, trial number
 * g % trials) and the prototypes of the helpers each file calls in the other.
 */
#ifndef PD_SWEEP_INT_H
#define PD_SWEEP_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include <jansson.h>

#define SWEEP_MAX_AXES 16

typedef struct axis {
  char *name;
  char **v;
  size_t nv;
} axis_t;

typedef struct plan {
  const char *scenario; /* path as given (sweep runs only) */
  char *base;           /* its base name: what the outputs name */
  uint64_t seed;
  uint64_t trials; /* per point */
  axis_t axes[SWEEP_MAX_AXES];
  size_t naxes;
  char **set; /* --set "NAME=VALUE", in order */
  size_t nset;
  uint64_t points, total;
} plan_t;

/* The value index of axis a at point pt (the last axis varies fastest). */
size_t sweep_point_index(const plan_t *p, uint64_t pt, size_t a);

/* DIR/trials/pP-tT of trial g. */
void sweep_trial_dir(char *buf, size_t cap, const char *dir, const plan_t *p, uint64_t g);

/* The trial's "NAME=VALUE" parameters: --set first, then the point's values
 * (the names differ: checked when parsing). *n gets the count; the strings
 * of the point are malloc'd. NULL on ENOMEM. */
char **sweep_trial_params(const plan_t *p, uint64_t pt, size_t *n);

/* {"NAME": "VALUE", ...} of point pt's swept values. */
json_t *sweep_point_params(const plan_t *p, uint64_t pt);

/* o as the sweep's documents are written (2-space indent, key order kept,
 * 10 significant digits, a final newline); malloc'd, NULL on ENOMEM. */
char *sweep_dump_doc(json_t *o, size_t *len);

/* The monotonic clock in seconds (progress and timeouts only), and a nap. */
double sweep_mono_s(void);
void sweep_nap_ms(long ms);

/* Run trials first..first+count-1 of the plan into dir, at most jobs
 * processes simulating at once, each trial killed after timeout_s (0: no
 * limit). branch: the trials of one trial number share the scenario up to
 * sim.branch() (trials.c); false: every trial runs from the start.
 * progress: a line on stderr at most once a second. *nfailed gets the
 * trials that failed. 0, or a negative code when a trial could not be
 * started at all. */
int sweep_run_trials(const plan_t *p, const char *dir, uint64_t first, uint64_t count, unsigned jobs,
                     double timeout_s, bool progress, bool branch, uint64_t *nfailed);

#endif
