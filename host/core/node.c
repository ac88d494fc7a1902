/* node — one peerd's core state. See node.h. */
#include "node.h"

#include <math.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "rectable.h"
#include "self.h"
#include "shadow.h"

#include "dht.h"
#include "err.h"

struct pd_node {
  pd_node_config_t cfg;
  unsigned ipv6_prefix; /* misbehaviour bans of IPv6 peers: this /N (0 = 64) */
  pd_book_t *book;
  pd_rng_t *rng;
  pd_node_status_t status;
  pd_metrics_t metrics;
  pd_policy_t *policy;
  pd_reputation_t *rep;
  pd_subnet_t *private_subnets; /* owned copies of cfg's lists */
  uint8_t (*private_ids)[PD_NODE_ID_LEN];
  pd_node_net_ops_t net; /* the driver's view of the network; zero = none */
  void *net_ud;
  struct pd_self *self; /* borrowed */
  pd_rectable_t *records; /* other nodes' records; created at the first */
  struct pd_dht *dht;     /* the DHT engine, when the driver runs one (borrowed) */
  uint64_t dht_self_changes; /* pd_self_changes when our record was last handed to it */
  bool dht_has_record;
  pd_book_hooks_t policy_hooks; /* the policy host's evict hooks, behind the node's */
  pd_node_protect_t protected_[PD_NODE_MAX_PROTECTED]; /* POST /v1/protected */
  size_t nprotected;
  pd_event_sink_t events; /* the driver's audit sink; fn NULL = none */
  pd_shadow_t *shadow;    /* --shadow-policies; NULL: never enabled */
  const char *shadow_dir; /* borrowed; NULL: none (never, or promoted) */
};

/* A shadow set is loaded: every decision is also asked of it. */
static bool shadowing(const pd_node_t *n) { return n->shadow && pd_shadow_loaded(n->shadow); }

/* A protected entry keeps its place: the node's evict hooks answer before
 * the policy's (and the built-in rule) are asked. */
static bool entry_protected(const pd_node_t *n, const pd_book_t *b, uint32_t id) {
  pd_book_info_t e;
  if (n->nprotected == 0 || pd_book_info(b, id, &e) != 0) return false;
  return pd_node_is_protected(n, &e.addr, e.has_node_id ? e.node_id : NULL);
}

static int node_evict_new(void *ud, const pd_book_t *b, uint32_t incumbent,
                          const pd_book_info_t *candidate, int64_t now) {
  pd_node_t *n = ud;
  if (entry_protected(n, b, incumbent)) return PD_BOOK_KEEP;
  pd_rng_t before = *n->rng;
  int v = n->policy_hooks.evict_new
              ? n->policy_hooks.evict_new(n->policy_hooks.ud, b, incumbent, candidate, now)
              : PD_BOOK_HOOK_DEFAULT;
  if (shadowing(n)) pd_shadow_evict_new(n->shadow, b, incumbent, candidate, &before, now, v);
  return v;
}

static int node_evict_tried(void *ud, const pd_book_t *b, uint32_t incumbent, uint32_t candidate,
                            int64_t now) {
  pd_node_t *n = ud;
  if (entry_protected(n, b, incumbent)) return PD_BOOK_KEEP;
  pd_rng_t before = *n->rng;
  int v = n->policy_hooks.evict_tried
              ? n->policy_hooks.evict_tried(n->policy_hooks.ud, b, incumbent, candidate, now)
              : PD_BOOK_HOOK_DEFAULT;
  if (shadowing(n)) pd_shadow_evict_tried(n->shadow, b, incumbent, candidate, &before, now, v);
  return v;
}

static void install_hooks(pd_node_t *n) {
  pd_policy_book_hooks(n->policy, n->rng, &n->policy_hooks);
  pd_book_hooks_t h = {.evict_new = node_evict_new, .evict_tried = node_evict_tried, .ud = n};
  pd_book_set_hooks(n->book, &h);
  pd_book_set_events(n->book, &n->events);
}

void pd_node_set_events(pd_node_t *n, const pd_event_sink_t *sink) {
  if (!n) return;
  if (sink) {
    n->events = *sink;
  } else {
    memset(&n->events, 0, sizeof n->events);
  }
  pd_book_set_events(n->book, &n->events);
}

const pd_event_sink_t *pd_node_events(const pd_node_t *n) { return &n->events; }

void pd_node_emit(pd_node_t *n, const pd_event_t *e) {
  if (n) pd_event_emit(&n->events, e);
}

/* Copy s (may be NULL) into a fixed buffer, truncating on a UTF-8 boundary. */
void pd_node_copy_text(char *dst, size_t cap, const char *s) {
  if (!s) {
    dst[0] = '\0';
    return;
  }
  size_t n = strlen(s);
  if (n >= cap) {
    n = cap - 1;
    while (n > 0 && ((unsigned char)s[n] & 0xC0) == 0x80) n--;
  }
  memcpy(dst, s, n);
  dst[n] = '\0';
}

/* On failure nothing is taken: the book stays the caller's. */
int pd_node_create(pd_node_t **out, const pd_node_config_t *cfg, pd_book_t *book, pd_rng_t *rng,
                   int64_t now) {
  if (!out || !cfg || !book || !rng) return PD_EINVAL;
  pd_node_t *n = calloc(1, sizeof(*n));
  if (!n) return PD_ENOMEM;
  n->cfg = *cfg;
  n->cfg.private_subnets = NULL;
  n->cfg.private_ids = NULL;
  pd_policy_limits_t def, lim = cfg->policy_limits;
  pd_policy_limits_default(&def);
  if (!lim.call_instructions) lim.call_instructions = def.call_instructions;
  if (!lim.call_deadline_ms) lim.call_deadline_ms = def.call_deadline_ms;
  if (!lim.memory_bytes) lim.memory_bytes = def.memory_bytes;
  if (!lim.load_instructions) lim.load_instructions = def.load_instructions;
  if (!lim.load_deadline_ms) lim.load_deadline_ms = def.load_deadline_ms;
  if (!lim.request_instructions) lim.request_instructions = 10 * lim.call_instructions;
  if (!lim.request_deadline_ms) lim.request_deadline_ms = 5 * lim.call_deadline_ms;
  n->cfg.policy_limits = lim;
  int rc = 0;
  if (cfg->nprivate_subnets) {
    n->private_subnets = malloc(cfg->nprivate_subnets * sizeof *n->private_subnets);
    if (!n->private_subnets) rc = PD_ENOMEM;
    else memcpy(n->private_subnets, cfg->private_subnets, cfg->nprivate_subnets * sizeof *n->private_subnets);
  }
  if (rc == 0 && cfg->nprivate_ids) {
    n->private_ids = malloc(cfg->nprivate_ids * sizeof *n->private_ids);
    if (!n->private_ids) rc = PD_ENOMEM;
    else memcpy(n->private_ids, cfg->private_ids, cfg->nprivate_ids * sizeof *n->private_ids);
  }
  if (rc == 0) rc = pd_policy_create(&n->policy, &lim, cfg->policy_clock, cfg->policy_clock_ud);
  if (rc == 0) rc = pd_reputation_create(&n->rep, cfg->reputation_max, pd_rng_u64(rng));
  if (rc < 0) {
    pd_policy_destroy(n->policy);
    free(n->private_subnets);
    free(n->private_ids);
    free(n);
    return rc;
  }
  n->book = book;
  n->rng = rng;
  n->status.started_at = now;
  pd_metrics_init(&n->metrics);
  install_hooks(n);
  *out = n;
  return 0;
}

void pd_node_destroy(pd_node_t *n) {
  if (!n) return;
  pd_book_destroy(n->book);
  pd_policy_destroy(n->policy);
  pd_shadow_destroy(n->shadow);
  pd_reputation_destroy(n->rep);
  pd_rectable_destroy(n->records);
  free(n->private_subnets);
  free(n->private_ids);
  free(n);
}

pd_book_t *pd_node_book(pd_node_t *n) { return n->book; }

void pd_node_set_self(pd_node_t *n, struct pd_self *self) { n->self = self; }
struct pd_self *pd_node_self(pd_node_t *n) { return n->self; }
pd_rng_t *pd_node_rng(pd_node_t *n) { return n->rng; }
const pd_node_config_t *pd_node_config(const pd_node_t *n) { return &n->cfg; }
pd_node_status_t *pd_node_status(pd_node_t *n) { return &n->status; }
pd_metrics_t *pd_node_metrics(pd_node_t *n) { return &n->metrics; }

void pd_node_set_book(pd_node_t *n, pd_book_t *book) {
  if (!book || book == n->book) return;
  pd_book_destroy(n->book);
  n->book = book;
  install_hooks(n);
}

void pd_node_note_save(pd_node_t *n, int rc, const char *error, size_t bytes, size_t entries,
                       int64_t now) {
  pd_node_status_t *st = &n->status;
  st->last_save_at = now;
  st->last_save_rc = rc < 0 ? rc : 0;
  if (rc < 0) {
    pd_node_copy_text(st->last_save_error, sizeof(st->last_save_error), error ? error : pd_strerror(rc));
  } else {
    st->last_save_error[0] = '\0';
  }
  st->last_save_bytes = bytes;
  st->last_save_entries = entries;
  pd_metrics_count_save(&n->metrics, rc >= 0, now);
}

void pd_node_note_load(pd_node_t *n, int rc, const char *error, const char *moved_to,
                       const pd_bookstore_report_t *report) {
  pd_node_status_t *st = &n->status;
  st->load_failed = rc < 0;
  if (rc < 0) {
    pd_node_copy_text(st->load_error, sizeof(st->load_error), error ? error : pd_strerror(rc));
    pd_metrics_count_load_error(&n->metrics);
  } else {
    st->load_error[0] = '\0';
  }
  pd_node_copy_text(st->load_moved_to, sizeof(st->load_moved_to), moved_to);
  if (report) {
    st->load_report = *report;
    st->load_report.first_skip[sizeof(st->load_report.first_skip) - 1] = '\0';
    pd_metrics_count_load_skipped(&n->metrics, report->entries_skipped);
  } else {
    memset(&st->load_report, 0, sizeof(st->load_report));
  }
}

void pd_node_set_net(pd_node_t *n, const pd_node_net_ops_t *ops, void *ud) {
  if (ops) {
    n->net = *ops;
    n->net_ud = ud;
  } else {
    memset(&n->net, 0, sizeof n->net);
    n->net_ud = NULL;
  }
}

size_t pd_node_peers(pd_node_t *n, int64_t now, pd_node_peer_info_t *out, size_t cap) {
  if (!n->net.peers) return 0;
  return n->net.peers(n->net_ud, now, out, cap);
}

bool pd_node_net_counters(pd_node_t *n, pd_metrics_net_t *out) {
  if (!n->net.counters) return false;
  memset(out, 0, sizeof *out);
  n->net.counters(n->net_ud, out);
  return true;
}

bool pd_node_net_control(const pd_node_t *n) {
  return n->net.disconnect && n->net.connect && n->net.dial_state;
}

size_t pd_node_net_disconnect(pd_node_t *n, const pd_netaddr_t *addr, bool any_port,
                              const uint8_t *id, int64_t now, pd_node_closed_t *out, size_t cap) {
  if (!n->net.disconnect) return 0;
  return n->net.disconnect(n->net_ud, addr, any_port, id, now, out, cap);
}

int pd_node_net_connect(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                        const char **why) {
  if (!n->net.connect) {
    if (why) *why = "no network";
    return PD_EINVAL;
  }
  return n->net.connect(n->net_ud, addr, id, now, why);
}

bool pd_node_net_dial_state(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *id,
                            int64_t now, pd_node_dial_state_t *out) {
  memset(out, 0, sizeof *out);
  if (!n->net.dial_state) return false;
  n->net.dial_state(n->net_ud, addr, id, now, out);
  return true;
}

/* ---- protected peers ---- */

static bool protect_same(const pd_node_protect_t *a, const pd_node_protect_t *b) {
  if (a->has_id != b->has_id || a->has_addr != b->has_addr) return false;
  if (a->has_id && memcmp(a->id, b->id, PD_NODE_ID_LEN) != 0) return false;
  if (a->has_addr && (a->any_port != b->any_port || !pd_netaddr_same_ip(&a->addr, &b->addr) ||
                      (!a->any_port && a->addr.port != b->addr.port)))
    return false;
  return true;
}

int pd_node_protect(pd_node_t *n, const pd_node_protect_t *p, int64_t now) {
  if (!p || (!p->has_id && !p->has_addr)) return PD_EINVAL;
  for (size_t i = 0; i < n->nprotected; i++)
    if (protect_same(&n->protected_[i], p)) return 1;
  if (n->nprotected == PD_NODE_MAX_PROTECTED) return PD_EFULL;
  pd_node_protect_t *e = &n->protected_[n->nprotected++];
  *e = *p;
  if (e->any_port) e->addr.port = 0;
  e->since = now;
  return 0;
}

int pd_node_unprotect(pd_node_t *n, const pd_node_protect_t *p) {
  for (size_t i = 0; p && i < n->nprotected; i++) {
    if (!protect_same(&n->protected_[i], p)) continue;
    memmove(&n->protected_[i], &n->protected_[i + 1],
            (n->nprotected - i - 1) * sizeof n->protected_[0]);
    n->nprotected--;
    return 0;
  }
  return PD_ENOENT;
}

void pd_node_set_ipv6_prefix(pd_node_t *n, unsigned bits) {
  if (n) n->ipv6_prefix = bits;
}

bool pd_node_is_protected(const pd_node_t *n, const pd_netaddr_t *a, const uint8_t *id) {
  for (size_t i = 0; i < n->nprotected; i++) {
    const pd_node_protect_t *e = &n->protected_[i];
    if (e->has_id && id && memcmp(e->id, id, PD_NODE_ID_LEN) == 0) return true;
    if (e->has_addr && a && pd_netaddr_same_ip(&e->addr, a) &&
        (e->any_port || e->addr.port == a->port))
      return true;
  }
  return false;
}

bool pd_node_protects_ids(const pd_node_t *n) {
  for (size_t i = 0; i < n->nprotected; i++)
    if (n->protected_[i].has_id) return true;
  return false;
}

size_t pd_node_protected(const pd_node_t *n, pd_node_protect_t *out, size_t cap) {
  for (size_t i = 0; out && i < n->nprotected && i < cap; i++) out[i] = n->protected_[i];
  return n->nprotected;
}

/* ---- policy check ---- */

void pd_node_policy_check(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                          pd_node_check_t *out) {
  memset(out, 0, sizeof *out);
  out->ok = true;
  size_t cap = sizeof out->files / sizeof out->files[0];
  for (size_t i = 0; i < nfiles && i < cap; i++) {
    pd_node_check_file_t *f = &out->files[out->nfiles++];
    pd_node_copy_text(f->name, sizeof f->name, files[i].name);
    pd_policy_t *scratch = NULL;
    int rc = pd_policy_create(&scratch, &n->cfg.policy_limits, n->cfg.policy_clock,
                              n->cfg.policy_clock_ud);
    if (rc == 0) rc = pd_policy_load(scratch, &files[i], 1, now, f->error, sizeof f->error);
    else pd_node_copy_text(f->error, sizeof f->error, pd_strerror(rc));
    f->ok = rc == 0;
    if (f->ok) {
      for (int h = 0; h < PD_HOOK_COUNT; h++) f->has_hook[h] = pd_policy_has_hook(scratch, h);
    } else {
      out->ok = false;
    }
    pd_policy_destroy(scratch);
  }
  if (!out->ok) return;
  pd_policy_t *scratch = NULL;
  int rc = pd_policy_create(&scratch, &n->cfg.policy_limits, n->cfg.policy_clock,
                            n->cfg.policy_clock_ud);
  if (rc == 0) rc = pd_policy_load(scratch, files, nfiles, now, out->error, sizeof out->error);
  else pd_node_copy_text(out->error, sizeof out->error, pd_strerror(rc));
  if (rc == 0) {
    pd_policy_status_t ps;
    pd_policy_status(scratch, &ps);
    memcpy(out->hash, ps.hash, sizeof out->hash);
    out->memory_bytes = ps.memory_bytes;
  } else {
    out->ok = false;
  }
  pd_policy_destroy(scratch);
}

/* "unban" by "expiry" for every ban that pd_banlist_expire will drop now. */
static void emit_expiries(pd_node_t *n, int64_t now) {
  const pd_banlist_t *bl = pd_book_bans_const(n->book);
  const pd_ban_t *b;
  for (size_t i = 0; (b = pd_banlist_get(bl, i)) != NULL; i++) {
    if (b->until == 0 || b->until > now) continue;
    pd_event_t ev;
    pd_event_init(&ev, PD_EV_UNBAN, now * 1000);
    pd_event_subnet(&ev, "subnet", &b->subnet);
    pd_event_str(&ev, "by", "expiry");
    pd_event_str(&ev, "reason", b->reason);
    pd_event_time(&ev, "until", b->until);
    pd_event_emit(&n->events, &ev);
  }
}

bool pd_node_tick(pd_node_t *n, int64_t now) {
  if (pd_event_sink_on(&n->events)) emit_expiries(n, now);
  pd_banlist_expire(pd_book_bans(n->book), now);
  pd_book_resolve_collisions(n->book, now);
  if (n->cfg.save_interval <= 0) return false; /* periodic saves disabled */
  int64_t since = n->status.last_save_at ? n->status.last_save_at : n->status.started_at;
  return now - since >= n->cfg.save_interval;
}

int64_t pd_node_next_deadline(pd_node_t *n, int64_t now) {
  if (!n) return INT64_MAX;
  if (pd_book_collision_count(n->book) > 0) return now;
  int64_t t = INT64_MAX;
  const pd_banlist_t *bl = pd_book_bans_const(n->book);
  size_t nb = pd_banlist_count(bl);
  for (size_t i = 0; i < nb; i++) {
    const pd_ban_t *b = pd_banlist_get(bl, i);
    if (b && b->until > 0 && b->until < t) t = b->until;
  }
  if (n->cfg.save_interval > 0) {
    int64_t since = n->status.last_save_at ? n->status.last_save_at : n->status.started_at;
    if (since + n->cfg.save_interval < t) t = since + n->cfg.save_interval;
  }
  return t < now ? now : t;
}

/* ---- policies, reputation, decisions ---------------------------------- */

pd_policy_t *pd_node_policy(pd_node_t *n) { return n->policy; }
pd_reputation_t *pd_node_reputation(pd_node_t *n) { return n->rep; }

int pd_node_policy_load(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                        char *err, size_t cap) {
  return pd_node_policy_load_by(n, files, nfiles, NULL, now, err, cap);
}

int pd_node_policy_load_by(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles,
                           const char *trigger, int64_t now, char *err, size_t cap) {
  char buf[512] = "";
  int rc = pd_policy_load(n->policy, files, nfiles, now, buf, sizeof buf);
  if (err && cap) pd_node_copy_text(err, cap, buf);
  if (rc == 0) {
    n->status.last_policy_load_rc = 0;
    pd_metrics_count_policy_reload(&n->metrics, 1);
    if (pd_event_sink_on(&n->events)) {
      pd_policy_status_t ps;
      pd_policy_status(n->policy, &ps);
      pd_event_t ev;
      pd_event_init(&ev, PD_EV_POLICY_LOADED, now * 1000);
      pd_event_int(&ev, "generation", (int64_t)ps.generation);
      pd_event_str(&ev, "hash", ps.hash);
      char fl[600] = "";
      size_t off = 0;
      for (size_t i = 0; i < ps.nfiles && i < 8; i++) {
        int w = snprintf(fl + off, sizeof fl - off, "%s%.63s", i ? "," : "", ps.files[i]);
        if (w > 0 && (size_t)w < sizeof fl - off) off += (size_t)w;
      }
      pd_event_str(&ev, "files", fl);
      pd_event_str(&ev, "trigger", trigger);
      pd_event_emit(&n->events, &ev);
    }
    return 0;
  }
  pd_node_policy_load_failed_by(n, buf[0] ? buf : pd_strerror(rc), trigger, now);
  n->status.last_policy_load_rc = rc < 0 ? rc : PD_EINVAL;
  return n->status.last_policy_load_rc;
}

void pd_node_policy_load_failed(pd_node_t *n, const char *error, int64_t now) {
  pd_node_policy_load_failed_by(n, error, NULL, now);
}

void pd_node_policy_load_failed_by(pd_node_t *n, const char *error, const char *trigger,
                                   int64_t now) {
  pd_policy_note_error(n->policy, error ? error : "policy load failed", now);
  n->status.last_policy_load_rc = PD_EINVAL;
  n->status.policy_error_at = now;
  pd_node_copy_text(n->status.policy_error, sizeof n->status.policy_error,
                    error ? error : "policy load failed");
  pd_metrics_count_policy_reload(&n->metrics, 0);
  if (pd_event_sink_on(&n->events)) {
    pd_event_t ev;
    pd_event_init(&ev, PD_EV_POLICY_FAILED, now * 1000);
    pd_event_str(&ev, "error", n->status.policy_error);
    pd_event_str(&ev, "trigger", trigger);
    pd_event_emit(&n->events, &ev);
  }
}

/* ---- policies under load ---------------------------------------------- */

void pd_node_budget_begin(pd_node_t *n) {
  if (!n) return;
  pd_policy_budget_begin(n->policy, 0, 0);
  if (n->shadow) pd_policy_budget_begin(pd_shadow_policy(n->shadow), 0, 0);
}

void pd_node_budget_end(pd_node_t *n) {
  if (!n) return;
  pd_policy_budget_end(n->policy);
  if (n->shadow) pd_policy_budget_end(pd_shadow_policy(n->shadow));
}

int pd_node_shadow_enable(pd_node_t *n, const char *dir) {
  if (!n) return PD_EINVAL;
  if (!n->shadow) {
    int rc = pd_shadow_create(&n->shadow, &n->cfg.policy_limits, n->cfg.policy_clock,
                              n->cfg.policy_clock_ud);
    if (rc < 0) return rc;
    pd_policy_set_records(pd_shadow_policy(n->shadow), n->records);
  }
  n->shadow_dir = dir;
  return 0;
}

pd_shadow_t *pd_node_shadow(pd_node_t *n) { return n ? n->shadow : NULL; }
const char *pd_node_shadow_dir(const pd_node_t *n) { return n ? n->shadow_dir : NULL; }

int pd_node_shadow_load(pd_node_t *n, const pd_policy_file_t *files, size_t nfiles, int64_t now,
                        char *err, size_t cap) {
  if (!n || !n->shadow) return PD_ENOENT;
  return pd_shadow_load(n->shadow, files, nfiles, now, err, cap);
}

void pd_node_shadow_load_failed(pd_node_t *n, const char *error, int64_t now) {
  if (n && n->shadow) pd_shadow_load_failed(n->shadow, error, now);
}

int pd_node_shadow_promote(pd_node_t *n, int64_t now) {
  if (!n || !shadowing(n)) return PD_ENOENT;
  int rc = pd_policy_adopt(n->policy, pd_shadow_policy(n->shadow), now);
  if (rc < 0) return rc;
  pd_shadow_clear(n->shadow, now);
  if (n->shadow_dir) {
    n->cfg.policy_dir = n->shadow_dir;
    n->cfg.policy_builtin = false; /* the promoted set came from a directory */
  }
  n->shadow_dir = NULL;
  n->status.last_policy_load_rc = 0;
  pd_metrics_count_policy_reload(&n->metrics, 1);
  return 0;
}

bool pd_node_is_private(const pd_node_t *n, const pd_netaddr_t *a, const uint8_t *id) {
  for (size_t i = 0; i < n->cfg.nprivate_subnets; i++) {
    if (pd_subnet_contains(&n->private_subnets[i], a)) return true;
  }
  if (id) {
    for (size_t i = 0; i < n->cfg.nprivate_ids; i++) {
      if (memcmp(n->private_ids[i], id, PD_NODE_ID_LEN) == 0) return true;
    }
  }
  return false;
}

/* The book's part of a view: from entry e, or "unknown" (e NULL). */
static void view_book_fields(pd_peer_view_t *v, const pd_book_info_t *e) {
  v->known = e != NULL;
  v->tried = e && e->in_tried;
  v->attempts = e ? e->attempts : 0;
  v->last_try = e ? e->last_try : 0;
  v->last_success = e ? e->last_success : 0;
  v->time = e ? e->time : 0;
  v->has_node_id = e && e->has_node_id;
  if (v->has_node_id) memcpy(v->node_id, e->node_id, PD_NODE_ID_LEN);
  else memset(v->node_id, 0, PD_NODE_ID_LEN);
  v->service_only = e && e->service_only;
}

/* pd_node_peer_view with the address's book hash when the caller has it
 * (pd_book_prefetch's pass 0), NULL otherwise. */
static void peer_view_h(pd_node_t *n, const pd_netaddr_t *a, const uint64_t *book_hash,
                        int64_t now, pd_peer_view_t *v) {
  memset(v, 0, sizeof *v);
  v->addr = *a;
  v->latency_ms = -1;
  uint32_t id = pd_book_find_remember(n->book, a, book_hash);
  pd_book_info_t e;
  if (id != PD_BOOK_NO_ID && pd_book_info(n->book, id, &e) == 0) view_book_fields(v, &e);
  const pd_rep_record_t *r = pd_reputation_get(n->rep, a);
  if (r) {
    v->first_seen = r->first_seen;
    v->latency_ms = r->latency_ms;
    v->reputation = r->reputation;
    v->misbehaviours = r->misbehaviours;
  }
  v->banned = pd_banlist_is_banned(pd_book_bans_const(n->book), a, now, NULL);
  v->private_peer = pd_node_is_private(n, a, v->has_node_id ? v->node_id : NULL);
  /* --allow-private treats valid private/loopback addresses like public
   * ones (groups, book), so policies see them as routable too: a test
   * network on 127.K.0.1 addresses then gossips like a public one. */
  v->routable = pd_netaddr_is_routable(a) ||
                (pd_book_allow_private(n->book) && pd_netaddr_is_valid(a));
  v->group_len = pd_netaddr_group(a, pd_book_allow_private(n->book), v->group);
}

void pd_node_peer_view(pd_node_t *n, const pd_netaddr_t *a, int64_t now, pd_peer_view_t *v) {
  peer_view_h(n, a, NULL, now, v);
}

double pd_node_default_score(const pd_peer_view_t *v, int64_t now) {
  double s = v->reputation;
  if (v->tried) s += 10;
  if (v->last_success > 0) {
    double days = (double)(now - v->last_success) / 86400.0;
    if (days < 0) days = 0;
    s += 5 * pow(0.5, days / 7);
  }
  s -= 2.0 * v->attempts;
  if (v->latency_ms >= 0) s -= v->latency_ms / 100 > 5 ? 5 : v->latency_ms / 100;
  if (v->banned) s -= 1000;
  return s;
}

double pd_node_score(pd_node_t *n, const pd_peer_view_t *v, int64_t now) {
  double s;
  pd_rng_t before = *n->rng;
  bool pol = pd_policy_score(n->policy, v, n->rng, now, &s) == 0 && isfinite(s);
  if (!pol) s = pd_node_default_score(v, now);
  if (shadowing(n))
    pd_shadow_score(n->shadow, v, &before, now, s, !pol, pol ? pd_node_default_score(v, now) : s);
  return s;
}

size_t pd_node_dial(pd_node_t *n, size_t k, int64_t now, uint32_t *out, bool *by_policy) {
  return pd_node_dial_ctx(n, k, NULL, now, out, by_policy);
}

size_t pd_node_dial_ctx(pd_node_t *n, size_t k, const pd_policy_select_ctx_t *ctx, int64_t now,
                        uint32_t *out, bool *by_policy) {
  size_t got = 0;
  if (by_policy) *by_policy = false;
  if (k == 0) return 0;
  pd_rng_t before = *n->rng;
  bool pol = false;
  if (pd_policy_select_ctx(n->policy, n->book, n->rng, k, ctx, now, out, &got) == 0) {
    size_t w = 0;
    pd_book_info_t e;
    for (size_t i = 0; i < got && i < k; i++) {
      if (pd_book_info(n->book, out[i], &e) == 0) out[w++] = out[i];
    }
    if (by_policy) *by_policy = true;
    got = w;
    pol = true;
  } else {
    got = pd_book_select(n->book, k, now, out);
  }
  if (shadowing(n))
    pd_shadow_select(n->shadow, n->book, n->rng, &before, k, ctx, now, out, got, !pol);
  return got;
}

int pd_node_event(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                  const char *reason, int64_t now, pd_node_event_result_t *out) {
  return pd_node_event_ex(n, a, ev, reason, false, "overlay", PD_METRICS_BAN_REPUTATION, now, out);
}

int pd_node_event_dir(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                      const char *reason, bool inbound, int64_t now, pd_node_event_result_t *out) {
  return pd_node_event_ex(n, a, ev, reason, inbound, "node", PD_METRICS_BAN_REPUTATION, now, out);
}

int pd_node_event_ex(pd_node_t *n, const pd_netaddr_t *a, enum pd_metrics_event ev,
                     const char *reason, bool inbound, const char *trigger,
                     enum pd_metrics_ban_cause cause, int64_t now, pd_node_event_result_t *out) {
  memset(out, 0, sizeof *out);
  const char *ev_name = pd_metrics_event_name(ev);
  if (!ev_name) return PD_EINVAL;
  uint32_t id = pd_book_find(n->book, a);
  pd_book_info_t before;
  out->known = id != PD_BOOK_NO_ID && pd_book_info(n->book, id, &before) == 0;
  out->was_tried = out->known && before.in_tried;
  if (!out->known && ev != PD_METRICS_EV_MISBEHAVED) return PD_ENOENT;

  int rc = 0;
  switch (ev) {
  case PD_METRICS_EV_ATTEMPT: rc = pd_book_attempt(n->book, a, false, now); break;
  case PD_METRICS_EV_FAILED: rc = pd_book_attempt(n->book, a, true, now); break;
  case PD_METRICS_EV_CONNECTED:
  case PD_METRICS_EV_DISCONNECTED: rc = pd_book_connected(n->book, a, now); break;
  case PD_METRICS_EV_GOOD:
    if (inbound) {
      rc = pd_book_connected(n->book, a, now);
      out->book_result = "inbound";
      break;
    }
    rc = pd_book_good(n->book, a, true, now);
    if (rc == 1) out->book_result = "moved_to_tried";
    else if (rc == 0) out->book_result = out->was_tried ? "already_tried" : "tried_collision";
    break;
  default: break;
  }
  if (rc < 0) return rc;

  /* Reputation: the policy sees the peer after the book update. */
  pd_peer_view_t v;
  pd_node_peer_view(n, a, now, &v);
  pd_rep_verdict_t verdict;
  memset(&verdict, 0, sizeof verdict);
  pd_rng_t rng0 = *n->rng;
  int prc = pd_policy_reputation(n->policy, &v, ev_name, reason, n->rng, now, &verdict);
  if (shadowing(n)) {
    /* both sides as verdicts: what the live side used, and the C default */
    pd_rep_default_t d;
    pd_reputation_default(v.reputation, ev_name, n->cfg.default_ban_secs, &d);
    pd_rep_verdict_t def, used;
    memset(&def, 0, sizeof def);
    def.reputation = d.reputation;
    def.ban_secs = d.ban_secs;
    bool pol = prc == 0 && isfinite(verdict.reputation);
    used = pol ? verdict : def;
    used.reason[sizeof used.reason - 1] = '\0';
    pd_shadow_reputation(n->shadow, &v, ev_name, reason, &rng0, now, &used, !pol, &def);
  }
  double newrep;
  int64_t ban_secs;
  const char *ban_reason;
  if (prc == 0 && isfinite(verdict.reputation)) {
    out->by_policy = true;
    newrep = verdict.reputation;
    ban_secs = verdict.ban_secs;
    verdict.reason[sizeof verdict.reason - 1] = '\0';
    ban_reason = verdict.reason[0] ? verdict.reason : (reason && *reason) ? reason : ev_name;
  } else {
    pd_rep_default_t d;
    pd_reputation_default(v.reputation, ev_name, n->cfg.default_ban_secs, &d);
    newrep = d.reputation;
    ban_secs = d.ban_secs;
    ban_reason = (reason && *reason) ? reason : ev_name;
  }
  rc = pd_reputation_update(n->rep, a, newrep, ev == PD_METRICS_EV_MISBEHAVED, now);
  if (rc < 0) return rc;
  const pd_rep_record_t *r = pd_reputation_get(n->rep, a);
  out->reputation = r ? r->reputation : newrep;
  out->misbehaviours = r ? r->misbehaviours : 0;

  if (ban_secs != 0) {
    pd_subnet_host(a, n->ipv6_prefix, &out->ban_subnet);
    int64_t until = 0; /* permanent */
    if (ban_secs > 0) until = ban_secs > INT64_MAX - now ? 0 : now + ban_secs;
    pd_node_copy_text(out->ban_reason, sizeof out->ban_reason, ban_reason);
    rc = pd_banlist_add(pd_book_bans(n->book), &out->ban_subnet, now, until, out->ban_reason);
    if (rc < 0) return rc;
    pd_metrics_count_ban(&n->metrics, cause);
    out->banned = true;
    out->ban_until = until;
    if (pd_event_sink_on(&n->events)) {
      pd_event_t e;
      pd_event_init(&e, PD_EV_BAN, now * 1000);
      pd_event_subnet(&e, "subnet", &out->ban_subnet);
      pd_event_addr(&e, "addr", a);
      pd_event_str(&e, "by", out->by_policy ? "policy" : "reputation");
      pd_event_str(&e, "trigger", trigger);
      pd_event_str(&e, "event", ev_name);
      pd_event_str(&e, "reason", out->ban_reason);
      pd_event_time(&e, "until", until);
      pd_event_int(&e, "misbehaviours", out->misbehaviours);
      pd_event_emit(&n->events, &e);
    }
  }
  return 0;
}

/* The view pex.lua's accept gets of a gossiped address (with the node id
 * the message carried when the book knows none). */
static void pex_addr_view_h(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *addr_id,
                            const uint64_t *book_hash, int64_t now, pd_peer_view_t *va) {
  peer_view_h(n, addr, book_hash, now, va);
  if (addr_id && !va->has_node_id) {
    va->has_node_id = true;
    memcpy(va->node_id, addr_id, PD_NODE_ID_LEN);
    va->private_peer = va->private_peer || pd_node_is_private(n, addr, addr_id);
  }
}

static void pex_addr_view(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *addr_id,
                          int64_t now, pd_peer_view_t *va) {
  pex_addr_view_h(n, addr, addr_id, NULL, now, va);
}

bool pd_node_pex_accept(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *addr_id,
                        const pd_netaddr_t *from, int64_t now) {
  pd_peer_view_t va, vf;
  pex_addr_view(n, addr, addr_id, now, &va);
  pd_node_peer_view(n, from, now, &vf);
  bool ok = true;
  pd_rng_t before = *n->rng;
  bool pol = pd_policy_pex_accept(n->policy, &va, &vf, n->rng, now, &ok) == 0;
  if (!pol) ok = true;
  if (shadowing(n)) pd_shadow_pex(n->shadow, PD_HOOK_PEX_ACCEPT, &va, &vf, &before, now, ok, !pol);
  return ok;
}

/* ---- dht.lua ---- */

bool pd_node_dht_admit_default(const pd_policy_dht_node_t *v) {
  /* the table's own rule (dhttable.c), one definition */
  pd_dht_admit_info_t in = {.routable = v->routable, .subnet_in_bucket = v->subnet_in_bucket,
                            .subnet_in_table = v->subnet_in_table};
  return pd_dht_admit_default(&in);
}

bool pd_node_dht_admit_entry(pd_node_t *n, const pd_dht_admit_info_t *in, int64_t now) {
  pd_policy_dht_node_t v;
  memset(&v, 0, sizeof v);
  v.addr = in->node->ep;
  memcpy(v.node_id, in->node->id, PD_NODE_ID_LEN);
  v.seq = in->node->seq;
  v.routable = in->routable;
  v.bucket = in->bucket;
  v.bucket_size = in->bucket_size;
  v.k = in->k;
  v.subnet_in_bucket = in->subnet_in_bucket;
  v.subnet_in_table = in->subnet_in_table;
  return pd_node_dht_admit(n, &v, now);
}

bool pd_node_dht_wants_more(const pd_node_t *n) {
  return pd_book_count_new(n->book) + pd_book_count_tried(n->book) < PD_NODE_DHT_BOOK_TARGET;
}

void pd_node_dht_sync_record(pd_node_t *n) {
  if (!n->dht || !n->self) return;
  uint64_t ch = pd_self_changes(n->self);
  if (n->dht_has_record && ch == n->dht_self_changes) return;
  size_t len = 0;
  const uint8_t *bytes = pd_self_bytes(n->self, &len);
  if (bytes && pd_dht_set_record(n->dht, bytes, len) == 0) {
    n->dht_self_changes = ch;
    n->dht_has_record = true;
  }
}

void pd_node_dht_offer_records(pd_node_t *n, size_t *cursor, size_t max, int64_t now_ms) {
  size_t held = n->records ? pd_rectable_count(n->records) : 0;
  for (size_t k = 0; n->dht && k < max && held; k++) {
    const pd_rec_t *r = pd_rectable_at(n->records, (*cursor)++ % held);
    pd_record_t rec;
    pd_netaddr_t ep;
    if (!r || pd_rec_decode(r, &rec) != 0 || !pd_dht_record_endpoint(&rec, &ep)) continue;
    (void)pd_dht_add_node(n->dht, rec.id, &ep, r->bytes, r->len, now_ms);
  }
}

bool pd_node_dht_admit(pd_node_t *n, const pd_policy_dht_node_t *v, int64_t now) {
  if (!n || !v) return false;
  bool def = pd_node_dht_admit_default(v), ok = def;
  pd_rng_t before = *n->rng;
  bool pol = pd_policy_dht_admit(n->policy, v, n->rng, now, &ok) == 0;
  if (!pol) ok = def;
  if (shadowing(n)) pd_shadow_dht_admit(n->shadow, v, &before, now, ok, !pol, def);
  return ok;
}

bool pd_node_dht_feed(pd_node_t *n, const pd_record_t *rec, const pd_netaddr_t *from,
                      int64_t now) {
  if (!n || !rec || !from) return false;
  bool service_only = false;
  const pd_netaddr_t *at = pd_record_placed(rec, &service_only);
  if (!at) return false; /* nowhere to place it */
  pd_peer_view_t va, vf;
  pex_addr_view(n, at, rec->id, now, &va);
  va.service_only = va.service_only || service_only;
  pd_node_peer_view(n, from, now, &vf);
  bool ok = true;
  pd_rng_t before = *n->rng;
  bool pol = pd_policy_dht_feed(n->policy, &va, &vf, n->rng, now, &ok) == 0;
  if (!pol) ok = true;
  if (shadowing(n)) pd_shadow_dht_feed(n->shadow, &va, &vf, &before, now, ok, !pol);
  return ok;
}

bool pd_node_dht_found(pd_node_t *n, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                       const pd_netaddr_t *from, int64_t now) {
  const pd_rec_t *known = n->records ? pd_rectable_find(n->records, rec->id) : NULL;
  if (known && known->seq >= rec->seq) return false;
  if (!pd_node_dht_feed(n, rec, from, now)) return false;
  pd_netaddr_t src = *from;
  src.port = 0;
  return pd_node_learn_record(n, bytes, len, rec, &src, now, now, NULL) >= 0;
}

#define PEX_PREFETCH 32
typedef struct {
  pd_node_t *n;
  const pd_netaddr_t *from;
  int64_t now;
  pd_node_pex_entry_fn entry;
  pd_node_pex_result_fn result;
  void *ud;
  size_t count;        /* addresses in the batch */
  pd_peer_view_t vf;   /* `from` as of the last address */
  uint32_t from_id;    /* its book entry then, or PD_BOOK_NO_ID */
  bool prev_is_from;   /* the last address offered was `from` itself */
  /* the prefetched addresses' book hashes: entry hidx[k] has hash[k] */
  uint64_t hash[PEX_PREFETCH];
  size_t hidx[PEX_PREFETCH], nh, hk;
  /* for the shadow: the last call's inputs and the RNG before it */
  pd_peer_view_t va;
  pd_rng_t before;
} accept_batch_t;

static void from_view(accept_batch_t *b) {
  pd_node_peer_view(b->n, b->from, b->now, &b->vf);
  b->from_id = b->vf.known ? pd_book_find(pd_node_book(b->n), b->from) : PD_BOOK_NO_ID;
}

/* The book's and the reputation table's lines of the next PEX_PREFETCH
 * addresses start loading (hints: pd_book_prefetch, pd_reputation_prefetch),
 * so that their lookups' cache misses overlap; the book hashes are kept for
 * the views' lookups. */
static void accept_prefetch(accept_batch_t *b, size_t i) {
  pd_netaddr_t a[PEX_PREFETCH];
  size_t k = 0;
  for (size_t j = i; j < b->count && k < PEX_PREFETCH; j++) {
    const uint8_t *id = NULL;
    if (b->entry(b->ud, j, &a[k], &id)) b->hidx[k++] = j;
  }
  for (int pass = 0; pass < 3; pass++)
    for (size_t j = 0; j < k; j++) {
      pd_book_prefetch(b->n->book, &a[j], &b->hash[j], pass);
      if (pass < 2) pd_reputation_prefetch(b->n->rep, &a[j], pass);
    }
  b->nh = pd_book_size(b->n->book) ? k : 0; /* an empty book's prefetch hashes nothing */
  b->hk = 0;
}

/* Entry i's book hash from the last prefetch, or NULL. */
static const uint64_t *prefetched_hash(accept_batch_t *b, size_t i) {
  while (b->hk < b->nh && b->hidx[b->hk] < i) b->hk++;
  return b->hk < b->nh && b->hidx[b->hk] == i ? &b->hash[b->hk] : NULL;
}

static bool accept_next(void *ud, size_t i, pd_peer_view_t *addr, pd_peer_view_t *other,
                        bool *changed) {
  accept_batch_t *b = ud;
  pd_netaddr_t a;
  const uint8_t *id = NULL;
  if (i % PEX_PREFETCH == 0) accept_prefetch(b, i);
  if (!b->entry(b->ud, i, &a, &id)) return false;
  /* `from` as the single call sees it: the previous result may have changed
   * the book, and only the book part of its view can change within a
   * message. Its entry (if any) is re-read by id; with none, only adding
   * `from` itself makes one. The policy layer holds the view the previous
   * call used (b->vf then) and is told only when it differs: it rebuilds
   * the table then, and copies nothing otherwise. */
  pd_book_info_t e;
  pd_peer_view_t old;
  bool reread = b->from_id != PD_BOOK_NO_ID || b->prev_is_from;
  if (reread) old = b->vf;
  if (b->from_id != PD_BOOK_NO_ID) {
    if (pd_book_info(pd_node_book(b->n), b->from_id, &e) == 0 &&
        pd_netaddr_equal(&e.addr, b->from))
      view_book_fields(&b->vf, &e);
    else
      from_view(b);
  } else if (b->prev_is_from) {
    from_view(b);
  }
  if (reread && !pd_peer_view_same(&old, &b->vf)) {
    *other = b->vf;
    *changed = true;
  }
  b->prev_is_from = pd_netaddr_equal(&a, b->from);
  pex_addr_view_h(b->n, &a, id, prefetched_hash(b, i), b->now, addr);
  if (shadowing(b->n)) {
    b->va = *addr;
    b->before = *b->n->rng;
  }
  return true;
}

static void accept_done(void *ud, size_t i, int rc, bool decision) {
  accept_batch_t *b = ud;
  bool ok = rc == 0 ? decision : true;
  /* the shadow sees the book as the live call did: before the result changes it */
  if (shadowing(b->n))
    pd_shadow_pex(b->n->shadow, PD_HOOK_PEX_ACCEPT, &b->va, &b->vf, &b->before, b->now, ok, rc != 0);
  b->result(b->ud, i, ok);
}

void pd_node_pex_accept_batch(pd_node_t *n, const pd_netaddr_t *from, size_t count,
                              pd_node_pex_entry_fn entry, pd_node_pex_result_fn result, void *ud,
                              int64_t now) {
  if (!n || !from || !entry || !result) return;
  accept_batch_t b;
  memset(&b, 0, sizeof b);
  b.n = n;
  b.from = from;
  b.now = now;
  b.entry = entry;
  b.result = result;
  b.ud = ud;
  b.count = count;
  from_view(&b);
  pd_peer_view_t vf = b.vf;
  (void)pd_policy_pex_batch(n->policy, PD_HOOK_PEX_ACCEPT, &vf, count, accept_next, accept_done,
                            &b, n->rng, now);
}

typedef struct {
  pd_node_t *n;
  const pd_netaddr_t *to;
  const pd_peer_view_t *vt;
  int64_t now;
  uint32_t *out;
  size_t w;
  pd_peer_view_t va; /* for the shadow: the last call's address and the RNG before it */
  pd_rng_t before;
} share_batch_t;

static bool share_next(void *ud, size_t i, pd_peer_view_t *addr, pd_peer_view_t *other,
                       bool *changed) {
  (void)other; /* `to` does not change while the sample is filtered */
  (void)changed;
  share_batch_t *b = ud;
  pd_node_t *n = b->n;
  pd_book_info_t e;
  if (pd_book_info(n->book, b->out[i], &e) < 0) return false;
  if (pd_netaddr_same_ip(&e.addr, b->to)) return false;
  if (b->vt->has_node_id && e.has_node_id &&
      memcmp(b->vt->node_id, e.node_id, PD_NODE_ID_LEN) == 0) {
    return false;
  }
  if (pd_banlist_is_banned(pd_book_bans_const(n->book), &e.addr, b->now, NULL)) return false;
  if (pd_node_is_private(n, &e.addr, e.has_node_id ? e.node_id : NULL)) return false;
  pd_node_peer_view(n, &e.addr, b->now, addr);
  if (shadowing(n)) {
    b->va = *addr;
    b->before = *n->rng;
  }
  return true;
}

static void share_done(void *ud, size_t i, int rc, bool decision) {
  share_batch_t *b = ud;
  bool ok = rc != 0 || decision;
  if (shadowing(b->n))
    pd_shadow_pex(b->n->shadow, PD_HOOK_PEX_SHARE, &b->va, b->vt, &b->before, b->now, ok, rc != 0);
  if (ok) b->out[b->w++] = b->out[i];
}

size_t pd_node_pex_sample(pd_node_t *n, const pd_netaddr_t *to, size_t max, bool pct_cap,
                          int64_t now, uint32_t *out, size_t cap) {
  if (max > cap) max = cap;
  if (max == 0) return 0;
  size_t got = pd_book_getaddr(n->book, max, pct_cap ? PD_BOOK_GETADDR_PCT : 0, true, now, out,
                               cap);
  pd_peer_view_t vt;
  pd_node_peer_view(n, to, now, &vt);
  /* One `to` table for the whole answer; decisions in sample order, so w
   * never passes the index being decided. */
  share_batch_t b;
  memset(&b, 0, sizeof b);
  b.n = n;
  b.to = to;
  b.vt = &vt;
  b.now = now;
  b.out = out;
  (void)pd_policy_pex_batch(n->policy, PD_HOOK_PEX_SHARE, &vt, got, share_next, share_done, &b,
                            n->rng, now);
  return b.w;
}

/* ---- records of other nodes ------------------------------------------------ */

pd_rectable_t *pd_node_records(pd_node_t *n) { return n ? n->records : NULL; }

void pd_node_set_dht(pd_node_t *n, struct pd_dht *dht) {
  if (!n) return;
  n->dht = dht;
  n->dht_has_record = false;
}
struct pd_dht *pd_node_dht(const pd_node_t *n) { return n ? n->dht : NULL; }

static int ensure_records(pd_node_t *n) {
  if (n->records) return 0;
  /* The index key: secret and stable, from the book's key (no draw from
   * the RNG, so the random stream is what it was without records). */
  uint8_t key[PD_RECTABLE_KEY_LEN];
  crypto_generichash(key, sizeof key, pd_book_key(n->book), PD_BOOK_KEY_LEN,
                     (const uint8_t *)"peerd-rectable", 14);
  pd_book_geometry_t g;
  pd_book_geometry(n->book, &g);
  size_t cap = (size_t)PD_BOOK_BUCKET_SIZE * (g.new_buckets + g.tried_buckets);
  int rc = pd_rectable_create_shared(&n->records, cap, key, n->cfg.record_store);
  if (rc == 0) pd_policy_set_records(n->policy, n->records);
  if (rc == 0 && n->shadow) pd_policy_set_records(pd_shadow_policy(n->shadow), n->records);
  return rc;
}

/* The service endpoint a record is reached at when it has no discovery
 * endpoint, or the one `service` names: "p2p" first, else the first. */
static const pd_record_service_t *pick_service(const pd_record_t *r, const char *service) {
  if (service) return pd_record_service(r, service);
  const pd_record_service_t *s = pd_record_service(r, "p2p");
  return s ? s : (r->nservices ? &r->services[0] : NULL);
}

int pd_node_learn_record(pd_node_t *n, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                         const pd_netaddr_t *source, int64_t addr_time, int64_t now, int *book_rc) {
  if (book_rc) *book_rc = 0;
  if (!n || !bytes || !rec || !source) return PD_EINVAL;
  int rc = ensure_records(n);
  if (rc < 0) return rc;
  rc = pd_rectable_put(n->records, bytes, len, rec, now);
  if (rc < 0 || rc == PD_REC_STALE || rc == PD_REC_CONFLICT) return rc;
  bool svc_only = false;
  const pd_netaddr_t *placed = pd_record_placed(rec, &svc_only);
  if (!placed) return rc; /* nothing anyone could dial: kept, not placed */
  int brc = pd_book_add(n->book, placed, rec->id, addr_time, source, 0, now, NULL);
  if (brc >= 0 && svc_only) {
    uint32_t id = pd_book_find(n->book, placed);
    if (id != PD_BOOK_NO_ID) pd_book_set_service_only(n->book, id, true);
  }
  if (book_rc) *book_rc = brc;
  return rc;
}

static uint32_t entry_of_record(pd_node_t *n, const pd_rec_t *r) {
  pd_record_t d;
  if (!r || pd_rec_decode(r, &d) < 0) return PD_BOOK_NO_ID;
  uint32_t id = PD_BOOK_NO_ID;
  if (d.has_discovery) id = pd_book_find(n->book, &d.discovery);
  for (unsigned k = 0; id == PD_BOOK_NO_ID && k < d.nservices; k++)
    id = pd_book_find(n->book, &d.services[k].addr);
  return id;
}

uint32_t pd_node_find_peer(pd_node_t *n, const pd_netaddr_t *addr, const uint8_t *node_id) {
  if (!n) return PD_BOOK_NO_ID;
  if (addr) {
    uint32_t id = pd_book_find(n->book, addr);
    if (id != PD_BOOK_NO_ID) return id;
    id = entry_of_record(n, pd_rectable_find_service(n->records, addr));
    if (id != PD_BOOK_NO_ID) return id;
  }
  if (node_id) {
    uint32_t id = entry_of_record(n, pd_rectable_find(n->records, node_id));
    if (id != PD_BOOK_NO_ID) return id;
    return pd_book_find_node(n->book, node_id);
  }
  return PD_BOOK_NO_ID;
}

bool pd_node_dial_endpoint(pd_node_t *n, uint32_t id, const char *service, pd_node_endpoint_t *out) {
  pd_book_info_t e;
  if (!n || !out || pd_book_info(n->book, id, &e) != 0) return false;
  memset(out, 0, sizeof *out);
  const pd_rec_t *r = e.has_node_id ? pd_rectable_find(n->records, e.node_id) : NULL;
  if (r && pd_rec_decode(r, &out->rec) == 0) {
    const pd_record_service_t *s = pick_service(&out->rec, service);
    if (!s) return false;
    out->addr = s->addr;
    memcpy(out->service, s->name, sizeof out->service);
    out->has_id = out->proven = true;
    memcpy(out->node_id, out->rec.id, PD_NODE_ID_LEN);
    out->peerd = out->rec.has_discovery;
    return true;
  }
  /* no record: only an address the node gave itself is something it dials */
  if (!e.service_only || service) return false;
  out->addr = e.addr;
  out->has_id = e.has_node_id;
  if (e.has_node_id) memcpy(out->node_id, e.node_id, PD_NODE_ID_LEN);
  return true;
}
