/* Unit tests for sim: the event queue's order and tie-breaking, and whole
 * scenarios run through the real core (netmgr, node, book, policies) on
 * the virtual clock: bootstrap converges, restart keeps the book,
 * partitions cut hosts off, assertions fail with file:line, and the same
 * seed gives byte-identical results (a different seed does not).
 *
 * With arguments (`test_sim SCENARIO.lua [--seed N] ...`) the binary runs a
 * scenario like `peerd sim` does (handy before the CLI dispatch exists). */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <cmocka.h>

#include <jansson.h>

#include "err.h"
#include "rng.h"
#include "sim.h"

static void queue_orders_by_time_then_seq(void **state) {
  (void)state;
  pd_sim_queue_t q;
  pd_sim_queue_init(&q);
  pd_rng_t r;
  pd_rng_seed(&r, 99);
  enum { N = 5000 };
  for (uint64_t i = 0; i < N; i++) {
    pd_sim_event_t e = {.t = (int64_t)pd_rng_range(&r, 50), .x = i};
    assert_int_equal(pd_sim_queue_push(&q, &e), 0);
  }
  assert_int_equal(q.n, N);
  pd_sim_event_t prev, e;
  assert_true(pd_sim_queue_pop(&q, &prev));
  size_t popped = 1;
  while (pd_sim_queue_pop(&q, &e)) {
    popped++;
    assert_true(e.t >= prev.t);
    /* Ties come out in push order. */
    if (e.t == prev.t) {
      assert_true(e.seq > prev.seq);
      assert_true(e.x > prev.x);
    }
    prev = e;
  }
  assert_int_equal(popped, N);
  assert_false(pd_sim_queue_pop(&q, &e));
  assert_true(pd_sim_queue_peek_time(&q) == INT64_MAX);
  pd_sim_queue_free(&q);
}

static void queue_interleaved(void **state) {
  (void)state;
  pd_sim_queue_t q;
  pd_sim_queue_init(&q);
  pd_sim_event_t e = {.t = 10, .x = 1};
  pd_sim_queue_push(&q, &e);
  e.t = 5;
  e.x = 2;
  pd_sim_queue_push(&q, &e);
  e.t = 10;
  e.x = 3;
  pd_sim_queue_push(&q, &e);
  assert_int_equal(pd_sim_queue_peek_time(&q), 5);
  assert_true(pd_sim_queue_pop(&q, &e));
  assert_int_equal(e.x, 2);
  e.t = 10;
  e.x = 4; /* pushed later: after 1 and 3 */
  pd_sim_queue_push(&q, &e);
  e.t = 7;
  e.x = 5;
  pd_sim_queue_push(&q, &e);
  uint64_t want[] = {5, 1, 3, 4};
  for (size_t i = 0; i < 4; i++) {
    assert_true(pd_sim_queue_pop(&q, &e));
    assert_int_equal(e.x, want[i]);
  }
  pd_sim_queue_free(&q);
}

static char *policies_dir(void) {
  const char *src = getenv("PEERD_SOURCE_DIR");
  static const char *fallback = ".";
  size_t n = strlen(src ? src : fallback) + 16;
  char *p = malloc(n);
  assert_non_null(p);
  snprintf(p, n, "%s/policies", src ? src : fallback);
  return p;
}

/* 2 seeds + 20 hosts on the shipped policies. */
static const char *BOOT =
    "local pol = sim.param('policies', 'x')\n"
    "sim.link{latency_ms = 40, jitter_ms = 20}\n"
    "local seeds = sim.hosts(2, {seed_mode = true, policies = pol})\n"
    "local hs = sim.hosts(20, {seeds = seeds, policies = pol, min_outbound = 4})\n"
    "sim.time_to('t95', function() return sim.stats().at_min_fraction >= 0.95 end)\n"
    "sim.every(5, function() sim.record('out', sim.stats().outbound_mean) end)\n"
    "sim.run(300)\n"
    "local c = sim.connectivity()\n"
    "sim.result('largest', c.largest_component)\n"
    "sim.result('components', c.components)\n"
    "sim.result('frac', sim.stats().at_min_fraction)\n"
    "local b = 0\n"
    "for _, h in ipairs(hs) do b = b + h:book_size() end\n"
    "sim.result('book_total', b)\n"
    "sim.result('r', math.random(1000000))\n"
    "sim.assert(sim.result('t95') ~= nil, 'no convergence')\n";

static int run_text(const char *text, uint64_t seed, char **doc, size_t *len, char *err,
                    size_t cap) {
  char *pol = policies_dir();
  char param[4200];
  snprintf(param, sizeof param, "policies=%s", pol);
  free(pol);
  const char *params[] = {param};
  pd_sim_options_t o = {.scenario = "t.lua", .scenario_text = text, .seed = seed,
                        .params = params, .nparams = 1};
  return pd_sim_run(&o, doc, len, NULL, err, cap);
}

static void bootstrap_converges(void **state) {
  (void)state;
  char *doc = NULL;
  size_t len = 0;
  char err[1024];
  int rc = run_text(BOOT, 1, &doc, &len, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  json_error_t je;
  json_t *root = json_loadb(doc, len, 0, &je);
  assert_non_null(root);
  json_t *res = json_object_get(root, "results");
  double t95 = json_number_value(json_object_get(res, "t95"));
  assert_true(t95 > 0 && t95 <= 300);
  assert_int_equal(json_integer_value(json_object_get(res, "largest")), 20);
  assert_int_equal(json_integer_value(json_object_get(res, "components")), 1);
  /* PEX worked: books hold more than the seeds. */
  assert_true(json_integer_value(json_object_get(res, "book_total")) > 20 * 5);
  assert_string_equal(json_string_value(json_object_get(root, "status")), "ok");
  assert_true(json_integer_value(json_object_get(root, "events")) > 1000);
  json_decref(root);
  free(doc);
}

static void same_seed_same_bytes(void **state) {
  (void)state;
  char *a = NULL, *b = NULL, *c = NULL;
  size_t la = 0, lb = 0, lc = 0;
  char err[1024];
  assert_int_equal(run_text(BOOT, 7, &a, &la, err, sizeof err), 0);
  assert_int_equal(run_text(BOOT, 7, &b, &lb, err, sizeof err), 0);
  assert_int_equal(run_text(BOOT, 8, &c, &lc, err, sizeof err), 0);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la);
  assert_true(la != lc || memcmp(a, c, la) != 0);
  free(a);
  free(b);
  free(c);
}

static void assertion_fails_with_line(void **state) {
  (void)state;
  char err[1024];
  char *doc = NULL;
  size_t len = 0;
  int rc = run_text("sim.at(2, function()\n  sim.assert(sim.now() < 1, 'too late')\nend)\n"
                    "sim.run(5)\nsim.result('after', true)\n",
                    1, &doc, &len, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "t.lua:2:"));
  assert_non_null(strstr(err, "too late"));
  assert_non_null(strstr(doc, "\"failed\""));
  assert_null(strstr(doc, "after")); /* the script stopped at the failure */
  free(doc);
  /* A plain Lua error fails the run too. */
  rc = run_text("local x = nil\nlocal y = x.field\n", 1, NULL, NULL, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "t.lua:2:"));
}

/* Restart reloads the saved book; a partition stops dials across it. */
static void restart_and_partition(void **state) {
  (void)state;
  const char *text =
      "local pol = sim.param('policies', 'x')\n"
      "local s = sim.host{seed_mode = true, group = 1}\n"
      "local a = sim.hosts(6, {seeds = {s}, policies = pol, group = 2})\n"
      "local b = sim.host{seeds = {s}, group = 3, up = false}\n"
      "sim.run(120)\n"
      "local before = a[1]:book_size()\n"
      "sim.assert(before > 1, 'book grew')\n"
      "a[1]:restart()\n"
      "sim.assert(a[1]:book_size() == before, 'restart kept the book')\n"
      "sim.partition({s}, {b})\n"
      "b:start()\n"
      "sim.run(200)\n"
      "sim.assert(b:book_size() == 0 and b:outbound() == 0, 'partitioned host learnt nothing')\n"
      "sim.heal()\n"
      "sim.run(400)\n"
      "sim.assert(b:book_size() > 1, 'healed host learnt addresses')\n"
      "sim.assert(b:outbound() > 0, 'healed host has peers')\n"
      "sim.assert(a[1]:counters().starts == 2, 'two starts')\n";
  char err[1024];
  int rc = run_text(text, 3, NULL, NULL, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
}


/* Attackers: GETADDR answers hold only attacker addresses, floods fill a
 * target's book, held inbound connections count in attacker_share, and a
 * black hole accepts TCP but never completes a handshake. */
static void attackers_behave(void **state) {
  (void)state;
  const char *text =
      "local pol = sim.param('policies', 'x')\n"
      "local s = sim.host{seed_mode = true}\n"
      "local hs = sim.hosts(8, {seeds = {s}, policies = pol})\n"
      "local v = sim.host{seeds = {s}, policies = pol, max_inbound = 4}\n"
      "local before = sim.stats()\n"
      "sim.assert(before.attackers == 0 and before.attacker_share_outbound == 0, 'no attackers')\n"
      "local atk = sim.attackers(6, {policies = pol, targets = {v}, hold_inbound = 4,\n"
      "  groups = 3, getaddr_attacker_only = true,\n"
      "  flood_addrs = {rate = 1, size = 10, groups = 2, per_group = 8}})\n"
      "local bh = sim.attacker{black_hole = true}\n"
      "sim.assert(#atk == 6 and atk[1]:is_attacker() and not v:is_attacker(), 'flags')\n"
      "sim.run(300)\n"
      "local sh = v:attacker_share()\n"
      "sim.assert(sh.peers - sh.outbound_peers == 4, 'victim inbound full: ' .. sh.peers)\n"
      "sim.assert(sh.attackers - sh.outbound_attackers == 4, 'attackers hold all inbound')\n"
      "sim.assert(sh.all > 0, 'share of all')\n"
      "sim.assert(v:book_size() > 20, 'flood reached the book: ' .. v:book_size())\n"
      "local st = sim.stats()\n"
      "sim.assert(st.attackers == 7, 'seven attackers up')\n"
      "sim.assert(st.nodes == 9, 'attackers are not nodes')\n"
      "sim.assert(st.attacker_share_all > 0, 'stats share')\n"
      "sim.assert(bh:inbound() == 0 and bh:outbound() == 0, 'black hole is silent')\n"
      "for _, h in ipairs(hs) do sim.assert(h:attacker_share().outbound <= 1, 'share range') end\n"
      "sim.result('victim_book', v:book_size())\n"
      "sim.result('eclipsed', st.eclipsed)\n";
  char err[1024];
  char *doc = NULL;
  size_t len = 0;
  int rc = run_text(text, 4, &doc, &len, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  assert_non_null(strstr(doc, "victim_book"));
  /* attackers are deterministic too: same seed, same bytes */
  char *again = NULL;
  size_t len2 = 0;
  rc = run_text(text, 4, &again, &len2, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  assert_int_equal(len, len2);
  assert_memory_equal(doc, again, len);
  free(again);
  free(doc);
  /* hold_inbound without targets is an error in the scenario */
  rc = run_text("sim.attackers(2, {hold_inbound = 1})\n", 1, NULL, NULL, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "targets"));
}

/* A black hole: dialling it connects (TCP) but the handshake times out. */
static void black_hole_times_out(void **state) {
  (void)state;
  const char *text =
      "local bh = sim.attacker{black_hole = true}\n"
      "local h = sim.host{seeds = {bh}}\n"
      "sim.run(120)\n"
      "local c = h:counters()\n"
      "sim.assert(c.dials > 0, 'dialled the black hole')\n"
      "sim.assert(c.handshakes == 0, 'no handshake with a black hole')\n"
      "sim.assert(h:outbound() == 0, 'no outbound peer')\n";
  char err[1024];
  int rc = run_text(text, 2, NULL, NULL, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
}

int main(int argc, char **argv) {
  if (argc > 1) {
    argv[0] = (char *)"sim";
    return pd_sim_main(argc, argv);
  }
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(queue_orders_by_time_then_seq),
      cmocka_unit_test(queue_interleaved),
      cmocka_unit_test(bootstrap_converges),
      cmocka_unit_test(same_seed_same_bytes),
      cmocka_unit_test(assertion_fails_with_line),
      cmocka_unit_test(restart_and_partition),
      cmocka_unit_test(attackers_behave),
      cmocka_unit_test(black_hole_times_out),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
