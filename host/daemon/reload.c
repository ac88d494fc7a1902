/* reload — the policy directory: reading it, loading it, reloading it.
 *
 * Owns: pd_daemon_policy_files and pd_daemon_read_policies (daemon.h); the
 * check at start that the directory exists and the first load; reloads
 * (dmn_reload_policies: on a change seen by the libuv fs watcher, debounced
 * PD_DAEMON_POLICY_DEBOUNCE_MS; on SIGHUP, from daemon.c; on POST
 * /v1/policy/reload, from apiserver.c), the old set staying in force when
 * a new one does not load; the log lines about loads and policy failures;
 * reading a directory for POST /v1/policy/check (dmn_check_policies).
 * With the built-in copy (paths.c) a reload loads that copy again and
 * nothing is watched.
 * Does not own: running policies, their sandbox and budgets (policy.c
 * through the node), the monotonic clock of their deadlines (handed to the
 * node at its creation, persist.c), closing the watcher (daemon.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "api.h"
#include "daemon_int.h"
#include "err.h"
#include "fsio.h"

const char *const pd_daemon_policy_files[5] = {
    "select.lua", "score.lua", "evict.lua", "reputation.lua", "pex.lua",
};

int pd_daemon_read_policies(const char *dir, pd_policy_file_t files[5], char *err, size_t cap) {
  struct stat st;
  if (stat(dir, &st) != 0) {
    snprintf(err, cap, "policy directory %s: %s", dir, strerror(errno));
    return PD_ENOENT;
  }
  if (!S_ISDIR(st.st_mode)) {
    snprintf(err, cap, "policy directory %s: not a directory", dir);
    return PD_EINVAL;
  }
  int n = 0;
  for (size_t i = 0; i < 5; i++) {
    char path[PATH_CAP];
    int pl = snprintf(path, sizeof path, "%s/%s", dir, pd_daemon_policy_files[i]);
    if (pl < 0 || (size_t)pl >= sizeof path) {
      snprintf(err, cap, "policy directory path too long");
      goto fail;
    }
    char *buf = NULL;
    size_t len = 0;
    int rc = pd_fs_read_all(path, PD_DAEMON_MAX_POLICY_FILE, &buf, &len);
    if (rc == -ENOENT) continue;
    if (rc < 0) {
      snprintf(err, cap, "%s: cannot read: %s", pd_daemon_policy_files[i], pd_strerror(rc));
      goto fail;
    }
    files[n].name = pd_daemon_policy_files[i];
    files[n].text = buf;
    files[n].len = len;
    n++;
  }
  return n;
fail:
  for (int k = 0; k < n; k++) free((char *)files[k].text);
  return PD_EINVAL;
}

/* Log each policy failure kind not reported yet (once per kind and load). */
void dmn_drain_policy_failures(pd_daemon_t *d) {
  int hook = 0, reason = 0;
  char msg[512];
  while (pd_policy_next_unreported(pd_node_policy(d->node), &hook, &reason, msg, sizeof msg)) {
    const char *h = pd_policy_hook_name(hook), *r = pd_policy_reason_name(reason);
    LOG(d, PD_LOG_WARN, "policy failure", "hook", h ? h : "?", "reason", r ? r : "?", "error",
        msg);
  }
}

/* Read the directory afresh and load the set; the old set stays on failure.
 * Returns 0 when the new set is in force. */
int dmn_reload_policies(pd_daemon_t *d, const char *why) {
  pd_policy_file_t files[5];
  char err[600] = "";
  int64_t now = dmn_wall_now();
  int n = d->policy_builtin ? pd_daemon_builtin_policies(files, err, sizeof err)
                            : pd_daemon_read_policies(d->cfg.policy_dir, files, err, sizeof err);
  /* the outcome is an audit event (policy_loaded / policy_failed), which
   * is also its log line (audit.c) */
  if (n < 0) {
    pd_node_policy_load_failed_by(d->node, err, why, now);
    return n;
  }
  int rc = pd_node_policy_load_by(d->node, files, (size_t)n, why, now, err, sizeof err);
  for (int i = 0; i < n; i++) free((char *)files[i].text);
  return rc < 0 ? rc : 0;
}

/* POST /v1/policy/check: read the directory the request names and have
 * the core load it into a scratch policy host (the set in force stays). */
void dmn_check_policies(pd_daemon_t *d, pd_api_response_t *resp) {
  pd_policy_file_t files[5];
  char err[600] = "";
  const char *dir = pd_api_pending_dir(resp);
  int64_t now = dmn_wall_now();
  int n = dir ? pd_daemon_read_policies(dir, files, err, sizeof err) : PD_EINVAL;
  if (n < 0) {
    pd_api_policy_checked(d->node, resp, NULL, 0, err[0] ? err : "no directory", now);
    LOG(d, PD_LOG_INFO, "policy check: cannot read", "dir", dir ? dir : "", "error", err);
    return;
  }
  pd_api_policy_checked(d->node, resp, files, (size_t)n, NULL, now);
  for (int i = 0; i < n; i++) free((char *)files[i].text);
  LOG(d, PD_LOG_INFO, "policy check", "dir", dir, "by", "api");
}

static void on_policy_debounce(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (d->stopping) return;
  dmn_reload_policies(d, "file change");
}

static void on_policy_change(uv_fs_event_t *h, const char *filename, int events, int status) {
  (void)filename;
  (void)events;
  pd_daemon_t *d = h->data;
  if (d->stopping) return;
  if (status < 0) {
    LOG(d, PD_LOG_WARN, "policy directory watch error", "dir", d->cfg.policy_dir, "error",
        uv_strerror(status));
    return;
  }
  /* editors write in bursts: reload once things are quiet */
  uv_timer_start(&d->policy_debounce, on_policy_debounce, PD_DAEMON_POLICY_DEBOUNCE_MS, 0);
}

/* The policy directory must exist; a set that does not load is logged and
 * the C defaults serve until a reload succeeds. */
int dmn_start_policies(pd_daemon_t *d) {
  struct stat st;
  errno = 0;
  if (d->policy_builtin) {
    LOG(d, PD_LOG_INFO, "no --policies and no installed policy directory: using the policies "
        "built into the binary (nothing to watch; reload reloads that copy)");
  } else if (stat(d->cfg.policy_dir, &st) != 0 || !S_ISDIR(st.st_mode)) {
    LOG(d, PD_LOG_ERROR, "policy directory missing", "dir", d->cfg.policy_dir, "error",
        errno ? strerror(errno) : "not a directory");
    return -1;
  }
  if (dmn_reload_policies(d, "start") < 0) {
    LOG(d, PD_LOG_WARN, "running with the built-in C defaults until a policy set loads", "dir",
        d->cfg.policy_dir);
  }
  return 0;
}

/* Watch the directory: a change reloads once things are quiet. Without a
 * watcher SIGHUP and the API still reload. */
void dmn_start_policy_watch(pd_daemon_t *d) {
  uv_timer_init(&d->loop, &d->policy_debounce);
  d->policy_debounce.data = d;
  if (!d->policy_builtin && uv_fs_event_init(&d->loop, &d->policy_watch) == 0) {
    d->policy_watch.data = d;
    int wrc = uv_fs_event_start(&d->policy_watch, on_policy_change, d->cfg.policy_dir, 0);
    if (wrc == 0) {
      d->policy_watching = true;
    } else {
      uv_close((uv_handle_t *)&d->policy_watch, dmn_on_handle_closed);
      LOG(d, PD_LOG_WARN, "cannot watch the policy directory; reload with SIGHUP or the API",
          "dir", d->cfg.policy_dir, "error", uv_strerror(wrc));
    }
  }
}
