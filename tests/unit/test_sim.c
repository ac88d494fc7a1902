/* Unit tests for sim: the event queue's order and tie-breaking, and whole
 * scenarios run through the real core (netmgr, node, book, policies) on
 * the virtual clock: bootstrap converges, restart keeps the book,
 * partitions cut hosts off, assertions fail with file:line, and the same
 * seed gives byte-identical results (a different seed does not); the
 * diameter sample on known graphs and on a partitioned run; attackers, and
 * what a scenario reads of them (h:book(), attacker_share's isolated); the
 * DHT in the lab (tables fill, lookups find, dht = false is silent, sybils
 * on 2 IPs against the default dht.lua and one without IP limits).
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
      "sim.assert(a[1]:counters().starts == 2, 'two starts')\n"
      "local sc, ac = s:counters(), a[2]:counters()\n"
      "sim.assert(sc.seed_crawls > 0 and ac.seed_crawls == 0, 'the seed crawled')\n"
      "sim.assert(ac.addrs_received >= a[2]:book_size() - 1, 'addresses came in ADDRs')\n";
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

/* An attacker pool: one actor answering for many addresses -- holds the
 * victim's inbound slots from its own addresses, floods them into its book,
 * answers the victim's dials to them (the real handshake per address), and
 * dials to addresses outside its live share time out; stop and start. */
static void pool_answers_for_its_addresses(void **state) {
  (void)state;
  const char *text =
      "local pol = sim.param('policies', 'x')\n"
      "local live = sim.param('live', 1.0)\n"
      "local s = sim.host{seed_mode = true}\n"
      "local hs = sim.hosts(6, {seeds = {s}, policies = pol})\n"
      "local v = sim.host{seeds = {s}, policies = pol, max_inbound = 4}\n"
      "local p = sim.pool{addresses = 5000, groups = 50, ports = 2, targets = {v},\n"
      "  hold_inbound = 4, flood = {rate = 0.1, size = 10}, live = live, getaddr = 500}\n"
      "sim.assert(p:size() == 5000, 'size')\n"
      "sim.assert(p:addr(1) == '223.0.0.1:26656', 'first address ' .. p:addr(1))\n"
      "sim.assert(p:addr(51) == '223.0.0.1:26657', 'second port ' .. p:addr(51))\n"
      "sim.assert(p:addr(101) == '223.0.0.2:26656', 'next ip ' .. p:addr(101))\n"
      "sim.assert(p:addr(2) == '223.1.0.1:26656', 'next group ' .. p:addr(2))\n"
      "sim.run(600)\n"
      "local c = p:counters()\n"
      "sim.assert(c.held == 4, 'holds all four inbound slots: ' .. c.held)\n"
      "local sh = v:attacker_share()\n"
      "sim.assert(sh.attackers - sh.outbound_attackers == 4, 'inbound all attacker')\n"
      "sim.assert(v:book_size() > 100, 'flood reached the book: ' .. v:book_size())\n"
      "sim.assert(c.floods > 0 and c.addrs_sent >= 10 * c.floods, 'floods sent')\n"
      "sim.assert(c.handshakes >= 4, 'handshakes')\n"
      "v:restart{anchors = false}\n"
      "sim.run(1200)\n"
      "c = p:counters()\n"
      "sh = v:attacker_share()\n"
      "sim.result('accepted', c.accepted)\n"
      "sim.result('getaddr_answered', c.getaddr_answered)\n"
      "sim.result('outbound_attackers', sh.outbound_attackers)\n"
      "sim.result('held', c.held)\n"
      "for _, h in ipairs(hs) do sim.assert(not h:is_attacker(), 'honest') end\n"
      "p:stop()\n"
      "sim.assert(not p:is_up() and p:counters().connections == 0, 'stopped: no connections')\n"
      "sim.run(1300)\n"
      "sh = v:attacker_share()\n"
      "sim.assert(sh.attackers == 0, 'victim saw the pool go: ' .. sh.attackers)\n"
      "p:start()\n"
      "sim.run(1400)\n"
      "sim.assert(p:counters().dials > c.dials, 'dials again after start')\n";
  char err[1024];
  char *doc = NULL, *again = NULL;
  size_t len = 0, len2 = 0;
  int rc = run_text(text, 3, &doc, &len, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  json_error_t je;
  json_t *root = json_loadb(doc, len, 0, &je);
  assert_non_null(root);
  json_t *res = json_object_get(root, "results");
  /* the restarted victim dialled pool addresses, and they answered */
  assert_true(json_integer_value(json_object_get(res, "accepted")) > 0);
  assert_true(json_integer_value(json_object_get(res, "outbound_attackers")) > 0);
  json_decref(root);
  /* deterministic: same seed, same bytes */
  rc = run_text(text, 3, &again, &len2, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  if (len != len2 || memcmp(doc, again, len) != 0) fail_msg("differ:\n%s\n%s", doc, again);
  free(again);
  free(doc);
  doc = NULL;
  /* live = 0: nobody's dial to a pool address is answered; its own dials
   * (the holds) still go out */
  char *pol = policies_dir();
  char p1[4200];
  snprintf(p1, sizeof p1, "policies=%s", pol);
  free(pol);
  const char *params[] = {p1, "live=0"};
  pd_sim_options_t o = {.scenario = "t.lua", .scenario_text = text, .seed = 3, .params = params,
                        .nparams = 2};
  rc = pd_sim_run(&o, &doc, &len, NULL, err, sizeof err);
  if (rc != 0) fail_msg("run live=0: %s", err);
  root = json_loadb(doc, len, 0, &je);
  assert_non_null(root);
  res = json_object_get(root, "results");
  assert_int_equal(json_integer_value(json_object_get(res, "accepted")), 0);
  assert_int_equal(json_integer_value(json_object_get(res, "outbound_attackers")), 0);
  json_decref(root);
  free(doc);
  /* bad specs are errors in the scenario */
  rc = run_text("sim.pool{addresses = 0}\n", 1, NULL, NULL, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "addresses"));
  rc = run_text("sim.pool{addresses = 10, hold_inbound = 1}\n", 1, NULL, NULL, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "targets"));
  rc = run_text("local h = sim.host{}\nsim.pool{addresses = 3, targets = {h}, hold_inbound = 4}\n",
                1, NULL, NULL, err, sizeof err);
  assert_int_equal(rc, PD_EINVAL);
  assert_non_null(strstr(err, "exceeds"));
}

/* h:book(): a victim flooded by attackers, one honest seed it dials and
 * one honest host that dials it. Its tables add up to its book, attacker
 * entries fill new and then tried, the only honest entries are the two
 * honest hosts, tried collisions (64 outbound peers into a 4-bucket tried
 * table: 6 to 11 collisions over seeds 1..8) each end once or are pending,
 * feelers are accounted for, and the honest tried entries count as up
 * until their hosts stop. */
static void book_introspection(void **state) {
  (void)state;
  const char *text =
      "local hs = sim.host{}\n"
      "local v = sim.host{seeds = {hs}, book = {new_buckets = 16, tried_buckets = 4},\n"
      "  max_inbound = 4, min_outbound = 64, max_outbound = 64}\n"
      "local b = v:book()\n"
      "sim.assert(b.new_capacity == 1024 and b.tried_capacity == 256, 'capacities')\n"
      "sim.assert(b.new + b.tried == v:book_size() and b.collisions == 0, 'fresh book')\n"
      "sim.assert(b.tbe.recorded == 0 and b.feelers.tried == 0 and b.heilman_bound == 1, 'none')\n"
      "local hh = sim.host{seeds = {v}}\n"
      "sim.attackers(72, {targets = {v}, hold_inbound = 2, getaddr_attacker_only = true,\n"
      "  flood_addrs = {rate = 1, size = 10, groups = 2, per_group = 8}})\n"
      "sim.run(5)\n"
      "b = v:book()\n"
      "sim.assert(b.new + b.tried == v:book_size(), 'tables add up')\n"
      "sim.assert(b.new_attacker > 20 and b.new_attacker >= b.new - 2, 'flood in new')\n"
      "sim.assert(b.new_attacker_share == b.new_attacker / b.new, 'new share')\n"
      "sim.run(300)\n"
      "b = v:book()\n"
      "sim.assert(b.new + b.tried == v:book_size(), 'tables add up later')\n"
      "local honest = (b.new - b.new_attacker) + (b.tried - b.tried_attacker)\n"
      "sim.assert(honest == 2, 'the honest entries are hs and hh: ' .. honest)\n"
      "sim.assert(b.tried_attacker > 0 and b.tried_honest >= 1, 'both in tried')\n"
      "sim.assert(b.tried_attacker_share == b.tried_attacker / b.tried, 'tried share')\n"
      "sim.assert(b.tried_honest == b.tried - b.tried_attacker, 'honest tried')\n"
      "sim.assert(b.tried_honest_up == b.tried_honest, 'honest hosts up')\n"
      "sim.assert(math.abs(b.heilman_bound - (1 - b.tried_honest_up / 256) ^ 8) < 1e-12, 'bound')\n"
      "local t = b.tbe\n"
      "sim.assert(t.recorded > 0, 'tried collisions')\n"
      "sim.assert(t.recorded == t.kept + t.replaced + t.slot_free + t.dropped + b.collisions,\n"
      "  'each collision ended once or is pending')\n"
      "sim.assert(t.kept == t.kept_answered + t.kept_policy, 'kept')\n"
      "sim.assert(t.replaced == t.replaced_failed + t.replaced_timeout + t.replaced_policy, 'repl')\n"
      "sim.assert(b.collisions <= 10 and b.collisions_attacker <= b.collisions, 'pending')\n"
      "sim.assert(b.evictions.kept > 0, 'new-table contests')\n"
      "local fe = b.feelers\n"
      "sim.assert(fe.tried > 0 and fe.tried >= fe.ok + fe.failed and\n"
      "  fe.tried - fe.ok - fe.failed <= 1, 'feelers: ended or one in flight')\n"
      "sim.assert(not v:attacker_share().isolated, 'honest peers')\n"
      "hs:stop()\n"
      "hh:stop()\n"
      "sim.run(330)\n"
      "local b2 = v:book()\n"
      "sim.assert(b2.tried_honest >= 1 and b2.tried_honest_up == 0, 'honest hosts down')\n"
      "sim.assert(b2.heilman_bound == 1, 'vacuous bound')\n"
      "local sh = v:attacker_share()\n"
      "sim.assert(sh.isolated and sh.eclipsed == (sh.outbound_peers > 0), 'only attackers left')\n"
      "sim.result('tried_attacker', b.tried_attacker)\n"
      "sim.result('tbe_recorded', t.recorded)\n";
  char err[1024];
  int rc = run_text(text, 5, NULL, NULL, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
}

/* Isolated vs eclipsed: a victim that never dials, its inbound slots all
 * held by attackers, is isolated (no honest peer) but not eclipsed (no
 * outbound peer); a host with no peer at all is isolated; sim.stats counts
 * them and averages the inbound attacker share; a stopped host is
 * isolated and its book reads empty. */
static void isolated_not_eclipsed(void **state) {
  (void)state;
  const char *text =
      "local v = sim.host{max_outbound = 0, max_inbound = 4}\n"
      "local lone = sim.host{}\n"
      "local a = sim.host{}\n"
      "local b = sim.host{seeds = {a}}\n"
      "sim.attackers(4, {targets = {v}, hold_inbound = 4})\n"
      "sim.run(30)\n"
      "local sh = v:attacker_share()\n"
      "sim.assert(sh.outbound_peers == 0 and sh.inbound_peers == 4 and\n"
      "  sh.inbound_attackers == 4, 'inbound held')\n"
      "sim.assert(sh.inbound == 1 and sh.outbound == 0 and sh.all == 1, 'shares')\n"
      "sim.assert(sh.isolated and not sh.eclipsed, 'isolated, not eclipsed')\n"
      "local sl = lone:attacker_share()\n"
      "sim.assert(sl.isolated and not sl.eclipsed and sl.peers == 0, 'no peers: isolated')\n"
      "sim.assert(not a:attacker_share().isolated and not b:attacker_share().isolated, 'a, b')\n"
      "local st = sim.stats()\n"
      "sim.assert(st.nodes == 4 and st.isolated == 2 and st.eclipsed == 0, 'stats')\n"
      "sim.assert(st.attacker_share_inbound == 0.25, 'mean inbound share')\n"
      "local sv = sim.stats({v})\n"
      "sim.assert(sv.isolated == 1 and sv.attacker_share_inbound == 1, 'stats of v')\n"
      "v:stop()\n"
      "sim.assert(v:attacker_share().isolated, 'a stopped host is isolated')\n"
      "local bk = v:book()\n"
      "sim.assert(bk.new == 0 and bk.tried == 0 and bk.tried_capacity == 16384, 'stopped')\n";
  char err[1024];
  int rc = run_text(text, 6, NULL, NULL, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
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

/* pd_sim_graph_sample on graphs whose answers are known. */
static void graph_sample_known_graphs(void **state) {
  (void)state;
  uint32_t d = 99;
  double m = -1;
  uint64_t pairs = 99;
  /* Line 0-1-2-3-4: diameter 4; ordered pairs at distance 1..4: 8, 6, 4, 2 -> mean 40/20. */
  const uint32_t loff[] = {0, 1, 3, 5, 7, 8};
  const uint32_t ladj[] = {1, 0, 2, 1, 3, 2, 4, 3};
  const uint32_t all[] = {0, 1, 2, 3, 4};
  assert_int_equal(pd_sim_graph_sample(5, loff, ladj, all, 5, &d, &m, &pairs), 0);
  assert_int_equal(d, 4);
  assert_int_equal(pairs, 20);
  assert_true(m > 1.999 && m < 2.001);
  /* From the middle only: eccentricity 2, a lower bound of the diameter. */
  const uint32_t mid[] = {2};
  assert_int_equal(pd_sim_graph_sample(5, loff, ladj, mid, 1, &d, &m, &pairs), 0);
  assert_int_equal(d, 2);
  assert_int_equal(pairs, 4);
  assert_true(m > 1.499 && m < 1.501); /* 1+1+2+2 */
  /* Star, centre 0, leaves 1..4 (edge 0-1 listed twice: duplicates are harmless):
   * diameter 2; centre 4x1, each leaf 1 + 3x2 -> 32/20. */
  const uint32_t soff[] = {0, 5, 7, 8, 9, 10};
  const uint32_t sadj[] = {1, 2, 3, 4, 1, 0, 0, 0, 0, 0};
  assert_int_equal(pd_sim_graph_sample(5, soff, sadj, all, 5, &d, &m, &pairs), 0);
  assert_int_equal(d, 2);
  assert_int_equal(pairs, 20);
  assert_true(m > 1.599 && m < 1.601);
  const uint32_t centre[] = {0};
  assert_int_equal(pd_sim_graph_sample(5, soff, sadj, centre, 1, &d, &m, &pairs), 0);
  assert_int_equal(d, 1);
  /* Two components 0-1 and 2-3 plus isolated 4: each BFS stays in its component. */
  const uint32_t coff[] = {0, 1, 2, 3, 4, 4};
  const uint32_t cadj[] = {1, 0, 3, 2};
  assert_int_equal(pd_sim_graph_sample(5, coff, cadj, all, 5, &d, &m, &pairs), 0);
  assert_int_equal(d, 1);
  assert_int_equal(pairs, 4);
  assert_true(m > 0.999 && m < 1.001);
  const uint32_t lone[] = {4};
  assert_int_equal(pd_sim_graph_sample(5, coff, cadj, lone, 1, &d, &m, &pairs), 0);
  assert_int_equal(d, 0);
  assert_int_equal(pairs, 0);
  assert_true(m == 0.0);
  /* Bad input. */
  const uint32_t bad[] = {5};
  assert_int_equal(pd_sim_graph_sample(5, loff, ladj, bad, 1, &d, &m, &pairs), PD_EINVAL);
  assert_int_equal(pd_sim_graph_sample(5, loff, ladj, all, 5, NULL, &m, &pairs), PD_EINVAL);
  assert_int_equal(pd_sim_graph_sample(0, NULL, NULL, NULL, 0, &d, &m, &pairs), 0);
  assert_int_equal(d, 0);
}

/* sim.diameter on a real run: two halves partitioned from the start (each
 * with its own seed) are two components, so every BFS stays in one half;
 * bounds, the sampled lower bound, the hosts filter; the same seed gives the
 * same samples. The checks are sim.asserts: a failure fails the run. */
static const char *DIAM =
    "local pol = sim.param('policies', 'x')\n"
    "sim.link{latency_ms = 40, jitter_ms = 20}\n"
    "local sa = sim.host{seed_mode = true, policies = pol}\n"
    "local sb = sim.host{seed_mode = true, policies = pol}\n"
    "local A = sim.hosts(8, {seeds = {sa}, policies = pol, min_outbound = 3})\n"
    "local B = sim.hosts(8, {seeds = {sb}, policies = pol, min_outbound = 3})\n"
    "local setA, setB = {sa}, {sb}\n"
    "for i = 1, 8 do setA[#setA + 1] = A[i]; setB[#setB + 1] = B[i] end\n"
    "sim.partition(setA, setB)\n"
    "sim.run(300)\n"
    "local ca, cb = sim.connectivity(A), sim.connectivity(B)\n"
    "sim.assert(ca.components == 1 and cb.components == 1, 'halves not connected')\n"
    "sim.assert(sim.connectivity().components == 2, 'not two components')\n"
    "local full = sim.diameter{samples = 1000}\n"
    "sim.assert(full.hosts == 16 and full.samples == 16, 'all nodes as sources')\n"
    "sim.assert(full.pairs == 2 * 8 * 7, 'BFS crossed the partition: ' .. full.pairs)\n"
    "sim.assert(full.diameter >= 1 and full.diameter <= 7, 'diameter ' .. full.diameter)\n"
    "sim.assert(full.mean_path >= 1 and full.mean_path <= full.diameter, 'mean_path')\n"
    "local a = sim.diameter{samples = 1000, hosts = A}\n"
    "sim.assert(a.hosts == 8 and a.pairs == 56 and a.diameter <= full.diameter, 'half A')\n"
    "local s3 = sim.diameter{samples = 3}\n"
    "sim.assert(s3.samples == 3 and s3.diameter <= full.diameter, 'sample bound')\n"
    "sim.assert(s3.pairs == 3 * 7, 'three sources, 7 others each')\n"
    "local one = sim.diameter{hosts = {A[1]}}\n"
    "sim.assert(one.hosts == 1 and one.diameter == 0 and one.pairs == 0, 'single host')\n"
    "local seeds = sim.diameter{samples = 1000, seeds = true}\n"
    "sim.assert(seeds.hosts == 18, 'seeds = true counts the seeds')\n"
    "sim.assert(not pcall(sim.diameter, {samples = 0}), 'samples 0 accepted')\n"
    "sim.result('full', full)\n"
    "sim.result('s3', s3)\n"
    "sim.result('s3b', sim.diameter{samples = 3})\n";

static void diameter_sample_run(void **state) {
  (void)state;
  char *doc1 = NULL, *doc2 = NULL;
  size_t len1 = 0, len2 = 0;
  char err[1024];
  int rc = run_text(DIAM, 4, &doc1, &len1, err, sizeof err);
  if (rc != 0) fail_msg("run: %s\n%s", err, doc1 ? doc1 : "");
  rc = run_text(DIAM, 4, &doc2, &len2, err, sizeof err);
  if (rc != 0) fail_msg("run 2: %s", err);
  assert_int_equal(len1, len2);
  assert_memory_equal(doc1, doc2, len1);
  json_error_t je;
  json_t *root = json_loadb(doc1, len1, 0, &je);
  assert_non_null(root);
  json_t *full = json_object_get(json_object_get(root, "results"), "full");
  assert_non_null(full);
  json_int_t dm = json_integer_value(json_object_get(full, "diameter"));
  assert_true(dm >= 1 && dm <= 7);
  assert_int_equal(json_integer_value(json_object_get(full, "pairs")), 112);
  json_decref(root);
  free(doc1);
  free(doc2);
}

/* The DHT (labdht.c, scenario_dht.c): 50 hosts bootstrapping from one
 * bootnode fill their tables; a lookup by host and by hex id finds the
 * target (the callback runs with the result); a dht = false host neither
 * answers (nobody's table holds it, a host whose only bootnode it is learns
 * nothing) nor sends; a max_outbound = 0 host answers only; same seed, same
 * bytes. */
static const char *DHT =
    "sim.dht(true)\n"
    "sim.link{latency_ms = 40, jitter_ms = 20}\n"
    "local pol = sim.param('policies', 'x')\n"
    "local boot = sim.host{policies = pol}\n"
    "local hs = sim.hosts(49, {bootnodes = {boot}, policies = pol})\n"
    "local off = sim.host{dht = false, bootnodes = {boot}, policies = pol}\n"
    "local lonely = sim.host{bootnodes = {off}, policies = pol}\n"
    "local quiet = sim.host{max_outbound = 0, policies = pol}\n"
    "sim.assert(off:dht() == nil, 'dht = false: no engine')\n"
    "sim.run(40)\n"
    "local all = {boot}\n"
    "for _, h in ipairs(hs) do all[#all + 1] = h end\n"
    "local offaddr = off:addr()\n"
    "for _, h in ipairs(all) do\n"
    "  local n = h:dht().nodes\n"
    "  sim.assert(n >= 8, h:addr() .. ' table ' .. n)\n"
    "  for _, e in ipairs(h:dht_table()) do\n"
    "    sim.assert(e.addr ~= offaddr, 'the dht = false host is in a table')\n"
    "    sim.assert(#e.id == 40 and not e.attacker and e.bucket >= 1, 'entry')\n"
    "  end\n"
    "end\n"
    "local ld = lonely:dht()\n"
    "sim.assert(ld.nodes == 0 and ld.packets_in == 0 and ld.packets_out > 0, 'no answer from off')\n"
    "sim.assert(quiet:dht().passive and quiet:dht().packets_out == 0, 'answer-only sends nothing')\n"
    "local ok, msg = quiet:dht_lookup(boot)\n"
    "sim.assert(ok == nil and msg:find('answer%-only'), 'answer-only cannot look up')\n"
    "sim.assert(off:dht_lookup(boot) == nil, 'off cannot look up')\n"
    "local got, got2\n"
    "local id = hs[1]:dht_lookup(hs[40], function(r) got = r end)\n"
    "sim.assert(math.type(id) == 'integer', 'lookup id')\n"
    "hs[2]:dht_lookup(hs[41]:id(), function(r) got2 = r end)\n"
    "sim.assert(got == nil, 'the callback waits for the lookup')\n"
    "sim.run(50)\n"
    "sim.assert(got and got.found and got.closest == hs[40]:id(), 'lookup by host')\n"
    "sim.assert(got.target == hs[40]:id() and got.results >= 1 and got.queries >= 1, 'fields')\n"
    "sim.assert(got2 and got2.found and got2.closest == hs[41]:id(), 'lookup by id')\n"
    "local st = sim.dht_stats()\n"
    "sim.assert(st.hosts == 52 and st.lookups_done == 2 and st.success_rate == 1, 'stats')\n"
    "sim.assert(st.table_min == 0 and st.table_max >= 8, 'lonely and quiet count')\n"
    "local s2 = sim.dht_stats(hs)\n"
    "sim.assert(s2.hosts == 49 and s2.table_min >= 8, 'stats over hosts')\n"
    "sim.result('dht', st)\n"
    "sim.result('table', hs[3]:dht_table())\n";

static void dht_fills_and_finds(void **state) {
  (void)state;
  char *a = NULL, *b = NULL;
  size_t la = 0, lb = 0;
  char err[1024];
  int rc = run_text(DHT, 11, &a, &la, err, sizeof err);
  if (rc != 0) fail_msg("run: %s", err);
  rc = run_text(DHT, 11, &b, &lb, err, sizeof err);
  if (rc != 0) fail_msg("run 2: %s", err);
  assert_int_equal(la, lb);
  assert_memory_equal(a, b, la);
  assert_non_null(strstr(a, "\"p99_hops\""));
  free(a);
  free(b);
}

/* Marcus et al.'s attack, small: 60 DHT-only sybils (overlay = false) on 2
 * IPs, counted as the attacker's. The default dht.lua keeps at most 10 per
 * /24 in the victim's table; examples/policies/dht-no-ip-limits lets them
 * take most of it. */
static const char *SYBILS =
    "sim.dht(true)\n"
    "sim.link{latency_ms = 40, jitter_ms = 20}\n"
    "local pol = sim.param('policies', 'x')\n"
    "local boot = sim.host{policies = pol}\n"
    "sim.hosts(10, {bootnodes = {boot}, policies = pol})\n"
    "local va = sim.host{bootnodes = {boot}, policies = pol}\n"
    "local vb = sim.host{bootnodes = {boot},\n"
    "                    policies = pol .. '/../examples/policies/dht-no-ip-limits'}\n"
    "local syb = {}\n"
    "for i = 1, 60 do\n"
    "  syb[i] = sim.attacker{ip = (i % 2 == 0) and '66.1.1.1' or '77.2.2.2', port = 30000 + i,\n"
    "                        overlay = false, bootnodes = {va, vb}}\n"
    "end\n"
    "sim.run(40)\n"
    "local function count(v)\n"
    "  local per, a = {}, 0\n"
    "  for _, e in ipairs(v:dht_table()) do\n"
    "    if e.attacker then\n"
    "      a = a + 1\n"
    "      local net = e.addr:match('^(%d+%.%d+%.%d+)%.')\n"
    "      per[net] = (per[net] or 0) + 1\n"
    "    end\n"
    "  end\n"
    "  sim.assert(a == v:dht().attackers, 'h:dht().attackers')\n"
    "  return a, per['66.1.1'] or 0, per['77.2.2'] or 0\n"
    "end\n"
    "local a, p1, p2 = count(va)\n"
    "sim.assert(a >= 2 and p1 <= 10 and p2 <= 10, 'default: ' .. a .. ' ' .. p1 .. ' ' .. p2)\n"
    "local b = count(vb)\n"
    "sim.assert(b > 20, 'no IP limits: ' .. b)\n"
    "sim.assert(syb[1]:dht().nodes > 0 and syb[1]:outbound() == 0 and syb[1]:inbound() == 0,\n"
    "           'sybils: DHT only')\n"
    "sim.assert(sim.dht_stats().hosts == 13, 'sybils are not counted')\n"
    "sim.result('default', a)\n"
    "sim.result('no_limits', b)\n";

static void dht_sybils_limited(void **state) {
  (void)state;
  char err[1024];
  int rc = run_text(SYBILS, 3, NULL, NULL, err, sizeof err);
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
      cmocka_unit_test(pool_answers_for_its_addresses),
      cmocka_unit_test(book_introspection),
      cmocka_unit_test(isolated_not_eclipsed),
      cmocka_unit_test(black_hole_times_out),
      cmocka_unit_test(graph_sample_known_graphs),
      cmocka_unit_test(diameter_sample_run),
      cmocka_unit_test(dht_fills_and_finds),
      cmocka_unit_test(dht_sybils_limited),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
