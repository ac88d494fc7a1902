/* sweep — parameter sweeps of a scenario, run in parallel, aggregated with
 * confidence intervals (sweep.h; docs/scenarios.md, "Sweeps").
 *
 * Owns: the sweep's command line (`peerd sim SCENARIO --sweep NAME=V1,V2
 * ... --trials N --jobs J`, `--trial K`, `--trial-timeout S`) and `peerd sim
 * merge [--out DIR] DIR...`; the plan (the grid of points: the cartesian
 * product of the --sweep lists in the order given, the last varying
 * fastest; N trials per point; DIR/plan.json); the trial seeds (trial t of
 * every point runs with pd_sweep_trial_seed(--seed, t): common random
 * numbers across points); the aggregation of each trial's results.json
 * (from one directory or several: merge) into DIR/sweep.json and DIR/sweep.csv —
 * byte-identical for the same plan and trial results whatever J or the
 * machines, nothing wall-clock-dependent in them; the statistics (Wilson
 * score intervals for booleans, mean/sd/min/max and Student-t intervals for
 * numbers); plots per metric against the first swept parameter via gnuplot
 * (DIR/sweep.gp, DIR/sweep-METRIC.png; not part of the determinism check).
 * Does not own: the worker processes that run the trials, branching
 * (trials.c), running a scenario (pd_sim_run, sim.c), the results
 * document of a trial (output.c), atomic file writes (fsio).
 */
#include "sweep.h"
#include "sweep_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/prctl.h>
#endif

#include <jansson.h>

#include "err.h"
#include "fsio.h"
#include "sim.h"

#define MAX_AXES SWEEP_MAX_AXES
#define MAX_VALUES 10000
#define MAX_TOTAL 10000000ull /* trials in one sweep */
#define MAX_PLOTS 64
#define MAX_DEPTH 8           /* nested result tables flattened this deep */
#define RESULTS_MAX (256u * 1024 * 1024)
#define PLAN_FORMAT "peerd-sweep-plan/1"
#define GNUPLOT_WAIT_S 120.0

/* ---- statistics ---------------------------------------------------------- */

int pd_sweep_wilson(uint64_t k, uint64_t n, double z, double *lo, double *hi) {
  *lo = *hi = 0;
  if (n == 0 || k > n) return PD_EINVAL;
  double nn = (double)n, p = (double)k / nn, z2 = z * z;
  double den = 1.0 + z2 / nn;
  double centre = (p + z2 / (2.0 * nn)) / den;
  double half = z / den * sqrt(p * (1.0 - p) / nn + z2 / (4.0 * nn * nn));
  double l = centre - half, h = centre + half;
  /* at k = 0 / k = n the bound is exactly 0 / 1 (rounding says 1e-17) */
  *lo = k == 0 ? 0.0 : (l < 0 ? 0 : l);
  *hi = k == n ? 1.0 : (h > 1 ? 1 : h);
  return 0;
}

/* t(0.975, df) for df 1..30 (as R's qt(0.975, df); test_sweep checks them against mpmath). */
static const double t975_table[30] = {
    12.706204736174698, 4.302652729749464, 3.182446305284263, 2.7764451051977934,
    2.5705818356363146, 2.446911851144969,  2.3646242515927844, 2.3060041352041662,
    2.262157162798205,  2.2281388519862744, 2.200985160091644,  2.1788128296672284,
    2.1603686564627926, 2.1447866879178044, 2.131449545559774,  2.1199052992212533,
    2.1098155778333156, 2.100922040241039,  2.093024054408307,  2.0859634472658644,
    2.0796138447276626, 2.0738730679040147, 2.0686576104190406, 2.0638985616280205,
    2.059538552753294,  2.055529438642871,  2.0518305164802833, 2.048407141795244,
    2.0452296421327034, 2.0422724563012373};

double pd_sweep_t975(uint64_t df) {
  if (df == 0) return 0;
  if (df <= 30) return t975_table[df - 1];
  /* Cornish-Fisher expansion of t around the normal quantile. */
  double z = PD_SWEEP_Z95, z2 = z * z, d = (double)df;
  double g1 = (z2 + 1) * z / 4;
  double g2 = ((5 * z2 + 16) * z2 + 3) * z / 96;
  double g3 = (((3 * z2 + 19) * z2 + 17) * z2 - 15) * z / 384;
  double g4 = ((((79 * z2 + 776) * z2 + 1482) * z2 - 1920) * z2 - 945) * z / 92160;
  return z + g1 / d + g2 / (d * d) + g3 / (d * d * d) + g4 / (d * d * d * d);
}

void pd_sweep_num_stats(const double *v, size_t n, pd_sweep_num_t *o) {
  memset(o, 0, sizeof *o);
  o->n = n;
  if (n == 0) return;
  double sum = 0, mn = v[0], mx = v[0];
  for (size_t i = 0; i < n; i++) {
    sum += v[i];
    if (v[i] < mn) mn = v[i];
    if (v[i] > mx) mx = v[i];
  }
  o->has_mean = true;
  o->mean = sum / (double)n;
  o->min = mn;
  o->max = mx;
  if (n < 2) return;
  double ss = 0;
  for (size_t i = 0; i < n; i++) ss += (v[i] - o->mean) * (v[i] - o->mean);
  o->has_sd = true;
  o->sd = sqrt(ss / (double)(n - 1));
  double half = pd_sweep_t975(n - 1) * o->sd / sqrt((double)n);
  o->lo = o->mean - half;
  o->hi = o->mean + half;
}

uint64_t pd_sweep_trial_seed(uint64_t seed, uint64_t t) {
  uint64_t z = seed + (t + 1) * 0x9e3779b97f4a7c15ull;
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ull;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebull;
  z ^= z >> 31;
  return z >> 11;
}

/* ---- a growable string --------------------------------------------------- */

typedef struct sb {
  char *b;
  size_t n, cap;
  bool oom;
} sb_t;

__attribute__((format(printf, 2, 3))) static void sb_printf(sb_t *s, const char *fmt, ...) {
  if (s->oom) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    size_t room = s->cap - s->n;
    int k = vsnprintf(s->b ? s->b + s->n : NULL, s->b ? room : 0, fmt, ap);
    va_end(ap);
    if (k < 0) {
      s->oom = true;
      return;
    }
    if (s->b && (size_t)k < room) {
      s->n += (size_t)k;
      return;
    }
    size_t nc = s->cap ? s->cap : 4096;
    while (nc - s->n <= (size_t)k) nc *= 2;
    char *nb = realloc(s->b, nc);
    if (!nb) {
      s->oom = true;
      return;
    }
    s->b = nb;
    s->cap = nc;
  }
}

/* A CSV field: quoted (RFC 4180) when it holds a comma, quote or newline. */
static void sb_csv(sb_t *s, const char *v) {
  if (!strpbrk(v, ",\"\r\n")) {
    sb_printf(s, "%s", v);
    return;
  }
  sb_printf(s, "\"");
  for (const char *c = v; *c; c++) sb_printf(s, *c == '"' ? "\"\"" : "%c", *c);
  sb_printf(s, "\"");
}

/* A number as %.10g (the precision of sweep.json's reals). */
static void sb_num(sb_t *s, double v) { sb_printf(s, "%.10g", v); }

/* ---- the plan ------------------------------------------------------------ */


static void plan_free(plan_t *p) {
  free(p->base);
  for (size_t i = 0; i < p->naxes; i++) {
    free(p->axes[i].name);
    for (size_t k = 0; k < p->axes[i].nv; k++) free(p->axes[i].v[k]);
    free(p->axes[i].v);
  }
  for (size_t i = 0; i < p->nset; i++) free(p->set[i]);
  free(p->set);
  memset(p, 0, sizeof *p);
}

/* points and total from the axes and trials; false when over MAX_TOTAL. */
static bool plan_count(plan_t *p) {
  uint64_t pts = 1;
  for (size_t i = 0; i < p->naxes; i++) {
    pts *= p->axes[i].nv;
    if (pts > MAX_TOTAL) return false;
  }
  p->points = pts;
  if (p->trials == 0 || p->trials > MAX_TOTAL / pts) return false;
  p->total = pts * p->trials;
  return true;
}

/* The value index of axis a at point pt (the last axis varies fastest). */
size_t sweep_point_index(const plan_t *p, uint64_t pt, size_t a) {
  for (size_t i = p->naxes; i-- > a + 1;) pt /= p->axes[i].nv;
  return (size_t)(pt % p->axes[a].nv);
}

static json_t *plan_json(const plan_t *p) {
  json_t *o = json_object();
  json_object_set_new(o, "format", json_string(PLAN_FORMAT));
  json_object_set_new(o, "scenario", json_string(p->base));
  json_object_set_new(o, "seed", json_integer((json_int_t)p->seed));
  json_object_set_new(o, "trials", json_integer((json_int_t)p->trials));
  json_t *sw = json_array();
  for (size_t i = 0; i < p->naxes; i++) {
    json_t *ax = json_object(), *vals = json_array();
    json_object_set_new(ax, "name", json_string(p->axes[i].name));
    for (size_t k = 0; k < p->axes[i].nv; k++) json_array_append_new(vals, json_string(p->axes[i].v[k]));
    json_object_set_new(ax, "values", vals);
    json_array_append_new(sw, ax);
  }
  json_object_set_new(o, "sweep", sw);
  json_t *set = json_array();
  for (size_t i = 0; i < p->nset; i++) json_array_append_new(set, json_string(p->set[i]));
  json_object_set_new(o, "set", set);
  return o;
}

static char *dup_str(const char *s) {
  size_t n = strlen(s) + 1;
  char *d = malloc(n);
  if (d) memcpy(d, s, n);
  return d;
}

/* Read DIR/plan.json into *p. 0 or a negative code with err filled. */
static int plan_load(const char *dir, plan_t *p, char *err, size_t cap) {
  memset(p, 0, sizeof *p);
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/plan.json", dir);
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, 16 * 1024 * 1024, &buf, &len);
  if (rc < 0) {
    snprintf(err, cap, "%s: %s (not a sweep directory?)", path, pd_strerror(rc));
    return rc;
  }
  json_error_t je;
  json_t *o = json_loadb(buf, len, 0, &je);
  free(buf);
  const char *fmt = NULL, *scen = NULL;
  json_int_t seed = 0, trials = 0;
  json_t *sw = NULL, *set = NULL;
  if (!o || json_unpack(o, "{s:s, s:s, s:I, s:I, s:o, s:o}", "format", &fmt, "scenario", &scen,
                        "seed", &seed, "trials", &trials, "sweep", &sw, "set", &set) != 0 ||
      strcmp(fmt, PLAN_FORMAT) != 0 || !json_is_array(sw) || !json_is_array(set) || trials < 1 ||
      json_array_size(sw) > MAX_AXES) {
    snprintf(err, cap, "%.2048s: not a sweep plan (%.160s)", path, o ? "wrong fields" : je.text);
    json_decref(o);
    return PD_EFORMAT;
  }
  rc = 0;
  p->base = dup_str(scen);
  p->seed = (uint64_t)seed;
  p->trials = (uint64_t)trials;
  size_t i;
  json_t *ax;
  json_array_foreach(sw, i, ax) {
    const char *name = NULL;
    json_t *vals = NULL;
    if (json_unpack(ax, "{s:s, s:o}", "name", &name, "values", &vals) != 0 || !json_is_array(vals) ||
        json_array_size(vals) == 0 || json_array_size(vals) > MAX_VALUES) {
      rc = PD_EFORMAT;
      break;
    }
    axis_t *a = &p->axes[p->naxes++];
    a->name = dup_str(name);
    a->v = calloc(json_array_size(vals), sizeof *a->v);
    if (!a->name || !a->v) {
      rc = PD_ENOMEM;
      break;
    }
    size_t k;
    json_t *v;
    json_array_foreach(vals, k, v) {
      if (!json_is_string(v) || !(a->v[a->nv++] = dup_str(json_string_value(v)))) {
        rc = PD_EFORMAT;
        break;
      }
    }
    if (rc) break;
  }
  if (rc == 0) {
    p->set = calloc(json_array_size(set) + 1, sizeof *p->set);
    json_t *v;
    json_array_foreach(set, i, v) {
      if (!p->set || !json_is_string(v) || !(p->set[p->nset++] = dup_str(json_string_value(v)))) {
        rc = PD_EFORMAT;
        break;
      }
    }
  }
  json_decref(o);
  if (rc == 0 && (!p->base || !plan_count(p))) rc = PD_EFORMAT;
  if (rc) {
    snprintf(err, cap, "%s: not a sweep plan (%s)", path, pd_strerror(rc));
    plan_free(p);
  }
  return rc;
}

static char *dump_doc(json_t *o, size_t flags, size_t *len) {
  char *s = json_dumps(o, flags);
  if (!s) return NULL;
  size_t n = strlen(s);
  char *s2 = realloc(s, n + 2);
  if (!s2) {
    free(s);
    return NULL;
  }
  s2[n++] = '\n';
  s2[n] = 0;
  *len = n;
  return s2;
}

#define DOC_FLAGS (JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(10))

char *sweep_dump_doc(json_t *o, size_t *len) { return dump_doc(o, DOC_FLAGS, len); }

static int plan_write(const plan_t *p, const char *dir) {
  json_t *o = plan_json(p);
  size_t len = 0;
  char *s = o ? dump_doc(o, DOC_FLAGS, &len) : NULL;
  json_decref(o);
  if (!s) return PD_ENOMEM;
  int rc = pd_fs_write_atomic(dir, "plan.json", s, len, 0644);
  free(s);
  return rc;
}

/* Two plans are the same sweep: the same canonical JSON. */
static bool plan_same(const plan_t *a, const plan_t *b) {
  json_t *ja = plan_json(a), *jb = plan_json(b);
  bool same = ja && jb && json_equal(ja, jb);
  json_decref(ja);
  json_decref(jb);
  return same;
}

void sweep_trial_dir(char *buf, size_t cap, const char *dir, const plan_t *p, uint64_t g) {
  snprintf(buf, cap, "%s/trials/p%" PRIu64 "-t%" PRIu64, dir, g / p->trials, g % p->trials);
}

/* The trial's "NAME=VALUE" parameters: --set first, then the point's values
 * (the names differ: checked when parsing). *n gets the count; the strings
 * of the point are malloc'd (free the first naxes after nset, then the
 * array). NULL on ENOMEM. */
char **sweep_trial_params(const plan_t *p, uint64_t pt, size_t *n) {
  char **v = calloc(p->nset + p->naxes + 1, sizeof *v);
  if (!v) return NULL;
  for (size_t i = 0; i < p->nset; i++) v[i] = p->set[i];
  for (size_t a = 0; a < p->naxes; a++) {
    const char *val = p->axes[a].v[sweep_point_index(p, pt, a)];
    size_t l = strlen(p->axes[a].name) + strlen(val) + 2;
    char *s = malloc(l);
    if (!s) {
      for (size_t k = 0; k < a; k++) free(v[p->nset + k]);
      free(v);
      return NULL;
    }
    snprintf(s, l, "%s=%s", p->axes[a].name, val);
    v[p->nset + a] = s;
  }
  *n = p->nset + p->naxes;
  return v;
}


/* ---- reading trial results ----------------------------------------------- */

enum { T_MISSING = 0, T_OK, T_FAILED };

typedef struct mval {
  char *name;
  bool is_bool;
  double v;
} mval_t;

typedef struct trial {
  int state;
  char *error;
  mval_t *m;
  size_t nm, mcap;
} trial_t;

static void trial_free(trial_t *t) {
  free(t->error);
  for (size_t i = 0; i < t->nm; i++) free(t->m[i].name);
  free(t->m);
}

static bool trial_add(trial_t *t, const char *name, bool is_bool, double v) {
  if (t->nm == t->mcap) {
    size_t nc = t->mcap ? t->mcap * 2 : 16;
    mval_t *nm = realloc(t->m, nc * sizeof *nm);
    if (!nm) return false;
    t->m = nm;
    t->mcap = nc;
  }
  char *n = dup_str(name);
  if (!n) return false;
  t->m[t->nm++] = (mval_t){n, is_bool, v};
  return true;
}

/* Every boolean and number of the results object, nested objects flattened
 * as "outer.inner"; strings, nulls and arrays are not metrics. */
static bool flatten(trial_t *t, json_t *o, const char *prefix, int depth) {
  const char *k;
  json_t *v;
  json_object_foreach(o, k, v) {
    char name[512];
    if (prefix[0]) snprintf(name, sizeof name, "%s.%s", prefix, k);
    else snprintf(name, sizeof name, "%s", k);
    bool ok = true;
    if (json_is_boolean(v)) ok = trial_add(t, name, true, json_is_true(v) ? 1.0 : 0.0);
    else if (json_is_number(v)) ok = trial_add(t, name, false, json_number_value(v));
    else if (json_is_object(v) && depth < MAX_DEPTH) ok = flatten(t, v, name, depth + 1);
    if (!ok) return false;
  }
  return true;
}

static int cmp_mval(const void *a, const void *b) {
  return strcmp(((const mval_t *)a)->name, ((const mval_t *)b)->name);
}

__attribute__((format(printf, 2, 3))) static void trial_fail(trial_t *t, const char *fmt, ...) {
  char msg[1024];
  va_list ap;
  va_start(ap, fmt);
  vsnprintf(msg, sizeof msg, fmt, ap);
  va_end(ap);
  t->state = T_FAILED;
  free(t->error);
  t->error = dup_str(msg);
}

/* Trial g of the plan from the first of dirs that has it. PD_ENOMEM only;
 * a missing or bad file is the trial's state. */
static int trial_load(const plan_t *p, char *const *dirs, size_t ndirs, uint64_t g, trial_t *t) {
  memset(t, 0, sizeof *t);
  char *buf = NULL;
  size_t len = 0;
  for (size_t d = 0; d < ndirs && !buf; d++) {
    char path[PATH_MAX];
    sweep_trial_dir(path, sizeof path - 16, dirs[d], p, g);
    strcat(path, "/results.json");
    int rc = pd_fs_read_all(path, RESULTS_MAX, &buf, &len);
    if (rc == PD_ENOMEM) return rc;
    if (rc < 0 && rc != -ENOENT) {
      trial_fail(t, "%s: %s", path, pd_strerror(rc));
      return 0;
    }
  }
  if (!buf) return 0; /* T_MISSING */
  json_error_t je;
  json_t *o = json_loadb(buf, len, 0, &je);
  free(buf);
  json_int_t seed = -1;
  const char *status = NULL;
  json_t *res = NULL;
  if (!o || json_unpack(o, "{s:I, s:s}", "seed", &seed, "status", &status) != 0) {
    trial_fail(t, "results.json unreadable: %s", o ? "no seed or status" : je.text);
  } else if ((uint64_t)seed != pd_sweep_trial_seed(p->seed, g % p->trials)) {
    trial_fail(t, "results.json has seed %" PRId64 ", the plan says %" PRIu64, (int64_t)seed,
               pd_sweep_trial_seed(p->seed, g % p->trials));
  } else if (strcmp(status, "ok") != 0) {
    const char *e = json_string_value(json_object_get(o, "error"));
    trial_fail(t, "%s", e ? e : status);
  } else {
    t->state = T_OK;
    res = json_object_get(o, "results");
    if (json_is_object(res) && !flatten(t, res, "", 0)) {
      json_decref(o);
      return PD_ENOMEM;
    }
    qsort(t->m, t->nm, sizeof *t->m, cmp_mval);
  }
  json_decref(o);
  return t->error || t->state == T_OK ? 0 : PD_ENOMEM;
}

static const mval_t *trial_get(const trial_t *t, const char *name) {
  mval_t key = {(char *)name, false, 0};
  return t->nm ? bsearch(&key, t->m, t->nm, sizeof *t->m, cmp_mval) : NULL;
}

/* ---- aggregation: sweep.json, sweep.csv, plots --------------------------- */

typedef struct metric {
  const char *name; /* borrowed from a trial */
  bool is_bool;     /* boolean in every trial that has it */
} metric_t;

typedef struct agg {
  const plan_t *p;
  trial_t *t; /* total */
  metric_t *m;
  size_t nm;
  uint64_t ok, failed, missing;
} agg_t;

static int cmp_metric(const void *a, const void *b) {
  return strcmp(((const metric_t *)a)->name, ((const metric_t *)b)->name);
}

static void agg_free(agg_t *a) {
  if (a->t)
    for (uint64_t g = 0; g < a->p->total; g++) trial_free(&a->t[g]);
  free(a->t);
  free(a->m);
}

static int agg_load(agg_t *a, const plan_t *p, char *const *dirs, size_t ndirs) {
  memset(a, 0, sizeof *a);
  a->p = p;
  a->t = calloc(p->total, sizeof *a->t);
  if (!a->t) return PD_ENOMEM;
  size_t all = 0;
  for (uint64_t g = 0; g < p->total; g++) {
    int rc = trial_load(p, dirs, ndirs, g, &a->t[g]);
    if (rc < 0) return rc;
    trial_t *t = &a->t[g];
    if (t->state == T_OK) a->ok++;
    else if (t->state == T_FAILED) a->failed++;
    else a->missing++;
    all += t->nm;
  }
  a->m = calloc(all + 1, sizeof *a->m);
  if (!a->m) return PD_ENOMEM;
  for (uint64_t g = 0; g < p->total; g++)
    for (size_t i = 0; i < a->t[g].nm; i++)
      a->m[a->nm++] = (metric_t){a->t[g].m[i].name, a->t[g].m[i].is_bool};
  qsort(a->m, a->nm, sizeof *a->m, cmp_metric);
  size_t u = 0;
  for (size_t i = 0; i < a->nm; i++) {
    if (u && strcmp(a->m[u - 1].name, a->m[i].name) == 0) {
      a->m[u - 1].is_bool = a->m[u - 1].is_bool && a->m[i].is_bool;
      continue;
    }
    a->m[u++] = a->m[i];
  }
  a->nm = u;
  return 0;
}

/* One metric at one point. */
typedef struct cell {
  bool is_bool;
  uint64_t n, k; /* booleans: trials with the value, successes */
  double prop, lo, hi;
  pd_sweep_num_t num;
} cell_t;

static int cell_compute(const agg_t *a, uint64_t pt, const metric_t *m, cell_t *c) {
  memset(c, 0, sizeof *c);
  c->is_bool = m->is_bool;
  const plan_t *p = a->p;
  double *v = malloc((size_t)p->trials * sizeof *v);
  if (!v) return PD_ENOMEM;
  size_t n = 0;
  for (uint64_t t = 0; t < p->trials; t++) {
    const trial_t *tr = &a->t[pt * p->trials + t];
    if (tr->state != T_OK) continue;
    const mval_t *x = trial_get(tr, m->name);
    if (x) v[n++] = x->v;
  }
  c->n = n;
  if (m->is_bool) {
    for (size_t i = 0; i < n; i++) c->k += v[i] != 0;
    if (n) {
      c->prop = (double)c->k / (double)n;
      pd_sweep_wilson(c->k, n, PD_SWEEP_Z95, &c->lo, &c->hi);
    }
  } else {
    pd_sweep_num_stats(v, n, &c->num);
  }
  free(v);
  return 0;
}

static json_t *jreal(double v) { return isfinite(v) ? json_real(v) : json_null(); }

json_t *sweep_point_params(const plan_t *p, uint64_t pt) {
  json_t *o = json_object();
  for (size_t a = 0; a < p->naxes; a++)
    json_object_set_new(o, p->axes[a].name, json_string(p->axes[a].v[sweep_point_index(p, pt, a)]));
  return o;
}

static char *sweep_json(const agg_t *a, size_t *len) {
  const plan_t *p = a->p;
  json_t *root = json_object();
  json_object_set_new(root, "scenario", json_string(p->base));
  json_object_set_new(root, "seed", json_integer((json_int_t)p->seed));
  json_object_set_new(root, "trials", json_integer((json_int_t)p->trials));
  json_object_set_new(root, "seed_derivation",
                      json_string("trial t (0-based, the same at every point) runs with seed "
                                  "splitmix64(seed, t + 1) >> 11"));
  json_t *plan = plan_json(p);
  json_object_set(root, "sweep", json_object_get(plan, "sweep"));
  json_t *set = json_object();
  for (size_t i = 0; i < p->nset; i++) {
    const char *eq = strchr(p->set[i], '=');
    char k[256];
    snprintf(k, sizeof k, "%.*s", eq ? (int)(eq - p->set[i]) : 0, p->set[i]);
    json_object_set_new(set, k, json_string(eq ? eq + 1 : ""));
  }
  json_decref(plan);
  json_object_set_new(root, "set", set);
  json_object_set_new(root, "points_total", json_integer((json_int_t)p->points));
  json_object_set_new(root, "trials_total", json_integer((json_int_t)p->total));
  json_object_set_new(root, "trials_ok", json_integer((json_int_t)a->ok));
  json_object_set_new(root, "trials_failed", json_integer((json_int_t)a->failed));
  json_object_set_new(root, "trials_missing", json_integer((json_int_t)a->missing));
  json_t *ms = json_array();
  for (size_t i = 0; i < a->nm; i++)
    json_array_append_new(ms, json_pack("{s:s, s:s}", "name", a->m[i].name, "kind",
                                        a->m[i].is_bool ? "boolean" : "number"));
  json_object_set_new(root, "metrics", ms);
  json_t *pts = json_array();
  int rc = 0;
  for (uint64_t pt = 0; pt < p->points && rc == 0; pt++) {
    json_t *po = json_object(), *fails = json_array(), *miss = json_array(), *mo = json_object();
    uint64_t ok = 0, failed = 0, missing = 0;
    for (uint64_t t = 0; t < p->trials; t++) {
      const trial_t *tr = &a->t[pt * p->trials + t];
      if (tr->state == T_OK) {
        ok++;
      } else if (tr->state == T_FAILED) {
        failed++;
        json_array_append_new(
            fails, json_pack("{s:I, s:I, s:I, s:s}", "trial", (json_int_t)t, "index",
                             (json_int_t)(pt * p->trials + t), "seed",
                             (json_int_t)pd_sweep_trial_seed(p->seed, t), "error",
                             tr->error ? tr->error : "?"));
      } else {
        missing++;
        json_array_append_new(miss, json_integer((json_int_t)t));
      }
    }
    json_object_set_new(po, "point", json_integer((json_int_t)pt));
    json_object_set_new(po, "params", sweep_point_params(p, pt));
    json_object_set_new(po, "trials", json_integer((json_int_t)p->trials));
    json_object_set_new(po, "ok", json_integer((json_int_t)ok));
    json_object_set_new(po, "failed", json_integer((json_int_t)failed));
    json_object_set_new(po, "missing", json_integer((json_int_t)missing));
    json_object_set_new(po, "failures", fails);
    json_object_set_new(po, "missing_trials", miss);
    for (size_t i = 0; i < a->nm && rc == 0; i++) {
      cell_t c;
      rc = cell_compute(a, pt, &a->m[i], &c);
      json_t *x = json_object();
      json_object_set_new(x, "kind", json_string(c.is_bool ? "boolean" : "number"));
      json_object_set_new(x, "n", json_integer((json_int_t)c.n));
      if (c.is_bool) {
        json_object_set_new(x, "successes", json_integer((json_int_t)c.k));
        json_object_set_new(x, "proportion", c.n ? jreal(c.prop) : json_null());
        json_object_set_new(x, "wilson_lo", c.n ? jreal(c.lo) : json_null());
        json_object_set_new(x, "wilson_hi", c.n ? jreal(c.hi) : json_null());
      } else {
        const pd_sweep_num_t *s = &c.num;
        json_object_set_new(x, "mean", s->has_mean ? jreal(s->mean) : json_null());
        json_object_set_new(x, "sd", s->has_sd ? jreal(s->sd) : json_null());
        json_object_set_new(x, "min", s->has_mean ? jreal(s->min) : json_null());
        json_object_set_new(x, "max", s->has_mean ? jreal(s->max) : json_null());
        json_object_set_new(x, "ci_lo", s->has_sd ? jreal(s->lo) : json_null());
        json_object_set_new(x, "ci_hi", s->has_sd ? jreal(s->hi) : json_null());
      }
      json_object_set_new(mo, a->m[i].name, x);
    }
    json_object_set_new(po, "metrics", mo);
    json_array_append_new(pts, po);
  }
  json_object_set_new(root, "points", pts);
  char *out = rc == 0 ? dump_doc(root, DOC_FLAGS, len) : NULL;
  json_decref(root);
  return out;
}

static char *sweep_csv(const agg_t *a, size_t *len) {
  const plan_t *p = a->p;
  sb_t s = {0};
  sb_printf(&s, "point");
  for (size_t i = 0; i < p->naxes; i++) {
    sb_printf(&s, ",");
    sb_csv(&s, p->axes[i].name);
  }
  sb_printf(&s, ",metric,kind,n,successes,proportion,mean,sd,min,max,interval,lo,hi,"
                "trials,ok,failed,missing\n");
  for (uint64_t pt = 0; pt < p->points; pt++) {
    uint64_t ok = 0, failed = 0, missing = 0;
    for (uint64_t t = 0; t < p->trials; t++) {
      int st = a->t[pt * p->trials + t].state;
      ok += st == T_OK;
      failed += st == T_FAILED;
      missing += st == T_MISSING;
    }
    for (size_t i = 0; i < a->nm; i++) {
      cell_t c;
      if (cell_compute(a, pt, &a->m[i], &c) < 0) {
        free(s.b);
        return NULL;
      }
      sb_printf(&s, "%" PRIu64, pt);
      for (size_t k = 0; k < p->naxes; k++) {
        sb_printf(&s, ",");
        sb_csv(&s, p->axes[k].v[sweep_point_index(p, pt, k)]);
      }
      sb_printf(&s, ",");
      sb_csv(&s, a->m[i].name);
      sb_printf(&s, ",%s,%" PRIu64 ",", c.is_bool ? "boolean" : "number", c.n);
      if (c.is_bool) {
        sb_printf(&s, "%" PRIu64 ",", c.k);
        if (c.n) sb_num(&s, c.prop);
        sb_printf(&s, ",,,,,wilson,");
        if (c.n) {
          sb_num(&s, c.lo);
          sb_printf(&s, ",");
          sb_num(&s, c.hi);
        } else {
          sb_printf(&s, ",");
        }
      } else {
        const pd_sweep_num_t *x = &c.num;
        sb_printf(&s, ",,");
        if (x->has_mean) sb_num(&s, x->mean);
        sb_printf(&s, ",");
        if (x->has_sd) sb_num(&s, x->sd);
        sb_printf(&s, ",");
        if (x->has_mean) sb_num(&s, x->min);
        sb_printf(&s, ",");
        if (x->has_mean) sb_num(&s, x->max);
        sb_printf(&s, ",t,");
        if (x->has_sd) {
          sb_num(&s, x->lo);
          sb_printf(&s, ",");
          sb_num(&s, x->hi);
        } else {
          sb_printf(&s, ",");
        }
      }
      sb_printf(&s, ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 ",%" PRIu64 "\n", p->trials, ok, failed,
                missing);
    }
  }
  if (s.oom) {
    free(s.b);
    return NULL;
  }
  *len = s.n;
  return s.b;
}

double sweep_mono_s(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

void sweep_nap_ms(long ms) {
  struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};
  while (nanosleep(&ts, &ts) != 0 && errno == EINTR) {
  }
}

/* Run `gnuplot sweep.gp` in dir; its wait is bounded (GNUPLOT_WAIT_S, then
 * SIGKILL). true when it exited 0. */
static bool run_gnuplot(const char *dir) {
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid < 0) return false;
  if (pid == 0) {
    int fd = open("/dev/null", O_RDWR);
    if (fd >= 0) {
      dup2(fd, 0);
      dup2(fd, 1);
      dup2(fd, 2);
    }
    if (chdir(dir) != 0) _exit(126);
    execlp("gnuplot", "gnuplot", "sweep.gp", (char *)NULL);
    _exit(127);
  }
  double t0 = sweep_mono_s();
  int st = 0;
  for (;;) {
    pid_t r = waitpid(pid, &st, WNOHANG);
    if (r == pid) break;
    if (r < 0 && errno != EINTR) return false;
    if (sweep_mono_s() - t0 > GNUPLOT_WAIT_S) {
      kill(pid, SIGKILL);
      while (waitpid(pid, &st, 0) < 0 && errno == EINTR) {
      }
      return false;
    }
    sweep_nap_ms(10);
  }
  return WIFEXITED(st) && WEXITSTATUS(st) == 0;
}

static bool gnuplot_on_path(void) {
  const char *path = getenv("PATH");
  if (!path) return false;
  char buf[PATH_MAX];
  while (*path) {
    size_t n = strcspn(path, ":");
    if (n > 0 && snprintf(buf, sizeof buf, "%.*s/gnuplot", (int)n, path) < (int)sizeof buf &&
        access(buf, X_OK) == 0)
      return true;
    path += n;
    if (*path == ':') path++;
  }
  return false;
}

static void safe_name(char *out, size_t cap, const char *in) {
  size_t j = 0;
  for (const char *c = in; *c && j + 1 < cap; c++)
    out[j++] = (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') || (*c >= '0' && *c <= '9') ||
                              *c == '-' || *c == '.'
                          ? *c
                          : '_');
  out[j] = 0;
}

/* A label for gnuplot's double-quoted strings. */
static void gp_label(sb_t *s, const char *in) {
  for (const char *c = in; *c; c++) sb_printf(s, "%c", (*c == '"' || *c == '\\' || *c < ' ') ? '_' : *c);
}

/* One plot per metric (the first MAX_PLOTS) against the first swept
 * parameter, the other swept parameters' combinations as separate lines,
 * with the 95% interval as error bars. Returns how many were drawn. */
static size_t sweep_plots(const agg_t *a, const char *dir) {
  const plan_t *p = a->p;
  if (p->naxes == 0 || a->nm == 0 || !gnuplot_on_path()) return 0;
  const axis_t *x = &p->axes[0];
  bool numeric = true;
  for (size_t i = 0; i < x->nv && numeric; i++) {
    char *end = NULL;
    double d = strtod(x->v[i], &end);
    numeric = end && end != x->v[i] && !*end && isfinite(d);
  }
  uint64_t lines = p->points / x->nv; /* combinations of the other axes */
  size_t nplot = a->nm < MAX_PLOTS ? a->nm : MAX_PLOTS;
  static const char *const terms[][2] = {
      {"pngcairo size 900,500", "png"}, {"png size 900,500", "png"}, {"svg size 900,500", "svg"}};
  for (size_t term = 0; term < 3; term++) {
    sb_t s = {0};
    sb_printf(&s, "# generated by peerd sim --sweep: plots of sweep.csv\nset terminal %s\n"
                  "set grid\nset xlabel \"", terms[term][0]);
    gp_label(&s, x->name);
    sb_printf(&s, "\" noenhanced\nset key outside right noenhanced\nset offsets graph 0.05, graph 0.05, 0, 0\n");
    if (!numeric) {
      sb_printf(&s, "set xtics (");
      for (size_t i = 0; i < x->nv; i++) {
        sb_printf(&s, "%s\"", i ? ", " : "");
        gp_label(&s, x->v[i]);
        sb_printf(&s, "\" %zu", i);
      }
      sb_printf(&s, ")\n");
    }
    for (size_t mi = 0; mi < nplot; mi++) {
      const metric_t *m = &a->m[mi];
      for (uint64_t l = 0; l < lines; l++) {
        sb_printf(&s, "$d%zu_%" PRIu64 " << EOD\n", mi, l);
        for (size_t i = 0; i < x->nv; i++) {
          uint64_t pt = (uint64_t)i * lines + l;
          cell_t c;
          if (cell_compute(a, pt, m, &c) < 0) {
            free(s.b);
            return 0;
          }
          if (!c.n) continue;
          double y = c.is_bool ? c.prop : c.num.mean;
          double lo = c.is_bool ? c.lo : (c.num.has_sd ? c.num.lo : y);
          double hi = c.is_bool ? c.hi : (c.num.has_sd ? c.num.hi : y);
          if (numeric) sb_printf(&s, "%s", x->v[i]);
          else sb_printf(&s, "%zu", i);
          sb_printf(&s, " %.10g %.10g %.10g\n", y, lo, hi);
        }
        sb_printf(&s, "EOD\n");
      }
      char safe[200];
      safe_name(safe, sizeof safe, m->name);
      sb_printf(&s, "set output \"sweep-%s.%s\"\nset title \"", safe, terms[term][1]);
      gp_label(&s, m->name);
      sb_printf(&s, " (%s, %" PRIu64 " trials per point)\" noenhanced\nset ylabel \"%s\"\n",
                m->is_bool ? "proportion, 95% Wilson interval" : "mean, 95% t interval", p->trials,
                m->is_bool ? "proportion" : "mean");
      sb_printf(&s, "%s", lines > 1 ? "set key\n" : "set key off\n");
      sb_printf(&s, "%s", m->is_bool ? "set yrange [-0.02:1.02]\n" : "set autoscale y\n");
      sb_printf(&s, "plot ");
      for (uint64_t l = 0; l < lines; l++) {
        sb_printf(&s, "%s$d%zu_%" PRIu64 " using 1:2:3:4 with yerrorlines lw 2 title \"", l ? ", " : "",
                  mi, l);
        uint64_t pt = l; /* axis 0 at index 0: the other axes' values of line l */
        for (size_t k = 1; k < p->naxes; k++) {
          sb_printf(&s, "%s", k > 1 ? ", " : "");
          gp_label(&s, p->axes[k].name);
          sb_printf(&s, "=");
          gp_label(&s, p->axes[k].v[sweep_point_index(p, pt, k)]);
        }
        sb_printf(&s, "\"");
      }
      sb_printf(&s, "\nset output\n");
    }
    if (s.oom) {
      free(s.b);
      return 0;
    }
    int rc = pd_fs_write_atomic(dir, "sweep.gp", s.b, s.n, 0644);
    free(s.b);
    if (rc != 0) return 0;
    if (run_gnuplot(dir)) return nplot;
  }
  return 0;
}

/* A short table on f: per point its parameters and each metric's figure. */
static void sweep_table(const agg_t *a, FILE *f) {
  const plan_t *p = a->p;
  for (uint64_t pt = 0; pt < p->points; pt++) {
    fprintf(f, "point %" PRIu64 ":", pt);
    for (size_t k = 0; k < p->naxes; k++)
      fprintf(f, " %s=%s", p->axes[k].name, p->axes[k].v[sweep_point_index(p, pt, k)]);
    uint64_t ok = 0;
    for (uint64_t t = 0; t < p->trials; t++) ok += a->t[pt * p->trials + t].state == T_OK;
    fprintf(f, "  (%" PRIu64 "/%" PRIu64 " trials ok)\n", ok, p->trials);
    for (size_t i = 0; i < a->nm; i++) {
      cell_t c;
      if (cell_compute(a, pt, &a->m[i], &c) < 0) return;
      fprintf(f, "  %-28s ", a->m[i].name);
      if (!c.n) fprintf(f, "-\n");
      else if (c.is_bool)
        fprintf(f, "%" PRIu64 "/%" PRIu64 " = %.3g  [%.3g, %.3g] Wilson 95%%\n", c.k, c.n, c.prop, c.lo,
                c.hi);
      else if (c.num.has_sd)
        fprintf(f, "mean %.4g  [%.4g, %.4g] t 95%%  sd %.3g  n %" PRIu64 "\n", c.num.mean, c.num.lo,
                c.num.hi, c.num.sd, c.n);
      else fprintf(f, "%.4g  (n 1)\n", c.num.mean);
    }
  }
}

/* Aggregate the trials found in dirs into out/sweep.json, out/sweep.csv and
 * the plots. 0 (then *bad = failed + missing trials) or a negative code. */
static int aggregate(const plan_t *p, char *const *dirs, size_t ndirs, const char *out, uint64_t *bad,
                     FILE *table) {
  agg_t a;
  int rc = agg_load(&a, p, dirs, ndirs);
  size_t jl = 0, cl = 0;
  char *js = rc == 0 ? sweep_json(&a, &jl) : NULL;
  char *cs = js ? sweep_csv(&a, &cl) : NULL;
  if (rc == 0 && (!js || !cs)) rc = PD_ENOMEM;
  if (rc == 0) rc = pd_fs_write_atomic(out, "sweep.json", js, jl, 0644);
  if (rc == 0) rc = pd_fs_write_atomic(out, "sweep.csv", cs, cl, 0644);
  free(js);
  free(cs);
  if (rc == 0) {
    if (table) sweep_table(&a, table);
    size_t np = sweep_plots(&a, out);
    if (table && np) fprintf(table, "sweep: %zu plot(s) in %s (sweep-METRIC.*)\n", np, out);
    *bad = a.failed + a.missing;
    if (table)
      fprintf(table, "sweep: %" PRIu64 " trials: %" PRIu64 " ok, %" PRIu64 " failed, %" PRIu64
                     " missing -> %s/sweep.json, %s/sweep.csv\n",
              p->total, a.ok, a.failed, a.missing, out, out);
  }
  agg_free(&a);
  return rc;
}

/* ---- the command lines --------------------------------------------------- */

static void usage(FILE *f) {
  fprintf(f,
          "usage: peerd sim SCENARIO.lua --sweep NAME=V1,V2,... [--sweep ...] [--trials N] [--jobs J]\n"
          "                 --out DIR [--seed S] [--set NAME=VALUE]... [--trial-timeout SECONDS]\n"
          "                 [--no-branch]  (every trial from t = 0, not from a shared sim.branch())\n"
          "       peerd sim SCENARIO.lua [--sweep ...] --trials N --trial K --out DIR [...]\n"
          "                 (trial K of 0..points*N-1: point K / N, trial K %% N)\n"
          "       peerd sim merge [--out DIR] DIR...\n");
}

bool pd_sweep_wanted(int argc, char **argv) {
  static const char *const flags[] = {"--sweep", "--trials", "--jobs", "--trial", "--trial-timeout",
                                      "--no-branch"};
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--set") == 0 || strcmp(argv[i], "--out") == 0 || strcmp(argv[i], "--seed") == 0) {
      i++; /* their values are not flags */
      continue;
    }
    for (size_t k = 0; k < sizeof flags / sizeof *flags; k++)
      if (strcmp(argv[i], flags[k]) == 0) return true;
  }
  return false;
}

static bool parse_u64(const char *s, uint64_t *v) {
  if (!s || *s < '0' || *s > '9') return false;
  char *end = NULL;
  errno = 0;
  unsigned long long x = strtoull(s, &end, 10);
  if (errno || !end || *end) return false;
  *v = (uint64_t)x;
  return true;
}

static size_t name_len(const char *nv) {
  const char *eq = strchr(nv, '=');
  return eq ? (size_t)(eq - nv) : strlen(nv);
}

/* --sweep NAME=V1,V2,...: one more axis. false with a message on stderr. */
static bool add_axis(plan_t *p, const char *arg) {
  const char *eq = strchr(arg, '=');
  if (!eq || eq == arg) {
    fprintf(stderr, "peerd sim: --sweep wants NAME=V1,V2,... (got '%s')\n", arg);
    return false;
  }
  if (!eq[1]) {
    fprintf(stderr, "peerd sim: --sweep %.*s has an empty list of values\n", (int)(eq - arg), arg);
    return false;
  }
  if (p->naxes == MAX_AXES) {
    fprintf(stderr, "peerd sim: at most %d --sweep parameters\n", MAX_AXES);
    return false;
  }
  size_t nl = (size_t)(eq - arg);
  for (size_t i = 0; i < p->naxes; i++)
    if (strlen(p->axes[i].name) == nl && strncmp(p->axes[i].name, arg, nl) == 0) {
      fprintf(stderr, "peerd sim: --sweep %s given twice\n", p->axes[i].name);
      return false;
    }
  axis_t *a = &p->axes[p->naxes++];
  a->name = malloc(nl + 1);
  size_t cnt = 1;
  for (const char *c = eq + 1; *c; c++) cnt += *c == ',';
  a->v = calloc(cnt, sizeof *a->v);
  if (!a->name || !a->v) {
    fprintf(stderr, "peerd sim: out of memory\n");
    return false;
  }
  memcpy(a->name, arg, nl);
  a->name[nl] = 0;
  if (cnt > MAX_VALUES) {
    fprintf(stderr, "peerd sim: --sweep %s: at most %d values\n", a->name, MAX_VALUES);
    return false;
  }
  const char *c = eq + 1;
  for (size_t k = 0; k < cnt; k++) {
    size_t l = strcspn(c, ",");
    if (l == 0) {
      fprintf(stderr, "peerd sim: --sweep %s: empty value in '%s'\n", a->name, eq + 1);
      return false;
    }
    a->v[a->nv] = malloc(l + 1);
    if (!a->v[a->nv]) return false;
    memcpy(a->v[a->nv], c, l);
    a->v[a->nv][l] = 0;
    for (size_t j = 0; j < a->nv; j++)
      if (strcmp(a->v[j], a->v[a->nv]) == 0) {
        fprintf(stderr, "peerd sim: --sweep %s: value '%s' given twice\n", a->name, a->v[j]);
        free(a->v[a->nv]);
        a->v[a->nv] = NULL;
        return false;
      }
    a->nv++;
    c += l + (c[l] == ',');
  }
  return true;
}

static const char *base_name(const char *p) {
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

int pd_sweep_main(int argc, char **argv) {
  plan_t p;
  memset(&p, 0, sizeof p);
  p.seed = 1;
  p.trials = 1;
  p.set = calloc((size_t)argc + 1, sizeof *p.set);
  const char *out = NULL;
  uint64_t jobs = 1, trial = 0, timeout = 0;
  bool have_trial = false, have_jobs = false, no_branch = false;
  int status = 2;
  if (!p.set) goto done;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    bool takes = strcmp(a, "--sweep") == 0 || strcmp(a, "--trials") == 0 || strcmp(a, "--jobs") == 0 ||
                 strcmp(a, "--trial") == 0 || strcmp(a, "--trial-timeout") == 0 ||
                 strcmp(a, "--seed") == 0 || strcmp(a, "--out") == 0 || strcmp(a, "--set") == 0;
    if (takes && i + 1 >= argc) {
      fprintf(stderr, "peerd sim: %s needs a value\n", a);
      goto done;
    }
    const char *v = takes ? argv[i + 1] : NULL;
    if (strcmp(a, "--sweep") == 0) {
      if (!add_axis(&p, v)) goto done;
    } else if (strcmp(a, "--trials") == 0) {
      if (!parse_u64(v, &p.trials) || p.trials < 1) {
        fprintf(stderr, "peerd sim: --trials wants a whole number >= 1 (got '%s')\n", v);
        goto done;
      }
    } else if (strcmp(a, "--jobs") == 0) {
      if (!parse_u64(v, &jobs) || jobs < 1 || jobs > 4096) {
        fprintf(stderr, "peerd sim: --jobs wants a whole number from 1 to 4096 (got '%s')\n", v);
        goto done;
      }
      have_jobs = true;
    } else if (strcmp(a, "--trial") == 0) {
      if (!parse_u64(v, &trial)) {
        fprintf(stderr, "peerd sim: --trial wants a whole number >= 0 (got '%s')\n", v);
        goto done;
      }
      have_trial = true;
    } else if (strcmp(a, "--trial-timeout") == 0) {
      if (!parse_u64(v, &timeout)) {
        fprintf(stderr, "peerd sim: --trial-timeout wants whole seconds (0: none; got '%s')\n", v);
        goto done;
      }
    } else if (strcmp(a, "--seed") == 0) {
      if (!parse_u64(v, &p.seed) || p.seed > (uint64_t)INT64_MAX) {
        fprintf(stderr, "peerd sim: bad --seed %s\n", v);
        goto done;
      }
    } else if (strcmp(a, "--out") == 0) {
      out = v;
    } else if (strcmp(a, "--set") == 0) {
      if (!strchr(v, '=') || v[0] == '=') {
        fprintf(stderr, "peerd sim: --set wants NAME=VALUE\n");
        goto done;
      }
      if (!(p.set[p.nset] = dup_str(v))) goto done;
      p.nset++;
    } else if (strcmp(a, "--no-branch") == 0) {
      no_branch = true;
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      status = 0;
      goto done;
    } else if (a[0] == '-') {
      fprintf(stderr, "peerd sim: unknown flag %s\n", a);
      usage(stderr);
      goto done;
    } else if (p.scenario) {
      fprintf(stderr, "peerd sim: one scenario only (got '%s' and '%s')\n", p.scenario, a);
      goto done;
    } else {
      p.scenario = a;
    }
    if (takes) i++;
  }
  if (!p.scenario) {
    usage(stderr);
    goto done;
  }
  if (!out) {
    fprintf(stderr, "peerd sim: a sweep needs --out DIR (its trials and sweep.json go there)\n");
    goto done;
  }
  for (size_t s = 0; s < p.nset; s++)
    for (size_t k = 0; k < p.naxes; k++)
      if (name_len(p.set[s]) == strlen(p.axes[k].name) &&
          strncmp(p.set[s], p.axes[k].name, strlen(p.axes[k].name)) == 0) {
        fprintf(stderr, "peerd sim: %s is both --set and --sweep\n", p.axes[k].name);
        goto done;
      }
  if (!plan_count(&p)) {
    fprintf(stderr, "peerd sim: the sweep is too big (at most %llu trials)\n", MAX_TOTAL);
    goto done;
  }
  if (have_trial && have_jobs && jobs != 1) {
    fprintf(stderr, "peerd sim: --trial runs one trial: no --jobs\n");
    goto done;
  }
  if (have_trial && trial >= p.total) {
    fprintf(stderr, "peerd sim: --trial %" PRIu64 " out of range: the sweep has %" PRIu64
                    " trials (0..%" PRIu64 ": point K / %" PRIu64 ", trial K %% %" PRIu64 ")\n",
            trial, p.total, p.total - 1, p.trials, p.trials);
    goto done;
  }
  if (access(p.scenario, R_OK) != 0) {
    fprintf(stderr, "peerd sim: %s: %s\n", p.scenario, strerror(errno));
    status = 1;
    goto done;
  }
  p.base = dup_str(base_name(p.scenario));
  status = 1;
  if (!p.base) goto done;
  {
    /* a directory holds one sweep: its trials would mix with another's */
    plan_t old;
    char err[PATH_MAX + 128];
    if (plan_load(out, &old, err, sizeof err) == 0) {
      bool same = plan_same(&p, &old);
      plan_free(&old);
      if (!same) {
        fprintf(stderr, "peerd sim: %s holds another sweep (its plan.json differs): use another --out\n",
                out);
        goto done;
      }
    }
  }
  int rc = pd_fs_ensure_dir(out, 0755);
  if (rc == 0) rc = plan_write(&p, out);
  if (rc != 0) {
    fprintf(stderr, "peerd sim: cannot write to %s: %s\n", out, pd_strerror(rc));
    goto done;
  }
  uint64_t failed = 0;
  if (have_trial) {
    rc = sweep_run_trials(&p, out, trial, 1, 1, (double)timeout, false, false, &failed);
    if (rc == 0) {
      char tdir[PATH_MAX];
      sweep_trial_dir(tdir, sizeof tdir, out, &p, trial);
      fprintf(stderr, "sweep: trial %" PRIu64 " (point %" PRIu64 ", trial %" PRIu64 ", seed %" PRIu64
                      ") %s: %s/results.json\n",
              trial, trial / p.trials, trial % p.trials, pd_sweep_trial_seed(p.seed, trial % p.trials),
              failed ? "failed" : "ok", tdir);
    }
    status = rc == 0 && failed == 0 ? 0 : 1;
    goto done;
  }
  fprintf(stderr, "sweep: %s, %" PRIu64 " point(s) x %" PRIu64 " trial(s) = %" PRIu64
                  " trials, %" PRIu64 " at once, into %s\n",
          p.base, p.points, p.trials, p.total, jobs, out);
  rc = sweep_run_trials(&p, out, 0, p.total, (unsigned)jobs, (double)timeout, true, !no_branch, &failed);
  if (rc != 0) goto done;
  uint64_t bad = 0;
  char *dirs[1] = {(char *)out};
  rc = aggregate(&p, dirs, 1, out, &bad, stdout);
  if (rc != 0) {
    fprintf(stderr, "peerd sim: cannot write the sweep to %s: %s\n", out, pd_strerror(rc));
    goto done;
  }
  status = bad ? 1 : 0;
done:
  plan_free(&p);
  return status;
}

int pd_sweep_merge_main(int argc, char **argv) {
  const char *out = NULL;
  char **dirs = calloc((size_t)argc + 1, sizeof *dirs);
  size_t nd = 0;
  int status = 2;
  plan_t p, q;
  memset(&p, 0, sizeof p);
  if (!dirs) return 1;
  for (int i = 1; i < argc; i++) {
    if (strcmp(argv[i], "--out") == 0) {
      if (i + 1 >= argc) {
        fprintf(stderr, "peerd sim merge: --out needs a value\n");
        goto done;
      }
      out = argv[++i];
    } else if (strcmp(argv[i], "-h") == 0 || strcmp(argv[i], "--help") == 0) {
      usage(stdout);
      status = 0;
      goto done;
    } else if (argv[i][0] == '-') {
      fprintf(stderr, "peerd sim merge: unknown flag %s\n", argv[i]);
      usage(stderr);
      goto done;
    } else {
      dirs[nd++] = argv[i];
    }
  }
  if (nd == 0) {
    fprintf(stderr, "peerd sim merge: which sweep directories?\n");
    usage(stderr);
    goto done;
  }
  if (!out) out = dirs[0];
  status = 1;
  char err[PATH_MAX + 128];
  if (plan_load(dirs[0], &p, err, sizeof err) != 0) {
    fprintf(stderr, "peerd sim merge: %s\n", err);
    goto done;
  }
  for (size_t d = 1; d < nd; d++) {
    if (plan_load(dirs[d], &q, err, sizeof err) != 0) {
      fprintf(stderr, "peerd sim merge: %s\n", err);
      goto done;
    }
    bool same = plan_same(&p, &q);
    plan_free(&q);
    if (!same) {
      fprintf(stderr, "peerd sim merge: %s and %s hold different sweeps (plan.json differs)\n", dirs[0],
              dirs[d]);
      goto done;
    }
  }
  int rc = pd_fs_ensure_dir(out, 0755);
  if (rc == 0) rc = plan_write(&p, out);
  uint64_t bad = 0;
  if (rc == 0) rc = aggregate(&p, dirs, nd, out, &bad, stdout);
  if (rc != 0) {
    fprintf(stderr, "peerd sim merge: cannot write the sweep to %s: %s\n", out, pd_strerror(rc));
    goto done;
  }
  status = bad ? 1 : 0;
done:
  plan_free(&p);
  free(dirs);
  return status;
}
