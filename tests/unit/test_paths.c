/* Unit tests for paths.c: the data directory (flag, $STATE_DIRECTORY,
 * ./peerd-data; made absolute), the policy source in its order (flag,
 * beside the executable, the prefix, the built-in copy) on real
 * directories in a fresh temporary tree, and the built-in copy itself
 * (byte for byte the source tree's policies/ files). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <ftw.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include "daemon.h"
#include "err.h"

/* ---- data directory ------------------------------------------------------ */

static void data_dir_from_flag(void **state) {
  (void)state;
  char out[256];
  const char *from = NULL;
  assert_int_equal(pd_daemon_pick_data_dir("/srv/peerd", "/var/lib/peerd", "/home/x", out,
                                           sizeof out, &from), 0);
  assert_string_equal(out, "/srv/peerd");
  assert_string_equal(from, "flag");
  /* relative flags are joined to the start directory */
  assert_int_equal(pd_daemon_pick_data_dir("data", NULL, "/home/x", out, sizeof out, &from), 0);
  assert_string_equal(out, "/home/x/data");
  assert_int_equal(pd_daemon_pick_data_dir("./data", NULL, "/home/x/", out, sizeof out, NULL), 0);
  assert_string_equal(out, "/home/x/data");
  assert_int_equal(pd_daemon_pick_data_dir(".//./d/e", NULL, "/", out, sizeof out, NULL), 0);
  assert_string_equal(out, "/d/e");
  assert_int_equal(pd_daemon_pick_data_dir(".", NULL, "/home/x", out, sizeof out, NULL), 0);
  assert_string_equal(out, "/home/x");
  assert_int_equal(pd_daemon_pick_data_dir("../y", NULL, "/home/x", out, sizeof out, NULL), 0);
  assert_string_equal(out, "/home/x/../y");
}

static void data_dir_from_state_directory(void **state) {
  (void)state;
  char out[256];
  const char *from = NULL;
  assert_int_equal(pd_daemon_pick_data_dir(NULL, "/var/lib/peerd", "/", out, sizeof out, &from), 0);
  assert_string_equal(out, "/var/lib/peerd");
  assert_string_equal(from, "STATE_DIRECTORY");
  /* several StateDirectory= entries: the first */
  assert_int_equal(pd_daemon_pick_data_dir(NULL, "/var/lib/peerd:/var/lib/other", "/", out,
                                           sizeof out, &from), 0);
  assert_string_equal(out, "/var/lib/peerd");
}

static void data_dir_default(void **state) {
  (void)state;
  char out[256];
  const char *from = NULL;
  assert_int_equal(pd_daemon_pick_data_dir(NULL, NULL, "/home/x", out, sizeof out, &from), 0);
  assert_string_equal(out, "/home/x/peerd-data");
  assert_string_equal(from, "default");
  /* an empty $STATE_DIRECTORY (or one starting with ':') is not a directory */
  assert_int_equal(pd_daemon_pick_data_dir(NULL, "", "/home/x", out, sizeof out, &from), 0);
  assert_string_equal(out, "/home/x/peerd-data");
  assert_int_equal(pd_daemon_pick_data_dir(NULL, ":/a", "/home/x", out, sizeof out, &from), 0);
  assert_string_equal(from, "default");
}

static void data_dir_errors(void **state) {
  (void)state;
  char out[32];
  assert_int_equal(pd_daemon_pick_data_dir("", NULL, "/x", out, sizeof out, NULL), PD_EINVAL);
  /* relative without a usable start directory */
  assert_int_equal(pd_daemon_pick_data_dir("d", NULL, NULL, out, sizeof out, NULL), PD_EINVAL);
  assert_int_equal(pd_daemon_pick_data_dir("d", NULL, "rel", out, sizeof out, NULL), PD_EINVAL);
  /* too long for out */
  assert_int_equal(pd_daemon_pick_data_dir("/a/very/long/directory/name/indeed", NULL, "/", out,
                                           sizeof out, NULL), PD_ETOOBIG);
  assert_int_equal(pd_daemon_pick_data_dir("a-long-relative-name", NULL, "/home/someone", out,
                                           sizeof out, NULL), PD_ETOOBIG);
}

/* ---- policy source ------------------------------------------------------- */

typedef struct tree {
  char root[512]; /* canonical */
} tree_t;

static int tree_setup(void **state) {
  tree_t *t = calloc(1, sizeof *t);
  if (!t) return -1;
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  char tmpl[256], real[PATH_MAX];
  snprintf(tmpl, sizeof tmpl, "%.200s/test_paths-XXXXXX", base);
  if (!mkdtemp(tmpl) || !realpath(tmpl, real) || strlen(real) >= sizeof t->root) {
    free(t);
    return -1;
  }
  strcpy(t->root, real);
  *state = t;
  return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int tree_teardown(void **state) {
  tree_t *t = *state;
  nftw(t->root, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(t);
  return 0;
}

/* mkdir -p root/rel */
static void mkdirs(const tree_t *t, const char *rel) {
  char p[PATH_MAX];
  snprintf(p, sizeof p, "%s/%s", t->root, rel);
  for (char *s = p + strlen(t->root) + 1; *s; s++) {
    if (*s != '/') continue;
    *s = '\0';
    mkdir(p, 0700);
    *s = '/';
  }
  assert_int_equal(mkdir(p, 0700), 0);
}

static void policy_flag_wins(void **state) {
  tree_t *t = *state;
  char exe[PATH_MAX], out[PATH_MAX];
  mkdirs(t, "share/peerd/policies");
  snprintf(exe, sizeof exe, "%s/bin/peerd", t->root);
  /* even a missing directory: start then fails loudly, it is not skipped */
  assert_int_equal(pd_daemon_pick_policy_dir("/nonexistent/policies", exe, NULL, out, sizeof out),
                   PD_POLICY_FROM_FLAG);
  assert_string_equal(out, "/nonexistent/policies");
  assert_int_equal(pd_daemon_pick_policy_dir("rel/pol", exe, NULL, out, sizeof out),
                   PD_POLICY_FROM_FLAG);
  assert_string_equal(out, "rel/pol");
}

static void policy_beside_the_binary(void **state) {
  tree_t *t = *state;
  char exe[PATH_MAX], out[PATH_MAX], want[PATH_MAX + 32], prefix[PATH_MAX + 32];
  mkdirs(t, "opt/peerd/bin");
  mkdirs(t, "opt/peerd/share/peerd/policies");
  mkdirs(t, "usr/share/peerd/policies");
  snprintf(exe, sizeof exe, "%s/opt/peerd/bin/peerd", t->root);
  snprintf(want, sizeof want, "%s/opt/peerd/share/peerd/policies", t->root);
  snprintf(prefix, sizeof prefix, "%s/usr/share/peerd/policies", t->root);
  /* the relocated prefix beats the compiled-in one; the path is canonical */
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, exe, prefix, out, sizeof out),
                   PD_POLICY_FROM_EXE);
  assert_string_equal(out, want);
  assert_null(strstr(out, ".."));
}

static void policy_prefix_then_builtin(void **state) {
  tree_t *t = *state;
  char exe[PATH_MAX], out[PATH_MAX], prefix[PATH_MAX + 32], file[PATH_MAX + 32];
  snprintf(exe, sizeof exe, "%s/build/peerd", t->root); /* a build tree: nothing beside it */
  mkdirs(t, "build");
  snprintf(prefix, sizeof prefix, "%s/usr/share/peerd/policies", t->root);
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, exe, prefix, out, sizeof out),
                   PD_POLICY_FROM_BUILTIN);
  assert_string_equal(out, "");
  /* a file where the directory should be is not a policy directory */
  mkdirs(t, "share/peerd");
  snprintf(file, sizeof file, "%s/share/peerd/policies", t->root);
  FILE *f = fopen(file, "w");
  assert_non_null(f);
  fclose(f);
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, exe, prefix, out, sizeof out),
                   PD_POLICY_FROM_BUILTIN);
  mkdirs(t, "usr/share/peerd/policies");
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, exe, prefix, out, sizeof out),
                   PD_POLICY_FROM_PREFIX);
  assert_string_equal(out, prefix);
  /* no executable path (or a relative one): straight to the prefix */
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, NULL, prefix, out, sizeof out),
                   PD_POLICY_FROM_PREFIX);
  assert_int_equal(pd_daemon_pick_policy_dir(NULL, "peerd", NULL, out, sizeof out),
                   PD_POLICY_FROM_BUILTIN);
}

static void policy_origin_names(void **state) {
  (void)state;
  assert_string_equal(pd_daemon_policy_origin_name(PD_POLICY_FROM_FLAG), "flag");
  assert_string_equal(pd_daemon_policy_origin_name(PD_POLICY_FROM_EXE), "installed");
  assert_string_equal(pd_daemon_policy_origin_name(PD_POLICY_FROM_PREFIX), "prefix");
  assert_string_equal(pd_daemon_policy_origin_name(PD_POLICY_FROM_BUILTIN), "builtin");
  assert_null(pd_daemon_policy_origin_name(4));
  assert_null(pd_daemon_policy_origin_name(-1));
}

/* ---- the built-in copy ----------------------------------------------------- */

static void builtin_matches_the_source_tree(void **state) {
  (void)state;
  const char *src = getenv("PEERD_SOURCE_DIR");
  assert_non_null(src);
  pd_policy_file_t files[PD_DAEMON_POLICY_FILES];
  char err[128] = "";
  int n = pd_daemon_builtin_policies(files, err, sizeof err);
  assert_int_equal(n, PD_DAEMON_POLICY_FILES); /* policies/ has all six */
  for (int i = 0; i < n; i++) {
    /* in the order the daemon reads a directory */
    assert_string_equal(files[i].name, pd_daemon_policy_files[i]);
    char path[PATH_MAX];
    snprintf(path, sizeof path, "%s/policies/%s", src, files[i].name);
    FILE *f = fopen(path, "rb");
    assert_non_null(f);
    static char want[1024 * 1024];
    size_t wl = fread(want, 1, sizeof want, f);
    fclose(f);
    assert_int_equal(files[i].len, wl);
    assert_memory_equal(files[i].text, want, wl);
    assert_int_equal(files[i].text[wl], '\0');
    free((char *)files[i].text);
  }
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(data_dir_from_flag),
      cmocka_unit_test(data_dir_from_state_directory),
      cmocka_unit_test(data_dir_default),
      cmocka_unit_test(data_dir_errors),
      cmocka_unit_test_setup_teardown(policy_flag_wins, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(policy_beside_the_binary, tree_setup, tree_teardown),
      cmocka_unit_test_setup_teardown(policy_prefix_then_builtin, tree_setup, tree_teardown),
      cmocka_unit_test(policy_origin_names),
      cmocka_unit_test(builtin_matches_the_source_tree),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
