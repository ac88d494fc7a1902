/* settings — the run settings of `peerd run` (see settings.h).
 *
 * Every setting keeps the strings it was given (one per list element), and
 * where they came from. A value is checked when it is applied (so a bad
 * flag or config line is reported at once, with its name) and parsed again
 * into the pd_daemon_config_t at pd_settings_finish, by the same function.
 */
#include "settings.h"

#include <errno.h>
#include <stdarg.h>
#include <stdint.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>

#include <jansson.h>

#include "dialer.h"
#include "err.h"
#include "record.h"
#include "wire.h"

#define MAX_PRIVATE PD_SETTINGS_MAX_PRIVATE
#define STR_(x) #x
#define STR(x) STR_(x)

enum sid {
  S_DATA_DIR,
  S_API,
  S_API_TOKEN_FILE,
  S_ALLOW_PRIVATE,
  S_SAVE_INTERVAL,
  S_BAN_TIME,
  S_SEED,
  S_LOG_LEVEL,
  S_LOG_FORMAT,
  S_POLICIES,
  S_SHADOW_POLICIES,
  S_POLICY_INSTRUCTIONS,
  S_POLICY_TIMEOUT,
  S_POLICY_MEMORY,
  S_PRIVATE_PEER,
  S_LISTEN,
  S_SEEDS,
  S_PERSISTENT,
  S_SEED_MODE,
  S_MAX_OUTBOUND,
  S_MAX_INBOUND,
  S_MIN_OUTBOUND,
  S_BELOW_MIN_WARN,
  S_NETWORK,
  S_UNCONDITIONAL,
  S_PRIVATE_IDS,
  S_HANDSHAKE_TIMEOUT,
  S_P2P,
  S_SERVICES,
  S_ATTRS,
  S_EXTERNAL,
  S_NODE_KEY,
  S_IPV6_PREFIX,
  S_DHT,
  S_DHT_LISTEN,
  S_BOOTNODES,
  S_COUNT
};

typedef struct def {
  const char *key;   /* config-file key */
  const char *flag;  /* long flag without the dashes */
  const char *alias; /* another accepted config-file key, or NULL */
  pd_setting_kind_t kind;
  const char *deflt; /* the default as text (NULL: unset / empty) */
  uint64_t min, max; /* PD_SK_INT range */
  const char *what;  /* PD_SK_INT unit: "a number", "seconds" ... */
} def_t;

static const def_t defs[S_COUNT] = {
    [S_DATA_DIR] = {"data_dir", "data-dir", NULL, PD_SK_STR, PD_DAEMON_DEFAULT_DATA_DIR, 0, 0, NULL},
    [S_API] = {"api", "api", NULL, PD_SK_LIST, PD_DAEMON_DEFAULT_API, 0, 0, NULL},
    [S_API_TOKEN_FILE] = {"api_token_file", "api-token-file", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_ALLOW_PRIVATE] = {"allow_private", "allow-private", NULL, PD_SK_BOOL, "false", 0, 0, NULL},
    [S_SAVE_INTERVAL] = {"save_interval", "save-interval", NULL, PD_SK_INT,
                         STR(PD_DAEMON_DEFAULT_SAVE_MINUTES), 0, 1000000, "minutes"},
    [S_BAN_TIME] = {"ban_time", "ban-time", NULL, PD_SK_INT, STR(PD_DAEMON_DEFAULT_BAN_SECS), 1,
                    100ull * 365 * 86400, "seconds"},
    [S_SEED] = {"seed", "seed", NULL, PD_SK_INT, NULL, 0, UINT64_MAX, "an unsigned 64-bit number"},
    [S_LOG_LEVEL] = {"log_level", "log-level", NULL, PD_SK_STR, "info", 0, 0, NULL},
    [S_LOG_FORMAT] = {"log_format", "log-format", NULL, PD_SK_STR, "logfmt", 0, 0, NULL},
    /* no fixed default: chosen at start (paths.c) */
    [S_POLICIES] = {"policies", "policies", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_SHADOW_POLICIES] = {"shadow_policies", "shadow-policies", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_POLICY_INSTRUCTIONS] = {"policy_instructions", "policy-instructions", NULL, PD_SK_INT,
                               STR(PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS), 1000, UINT64_MAX / 2,
                               "a number"},
    [S_POLICY_TIMEOUT] = {"policy_timeout_ms", "policy-timeout-ms", NULL, PD_SK_INT,
                          STR(PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS), 1, 60000, "milliseconds"},
    [S_POLICY_MEMORY] = {"policy_memory_mb", "policy-memory-mb", NULL, PD_SK_INT,
                         STR(PD_DAEMON_DEFAULT_POLICY_MEMORY_MB), 1, 65536, "MiB"},
    [S_PRIVATE_PEER] = {"private_peer", "private-peer", "private_peers", PD_SK_LIST, NULL, 0, 0, NULL},
    [S_LISTEN] = {"listen", "listen", NULL, PD_SK_STR, PD_DAEMON_DEFAULT_LISTEN, 0, 0, NULL},
    [S_SEEDS] = {"seeds", "seeds", NULL, PD_SK_LIST, NULL, 0, 0, NULL},
    [S_PERSISTENT] = {"persistent_peers", "persistent-peers", NULL, PD_SK_LIST, NULL, 0, 0, NULL},
    [S_SEED_MODE] = {"seed_mode", "seed-mode", NULL, PD_SK_BOOL, "false", 0, 0, NULL},
    [S_MAX_OUTBOUND] = {"max_outbound", "max-outbound", NULL, PD_SK_INT,
                        STR(PD_DAEMON_DEFAULT_MAX_OUTBOUND), 0, 1000, "a number"},
    [S_MAX_INBOUND] = {"max_inbound", "max-inbound", NULL, PD_SK_INT,
                       STR(PD_DAEMON_DEFAULT_MAX_INBOUND), 0, 100000, "a number"},
    [S_MIN_OUTBOUND] = {"min_outbound", "min-outbound", NULL, PD_SK_INT,
                        STR(PD_DAEMON_DEFAULT_MIN_OUTBOUND), 0, 1000, "a number"},
    [S_BELOW_MIN_WARN] = {"below_min_warn", "below-min-warn", NULL, PD_SK_INT, "60", 1, 86400,
                          "seconds"},
    [S_NETWORK] = {"network", "network", NULL, PD_SK_STR, PD_WIRE_NETWORK_DEFAULT, 0, 0, NULL},
    [S_UNCONDITIONAL] = {"unconditional_peer_ids", "unconditional-peer-ids", NULL, PD_SK_LIST, NULL,
                         0, 0, NULL},
    [S_PRIVATE_IDS] = {"private_peer_ids", "private-peer-ids", NULL, PD_SK_LIST, NULL, 0, 0, NULL},
    [S_HANDSHAKE_TIMEOUT] = {"handshake_timeout_ms", "handshake-timeout-ms", NULL, PD_SK_INT,
                             STR(PD_DAEMON_DEFAULT_HANDSHAKE_TIMEOUT_MS), 100, 600000,
                             "milliseconds"},
    [S_P2P] = {"p2p", "p2p", NULL, PD_SK_ONOFF, "on", 0, 0, NULL},
    [S_SERVICES] = {"services", "service", "service", PD_SK_MAP, NULL, 0, 0, NULL},
    [S_ATTRS] = {"attrs", "attr", "attr", PD_SK_MAP, NULL, 0, 0, NULL},
    [S_EXTERNAL] = {"external", "external", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_NODE_KEY] = {"node_key", "node-key", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_IPV6_PREFIX] = {"ipv6_prefix", "ipv6-prefix", NULL, PD_SK_INT, "64", 16, 128, "prefix bits"},
    [S_DHT] = {"dht", "dht", NULL, PD_SK_ONOFF, "on", 0, 0, NULL},
    [S_DHT_LISTEN] = {"dht_listen", "dht-listen", NULL, PD_SK_STR, NULL, 0, 0, NULL},
    [S_BOOTNODES] = {"bootnodes", "bootnodes", NULL, PD_SK_LIST, NULL, 0, 0, NULL},
};

typedef struct slot {
  char **vals; /* the strings given (one per list/map element) */
  size_t n;
  pd_setting_source_t src;
} slot_t;

struct pd_settings {
  slot_t slot[S_COUNT];
  char *file;
  pd_daemon_config_t cfg;
  /* what cfg borrows, rebuilt by finish */
  pd_endpoint_t *seeds, *persistent;
  size_t nseeds, npersistent;
  uint8_t (*uncond)[PD_NODE_ID_LEN];
  size_t nuncond;
  uint8_t (*priv)[PD_NODE_ID_LEN];
  size_t npriv;
  pd_subnet_t subnets[MAX_PRIVATE];
  size_t nsubnets;
  pd_self_service_t services[PD_RECORD_MAX_SERVICES];
  size_t nservices;
  pd_record_attr_t attrs[PD_RECORD_MAX_ATTRS];
  size_t nattrs;
  pd_bootnode_t *boot;
  size_t nboot;
};

size_t pd_settings_count(void) { return S_COUNT; }
const char *pd_settings_key(size_t i) { return i < S_COUNT ? defs[i].key : NULL; }
const char *pd_settings_flag(size_t i) { return i < S_COUNT ? defs[i].flag : NULL; }
pd_setting_kind_t pd_settings_kind(size_t i) { return i < S_COUNT ? defs[i].kind : PD_SK_STR; }

int pd_settings_find_key(const char *key) {
  if (!key) return -1;
  for (size_t i = 0; i < S_COUNT; i++) {
    if (strcmp(defs[i].key, key) == 0 || (defs[i].alias && strcmp(defs[i].alias, key) == 0)) {
      return (int)i;
    }
  }
  return -1;
}

static void slot_clear(slot_t *sl) {
  for (size_t k = 0; k < sl->n; k++) free(sl->vals[k]);
  free(sl->vals);
  sl->vals = NULL;
  sl->n = 0;
}

static void free_built(pd_settings_t *s) {
  free(s->seeds);
  free(s->persistent);
  free(s->boot);
  s->boot = NULL;
  s->nboot = 0;
  free(s->uncond);
  free(s->priv);
  s->seeds = s->persistent = NULL;
  s->uncond = s->priv = NULL;
  s->nseeds = s->npersistent = s->nuncond = s->npriv = 0;
  s->nsubnets = s->nservices = s->nattrs = 0;
}

int pd_settings_new(pd_settings_t **out) {
  *out = NULL;
  pd_settings_t *s = calloc(1, sizeof *s);
  if (!s) return PD_ENOMEM;
  pd_daemon_config_defaults(&s->cfg);
  *out = s;
  return 0;
}

void pd_settings_free(pd_settings_t *s) {
  if (!s) return;
  for (size_t i = 0; i < S_COUNT; i++) slot_clear(&s->slot[i]);
  free_built(s);
  free(s->file);
  free(s);
}

int pd_settings_set_file(pd_settings_t *s, const char *path) {
  char *c = path ? strdup(path) : NULL;
  if (path && !c) return PD_ENOMEM;
  free(s->file);
  s->file = c;
  return 0;
}

const char *pd_settings_file(const pd_settings_t *s) { return s->file; }

/* ---- checking and parsing one value --------------------------------------- */

static int fail(char *err, size_t cap, const char *fmt, ...) {
  if (err && cap) {
    va_list ap;
    va_start(ap, fmt);
    vsnprintf(err, cap, fmt, ap);
    va_end(ap);
  }
  return PD_EINVAL;
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

static bool network_name_ok(const char *s) {
  size_t n = strlen(s);
  if (n < 1 || n > 32) return false;
  for (size_t i = 0; i < n; i++) {
    if ((unsigned char)s[i] < 0x21 || (unsigned char)s[i] > 0x7e) return false;
  }
  return true;
}

/* The name a message uses: "--max-inbound" for a flag, "max_inbound" otherwise. */
static void name_of(size_t i, pd_setting_source_t src, char *buf, size_t cap) {
  if (src == PD_SET_FLAG) snprintf(buf, cap, "--%s", defs[i].flag);
  else snprintf(buf, cap, "%s", defs[i].key);
}

/* Check one value (a scalar, or one element of a list or map) of setting i
 * and, with s != NULL, store it into s's config / built arrays. */
static int parse_one(pd_settings_t *s, size_t i, const char *v, pd_setting_source_t src,
                     char *err, size_t cap) {
  char nm[48];
  name_of(i, src, nm, sizeof nm);
  const def_t *d = &defs[i];
  pd_daemon_config_t *cfg = s ? &s->cfg : NULL;
  uint64_t u = 0;
  const char *why = NULL;
  if (d->kind == PD_SK_INT) {
    if (!parse_u64(v, d->max, &u) || u < d->min) {
      if (i == S_SEED) return fail(err, cap, "%s needs %s, got '%s'", nm, d->what, v);
      return fail(err, cap, "%s needs %s (%llu..%llu), got '%s'", nm, d->what,
                  (unsigned long long)d->min, (unsigned long long)d->max, v);
    }
  }
  if (d->kind == PD_SK_BOOL && strcmp(v, "true") != 0 && strcmp(v, "false") != 0) {
    return fail(err, cap, "%s must be true or false, got '%s'", nm, v);
  }
  switch ((enum sid)i) {
  case S_DATA_DIR:
  case S_POLICIES:
  case S_SHADOW_POLICIES:
  case S_API_TOKEN_FILE:
  case S_NODE_KEY:
    if (!*v)
      return fail(err, cap, "%s needs a %s", nm,
                  i == S_DATA_DIR || i == S_POLICIES || i == S_SHADOW_POLICIES ? "directory"
                                                                                : "file");
    if (cfg) {
      if (i == S_DATA_DIR) cfg->data_dir = v;
      else if (i == S_POLICIES) cfg->policy_dir = v;
      else if (i == S_SHADOW_POLICIES) cfg->shadow_policy_dir = v;
      else if (i == S_API_TOKEN_FILE) cfg->api_token_file = v;
      else cfg->node_key = v;
    }
    return 0;
  case S_API: { /* HOST:PORT and/or unix:PATH */
    pd_daemon_config_t scratch;
    pd_daemon_config_defaults(&scratch);
    if (pd_daemon_config_api(cfg ? cfg : &scratch, v, &why) < 0) {
      return fail(err, cap, "bad %s '%s': %s", nm, v, why ? why : "invalid");
    }
    return 0;
  }
  case S_LISTEN: {
    struct sockaddr_storage ss;
    if (pd_daemon_parse_listen(v, &ss, sizeof ss, &why) < 0) {
      return fail(err, cap, "bad %s '%s': %s", nm, v, why ? why : "invalid");
    }
    if (cfg) cfg->listen = v;
    return 0;
  }
  case S_ALLOW_PRIVATE:
    if (cfg) cfg->allow_private = strcmp(v, "true") == 0;
    return 0;
  case S_SEED_MODE:
    if (cfg) cfg->seed_mode = strcmp(v, "true") == 0;
    return 0;
  case S_SAVE_INTERVAL:
    if (cfg) cfg->save_interval = (int64_t)u * 60;
    return 0;
  case S_BAN_TIME:
    if (cfg) cfg->ban_time = (int64_t)u;
    return 0;
  case S_SEED:
    if (cfg) {
      cfg->seed = u;
      cfg->has_seed = true;
    }
    return 0;
  case S_LOG_LEVEL: {
    int lvl = pd_log_level_parse(v);
    if (lvl < 0) return fail(err, cap, "%s must be debug|info|warn|error, got '%s'", nm, v);
    if (cfg) cfg->log_level = lvl;
    return 0;
  }
  case S_LOG_FORMAT:
    if (strcmp(v, "logfmt") != 0 && strcmp(v, "json") != 0) {
      return fail(err, cap, "%s must be logfmt or json, got '%s'", nm, v);
    }
    if (cfg) cfg->log_json = strcmp(v, "json") == 0;
    return 0;
  case S_POLICY_INSTRUCTIONS:
    if (cfg) cfg->policy_instructions = u;
    return 0;
  case S_POLICY_TIMEOUT:
    if (cfg) cfg->policy_timeout_ms = u;
    return 0;
  case S_POLICY_MEMORY:
    if (cfg) cfg->policy_memory_mb = u;
    return 0;
  case S_MAX_OUTBOUND:
    if (cfg) cfg->max_outbound = (uint32_t)u;
    return 0;
  case S_MAX_INBOUND:
    if (cfg) cfg->max_inbound = (uint32_t)u;
    return 0;
  case S_MIN_OUTBOUND:
    if (cfg) cfg->min_outbound = (uint32_t)u;
    return 0;
  case S_BELOW_MIN_WARN:
    if (cfg) cfg->below_min_warn = (int64_t)u;
    return 0;
  case S_IPV6_PREFIX:
    if (cfg) cfg->ipv6_prefix = (uint8_t)u;
    return 0;
  case S_HANDSHAKE_TIMEOUT:
    if (cfg) cfg->handshake_timeout_ms = (int64_t)u;
    return 0;
  case S_NETWORK:
    if (!network_name_ok(v)) {
      return fail(err, cap, "%s needs 1..32 printable characters without spaces, got '%s'", nm, v);
    }
    if (cfg) cfg->network = v;
    return 0;
  case S_P2P:
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
      return fail(err, cap, "%s must be on or off, got '%s'", nm, v);
    }
    if (cfg) cfg->p2p = strcmp(v, "on") == 0;
    return 0;
  case S_DHT:
    if (strcmp(v, "on") != 0 && strcmp(v, "off") != 0) {
      return fail(err, cap, "%s must be on or off, got '%s'", nm, v);
    }
    if (cfg) cfg->dht = strcmp(v, "on") == 0;
    return 0;
  case S_DHT_LISTEN: {
    struct sockaddr_storage ss;
    if (pd_daemon_parse_listen(v, &ss, sizeof ss, &why) < 0) {
      return fail(err, cap, "bad %s '%s': %s", nm, v, why ? why : "invalid");
    }
    if (cfg) cfg->dht_listen = v;
    return 0;
  }
  case S_BOOTNODES: {
    pd_bootnode_t b;
    if (pd_bootnode_parse(v, &b, &why) < 0) {
      return fail(err, cap, "bad %s entry '%.60s': %s", nm, v, why ? why : "invalid");
    }
    if (!s) return 0;
    pd_bootnode_t *grown = realloc(s->boot, (s->nboot + 1) * sizeof *grown);
    if (!grown) return fail(err, cap, "out of memory");
    s->boot = grown;
    grown[s->nboot++] = b;
    return 0;
  }
  case S_EXTERNAL: {
    pd_netaddr_t ip;
    if (pd_netaddr_parse_ip(v, &ip, &why) < 0 || !pd_netaddr_is_valid(&ip)) {
      return fail(err, cap, "bad %s '%s': %s", nm, v,
                  why ? why : "needs a usable IP address (not unspecified)");
    }
    if (cfg) {
      cfg->external = ip;
      cfg->has_external = true;
    }
    return 0;
  }
  case S_SEEDS:
  case S_PERSISTENT: {
    pd_endpoint_t ep;
    if (pd_endpoint_parse(v, PD_PARSE_ALLOW_ID | PD_PARSE_ALLOW_HOSTNAME, &ep, &why) < 0) {
      return fail(err, cap, "bad %s entry '%s': %s", nm, v, why ? why : "invalid");
    }
    if (!s) return 0;
    pd_endpoint_t **list = i == S_SEEDS ? &s->seeds : &s->persistent;
    size_t *n = i == S_SEEDS ? &s->nseeds : &s->npersistent;
    pd_endpoint_t *grown = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) return fail(err, cap, "out of memory");
    *list = grown;
    grown[(*n)++] = ep;
    return 0;
  }
  case S_UNCONDITIONAL:
  case S_PRIVATE_IDS:
  case S_PRIVATE_PEER: {
    uint8_t id[PD_NODE_ID_LEN];
    bool id_ok = strlen(v) == PD_NODE_ID_HEXLEN && pd_node_id_parse(v, strlen(v), id) == 0;
    if (i == S_PRIVATE_PEER && !id_ok) {
      pd_subnet_t sn;
      if (pd_subnet_parse(v, &sn, &why) < 0) {
        return fail(err, cap, "bad %s '%s': %s", nm, v,
                    why ? why : "expected an IP, a subnet or a 40-hex node id");
      }
      if (s) s->subnets[s->nsubnets++] = sn;
      return 0;
    }
    if (!id_ok) return fail(err, cap, "bad %s entry '%s': expected 40 hex characters", nm, v);
    if (!s) return 0;
    uint8_t(**list)[PD_NODE_ID_LEN] = i == S_UNCONDITIONAL ? &s->uncond : &s->priv;
    size_t *n = i == S_UNCONDITIONAL ? &s->nuncond : &s->npriv;
    uint8_t(*grown)[PD_NODE_ID_LEN] = realloc(*list, (*n + 1) * sizeof **list);
    if (!grown) return fail(err, cap, "out of memory");
    *list = grown;
    memcpy(grown[(*n)++], id, PD_NODE_ID_LEN);
    return 0;
  }
  case S_SERVICES: {
    pd_self_service_t sv;
    if (pd_self_parse_service(v, &sv, &why) < 0) {
      return fail(err, cap, "bad %s '%s': %s", nm, v, why ? why : "invalid");
    }
    if (s) s->services[s->nservices++] = sv;
    return 0;
  }
  case S_ATTRS: {
    const char *eq = strchr(v, '=');
    size_t kl = eq ? (size_t)(eq - v) : 0;
    pd_record_attr_t at;
    memset(&at, 0, sizeof at);
    if (!eq || kl < 1 || kl > PD_RECORD_NAME_MAX || strlen(eq + 1) > PD_RECORD_VALUE_MAX) {
      return fail(err, cap, "%s needs KEY=VALUE (key 1..16 of [a-z0-9._-], value 0..64 "
                  "printable characters), got '%s'", nm, v);
    }
    memcpy(at.key, v, kl);
    memcpy(at.value, eq + 1, strlen(eq + 1));
    if (!pd_record_name_ok(at.key) || !pd_record_value_ok(at.value)) {
      return fail(err, cap, "%s needs KEY=VALUE (key 1..16 of [a-z0-9._-], value 0..64 "
                  "printable characters), got '%s'", nm, v);
    }
    if (s) s->attrs[s->nattrs++] = at;
    return 0;
  }
  case S_COUNT: break;
  }
  return fail(err, cap, "unknown setting");
}

/* The name part of a MAP element "name=value". */
static size_t map_name_len(const char *v) {
  const char *eq = strchr(v, '=');
  return eq ? (size_t)(eq - v) : strlen(v);
}

static int slot_push(slot_t *sl, const char *v) {
  char *c = strdup(v);
  char **grown = c ? realloc(sl->vals, (sl->n + 1) * sizeof *grown) : NULL;
  if (!grown) {
    free(c);
    return PD_ENOMEM;
  }
  sl->vals = grown;
  sl->vals[sl->n++] = c;
  return 0;
}

/* Limits of a list or map, checked when an element is added. */
static int check_element(const pd_settings_t *s, size_t i, const char *v, pd_setting_source_t src,
                         char *err, size_t cap) {
  const slot_t *sl = &s->slot[i];
  char nm[48];
  name_of(i, src, nm, sizeof nm);
  if (i == S_SERVICES || i == S_ATTRS) {
    size_t max = i == S_SERVICES ? PD_RECORD_MAX_SERVICES : PD_RECORD_MAX_ATTRS;
    size_t nl = map_name_len(v);
    for (size_t k = 0; k < sl->n; k++) {
      if (map_name_len(sl->vals[k]) == nl && strncmp(sl->vals[k], v, nl) == 0) {
        return fail(err, cap, "%s %.*s given twice", nm, (int)nl, v);
      }
    }
    if (sl->n >= max) return fail(err, cap, "at most %zu %s", max, nm);
    return 0;
  }
  if (i == S_API) { /* one HOST:PORT and one unix:PATH at most */
    bool unix_sock = strncmp(v, "unix:", 5) == 0;
    for (size_t k = 0; k < sl->n; k++) {
      if ((strncmp(sl->vals[k], "unix:", 5) == 0) == unix_sock) {
        return fail(err, cap, "%s given twice for %s", nm, unix_sock ? "a unix socket" : "HOST:PORT");
      }
    }
    return 0;
  }
  if (i == S_PRIVATE_PEER) {
    if (sl->n >= MAX_PRIVATE) return fail(err, cap, "too many %s (max %d)", nm, MAX_PRIVATE);
    return 0;
  }
  if (sl->n >= PD_DIALER_MAX_LIST) {
    return fail(err, cap, "%s: more than %d entries", nm, PD_DIALER_MAX_LIST);
  }
  return 0;
}

void pd_settings_touch(pd_settings_t *s, size_t i, pd_setting_source_t src) {
  if (!s || i >= S_COUNT) return;
  slot_t *sl = &s->slot[i];
  if (src == PD_SET_FLAG && sl->src == PD_SET_FILE) slot_clear(sl); /* the flag replaces the file */
  sl->src = src;
}

static int apply_element(pd_settings_t *s, size_t i, const char *v, pd_setting_source_t src,
                         char *err, size_t cap) {
  int rc = parse_one(NULL, i, v, src, err, cap);
  if (rc < 0) return rc;
  rc = check_element(s, i, v, src, err, cap);
  if (rc < 0) return rc;
  if (slot_push(&s->slot[i], v) < 0) return fail(err, cap, "out of memory");
  return 0;
}

int pd_settings_apply(pd_settings_t *s, size_t i, const char *value, pd_setting_source_t src,
                      char *err, size_t cap) {
  if (!s || i >= S_COUNT) return fail(err, cap, "unknown setting");
  const def_t *d = &defs[i];
  if (d->kind == PD_SK_BOOL && !value) value = "true";
  if (!value) return fail(err, cap, "%s needs a value", d->key);
  slot_t *sl = &s->slot[i];
  if (d->kind != PD_SK_LIST && d->kind != PD_SK_MAP) {
    int rc = parse_one(NULL, i, value, src, err, cap);
    if (rc < 0) return rc;
    slot_clear(sl);
    sl->src = src;
    return slot_push(sl, value) < 0 ? fail(err, cap, "out of memory") : 0;
  }
  if (src == PD_SET_FLAG && sl->src == PD_SET_FILE) slot_clear(sl); /* the flag replaces the file */
  sl->src = src;
  if (d->kind == PD_SK_MAP || i == S_PRIVATE_PEER) return apply_element(s, i, value, src, err, cap);
  /* a comma-separated list: one element each */
  char *copy = strdup(value);
  if (!copy) return fail(err, cap, "out of memory");
  int rc = 0;
  char *save = NULL;
  for (char *tok = strtok_r(copy, ",", &save); tok && rc == 0; tok = strtok_r(NULL, ",", &save)) {
    while (*tok == ' ') tok++;
    size_t l = strlen(tok);
    while (l > 0 && tok[l - 1] == ' ') tok[--l] = '\0';
    if (!*tok) continue;
    rc = apply_element(s, i, tok, src, err, cap);
  }
  free(copy);
  return rc;
}

int pd_settings_finish(pd_settings_t *s, char *err, size_t cap) {
  free_built(s);
  pd_daemon_config_defaults(&s->cfg);
  for (size_t i = 0; i < S_COUNT; i++) {
    const slot_t *sl = &s->slot[i];
    for (size_t k = 0; k < sl->n; k++) {
      int rc = parse_one(s, i, sl->vals[k], sl->src, err, cap);
      if (rc < 0) return rc;
    }
  }
  pd_daemon_config_t *c = &s->cfg;
  if (c->seed_mode && s->slot[S_MAX_INBOUND].n == 0) c->max_inbound = PD_DIALER_SEED_MAX_INBOUND;
  if (c->max_outbound == 0) c->min_outbound = 0; /* listen only */
  if (c->min_outbound > c->max_outbound) {
    return fail(err, cap, "min_outbound (%u) is above max_outbound (%u)", (unsigned)c->min_outbound,
                (unsigned)c->max_outbound);
  }
  c->seeds = s->seeds;
  c->nseeds = s->nseeds;
  c->bootnodes = s->boot;
  c->nbootnodes = s->nboot;
  c->persistent = s->persistent;
  c->npersistent = s->npersistent;
  c->unconditional_ids = (const uint8_t(*)[PD_NODE_ID_LEN])s->uncond;
  c->nunconditional_ids = s->nuncond;
  c->private_ids = (const uint8_t(*)[PD_NODE_ID_LEN])s->priv;
  c->nprivate_ids = s->npriv;
  c->private_subnets = s->subnets;
  c->nprivate_subnets = s->nsubnets;
  c->services = s->services;
  c->nservices = s->nservices;
  c->attrs = s->attrs;
  c->nattrs = s->nattrs;
  return 0;
}

const pd_daemon_config_t *pd_settings_config(const pd_settings_t *s) { return &s->cfg; }
pd_daemon_config_t *pd_settings_config_mut(pd_settings_t *s) { return &s->cfg; }

/* ---- the effective config ------------------------------------------------- */

static const char *source_name(pd_setting_source_t src) {
  switch (src) {
  case PD_SET_FILE: return "file";
  case PD_SET_FLAG: return "flag";
  default: return "default";
  }
}

static bool all_digits(const char *v) {
  if (!*v || strlen(v) > 18) return false;
  for (const char *p = v; *p; p++) {
    if (*p < '0' || *p > '9') return false;
  }
  return true;
}

/* A scalar as JSON: integers as numbers (when they fit), booleans. */
static json_t *scalar_json(size_t i, const char *v) {
  if (!v) return json_null();
  if (defs[i].kind == PD_SK_BOOL) return json_boolean(strcmp(v, "true") == 0);
  if (defs[i].kind == PD_SK_INT && all_digits(v)) return json_integer((json_int_t)strtoll(v, NULL, 10));
  return json_string(v);
}

/* A scalar's default: max_inbound has its own in seed mode. */
static const char *deflt_of(const pd_settings_t *s, size_t i) {
  if (i == S_MAX_INBOUND && s->cfg.seed_mode) return STR(PD_DIALER_SEED_MAX_INBOUND);
  return defs[i].deflt;
}

static json_t *value_json(const pd_settings_t *s, size_t i) {
  const slot_t *sl = &s->slot[i];
  const def_t *d = &defs[i];
  if (d->kind == PD_SK_LIST) {
    json_t *a = json_array();
    for (size_t k = 0; a && k < sl->n; k++) json_array_append_new(a, json_string(sl->vals[k]));
    if (a && sl->n == 0 && d->deflt) json_array_append_new(a, json_string(d->deflt));
    return a;
  }
  if (d->kind == PD_SK_MAP) {
    json_t *o = json_object();
    for (size_t k = 0; o && k < sl->n; k++) {
      size_t nl = map_name_len(sl->vals[k]);
      char name[PD_RECORD_NAME_MAX + 1];
      snprintf(name, sizeof name, "%.*s", (int)nl, sl->vals[k]);
      const char *val = sl->vals[k][nl] ? sl->vals[k] + nl + 1 : "";
      json_object_set_new(o, name, i == S_SERVICES && all_digits(val)
                                       ? json_integer((json_int_t)strtoll(val, NULL, 10))
                                       : json_string(val));
    }
    return o;
  }
  return scalar_json(i, sl->n ? sl->vals[0] : deflt_of(s, i));
}

char *pd_settings_json(const pd_settings_t *s) {
  json_t *root = json_object();
  json_t *set = json_object();
  if (!root || !set) {
    json_decref(root);
    json_decref(set);
    return NULL;
  }
  json_object_set_new(root, "file", s->file ? json_string(s->file) : json_null());
  for (size_t i = 0; i < S_COUNT; i++) {
    json_t *e = json_object();
    if (!e) continue;
    json_object_set_new(e, "value", value_json(s, i));
    json_object_set_new(e, "source", json_string(source_name(s->slot[i].src)));
    json_object_set_new(set, defs[i].key, e);
  }
  json_object_set_new(root, "settings", set);
  char *out = json_dumps(root, JSON_COMPACT);
  json_decref(root);
  return out;
}

/* A string in the file's syntax (a Lua string literal). */
static void print_lua_string(FILE *f, const char *v) {
  fputc('"', f);
  for (const char *p = v; *p; p++) {
    if (*p == '"' || *p == '\\') fputc('\\', f);
    fputc(*p, f);
  }
  fputc('"', f);
}

void pd_settings_print(const pd_settings_t *s, FILE *f) {
  for (size_t i = 0; i < S_COUNT; i++) {
    const slot_t *sl = &s->slot[i];
    const def_t *d = &defs[i];
    fprintf(f, "%s = ", d->key);
    if (d->kind == PD_SK_LIST && sl->n == 0 && d->deflt) {
      fputs("{ ", f);
      print_lua_string(f, d->deflt);
      fputs(" }", f);
    } else if (d->kind == PD_SK_LIST || d->kind == PD_SK_MAP) {
      fputs("{", f);
      for (size_t k = 0; k < sl->n; k++) {
        fputs(k ? ", " : " ", f);
        if (d->kind == PD_SK_MAP) {
          size_t nl = map_name_len(sl->vals[k]);
          fprintf(f, "[\"%.*s\"] = ", (int)nl, sl->vals[k]);
          const char *val = sl->vals[k][nl] ? sl->vals[k] + nl + 1 : "";
          if (i == S_SERVICES && all_digits(val)) fputs(val, f);
          else print_lua_string(f, val);
        } else {
          print_lua_string(f, sl->vals[k]);
        }
      }
      fputs(sl->n ? " }" : "}", f);
    } else {
      const char *v = sl->n ? sl->vals[0] : deflt_of(s, i);
      if (!v) fputs("nil", f);
      else if (d->kind == PD_SK_BOOL || (d->kind == PD_SK_INT && all_digits(v))) fputs(v, f);
      else print_lua_string(f, v);
    }
    fprintf(f, "  -- %s\n", source_name(sl->src));
  }
}
