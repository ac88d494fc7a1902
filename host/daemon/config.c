/* config — the daemon's configuration values.
 *
 * Owns: the embedded defaults (pd_daemon_config_defaults), the parsing of
 * HOST:PORT for --api and --listen (pd_daemon_parse_listen), of --api's
 * HOST:PORT or unix:PATH (pd_daemon_config_api), the network
 * magic derived from --network (pd_daemon_network_magic).
 * Does not own: the command line (main.c), what the values do (the other
 * files of the driver), policy files (reload.c).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <string.h>

#include <sodium.h>

#include "daemon_int.h"
#include "err.h"

void pd_daemon_config_defaults(pd_daemon_config_t *cfg) {
  memset(cfg, 0, sizeof *cfg);
  cfg->data_dir = NULL;   /* chosen at start: $STATE_DIRECTORY or ./peerd-data (paths.c) */
  cfg->api = PD_DAEMON_DEFAULT_API;
  cfg->save_interval = (int64_t)PD_DAEMON_DEFAULT_SAVE_MINUTES * 60;
  cfg->ban_time = PD_DAEMON_DEFAULT_BAN_SECS;
  cfg->log_level = PD_LOG_INFO;
  cfg->policy_dir = NULL; /* chosen at start: installed, prefix or built-in (paths.c) */
  cfg->policy_instructions = PD_DAEMON_DEFAULT_POLICY_INSTRUCTIONS;
  cfg->policy_timeout_ms = PD_DAEMON_DEFAULT_POLICY_TIMEOUT_MS;
  cfg->policy_memory_mb = PD_DAEMON_DEFAULT_POLICY_MEMORY_MB;
  cfg->listen = PD_DAEMON_DEFAULT_LISTEN;
  cfg->dht = true;
  cfg->max_outbound = PD_DAEMON_DEFAULT_MAX_OUTBOUND;
  cfg->max_inbound = PD_DAEMON_DEFAULT_MAX_INBOUND;
  cfg->min_outbound = PD_DAEMON_DEFAULT_MIN_OUTBOUND;
  cfg->network = PD_WIRE_NETWORK_DEFAULT;
  cfg->p2p = true;
  cfg->below_min_warn = 60;
  cfg->ipv6_prefix = 64;
  cfg->handshake_timeout_ms = PD_DAEMON_DEFAULT_HANDSHAKE_TIMEOUT_MS;
}

void pd_daemon_network_magic(const char *network, uint8_t magic[4]) {
  static const uint8_t def[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
  if (!network || strcmp(network, PD_WIRE_NETWORK_DEFAULT) == 0) {
    memcpy(magic, def, PD_WIRE_MAGIC_LEN);
    return;
  }
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, (const unsigned char *)network, strlen(network));
  magic[0] = 0xF5;
  memcpy(magic + 1, h, 3);
}

int pd_daemon_parse_listen(const char *s, void *ss, unsigned cap, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  if (!s || !*s) {
    *why = "empty address";
    return PD_EINVAL;
  }
  if (cap < sizeof(struct sockaddr_storage)) {
    *why = "buffer too small";
    return PD_EINVAL;
  }
  size_t n = strlen(s);
  if (n > 100) {
    *why = "address too long";
    return PD_EINVAL;
  }
  char host[128];
  const char *colon;
  bool v6 = false;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close) {
      *why = "unclosed [";
      return PD_EINVAL;
    }
    size_t hl = (size_t)(close - s - 1);
    memcpy(host, s + 1, hl);
    host[hl] = '\0';
    if (close[1] != ':') {
      *why = "missing port";
      return PD_EINVAL;
    }
    colon = close + 1;
    v6 = true;
  } else {
    colon = strrchr(s, ':');
    if (!colon) {
      *why = "missing port";
      return PD_EINVAL;
    }
    size_t hl = (size_t)(colon - s);
    memcpy(host, s, hl);
    host[hl] = '\0';
    if (strchr(host, ':')) {
      *why = "IPv6 addresses need brackets: [addr]:port";
      return PD_EINVAL;
    }
  }
  const char *ps = colon + 1;
  if (!*ps || strlen(ps) > 5) {
    *why = "bad port";
    return PD_EINVAL;
  }
  unsigned long port = 0;
  for (const char *p = ps; *p; p++) {
    if (*p < '0' || *p > '9') {
      *why = "bad port";
      return PD_EINVAL;
    }
    port = port * 10 + (unsigned long)(*p - '0');
  }
  if (port > 65535) {
    *why = "port above 65535";
    return PD_EINVAL;
  }
  memset(ss, 0, cap);
  if (!v6 && strcmp(host, "localhost") == 0) strcpy(host, "127.0.0.1");
  if (v6) {
    struct sockaddr_in6 *a6 = ss;
    if (uv_ip6_addr(host, (int)port, a6) != 0) {
      *why = "not an IPv6 address";
      return PD_EINVAL;
    }
  } else {
    struct sockaddr_in *a4 = ss;
    struct in_addr ia;
    if (inet_pton(AF_INET, host, &ia) != 1) {
      *why = "not an IPv4 address (use [v6]:port for IPv6)";
      return PD_EINVAL;
    }
    a4->sin_family = AF_INET;
    a4->sin_port = htons((uint16_t)port);
    a4->sin_addr = ia;
  }
  return 0;
}


int pd_daemon_config_api(pd_daemon_config_t *cfg, const char *value, const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  if (!value) {
    *why = "empty address";
    return PD_EINVAL;
  }
  if (strncmp(value, "unix:", 5) == 0) {
    size_t n = strlen(value + 5);
    if (n == 0 || n > 107) { /* sun_path holds 108 bytes with the NUL */
      *why = n ? "unix socket path longer than 107 bytes" : "unix: needs a path";
      return PD_EINVAL;
    }
    cfg->api_unix = value + 5;
    return 0;
  }
  struct sockaddr_storage ss;
  int rc = pd_daemon_parse_listen(value, &ss, sizeof ss, why);
  if (rc < 0) return rc;
  cfg->api = value;
  cfg->api_tcp_set = true;
  return 0;
}

int pd_bootnode_parse(const char *s, pd_bootnode_t *out, const char **why) {
  memset(out, 0, sizeof *out);
  if (strchr(s, '@')) {
    pd_endpoint_t ep;
    if (pd_endpoint_parse(s, PD_PARSE_ALLOW_ID, &ep, why) < 0) return PD_EINVAL;
    if (!ep.has_id || !ep.is_ip) {
      if (why) *why = "expected ID@IP:PORT (40 hex, an IP literal, a port)";
      return PD_EINVAL;
    }
    memcpy(out->id, ep.id, sizeof out->id);
    out->ep = ep.addr;
    return 0;
  }
  size_t len = 0;
  if (strlen(s) > 2 * PD_RECORD_MAX ||
      sodium_base642bin(out->rec, sizeof out->rec, s, strlen(s), NULL, &len, NULL,
                        sodium_base64_VARIANT_ORIGINAL) != 0) {
    if (why) *why = "expected ID@IP:PORT or a node record in base64";
    return PD_EINVAL;
  }
  pd_record_t r;
  if (pd_record_decode(out->rec, len, NULL, NULL, &r, why) != PD_RECORD_OK) return PD_EINVAL;
  if (!r.has_discovery) {
    if (why) *why = "the record has no discovery endpoint (no peerd runs there)";
    return PD_EINVAL;
  }
  memcpy(out->id, r.id, sizeof out->id);
  out->ep = r.discovery;
  out->rec_len = len;
  return 0;
}
