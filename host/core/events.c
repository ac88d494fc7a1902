/* events — audit events, their JSON and SSE frames, the ring. See events.h. */
#include "events.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

static const char *const kind_names[PD_EV_KIND_COUNT] = {
    "connected",         "disconnected",       "dial_ok",       "dial_failed",
    "ban",               "unban",              "evict",         "tried_collision",
    "collision_resolved", "policy_loaded",     "policy_failed", "bootstrap_started",
    "bootstrap_finished", "below_minimum",     "minimum_recovered", "policy_tripped",
};
_Static_assert(sizeof kind_names / sizeof kind_names[0] == PD_EV_KIND_COUNT, "a name per kind");
_Static_assert(PD_EV_KIND_COUNT <= 31, "kinds fit a 32-bit mask");

const char *pd_event_kind_name(enum pd_event_kind k) {
  return (unsigned)k < PD_EV_KIND_COUNT ? kind_names[k] : NULL;
}

int pd_event_kind_parse(const char *s, size_t n) {
  if (!s) return -1;
  for (int k = 0; k < PD_EV_KIND_COUNT; k++) {
    if (strlen(kind_names[k]) == n && memcmp(kind_names[k], s, n) == 0) return k;
  }
  return -1;
}

bool pd_event_kind_warns(enum pd_event_kind k) {
  return k == PD_EV_DIAL_FAILED || k == PD_EV_BAN || k == PD_EV_POLICY_FAILED ||
         k == PD_EV_BELOW_MINIMUM || k == PD_EV_POLICY_TRIPPED;
}

int pd_event_kinds_parse(const char *list, uint32_t *mask, const char **bad, size_t *bad_len) {
  uint32_t m = 0;
  const char *p = list ? list : "";
  while (*p) {
    size_t n = strcspn(p, ",");
    if (n > 0) {
      int k = pd_event_kind_parse(p, n);
      if (k < 0) {
        if (bad) *bad = p;
        if (bad_len) *bad_len = n;
        return PD_EINVAL;
      }
      m |= 1u << k;
    }
    p += n;
    if (*p == ',') p++;
  }
  *mask = m ? m : PD_EVENT_ALL_KINDS;
  return 0;
}

/* ---- one event ---------------------------------------------------------- */

void pd_event_init(pd_event_t *e, enum pd_event_kind kind, int64_t now_ms) {
  e->kind = kind;
  e->now_ms = now_ms;
  e->warn = false;
  e->nfields = 0;
}

static pd_event_field_t *field(pd_event_t *e, const char *key, enum pd_event_ftype t) {
  if (e->nfields >= PD_EVENT_MAX_FIELDS) return NULL;
  pd_event_field_t *f = &e->f[e->nfields++];
  f->key = key;
  f->type = t;
  return f;
}

void pd_event_str(pd_event_t *e, const char *key, const char *s) {
  pd_event_field_t *f = s ? field(e, key, PD_EVF_STR) : NULL;
  if (f) f->s = s;
}
void pd_event_int(pd_event_t *e, const char *key, int64_t v) {
  pd_event_field_t *f = field(e, key, PD_EVF_INT);
  if (f) f->i = v;
}
void pd_event_bool(pd_event_t *e, const char *key, bool v) {
  pd_event_field_t *f = field(e, key, PD_EVF_BOOL);
  if (f) f->b = v;
}
void pd_event_addr(pd_event_t *e, const char *key, const pd_netaddr_t *a) {
  pd_event_field_t *f = a ? field(e, key, PD_EVF_ADDR) : NULL;
  if (f) f->addr = a;
}
void pd_event_id(pd_event_t *e, const char *key, const uint8_t *id) {
  pd_event_field_t *f = id ? field(e, key, PD_EVF_ID) : NULL;
  if (f) f->id = id;
}
void pd_event_subnet(pd_event_t *e, const char *key, const pd_subnet_t *s) {
  pd_event_field_t *f = s ? field(e, key, PD_EVF_SUBNET) : NULL;
  if (f) f->subnet = s;
}
void pd_event_time(pd_event_t *e, const char *key, int64_t t) {
  pd_event_field_t *f = field(e, key, PD_EVF_TIME);
  if (f) f->i = t;
}

const char *pd_event_field_text(const pd_event_field_t *f, char *buf, size_t cap) {
  if (!f || !buf || cap == 0) return "";
  buf[0] = '\0';
  switch (f->type) {
  case PD_EVF_STR: return f->s ? f->s : "";
  case PD_EVF_INT: snprintf(buf, cap, "%lld", (long long)f->i); break;
  case PD_EVF_BOOL: return f->b ? "true" : "false";
  case PD_EVF_TIME:
    if (!f->i) return "none";
    snprintf(buf, cap, "%lld", (long long)f->i);
    break;
  case PD_EVF_ADDR:
    if (pd_netaddr_format(f->addr, buf, cap) < 0) snprintf(buf, cap, "?");
    break;
  case PD_EVF_ID:
    if (pd_node_id_format(f->id, buf, cap) < 0) snprintf(buf, cap, "?");
    break;
  case PD_EVF_SUBNET:
    if (pd_subnet_format(f->subnet, buf, cap) < 0) snprintf(buf, cap, "?");
    break;
  }
  return buf;
}

/* A string as JSON; text that is not UTF-8 becomes "?" rather than nothing. */
static json_t *jstr(const char *s) {
  json_t *v = json_string(s);
  return v ? v : json_string("?");
}

json_t *pd_event_json(const pd_event_t *e, uint64_t seq, int64_t ts_ms) {
  const char *name = pd_event_kind_name(e->kind);
  json_t *o = json_object();
  if (!o || !name) {
    json_decref(o);
    return NULL;
  }
  int bad = 0;
  bad |= json_object_set_new(o, "seq", json_integer((json_int_t)seq));
  bad |= json_object_set_new(o, "ts", json_integer((json_int_t)ts_ms));
  bad |= json_object_set_new(o, "kind", json_string(name));
  char buf[PD_ADDR_STRLEN];
  for (size_t i = 0; i < e->nfields && !bad; i++) {
    const pd_event_field_t *f = &e->f[i];
    json_t *v = NULL;
    switch (f->type) {
    case PD_EVF_STR: v = jstr(f->s); break;
    case PD_EVF_INT: v = json_integer((json_int_t)f->i); break;
    case PD_EVF_BOOL: v = json_boolean(f->b); break;
    case PD_EVF_TIME: v = f->i ? json_integer((json_int_t)f->i) : json_null(); break;
    case PD_EVF_ADDR:
      if (pd_netaddr_format(f->addr, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
      v = jstr(buf);
      break;
    case PD_EVF_ID:
      if (pd_node_id_format(f->id, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
      v = jstr(buf);
      break;
    case PD_EVF_SUBNET:
      if (pd_subnet_format(f->subnet, buf, sizeof buf) < 0) snprintf(buf, sizeof buf, "?");
      v = jstr(buf);
      break;
    }
    bad |= json_object_set_new(o, f->key, v);
  }
  if (bad) {
    json_decref(o);
    return NULL;
  }
  return o;
}

/* ---- server-sent events --------------------------------------------------- */

int pd_event_sse_frame(uint64_t seq, enum pd_event_kind kind, const char *json, size_t json_len,
                       char **out, size_t *len) {
  const char *name = pd_event_kind_name(kind);
  if (!name || !json || memchr(json, '\n', json_len)) return PD_EINVAL;
  char head[96];
  int hl = snprintf(head, sizeof head, "id: %llu\nevent: %s\ndata: ", (unsigned long long)seq,
                    name);
  if (hl < 0 || (size_t)hl >= sizeof head) return PD_EINVAL;
  size_t total = (size_t)hl + json_len + 2;
  char *f = malloc(total + 1);
  if (!f) return PD_ENOMEM;
  memcpy(f, head, (size_t)hl);
  memcpy(f + hl, json, json_len);
  memcpy(f + hl + json_len, "\n\n", 3);
  *out = f;
  *len = total;
  return 0;
}

/* ---- the ring ---------------------------------------------------------------- */

struct pd_event_ring {
  pd_event_rec_t *recs;
  size_t cap, head, n; /* oldest at head */
  uint64_t seq;
};

int pd_event_ring_create(pd_event_ring_t **out, size_t cap) {
  if (!out || cap == 0) return PD_EINVAL;
  pd_event_ring_t *r = calloc(1, sizeof *r);
  if (!r) return PD_ENOMEM;
  r->recs = calloc(cap, sizeof *r->recs);
  if (!r->recs) {
    free(r);
    return PD_ENOMEM;
  }
  r->cap = cap;
  *out = r;
  return 0;
}

void pd_event_ring_destroy(pd_event_ring_t *r) {
  if (!r) return;
  for (size_t i = 0; i < r->cap; i++) free(r->recs[i].frame);
  free(r->recs);
  free(r);
}

const pd_event_rec_t *pd_event_ring_push(pd_event_ring_t *r, const pd_event_t *e, int64_t ts_ms,
                                         json_t **json_out) {
  if (json_out) *json_out = NULL;
  if (!r || !e) return NULL;
  uint64_t seq = ++r->seq;
  json_t *o = pd_event_json(e, seq, ts_ms);
  if (!o) return NULL;
  char *js = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  char *frame = NULL;
  size_t flen = 0;
  size_t jlen = js ? strlen(js) : 0;
  if (!js || pd_event_sse_frame(seq, e->kind, js, jlen, &frame, &flen) < 0) {
    free(js);
    json_decref(o);
    return NULL;
  }
  free(js);
  size_t slot;
  if (r->n < r->cap) {
    slot = (r->head + r->n) % r->cap;
    r->n++;
  } else {
    slot = r->head;
    r->head = (r->head + 1) % r->cap;
  }
  pd_event_rec_t *rec = &r->recs[slot];
  free(rec->frame);
  rec->seq = seq;
  rec->kind = e->kind;
  rec->frame = frame;
  rec->len = flen;
  rec->data_len = jlen;
  rec->data_off = flen - 2 - jlen;
  if (json_out) {
    *json_out = o;
  } else {
    json_decref(o);
  }
  return rec;
}

size_t pd_event_ring_count(const pd_event_ring_t *r) { return r ? r->n : 0; }

const pd_event_rec_t *pd_event_ring_get(const pd_event_ring_t *r, size_t i) {
  if (!r || i >= r->n) return NULL;
  return &r->recs[(r->head + i) % r->cap];
}

size_t pd_event_ring_after(const pd_event_ring_t *r, uint64_t after) {
  if (!r || r->n == 0) return 0;
  /* seqs in the ring are consecutive except where a push failed before
   * keeping anything; a binary search is exact either way (increasing). */
  size_t lo = 0, hi = r->n;
  while (lo < hi) {
    size_t mid = lo + (hi - lo) / 2;
    if (pd_event_ring_get(r, mid)->seq <= after) lo = mid + 1;
    else hi = mid;
  }
  return lo;
}

uint64_t pd_event_ring_last_seq(const pd_event_ring_t *r) { return r ? r->seq : 0; }
