/* Unit tests for peerctl's pure helpers (host/ctl/fmt.c) and its --api
 * parsing (client.c): durations in both directions and every refusal,
 * relative times, short ids, table alignment (UTF-8 widths), API addresses. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "client.h"
#include "fmt.h"

static int64_t dur(const char *s) {
  int64_t v = -1;
  const char *why = NULL;
  if (pd_ctl_parse_duration(s, &v, &why) != 0) fail_msg("%s: %s", s, why);
  return v;
}

static void refused(const char *s, const char *needle) {
  int64_t v = 12345;
  const char *why = NULL;
  assert_int_equal(pd_ctl_parse_duration(s, &v, &why), -1);
  assert_int_equal(v, 12345);
  if (!why || !strstr(why, needle)) fail_msg("%s: \"%s\" lacks \"%s\"", s, why ? why : "", needle);
}

static void durations(void **state) {
  (void)state;
  assert_int_equal(dur("90s"), 90);
  assert_int_equal(dur("10m"), 600);
  assert_int_equal(dur("24h"), 86400);
  assert_int_equal(dur("7d"), 7 * 86400);
  assert_int_equal(dur("2w"), 14 * 86400);
  assert_int_equal(dur("1h30m"), 5400);
  assert_int_equal(dur("1d12h30m15s"), 86400 + 12 * 3600 + 30 * 60 + 15);
  assert_int_equal(dur("3600"), 3600);
  assert_int_equal(dur("0"), 0);
  assert_int_equal(dur("permanent"), 0);
  assert_int_equal(dur("forever"), 0);
  refused("", "empty");
  refused("10x", "unknown unit");
  refused("h", "expected a number");
  refused("-5m", "expected a number");
  refused("1h30", "unit");
  refused("30m1h", "largest to smallest");
  refused("1h1h", "largest to smallest");
  refused("1.5h", "unknown unit");
  refused("999999999999999999999s", "too long");
  refused("36501d", "too long");
}

static void formatting(void **state) {
  (void)state;
  char b[32];
  pd_ctl_format_duration(0, b, sizeof b);
  assert_string_equal(b, "0s");
  pd_ctl_format_duration(45, b, sizeof b);
  assert_string_equal(b, "45s");
  pd_ctl_format_duration(600, b, sizeof b);
  assert_string_equal(b, "10m");
  pd_ctl_format_duration(5400, b, sizeof b);
  assert_string_equal(b, "1h30m");
  pd_ctl_format_duration(2 * 86400 + 3 * 3600, b, sizeof b);
  assert_string_equal(b, "2d3h");
  pd_ctl_format_duration(30 * 86400 + 5, b, sizeof b);
  assert_string_equal(b, "30d");
  pd_ctl_format_ago(0, 1000, b, sizeof b);
  assert_string_equal(b, "never");
  pd_ctl_format_ago(1000, 1000, b, sizeof b);
  assert_string_equal(b, "now");
  pd_ctl_format_ago(700, 1000, b, sizeof b);
  assert_string_equal(b, "5m ago");
  pd_ctl_format_ago(1000 + 3 * 3600, 1000, b, sizeof b);
  assert_string_equal(b, "in 3h");
  pd_ctl_short_id("0123456789abcdef0123456789abcdef01234567", b, sizeof b);
  assert_string_equal(b, "0123456789ab");
  pd_ctl_short_id(NULL, b, sizeof b);
  assert_string_equal(b, "-");
  pd_ctl_short_id("", b, sizeof b);
  assert_string_equal(b, "-");
  assert_int_equal(pd_ctl_width("a\xc3\xa9\xe2\x80\xa6"), 3); /* a é … */
}

static void table(void **state) {
  (void)state;
  static const char *const h[] = {"ADDR", "DIR", "SCORE"};
  pd_ctl_table_t *t = pd_ctl_table_new(3, h);
  assert_non_null(t);
  const char *r1[] = {"1.2.3.4:26656", "outbound", "61.50"};
  const char *r2[] = {"[2a01:4f8::1]:1", "in\xc3\xa9", NULL};
  assert_int_equal(pd_ctl_table_add(t, r1), 0);
  assert_int_equal(pd_ctl_table_add(t, r2), 0);
  assert_int_equal(pd_ctl_table_rows(t), 2);
  char *buf = NULL;
  size_t len = 0;
  FILE *f = open_memstream(&buf, &len);
  assert_non_null(f);
  int n = pd_ctl_table_print(t, f);
  fclose(f);
  assert_int_equal(n, (int)len);
  assert_string_equal(buf, "ADDR             DIR       SCORE\n"
                           "1.2.3.4:26656    outbound  61.50\n"
                           "[2a01:4f8::1]:1  in\xc3\xa9       -\n");
  free(buf);
  pd_ctl_table_free(t);
  assert_null(pd_ctl_table_new(0, h));
}

static void api_addresses(void **state) {
  (void)state;
  pd_ctl_api_t a;
  const char *why = NULL;
  assert_int_equal(pd_ctl_api_parse("127.0.0.1:7412", &a, &why), 0);
  assert_false(a.is_unix);
  assert_string_equal(a.host, "127.0.0.1");
  assert_string_equal(a.port, "7412");
  assert_string_equal(a.host_header, "127.0.0.1:7412");
  assert_int_equal(pd_ctl_api_parse("[::1]:9", &a, &why), 0);
  assert_string_equal(a.host, "::1");
  assert_string_equal(a.host_header, "[::1]:9");
  assert_int_equal(pd_ctl_api_parse("unix:/run/peerd/api.sock", &a, &why), 0);
  assert_true(a.is_unix);
  assert_string_equal(a.path, "/run/peerd/api.sock");
  assert_string_equal(a.host_header, "localhost");
  assert_int_equal(pd_ctl_api_parse("unix:", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("127.0.0.1", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("127.0.0.1:0", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("127.0.0.1:70000", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("::1:9", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("[::1:9", &a, &why), PD_CTL_EADDR);
  assert_int_equal(pd_ctl_api_parse("", &a, &why), PD_CTL_EADDR);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(durations),
      cmocka_unit_test(formatting),
      cmocka_unit_test(table),
      cmocka_unit_test(api_addresses),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
