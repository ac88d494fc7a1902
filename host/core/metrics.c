/* metrics — fixed registry and Prometheus text rendering. See metrics.h. */
#include "metrics.h"

#include <inttypes.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "err.h"

#ifndef PEERD_VERSION
#define PEERD_VERSION "unknown"
#endif

static const char *const event_names[PD_METRICS_EV_COUNT] = {
    "attempt", "connected", "good", "failed", "misbehaved", "disconnected",
};

static const char *const ban_cause_names[PD_METRICS_BAN_COUNT] = {
    "api", "reputation", "wire", "pex", "record",
};

void pd_metrics_init(pd_metrics_t *m) { memset(m, 0, sizeof(*m)); }

void pd_metrics_count_ban(pd_metrics_t *m, enum pd_metrics_ban_cause cause) {
  if ((int)cause >= 0 && cause < PD_METRICS_BAN_COUNT) m->bans_added[cause]++;
}

const char *pd_metrics_ban_cause_name(enum pd_metrics_ban_cause cause) {
  if ((int)cause < 0 || cause >= PD_METRICS_BAN_COUNT) return NULL;
  return ban_cause_names[cause];
}

void pd_metrics_count_request(pd_metrics_t *m, int status) {
  if (status >= PD_METRICS_CODE_MIN && status <= PD_METRICS_CODE_MAX) {
    m->api_requests[status - PD_METRICS_CODE_MIN]++;
  } else {
    m->api_requests_other++;
  }
}

uint64_t pd_metrics_requests(const pd_metrics_t *m, int status) {
  if (status >= PD_METRICS_CODE_MIN && status <= PD_METRICS_CODE_MAX) {
    return m->api_requests[status - PD_METRICS_CODE_MIN];
  }
  return m->api_requests_other;
}

void pd_metrics_count_save(pd_metrics_t *m, int ok, int64_t now) {
  if (ok) {
    m->saves_ok++;
    m->last_save_ok_at = now;
  } else {
    m->saves_error++;
  }
}

void pd_metrics_count_load_error(pd_metrics_t *m) { m->load_errors++; }

void pd_metrics_count_load_skipped(pd_metrics_t *m, size_t n) { m->load_skipped_entries += n; }

void pd_metrics_count_event(pd_metrics_t *m, enum pd_metrics_event ev) {
  if ((int)ev >= 0 && ev < PD_METRICS_EV_COUNT) m->events[ev]++;
}

void pd_metrics_count_policy_reload(pd_metrics_t *m, int ok) {
  if (ok) {
    m->policy_reloads_ok++;
  } else {
    m->policy_reloads_error++;
  }
}

const char *pd_metrics_event_name(enum pd_metrics_event ev) {
  if ((int)ev < 0 || ev >= PD_METRICS_EV_COUNT) return NULL;
  return event_names[ev];
}

/* A growable text buffer; `failed` sticks after the first allocation error. */
typedef struct buf {
  char *p;
  size_t len, cap;
  int failed;
} buf_t;

static void put(buf_t *b, const char *fmt, ...) __attribute__((format(printf, 2, 3)));

static void put(buf_t *b, const char *fmt, ...) {
  if (b->failed) return;
  for (;;) {
    va_list ap;
    va_start(ap, fmt);
    int n = vsnprintf(b->p + b->len, b->cap - b->len, fmt, ap);
    va_end(ap);
    if (n < 0) {
      b->failed = 1;
      return;
    }
    if ((size_t)n < b->cap - b->len) {
      b->len += (size_t)n;
      return;
    }
    size_t ncap = b->cap * 2;
    while (ncap - b->len <= (size_t)n) ncap *= 2;
    char *np = realloc(b->p, ncap);
    if (!np) {
      b->failed = 1;
      return;
    }
    b->p = np;
    b->cap = ncap;
  }
}

static void family(buf_t *b, const char *name, const char *type, const char *help) {
  put(b, "# HELP %s %s\n# TYPE %s %s\n", name, help, name, type);
}

/* Label values escape backslash, double quote and newline. */
static void put_label_value(buf_t *b, const char *s) {
  for (; *s; s++) {
    if (*s == '\\') put(b, "\\\\");
    else if (*s == '"') put(b, "\\\"");
    else if (*s == '\n') put(b, "\\n");
    else put(b, "%c", *s);
  }
}

/* `name{hook="H"` for hook h, the caller closes the label set. */
static void hook_series(buf_t *b, const pd_metrics_gauges_t *g, const char *name, size_t h) {
  put(b, "%s{hook=\"", name);
  put_label_value(b, g->policy_hook_names[h] ? g->policy_hook_names[h] : "?");
  put(b, "\"");
}

/* The families of policies under load: breakers, skipped calls, call
 * latency, shadow comparisons. */
static void render_policy_load(buf_t *b, const pd_metrics_gauges_t *g) {
  const pd_metrics_policy_load_t *l = g->policy_load;
  bool ok = l && g->policy_hook_names;
  family(b, "peerd_policy_hook_tripped", "gauge",
         "1 while a policy hook's circuit breaker is open (it failed too many times in a row; "
         "the built-in default decides until the next reload), by hook.");
  for (size_t h = 0; ok && l->tripped && h < g->policy_hooks; h++) {
    hook_series(b, g, "peerd_policy_hook_tripped", h);
    put(b, "} %" PRIu64 "\n", l->tripped[h]);
  }
  family(b, "peerd_policy_hook_consecutive_failures", "gauge",
         "Failures in a row of a policy hook now (0: its last call did not fail), by hook.");
  for (size_t h = 0; ok && l->consecutive && h < g->policy_hooks; h++) {
    hook_series(b, g, "peerd_policy_hook_consecutive_failures", h);
    put(b, "} %" PRIu64 "\n", l->consecutive[h]);
  }
  family(b, "peerd_policy_skipped_total", "counter",
         "Policy hook calls not run (the built-in default decided), by hook and reason: "
         "tripped breaker or spent request budget.");
  for (size_t h = 0; ok && l->skipped && l->skip_names && h < g->policy_hooks; h++) {
    for (size_t r = 0; r < l->nskip; r++) {
      hook_series(b, g, "peerd_policy_skipped_total", h);
      put(b, ",reason=\"");
      put_label_value(b, l->skip_names[r] ? l->skip_names[r] : "?");
      put(b, "\"} %" PRIu64 "\n", l->skipped[h * l->nskip + r]);
    }
  }
  family(b, "peerd_policy_call_seconds", "histogram",
         "Wall-clock time of the policy hook calls that ran, by hook.");
  for (size_t h = 0; ok && l->buckets && l->bounds && l->sum && h < g->policy_hooks; h++) {
    const uint64_t *bk = &l->buckets[h * (l->nbuckets + 1)];
    for (size_t i = 0; i <= l->nbuckets; i++) {
      hook_series(b, g, "peerd_policy_call_seconds_bucket", h);
      if (i < l->nbuckets)
        put(b, ",le=\"%.9g\"} %" PRIu64 "\n", l->bounds[i], bk[i]);
      else
        put(b, ",le=\"+Inf\"} %" PRIu64 "\n", bk[i]);
    }
    hook_series(b, g, "peerd_policy_call_seconds_sum", h);
    put(b, "} %.9f\n", l->sum[h]);
    hook_series(b, g, "peerd_policy_call_seconds_count", h);
    put(b, "} %" PRIu64 "\n", bk[l->nbuckets]);
  }
  family(b, "peerd_policy_shadow_calls_total", "counter",
         "Decisions the shadow policy set was asked about, by hook and result: agree, disagree "
         "(with the live set), error (the shadow's call failed).");
  for (size_t h = 0; ok && l->shadow_calls && l->result_names && h < g->policy_hooks; h++) {
    for (size_t r = 0; r < l->nresults; r++) {
      hook_series(b, g, "peerd_policy_shadow_calls_total", h);
      put(b, ",result=\"");
      put_label_value(b, l->result_names[r] ? l->result_names[r] : "?");
      put(b, "\"} %" PRIu64 "\n", l->shadow_calls[h * l->nresults + r]);
    }
  }
}
/* The DHT's families (docs/metrics.md, "DHT"). */
static void render_dht(buf_t *b, const pd_metrics_dht_t *d) {
  static const char *const kinds[3] = {"message", "whoareyou", "handshake"};
  static const char *const types[4] = {"ping", "pong", "findnode", "nodes"};
  family(b, "peerd_dht_table_nodes", "gauge", "Nodes in the DHT routing table's buckets.");
  put(b, "peerd_dht_table_nodes %" PRIu64 "\n", d->table_nodes);
  family(b, "peerd_dht_table_replacements", "gauge", "Nodes in the buckets' replacement caches.");
  put(b, "peerd_dht_table_replacements %" PRIu64 "\n", d->table_replacements);
  family(b, "peerd_dht_sessions", "gauge", "DHT sessions (node id, endpoint) with keys.");
  put(b, "peerd_dht_sessions %" PRIu64 "\n", d->sessions);
  family(b, "peerd_dht_requests_pending", "gauge", "DHT requests sent and not yet answered.");
  put(b, "peerd_dht_requests_pending %" PRIu64 "\n", d->requests_out);
  family(b, "peerd_dht_lookups_running", "gauge", "DHT lookups in progress.");
  put(b, "peerd_dht_lookups_running %" PRIu64 "\n", d->lookups_running);
  family(b, "peerd_dht_packets_total", "counter", "DHT datagrams received (in) and sent (out), by kind.");
  for (int dir = 0; dir < 2; dir++)
    for (int k = 0; k < 3; k++)
      put(b, "peerd_dht_packets_total{direction=\"%s\",kind=\"%s\"} %" PRIu64 "\n",
          dir ? "out" : "in", kinds[k], dir ? d->packets_out[k] : d->packets_in[k]);
  family(b, "peerd_dht_bytes_total", "counter", "DHT datagram bytes received (in) and sent (out).");
  put(b, "peerd_dht_bytes_total{direction=\"in\"} %" PRIu64 "\n", d->bytes_in);
  put(b, "peerd_dht_bytes_total{direction=\"out\"} %" PRIu64 "\n", d->bytes_out);
  family(b, "peerd_dht_messages_total", "counter", "DHT messages opened (in) and sealed (out), by type.");
  for (int dir = 0; dir < 2; dir++)
    for (int t = 0; t < 4; t++)
      put(b, "peerd_dht_messages_total{direction=\"%s\",type=\"%s\"} %" PRIu64 "\n",
          dir ? "out" : "in", types[t], dir ? d->msgs_out[t] : d->msgs_in[t]);
  family(b, "peerd_dht_rejected_total", "counter", "DHT packets, messages and records refused, by reason.");
  for (size_t i = 1; d->reason_names && d->rejected && i < d->nreasons; i++) {
    put(b, "peerd_dht_rejected_total{reason=\"");
    put_label_value(b, d->reason_names[i]);
    put(b, "\"} %" PRIu64 "\n", d->rejected[i]);
  }
  family(b, "peerd_dht_handshakes_total", "counter", "DHT handshakes, by result.");
  put(b, "peerd_dht_handshakes_total{result=\"ok\"} %" PRIu64 "\n", d->handshakes_ok);
  put(b, "peerd_dht_handshakes_total{result=\"failed\"} %" PRIu64 "\n", d->handshakes_failed);
  family(b, "peerd_dht_requests_total", "counter", "DHT requests sent (PING, FINDNODE).");
  put(b, "peerd_dht_requests_total %" PRIu64 "\n", d->requests);
  family(b, "peerd_dht_request_timeouts_total", "counter", "DHT requests that got no answer in time.");
  put(b, "peerd_dht_request_timeouts_total %" PRIu64 "\n", d->timeouts);
  family(b, "peerd_dht_lookups_total", "counter",
         "DHT lookups started, finished, and finished having found their target's record.");
  put(b, "peerd_dht_lookups_total{result=\"started\"} %" PRIu64 "\n", d->lookups_started);
  put(b, "peerd_dht_lookups_total{result=\"done\"} %" PRIu64 "\n", d->lookups_done);
  put(b, "peerd_dht_lookups_total{result=\"found\"} %" PRIu64 "\n", d->lookups_found);
  family(b, "peerd_dht_lookup_hops_total", "counter",
         "Hops of finished DHT lookups, summed (divide by lookups done for the mean).");
  put(b, "peerd_dht_lookup_hops_total %" PRIu64 "\n", d->lookup_hops_sum);
  family(b, "peerd_dht_records_found_total", "counter", "Verified node records the DHT learnt.");
  put(b, "peerd_dht_records_found_total %" PRIu64 "\n", d->records_found);
  family(b, "peerd_dht_table_changes_total", "counter",
         "Routing table changes: nodes added, removed (failed pings), refused (dht.lua admit).");
  put(b, "peerd_dht_table_changes_total{change=\"added\"} %" PRIu64 "\n", d->table_added);
  put(b, "peerd_dht_table_changes_total{change=\"removed\"} %" PRIu64 "\n", d->table_removed);
  put(b, "peerd_dht_table_changes_total{change=\"refused\"} %" PRIu64 "\n", d->table_refused);
}


int pd_metrics_render(const pd_metrics_t *m, const pd_metrics_gauges_t *g, const char *version,
                      char **out, size_t *len) {
  buf_t b = {.p = malloc(4096), .len = 0, .cap = 4096, .failed = 0};
  if (!b.p) return PD_ENOMEM;
  b.p[0] = '\0';

  family(&b, "peerd_build_info", "gauge", "peerd build information; always 1.");
  put(&b, "peerd_build_info{version=\"");
  put_label_value(&b, version ? version : PEERD_VERSION);
  put(&b, "\"} 1\n");

  family(&b, "peerd_uptime_seconds", "gauge", "Seconds since peerd started.");
  put(&b, "peerd_uptime_seconds %" PRId64 "\n", g->uptime);

  family(&b, "peerd_api_requests_total", "counter",
         "Control API responses sent, by HTTP status code.");
  for (int c = PD_METRICS_CODE_MIN; c <= PD_METRICS_CODE_MAX; c++) {
    uint64_t v = m->api_requests[c - PD_METRICS_CODE_MIN];
    if (v) put(&b, "peerd_api_requests_total{code=\"%d\"} %" PRIu64 "\n", c, v);
  }
  if (m->api_requests_other) {
    put(&b, "peerd_api_requests_total{code=\"other\"} %" PRIu64 "\n", m->api_requests_other);
  }

  family(&b, "peerd_events_total", "counter", "Peer events reported through the API, by type.");
  for (int e = 0; e < PD_METRICS_EV_COUNT; e++) {
    put(&b, "peerd_events_total{event=\"%s\"} %" PRIu64 "\n", event_names[e], m->events[e]);
  }

  family(&b, "peerd_book_saves_total", "counter", "Address book saves, by result.");
  put(&b, "peerd_book_saves_total{result=\"ok\"} %" PRIu64 "\n", m->saves_ok);
  put(&b, "peerd_book_saves_total{result=\"error\"} %" PRIu64 "\n", m->saves_error);

  family(&b, "peerd_book_last_save_timestamp_seconds", "gauge",
         "Unix time of the last successful address book save (0 = never).");
  put(&b, "peerd_book_last_save_timestamp_seconds %" PRId64 "\n", m->last_save_ok_at);

  family(&b, "peerd_book_load_errors_total", "counter",
         "Saved address books that could not be loaded (moved aside).");
  put(&b, "peerd_book_load_errors_total %" PRIu64 "\n", m->load_errors);

  family(&b, "peerd_book_load_skipped_entries_total", "counter",
         "Entries skipped one by one while loading the address book.");
  put(&b, "peerd_book_load_skipped_entries_total %" PRIu64 "\n", m->load_skipped_entries);

  family(&b, "peerd_book_entries", "gauge", "Entries in the address book, by table.");
  put(&b, "peerd_book_entries{table=\"new\"} %zu\n", g->book_new);
  put(&b, "peerd_book_entries{table=\"tried\"} %zu\n", g->book_tried);

  family(&b, "peerd_book_tried_collisions", "gauge",
         "Pending tried-table collisions (test-before-evict).");
  put(&b, "peerd_book_tried_collisions %zu\n", g->collisions);

  family(&b, "peerd_book_memory_bytes", "gauge", "Heap bytes held by the address book.");
  put(&b, "peerd_book_memory_bytes %zu\n", g->book_memory);

  family(&b, "peerd_bans", "gauge", "Active bans (addresses and subnets).");
  put(&b, "peerd_bans %zu\n", g->bans);

  family(&b, "peerd_bans_total", "counter",
         "Bans added or renewed, by cause: api (POST /v1/bans), reputation (an event the node "
         "reported), wire, pex, record (an overlay peer's misbehaviour).");
  for (int c = 0; c < PD_METRICS_BAN_COUNT; c++) {
    put(&b, "peerd_bans_total{cause=\"%s\"} %" PRIu64 "\n", ban_cause_names[c], m->bans_added[c]);
  }

  family(&b, "peerd_policy_failures_total", "counter",
         "Policy hook calls that failed and fell back to the built-in default, by hook and "
         "reason.");
  if (g->policy_failures && g->policy_hook_names && g->policy_reason_names) {
    for (size_t h = 0; h < g->policy_hooks; h++) {
      for (size_t r = 0; r < g->policy_reasons; r++) {
        put(&b, "peerd_policy_failures_total{hook=\"");
        put_label_value(&b, g->policy_hook_names[h] ? g->policy_hook_names[h] : "?");
        put(&b, "\",reason=\"");
        put_label_value(&b, g->policy_reason_names[r] ? g->policy_reason_names[r] : "?");
        put(&b, "\"} %" PRIu64 "\n", g->policy_failures[h * g->policy_reasons + r]);
      }
    }
  }

  family(&b, "peerd_policy_reloads_total", "counter", "Policy set loads, by result.");
  put(&b, "peerd_policy_reloads_total{result=\"ok\"} %" PRIu64 "\n", m->policy_reloads_ok);
  put(&b, "peerd_policy_reloads_total{result=\"error\"} %" PRIu64 "\n", m->policy_reloads_error);

  family(&b, "peerd_policy_memory_bytes", "gauge", "Bytes held by the policy set's Lua state.");
  put(&b, "peerd_policy_memory_bytes %zu\n", g->policy_memory);

  family(&b, "peerd_policy_generation", "gauge",
         "Generation of the policy set in force (increments on every successful load).");
  put(&b, "peerd_policy_generation %" PRIu64 "\n", g->policy_generation);

  render_policy_load(&b, g);

  const pd_metrics_net_t *net = g->net;
  family(&b, "peerd_connections", "gauge", "Peer connections open now, by direction.");
  put(&b, "peerd_connections{direction=\"inbound\"} %" PRIu64 "\n",
      net ? net->connections_inbound : 0);
  put(&b, "peerd_connections{direction=\"outbound\"} %" PRIu64 "\n",
      net ? net->connections_outbound : 0);

  family(&b, "peerd_dials_total", "counter", "Outbound dials that ended, by outcome.");
  if (net && net->dial_names && net->dials) {
    for (size_t i = 0; i < net->ndials; i++) {
      if (!net->dial_names[i]) continue;
      put(&b, "peerd_dials_total{outcome=\"");
      put_label_value(&b, net->dial_names[i]);
      put(&b, "\"} %" PRIu64 "\n", net->dials[i]);
    }
  }

  family(&b, "peerd_frames_total", "counter",
         "Peer protocol frames received (in) and sent (out), by message type.");
  if (net && net->type_names && net->frames_in && net->frames_out) {
    for (int dir = 0; dir < 2; dir++) {
      const uint64_t *v = dir == 0 ? net->frames_in : net->frames_out;
      for (size_t i = 0; i < net->ntypes; i++) {
        if (!net->type_names[i]) continue;
        put(&b, "peerd_frames_total{direction=\"%s\",type=\"", dir == 0 ? "in" : "out");
        put_label_value(&b, net->type_names[i]);
        put(&b, "\"} %" PRIu64 "\n", v[i]);
      }
    }
  }

  family(&b, "peerd_wire_rejected_total", "counter",
         "Peer connections closed because their input was rejected, by reason.");
  if (net && net->reason_names && net->rejected) {
    for (size_t i = 0; i < net->nreasons; i++) {
      if (!net->reason_names[i]) continue;
      put(&b, "peerd_wire_rejected_total{reason=\"");
      put_label_value(&b, net->reason_names[i]);
      put(&b, "\"} %" PRIu64 "\n", net->rejected[i]);
    }
  }

  family(&b, "peerd_records", "gauge", "Other nodes' signed records kept now.");
  put(&b, "peerd_records %zu\n", g->records);
  family(&b, "peerd_records_memory_bytes", "gauge", "Heap bytes the kept records hold.");
  put(&b, "peerd_records_memory_bytes %zu\n", g->records_memory);
  family(&b, "peerd_record_sequence", "gauge", "Sequence number of this node's own record.");
  put(&b, "peerd_record_sequence %" PRIu64 "\n", g->self_seq);
  family(&b, "peerd_records_total", "counter",
         "Peers' records received valid: learnt (new or newer) or stale (older, or a conflict).");
  put(&b, "peerd_records_total{result=\"learnt\"} %" PRIu64 "\n", net ? net->records_learnt : 0);
  put(&b, "peerd_records_total{result=\"stale\"} %" PRIu64 "\n", net ? net->records_stale : 0);
  family(&b, "peerd_record_announcements_total", "counter",
         "ADDRs sent to peers carrying a new version of this node's record.");
  put(&b, "peerd_record_announcements_total %" PRIu64 "\n", net ? net->records_announced : 0);
  family(&b, "peerd_pex_addresses_total", "counter",
         "Addresses received from peers (after the rate limit), and of those added new to the book "
         "or refused (pex.lua or the book).");
  put(&b, "peerd_pex_addresses_total{result=\"received\"} %" PRIu64 "\n", net ? net->addrs_received : 0);
  put(&b, "peerd_pex_addresses_total{result=\"added\"} %" PRIu64 "\n", net ? net->addrs_added : 0);
  put(&b, "peerd_pex_addresses_total{result=\"refused\"} %" PRIu64 "\n", net ? net->addrs_refused : 0);
  family(&b, "peerd_bootstraps_total", "counter",
         "Bootstrap rounds (seeds dialled because outbound peers were too few).");
  put(&b, "peerd_bootstraps_total %" PRIu64 "\n", net ? net->bootstraps : 0);
  family(&b, "peerd_seed_crawls_total", "counter", "Seed mode: crawls completed (seed_done).");
  put(&b, "peerd_seed_crawls_total %" PRIu64 "\n", net ? net->seed_crawls : 0);
  family(&b, "peerd_inbound_evictions_total", "counter",
         "Inbound peers evicted (closed \"evicted\") to make room for a newcomer.");
  put(&b, "peerd_inbound_evictions_total %" PRIu64 "\n", net ? net->inbound_evictions : 0);
  if (g->dht) render_dht(&b, g->dht);
  family(&b, "peerd_outbound_below_minimum", "gauge",
         "1 while outbound peers have stayed below --min-outbound for --below-min-warn seconds.");
  put(&b, "peerd_outbound_below_minimum %d\n", net && net->below_min ? 1 : 0);
  if (net && net->has_process) {
    family(&b, "process_cpu_seconds_total", "counter", "Total user and system CPU time spent in seconds.");
    put(&b, "process_cpu_seconds_total %.3f\n", net->process_cpu_seconds);
    family(&b, "process_resident_memory_bytes", "gauge", "Resident memory size in bytes.");
    put(&b, "process_resident_memory_bytes %" PRIu64 "\n", net->process_rss_bytes);
    family(&b, "process_open_fds", "gauge", "Number of open file descriptors.");
    put(&b, "process_open_fds %" PRIu64 "\n", net->process_open_fds);
    family(&b, "process_max_fds", "gauge", "Maximum number of open file descriptors.");
    put(&b, "process_max_fds %" PRIu64 "\n", net->process_max_fds);
    family(&b, "process_start_time_seconds", "gauge",
           "Start time of the process since unix epoch in seconds.");
    put(&b, "process_start_time_seconds %.3f\n", net->process_start_time);
  }
  if (net && net->nkinds) {
    family(&b, "peerd_audit_events_total", "counter",
           "Audit events (GET /v1/events/stream and the log), by kind.");
    for (size_t k = 0; k < net->nkinds; k++) {
      if (!net->kind_names[k]) continue;
      put(&b, "peerd_audit_events_total{kind=\"");
      put_label_value(&b, net->kind_names[k]);
      put(&b, "\"} %" PRIu64 "\n", net->kind_counts[k]);
    }
    family(&b, "peerd_event_streams", "gauge", "Event streams (GET /v1/events/stream) open.");
    put(&b, "peerd_event_streams %" PRIu64 "\n", net->event_streams);
    family(&b, "peerd_event_streams_dropped_total", "counter",
           "Event streams closed because the client did not keep up.");
    put(&b, "peerd_event_streams_dropped_total %" PRIu64 "\n", net->event_streams_dropped);
  }
  if (net && net->api_nbounds) {
    family(&b, "peerd_api_request_seconds", "histogram",
           "API request latency, from a whole request to its response being written, by route.");
    for (size_t r = 0; r < net->api_nroutes; r++) {
      const char *route = net->api_routes[r] ? net->api_routes[r] : "other";
      for (size_t i = 0; i <= net->api_nbounds; i++) {
        put(&b, "peerd_api_request_seconds_bucket{route=\"");
        put_label_value(&b, route);
        if (i < net->api_nbounds) {
          put(&b, "\",le=\"%g\"} %" PRIu64 "\n", net->api_bounds[i],
              net->api_buckets[r * net->api_nbounds + i]);
        } else {
          put(&b, "\",le=\"+Inf\"} %" PRIu64 "\n", net->api_count[r]);
        }
      }
      put(&b, "peerd_api_request_seconds_sum{route=\"");
      put_label_value(&b, route);
      put(&b, "\"} %.6f\n", net->api_sum[r]);
      put(&b, "peerd_api_request_seconds_count{route=\"");
      put_label_value(&b, route);
      put(&b, "\"} %" PRIu64 "\n", net->api_count[r]);
    }
  }

  if (b.failed) {
    free(b.p);
    return PD_ENOMEM;
  }
  *out = b.p;
  *len = b.len;
  return 0;
}
