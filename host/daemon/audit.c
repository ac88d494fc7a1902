/* audit — the daemon's end of the audit events (events.h).
 *
 * Owns: the sink installed on the node (so the book, the node, the
 * network manager and the API all reach it) and dmn_event for the
 * driver's own events; for each event, in one path: a sequence number and
 * the wall clock in ms (the ring of the DMN_EVENT_RING most recent, kept
 * for replay), one log line (info; failures and bans at warn) whose message
 * says what happened and whose fields are the event's, its count
 * (peerd_audit_events_total{kind}), and the hand-off to the event streams
 * (dmn_api_stream_push). Nothing else logs these decisions, so nothing is
 * logged twice.
 * Does not own: what an event says (its emitter), the streams' sockets
 * (apiserver.c), the log's format (log.c).
 */
#include <stdio.h>
#include <string.h>

#include "daemon_int.h"

static const char *const messages[PD_EV_KIND_COUNT] = {
    [PD_EV_CONNECTED] = "peer connected",
    [PD_EV_DISCONNECTED] = "peer disconnected",
    [PD_EV_DIAL_OK] = "dial succeeded",
    [PD_EV_DIAL_FAILED] = "dial failed",
    [PD_EV_BAN] = "ban added",
    [PD_EV_UNBAN] = "ban lifted",
    [PD_EV_EVICT] = "book entry evicted",
    [PD_EV_TRIED_COLLISION] = "tried collision",
    [PD_EV_COLLISION_RESOLVED] = "tried collision resolved",
    [PD_EV_POLICY_LOADED] = "policy loaded",
    [PD_EV_POLICY_FAILED] = "policy load failed",
    [PD_EV_BOOTSTRAP_STARTED] = "bootstrap round",
    [PD_EV_BOOTSTRAP_FINISHED] = "bootstrap finished",
    [PD_EV_BELOW_MINIMUM] = "below the minimum of outbound peers",
    [PD_EV_MINIMUM_RECOVERED] = "outbound peers back at the minimum",
    [PD_EV_POLICY_TRIPPED] = "policy hook tripped: the built-in default decides until the next reload",
};

/* The log line: the message, the event's fields in order, then its kind
 * and sequence number. */
static void log_event(pd_daemon_t *d, const pd_event_t *e, uint64_t seq) {
  int level = pd_event_kind_warns(e->kind) || e->warn ? PD_LOG_WARN : PD_LOG_INFO;
  if (level < d->cfg.log_level) return;
  char bufs[PD_EVENT_MAX_FIELDS][PD_ADDR_STRLEN];
  const char *kv[2 * (PD_EVENT_MAX_FIELDS + 2)];
  size_t n = 0;
  for (size_t i = 0; i < e->nfields; i++) {
    kv[2 * n] = e->f[i].key;
    kv[2 * n + 1] = pd_event_field_text(&e->f[i], bufs[i], sizeof bufs[i]);
    n++;
  }
  char sq[24];
  snprintf(sq, sizeof sq, "%llu", (unsigned long long)seq);
  kv[2 * n] = "event";
  kv[2 * n + 1] = pd_event_kind_name(e->kind);
  n++;
  kv[2 * n] = "seq";
  kv[2 * n + 1] = sq;
  n++;
  dmn_log_kv(d, level, messages[e->kind], kv, n);
}

void dmn_event(pd_daemon_t *d, const pd_event_t *e) {
  if (!d || !e || (unsigned)e->kind >= PD_EV_KIND_COUNT) return;
  d->event_counts[e->kind]++;
  const pd_event_rec_t *rec = NULL;
  if (d->events) rec = pd_event_ring_push(d->events, e, dmn_wall_now_ms(), NULL);
  log_event(d, e, rec ? rec->seq : pd_event_ring_last_seq(d->events));
  if (rec) dmn_api_stream_push(d, rec);
}

static void on_core_event(void *ud, const pd_event_t *e) { dmn_event(ud, e); }

int dmn_start_events(pd_daemon_t *d) {
  for (int k = 0; k < PD_EV_KIND_COUNT; k++) {
    d->event_names[k] = pd_event_kind_name((enum pd_event_kind)k);
  }
  int rc = pd_event_ring_create(&d->events, DMN_EVENT_RING);
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot keep audit events", "error", "out of memory");
    return -1;
  }
  pd_event_sink_t sink = {.fn = on_core_event, .ud = d};
  pd_node_set_events(d->node, &sink);
  return 0;
}

void dmn_stop_events(pd_daemon_t *d) {
  if (d->node) pd_node_set_events(d->node, NULL);
  pd_event_ring_destroy(d->events);
  d->events = NULL;
}

void dmn_events_metrics(pd_daemon_t *d, pd_metrics_net_t *out) {
  out->nkinds = PD_EV_KIND_COUNT;
  out->kind_names = d->event_names;
  out->kind_counts = d->event_counts;
  out->event_streams = d->nstreams;
  out->event_streams_dropped = d->streams_dropped;
}
