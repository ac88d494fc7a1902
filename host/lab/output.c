/* output — what a lab run writes and prints (scenario lab; sim.h).
 *
 * Owns: the results document (results.json: scenario, seed, parameters,
 * status, the scenario's results; byte-identical for the same scenario and
 * seed), series.csv, plots of the series when gnuplot is installed
 * (plots.gp and one image per series; fork/exec of gnuplot, not part of the
 * determinism check), the summary table on the log (hosts, virtual and wall
 * time, events by kind, frames sent, addresses received, policy calls by
 * hook, memory per host,
 * the results), the process's resident set.
 * Does not own: what goes into results and series (scenario.c), deciding
 * where and whether to write (pd_sim_run: sim.c), the progress lines of a
 * run (sim.c), files' atomic writes (fsio).
 */
#include "lab.h"

#include <errno.h>
#include <fcntl.h>
#include <inttypes.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/wait.h>
#include <unistd.h>

#include "err.h"
#include "fsio.h"

/* The event kinds' names, in the order of the EV_ enum (lab.h). */
static const char *const ev_kind_name[EV_KINDS] = {
    "-", "timer", "connect", "connected", "dial_fail", "bytes", "fin", "resolved", "lua", "watch", "flood", "pool",
    "dht_packet", "dht_timer"};

static const char *base_name(const char *p) {
  const char *b = strrchr(p, '/');
  return b ? b + 1 : p;
}

char *lab_results_doc(sim_t *s, size_t *len) {
  json_t *root = json_object();
  json_object_set_new(root, "scenario", json_string(base_name(s->o->scenario ? s->o->scenario : "-")));
  json_object_set_new(root, "seed", json_integer((json_int_t)s->seed));
  json_t *params = json_object();
  for (size_t i = 0; i < s->nparams; i++) {
    const char *p = s->params[i], *eq = strchr(p, '=');
    if (!eq) continue;
    char k[128];
    snprintf(k, sizeof k, "%.*s", (int)(eq - p) < 127 ? (int)(eq - p) : 127, p);
    json_object_set_new(params, k, json_string(eq + 1));
  }
  json_object_set_new(root, "params", params);
  json_object_set_new(root, "status", json_string(s->failed ? "failed" : "ok"));
  if (s->failed) json_object_set_new(root, "error", json_string(s->err));
  json_object_set_new(root, "hosts", json_integer((json_int_t)s->nhosts));
  json_object_set_new(root, "virtual_time_s", json_real((double)s->now / 1000.0));
  json_object_set_new(root, "events", json_integer((json_int_t)s->events));
  json_object_set(root, "results", s->results);
  char *out = json_dumps(root, JSON_INDENT(2) | JSON_PRESERVE_ORDER | JSON_REAL_PRECISION(17));
  json_decref(root);
  if (out) {
    size_t n = strlen(out);
    char *o2 = realloc(out, n + 2);
    if (o2) {
      out = o2;
      out[n++] = '\n';
      out[n] = 0;
    }
    *len = n;
  }
  return out;
}

int lab_write_series(sim_t *s, const char *dir) {
  size_t cap = 64 + s->nseries * 96, n = 0;
  char *buf = malloc(cap);
  if (!buf) return PD_ENOMEM;
  n += (size_t)snprintf(buf, cap, "time_s,name,value\n");
  for (size_t i = 0; i < s->nseries; i++) {
    const sim_sample_t *x = &s->series[i];
    size_t need = strlen(x->name) + 64;
    if (n + need >= cap) {
      cap = (cap + need) * 2;
      char *nb = realloc(buf, cap);
      if (!nb) {
        free(buf);
        return PD_ENOMEM;
      }
      buf = nb;
    }
    if (x->is_int)
      n += (size_t)snprintf(buf + n, cap - n, "%.3f,%s,%lld\n", (double)x->t / 1000.0, x->name,
                            x->iv);
    else
      n += (size_t)snprintf(buf + n, cap - n, "%.3f,%s,%.17g\n", (double)x->t / 1000.0, x->name,
                            x->v);
  }
  int rc = pd_fs_write_atomic(dir, "series.csv", buf, n, 0644);
  free(buf);
  return rc;
}


/* ---- plots (gnuplot, when installed; not part of the determinism check) ---- */

#define SIM_MAX_PLOTS 32

/* Run `gnuplot plots.gp` in dir (fork/exec, output silenced). true when it
 * exited 0; false when gnuplot is missing or failed. */
static bool run_gnuplot(const char *dir) {
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
    execlp("gnuplot", "gnuplot", "plots.gp", (char *)NULL);
    _exit(127);
  }
  int st = 0;
  while (waitpid(pid, &st, 0) < 0)
    if (errno != EINTR) return false;
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

/* Make *buf (capacity *cap) hold more than need bytes, doubling; on failure
 * frees it and returns false. */
static bool room(char **buf, size_t *cap, size_t need) {
  if (need < *cap) return true;
  while (*cap <= need) *cap *= 2;
  char *nb = realloc(*buf, *cap);
  if (!nb) {
    free(*buf);
    *buf = NULL;
    return false;
  }
  *buf = nb;
  return true;
}

/* One plot per series name (first SIM_MAX_PLOTS names, in order of first
 * record): plot-NAME.png (pngcairo, else png) or .svg, and plots.gp, the
 * gnuplot script with the data inline. Returns how many plots were made. */
size_t lab_write_plots(sim_t *s, const char *dir) {
  if (!s->nseries || !gnuplot_on_path()) return 0;
  const char *names[SIM_MAX_PLOTS];
  size_t nn = 0;
  for (size_t i = 0; i < s->nseries && nn < SIM_MAX_PLOTS; i++) {
    bool seen = false;
    for (size_t k = 0; k < nn && !seen; k++) seen = strcmp(names[k], s->series[i].name) == 0;
    if (!seen) names[nn++] = s->series[i].name;
  }
  static const char *const terms[][2] = {{"pngcairo size 900,500", "png"},
                                         {"png size 900,500", "png"},
                                         {"svg size 900,500", "svg"}};
  for (size_t t = 0; t < 3; t++) {
    size_t cap = 4096 + s->nseries * 48 + nn * 512, len = 0;
    char *gp = malloc(cap);
    if (!gp) return 0;
    len += (size_t)snprintf(gp + len, cap - len,
                            "# generated by peerd sim: plots of series.csv\n"
                            "set terminal %s\nset grid\nset key off\n"
                            "set xlabel \"virtual time (s)\"\n",
                            terms[t][0]);
    for (size_t k = 0; k < nn; k++) {
      char safe[128];
      size_t j = 0;
      for (const char *c = names[k]; *c && j + 1 < sizeof safe; c++)
        safe[j++] = (char)((*c >= 'a' && *c <= 'z') || (*c >= 'A' && *c <= 'Z') ||
                                   (*c >= '0' && *c <= '9') || *c == '-' || *c == '.'
                               ? *c
                               : '_');
      safe[j] = 0;
      len += (size_t)snprintf(gp + len, cap - len, "$d%zu << EOD\n", k);
      for (size_t i = 0; i < s->nseries; i++) {
        const sim_sample_t *x = &s->series[i];
        if (strcmp(x->name, names[k]) != 0) continue;
        if (!room(&gp, &cap, len + 64)) return 0;
        len += (size_t)snprintf(gp + len, cap - len, "%.3f %.17g\n", (double)x->t / 1000.0,
                                x->is_int ? (double)x->iv : x->v);
      }
      if (!room(&gp, &cap, len + 512)) return 0;
      len += (size_t)snprintf(gp + len, cap - len,
                              "EOD\nset output \"plot-%s.%s\"\nset title \"%s\" noenhanced\n"
                              "set ylabel \"%s\" noenhanced\nplot $d%zu using 1:2 with lines lw 2\n"
                              "set output\n",
                              safe, terms[t][1], safe, safe, k);
    }
    int rc = pd_fs_write_atomic(dir, "plots.gp", gp, len, 0644);
    free(gp);
    if (rc != 0) return 0;
    if (run_gnuplot(dir)) return nn;
  }
  return 0;
}

size_t lab_rss_bytes(void) {
  FILE *f = fopen("/proc/self/statm", "r");
  if (!f) return 0;
  unsigned long size = 0, res = 0;
  int k = fscanf(f, "%lu %lu", &size, &res);
  fclose(f);
  return k == 2 ? (size_t)res * 4096 : 0;
}

size_t lab_peak_rss_bytes(void) {
  struct rusage ru;
  if (getrusage(RUSAGE_SELF, &ru) != 0 || ru.ru_maxrss <= 0) return 0;
  return (size_t)ru.ru_maxrss * 1024; /* Linux: KiB */
}

void lab_summary(sim_t *s, const pd_sim_report_t *r) {
  FILE *f = s->log;
  if (!f) return;
  double ev_s = r->wall_s > 0 ? (double)r->events / r->wall_s : 0;
  double ratio = r->wall_s > 0 ? ((double)r->virtual_ms / 1000.0) / r->wall_s : 0;
  fprintf(f, "\n== %s  seed %" PRIu64 "  %s ==\n", base_name(s->o->scenario ? s->o->scenario : "-"),
          s->seed, s->failed ? "FAILED" : "ok");
  fprintf(f, "%-22s %zu\n", "hosts", r->hosts);
  fprintf(f, "%-22s %.1f s\n", "virtual time", (double)r->virtual_ms / 1000.0);
  fprintf(f, "%-22s %" PRIu64 "\n", "events", r->events);
  fprintf(f, "%-22s %.3f s\n", "wall time", r->wall_s);
  fprintf(f, "%-22s %.0f\n", "events/s", ev_s);
  /* Whole numbers from 10x up; below, two significant digits (a big run
   * slower than real time printed "0x"). */
  if (ratio >= 10) fprintf(f, "%-22s %.0fx\n", "virtual:wall", ratio);
  else fprintf(f, "%-22s %.2gx\n", "virtual:wall", ratio);
  if (r->hosts && r->rss_bytes)
    fprintf(f, "%-22s %.1f KiB (RSS %.1f MiB, peak %.1f MiB)\n", "memory per host",
            (double)r->rss_bytes / 1024.0 / (double)r->hosts, (double)r->rss_bytes / 1048576.0,
            (double)r->peak_rss_bytes / 1048576.0);
  if (r->events) {
    fprintf(f, "%-22s", "events by kind");
    for (int k = 1; k < EV_KINDS; k++)
      if (s->ev_kind[k])
        fprintf(f, " %s %.1f%%", ev_kind_name[k], 100.0 * (double)s->ev_kind[k] / (double)r->events);
    fprintf(f, "\n");
    uint64_t fr[PD_WIRE_TYPE_COUNT], tot = 0, ad[3], calls[PD_HOOK_COUNT];
    memcpy(fr, s->frames_stopped, sizeof fr);
    memcpy(ad, s->addrs_stopped, sizeof ad);
    memcpy(calls, s->calls_stopped, sizeof calls);
    for (size_t i = 0; i < s->nhosts; i++) {
      if (!s->hosts[i]->up) continue;
      pd_netmgr_counters_t c;
      pd_netmgr_counters(s->hosts[i]->m, &c);
      for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++) fr[t] += c.frames_out[t];
      ad[0] += c.addrs_received;
      ad[1] += c.addrs_added;
      ad[2] += c.addrs_refused;
      lab_host_policy_calls(s->hosts[i], calls);
    }
    for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++) tot += fr[t];
    fprintf(f, "%-22s %" PRIu64 ":", "frames sent", tot);
    for (size_t t = 0; t < PD_WIRE_TYPE_COUNT; t++)
      if (fr[t]) fprintf(f, " %s %" PRIu64, pd_wire_type_name((unsigned)t), fr[t]);
    fprintf(f, "\n");
    /* Each one costs a pex.lua call and a book lookup: the address intake. */
    fprintf(f, "%-22s %" PRIu64 " (new reference in the book %" PRIu64 ", refused %" PRIu64 ")\n",
            "addresses received", ad[0], ad[1], ad[2]);
    /* Lua calls, by hook (each a pcall under the instruction budget's
     * count hook): with the intake, most of a big trial's time. */
    fprintf(f, "%-22s", "policy calls");
    for (int k = 0; k < PD_HOOK_COUNT; k++)
      if (calls[k]) fprintf(f, " %s %" PRIu64, pd_policy_hook_name(k), calls[k]);
    fprintf(f, "\n");
    if (s->dht_sent)
      fprintf(f, "%-22s %" PRIu64 " sent (delivered %" PRIu64 ", dropped %" PRIu64 ")\n",
              "DHT datagrams", s->dht_sent, s->dht_delivered, s->dht_dropped);
  }
  if (json_object_size(s->results)) {
    fprintf(f, "-- results --\n");
    const char *k;
    json_t *v;
    json_object_foreach(s->results, k, v) {
      char *t = json_dumps(v, JSON_ENCODE_ANY | JSON_COMPACT | JSON_REAL_PRECISION(6));
      fprintf(f, "%-22s %s\n", k, t ? t : "?");
      free(t);
    }
  }
  if (s->failed) fprintf(f, "error: %s\n", s->err);
  fflush(f);
}
