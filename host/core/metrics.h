/* metrics — peerd's fixed registry of Prometheus counters and gauges.
 *
 * Owns: the counters the node keeps (API responses by status code, book
 * saves by result, load errors, entries skipped at load, events by type,
 * last successful save time, policy reloads by result, bans added by cause) and the rendering of every family
 * (including the network families whose values the driver passes in
 * pd_metrics_net_t: connections, dials, frames, wire rejections, and the
 * policies-under-load families of pd_metrics_policy_load_t: tripped hooks,
 * skipped calls, the call latency histogram, shadow comparisons), counters,
 * point-in-time gauges and histograms alike, as Prometheus text exposition format 0.0.4
 * (# HELP and # TYPE for each family; counters end in _total).
 * Does not own: where the gauge values come from (the caller reads the book
 * and the clock and passes a pd_metrics_gauges_t) nor HTTP (api.c serves
 * the text at GET /metrics). No globals: a pd_metrics_t lives inside
 * pd_node_t; it is a plain struct, zeroed by pd_metrics_init.
 */
#ifndef PD_METRICS_H
#define PD_METRICS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

/* HTTP status codes 100..599 are counted one by one. */
#define PD_METRICS_CODE_MIN 100
#define PD_METRICS_CODE_MAX 599

/* Content-Type of the rendered text. */
#define PD_METRICS_CONTENT_TYPE "text/plain; version=0.0.4; charset=utf-8"

/* Events a node reports through POST /v1/events (label event="..."). */
enum pd_metrics_event {
  PD_METRICS_EV_ATTEMPT = 0,
  PD_METRICS_EV_CONNECTED,
  PD_METRICS_EV_GOOD,
  PD_METRICS_EV_FAILED,
  PD_METRICS_EV_MISBEHAVED,
  PD_METRICS_EV_DISCONNECTED,
  PD_METRICS_EV_COUNT
};

/* Who added a ban (label cause="..." of peerd_bans_total). */
enum pd_metrics_ban_cause {
  PD_METRICS_BAN_API = 0,    /* POST /v1/bans */
  PD_METRICS_BAN_REPUTATION, /* the verdict on an event the node reported (POST /v1/events) */
  PD_METRICS_BAN_WIRE,       /* an overlay peer broke the protocol (handshake, frames, pings) */
  PD_METRICS_BAN_PEX,        /* an overlay peer flooded GETADDR or ADDR */
  PD_METRICS_BAN_RECORD,     /* an overlay peer passed on an invalid node record */
  PD_METRICS_BAN_COUNT
};

typedef struct pd_metrics {
  uint64_t api_requests[PD_METRICS_CODE_MAX - PD_METRICS_CODE_MIN + 1];
  uint64_t api_requests_other; /* codes outside 100..599 (code="other") */
  uint64_t saves_ok;
  uint64_t saves_error;
  uint64_t load_errors;
  uint64_t load_skipped_entries;
  int64_t last_save_ok_at; /* Unix s of the last successful save; 0 = never */
  uint64_t events[PD_METRICS_EV_COUNT];
  uint64_t policy_reloads_ok;
  uint64_t policy_reloads_error;
  uint64_t bans_added[PD_METRICS_BAN_COUNT]; /* bans added or renewed, by cause */
} pd_metrics_t;

/* Peer-to-peer network counters, gathered by the driver from the connection
 * manager at render time (label names come with the values, so this module
 * does not depend on the wire or dialer modules). Arrays are borrowed for the
 * duration of the render call. */
typedef struct pd_metrics_net {
  uint64_t connections_inbound;  /* gauge: peerd_connections{direction="inbound"} */
  uint64_t connections_outbound; /* gauge: peerd_connections{direction="outbound"} */
  size_t ndials;                 /* peerd_dials_total{outcome} */
  const char *const *dial_names;
  const uint64_t *dials;
  size_t ntypes; /* peerd_frames_total{direction="in|out",type} */
  const char *const *type_names;
  const uint64_t *frames_in;
  const uint64_t *frames_out;
  size_t nreasons; /* peerd_wire_rejected_total{reason} */
  const char *const *reason_names;
  const uint64_t *rejected;
  uint64_t records_learnt;    /* peerd_records_total{result="learnt"} */
  uint64_t records_stale;     /* peerd_records_total{result="stale"} (older or conflicting) */
  uint64_t records_announced; /* peerd_record_announcements_total */
  uint64_t addrs_received, addrs_added, addrs_refused; /* peerd_pex_addresses_total{result} */
  uint64_t bootstraps;        /* peerd_bootstraps_total */
  uint64_t seed_crawls;       /* peerd_seed_crawls_total */
  uint64_t inbound_evictions; /* peerd_inbound_evictions_total */
  bool below_min;             /* peerd_outbound_below_minimum (gauge 0/1) */
  /* The process (process_* families, Prometheus's standard names); the
   * driver reads them from the OS; has_process false leaves them out. */
  bool has_process;
  double process_cpu_seconds, process_start_time;
  uint64_t process_rss_bytes, process_open_fds, process_max_fds;
  /* Audit events the driver handed on (peerd_audit_events_total{kind}) and
   * its event streams (peerd_event_streams, peerd_event_streams_dropped_total);
   * nkinds 0 leaves the three families out. */
  size_t nkinds;
  const char *const *kind_names;
  const uint64_t *kind_counts;
  uint64_t event_streams, event_streams_dropped;
  /* API request latency, a histogram by route (peerd_api_request_seconds);
   * api_nbounds 0 leaves it out. api_buckets is row-major
   * [route][bound], cumulative (le = api_bounds[b]); +Inf is api_count. */
  size_t api_nroutes, api_nbounds;
  const char *const *api_routes;
  const double *api_bounds;
  const uint64_t *api_buckets;
  const uint64_t *api_count;
  const double *api_sum;
} pd_metrics_net_t;

/* Policies under load, read from the policy hosts at render time. Every
 * array is per hook (the gauges' policy_hooks of them, in the order of
 * policy_hook_names); NULL arrays leave their family without samples. */
typedef struct pd_metrics_policy_load {
  const uint64_t *tripped;     /* [hook] 0/1: peerd_policy_hook_tripped */
  const uint64_t *consecutive; /* [hook]: peerd_policy_hook_consecutive_failures */
  size_t nskip;                /* peerd_policy_skipped_total{hook,reason} */
  const char *const *skip_names;
  const uint64_t *skipped;     /* [hook][nskip] */
  size_t nbuckets;             /* peerd_policy_call_seconds{hook} (histogram) */
  const double *bounds;        /* [nbuckets] upper bounds, seconds */
  const uint64_t *buckets;     /* [hook][nbuckets + 1] cumulative, the last +Inf */
  const double *sum;           /* [hook] seconds */
  size_t nresults;             /* peerd_policy_shadow_calls_total{hook,result} */
  const char *const *result_names;
  const uint64_t *shadow_calls; /* [hook][nresults]; NULL: no shadow set configured */
} pd_metrics_policy_load_t;

/* Values read at render time. */
typedef struct pd_metrics_gauges {
  int64_t uptime;         /* seconds */
  size_t book_new;        /* entries in the new table */
  size_t book_tried;      /* entries in the tried table */
  size_t bans;            /* active (unexpired) bans */
  size_t collisions;      /* pending tried collisions */
  size_t book_memory;     /* heap bytes held by the book */
  size_t records;         /* other nodes' records kept (peerd_records) */
  size_t records_memory;  /* heap bytes they hold (peerd_records_memory_bytes) */
  uint64_t self_seq;      /* our record's sequence (peerd_record_sequence), 0 = none */
  /* Policy host (the policy module keeps the failure counters; the caller
   * copies them here). policy_failures is row-major [hook][reason] with
   * policy_hooks x policy_reasons values, named by the two name arrays;
   * NULL omits the failure samples. */
  size_t policy_hooks, policy_reasons;
  const char *const *policy_hook_names;
  const char *const *policy_reason_names;
  const uint64_t *policy_failures;
  size_t policy_memory;       /* bytes the policy state holds */
  uint64_t policy_generation; /* policy set in force (0 = none loaded) */
  const pd_metrics_policy_load_t *policy_load; /* NULL: those families without samples */
  /* Network (NULL: the four network families are rendered with no samples
   * except peerd_connections, which reads 0 for both directions). */
  const pd_metrics_net_t *net;
  const struct pd_metrics_dht *dht; /* NULL: no DHT, its families are left out */
} pd_metrics_gauges_t;

/* The DHT's figures (the driver's engine, dht.h), plain numbers so the
 * metrics module does not depend on the DHT. Label names are borrowed. */
typedef struct pd_metrics_dht {
  uint64_t table_nodes, table_replacements, sessions, requests_out, lookups_running;
  uint64_t packets_in[3], packets_out[3];    /* peerd_dht_packets_total{direction,kind} */
  uint64_t bytes_in, bytes_out;              /* peerd_dht_bytes_total{direction} */
  uint64_t msgs_in[4], msgs_out[4];          /* peerd_dht_messages_total{direction,type} */
  size_t nreasons;                           /* peerd_dht_rejected_total{reason} */
  const char *const *reason_names;           /* [0] ("none") is skipped */
  const uint64_t *rejected;
  uint64_t handshakes_ok, handshakes_failed; /* peerd_dht_handshakes_total{result} */
  uint64_t requests, timeouts;               /* peerd_dht_requests_total, _timeouts_total */
  uint64_t lookups_started, lookups_done, lookups_found, lookup_hops_sum;
  uint64_t records_found;                    /* peerd_dht_records_found_total */
  uint64_t table_added, table_removed, table_refused; /* peerd_dht_table_changes_total{change} */
} pd_metrics_dht_t;

void pd_metrics_init(pd_metrics_t *m);

/* Count one API response with this HTTP status code. */
void pd_metrics_count_request(pd_metrics_t *m, int status);
/* Count one book save; ok != 0 on success (then `now` becomes the last
 * successful save time). */
void pd_metrics_count_save(pd_metrics_t *m, int ok, int64_t now);
/* Count a book that could not be loaded. */
void pd_metrics_count_load_error(pd_metrics_t *m);
/* Add entries skipped one by one while loading. */
void pd_metrics_count_load_skipped(pd_metrics_t *m, size_t n);
/* Count one event; out-of-range values are ignored. */
void pd_metrics_count_event(pd_metrics_t *m, enum pd_metrics_event ev);
/* Count one policy load (ok != 0: it succeeded). */
void pd_metrics_count_policy_reload(pd_metrics_t *m, int ok);
/* Count one ban added (or renewed) for this cause; out-of-range ignored. */
void pd_metrics_count_ban(pd_metrics_t *m, enum pd_metrics_ban_cause cause);
/* The label value of a cause ("api", ...), or NULL when out of range. */
const char *pd_metrics_ban_cause_name(enum pd_metrics_ban_cause cause);
/* The label value of an event ("attempt", ...), or NULL when out of range. */
const char *pd_metrics_event_name(enum pd_metrics_event ev);

/* Requests counted so far with this status (tests, status pages). */
uint64_t pd_metrics_requests(const pd_metrics_t *m, int status);

/* Render the exposition text: *out is malloc'd and NUL-terminated (caller
 * frees), *len excludes the NUL. version is the peerd_build_info label
 * (NULL: PEERD_VERSION). Returns 0 or PD_ENOMEM. */
int pd_metrics_render(const pd_metrics_t *m, const pd_metrics_gauges_t *g, const char *version,
                      char **out, size_t *len);

#endif
