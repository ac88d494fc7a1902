/* Unit tests for the control API (api.c), node.c and metrics.c: every route
 * and error path driven through pd_api_handle with a fake clock, no sockets.
 * The rendered /metrics text is also piped through `promtool check metrics`.
 * Policies are loaded in-process from strings (pd_node_policy_load) to check
 * the wiring: dial through select.lua, scores, reputation and bans, PEX
 * accept/share, the reload action, the policy metrics. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/wait.h>

#include "api.h"
#include "err.h"
#include "record.h"
#include "self.h"
#include "rectable.h"
#include "shadow.h"
#include <sodium.h>

#define T0 1700000000
#define NODE_ID "0123456789abcdef0123456789abcdef01234567"

typedef struct fx {
  pd_rng_t rng;
  pd_node_t *node;
  int64_t now;
} fx_t;

static int setup(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  pd_rng_seed(&f->rng, 1234);
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  pd_book_t *book = NULL;
  assert_int_equal(pd_book_create(&book, key, &f->rng, 0), 0);
  pd_node_config_t cfg = {.allow_private = false, .save_interval = 300, .default_ban_secs = 3600};
  f->now = T0;
  assert_int_equal(pd_node_create(&f->node, &cfg, book, &f->rng, f->now), 0);
  *state = f;
  return 0;
}

static int teardown(void **state) {
  fx_t *f = *state;
  pd_node_destroy(f->node);
  free(f);
  return 0;
}

/* Issue a request, check the response's shape, return its JSON (caller
 * decrefs). Error responses must carry a string "error". */
static json_t *call(fx_t *f, const char *method, const char *target, const char *body,
                    int *status) {
  pd_api_request_t rq = {.method = method, .target = target, .body = body, .body_len = body ? strlen(body) : 0, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_string_equal(rs.content_type, "application/json");
  assert_non_null(rs.body);
  assert_true(rs.body_len > 0);
  assert_int_equal(rs.body[rs.body_len - 1], '\n');
  json_error_t err;
  json_t *j = json_loadb(rs.body, rs.body_len, 0, &err);
  if (!j) fail_msg("response is not JSON: %s (%s)", rs.body, err.text);
  assert_true(json_is_object(j));
  if (rs.status >= 400) {
    assert_true(json_is_string(json_object_get(j, "error")));
  }
  *status = rs.status;
  pd_api_response_free(&rs);
  return j;
}

/* Call and expect this status; returns the JSON. */
static json_t *expect(fx_t *f, const char *method, const char *target, const char *body,
                      int want) {
  int st = 0;
  json_t *j = call(f, method, target, body, &st);
  if (st != want) {
    char *s = json_dumps(j, JSON_COMPACT);
    fail_msg("%s %s -> %d, want %d: %s", method, target, st, want, s ? s : "?");
  }
  return j;
}

/* Expect an error whose message contains `needle`. */
static void expect_error(fx_t *f, const char *method, const char *target, const char *body,
                         int want, const char *needle) {
  json_t *j = expect(f, method, target, body, want);
  const char *msg = json_string_value(json_object_get(j, "error"));
  if (!strstr(msg, needle)) fail_msg("error \"%s\" lacks \"%s\"", msg, needle);
  json_decref(j);
}

static json_int_t jget_int(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_integer(v)) fail_msg("field %s is not an integer", key);
  return json_integer_value(v);
}

static const char *jget_str(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v)) fail_msg("field %s is not a string", key);
  return json_string_value(v);
}

static char *metrics_text(fx_t *f) {
  pd_api_request_t rq = {.method = "GET", .target = "/metrics", .body = NULL, .body_len = 0, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.status, 200);
  assert_string_equal(rs.content_type, "text/plain; version=0.0.4; charset=utf-8");
  assert_int_equal(strlen(rs.body), rs.body_len);
  return rs.body; /* caller frees */
}

/* The value of one sample line "name{labels} value" (-1 if absent). */
static double sample(const char *text, const char *series) {
  size_t n = strlen(series);
  for (const char *p = text; p && *p; p = strchr(p, '\n'), p = p ? p + 1 : NULL) {
    if (strncmp(p, series, n) == 0 && p[n] == ' ') return strtod(p + n + 1, NULL);
  }
  return -1;
}

static void add_addrs(fx_t *f, const char *body, int added) {
  json_t *j = expect(f, "POST", "/v1/book", body, 200);
  assert_int_equal(jget_int(j, "added"), added);
  json_decref(j);
}

/* ---- tests -------------------------------------------------------------- */

static void health_and_routing(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "GET", "/health", NULL, 200);
  assert_string_equal(jget_str(j, "status"), "ok");
  json_decref(j);

  expect_error(f, "GET", "/nope", NULL, 404, "no such endpoint");
  expect_error(f, "GET", "/v1/status/", NULL, 404, "no such endpoint");
  expect_error(f, "GET", "/v1/book/", NULL, 404, "no such endpoint");
  expect_error(f, "GET", "/health?verbose=1", NULL, 400, "unknown query parameter: verbose");
  expect_error(f, "GET", "*", NULL, 400, "must start with /");
  expect_error(f, "GET", "/he%zzlth", NULL, 400, "bad percent-encoding in path");
  expect_error(f, "GET", "/health%00", NULL, 400, "bad percent-encoding in path");
  expect_error(f, "GET", "/health%4", NULL, 400, "bad percent-encoding in path");
  /* Percent-encoded fixed paths route like plain ones. */
  json_decref(expect(f, "GET", "/h%65alth", NULL, 200));

  /* Wrong method: 405 with the allowed methods in the body. */
  j = expect(f, "PUT", "/v1/book", NULL, 405);
  json_t *allow = json_object_get(j, "allow");
  assert_true(json_is_array(allow));
  assert_int_equal(json_array_size(allow), 2);
  assert_string_equal(json_string_value(json_array_get(allow, 0)), "GET");
  assert_string_equal(json_string_value(json_array_get(allow, 1)), "POST");
  assert_non_null(strstr(jget_str(j, "error"), "PUT"));
  json_decref(j);
  expect_error(f, "POST", "/health", "{}", 405, "not allowed");
  expect_error(f, "GET", "/v1/save", NULL, 405, "not allowed");
  expect_error(f, "DELETE", "/v1/book/1.2.3.4:1", NULL, 405, "not allowed");
  expect_error(f, "GET", "/v1/events", NULL, 405, "not allowed");

  /* Body over the limit: 413 whatever the route. */
  size_t big = PD_API_MAX_BODY + 1;
  char *body = malloc(big + 1);
  assert_non_null(body);
  memset(body, ' ', big);
  body[big] = '\0';
  expect_error(f, "POST", "/v1/book", body, 413, "too large");
  free(body);

  /* A NULL body with a length is refused, not dereferenced. */
  pd_api_request_t rq = {.method = "POST", .target = "/v1/book", .body = NULL, .body_len = 5, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.status, 400);
  pd_api_response_free(&rs);
}

static void status_reports_node_state(void **state) {
  fx_t *f = *state;
  f->now = T0 + 42;
  json_t *j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_string_equal(jget_str(j, "version"), PEERD_VERSION);
  assert_int_equal(jget_int(j, "uptime"), 42);
  assert_int_equal(jget_int(j, "started_at"), T0);
  assert_int_equal(jget_int(j, "now"), T0 + 42);
  json_t *book = json_object_get(j, "book");
  assert_int_equal(jget_int(book, "new"), 0);
  assert_int_equal(jget_int(book, "tried"), 0);
  assert_int_equal(jget_int(book, "banned"), 0);
  assert_int_equal(jget_int(book, "collisions"), 0);
  json_t *cfg = json_object_get(j, "config");
  assert_true(json_is_false(json_object_get(cfg, "allow_private")));
  assert_int_equal(jget_int(cfg, "save_interval"), 300);
  json_t *save = json_object_get(j, "last_save");
  assert_true(json_is_null(json_object_get(save, "at")));
  assert_true(json_is_true(json_object_get(save, "ok")));
  assert_true(json_is_null(json_object_get(save, "error")));
  json_t *load = json_object_get(j, "load");
  assert_true(json_is_true(json_object_get(load, "ok")));
  assert_true(json_is_null(json_object_get(load, "error")));
  assert_true(json_is_null(json_object_get(load, "moved_to")));
  assert_true(json_is_null(json_object_get(load, "first_skip")));
  json_decref(j);

  /* A failed load and a failed save show up. */
  pd_bookstore_report_t rep = {.entries_loaded = 0, .entries_skipped = 3};
  snprintf(rep.first_skip, sizeof(rep.first_skip), "entry 7: bad port");
  pd_node_note_load(f->node, PD_ECORRUPT, "truncated JSON", "/d/addrbook.json.corrupt-1", &rep);
  pd_node_note_save(f->node, -28, "No space left on device", 0, 0, T0 + 40);
  j = expect(f, "GET", "/v1/status", NULL, 200);
  load = json_object_get(j, "load");
  assert_true(json_is_false(json_object_get(load, "ok")));
  assert_string_equal(jget_str(load, "error"), "truncated JSON");
  assert_string_equal(jget_str(load, "moved_to"), "/d/addrbook.json.corrupt-1");
  assert_int_equal(jget_int(load, "entries_skipped"), 3);
  assert_string_equal(jget_str(load, "first_skip"), "entry 7: bad port");
  save = json_object_get(j, "last_save");
  assert_int_equal(jget_int(save, "at"), T0 + 40);
  assert_true(json_is_false(json_object_get(save, "ok")));
  assert_string_equal(jget_str(save, "error"), "No space left on device");
  json_decref(j);

  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_book_load_errors_total") == 1);
  assert_true(sample(m, "peerd_book_load_skipped_entries_total") == 3);
  assert_true(sample(m, "peerd_book_saves_total{result=\"error\"}") == 1);
  assert_true(sample(m, "peerd_book_last_save_timestamp_seconds") == 0);
  free(m);
}

static void book_post_adds_and_rejects(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "POST", "/v1/book",
                     "{\"addrs\":[\"1.2.3.4:26656\",\"" NODE_ID "@[2a01:4f8::1]:26656\","
                     "\"10.0.0.1:26656\",\"1.2.3.4:0\",\"junk\","
                     "\"1.2.3.4:26656\",\"[2001:db8::1]:26656\"],\"source\":\"5.6.7.8\"}",
                     200);
  assert_int_equal(jget_int(j, "added"), 2);
  assert_int_equal(jget_int(j, "known"), 1);
  json_t *rej = json_object_get(j, "rejected");
  assert_int_equal(json_array_size(rej), 4);
  const char *want[4][2] = {
      {"10.0.0.1:26656", "private"},
      {"1.2.3.4:0", "port 0"},
      {"junk", ""},
      {"[2001:db8::1]:26656", "documentation"},
  };
  for (size_t i = 0; i < 4; i++) {
    json_t *r = json_array_get(rej, i);
    assert_string_equal(jget_str(r, "addr"), want[i][0]);
    const char *e = jget_str(r, "error");
    assert_true(strlen(e) > 0);
    if (!strstr(e, want[i][1])) fail_msg("%s: error \"%s\" lacks \"%s\"", want[i][0], e, want[i][1]);
  }
  json_decref(j);

  /* The entries: source and node id as given. */
  j = expect(f, "GET", "/v1/book/%5B2a01%3A4f8%3A%3A1%5D%3A26656", NULL, 200);
  assert_string_equal(jget_str(j, "addr"), "[2a01:4f8::1]:26656");
  assert_string_equal(jget_str(j, "source"), "5.6.7.8");
  assert_string_equal(jget_str(j, "id"), NODE_ID);
  assert_string_equal(jget_str(j, "table"), "new");
  json_decref(j);

  /* Default source: the address itself. */
  add_addrs(f, "{\"addrs\":[\"9.9.9.9:26656\"]}", 1);
  j = expect(f, "GET", "/v1/book/9.9.9.9:26656", NULL, 200);
  assert_string_equal(jget_str(j, "source"), "9.9.9.9");
  assert_null(json_object_get(j, "id"));
  assert_int_equal(jget_int(j, "time"), f->now);
  json_decref(j);
  /* Source as host:port and as [v6]:port. */
  add_addrs(f, "{\"addrs\":[\"9.8.9.9:26656\"],\"source\":\"5.6.7.8:26656\"}", 1);
  add_addrs(f, "{\"addrs\":[\"9.7.9.9:26656\"],\"source\":\"[2a01:4f8::2]:1\"}", 1);
  add_addrs(f, "{\"addrs\":[],\"source\":\"2a01:4f8::2\"}", 0);

  /* Banned addresses are rejected as such. */
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"11.0.0.0/8\"}", 200));
  j = expect(f, "POST", "/v1/book", "{\"addrs\":[\"11.1.2.3:26656\"]}", 200);
  assert_int_equal(jget_int(j, "added"), 0);
  assert_string_equal(jget_str(json_array_get(json_object_get(j, "rejected"), 0), "error"),
                      "banned");
  json_decref(j);

  /* Request-level errors. */
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[\"1.2.3.4:1\"", 400, "malformed JSON");
  expect_error(f, "POST", "/v1/book", "", 400, "malformed JSON");
  expect_error(f, "POST", "/v1/book", NULL, 400, "malformed JSON");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[]} x", 400, "malformed JSON");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[],\"addrs\":[]}", 400, "malformed JSON");
  expect_error(f, "POST", "/v1/book", "[\"1.2.3.4:1\"]", 400, "must be a JSON object");
  expect_error(f, "POST", "/v1/book", "{}", 400, "missing field: addrs");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":\"1.2.3.4:1\"}", 400, "\"addrs\" must be an array");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[\"1.2.3.4:1\",7]}", 400, "addrs[1]");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[],\"source\":5}", 400,
               "\"source\" must be a string");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[],\"source\":\"seed.example.com\"}", 400,
               "host names must be resolved first");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[],\"source\":\"1.2.3\"}", 400, "source");
  expect_error(f, "POST", "/v1/book", "{\"addrs\":[],\"sauce\":\"1.2.3.4\"}", 400,
               "unknown field: sauce");
  expect_error(f, "POST", "/v1/book?x=1", "{\"addrs\":[]}", 400, "unknown query parameter");

  /* Too many addresses: 413 with the count. */
  size_t cap = 16 + 24 * (PD_API_MAX_ADDRS + 1);
  char *body = malloc(cap);
  assert_non_null(body);
  size_t o = (size_t)snprintf(body, cap, "{\"addrs\":[");
  for (int i = 0; i <= PD_API_MAX_ADDRS; i++) {
    o += (size_t)snprintf(body + o, cap - o, "%s\"8.8.%d.%d:1\"", i ? "," : "", i / 250, i % 250 + 1);
  }
  snprintf(body + o, cap - o, "]}");
  expect_error(f, "POST", "/v1/book", body, 413, "too many addresses: 1001 > 1000");
  free(body);

  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_int_equal(jget_int(json_object_get(j, "book"), "new"), 5);
  assert_int_equal(jget_int(json_object_get(j, "book"), "banned"), 1);
  json_decref(j);
}

static void book_list_pages(void **state) {
  fx_t *f = *state;
  add_addrs(f,
            "{\"addrs\":[\"1.1.1.1:1\",\"2.2.2.2:2\",\"3.3.3.3:3\",\"4.4.4.4:4\",\"5.5.5.5:5\"]}",
            5);
  json_t *j = expect(f, "GET", "/v1/book", NULL, 200);
  assert_string_equal(jget_str(j, "table"), "all");
  assert_int_equal(jget_int(j, "total"), 5);
  assert_int_equal(jget_int(j, "offset"), 0);
  assert_int_equal(jget_int(j, "limit"), 100);
  json_t *entries = json_object_get(j, "entries");
  assert_int_equal(json_array_size(entries), 5);
  json_t *e = json_array_get(entries, 0);
  assert_string_equal(jget_str(e, "table"), "new");
  assert_int_equal(jget_int(e, "time"), f->now);
  assert_int_equal(jget_int(e, "last_try"), 0);
  assert_int_equal(jget_int(e, "last_success"), 0);
  assert_int_equal(jget_int(e, "attempts"), 0);
  assert_int_equal(jget_int(e, "refs"), 1);
  assert_non_null(json_object_get(e, "addr"));
  assert_non_null(json_object_get(e, "source"));
  json_decref(j);

  /* Paging covers every entry exactly once. */
  int seen = 0;
  for (int off = 0; off < 6; off += 2) {
    char t[80];
    snprintf(t, sizeof(t), "/v1/book?table=new&limit=2&offset=%d", off);
    j = expect(f, "GET", t, NULL, 200);
    assert_string_equal(jget_str(j, "table"), "new");
    assert_int_equal(jget_int(j, "limit"), 2);
    assert_int_equal(jget_int(j, "total"), 5);
    seen += (int)json_array_size(json_object_get(j, "entries"));
    json_decref(j);
  }
  assert_int_equal(seen, 5);

  j = expect(f, "GET", "/v1/book?table=tried", NULL, 200);
  assert_int_equal(jget_int(j, "total"), 0);
  assert_int_equal(json_array_size(json_object_get(j, "entries")), 0);
  json_decref(j);
  j = expect(f, "GET", "/v1/book?limit=0&table=%61ll", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "entries")), 0);
  assert_int_equal(jget_int(j, "total"), 5);
  json_decref(j);

  expect_error(f, "GET", "/v1/book?table=old", NULL, 400, "table must be");
  expect_error(f, "GET", "/v1/book?limit=abc", NULL, 400, "limit must be an integer");
  expect_error(f, "GET", "/v1/book?limit=1001", NULL, 400, "limit must be an integer from 0 to 1000");
  expect_error(f, "GET", "/v1/book?limit=-1", NULL, 400, "limit");
  expect_error(f, "GET", "/v1/book?limit=", NULL, 400, "limit");
  expect_error(f, "GET", "/v1/book?limit=99999999999999999999999", NULL, 400, "limit");
  expect_error(f, "GET", "/v1/book?offset=1x", NULL, 400, "offset");
  expect_error(f, "GET", "/v1/book?limit=1&limit=2", NULL, 400, "duplicate query parameter");
  expect_error(f, "GET", "/v1/book?lmit=1", NULL, 400, "unknown query parameter: lmit");
  expect_error(f, "GET", "/v1/book?table=%zz", NULL, 400, "bad percent-encoding in query");
  expect_error(f, "GET", "/v1/book?table=new%00", NULL, 400, "bad percent-encoding in query");
  expect_error(f, "GET", "/v1/book?a&b&c&d&e&f&g&h&i&j&k&l&m&n&o&p&q", NULL, 400,
               "too many query parameters");
}

static void book_get_explains(void **state) {
  fx_t *f = *state;
  add_addrs(f, "{\"addrs\":[\"1.2.3.4:26656\"],\"source\":\"5.6.7.8\"}", 1);
  json_t *j = expect(f, "GET", "/v1/book/1.2.3.4:26656", NULL, 200);
  assert_string_equal(jget_str(j, "addr"), "1.2.3.4:26656");
  assert_string_equal(jget_str(j, "table"), "new");
  json_int_t bucket = jget_int(j, "bucket"), pos = jget_int(j, "position");
  assert_true(bucket >= 0 && bucket < PD_BOOK_NEW_BUCKETS);
  assert_true(pos >= 0 && pos < PD_BOOK_BUCKET_SIZE);
  /* Placement as the book computes it from the key (all zero here). */
  pd_netaddr_t a, s;
  assert_int_equal(pd_netaddr_parse("1.2.3.4:26656", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("5.6.7.8", &s, NULL), 0);
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  int b = pd_book_new_bucket(key, &a, &s, false);
  assert_int_equal(bucket, b);
  assert_int_equal(pos, pd_book_bucket_position(key, true, b, &a));
  json_t *refs = json_object_get(j, "refs");
  assert_int_equal(json_array_size(refs), 1);
  assert_int_equal(jget_int(json_array_get(refs, 0), "bucket"), bucket);
  assert_int_equal(jget_int(json_array_get(refs, 0), "position"), pos);
  assert_string_equal(jget_str(j, "group"), "010102"); /* IPv4 /16: class 1, 1.2 */
  assert_string_equal(jget_str(j, "source"), "5.6.7.8");
  assert_true(json_is_false(json_object_get(j, "terrible")));
  assert_true(json_is_real(json_object_get(j, "chance")));
  assert_true(json_real_value(json_object_get(j, "chance")) > 0.9);
  assert_true(json_is_false(json_object_get(j, "banned")));
  assert_true(json_is_null(json_object_get(j, "ban")));
  assert_int_equal(jget_int(j, "attempts"), 0);
  assert_int_equal(jget_int(j, "last_count_attempt"), 0);
  json_decref(j);

  /* Unknown: 404 with the ban state and group. */
  j = expect(f, "GET", "/v1/book/1.2.3.5:26656", NULL, 404);
  assert_string_equal(jget_str(j, "error"), "not in book");
  assert_string_equal(jget_str(j, "addr"), "1.2.3.5:26656");
  assert_true(json_is_false(json_object_get(j, "banned")));
  json_decref(j);
  expect_error(f, "GET", "/v1/book/1.2.3.4", NULL, 400, "bad address");
  expect_error(f, "GET", "/v1/book/1.2.3.4:99999", NULL, 400, "port above 65535");
  expect_error(f, "GET", "/v1/book/node.example:1", NULL, 400, "host names must be resolved first");
  expect_error(f, "GET", "/v1/book/%5B2a01:4f8::1", NULL, 400, "bad address");
  expect_error(f, "GET", "/v1/book/1.2.3.4%3", NULL, 400, "bad percent-encoding");
  /* ID@ prefixes are accepted in the path. */
  json_decref(expect(f, "GET", "/v1/book/" NODE_ID "%401.2.3.4:26656", NULL, 200));
}

static json_t *event(fx_t *f, const char *addr, const char *ev, int want) {
  char body[256];
  snprintf(body, sizeof(body), "{\"addr\":\"%s\",\"event\":\"%s\"}", addr, ev);
  json_t *j = expect(f, "POST", "/v1/events", body, want);
  if (want == 200) {
    assert_true(json_is_true(json_object_get(j, "ok")));
    assert_string_equal(jget_str(j, "event"), ev);
  }
  return j;
}

static void events_update_the_book(void **state) {
  fx_t *f = *state;
  add_addrs(f, "{\"addrs\":[\"1.2.3.4:26656\",\"7.7.7.7:26656\"]}", 2);
  f->now += 100;
  json_t *j = event(f, "1.2.3.4:26656", "attempt", 200);
  assert_string_equal(jget_str(j, "table"), "new");
  json_decref(j);
  j = expect(f, "GET", "/v1/book/1.2.3.4:26656", NULL, 200);
  assert_int_equal(jget_int(j, "last_try"), f->now);
  assert_int_equal(jget_int(j, "attempts"), 0);
  json_decref(j);

  f->now += 100;
  json_decref(event(f, "1.2.3.4:26656", "failed", 200));
  j = expect(f, "GET", "/v1/book/1.2.3.4:26656", NULL, 200);
  assert_int_equal(jget_int(j, "attempts"), 1);
  assert_int_equal(jget_int(j, "last_count_attempt"), f->now);
  json_decref(j);

  /* good: new -> tried, as addrman's Good. */
  f->now += 100;
  j = event(f, "1.2.3.4:26656", "good", 200);
  assert_string_equal(jget_str(j, "table"), "tried");
  assert_string_equal(jget_str(j, "result"), "moved_to_tried");
  json_decref(j);
  j = expect(f, "GET", "/v1/book/1.2.3.4:26656", NULL, 200);
  assert_string_equal(jget_str(j, "table"), "tried");
  assert_int_equal(jget_int(j, "last_success"), f->now);
  assert_int_equal(jget_int(j, "attempts"), 0);
  assert_int_equal(json_array_size(json_object_get(j, "refs")), 0);
  assert_true(jget_int(j, "bucket") < PD_BOOK_TRIED_BUCKETS);
  json_decref(j);
  j = event(f, "1.2.3.4:26656", "good", 200);
  assert_string_equal(jget_str(j, "result"), "already_tried");
  json_decref(j);
  j = expect(f, "GET", "/v1/book?table=tried", NULL, 200);
  assert_int_equal(jget_int(j, "total"), 1);
  json_decref(j);

  /* connected refreshes time (at most every 20 minutes). */
  f->now += 3600;
  j = event(f, "1.2.3.4:26656", "connected", 200);
  assert_string_equal(jget_str(j, "table"), "tried");
  json_decref(j);
  j = expect(f, "GET", "/v1/book/1.2.3.4:26656", NULL, 200);
  assert_int_equal(jget_int(j, "time"), f->now);
  json_decref(j);
  json_decref(event(f, "1.2.3.4:26656", "disconnected", 200));

  /* Unknown address: 404 for every event but misbehaved. */
  const char *evs[] = {"attempt", "failed", "connected", "disconnected", "good"};
  for (size_t i = 0; i < 5; i++) {
    j = event(f, "8.8.8.8:26656", evs[i], 404);
    assert_string_equal(jget_str(j, "error"), "not in book");
    json_decref(j);
  }
  j = event(f, "8.8.8.8:26656", "misbehaved", 200);
  assert_true(json_is_null(json_object_get(j, "table")));
  assert_string_equal(jget_str(j, "banned"), "8.8.8.8");
  assert_int_equal(jget_int(j, "until"), f->now + 3600);
  json_decref(j);

  /* Bad requests. */
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"1.2.3.4:26656\",\"event\":\"hello\"}", 400,
               "unknown event: hello");
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"1.2.3.4:26656\"}", 400, "missing field: event");
  expect_error(f, "POST", "/v1/events", "{\"event\":\"good\"}", 400, "missing field: addr");
  expect_error(f, "POST", "/v1/events", "{\"addr\":7,\"event\":\"good\"}", 400,
               "\"addr\" must be a string");
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"1.2.3.4:26656\",\"event\":true}", 400,
               "\"event\" must be a string");
  expect_error(f, "POST", "/v1/events",
               "{\"addr\":\"1.2.3.4:26656\",\"event\":\"misbehaved\",\"reason\":[]}", 400,
               "\"reason\" must be a string");
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"1.2.3.4\",\"event\":\"good\"}", 400, "addr");
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"peer.example:1\",\"event\":\"good\"}", 400,
               "host names must be resolved first");
  expect_error(f, "POST", "/v1/events", "{\"addr\":", 400, "malformed JSON");
  expect_error(f, "POST", "/v1/events", "{\"addr\":\"1.2.3.4:26656\",\"event\":\"good\",\"x\":1}",
               400, "unknown field: x");

  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_events_total{event=\"attempt\"}") == 1);
  assert_true(sample(m, "peerd_events_total{event=\"failed\"}") == 1);
  assert_true(sample(m, "peerd_events_total{event=\"good\"}") == 2);
  assert_true(sample(m, "peerd_events_total{event=\"connected\"}") == 1);
  assert_true(sample(m, "peerd_events_total{event=\"disconnected\"}") == 1);
  assert_true(sample(m, "peerd_events_total{event=\"misbehaved\"}") == 1);
  assert_true(sample(m, "peerd_book_entries{table=\"tried\"}") == 1);
  assert_true(sample(m, "peerd_book_entries{table=\"new\"}") == 1);
  assert_true(sample(m, "peerd_bans") == 1);
  assert_true(sample(m, "peerd_bans_total{cause=\"reputation\"}") == 1);
  assert_true(sample(m, "peerd_bans_total{cause=\"api\"}") == 0);
  free(m);
}

/* Two addresses sharing a tried slot under the all-zero key: good on the
 * second is a tried collision, which the tick then resolves. */
static void good_collision_resolved_by_tick(void **state) {
  fx_t *f = *state;
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  static int16_t slot_a[PD_BOOK_TRIED_BUCKETS * PD_BOOK_BUCKET_SIZE][2];
  memset(slot_a, 0xff, sizeof(slot_a));
  char a1[32] = "", a2[32] = "";
  for (int x = 20; x < 200 && !a2[0]; x++) {
    for (int y = 0; y < 256 && !a2[0]; y++) {
      char s[32];
      snprintf(s, sizeof(s), "%d.%d.1.1:26656", x, y);
      pd_netaddr_t a;
      assert_int_equal(pd_netaddr_parse(s, 0, &a, NULL, NULL, NULL), 0);
      if (pd_netaddr_check_acceptable(&a, false, NULL) != 0) continue;
      int b = pd_book_tried_bucket(key, &a, false);
      int slot = b * PD_BOOK_BUCKET_SIZE + pd_book_bucket_position(key, false, b, &a);
      if (slot_a[slot][0] >= 0) {
        snprintf(a1, sizeof(a1), "%d.%d.1.1:26656", slot_a[slot][0], slot_a[slot][1]);
        snprintf(a2, sizeof(a2), "%s", s);
      } else {
        slot_a[slot][0] = (int16_t)x;
        slot_a[slot][1] = (int16_t)y;
      }
    }
  }
  assert_true(a2[0] != '\0');
  char body[128];
  snprintf(body, sizeof(body), "{\"addrs\":[\"%s\",\"%s\"]}", a1, a2);
  add_addrs(f, body, 2);
  json_t *j = event(f, a1, "good", 200);
  assert_string_equal(jget_str(j, "result"), "moved_to_tried");
  json_decref(j);
  j = event(f, a2, "good", 200);
  assert_string_equal(jget_str(j, "result"), "tried_collision");
  assert_string_equal(jget_str(j, "table"), "new");
  json_decref(j);
  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_int_equal(jget_int(json_object_get(j, "book"), "collisions"), 1);
  json_decref(j);
  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_book_tried_collisions") == 1);
  free(m);
  /* A pending collision is re-examined at every tick. */
  assert_int_equal(pd_node_next_deadline(f->node, f->now), f->now);
  /* The tried entry succeeded just now, so the tick keeps it and drops the
   * collision (ResolveCollisions). */
  f->now += 1;
  pd_node_tick(f->node, f->now);
  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_int_equal(jget_int(json_object_get(j, "book"), "collisions"), 0);
  assert_int_equal(jget_int(json_object_get(j, "book"), "tried"), 1);
  json_decref(j);
  assert_true(pd_node_next_deadline(f->node, f->now) > f->now);
}

static void misbehaved_bans_and_dial_skips(void **state) {
  fx_t *f = *state;
  add_addrs(f,
            "{\"addrs\":[\"1.1.1.1:1\",\"2.2.2.2:2\",\"3.3.3.3:3\",\"4.4.4.4:4\",\"5.5.5.5:5\"]}",
            5);
  json_t *j = expect(f, "GET", "/v1/dial?n=10", NULL, 200);
  json_t *peers = json_object_get(j, "peers");
  assert_true(json_array_size(peers) >= 1 && json_array_size(peers) <= 5);
  json_t *p = json_array_get(peers, 0);
  assert_string_equal(jget_str(p, "table"), "new");
  assert_int_equal(jget_int(p, "attempts"), 0);
  assert_int_equal(jget_int(p, "last_try"), 0);
  assert_int_equal(jget_int(p, "last_success"), 0);
  assert_null(json_object_get(p, "source"));
  json_decref(j);

  j = expect(f, "POST", "/v1/events",
             "{\"addr\":\"3.3.3.3:3\",\"event\":\"misbehaved\",\"reason\":\"bad handshake\"}", 200);
  assert_string_equal(jget_str(j, "table"), "new");
  assert_string_equal(jget_str(j, "banned"), "3.3.3.3");
  json_decref(j);
  j = expect(f, "GET", "/v1/book/3.3.3.3:3", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "banned")));
  json_t *ban = json_object_get(j, "ban");
  assert_string_equal(jget_str(ban, "reason"), "bad handshake");
  assert_int_equal(jget_int(ban, "until"), f->now + 3600);
  json_decref(j);

  int seen_other = 0;
  for (int round = 0; round < 50; round++) {
    j = expect(f, "GET", "/v1/dial?n=5", NULL, 200);
    peers = json_object_get(j, "peers");
    for (size_t i = 0; i < json_array_size(peers); i++) {
      const char *a = jget_str(json_array_get(peers, i), "addr");
      assert_string_not_equal(a, "3.3.3.3:3");
      seen_other++;
    }
    json_decref(j);
  }
  assert_true(seen_other > 50);

  j = expect(f, "GET", "/v1/dial", NULL, 200);
  assert_true(json_array_size(json_object_get(j, "peers")) <= 4);
  json_decref(j);
  expect_error(f, "GET", "/v1/dial?n=0", NULL, 400, "n must be an integer from 1 to 1000");
  expect_error(f, "GET", "/v1/dial?n=1001", NULL, 400, "n must be");
  expect_error(f, "GET", "/v1/dial?n=abc", NULL, 400, "n must be");
  expect_error(f, "GET", "/v1/dial?n=%2B1", NULL, 400, "n must be");
  expect_error(f, "GET", "/v1/dial?count=3", NULL, 400, "unknown query parameter");

  /* After the ban ends (tick expires it), the address is dialled again. */
  f->now += 3601;
  pd_node_tick(f->node, f->now);
  assert_int_equal(pd_banlist_count(pd_book_bans(pd_node_book(f->node))), 0);
  int seen_unbanned = 0;
  for (int round = 0; round < 50 && !seen_unbanned; round++) {
    j = expect(f, "GET", "/v1/dial?n=5", NULL, 200);
    peers = json_object_get(j, "peers");
    for (size_t i = 0; i < json_array_size(peers); i++) {
      seen_unbanned |= strcmp(jget_str(json_array_get(peers, i), "addr"), "3.3.3.3:3") == 0;
    }
    json_decref(j);
  }
  assert_true(seen_unbanned);
}

static void bans_crud_and_expiry(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "POST", "/v1/bans",
                     "{\"target\":\"10.0.0.0/8\",\"duration\":60,\"reason\":\"test net\"}", 200);
  assert_string_equal(jget_str(j, "banned"), "10.0.0.0/8");
  assert_int_equal(jget_int(j, "until"), f->now + 60);
  assert_true(json_is_false(json_object_get(j, "replaced")));
  json_decref(j);
  j = expect(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"duration\":0}", 200);
  assert_true(json_is_null(json_object_get(j, "until")));
  json_decref(j);
  j = expect(f, "POST", "/v1/bans", "{\"target\":\"2a01:4f8::/32\"}", 200);
  assert_int_equal(jget_int(j, "until"), f->now + 3600); /* default_ban_secs */
  json_decref(j);
  j = expect(f, "POST", "/v1/bans", "{\"target\":\"2a01:4f8::/32\",\"duration\":7200}", 200);
  assert_true(json_is_true(json_object_get(j, "replaced")));
  json_decref(j);
  /* four bans added or renewed through the API, none by reputation */
  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_bans_total{cause=\"api\"}") == 4);
  assert_true(sample(m, "peerd_bans_total{cause=\"reputation\"}") == 0);
  free(m);

  j = expect(f, "GET", "/v1/bans", NULL, 200);
  json_t *bans = json_object_get(j, "bans");
  assert_int_equal(json_array_size(bans), 3);
  json_t *b0 = json_array_get(bans, 0);
  assert_string_equal(jget_str(b0, "subnet"), "10.0.0.0/8");
  assert_int_equal(jget_int(b0, "created"), f->now);
  assert_int_equal(jget_int(b0, "until"), f->now + 60);
  assert_string_equal(jget_str(b0, "reason"), "test net");
  assert_true(json_is_null(json_object_get(json_array_get(bans, 1), "until")));
  json_decref(j);

  /* Expired bans are hidden at once and dropped by tick. */
  f->now += 61;
  j = expect(f, "GET", "/v1/bans", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "bans")), 2);
  json_decref(j);
  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_int_equal(jget_int(json_object_get(j, "book"), "banned"), 2);
  json_decref(j);
  assert_int_equal(pd_banlist_count(pd_book_bans(pd_node_book(f->node))), 3);
  pd_node_tick(f->node, f->now);
  assert_int_equal(pd_banlist_count(pd_book_bans(pd_node_book(f->node))), 2);

  /* Unban by path (literal slash and percent-encoded) and by query. */
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"10.0.0.0/8\"}", 200));
  j = expect(f, "DELETE", "/v1/bans/10.0.0.0/8", NULL, 200);
  assert_string_equal(jget_str(j, "unbanned"), "10.0.0.0/8");
  json_decref(j);
  j = expect(f, "DELETE", "/v1/bans/10.0.0.0/8", NULL, 404);
  assert_string_equal(jget_str(j, "error"), "not banned");
  json_decref(j);
  json_decref(expect(f, "DELETE", "/v1/bans/2a01%3A4f8%3A%3A%2F32", NULL, 200));
  json_decref(expect(f, "DELETE", "/v1/bans?target=1.2.3.4", NULL, 200));
  expect_error(f, "DELETE", "/v1/bans?target=1.2.3.4", NULL, 404, "not banned");
  j = expect(f, "GET", "/v1/bans", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "bans")), 0);
  json_decref(j);

  /* Errors. */
  expect_error(f, "DELETE", "/v1/bans", NULL, 400, "missing query parameter: target");
  expect_error(f, "DELETE", "/v1/bans/10.0.0.1/8", NULL, 400, "host bits set");
  expect_error(f, "DELETE", "/v1/bans/banana", NULL, 400, "bad target");
  expect_error(f, "POST", "/v1/bans", "{}", 400, "missing field: target");
  expect_error(f, "POST", "/v1/bans", "{\"target\":5}", 400, "\"target\" must be a string");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"duration\":-1}", 400, "duration");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"duration\":\"1h\"}", 400,
               "duration");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"duration\":1.5}", 400, "duration");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"duration\":9223372036854775807}",
               400, "too large");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"reason\":false}", 400, "reason");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.300\"}", 400, "target");
  expect_error(f, "POST", "/v1/bans", "{\"target\":\"10.0.0.0/33\"}", 400, "target");
  expect_error(f, "POST", "/v1/bans", "nope", 400, "malformed JSON");

  /* A long multi-byte reason is cut on a character boundary. */
  char body[1024];
  size_t o = (size_t)snprintf(body, sizeof(body), "{\"target\":\"9.9.9.9\",\"reason\":\"");
  for (int i = 0; i < 100; i++) o += (size_t)snprintf(body + o, sizeof(body) - o, "\xc3\xa9");
  snprintf(body + o, sizeof(body) - o, "\"}");
  j = expect(f, "POST", "/v1/bans", body, 200);
  const char *r = jget_str(j, "reason");
  assert_true(strlen(r) < PD_BAN_REASON_MAX && strlen(r) % 2 == 0 && strlen(r) > 80);
  json_decref(j);
}

static void save_action_and_complete(void **state) {
  fx_t *f = *state;
  pd_metrics_t *m = pd_node_metrics(f->node);
  uint64_t before = pd_metrics_requests(m, 200);
  pd_api_request_t rq = {.method = "POST", .target = "/v1/save", .body = NULL, .body_len = 0, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.action, PD_API_ACTION_SAVE);
  assert_int_equal(pd_metrics_requests(m, 200), before); /* counted on completion */
  pd_node_note_save(f->node, 0, NULL, 1234, 5, f->now);
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_int_equal(pd_metrics_requests(m, 200), before + 1);
  json_t *j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_non_null(j);
  assert_true(json_is_true(json_object_get(j, "saved")));
  assert_int_equal(jget_int(j, "at"), f->now);
  assert_int_equal(jget_int(j, "bytes"), 1234);
  assert_int_equal(jget_int(j, "entries"), 5);
  assert_true(json_is_null(json_object_get(j, "error")));
  json_decref(j);
  pd_api_response_free(&rs);

  /* A failed save: 500 with the reason. A body is ignored. */
  rq.body = "{}";
  rq.body_len = 2;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_SAVE);
  pd_node_note_save(f->node, -13, "Permission denied", 0, 0, f->now + 1);
  pd_api_complete(f->node, f->now + 1, &rs);
  assert_int_equal(rs.status, 500);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_non_null(j);
  assert_true(json_is_false(json_object_get(j, "saved")));
  assert_string_equal(jget_str(j, "error"), "Permission denied");
  json_decref(j);
  pd_api_response_free(&rs);
  assert_int_equal(pd_metrics_requests(m, 500), 1);
  /* Completing twice is a no-op. */
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(pd_metrics_requests(m, 500), 1);

  expect_error(f, "POST", "/v1/save?now=1", NULL, 400, "unknown query parameter");
  char *text = metrics_text(f);
  assert_true(sample(text, "peerd_book_saves_total{result=\"ok\"}") == 1);
  assert_true(sample(text, "peerd_book_saves_total{result=\"error\"}") == 1);
  assert_true(sample(text, "peerd_book_last_save_timestamp_seconds") == (double)f->now);
  free(text);
}

static void tick_schedules_saves(void **state) {
  fx_t *f = *state;
  assert_false(pd_node_tick(f->node, T0));
  /* A driver may sleep until the next deadline: the save, here. */
  assert_int_equal(pd_node_next_deadline(f->node, T0), T0 + 300);
  /* A ban that expires sooner comes first; once past, it is "now". */
  pd_subnet_t sn;
  assert_int_equal(pd_subnet_parse("9.9.9.9", &sn, NULL), 0);
  assert_int_equal(pd_banlist_add(pd_book_bans(pd_node_book(f->node)), &sn, T0, T0 + 50, NULL), 0);
  assert_int_equal(pd_node_next_deadline(f->node, T0 + 1), T0 + 50);
  assert_int_equal(pd_node_next_deadline(f->node, T0 + 60), T0 + 60);
  assert_false(pd_node_tick(f->node, T0 + 60)); /* expires it */
  assert_int_equal(pd_banlist_count(pd_book_bans(pd_node_book(f->node))), 0);
  assert_int_equal(pd_node_next_deadline(f->node, T0 + 61), T0 + 300);
  assert_false(pd_node_tick(f->node, T0 + 299));
  assert_true(pd_node_tick(f->node, T0 + 300));
  pd_node_note_save(f->node, 0, NULL, 10, 0, T0 + 300);
  assert_int_equal(pd_node_next_deadline(f->node, T0 + 300), T0 + 600);
  assert_false(pd_node_tick(f->node, T0 + 301));
  assert_true(pd_node_tick(f->node, T0 + 600));
  /* A failed save also restarts the interval (no save storm). */
  pd_node_note_save(f->node, PD_EIO, NULL, 0, 0, T0 + 600);
  assert_false(pd_node_tick(f->node, T0 + 601));
  assert_string_equal(pd_node_status(f->node)->last_save_error, pd_strerror(PD_EIO));
  assert_true(pd_node_tick(f->node, T0 + 900));

  /* set_book swaps the book (the old one is freed; ASan checks). */
  pd_book_t *nb = NULL;
  uint8_t key[PD_BOOK_KEY_LEN] = {1};
  assert_int_equal(pd_book_create(&nb, key, &f->rng, 0), 0);
  pd_node_set_book(f->node, nb);
  assert_ptr_equal(pd_node_book(f->node), nb);
  assert_ptr_equal(pd_node_rng(f->node), &f->rng);
  assert_int_equal(pd_node_config(f->node)->default_ban_secs, 3600);
}

/* Run promtool over the text; returns its exit status, or -1 if absent. */
static int promtool_check(const char *text) {
  if (system("command -v promtool >/dev/null 2>&1") != 0) return -1;
  FILE *p = popen("promtool check metrics >/dev/null 2>&1", "w");
  if (!p) return -1;
  fputs(text, p);
  int st = pclose(p);
  return WIFEXITED(st) ? WEXITSTATUS(st) : 255;
}

static void metrics_render_and_promtool(void **state) {
  fx_t *f = *state;
  char *m = metrics_text(f);
  const char *families[] = {
      "peerd_api_requests_total",        "peerd_book_saves_total",
      "peerd_book_load_errors_total",    "peerd_book_load_skipped_entries_total",
      "peerd_book_last_save_timestamp_seconds", "peerd_book_entries",
      "peerd_bans",                      "peerd_book_tried_collisions",
      "peerd_uptime_seconds",            "peerd_build_info",
      "peerd_events_total",              "peerd_book_memory_bytes",
      "peerd_bans_total",
  };
  for (size_t i = 0; i < sizeof(families) / sizeof(families[0]); i++) {
    char line[160];
    snprintf(line, sizeof(line), "# HELP %s ", families[i]);
    assert_non_null(strstr(m, line));
    snprintf(line, sizeof(line), "# TYPE %s ", families[i]);
    assert_non_null(strstr(m, line));
  }
  assert_non_null(strstr(m, "peerd_build_info{version=\"" PEERD_VERSION "\"} 1\n"));
  assert_true(sample(m, "peerd_book_memory_bytes") > 0);
  /* The first /metrics was not yet counted when it rendered. */
  assert_true(sample(m, "peerd_api_requests_total{code=\"200\"}") == -1);
  free(m);

  json_decref(expect(f, "GET", "/health", NULL, 200));
  json_decref(expect(f, "GET", "/nope", NULL, 404));
  json_decref(expect(f, "GET", "/nope", NULL, 404));
  json_decref(expect(f, "PATCH", "/health", NULL, 405));
  add_addrs(f, "{\"addrs\":[\"1.2.3.4:26656\"]}", 1);
  f->now += 77;
  m = metrics_text(f);
  assert_true(sample(m, "peerd_api_requests_total{code=\"200\"}") == 3); /* metrics, health, book */
  assert_true(sample(m, "peerd_api_requests_total{code=\"404\"}") == 2);
  assert_true(sample(m, "peerd_api_requests_total{code=\"405\"}") == 1);
  assert_true(sample(m, "peerd_book_entries{table=\"new\"}") == 1);
  assert_true(sample(m, "peerd_uptime_seconds") == 77);
  int rc = promtool_check(m);
  if (rc < 0) {
    free(m);
    skip();
  }
  assert_int_equal(rc, 0);
  /* promtool does catch a broken exposition (the check can fail). */
  assert_int_not_equal(promtool_check("# TYPE x counter\nx{ 1\n"), 0);
  free(m);

  /* Label values are escaped. */
  pd_metrics_t mm;
  pd_metrics_init(&mm);
  pd_metrics_count_request(&mm, 42);
  pd_metrics_count_event(&mm, PD_METRICS_EV_COUNT); /* ignored */
  assert_null(pd_metrics_event_name(PD_METRICS_EV_COUNT));
  pd_metrics_gauges_t g = {0};
  char *t = NULL;
  size_t len = 0;
  assert_int_equal(pd_metrics_render(&mm, &g, "1.0 \"x\"\\\n", &t, &len), 0);
  assert_int_equal(strlen(t), len);
  assert_non_null(strstr(t, "peerd_build_info{version=\"1.0 \\\"x\\\"\\\\\\n\"} 1\n"));
  assert_true(sample(t, "peerd_api_requests_total{code=\"other\"}") == 1);
  assert_int_equal(promtool_check(t), 0);
  free(t);
}

/* Host names in POST /v1/book come back as a RESOLVE action; the driver's
 * answers (addresses or a resolver error) are added when it completes. */
static void book_post_resolves_host_names(void **state) {
  fx_t *f = *state;
  const char *body =
      "{\"addrs\":[\"seed.example.org:26656\",\"1.2.3.4:26656\",\"" NODE_ID
      "@peer.example.org:7\",\"nx.invalid:1\",\"bad_name!:1\"],\"source\":\"5.6.7.8\"}";
  pd_api_request_t rq = {.method = "POST", .target = "/v1/book", .body = body, .body_len = strlen(body), .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_RESOLVE);
  assert_int_equal(pd_api_pending_names(&rs), 3);
  uint16_t port = 0;
  assert_string_equal(pd_api_pending_name(&rs, 0, &port), "seed.example.org");
  assert_int_equal(port, 26656);
  assert_string_equal(pd_api_pending_name(&rs, 1, &port), "peer.example.org");
  assert_int_equal(port, 7);
  assert_string_equal(pd_api_pending_name(&rs, 2, &port), "nx.invalid");
  assert_null(pd_api_pending_name(&rs, 3, &port));
  /* The IP literal is in the book already. */
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse("1.2.3.4:26656", 0, &a, NULL, NULL, NULL), 0);
  assert_true(pd_book_find(pd_node_book(f->node), &a) != PD_BOOK_NO_ID);

  pd_netaddr_t r0[2];
  assert_int_equal(pd_netaddr_parse("9.9.8.8:26656", 0, &r0[0], NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("127.0.0.1:26656", 0, &r0[1], NULL, NULL, NULL), 0);
  pd_api_resolved(&rs, 0, r0, 2, NULL);
  pd_netaddr_t r1;
  assert_int_equal(pd_netaddr_parse("9.9.7.7:7", 0, &r1, NULL, NULL, NULL), 0);
  pd_api_resolved(&rs, 1, &r1, 1, NULL);
  pd_api_resolved(&rs, 2, NULL, 0, "Name or service not known");
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_int_equal(rs.status, 200);
  assert_null(rs.pending);
  json_t *j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_non_null(j);
  assert_int_equal(jget_int(j, "added"), 3); /* 1.2.3.4, 9.9.8.8, 9.9.7.7 */
  json_t *rej = json_object_get(j, "rejected");
  assert_int_equal(json_array_size(rej), 3);
  assert_string_equal(jget_str(json_array_get(rej, 0), "addr"), "bad_name!:1");
  assert_string_equal(jget_str(json_array_get(rej, 1), "addr"), "127.0.0.1:26656");
  assert_string_equal(jget_str(json_array_get(rej, 2), "addr"), "nx.invalid:1");
  assert_non_null(strstr(jget_str(json_array_get(rej, 2), "error"), "Name or service not known"));
  json_t *res = json_object_get(j, "resolved");
  assert_int_equal(json_array_size(res), 2);
  assert_string_equal(jget_str(json_array_get(res, 0), "name"), "seed.example.org:26656");
  assert_int_equal(json_array_size(json_object_get(json_array_get(res, 0), "addrs")), 2);
  json_decref(j);
  pd_api_response_free(&rs);

  /* The node id and source carry over to resolved addresses. */
  j = expect(f, "GET", "/v1/book/9.9.7.7:7", NULL, 200);
  assert_string_equal(jget_str(j, "id"), NODE_ID);
  assert_string_equal(jget_str(j, "source"), "5.6.7.8");
  json_decref(j);

  /* More than PD_API_MAX_NAMES names: the rest are rejected, not resolved;
   * freeing a response with pending names releases them. */
  char big[2048];
  size_t o = (size_t)snprintf(big, sizeof big, "{\"addrs\":[");
  for (int i = 0; i < PD_API_MAX_NAMES + 2; i++) {
    o += (size_t)snprintf(big + o, sizeof big - o, "%s\"h%d.example:1\"", i ? "," : "", i);
  }
  snprintf(big + o, sizeof big - o, "]}");
  pd_api_request_t rq2 = {.method = "POST", .target = "/v1/book", .body = big, .body_len = strlen(big), .content_type = "application/json"};
  pd_api_handle(f->node, &rq2, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_RESOLVE);
  assert_int_equal(pd_api_pending_names(&rs), PD_API_MAX_NAMES);
  pd_api_complete(f->node, f->now, &rs); /* nothing resolved: all rejected */
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_int_equal(json_array_size(json_object_get(j, "rejected")), PD_API_MAX_NAMES + 2);
  assert_non_null(strstr(jget_str(json_array_get(json_object_get(j, "rejected"), 0), "error"),
                         "too many host names"));
  json_decref(j);
  pd_api_response_free(&rs);
  pd_api_handle(f->node, &rq2, f->now, &rs);
  pd_api_response_free(&rs);
}


/* ---- policies ----------------------------------------------------------- */

/* Load one policy file from a string through the node. */
static int load_policy(fx_t *f, const char *name, const char *text, char *err, size_t cap) {
  pd_policy_file_t file = {name, text, strlen(text)};
  return pd_node_policy_load(f->node, &file, 1, f->now, err, cap);
}

static void must_load(fx_t *f, const char *name, const char *text) {
  char err[512] = "";
  int rc = load_policy(f, name, text, err, sizeof err);
  if (rc != 0) fail_msg("%s did not load: %s", name, err);
}

static void dial_through_select_policy(void **state) {
  fx_t *f = *state;
  add_addrs(f, "{\"addrs\":[\"1.1.1.1:1\",\"2.2.2.2:2\",\"3.3.3.3:3\",\"4.4.4.4:4\",\"5.5.5.5:5\"]}",
            5);
  json_decref(event(f, "4.4.4.4:4", "good", 200));
  /* Only the one tried entry, whatever n is. */
  must_load(f, "select.lua",
            "return { select = function(book, n)\n"
            "  local id = book:random('tried')\n"
            "  return { id }\n"
            "end }\n");
  for (int round = 0; round < 5; round++) {
    json_t *j = expect(f, "GET", "/v1/dial?n=5", NULL, 200);
    json_t *peers = json_object_get(j, "peers");
    assert_int_equal(json_array_size(peers), 1);
    assert_string_equal(jget_str(json_array_get(peers, 0), "addr"), "4.4.4.4:4");
    assert_string_equal(jget_str(j, "selected_by"), "policy");
    json_decref(j);
  }
  /* ?outbound=K is the ctx.outbound select sees (absent: no field) */
  must_load(f, "select.lua",
            "return { select = function(book, n, ctx)\n"
            "  if ctx.outbound == nil then return {} end\n"
            "  if ctx.outbound ~= 5 or ctx.max_outbound ~= nil then error('ctx') end\n"
            "  return { book:random('tried') }\n"
            "end }\n");
  json_t *j0 = expect(f, "GET", "/v1/dial?n=5", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j0, "peers")), 0);
  assert_string_equal(jget_str(j0, "selected_by"), "policy");
  json_decref(j0);
  expect_error(f, "GET", "/v1/dial?n=5&outbound=x", NULL, 400,
               "outbound must be an integer from 0 to 100000");
  for (int round = 0; round < 5; round++) {
    json_t *j = expect(f, "GET", "/v1/dial?n=5&outbound=5", NULL, 200);
    json_t *peers = json_object_get(j, "peers");
    assert_int_equal(json_array_size(peers), 1);
    assert_string_equal(jget_str(json_array_get(peers, 0), "addr"), "4.4.4.4:4");
    assert_string_equal(jget_str(j, "selected_by"), "policy");
    assert_true(json_is_number(json_object_get(json_array_get(peers, 0), "score")));
    json_decref(j);
  }
  /* Without a score.lua the C default scores: tried (+10), success just now
   * (+5), reputation +1 from the good event. */
  json_t *j = expect(f, "GET", "/v1/book/4.4.4.4:4", NULL, 200);
  assert_true(json_real_value(json_object_get(j, "score")) == 16.0);
  json_decref(j);

  /* score.lua decides the score shown by /v1/dial and /v1/book/ADDR. */
  pd_policy_file_t two[2] = {
      {"select.lua", "return { select = function(book, n) return { book:random('tried') } end }",
       0},
      {"score.lua", "return { score = function(peer) return peer.tried and 42.5 or -1 end }", 0},
  };
  two[0].len = strlen(two[0].text);
  two[1].len = strlen(two[1].text);
  char err[512];
  assert_int_equal(pd_node_policy_load(f->node, two, 2, f->now, err, sizeof err), 0);
  j = expect(f, "GET", "/v1/dial?n=3", NULL, 200);
  assert_true(json_real_value(json_object_get(json_array_get(json_object_get(j, "peers"), 0),
                                              "score")) == 42.5);
  json_decref(j);
  j = expect(f, "GET", "/v1/book/1.1.1.1:1", NULL, 200);
  assert_true(json_real_value(json_object_get(j, "score")) == -1);
  json_decref(j);

  /* Hostile selects fall back to the C default; each kind is counted. */
  const char *hostile[][2] = {
      {"return { select = function() error('boom') end }", "error"},
      {"return { select = function() return 'x' end }", "bad_return"},
      {"return { select = function() return { 99999 } end }", "bad_return"},
      {"return { select = function() while true do end end }", "instructions"},
      {"return { select = function() local t = {} for i = 1, 1e9 do t[i] = "
       "string.rep('x', 1024) .. i end end }",
       "memory"},
  };
  for (size_t h = 0; h < sizeof hostile / sizeof hostile[0]; h++) {
    must_load(f, "select.lua", hostile[h][0]);
    char series[128];
    snprintf(series, sizeof series, "peerd_policy_failures_total{hook=\"select\",reason=\"%s\"}",
             hostile[h][1]);
    char *m = metrics_text(f);
    double before = sample(m, series);
    free(m);
    j = expect(f, "GET", "/v1/dial?n=3", NULL, 200);
    assert_string_equal(jget_str(j, "selected_by"), "default");
    assert_true(json_array_size(json_object_get(j, "peers")) >= 1);
    json_decref(j);
    m = metrics_text(f);
    if (sample(m, series) != before + 1) fail_msg("%s did not move", series);
    free(m);
  }
  /* The node reports each new failure kind once, with file:line. */
  int hook, reason, seen = 0;
  char msg[512];
  while (pd_policy_next_unreported(pd_node_policy(f->node), &hook, &reason, msg, sizeof msg)) {
    assert_int_equal(hook, PD_HOOK_SELECT);
    seen++;
  }
  assert_true(seen >= 1);
}

static void reputation_bans_after_three_misbehaviours(void **state) {
  fx_t *f = *state;
  add_addrs(f, "{\"addrs\":[\"6.6.6.6:6\",\"7.7.7.7:7\"]}", 2);
  /* The C default first: good +1, failed -1, misbehaved -10 and a ban. */
  json_t *j = event(f, "7.7.7.7:7", "good", 200);
  assert_true(json_real_value(json_object_get(j, "reputation")) == 1);
  assert_string_equal(jget_str(j, "decided_by"), "default");
  assert_true(json_is_null(json_object_get(j, "ban")));
  json_decref(j);
  j = event(f, "7.7.7.7:7", "failed", 200);
  assert_true(json_real_value(json_object_get(j, "reputation")) == 0);
  json_decref(j);

  must_load(f, "reputation.lua",
            "return { on_event = function(peer, event, reason)\n"
            "  local rep = peer.reputation + (event == 'good' and 2 or 0)\n"
            "  if event == 'misbehaved' then\n"
            "    rep = rep - 1\n"
            "    if peer.misbehaviours >= 2 then\n"
            "      return { reputation = rep, ban = 600, reason = 'three strikes' }\n"
            "    end\n"
            "  end\n"
            "  return { reputation = rep }\n"
            "end }\n");
  for (int i = 1; i <= 2; i++) {
    j = expect(f, "POST", "/v1/events",
               "{\"addr\":\"6.6.6.6:6\",\"event\":\"misbehaved\",\"reason\":\"spam\"}", 200);
    assert_string_equal(jget_str(j, "decided_by"), "policy");
    assert_int_equal(jget_int(j, "misbehaviours"), i);
    assert_true(json_real_value(json_object_get(j, "reputation")) == -i);
    assert_true(json_is_null(json_object_get(j, "ban")));
    json_decref(j);
  }
  j = expect(f, "GET", "/v1/book/6.6.6.6:6", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "banned")));
  json_decref(j);
  j = expect(f, "POST", "/v1/events",
             "{\"addr\":\"6.6.6.6:6\",\"event\":\"misbehaved\",\"reason\":\"spam\"}", 200);
  assert_int_equal(jget_int(j, "misbehaviours"), 3);
  assert_string_equal(jget_str(j, "banned"), "6.6.6.6");
  json_t *ban = json_object_get(j, "ban");
  assert_string_equal(jget_str(ban, "reason"), "three strikes");
  assert_int_equal(jget_int(ban, "until"), f->now + 600);
  json_decref(j);
  j = expect(f, "GET", "/v1/book/6.6.6.6:6", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "banned")));
  json_t *rep = json_object_get(j, "reputation");
  assert_int_equal(jget_int(rep, "misbehaviours"), 3);
  assert_true(json_real_value(json_object_get(rep, "value")) == -3);
  assert_true(json_is_null(json_object_get(rep, "latency_ms")));
  json_decref(j);
  /* good goes through the policy too (+2); latency is recorded. */
  j = expect(f, "POST", "/v1/events",
             "{\"addr\":\"7.7.7.7:7\",\"event\":\"good\",\"latency_ms\":120}", 200);
  assert_true(json_real_value(json_object_get(j, "reputation")) == 2);
  json_decref(j);
  j = expect(f, "GET", "/v1/book/7.7.7.7:7", NULL, 200);
  assert_true(json_real_value(json_object_get(json_object_get(j, "reputation"), "latency_ms")) ==
              120);
  json_decref(j);
  expect_error(f, "POST", "/v1/events",
               "{\"addr\":\"7.7.7.7:7\",\"event\":\"good\",\"latency_ms\":-1}", 400, "latency_ms");
  /* A policy that errors: the C default decides, the ban uses --ban-time. */
  must_load(f, "reputation.lua", "return { on_event = function() error('nope') end }");
  j = event(f, "7.7.7.7:7", "misbehaved", 200);
  assert_string_equal(jget_str(j, "decided_by"), "default");
  assert_true(json_real_value(json_object_get(j, "reputation")) == -8);
  assert_int_equal(jget_int(j, "until"), f->now + 3600);
  json_decref(j);
  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_policy_failures_total{hook=\"reputation\",reason=\"error\"}") == 1);
  free(m);
}

static void pex_accept_and_share(void **state) {
  fx_t *f = *state;
  must_load(f, "pex.lua",
            "return {\n"
            "  accept = function(addr, from)\n"
            "    return not addr.addr:find('^9%.') and from.addr ~= '66.0.0.66'\n"
            "  end,\n"
            "  share = function(addr, to) return addr.addr ~= '2.2.2.2:2' end,\n"
            "}\n");
  /* Gossip (with a source) passes accept; the node's own reports do not. */
  json_t *j = expect(f, "POST", "/v1/book",
                     "{\"addrs\":[\"1.1.1.1:1\",\"9.9.9.9:9\",\"2.2.2.2:2\",\"3.3.3.3:3\"],"
                     "\"source\":\"5.6.7.8\"}",
                     200);
  assert_int_equal(jget_int(j, "added"), 3);
  json_t *rej = json_object_get(j, "rejected");
  assert_int_equal(json_array_size(rej), 1);
  assert_string_equal(jget_str(json_array_get(rej, 0), "addr"), "9.9.9.9:9");
  assert_string_equal(jget_str(json_array_get(rej, 0), "error"), "refused by pex policy");
  json_decref(j);
  j = expect(f, "POST", "/v1/book", "{\"addrs\":[\"4.4.4.4:4\"],\"source\":\"66.0.0.66\"}", 200);
  assert_int_equal(jget_int(j, "added"), 0);
  json_decref(j);
  add_addrs(f, "{\"addrs\":[\"9.9.9.9:9\",\"8.8.4.4:53\",\"12.0.0.1:1\"]}", 3);
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"3.3.3.3\"}", 200));

  /* Shared: everything but 2.2.2.2 (policy), 3.3.3.3 (banned), 8.8.4.4 (the
   * asking peer itself). */
  j = expect(f, "GET", "/v1/pex?peer=8.8.4.4:53&n=100", NULL, 200);
  json_t *addrs = json_object_get(j, "addrs");
  assert_int_equal(json_array_size(addrs), 3);
  for (size_t i = 0; i < json_array_size(addrs); i++) {
    const char *a = json_string_value(json_array_get(addrs, i));
    assert_true(strcmp(a, "1.1.1.1:1") == 0 || strcmp(a, "9.9.9.9:9") == 0 ||
                strcmp(a, "12.0.0.1:1") == 0);
  }
  json_decref(j);
  /* Default size: GetAddr's 23% of the book (6 entries -> 1). */
  j = expect(f, "GET", "/v1/pex?peer=8.8.4.4", NULL, 200);
  assert_true(json_array_size(json_object_get(j, "addrs")) <= 1);
  json_decref(j);
  expect_error(f, "GET", "/v1/pex", NULL, 400, "missing query parameter: peer");
  expect_error(f, "GET", "/v1/pex?peer=nope", NULL, 400, "peer");
  expect_error(f, "GET", "/v1/pex?peer=1.2.3.4&n=0", NULL, 400, "n must be");
  expect_error(f, "GET", "/v1/pex?peer=1.2.3.4&x=1", NULL, 400, "unknown query parameter");
}

/* Private peers (--private-peer) are never shared, whatever pex.lua says. */
static void pex_never_shares_private_peers(void **state) {
  (void)state;
  pd_rng_t rng;
  pd_rng_seed(&rng, 99);
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  pd_book_t *book = NULL;
  assert_int_equal(pd_book_create(&book, key, &rng, 0), 0);
  pd_subnet_t sn;
  assert_int_equal(pd_subnet_parse("1.1.0.0/16", &sn, NULL), 0);
  uint8_t ids[1][PD_NODE_ID_LEN];
  assert_int_equal(pd_node_id_parse(NODE_ID, PD_NODE_ID_HEXLEN, ids[0]), 0);
  pd_node_config_t cfg = {.default_ban_secs = 60,
                          .private_subnets = &sn,
                          .nprivate_subnets = 1,
                          .private_ids = (const uint8_t(*)[PD_NODE_ID_LEN])ids,
                          .nprivate_ids = 1};
  fx_t fx = {.rng = rng, .now = T0};
  assert_int_equal(pd_node_create(&fx.node, &cfg, book, &rng, fx.now), 0);
  add_addrs(&fx,
            "{\"addrs\":[\"1.1.1.1:1\",\"1.1.2.2:2\",\"" NODE_ID "@3.3.3.3:3\",\"4.4.4.4:4\"]}",
            4);
  must_load(&fx, "pex.lua", "return { share = function() return true end }");
  json_t *j = expect(&fx, "GET", "/v1/pex?peer=7.7.7.7&n=50", NULL, 200);
  json_t *addrs = json_object_get(j, "addrs");
  assert_int_equal(json_array_size(addrs), 1);
  assert_string_equal(json_string_value(json_array_get(addrs, 0)), "4.4.4.4:4");
  json_decref(j);
  j = expect(&fx, "GET", "/v1/book/1.1.1.1:1", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "private")));
  json_decref(j);
  pd_node_destroy(fx.node);
}

/* POST /v1/policy/reload: an action the driver performs, then completes. */
static void policy_reload_action_and_status(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "GET", "/v1/status", NULL, 200);
  json_t *pol = json_object_get(j, "policy");
  assert_int_equal(jget_int(pol, "generation"), 0);
  assert_true(json_is_null(json_object_get(pol, "hash")));
  assert_true(json_is_null(json_object_get(pol, "last_error")));
  assert_true(json_is_false(
      json_object_get(json_object_get(json_object_get(pol, "hooks"), "select"), "provided")));
  json_decref(j);

  const char *body = "";
  pd_api_request_t rq = {.method = "POST", .target = "/v1/policy/reload", .body = body, .body_len = 0, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_RELOAD);
  /* the driver reads the directory and loads it */
  must_load(f, "select.lua", "return { select = function(book, n) return {} end }");
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_int_equal(rs.status, 200);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_non_null(j);
  assert_true(json_is_true(json_object_get(j, "reloaded")));
  assert_int_equal(jget_int(j, "generation"), 1);
  assert_int_equal(strlen(jget_str(j, "hash")), 64);
  assert_true(json_is_null(json_object_get(j, "error")));
  char hash1[65];
  snprintf(hash1, sizeof hash1, "%s", jget_str(j, "hash"));
  json_decref(j);
  pd_api_response_free(&rs);

  /* A broken set: 422, the old generation stays. */
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_RELOAD);
  char err[512];
  f->now += 5;
  assert_true(load_policy(f, "select.lua", "return {\n select = function(\n", err, sizeof err) < 0);
  assert_non_null(strstr(err, "select.lua:"));
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.status, 422);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_true(json_is_false(json_object_get(j, "reloaded")));
  assert_int_equal(jget_int(j, "generation"), 1);
  assert_string_equal(jget_str(j, "hash"), hash1);
  assert_non_null(strstr(jget_str(j, "error"), "select.lua:"));
  json_decref(j);
  pd_api_response_free(&rs);

  j = expect(f, "GET", "/v1/status", NULL, 200);
  pol = json_object_get(j, "policy");
  assert_int_equal(jget_int(pol, "generation"), 1);
  assert_string_equal(jget_str(pol, "hash"), hash1);
  assert_int_equal(jget_int(pol, "loaded_at"), f->now - 5);
  assert_int_equal(json_array_size(json_object_get(pol, "files")), 1);
  assert_string_equal(json_string_value(json_array_get(json_object_get(pol, "files"), 0)),
                      "select.lua");
  json_t *hooks = json_object_get(pol, "hooks");
  assert_true(json_is_true(json_object_get(json_object_get(hooks, "select"), "provided")));
  assert_string_equal(jget_str(json_object_get(hooks, "select"), "state"), "ok");
  assert_true(json_is_false(json_object_get(json_object_get(hooks, "score"), "provided")));
  assert_string_equal(jget_str(json_object_get(hooks, "score"), "state"), "absent");
  json_t *le = json_object_get(pol, "last_error");
  assert_int_equal(jget_int(le, "at"), f->now);
  assert_non_null(strstr(jget_str(le, "error"), "select.lua:"));
  assert_true(jget_int(pol, "memory_bytes") > 0);
  json_decref(j);
  /* The set in force is still used: an empty pick list from the policy. */
  add_addrs(f, "{\"addrs\":[\"1.2.3.4:5\"]}", 1);
  j = expect(f, "GET", "/v1/dial", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "peers")), 0);
  assert_string_equal(jget_str(j, "selected_by"), "policy");
  json_decref(j);

  /* A failure before the policy host (unreadable directory) is recorded. */
  pd_node_policy_load_failed(f->node, "policy directory /x: No such file or directory", f->now);
  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_policy_reloads_total{result=\"ok\"}") == 1);
  assert_true(sample(m, "peerd_policy_reloads_total{result=\"error\"}") == 2);
  assert_true(sample(m, "peerd_policy_generation") == 1);
  assert_true(sample(m, "peerd_policy_memory_bytes") > 0);
  free(m);
}

static void policy_metrics_families(void **state) {
  fx_t *f = *state;
  char *m = metrics_text(f);
  const char *families[] = {"peerd_policy_failures_total", "peerd_policy_reloads_total",
                            "peerd_policy_memory_bytes", "peerd_policy_generation"};
  for (size_t i = 0; i < 4; i++) {
    char line[160];
    snprintf(line, sizeof(line), "# TYPE %s ", families[i]);
    assert_non_null(strstr(m, line));
  }
  /* every hook x reason, zeros included */
  int series = 0;
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) {
      char s[160];
      snprintf(s, sizeof s, "peerd_policy_failures_total{hook=\"%s\",reason=\"%s\"}",
               pd_policy_hook_name(h), pd_policy_reason_name(r));
      assert_true(sample(m, s) == 0);
      series++;
    }
  }
  assert_int_equal(series, PD_HOOK_COUNT * PD_POLICY_REASON_COUNT);
  int rc = promtool_check(m);
  free(m);
  if (rc < 0) skip();
  assert_int_equal(rc, 0);
}

/* A fake network view: two peers and fixed counters. */
typedef struct fake_net {
  int calls;
  uint64_t dials[3], fin[2], fout[2], rej[2];
} fake_net_t;

static const char *const fake_dial_names[3] = {"ok", "refused", "id_mismatch"};
static const char *const fake_type_names[2] = {"hello", "ping"};
static const char *const fake_reason_names[2] = {"bad_magic", "oversized"};

static size_t fake_peers(void *ud, int64_t now, pd_node_peer_info_t *out, size_t cap) {
  fake_net_t *fn = ud;
  fn->calls++;
  for (size_t i = 0; i < 2 && i < cap; i++) {
    memset(&out[i], 0, sizeof out[i]);
    snprintf(out[i].addr, sizeof out[i].addr, "127.%zu.0.1:7411", i + 1);
    if (i == 0) snprintf(out[i].id, sizeof out[i].id, "%s", NODE_ID);
    out[i].direction = i == 0 ? "outbound" : "inbound";
    out[i].since = now - 10 * (int64_t)(i + 1);
    out[i].bytes_in = 100 + i;
    out[i].bytes_out = 200 + i;
    out[i].latency_ms = i == 0 ? 7 : -1;
    out[i].score = 1.5;
  }
  return 2;
}

static void fake_counters(void *ud, pd_metrics_net_t *out) {
  fake_net_t *fn = ud;
  out->connections_inbound = 1;
  out->connections_outbound = 1;
  out->ndials = 3;
  out->dial_names = fake_dial_names;
  out->dials = fn->dials;
  out->ntypes = 2;
  out->type_names = fake_type_names;
  out->frames_in = fn->fin;
  out->frames_out = fn->fout;
  out->nreasons = 2;
  out->reason_names = fake_reason_names;
  out->rejected = fn->rej;
}

/* GET /v1/peers, the network metric families and the identity in status. */
static void peers_and_network_metrics(void **state) {
  fx_t *f = *state;
  /* No network view: no peers, families present, connections at 0. */
  json_t *j = expect(f, "GET", "/v1/peers", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "peers")), 0);
  json_decref(j);
  expect_error(f, "GET", "/v1/peers?x=1", NULL, 400, "x");
  json_decref(expect(f, "PUT", "/v1/peers", "{}", 405));
  char *m = metrics_text(f);
  const char *families[] = {"peerd_connections", "peerd_dials_total", "peerd_frames_total",
                            "peerd_wire_rejected_total"};
  for (size_t i = 0; i < 4; i++) {
    char line[160];
    snprintf(line, sizeof(line), "# TYPE %s ", families[i]);
    assert_non_null(strstr(m, line));
  }
  assert_true(sample(m, "peerd_connections{direction=\"inbound\"}") == 0);
  assert_true(sample(m, "peerd_connections{direction=\"outbound\"}") == 0);
  assert_true(sample(m, "peerd_dials_total{outcome=\"ok\"}") == -1);
  int rc = promtool_check(m);
  free(m);
  if (rc >= 0) assert_int_equal(rc, 0);

  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_true(json_is_null(json_object_get(j, "node_id")));
  assert_true(json_is_null(json_object_get(j, "listen")));
  json_decref(j);
  pd_node_status_t *st = pd_node_status(f->node);
  snprintf(st->node_id, sizeof st->node_id, "%s", NODE_ID);
  snprintf(st->listen, sizeof st->listen, "127.0.0.1:7411");
  j = expect(f, "GET", "/v1/status", NULL, 200);
  assert_string_equal(jget_str(j, "node_id"), NODE_ID);
  assert_string_equal(jget_str(j, "listen"), "127.0.0.1:7411");
  json_decref(j);

  fake_net_t fn = {.dials = {5, 2, 1}, .fin = {3, 9}, .fout = {4, 8}, .rej = {6, 0}};
  pd_node_net_ops_t ops = {.peers = fake_peers, .counters = fake_counters};
  pd_node_set_net(f->node, &ops, &fn);
  j = expect(f, "GET", "/v1/peers", NULL, 200);
  json_t *peers = json_object_get(j, "peers");
  assert_int_equal(json_array_size(peers), 2);
  json_t *p0 = json_array_get(peers, 0), *p1 = json_array_get(peers, 1);
  assert_string_equal(jget_str(p0, "id"), NODE_ID);
  assert_string_equal(jget_str(p0, "addr"), "127.1.0.1:7411");
  assert_string_equal(jget_str(p0, "direction"), "outbound");
  assert_int_equal(jget_int(p0, "since"), f->now - 10);
  assert_int_equal(jget_int(p0, "bytes_in"), 100);
  assert_int_equal(jget_int(p0, "bytes_out"), 200);
  assert_int_equal(jget_int(p0, "latency_ms"), 7);
  assert_true(json_real_value(json_object_get(p0, "score")) == 1.5);
  assert_true(json_is_null(json_object_get(p1, "id")));
  assert_true(json_is_null(json_object_get(p1, "latency_ms")));
  assert_string_equal(jget_str(p1, "direction"), "inbound");
  json_decref(j);
  assert_true(fn.calls >= 1);

  m = metrics_text(f);
  assert_true(sample(m, "peerd_connections{direction=\"inbound\"}") == 1);
  assert_true(sample(m, "peerd_dials_total{outcome=\"ok\"}") == 5);
  assert_true(sample(m, "peerd_dials_total{outcome=\"id_mismatch\"}") == 1);
  assert_true(sample(m, "peerd_frames_total{direction=\"in\",type=\"ping\"}") == 9);
  assert_true(sample(m, "peerd_frames_total{direction=\"out\",type=\"hello\"}") == 4);
  assert_true(sample(m, "peerd_wire_rejected_total{reason=\"bad_magic\"}") == 6);
  assert_true(sample(m, "peerd_wire_rejected_total{reason=\"oversized\"}") == 0);
  rc = promtool_check(m);
  free(m);
  pd_node_set_net(f->node, NULL, NULL);
  j = expect(f, "GET", "/v1/peers", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "peers")), 0);
  json_decref(j);
  if (rc < 0) skip();
  assert_int_equal(rc, 0);
}

/* GET/PUT /v1/self: the record decoded and as base64 bytes that decode to
 * the same; PUT replaces the parts given, bumps the sequence once, refuses
 * bad input with a reason and changes nothing then. */
static void self_record(void **state) {
  fx_t *f = *state;
  expect_error(f, "GET", "/v1/self", NULL, 503, "no node record");
  pd_identity_t id;
  uint8_t seed[32];
  memset(seed, 3, sizeof seed);
  assert_int_equal(pd_identity_from_seed(&id, seed), 0);
  pd_self_config_t sc = {.network = "peerd", .identity = &id, .has_listen = true};
  assert_int_equal(pd_netaddr_parse("127.9.0.1:7411", 0, &sc.listen, NULL, NULL, NULL), 0);
  pd_self_t *self = NULL;
  assert_int_equal(pd_self_create(&self, &sc, f->now * 1000, NULL), 0);
  pd_node_set_self(f->node, self);
  json_t *j = expect(f, "GET", "/v1/self", NULL, 200);
  assert_string_equal(jget_str(j, "discovery"), "127.9.0.1:7411");
  assert_int_equal(jget_int(j, "seq"), f->now * 1000);
  assert_int_equal(json_object_size(json_object_get(j, "services")), 0);
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "announced"), "source")), "listen");
  json_decref(j);
  f->now += 10;
  j = expect(f, "PUT", "/v1/self",
             "{\"services\":{\"p2p\":26656,\"rpc\":\"127.9.0.2:26657\"},\"attrs\":{\"chain\":\"c-1\"}}", 200);
  json_t *svc = json_object_get(j, "services");
  assert_string_equal(json_string_value(json_object_get(svc, "p2p")), "127.9.0.1:26656");
  assert_string_equal(json_string_value(json_object_get(svc, "rpc")), "127.9.0.2:26657");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "declared"), "p2p")), "26656");
  assert_string_equal(json_string_value(json_object_get(json_object_get(j, "attrs"), "chain")), "c-1");
  json_int_t seq = jget_int(j, "seq");
  assert_int_equal(seq, f->now * 1000);
  /* the base64 bytes are the record */
  const char *b64 = jget_str(j, "record");
  uint8_t raw[PD_RECORD_MAX];
  size_t rl = 0;
  assert_int_equal(sodium_base642bin(raw, sizeof raw, b64, strlen(b64), NULL, &rl, NULL,
                                     sodium_base64_VARIANT_ORIGINAL), 0);
  assert_int_equal((json_int_t)rl, jget_int(j, "size"));
  pd_record_t r;
  assert_int_equal(pd_record_decode(raw, rl, "peerd", NULL, &r, NULL), PD_RECORD_OK);
  assert_int_equal((json_int_t)r.seq, seq);
  assert_string_equal(pd_record_attr(&r, "chain"), "c-1");
  json_decref(j);
  /* attrs only: services kept */
  j = expect(f, "PUT", "/v1/self", "{\"attrs\":{}}", 200);
  assert_int_equal(json_object_size(json_object_get(j, "attrs")), 0);
  assert_int_equal(json_object_size(json_object_get(j, "services")), 2);
  assert_true(jget_int(j, "seq") > seq);
  seq = jget_int(j, "seq");
  json_decref(j);
  /* refusals: nothing changes */
  expect_error(f, "PUT", "/v1/self", "{\"services\":{\"P2P\":1}}", 400, "service name");
  expect_error(f, "PUT", "/v1/self", "{\"services\":{\"p2p\":0}}", 400, "port");
  expect_error(f, "PUT", "/v1/self", "{\"services\":{\"p2p\":\"0.0.0.0:1\"}}", 400, "p2p");
  expect_error(f, "PUT", "/v1/self", "{\"services\":[]}", 400, "objects");
  expect_error(f, "PUT", "/v1/self", "{\"attrs\":{\"k\":1}}", 400, "attribute");
  expect_error(f, "PUT", "/v1/self", "{\"other\":1}", 400, "other");
  expect_error(f, "PUT", "/v1/self", "not json", 400, "JSON");
  j = expect(f, "GET", "/v1/self", NULL, 200);
  assert_int_equal(jget_int(j, "seq"), seq);
  assert_int_equal(json_object_size(json_object_get(j, "services")), 2);
  json_decref(j);
  json_decref(expect(f, "DELETE", "/v1/self", NULL, 405));
  pd_node_set_self(f->node, NULL);
  pd_self_destroy(self);
}

/* A record learnt for node k: discovery 127.k.0.1:7411 (when peerd),
 * services p2p -> 127.k.0.1:port and rpc -> 127.k.0.2:26657, chain=c-1. */
static void learn(fx_t *f, unsigned k, uint64_t seq, uint16_t port, bool peerd, pd_record_t *out) {
  pd_identity_t id;
  uint8_t seed[32];
  memset(seed, (int)k, sizeof seed);
  assert_int_equal(pd_identity_from_seed(&id, seed), 0);
  pd_record_t r;
  assert_int_equal(pd_record_init(&r, "peerd", seq, NULL), 0);
  char txt[64];
  pd_netaddr_t a;
  if (peerd) {
    snprintf(txt, sizeof txt, "127.%u.0.1:7411", k);
    assert_int_equal(pd_netaddr_parse(txt, 0, &r.discovery, NULL, NULL, NULL), 0);
    r.has_discovery = true;
  }
  snprintf(txt, sizeof txt, "127.%u.0.1:%u", k, port);
  assert_int_equal(pd_netaddr_parse(txt, 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_record_set_service(&r, "p2p", &a, NULL), 0);
  snprintf(txt, sizeof txt, "127.%u.0.2:26657", k);
  assert_int_equal(pd_netaddr_parse(txt, 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_record_set_service(&r, "rpc", &a, NULL), 0);
  assert_int_equal(pd_record_set_attr(&r, "chain", "c-1", NULL), 0);
  uint8_t buf[PD_RECORD_MAX];
  size_t len;
  assert_int_equal(pd_record_sign(&r, &id, NULL, buf, sizeof buf, &len), 0);
  pd_netaddr_t src;
  assert_int_equal(pd_netaddr_parse("127.200.0.1", PD_PARSE_PORT_OPTIONAL, &src, NULL, NULL, NULL), 0);
  int brc = 0;
  int rc = pd_node_learn_record(f->node, buf, len, &r, &src, f->now, f->now, &brc);
  assert_true(rc == PD_REC_NEW || rc == PD_REC_UPDATED);
  if (out) *out = r;
}

static json_t *dial_peer(json_t *peers, const char *addr) {
  for (size_t i = 0; i < json_array_size(peers); i++) {
    json_t *p = json_array_get(peers, i);
    if (strcmp(jget_str(p, "addr"), addr) == 0) return p;
  }
  return NULL;
}

/* GET /v1/dial hands out service endpoints only: records' (with node_id,
 * peer, service, attrs) and the node's own addresses; never a discovery
 * endpoint, nor an overlay address without a record. Events name a node
 * by a service endpoint or node_id; an inbound good stays out of tried. */
static int setup_private(void **state) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  pd_rng_seed(&f->rng, 1234);
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  pd_book_t *book = NULL;
  assert_int_equal(pd_book_create(&book, key, &f->rng, PD_BOOK_ALLOW_PRIVATE), 0);
  pd_node_config_t cfg = {.allow_private = true, .save_interval = 300, .default_ban_secs = 3600};
  f->now = T0;
  assert_int_equal(pd_node_create(&f->node, &cfg, book, &f->rng, f->now), 0);
  *state = f;
  return 0;
}

static void dial_service_endpoints(void **state) {
  fx_t *f = *state;
  pd_record_t r5, r6;
  learn(f, 5, 1, 26656, true, &r5);
  learn(f, 6, 1, 26656, false, &r6); /* no peerd: placed by its p2p endpoint */
  /* an overlay address without a record (v1-style): never handed out */
  pd_netaddr_t bare, src;
  assert_int_equal(pd_netaddr_parse("127.7.0.1:7411", 0, &bare, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("127.200.0.1", PD_PARSE_PORT_OPTIONAL, &src, NULL, NULL, NULL), 0);
  assert_int_equal(pd_book_add(pd_node_book(f->node), &bare, NULL, f->now, &src, 0, f->now, NULL), 1);
  json_decref(expect(f, "POST", "/v1/book", "{\"addrs\":[\"127.8.0.1:26656\"]}", 200));
  json_t *j = expect(f, "GET", "/v1/dial?n=50", NULL, 200);
  json_t *peers = json_object_get(j, "peers");
  assert_int_equal(json_array_size(peers), 3);
  json_t *p5 = dial_peer(peers, "127.5.0.1:26656");
  assert_non_null(p5);
  char hex[41];
  for (int i = 0; i < 20; i++) snprintf(hex + 2 * i, 3, "%02x", r5.id[i]);
  assert_string_equal(jget_str(p5, "node_id"), hex);
  char peer[128];
  snprintf(peer, sizeof peer, "%s@127.5.0.1:26656", hex);
  assert_string_equal(jget_str(p5, "peer"), peer);
  assert_string_equal(jget_str(p5, "service"), "p2p");
  assert_string_equal(json_string_value(json_object_get(json_object_get(p5, "attrs"), "chain")), "c-1");
  assert_true(json_is_true(json_object_get(p5, "peerd")));
  assert_string_equal(jget_str(p5, "entry"), "127.5.0.1:7411");
  json_t *p6 = dial_peer(peers, "127.6.0.1:26656");
  assert_non_null(p6);
  assert_true(json_is_false(json_object_get(p6, "peerd")));
  json_t *p8 = dial_peer(peers, "127.8.0.1:26656");
  assert_non_null(p8);
  assert_null(json_object_get(p8, "node_id"));
  assert_true(json_is_null(json_object_get(p8, "service")));
  assert_null(dial_peer(peers, "127.5.0.1:7411"));
  assert_null(dial_peer(peers, "127.7.0.1:7411"));
  json_decref(j);
  /* ?service=rpc: only records that have one */
  j = expect(f, "GET", "/v1/dial?n=50&service=rpc", NULL, 200);
  peers = json_object_get(j, "peers");
  assert_int_equal(json_array_size(peers), 2);
  assert_non_null(dial_peer(peers, "127.5.0.2:26657"));
  json_decref(j);
  expect_error(f, "GET", "/v1/dial?service=BAD", NULL, 400, "service");

  /* events by service endpoint: the node's entry (its discovery endpoint) */
  j = expect(f, "POST", "/v1/events",
             "{\"addr\":\"127.5.0.1:26656\",\"event\":\"good\",\"direction\":\"inbound\"}", 200);
  assert_string_equal(jget_str(j, "addr"), "127.5.0.1:7411");
  assert_string_equal(jget_str(j, "table"), "new");
  assert_string_equal(jget_str(j, "result"), "inbound");
  assert_string_equal(jget_str(j, "direction"), "inbound");
  json_decref(j);
  char body[256];
  snprintf(body, sizeof body, "{\"node_id\":\"%s\",\"event\":\"good\"}", hex);
  j = expect(f, "POST", "/v1/events", body, 200);
  assert_string_equal(jget_str(j, "table"), "tried");
  assert_string_equal(jget_str(j, "direction"), "outbound");
  json_decref(j);
  expect_error(f, "POST", "/v1/events", "{\"event\":\"good\"}", 400, "addr or node_id");
  expect_error(f, "POST", "/v1/events",
               "{\"node_id\":\"00\",\"event\":\"good\"}", 400, "node_id");
  expect_error(f, "POST", "/v1/events",
               "{\"node_id\":\"0000000000000000000000000000000000000000\",\"event\":\"good\"}", 404,
               "not in book");
  expect_error(f, "POST", "/v1/events",
               "{\"addr\":\"127.8.0.1:26656\",\"event\":\"good\",\"direction\":\"sideways\"}", 400,
               "direction");

  /* the node moves its service port: the new one replaces the old */
  learn(f, 5, 2, 26700, true, NULL);
  j = expect(f, "GET", "/v1/dial?n=50", NULL, 200);
  peers = json_object_get(j, "peers");
  assert_non_null(dial_peer(peers, "127.5.0.1:26700"));
  assert_null(dial_peer(peers, "127.5.0.1:26656"));
  json_decref(j);
}

/* Access: Host and Origin must name the API by an IP or localhost (no DNS
 * rebinding, no cross-site calls), a body must be JSON, and with a token
 * every request but GET /health needs it. Refusals change nothing. */
static int handle_status(fx_t *f, pd_api_request_t *rq) {
  pd_api_response_t rs;
  pd_api_handle(f->node, rq, f->now, &rs);
  int st = rs.status;
  pd_api_response_free(&rs);
  return st;
}

static void access_rules(void **state) {
  fx_t *f = *state;
  const char *ban = "{\"target\":\"1.2.3.0/24\"}";
  pd_api_request_t rq = {.method = "POST", .target = "/v1/bans", .body = ban, .body_len = strlen(ban),
                         .content_type = "application/json", .host = "127.0.0.1:7412"};
  const char *why = NULL;
  assert_int_equal(pd_api_check_access(&rq, &why), 0);
  const char *ok_hosts[] = {"127.0.0.1:7412", "localhost:7412", "LOCALHOST", "[::1]:7412", "10.0.0.1",
                            "192.0.2.9:80", "::1"};
  for (size_t i = 0; i < sizeof ok_hosts / sizeof ok_hosts[0]; i++) {
    rq.host = ok_hosts[i];
    assert_int_equal(pd_api_check_access(&rq, &why), 0);
  }
  const char *bad_hosts[] = {"evil.example:7412", "localhost.evil.example", "", "[::1", "peerd"};
  for (size_t i = 0; i < sizeof bad_hosts / sizeof bad_hosts[0]; i++) {
    rq.host = bad_hosts[i];
    assert_int_equal(pd_api_check_access(&rq, &why), 403);
    assert_non_null(strstr(why, "DNS"));
  }
  rq.host = "127.0.0.1:7412";
  rq.origin = "http://evil.example";
  assert_int_equal(pd_api_check_access(&rq, &why), 403);
  rq.origin = "null";
  assert_int_equal(pd_api_check_access(&rq, &why), 403);
  rq.origin = "http://127.0.0.1:7412";
  assert_int_equal(pd_api_check_access(&rq, &why), 0);
  rq.origin = NULL;
  rq.content_type = "text/plain";
  assert_int_equal(pd_api_check_access(&rq, &why), 415);
  assert_int_equal(handle_status(f, &rq), 415);
  rq.content_type = NULL;
  assert_int_equal(pd_api_check_access(&rq, &why), 415);
  rq.content_type = "application/json; charset=utf-8";
  assert_int_equal(pd_api_check_access(&rq, &why), 0);
  rq.content_type = "application/jsonx";
  assert_int_equal(pd_api_check_access(&rq, &why), 415);
  rq.content_type = "application/json";
  /* a token */
  rq.token = "0123456789abcdef0123456789abcdef";
  assert_int_equal(pd_api_check_access(&rq, &why), 401);
  rq.authorization = "Bearer 0123456789abcdef0123456789abcdeX";
  assert_int_equal(pd_api_check_access(&rq, &why), 401);
  rq.authorization = "Bearer 0123456789abcdef0123456789abcde";
  assert_int_equal(pd_api_check_access(&rq, &why), 401);
  rq.authorization = "Basic 0123456789abcdef0123456789abcdef";
  assert_int_equal(pd_api_check_access(&rq, &why), 401);
  assert_int_equal(handle_status(f, &rq), 401);
  pd_api_request_t health = {.method = "GET", .target = "/health", .token = rq.token};
  assert_int_equal(pd_api_check_access(&health, &why), 0);
  health.target = "/healthz";
  assert_int_equal(pd_api_check_access(&health, &why), 401);
  /* refused requests changed nothing: no ban yet */
  json_t *j = expect(f, "GET", "/v1/bans", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "bans")), 0);
  json_decref(j);
  rq.authorization = "Bearer 0123456789abcdef0123456789abcdef";
  assert_int_equal(handle_status(f, &rq), 200);
  j = expect(f, "GET", "/v1/bans", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "bans")), 1);
  json_decref(j);
}


/* ---- shadow policies ---------------------------------------------------- */

/* select on peerd.random and book:random: the same code as shadow must pick
 * the same ids from the same stream. */
static const char SELECT_RANDOM[] =
    "return { select = function(book, n)\n"
    "  local out, seen = {}, {}\n"
    "  for _ = 1, 4 * n do\n"
    "    local t = peerd.random() < 0.5 and 'new' or 'tried'\n"
    "    local id = book:random(t) or book:random('new')\n"
    "    if id and not seen[id] then seen[id] = true; out[#out + 1] = id end\n"
    "    if #out == n then break end\n"
    "  end\n"
    "  return out\nend }";
static const char PEX_REFUSE_1_2[] =
    "return { accept = function(addr, from) return addr.addr:sub(1, 4) ~= '1.2.' end }";

static char *dumps(json_t *j) {
  char *s = json_dumps(j, JSON_COMPACT | JSON_SORT_KEYS);
  assert_non_null(s);
  json_decref(j);
  return s;
}

/* A shadow set sees every decision on the same inputs and is only compared:
 * the live decisions (and the live RNG) are what they are without it; a
 * different pex.lua disagrees exactly where it differs, the same select.lua
 * agrees every time, a failing hook counts as errors; promote swaps. */
static void shadow_compares_and_promotes(void **state) {
  fx_t *f = *state;
  fx_t g_; /* the same node without a shadow */
  fx_t *g = &g_;
  memset(g, 0, sizeof *g);
  assert_int_equal(setup((void **)&g), 0);
  expect_error(f, "GET", "/v1/policy/shadow", NULL, 404, "--shadow-policies");
  expect_error(f, "POST", "/v1/policy/promote", "", 409, "no shadow policy set");
  assert_int_equal(pd_node_shadow_enable(f->node, "/etc/peerd/shadow"), 0);
  json_t *j = expect(f, "GET", "/v1/policy/shadow", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "loaded")));
  json_decref(j);
  expect_error(f, "POST", "/v1/policy/promote", "", 409, "has not loaded");
  must_load(f, "select.lua", SELECT_RANDOM);
  must_load(g, "select.lua", SELECT_RANDOM);
  pd_policy_file_t sh[3] = {{"select.lua", SELECT_RANDOM, strlen(SELECT_RANDOM)},
                            {"pex.lua", PEX_REFUSE_1_2, strlen(PEX_REFUSE_1_2)},
                            {"score.lua", "return { score = function(p) error('no score') end }",
                             0}};
  sh[2].len = strlen(sh[2].text);
  char err[512] = "";
  assert_int_equal(pd_node_shadow_load(f->node, sh, 3, f->now, err, sizeof err), 0);

  /* 30 gossiped addresses from one source, 10 of them in 1.2.0.0/16 */
  char body[2048] = "{\"source\":\"5.6.7.8\",\"addrs\":[";
  for (int i = 0; i < 30; i++) {
    char a[48];
    if (i % 3 == 0)
      snprintf(a, sizeof a, "%s\"1.2.%d.1:26656\"", i ? "," : "", i);
    else
      snprintf(a, sizeof a, "%s\"%d.%d.1.1:26656\"", i ? "," : "", 20 + i, 100 + i);
    strcat(body, a);
  }
  strcat(body, "]}");
  char *rf = dumps(expect(f, "POST", "/v1/book", body, 200));
  char *rg = dumps(expect(g, "POST", "/v1/book", body, 200));
  assert_string_equal(rf, rg); /* the live answers only */
  free(rf);
  free(rg);
  for (int i = 1; i <= 4; i++) {
    char a[48];
    if (i == 3) continue; /* a 1.2/16 one */
    snprintf(a, sizeof a, "%d.%d.1.1:26656", 20 + i, 100 + i);
    json_decref(event(f, a, "good", 200));
    json_decref(event(g, a, "good", 200));
  }
  for (int k = 0; k < 5; k++) {
    char *df = dumps(expect(f, "GET", "/v1/dial?n=4", NULL, 200));
    char *dg = dumps(expect(g, "GET", "/v1/dial?n=4", NULL, 200));
    assert_string_equal(df, dg); /* the shadow never moves the live RNG */
    free(df);
    free(dg);
  }

  j = expect(f, "GET", "/v1/policy/shadow", NULL, 200);
  assert_string_equal(jget_str(j, "dir"), "/etc/peerd/shadow");
  assert_true(json_is_true(json_object_get(j, "loaded")));
  assert_int_equal(jget_int(j, "generation"), 1);
  assert_int_equal(jget_int(j, "since"), f->now);
  assert_int_equal(json_array_size(json_object_get(j, "files")), 3);
  json_t *hooks = json_object_get(j, "hooks");
  json_t *pa = json_object_get(hooks, "pex_accept");
  assert_int_equal(jget_int(pa, "calls"), 30);
  assert_int_equal(jget_int(pa, "agreements"), 20);
  assert_int_equal(jget_int(pa, "disagreements"), 10);
  assert_int_equal(jget_int(pa, "errors"), 0);
  json_t *last = json_object_get(pa, "last_disagreements");
  assert_int_equal(json_array_size(last), PD_SHADOW_KEEP);
  json_t *d0 = json_array_get(last, 0); /* newest first: the last 1.2/16 address */
  assert_string_equal(jget_str(d0, "input"), "addr=1.2.27.1:26656 from=5.6.7.8");
  assert_string_equal(jget_str(d0, "live"), "true (default)");
  assert_string_equal(jget_str(d0, "shadow"), "false");
  assert_int_equal(jget_int(d0, "at"), f->now);
  json_t *sel = json_object_get(hooks, "select");
  assert_int_equal(jget_int(sel, "calls"), 5);
  assert_int_equal(jget_int(sel, "agreements"), 5);
  assert_int_equal(json_array_size(json_object_get(sel, "last_disagreements")), 0);
  json_t *sc = json_object_get(hooks, "score");
  json_int_t scalls = jget_int(sc, "calls");
  assert_true(scalls >= 10);
  assert_int_equal(jget_int(sc, "errors"), scalls);
  assert_int_equal(jget_int(sc, "agreements"), 0);
  assert_string_equal(jget_str(json_object_get(sc, "policy"), "state"), "tripped");
  json_t *rep = json_object_get(hooks, "reputation");
  assert_int_equal(jget_int(rep, "calls"), 3); /* both C defaults: agree */
  assert_int_equal(jget_int(rep, "agreements"), 3);
  json_t *sle = json_object_get(j, "last_error");
  assert_string_equal(jget_str(sle, "hook"), "score");
  assert_non_null(strstr(jget_str(sle, "error"), "no score"));
  json_decref(j);

  char *m = metrics_text(f);
  assert_true(sample(m, "peerd_policy_shadow_calls_total{hook=\"pex_accept\",result=\"agree\"}") == 20);
  assert_true(sample(m, "peerd_policy_shadow_calls_total{hook=\"pex_accept\",result=\"disagree\"}") == 10);
  assert_true(sample(m, "peerd_policy_shadow_calls_total{hook=\"select\",result=\"agree\"}") == 5);
  assert_true(sample(m, "peerd_policy_shadow_calls_total{hook=\"score\",result=\"error\"}") == (double)scalls);
  assert_true(sample(m, "peerd_policy_hook_tripped{hook=\"score\"}") == 0); /* the live one's */
  int prc = promtool_check(m);
  free(m);
  if (prc >= 0) assert_int_equal(prc, 0);
  j = expect(f, "GET", "/v1/status", NULL, 200);
  json_t *ss = json_object_get(json_object_get(j, "policy"), "shadow");
  assert_string_equal(jget_str(ss, "dir"), "/etc/peerd/shadow");
  assert_int_equal(jget_int(ss, "generation"), 1);
  json_decref(j);

  /* promote: the shadow set is live; its directory is the live one */
  f->now += 10;
  pd_api_request_t rq = {.method = "POST", .target = "/v1/policy/promote", .body = NULL,
                         .body_len = 0};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.action, PD_API_ACTION_PROMOTE);
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_true(json_is_true(json_object_get(j, "promoted")));
  assert_string_equal(jget_str(j, "dir"), "/etc/peerd/shadow");
  assert_int_equal(jget_int(j, "generation"), 2);
  json_decref(j);
  pd_api_response_free(&rs);
  assert_string_equal(pd_node_config(f->node)->policy_dir, "/etc/peerd/shadow");
  expect_error(f, "GET", "/v1/policy/shadow", NULL, 404, "no shadow policy set");
  expect_error(f, "POST", "/v1/policy/promote", "", 409, "no shadow policy set");
  j = expect(f, "GET", "/v1/status", NULL, 200);
  json_t *pol = json_object_get(j, "policy");
  assert_true(json_is_null(json_object_get(pol, "shadow")));
  assert_int_equal(jget_int(pol, "loaded_at"), f->now);
  assert_int_equal(json_array_size(json_object_get(pol, "files")), 3);
  assert_true(json_is_true(
      json_object_get(json_object_get(json_object_get(pol, "hooks"), "pex_accept"), "provided")));
  json_decref(j);
  j = expect(f, "POST", "/v1/book", "{\"source\":\"5.6.7.8\",\"addrs\":[\"1.2.99.1:26656\"]}", 200);
  assert_string_equal(jget_str(json_array_get(json_object_get(j, "rejected"), 0), "error"),
                      "refused by pex policy");
  json_decref(j);
  m = metrics_text(f);
  assert_true(sample(m, "peerd_policy_shadow_calls_total{hook=\"pex_accept\",result=\"disagree\"}") == 10);
  assert_true(sample(m, "peerd_policy_reloads_total{result=\"ok\"}") == 2);
  free(m);
  teardown((void **)&g);
}

/* ---- audit events and the event stream --------------------------------------- */

typedef struct ev_log {
  json_t *events;
} ev_log_t;

static void ev_record(void *ud, const pd_event_t *e) {
  ev_log_t *l = ud;
  json_array_append_new(l->events, pd_event_json(e, json_array_size(l->events) + 1, e->now_ms));
}

static json_t *last_event(ev_log_t *l, const char *kind) {
  for (size_t i = json_array_size(l->events); i > 0; i--) {
    json_t *e = json_array_get(l->events, i - 1);
    if (strcmp(jget_str(e, "kind"), kind) == 0) return e;
  }
  fail_msg("no %s event", kind);
  return NULL;
}

/* A stream request: access rules, then parameters; the driver keeps it. */
static void stream_request(fx_t *f, const char *target, const char *last_id, pd_api_response_t *rs) {
  pd_api_request_t rq = {.method = "GET", .target = target, .last_event_id = last_id};
  pd_api_handle(f->node, &rq, f->now, rs);
}

static void event_stream_requests(void **state) {
  fx_t *f = *state;
  pd_api_response_t rs;
  uint32_t kinds = 0;
  bool has_since = true;
  uint64_t since = 99;
  stream_request(f, "/v1/events/stream", NULL, &rs);
  assert_int_equal(rs.status, 200);
  assert_int_equal(rs.action, PD_API_ACTION_STREAM);
  assert_string_equal(rs.content_type, "text/event-stream");
  assert_string_equal(rs.route, "/v1/events/stream");
  assert_true(pd_api_stream_params(&rs, &kinds, &has_since, &since));
  assert_int_equal(kinds, PD_EVENT_ALL_KINDS);
  assert_false(has_since);
  uint64_t before = pd_metrics_requests(pd_node_metrics(f->node), 200);
  pd_api_complete(f->node, f->now, &rs); /* the driver keeps the stream: counted as 200 */
  assert_int_equal(rs.status, 200);
  assert_int_equal(pd_metrics_requests(pd_node_metrics(f->node), 200), before + 1);
  assert_false(pd_api_stream_params(&rs, NULL, NULL, NULL));
  pd_api_response_free(&rs);

  stream_request(f, "/v1/events/stream?kinds=ban,unban&since=5", NULL, &rs);
  assert_true(pd_api_stream_params(&rs, &kinds, &has_since, &since));
  assert_int_equal(kinds, (1u << PD_EV_BAN) | (1u << PD_EV_UNBAN));
  assert_true(has_since);
  assert_int_equal(since, 5);
  pd_api_response_free(&rs);
  /* Last-Event-ID (a reconnect) wins over ?since */
  stream_request(f, "/v1/events/stream?since=5", "17", &rs);
  assert_true(pd_api_stream_params(&rs, NULL, &has_since, &since));
  assert_int_equal(since, 17);
  pd_api_response_free(&rs);

  expect_error(f, "GET", "/v1/events/stream?kinds=ban,nope", NULL, 400, "unknown event kind in kinds: nope");
  expect_error(f, "GET", "/v1/events/stream?since=x", NULL, 400, "since");
  expect_error(f, "GET", "/v1/events/stream?limit=1", NULL, 400, "limit");
  json_decref(expect(f, "POST", "/v1/events/stream", "{}", 405));
  pd_api_request_t rq = {.method = "GET", .target = "/v1/events/stream", .last_event_id = "12a"};
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.status, 400);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  pd_api_response_free(&rs);
  /* the access rules apply as to any GET */
  pd_api_request_t deny = {.method = "GET", .target = "/v1/events/stream", .host = "evil.example"};
  pd_api_handle(f->node, &deny, f->now, &rs);
  assert_int_equal(rs.status, 403);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_null(rs.route);
  pd_api_response_free(&rs);
  pd_api_request_t tok = {.method = "GET", .target = "/v1/events/stream", .token = "0123456789abcdef"};
  pd_api_handle(f->node, &tok, f->now, &rs);
  assert_int_equal(rs.status, 401);
  pd_api_response_free(&rs);

  /* route labels: patterns, not raw paths */
  pd_api_request_t b = {.method = "GET", .target = "/v1/book/1.2.3.4:5"};
  pd_api_handle(f->node, &b, f->now, &rs);
  assert_string_equal(rs.route, "/v1/book/{addr}");
  pd_api_response_free(&rs);
  pd_api_request_t nf = {.method = "GET", .target = "/nothing"};
  pd_api_handle(f->node, &nf, f->now, &rs);
  assert_int_equal(rs.status, 404);
  assert_null(rs.route);
  pd_api_response_free(&rs);
}

static void audit_events_from_api_and_node(void **state) {
  fx_t *f = *state;
  ev_log_t l = {json_array()};
  pd_event_sink_t sink = {ev_record, &l};
  pd_node_set_events(f->node, &sink);
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"10.1.0.0/16\",\"reason\":\"scan\",\"duration\":60}", 200));
  json_t *e = last_event(&l, "ban");
  assert_string_equal(jget_str(e, "subnet"), "10.1.0.0/16");
  assert_string_equal(jget_str(e, "by"), "api");
  assert_string_equal(jget_str(e, "reason"), "scan");
  assert_int_equal(jget_int(e, "until"), f->now + 60);
  assert_int_equal(jget_int(e, "ts"), f->now * 1000);
  json_decref(expect(f, "DELETE", "/v1/bans?target=10.1.0.0/16", NULL, 200));
  e = last_event(&l, "unban");
  assert_string_equal(jget_str(e, "by"), "api");
  assert_string_equal(jget_str(e, "reason"), "scan");
  size_t n = json_array_size(l.events);
  json_decref(expect(f, "DELETE", "/v1/bans?target=10.1.0.0/16", NULL, 404)); /* nothing lifted */
  assert_int_equal(json_array_size(l.events), n);
  /* a ban that runs out is lifted by expiry, at the tick that drops it */
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"10.2.0.0/16\",\"duration\":10}", 200));
  pd_node_tick(f->node, f->now + 5);
  assert_int_equal(json_array_size(l.events), n + 1);
  pd_node_tick(f->node, f->now + 10);
  e = last_event(&l, "unban");
  assert_string_equal(jget_str(e, "subnet"), "10.2.0.0/16");
  assert_string_equal(jget_str(e, "by"), "expiry");
  pd_node_tick(f->node, f->now + 11);
  assert_int_equal(json_array_size(l.events), n + 2);
  /* the node reports misbehaviour: the built-in reputation rule bans */
  json_decref(expect(f, "POST", "/v1/events", "{\"addr\":\"8.8.8.8:26656\",\"event\":\"misbehaved\",\"reason\":\"spam\"}", 200));
  e = last_event(&l, "ban");
  assert_string_equal(jget_str(e, "subnet"), "8.8.8.8");
  assert_string_equal(jget_str(e, "by"), "reputation");
  assert_string_equal(jget_str(e, "trigger"), "node");
  assert_string_equal(jget_str(e, "event"), "misbehaved");
  assert_string_equal(jget_str(e, "reason"), "spam");
  /* policy loads and failures */
  pd_policy_file_t ok = {"score.lua", "return { score = function(p) return 1 end }", 42};
  ok.len = strlen(ok.text);
  char err[256];
  assert_int_equal(pd_node_policy_load_by(f->node, &ok, 1, "api", f->now, err, sizeof err), 0);
  e = last_event(&l, "policy_loaded");
  assert_int_equal(jget_int(e, "generation"), 1);
  assert_string_equal(jget_str(e, "files"), "score.lua");
  assert_string_equal(jget_str(e, "trigger"), "api");
  pd_policy_file_t bad = {"score.lua", "return {", 8};
  assert_true(pd_node_policy_load_by(f->node, &bad, 1, "SIGHUP", f->now, err, sizeof err) < 0);
  e = last_event(&l, "policy_failed");
  assert_non_null(strstr(jget_str(e, "error"), "score.lua"));
  assert_string_equal(jget_str(e, "trigger"), "SIGHUP");
  /* no sink: nothing is emitted */
  pd_node_set_events(f->node, NULL);
  n = json_array_size(l.events);
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"10.3.0.0/16\"}", 200));
  assert_int_equal(json_array_size(l.events), n);
  json_decref(l.events);
}

/* The driver's families: audit events by kind, streams, the latency histogram. */
static const char *const fk_kinds[] = {"connected", "ban"};
static const uint64_t fk_counts[] = {3, 1};
static const char *const fk_routes[] = {"/v1/status", NULL};
static const double fk_bounds[] = {0.001, 0.1};
static const uint64_t fk_buckets[] = {2, 3, 0, 1};
static const uint64_t fk_count[] = {3, 1};
static const double fk_sum[] = {0.05, 0.09};

static void fake_audit_counters(void *ud, pd_metrics_net_t *out) {
  (void)ud;
  out->nkinds = 2;
  out->kind_names = fk_kinds;
  out->kind_counts = fk_counts;
  out->event_streams = 2;
  out->event_streams_dropped = 1;
  out->api_nroutes = 2;
  out->api_nbounds = 2;
  out->api_routes = fk_routes;
  out->api_bounds = fk_bounds;
  out->api_buckets = fk_buckets;
  out->api_count = fk_count;
  out->api_sum = fk_sum;
}

static void audit_and_latency_metrics(void **state) {
  fx_t *f = *state;
  pd_node_net_ops_t ops = {.counters = fake_audit_counters};
  pd_node_set_net(f->node, &ops, NULL);
  char *m = metrics_text(f);
  pd_node_set_net(f->node, NULL, NULL);
  assert_true(sample(m, "peerd_audit_events_total{kind=\"connected\"}") == 3);
  assert_true(sample(m, "peerd_audit_events_total{kind=\"ban\"}") == 1);
  assert_true(sample(m, "peerd_event_streams") == 2);
  assert_true(sample(m, "peerd_event_streams_dropped_total") == 1);
  assert_non_null(strstr(m, "# TYPE peerd_api_request_seconds histogram\n"));
  assert_true(sample(m, "peerd_api_request_seconds_bucket{route=\"/v1/status\",le=\"0.001\"}") == 2);
  assert_true(sample(m, "peerd_api_request_seconds_bucket{route=\"/v1/status\",le=\"+Inf\"}") == 3);
  assert_true(sample(m, "peerd_api_request_seconds_count{route=\"other\"}") == 1);
  assert_true(sample(m, "peerd_api_request_seconds_sum{route=\"other\"}") == 0.09);
  int rc = promtool_check(m);
  free(m);
  if (rc < 0) skip();
  assert_int_equal(rc, 0);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(health_and_routing, setup, teardown),
      cmocka_unit_test_setup_teardown(self_record, setup, teardown),
      cmocka_unit_test_setup_teardown(access_rules, setup, teardown),
      cmocka_unit_test_setup_teardown(dial_service_endpoints, setup_private, teardown),
      cmocka_unit_test_setup_teardown(status_reports_node_state, setup, teardown),
      cmocka_unit_test_setup_teardown(book_post_adds_and_rejects, setup, teardown),
      cmocka_unit_test_setup_teardown(book_post_resolves_host_names, setup, teardown),
      cmocka_unit_test_setup_teardown(book_list_pages, setup, teardown),
      cmocka_unit_test_setup_teardown(book_get_explains, setup, teardown),
      cmocka_unit_test_setup_teardown(events_update_the_book, setup, teardown),
      cmocka_unit_test_setup_teardown(good_collision_resolved_by_tick, setup, teardown),
      cmocka_unit_test_setup_teardown(misbehaved_bans_and_dial_skips, setup, teardown),
      cmocka_unit_test_setup_teardown(bans_crud_and_expiry, setup, teardown),
      cmocka_unit_test_setup_teardown(save_action_and_complete, setup, teardown),
      cmocka_unit_test_setup_teardown(tick_schedules_saves, setup, teardown),
      cmocka_unit_test_setup_teardown(metrics_render_and_promtool, setup, teardown),
      cmocka_unit_test_setup_teardown(dial_through_select_policy, setup, teardown),
      cmocka_unit_test_setup_teardown(reputation_bans_after_three_misbehaviours, setup, teardown),
      cmocka_unit_test_setup_teardown(pex_accept_and_share, setup, teardown),
      cmocka_unit_test(pex_never_shares_private_peers),
      cmocka_unit_test_setup_teardown(policy_reload_action_and_status, setup, teardown),
      cmocka_unit_test_setup_teardown(policy_metrics_families, setup, teardown),
      cmocka_unit_test_setup_teardown(peers_and_network_metrics, setup, teardown),
      cmocka_unit_test_setup_teardown(shadow_compares_and_promotes, setup, teardown),
      cmocka_unit_test_setup_teardown(event_stream_requests, setup, teardown),
      cmocka_unit_test_setup_teardown(audit_events_from_api_and_node, setup, teardown),
      cmocka_unit_test_setup_teardown(audit_and_latency_metrics, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
