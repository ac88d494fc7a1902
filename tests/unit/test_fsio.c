/* Unit tests for fsio: atomic replace, failures that keep the old file,
 * read cap, move-aside naming without overwriting, mode bits, removal of
 * stale temp files (only the exact names, never links or directories). Each test
 * works in its own fresh directory under $TMPDIR (or /tmp). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <dirent.h>
#include <errno.h>
#include <ftw.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/stat.h>
#include <unistd.h>

#include "err.h"
#include "fsio.h"

typedef struct fixture {
  char dir[512];
} fixture_t;

static int setup(void **state) {
  fixture_t *f = calloc(1, sizeof *f);
  if (f == NULL) return -1;
  const char *base = getenv("TMPDIR");
  if (base == NULL || base[0] == '\0') base = "/tmp";
  snprintf(f->dir, sizeof f->dir, "%s/test_fsio-XXXXXX", base);
  if (mkdtemp(f->dir) == NULL) {
    free(f);
    return -1;
  }
  *state = f;
  return 0;
}

static int rm_one(const char *path, const struct stat *st, int flag, struct FTW *ftw) {
  (void)st;
  (void)flag;
  (void)ftw;
  return remove(path);
}

static int teardown(void **state) {
  fixture_t *f = *state;
  nftw(f->dir, rm_one, 16, FTW_DEPTH | FTW_PHYS);
  free(f);
  return 0;
}

static void path_of(const fixture_t *f, const char *name, char *buf, size_t cap) {
  snprintf(buf, cap, "%s/%s", f->dir, name);
}

/* Names in dir starting with prefix. */
static int count_prefix(const char *dir, const char *prefix) {
  DIR *d = opendir(dir);
  assert_non_null(d);
  int n = 0;
  struct dirent *de;
  while ((de = readdir(d)) != NULL) {
    if (strncmp(de->d_name, prefix, strlen(prefix)) == 0) n++;
  }
  closedir(d);
  return n;
}

static void assert_file_is(const char *path, const char *content) {
  char *buf = NULL;
  size_t len = 0;
  assert_int_equal(pd_fs_read_all(path, 1 << 20, &buf, &len), 0);
  assert_int_equal(len, strlen(content));
  assert_memory_equal(buf, content, len);
  assert_int_equal(buf[len], '\0');
  free(buf);
}

static void round_trip_and_replace(void **state) {
  fixture_t *f = *state;
  char p[600];
  path_of(f, "book.json", p, sizeof p);
  assert_int_equal(pd_fs_write_atomic(f->dir, "book.json", "hello", 5, 0600), 0);
  assert_file_is(p, "hello");
  assert_int_equal(pd_fs_write_atomic(f->dir, "book.json", "second version", 14, 0600), 0);
  assert_file_is(p, "second version");
  /* Empty content is a valid file. */
  assert_int_equal(pd_fs_write_atomic(f->dir, "book.json", "", 0, 0600), 0);
  assert_file_is(p, "");
  /* A large buffer, byte pattern checked. */
  size_t big = 3u << 20;
  char *data = malloc(big);
  assert_non_null(data);
  for (size_t i = 0; i < big; i++) data[i] = (char)(i * 131u + (i >> 9));
  assert_int_equal(pd_fs_write_atomic(f->dir, "book.json", data, big, 0600), 0);
  char *back = NULL;
  size_t len = 0;
  assert_int_equal(pd_fs_read_all(p, big, &back, &len), 0);
  assert_int_equal(len, big);
  assert_memory_equal(back, data, big);
  free(back);
  free(data);
  assert_int_equal(count_prefix(f->dir, ".book.json.tmp-"), 0);
}

static void bad_arguments(void **state) {
  fixture_t *f = *state;
  assert_int_equal(pd_fs_write_atomic(f->dir, "", "x", 1, 0600), -EINVAL);
  assert_int_equal(pd_fs_write_atomic(f->dir, "a/b", "x", 1, 0600), -EINVAL);
  assert_int_equal(pd_fs_write_atomic(f->dir, "..", "x", 1, 0600), -EINVAL);
  assert_int_equal(pd_fs_write_atomic("", "x", "x", 1, 0600), -EINVAL);
  assert_int_equal(pd_fs_move_aside(f->dir, "a/b", 1, NULL, 0), -EINVAL);
  char longname[5000];
  memset(longname, 'n', sizeof longname - 1);
  longname[sizeof longname - 1] = '\0';
  assert_int_equal(pd_fs_write_atomic(f->dir, longname, "x", 1, 0600), -ENAMETOOLONG);
}

static void missing_directory_fails(void **state) {
  fixture_t *f = *state;
  char d[600];
  path_of(f, "nope", d, sizeof d);
  assert_int_equal(pd_fs_write_atomic(d, "book.json", "x", 1, 0600), -ENOENT);
}

static void name_is_a_directory_keeps_it(void **state) {
  fixture_t *f = *state;
  char sub[600], inner[700];
  path_of(f, "book.json", sub, sizeof sub);
  assert_int_equal(mkdir(sub, 0700), 0);
  snprintf(inner, sizeof inner, "%s/keep", sub);
  assert_int_equal(pd_fs_write_atomic(sub, "keep", "old", 3, 0600), 0);
  int rc = pd_fs_write_atomic(f->dir, "book.json", "new", 3, 0600);
  assert_true(rc < 0);
  assert_true(rc == -EISDIR || rc == -ENOTEMPTY || rc == -EEXIST);
  struct stat st;
  assert_int_equal(stat(sub, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_file_is(inner, "old");
  assert_int_equal(count_prefix(f->dir, ".book.json.tmp-"), 0);
}

/* A write that fails half-way (file size limit: EFBIG, works as root too)
 * leaves the old file as it was and no temp file behind. */
static void failed_write_keeps_old_content(void **state) {
  fixture_t *f = *state;
  char p[600];
  path_of(f, "book.json", p, sizeof p);
  assert_int_equal(pd_fs_write_atomic(f->dir, "book.json", "old content", 11, 0600), 0);

  struct rlimit saved, lim;
  assert_int_equal(getrlimit(RLIMIT_FSIZE, &saved), 0);
  void (*old_handler)(int) = signal(SIGXFSZ, SIG_IGN);
  lim = saved;
  lim.rlim_cur = 4096;
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &lim), 0);
  char data[10000];
  memset(data, 'z', sizeof data);
  int rc = pd_fs_write_atomic(f->dir, "book.json", data, sizeof data, 0600);
  assert_int_equal(setrlimit(RLIMIT_FSIZE, &saved), 0);
  signal(SIGXFSZ, old_handler);

  assert_int_equal(rc, -EFBIG);
  assert_file_is(p, "old content");
  assert_int_equal(count_prefix(f->dir, ".book.json.tmp-"), 0);
}

static void mode_bits(void **state) {
  fixture_t *f = *state;
  char p[600];
  path_of(f, "key", p, sizeof p);
  struct stat st;
  mode_t old_mask = umask(077); /* mode is set exactly, whatever the umask */
  assert_int_equal(pd_fs_write_atomic(f->dir, "key", "s", 1, 0644), 0);
  umask(old_mask);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0644);
  assert_int_equal(pd_fs_write_atomic(f->dir, "key", "s", 1, 0600), 0);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0600);
  assert_int_equal(pd_fs_write_atomic(f->dir, "key", "s", 1, 0640), 0);
  assert_int_equal(stat(p, &st), 0);
  assert_int_equal(st.st_mode & 07777, 0640);
}

static void read_cap_and_errors(void **state) {
  fixture_t *f = *state;
  char p[600];
  path_of(f, "f", p, sizeof p);
  char data[100];
  memset(data, 'a', sizeof data);
  assert_int_equal(pd_fs_write_atomic(f->dir, "f", data, sizeof data, 0600), 0);
  char *buf = (char *)0x1;
  size_t len = 7;
  assert_int_equal(pd_fs_read_all(p, 100, &buf, &len), 0);
  assert_int_equal(len, 100);
  free(buf);
  buf = NULL;
  assert_int_equal(pd_fs_read_all(p, 99, &buf, &len), PD_ETOOBIG);
  assert_null(buf);
  assert_int_equal(pd_fs_read_all(p, 0, &buf, &len), PD_ETOOBIG);

  char missing[600];
  path_of(f, "missing", missing, sizeof missing);
  assert_int_equal(pd_fs_read_all(missing, 100, &buf, &len), -ENOENT);
  assert_int_equal(pd_fs_read_all(f->dir, 100, &buf, &len), -EISDIR);
  /* A non-regular endless file hits the cap through the read loop. */
  if (access("/dev/zero", R_OK) == 0) {
    assert_int_equal(pd_fs_read_all("/dev/zero", 10000, &buf, &len), PD_ETOOBIG);
  }
  assert_null(buf);
}

static void move_aside_naming_and_no_overwrite(void **state) {
  fixture_t *f = *state;
  char np[700], expect[700], p[600];
  path_of(f, "addrbook.json", p, sizeof p);

  assert_int_equal(pd_fs_move_aside(f->dir, "addrbook.json", 1700000000, np, sizeof np), -ENOENT);

  const char *contents[4] = {"first", "second", "third", "fourth"};
  for (int i = 0; i < 4; i++) {
    assert_int_equal(
        pd_fs_write_atomic(f->dir, "addrbook.json", contents[i], strlen(contents[i]), 0600), 0);
    assert_int_equal(pd_fs_move_aside(f->dir, "addrbook.json", 1700000000, np, sizeof np), 0);
    if (i == 0)
      snprintf(expect, sizeof expect, "%s/addrbook.json.corrupt-1700000000", f->dir);
    else
      snprintf(expect, sizeof expect, "%s/addrbook.json.corrupt-1700000000-%d", f->dir, i);
    assert_string_equal(np, expect);
    assert_int_equal(access(p, F_OK), -1);
  }
  /* Nothing was overwritten: each moved file has its own content. */
  for (int i = 0; i < 4; i++) {
    if (i == 0)
      snprintf(expect, sizeof expect, "%s/addrbook.json.corrupt-1700000000", f->dir);
    else
      snprintf(expect, sizeof expect, "%s/addrbook.json.corrupt-1700000000-%d", f->dir, i);
    assert_file_is(expect, contents[i]);
  }
  assert_int_equal(count_prefix(f->dir, "addrbook.json.corrupt-"), 4);

  /* Another time gives the plain name again. */
  assert_int_equal(pd_fs_write_atomic(f->dir, "addrbook.json", "x", 1, 0600), 0);
  assert_int_equal(pd_fs_move_aside(f->dir, "addrbook.json", 42, np, sizeof np), 0);
  snprintf(expect, sizeof expect, "%s/addrbook.json.corrupt-42", f->dir);
  assert_string_equal(np, expect);

  /* newpath too small: refused before anything moves. */
  assert_int_equal(pd_fs_write_atomic(f->dir, "addrbook.json", "y", 1, 0600), 0);
  char tiny[8];
  assert_int_equal(pd_fs_move_aside(f->dir, "addrbook.json", 43, tiny, sizeof tiny),
                   -ENAMETOOLONG);
  assert_file_is(p, "y");
  /* NULL newpath is allowed. */
  assert_int_equal(pd_fs_move_aside(f->dir, "addrbook.json", 43, NULL, 0), 0);
  assert_int_equal(access(p, F_OK), -1);
}

static void ensure_dir(void **state) {
  fixture_t *f = *state;
  char d[600], file[600], deep[700];
  path_of(f, "data", d, sizeof d);
  assert_int_equal(pd_fs_ensure_dir(d, 0700), 0);
  struct stat st;
  assert_int_equal(stat(d, &st), 0);
  assert_true(S_ISDIR(st.st_mode));
  assert_int_equal(pd_fs_ensure_dir(d, 0700), 0);
  path_of(f, "plain", file, sizeof file);
  assert_int_equal(pd_fs_write_atomic(f->dir, "plain", "x", 1, 0600), 0);
  assert_int_equal(pd_fs_ensure_dir(file, 0700), -ENOTDIR);
  snprintf(deep, sizeof deep, "%s/a/b", f->dir);
  assert_int_equal(pd_fs_ensure_dir(deep, 0700), -ENOENT);
  assert_int_equal(pd_fs_ensure_dir("", 0700), -EINVAL);
}

/* One peerd per data directory: the lock is exclusive, the second taker
 * learns the holder's pid, and it is free again once released. */
static void lock_is_exclusive(void **state) {
  fixture_t *f = *state;
  int fd = -1, fd2 = -1;
  long other = -1;
  assert_int_equal(pd_fs_lock(f->dir, "lock", 4242, &fd, &other), 0);
  assert_true(fd >= 0);
  char path[600];
  path_of(f, "lock", path, sizeof path);
  assert_file_is(path, "4242\n");
  assert_int_equal(pd_fs_lock(f->dir, "lock", 5151, &fd2, &other), -EWOULDBLOCK);
  assert_int_equal(other, 4242);
  assert_file_is(path, "4242\n"); /* the holder's pid stays */
  pd_fs_unlock(fd);
  assert_int_equal(pd_fs_lock(f->dir, "lock", 5151, &fd2, &other), 0);
  assert_file_is(path, "5151\n");
  pd_fs_unlock(fd2);
  assert_int_equal(pd_fs_lock("/nonexistent-dir-xyz", "lock", 1, &fd, &other), -ENOENT);
}

static void put(const fixture_t *f, const char *name, const char *text) {
  char p[1024];
  path_of(f, name, p, sizeof p);
  FILE *fp = fopen(p, "w");
  assert_non_null(fp);
  fputs(text, fp);
  assert_int_equal(fclose(fp), 0);
}

static int present(const fixture_t *f, const char *name) {
  char p[1024];
  struct stat st;
  path_of(f, name, p, sizeof p);
  return lstat(p, &st) == 0;
}

static void stale_temps_only_exact_names(void **state) {
  fixture_t *f = *state;
  static const char *const names[] = {"addrbook.json", "node_key"};
  /* what a crash between mkstemp and rename leaves: removed */
  static const char *const stale[] = {".addrbook.json.tmp-Ab12Z9", ".node_key.tmp-000000",
                                      ".addrbook.json.tmp-zzzzzz"};
  /* everything else stays */
  static const char *const keep[] = {
      "addrbook.json",            /* the file itself */
      ".addrbook.json.tmp-Ab12Z",  /* five characters */
      ".addrbook.json.tmp-Ab12Z9x", /* seven */
      ".addrbook.json.tmp-Ab-2Z9", /* not a letter or digit */
      "addrbook.json.tmp-Ab12Z9", /* no leading dot */
      ".addrbook.json.tmp.Ab12Z9",
      ".bans.json.tmp-Ab12Z9",     /* a name not in the list */
      ".addrbook.json.corrupt-1700000000",
      "addrbook.json.corrupt-1700000000",
      ".node_key.tmp-",
      ".x.addrbook.json.tmp-Ab12Z9",
  };
  size_t total = 0;
  for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) {
    put(f, stale[i], "0123456789"); /* 10 bytes each */
    total += 10;
  }
  for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) put(f, keep[i], "keep");
  /* a directory and a symlink with matching names, and the link's target */
  char p[1024], t[1024];
  path_of(f, ".addrbook.json.tmp-DIR000", p, sizeof p);
  assert_int_equal(mkdir(p, 0700), 0);
  path_of(f, "target", t, sizeof t);
  put(f, "target", "target");
  path_of(f, ".node_key.tmp-LINK00", p, sizeof p);
  assert_int_equal(symlink(t, p), 0);

  size_t removed = 99;
  uint64_t bytes = 99;
  assert_int_equal(pd_fs_remove_stale_temps(f->dir, names, 2, &removed, &bytes), 0);
  assert_int_equal(removed, sizeof stale / sizeof *stale);
  assert_int_equal(bytes, total);
  for (size_t i = 0; i < sizeof stale / sizeof *stale; i++) assert_false(present(f, stale[i]));
  for (size_t i = 0; i < sizeof keep / sizeof *keep; i++) assert_true(present(f, keep[i]));
  assert_true(present(f, ".addrbook.json.tmp-DIR000"));
  assert_true(present(f, ".node_key.tmp-LINK00"));
  assert_true(present(f, "target"));

  /* a second pass finds nothing */
  assert_int_equal(pd_fs_remove_stale_temps(f->dir, names, 2, &removed, &bytes), 0);
  assert_int_equal(removed, 0);
  assert_int_equal(bytes, 0);

  /* the temp a real atomic write would leave has the matched shape */
  char tmpl[1024];
  snprintf(tmpl, sizeof tmpl, "%s/.node_key.tmp-XXXXXX", f->dir);
  int fd = mkstemp(tmpl);
  assert_true(fd >= 0);
  close(fd);
  assert_int_equal(pd_fs_remove_stale_temps(f->dir, names, 2, &removed, NULL), 0);
  assert_int_equal(removed, 1);
  assert_int_equal(access(tmpl, F_OK), -1);

  /* bad arguments, missing directory */
  static const char *const bad[] = {"a/b"};
  assert_int_equal(pd_fs_remove_stale_temps(f->dir, bad, 1, NULL, NULL), -EINVAL);
  assert_int_equal(pd_fs_remove_stale_temps(NULL, names, 2, NULL, NULL), -EINVAL);
  path_of(f, "nope", p, sizeof p);
  assert_int_equal(pd_fs_remove_stale_temps(p, names, 2, NULL, NULL), -ENOENT);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(round_trip_and_replace, setup, teardown),
      cmocka_unit_test_setup_teardown(bad_arguments, setup, teardown),
      cmocka_unit_test_setup_teardown(missing_directory_fails, setup, teardown),
      cmocka_unit_test_setup_teardown(name_is_a_directory_keeps_it, setup, teardown),
      cmocka_unit_test_setup_teardown(failed_write_keeps_old_content, setup, teardown),
      cmocka_unit_test_setup_teardown(mode_bits, setup, teardown),
      cmocka_unit_test_setup_teardown(read_cap_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(move_aside_naming_and_no_overwrite, setup, teardown),
      cmocka_unit_test_setup_teardown(ensure_dir, setup, teardown),
      cmocka_unit_test_setup_teardown(lock_is_exclusive, setup, teardown),
      cmocka_unit_test_setup_teardown(stale_temps_only_exact_names, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
