/* paths — where a running daemon finds its files, decided once at start.
 *
 * Owns: the choice of the data directory (pd_daemon_pick_data_dir:
 * --data-dir, else $STATE_DIRECTORY as systemd sets it for StateDirectory=,
 * else ./peerd-data; made absolute against the start directory so the log
 * and GET /v1/status name it exactly); the choice of the policy source
 * (pd_daemon_pick_policy_dir: --policies; the installed layout next to the
 * binary, <dir of the executable>/../share/peerd/policies, so a relocated
 * prefix works; the install prefix's share/peerd/policies compiled in as
 * PEERD_PREFIX_POLICY_DIR; else the copy of the policies/ .lua files built into the
 * binary); reading that built-in copy (pd_daemon_builtin_policies);
 * dmn_resolve_paths, which applies both to a daemon and logs the outcome.
 * The source tree is never a default.
 * Does not own: creating and locking the data directory (daemon.c), reading
 * a policy directory and (re)loading policies (reload.c), the bytes of the
 * built-in copy (generated at build time by cmake/embed_policies.cmake).
 */
#include <errno.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon_int.h"
#include "err.h"

#ifndef PEERD_PREFIX_POLICY_DIR
#define PEERD_PREFIX_POLICY_DIR "/usr/local/share/peerd/policies"
#endif

/* The built-in copy: the generated source (builtin_policies.c in the build
 * directory) defines these; each text is NUL-terminated, len excludes it. */
extern const size_t pd_builtin_policy_count;
extern const char *const pd_builtin_policy_names[];
extern const unsigned char *const pd_builtin_policy_texts[];
extern const size_t pd_builtin_policy_lens[];

static const char *const origin_names[] = {"flag", "installed", "prefix", "builtin"};

const char *pd_daemon_policy_origin_name(int origin) {
  if (origin < 0 || origin > PD_POLICY_FROM_BUILTIN) return NULL;
  return origin_names[origin];
}

static bool is_dir(const char *p) {
  struct stat st;
  return stat(p, &st) == 0 && S_ISDIR(st.st_mode);
}

static int copy_str(char *out, size_t cap, const char *s) {
  size_t n = strlen(s);
  if (n >= cap) return PD_ETOOBIG;
  memcpy(out, s, n + 1);
  return 0;
}

int pd_daemon_pick_data_dir(const char *flag, const char *state_env, const char *cwd, char *out,
                            size_t cap, const char **from) {
  const char *dummy;
  if (!from) from = &dummy;
  char first[PATH_CAP];
  const char *p;
  if (flag) {
    p = flag;
    *from = "flag";
  } else if (state_env && *state_env && *state_env != ':') {
    /* systemd joins several StateDirectory= entries with ':'; ours is the first */
    size_t n = strcspn(state_env, ":");
    if (n >= sizeof first) return PD_ETOOBIG;
    memcpy(first, state_env, n);
    first[n] = '\0';
    p = first;
    *from = "STATE_DIRECTORY";
  } else {
    p = PD_DAEMON_DEFAULT_DATA_DIR;
    *from = "default";
  }
  if (!*p) return PD_EINVAL;
  if (p[0] == '/') return copy_str(out, cap, p);
  if (!cwd || cwd[0] != '/') return PD_EINVAL;
  while (p[0] == '.' && p[1] == '/') {
    p += 2;
    while (*p == '/') p++;
  }
  if (strcmp(p, ".") == 0 || !*p) return copy_str(out, cap, cwd);
  size_t cl = strlen(cwd);
  bool slash = cl > 0 && cwd[cl - 1] == '/';
  int w = snprintf(out, cap, "%s%s%s", cwd, slash ? "" : "/", p);
  if (w < 0 || (size_t)w >= cap) return PD_ETOOBIG;
  return 0;
}

/* dir/../share/peerd/policies of the directory holding exe, canonical. */
static int beside_exe(const char *exe, char *out, size_t cap) {
  const char *slash = exe ? strrchr(exe, '/') : NULL;
  if (!slash || exe[0] != '/') return PD_ENOENT;
  char cand[PATH_CAP];
  int w = snprintf(cand, sizeof cand, "%.*s/../share/peerd/policies", (int)(slash - exe), exe);
  if (w < 0 || (size_t)w >= sizeof cand) return PD_ETOOBIG;
  if (!is_dir(cand)) return PD_ENOENT;
  char real[PATH_MAX];
  if (!realpath(cand, real)) return copy_str(out, cap, cand);
  return copy_str(out, cap, real);
}

int pd_daemon_pick_policy_dir(const char *flag, const char *exe, const char *prefix_dir, char *out,
                              size_t cap) {
  if (cap == 0) return PD_EINVAL;
  out[0] = '\0';
  if (flag) {
    int rc = copy_str(out, cap, flag);
    return rc < 0 ? rc : PD_POLICY_FROM_FLAG;
  }
  int rc = beside_exe(exe, out, cap);
  if (rc == 0) return PD_POLICY_FROM_EXE;
  if (rc == PD_ETOOBIG) return rc;
  if (prefix_dir && *prefix_dir && is_dir(prefix_dir)) {
    rc = copy_str(out, cap, prefix_dir);
    return rc < 0 ? rc : PD_POLICY_FROM_PREFIX;
  }
  return PD_POLICY_FROM_BUILTIN;
}

int pd_daemon_builtin_policies(pd_policy_file_t files[PD_DAEMON_POLICY_FILES], char *err, size_t cap) {
  int n = 0;
  for (size_t i = 0; i < PD_DAEMON_POLICY_FILES; i++) {
    for (size_t k = 0; k < pd_builtin_policy_count; k++) {
      if (strcmp(pd_builtin_policy_names[k], pd_daemon_policy_files[i]) != 0) continue;
      size_t len = pd_builtin_policy_lens[k];
      char *text = malloc(len + 1);
      if (!text) {
        snprintf(err, cap, "built-in policies: out of memory");
        for (int j = 0; j < n; j++) free((char *)files[j].text);
        return PD_ENOMEM;
      }
      memcpy(text, pd_builtin_policy_texts[k], len + 1);
      files[n].name = pd_daemon_policy_files[i];
      files[n].text = text;
      files[n].len = len;
      n++;
      break;
    }
  }
  return n;
}

int dmn_resolve_paths(pd_daemon_t *d) {
  char cwd[PATH_CAP] = "";
  if (!getcwd(cwd, sizeof cwd)) cwd[0] = '\0';
  const char *from = NULL;
  int rc = pd_daemon_pick_data_dir(d->cfg.data_dir, getenv(PD_DAEMON_STATE_DIR_ENV), cwd,
                                   d->data_dir_buf, sizeof d->data_dir_buf, &from);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot resolve the data directory", "dir",
        d->cfg.data_dir ? d->cfg.data_dir : PD_DAEMON_DEFAULT_DATA_DIR, "error",
        cwd[0] ? pd_strerror(rc) : "the current directory is unknown");
    return -1;
  }
  d->cfg.data_dir = d->data_dir_buf;
  d->data_dir_from = from;

  char exe[PATH_CAP];
  size_t el = sizeof exe;
  if (uv_exepath(exe, &el) != 0) exe[0] = '\0';
  int origin = pd_daemon_pick_policy_dir(d->cfg.policy_dir, exe, PEERD_PREFIX_POLICY_DIR,
                                         d->policy_dir_buf, sizeof d->policy_dir_buf);
  if (origin < 0) {
    LOG(d, PD_LOG_ERROR, "cannot resolve the policy directory", "error", pd_strerror(origin));
    return -1;
  }
  d->policy_origin = origin;
  d->policy_builtin = origin == PD_POLICY_FROM_BUILTIN;
  d->cfg.policy_dir = d->policy_builtin ? PD_DAEMON_BUILTIN_POLICY_NAME : d->policy_dir_buf;
  return 0;
}
