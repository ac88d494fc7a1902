/* daemon_int — what the files of the libuv driver share (internal).
 *
 * Owns: pd_daemon_t, the one state of a running daemon (the loop and its
 * handles, the node, the identity, the network manager, the lists of API
 * and peer connections: no global mutable state anywhere in the driver);
 * the LOG macro; the dmn_ functions through which the driver's files call
 * each other. The files, one job each:
 *   daemon.c    pd_daemon_run: loop set-up, start and stop of the parts,
 *               the 1 s tick, signals, shutdown; the wall clock
 *   log.c       the logfmt log on stderr, values formatted for it
 *   config.c    configuration defaults, HOST:PORT parsing, network magic
 *   settings.c  the run settings: one table, checks, sources (default, file,
 *               flag), the effective config (settings.h, used by main.c)
 *   conffile.c  --config FILE: the Lua-syntax config file, sandboxed
 *   apiserver.c the control API's TCP server and its connections
 *   transport.c the peer-to-peer TCP sockets: listener, dials, reads, writes
 *   network.c   the connection manager's host: its start and stop, actions,
 *               timer, seed DNS, the API's view of the network
 *   persist.c   the data directory: book load and saves, node key, anchors
 *   reload.c    the policy directory: reading, (re)loading, watching
 *   procstat.c  the process_* metrics from /proc
 *   audit.c     the audit events: the core's sink, the ring of recent
 *               events, their log lines and counters, the fan-out to the
 *               event streams (apiserver.c writes them)
 *   apistats.c  the API's request latency histogram
 *   selfrec.c   this node's record from the flags (--service, --attr,
 *               --external, the bound listen address), handed to the node
 *   paths.c     the data directory and the policy source chosen at start
 *   notify.c    systemd's readiness notifications (READY, RELOADING, STOPPING)
 *   dhtnet.c    the DHT: its UDP socket, engine, timer, bootstrap, dht.json
 * Does not own: the public API (daemon.h: main.c and the tests use it);
 * the structures private to one file (API connections in apiserver.c, peer
 * sockets in transport.c, seed DNS requests in network.c, save jobs in
 * persist.c). Only the files of host/daemon include this header.
 */
#ifndef PD_DAEMON_INT_H
#define PD_DAEMON_INT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <sys/socket.h>

#include <uv.h>

#include "daemon.h"
#include "dht.h"
#include "dialer.h"
#include "identity.h"
#include "netmgr.h"
#include "node.h"
#include "rng.h"
#include "wire.h"

#define READ_BUF_SIZE (64 * 1024)
#define PATH_CAP 4096

/* Audit events and GET /v1/events/stream (audit.c, apiserver.c). */
#define DMN_EVENT_RING 256                  /* recent events kept for replay */
#define DMN_MAX_STREAMS 16                  /* event streams open at once (503 beyond) */
#define DMN_STREAM_QUEUE (128u * 1024)      /* bytes queued to one stream before it is dropped */
#define DMN_STREAM_KEEPALIVE_MS 15000       /* a comment line when nothing else was sent */
#define DMN_STREAM_DROP_LINGER_MS 5000      /* a dropped stream's last bytes get this long */
#define DMN_STREAM_SNDBUF (32 * 1024)       /* SO_SNDBUF of a stream's socket (Linux doubles it) */
/* API request latency (apistats.c): routes tracked, histogram buckets. */
#define DMN_API_ROUTES 40
#define DMN_API_BUCKETS 12

typedef struct pd_daemon pd_daemon_t;

struct pd_daemon {
  uv_loop_t loop;
  pd_self_t *self; /* this node's record (node.c borrows it) */
  int lock_fd;     /* DATA_DIR/lock, held while we run (-1: none) */
  /* paths.c: what dmn_resolve_paths chose (cfg.data_dir and cfg.policy_dir point here) */
  char data_dir_buf[PATH_CAP];
  const char *data_dir_from;   /* "flag" | "STATE_DIRECTORY" | "default" */
  char policy_dir_buf[PATH_CAP];
  int policy_origin;           /* enum pd_policy_origin */
  bool policy_builtin;         /* the built-in copy: nothing to read or watch */
  char api_token[129]; /* the bearer token the API requires; "" = none (loopback) */
  int64_t below_since;     /* outbound under --min-outbound since (Unix s); 0 = not */
  int64_t below_next_warn; /* when the next "below the minimum" warning may go out */
  bool below_warned;       /* a warning went out for this shortfall */
  uv_tcp_t server;
  uv_pipe_t userver;   /* --api unix:PATH (apiserver.c) */
  bool userver_open;
  uv_timer_t tick;
  uv_signal_t sigterm;
  uv_signal_t sigint;
  uv_signal_t sighup;
  uv_fs_event_t policy_watch;
  uv_timer_t policy_debounce;
  bool policy_watching;
  uv_fs_event_t shadow_watch;   /* --shadow-policies (reload.c) */
  uv_timer_t shadow_debounce;
  bool shadow_watching, shadow_timer_open;
  bool server_open;
  pd_daemon_config_t cfg;
  pd_rng_t rng;
  pd_node_t *node;
  struct conn *conns; /* API connections (apiserver.c) */
  size_t nconns;
  uint64_t refused;
  /* saves */
  bool saving;
  uint64_t save_started; /* id of the last save started */
  /* shutdown */
  bool stopping;
  bool stopped;
  int exit_code;
  char listen_addr[80];
  /* peer-to-peer */
  pd_identity_t ident;
  uint8_t magic[PD_WIRE_MAGIC_LEN];
  uv_tcp_t p2p_server;
  bool p2p_open;
  char p2p_addr[80];
  pd_netaddr_t p2p_bound; /* the bound listen address */
  bool bind_out;          /* outbound sockets bind to p2p_bound's IP (not a wildcard) */
  pd_netmgr_t *net;
  uv_timer_t net_timer; /* armed at the manager's next deadline */
  bool net_timer_open;
  bool flushing;        /* inside dmn_net_flush */
  struct pconn *pconns; /* every peer socket (transport.c) */
  size_t npconns;
  size_t max_pconns;       /* the cap on npconns (network.c: dmn_peer_conn_cap) */
  uint64_t pconns_refused; /* sockets refused at the cap */
  struct pconn *pbuckets[1024]; /* by conn id (PCONN_BUCKETS) */
  struct presolve *presolves;   /* DNS requests in flight (network.c) */
  /* audit events (audit.c) */
  pd_event_ring_t *events;
  uint64_t event_counts[PD_EV_KIND_COUNT];
  const char *event_names[PD_EV_KIND_COUNT];
  size_t nstreams;          /* event streams open (apiserver.c) */
  uint64_t streams_dropped; /* ... dropped for not keeping up */
  /* API request latency (apistats.c): per route label (a static string
   * from api.c, compared by pointer; NULL = "other") */
  size_t api_nroutes;
  const char *api_routes[DMN_API_ROUTES];
  uint64_t api_buckets[DMN_API_ROUTES * DMN_API_BUCKETS]; /* cumulative, by le */
  uint64_t api_count[DMN_API_ROUTES];
  double api_sum[DMN_API_ROUTES];
  uint64_t slow_readers;        /* peers dropped for not reading */
  pd_netmgr_counters_t net_counters; /* last read, for /metrics */
  const char *dial_names[PD_DIAL_OUTCOME_COUNT];
  const char *type_names[PD_WIRE_TYPE_COUNT];
  const char *reason_names[PD_NETMGR_REJ_COUNT];
  /* the DHT (dhtnet.c) */
  uv_udp_t dht_sock;
  bool dht_open;
  uv_timer_t dht_timer;
  bool dht_timer_open;
  pd_dht_t *dht;
  pd_netaddr_t dht_bound;
  int64_t dht_next_boot;     /* bootnodes again not before (ms) */
  size_t dht_rec_cursor;     /* the next held record offered to a small table */
  uint64_t dht_send_errors, dht_truncated;
  uint8_t dht_buf[2048];     /* one datagram in (larger than any packet: the excess is refused) */
  char readbuf[READ_BUF_SIZE];
};

#define LOG(d, lvl, ...)                                                                  \
  pd_log((d)->cfg.log_level | ((d)->cfg.log_json ? PD_LOG_JSON : 0), (lvl), __VA_ARGS__,        \
         (const char *)NULL)

/* daemon.c: clocks, handles, shutdown */
int64_t dmn_wall_now(void);    /* Unix seconds, the core's `now` */
int64_t dmn_wall_now_ms(void); /* Unix ms, the network side's clock */
void dmn_on_handle_closed(uv_handle_t *h); /* a close callback with nothing to do */
/* Accept a connection on server and close it at once; false when no
 * handle could be allocated (nothing was accepted). */
bool dmn_refuse(pd_daemon_t *d, uv_stream_t *server);
/* Stopping, once no save runs: the final save, then the loop's handles closed. */
void dmn_finish_stop(pd_daemon_t *d);

/* log.c: values as log text */
void dmn_fmt_i64(char *buf, size_t cap, int64_t v);
void dmn_fmt_u64(char *buf, size_t cap, uint64_t v);
void dmn_fmt_sockaddr(const struct sockaddr_storage *ss, char *buf, size_t cap);

/* apiserver.c: the control API */
int dmn_start_api(pd_daemon_t *d);
void dmn_stop_api_listeners(pd_daemon_t *d); /* close the TCP and unix listeners */
void dmn_api_close_all(pd_daemon_t *d); /* close every API connection */
/* Answer every API connection that waited for save `id` (or an earlier one). */
void dmn_complete_waiters(pd_daemon_t *d, uint64_t id);
/* Whether a connection waits for a save later than `after`. */
bool dmn_anyone_waiting(pd_daemon_t *d, uint64_t after);

/* transport.c: peer sockets */
int dmn_start_p2p(pd_daemon_t *d);
void dmn_p2p_dial(pd_daemon_t *d, uint64_t id, const pd_netaddr_t *addr); /* DIAL */
void dmn_p2p_send(pd_daemon_t *d, const pd_netmgr_action_t *a);           /* SEND */
void dmn_p2p_close(pd_daemon_t *d, const pd_netmgr_action_t *a);          /* CLOSE */
void dmn_p2p_close_all(pd_daemon_t *d); /* close every socket not draining */

/* network.c: the connection manager */
int dmn_start_net(pd_daemon_t *d);
void dmn_stop_net(pd_daemon_t *d);
void dmn_net_flush(pd_daemon_t *d); /* perform its actions, re-arm its timer */
void dmn_net_tick(pd_daemon_t *d);  /* its tick, then a flush */
void dmn_watch_outbound(pd_daemon_t *d, int64_t now); /* below-minimum warnings (1 s tick) */
void dmn_install_net_views(pd_daemon_t *d); /* the API's view of network and process */

/* dhtnet.c: the DHT */
int dmn_start_dht(pd_daemon_t *d);  /* after the overlay and the record; 0 also when off */
void dmn_stop_dht(pd_daemon_t *d);  /* saves dht.json, closes the socket and timer */
void dmn_free_dht(pd_daemon_t *d);  /* the engine, after the loop ended */
void dmn_dht_flush(pd_daemon_t *d); /* perform its actions, re-arm its timer */
void dmn_dht_tick(pd_daemon_t *d);
void dmn_dht_save(pd_daemon_t *d);  /* dht.json (with the book's saves) */
/* apiserver.c: a DHT lookup ended (answer its connection, or release it) */
void dmn_complete_lookup(pd_daemon_t *d, uint64_t id);

/* audit.c: audit events */
int dmn_start_events(pd_daemon_t *d);  /* the ring; the node's sink */
void dmn_stop_events(pd_daemon_t *d);  /* after the node is gone */
/* An event of the driver's own (below_minimum, ...): the same path as the
 * core's (ring, log, counters, streams). */
void dmn_event(pd_daemon_t *d, const pd_event_t *e);
void dmn_events_metrics(pd_daemon_t *d, pd_metrics_net_t *out);

/* apiserver.c: the event streams */
/* Hand a kept event to every stream that asked for its kind. */
void dmn_api_stream_push(pd_daemon_t *d, const pd_event_rec_t *rec);

/* apistats.c: API request latency */
void dmn_api_observe(pd_daemon_t *d, const char *route, double seconds);
void dmn_api_stats_metrics(pd_daemon_t *d, pd_metrics_net_t *out);

/* log.c: a line from key/value pairs (kv[2i] = kv[2i+1]) */
void dmn_log_kv(const pd_daemon_t *d, int level, const char *msg, const char *const *kv,
                size_t npairs);

/* procstat.c: the process_* metrics */
void dmn_process_stats(pd_daemon_t *d, pd_metrics_net_t *out);

/* persist.c: the data directory */
int dmn_load_book(pd_daemon_t *d, int64_t now); /* creates d->node */
int dmn_load_identity(pd_daemon_t *d);
void dmn_start_save(pd_daemon_t *d, const char *why); /* on the thread pool */
int dmn_save_now(pd_daemon_t *d, const char *why);    /* synchronous (shutdown) */
/* {"format": FORMAT, "version": 1, KEY: list} written atomically as DATA_DIR/name
 * (anchors.json, dht.json). 0 or < 0. */
struct json_t;
int dmn_save_list(pd_daemon_t *d, const char *name, const char *format, const char *key,
                  struct json_t *list);
size_t dmn_load_anchors(pd_daemon_t *d, pd_dial_target_t *out, size_t cap);
void dmn_save_anchors(pd_daemon_t *d);

/* selfrec.c: this node's record */
int dmn_start_self(pd_daemon_t *d);

/* paths.c: the data directory and the policy source (before anything else) */
int dmn_resolve_paths(pd_daemon_t *d);

/* notify.c: systemd readiness (a no-op without $NOTIFY_SOCKET) */
void dmn_notify(pd_daemon_t *d, const char *state);
void dmn_notify_reloading(pd_daemon_t *d); /* RELOADING=1 with MONOTONIC_USEC */

/* reload.c: the policy directory */
int dmn_start_policies(pd_daemon_t *d);
void dmn_start_policy_watch(pd_daemon_t *d);
int dmn_reload_policies(pd_daemon_t *d, const char *why);
void dmn_drain_policy_failures(pd_daemon_t *d);
/* POST /v1/policy/promote happened (PD_API_ACTION_PROMOTE): watch and
 * reload the new live directory, stop watching the shadow's. */
void dmn_policies_promoted(pd_daemon_t *d);
/* Stopping: close the shadow directory's watcher and timer. */
void dmn_stop_shadow_watch(pd_daemon_t *d);
struct pd_api_response;
void dmn_check_policies(pd_daemon_t *d, struct pd_api_response *resp); /* POST /v1/policy/check */

#endif
