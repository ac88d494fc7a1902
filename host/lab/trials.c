/* trials — the worker processes of a sweep (sweep_int.h; docs/scenarios.md,
 * "Sweeps" and "Branching").
 *
 * Owns: running trials of a plan as child processes, at most J simulating
 * at once (J tokens in a pipe, as make's jobserver: a process that
 * simulates holds one); a trial's files (DIR/trials/pP-tT/log.txt and
 * results.json, or a failed stand-in for a trial that died without one);
 * --trial-timeout; progress on stderr (at most once a second); and
 * branching. The trials of one trial number t share their seed at every
 * point (common random numbers), so when a scenario calls sim.branch() and
 * reads no swept parameter before it, everything before the branch is the
 * same at every point. A group (the trials of one t) then runs as one
 * process up to sim.branch(); there it forks one process per point, each
 * carrying on with its own point's parameters and log (which starts with a
 * copy of the shared part's), while the group's process only waits for
 * them, within the same J tokens, starting them longest expected first (the
 * mean wall time of each point's finished branches, as the parent knew it
 * when the group started: pd_sweep_branch_order). A branch's results are
 * byte-identical to the trial run from t = 0 (`--no-branch`, `--trial K`):
 * only the wall time changes. A scenario that never calls sim.branch() runs
 * every trial from the start: the rest of the group goes back to the queue
 * as single trials.
 * Does not own: the plan, the aggregation and the command lines (sweep.c);
 * running a scenario (pd_sim_run, sim.c; sim.branch() in scenario.c).
 */
#include "sweep_int.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <math.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/types.h>
#include <sys/wait.h>
#include <unistd.h>
#ifdef __linux__
#include <sys/mman.h>
#include <sys/prctl.h>
#endif

#include "err.h"
#include "fsio.h"
#include "sim.h"
#include "sweep.h"

/* What a group's process tells the parent, one write each (atomic: smaller
 * than PIPE_BUF). */
enum { REC_BRANCHED = 1, REC_DONE = 2 };
typedef struct rec {
  uint64_t g;
  uint32_t kind;
  uint32_t arg;  /* REC_DONE: failed; REC_BRANCHED: the swept parameters read before */
  double secs;   /* REC_DONE of a branch: its wall seconds (0: not timed) */
} rec_t;

/* A branch copies the group's memory page by page as it writes to it (fork's
 * copy-on-write): at 1,000 hosts nearly all of it, ~150,000 faults, and on a
 * virtual machine each fault costs microseconds of system time. Breaking the
 * sharing in bulk first, one madvise(MADV_POPULATE_WRITE) per writable
 * private anonymous mapping that is mostly resident, copies the same pages
 * without the faults. Sparse mappings are left alone: populating would
 * allocate what was only reserved (AddressSanitizer's shadow is terabytes).
 * Only a hint: on a kernel without it (< 5.14) or on failure the branch
 * faults as before; nothing else changes. */
static void unshare_memory(void) {
#if defined(__linux__) && defined(MADV_POPULATE_WRITE)
  FILE *f = fopen("/proc/self/smaps", "r");
  if (!f) return;
  char line[512];
  unsigned long lo = 0, hi = 0;
  bool candidate = false;
  while (fgets(line, sizeof line, f)) {
    unsigned long a = 0, b = 0, inode = 1;
    char perms[8] = {0}, dev[16] = {0};
    unsigned long long off = 0, rss_kb = 0;
    int path = 0;
    if (sscanf(line, "%lx-%lx %7s %llx %15s %lu %n", &a, &b, perms, &off, dev, &inode, &path) >= 6) {
      /* a mapping's first line: anonymous (no inode), writable, private;
       * the heap, not the stack or the kernel's specials */
      lo = a;
      hi = b;
      candidate = inode == 0 && strcmp(perms, "rw-p") == 0 &&
                  !(path > 0 && line[path] == '[' && strncmp(line + path, "[heap]", 6) != 0);
    } else if (candidate && sscanf(line, "Rss: %llu kB", &rss_kb) == 1) {
      candidate = false;
      if (hi > lo && rss_kb * 1024 * 2 >= (unsigned long long)(hi - lo))
        (void)madvise((void *)lo, hi - lo, MADV_POPULATE_WRITE);
    }
  }
  fclose(f);
#endif
}

static void send_rec(int fd, uint64_t g, uint32_t kind, uint32_t arg, double secs) {
  rec_t r = {g, kind, arg, secs};
  ssize_t w;
  do w = write(fd, &r, sizeof r);
  while (w < 0 && errno == EINTR);
}

static bool take_token(int fd) {
  char c;
  ssize_t r;
  do r = read(fd, &c, 1);
  while (r < 0 && errno == EINTR);
  return r == 1;
}

static void give_token(int fd) {
  ssize_t w;
  do w = write(fd, "+", 1);
  while (w < 0 && errno == EINTR);
}

/* Trials g1 and g2 (of one trial number) share what runs before the branch
 * when their points agree on every swept parameter read before it (bit a
 * of mask: axis a). */
static bool same_before_branch(const plan_t *p, uint64_t g1, uint64_t g2, uint32_t mask) {
  for (size_t a = 0; a < p->naxes && a < 32; a++)
    if ((mask >> a & 1u) && sweep_point_index(p, g1 / p->trials, a) != sweep_point_index(p, g2 / p->trials, a))
      return false;
  return true;
}

void pd_sweep_fmt_duration(char *b, size_t cap, double s) {
  if (!b || cap == 0) return;
  if (!(s >= 0)) s = 0;
  if (s < 119.95) { /* what "%.1f" shows below 120.0 */
    snprintf(b, cap, "%.1fs", s);
    return;
  }
  /* rounded once, then split: 2219.96 s is 37m00s, not 36m60s */
  long long t = llround(s);
  if (t < 7200) {
    snprintf(b, cap, "%lldm%02llds", t / 60, t % 60);
  } else {
    long long m = llround(s / 60);
    snprintf(b, cap, "%lldh%02lldm", m / 60, m % 60);
  }
}

/* Expected seconds of point pt's branches; +inf when never timed. */
static double branch_cost(uint64_t pt, const double *secs, const uint32_t *runs) {
  if (!secs || !runs || runs[pt] == 0) return INFINITY;
  return secs[pt] / runs[pt];
}

void pd_sweep_branch_order(uint64_t *g, size_t n, uint64_t trials, const double *secs,
                           const uint32_t *runs) {
  if (!g || trials == 0) return;
  /* insertion sort: a group holds one trial per point, a handful */
  for (size_t i = 1; i < n; i++) {
    uint64_t v = g[i];
    double cv = branch_cost(v / trials, secs, runs);
    size_t j = i;
    for (; j > 0; j--) {
      uint64_t u = g[j - 1];
      double cu = branch_cost(u / trials, secs, runs);
      if (cu > cv || (cu == cv && u / trials <= v / trials)) break;
      g[j] = u;
    }
    g[j] = v;
  }
}

/* ---- one trial's files --------------------------------------------------- */

/* A results.json for a trial that died without writing one. */
static int write_standin(const plan_t *p, uint64_t g, const char *tdir, const char *why) {
  json_t *o = json_object();
  json_object_set_new(o, "scenario", json_string(p->base));
  json_object_set_new(o, "seed", json_integer((json_int_t)pd_sweep_trial_seed(p->seed, g % p->trials)));
  json_object_set_new(o, "params", sweep_point_params(p, g / p->trials));
  json_object_set_new(o, "status", json_string("failed"));
  json_object_set_new(o, "error", json_string(why));
  size_t len = 0;
  char *s = sweep_dump_doc(o, &len);
  json_decref(o);
  if (!s) return PD_ENOMEM;
  int rc = pd_fs_write_atomic(tdir, "results.json", s, len, 0644);
  free(s);
  return rc;
}

/* After the process of trial g ended with wait status st (timed_out: killed
 * by us; why: a reason that overrides it, or NULL): a failed results.json
 * when it left none. true when the trial failed. */
static bool trial_settle(const plan_t *p, uint64_t g, const char *dir, int st, bool timed_out,
                         double timeout_s, const char *why_given) {
  char tdir[PATH_MAX], path[PATH_MAX + 16], why[256] = "";
  sweep_trial_dir(tdir, sizeof tdir, dir, p, g);
  snprintf(path, sizeof path, "%s/results.json", tdir);
  if (why_given)
    snprintf(why, sizeof why, "%s", why_given);
  else if (timed_out)
    snprintf(why, sizeof why, "killed after --trial-timeout %g s", timeout_s);
  else if (WIFSIGNALED(st))
    snprintf(why, sizeof why, "trial killed by signal %d", WTERMSIG(st));
  else if (!WIFEXITED(st) || WEXITSTATUS(st) > 1 || access(path, F_OK) != 0)
    snprintf(why, sizeof why, "trial exited with status %d without results (see its log.txt)",
             WIFEXITED(st) ? WEXITSTATUS(st) : -1);
  if (why[0]) {
    (void)unlink(path);
    if (write_standin(p, g, tdir, why) != 0) fprintf(stderr, "peerd sim: cannot write %s\n", path);
    return true;
  }
  return WEXITSTATUS(st) != 0;
}

/* A failed trial, said on stderr with the error its results.json gives. */
static void trial_report_failed(const plan_t *p, uint64_t g, const char *dir) {
  char tdir[PATH_MAX], path[PATH_MAX + 16];
  sweep_trial_dir(tdir, sizeof tdir, dir, p, g);
  snprintf(path, sizeof path, "%s/results.json", tdir);
  json_t *o = json_load_file(path, 0, NULL);
  const char *e = json_string_value(json_object_get(o, "error"));
  fprintf(stderr, "sweep: trial %" PRIu64 " (point %" PRIu64 ", trial %" PRIu64 ") failed: %s; see %s/\n", g,
          g / p->trials, g % p->trials, e ? e : "?", tdir);
  json_decref(o);
}

static int mkdirs(const char *dir, const plan_t *p, uint64_t g) {
  char path[PATH_MAX];
  int rc = pd_fs_ensure_dir(dir, 0755);
  snprintf(path, sizeof path, "%s/trials", dir);
  if (rc == 0) rc = pd_fs_ensure_dir(path, 0755);
  sweep_trial_dir(path, sizeof path, dir, p, g);
  if (rc == 0) rc = pd_fs_ensure_dir(path, 0755);
  return rc;
}

/* ---- a group's process --------------------------------------------------- */

typedef struct wctx {
  const plan_t *p;
  const char *dir;
  uint64_t *g; /* the group's trials (one trial number); g[0] runs up to the branch */
  size_t ng;
  int js_r, js_w, rec_w; /* the token pipe, the record pipe */
  double timeout_s;
  const double *secs;   /* per point: wall seconds of its finished branches */
  const uint32_t *runs; /* per point: how many */
  pid_t self; /* the group's process */
  /* the trial this process runs (a branch's process changes it) */
  uint64_t cur;
  char tdir[PATH_MAX];
} wctx_t;

/* Point stdout and stderr at tdir/log.txt, which starts with the bytes of
 * shared (the log up to the branch; NULL: none). */
static void open_log(const char *tdir, const char *shared) {
  char path[PATH_MAX + 16];
  snprintf(path, sizeof path, "%s/log.txt", tdir);
  int fd = open(path, O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (fd < 0) return;
  int in = shared ? open(shared, O_RDONLY | O_CLOEXEC) : -1;
  if (in >= 0) {
    char buf[16384];
    ssize_t r;
    while ((r = read(in, buf, sizeof buf)) > 0 || (r < 0 && errno == EINTR))
      if (r > 0 && write(fd, buf, (size_t)r) != r) break;
    close(in);
  }
  dup2(fd, 1);
  dup2(fd, 2);
  close(fd);
}

/* sim.branch() in a group's process. A group of one carries on as it is.
 * Otherwise: fork a process per trial of the group (at most as many at once
 * as tokens can be had: this process's own, then more from the pipe), each
 * returning from here with its point's parameters; wait for them, settle
 * their files, tell the parent each one's end, and _exit. */
static int on_branch(void *vctx, int64_t vms, uint32_t swept_read, const char *const **params,
                     size_t *nparams) {
  wctx_t *c = vctx;
  const plan_t *p = c->p;
  if (c->ng < 2) return 0;
  /* only the points that agree with this one on what was read before */
  size_t keep = 1;
  for (size_t i = 1; i < c->ng; i++)
    if (same_before_branch(p, c->g[0], c->g[i], swept_read)) c->g[keep++] = c->g[i];
  if (keep < c->ng) {
    printf("sim.branch() at %.3f s: swept parameter(s)", (double)vms / 1000.0);
    for (size_t a = 0; a < p->naxes && a < 32; a++)
      if (swept_read >> a & 1u) printf(" %s", p->axes[a].name);
    printf(" read before it: %zu of %zu points share this run\n", keep, c->ng);
  }
  c->ng = keep;
  char shared[PATH_MAX], log0[PATH_MAX + 16];
  /* named by the group's first trial: two groups of one trial number (split
   * by a parameter read before the branch) may branch at the same time, and
   * one's clean-up must not remove the other's shared log */
  snprintf(shared, sizeof shared, "%s/trials/g%" PRIu64 "-shared.log", c->dir, c->g[0]);
  snprintf(log0, sizeof log0, "%s/log.txt", c->tdir);
  fflush(stdout);
  fflush(stderr);
  send_rec(c->rec_w, c->g[0], REC_BRANCHED, swept_read, 0);
  if (c->ng < 2) return 0; /* the parent takes the others back */
  if (rename(log0, shared) != 0) shared[0] = 0;
  /* the parent's branch timings as of this group's start (fork's copy) */
  pd_sweep_branch_order(c->g, c->ng, p->trials, c->secs, c->runs);
  typedef struct kid {
    pid_t pid;
    double t0;
  } kid_t;
  kid_t *kid = calloc(c->ng, sizeof *kid);
  if (!kid) _exit(3);
  size_t next = 0, ndone = 0, running = 0, held = 1;
  bool any_failed = false;
  while (ndone < c->ng) {
    while (next < c->ng && (running < held || (take_token(c->js_r) && ++held))) {
      fflush(stdout);
      fflush(stderr);
      pid_t pid = fork();
      if (pid == 0) {
#ifdef __linux__
        (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
        if (getppid() != c->self) _exit(3);
        unshare_memory();
        c->cur = c->g[next];
        sweep_trial_dir(c->tdir, sizeof c->tdir, c->dir, p, c->cur);
        open_log(c->tdir, shared[0] ? shared : NULL);
        size_t n = 0;
        char **v = sweep_trial_params(p, c->cur / p->trials, &n);
        if (!v) _exit(3);
        free(kid);
        *params = (const char *const *)v;
        *nparams = n;
        return 0;
      }
      if (pid < 0) {
        if (running) break; /* again when one is done */
        any_failed |= trial_settle(p, c->g[next], c->dir, 0, false, 0, "cannot fork the trial's branch");
        send_rec(c->rec_w, c->g[next], REC_DONE, 1, 0);
        next++;
        ndone++;
        continue;
      }
      kid[next] = (kid_t){pid, sweep_mono_s()};
      next++;
      running++;
    }
    bool reaped = false;
    for (size_t k = 0; k < next; k++) {
      if (!kid[k].pid) continue;
      int st = 0;
      bool timed_out = false;
      pid_t r = waitpid(kid[k].pid, &st, WNOHANG);
      if (r == 0 && c->timeout_s > 0 && sweep_mono_s() - kid[k].t0 > c->timeout_s) {
        kill(kid[k].pid, SIGKILL);
        do r = waitpid(kid[k].pid, &st, 0); /* bounded: SIGKILL cannot be caught */
        while (r < 0 && errno == EINTR);
        timed_out = true;
      }
      if (r == 0 || (r < 0 && errno == EINTR)) continue;
      if (r < 0) st = 0x7f00; /* lost: as if it exited 127 */
      bool f = trial_settle(p, c->g[k], c->dir, st, timed_out, c->timeout_s, NULL);
      any_failed |= f;
      send_rec(c->rec_w, c->g[k], REC_DONE, f ? 1u : 0u, f ? 0 : sweep_mono_s() - kid[k].t0);
      kid[k].pid = 0;
      running--;
      ndone++;
      reaped = true;
    }
    /* nothing left to start: hand back the tokens no branch needs (this
     * process's own goes back when the parent reaps it) */
    if (next == c->ng)
      while (held > 1 && held > running) {
        give_token(c->js_w);
        held--;
      }
    if (!reaped && ndone < c->ng) sweep_nap_ms(20);
  }
  free(kid);
  if (shared[0]) (void)unlink(shared);
  _exit(any_failed ? 1 : 0);
}

/* A group's process: run trial g[0] (a group of several branches at
 * sim.branch()) and _exit (0 ok, 1 the scenario failed, 3 no results
 * document). Never returns. */
_Noreturn static void group_run(wctx_t *c, pid_t parent) {
#ifdef __linux__
  (void)prctl(PR_SET_PDEATHSIG, SIGKILL);
#endif
  if (getppid() != parent) _exit(3);
  c->self = getpid();
  c->cur = c->g[0];
  sweep_trial_dir(c->tdir, sizeof c->tdir, c->dir, c->p, c->cur);
  int nul = open("/dev/null", O_RDONLY);
  if (nul >= 0) dup2(nul, 0);
  open_log(c->tdir, NULL);
  const plan_t *p = c->p;
  size_t np = 0;
  char **params = sweep_trial_params(p, c->cur / p->trials, &np);
  const char **swept = calloc(p->naxes + 1, sizeof *swept);
  if (!params || !swept) _exit(3);
  for (size_t a = 0; a < p->naxes; a++) swept[a] = p->axes[a].name;
  pd_sim_options_t o;
  memset(&o, 0, sizeof o);
  o.scenario = p->scenario;
  o.seed = pd_sweep_trial_seed(p->seed, c->cur % p->trials);
  o.params = (const char *const *)params;
  o.nparams = np;
  o.log = stdout;
  o.swept = swept;
  o.nswept = p->naxes;
  o.branch = on_branch;
  o.branch_ctx = c;
  char *doc = NULL;
  size_t len = 0;
  char err[1024];
  int rc = pd_sim_run(&o, &doc, &len, NULL, err, sizeof err);
  /* here in the process of trial c->cur: g[0], or a branch */
  int code = rc == 0 ? 0 : 1;
  if (!doc || pd_fs_write_atomic(c->tdir, "results.json", doc, len, 0644) != 0) code = 3;
  if (rc != 0) printf("peerd sim: %s\n", err[0] ? err : pd_strerror(rc));
  fflush(stdout);
  _exit(code);
}

/* ---- the parent ---------------------------------------------------------- */

typedef struct group {
  pid_t pid; /* 0: a free slot */
  uint64_t *g;
  bool *done; /* per trial: its REC_DONE came */
  size_t ng;
  bool branched;
  double t0;
} group_t;

typedef struct runner {
  const plan_t *p;
  const char *dir;
  uint64_t first, count;
  unsigned jobs;
  double timeout_s;
  bool branch;
  int js[2], rp[2];
  uint8_t *started; /* per trial first..first+count-1 */
  uint64_t head;    /* the queue's first index that may be pending */
  group_t *slot;
  uint64_t *left; /* per point: trials not finished */
  double *secs;   /* per point: wall seconds of its finished branches */
  uint32_t *runs; /* per point: how many */
  uint64_t done, failed, pts_done;
  uint64_t shared_runs, branched_trials; /* runs that branched, and their branches */
} runner_t;

/* The queue is every trial in order of (trial number, point): a group's
 * trials are neighbours. Index i -> g, or UINT64_MAX when g is outside the
 * range run. */
static uint64_t queue_g(const runner_t *r, uint64_t i) {
  const plan_t *p = r->p;
  uint64_t g = (i % p->points) * p->trials + i / p->points;
  return g >= r->first && g < r->first + r->count ? g : UINT64_MAX;
}

/* The next group to start: the first pending trial and, when branching,
 * every pending trial with its trial number. 1, 0 when none is pending, or
 * PD_ENOMEM. */
static int next_group(runner_t *r, group_t *gr) {
  const plan_t *p = r->p;
  uint64_t n = p->total;
  while (r->head < n) {
    uint64_t g = queue_g(r, r->head);
    if (g != UINT64_MAX && !r->started[g - r->first]) break;
    r->head++;
  }
  if (r->head >= n) return 0;
  uint64_t t = r->head / p->points, end = r->branch ? (t + 1) * p->points : r->head + 1;
  size_t ng = 0;
  for (uint64_t i = r->head; i < end; i++) {
    uint64_t g = queue_g(r, i);
    if (g != UINT64_MAX && !r->started[g - r->first]) ng++;
  }
  gr->g = calloc(ng, sizeof *gr->g);
  gr->done = calloc(ng, sizeof *gr->done);
  if (!gr->g || !gr->done) {
    free(gr->g);
    free(gr->done);
    return PD_ENOMEM;
  }
  gr->ng = 0;
  for (uint64_t i = r->head; i < end; i++) {
    uint64_t g = queue_g(r, i);
    if (g == UINT64_MAX || r->started[g - r->first]) continue;
    r->started[g - r->first] = 1;
    gr->g[gr->ng++] = g;
  }
  gr->branched = false;
  return 1;
}

/* Trial g finished (failed or not). */
static void trial_done(runner_t *r, uint64_t g, bool failed) {
  if (failed) {
    trial_report_failed(r->p, g, r->dir);
    r->failed++;
  }
  r->done++;
  if (--r->left[g / r->p->trials] == 0) r->pts_done++;
}

/* Trial g goes back to the queue. */
static void requeue(runner_t *r, uint64_t g) {
  r->started[g - r->first] = 0;
  uint64_t idx = (g % r->p->trials) * r->p->points + g / r->p->trials;
  if (idx < r->head) r->head = idx;
}

/* The group's process reached sim.branch() having read the swept
 * parameters in mask: the trials whose points differ in them go back to
 * the queue (a group of their own shares their run); with two or more left
 * the process now only waits for its branches. */
static void branched(runner_t *r, group_t *gr, uint32_t mask) {
  size_t keep = 1;
  for (size_t i = 1; i < gr->ng; i++) {
    if (same_before_branch(r->p, gr->g[0], gr->g[i], mask)) {
      gr->g[keep] = gr->g[i];
      gr->done[keep++] = gr->done[i];
    } else {
      requeue(r, gr->g[i]);
    }
  }
  gr->ng = keep;
  gr->branched = keep > 1;
  if (gr->branched) {
    r->shared_runs++;
    r->branched_trials += keep;
  }
}

/* Read every record the groups' processes wrote. true when any came. */
static bool drain_records(runner_t *r) {
  bool any = false;
  rec_t rec;
  for (;;) {
    ssize_t n = read(r->rp[0], &rec, sizeof rec);
    if (n < 0 && errno == EINTR) continue;
    if (n != (ssize_t)sizeof rec) break;
    any = true;
    group_t *gr = NULL;
    size_t i = 0;
    for (unsigned k = 0; k < r->jobs && !gr; k++)
      if (r->slot[k].pid)
        for (i = 0; i < r->slot[k].ng; i++)
          if (r->slot[k].g[i] == rec.g) {
            gr = &r->slot[k];
            break;
          }
    if (!gr) continue;
    if (rec.kind == REC_BRANCHED && i == 0) branched(r, gr, rec.arg);
    if (rec.kind == REC_DONE && !gr->done[i]) {
      gr->done[i] = true;
      if (rec.arg == 0 && rec.secs > 0) {
        r->secs[rec.g / r->p->trials] += rec.secs;
        r->runs[rec.g / r->p->trials]++;
      }
      trial_done(r, rec.g, rec.arg != 0);
    }
  }
  return any;
}

/* The group's process ended with status st. */
static void group_reaped(runner_t *r, group_t *gr, int st, bool timed_out) {
  drain_records(r); /* what it wrote before it ended */
  if (!gr->branched) {
    /* it ran g[0] alone: the others were never started */
    bool f = trial_settle(r->p, gr->g[0], r->dir, st, timed_out, r->timeout_s, NULL);
    trial_done(r, gr->g[0], f);
    for (size_t i = 1; i < gr->ng; i++) requeue(r, gr->g[i]);
    if (gr->ng > 1) r->branch = false; /* the scenario does not call sim.branch() */
  } else {
    char why[160];
    snprintf(why, sizeof why, "the process of this trial's shared part ended (%s %d) before this branch did",
             WIFSIGNALED(st) ? "signal" : "status", WIFSIGNALED(st) ? WTERMSIG(st) : WEXITSTATUS(st));
    for (size_t i = 0; i < gr->ng; i++)
      if (!gr->done[i]) trial_done(r, gr->g[i], trial_settle(r->p, gr->g[i], r->dir, st, false, 0, why));
  }
  free(gr->g);
  free(gr->done);
  memset(gr, 0, sizeof *gr);
  give_token(r->js[1]);
}

/* With nothing running every token is back: refill the pipe to J (a group
 * that died holding more than its own would otherwise shrink J). */
static void reset_tokens(runner_t *r) {
  while (take_token(r->js[0])) {
  }
  for (unsigned k = 0; k < r->jobs; k++) give_token(r->js[1]);
}

static int start_group(runner_t *r, unsigned k, pid_t self) {
  group_t *gr = &r->slot[k];
  for (size_t i = 0; i < gr->ng; i++) {
    char tdir[PATH_MAX], path[PATH_MAX + 16];
    sweep_trial_dir(tdir, sizeof tdir, r->dir, r->p, gr->g[i]);
    int rc = mkdirs(r->dir, r->p, gr->g[i]);
    if (rc != 0) {
      fprintf(stderr, "peerd sim: cannot create %s: %s\n", tdir, pd_strerror(rc));
      return rc;
    }
    snprintf(path, sizeof path, "%s/results.json", tdir);
    (void)unlink(path); /* a stale result must not pass for this run's */
  }
  fflush(stdout);
  fflush(stderr);
  pid_t pid = fork();
  if (pid == 0) {
    close(r->rp[0]);
    wctx_t c = {.p = r->p, .dir = r->dir, .g = gr->g, .ng = gr->ng, .js_r = r->js[0], .js_w = r->js[1],
                .rec_w = r->rp[1], .timeout_s = r->timeout_s, .secs = r->secs, .runs = r->runs};
    group_run(&c, self);
  }
  if (pid < 0) return -errno;
  gr->pid = pid;
  gr->t0 = sweep_mono_s();
  return 0;
}

static int pipe_nb(int fd[2], bool nb_write) {
  if (pipe(fd) != 0) return -errno;
  (void)fcntl(fd[0], F_SETFL, fcntl(fd[0], F_GETFL) | O_NONBLOCK);
  if (nb_write) (void)fcntl(fd[1], F_SETFL, fcntl(fd[1], F_GETFL) | O_NONBLOCK);
  return 0;
}

int sweep_run_trials(const plan_t *p, const char *dir, uint64_t first, uint64_t count, unsigned jobs,
                     double timeout_s, bool progress, bool branch, uint64_t *nfailed) {
  runner_t r = {.p = p, .dir = dir, .first = first, .count = count, .jobs = jobs, .timeout_s = timeout_s,
                .branch = branch && p->points > 1, .js = {-1, -1}, .rp = {-1, -1}};
  r.slot = calloc(jobs, sizeof *r.slot);
  r.left = calloc(p->points, sizeof *r.left);
  r.secs = calloc(p->points, sizeof *r.secs);
  r.runs = calloc(p->points, sizeof *r.runs);
  r.started = calloc(count ? count : 1, 1);
  int rc = 0;
  if (!r.slot || !r.left || !r.secs || !r.runs || !r.started) rc = PD_ENOMEM;
  if (rc == 0) rc = pipe_nb(r.js, true);
  if (rc == 0) rc = pipe_nb(r.rp, false);
  if (rc != 0) goto out;
  reset_tokens(&r);
  for (uint64_t g = first; g < first + count; g++) r.left[g / p->trials]++;
  uint64_t pts = 0;
  for (uint64_t i = 0; i < p->points; i++) pts += r.left[i] != 0;
  unsigned running = 0;
  double t0 = sweep_mono_s(), last = t0;
  pid_t self = getpid();
  while (r.done < count || running > 0) { /* every process reaped, not only every trial done */
    /* start what fits: a free slot and a token */
    while (rc == 0 && running < jobs) {
      unsigned k = 0;
      while (r.slot[k].pid) k++;
      if (!take_token(r.js[0])) break;
      int ng = next_group(&r, &r.slot[k]);
      if (ng <= 0) {
        give_token(r.js[1]);
        rc = ng;
        break;
      }
      int src = start_group(&r, k, self);
      if (src != 0) {
        give_token(r.js[1]);
        for (size_t i = 0; i < r.slot[k].ng; i++) r.started[r.slot[k].g[i] - first] = 0;
        free(r.slot[k].g);
        free(r.slot[k].done);
        memset(&r.slot[k], 0, sizeof r.slot[k]);
        if (src == -EAGAIN && running) break; /* try again when a group is done */
        if (src != -EAGAIN) fprintf(stderr, "peerd sim: cannot start a trial: %s\n", pd_strerror(src));
        rc = src;
        break;
      }
      running++;
    }
    if (rc != 0 && running == 0) break;
    bool reaped = drain_records(&r);
    for (unsigned k = 0; k < jobs; k++) {
      group_t *gr = &r.slot[k];
      if (!gr->pid) continue;
      int st = 0;
      bool timed_out = false;
      pid_t w = waitpid(gr->pid, &st, WNOHANG);
      /* before its branch a group's process is one trial; after it, its
       * branches have their own timeouts */
      if (w == 0 && timeout_s > 0 && !gr->branched && sweep_mono_s() - gr->t0 > timeout_s) {
        drain_records(&r);
        if (!gr->branched) {
          kill(gr->pid, SIGKILL);
          do w = waitpid(gr->pid, &st, 0); /* bounded: SIGKILL cannot be caught */
          while (w < 0 && errno == EINTR);
          timed_out = true;
        }
      }
      if (w == 0 || (w < 0 && errno == EINTR)) continue;
      if (w < 0) st = 0x7f00; /* lost: as if it exited 127 */
      group_reaped(&r, gr, st, timed_out);
      running--;
      reaped = true;
      if (running == 0) reset_tokens(&r);
    }
    double now = sweep_mono_s();
    if (progress && ((reaped && (r.done == count || now - last >= 1.0)) || now - last >= 10.0)) {
      char el[32], eta[32] = "?";
      pd_sweep_fmt_duration(el, sizeof el, now - t0);
      if (r.done) pd_sweep_fmt_duration(eta, sizeof eta, (now - t0) / (double)r.done * (double)(count - r.done));
      fprintf(stderr,
              "sweep: %" PRIu64 "/%" PRIu64 " trials, %" PRIu64 "/%" PRIu64
              " points done, %" PRIu64 " failed, %u running, elapsed %s, ETA %s\n",
              r.done, count, r.pts_done, pts, r.failed, running, el, r.done == count ? "0s" : eta);
      last = now;
    }
    if (!reaped && (r.done < count || running > 0)) sweep_nap_ms(20);
  }
  if (progress && r.shared_runs)
    fprintf(stderr, "sweep: %" PRIu64 " of %" PRIu64 " trials branched from %" PRIu64 " shared runs at sim.branch()\n",
            r.branched_trials, count, r.shared_runs);
out:
  for (int i = 0; i < 2; i++) {
    if (r.js[i] >= 0) close(r.js[i]);
    if (r.rp[i] >= 0) close(r.rp[i]);
  }
  free(r.slot);
  free(r.left);
  free(r.secs);
  free(r.runs);
  free(r.started);
  *nfailed = r.failed;
  return rc;
}
