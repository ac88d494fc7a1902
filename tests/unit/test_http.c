/* Unit tests for http: split reads, pipelining, limits, malformed input,
 * chunked bodies, keep-alive, Expect: 100-continue, response heads. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include "err.h"
#include "http.h"

#define MAX_BODY (1024 * 1024)

static pd_http_t *mk(void) {
  pd_http_t *h = NULL;
  assert_int_equal(pd_http_create(&h, 0, MAX_BODY), 0);
  assert_non_null(h);
  return h;
}

static void feed_str(pd_http_t *h, const char *s) {
  assert_int_equal(pd_http_feed(h, s, strlen(s)), 0);
}

static void simple_get(void **state) {
  (void)state;
  pd_http_t *h = mk();
  assert_int_equal(pd_http_next(h), 0);
  assert_null(pd_http_request(h));
  feed_str(h, "GET /v1/status?x=1 HTTP/1.1\r\nHost: a\r\n\r\n");
  assert_int_equal(pd_http_next(h), 1);
  const pd_http_request_t *r = pd_http_request(h);
  assert_non_null(r);
  assert_string_equal(r->method, "GET");
  assert_string_equal(r->target, "/v1/status?x=1");
  assert_int_equal(r->target_len, 14);
  assert_int_equal(r->body_len, 0);
  assert_string_equal(r->body, "");
  assert_true(r->keep_alive);
  assert_int_equal(r->http_major, 1);
  assert_int_equal(r->http_minor, 1);
  assert_false(pd_http_busy(h));
  assert_int_equal(pd_http_next(h), 0);
  assert_null(pd_http_request(h));
  pd_http_destroy(h);
}

/* Every byte in its own read: nothing is ready until the last byte. */
static void split_reads_byte_by_byte(void **state) {
  (void)state;
  const char *msg = "POST /v1/book HTTP/1.1\r\nHost: x\r\nContent-Type: application/json\r\n"
                    "Content-Length: 16\r\n\r\n{\"addrs\":[\"a\"]}\n";
  size_t n = strlen(msg);
  pd_http_t *h = mk();
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(pd_http_feed(h, msg + i, 1), 0);
    int rc = pd_http_next(h);
    if (i + 1 < n) {
      assert_int_equal(rc, 0);
      assert_true(pd_http_busy(h));
    } else {
      assert_int_equal(rc, 1);
    }
  }
  const pd_http_request_t *r = pd_http_request(h);
  assert_string_equal(r->method, "POST");
  assert_string_equal(r->target, "/v1/book");
  assert_int_equal(r->body_len, 16);
  assert_memory_equal(r->body, "{\"addrs\":[\"a\"]}\n", 16);
  assert_int_equal(r->body[16], 0);
  pd_http_destroy(h);
}

/* Split at every possible point into two reads. */
static void split_reads_every_point(void **state) {
  (void)state;
  const char *msg = "DELETE /v1/bans/1.2.3.0%2F24 HTTP/1.1\r\nContent-Length: 3\r\n\r\nabc";
  size_t n = strlen(msg);
  for (size_t cut = 0; cut <= n; cut++) {
    pd_http_t *h = mk();
    assert_int_equal(pd_http_feed(h, msg, cut), 0);
    int rc = pd_http_next(h);
    assert_int_equal(rc, cut == n ? 1 : 0);
    if (cut < n) {
      assert_int_equal(pd_http_feed(h, msg + cut, n - cut), 0);
      assert_int_equal(pd_http_next(h), 1);
    }
    const pd_http_request_t *r = pd_http_request(h);
    assert_string_equal(r->method, "DELETE");
    assert_string_equal(r->target, "/v1/bans/1.2.3.0%2F24");
    assert_int_equal(r->body_len, 3);
    assert_memory_equal(r->body, "abc", 3);
    pd_http_destroy(h);
  }
}

static void pipelined_requests(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "GET /a HTTP/1.1\r\n\r\n"
              "POST /b HTTP/1.1\r\nContent-Length: 5\r\n\r\nhello"
              "GET /c HTTP/1.1\r\nConnection: close\r\n\r\n"
              "GET /d HTTP/1.1\r\n");
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/a");
  assert_true(pd_http_pending(h) > 0);
  /* the request stays valid until the next call */
  assert_string_equal(pd_http_request(h)->target, "/a");
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/b");
  assert_string_equal(pd_http_request(h)->method, "POST");
  assert_int_equal(pd_http_request(h)->body_len, 5);
  assert_memory_equal(pd_http_request(h)->body, "hello", 5);
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/c");
  assert_false(pd_http_request(h)->keep_alive);
  /* the fourth is incomplete */
  assert_int_equal(pd_http_next(h), 0);
  assert_true(pd_http_busy(h));
  feed_str(h, "\r\n");
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/d");
  assert_int_equal(pd_http_next(h), 0);
  assert_false(pd_http_busy(h));
  pd_http_destroy(h);
}

/* Bytes fed while a request is held are kept for later. */
static void feed_while_request_held(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "GET /1 HTTP/1.1\r\n\r\n");
  assert_int_equal(pd_http_next(h), 1);
  feed_str(h, "GET /2 HTTP/1.1\r\n\r\n");
  assert_string_equal(pd_http_request(h)->target, "/1");
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/2");
  assert_int_equal(pd_http_next(h), 0);
  pd_http_destroy(h);
}

static void oversize_header(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "GET / HTTP/1.1\r\nX-Big: ");
  assert_int_equal(pd_http_next(h), 0);
  char chunk[1024];
  memset(chunk, 'a', sizeof chunk);
  int rc = 0;
  for (int i = 0; i < 32 && rc == 0; i++) {
    assert_int_equal(pd_http_feed(h, chunk, sizeof chunk), 0);
    rc = pd_http_next(h);
  }
  assert_int_equal(rc, PD_ETOOBIG);
  assert_int_equal(pd_http_error_status(h), 431);
  assert_non_null(strstr(pd_http_error_message(h), "header"));
  /* sticky */
  assert_int_equal(pd_http_next(h), PD_ETOOBIG);
  assert_int_equal(pd_http_feed(h, "x", 1), PD_ETOOBIG);
  pd_http_destroy(h);
}

static void many_headers_over_limit(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "GET / HTTP/1.1\r\n");
  int rc = 0;
  char line[64];
  for (int i = 0; i < 2000 && rc == 0; i++) {
    snprintf(line, sizeof line, "X-H%d: v\r\n", i);
    feed_str(h, line);
    rc = pd_http_next(h);
  }
  assert_int_equal(rc, PD_ETOOBIG);
  assert_int_equal(pd_http_error_status(h), 431);
  pd_http_destroy(h);
}

static void long_target_over_limit(void **state) {
  (void)state;
  pd_http_t *h = mk();
  size_t n = 20000;
  char *req = malloc(n + 64);
  assert_non_null(req);
  memcpy(req, "GET /", 5);
  memset(req + 5, 'x', n);
  strcpy(req + 5 + n, " HTTP/1.1\r\n\r\n");
  feed_str(h, req);
  assert_true(pd_http_next(h) < 0);
  assert_int_equal(pd_http_error_status(h), 431);
  free(req);
  pd_http_destroy(h);
}

/* Header just under the limit is fine. */
static void header_near_limit_ok(void **state) {
  (void)state;
  pd_http_t *h = mk();
  char *req = malloc(PD_HTTP_MAX_HEADER + 64);
  assert_non_null(req);
  int off = sprintf(req, "GET / HTTP/1.1\r\nX: ");
  memset(req + off, 'v', 15000);
  strcpy(req + off + 15000, "\r\n\r\n");
  feed_str(h, req);
  assert_int_equal(pd_http_next(h), 1);
  free(req);
  pd_http_destroy(h);
}

/* 413 is decided from Content-Length, before the body arrives. */
static void oversize_body_content_length(void **state) {
  (void)state;
  pd_http_t *h = mk();
  char req[128];
  snprintf(req, sizeof req, "POST /v1/book HTTP/1.1\r\nContent-Length: %d\r\n\r\n", MAX_BODY + 1);
  feed_str(h, req);
  assert_int_equal(pd_http_next(h), PD_ETOOBIG);
  assert_int_equal(pd_http_error_status(h), 413);
  pd_http_destroy(h);
}

static void body_at_limit_ok(void **state) {
  (void)state;
  pd_http_t *h = NULL;
  assert_int_equal(pd_http_create(&h, 0, 100), 0);
  char req[256];
  int off = snprintf(req, sizeof req, "POST / HTTP/1.1\r\nContent-Length: 100\r\n\r\n");
  memset(req + off, 'b', 100);
  assert_int_equal(pd_http_feed(h, req, (size_t)off + 100), 0);
  assert_int_equal(pd_http_next(h), 1);
  assert_int_equal(pd_http_request(h)->body_len, 100);
  pd_http_destroy(h);

  assert_int_equal(pd_http_create(&h, 0, 100), 0);
  feed_str(h, "POST / HTTP/1.1\r\nContent-Length: 101\r\n\r\n");
  assert_int_equal(pd_http_next(h), PD_ETOOBIG);
  assert_int_equal(pd_http_error_status(h), 413);
  pd_http_destroy(h);
}

static void chunked_body(void **state) {
  (void)state;
  pd_http_t *h = mk();
  const char *msg = "POST /v1/events HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n"
                    "5\r\nhello\r\n"
                    "7\r\n, world\r\n"
                    "0\r\n\r\n"
                    "GET /next HTTP/1.1\r\n\r\n";
  size_t n = strlen(msg);
  /* in pieces of 3 bytes */
  int got = 0;
  for (size_t i = 0; i < n; i += 3) {
    size_t k = n - i < 3 ? n - i : 3;
    assert_int_equal(pd_http_feed(h, msg + i, k), 0);
    int rc;
    while ((rc = pd_http_next(h)) == 1) {
      const pd_http_request_t *r = pd_http_request(h);
      if (got == 0) {
        assert_string_equal(r->target, "/v1/events");
        assert_int_equal(r->body_len, 12);
        assert_string_equal(r->body, "hello, world");
      } else {
        assert_string_equal(r->target, "/next");
      }
      got++;
    }
    assert_int_equal(rc, 0);
  }
  assert_int_equal(got, 2);
  pd_http_destroy(h);
}

static void chunked_body_too_large(void **state) {
  (void)state;
  pd_http_t *h = NULL;
  assert_int_equal(pd_http_create(&h, 0, 10), 0);
  feed_str(h, "POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\n8\r\n12345678\r\n");
  assert_int_equal(pd_http_next(h), 0);
  feed_str(h, "8\r\n");
  assert_int_equal(pd_http_next(h), PD_ETOOBIG);
  assert_int_equal(pd_http_error_status(h), 413);
  pd_http_destroy(h);
}

struct bad_case {
  const char *req;
  int status;
};

static void malformed_requests(void **state) {
  (void)state;
  static const struct bad_case cases[] = {
      {"GARBAGE\r\n\r\n", 400},
      {"GET\r\n\r\n", 400},
      {"GET / HTTP/9.x\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: abc\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nContent-Length: 1\r\nContent-Length: 2\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nContent-Length: 3\r\nTransfer-Encoding: chunked\r\n\r\n", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: chunked\r\n\r\nzz\r\n", 400},
      {"GET / HTTP/1.1\r\nBad Header\r\n\r\n", 400},
      {"GET / HTTP/1.1\r\nX: a\rb\r\n\r\n", 400},
      {"\x01\x02\x03\x04", 400},
      {"POST / HTTP/1.1\r\nTransfer-Encoding: gzip\r\n\r\n", 501},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pd_http_t *h = mk();
    feed_str(h, cases[i].req);
    int rc = pd_http_next(h);
    if (rc >= 0) fail_msg("case %zu (%s) parsed: rc %d", i, cases[i].req, rc);
    if (pd_http_error_status(h) != cases[i].status) {
      fail_msg("case %zu: status %d, want %d (%s)", i, pd_http_error_status(h), cases[i].status,
               pd_http_error_message(h));
    }
    assert_true(strlen(pd_http_error_message(h)) > 0);
    assert_null(pd_http_request(h));
    pd_http_destroy(h);
  }
}

/* A good request, then garbage: the good one is served, then the error. */
static void good_then_garbage(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "GET /ok HTTP/1.1\r\n\r\nNOT HTTP AT ALL\r\n\r\n");
  assert_int_equal(pd_http_next(h), 1);
  assert_string_equal(pd_http_request(h)->target, "/ok");
  assert_true(pd_http_next(h) < 0);
  assert_int_equal(pd_http_error_status(h), 400);
  pd_http_destroy(h);
}

static void keep_alive_rules(void **state) {
  (void)state;
  struct {
    const char *req;
    int keep;
  } cases[] = {
      {"GET / HTTP/1.1\r\n\r\n", 1},
      {"GET / HTTP/1.1\r\nConnection: close\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\n\r\n", 0},
      {"GET / HTTP/1.0\r\nConnection: keep-alive\r\n\r\n", 1},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pd_http_t *h = mk();
    feed_str(h, cases[i].req);
    assert_int_equal(pd_http_next(h), 1);
    assert_int_equal(pd_http_request(h)->keep_alive, cases[i].keep);
    pd_http_destroy(h);
  }
}

static void expect_continue(void **state) {
  (void)state;
  pd_http_t *h = mk();
  feed_str(h, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 4\r\n\r\n");
  assert_int_equal(pd_http_next(h), 0);
  assert_true(pd_http_take_continue(h));
  assert_false(pd_http_take_continue(h));
  feed_str(h, "abcd");
  assert_int_equal(pd_http_next(h), 1);
  assert_false(pd_http_take_continue(h));
  pd_http_destroy(h);

  /* body already here: no 100 needed */
  h = mk();
  feed_str(h, "POST / HTTP/1.1\r\nexpect: 100-Continue\r\nContent-Length: 4\r\n\r\nabcd");
  assert_int_equal(pd_http_next(h), 1);
  assert_false(pd_http_take_continue(h));
  pd_http_destroy(h);

  /* oversize: 413, never 100 */
  h = mk();
  feed_str(h, "POST / HTTP/1.1\r\nExpect: 100-continue\r\nContent-Length: 99999999\r\n\r\n");
  assert_int_equal(pd_http_next(h), PD_ETOOBIG);
  assert_false(pd_http_take_continue(h));
  pd_http_destroy(h);
}

static void pipelining_flood_capped(void **state) {
  (void)state;
  pd_http_t *h = NULL;
  assert_int_equal(pd_http_create(&h, 1024, 1024), 0);
  char buf[4096];
  memset(buf, 'G', sizeof buf);
  int rc = 0;
  for (int i = 0; i < 100 && rc == 0; i++) rc = pd_http_feed(h, buf, sizeof buf);
  assert_int_equal(rc, PD_ETOOBIG);
  pd_http_destroy(h);
}

static void format_head(void **state) {
  (void)state;
  char buf[256];
  int n = pd_http_format_head(buf, sizeof buf, 404, "application/json", 17, true);
  assert_true(n > 0);
  assert_int_equal((size_t)n, strlen(buf));
  assert_string_equal(buf, "HTTP/1.1 404 Not Found\r\nContent-Type: application/json\r\n"
                           "Content-Length: 17\r\nConnection: keep-alive\r\n\r\n");
  n = pd_http_format_head(buf, sizeof buf, 413, NULL, 0, false);
  assert_string_equal(buf, "HTTP/1.1 413 Payload Too Large\r\nContent-Length: 0\r\n"
                           "Connection: close\r\n\r\n");
  assert_int_equal(pd_http_format_head(buf, 10, 200, "text/plain", 1, true), PD_ETOOBIG);
  assert_string_equal(pd_http_reason(200), "OK");
  assert_string_equal(pd_http_reason(431), "Request Header Fields Too Large");
  assert_string_equal(pd_http_reason(799), "Unknown");
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(simple_get),
      cmocka_unit_test(split_reads_byte_by_byte),
      cmocka_unit_test(split_reads_every_point),
      cmocka_unit_test(pipelined_requests),
      cmocka_unit_test(feed_while_request_held),
      cmocka_unit_test(oversize_header),
      cmocka_unit_test(many_headers_over_limit),
      cmocka_unit_test(long_target_over_limit),
      cmocka_unit_test(header_near_limit_ok),
      cmocka_unit_test(oversize_body_content_length),
      cmocka_unit_test(body_at_limit_ok),
      cmocka_unit_test(chunked_body),
      cmocka_unit_test(chunked_body_too_large),
      cmocka_unit_test(malformed_requests),
      cmocka_unit_test(good_then_garbage),
      cmocka_unit_test(keep_alive_rules),
      cmocka_unit_test(expect_continue),
      cmocka_unit_test(pipelining_flood_capped),
      cmocka_unit_test(format_head),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
