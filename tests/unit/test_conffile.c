/* Unit tests for the run settings (settings.c) and the config file
 * (conffile.c): every value type, file:line errors, the sandbox's limits,
 * flag-over-file precedence (scalars and lists), where each value came
 * from, the finished pd_daemon_config_t, and a real file on disk. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include <jansson.h>

#include "conffile.h"
#include "err.h"
#include "settings.h"

static pd_settings_t *load(const char *text, int *rc, char *err, size_t cap) {
  pd_settings_t *s = NULL;
  assert_int_equal(pd_settings_new(&s), 0);
  err[0] = '\0';
  *rc = pd_conffile_load_text(s, "t.conf", text, strlen(text), err, cap);
  if (*rc == 0) *rc = pd_settings_finish(s, err, cap);
  return s;
}

/* The text must be refused with exactly this message. */
static void refused(const char *text, const char *want) {
  char err[600];
  int rc;
  pd_settings_t *s = load(text, &rc, err, sizeof err);
  if (rc >= 0 || strcmp(err, want) != 0) {
    fail_msg("config %s\n  got rc %d, '%s'\n  want '%s'", text, rc, err, want);
  }
  pd_settings_free(s);
}

static size_t idx(const char *key) {
  int i = pd_settings_find_key(key);
  assert_true(i >= 0);
  return (size_t)i;
}

static json_t *settings_of(const pd_settings_t *s) {
  char *text = pd_settings_json(s);
  assert_non_null(text);
  json_t *root = json_loads(text, 0, NULL);
  free(text);
  assert_non_null(root);
  return root;
}

static const char *source_of(json_t *root, const char *key) {
  json_t *e = json_object_get(json_object_get(root, "settings"), key);
  assert_non_null(e);
  return json_string_value(json_object_get(e, "source"));
}

/* pd_settings_print's text (malloc'd; *len its length when len is given). */
static char *printed(const pd_settings_t *s, size_t *len) {
  char *buf = NULL;
  size_t n = 0;
  FILE *f = open_memstream(&buf, &n);
  assert_non_null(f);
  pd_settings_print(s, f);
  fclose(f);
  if (len) *len = n;
  return buf;
}

static json_t *value_of(json_t *root, const char *key) {
  return json_object_get(json_object_get(json_object_get(root, "settings"), key), "value");
}

static void test_every_kind(void **state) {
  (void)state;
  char err[600];
  int rc;
  pd_settings_t *s = load("-- a comment\n"
                          "max_inbound = 40\n"
                          "listen = \"127.0.0.1:7411\"\n"
                          "allow_private = true\n"
                          "p2p = false\n"
                          "seeds = { \"127.0.0.1:7411\", \"seed.example.org:7411\" }\n"
                          "persistent_peers = \"127.0.0.2:7411, 127.0.0.3:7411\"\n"
                          "services = { p2p = 26656, rpc = \"127.0.0.1:26657\" }\n"
                          "attrs = { chain = \"test-1\" }\n"
                          "seed = \"18446744073709551615\"\n"
                          "max_outbound = max_inbound // 5\n"
                          "private_peer = { \"10.0.0.0/8\", \"00112233445566778899aabbccddeeff00112233\" }\n",
                          &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  const pd_daemon_config_t *c = pd_settings_config(s);
  assert_int_equal(c->max_inbound, 40);
  assert_int_equal(c->max_outbound, 8);
  assert_string_equal(c->listen, "127.0.0.1:7411");
  assert_true(c->allow_private);
  assert_false(c->p2p);
  assert_int_equal(c->nseeds, 2);
  assert_int_equal(c->npersistent, 2);
  assert_int_equal(c->nservices, 2);
  assert_string_equal(c->services[0].name, "p2p"); /* sorted by name */
  assert_string_equal(c->services[1].name, "rpc");
  assert_int_equal(c->nattrs, 1);
  assert_string_equal(c->attrs[0].value, "test-1");
  assert_true(c->has_seed);
  assert_true(c->seed == UINT64_MAX);
  assert_int_equal(c->nprivate_subnets, 1);
  assert_int_equal(c->nprivate_ids, 1);
  assert_string_equal(c->api, PD_DAEMON_DEFAULT_API); /* untouched */

  json_t *root = settings_of(s);
  assert_string_equal(json_string_value(json_object_get(root, "file")), "t.conf");
  assert_string_equal(source_of(root, "max_inbound"), "file");
  assert_string_equal(source_of(root, "api"), "default");
  assert_int_equal(json_integer_value(value_of(root, "max_inbound")), 40);
  assert_true(json_is_true(value_of(root, "allow_private")));
  assert_string_equal(json_string_value(value_of(root, "p2p")), "off");
  assert_int_equal(json_array_size(value_of(root, "persistent_peers")), 2);
  assert_string_equal(json_string_value(json_array_get(value_of(root, "persistent_peers"), 1)),
                      "127.0.0.3:7411");
  assert_int_equal(json_integer_value(json_object_get(value_of(root, "services"), "p2p")), 26656);
  assert_string_equal(json_string_value(json_object_get(value_of(root, "services"), "rpc")),
                      "127.0.0.1:26657");
  assert_true(json_is_null(value_of(root, "node_key")));
  json_decref(root);
  pd_settings_free(s);
}

static void test_errors_name_file_and_line(void **state) {
  (void)state;
  refused("max_inbound = \"40\"\n", "t.conf:1: max_inbound must be an integer, got string");
  /* a precompiled chunk names the file too (found by tests/fuzz/fuzz_conffile) */
  refused("\x1bLua", "t.conf: attempt to load a binary chunk (mode is 't')");
  refused("\n\nmax_inbund = 40\n",
          "t.conf:3: unknown setting 'max_inbund' (settings are the long flags with _ for -; "
          "docs/config.md lists them)");
  refused("max_inbound = 4\n-- again\nmax_inbound = 5\n", "t.conf:3: max_inbound set twice (first at line 1)");
  refused("max_inbound = 100001\n", "t.conf:1: max_inbound needs a number (0..100000), got '100001'");
  refused("max_inbound = -1\n", "t.conf:1: max_inbound needs a number (0..100000), got '-1'");
  refused("max_inbound = 4.5\n", "t.conf:1: max_inbound must be an integer, got number");
  refused("listen = \"1.2.3.4\"\n", "t.conf:1: bad listen '1.2.3.4': missing port");
  refused("allow_private = 1\n", "t.conf:1: allow_private must be true or false, got an integer");
  refused("p2p = \"maybe\"\n", "t.conf:1: p2p must be on or off, got 'maybe'");
  refused("seeds = { a = \"1.2.3.4:1\" }\n", "t.conf:1: seeds must be a list { \"a\", \"b\" }: found a named field");
  refused("seeds = { \"1.2.3.4:1\", 5 }\n", "t.conf:1: seeds: every element must be a string, got an integer");
  refused("services = 26656\n", "t.conf:1: services must be a table { name = value, ... }, got an integer");
  refused("attrs = { chain = true }\n", "t.conf:1: attrs.chain must be a string or an integer");
  refused("listen = nil\n", "t.conf:1: listen = nil: leave the line out to keep the default");
  refused("config = \"x\"\n", "t.conf:1: config cannot be set in a config file");
  refused("listen = print\n",
          "t.conf:1: 'print' is not defined here (the file has no functions or libraries; a name "
          "can only be read after it is set)");
  refused("max_inbound = 4 +\n", "t.conf:2: unexpected symbol near <eof>"); /* at the end */
  refused("min_outbound = 9\n", "min_outbound (9) is above max_outbound (8)");
}

static void test_sandbox_limits(void **state) {
  (void)state;
  refused("while true do end\n", "t.conf:1: the config file runs too long (a loop?)");
  refused("local t = {} for i = 1, 1e7 do t[i] = i end\n", "t.conf: not enough memory");
  /* a precompiled chunk is refused: text only */
  char err[600];
  int rc;
  pd_settings_t *s = load("\x1bLua", &rc, err, sizeof err);
  assert_true(rc < 0);
  assert_non_null(strstr(err, "attempt to load a binary chunk"));
  pd_settings_free(s);
}

static void test_flag_overrides_file(void **state) {
  (void)state;
  char err[600];

  pd_settings_t *s = NULL;
  assert_int_equal(pd_settings_new(&s), 0);
  const char *text = "max_inbound = 40\nseeds = { \"127.0.0.1:1\", \"127.0.0.1:2\" }\n"
                     "services = { p2p = 26656 }\n";
  assert_int_equal(pd_conffile_load_text(s, "t.conf", text, strlen(text), err, sizeof err), 0);
  /* flags come after the file */
  assert_int_equal(pd_settings_apply(s, idx("max_inbound"), "12", PD_SET_FLAG, err, sizeof err), 0);
  assert_int_equal(pd_settings_apply(s, idx("seeds"), "127.0.0.1:3", PD_SET_FLAG, err, sizeof err), 0);
  assert_int_equal(pd_settings_apply(s, idx("seeds"), "127.0.0.1:4,127.0.0.1:5", PD_SET_FLAG, err,
                                     sizeof err), 0);
  assert_int_equal(pd_settings_apply(s, pd_settings_find_key("service"), "rpc=26657", PD_SET_FLAG,
                                     err, sizeof err), 0);
  assert_int_equal(pd_settings_apply(s, idx("allow_private"), NULL, PD_SET_FLAG, err, sizeof err), 0);
  /* a bad flag names the flag */
  assert_int_equal(pd_settings_apply(s, idx("max_outbound"), "x", PD_SET_FLAG, err, sizeof err),
                   PD_EINVAL);
  assert_string_equal(err, "--max-outbound needs a number (0..1000), got 'x'");
  assert_int_equal(pd_settings_apply(s, pd_settings_find_key("service"), "rpc=1", PD_SET_FLAG, err,
                                     sizeof err), PD_EINVAL);
  assert_string_equal(err, "--service rpc given twice");
  assert_int_equal(pd_settings_finish(s, err, sizeof err), 0);
  const pd_daemon_config_t *c = pd_settings_config(s);
  assert_int_equal(c->max_inbound, 12);
  assert_int_equal(c->nseeds, 3); /* the flags replaced the file's two */
  assert_int_equal(c->seeds[0].addr.port, 3);
  assert_int_equal(c->nservices, 1);
  assert_string_equal(c->services[0].name, "rpc");
  assert_true(c->allow_private);
  json_t *root = settings_of(s);
  assert_string_equal(source_of(root, "max_inbound"), "flag");
  assert_string_equal(source_of(root, "seeds"), "flag");
  assert_string_equal(source_of(root, "services"), "flag");
  assert_string_equal(source_of(root, "listen"), "default");
  json_decref(root);

  /* the text form reads back as the same settings */
  size_t len = 0;
  char *buf = printed(s, &len);
  assert_non_null(strstr(buf, "max_inbound = 12  -- flag\n"));
  assert_non_null(strstr(buf, "services = { [\"rpc\"] = 26657 }  -- flag\n"));
  assert_non_null(strstr(buf, "api_token_file = nil  -- default\n"));
  pd_settings_t *back = NULL;
  assert_int_equal(pd_settings_new(&back), 0);
  /* nil lines are refused on purpose: drop them before reading back */
  char *keep = calloc(1, len + 1);
  assert_non_null(keep);
  for (char *line = strtok(buf, "\n"); line; line = strtok(NULL, "\n")) {
    if (!strstr(line, " = nil")) {
      strcat(keep, line);
      strcat(keep, "\n");
    }
  }
  assert_int_equal(pd_conffile_load_text(back, "back.conf", keep, strlen(keep), err, sizeof err), 0);
  assert_int_equal(pd_settings_finish(back, err, sizeof err), 0);
  assert_int_equal(pd_settings_config(back)->max_inbound, 12);
  assert_int_equal(pd_settings_config(back)->nseeds, 3);
  free(keep);
  free(buf);
  pd_settings_free(back);
  pd_settings_free(s);
}

/* Seed mode has its own max_inbound default (PD_DIALER_SEED_MAX_INBOUND),
 * shown as the default it is; a configured value still wins. */
static void test_seed_mode_inbound_default(void **state) {
  (void)state;
  char err[600];
  int rc;
  pd_settings_t *s = load("seed_mode = true\n", &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(pd_settings_config(s)->max_inbound, 256);
  json_t *root = settings_of(s);
  assert_int_equal(json_integer_value(value_of(root, "max_inbound")), 256);
  assert_string_equal(source_of(root, "max_inbound"), "default");
  json_decref(root);
  char *buf = printed(s, NULL);
  assert_non_null(strstr(buf, "max_inbound = 256  -- default\n"));
  free(buf);
  pd_settings_free(s);

  s = load("seed_mode = true\nmax_inbound = 40\n", &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(pd_settings_config(s)->max_inbound, 40);
  pd_settings_free(s);
  s = load("seed_mode = false\n", &rc, err, sizeof err);
  assert_int_equal(rc, 0);
  assert_int_equal(pd_settings_config(s)->max_inbound, 40);
  pd_settings_free(s);
}

static void test_real_file(void **state) {
  (void)state;
  char path[] = "/tmp/test_conffile-XXXXXX";
  int fd = mkstemp(path);
  assert_true(fd >= 0);
  const char *text = "max_outbound = 0\nnetwork = \"testnet\"\n";
  assert_int_equal(write(fd, text, strlen(text)), (ssize_t)strlen(text));
  close(fd);
  pd_settings_t *s = NULL;
  assert_int_equal(pd_settings_new(&s), 0);
  char err[600];
  assert_int_equal(pd_conffile_load(s, path, err, sizeof err), 0);
  assert_int_equal(pd_settings_finish(s, err, sizeof err), 0);
  assert_int_equal(pd_settings_config(s)->max_outbound, 0);
  assert_int_equal(pd_settings_config(s)->min_outbound, 0); /* listen only */
  assert_string_equal(pd_settings_config(s)->network, "testnet");
  assert_string_equal(pd_settings_file(s), path);
  pd_settings_free(s);
  unlink(path);
  assert_int_equal(pd_settings_new(&s), 0);
  assert_true(pd_conffile_load(s, path, err, sizeof err) < 0);
  assert_non_null(strstr(err, "cannot read the config file"));
  pd_settings_free(s);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(test_every_kind),
      cmocka_unit_test(test_errors_name_file_and_line),
      cmocka_unit_test(test_sandbox_limits),
      cmocka_unit_test(test_flag_overrides_file),
      cmocka_unit_test(test_seed_mode_inbound_default),
      cmocka_unit_test(test_real_file),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
