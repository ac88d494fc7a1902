/* main — the peerd command line: `peerd [run] [flags]`, `peerd book-slot`,
 * `peerd policy-check DIR`, `peerd --version`, `peerd --help`. Parses flags
 * (getopt_long), then hands over to the daemon (daemon.c), computes a book
 * slot (addrbook.c), or loads and exercises a policy directory against a
 * synthetic book (policy.c).
 * Exit status: 0 ok, 1 runtime failure, 2 usage error. Documented in
 * docs/cli.md.
 */
#include <errno.h>
#include <getopt.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <dirent.h>
#include <sys/socket.h>
#include <time.h>

#include "addrbook.h"
#include "daemon.h"
#include "dialer.h"
#include "err.h"
#include "netaddr.h"
#include "policy.h"
#include "record.h"
#include "self.h"
#include "sim.h"

#define MAX_PRIVATE 64
#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage_text[] =
    "Usage:\n"
    "  peerd [run] [options]                 run the daemon\n"
    "  peerd book-slot --key HEX [--source ADDR] [--allow-private] ADDR\n"
    "                                        print where ADDR goes in a book with key HEX\n"
    "  peerd policy-check DIR                load DIR's policies and exercise every hook\n"
    "                                        against a synthetic book; exit 1 on any problem\n"
    "  peerd --version                       print the version\n"
    "  peerd --help                          print this help\n"
    "\n"
    "Options for run:\n"
    "  --data-dir DIR          data directory (default: " PD_DAEMON_DEFAULT_DATA_DIR ")\n"
    "  --api HOST:PORT         control API listen address; port 0 picks a free port\n"
    "                          (default: " PD_DAEMON_DEFAULT_API ")\n"
    "  --api-token-file FILE   the bearer token the API requires (16..128 characters); without\n"
    "                          it an API not on loopback requires DATA_DIR/api_cookie's\n"
    "  --allow-private         admit private and loopback addresses (default: off)\n"
    "  --save-interval MINUTES save the book every MINUTES; 0 disables periodic saves\n"
    "                          (default: 5)\n"
    "  --ban-time SECONDS      default ban length (default: 86400)\n"
    "  --seed N                seed of the core's RNG (default: random, from libsodium)\n"
    "  --log-level LEVEL       debug|info|warn|error (default: info)\n"
    "  --log-format FORMAT     logfmt|json: key=value or one JSON object per line\n"
    "                          (default: logfmt)\n"
    "  --policies DIR          policy directory, watched and hot-reloaded\n"
    "                          (default: " PEERD_POLICY_DIR ")\n"
    "  --shadow-policies DIR   a second policy set that sees every decision and is only\n"
    "                          compared (GET /v1/policy/shadow) (default: none)\n"
    "  --policy-instructions N instruction budget per policy call (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS) ")\n"
    "  --policy-timeout-ms N   wall-clock deadline per policy call (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS) ")\n"
    "  --policy-memory-mb N    memory cap of a policy set's Lua state (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_MEMORY_MB) ")\n"
    "  --private-peer X        never share X through PEX: an IP, a subnet (1.2.3.0/24)\n"
    "                          or a 40-hex node id; repeatable, up to " STR(MAX_PRIVATE) " (default: none)\n"
    "\n"
    "Peer-to-peer network:\n"
    "  --listen HOST:PORT      peer listen address; port 0 picks a free port\n"
    "                          (default: " PD_DAEMON_DEFAULT_LISTEN ")\n"
    "  --seeds LIST            comma-separated ID@host:port or host:port; host names are\n"
    "                          resolved with DNS; dialled when outbound peers are too few\n"
    "                          (default: none)\n"
    "  --persistent-peers LIST comma-separated ID@host:port or host:port, always reconnected\n"
    "                          (default: none)\n"
    "  --seed-mode             crawl: connect, take addresses, answer GETADDR, disconnect\n"
    "                          (default: off)\n"
    "  --max-outbound N        outbound connections; 0: never dial (no seeds, anchors,\n"
    "                          feelers or redials; inbound only)\n"
    "                          (default: " STR(PD_DAEMON_DEFAULT_MAX_OUTBOUND) ")\n"
    "  --max-inbound N         inbound connections (default: " STR(PD_DAEMON_DEFAULT_MAX_INBOUND) ")\n"
    "  --below-min-warn SECONDS  warn in the log once outbound peers stay below\n"
    "                          --min-outbound this long (default: 60)\n"
    "  --min-outbound N        below this many outbound peers, bootstrap from the seeds\n"
    "                          (default: " STR(PD_DAEMON_DEFAULT_MIN_OUTBOUND) ")\n"
    "  --network NAME          network id (1-32 printable characters); the magic derives\n"
    "                          from it (default: peerd, magic f5706431)\n"
    "  --unconditional-peer-ids LIST  comma-separated 40-hex node ids exempt from the\n"
    "                          connection limits (default: none)\n"
    "  --private-peer-ids LIST comma-separated 40-hex node ids never shared through PEX\n"
    "                          (default: none)\n"
    "  --handshake-timeout-ms N  time a connection has to finish the handshake\n"
    "                          (100..600000, default: " STR(PD_DAEMON_DEFAULT_HANDSHAKE_TIMEOUT_MS) ")\n"
    "  --p2p on|off            off: no overlay at all (no listener, no dials), the API\n"
    "                          only (default: on)\n"
    "\n"
    "The node's record (docs/protocol.md section 10):\n"
    "  --service NAME=[HOST:]PORT  where the node itself listens, e.g. p2p=26656;\n"
    "                          HOST defaults to the announced address; repeatable, up to 8\n"
    "  --attr KEY=VALUE        an attribute policies can read (chain, version, roles);\n"
    "                          repeatable, up to 8\n"
    "  --external HOST         the announced IP (default: the --listen IP, or learnt from\n"
    "                          what 3 outbound peers see when listening on a wildcard)\n"
    "  --node-key FILE         the node's own key: peerd's node_key or CometBFT's\n"
    "                          node_key.json; read only (default: DATA_DIR/node_key)\n"
    "\n"
    "Options for book-slot:\n"
    "  --key HEX               64 hex characters: the 32 key bytes in hashing order (required)\n"
    "  --source ADDR           who announced ADDR (default: ADDR itself)\n"
    "  --allow-private         group private addresses as public ones (default: off)\n"
    "  ADDR                    host:port, [v6]:port or a bare IP (port 0)\n";

static int usage_error(const char *fmt, const char *arg) {
  if (fmt) {
    fprintf(stderr, "peerd: ");
    fprintf(stderr, fmt, arg ? arg : "");
    fprintf(stderr, "\n");
  }
  fputs(usage_text, stderr);
  return 2;
}

static bool parse_u64(const char *s, uint64_t max, uint64_t *out) {
  if (!s || !*s || *s == '-' || *s == '+' || *s == ' ') return false;
  char *end = NULL;
  errno = 0;
  unsigned long long v = strtoull(s, &end, 10);
  if (errno || !end || *end || v > max) return false;
  *out = v;
  return true;
}

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static int parse_slot_addr(const char *s, pd_netaddr_t *out, const char **why) {
  return pd_netaddr_parse(s, PD_PARSE_PORT_OPTIONAL, out, NULL, NULL, why);
}

enum {
  OPT_DATA_DIR = 256,
  OPT_API,
  OPT_ALLOW_PRIVATE,
  OPT_SAVE_INTERVAL,
  OPT_BAN_TIME,
  OPT_SEED,
  OPT_LOG_LEVEL,
  OPT_KEY,
  OPT_SOURCE,
  OPT_HELP,
  OPT_VERSION,
  OPT_POLICIES,
  OPT_SHADOW_POLICIES,
  OPT_POLICY_INSTRUCTIONS,
  OPT_POLICY_TIMEOUT,
  OPT_POLICY_MEMORY,
  OPT_PRIVATE_PEER,
  OPT_LISTEN,
  OPT_SEEDS,
  OPT_PERSISTENT,
  OPT_SEED_MODE,
  OPT_MAX_OUTBOUND,
  OPT_MAX_INBOUND,
  OPT_MIN_OUTBOUND,
  OPT_NETWORK,
  OPT_UNCONDITIONAL,
  OPT_PRIVATE_IDS,
  OPT_HANDSHAKE_TIMEOUT,
  OPT_P2P,
  OPT_NODE_KEY,
  OPT_SERVICE,
  OPT_ATTR,
  OPT_EXTERNAL,
  OPT_API_TOKEN_FILE,
  OPT_BELOW_MIN_WARN,
  OPT_LOG_FORMAT,
};

/* A comma-separated list of [ID@]host:port endpoints appended to *list. */
static int parse_endpoints(const char *flag, const char *s, pd_endpoint_t **list, size_t *n) {
  char *copy = strdup(s);
  if (!copy) return 1;
  int rc = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ') tok++;
    if (!*tok) continue;
    if (*n >= PD_DIALER_MAX_LIST) {
      fprintf(stderr, "peerd: %s: more than %d entries\n", flag, PD_DIALER_MAX_LIST);
      rc = 2;
      break;
    }
    pd_endpoint_t *grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) {
      rc = 1;
      break;
    }
    *list = grown;
    const char *why = NULL;
    if (pd_endpoint_parse(tok, PD_PARSE_ALLOW_ID | PD_PARSE_ALLOW_HOSTNAME, &grown[*n], &why) < 0) {
      fprintf(stderr, "peerd: bad %s entry '%s': %s\n", flag, tok, why ? why : "invalid");
      rc = 2;
      break;
    }
    (*n)++;
  }
  free(copy);
  return rc;
}

/* A comma-separated list of 40-hex node ids appended to *list. */
static int parse_ids(const char *flag, const char *s, uint8_t (**list)[PD_NODE_ID_LEN],
                     size_t *n) {
  char *copy = strdup(s);
  if (!copy) return 1;
  int rc = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ') tok++;
    if (!*tok) continue;
    if (*n >= PD_DIALER_MAX_LIST) {
      fprintf(stderr, "peerd: %s: more than %d ids\n", flag, PD_DIALER_MAX_LIST);
      rc = 2;
      break;
    }
    uint8_t(*grown)[PD_NODE_ID_LEN] = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) {
      rc = 1;
      break;
    }
    *list = grown;
    if (strlen(tok) != PD_NODE_ID_HEXLEN || pd_node_id_parse(tok, strlen(tok), grown[*n]) < 0) {
      fprintf(stderr, "peerd: bad %s entry '%s': expected 40 hex characters\n", flag, tok);
      rc = 2;
      break;
    }
    (*n)++;
  }
  free(copy);
  return rc;
}

static bool network_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 32) return false;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  }
  return true;
}

static int cmd_book_slot(int argc, char **argv) {
  static const struct option opts[] = {
      {"key", required_argument, NULL, OPT_KEY},
      {"source", required_argument, NULL, OPT_SOURCE},
      {"allow-private", no_argument, NULL, OPT_ALLOW_PRIVATE},
      {"help", no_argument, NULL, OPT_HELP},
      {NULL, 0, NULL, 0},
  };
  const char *key_hex = NULL;
  const char *source_s = NULL;
  bool allow_private = false;
  opterr = 0;
  optind = 1;
  int ch;
  while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (ch) {
    case OPT_KEY: key_hex = optarg; break;
    case OPT_SOURCE: source_s = optarg; break;
    case OPT_ALLOW_PRIVATE: allow_private = true; break;
    case OPT_HELP: fputs(usage_text, stdout); return 0;
    case ':': return usage_error("option %s needs a value", argv[optind - 1]);
    default: return usage_error("unknown option %s", argv[optind - 1]);
    }
  }
  if (optind != argc - 1) return usage_error("book-slot needs exactly one ADDR%s", NULL);
  const char *addr_s = argv[optind];
  if (!key_hex) return usage_error("book-slot needs --key HEX%s", NULL);
  if (strlen(key_hex) != 2 * PD_BOOK_KEY_LEN) {
    fprintf(stderr, "peerd book-slot: --key must be %d hex characters\n", 2 * PD_BOOK_KEY_LEN);
    return 2;
  }
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) {
    int hi = hexval((unsigned char)key_hex[2 * i]);
    int lo = hexval((unsigned char)key_hex[2 * i + 1]);
    if (hi < 0 || lo < 0) {
      fprintf(stderr, "peerd book-slot: --key is not hex\n");
      return 2;
    }
    key[i] = (uint8_t)(hi << 4 | lo);
  }
  pd_netaddr_t addr, source;
  const char *why = NULL;
  if (parse_slot_addr(addr_s, &addr, &why) < 0) {
    fprintf(stderr, "peerd book-slot: bad address '%s': %s\n", addr_s, why ? why : "invalid");
    return 2;
  }
  if (source_s) {
    why = NULL;
    if (parse_slot_addr(source_s, &source, &why) < 0) {
      fprintf(stderr, "peerd book-slot: bad --source '%s': %s\n", source_s,
              why ? why : "invalid");
      return 2;
    }
  } else {
    source = addr;
  }
  uint8_t group[PD_GROUP_MAX];
  size_t glen = pd_netaddr_group(&addr, allow_private, group);
  int nb = pd_book_new_bucket(key, &addr, &source, allow_private);
  int tb = pd_book_tried_bucket(key, &addr, allow_private);
  if (nb < 0 || tb < 0) {
    fprintf(stderr, "peerd book-slot: cannot place '%s'\n", addr_s);
    return 2;
  }
  int np = pd_book_bucket_position(key, true, nb, &addr);
  int tp = pd_book_bucket_position(key, false, tb, &addr);
  char ghex[2 * PD_GROUP_MAX + 1];
  for (size_t i = 0; i < glen && i < PD_GROUP_MAX; i++) {
    snprintf(ghex + 2 * i, 3, "%02x", group[i]);
  }
  ghex[2 * glen] = '\0';
  printf("{\"group\":\"%s\",\"new\":{\"bucket\":%d,\"position\":%d},"
         "\"tried\":{\"bucket\":%d,\"position\":%d}}\n",
         ghex, nb, np, tb, tp);
  return 0;
}

typedef struct run_lists {
  pd_endpoint_t *seeds, *persistent;
  size_t nseeds, npersistent;
  uint8_t (*uncond)[PD_NODE_ID_LEN];
  size_t nuncond;
  uint8_t (*priv)[PD_NODE_ID_LEN]; /* --private-peer ids and --private-peer-ids */
  size_t npriv;
  pd_self_service_t services[PD_RECORD_MAX_SERVICES]; /* --service */
  size_t nservices;
  pd_record_attr_t attrs[PD_RECORD_MAX_ATTRS]; /* --attr */
  size_t nattrs;
} run_lists_t;

static int cmd_run_parsed(int argc, char **argv, run_lists_t *L);

static int cmd_run(int argc, char **argv) {
  run_lists_t L;
  memset(&L, 0, sizeof L);
  int rc = cmd_run_parsed(argc, argv, &L);
  free(L.seeds);
  free(L.persistent);
  free(L.uncond);
  free(L.priv);
  return rc;
}

static int cmd_run_parsed(int argc, char **argv, run_lists_t *L) {
  static const struct option opts[] = {
      {"data-dir", required_argument, NULL, OPT_DATA_DIR},
      {"api", required_argument, NULL, OPT_API},
      {"allow-private", no_argument, NULL, OPT_ALLOW_PRIVATE},
      {"save-interval", required_argument, NULL, OPT_SAVE_INTERVAL},
      {"ban-time", required_argument, NULL, OPT_BAN_TIME},
      {"seed", required_argument, NULL, OPT_SEED},
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
      {"policies", required_argument, NULL, OPT_POLICIES},
      {"shadow-policies", required_argument, NULL, OPT_SHADOW_POLICIES},
      {"policy-instructions", required_argument, NULL, OPT_POLICY_INSTRUCTIONS},
      {"policy-timeout-ms", required_argument, NULL, OPT_POLICY_TIMEOUT},
      {"policy-memory-mb", required_argument, NULL, OPT_POLICY_MEMORY},
      {"private-peer", required_argument, NULL, OPT_PRIVATE_PEER},
      {"listen", required_argument, NULL, OPT_LISTEN},
      {"seeds", required_argument, NULL, OPT_SEEDS},
      {"persistent-peers", required_argument, NULL, OPT_PERSISTENT},
      {"seed-mode", no_argument, NULL, OPT_SEED_MODE},
      {"max-outbound", required_argument, NULL, OPT_MAX_OUTBOUND},
      {"max-inbound", required_argument, NULL, OPT_MAX_INBOUND},
      {"min-outbound", required_argument, NULL, OPT_MIN_OUTBOUND},
      {"network", required_argument, NULL, OPT_NETWORK},
      {"unconditional-peer-ids", required_argument, NULL, OPT_UNCONDITIONAL},
      {"private-peer-ids", required_argument, NULL, OPT_PRIVATE_IDS},
      {"handshake-timeout-ms", required_argument, NULL, OPT_HANDSHAKE_TIMEOUT},
      {"p2p", required_argument, NULL, OPT_P2P},
      {"node-key", required_argument, NULL, OPT_NODE_KEY},
      {"service", required_argument, NULL, OPT_SERVICE},
      {"attr", required_argument, NULL, OPT_ATTR},
      {"external", required_argument, NULL, OPT_EXTERNAL},
      {"api-token-file", required_argument, NULL, OPT_API_TOKEN_FILE},
      {"below-min-warn", required_argument, NULL, OPT_BELOW_MIN_WARN},
      {"log-format", required_argument, NULL, OPT_LOG_FORMAT},
      {"help", no_argument, NULL, OPT_HELP},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0},
  };
  pd_daemon_config_t cfg;
  pd_daemon_config_defaults(&cfg);
  static pd_subnet_t priv_subnets[MAX_PRIVATE];
  size_t nsub = 0, nids = 0;
  int lrc;
  opterr = 0;
  optind = 1;
  int ch;
  uint64_t v;
  while ((ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    switch (ch) {
    case OPT_DATA_DIR:
      if (!*optarg) return usage_error("--data-dir needs a directory%s", NULL);
      cfg.data_dir = optarg;
      break;
    case OPT_API: {
      struct sockaddr_storage ss;
      const char *why = NULL;
      if (pd_daemon_parse_listen(optarg, &ss, sizeof ss, &why) < 0) {
        fprintf(stderr, "peerd: bad --api '%s': %s\n", optarg, why ? why : "invalid");
        return usage_error(NULL, NULL);
      }
      cfg.api = optarg;
      break;
    }
    case OPT_ALLOW_PRIVATE: cfg.allow_private = true; break;
    case OPT_SAVE_INTERVAL:
      if (!parse_u64(optarg, 1000000, &v)) {
        return usage_error("--save-interval needs minutes (0..1000000), got '%s'", optarg);
      }
      cfg.save_interval = (int64_t)v * 60;
      break;
    case OPT_BAN_TIME:
      if (!parse_u64(optarg, 100ull * 365 * 86400, &v) || v == 0) {
        return usage_error("--ban-time needs seconds (1..3153600000), got '%s'", optarg);
      }
      cfg.ban_time = (int64_t)v;
      break;
    case OPT_SEED:
      if (!parse_u64(optarg, UINT64_MAX, &v)) {
        return usage_error("--seed needs an unsigned 64-bit number, got '%s'", optarg);
      }
      cfg.seed = v;
      cfg.has_seed = true;
      break;
    case OPT_LOG_LEVEL: {
      int lvl = pd_log_level_parse(optarg);
      if (lvl < 0) return usage_error("--log-level must be debug|info|warn|error, got '%s'", optarg);
      cfg.log_level = lvl;
      break;
    }
    case OPT_POLICIES:
      if (!*optarg) return usage_error("--policies needs a directory%s", NULL);
      cfg.policy_dir = optarg;
      break;
    case OPT_SHADOW_POLICIES:
      if (!*optarg) return usage_error("--shadow-policies needs a directory%s", NULL);
      cfg.shadow_policy_dir = optarg;
      break;
    case OPT_POLICY_INSTRUCTIONS:
      if (!parse_u64(optarg, UINT64_MAX / 2, &v) || v < 1000) {
        return usage_error("--policy-instructions needs a number >= 1000, got '%s'", optarg);
      }
      cfg.policy_instructions = v;
      break;
    case OPT_POLICY_TIMEOUT:
      if (!parse_u64(optarg, 60000, &v) || v == 0) {
        return usage_error("--policy-timeout-ms needs milliseconds (1..60000), got '%s'", optarg);
      }
      cfg.policy_timeout_ms = v;
      break;
    case OPT_POLICY_MEMORY:
      if (!parse_u64(optarg, 65536, &v) || v == 0) {
        return usage_error("--policy-memory-mb needs MiB (1..65536), got '%s'", optarg);
      }
      cfg.policy_memory_mb = v;
      break;
    case OPT_PRIVATE_PEER: {
      if (nsub + nids >= MAX_PRIVATE) return usage_error("too many --private-peer (max %s)", STR(MAX_PRIVATE));
      size_t len = strlen(optarg);
      uint8_t pid[PD_NODE_ID_LEN];
      if (len == PD_NODE_ID_HEXLEN && pd_node_id_parse(optarg, len, pid) == 0) {
        lrc = parse_ids("--private-peer", optarg, &L->priv, &L->npriv);
        if (lrc) return lrc == 2 ? usage_error(NULL, NULL) : 1;
        nids++;
        break;
      }
      const char *why = NULL;
      if (pd_subnet_parse(optarg, &priv_subnets[nsub], &why) < 0) {
        fprintf(stderr, "peerd: bad --private-peer '%s': %s\n", optarg,
                why ? why : "expected an IP, a subnet or a 40-hex node id");
        return usage_error(NULL, NULL);
      }
      nsub++;
      break;
    }
    case OPT_LISTEN: {
      struct sockaddr_storage ss;
      const char *why = NULL;
      if (pd_daemon_parse_listen(optarg, &ss, sizeof ss, &why) < 0) {
        fprintf(stderr, "peerd: bad --listen '%s': %s\n", optarg, why ? why : "invalid");
        return usage_error(NULL, NULL);
      }
      cfg.listen = optarg;
      break;
    }
    case OPT_SEEDS:
      lrc = parse_endpoints("--seeds", optarg, &L->seeds, &L->nseeds);
      if (lrc) return lrc == 2 ? usage_error(NULL, NULL) : 1;
      break;
    case OPT_PERSISTENT:
      lrc = parse_endpoints("--persistent-peers", optarg, &L->persistent, &L->npersistent);
      if (lrc) return lrc == 2 ? usage_error(NULL, NULL) : 1;
      break;
    case OPT_SEED_MODE: cfg.seed_mode = true; break;
    case OPT_MAX_OUTBOUND:
      if (!parse_u64(optarg, 1000, &v)) {
        return usage_error("--max-outbound needs a number (0..1000), got '%s'", optarg);
      }
      cfg.max_outbound = (uint32_t)v;
      break;
    case OPT_MAX_INBOUND:
      if (!parse_u64(optarg, 100000, &v)) {
        return usage_error("--max-inbound needs a number (0..100000), got '%s'", optarg);
      }
      cfg.max_inbound = (uint32_t)v;
      break;
    case OPT_MIN_OUTBOUND:
      if (!parse_u64(optarg, 1000, &v)) {
        return usage_error("--min-outbound needs a number (0..1000), got '%s'", optarg);
      }
      cfg.min_outbound = (uint32_t)v;
      break;
    case OPT_NETWORK:
      if (!network_name_ok(optarg)) {
        return usage_error("--network needs 1..32 printable characters without spaces, got '%s'",
                           optarg);
      }
      cfg.network = optarg;
      break;
    case OPT_UNCONDITIONAL:
      lrc = parse_ids("--unconditional-peer-ids", optarg, &L->uncond, &L->nuncond);
      if (lrc) return lrc == 2 ? usage_error(NULL, NULL) : 1;
      break;
    case OPT_PRIVATE_IDS:
      lrc = parse_ids("--private-peer-ids", optarg, &L->priv, &L->npriv);
      if (lrc) return lrc == 2 ? usage_error(NULL, NULL) : 1;
      break;
    case OPT_HANDSHAKE_TIMEOUT:
      if (!parse_u64(optarg, 600000, &v) || v < 100) {
        return usage_error("--handshake-timeout-ms needs milliseconds (100..600000), got '%s'",
                           optarg);
      }
      cfg.handshake_timeout_ms = (int64_t)v;
      break;
    case OPT_P2P:
      if (strcmp(optarg, "on") != 0 && strcmp(optarg, "off") != 0)
        return usage_error("--p2p must be on or off, got '%s'", optarg);
      cfg.p2p = strcmp(optarg, "on") == 0;
      break;
    case OPT_LOG_FORMAT:
      if (strcmp(optarg, "logfmt") != 0 && strcmp(optarg, "json") != 0)
        return usage_error("--log-format must be logfmt or json, got '%s'", optarg);
      cfg.log_json = strcmp(optarg, "json") == 0;
      break;
    case OPT_BELOW_MIN_WARN:
      if (!parse_u64(optarg, 86400, &v) || v == 0)
        return usage_error("--below-min-warn needs seconds (1..86400), got '%s'", optarg);
      cfg.below_min_warn = (int64_t)v;
      break;
    case OPT_API_TOKEN_FILE:
      if (!*optarg) return usage_error("--api-token-file needs a file%s", NULL);
      cfg.api_token_file = optarg;
      break;
    case OPT_NODE_KEY:
      if (!*optarg) return usage_error("--node-key needs a file%s", NULL);
      cfg.node_key = optarg;
      break;
    case OPT_SERVICE: {
      const char *why = NULL;
      pd_self_service_t sv;
      if (pd_self_parse_service(optarg, &sv, &why) < 0) {
        fprintf(stderr, "peerd: bad --service '%s': %s\n", optarg, why ? why : "invalid");
        return usage_error(NULL, NULL);
      }
      size_t k = 0;
      while (k < L->nservices && strcmp(L->services[k].name, sv.name) != 0) k++;
      if (k < L->nservices) return usage_error("--service %s given twice", sv.name);
      if (L->nservices == PD_RECORD_MAX_SERVICES) return usage_error("at most 8 --service%s", NULL);
      L->services[L->nservices++] = sv;
      break;
    }
    case OPT_ATTR: {
      const char *eq = strchr(optarg, '=');
      size_t kl = eq ? (size_t)(eq - optarg) : 0;
      pd_record_attr_t at;
      memset(&at, 0, sizeof at);
      if (!eq || kl < 1 || kl > PD_RECORD_NAME_MAX || strlen(eq + 1) > PD_RECORD_VALUE_MAX)
        return usage_error("--attr needs KEY=VALUE (key 1..16 of [a-z0-9._-], value 0..64 "
                           "printable characters), got '%s'", optarg);
      memcpy(at.key, optarg, kl);
      memcpy(at.value, eq + 1, strlen(eq + 1));
      if (!pd_record_name_ok(at.key) || !pd_record_value_ok(at.value))
        return usage_error("--attr needs KEY=VALUE (key 1..16 of [a-z0-9._-], value 0..64 "
                           "printable characters), got '%s'", optarg);
      for (size_t k = 0; k < L->nattrs; k++)
        if (strcmp(L->attrs[k].key, at.key) == 0) return usage_error("--attr %s given twice", at.key);
      if (L->nattrs == PD_RECORD_MAX_ATTRS) return usage_error("at most 8 --attr%s", NULL);
      L->attrs[L->nattrs++] = at;
      break;
    }
    case OPT_EXTERNAL: {
      const char *why = NULL;
      if (pd_netaddr_parse_ip(optarg, &cfg.external, &why) < 0 || !pd_netaddr_is_valid(&cfg.external)) {
        fprintf(stderr, "peerd: bad --external '%s': %s\n", optarg,
                why ? why : "needs a usable IP address (not unspecified)");
        return usage_error(NULL, NULL);
      }
      cfg.has_external = true;
      break;
    }
    case OPT_HELP: fputs(usage_text, stdout); return 0;
    case OPT_VERSION: printf("peerd %s\n", PEERD_VERSION); return 0;
    case ':': return usage_error("option %s needs a value", argv[optind - 1]);
    default: return usage_error("unknown option %s", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
  cfg.services = L->services;
  cfg.nservices = L->nservices;
  cfg.attrs = L->attrs;
  cfg.nattrs = L->nattrs;
  cfg.private_subnets = priv_subnets;
  cfg.nprivate_subnets = nsub;
  (void)nids;
  if (cfg.max_outbound == 0) cfg.min_outbound = 0; /* listen only */
  if (cfg.min_outbound > cfg.max_outbound) {
    fprintf(stderr, "peerd: --min-outbound (%u) is above --max-outbound (%u)\n",
            (unsigned)cfg.min_outbound, (unsigned)cfg.max_outbound);
    return usage_error(NULL, NULL);
  }
  cfg.private_ids = (const uint8_t(*)[PD_NODE_ID_LEN])L->priv;
  cfg.nprivate_ids = L->npriv;
  cfg.seeds = L->seeds;
  cfg.nseeds = L->nseeds;
  cfg.persistent = L->persistent;
  cfg.npersistent = L->npersistent;
  cfg.unconditional_ids = (const uint8_t(*)[PD_NODE_ID_LEN])L->uncond;
  cfg.nunconditional_ids = L->nuncond;
  return pd_daemon_run(&cfg);
}

/* ---- policy-check ------------------------------------------------------ */

static uint64_t mono_ns(void *ud) {
  (void)ud;
  struct timespec ts;
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

/* A peer view from a book entry (what the node would build, minus the
 * reputation table). */
static void view_of(pd_book_t *b, uint32_t id, int64_t now, double rep, int misb,
                    pd_peer_view_t *v) {
  memset(v, 0, sizeof *v);
  v->latency_ms = -1;
  pd_book_info_t e;
  if (pd_book_info(b, id, &e) == 0) {
    v->addr = e.addr;
    v->known = true;
    v->tried = e.in_tried;
    v->attempts = e.attempts;
    v->last_try = e.last_try;
    v->last_success = e.last_success;
    v->time = e.time;
    v->has_node_id = e.has_node_id;
    if (e.has_node_id) memcpy(v->node_id, e.node_id, PD_NODE_ID_LEN);
    v->first_seen = e.time;
  }
  v->latency_ms = (id % 3 == 0) ? -1 : (double)(id % 400);
  v->reputation = rep;
  v->misbehaviours = misb;
  v->banned = pd_banlist_is_banned(pd_book_bans_const(b), &v->addr, now, NULL);
  v->routable = pd_netaddr_is_routable(&v->addr);
  v->group_len = pd_netaddr_group(&v->addr, false, v->group);
}

typedef struct check_stats {
  size_t calls[PD_HOOK_COUNT];
  size_t decided[PD_HOOK_COUNT]; /* returned 0 */
} check_stats_t;

static void count_call(check_stats_t *cs, int hook, int rc) {
  cs->calls[hook]++;
  if (rc == 0) cs->decided[hook]++;
}

/* Build a synthetic book: `n` addresses from several sources, a third of
 * them moved to tried, a few banned. */
static int synthetic_book(pd_rng_t *rng, pd_policy_t *p, int64_t now, pd_book_t **out) {
  uint8_t key[PD_BOOK_KEY_LEN];
  for (int i = 0; i < PD_BOOK_KEY_LEN; i++) key[i] = (uint8_t)(i * 7 + 1);
  pd_book_t *b = NULL;
  int rc = pd_book_create(&b, key, rng, 0);
  if (rc < 0) return rc;
  pd_book_hooks_t h;
  pd_policy_book_hooks(p, rng, &h);
  pd_book_set_hooks(b, &h);
  for (int i = 0; i < 600; i++) {
    pd_netaddr_t a, src;
    char s[48];
    snprintf(s, sizeof s, "%d.%d.%d.%d:26656", 11 + i % 80, 1 + (i * 37) % 250, i % 7, 1 + i % 200);
    if (pd_netaddr_parse(s, 0, &a, NULL, NULL, NULL) < 0) continue;
    snprintf(s, sizeof s, "%d.%d.0.1", 100 + i % 5, 1 + i % 3);
    if (pd_netaddr_parse_ip(s, &src, NULL) < 0) continue;
    pd_book_add(b, &a, NULL, now - (i % 50) * 3600, &src, 0, now - 100, NULL);
    if (i % 3 == 0) pd_book_good(b, &a, true, now - 50);
    if (i % 11 == 0) pd_book_attempt(b, &a, true, now - 20);
  }
  pd_subnet_t sn;
  if (pd_subnet_parse("11.0.0.0/8", &sn, NULL) == 0) {
    pd_banlist_add(pd_book_bans(b), &sn, now, now + 3600, "policy-check");
  }
  *out = b;
  return 0;
}

static int cmd_policy_check(int argc, char **argv) {
  if (argc == 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (argc != 2) return usage_error("policy-check needs exactly one DIR%s", NULL);
  const char *dir = argv[1];
  pd_policy_file_t files[5];
  char err[600] = "";
  int nf = pd_daemon_read_policies(dir, files, err, sizeof err);
  if (nf < 0) {
    fprintf(stderr, "peerd policy-check: %s\n", err);
    return 1;
  }
  int problems = 0;
  /* Lua files the daemon would not read are most likely typos. */
  DIR *dh = opendir(dir);
  if (dh) {
    struct dirent *de;
    while ((de = readdir(dh)) != NULL) {
      size_t l = strlen(de->d_name);
      if (l < 4 || strcmp(de->d_name + l - 4, ".lua") != 0) continue;
      bool known = false;
      for (int i = 0; i < 5; i++) known |= strcmp(de->d_name, pd_daemon_policy_files[i]) == 0;
      if (!known) {
        printf("warning: %s/%s: not a policy file peerd reads (select, score, evict, reputation, "
               "pex)\n", dir, de->d_name);
      }
    }
    closedir(dh);
  }
  pd_policy_limits_t lim;
  pd_policy_limits_default(&lim);
  pd_policy_t *p = NULL;
  int rc = pd_policy_create(&p, &lim, mono_ns, NULL);
  if (rc < 0) {
    fprintf(stderr, "peerd policy-check: cannot create the policy host: %s\n", pd_strerror(rc));
    for (int i = 0; i < nf; i++) free((char *)files[i].text);
    return 1;
  }
  int64_t now = (int64_t)time(NULL);
  rc = pd_policy_load(p, files, (size_t)nf, now, err, sizeof err);
  for (int i = 0; i < nf; i++) free((char *)files[i].text);
  if (rc < 0) {
    printf("problem: %s/%s\n", dir, err);
    pd_policy_destroy(p);
    return 1;
  }
  pd_rng_t rng;
  pd_rng_seed(&rng, 20240601);
  pd_book_t *b = NULL;
  check_stats_t cs;
  memset(&cs, 0, sizeof cs);
  rc = synthetic_book(&rng, p, now, &b);
  if (rc < 0) {
    fprintf(stderr, "peerd policy-check: cannot build a book: %s\n", pd_strerror(rc));
    pd_policy_destroy(p);
    return 1;
  }
  pd_book_resolve_collisions(b, now + 3 * 3600); /* evict_tried on pending collisions */
  size_t picked = 0;
  for (int round = 0; round < 5; round++) {
    uint32_t ids[8];
    size_t got = 0;
    rc = pd_policy_select(p, b, &rng, 8, now, ids, &got);
    count_call(&cs, PD_HOOK_SELECT, rc);
    if (rc == 0) picked += got;
  }
  uint32_t ids[64];
  size_t tot = 0;
  size_t nids = pd_book_list(b, PD_TABLE_ANY, 0, 64, ids, &tot);
  static const char *const events[] = {"attempt", "connected", "good", "failed", "misbehaved",
                                       "disconnected"};
  for (size_t i = 0; i < nids; i++) {
    pd_peer_view_t v, w;
    view_of(b, ids[i], now, (double)((int)(i % 21) - 10), (int)(i % 4), &v);
    view_of(b, ids[(i + 1) % nids], now, 0, 0, &w);
    double score = 0;
    count_call(&cs, PD_HOOK_SCORE, pd_policy_score(p, &v, &rng, now, &score));
    pd_rep_verdict_t verdict;
    count_call(&cs, PD_HOOK_REPUTATION,
               pd_policy_reputation(p, &v, events[i % 6], i % 2 ? "policy-check" : NULL, &rng,
                                    now, &verdict));
    bool yes = false;
    count_call(&cs, PD_HOOK_PEX_ACCEPT, pd_policy_pex_accept(p, &v, &w, &rng, now, &yes));
    count_call(&cs, PD_HOOK_PEX_SHARE, pd_policy_pex_share(p, &v, &w, &rng, now, &yes));
    int verdict_i = 0;
    pd_book_info_t cand;
    if (pd_book_info(b, ids[(i + 7) % nids], &cand) == 0) {
      if (i % 2) cand.id = PD_BOOK_NO_ID; /* not in the book yet */
      count_call(&cs, PD_HOOK_EVICT_NEW,
                 pd_policy_evict_new(p, b, ids[i], &cand, &rng, now, &verdict_i));
    }
    count_call(&cs, PD_HOOK_EVICT_TRIED,
               pd_policy_evict_tried(p, b, ids[i], ids[(i + 3) % nids], &rng, now, &verdict_i));
  }
  /* every event type at least once with the same peer */
  for (int e = 0; e < 6; e++) {
    pd_peer_view_t v;
    view_of(b, ids[0], now, 0, e, &v);
    pd_rep_verdict_t verdict;
    count_call(&cs, PD_HOOK_REPUTATION,
               pd_policy_reputation(p, &v, events[e], "check", &rng, now, &verdict));
  }
  int hook, reason;
  char msg[512];
  while (pd_policy_next_unreported(p, &hook, &reason, msg, sizeof msg)) {
    printf("problem: %s: %s (%s): %s\n", dir, pd_policy_hook_name(hook),
           pd_policy_reason_name(reason), msg);
    problems++;
  }
  uint64_t failures = 0;
  for (int h = 0; h < PD_HOOK_COUNT; h++) {
    for (int r = 0; r < PD_POLICY_REASON_COUNT; r++) failures += pd_policy_failures(p, h, r);
  }
  pd_policy_status_t ps;
  pd_policy_status(p, &ps);
  if (problems == 0 && failures == 0) {
    printf("policy-check: OK: %s: %zu file%s, hash %s, %zu KiB of Lua state\n", dir, ps.nfiles,
           ps.nfiles == 1 ? "" : "s", ps.hash, ps.memory_bytes / 1024);
    printf("  book: %zu new, %zu tried, 1 ban\n", pd_book_count_new(b), pd_book_count_tried(b));
    for (int h = 0; h < PD_HOOK_COUNT; h++) {
      printf("  %-12s %s", pd_policy_hook_name(h), ps.has_hook[h] ? "policy" : "C default");
      if (ps.has_hook[h]) printf(": %zu calls, %zu decided", cs.calls[h], cs.decided[h]);
      if (h == PD_HOOK_SELECT && ps.has_hook[h]) printf(", %zu peers picked", picked);
      printf("\n");
    }
  } else {
    printf("policy-check: FAILED: %s: %llu failed call%s\n", dir, (unsigned long long)failures,
           failures == 1 ? "" : "s");
  }
  pd_book_destroy(b);
  pd_policy_destroy(p);
  return (problems || failures) ? 1 : 0;
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "book-slot") == 0) return cmd_book_slot(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "policy-check") == 0) {
    return cmd_policy_check(argc - 1, argv + 1);
  }
  if (argc >= 2 && strcmp(argv[1], "sim") == 0) return pd_sim_main(argc - 1, argv + 1);
  return cmd_run(argc, argv);
}
