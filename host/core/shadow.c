/* shadow — the shadow policy set and its comparison (see shadow.h). */
#include "shadow.h"

#include <math.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static void fmt(char *dst, size_t cap, const char *f, ...) __attribute__((format(printf, 3, 4)));

static const char *const result_names[PD_SHADOW_RESULT_COUNT] = {"agree", "disagree", "error"};

const char *pd_shadow_result_name(int result) {
  return result >= 0 && result < PD_SHADOW_RESULT_COUNT ? result_names[result] : "unknown";
}

struct pd_shadow {
  pd_policy_t *p;
  bool loaded;
  int load_rc;           /* the last load's outcome */
  int64_t load_error_at;
  char load_error[512];
  int64_t since;
  uint64_t total[PD_HOOK_COUNT][PD_SHADOW_RESULT_COUNT];
  uint64_t since_load[PD_HOOK_COUNT][PD_SHADOW_RESULT_COUNT];
  pd_shadow_diff_t *diffs; /* [PD_HOOK_COUNT][PD_SHADOW_KEEP], made at the first disagreement */
  unsigned ndiff[PD_HOOK_COUNT], next[PD_HOOK_COUNT]; /* ring per hook */
};

int pd_shadow_create(pd_shadow_t **out, const pd_policy_limits_t *limits,
                     pd_policy_clock_fn clock, void *clock_ud) {
  if (!out) return PD_EINVAL;
  *out = NULL;
  pd_shadow_t *s = calloc(1, sizeof(*s));
  if (!s) return PD_ENOMEM;
  int rc = pd_policy_create(&s->p, limits, clock, clock_ud);
  if (rc < 0) {
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void pd_shadow_destroy(pd_shadow_t *s) {
  if (!s) return;
  pd_policy_destroy(s->p);
  free(s->diffs);
  free(s);
}

pd_policy_t *pd_shadow_policy(pd_shadow_t *s) { return s ? s->p : NULL; }

static void restart(pd_shadow_t *s, int64_t now) {
  memset(s->since_load, 0, sizeof(s->since_load));
  memset(s->ndiff, 0, sizeof(s->ndiff));
  memset(s->next, 0, sizeof(s->next));
  s->since = now;
}

int pd_shadow_load(pd_shadow_t *s, const pd_policy_file_t *files, size_t n, int64_t now, char *err,
                   size_t cap) {
  if (!s) return PD_EINVAL;
  char msg[512] = "";
  int rc = pd_policy_load(s->p, files, n, now, msg, sizeof(msg));
  if (err && cap) fmt(err, cap, "%s", msg);
  s->load_rc = rc;
  if (rc == 0) {
    s->loaded = true;
    restart(s, now);
  } else {
    fmt(s->load_error, sizeof(s->load_error), "%s", msg[0] ? msg : pd_strerror(rc));
    s->load_error_at = now;
  }
  return rc;
}

void pd_shadow_load_failed(pd_shadow_t *s, const char *error, int64_t now) {
  if (!s) return;
  s->load_rc = PD_EINVAL;
  fmt(s->load_error, sizeof(s->load_error), "%s", error ? error : "shadow policy load failed");
  s->load_error_at = now;
  pd_policy_note_error(s->p, s->load_error, now);
}

int pd_shadow_last_load(const pd_shadow_t *s, const char **error, int64_t *at) {
  if (error) *error = s && s->load_rc < 0 ? s->load_error : NULL;
  if (at) *at = s && s->load_rc < 0 ? s->load_error_at : 0;
  return s ? s->load_rc : 0;
}

bool pd_shadow_loaded(const pd_shadow_t *s) { return s && s->loaded; }

void pd_shadow_clear(pd_shadow_t *s, int64_t now) {
  if (!s) return;
  s->loaded = false;
  restart(s, now);
}

int64_t pd_shadow_since(const pd_shadow_t *s) { return s ? s->since : 0; }

uint64_t pd_shadow_count(const pd_shadow_t *s, int hook, int result, bool total) {
  if (!s || hook < 0 || hook >= PD_HOOK_COUNT || result < 0 || result >= PD_SHADOW_RESULT_COUNT)
    return 0;
  return total ? s->total[hook][result] : s->since_load[hook][result];
}

size_t pd_shadow_diffs(const pd_shadow_t *s, int hook, pd_shadow_diff_t *out, size_t cap) {
  if (!s || !s->diffs || hook < 0 || hook >= PD_HOOK_COUNT) return 0;
  size_t n = s->ndiff[hook] < cap ? s->ndiff[hook] : cap;
  const pd_shadow_diff_t *ring = &s->diffs[(size_t)hook * PD_SHADOW_KEEP];
  for (size_t i = 0; i < n; i++) {
    unsigned k = (s->next[hook] + PD_SHADOW_KEEP - 1 - (unsigned)i) % PD_SHADOW_KEEP;
    out[i] = ring[k];
  }
  return n;
}

/* ---- counting and text ----------------------------------------------------------------- */

static void count(pd_shadow_t *s, int hook, int result) {
  s->total[hook][result]++;
  s->since_load[hook][result]++;
}

/* A disagreement: counted, and a slot of the ring for the caller to fill
 * (NULL when no memory: counted all the same). */
static pd_shadow_diff_t *disagree(pd_shadow_t *s, int hook, int64_t now) {
  count(s, hook, PD_SHADOW_DISAGREE);
  if (!s->diffs && !(s->diffs = calloc((size_t)PD_HOOK_COUNT * PD_SHADOW_KEEP, sizeof(*s->diffs))))
    return NULL;
  pd_shadow_diff_t *d = &s->diffs[(size_t)hook * PD_SHADOW_KEEP + s->next[hook]];
  s->next[hook] = (s->next[hook] + 1) % PD_SHADOW_KEEP;
  if (s->ndiff[hook] < PD_SHADOW_KEEP) s->ndiff[hook]++;
  memset(d, 0, sizeof(*d));
  d->at = now;
  return d;
}

static void fmt(char *dst, size_t cap, const char *f, ...) {
  va_list ap;
  va_start(ap, f);
  if (vsnprintf(dst, cap, f, ap) < 0 && cap) dst[0] = '\0';
  va_end(ap);
}

static void addr_text(const pd_netaddr_t *a, char *buf, size_t cap) {
  if (pd_netaddr_format(a, buf, cap) < 0) fmt(buf, cap, "?");
}

static const char *dflt(bool d) { return d ? " (default)" : ""; }

/* The shadow's call ended with rc: 0 decided, PD_ENOENT its C default,
 * anything else an error (counted; no comparison). */
static bool failed(pd_shadow_t *s, int hook, int rc) {
  if (rc == 0 || rc == PD_ENOENT) return false;
  count(s, hook, PD_SHADOW_ERROR);
  return true;
}

static bool same_number(double a, double b) {
  if (a == b) return true;
  double m = fabs(a) > fabs(b) ? fabs(a) : fabs(b);
  return fabs(a - b) <= 1e-9 * (m > 1 ? m : 1);
}

/* ---- select ----------------------------------------------------------------------------- */

static int cmp_u32(const void *a, const void *b) {
  uint32_t x = *(const uint32_t *)a, y = *(const uint32_t *)b;
  return x < y ? -1 : x > y;
}

/* "[1.2.3.4:1 5.6.7.8:2] (default)", cut short with "... +K" */
static void ids_text(const pd_book_t *b, const uint32_t *ids, size_t n, bool d, char *out,
                     size_t cap) {
  size_t off = 0;
  fmt(out, cap, "[");
  off = strlen(out);
  for (size_t i = 0; i < n; i++) {
    char a[PD_ADDR_STRLEN];
    pd_book_info_t e;
    if (pd_book_info(b, ids[i], &e) == 0)
      addr_text(&e.addr, a, sizeof(a));
    else
      fmt(a, sizeof(a), "#%u", (unsigned)ids[i]);
    size_t need = strlen(a) + (i ? 1 : 0);
    if (off + need + 32 >= cap) {
      fmt(out + off, cap - off, "%s... +%zu", i ? " " : "", n - i);
      off = strlen(out);
      break;
    }
    fmt(out + off, cap - off, "%s%s", i ? " " : "", a);
    off = strlen(out);
  }
  fmt(out + off, cap - off, "]%s", dflt(d));
}

void pd_shadow_select(pd_shadow_t *s, pd_book_t *b, pd_rng_t *book_rng, const pd_rng_t *before,
                      size_t n, const pd_policy_select_ctx_t *ctx, int64_t now,
                      const uint32_t *live, size_t nlive, bool live_default) {
  if (!pd_shadow_loaded(s) || !b || !book_rng || !before || n == 0) return;
  uint32_t *mine = malloc(n * sizeof(*mine));
  uint32_t *a = malloc((nlive + n) * sizeof(*a));
  if (!mine || !a) {
    free(mine);
    free(a);
    count(s, PD_HOOK_SELECT, PD_SHADOW_ERROR);
    return;
  }
  pd_rng_t after = *book_rng;
  *book_rng = *before; /* the stream the live call drew from */
  size_t got = 0;
  int rc = pd_policy_select_ctx(s->p, b, book_rng, n, ctx, now, mine, &got);
  bool sdef = rc == PD_ENOENT;
  if (sdef && live_default) {
    /* both the C default on the same stream: the same picks */
    *book_rng = after;
    count(s, PD_HOOK_SELECT, PD_SHADOW_AGREE);
    free(mine);
    free(a);
    return;
  }
  if (sdef) got = pd_book_select(b, n, now, mine);
  *book_rng = after;
  if (failed(s, PD_HOOK_SELECT, rc)) {
    free(mine);
    free(a);
    return;
  }
  bool same = got == nlive;
  if (same) {
    memcpy(a, live, nlive * sizeof(*a));
    memcpy(a + nlive, mine, got * sizeof(*a));
    qsort(a, nlive, sizeof(*a), cmp_u32);
    qsort(a + nlive, got, sizeof(*a), cmp_u32);
    same = memcmp(a, a + nlive, nlive * sizeof(*a)) == 0;
  }
  if (same) {
    count(s, PD_HOOK_SELECT, PD_SHADOW_AGREE);
  } else {
    pd_shadow_diff_t *d = disagree(s, PD_HOOK_SELECT, now);
    if (d) {
      fmt(d->input, sizeof(d->input), "n=%zu", n);
      ids_text(b, live, nlive, live_default, d->live, sizeof(d->live));
      ids_text(b, mine, got, sdef, d->shadow, sizeof(d->shadow));
    }
  }
  free(mine);
  free(a);
}

/* ---- score ------------------------------------------------------------------------------- */

void pd_shadow_score(pd_shadow_t *s, const pd_peer_view_t *v, const pd_rng_t *before, int64_t now,
                     double live, bool live_default, double def) {
  if (!pd_shadow_loaded(s) || !v || !before) return;
  pd_rng_t r = *before;
  double mine = 0;
  int rc = pd_policy_score(s->p, v, &r, now, &mine);
  if (failed(s, PD_HOOK_SCORE, rc)) return;
  bool sdef = rc == PD_ENOENT || !isfinite(mine);
  if (sdef) mine = def;
  if (same_number(live, mine)) {
    count(s, PD_HOOK_SCORE, PD_SHADOW_AGREE);
    return;
  }
  pd_shadow_diff_t *d = disagree(s, PD_HOOK_SCORE, now);
  if (!d) return;
  char a[PD_ADDR_STRLEN];
  addr_text(&v->addr, a, sizeof(a));
  fmt(d->input, sizeof(d->input), "peer=%s", a);
  fmt(d->live, sizeof(d->live), "%.17g%s", live, dflt(live_default));
  fmt(d->shadow, sizeof(d->shadow), "%.17g%s", mine, dflt(sdef));
}

/* ---- evict --------------------------------------------------------------------------------- */

static const char *verdict_text(int v) {
  switch (v) {
  case PD_BOOK_KEEP: return "keep";
  case PD_BOOK_REPLACE: return "replace";
  case PD_BOOK_WAIT: return "wait";
  default: return "default";
  }
}

static void evict_compare(pd_shadow_t *s, int hook, const pd_book_t *b, uint32_t incumbent,
                          const pd_netaddr_t *cand, int rc, int mine, int live, int64_t now) {
  if (failed(s, hook, rc)) return;
  if (rc != 0) mine = PD_BOOK_HOOK_DEFAULT;
  if (live != PD_BOOK_KEEP && live != PD_BOOK_REPLACE && live != PD_BOOK_WAIT)
    live = PD_BOOK_HOOK_DEFAULT;
  if (mine == live) {
    count(s, hook, PD_SHADOW_AGREE);
    return;
  }
  pd_shadow_diff_t *d = disagree(s, hook, now);
  if (!d) return;
  char ia[PD_ADDR_STRLEN] = "?", ca[PD_ADDR_STRLEN] = "?";
  pd_book_info_t e;
  if (pd_book_info(b, incumbent, &e) == 0) addr_text(&e.addr, ia, sizeof(ia));
  if (cand) addr_text(cand, ca, sizeof(ca));
  fmt(d->input, sizeof(d->input), "incumbent=%s candidate=%s", ia, ca);
  fmt(d->live, sizeof(d->live), "%s", verdict_text(live));
  fmt(d->shadow, sizeof(d->shadow), "%s", verdict_text(mine));
}

void pd_shadow_evict_new(pd_shadow_t *s, const pd_book_t *b, uint32_t incumbent,
                         const pd_book_info_t *candidate, const pd_rng_t *before, int64_t now,
                         int live_verdict) {
  if (!pd_shadow_loaded(s) || !b || !candidate || !before) return;
  pd_rng_t r = *before;
  int v = PD_BOOK_HOOK_DEFAULT;
  int rc = pd_policy_evict_new(s->p, b, incumbent, candidate, &r, now, &v);
  evict_compare(s, PD_HOOK_EVICT_NEW, b, incumbent, &candidate->addr, rc, v, live_verdict, now);
}

void pd_shadow_evict_tried(pd_shadow_t *s, const pd_book_t *b, uint32_t incumbent,
                           uint32_t candidate, const pd_rng_t *before, int64_t now,
                           int live_verdict) {
  if (!pd_shadow_loaded(s) || !b || !before) return;
  pd_rng_t r = *before;
  int v = PD_BOOK_HOOK_DEFAULT;
  int rc = pd_policy_evict_tried(s->p, b, incumbent, candidate, &r, now, &v);
  pd_book_info_t e;
  bool known = pd_book_info(b, candidate, &e) == 0;
  evict_compare(s, PD_HOOK_EVICT_TRIED, b, incumbent, known ? &e.addr : NULL, rc, v, live_verdict,
                now);
}

/* ---- reputation ----------------------------------------------------------------------------- */

static void rep_text(const pd_rep_verdict_t *v, bool d, char *out, size_t cap) {
  char ban[48];
  if (v->ban_secs == 0)
    fmt(ban, sizeof(ban), "none");
  else if (v->ban_secs < 0)
    fmt(ban, sizeof(ban), "permanent");
  else
    fmt(ban, sizeof(ban), "%llds", (long long)v->ban_secs);
  char reason[sizeof(v->reason)];
  memcpy(reason, v->reason, sizeof(reason));
  reason[sizeof(reason) - 1] = '\0';
  fmt(out, cap, "reputation=%.17g ban=%s%s%s%s", v->reputation, ban, reason[0] ? " reason=" : "",
      reason, dflt(d));
}

void pd_shadow_reputation(pd_shadow_t *s, const pd_peer_view_t *v, const char *event,
                          const char *reason, const pd_rng_t *before, int64_t now,
                          const pd_rep_verdict_t *live, bool live_default,
                          const pd_rep_verdict_t *def) {
  if (!pd_shadow_loaded(s) || !v || !event || !before || !live || !def) return;
  pd_rng_t r = *before;
  pd_rep_verdict_t mine;
  memset(&mine, 0, sizeof(mine));
  int rc = pd_policy_reputation(s->p, v, event, reason, &r, now, &mine);
  if (failed(s, PD_HOOK_REPUTATION, rc)) return;
  bool sdef = rc == PD_ENOENT || !isfinite(mine.reputation);
  if (sdef) mine = *def;
  if (same_number(live->reputation, mine.reputation) && live->ban_secs == mine.ban_secs) {
    count(s, PD_HOOK_REPUTATION, PD_SHADOW_AGREE);
    return;
  }
  pd_shadow_diff_t *d = disagree(s, PD_HOOK_REPUTATION, now);
  if (!d) return;
  char a[PD_ADDR_STRLEN];
  addr_text(&v->addr, a, sizeof(a));
  fmt(d->input, sizeof(d->input), "peer=%s event=%s%s%.64s", a, event, reason ? " reason=" : "",
      reason ? reason : "");
  rep_text(live, live_default, d->live, sizeof(d->live));
  rep_text(&mine, sdef, d->shadow, sizeof(d->shadow));
}

/* ---- pex ------------------------------------------------------------------------------------- */

void pd_shadow_pex(pd_shadow_t *s, int hook, const pd_peer_view_t *addr,
                   const pd_peer_view_t *other, const pd_rng_t *before, int64_t now, bool live,
                   bool live_default) {
  if (!pd_shadow_loaded(s) || !addr || !other || !before) return;
  if (hook != PD_HOOK_PEX_ACCEPT && hook != PD_HOOK_PEX_SHARE) return;
  pd_rng_t r = *before;
  bool mine = true;
  int rc = hook == PD_HOOK_PEX_ACCEPT ? pd_policy_pex_accept(s->p, addr, other, &r, now, &mine)
                                      : pd_policy_pex_share(s->p, addr, other, &r, now, &mine);
  if (failed(s, hook, rc)) return;
  bool sdef = rc == PD_ENOENT;
  if (sdef) mine = true;
  if (mine == live) {
    count(s, hook, PD_SHADOW_AGREE);
    return;
  }
  pd_shadow_diff_t *d = disagree(s, hook, now);
  if (!d) return;
  char a[PD_ADDR_STRLEN], o[PD_ADDR_STRLEN];
  addr_text(&addr->addr, a, sizeof(a));
  addr_text(&other->addr, o, sizeof(o));
  fmt(d->input, sizeof(d->input), "addr=%s %s=%s", a, hook == PD_HOOK_PEX_ACCEPT ? "from" : "to",
      o);
  fmt(d->live, sizeof(d->live), "%s%s", live ? "true" : "false", dflt(live_default));
  fmt(d->shadow, sizeof(d->shadow), "%s%s", mine ? "true" : "false", dflt(sdef));
}

/* ---- dht ------------------------------------------------------------------------------------- */

/* A boolean hook's comparison: shadow answered rc / mine (its default def). */
static void bool_compare(pd_shadow_t *s, int hook, int rc, bool mine, bool def, bool live,
                         bool live_default, int64_t now, const char *input) {
  if (failed(s, hook, rc)) return;
  bool sdef = rc == PD_ENOENT;
  if (sdef) mine = def;
  if (mine == live) {
    count(s, hook, PD_SHADOW_AGREE);
    return;
  }
  pd_shadow_diff_t *d = disagree(s, hook, now);
  if (!d) return;
  fmt(d->input, sizeof(d->input), "%s", input);
  fmt(d->live, sizeof(d->live), "%s%s", live ? "true" : "false", dflt(live_default));
  fmt(d->shadow, sizeof(d->shadow), "%s%s", mine ? "true" : "false", dflt(sdef));
}

void pd_shadow_dht_admit(pd_shadow_t *s, const pd_policy_dht_node_t *node, const pd_rng_t *before,
                         int64_t now, bool live, bool live_default, bool def) {
  if (!pd_shadow_loaded(s) || !node || !before) return;
  pd_rng_t r = *before;
  bool mine = def;
  int rc = pd_policy_dht_admit(s->p, node, &r, now, &mine);
  char a[PD_ADDR_STRLEN], id[2 * PD_NODE_ID_LEN + 1], in[160];
  addr_text(&node->addr, a, sizeof(a));
  if (pd_node_id_format(node->node_id, id, sizeof(id)) < 0) fmt(id, sizeof(id), "?");
  fmt(in, sizeof(in), "node=%s id=%.16s bucket=%u size=%u subnet_in_bucket=%u subnet_in_table=%u",
      a, id, node->bucket, node->bucket_size, node->subnet_in_bucket, node->subnet_in_table);
  bool_compare(s, PD_HOOK_DHT_ADMIT, rc, mine, def, live, live_default, now, in);
}

void pd_shadow_dht_feed(pd_shadow_t *s, const pd_peer_view_t *node, const pd_peer_view_t *from,
                        const pd_rng_t *before, int64_t now, bool live, bool live_default) {
  if (!pd_shadow_loaded(s) || !node || !from || !before) return;
  pd_rng_t r = *before;
  bool mine = true;
  int rc = pd_policy_dht_feed(s->p, node, from, &r, now, &mine);
  char a[PD_ADDR_STRLEN], o[PD_ADDR_STRLEN], in[160];
  addr_text(&node->addr, a, sizeof(a));
  addr_text(&from->addr, o, sizeof(o));
  fmt(in, sizeof(in), "node=%s from=%s", a, o);
  bool_compare(s, PD_HOOK_DHT_FEED, rc, mine, true, live, live_default, now, in);
}
