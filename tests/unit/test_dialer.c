/* Unit tests for dialer: limits, de-duplication, backoff, group spread,
 * inbound limits, persistent/unconditional peers, bootstrap, anchors and
 * feelers. Fixed seeds and a fake `now`; no sockets, no clocks. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>
#include <string.h>
#include <cmocka.h>

#include "dialer.h"
#include "err.h"

/* --- helpers ------------------------------------------------------------ */

static pd_netaddr_t A(const char *s) {
  pd_netaddr_t a;
  int rc = pd_netaddr_parse(s, PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, NULL);
  assert_int_equal(rc, 0);
  return a;
}

static pd_dial_target_t T(const char *s) {
  pd_dial_target_t t;
  memset(&t, 0, sizeof t);
  t.addr = A(s);
  return t;
}

static void make_id(uint8_t id[PD_NODE_ID_LEN], uint8_t v) {
  memset(id, v, PD_NODE_ID_LEN);
}

static pd_dial_target_t TI(const char *s, uint8_t idv) {
  pd_dial_target_t t = T(s);
  t.has_id = true;
  make_id(t.id, idv);
  return t;
}

/* A public address in its own /16: 20+i.i.0.1:7411 (distinct groups). */
static pd_dial_target_t pub(int i) {
  char buf[64];
  snprintf(buf, sizeof buf, "%d.%d.0.1:7411", 20 + i / 200, 1 + i % 200);
  return T(buf);
}

typedef struct fake_sel {
  pd_dial_target_t list[64];
  size_t n;
  pd_dial_target_t feelers[64];
  size_t nfeelers, feeler_next;
  size_t calls, feeler_calls;
} fake_sel_t;

static size_t fake_candidates(void *ud, size_t n, int64_t now, unsigned flags, pd_dial_target_t *out) {
  (void)now;
  fake_sel_t *f = ud;
  if (flags & PD_DIALER_WANT_FEELER) {
    f->feeler_calls++;
    size_t k = 0;
    while (k < n && f->feeler_next < f->nfeelers) out[k++] = f->feelers[f->feeler_next++];
    return k;
  }
  f->calls++;
  size_t k = f->n < n ? f->n : n;
  memcpy(out, f->list, k * sizeof *out);
  return k;
}

static pd_dialer_t *mk(pd_dialer_config_t *cfg, pd_rng_t *rng, uint64_t seed) {
  pd_rng_seed(rng, seed);
  pd_dialer_t *d = NULL;
  const char *why = NULL;
  int rc = pd_dialer_create(cfg, rng, &d, &why);
  if (rc) fprintf(stderr, "create: %s\n", why ? why : "?");
  assert_int_equal(rc, 0);
  assert_non_null(d);
  return d;
}

/* A config with feelers and bootstrap out of the way unless a test wants them. */
static void quiet_cfg(pd_dialer_config_t *c) {
  pd_dialer_config_default(c);
  c->feeler_interval = 0;
  c->min_outbound = 0;
}

static size_t count_kind(const pd_dial_action_t *a, size_t n, enum pd_dial_action_kind k) {
  size_t c = 0;
  for (size_t i = 0; i < n; i++) c += a[i].kind == k;
  return c;
}

/* --- tests -------------------------------------------------------------- */

static void concurrency_limit(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.dial_concurrency = 3;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 1);
  fake_sel_t sel = {0};
  for (int i = 0; i < 10; i++) sel.list[sel.n++] = pub(i);
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 1000, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 3);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(act[i].kind, PD_DIAL_ACT_DIAL);
    assert_int_equal(act[i].reason, PD_DIAL_REASON_SELECT);
    assert_true(pd_dialer_in_flight(d, &act[i].target.addr));
  }
  /* Nothing more while all three are in flight. */
  assert_int_equal(pd_dialer_tick(d, 1001, fake_candidates, &sel, act + 3, 13), 0);
  /* One finishes (fails): exactly one new dial, not the failed address. */
  pd_netaddr_t failed = act[0].target.addr;
  assert_int_equal(pd_dialer_on_dial_result(d, &failed, PD_DIAL_REFUSED, 1002), 0);
  n = pd_dialer_tick(d, 1002, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 1);
  assert_false(pd_netaddr_equal(&act[0].target.addr, &failed));
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.in_flight, 3);
  assert_int_equal(c.dials_started[PD_DIAL_REASON_SELECT], 4);
  assert_int_equal(c.dials[PD_DIAL_REFUSED], 1);
  /* A tiny action buffer is respected too. */
  assert_int_equal(pd_dialer_tick(d, 1003, fake_candidates, &sel, act, 0), 0);
  pd_dialer_destroy(d);
}

static void outbound_slots_limit(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.dial_concurrency = 10;
  cfg.max_outbound = 4;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 2);
  fake_sel_t sel = {0};
  for (int i = 0; i < 20; i++) sel.list[sel.n++] = pub(i);
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 10, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 4);
  for (size_t i = 0; i < n; i++) {
    assert_int_equal(pd_dialer_on_dial_result(d, &act[i].target.addr, PD_DIAL_OK, 11), 0);
    assert_int_equal(pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &act[i].target.addr, NULL, 11), 0);
  }
  assert_int_equal(pd_dialer_tick(d, 12, fake_candidates, &sel, act, 16), 0);
  pd_netaddr_t gone = act[2].target.addr;
  assert_int_equal(pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &gone, 500), 0);
  assert_int_equal(pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &gone, 500), PD_ENOENT);
  n = pd_dialer_tick(d, 501, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 1);
  pd_dialer_destroy(d);
}

static void inflight_dedup(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 3);
  fake_sel_t sel = {0};
  for (int i = 0; i < 5; i++) sel.list[sel.n++] = TI("9.1.2.3:7411", 0xAA);
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 1, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 1);
  assert_true(act[0].target.has_id);
  /* Same address again, and the same node ID at another address. */
  sel.n = 0;
  sel.list[sel.n++] = T("9.1.2.3:7411");
  sel.list[sel.n++] = TI("77.1.2.3:7411", 0xAA);
  assert_int_equal(pd_dialer_tick(d, 2, fake_candidates, &sel, act, 16), 0);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.in_flight, 1);
  assert_true(c.candidates_skipped >= 6);
  /* Once connected, still never dialled again. */
  pd_netaddr_t a = A("9.1.2.3:7411");
  uint8_t id[PD_NODE_ID_LEN];
  make_id(id, 0xAA);
  assert_int_equal(pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &a, id, 3), 0); /* implicit OK */
  assert_false(pd_dialer_in_flight(d, &a));
  assert_true(pd_dialer_is_connected_id(d, id));
  assert_int_equal(pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &a, id, 3), PD_EEXIST);
  assert_int_equal(pd_dialer_tick(d, 4, fake_candidates, &sel, act, 16), 0);
  assert_int_equal(pd_dialer_on_dial_result(d, &a, PD_DIAL_OK, 5), PD_ENOENT);
  pd_dialer_destroy(d);
}

static void backoff_grows_with_jitter_and_caps(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.retry_limit = 0; /* never give up: pure exponential */
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 4);
  pd_netaddr_t a = A("5.6.7.8:7411");
  int64_t now = 100000;
  bool saw_cap = false;
  for (uint32_t k = 1; k <= 20; k++) {
    assert_int_equal(pd_dialer_on_dial_result(d, &a, PD_DIAL_TIMEOUT, now), PD_ENOENT);
    assert_int_equal(pd_dialer_failures(d, &a), k);
    int64_t delay = pd_dialer_backoff_until(d, &a) - now;
    double raw = k > 12 ? 600.0 : (double)(1u << (k - 1));
    if (raw > 600) raw = 600;
    assert_true(delay >= 1);
    assert_true((double)delay >= raw * 0.8 - 1.0);
    assert_true((double)delay <= raw * 1.2 + 1.0);
    assert_true(delay <= 600);
    if (k >= 11) assert_true(delay >= 480);
    saw_cap |= delay == 600 || delay >= 480;
    now = pd_dialer_backoff_until(d, &a);
  }
  assert_true(saw_cap);
  /* Jitter really varies: the 7th failure (raw 64 s) over many addresses. */
  int64_t lo = INT64_MAX, hi = 0;
  for (int i = 0; i < 200; i++) {
    pd_netaddr_t b = pub(i).addr;
    for (int k = 0; k < 7; k++) pd_dialer_on_dial_result(d, &b, PD_DIAL_REFUSED, 0);
    int64_t delay = pd_dialer_backoff_until(d, &b);
    lo = delay < lo ? delay : lo;
    hi = delay > hi ? delay : hi;
  }
  /* Seven failures in a row at now = 0: the last one sets max(prev, 0 + ~64). */
  assert_true(lo >= 51 && hi <= 77);
  assert_true(hi - lo >= 10);
  pd_dialer_destroy(d);
}

static void retry_limit_long_pause(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.retry_limit = 10;
  cfg.giveup_pause = 3600;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 5);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = T("5.6.7.8:7411");
  pd_dial_action_t act[8];
  int64_t now = 0;
  for (int k = 1; k <= 10; k++) {
    /* Wait until the selection's pick is dialled again, then fail it. */
    size_t n = 0;
    int guard = 0;
    while ((n = pd_dialer_tick(d, now, fake_candidates, &sel, act, 8)) == 0) {
      now++;
      assert_true(++guard < 5000);
    }
    assert_int_equal(n, 1);
    assert_int_equal(pd_dialer_on_dial_result(d, &act[0].target.addr, PD_DIAL_REFUSED, now), 0);
    int64_t delay = pd_dialer_backoff_until(d, &act[0].target.addr) - now;
    if (k < 10) {
      assert_true(delay <= 308); /* 256 s * 1.2 */
    } else {
      assert_true(delay >= 2880 && delay <= 4320); /* the long pause, jittered */
    }
  }
  int64_t until = pd_dialer_backoff_until(d, &sel.list[0].addr);
  assert_int_equal(pd_dialer_tick(d, until - 1, fake_candidates, &sel, act, 8), 0);
  assert_int_equal(pd_dialer_tick(d, until, fake_candidates, &sel, act, 8), 1);
  pd_dialer_destroy(d);
}

static void success_resets_backoff(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 6);
  pd_netaddr_t a = A("5.6.7.8:7411");
  for (int k = 0; k < 6; k++) pd_dialer_on_dial_result(d, &a, PD_DIAL_UNREACHABLE, 0);
  assert_int_equal(pd_dialer_failures(d, &a), 6);
  assert_true(pd_dialer_backoff_until(d, &a) >= 25);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.backoff_entries, 1);
  pd_dialer_on_dial_result(d, &a, PD_DIAL_OK, 10);
  assert_int_equal(pd_dialer_failures(d, &a), 0);
  assert_int_equal(pd_dialer_backoff_until(d, &a), 0);
  pd_dialer_counters(d, &c);
  assert_int_equal(c.backoff_entries, 0);
  pd_dialer_on_dial_result(d, &a, PD_DIAL_UNREACHABLE, 20);
  assert_int_equal(pd_dialer_failures(d, &a), 1);
  assert_int_equal(pd_dialer_backoff_until(d, &a), 21);
  /* DUPLICATE is neutral. */
  pd_dialer_on_dial_result(d, &a, PD_DIAL_DUPLICATE, 30);
  assert_int_equal(pd_dialer_failures(d, &a), 1);
  pd_dialer_destroy(d);
}

static void backoff_table_bounded(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.backoff_max = 4;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 7);
  for (int i = 0; i < 50; i++) {
    pd_netaddr_t a = pub(i).addr;
    pd_dialer_on_dial_result(d, &a, PD_DIAL_REFUSED, i);
  }
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.backoff_entries, 4);
  pd_netaddr_t last = pub(49).addr;
  assert_int_equal(pd_dialer_failures(d, &last), 1);
  pd_dialer_destroy(d);
}

/* The backoff table's index by address follows every growth, swap-removal
 * (a success drops a record) and eviction (the table full). */
static void backoff_table_indexed(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.backoff_max = 300;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 9);
  enum { N = 400 };
  uint32_t want[N] = {0};
  for (int i = 0; i < 250; i++) {
    pd_netaddr_t a = pub(i).addr;
    for (int k = 0; k <= i % 3; k++) pd_dialer_on_dial_result(d, &a, PD_DIAL_REFUSED, i);
    want[i] = (uint32_t)(i % 3) + 1;
  }
  for (int i = 0; i < 250; i += 3) { /* every third succeeds: its record goes */
    pd_netaddr_t a = pub(i).addr;
    pd_dialer_on_dial_result(d, &a, PD_DIAL_OK, 300);
    want[i] = 0;
  }
  size_t held = 0;
  for (int i = 0; i < N; i++) {
    pd_netaddr_t a = pub(i).addr;
    assert_int_equal(pd_dialer_failures(d, &a), want[i]);
    held += want[i] != 0;
  }
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.backoff_entries, held);
  for (int i = 250; i < N; i++) { /* past backoff_max: records are evicted */
    pd_netaddr_t a = pub(i).addr;
    pd_dialer_on_dial_result(d, &a, PD_DIAL_REFUSED, 400 + i);
    want[i] = 1;
  }
  held = 0;
  for (int i = 0; i < N; i++) {
    pd_netaddr_t a = pub(i).addr;
    uint32_t f = pd_dialer_failures(d, &a);
    assert_true(f == 0 || f == want[i]);
    held += f != 0;
  }
  pd_dialer_counters(d, &c);
  assert_int_equal(c.backoff_entries, 300);
  assert_int_equal(held, 300);
  pd_netaddr_t last = pub(N - 1).addr;
  assert_int_equal(pd_dialer_failures(d, &last), 1);
  pd_dialer_destroy(d);
}

static void outbound_group_diversity(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.dial_concurrency = 8;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 8);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = T("1.2.3.4:7411");
  sel.list[sel.n++] = T("1.2.9.9:7411"); /* same /16 */
  sel.list[sel.n++] = T("5.6.7.8:7411");
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 1, fake_candidates, &sel, act, 16);
  assert_int_equal(n, 2);
  assert_true(pd_netaddr_equal(&act[0].target.addr, &sel.list[0].addr));
  assert_true(pd_netaddr_equal(&act[1].target.addr, &sel.list[2].addr));
  /* Connected outbound peers hold their group too. */
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &act[0].target.addr, NULL, 2);
  sel.n = 0;
  sel.list[sel.n++] = T("1.2.200.1:7411");
  assert_int_equal(pd_dialer_tick(d, 3, fake_candidates, &sel, act, 16), 0);
  /* An inbound peer does not. */
  pd_netaddr_t in = A("66.1.0.9:5555");
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &in, NULL, 3);
  sel.list[0] = T("66.1.7.7:7411");
  assert_int_equal(pd_dialer_tick(d, 4, fake_candidates, &sel, act, 16), 1);
  pd_dialer_destroy(d);

  /* Loopback test networks: unroutable without allow_private, distinct
   * /16 groups with it. */
  cfg.allow_private = true;
  d = mk(&cfg, &rng, 8);
  sel.n = 0;
  sel.list[sel.n++] = T("127.1.0.1:7411");
  sel.list[sel.n++] = T("127.2.0.1:7411");
  sel.list[sel.n++] = T("127.2.5.1:7411");
  assert_int_equal(pd_dialer_tick(d, 1, fake_candidates, &sel, act, 16), 2);
  pd_dialer_destroy(d);
}

static void inbound_limits(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.max_inbound = 5;
  cfg.max_inbound_per_ip = 2;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 9);
  pd_netaddr_t a1 = A("9.9.9.9:40001"), a2 = A("9.9.9.9:40002"), a3 = A("9.9.9.9:40003");
  assert_int_equal(pd_dialer_accept_inbound(d, &a1, NULL, 0), PD_INBOUND_ALLOW);
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &a1, NULL, 0);
  assert_int_equal(pd_dialer_accept_inbound(d, &a2, NULL, 0), PD_INBOUND_ALLOW);
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &a2, NULL, 0);
  assert_int_equal(pd_dialer_accept_inbound(d, &a3, NULL, 0), PD_INBOUND_PER_IP);
  assert_string_equal(pd_dialer_verdict_name(PD_INBOUND_PER_IP), "per_ip_limit");
  for (int i = 0; i < 3; i++) {
    pd_netaddr_t b = pub(i).addr;
    assert_int_equal(pd_dialer_accept_inbound(d, &b, NULL, 0), PD_INBOUND_ALLOW);
    pd_dialer_on_connected(d, PD_CONN_INBOUND, &b, NULL, 0);
  }
  pd_netaddr_t x = pub(100).addr;
  assert_int_equal(pd_dialer_accept_inbound(d, &x, NULL, 0), PD_INBOUND_FULL);
  assert_string_equal(pd_dialer_verdict_name(PD_INBOUND_FULL), "inbound_full");
  /* Outbound connections do not use inbound slots. */
  pd_netaddr_t o = pub(101).addr;
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o, NULL, 0);
  assert_int_equal(pd_dialer_accept_inbound(d, &x, NULL, 0), PD_INBOUND_FULL);
  pd_dialer_on_disconnected(d, PD_CONN_INBOUND, &a1, 10);
  assert_int_equal(pd_dialer_accept_inbound(d, &x, NULL, 10), PD_INBOUND_ALLOW);
  assert_int_equal(pd_dialer_accept_inbound(d, &a3, NULL, 10), PD_INBOUND_ALLOW);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.inbound[PD_INBOUND_FULL], 2);
  assert_int_equal(c.inbound[PD_INBOUND_PER_IP], 1);
  assert_int_equal(c.connected[PD_CONN_INBOUND], 4);
  assert_int_equal(c.connected[PD_CONN_OUTBOUND], 1);
  assert_int_equal(c.connections_closed[PD_CONN_INBOUND], 1);
  pd_dialer_destroy(d);
}

static void unconditional_exempt(void **state) {
  (void)state;
  uint8_t uncond[1][PD_NODE_ID_LEN], me[PD_NODE_ID_LEN], other[PD_NODE_ID_LEN];
  make_id(uncond[0], 0x11);
  make_id(me, 0x22);
  make_id(other, 0x33);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.max_inbound = 1;
  cfg.max_inbound_per_ip = 1;
  cfg.max_outbound = 1;
  cfg.unconditional_ids = (const uint8_t(*)[PD_NODE_ID_LEN])uncond;
  cfg.nunconditional = 1;
  cfg.has_self_id = true;
  memcpy(cfg.self_id, me, PD_NODE_ID_LEN);
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 10);
  pd_netaddr_t a = A("9.9.9.9:40001"), b = A("9.9.9.9:40002"), c = A("8.8.8.8:40002");
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &a, other, 0);
  assert_int_equal(pd_dialer_accept_inbound(d, &b, NULL, 0), PD_INBOUND_FULL);
  assert_int_equal(pd_dialer_accept_inbound(d, &b, uncond[0], 0), PD_INBOUND_ALLOW);
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &b, uncond[0], 0);
  assert_true(pd_dialer_is_unconditional(d, uncond[0]));
  assert_false(pd_dialer_is_unconditional(d, other));
  /* Self and duplicates are refused whatever the limits. */
  assert_int_equal(pd_dialer_accept_inbound(d, &c, me, 0), PD_INBOUND_SELF);
  assert_int_equal(pd_dialer_accept_inbound(d, &c, other, 0), PD_INBOUND_DUPLICATE);
  /* The unconditional peer uses no slot: after the ordinary one leaves,
   * one more ordinary inbound fits. */
  pd_dialer_on_disconnected(d, PD_CONN_INBOUND, &a, 1);
  assert_int_equal(pd_dialer_accept_inbound(d, &c, NULL, 1), PD_INBOUND_ALLOW);
  /* Outbound: an unconditional outbound peer leaves the one slot free. */
  pd_netaddr_t u = A("44.4.4.4:7411");
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &u, uncond[0], 1);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = pub(1);
  sel.list[sel.n++] = pub(2);
  pd_dial_action_t act[8];
  assert_int_equal(pd_dialer_tick(d, 2, fake_candidates, &sel, act, 8), 1);
  pd_dialer_destroy(d);
}

static void persistent_redialed_with_backoff(void **state) {
  (void)state;
  pd_endpoint_t ep;
  assert_int_equal(pd_endpoint_parse("0101010101010101010101010101010101010101@9.9.9.9:7411",
                                     PD_PARSE_ALLOW_ID, &ep, NULL),
                   0);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.persistent = &ep;
  cfg.npersistent = 1;
  cfg.max_outbound = 2;
  cfg.persistent_backoff_cap = 60;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 11);
  fake_sel_t sel = {0};
  for (int i = 0; i < 5; i++) sel.list[sel.n++] = pub(i);
  /* Fill the outbound slots first with ordinary peers. */
  pd_dial_action_t act[8];
  for (int i = 0; i < 2; i++) pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &sel.list[i].addr, NULL, 0);
  size_t n = pd_dialer_tick(d, 0, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1); /* persistent ignores the outbound limit */
  assert_int_equal(act[0].reason, PD_DIAL_REASON_PERSISTENT);
  assert_true(act[0].target.has_id);
  assert_int_equal(act[0].target.id[0], 0x01);
  pd_netaddr_t p = act[0].target.addr;
  /* Failures back off, capped at the persistent cap, never giving up. */
  int64_t now = 0;
  for (int k = 0; k < 25; k++) {
    pd_dialer_on_dial_result(d, &p, PD_DIAL_REFUSED, now);
    int64_t until = pd_dialer_backoff_until(d, &p);
    assert_true(until - now <= 60);
    assert_int_equal(pd_dialer_tick(d, until - 1, fake_candidates, &sel, act, 8), 0);
    n = pd_dialer_tick(d, until, fake_candidates, &sel, act, 8);
    assert_int_equal(n, 1);
    assert_int_equal(act[0].reason, PD_DIAL_REASON_PERSISTENT);
    now = until;
  }
  assert_true(pd_dialer_backoff_until(d, &p) - now >= 0);
  /* Connected: not dialled. */
  pd_dialer_on_dial_result(d, &p, PD_DIAL_OK, now);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &p, ep.id, now);
  assert_int_equal(pd_dialer_tick(d, now + 1, fake_candidates, &sel, act, 8), 0);
  /* Persistent peers are not anchors. */
  pd_dial_target_t anc[8];
  assert_int_equal(pd_dialer_anchors(d, anc, 8), 2);
  /* It drops after 5 s (a flap): redialled only after a backoff. */
  now += 5;
  pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &p, now);
  int64_t until = pd_dialer_backoff_until(d, &p);
  assert_true(until > now);
  assert_int_equal(pd_dialer_tick(d, now, fake_candidates, &sel, act, 8), 0);
  n = pd_dialer_tick(d, until, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].reason, PD_DIAL_REASON_PERSISTENT);
  /* Flaps accumulate even though each dial succeeds. */
  int64_t prev_delay = 0, delay = 0;
  for (int k = 0; k < 4; k++) {
    now = pd_dialer_backoff_until(d, &p);
    pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &p, ep.id, now);
    pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &p, now + 1);
    prev_delay = delay;
    delay = pd_dialer_backoff_until(d, &p) - (now + 1);
  }
  assert_true(delay > prev_delay);
  /* A stable connection resets that: the redial comes after ~backoff_base. */
  now = pd_dialer_backoff_until(d, &p);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &p, ep.id, now);
  pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &p, now + 600);
  assert_true(pd_dialer_backoff_until(d, &p) - (now + 600) <= 2);
  /* Inbound from the persistent peer's ID counts as connected. */
  pd_netaddr_t in = A("9.9.9.9:50000");
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &in, ep.id, now + 600);
  assert_int_equal(pd_dialer_tick(d, now + 700, NULL, NULL, act, 8), 0);
  pd_dialer_destroy(d);
}

static void persistent_respects_concurrency(void **state) {
  (void)state;
  pd_endpoint_t eps[5];
  for (int i = 0; i < 5; i++) {
    char buf[64];
    snprintf(buf, sizeof buf, "%d.9.9.9:7411", 60 + i);
    assert_int_equal(pd_endpoint_parse(buf, 0, &eps[i], NULL), 0);
  }
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.persistent = eps;
  cfg.npersistent = 5;
  cfg.dial_concurrency = 2;
  cfg.max_outbound = 1;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 19);
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 0, NULL, NULL, act, 16);
  assert_int_equal(n, 2);
  assert_int_equal(pd_dialer_tick(d, 1, NULL, NULL, act, 16), 0);
  /* Both connect: the other three follow, two then one, past max_outbound. */
  pd_netaddr_t a0 = act[0].target.addr, a1 = act[1].target.addr;
  pd_dialer_on_dial_result(d, &a0, PD_DIAL_OK, 2);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &a0, NULL, 2);
  pd_dialer_on_dial_result(d, &a1, PD_DIAL_OK, 2);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &a1, NULL, 2);
  n = pd_dialer_tick(d, 2, NULL, NULL, act, 16);
  assert_int_equal(n, 2);
  for (size_t i = 0; i < n; i++) {
    pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &act[i].target.addr, NULL, 3);
  }
  assert_int_equal(pd_dialer_tick(d, 3, NULL, NULL, act, 16), 1);
  pd_dialer_destroy(d);
}

static void persistent_hostname_resolved(void **state) {
  (void)state;
  pd_endpoint_t ep;
  assert_int_equal(pd_endpoint_parse("peer.example.org:7411", PD_PARSE_ALLOW_HOSTNAME, &ep, NULL), 0);
  assert_false(ep.is_ip);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.persistent = &ep;
  cfg.npersistent = 1;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 12);
  pd_dial_action_t act[8];
  size_t n = pd_dialer_tick(d, 0, NULL, NULL, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].kind, PD_DIAL_ACT_RESOLVE);
  assert_int_equal(act[0].reason, PD_DIAL_REASON_PERSISTENT);
  assert_string_equal(pd_dialer_endpoint(d, act[0].reason, act[0].index)->host, "peer.example.org");
  assert_null(pd_dialer_endpoint(d, PD_DIAL_REASON_PERSISTENT, 5));
  /* Pending: not asked again until resolved or timed out. */
  assert_int_equal(pd_dialer_tick(d, 1, NULL, NULL, act, 8), 0);
  pd_netaddr_t r = A("7.7.7.7");
  assert_int_equal(pd_dialer_on_resolved(d, PD_DIAL_REASON_PERSISTENT, 0, &r, 1, 2), 0);
  assert_int_equal(pd_dialer_on_resolved(d, PD_DIAL_REASON_PERSISTENT, 1, &r, 1, 2), PD_ERANGE);
  n = pd_dialer_tick(d, 2, NULL, NULL, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].kind, PD_DIAL_ACT_DIAL);
  assert_true(pd_netaddr_same_ip(&act[0].target.addr, &r));
  assert_int_equal(act[0].target.addr.port, 7411); /* the endpoint's port */
  assert_int_equal(act[0].reason, PD_DIAL_REASON_PERSISTENT);
  pd_dialer_destroy(d);
}

static void bootstrap_below_minimum_rate_limited(void **state) {
  (void)state;
  pd_endpoint_t seeds[2];
  assert_int_equal(pd_endpoint_parse("8.8.4.4:7411", 0, &seeds[0], NULL), 0);
  assert_int_equal(pd_endpoint_parse("seed.example.org:7411", PD_PARSE_ALLOW_HOSTNAME, &seeds[1], NULL), 0);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.min_outbound = 2;
  cfg.seeds = seeds;
  cfg.nseeds = 2;
  cfg.bootstrap_interval = 10;
  cfg.bootstrap_interval_cap = 300;
  cfg.bootstrap_retry = 10; /* rounds 10 s apart, doubling (the default is 1 s) */
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 13);
  pd_dial_action_t act[16];
  size_t n = pd_dialer_tick(d, 0, NULL, NULL, act, 16);
  assert_int_equal(n, 3);
  assert_int_equal(act[0].kind, PD_DIAL_ACT_BOOTSTRAP);
  assert_int_equal(act[1].kind, PD_DIAL_ACT_DIAL);
  assert_int_equal(act[1].reason, PD_DIAL_REASON_SEED);
  assert_true(pd_netaddr_equal(&act[1].target.addr, &seeds[0].addr));
  assert_int_equal(act[2].kind, PD_DIAL_ACT_RESOLVE);
  assert_int_equal(act[2].reason, PD_DIAL_REASON_SEED);
  assert_int_equal(act[2].index, 1);
  pd_netaddr_t res[2] = {A("31.1.1.1"), A("31.2.2.2:7500")};
  assert_int_equal(pd_dialer_on_resolved(d, PD_DIAL_REASON_SEED, 1, res, 2, 1), 0);
  n = pd_dialer_tick(d, 1, NULL, NULL, act, 16);
  assert_int_equal(n, 2);
  assert_int_equal(act[0].reason, PD_DIAL_REASON_SEED);
  assert_int_equal(act[0].target.addr.port, 7411);
  assert_int_equal(act[1].target.addr.port, 7500);
  /* Every dial fails from now on; bootstraps keep coming, ever rarer. */
  pd_netaddr_t seed_addrs[3] = {seeds[0].addr, res[0], res[1]};
  seed_addrs[1].port = 7411;
  for (int i = 0; i < 3; i++) pd_dialer_on_dial_result(d, &seed_addrs[i], PD_DIAL_REFUSED, 1);
  int64_t last = 0, prev_gap = 0;
  int boots = 1;
  for (int64_t t = 2; t < 3000; t++) {
    n = pd_dialer_tick(d, t, NULL, NULL, act, 16);
    for (size_t i = 0; i < n; i++) {
      if (act[i].kind == PD_DIAL_ACT_DIAL) pd_dialer_on_dial_result(d, &act[i].target.addr, PD_DIAL_REFUSED, t);
      if (act[i].kind == PD_DIAL_ACT_RESOLVE) pd_dialer_on_resolved(d, act[i].reason, act[i].index, res, 2, t);
    }
    if (count_kind(act, n, PD_DIAL_ACT_BOOTSTRAP)) {
      int64_t gap = t - last;
      if (boots == 1) assert_true(gap >= 8 && gap <= 12);
      assert_true(gap >= 8 && gap <= 300);
      if (prev_gap && prev_gap < 200) assert_true(gap > prev_gap);
      prev_gap = gap;
      last = t;
      boots++;
    }
  }
  assert_true(boots >= 8 && boots <= 20);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.bootstraps, (uint64_t)boots);
  /* Reaching the minimum stops bootstrapping, dropping below restarts it
   * (with the backoff reset). */
  pd_netaddr_t o1 = pub(1).addr, o2 = pub(2).addr;
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o1, NULL, 3000);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o2, NULL, 3000);
  size_t total = 0;
  for (int64_t t = 3000; t < 4000; t++) {
    n = pd_dialer_tick(d, t, NULL, NULL, act, 16);
    total += count_kind(act, n, PD_DIAL_ACT_BOOTSTRAP);
  }
  assert_int_equal(total, 0);
  pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &o2, 4000);
  n = pd_dialer_tick(d, 4000, NULL, NULL, act, 16);
  assert_int_equal(count_kind(act, n, PD_DIAL_ACT_BOOTSTRAP), 1);
  pd_dialer_destroy(d);
}

static void bootstrap_waits_for_dials_in_flight(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.min_outbound = 4;
  cfg.bootstrap_interval = 10;
  cfg.inflight_timeout = 0;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 14);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = pub(1);
  pd_dial_action_t act[8];
  size_t n = pd_dialer_tick(d, 0, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].kind, PD_DIAL_ACT_DIAL);
  for (int64_t t = 1; t < 10; t++) assert_int_equal(pd_dialer_tick(d, t, fake_candidates, &sel, act, 8), 0);
  n = pd_dialer_tick(d, 10, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].kind, PD_DIAL_ACT_BOOTSTRAP);
  pd_dialer_destroy(d);
}

/* A node with nothing to dial (every seed refused it) asks its seeds again
 * about a second later by default, then ever more rarely: round gaps 1, 2,
 * 4, ... s (jittered), never above the cap, far more often than the old
 * fixed 10 s start only in the first minute. */
static void bootstrap_retry_starts_at_a_second(void **state) {
  (void)state;
  pd_endpoint_t seeds[3];
  const char *txt[3] = {"8.8.4.4:7411", "9.9.9.9:7411", "1.1.1.1:7411"};
  for (int i = 0; i < 3; i++) assert_int_equal(pd_endpoint_parse(txt[i], 0, &seeds[i], NULL), 0);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.min_outbound = 1;
  cfg.seeds = seeds;
  cfg.nseeds = 3;
  assert_int_equal(cfg.bootstrap_retry, 1);
  assert_int_equal(cfg.bootstrap_interval, 10);
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 21);
  pd_dial_action_t act[16];
  int64_t rounds[16];
  size_t nr = 0;
  for (int64_t t = 0; t < 200 && nr < 16; t++) {
    size_t n = pd_dialer_tick(d, t, NULL, NULL, act, 16);
    if (count_kind(act, n, PD_DIAL_ACT_BOOTSTRAP)) rounds[nr++] = t;
    for (size_t i = 0; i < n; i++)
      if (act[i].kind == PD_DIAL_ACT_DIAL) pd_dialer_on_dial_result(d, &act[i].target.addr, PD_DIAL_REFUSED, t);
  }
  assert_true(nr >= 6);
  assert_int_equal(rounds[0], 0);
  assert_true(rounds[1] >= 1 && rounds[1] <= 2); /* was 8..12 with the 10 s start */
  for (size_t i = 2; i < nr; i++) {
    int64_t gap = rounds[i] - rounds[i - 1], prev = rounds[i - 1] - rounds[i - 2];
    assert_true(gap <= 300);
    if (prev < 100) assert_true(gap >= prev); /* doubling (jitter never undoes it) */
  }
  assert_true(rounds[nr - 1] - rounds[nr - 2] >= 16); /* and it does grow */
  pd_dialer_destroy(d);
}

/* Each round queues the seeds in a random order: nodes started together do
 * not all dial the first configured seeds (whose handshake slots then
 * refuse most of them) and leave the others idle. */
static void seeds_shuffled_per_round(void **state) {
  (void)state;
  pd_endpoint_t seeds[4];
  const char *txt[4] = {"8.8.4.4:7411", "9.9.9.9:7411", "1.1.1.1:7411", "4.4.2.2:7411"};
  for (int i = 0; i < 4; i++) assert_int_equal(pd_endpoint_parse(txt[i], 0, &seeds[i], NULL), 0);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.min_outbound = 1;
  cfg.dial_concurrency = 1;
  cfg.seeds = seeds;
  cfg.nseeds = 4;
  int first[4] = {0, 0, 0, 0};
  for (uint64_t k = 0; k < 40; k++) {
    pd_rng_t rng;
    pd_dialer_t *d = mk(&cfg, &rng, 100 + k);
    pd_dial_action_t act[8];
    size_t n = pd_dialer_tick(d, 0, NULL, NULL, act, 8);
    assert_int_equal(count_kind(act, n, PD_DIAL_ACT_DIAL), 1);
    int seen[4] = {0, 0, 0, 0};
    /* the round dials each seed once, one at a time */
    for (int step = 0; step < 4; step++) {
      size_t j = 0;
      while (j < n && act[j].kind != PD_DIAL_ACT_DIAL) j++;
      assert_true(j < n);
      int which = -1;
      for (int i = 0; i < 4; i++)
        if (pd_netaddr_equal(&act[j].target.addr, &seeds[i].addr)) which = i;
      assert_true(which >= 0);
      if (step == 0) first[which]++;
      seen[which]++;
      pd_dialer_on_dial_result(d, &act[j].target.addr, PD_DIAL_REFUSED, 0);
      n = pd_dialer_tick(d, 0, NULL, NULL, act, 8);
    }
    for (int i = 0; i < 4; i++) assert_int_equal(seen[i], 1);
    pd_dialer_destroy(d);
  }
  for (int i = 0; i < 4; i++) assert_true(first[i] >= 4); /* 10 expected each */
}

/* One seed's handshake done: the round's other queued seeds are not
 * dialled (a bootstrap costs the seeds a handshake or a few, not one per
 * configured seed); those in flight finish; the next round asks again. */
static void seed_answer_ends_the_round(void **state) {
  (void)state;
  pd_endpoint_t seeds[5];
  const char *txt[5] = {"8.8.4.4:7411", "9.9.9.9:7411", "1.1.1.1:7411", "4.4.2.2:7411",
                        "5.5.5.5:7411"};
  for (int i = 0; i < 5; i++) assert_int_equal(pd_endpoint_parse(txt[i], 0, &seeds[i], NULL), 0);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.min_outbound = 2;
  cfg.dial_concurrency = 2;
  cfg.seeds = seeds;
  cfg.nseeds = 5;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 22);
  pd_dial_action_t act[8];
  size_t n = pd_dialer_tick(d, 0, NULL, NULL, act, 8);
  assert_int_equal(count_kind(act, n, PD_DIAL_ACT_DIAL), 2);
  pd_netaddr_t a = act[1].target.addr, b = act[2].target.addr;
  /* The first refuses: the next queued seed takes its slot. */
  pd_dialer_on_dial_result(d, &a, PD_DIAL_REFUSED, 0);
  n = pd_dialer_tick(d, 0, NULL, NULL, act, 8);
  assert_int_equal(count_kind(act, n, PD_DIAL_ACT_DIAL), 1);
  pd_netaddr_t c = act[0].target.addr;
  /* The second answers: the two seeds still queued are dropped. */
  assert_int_equal(pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &b, NULL, 0), 0);
  assert_int_equal(pd_dialer_on_dial_result(d, &c, PD_DIAL_REFUSED, 0), 0);
  for (int64_t t = 0; t < 1; t++) {
    n = pd_dialer_tick(d, t, NULL, NULL, act, 8);
    assert_int_equal(count_kind(act, n, PD_DIAL_ACT_DIAL), 0);
  }
  pd_dialer_counters_t cn;
  pd_dialer_counters(d, &cn);
  assert_int_equal(cn.dials_started[PD_DIAL_REASON_SEED], 3);
  /* Still below the minimum with nothing in flight: a later round asks the
   * seeds again (the one that answered is connected, so not redialled). */
  size_t seed_dials = 0;
  for (int64_t t = 1; t < 20 && seed_dials == 0; t++) {
    n = pd_dialer_tick(d, t, NULL, NULL, act, 8);
    for (size_t i = 0; i < n; i++) {
      if (act[i].kind != PD_DIAL_ACT_DIAL) continue;
      assert_int_equal(act[i].reason, PD_DIAL_REASON_SEED);
      assert_false(pd_netaddr_equal(&act[i].target.addr, &b));
      seed_dials++;
    }
  }
  assert_true(seed_dials > 0);
  pd_dialer_destroy(d);
}

static void anchors_dialed_first(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.dial_concurrency = 3;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 15);
  /* Last run: three outbound peers, a feeler, an inbound. */
  pd_dial_target_t prev[3] = {TI("41.1.1.1:7411", 1), TI("42.1.1.1:7411", 2), TI("43.1.1.1:7411", 3)};
  for (int i = 0; i < 3; i++) pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &prev[i].addr, prev[i].id, 0);
  pd_netaddr_t f = A("44.1.1.1:7411"), in = A("45.1.1.1:5000");
  pd_dialer_on_connected(d, PD_CONN_FEELER, &f, NULL, 0);
  pd_dialer_on_connected(d, PD_CONN_INBOUND, &in, NULL, 0);
  pd_dial_target_t saved[8];
  assert_int_equal(pd_dialer_anchors(d, saved, 2), 3); /* count beyond cap */
  assert_int_equal(pd_dialer_anchors(d, saved, 8), 3);
  for (int i = 0; i < 3; i++) {
    assert_true(pd_netaddr_equal(&saved[i].addr, &prev[i].addr)); /* oldest first */
    assert_true(saved[i].has_id);
    assert_memory_equal(saved[i].id, prev[i].id, PD_NODE_ID_LEN);
  }
  pd_dialer_destroy(d);

  /* Next run. */
  d = mk(&cfg, &rng, 15);
  pd_dialer_set_anchors(d, saved, 3);
  fake_sel_t sel = {0};
  for (int i = 0; i < 5; i++) sel.list[sel.n++] = pub(i);
  pd_dial_action_t act[8];
  size_t n = pd_dialer_tick(d, 0, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 3);
  for (int i = 0; i < 3; i++) {
    assert_int_equal(act[i].reason, PD_DIAL_REASON_ANCHOR);
    assert_true(pd_netaddr_equal(&act[i].target.addr, &saved[i].addr));
    assert_true(act[i].target.has_id);
  }
  assert_int_equal(sel.calls, 0); /* the selection was not even asked */
  /* Anchors are tried once: a failed one is not retried as an anchor. */
  pd_dialer_on_dial_result(d, &saved[0].addr, PD_DIAL_REFUSED, 1);
  n = pd_dialer_tick(d, 5, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  assert_int_equal(act[0].reason, PD_DIAL_REASON_SELECT);
  pd_dialer_destroy(d);
}

/* min = max = 2 outbound, a feeler every ~120 s (jitter 0.2), 64 feeler
 * candidates in sel. */
static pd_dialer_t *feeler_dialer(pd_rng_t *rng, uint64_t seed, fake_sel_t *sel) {
  pd_dialer_config_t cfg;
  pd_dialer_config_default(&cfg);
  cfg.min_outbound = 2;
  cfg.max_outbound = 2;
  cfg.feeler_interval = 120;
  cfg.backoff_jitter = 0.2;
  for (int i = 0; i < 64; i++) sel->feelers[sel->nfeelers++] = pub(100 + i);
  return mk(&cfg, rng, seed);
}

static void feeler_cadence(void **state) {
  (void)state;
  pd_rng_t rng;
  fake_sel_t sel = {0};
  pd_dialer_t *d = feeler_dialer(&rng, 16, &sel);
  pd_dial_action_t act[8];
  /* Below the minimum: no feelers (bootstraps instead). */
  for (int64_t t = 0; t < 400; t++) {
    size_t n = pd_dialer_tick(d, t, fake_candidates, &sel, act, 8);
    assert_int_equal(count_kind(act, n, PD_DIAL_ACT_FEELER), 0);
  }
  assert_int_equal(sel.feeler_calls, 0);
  pd_netaddr_t o1 = pub(1).addr, o2 = pub(2).addr;
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o1, NULL, 400);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o2, NULL, 400);
  int64_t last = -1;
  int feelers = 0;
  for (int64_t t = 400; t < 400 + 2400; t++) {
    size_t n = pd_dialer_tick(d, t, fake_candidates, &sel, act, 8);
    for (size_t i = 0; i < n; i++) {
      assert_int_equal(act[i].kind, PD_DIAL_ACT_FEELER);
      assert_int_equal(act[i].reason, PD_DIAL_REASON_FEELER);
      if (last >= 0) {
        int64_t gap = t - last;
        assert_true(gap >= 96 && gap <= 144);
      }
      last = t;
      feelers++;
      /* The feeler connects, completes its handshake and is closed. */
      pd_dialer_on_dial_result(d, &act[i].target.addr, PD_DIAL_OK, t);
      pd_dialer_on_connected(d, PD_CONN_FEELER, &act[i].target.addr, NULL, t);
      pd_dialer_on_disconnected(d, PD_CONN_FEELER, &act[i].target.addr, t);
    }
  }
  assert_true(feelers >= 16 && feelers <= 25);
  /* Feelers are not anchors and use no outbound slot. */
  assert_int_equal(pd_dialer_anchors(d, NULL, 0), 2);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.dials_started[PD_DIAL_REASON_FEELER], (uint64_t)feelers);
  assert_int_equal(c.connections_opened[PD_CONN_FEELER], (uint64_t)feelers);
  pd_dialer_destroy(d);
}

static void one_feeler_at_a_time(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.feeler_interval = 60;
  cfg.inflight_timeout = 0; /* never expire: the feeler stays in flight */
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 17);
  fake_sel_t sel = {0};
  for (int i = 0; i < 64; i++) sel.feelers[sel.nfeelers++] = pub(i);
  pd_dial_action_t act[8];
  size_t feelers = 0;
  for (int64_t t = 0; t < 1000; t++) {
    size_t n = pd_dialer_tick(d, t, fake_candidates, &sel, act, 8);
    feelers += count_kind(act, n, PD_DIAL_ACT_FEELER);
  }
  assert_int_equal(feelers, 1);
  pd_dialer_destroy(d);
}

static void inflight_timeout_and_self(void **state) {
  (void)state;
  pd_netaddr_t me = A("50.0.0.1:7411");
  uint8_t myid[PD_NODE_ID_LEN];
  make_id(myid, 0x5E);
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.inflight_timeout = 60;
  cfg.self_addrs = &me;
  cfg.nself_addrs = 1;
  cfg.has_self_id = true;
  memcpy(cfg.self_id, myid, PD_NODE_ID_LEN);
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 18);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = T("50.0.0.1:7411");       /* our listen address */
  sel.list[sel.n++] = TI("51.0.0.1:7411", 0x5E); /* our node ID */
  sel.list[sel.n++] = T("52.0.0.1:7411");
  pd_dial_action_t act[8];
  size_t n = pd_dialer_tick(d, 0, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  pd_netaddr_t x = act[0].target.addr;
  assert_true(pd_netaddr_equal(&x, &sel.list[2].addr));
  /* Never reported: after inflight_timeout it is a timeout with backoff. */
  assert_int_equal(pd_dialer_tick(d, 59, fake_candidates, &sel, act, 8), 0);
  assert_true(pd_dialer_in_flight(d, &x));
  assert_int_equal(pd_dialer_tick(d, 60, fake_candidates, &sel, act, 8), 0);
  assert_false(pd_dialer_in_flight(d, &x));
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.dials[PD_DIAL_TIMEOUT], 1);
  assert_int_equal(pd_dialer_failures(d, &x), 1);
  /* A dial that reached ourselves teaches the address. */
  n = pd_dialer_tick(d, 100, fake_candidates, &sel, act, 8);
  assert_int_equal(n, 1);
  pd_dialer_on_dial_result(d, &x, PD_DIAL_SELF, 100);
  for (int64_t t = 101; t < 5000; t += 50) assert_int_equal(pd_dialer_tick(d, t, fake_candidates, &sel, act, 8), 0);
  pd_dialer_destroy(d);
}

static void config_validation_and_names(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  pd_rng_t rng;
  pd_rng_seed(&rng, 1);
  pd_dialer_t *d = (pd_dialer_t *)&cfg;
  const char *why = NULL;
  pd_dialer_config_default(&cfg);
  cfg.dial_concurrency = 0;
  assert_int_equal(pd_dialer_create(&cfg, &rng, &d, &why), PD_EINVAL);
  assert_null(d);
  assert_non_null(why);
  pd_dialer_config_default(&cfg);
  cfg.backoff_jitter = 1.5;
  assert_int_equal(pd_dialer_create(&cfg, &rng, &d, &why), PD_EINVAL);
  pd_dialer_config_default(&cfg);
  cfg.nseeds = 3; /* without a list */
  assert_int_equal(pd_dialer_create(&cfg, &rng, &d, &why), PD_EINVAL);
  pd_dialer_config_default(&cfg);
  assert_int_equal(pd_dialer_create(&cfg, NULL, &d, &why), PD_EINVAL);

  uint8_t priv[2][PD_NODE_ID_LEN], other[PD_NODE_ID_LEN];
  make_id(priv[0], 1);
  make_id(priv[1], 2);
  make_id(other, 3);
  cfg.private_ids = (const uint8_t(*)[PD_NODE_ID_LEN])priv;
  cfg.nprivate = 2;
  d = mk(&cfg, &rng, 1);
  assert_true(pd_dialer_is_private(d, priv[1]));
  assert_false(pd_dialer_is_private(d, other));
  pd_dialer_destroy(d);
  pd_dialer_destroy(NULL);

  assert_string_equal(pd_dialer_outcome_name(PD_DIAL_OK), "ok");
  assert_string_equal(pd_dialer_outcome_name(PD_DIAL_ID_MISMATCH), "id_mismatch");
  assert_string_equal(pd_dialer_outcome_name(PD_DIAL_OUTCOME_COUNT), "unknown");
  assert_string_equal(pd_dialer_dir_name(PD_CONN_OUTBOUND), "outbound");
  assert_string_equal(pd_dialer_reason_name(PD_DIAL_REASON_ANCHOR), "anchor");
  assert_string_equal(pd_dialer_verdict_name(PD_INBOUND_ALLOW), "allow");
}

static void deterministic_given_seed(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.retry_limit = 0;
  pd_rng_t r1, r2;
  pd_dialer_t *d1 = mk(&cfg, &r1, 99), *d2 = mk(&cfg, &r2, 99);
  int differ_from_first = 0;
  int64_t first = -1;
  for (int i = 0; i < 50; i++) {
    pd_netaddr_t a = pub(i).addr;
    for (int k = 0; k < 8; k++) {
      pd_dialer_on_dial_result(d1, &a, PD_DIAL_REFUSED, 0);
      pd_dialer_on_dial_result(d2, &a, PD_DIAL_REFUSED, 0);
    }
    int64_t u = pd_dialer_backoff_until(d1, &a);
    assert_int_equal(u, pd_dialer_backoff_until(d2, &a));
    if (first < 0) first = u;
    differ_from_first += u != first;
  }
  assert_true(differ_from_first > 0);
  pd_dialer_destroy(d1);
  pd_dialer_destroy(d2);
}


/* A driver that sleeps until pd_dialer_next_deadline sees exactly the
 * actions of one that ticks every second (the lab vs the daemon): below the
 * minimum (bootstrap rounds), then full (feelers only), with the same
 * events at the same times; and it ticks far less often. */
typedef struct rec {
  int64_t t;
  int kind;
  pd_netaddr_t addr;
} rec_t;

static size_t drive(bool every_second, rec_t *out, size_t cap, size_t *ticks) {
  pd_rng_t rng;
  fake_sel_t sel = {0};
  pd_dialer_t *d = feeler_dialer(&rng, 23, &sel);
  pd_dial_action_t act[8];
  size_t nrec = 0;
  *ticks = 0;
  const int64_t connect_at = 400, end = 3000;
  int64_t t = 0;
  while (t < end) {
    if (t == connect_at) {
      pd_netaddr_t o1 = pub(1).addr, o2 = pub(2).addr;
      pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o1, NULL, t);
      pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &o2, NULL, t);
    }
    size_t n = pd_dialer_tick(d, t, fake_candidates, &sel, act, 8);
    (*ticks)++;
    for (size_t i = 0; i < n; i++) {
      assert_true(nrec < cap);
      out[nrec].t = t;
      out[nrec].kind = (int)act[i].kind;
      out[nrec].addr = act[i].target.addr;
      nrec++;
      if (act[i].kind == PD_DIAL_ACT_FEELER) {
        pd_dialer_on_dial_result(d, &act[i].target.addr, PD_DIAL_OK, t);
        pd_dialer_on_connected(d, PD_CONN_FEELER, &act[i].target.addr, NULL, t);
        pd_dialer_on_disconnected(d, PD_CONN_FEELER, &act[i].target.addr, t);
      }
    }
    int64_t next = t + 1;
    if (!every_second) {
      next = pd_dialer_next_deadline(d, t);
      assert_true(next >= t);
      if (next <= t) next = t + 1;
      if (t < connect_at && next > connect_at) next = connect_at;
    }
    t = next;
  }
  pd_dialer_destroy(d);
  return nrec;
}

static void next_deadline_sleep_equals_ticking(void **state) {
  (void)state;
  static rec_t a[512], b[512];
  size_t ta = 0, tb = 0;
  size_t na = drive(true, a, 512, &ta);
  size_t nb = drive(false, b, 512, &tb);
  assert_int_equal(na, nb);
  size_t feelers = 0, boots = 0;
  for (size_t i = 0; i < na; i++) {
    assert_int_equal(a[i].t, b[i].t);
    assert_int_equal(a[i].kind, b[i].kind);
    assert_true(pd_netaddr_equal(&a[i].addr, &b[i].addr));
    feelers += a[i].kind == PD_DIAL_ACT_FEELER;
    boots += a[i].kind == PD_DIAL_ACT_BOOTSTRAP;
  }
  assert_true(feelers >= 16);  /* the run did exercise both phases */
  assert_true(boots >= 2);
  assert_int_equal(ta, 3000);
  /* Below the minimum the selection is asked every second (400 ticks);
   * once full it sleeps from feeler to feeler (~2 ticks per 120 s). */
  assert_true(tb < 400 + 60);
}

static void next_deadline_cases(void **state) {
  (void)state;
  pd_dialer_config_t cfg;
  quiet_cfg(&cfg);
  cfg.max_outbound = 1;
  cfg.inflight_timeout = 30;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 5);
  /* A free outbound slot: the selection is asked at every tick. */
  assert_int_equal(pd_dialer_next_deadline(d, 100), 100);
  fake_sel_t sel = {0};
  sel.list[sel.n++] = pub(1);
  pd_dial_action_t act[4];
  size_t n = pd_dialer_tick(d, 100, fake_candidates, &sel, act, 4);
  assert_int_equal(count_kind(act, n, PD_DIAL_ACT_DIAL), 1);
  /* The slot is taken by the dial in flight: next is its timeout. */
  assert_int_equal(pd_dialer_next_deadline(d, 101), 130);
  pd_netaddr_t a1 = pub(1).addr;
  pd_dialer_on_dial_result(d, &a1, PD_DIAL_OK, 105);
  pd_dialer_on_connected(d, PD_CONN_OUTBOUND, &a1, NULL, 105);
  /* Full, no feelers, no minimum: nothing will ever be due. */
  assert_int_equal(pd_dialer_next_deadline(d, 106), INT64_MAX);
  /* A close frees the slot: due at once. */
  pd_dialer_on_disconnected(d, PD_CONN_OUTBOUND, &a1, 200);
  assert_int_equal(pd_dialer_next_deadline(d, 200), 200);
  assert_int_equal(pd_dialer_next_deadline(NULL, 5), INT64_MAX);
  pd_dialer_destroy(d);
}

/* max_outbound 0 is "dialling off": over six virtual hours with persistent
 * peers (by address and by name), seeds (by address and by name), anchors,
 * a selection full of candidates, feelers on and a minimum of outbound
 * peers asked for, the dialer emits no action at all — not at start, not
 * after an inbound peer connects and leaves, not when asked early. */
static void dialling_off_never_dials(void **state) {
  (void)state;
  pd_endpoint_t pers[2], seeds[2];
  assert_int_equal(pd_endpoint_parse("9.9.9.9:7411", 0, &pers[0], NULL), 0);
  assert_int_equal(pd_endpoint_parse("peer.example.org:7411", PD_PARSE_ALLOW_HOSTNAME, &pers[1], NULL), 0);
  assert_int_equal(pd_endpoint_parse("8.8.4.4:7411", 0, &seeds[0], NULL), 0);
  assert_int_equal(pd_endpoint_parse("seed.example.org:7411", PD_PARSE_ALLOW_HOSTNAME, &seeds[1], NULL), 0);
  pd_dialer_config_t cfg;
  pd_dialer_config_default(&cfg); /* feelers every 120 s, bootstrap below 4 */
  cfg.max_outbound = 0;
  cfg.persistent = pers;
  cfg.npersistent = 2;
  cfg.seeds = seeds;
  cfg.nseeds = 2;
  pd_rng_t rng;
  pd_dialer_t *d = mk(&cfg, &rng, 41);
  pd_dial_target_t anchors[2] = {T("5.5.5.5:7411"), T("6.6.6.6:7411")};
  pd_dialer_set_anchors(d, anchors, 2);
  fake_sel_t sel = {0};
  for (int i = 0; i < 20; i++) sel.list[sel.n++] = pub(i);
  for (int i = 0; i < 4; i++) sel.feelers[sel.nfeelers++] = pub(40 + i);
  pd_dial_action_t act[16];
  size_t total = 0;
  int64_t t = 1000;
  pd_netaddr_t in = pub(90).addr;
  for (int step = 0; step < 6 * 360; step++, t += 10) { /* 6 h in 10 s ticks */
    if (step == 100) assert_int_equal(pd_dialer_on_connected(d, PD_CONN_INBOUND, &in, NULL, t), 0);
    if (step == 200) assert_int_equal(pd_dialer_on_disconnected(d, PD_CONN_INBOUND, &in, t), 0);
    total += pd_dialer_tick(d, t, fake_candidates, &sel, act, 16);
    assert_int_equal(pd_dialer_next_deadline(d, t), INT64_MAX);
  }
  assert_int_equal(total, 0);
  assert_int_equal(sel.calls, 0);
  assert_int_equal(sel.feeler_calls, 0);
  pd_dialer_counters_t c;
  pd_dialer_counters(d, &c);
  assert_int_equal(c.bootstraps, 0);
  for (int r = 0; r < PD_DIAL_REASON_COUNT; r++) assert_int_equal(c.dials_started[r], 0);
  pd_dialer_destroy(d);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(concurrency_limit),
      cmocka_unit_test(outbound_slots_limit),
      cmocka_unit_test(inflight_dedup),
      cmocka_unit_test(backoff_grows_with_jitter_and_caps),
      cmocka_unit_test(retry_limit_long_pause),
      cmocka_unit_test(success_resets_backoff),
      cmocka_unit_test(backoff_table_bounded),
      cmocka_unit_test(backoff_table_indexed),
      cmocka_unit_test(outbound_group_diversity),
      cmocka_unit_test(inbound_limits),
      cmocka_unit_test(unconditional_exempt),
      cmocka_unit_test(persistent_redialed_with_backoff),
      cmocka_unit_test(persistent_respects_concurrency),
      cmocka_unit_test(persistent_hostname_resolved),
      cmocka_unit_test(bootstrap_below_minimum_rate_limited),
      cmocka_unit_test(bootstrap_waits_for_dials_in_flight),
      cmocka_unit_test(bootstrap_retry_starts_at_a_second),
      cmocka_unit_test(seeds_shuffled_per_round),
      cmocka_unit_test(seed_answer_ends_the_round),
      cmocka_unit_test(anchors_dialed_first),
      cmocka_unit_test(feeler_cadence),
      cmocka_unit_test(one_feeler_at_a_time),
      cmocka_unit_test(inflight_timeout_and_self),
      cmocka_unit_test(config_validation_and_names),
      cmocka_unit_test(deterministic_given_seed),
      cmocka_unit_test(next_deadline_sleep_equals_ticking),
      cmocka_unit_test(next_deadline_cases),
      cmocka_unit_test(dialling_off_never_dials),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
