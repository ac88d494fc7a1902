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
#ifdef __GLIBC__
#include <malloc.h>
#endif
#include <sys/socket.h>
#include <time.h>

#include "addrbook.h"
#include "conffile.h"
#include "daemon.h"
#include "dialer.h"
#include "err.h"
#include "netaddr.h"
#include "policy.h"
#include "record.h"
#include "self.h"
#include "settings.h"
#include "sim.h"

#define STR_(x) #x
#define STR(x) STR_(x)

static const char usage_text[] =
    "Usage:\n"
    "  peerd [run] [options]                 run the daemon\n"
    "  peerd book-slot --key HEX [--source ADDR] [--allow-private] ADDR\n"
    "                                        print where ADDR goes in a book with key HEX\n"
    "  peerd config-check FILE [options]     read a config file (and options, as run would),\n"
    "                                        print the effective config; exit 1 if invalid\n"
    "  peerd policy-check DIR                load DIR's policies and exercise every hook\n"
    "                                        against a synthetic book; exit 1 on any problem\n"
    "  peerd --version                       print the version\n"
    "  peerd --help                          print this help\n"
    "\n"
    "Options for run (each can also be set in a config file, named with _ for -;\n"
    "a flag overrides the file; docs/config.md):\n"
    "  --config FILE           read settings from FILE (Lua syntax: max_inbound = 40)\n"
    "  --data-dir DIR          data directory (default: $STATE_DIRECTORY when systemd\n"
    "                          sets it, else " PD_DAEMON_DEFAULT_DATA_DIR ")\n"
    "  --api HOST:PORT         control API listen address; port 0 picks a free port\n"
    "                          (default: " PD_DAEMON_DEFAULT_API ")\n"
    "  --api unix:PATH         the API on a unix socket (mode 0660) too; alone: instead of TCP\n"
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
    "  --policies DIR          policy directory, watched and hot-reloaded (default:\n"
    "                          ../share/peerd/policies beside the binary, else the install\n"
    "                          prefix's, else the copy built into the binary)\n"
    "  --shadow-policies DIR   a second policy set that sees every decision and is only\n"
    "                          compared (GET /v1/policy/shadow) (default: none)\n"
    "  --policy-instructions N instruction budget per policy call (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS) ")\n"
    "  --policy-timeout-ms N   wall-clock deadline per policy call (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS) ")\n"
    "  --policy-memory-mb N    memory cap of a policy set's Lua state (default: " STR(
        PD_DAEMON_DEFAULT_POLICY_MEMORY_MB) ")\n"
    "  --private-peer X        never share X through PEX: an IP, a subnet (1.2.3.0/24)\n"
    "                          or a 40-hex node id; repeatable, up to " STR(PD_SETTINGS_MAX_PRIVATE) " (default: none)\n"
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
    "  --max-inbound N         inbound connections (default: " STR(PD_DAEMON_DEFAULT_MAX_INBOUND) "; "
    STR(PD_DIALER_SEED_MAX_INBOUND) " with --seed-mode)\n"
    "  --ipv6-prefix N         an IPv6 peer's /N counts as one IP for the per-IP limits\n"
    "                          and misbehaviour bans (16..128, default: 64)\n"
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

static int hexval(int ch) {
  if (ch >= '0' && ch <= '9') return ch - '0';
  if (ch >= 'a' && ch <= 'f') return ch - 'a' + 10;
  if (ch >= 'A' && ch <= 'F') return ch - 'A' + 10;
  return -1;
}

static int parse_slot_addr(const char *s, pd_netaddr_t *out, const char **why) {
  return pd_netaddr_parse(s, PD_PARSE_PORT_OPTIONAL, out, NULL, NULL, why);
}

enum { OPT_KEY = 256, OPT_SOURCE, OPT_ALLOW_PRIVATE, OPT_HELP };

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

/* The settings of `peerd run` come from the embedded defaults, then the
 * config file (--config FILE), then the flags: a flag overrides the file
 * (settings.c). The long options are the settings' flags. */
enum { OPT_SETTING = 1000, OPT_CONFIG = 900, OPT_HELP_RUN, OPT_VERSION_RUN };

typedef struct given {
  size_t setting;
  const char *value;
} given_t;

/* Parse argv (flags only) into the settings, reading --config first. On a
 * problem print it and return the exit status (2 usage, 1 other); 0 when
 * s is ready; -1 when --help/--version was answered. */
static int load_settings(int argc, char **argv, pd_settings_t *s, const char *config_arg) {
  size_t n = pd_settings_count();
  struct option *opts = calloc(n + 4, sizeof *opts);
  given_t *given = calloc((size_t)argc + 1, sizeof *given);
  if (!opts || !given) {
    free(opts);
    free(given);
    fprintf(stderr, "peerd: out of memory\n");
    return 1;
  }
  for (size_t i = 0; i < n; i++) {
    opts[i].name = pd_settings_flag(i);
    opts[i].has_arg = pd_settings_kind(i) == PD_SK_BOOL ? no_argument : required_argument;
    opts[i].val = OPT_SETTING + (int)i;
  }
  opts[n] = (struct option){"config", required_argument, NULL, OPT_CONFIG};
  opts[n + 1] = (struct option){"help", no_argument, NULL, OPT_HELP_RUN};
  opts[n + 2] = (struct option){"version", no_argument, NULL, OPT_VERSION_RUN};
  const char *config = config_arg;
  size_t ng = 0;
  int rc = 0;
  opterr = 0;
  optind = 1;
  int ch;
  while (rc == 0 && (ch = getopt_long(argc, argv, ":", opts, NULL)) != -1) {
    if (ch >= OPT_SETTING && ch < OPT_SETTING + (int)n) {
      given[ng++] = (given_t){(size_t)(ch - OPT_SETTING), optarg};
    } else if (ch == OPT_CONFIG) {
      if (!*optarg) rc = usage_error("--config needs a file%s", NULL);
      config = optarg;
    } else if (ch == OPT_HELP_RUN) {
      fputs(usage_text, stdout);
      rc = -1;
    } else if (ch == OPT_VERSION_RUN) {
      printf("peerd %s\n", PEERD_VERSION);
      rc = -1;
    } else if (ch == ':') {
      rc = usage_error("option %s needs a value", argv[optind - 1]);
    } else {
      rc = usage_error("unknown option %s", argv[optind - 1]);
    }
  }
  if (rc == 0 && optind < argc) rc = usage_error("unexpected argument '%s'", argv[optind]);
  char err[600] = "";
  if (rc == 0 && config && pd_conffile_load(s, config, err, sizeof err) < 0) {
    fprintf(stderr, "peerd: %s\n", err);
    rc = 2;
  }
  for (size_t k = 0; rc == 0 && k < ng; k++) {
    if (pd_settings_apply(s, given[k].setting, given[k].value, PD_SET_FLAG, err, sizeof err) < 0) {
      fprintf(stderr, "peerd: %s\n", err);
      rc = usage_error(NULL, NULL);
    }
  }
  if (rc == 0 && pd_settings_finish(s, err, sizeof err) < 0) {
    fprintf(stderr, "peerd: %s\n", err);
    rc = 2;
  }
  free(opts);
  free(given);
  return rc;
}

static int cmd_run(int argc, char **argv) {
  pd_settings_t *s = NULL;
  if (pd_settings_new(&s) < 0) {
    fprintf(stderr, "peerd: out of memory\n");
    return 1;
  }
  int rc = load_settings(argc, argv, s, NULL);
  if (rc == 0) {
    char *json = pd_settings_json(s);
    pd_daemon_config_t *cfg = pd_settings_config_mut(s);
    cfg->settings_json = json;
    rc = pd_daemon_run(cfg);
    free(json);
  } else if (rc < 0) {
    rc = 0;
  }
  pd_settings_free(s);
  return rc;
}

/* peerd config-check FILE [flags...]: read FILE (and the flags, as run
 * would), print the effective config; exit 0 when valid, 1 when not. */
static int cmd_config_check(int argc, char **argv) {
  if (argc >= 2 && (strcmp(argv[1], "--help") == 0 || strcmp(argv[1], "-h") == 0)) {
    fputs(usage_text, stdout);
    return 0;
  }
  if (argc < 2 || argv[1][0] == '-') return usage_error("config-check needs a FILE%s", NULL);
  pd_settings_t *s = NULL;
  if (pd_settings_new(&s) < 0) {
    fprintf(stderr, "peerd: out of memory\n");
    return 1;
  }
  const char *file = argv[1];
  argv[1] = argv[0];
  int rc = load_settings(argc - 1, argv + 1, s, file);
  if (rc == 0) {
    printf("-- %s: OK; the effective config (every setting, and where it came from):\n", file);
    pd_settings_print(s, stdout);
  } else if (rc < 0) {
    rc = 0;
  } else {
    rc = 1;
  }
  pd_settings_free(s);
  return rc;
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
  pd_policy_file_t files[PD_DAEMON_POLICY_FILES];
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
      for (int i = 0; i < PD_DAEMON_POLICY_FILES; i++) known |= strcmp(de->d_name, pd_daemon_policy_files[i]) == 0;
      if (!known) {
        printf("warning: %s/%s: not a policy file peerd reads (select, score, evict, reputation, "
               "pex, dht)\n", dir, de->d_name);
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
    /* ctx as peerd's dialer gives it: 0, 2, 4, 6, 8 of 8 outbound */
    pd_policy_select_ctx_t sctx = {.outbound = 2 * round, .max_outbound = 8};
    rc = pd_policy_select_ctx(p, b, &rng, 8, &sctx, now, ids, &got);
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
    /* dht: the entry as a routing-table candidate, its subnet counts cycling
     * through the default limits (2 per bucket, 10 per table) */
    pd_policy_dht_node_t dn;
    memset(&dn, 0, sizeof dn);
    dn.addr = v.addr;
    memcpy(dn.node_id, v.node_id, PD_NODE_ID_LEN);
    dn.seq = 1 + i;
    dn.routable = v.routable;
    dn.bucket = 160 - (unsigned)(i % 8);
    dn.k = 16;
    dn.bucket_size = (unsigned)(i % 17);
    dn.subnet_in_bucket = (unsigned)(i % 4);
    dn.subnet_in_table = (unsigned)(i % 12);
    count_call(&cs, PD_HOOK_DHT_ADMIT, pd_policy_dht_admit(p, &dn, &rng, now, &yes));
    count_call(&cs, PD_HOOK_DHT_FEED, pd_policy_dht_feed(p, &v, &w, &rng, now, &yes));
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
  /* evict_inbound: up to 20 inbound candidates from the book's entries */
  if (nids > 0) {
    pd_policy_inbound_t cands[20];
    size_t nc = nids < 20 ? nids : 20;
    for (size_t i = 0; i < nc; i++) {
      memset(&cands[i], 0, sizeof cands[i]);
      view_of(b, ids[i], now, (double)((int)(i % 21) - 10), 0, &cands[i].view);
      cands[i].conn_id = 100 + i;
      cands[i].connected = now - 60 * (int64_t)(nc - i);
      cands[i].useful = i % 5 == 0 ? now - 30 : 0;
      cands[i].protected_by_default = i % 3 == 0;
    }
    for (size_t k = 1; k <= nc; k++) {
      pd_peer_view_t nv;
      view_of(b, ids[(k + 7) % nids], now, 0, 0, &nv);
      long victim = -1;
      count_call(&cs, PD_HOOK_EVICT_INBOUND,
                 pd_policy_evict_inbound(p, cands, k, &nv, &rng, now, &victim));
    }
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

/* A simulation's memory comes and goes in large blocks: an ADDR of 1,000
 * entries with their records is ~150 KB, and a buffer that size comes and
 * goes per busy connection. With glibc's defaults each such block is a fresh
 * mmap (or heap top that trimming gave back) whose pages fault in again
 * every time: in a 1,000-host trial, most of the time spent in the kernel.
 * A sim process lives for one run and grows to its peak anyway, so it keeps
 * what it freed for reuse, until the lab's periodic malloc_trim (sim.c)
 * gives the idle part back. Only the allocator's settings: no effect on any
 * result. */
static void sim_malloc_settings(void) {
#ifdef __GLIBC__
  (void)mallopt(M_MMAP_THRESHOLD, 32 << 20);
  (void)mallopt(M_TRIM_THRESHOLD, 1 << 30);
#endif
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "book-slot") == 0) return cmd_book_slot(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "policy-check") == 0) {
    return cmd_policy_check(argc - 1, argv + 1);
  }
  if (argc >= 2 && strcmp(argv[1], "config-check") == 0) {
    return cmd_config_check(argc - 1, argv + 1);
  }
  if (argc >= 2 && strcmp(argv[1], "sim") == 0) {
    sim_malloc_settings();
    return pd_sim_main(argc - 1, argv + 1);
  }
  return cmd_run(argc, argv);
}
