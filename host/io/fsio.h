/* fsio — the file operations of the data directory (driver side).
 *
 * Owns: atomic replacement of a file (write temp, fsync, rename, fsync the
 * directory), reading a whole file with a size cap, moving a damaged file
 * aside as NAME.corrupt-<unix time>, creating the data directory, and the
 * data directory's lock (one peerd per directory), removing the temp files
 * an interrupted atomic write left behind.
 * Does not own: what is in the files (bookstore) or when to write (daemon).
 * Blocking calls: the daemon runs them on libuv's thread pool or at start-up.
 * Errors are returned as -errno (or PD_ETOOBIG), never printed.
 */
#ifndef PD_FSIO_H
#define PD_FSIO_H

#include <stddef.h>
#include <stdint.h>

/* mkdir -p for one level (parent must exist); 0 if it exists already. */
int pd_fs_ensure_dir(const char *dir, unsigned mode);

/* Atomically replace dir/name with buf[0..len): writes dir/.name.tmp-XXXXXX,
 * fsyncs it, renames it over dir/name, fsyncs dir. On failure the old file
 * is untouched and the temp file removed. */
int pd_fs_write_atomic(const char *dir, const char *name, const void *buf, size_t len,
                       unsigned mode);

/* Remove the temp files pd_fs_write_atomic leaves when the process dies
 * between mkstemp and rename: in dir, every regular file named exactly
 * .NAME.tmp-XXXXXX (XXXXXX six letters or digits, mkstemp's) for a NAME of
 * names[0..n). Nothing else is touched: other names, directories and
 * symlinks (even with a matching name) stay. Only for a directory no other
 * process writes (hold its lock). *removed and *bytes (either may be NULL)
 * get the count and total size removed. 0, or the first -errno (opening
 * the directory, or an unlink that failed: the others are still tried). */
int pd_fs_remove_stale_temps(const char *dir, const char *const *names, size_t n,
                             size_t *removed, uint64_t *bytes);

/* Read all of path into a malloc'd, NUL-terminated buffer. -ENOENT when
 * missing, PD_ETOOBIG when over max bytes. */
int pd_fs_read_all(const char *path, size_t max, char **out, size_t *len);

/* Rename dir/name to dir/name.corrupt-<now> (adding -1, -2, ... when that
 * exists); the new path is written to newpath (cap bytes). */
int pd_fs_move_aside(const char *dir, const char *name, int64_t now, char *newpath, size_t cap);

/* Take the exclusive lock of dir/name (flock, released when the process
 * exits or pd_fs_unlock closes it) and write our pid into it: 0 and *fd.
 * -EWOULDBLOCK when another process (or open file) holds it: *other_pid
 * then gets the pid written in the file (0 when unreadable). -errno on
 * other failures. */
int pd_fs_lock(const char *dir, const char *name, long pid, int *fd, long *other_pid);
void pd_fs_unlock(int fd);

#endif
