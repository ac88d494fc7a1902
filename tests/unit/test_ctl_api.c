/* Unit tests for the operator endpoints of the control API (api.c) and
 * node.c's protected set and policy check, through pd_api_handle with a
 * fake clock and a fake network view, no sockets: POST /v1/peers (connect),
 * DELETE /v1/peers/TARGET (disconnect), /v1/protected (and protection
 * against a new-table eviction the built-in rule would make), GET
 * /v1/explain/TARGET, GET /v1/book's filters, GET /v1/policy and POST
 * /v1/policy/check (the action, the scratch load, the live set untouched). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "api.h"
#include "err.h"

#define T0 1700000000
#define NODE_ID "0123456789abcdef0123456789abcdef01234567"

typedef struct fx {
  pd_rng_t rng;
  pd_node_t *node;
  int64_t now;
} fx_t;

static int setup_geo(void **state, uint32_t new_buckets) {
  fx_t *f = calloc(1, sizeof(*f));
  assert_non_null(f);
  pd_rng_seed(&f->rng, 99);
  uint8_t key[PD_BOOK_KEY_LEN] = {7};
  pd_book_t *book = NULL;
  pd_book_geometry_t g = {.new_buckets = new_buckets, .tried_buckets = 4};
  assert_int_equal(pd_book_create_ex(&book, key, &f->rng, 0, new_buckets ? &g : NULL), 0);
  pd_node_config_t cfg = {.allow_private = false, .save_interval = 300, .default_ban_secs = 3600};
  f->now = T0;
  assert_int_equal(pd_node_create(&f->node, &cfg, book, &f->rng, f->now), 0);
  *state = f;
  return 0;
}

static int setup(void **state) { return setup_geo(state, 0); }
static int setup_small(void **state) { return setup_geo(state, 16); }

static int teardown(void **state) {
  fx_t *f = *state;
  pd_node_destroy(f->node);
  free(f);
  return 0;
}

static json_t *call(fx_t *f, const char *method, const char *target, const char *body,
                    int *status) {
  pd_api_request_t rq = {.method = method, .target = target, .body = body,
                         .body_len = body ? strlen(body) : 0, .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  assert_int_equal(rs.action, PD_API_ACTION_NONE);
  assert_non_null(rs.body);
  json_error_t err;
  json_t *j = json_loadb(rs.body, rs.body_len, 0, &err);
  if (!j) fail_msg("response is not JSON: %s (%s)", rs.body, err.text);
  if (rs.status >= 400) assert_true(json_is_string(json_object_get(j, "error")));
  *status = rs.status;
  pd_api_response_free(&rs);
  return j;
}

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

static void expect_error(fx_t *f, const char *method, const char *target, const char *body,
                         int want, const char *needle) {
  json_t *j = expect(f, method, target, body, want);
  const char *msg = json_string_value(json_object_get(j, "error"));
  if (!strstr(msg, needle)) fail_msg("error \"%s\" lacks \"%s\"", msg, needle);
  json_decref(j);
}

static const char *jstr_of(json_t *o, const char *key) {
  json_t *v = json_object_get(o, key);
  if (!json_is_string(v)) fail_msg("field %s is not a string", key);
  return json_string_value(v);
}

/* Does the array of strings `key` hold one containing needle? */
static bool has_reason(json_t *o, const char *needle) {
  json_t *arr = json_object_get(o, "reasons"), *v;
  size_t i;
  json_array_foreach(arr, i, v) {
    if (strstr(json_string_value(v), needle)) return true;
  }
  return false;
}

/* ---- a fake network view ------------------------------------------------ */

typedef struct fake_net {
  int connects, disconnects;
  int connect_rc;
  size_t disconnect_n;
  pd_netaddr_t last_addr;
  bool last_any_port, last_had_id;
  pd_node_dial_state_t state;
} fake_net_t;

static size_t fake_peers(void *ud, int64_t now, pd_node_peer_info_t *out, size_t cap) {
  (void)ud;
  (void)now;
  (void)out;
  (void)cap;
  return 0;
}

static size_t fake_disconnect(void *ud, const pd_netaddr_t *addr, bool any_port, const uint8_t *id,
                              int64_t now, pd_node_closed_t *out, size_t cap) {
  fake_net_t *fn = ud;
  (void)now;
  fn->disconnects++;
  if (addr) fn->last_addr = *addr;
  fn->last_any_port = any_port;
  fn->last_had_id = id != NULL;
  for (size_t i = 0; i < fn->disconnect_n && i < cap; i++) {
    memset(&out[i], 0, sizeof out[i]);
    snprintf(out[i].addr, sizeof out[i].addr, "1.2.3.4:%zu", 1000 + i);
    if (id) snprintf(out[i].id, sizeof out[i].id, "%s", NODE_ID);
    out[i].direction = "inbound";
  }
  return fn->disconnect_n;
}

static int fake_connect(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                        const char **why) {
  fake_net_t *fn = ud;
  (void)now;
  fn->connects++;
  fn->last_addr = *addr;
  fn->last_had_id = id != NULL;
  if (fn->connect_rc < 0) *why = "already connected";
  return fn->connect_rc;
}

static void fake_dial_state(void *ud, const pd_netaddr_t *addr, const uint8_t *id, int64_t now,
                            pd_node_dial_state_t *out) {
  fake_net_t *fn = ud;
  (void)addr;
  (void)id;
  (void)now;
  *out = fn->state;
}

static void install_fake(fx_t *f, fake_net_t *fn) {
  pd_node_net_ops_t ops = {.peers = fake_peers, .disconnect = fake_disconnect,
                           .connect = fake_connect, .dial_state = fake_dial_state};
  pd_node_set_net(f->node, &ops, fn);
}

/* ---- tests -------------------------------------------------------------- */

static void connect_and_disconnect(void **state) {
  fx_t *f = *state;
  /* no network view: 503 (after the body is checked) */
  expect_error(f, "POST", "/v1/peers", "{\"addr\":\"1.2.3.4:26656\"}", 503, "no overlay");
  expect_error(f, "DELETE", "/v1/peers/1.2.3.4:26656", NULL, 503, "no overlay");
  expect_error(f, "POST", "/v1/peers", "{}", 400, "missing field: addr");
  fake_net_t fn = {.disconnect_n = 1};
  install_fake(f, &fn);
  json_t *j = expect(f, "POST", "/v1/peers", "{\"addr\":\"" NODE_ID "@1.2.3.4:26656\"}", 200);
  assert_string_equal(jstr_of(j, "dialling"), "1.2.3.4:26656");
  assert_string_equal(jstr_of(j, "id"), NODE_ID);
  json_decref(j);
  assert_int_equal(fn.connects, 1);
  assert_true(fn.last_had_id);
  assert_int_equal(fn.last_addr.port, 26656);
  /* the book's acceptability rules: no private address without --allow-private */
  expect_error(f, "POST", "/v1/peers", "{\"addr\":\"10.0.0.1:26656\"}", 400, "addr");
  expect_error(f, "POST", "/v1/peers", "{\"addr\":\"host.example:1\"}", 400, "resolved");
  expect_error(f, "POST", "/v1/peers", "{\"addr\":\"1.2.3.4\"}", 400, "port");
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"5.6.0.0/16\"}", 200));
  j = expect(f, "POST", "/v1/peers", "{\"addr\":\"5.6.7.8:1\"}", 409);
  assert_string_equal(jstr_of(j, "error"), "banned");
  assert_true(json_is_object(json_object_get(j, "ban")));
  json_decref(j);
  assert_int_equal(fn.connects, 1); /* refused before the driver was asked */
  fn.connect_rc = PD_EEXIST;
  expect_error(f, "POST", "/v1/peers", "{\"addr\":\"1.2.3.5:1\"}", 409, "already connected");

  j = expect(f, "DELETE", "/v1/peers/" NODE_ID, NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "count")), 1);
  json_t *c0 = json_array_get(json_object_get(j, "closed"), 0);
  assert_string_equal(jstr_of(c0, "id"), NODE_ID);
  assert_string_equal(jstr_of(c0, "direction"), "inbound");
  json_decref(j);
  assert_true(fn.last_had_id);
  json_decref(expect(f, "DELETE", "/v1/peers/1.2.3.4", NULL, 200));
  assert_true(fn.last_any_port); /* a bare IP: every connection of that IP */
  json_decref(expect(f, "DELETE", "/v1/peers/%5B2a01%3A4f8%3A%3A1%5D%3A26656", NULL, 200));
  assert_false(fn.last_any_port);
  assert_int_equal(fn.last_addr.port, 26656);
  fn.disconnect_n = 0;
  j = expect(f, "DELETE", "/v1/peers/1.2.3.4:9", NULL, 404);
  assert_string_equal(jstr_of(j, "target"), "1.2.3.4:9");
  json_decref(j);
  expect_error(f, "DELETE", "/v1/peers/nonsense", NULL, 400, "bad target");
  expect_error(f, "GET", "/v1/peers/1.2.3.4:1", NULL, 405, "not allowed");
  pd_node_set_net(f->node, NULL, NULL);
}

static void protect_list_and_errors(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "GET", "/v1/protected", NULL, 200);
  assert_int_equal(json_array_size(json_object_get(j, "protected")), 0);
  json_decref(j);
  j = expect(f, "POST", "/v1/protected", "{\"target\":\"" NODE_ID "\"}", 200);
  assert_string_equal(jstr_of(j, "protected"), NODE_ID);
  assert_true(json_is_true(json_object_get(j, "added")));
  json_decref(j);
  j = expect(f, "POST", "/v1/protected", "{\"target\":\"" NODE_ID "\"}", 200);
  assert_true(json_is_false(json_object_get(j, "added")));
  json_decref(j);
  json_decref(expect(f, "POST", "/v1/protected", "{\"target\":\"1.2.3.4:26656\"}", 200));
  json_decref(expect(f, "POST", "/v1/protected", "{\"target\":\"9.9.9.9\"}", 200));
  expect_error(f, "POST", "/v1/protected", "{\"target\":\"x\"}", 400, "target");
  expect_error(f, "POST", "/v1/protected", "{\"target\":7}", 400, "string");
  j = expect(f, "GET", "/v1/protected", NULL, 200);
  json_t *arr = json_object_get(j, "protected");
  assert_int_equal(json_array_size(arr), 3);
  assert_string_equal(jstr_of(json_array_get(arr, 0), "id"), NODE_ID);
  assert_true(json_is_null(json_object_get(json_array_get(arr, 0), "addr")));
  assert_string_equal(jstr_of(json_array_get(arr, 1), "addr"), "1.2.3.4:26656");
  assert_string_equal(jstr_of(json_array_get(arr, 2), "target"), "9.9.9.9");
  assert_int_equal(json_integer_value(json_object_get(json_array_get(arr, 2), "since")), T0);
  json_decref(j);

  uint8_t id[PD_NODE_ID_LEN];
  assert_int_equal(pd_node_id_parse(NODE_ID, 40, id), 0);
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse_ip("9.9.9.9", &a, NULL), 0);
  a.port = 4;
  assert_true(pd_node_is_protected(f->node, &a, NULL)); /* any port */
  assert_true(pd_node_is_protected(f->node, NULL, id));
  assert_int_equal(pd_netaddr_parse_ip("1.2.3.4", &a, NULL), 0);
  a.port = 26657;
  assert_false(pd_node_is_protected(f->node, &a, NULL)); /* that port only */

  j = expect(f, "DELETE", "/v1/protected/9.9.9.9", NULL, 200);
  assert_string_equal(jstr_of(j, "unprotected"), "9.9.9.9");
  json_decref(j);
  expect_error(f, "DELETE", "/v1/protected/9.9.9.9", NULL, 404, "not protected");
  expect_error(f, "DELETE", "/v1/protected/9.9.9.9:1", NULL, 404, "not protected");
  /* the table is bounded */
  for (int i = 0; i < PD_NODE_MAX_PROTECTED; i++) {
    char body[64];
    snprintf(body, sizeof body, "{\"target\":\"7.7.%d.%d\"}", i / 250, i % 250 + 1);
    int st = 0;
    json_decref(call(f, "POST", "/v1/protected", body, &st));
    assert_true(st == 200 || st == 409);
  }
  expect_error(f, "POST", "/v1/protected", "{\"target\":\"8.8.8.8\"}", 409, "too many");
}

/* The built-in rule evicts a terrible incumbent from its new-table slot;
 * protected, it stays. A 16-bucket book puts every address from one source
 * in one bucket, so a colliding address is found in a few hundred tries (a
 * probe book with the same key tells where each would go). */
static void protect_holds_against_book_eviction(void **state) {
  fx_t *f = *state;
  pd_book_t *book = pd_node_book(f->node);
  pd_netaddr_t src, a, b;
  assert_int_equal(pd_netaddr_parse_ip("5.5.5.5", &src, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("44.1.1.1", &a, NULL), 0);
  a.port = 26656;
  /* from the future: terrible at once */
  assert_int_equal(pd_book_add(book, &a, NULL, f->now + 7200, &src, 0, f->now, NULL), 1);
  pd_book_info_t ia;
  assert_int_equal(pd_book_info(book, pd_book_find(book, &a), &ia), 0);
  assert_true(pd_book_is_terrible(book, ia.id, f->now));

  pd_rng_t prng;
  pd_rng_seed(&prng, 5);
  uint8_t key[PD_BOOK_KEY_LEN] = {7};
  pd_book_geometry_t g = {.new_buckets = 16, .tried_buckets = 4};
  pd_book_t *probe = NULL;
  assert_int_equal(pd_book_create_ex(&probe, key, &prng, 0, &g), 0);
  bool found = false;
  for (int i = 0; i < 4000 && !found; i++) {
    char ip[32];
    snprintf(ip, sizeof ip, "45.%d.%d.1", i / 200, i % 200);
    assert_int_equal(pd_netaddr_parse_ip(ip, &b, NULL), 0);
    b.port = 26656;
    if (pd_book_add(probe, &b, NULL, f->now, &src, 0, f->now, NULL) != 1) continue;
    pd_book_info_t ib;
    assert_int_equal(pd_book_info(probe, pd_book_find(probe, &b), &ib), 0);
    found = ib.bucket == ia.bucket && ib.position == ia.position;
  }
  pd_book_destroy(probe);
  assert_true(found);

  json_decref(expect(f, "POST", "/v1/protected", "{\"target\":\"44.1.1.1:26656\"}", 200));
  pd_book_add(book, &b, NULL, f->now, &src, 0, f->now, NULL);
  assert_int_not_equal(pd_book_find(book, &a), PD_BOOK_NO_ID); /* kept */
  pd_book_info_t now_a;
  assert_int_equal(pd_book_info(book, pd_book_find(book, &a), &now_a), 0);
  assert_int_equal(now_a.bucket, ia.bucket);
  assert_int_equal(now_a.position, ia.position);
  /* unprotected, the same add evicts it (the test can fail) */
  json_decref(expect(f, "DELETE", "/v1/protected/44.1.1.1:26656", NULL, 200));
  pd_book_add(book, &b, NULL, f->now, &src, 0, f->now, NULL);
  assert_int_equal(pd_book_find(book, &a), PD_BOOK_NO_ID);
}

static void explain_fields_and_reasons(void **state) {
  fx_t *f = *state;
  /* as the overlay learns them (POST /v1/book's are the node's: service-only) */
  pd_netaddr_t a, b, src;
  uint8_t id[PD_NODE_ID_LEN];
  assert_int_equal(pd_node_id_parse(NODE_ID, 40, id), 0);
  assert_int_equal(pd_netaddr_parse_ip("1.2.3.4", &a, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("6.6.6.6", &b, NULL), 0);
  assert_int_equal(pd_netaddr_parse_ip("5.6.7.8", &src, NULL), 0);
  a.port = 26656;
  b.port = 1;
  pd_book_t *book = pd_node_book(f->node);
  assert_int_equal(pd_book_add(book, &a, id, f->now, &src, 0, f->now, NULL), 1);
  assert_int_equal(pd_book_add(book, &b, NULL, f->now, &src, 0, f->now, NULL), 1);
  json_t *j = expect(f, "GET", "/v1/explain/1.2.3.4:26656", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "service_only")));
  assert_true(json_is_true(json_object_get(j, "in_book")));
  assert_string_equal(jstr_of(j, "table"), "new");
  assert_string_equal(jstr_of(j, "id"), NODE_ID);
  assert_string_equal(jstr_of(j, "source"), "5.6.7.8");
  assert_true(json_is_integer(json_object_get(j, "bucket")));
  assert_true(json_is_integer(json_object_get(j, "position")));
  assert_int_equal(json_array_size(json_object_get(j, "refs")), 1);
  assert_true(json_is_integer(json_object_get(j, "attempts")));
  assert_true(json_is_number(json_object_get(j, "chance")));
  assert_true(json_is_false(json_object_get(j, "terrible")));
  assert_true(json_is_number(json_object_get(j, "score")));
  assert_true(json_is_object(json_object_get(j, "reputation")));
  assert_true(json_is_false(json_object_get(j, "protected")));
  assert_true(json_is_null(json_object_get(j, "connection")));
  assert_true(json_is_false(json_object_get(j, "selectable")));
  assert_true(has_reason(j, "no overlay network"));
  json_decref(j);
  /* by node id: the same entry */
  j = expect(f, "GET", "/v1/explain/" NODE_ID, NULL, 200);
  assert_string_equal(jstr_of(j, "addr"), "1.2.3.4:26656");
  json_decref(j);

  fake_net_t fn = {.state = {.outbound = 1, .max_outbound = 8}};
  install_fake(f, &fn);
  j = expect(f, "GET", "/v1/explain/1.2.3.4:26656", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "selectable")));
  assert_true(has_reason(j, "eligible"));
  json_t *cn = json_object_get(j, "connection");
  assert_true(json_is_false(json_object_get(cn, "connected")));
  assert_true(json_is_null(json_object_get(cn, "backoff_until")));
  json_decref(j);
  fn.state.connected = true;
  fn.state.direction = "outbound";
  fn.state.backoff_until = f->now + 60;
  fn.state.failures = 3;
  json_decref(expect(f, "POST", "/v1/protected", "{\"target\":\"" NODE_ID "\"}", 200));
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"1.2.3.4\",\"reason\":\"lab\"}", 200));
  j = expect(f, "GET", "/v1/explain/1.2.3.4:26656", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "selectable")));
  assert_true(has_reason(j, "already connected (outbound)"));
  assert_true(has_reason(j, "in backoff until"));
  assert_true(has_reason(j, "banned (1.2.3.4)"));
  assert_true(json_is_true(json_object_get(j, "banned")));
  assert_true(json_is_true(json_object_get(j, "protected")));
  assert_true(json_is_false(json_object_get(j, "handed_to_node")));
  assert_int_equal(json_integer_value(json_object_get(json_object_get(j, "connection"), "failures")), 3);
  json_decref(j);
  fn.state = (pd_node_dial_state_t){.dialling_off = true};
  j = expect(f, "GET", "/v1/explain/6.6.6.6:1", NULL, 200);
  assert_true(has_reason(j, "dialling is off"));
  json_decref(j);
  pd_node_set_net(f->node, NULL, NULL);

  /* a node-given address is service-only */
  json_decref(expect(f, "POST", "/v1/book", "{\"addrs\":[\"7.7.7.7:26656\"]}", 200));
  j = expect(f, "GET", "/v1/explain/7.7.7.7:26656", NULL, 200);
  assert_true(json_is_true(json_object_get(j, "service_only")));
  assert_true(has_reason(j, "service endpoint"));
  assert_true(json_is_true(json_object_get(j, "handed_to_node")));
  json_decref(j);
  /* not in the book: still explained */
  j = expect(f, "GET", "/v1/explain/9.9.9.9:1", NULL, 200);
  assert_true(json_is_false(json_object_get(j, "in_book")));
  assert_true(json_is_null(json_object_get(j, "table")));
  assert_true(has_reason(j, "not in the book"));
  json_decref(j);
  expect_error(f, "GET", "/v1/explain/abcdefabcdefabcdefabcdefabcdefabcdefabcd", NULL, 404,
               "no book entry");
  expect_error(f, "GET", "/v1/explain/1.2.3.4", NULL, 400, "IP:PORT");
  expect_error(f, "GET", "/v1/explain/nope", NULL, 400, "bad target");
}

static int64_t total_of(fx_t *f, const char *target) {
  json_t *j = expect(f, "GET", target, NULL, 200);
  int64_t n = json_integer_value(json_object_get(j, "total"));
  assert_int_equal(json_array_size(json_object_get(j, "entries")) <= (size_t)n, 1);
  json_decref(j);
  return n;
}

static void book_filters(void **state) {
  fx_t *f = *state;
  json_decref(expect(f, "POST", "/v1/book",
                     "{\"addrs\":[\"1.2.3.4:1\",\"1.2.9.9:1\",\"3.3.3.3:1\"],\"source\":\"5.6.7.8\"}", 200));
  json_decref(expect(f, "POST", "/v1/book", "{\"addrs\":[\"4.4.4.4:1\"],\"source\":\"9.8.7.6\"}", 200));
  assert_int_equal(total_of(f, "/v1/book"), 4);
  assert_int_equal(total_of(f, "/v1/book?source=5.6.7.8"), 3);
  assert_int_equal(total_of(f, "/v1/book?source=9.8.7.6"), 1);
  assert_int_equal(total_of(f, "/v1/book?group=1.2.0.1"), 2);
  assert_int_equal(total_of(f, "/v1/book?group=010102"), 2);
  assert_int_equal(total_of(f, "/v1/book?banned=true"), 0);
  json_decref(expect(f, "POST", "/v1/bans", "{\"target\":\"3.3.3.0/24\"}", 200));
  assert_int_equal(total_of(f, "/v1/book?banned=true"), 1);
  assert_int_equal(total_of(f, "/v1/book?banned=false&source=5.6.7.8"), 2);
  /* built-in score: a new entry never tried scores 0; banned -1000 */
  assert_int_equal(total_of(f, "/v1/book?min_score=-1"), 3);
  assert_int_equal(total_of(f, "/v1/book?min_score=0.5"), 0);
  json_t *j = expect(f, "GET", "/v1/book?min_score=-2000&limit=2&offset=1", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "total")), 4);
  json_t *ents = json_object_get(j, "entries");
  assert_int_equal(json_array_size(ents), 2);
  assert_true(json_is_number(json_object_get(json_array_get(ents, 0), "score")));
  json_decref(j);
  assert_int_equal(total_of(f, "/v1/book?table=tried&source=5.6.7.8"), 0);
  expect_error(f, "GET", "/v1/book?banned=maybe", NULL, 400, "banned");
  expect_error(f, "GET", "/v1/book?source=x", NULL, 400, "source");
  expect_error(f, "GET", "/v1/book?group=zz", NULL, 400, "group");
  expect_error(f, "GET", "/v1/book?min_score=abc", NULL, 400, "min_score");
  expect_error(f, "GET", "/v1/book?min_score=1e999", NULL, 400, "min_score");
}

static pd_api_response_t check_request(fx_t *f, const char *body) {
  pd_api_request_t rq = {.method = "POST", .target = "/v1/policy/check", .body = body,
                         .body_len = strlen(body), .content_type = "application/json"};
  pd_api_response_t rs;
  pd_api_handle(f->node, &rq, f->now, &rs);
  return rs;
}

static void policy_status_and_check(void **state) {
  fx_t *f = *state;
  json_t *j = expect(f, "GET", "/v1/policy", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "generation")), 0);
  json_decref(j);
  expect_error(f, "POST", "/v1/policy/check", "{}", 400, "missing field: dir");
  expect_error(f, "POST", "/v1/policy/check", "{\"dir\":\"\"}", 400, "empty");

  pd_api_response_t rs = check_request(f, "{\"dir\":\"/x/policies\"}");
  assert_int_equal(rs.action, PD_API_ACTION_CHECK);
  assert_string_equal(pd_api_pending_dir(&rs), "/x/policies");
  static const char good[] = "return { score = function(p) return 1 end }";
  static const char bad[] = "return { select = function(book, n) return end";
  pd_policy_file_t files[2] = {{.name = "score.lua", .text = good, .len = sizeof good - 1},
                               {.name = "select.lua", .text = bad, .len = sizeof bad - 1}};
  pd_api_policy_checked(f->node, &rs, files, 2, NULL, f->now);
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.status, 200);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_non_null(j);
  assert_true(json_is_false(json_object_get(j, "ok")));
  json_t *fl = json_object_get(j, "files");
  assert_int_equal(json_array_size(fl), 2);
  assert_true(json_is_true(json_object_get(json_array_get(fl, 0), "ok")));
  assert_string_equal(json_string_value(json_array_get(json_object_get(json_array_get(fl, 0), "hooks"), 0)),
                      "score");
  assert_true(json_is_false(json_object_get(json_array_get(fl, 1), "ok")));
  assert_non_null(strstr(jstr_of(json_array_get(fl, 1), "error"), "select.lua"));
  json_decref(j);
  pd_api_response_free(&rs);

  /* every file good: the set loads, with a hash; the live set is untouched */
  rs = check_request(f, "{\"dir\":\"p\"}");
  pd_api_policy_checked(f->node, &rs, files, 1, NULL, f->now);
  pd_api_complete(f->node, f->now, &rs);
  j = json_loadb(rs.body, rs.body_len, 0, NULL);
  assert_true(json_is_true(json_object_get(j, "ok")));
  assert_int_equal(strlen(jstr_of(j, "hash")), 64);
  json_decref(j);
  pd_api_response_free(&rs);
  j = expect(f, "GET", "/v1/policy", NULL, 200);
  assert_int_equal(json_integer_value(json_object_get(j, "generation")), 0);
  assert_true(json_is_null(json_object_get(j, "last_error")));
  json_decref(j);

  /* an unreadable directory: 422 */
  rs = check_request(f, "{\"dir\":\"/nope\"}");
  pd_api_policy_checked(f->node, &rs, NULL, 0, "policy directory /nope: No such file", f->now);
  pd_api_complete(f->node, f->now, &rs);
  assert_int_equal(rs.status, 422);
  pd_api_response_free(&rs);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test_setup_teardown(connect_and_disconnect, setup, teardown),
      cmocka_unit_test_setup_teardown(protect_list_and_errors, setup, teardown),
      cmocka_unit_test_setup_teardown(protect_holds_against_book_eviction, setup_small, teardown),
      cmocka_unit_test_setup_teardown(explain_fields_and_reasons, setup, teardown),
      cmocka_unit_test_setup_teardown(book_filters, setup, teardown),
      cmocka_unit_test_setup_teardown(policy_status_and_check, setup, teardown),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
