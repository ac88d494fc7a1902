/* main — the peerd command line: `peerd [run] [flags]`, `peerd book-slot`,
 * `peerd --version`, `peerd --help`. Parses flags (getopt_long), then hands
 * over to the daemon (daemon.c) or computes a book slot (addrbook.c).
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
#include <sys/socket.h>

#include "addrbook.h"
#include "daemon.h"
#include "netaddr.h"

static const char usage_text[] =
    "Usage:\n"
    "  peerd [run] [options]                 run the daemon\n"
    "  peerd book-slot --key HEX [--source ADDR] [--allow-private] ADDR\n"
    "                                        print where ADDR goes in a book with key HEX\n"
    "  peerd --version                       print the version\n"
    "  peerd --help                          print this help\n"
    "\n"
    "Options for run:\n"
    "  --data-dir DIR          data directory (default: " PD_DAEMON_DEFAULT_DATA_DIR ")\n"
    "  --api HOST:PORT         control API listen address; port 0 picks a free port\n"
    "                          (default: " PD_DAEMON_DEFAULT_API ")\n"
    "  --allow-private         admit private and loopback addresses (default: off)\n"
    "  --save-interval MINUTES save the book every MINUTES; 0 disables periodic saves\n"
    "                          (default: 5)\n"
    "  --ban-time SECONDS      default ban length (default: 86400)\n"
    "  --seed N                seed of the core's RNG (default: random, from libsodium)\n"
    "  --log-level LEVEL       debug|info|warn|error (default: info)\n"
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
};

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

static int cmd_run(int argc, char **argv) {
  static const struct option opts[] = {
      {"data-dir", required_argument, NULL, OPT_DATA_DIR},
      {"api", required_argument, NULL, OPT_API},
      {"allow-private", no_argument, NULL, OPT_ALLOW_PRIVATE},
      {"save-interval", required_argument, NULL, OPT_SAVE_INTERVAL},
      {"ban-time", required_argument, NULL, OPT_BAN_TIME},
      {"seed", required_argument, NULL, OPT_SEED},
      {"log-level", required_argument, NULL, OPT_LOG_LEVEL},
      {"help", no_argument, NULL, OPT_HELP},
      {"version", no_argument, NULL, OPT_VERSION},
      {NULL, 0, NULL, 0},
  };
  pd_daemon_config_t cfg;
  pd_daemon_config_defaults(&cfg);
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
    case OPT_HELP: fputs(usage_text, stdout); return 0;
    case OPT_VERSION: printf("peerd %s\n", PEERD_VERSION); return 0;
    case ':': return usage_error("option %s needs a value", argv[optind - 1]);
    default: return usage_error("unknown option %s", argv[optind - 1]);
    }
  }
  if (optind < argc) return usage_error("unexpected argument '%s'", argv[optind]);
  return pd_daemon_run(&cfg);
}

int main(int argc, char **argv) {
  if (argc >= 2 && strcmp(argv[1], "book-slot") == 0) return cmd_book_slot(argc - 1, argv + 1);
  if (argc >= 2 && strcmp(argv[1], "run") == 0) return cmd_run(argc - 1, argv + 1);
  return cmd_run(argc, argv);
}
