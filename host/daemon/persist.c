/* persist — the data directory: the book, bans, reputation, the node key,
 * the anchors.
 *
 * Owns: removing at start the temp files of its atomic writes that a crash
 * left behind; loading addrbook.json at start (or a new book with a key from
 * randombytes; a bad file moved aside, never overwritten, a damaged one's
 * entries that still parse salvaged) and creating the
 * node with its configuration; then loading bans.json and reputation.json
 * into it (a bad one moved aside the same way, the start going on without
 * it); saving the three (dmn_start_save: encoded on the loop, written on
 * libuv's thread pool, periodic and for POST /v1/save; dmn_save_now:
 * synchronously at shutdown) and logging the outcome; the
 * node key file (created at first start, never overwritten, a damaged one
 * stops the start); anchors.json (read for the network's start, written at
 * its stop).
 * Does not own: the JSON of the book (bookstore.c), of bans and reputation
 * (statestore.c), atomic writes
 * (fsio.c), when to save (the node's tick, daemon.c; the API, api.c), the
 * API connections waiting for a save (apiserver.c answers them), the
 * shutdown sequence (daemon.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include <jansson.h>
#include <sodium.h>

#include "bookstore.h"
#include "statestore.h"
#include "daemon_int.h"
#include "err.h"
#include "fsio.h"

/* One file of a save: encoded on the loop, written on the thread pool. */
typedef struct save_file {
  const char *name;
  char *buf;
  size_t len;
  size_t items; /* entries, bans or records written */
  int rc;       /* the write's result */
} save_file_t;

/* Written in this order: the bans before the book, so a book that still
 * held bans (written before bans.json existed) is replaced only once they
 * are in bans.json. */
enum { F_BANS, F_REPUTATION, F_BOOK, F_COUNT };

typedef struct save_job {
  uv_work_t work;
  pd_daemon_t *d;
  save_file_t f[F_COUNT];
  uint64_t id;
  const char *why; /* static: "periodic", "api" */
  int rc;
} save_job_t;

/* -------------------------------------------------------------- saves */

static void free_files(save_file_t *f) {
  for (int i = 0; i < F_COUNT; i++) {
    free(f[i].buf);
    f[i].buf = NULL;
  }
}

/* Encode the book (without its bans), the bans and the reputation records. */
static int encode_files(pd_daemon_t *d, int64_t now, save_file_t *f) {
  memset(f, 0, F_COUNT * sizeof *f);
  f[F_BANS].name = PD_DAEMON_BANS_FILE;
  f[F_REPUTATION].name = PD_DAEMON_REPUTATION_FILE;
  f[F_BOOK].name = PD_DAEMON_BOOK_FILE;
  pd_book_t *b = pd_node_book(d->node);
  int rc = pd_statestore_encode_bans(pd_book_bans_const(b), now, 0, &f[F_BANS].buf,
                                     &f[F_BANS].len, &f[F_BANS].items);
  if (rc == 0)
    rc = pd_statestore_encode_reputation(pd_node_reputation(d->node), now, 0,
                                         &f[F_REPUTATION].buf, &f[F_REPUTATION].len,
                                         &f[F_REPUTATION].items);
  if (rc == 0) {
    f[F_BOOK].items = pd_book_size(b);
    rc = pd_bookstore_encode_ex(b, now, PD_BOOKSTORE_NO_BANS, &f[F_BOOK].buf, &f[F_BOOK].len);
  }
  if (rc < 0) free_files(f);
  return rc;
}

/* Each file on its own: one that fails does not stop the others. */
static void write_files(const char *dir, save_file_t *f) {
  for (int i = 0; i < F_COUNT; i++)
    f[i].rc = pd_fs_write_atomic(dir, f[i].name, f[i].buf, f[i].len, 0600);
}

/* Log the outcome; returns the save's result (the first failure) and its
 * text in err. */
static int log_save(pd_daemon_t *d, const save_file_t *f, const char *why, char *err,
                    size_t cap) {
  int rc = 0;
  err[0] = '\0';
  for (int i = 0; i < F_BOOK; i++) { /* the state files */
    if (f[i].rc == 0) continue;
    LOG(d, PD_LOG_ERROR, "state file save failed", "file", f[i].name, "reason", why, "error",
        pd_strerror(f[i].rc));
    if (rc == 0) {
      rc = f[i].rc;
      snprintf(err, cap, "%s: %s", f[i].name, pd_strerror(f[i].rc));
    }
  }
  const save_file_t *book = &f[F_BOOK];
  if (book->rc == 0) {
    char b[32], e[32], bn[32], rn[32];
    dmn_fmt_u64(b, sizeof b, book->len);
    dmn_fmt_u64(e, sizeof e, book->items);
    dmn_fmt_u64(bn, sizeof bn, f[F_BANS].items);
    dmn_fmt_u64(rn, sizeof rn, f[F_REPUTATION].items);
    LOG(d, PD_LOG_INFO, "book saved", "reason", why, "bytes", b, "entries", e, "bans", bn,
        "reputation_records", rn);
  } else {
    LOG(d, PD_LOG_ERROR, "book save failed", "reason", why, "error", pd_strerror(book->rc));
    rc = book->rc;
    snprintf(err, cap, "%s", pd_strerror(book->rc));
  }
  return rc;
}

static void save_work(uv_work_t *w) {
  save_job_t *job = w->data;
  write_files(job->d->cfg.data_dir, job->f);
}

static void save_after(uv_work_t *w, int status) {
  save_job_t *job = w->data;
  pd_daemon_t *d = job->d;
  if (status == UV_ECANCELED) {
    for (int i = 0; i < F_COUNT; i++) job->f[i].rc = PD_EIO;
  }
  char err[PD_NODE_ERR_MAX];
  int rc = log_save(d, job->f, job->why, err, sizeof err);
  pd_node_note_save(d->node, rc, rc < 0 ? err : NULL, job->f[F_BOOK].len, job->f[F_BOOK].items,
                    dmn_wall_now());
  uint64_t id = job->id;
  free_files(job->f);
  free(job);
  d->saving = false;
  if (d->stopping) {
    dmn_finish_stop(d);
    return;
  }
  dmn_complete_waiters(d, id);
  if (dmn_anyone_waiting(d, id)) dmn_start_save(d, "api");
}

/* Encode on the loop thread, write on the thread pool. */
void dmn_start_save(pd_daemon_t *d, const char *why) {
  if (d->saving || d->stopping) return;
  int64_t now = dmn_wall_now();
  save_job_t *job = calloc(1, sizeof *job);
  int rc = job ? encode_files(d, now, job->f) : PD_ENOMEM;
  if (job) {
    job->d = d;
    job->why = why;
  }
  d->save_started++;
  if (rc == 0) {
    job->id = d->save_started;
    job->work.data = job;
    rc = uv_queue_work(&d->loop, &job->work, save_work, save_after);
    if (rc == 0) {
      d->saving = true;
      LOG(d, PD_LOG_DEBUG, "book save started", "reason", why);
      return;
    }
  }
  /* could not even start: record the failure and answer the waiters */
  pd_node_note_save(d->node, rc, pd_strerror(rc), 0, 0, now);
  LOG(d, PD_LOG_ERROR, "book save failed", "reason", why, "error", pd_strerror(rc));
  if (job) free_files(job->f);
  free(job);
  dmn_complete_waiters(d, d->save_started);
}

/* Synchronous save (shutdown). */
int dmn_save_now(pd_daemon_t *d, const char *why) {
  int64_t now = dmn_wall_now();
  save_file_t f[F_COUNT];
  int rc = encode_files(d, now, f);
  if (rc < 0) {
    pd_node_note_save(d->node, rc, pd_strerror(rc), 0, 0, now);
    LOG(d, PD_LOG_ERROR, "book save failed", "reason", why, "error", pd_strerror(rc));
    return rc;
  }
  write_files(d->cfg.data_dir, f);
  char err[PD_NODE_ERR_MAX];
  rc = log_save(d, f, why, err, sizeof err);
  pd_node_note_save(d->node, rc, rc < 0 ? err : NULL, f[F_BOOK].len, f[F_BOOK].items, now);
  free_files(f);
  return rc;
}

/* ------------------------------------------------------ book at start */

/* The monotonic clock of policy deadlines, handed to the node. */
static uint64_t hr_clock(void *ud) {
  (void)ud;
  return uv_hrtime();
}

static int new_book(pd_daemon_t *d, pd_book_t **out) {
  uint8_t key[PD_BOOK_KEY_LEN];
  randombytes_buf(key, sizeof key);
  int rc = pd_book_create(out, key, &d->rng, d->cfg.allow_private ? PD_BOOK_ALLOW_PRIVATE : 0);
  sodium_memzero(key, sizeof key);
  return rc;
}

static int load_state(pd_daemon_t *d, int64_t now, size_t book_bans);

/* Every file of the data directory peerd writes with pd_fs_write_atomic:
 * the temps of these names a crash left behind are removed at start. */
static const char *const atomic_files[] = {
    PD_DAEMON_BOOK_FILE,    PD_DAEMON_BANS_FILE, PD_DAEMON_REPUTATION_FILE,
    PD_DAEMON_ANCHORS_FILE, PD_DAEMON_COOKIE_FILE, PD_DAEMON_KEY_FILE,
};

/* Remove the stale temps (the lock is held: no write of ours is under
 * way). A failure is logged, never fatal. */
static void remove_stale_temps(pd_daemon_t *d) {
  size_t removed = 0;
  uint64_t bytes = 0;
  int rc = pd_fs_remove_stale_temps(d->cfg.data_dir, atomic_files,
                                    sizeof atomic_files / sizeof *atomic_files, &removed, &bytes);
  char n[32], b[32];
  dmn_fmt_u64(n, sizeof n, removed);
  dmn_fmt_u64(b, sizeof b, bytes);
  if (rc < 0) {
    LOG(d, PD_LOG_WARN, "cannot remove every stale temp file", "dir", d->cfg.data_dir, "removed",
        n, "bytes", b, "error", pd_strerror(rc));
  } else if (removed > 0) {
    LOG(d, PD_LOG_INFO, "stale temp files removed", "dir", d->cfg.data_dir, "removed", n,
        "bytes", b);
  }
}

/* Remove the stale temp files, then load addrbook.json or start empty; a
 * bad file is moved aside. Then the state files (load_state). */
int dmn_load_book(pd_daemon_t *d, int64_t now) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_BOOK_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) {
    LOG(d, PD_LOG_ERROR, "data directory path too long", "dir", d->cfg.data_dir);
    return -1;
  }
  remove_stale_temps(d);
  pd_node_config_t ncfg = {
      .allow_private = d->cfg.allow_private,
      .save_interval = d->cfg.save_interval,
      .default_ban_secs = d->cfg.ban_time,
      .policy_limits = {.call_instructions = d->cfg.policy_instructions,
                        .call_deadline_ms = d->cfg.policy_timeout_ms,
                        .memory_bytes = (size_t)d->cfg.policy_memory_mb * 1024 * 1024},
      .policy_clock = hr_clock,
      .policy_dir = d->policy_builtin ? NULL : d->cfg.policy_dir,
      .policy_builtin = d->policy_builtin,
      .data_dir = d->cfg.data_dir,
      .private_subnets = d->cfg.private_subnets,
      .nprivate_subnets = d->cfg.nprivate_subnets,
      .private_ids = d->cfg.private_ids,
      .nprivate_ids = d->cfg.nprivate_ids,
  };
  char *buf = NULL;
  size_t len = 0;
  pd_book_t *book = NULL;
  pd_bookstore_report_t report;
  memset(&report, 0, sizeof report);
  char err[256] = "";
  int load_rc = 0; /* < 0: the file was unusable */
  bool loaded = false;
  int rc = pd_fs_read_all(path, PD_DAEMON_MAX_BOOK_FILE, &buf, &len);
  if (rc == -ENOENT) {
    LOG(d, PD_LOG_INFO, "no saved book, starting empty", "path", path);
  } else if (rc < 0) {
    load_rc = rc;
    snprintf(err, sizeof err, "cannot read %s: %s", PD_DAEMON_BOOK_FILE, pd_strerror(rc));
  } else {
    unsigned flags = d->cfg.allow_private ? PD_BOOK_ALLOW_PRIVATE : 0;
    rc = pd_bookstore_decode(buf, len, &d->rng, flags, &book, &report, err, sizeof err);
    if (rc == 0) {
      loaded = true;
    } else {
      load_rc = rc;
      if (!err[0]) snprintf(err, sizeof err, "%s", pd_strerror(rc));
      book = NULL;
      /* damaged (cut short, garbage): keep every entry that still parses;
       * the file is set aside all the same */
      if (rc == PD_ECORRUPT) {
        char serr[256] = "";
        int src = pd_bookstore_salvage(buf, len, &d->rng, flags, &book, &report, serr, sizeof serr);
        if (src < 0) {
          book = NULL;
          memset(&report, 0, sizeof report);
          LOG(d, PD_LOG_WARN, "nothing salvaged from the damaged book", "path", path, "reason",
              serr[0] ? serr : pd_strerror(src));
        }
      }
    }
  }
  free(buf);

  char moved[PATH_CAP] = "";
  if (load_rc < 0) {
    int mrc = pd_fs_move_aside(d->cfg.data_dir, PD_DAEMON_BOOK_FILE, now, moved, sizeof moved);
    if (mrc < 0) {
      /* never overwrite a file we could not use */
      LOG(d, PD_LOG_ERROR, "book unusable and cannot be moved aside; refusing to start", "path",
          path, "reason", err, "error", pd_strerror(mrc));
      return -1;
    }
  }
  if (!book) {
    rc = new_book(d, &book);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "cannot create the book", "error", pd_strerror(rc));
      return -1;
    }
  }
  rc = pd_node_create(&d->node, &ncfg, book, &d->rng, now);
  if (rc < 0) {
    pd_book_destroy(book);
    LOG(d, PD_LOG_ERROR, "cannot create the node", "error", pd_strerror(rc));
    return -1;
  }
  pd_node_status(d->node)->settings_json = d->cfg.settings_json;
  if (loaded) {
    pd_node_note_load(d->node, 0, NULL, NULL, &report);
    char e[32], s[32], bl[32], bs[32];
    dmn_fmt_u64(e, sizeof e, report.entries_loaded);
    dmn_fmt_u64(s, sizeof s, report.entries_skipped);
    dmn_fmt_u64(bl, sizeof bl, report.bans_loaded);
    dmn_fmt_u64(bs, sizeof bs, report.bans_skipped);
    LOG(d, PD_LOG_INFO, "book loaded", "path", path, "entries", e, "bans", bl);
    if (report.entries_skipped || report.bans_skipped) {
      LOG(d, PD_LOG_WARN, "book entries skipped at load", "entries_skipped", s, "bans_skipped", bs,
          "first_reason", report.first_skip);
    }
  }
  int src = load_state(d, now, loaded || report.salvage ? report.bans_loaded : 0);
  if (load_rc < 0) {
    /* said after the state files: what the bad book did not take with it */
    pd_node_note_load(d->node, load_rc, err, moved, report.salvage ? &report : NULL);
    char bn[32], rn[32];
    dmn_fmt_u64(bn, sizeof bn, pd_banlist_count(pd_book_bans_const(pd_node_book(d->node))));
    dmn_fmt_u64(rn, sizeof rn, pd_reputation_count(pd_node_reputation(d->node)));
    if (report.salvage) {
      char sv[32], lo[32];
      dmn_fmt_u64(sv, sizeof sv, report.salvaged);
      dmn_fmt_u64(lo, sizeof lo, report.lost);
      LOG(d, PD_LOG_ERROR, "book damaged; kept the entries that still parse", "path", path,
          "reason", err, "moved_to", moved, "salvaged", sv, "lost", lo, "end_found",
          report.salvage_end_found ? "true" : "false", "first_lost",
          report.first_skip[0] ? report.first_skip : "none", "bans_kept", bn,
          "reputation_records_kept", rn);
    } else {
      LOG(d, PD_LOG_ERROR, "book load failed; starting with an empty book", "path", path,
          "reason", err, "moved_to", moved, "bans_kept", bn, "reputation_records_kept", rn);
    }
  }
  return src < 0 ? -1 : 0;
}

/* ------------------------------------------------------- state files */

/* A state file's decoder, into the node. */
typedef int (*state_decode_fn)(pd_daemon_t *d, const char *buf, size_t len, int64_t now,
                               pd_statestore_report_t *r, char *err, size_t cap);

static int decode_bans(pd_daemon_t *d, const char *buf, size_t len, int64_t now,
                       pd_statestore_report_t *r, char *err, size_t cap) {
  return pd_statestore_decode_bans(buf, len, now, pd_book_bans(pd_node_book(d->node)), r, err,
                                   cap);
}

static int decode_reputation(pd_daemon_t *d, const char *buf, size_t len, int64_t now,
                             pd_statestore_report_t *r, char *err, size_t cap) {
  (void)now;
  return pd_statestore_decode_reputation(buf, len, pd_node_reputation(d->node), r, err, cap);
}

/* DIR/name into the node. Missing: nothing (*found false). Unreadable or
 * not decoding: moved aside (never overwritten by the next save) and the
 * start goes on without it, saying what was kept; a file that cannot be
 * moved aside, or no memory, stops the start (-1). */
static int load_state_file(pd_daemon_t *d, int64_t now, const char *name, size_t max,
                           state_decode_fn decode, const char *kept_what, size_t kept,
                           bool *found, pd_statestore_report_t *report) {
  char path[PATH_CAP];
  *found = false;
  memset(report, 0, sizeof *report);
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, name);
  if (pl < 0 || (size_t)pl >= sizeof path) {
    LOG(d, PD_LOG_ERROR, "data directory path too long", "dir", d->cfg.data_dir);
    return -1;
  }
  char *buf = NULL;
  size_t len = 0;
  char err[256] = "";
  int rc = pd_fs_read_all(path, max, &buf, &len);
  if (rc == -ENOENT) return 0;
  if (rc < 0) {
    snprintf(err, sizeof err, "cannot read %s: %s", name, pd_strerror(rc));
  } else {
    rc = decode(d, buf, len, now, report, err, sizeof err);
    if (rc < 0 && !err[0]) snprintf(err, sizeof err, "%s", pd_strerror(rc));
  }
  free(buf);
  if (rc == PD_ENOMEM) {
    LOG(d, PD_LOG_ERROR, "cannot load a state file; refusing to start", "path", path, "error",
        err);
    return -1;
  }
  if (rc < 0) {
    char moved[PATH_CAP] = "", k[32];
    int mrc = pd_fs_move_aside(d->cfg.data_dir, name, now, moved, sizeof moved);
    if (mrc < 0) {
      LOG(d, PD_LOG_ERROR, "state file unusable and cannot be moved aside; refusing to start",
          "path", path, "reason", err, "error", pd_strerror(mrc));
      return -1;
    }
    dmn_fmt_u64(k, sizeof k, kept);
    LOG(d, PD_LOG_ERROR, "state file load failed; moved aside, going on without it", "path", path,
        "reason", err, "moved_to", moved, kept_what, k);
    return 0;
  }
  *found = true;
  if (report->skipped) {
    char sk[32];
    dmn_fmt_u64(sk, sizeof sk, report->skipped);
    LOG(d, PD_LOG_WARN, "state file items skipped at load", "path", path, "skipped", sk,
        "first_reason", report->first_skip);
  }
  return 0;
}

static int load_state(pd_daemon_t *d, int64_t now, size_t book_bans) {
  pd_statestore_report_t r;
  bool found;
  char n[32], x[32];
  /* The book's bans (a book written before bans.json existed) are in the
   * list already; bans.json's win for the same subnet. */
  if (load_state_file(d, now, PD_DAEMON_BANS_FILE, PD_DAEMON_MAX_BANS_FILE, decode_bans,
                      "bans_kept", book_bans, &found, &r) < 0)
    return -1;
  if (found) {
    dmn_fmt_u64(n, sizeof n, r.loaded);
    dmn_fmt_u64(x, sizeof x, r.expired);
    LOG(d, PD_LOG_INFO, "bans loaded", "file", PD_DAEMON_BANS_FILE, "bans", n, "expired", x);
  }
  if (book_bans > 0) {
    dmn_fmt_u64(n, sizeof n, book_bans);
    LOG(d, PD_LOG_INFO, "bans read from addrbook.json (written before bans.json); saved to "
        "bans.json from now on", "bans", n);
  }
  if (load_state_file(d, now, PD_DAEMON_REPUTATION_FILE, PD_DAEMON_MAX_REPUTATION_FILE,
                      decode_reputation, "reputation_records_kept", 0, &found, &r) < 0)
    return -1;
  if (found) {
    dmn_fmt_u64(n, sizeof n, pd_reputation_count(pd_node_reputation(d->node)));
    LOG(d, PD_LOG_INFO, "reputation loaded", "file", PD_DAEMON_REPUTATION_FILE, "records", n);
  }
  return 0;
}

/* ----------------------------------------------------------- identity */

/* A secret key open to group or others (any of the mode's 077 bits, as ssh
 * checks): our own DIR/node_key stops the start with the chmod that fixes
 * it (peerd creates it 0600, so someone loosened it; we do not guess it
 * was harmless, as ssh and Bitcoin Core do not); a key lent with
 * --node-key belongs to the node, so it is only warned about, never
 * chmod'ed. 0, or -1 to stop. */
static int check_key_mode(pd_daemon_t *d, const char *path, bool lent) {
  struct stat st;
  if (stat(path, &st) != 0) {
    int rc = -errno;
    LOG(d, PD_LOG_ERROR, "cannot stat the node key; refusing to start", "path", path, "error",
        pd_strerror(rc));
    return -1;
  }
  if ((st.st_mode & 077) == 0) return 0;
  char mode[8], fix[PATH_CAP + 16];
  snprintf(mode, sizeof mode, "%04o", (unsigned)(st.st_mode & 07777));
  snprintf(fix, sizeof fix, "chmod 600 %s", path);
  if (lent) {
    LOG(d, PD_LOG_WARN, "--node-key file is readable by group or others; using it (it is the "
        "node's file: left as it is)", "path", path, "mode", mode, "fix", fix);
    return 0;
  }
  LOG(d, PD_LOG_ERROR, "node key file is readable by group or others; refusing to start", "path",
      path, "mode", mode, "fix", fix);
  return -1;
}

/* DIR/node_key: load it, or create it (randombytes seed, mode 0600) when it
 * does not exist. A file that exists but does not decode is an error: the
 * node's identity is never silently replaced; so is one open to group or
 * others (check_key_mode). */
int dmn_load_identity(pd_daemon_t *d) {
  char path[PATH_CAP];
  /* --node-key FILE: the node lends its own key (peerd's format or
   * CometBFT's node_key.json); read only, never created or written. */
  bool lent = d->cfg.node_key != NULL;
  int pl = lent ? snprintf(path, sizeof path, "%s", d->cfg.node_key)
                : snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_KEY_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) {
    LOG(d, PD_LOG_ERROR, "node key path too long", "dir", d->cfg.data_dir);
    return -1;
  }
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, PD_IDENTITY_FILE_MAX, &buf, &len);
  bool created = false;
  if (rc == -ENOENT && lent) {
    LOG(d, PD_LOG_ERROR, "cannot read --node-key; refusing to start", "path", path, "error",
        pd_strerror(rc));
    return -1;
  } else if (rc == -ENOENT) {
    uint8_t seed[PD_IDENTITY_SEED_LEN];
    randombytes_buf(seed, sizeof seed);
    rc = pd_identity_from_seed(&d->ident, seed);
    sodium_memzero(seed, sizeof seed);
    char text[PD_IDENTITY_FILE_LEN + 1];
    size_t tl = 0;
    if (rc == 0) rc = pd_identity_encode(&d->ident, text, sizeof text, &tl);
    if (rc == 0) rc = pd_fs_write_atomic(d->cfg.data_dir, PD_DAEMON_KEY_FILE, text, tl, 0600);
    sodium_memzero(text, sizeof text);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "cannot create the node key", "path", path, "error", pd_strerror(rc));
      return -1;
    }
    created = true;
  } else if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot read the node key; refusing to start", "path", path, "error",
        pd_strerror(rc));
    return -1;
  } else {
    const char *why = NULL;
    rc = pd_identity_decode_any(buf, len, &d->ident, &why);
    sodium_memzero(buf, len);
    free(buf);
    if (rc < 0) {
      LOG(d, PD_LOG_ERROR, "node key file is damaged; refusing to start (it is never overwritten)",
          "path", path, "error", pd_strerror(rc), "reason", why ? why : "?");
      return -1;
    }
    if (check_key_mode(d, path, lent) < 0) return -1;
  }
  pd_node_status_t *st = pd_node_status(d->node);
  pd_node_id_format(d->ident.id, st->node_id, sizeof st->node_id);
  LOG(d, PD_LOG_INFO, created ? "node key created" : lent ? "node key lent by the node" : "node key loaded",
      "node_id", st->node_id, "path", path);
  return 0;
}

/* ------------------------------------------------------------ anchors */

#define ANCHORS_MAX_FILE (64 * 1024)

/* anchors.json: {"format":"peerd-anchors","version":1,
 *                "anchors":[{"addr":"1.2.3.4:7411","id":"<40 hex>"},...]}
 * Missing: none. Unreadable or malformed: logged and ignored (it is only a
 * hint for the first dials), never fatal. Returns the number loaded. */
size_t dmn_load_anchors(pd_daemon_t *d, pd_dial_target_t *out, size_t cap) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_ANCHORS_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) return 0;
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, ANCHORS_MAX_FILE, &buf, &len);
  if (rc == -ENOENT) return 0;
  if (rc < 0) {
    LOG(d, PD_LOG_WARN, "cannot read anchors; ignoring them", "path", path, "error",
        pd_strerror(rc));
    return 0;
  }
  json_error_t jerr;
  json_t *doc = json_loadb(buf, len, 0, &jerr);
  free(buf);
  json_t *list = doc ? json_object_get(doc, "anchors") : NULL;
  if (!doc || !json_is_array(list) ||
      json_integer_value(json_object_get(doc, "version")) != 1) {
    LOG(d, PD_LOG_WARN, "anchors file malformed; ignoring it", "path", path);
    json_decref(doc);
    return 0;
  }
  size_t n = 0, i;
  json_t *e;
  json_array_foreach(list, i, e) {
    if (n >= cap) break;
    const char *as = json_string_value(json_object_get(e, "addr"));
    const char *ids = json_string_value(json_object_get(e, "id"));
    pd_dial_target_t t;
    memset(&t, 0, sizeof t);
    if (!as || pd_netaddr_parse(as, 0, &t.addr, NULL, NULL, NULL) < 0) continue;
    if (ids && pd_node_id_parse(ids, strlen(ids), t.id) == 0) t.has_id = true;
    out[n++] = t;
  }
  json_decref(doc);
  char nn[16];
  dmn_fmt_u64(nn, sizeof nn, n);
  LOG(d, PD_LOG_INFO, "anchors loaded", "path", path, "anchors", nn);
  return n;
}

/* A small document of ours, {"format": FORMAT, "version": 1, KEY: list},
 * written atomically (one line) as DATA_DIR/name. 0 or < 0. */
int dmn_save_list(pd_daemon_t *d, const char *name, const char *format, const char *key,
                  json_t *list) {
  json_t *doc = json_object();
  if (!doc) return PD_ENOMEM;
  json_object_set_new(doc, "format", json_string(format));
  json_object_set_new(doc, "version", json_integer(1));
  json_object_set(doc, key, list);
  char *text = json_dumps(doc, JSON_COMPACT);
  json_decref(doc);
  if (!text) return PD_ENOMEM;
  size_t tl = strlen(text);
  text[tl] = '\n'; /* json_dumps' NUL becomes the final newline */
  int rc = pd_fs_write_atomic(d->cfg.data_dir, name, text, tl + 1, 0600);
  free(text);
  return rc;
}

void dmn_save_anchors(pd_daemon_t *d) {
  pd_dial_target_t list[PD_DIALER_MAX_ANCHORS];
  size_t n = pd_netmgr_anchors(d->net, list, PD_DIALER_MAX_ANCHORS);
  if (n > PD_DIALER_MAX_ANCHORS) n = PD_DIALER_MAX_ANCHORS;
  json_t *arr = json_array();
  int rc = arr ? 0 : PD_ENOMEM;
  for (size_t i = 0; rc == 0 && i < n; i++) {
    char a[80], id[PD_NODE_ID_HEXLEN + 1];
    json_t *e = json_object();
    if (!e) {
      rc = PD_ENOMEM;
      break;
    }
    pd_netaddr_format(&list[i].addr, a, sizeof a);
    json_object_set_new(e, "addr", json_string(a));
    if (list[i].has_id) {
      pd_node_id_format(list[i].id, id, sizeof id);
      json_object_set_new(e, "id", json_string(id));
    }
    json_array_append_new(arr, e);
  }
  if (rc == 0) rc = dmn_save_list(d, PD_DAEMON_ANCHORS_FILE, "peerd-anchors", "anchors", arr);
  json_decref(arr);
  char nn[16];
  dmn_fmt_u64(nn, sizeof nn, n);
  if (rc == 0) {
    LOG(d, PD_LOG_INFO, "anchors saved", "anchors", nn);
  } else {
    LOG(d, PD_LOG_WARN, "cannot save anchors", "error", pd_strerror(rc));
  }
}
