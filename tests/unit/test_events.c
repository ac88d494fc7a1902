/* Unit tests for events (the audit events' kinds, fields, JSON, SSE frames
 * and the ring) and for the events the address book emits (evictions,
 * tried collisions and their resolution), with Bitcoin Core's collision
 * sequences from test_addrbook. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "addrbook.h"
#include "err.h"
#include "events.h"

#define NOW ((int64_t)1700000000)
#define TIME_INIT ((int64_t)100000000)

static pd_netaddr_t A(const char *s, uint16_t port) {
  pd_netaddr_t a;
  const char *why = NULL;
  if (pd_netaddr_parse_ip(s, &a, &why) != 0) fail_msg("parse %s: %s", s, why ? why : "?");
  a.port = port;
  return a;
}

/* ---- kinds --------------------------------------------------------------- */

static void kind_names(void **state) {
  (void)state;
  for (int k = 0; k < PD_EV_KIND_COUNT; k++) {
    const char *n = pd_event_kind_name((enum pd_event_kind)k);
    assert_non_null(n);
    assert_int_equal(pd_event_kind_parse(n, strlen(n)), k);
  }
  assert_null(pd_event_kind_name(PD_EV_KIND_COUNT));
  assert_string_equal(pd_event_kind_name(PD_EV_DIAL_FAILED), "dial_failed");
  assert_int_equal(pd_event_kind_parse("ban", 3), PD_EV_BAN);
  assert_int_equal(pd_event_kind_parse("bans", 4), -1);
  assert_int_equal(pd_event_kind_parse("ba", 2), -1);
  assert_true(pd_event_kind_warns(PD_EV_BAN));
  assert_true(pd_event_kind_warns(PD_EV_DIAL_FAILED));
  assert_false(pd_event_kind_warns(PD_EV_CONNECTED));
  assert_false(pd_event_kind_warns(PD_EV_UNBAN));
}

static void kinds_filter(void **state) {
  (void)state;
  uint32_t m = 0;
  assert_int_equal(pd_event_kinds_parse("connected,ban", &m, NULL, NULL), 0);
  assert_int_equal(m, (1u << PD_EV_CONNECTED) | (1u << PD_EV_BAN));
  assert_int_equal(pd_event_kinds_parse(",evict,,", &m, NULL, NULL), 0);
  assert_int_equal(m, 1u << PD_EV_EVICT);
  assert_int_equal(pd_event_kinds_parse("", &m, NULL, NULL), 0);
  assert_int_equal(m, PD_EVENT_ALL_KINDS);
  const char *bad = NULL;
  size_t bl = 0;
  assert_int_equal(pd_event_kinds_parse("ban,nope,unban", &m, &bad, &bl), PD_EINVAL);
  assert_int_equal(bl, 4);
  assert_memory_equal(bad, "nope", 4);
}

/* ---- one event, JSON, frames ---------------------------------------------- */

static void event_json(void **state) {
  (void)state;
  pd_netaddr_t a = A("203.0.113.7", 7411);
  uint8_t id[PD_NODE_ID_LEN];
  for (int i = 0; i < PD_NODE_ID_LEN; i++) id[i] = (uint8_t)(0xa0 + i);
  pd_subnet_t sn;
  assert_int_equal(pd_subnet_parse("10.1.0.0/16", &sn, NULL), 0);
  pd_event_t e;
  pd_event_init(&e, PD_EV_BAN, NOW * 1000);
  pd_event_addr(&e, "addr", &a);
  pd_event_id(&e, "node_id", id);
  pd_event_subnet(&e, "subnet", &sn);
  pd_event_str(&e, "by", "api");
  pd_event_str(&e, "skipped", NULL); /* NULL strings are left out */
  pd_event_int(&e, "n", -3);
  pd_event_bool(&e, "replaced", true);
  pd_event_time(&e, "until", 0);
  json_t *o = pd_event_json(&e, 42, 1700000000123LL);
  assert_non_null(o);
  char *s = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  assert_string_equal(s, "{\"seq\":42,\"ts\":1700000000123,\"kind\":\"ban\","
                         "\"addr\":\"203.0.113.7:7411\","
                         "\"node_id\":\"a0a1a2a3a4a5a6a7a8a9aaabacadaeafb0b1b2b3\","
                         "\"subnet\":\"10.1.0.0/16\",\"by\":\"api\",\"n\":-3,"
                         "\"replaced\":true,\"until\":null}");
  free(s);
  json_decref(o);
  /* the same fields as log text */
  char buf[PD_ADDR_STRLEN];
  assert_string_equal(pd_event_field_text(&e.f[0], buf, sizeof buf), "203.0.113.7:7411");
  assert_string_equal(pd_event_field_text(&e.f[3], buf, sizeof buf), "api");
  assert_string_equal(pd_event_field_text(&e.f[4], buf, sizeof buf), "-3");
  assert_string_equal(pd_event_field_text(&e.f[5], buf, sizeof buf), "true");
  assert_string_equal(pd_event_field_text(&e.f[6], buf, sizeof buf), "none");
  /* fields beyond the maximum are dropped, never written out of bounds */
  pd_event_init(&e, PD_EV_EVICT, 0);
  for (int i = 0; i < PD_EVENT_MAX_FIELDS + 5; i++) pd_event_int(&e, "x", i);
  assert_int_equal(e.nfields, PD_EVENT_MAX_FIELDS);
  /* text that is not UTF-8 is written as "?" */
  pd_event_init(&e, PD_EV_POLICY_FAILED, 0);
  pd_event_str(&e, "error", "bad \xff byte");
  o = pd_event_json(&e, 1, 0);
  assert_string_equal(json_string_value(json_object_get(o, "error")), "?");
  json_decref(o);
}

static void sse_frame(void **state) {
  (void)state;
  char *f = NULL;
  size_t len = 0;
  const char *js = "{\"seq\":7,\"kind\":\"unban\"}";
  assert_int_equal(pd_event_sse_frame(7, PD_EV_UNBAN, js, strlen(js), &f, &len), 0);
  assert_string_equal(f, "id: 7\nevent: unban\ndata: {\"seq\":7,\"kind\":\"unban\"}\n\n");
  assert_int_equal(len, strlen(f));
  free(f);
  /* a newline inside data would end the event early: refused */
  assert_int_equal(pd_event_sse_frame(1, PD_EV_BAN, "{\n}", 3, &f, &len), PD_EINVAL);
  assert_int_equal(pd_event_sse_frame(1, PD_EV_KIND_COUNT, "{}", 2, &f, &len), PD_EINVAL);
}

/* ---- the ring --------------------------------------------------------------- */

static void push_kind(pd_event_ring_t *r, enum pd_event_kind k, int64_t v) {
  pd_event_t e;
  pd_event_init(&e, k, 0);
  pd_event_int(&e, "v", v);
  assert_non_null(pd_event_ring_push(r, &e, 1000 + v, NULL));
}

static void ring(void **state) {
  (void)state;
  pd_event_ring_t *r = NULL;
  assert_int_equal(pd_event_ring_create(&r, 0), PD_EINVAL);
  assert_int_equal(pd_event_ring_create(&r, 3), 0);
  assert_int_equal(pd_event_ring_count(r), 0);
  assert_int_equal(pd_event_ring_after(r, 0), 0);
  assert_int_equal(pd_event_ring_last_seq(r), 0);
  for (int i = 1; i <= 5; i++) push_kind(r, i % 2 ? PD_EV_BAN : PD_EV_UNBAN, i);
  assert_int_equal(pd_event_ring_count(r), 3);
  assert_int_equal(pd_event_ring_last_seq(r), 5);
  for (size_t i = 0; i < 3; i++) {
    const pd_event_rec_t *rec = pd_event_ring_get(r, i);
    assert_int_equal(rec->seq, 3 + i);
    /* the frame: id, event, data lines; data is the JSON, which parses */
    char want[64];
    snprintf(want, sizeof want, "id: %zu\nevent: %s\ndata: {", 3 + i,
             pd_event_kind_name(rec->kind));
    assert_memory_equal(rec->frame, want, strlen(want));
    assert_memory_equal(rec->frame + rec->len - 2, "\n\n", 2);
    json_error_t err;
    json_t *o = json_loadb(rec->frame + rec->data_off, rec->data_len, 0, &err);
    assert_non_null(o);
    assert_int_equal(json_integer_value(json_object_get(o, "seq")), (json_int_t)(3 + i));
    assert_int_equal(json_integer_value(json_object_get(o, "ts")), (json_int_t)(1003 + i));
    assert_int_equal(json_integer_value(json_object_get(o, "v")), (json_int_t)(3 + i));
    json_decref(o);
  }
  assert_null(pd_event_ring_get(r, 3));
  assert_int_equal(pd_event_ring_after(r, 0), 0); /* older than the ring: all */
  assert_int_equal(pd_event_ring_after(r, 3), 1);
  assert_int_equal(pd_event_ring_after(r, 4), 2);
  assert_int_equal(pd_event_ring_after(r, 5), 3); /* nothing newer */
  assert_int_equal(pd_event_ring_after(r, 99), 3);
  json_t *o = NULL;
  pd_event_t e;
  pd_event_init(&e, PD_EV_EVICT, 0);
  const pd_event_rec_t *rec = pd_event_ring_push(r, &e, 5, &o);
  assert_non_null(rec);
  assert_non_null(o);
  assert_string_equal(json_string_value(json_object_get(o, "kind")), "evict");
  json_decref(o);
  pd_event_ring_destroy(r);
  pd_event_ring_destroy(NULL);
}

/* ---- the book's events ------------------------------------------------------- */

typedef struct rec_sink {
  json_t *events; /* array of the events' JSON */
} rec_sink_t;

static void record(void *ud, const pd_event_t *e) {
  rec_sink_t *s = ud;
  json_array_append_new(s->events, pd_event_json(e, json_array_size(s->events) + 1, e->now_ms));
}

static json_t *find_kind(json_t *arr, const char *kind, size_t nth) {
  size_t i;
  json_t *v;
  json_array_foreach(arr, i, v) {
    if (strcmp(json_string_value(json_object_get(v, "kind")), kind) == 0 && nth-- == 0) return v;
  }
  return NULL;
}

static const char *field(json_t *o, const char *k) {
  json_t *v = json_object_get(o, k);
  assert_non_null(v);
  return json_string_value(v);
}

typedef struct fixture {
  pd_rng_t rng;
  pd_book_t *b;
  rec_sink_t sink;
} fixture_t;

static pd_book_t *book(fixture_t *f, uint64_t seed, bool with_sink) {
  uint8_t key[32] = {1};
  pd_rng_seed(&f->rng, seed);
  assert_int_equal(pd_book_create(&f->b, key, &f->rng, 0), 0);
  f->sink.events = json_array();
  pd_event_sink_t s = {record, &f->sink};
  if (with_sink) pd_book_set_events(f->b, &s);
  return f->b;
}

static void done(fixture_t *f) {
  assert_int_equal(pd_book_check(f->b), 0);
  pd_book_destroy(f->b);
  json_decref(f->sink.events);
}

static int add(pd_book_t *b, const char *ip) {
  pd_netaddr_t a = A(ip, 0), s = A("252.2.2.2", 0);
  return pd_book_add(b, &a, NULL, TIME_INIT, &s, 0, NOW, NULL);
}

static int good(pd_book_t *b, const char *ip, int64_t now) {
  pd_netaddr_t a = A(ip, 0);
  return pd_book_good(b, &a, true, now);
}

/* addrman_new_collisions: 250.1.1.23 takes a terrible entry's slot, which
 * leaves the book; the same run without a sink makes the same book. */
static void book_evict_new(void **state) {
  (void)state;
  fixture_t f, g;
  pd_book_t *b = book(&f, 4, true), *b2 = book(&g, 4, false);
  char s[32];
  for (int n = 1; n <= 24; n++) {
    snprintf(s, sizeof s, "250.1.1.%d", n);
    assert_int_equal(add(b, s), 1);
    assert_int_equal(add(b2, s), 1);
  }
  assert_int_equal(pd_book_size(b), 23);
  assert_int_equal(pd_book_size(b2), 23);
  assert_int_equal(pd_rng_u64(&f.rng), pd_rng_u64(&g.rng));
  assert_int_equal(json_array_size(g.sink.events), 0);
  json_t *ev = f.sink.events;
  assert_int_equal(json_array_size(ev), 1); /* one entry left the book: 23 took its slot */
  json_t *e = find_kind(ev, "evict", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "table"), "new");
  assert_string_equal(field(e, "outcome"), "deleted");
  assert_string_equal(field(e, "by"), "default");
  assert_string_equal(field(e, "reason"), "terrible"); /* nTime in the deep past */
  assert_string_equal(field(e, "replaced_by"), "250.1.1.23");
  pd_netaddr_t gone = A(field(e, "addr"), 0);
  assert_int_equal(pd_book_find(b, &gone), PD_BOOK_NO_ID);
  json_int_t bucket = json_integer_value(json_object_get(e, "bucket"));
  json_int_t pos = json_integer_value(json_object_get(e, "position"));
  pd_netaddr_t a23 = A("250.1.1.23", 0);
  pd_book_info_t in;
  assert_int_equal(pd_book_info(b, pd_book_find(b, &a23), &in), 0);
  assert_int_equal(in.bucket, bucket); /* 23 sits where the evicted one was */
  assert_int_equal(in.position, pos);
  done(&f);
  done(&g);
}

/* addrman_evictionworks: a tried collision, then the incumbent fails its
 * test and goes back to new; later the other way round after the window. */
static void book_tried_collision(void **state) {
  (void)state;
  fixture_t f;
  pd_book_t *b = book(&f, 11, true);
  char s[32];
  for (int i = 1; i < 36; i++) {
    snprintf(s, sizeof s, "250.1.1.%d", i);
    assert_int_equal(add(b, s), 1);
    assert_int_equal(good(b, s, NOW), 1);
  }
  json_t *ev = f.sink.events;
  size_t before = json_array_size(ev);
  assert_int_equal(add(b, "250.1.1.36"), 1);
  assert_int_equal(good(b, "250.1.1.36", NOW), 0);
  assert_int_equal(json_array_size(ev), before + 1);
  json_t *e = find_kind(ev, "tried_collision", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "addr"), "250.1.1.36");
  assert_string_equal(field(e, "incumbent"), "250.1.1.19");
  assert_string_equal(field(e, "table"), "tried");
  assert_string_equal(field(e, "outcome"), "testing");
  /* asking again while pending is not a new collision */
  assert_int_equal(good(b, "250.1.1.36", NOW), 0);
  assert_int_equal(json_array_size(ev), before + 1);
  /* 19's test fails: it goes back to new, 36 takes its place */
  assert_int_equal(good(b, "250.1.1.19", 1), 0);
  pd_netaddr_t a19 = A("250.1.1.19", 0);
  assert_int_equal(pd_book_attempt(b, &a19, false, NOW - 61), 0);
  pd_book_resolve_collisions(b, NOW);
  e = find_kind(ev, "evict", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "addr"), "250.1.1.19");
  assert_string_equal(field(e, "table"), "tried");
  assert_string_equal(field(e, "outcome"), "moved_to_new");
  assert_string_equal(field(e, "reason"), "incumbent_failed_test");
  assert_string_equal(field(e, "replaced_by"), "250.1.1.36");
  e = find_kind(ev, "collision_resolved", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "addr"), "250.1.1.36");
  assert_string_equal(field(e, "incumbent"), "250.1.1.19");
  assert_string_equal(field(e, "outcome"), "replaced");
  assert_string_equal(field(e, "by"), "default");
  assert_string_equal(field(e, "reason"), "incumbent_failed_test");
  /* 19 collides with 36, which connected just now: kept */
  assert_int_equal(good(b, "250.1.1.19", NOW), 0);
  assert_non_null(find_kind(ev, "tried_collision", 1));
  pd_book_resolve_collisions(b, NOW);
  e = find_kind(ev, "collision_resolved", 1);
  assert_non_null(e);
  assert_string_equal(field(e, "outcome"), "kept");
  assert_string_equal(field(e, "reason"), "incumbent_connected_recently");
  done(&f);
}

/* evict.lua's verdicts are reported as the policy's. */
static int always_replace_new(void *ud, const pd_book_t *b, uint32_t inc, const pd_book_info_t *c,
                              int64_t now) {
  (void)ud, (void)b, (void)inc, (void)c, (void)now;
  return PD_BOOK_REPLACE;
}
static int always_replace_tried(void *ud, const pd_book_t *b, uint32_t inc, uint32_t c,
                                int64_t now) {
  (void)ud, (void)b, (void)inc, (void)c, (void)now;
  return PD_BOOK_REPLACE;
}

static void book_policy_evictions(void **state) {
  (void)state;
  fixture_t f;
  pd_book_t *b = book(&f, 10, true);
  pd_book_hooks_t h = {always_replace_new, always_replace_tried, NULL};
  pd_book_set_hooks(b, &h);
  char s[32];
  for (int i = 1; i < 36; i++) {
    snprintf(s, sizeof s, "250.1.1.%d", i);
    assert_int_equal(add(b, s), 1);
    assert_int_equal(good(b, s, NOW), 1);
  }
  assert_int_equal(add(b, "250.1.1.36"), 1);
  assert_int_equal(good(b, "250.1.1.36", NOW), 0);
  pd_book_resolve_collisions(b, NOW);
  json_t *e = find_kind(f.sink.events, "collision_resolved", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "outcome"), "replaced");
  assert_string_equal(field(e, "by"), "policy");
  assert_string_equal(field(e, "reason"), "evict_tried");
  e = find_kind(f.sink.events, "evict", 0);
  assert_non_null(e);
  assert_string_equal(field(e, "by"), "policy");
  assert_string_equal(field(e, "outcome"), "moved_to_new");
  done(&f);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(kind_names),     cmocka_unit_test(kinds_filter),
      cmocka_unit_test(event_json),     cmocka_unit_test(sse_frame),
      cmocka_unit_test(ring),           cmocka_unit_test(book_evict_new),
      cmocka_unit_test(book_tried_collision), cmocka_unit_test(book_policy_evictions),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
