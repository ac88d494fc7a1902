/* daemon — the libuv driver's entry point: pd_daemon_run (see daemon.h).
 *
 * Owns: the event loop and the start-up order of the parts (data
 * directory, book, node key, policies, API server, P2P listener, network,
 * policy watcher), the 1-second housekeeping timer, the wall clock (read
 * here, in seconds and ms, and handed to the core), SIGTERM/SIGINT
 * (shutdown: listeners and connections closed, the network stopped, the
 * book saved; a second signal exits at once) and SIGHUP (policy reload),
 * the exit status; the handle helpers the parts share (dmn_refuse,
 * dmn_on_handle_closed).
 * Does not own: the parts themselves (daemon_int.h lists the files), the
 * command line (main.c).
 */
#include <errno.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <time.h>
#include <unistd.h>

#include <sodium.h>

#include "daemon_int.h"
#include "err.h"
#include "fsio.h"

/* ------------------------------------------------------------- clocks */

/* The wall clock, as the core's `now`. */
int64_t dmn_wall_now(void) { return (int64_t)time(NULL); }

/* Unix time in ms, the network side's clock. */
int64_t dmn_wall_now_ms(void) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  return (int64_t)ts.tv_sec * 1000 + ts.tv_nsec / 1000000;
}

/* ------------------------------------------------------------ handles */

void dmn_on_handle_closed(uv_handle_t *h) { (void)h; }

static void refuse_on_close(uv_handle_t *h) { free(h); }

/* A connection we cannot take (API or peer): accept and close at once. */
bool dmn_refuse(pd_daemon_t *d, uv_stream_t *server) {
  uv_tcp_t *t = malloc(sizeof *t);
  if (!t) return false;
  uv_tcp_init(&d->loop, t);
  uv_accept(server, (uv_stream_t *)t);
  uv_close((uv_handle_t *)t, refuse_on_close);
  return true;
}

/* ------------------------------------------------------- tick/signals */

static void on_tick(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (d->stopping) return;
  if (pd_node_tick(d->node, dmn_wall_now()) && !d->saving) {
    dmn_start_save(d, "periodic");
    dmn_dht_save(d); /* the routing table with the book */
  }
  dmn_net_tick(d);
  dmn_dht_tick(d);
  dmn_watch_outbound(d, dmn_wall_now());
  dmn_drain_policy_failures(d);
}

static void begin_stop(pd_daemon_t *d, const char *signame) {
  LOG(d, PD_LOG_INFO, "shutting down", "signal", signame);
  dmn_notify(d, "STOPPING=1");
  d->stopping = true;
  uv_timer_stop(&d->tick);
  uv_timer_stop(&d->policy_debounce);
  dmn_stop_shadow_watch(d);
  dmn_stop_api_listeners(d); /* TCP and unix (the socket file goes with it) */
  if (d->p2p_open) {
    uv_close((uv_handle_t *)&d->p2p_server, dmn_on_handle_closed);
    d->p2p_open = false;
  }
  dmn_stop_net(d);
  dmn_stop_dht(d);
  dmn_api_close_all(d);
  if (!d->saving) dmn_finish_stop(d);
  /* else save_after() (persist.c) calls dmn_finish_stop() */
}

void dmn_finish_stop(pd_daemon_t *d) {
  if (d->stopped) return;
  d->stopped = true;
  int rc = dmn_save_now(d, "shutdown");
  if (rc < 0) d->exit_code = 1;
  uv_close((uv_handle_t *)&d->tick, dmn_on_handle_closed);
  uv_close((uv_handle_t *)&d->sigterm, dmn_on_handle_closed);
  uv_close((uv_handle_t *)&d->sigint, dmn_on_handle_closed);
  uv_close((uv_handle_t *)&d->sighup, dmn_on_handle_closed);
  uv_close((uv_handle_t *)&d->policy_debounce, dmn_on_handle_closed);
  if (d->policy_watching) uv_close((uv_handle_t *)&d->policy_watch, dmn_on_handle_closed);
  d->policy_watching = false;
}

static void on_signal(uv_signal_t *s, int signum) {
  pd_daemon_t *d = s->data;
  if (signum == SIGHUP) {
    if (!d->stopping) {
      dmn_notify_reloading(d);
      dmn_reload_policies(d, "SIGHUP");
      dmn_notify(d, "READY=1");
    }
    return;
  }
  const char *name = signum == SIGTERM ? "SIGTERM" : signum == SIGINT ? "SIGINT" : "signal";
  if (d->stopping) {
    LOG(d, PD_LOG_WARN, "second signal: exiting now", "signal", name);
    _exit(1);
  }
  begin_stop(d, name);
}

static void walk_close(uv_handle_t *h, void *arg) {
  (void)arg;
  if (!uv_is_closing(h)) uv_close(h, NULL);
}

int pd_daemon_run(const pd_daemon_config_t *cfg) {
  if (sodium_init() < 0) {
    pd_log(cfg->log_level, PD_LOG_ERROR, "libsodium init failed", (const char *)NULL);
    return 1;
  }
  signal(SIGPIPE, SIG_IGN);
  pd_daemon_t *d = calloc(1, sizeof *d);
  if (!d) return 1;
  d->cfg = *cfg;
  uint64_t seed = cfg->seed;
  if (!cfg->has_seed) randombytes_buf(&seed, sizeof seed);
  pd_rng_seed(&d->rng, seed);
  int rc = uv_loop_init(&d->loop);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "uv_loop_init failed", "error", uv_strerror(rc));
    free(d);
    return 1;
  }
  int64_t now = dmn_wall_now();
  char si[32];
  dmn_fmt_i64(si, sizeof si, cfg->save_interval);
  int exit_code = 0;
  if (dmn_resolve_paths(d) < 0) exit_code = 1;
  cfg = &d->cfg; /* from here on, with the data directory and policy source chosen */
  if (exit_code == 0) {
    LOG(d, PD_LOG_INFO, "peerd starting", "version", PEERD_VERSION, "data_dir", cfg->data_dir,
        "data_dir_from", d->data_dir_from, "allow_private", cfg->allow_private ? "true" : "false",
        "save_interval_s", si, "policies", cfg->policy_dir, "policies_from",
        pd_daemon_policy_origin_name(d->policy_origin));
  }

  if (exit_code == 0) rc = pd_fs_ensure_dir(cfg->data_dir, 0700);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot create data directory", "dir", cfg->data_dir, "error",
        pd_strerror(rc));
    exit_code = 1;
  }
  /* One peerd per data directory: a second one would write the same book
   * and speak with the same node id. */
  d->lock_fd = -1;
  if (exit_code == 0) {
    long other = 0;
    rc = pd_fs_lock(cfg->data_dir, PD_DAEMON_LOCK_FILE, (long)getpid(), &d->lock_fd, &other);
    if (rc == -EWOULDBLOCK) {
      char pid[24];
      snprintf(pid, sizeof pid, "%ld", other);
      LOG(d, PD_LOG_ERROR, "data directory is in use by another peerd; refusing to start", "dir",
          cfg->data_dir, "pid", other > 0 ? pid : "unknown");
      exit_code = 1;
    } else if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "cannot lock the data directory", "dir", cfg->data_dir, "error",
          pd_strerror(rc));
      exit_code = 1;
    }
  }
  pd_daemon_network_magic(cfg->network, d->magic);
  if (exit_code == 0 && dmn_load_book(d, now) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_start_events(d) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_load_identity(d) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_start_policies(d) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_start_api(d) < 0) exit_code = 1;
  if (exit_code == 0 && cfg->p2p && dmn_start_p2p(d) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_start_self(d) < 0) exit_code = 1;
  if (exit_code == 0 && cfg->p2p && dmn_start_net(d) < 0) exit_code = 1;
  if (exit_code == 0 && dmn_start_dht(d) < 0) exit_code = 1;
  if (exit_code == 0 && !cfg->p2p) {
    dmn_install_net_views(d); /* no network, but the process metrics */
    LOG(d, PD_LOG_INFO, "overlay off (--p2p off): no listener, no dials");
  }
  if (exit_code == 0) {
    dmn_start_policy_watch(d);
    uv_signal_init(&d->loop, &d->sighup);
    d->sighup.data = d;
    uv_signal_start(&d->sighup, on_signal, SIGHUP);
    uv_timer_init(&d->loop, &d->tick);
    d->tick.data = d;
    uv_timer_start(&d->tick, on_tick, 1000, 1000);
    uv_signal_init(&d->loop, &d->sigterm);
    uv_signal_init(&d->loop, &d->sigint);
    d->sigterm.data = d;
    d->sigint.data = d;
    uv_signal_start(&d->sigterm, on_signal, SIGTERM);
    uv_signal_start(&d->sigint, on_signal, SIGINT);
    dmn_notify(d, "READY=1");
    uv_run(&d->loop, UV_RUN_DEFAULT);
    exit_code = d->exit_code;
  } else {
    /* start-up failed: close what was opened (the server, maybe) */
    uv_walk(&d->loop, walk_close, NULL);
    uv_run(&d->loop, UV_RUN_DEFAULT);
  }
  rc = uv_loop_close(&d->loop);
  if (rc != 0) {
    LOG(d, PD_LOG_ERROR, "event loop did not close cleanly", "error", uv_strerror(rc));
    if (exit_code == 0) exit_code = 1;
  }
  if (exit_code == 0) LOG(d, PD_LOG_INFO, "peerd stopped");
  dmn_stop_events(d);
  if (d->net) pd_netmgr_destroy(d->net);
  if (d->node) pd_node_set_dht(d->node, NULL);
  dmn_free_dht(d);
  if (d->node) pd_node_set_self(d->node, NULL);
  pd_self_destroy(d->self);
  pd_node_destroy(d->node);
  pd_fs_unlock(d->lock_fd);
  pd_identity_wipe(&d->ident);
  free(d);
  return exit_code;
}
