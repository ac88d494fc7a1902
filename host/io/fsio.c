/* fsio — see fsio.h.
 *
 * Atomic replace: dir/.NAME.tmp-XXXXXX is created with mkstemp, chmod'ed to
 * the requested mode, written in full (EINTR and short writes handled),
 * fsync'ed and closed, then renamed over dir/NAME; finally dir itself is
 * opened O_DIRECTORY and fsync'ed so the rename is durable. Any failure
 * before the rename unlinks the temp file and leaves dir/NAME untouched.
 *
 * Move aside never overwrites: renameat2(RENAME_NOREPLACE), falling back to
 * link()+unlink() on file systems without it; a taken name gets -1, -2, ...
 *
 * Stale temps: readdir, a name is compared with ".NAME.tmp-" for each NAME
 * and then six [A-Za-z0-9]; fstatat without following links must say a
 * regular file; unlinkat removes it.
 */
#include "fsio.h"

#include <errno.h>
#include <ctype.h>
#include <dirent.h>
#include <fcntl.h>
#include <inttypes.h>
#include <limits.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <sys/types.h>
#include <unistd.h>

#include "err.h"

#ifndef PATH_MAX
#define PATH_MAX 4096
#endif

/* The highest -N suffix move_aside tries before giving up with -EEXIST. */
#define MOVE_ASIDE_MAX_SUFFIX 9999

static int valid_name(const char *name) {
  if (name == NULL || name[0] == '\0') return 0;
  if (strchr(name, '/') != NULL) return 0;
  if (strcmp(name, ".") == 0 || strcmp(name, "..") == 0) return 0;
  return 1;
}

static int join(char *buf, size_t cap, const char *dir, const char *name) {
  int n = snprintf(buf, cap, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= cap) return -ENAMETOOLONG;
  return 0;
}

int pd_fs_ensure_dir(const char *dir, unsigned mode) {
  if (dir == NULL || dir[0] == '\0') return -EINVAL;
  if (mkdir(dir, (mode_t)mode) == 0) return 0;
  int e = errno;
  if (e == EEXIST) {
    struct stat st;
    if (stat(dir, &st) != 0) return -errno;
    return S_ISDIR(st.st_mode) ? 0 : -ENOTDIR;
  }
  return -e;
}

static int write_full(int fd, const void *buf, size_t len) {
  const char *p = buf;
  while (len > 0) {
    ssize_t n = write(fd, p, len);
    if (n < 0) {
      if (errno == EINTR) continue;
      return -errno;
    }
    if (n == 0) return -EIO;
    p += n;
    len -= (size_t)n;
  }
  return 0;
}

static int fsync_retry(int fd) {
  for (;;) {
    if (fsync(fd) == 0) return 0;
    if (errno != EINTR) return -errno;
  }
}

static int fsync_dir(const char *dir) {
  int fd;
  do {
    fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;
  int rc = fsync_retry(fd);
  close(fd);
  /* Some file systems cannot fsync a directory; the rename stands. */
  if (rc == -EINVAL || rc == -EROFS) rc = 0;
  return rc;
}

int pd_fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
                       unsigned mode) {
  if (dir == NULL || dir[0] == '\0' || !valid_name(name) || (buf == NULL && len > 0))
    return -EINVAL;
  char final[PATH_MAX];
  char tmp[PATH_MAX];
  int rc = join(final, sizeof final, dir, name);
  if (rc < 0) return rc;
  int n = snprintf(tmp, sizeof tmp, "%s/.%s.tmp-XXXXXX", dir, name);
  if (n < 0 || (size_t)n >= sizeof tmp) return -ENAMETOOLONG;

  int fd = mkostemp(tmp, O_CLOEXEC);
  if (fd < 0) return -errno;
  rc = 0;
  if (fchmod(fd, (mode_t)(mode & 07777)) != 0) rc = -errno;
  if (rc == 0) rc = write_full(fd, buf, len);
  if (rc == 0) rc = fsync_retry(fd);
  if (close(fd) != 0 && rc == 0 && errno != EINTR) rc = -errno;
  if (rc == 0 && rename(tmp, final) != 0) rc = -errno;
  if (rc < 0) {
    unlink(tmp);
    return rc;
  }
  /* The new file is in place; a failure here means it may not be durable. */
  return fsync_dir(dir);
}

/* mkstemp's template is XXXXXX: six letters or digits replace it. */
#define TEMP_SUFFIX_LEN 6

/* Is ent exactly "." name ".tmp-" and six letters or digits? */
static int is_temp_of(const char *ent, const char *name) {
  if (ent[0] != '.') return 0;
  size_t nl = strlen(name);
  if (strncmp(ent + 1, name, nl) != 0) return 0;
  const char *p = ent + 1 + nl;
  if (strncmp(p, ".tmp-", 5) != 0) return 0;
  p += 5;
  for (int i = 0; i < TEMP_SUFFIX_LEN; i++) {
    if (!isalnum((unsigned char)p[i])) return 0;
  }
  return p[TEMP_SUFFIX_LEN] == '\0';
}

int pd_fs_remove_stale_temps(const char *dir, const char *const *names, size_t n,
                             size_t *removed, uint64_t *bytes) {
  if (removed != NULL) *removed = 0;
  if (bytes != NULL) *bytes = 0;
  if (dir == NULL || dir[0] == '\0' || (names == NULL && n > 0)) return -EINVAL;
  for (size_t i = 0; i < n; i++) {
    if (!valid_name(names[i])) return -EINVAL;
  }
  DIR *dp = opendir(dir);
  if (dp == NULL) return -errno;
  int dfd = dirfd(dp);
  int rc = 0;
  struct dirent *de;
  for (;;) {
    errno = 0;
    de = readdir(dp);
    if (de == NULL) {
      if (errno != 0 && rc == 0) rc = -errno;
      break;
    }
    size_t k = 0;
    while (k < n && !is_temp_of(de->d_name, names[k])) k++;
    if (k == n) continue;
    struct stat st;
    if (fstatat(dfd, de->d_name, &st, AT_SYMLINK_NOFOLLOW) != 0) {
      if (errno != ENOENT && rc == 0) rc = -errno;
      continue;
    }
    if (!S_ISREG(st.st_mode)) continue;
    if (unlinkat(dfd, de->d_name, 0) != 0) {
      if (errno != ENOENT && rc == 0) rc = -errno;
      continue;
    }
    if (removed != NULL) (*removed)++;
    if (bytes != NULL) *bytes += (uint64_t)st.st_size;
  }
  closedir(dp);
  return rc;
}

int pd_fs_read_all(const char *path, size_t max, char **out, size_t *len) {
  if (path == NULL || out == NULL) return -EINVAL;
  int fd;
  do {
    fd = open(path, O_RDONLY | O_CLOEXEC);
  } while (fd < 0 && errno == EINTR);
  if (fd < 0) return -errno;

  struct stat st;
  if (fstat(fd, &st) != 0) {
    int e = errno;
    close(fd);
    return -e;
  }
  if (S_ISDIR(st.st_mode)) {
    close(fd);
    return -EISDIR;
  }
  if (S_ISREG(st.st_mode) && (uint64_t)st.st_size > (uint64_t)max) {
    close(fd);
    return PD_ETOOBIG;
  }
  /* The size is only a hint (the file may change): read until EOF. */
  if (max > SIZE_MAX / 2) max = SIZE_MAX / 2;
  size_t cap = (S_ISREG(st.st_mode) && st.st_size > 0) ? (size_t)st.st_size + 1 : 4096;
  if (cap < 64) cap = 64;
  if (cap > max + 1) cap = max + 1;
  char *data = malloc(cap + 1);
  if (data == NULL) {
    close(fd);
    return PD_ENOMEM;
  }
  size_t used = 0;
  int rc = 0;
  for (;;) {
    if (used == cap) {
      if (cap > max) { /* read max + 1 bytes: over the cap */
        rc = PD_ETOOBIG;
        break;
      }
      size_t ncap = cap * 2;
      if (ncap > max + 1 || ncap < cap) ncap = max + 1;
      char *nd = realloc(data, ncap + 1);
      if (nd == NULL) {
        rc = PD_ENOMEM;
        break;
      }
      data = nd;
      cap = ncap;
    }
    ssize_t r = read(fd, data + used, cap - used);
    if (r < 0) {
      if (errno == EINTR) continue;
      rc = -errno;
      break;
    }
    if (r == 0) break;
    used += (size_t)r;
  }
  close(fd);
  if (rc == 0 && used > max) rc = PD_ETOOBIG;
  if (rc < 0) {
    free(data);
    return rc;
  }
  data[used] = '\0';
  *out = data;
  if (len != NULL) *len = used;
  return 0;
}

/* Rename without replacing: 0, -EEXIST when `to` exists, other -errno. */
static int rename_noreplace(const char *from, const char *to) {
  if (renameat2(AT_FDCWD, from, AT_FDCWD, to, RENAME_NOREPLACE) == 0) return 0;
  int e = errno;
  if (e != EINVAL && e != ENOSYS && e != ENOTSUP) return -e;
  /* No RENAME_NOREPLACE here: link() never replaces either. */
  if (link(from, to) != 0) return -errno;
  if (unlink(from) != 0) {
    e = errno;
    unlink(to);
    return -e;
  }
  return 0;
}

int pd_fs_move_aside(const char *dir, const char *name, int64_t now, char *newpath, size_t cap) {
  if (dir == NULL || dir[0] == '\0' || !valid_name(name)) return -EINVAL;
  char from[PATH_MAX];
  char to[PATH_MAX];
  int rc = join(from, sizeof from, dir, name);
  if (rc < 0) return rc;
  struct stat st;
  if (lstat(from, &st) != 0) return -errno;

  for (int i = 0; i <= MOVE_ASIDE_MAX_SUFFIX; i++) {
    int n = i == 0 ? snprintf(to, sizeof to, "%s.corrupt-%" PRId64, from, now)
                   : snprintf(to, sizeof to, "%s.corrupt-%" PRId64 "-%d", from, now, i);
    if (n < 0 || (size_t)n >= sizeof to) return -ENAMETOOLONG;
    if (newpath != NULL && cap > 0 && (size_t)n >= cap) return -ENAMETOOLONG;
    rc = rename_noreplace(from, to);
    if (rc == -EEXIST) continue;
    if (rc < 0) return rc;
    if (newpath != NULL && cap > 0) memcpy(newpath, to, (size_t)n + 1);
    return fsync_dir(dir);
  }
  return -EEXIST;
}

int pd_fs_lock(const char *dir, const char *name, long pid, int *fd, long *other_pid) {
  if (!dir || !name || !fd) return -EINVAL;
  if (other_pid) *other_pid = 0;
  char path[4096];
  int n = snprintf(path, sizeof path, "%s/%s", dir, name);
  if (n < 0 || (size_t)n >= sizeof path) return -ENAMETOOLONG;
  int f = open(path, O_RDWR | O_CREAT | O_CLOEXEC, 0600);
  if (f < 0) return -errno;
  if (flock(f, LOCK_EX | LOCK_NB) != 0) {
    int e = errno;
    if (other_pid) {
      char buf[32] = {0};
      ssize_t r = pread(f, buf, sizeof buf - 1, 0);
      if (r > 0) *other_pid = strtol(buf, NULL, 10);
    }
    close(f);
    return e == EWOULDBLOCK ? -EWOULDBLOCK : -e;
  }
  char buf[32];
  int len = snprintf(buf, sizeof buf, "%ld\n", pid);
  if (ftruncate(f, 0) != 0 || pwrite(f, buf, (size_t)len, 0) != len) {
    int e = errno ? errno : EIO;
    close(f);
    return -e;
  }
  *fd = f;
  return 0;
}

void pd_fs_unlock(int fd) {
  if (fd >= 0) close(fd);
}
