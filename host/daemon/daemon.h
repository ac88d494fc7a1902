/* daemon — the libuv driver: peerd as a running process.
 *
 * Owns: the event loop and everything that touches the outside world for the
 * core: the control-API TCP server (per-connection HTTP parsing via http.h,
 * connection limit, idle timeouts, responses written with uv_write), the
 * 1-second housekeeping timer (the wall clock is read here and handed to the
 * core as Unix seconds), SIGTERM/SIGINT, the policy directory (read at start
 * and on every reload: a change seen by a libuv fs watcher, debounced
 * 150 ms; SIGHUP; POST /v1/policy/reload) and the log lines about policy
 * loads and failures, the monotonic clock of policy deadlines (uv_hrtime), entropy (libsodium: the book key
 * and the RNG seed), loading addrbook.json at start (moving a bad file
 * aside), saving it (periodically on libuv's thread pool, on demand through
 * POST /v1/save, and at shutdown), and the logfmt log on stderr; the node's
 * key file (created from randombytes at first start, never overwritten);
 * the peer-to-peer TCP side: the listener, outbound connects with a
 * timeout, reads and bounded writes, DNS for seeds, timers at the
 * connection manager's deadline, anchors.json; it performs the actions of
 * the connection manager (netmgr.c), which decides everything.
 * Does not own: what a request means (api.c), the book and its rules
 * (node.c, addrbook.c), the JSON of the book (bookstore.c), how files are
 * written atomically (fsio.c), command-line parsing (main.c).
 * The driver's files, one concern each, are listed in daemon_int.h.
 */
#ifndef PD_DAEMON_H
#define PD_DAEMON_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"
#include "policy.h"
#include "self.h"

/* A DHT bootnode (--bootnodes): ID@IP:PORT, or a node record in base64 (as
 * GET /v1/self's "record"); the record's discovery endpoint is where it is
 * contacted. */
typedef struct pd_bootnode {
  uint8_t id[PD_NODE_ID_LEN];
  pd_netaddr_t ep;
  uint8_t rec[PD_RECORD_MAX];
  size_t rec_len; /* 0: given as ID@IP:PORT */
} pd_bootnode_t;
/* 0 and *out, or PD_EINVAL and *why. */
int pd_bootnode_parse(const char *s, pd_bootnode_t *out, const char **why);

#define PD_DAEMON_DEFAULT_DATA_DIR "./peerd-data" /* without --data-dir or $STATE_DIRECTORY */
#define PD_DAEMON_STATE_DIR_ENV "STATE_DIRECTORY"  /* systemd's StateDirectory= */
#define PD_DAEMON_NOTIFY_ENV "NOTIFY_SOCKET"       /* systemd's Type=notify socket */
#define PD_DAEMON_BUILTIN_POLICY_NAME "(built-in)" /* the policy "dir" in log lines */
#define PD_DAEMON_DEFAULT_API "127.0.0.1:7412"
#define PD_DAEMON_DEFAULT_SAVE_MINUTES 5
#define PD_DAEMON_DEFAULT_BAN_SECS 86400
#define PD_DAEMON_MAX_CONNS 256          /* concurrent API connections */
#define PD_DAEMON_IDLE_TIMEOUT_MS 30000  /* idle / slow-request timeout */
#define PD_DAEMON_BOOK_FILE "addrbook.json"
#define PD_DAEMON_KEY_FILE "node_key"        /* ed25519 seed, 0600 (identity.h format) */
#define PD_DAEMON_LOCK_FILE "lock"           /* flock held while a peerd runs; holds its pid */
#define PD_DAEMON_COOKIE_FILE "api_cookie"   /* bearer token, 0600, when the API is not on loopback */
#define PD_DAEMON_ANCHORS_FILE "anchors.json" /* outbound peers at the last shutdown */
#define PD_DAEMON_DHT_FILE "dht.json"          /* the DHT routing table's records */
#define PD_DAEMON_BANS_FILE "bans.json"             /* the ban list (statestore.h) */
#define PD_DAEMON_REPUTATION_FILE "reputation.json" /* reputation records (statestore.h) */
#define PD_DAEMON_DEFAULT_LISTEN "0.0.0.0:7411"
#define PD_DAEMON_DEFAULT_MAX_OUTBOUND 8
#define PD_DAEMON_DEFAULT_MAX_INBOUND 40
#define PD_DAEMON_DEFAULT_MIN_OUTBOUND 4
#define PD_DAEMON_DEFAULT_HANDSHAKE_TIMEOUT_MS 10000
#define PD_DAEMON_CONNECT_TIMEOUT_MS 5000        /* TCP connect of an outbound dial */
#define PD_DAEMON_MAX_WRITE_QUEUE (1024u * 1024) /* bytes queued to one peer before it is dropped */
/* Peer sockets open at once (all directions): max_inbound + max_outbound +
 * PD_DAEMON_PEER_CONN_SLACK (feelers, manual and persistent dials, newcomers
 * waiting for an eviction), at most the open-file limit less
 * PD_DAEMON_FD_RESERVE (API, files, DNS). Set when the network starts. */
#define PD_DAEMON_PEER_CONN_SLACK 256
#define PD_DAEMON_FD_RESERVE 64
#define PD_DAEMON_MAX_BOOK_FILE (256u * 1024 * 1024) /* bytes read at most */
#define PD_DAEMON_MAX_BANS_FILE (128u * 1024 * 1024)      /* bytes read at most */
#define PD_DAEMON_MAX_REPUTATION_FILE (16u * 1024 * 1024) /* bytes read at most */
#define PD_DAEMON_MAX_POLICY_FILE (1024u * 1024)     /* bytes per policy file */
#define PD_DAEMON_POLICY_DEBOUNCE_MS 150 /* quiet time after a change before reloading */
#define PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS 1000000
#define PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS 50
#define PD_DAEMON_DEFAULT_POLICY_MEMORY_MB 64

/* The policy files read from the directory, in this order; a missing one
 * means the built-in C default for its hooks. */
#define PD_DAEMON_POLICY_FILES 6
extern const char *const pd_daemon_policy_files[PD_DAEMON_POLICY_FILES];

enum pd_log_level { PD_LOG_DEBUG = 0, PD_LOG_INFO = 1, PD_LOG_WARN = 2, PD_LOG_ERROR = 3 };

typedef struct pd_daemon_config {
  const char *data_dir;   /* --data-dir; NULL: chosen at start (pd_daemon_pick_data_dir) */
  const char *api;        /* --api HOST:PORT (port 0: any free port) */
  const char *api_unix;   /* --api unix:PATH: also (or, without a HOST:PORT --api, instead) a unix socket */
  bool api_tcp_set;       /* a HOST:PORT --api was given (pd_daemon_config_api) */
  bool allow_private;     /* --allow-private */
  int64_t save_interval;  /* seconds (--save-interval minutes * 60); 0 = no periodic saves */
  int64_t ban_time;       /* seconds (--ban-time) */
  bool has_seed;          /* --seed given */
  uint64_t seed;          /* --seed */
  int log_level;          /* enum pd_log_level */
  bool log_json;          /* --log-format json: one JSON object per line */
  const char *policy_dir; /* --policies; NULL: chosen at start (pd_daemon_pick_policy_dir) */
  const char *shadow_policy_dir; /* --shadow-policies (NULL: none) */
  uint64_t policy_instructions; /* --policy-instructions, per hook call */
  uint64_t policy_timeout_ms;   /* --policy-timeout-ms, per hook call */
  uint64_t policy_memory_mb;    /* --policy-memory-mb, per policy state */
  /* --private-peer: never shared through PEX (borrowed arrays). */
  const pd_subnet_t *private_subnets;
  size_t nprivate_subnets;
  const uint8_t (*private_ids)[PD_NODE_ID_LEN];
  size_t nprivate_ids;
  /* Peer-to-peer network (borrowed arrays). */
  const char *listen;             /* --listen HOST:PORT (port 0: any free port) */
  const pd_endpoint_t *seeds;     /* --seeds */
  size_t nseeds;
  const pd_endpoint_t *persistent; /* --persistent-peers */
  size_t npersistent;
  const uint8_t (*unconditional_ids)[PD_NODE_ID_LEN]; /* --unconditional-peer-ids */
  size_t nunconditional_ids;
  bool seed_mode;                 /* --seed-mode: crawl, answer GETADDR, disconnect */
  uint32_t max_outbound;          /* --max-outbound */
  uint32_t max_inbound;           /* --max-inbound */
  uint32_t min_outbound;          /* --min-outbound */
  const char *network;            /* --network NAME (network id; the magic derives from it) */
  int64_t handshake_timeout_ms;   /* --handshake-timeout-ms */
  bool p2p;                       /* --p2p on|off: off = no overlay (no listener, no dials) */
  const char *api_token_file;     /* --api-token-file FILE: bearer token the API requires */
  int64_t below_min_warn;         /* --below-min-warn SECONDS: warn when under --min-outbound this long */
  uint8_t ipv6_prefix;            /* --ipv6-prefix N: an IPv6 host for per-IP limits and bans */
  /* The DHT (docs/dht.md). */
  bool dht;                       /* --dht on|off (on) */
  const char *dht_listen;         /* --dht-listen HOST:PORT (NULL: the overlay's --listen, UDP) */
  const struct pd_bootnode *bootnodes; /* --bootnodes (borrowed) */
  size_t nbootnodes;
  const char *node_key;           /* --node-key FILE (NULL: DATA_DIR/node_key) */
  /* The node's record (borrowed arrays). */
  const pd_self_service_t *services; /* --service NAME=[HOST:]PORT */
  size_t nservices;
  const pd_record_attr_t *attrs;     /* --attr KEY=VALUE */
  size_t nattrs;
  bool has_external;                 /* --external HOST */
  pd_netaddr_t external;
  /* The effective config as JSON text (settings.c), shown by GET /v1/status;
   * NULL: none. Borrowed. */
  const char *settings_json;
} pd_daemon_config_t;

/* Fill cfg with the embedded defaults. */
void pd_daemon_config_defaults(pd_daemon_config_t *cfg);

/* Parse "HOST:PORT" for the API listener: an IPv4 literal, "[IPv6]", or
 * "localhost" (127.0.0.1); port 0..65535. Fills a struct sockaddr_storage
 * (cap bytes). 0 or PD_EINVAL with *why. */
int pd_daemon_parse_listen(const char *s, void *ss, unsigned cap, const char **why);

/* One --api value: "HOST:PORT" (checked as pd_daemon_parse_listen) sets
 * cfg->api, "unix:PATH" (1..107 bytes) cfg->api_unix. With a unix socket
 * and no HOST:PORT given, the API listens on the unix socket only. 0 or
 * PD_EINVAL with *why. */
int pd_daemon_config_api(pd_daemon_config_t *cfg, const char *value, const char **why);

/* The network magic of a network id: the default F5706431 for "peerd",
 * otherwise 0xF5 followed by the first 3 bytes of SHA-256(name). */
void pd_daemon_network_magic(const char *network, uint8_t magic[4]);

/* "debug" | "info" | "warn" | "error" -> enum pd_log_level, or -1. */
int pd_log_level_parse(const char *s);

/* One logfmt line on stderr when level >= the minimum level (opts & 0xff):
 *   ts=2026-11-25T10:00:00.123Z level=info msg="..." key=value ...
 * followed by key/value string pairs, ended by a NULL key. Values are
 * quoted and escaped when needed. With PD_LOG_JSON in opts, one JSON object
 * instead: {"ts":"...","level":"info","msg":"...","key":"value",...}. */
#define PD_LOG_JSON 0x100
void pd_log(int opts, int level, const char *msg, ...);

/* Read the policy files of dir (those that exist) into files[] (texts
 * malloc'd: free each files[i].text) and return how many, or < 0 with a
 * message in err: the directory is missing or a file cannot be read. */
int pd_daemon_read_policies(const char *dir, pd_policy_file_t files[PD_DAEMON_POLICY_FILES], char *err, size_t cap);

/* Where the policies come from (paths.c), in the order they are tried. */
enum pd_policy_origin {
  PD_POLICY_FROM_FLAG = 0,    /* --policies DIR (used even if DIR is missing: start fails) */
  PD_POLICY_FROM_EXE = 1,     /* <dir of the executable>/../share/peerd/policies (installed) */
  PD_POLICY_FROM_PREFIX = 2,  /* the install prefix's share/peerd/policies (compiled in) */
  PD_POLICY_FROM_BUILTIN = 3, /* the copy of the policies/ .lua files built into the binary */
};
/* "flag" | "installed" | "prefix" | "builtin", or NULL. */
const char *pd_daemon_policy_origin_name(int origin);

/* The data directory, absolute: flag (--data-dir) if not NULL, else the
 * first ':'-separated entry of state_env ($STATE_DIRECTORY) if set, else
 * PD_DAEMON_DEFAULT_DATA_DIR; a relative one is joined to cwd (leading
 * "./" dropped). *from: "flag" | "STATE_DIRECTORY" | "default". Returns 0,
 * PD_EINVAL (empty, or relative without an absolute cwd) or PD_ETOOBIG. */
int pd_daemon_pick_data_dir(const char *flag, const char *state_env, const char *cwd, char *out,
                            size_t cap, const char **from);

/* The policy source: flag (--policies) if not NULL; else exe's
 * ../share/peerd/policies (canonical) if it is a directory; else
 * prefix_dir if it is a directory; else the built-in copy (out ""). Returns
 * the enum pd_policy_origin, or PD_ETOOBIG / PD_EINVAL. */
int pd_daemon_pick_policy_dir(const char *flag, const char *exe, const char *prefix_dir, char *out,
                              size_t cap);

/* The built-in copy of the policies/ .lua files, as pd_daemon_read_policies returns a
 * directory (texts malloc'd: free each files[i].text): how many, or
 * PD_ENOMEM with a message in err. */
int pd_daemon_builtin_policies(pd_policy_file_t files[PD_DAEMON_POLICY_FILES], char *err, size_t cap);

/* systemd's notify protocol without libsystemd (notify.c): send state
 * ("READY=1", "RELOADING=1\nMONOTONIC_USEC=...", "STOPPING=1") as one
 * datagram to the AF_UNIX socket socket_path ($NOTIFY_SOCKET: a path, or
 * "@name" for an abstract one). Returns 1 when sent, 0 when socket_path is
 * NULL or empty (not under systemd), -errno or PD_EINVAL (not "/" or "@",
 * or too long). Never blocks. */
int pd_daemon_notify(const char *socket_path, const char *state);

/* Run the daemon until SIGTERM/SIGINT. Returns the process exit status:
 * 0 after a clean shutdown (book saved), 1 when start-up failed or the
 * final save failed. A second signal during shutdown exits at once (1). */
int pd_daemon_run(const pd_daemon_config_t *cfg);

#endif
