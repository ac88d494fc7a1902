/* sim — the scenario lab driver: a run from options to results (sim.h and
 * docs/scenarios.md; the lab's files and their types: lab.h).
 *
 * Owns: pd_sim_run (the run's state, its seeded RNG streams, loading and
 * running the scenario, writing the outputs, the report) and pd_sim_main
 * (`peerd sim`'s command line); the run loop behind sim.run (events popped
 * in (time, sequence) order, each dispatched by kind, the virtual clock
 * advanced to each), its progress lines on the log (at every tenth of a run
 * and at least every minute of wall time) and returning freed heap to the
 * system; freeing a run. The wall clock is read here only for the log and
 * the report, never into output files.
 * Does not own: the event queue (queue.c), what each event does (links.c,
 * attackers.c, scenario.c), the Lua API (scenario.c), output files and the
 * lab_summary (output.c).
 */
#include "lab.h"

#include <errno.h>
#include <inttypes.h>
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <stdlib.h>
#include <string.h>

#include <lauxlib.h>

#include "err.h"
#include "fsio.h"
#include "intern.h"
#include "sweep.h"

static double wall_seconds(void) {
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

#define PROGRESS_WALL_S 60.0

static void progress(sim_t *s, int64_t until) {
  if (!s->log) return;
  size_t up = 0, atmin = 0, cnt = 0;
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (!h->up) continue;
    up++;
    if (!lab_is_node(h)) continue;
    cnt++;
    if (lab_host_outbound(h) >= lab_host_min_out(h)) atmin++;
  }
  double w = wall_seconds() - ((double)s->wall0.tv_sec + (double)s->wall0.tv_nsec / 1e9);
  fprintf(s->log, "sim: t=%.0fs/%.0fs events=%" PRIu64 " up=%zu at_min_out=%zu/%zu wall=%.1fs\n",
          (double)s->now / 1000.0, (double)until / 1000.0, s->events, up, atmin, cnt, w);
  fflush(s->log);
}

/* Give freed heap pages back to the system (glibc keeps them otherwise).
 * Hosts' buffers come and go by the million; what a run holds is what it
 * uses, and that is what "memory per host" should say. */
static void trim_heap(void) {
#ifdef __GLIBC__
  (void)malloc_trim(0);
#endif
}

/* The event's effect, by kind. */
static void dispatch(sim_t *s, const pd_sim_event_t *e) {
  switch (e->kind) {
  case EV_TIMER:
    lab_timer_fire(s, e);
    return;
  case EV_CONNECT:
  case EV_CONNECTED:
  case EV_DIAL_FAIL:
  case EV_BYTES:
  case EV_FIN:
    lab_link_fire(s, e);
    return;
  case EV_RESOLVED:
    lab_resolve_fire(s, e);
    return;
  case EV_LUA:
    lab_lua_fire(s, e);
    return;
  case EV_WATCH:
    lab_watch_fire(s, e->a);
    return;
  case EV_FLOOD:
    lab_flood_fire(s, e);
    return;
  case EV_POOL:
    lab_pool_fire(s, e);
    return;
  case EV_DHT_PKT:
  case EV_DHT_TIMER:
    lab_dht_fire(s, e);
    return;
  default:
    return;
  }
}

/* sim.run(until): run the events due until then (virtual ms). false when the
 * run failed (s->err says why); else the clock is at `until` at least. */
bool lab_run_until(sim_t *s, int64_t until) {
  int64_t start = s->now;
  int64_t step = (until - start) / 10;
  if (step < 1000) step = 1000;
  int64_t next_prog = start + step;
  pd_sim_event_t e;
  /* Progress at every tenth of the run, and at least every PROGRESS_WALL_S
   * of wall time (checked every 64 Ki events): a long run keeps telling
   * how far it got. The log is not an output file: wall time may steer it. */
  double last_prog = wall_seconds();
  while (!s->failed && pd_sim_queue_peek_time(&s->q) <= until && pd_sim_queue_pop(&s->q, &e)) {
    if ((s->events & ((1u << 21) - 1)) == 0) trim_heap(); /* every 2 M events */
    if ((s->events & ((1u << 16) - 1)) == 0 && wall_seconds() - last_prog >= PROGRESS_WALL_S) {
      int64_t keep = s->now;
      if (e.t > s->now) s->now = e.t;
      progress(s, until);
      s->now = keep;
      last_prog = wall_seconds();
    }
    while (e.t >= next_prog && next_prog < until) {
      int64_t keep = s->now;
      s->now = next_prog;
      progress(s, until);
      s->now = keep;
      next_prog += step;
      last_prog = wall_seconds();
    }
    s->now = e.t;
    s->events++;
    if (e.kind < EV_KINDS) s->ev_kind[e.kind]++;
    dispatch(s, &e);
  }
  if (s->failed) return false;
  if (s->now < until) s->now = until;
  trim_heap();
  progress(s, until);
  return true;
}

static void sim_free(sim_t *s) {
  if (s->L) lua_close(s->L);
  s->L = NULL; /* lab_dht_stop: the callbacks' references went with the state */
  for (size_t i = 0; i < s->nhosts; i++) {
    sim_host_t *h = s->hosts[i];
    if (h->up) {
      lab_dht_stop(s, (uint32_t)i);
      pd_netmgr_destroy(h->m);
      pd_node_destroy(h->node);
    }
    pd_identity_wipe(&h->ident);
    free(h->saved);
    free(h->seeds);
    free(h->links);
    free(h->link_cid);
    free(h->policy_dir);
    free(h->targets);
    free(h->persist);
    free(h->bootnodes);
    free(h->waits);
    lab_pool_free(h);
  }
  for (size_t i = 0; i < s->hcap; i++) free(s->hosts[i]);
  free(s->hosts);
  pd_sim_event_t e;
  while (pd_sim_queue_pop(&s->q, &e))
    if (e.kind == EV_BYTES || e.kind == EV_DHT_PKT) free(e.p);
  pd_sim_queue_free(&s->q);
  free(s->links);
  free(s->apool);
  free(s->apool_host);
  free(s->aset);
  free(s->amap);
  free(s->group_fill);
  pd_intern_destroy(s->records); /* after every host's record table */
  for (size_t i = 0; i < s->nnames; i++) {
    free(s->names[i].name);
    free(s->names[i].hosts);
  }
  free(s->names);
  for (size_t i = 0; i < s->npsets; i++) {
    for (size_t k = 0; k < s->psets[i].n; k++) free((char *)s->psets[i].files[k].text);
    free(s->psets[i].dir);
  }
  free(s->psets);
  for (size_t i = 0; i < s->nwatches; i++) free(s->watches[i].name);
  free(s->watches);
  for (size_t i = 0; i < s->nseries; i++) free(s->series[i].name);
  free(s->series);
  json_decref(s->results);
  free(s);
}

int pd_sim_run(const pd_sim_options_t *o, char **results_json, size_t *len, pd_sim_report_t *rep,
               char *err, size_t cap) {
  if (results_json) *results_json = NULL;
  if (len) *len = 0;
  if (err && cap) err[0] = 0;
  if (!o || (!o->scenario && !o->scenario_text)) return PD_EINVAL;
  sim_t *s = calloc(1, sizeof *s);
  if (!s) return PD_ENOMEM;
  s->o = o;
  s->params = o->params;
  s->nparams = o->nparams;
  s->log = o->log;
  s->seed = o->seed;
  s->free_link = NO_IDX;
  pd_sim_queue_init(&s->q);
  pd_rng_seed(&s->net_rng, o->seed * 0x2545F4914F6CDD1Dull + 1);
  pd_rng_seed(&s->lua_rng, o->seed * 0x2545F4914F6CDD1Dull + 2);
  pd_rng_seed(&s->atk_rng, o->seed * 0x2545F4914F6CDD1Dull + 3);
  pd_rng_seed(&s->diam_rng, o->seed * 0x2545F4914F6CDD1Dull + 4);
  {
    pd_rng_t kr; /* the lab's handshake key: fixed by the seed, drawn from no stream in use */
    pd_rng_seed(&kr, o->seed * 0x2545F4914F6CDD1Dull + 5);
    pd_rng_fill(&kr, s->auth_key, sizeof s->auth_key);
  }
  s->auth.sign = lab_sign;
  s->auth.verify = lab_verify;
  s->auth.ud = s;
  s->auth.null_cipher = true; /* the transport is simulated: KEYX and SEALED frames without X25519 and the cipher */
  s->rec_auth = (pd_record_auth_t){.sign = lab_sign, .verify = lab_verify, .ud = s}; /* the DHT's */
  s->lat_kind = LAT_FIXED;
  s->lat_ms = 50;
  s->connect_timeout_ms = 5000;
  s->group_fill = calloc(65536, sizeof *s->group_fill);
  {
    /* the store's index key: any key gives the same results (it only places
     * strings in its own table); fixed by the seed like the rest */
    pd_rng_t kr;
    uint8_t key[PD_INTERN_KEY_LEN];
    pd_rng_seed(&kr, o->seed * 0x2545F4914F6CDD1Dull + 6);
    pd_rng_fill(&kr, key, sizeof key);
    if (pd_intern_create(&s->records, key) < 0) s->records = NULL; /* each table its own */
  }
  s->results = json_object();
  if (o->scenario && !o->scenario_text) {
    const char *slash = strrchr(o->scenario, '/');
    if (slash)
      snprintf(s->script_dir, sizeof s->script_dir, "%.*s", (int)(slash - o->scenario), o->scenario);
    else
      snprintf(s->script_dir, sizeof s->script_dir, ".");
  }
  s->L = luaL_newstate();
  if (!s->group_fill || !s->results || !s->L) {
    sim_free(s);
    return PD_ENOMEM;
  }
  clock_gettime(CLOCK_MONOTONIC, &s->wall0);
  double w0 = wall_seconds();
  int rc = 0;
  lua_pushcfunction(s->L, lab_setup_state);
  lua_pushlightuserdata(s->L, s);
  if (lua_pcall(s->L, 1, 0, 0) != LUA_OK) {
    snprintf(s->err, sizeof s->err, "setup: %s", lua_tostring(s->L, -1));
    s->failed = true;
  } else {
    char chunk[PATH_MAX + 2];
    snprintf(chunk, sizeof chunk, "@%s", o->scenario ? o->scenario : "scenario");
    int lrc;
    if (o->scenario_text) {
      lrc = luaL_loadbufferx(s->L, o->scenario_text, strlen(o->scenario_text), chunk, "t");
    } else {
      char *buf = NULL;
      size_t blen = 0;
      int frc = pd_fs_read_all(o->scenario, 16 * 1024 * 1024, &buf, &blen);
      if (frc < 0) {
        snprintf(s->err, sizeof s->err, "%s: cannot read: %s", o->scenario, pd_strerror(frc));
        s->failed = true;
        lrc = -1;
      } else {
        lrc = luaL_loadbufferx(s->L, buf, blen, chunk, "t");
        free(buf);
      }
    }
    if (lrc > 0) {
      snprintf(s->err, sizeof s->err, "%s", lua_tostring(s->L, -1));
      lua_pop(s->L, 1);
      s->failed = true;
    } else if (lrc == 0) {
      lab_pcall_top(s, 0, false);
    }
  }
  s->wall_s = wall_seconds() - w0;
  pd_sim_report_t r = {.virtual_ms = s->now, .events = s->events, .hosts = s->nhosts,
                       .wall_s = s->wall_s, .rss_bytes = lab_rss_bytes(),
                       .peak_rss_bytes = lab_peak_rss_bytes(),
                       .assertion_failed = s->failed};
  if (rep) *rep = r;
  size_t dl = 0;
  char *doc = lab_results_doc(s, &dl);
  if (s->failed) rc = PD_EINVAL;
  if (o->out_dir && doc) {
    int wrc = pd_fs_ensure_dir(o->out_dir, 0755);
    if (wrc == 0) wrc = pd_fs_write_atomic(o->out_dir, "results.json", doc, dl, 0644);
    if (wrc == 0) wrc = lab_write_series(s, o->out_dir);
    if (wrc != 0 && rc == 0) {
      snprintf(s->err, sizeof s->err, "cannot write to %s: %s", o->out_dir, pd_strerror(wrc));
      rc = PD_EIO;
    }
    if (wrc == 0) {
      size_t np = lab_write_plots(s, o->out_dir);
      if (np && s->log) fprintf(s->log, "sim: %zu plot(s) in %s\n", np, o->out_dir);
    }
  }
  lab_summary(s, &r);
  if (err && cap) snprintf(err, cap, "%s", s->err);
  if (results_json) {
    *results_json = doc;
    if (len) *len = dl;
  } else {
    free(doc);
  }
  sim_free(s);
  return rc;
}

static void usage(FILE *f) {
  fprintf(f, "usage: peerd sim SCENARIO.lua [--seed N] [--out DIR] [--set NAME=VALUE]...\n"
             "       peerd sim SCENARIO.lua --sweep NAME=V1,V2,... [--trials N] [--jobs J] --out DIR ...\n"
             "       peerd sim merge [--out DIR] DIR...   (sweeps: docs/scenarios.md)\n");
}

int pd_sim_main(int argc, char **argv) {
  /* sweeps and their merge: sweep.c */
  if (argc >= 2 && strcmp(argv[1], "merge") == 0) return pd_sweep_merge_main(argc - 1, argv + 1);
  if (pd_sweep_wanted(argc, argv)) return pd_sweep_main(argc, argv);
  pd_sim_options_t o;
  memset(&o, 0, sizeof o);
  o.seed = 1;
  o.log = stdout;
  const char **params = calloc((size_t)argc + 1, sizeof *params);
  if (!params) return 2;
  for (int i = 1; i < argc; i++) {
    const char *a = argv[i];
    if (strcmp(a, "--seed") == 0 && i + 1 < argc) {
      char *end = NULL;
      errno = 0;
      unsigned long long v = strtoull(argv[++i], &end, 10);
      if (errno || !end || *end) {
        fprintf(stderr, "peerd sim: bad --seed %s\n", argv[i]);
        free(params);
        return 2;
      }
      o.seed = (uint64_t)v;
    } else if (strcmp(a, "--out") == 0 && i + 1 < argc) {
      o.out_dir = argv[++i];
    } else if (strcmp(a, "--set") == 0 && i + 1 < argc) {
      if (!strchr(argv[i + 1], '=')) {
        fprintf(stderr, "peerd sim: --set wants NAME=VALUE\n");
        free(params);
        return 2;
      }
      params[o.nparams++] = argv[++i];
    } else if (strcmp(a, "-h") == 0 || strcmp(a, "--help") == 0) {
      usage(stdout);
      free(params);
      return 0;
    } else if (a[0] == '-' || o.scenario) {
      usage(stderr);
      free(params);
      return 2;
    } else {
      o.scenario = a;
    }
  }
  if (!o.scenario) {
    usage(stderr);
    free(params);
    return 2;
  }
  o.params = params;
  char err[SIM_ERR_MAX];
  int rc = pd_sim_run(&o, NULL, NULL, NULL, err, sizeof err);
  free(params);
  if (rc != 0) {
    fprintf(stderr, "peerd sim: %s\n", err[0] ? err : pd_strerror(rc));
    return 1;
  }
  return 0;
}
