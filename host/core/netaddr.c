/* netaddr — peer addresses: parsing, printing, classification, network groups.
 * See netaddr.h for the contract. Classification and grouping follow Bitcoin
 * Core's CNetAddr (src/netaddress.cpp) and NetGroupManager::GetGroup
 * (src/netgroup.cpp, no asmap). Sans-I/O: no clocks, files or sockets; only
 * inet_pton/inet_ntop for IP literals.
 */
#include "netaddr.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"

/* ::ffff:0:0/96 — IPv4-mapped (Bitcoin's IPV4_IN_IPV6_PREFIX). */
static const uint8_t k_v4_prefix[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff};
/* fd87:d87e:eb43::/48 — TORv2 OnionCat; Bitcoin turns it into ::. */
static const uint8_t k_torv2_prefix[6] = {0xfd, 0x87, 0xd8, 0x7e, 0xeb, 0x43};
/* fd6b:88c0:8724::/48 — Bitcoin's NET_INTERNAL. */
static const uint8_t k_internal_prefix[6] = {0xfd, 0x6b, 0x88, 0xc0, 0x87, 0x24};

static void set_why(const char **why, const char *msg) {
  if (why) *why = msg;
}

/* ---- classification ---------------------------------------------------- */

/* The bytes Bitcoin Core would hold after SetLegacyIPv6: a TORv2-in-IPv6
 * address is replaced by the unspecified address. */
static const uint8_t *norm_ip(const pd_netaddr_t *a, uint8_t tmp[16]) {
  if (memcmp(a->ip, k_torv2_prefix, sizeof k_torv2_prefix) == 0) {
    memset(tmp, 0, 16);
    return tmp;
  }
  return a->ip;
}

static bool ip_is_v4(const uint8_t *ip) { return memcmp(ip, k_v4_prefix, 12) == 0; }
static bool ip_is_internal(const uint8_t *ip) {
  return memcmp(ip, k_internal_prefix, sizeof k_internal_prefix) == 0;
}
/* m_net == NET_IPV6 */
static bool ip_is_v6(const uint8_t *ip) { return !ip_is_v4(ip) && !ip_is_internal(ip); }

static bool has_prefix(const uint8_t *ip, const uint8_t *p, size_t n) { return memcmp(ip, p, n) == 0; }

static bool c_rfc1918(const uint8_t *ip) {
  const uint8_t *v = ip + 12;
  return ip_is_v4(ip) && (v[0] == 10 || (v[0] == 192 && v[1] == 168) || (v[0] == 172 && v[1] >= 16 && v[1] <= 31));
}
static bool c_rfc2544(const uint8_t *ip) {
  return ip_is_v4(ip) && ip[12] == 198 && (ip[13] == 18 || ip[13] == 19);
}
static bool c_rfc3927(const uint8_t *ip) { return ip_is_v4(ip) && ip[12] == 169 && ip[13] == 254; }
static bool c_rfc6598(const uint8_t *ip) {
  return ip_is_v4(ip) && ip[12] == 100 && ip[13] >= 64 && ip[13] <= 127;
}
static bool c_rfc5737(const uint8_t *ip) {
  static const uint8_t n1[3] = {192, 0, 2}, n2[3] = {198, 51, 100}, n3[3] = {203, 0, 113};
  return ip_is_v4(ip) && (has_prefix(ip + 12, n1, 3) || has_prefix(ip + 12, n2, 3) || has_prefix(ip + 12, n3, 3));
}
static bool c_rfc3849(const uint8_t *ip) {
  static const uint8_t p[4] = {0x20, 0x01, 0x0d, 0xb8};
  return ip_is_v6(ip) && has_prefix(ip, p, 4);
}
static bool c_rfc3964(const uint8_t *ip) { return ip_is_v6(ip) && ip[0] == 0x20 && ip[1] == 0x02; }
static bool c_rfc6052(const uint8_t *ip) {
  static const uint8_t p[12] = {0x00, 0x64, 0xff, 0x9b, 0, 0, 0, 0, 0, 0, 0, 0};
  return ip_is_v6(ip) && has_prefix(ip, p, 12);
}
static bool c_rfc4380(const uint8_t *ip) {
  static const uint8_t p[4] = {0x20, 0x01, 0x00, 0x00};
  return ip_is_v6(ip) && has_prefix(ip, p, 4);
}
static bool c_rfc4862(const uint8_t *ip) {
  static const uint8_t p[8] = {0xfe, 0x80, 0, 0, 0, 0, 0, 0};
  return ip_is_v6(ip) && has_prefix(ip, p, 8);
}
static bool c_rfc4193(const uint8_t *ip) { return ip_is_v6(ip) && (ip[0] & 0xfe) == 0xfc; }
static bool c_rfc6145(const uint8_t *ip) {
  static const uint8_t p[12] = {0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 0, 0};
  return ip_is_v6(ip) && has_prefix(ip, p, 12);
}
static bool c_rfc4843(const uint8_t *ip) {
  return ip_is_v6(ip) && ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0x00 && (ip[3] & 0xf0) == 0x10;
}
static bool c_rfc7343(const uint8_t *ip) {
  return ip_is_v6(ip) && ip[0] == 0x20 && ip[1] == 0x01 && ip[2] == 0x00 && (ip[3] & 0xf0) == 0x20;
}
static bool c_he_net(const uint8_t *ip) {
  static const uint8_t p[4] = {0x20, 0x01, 0x04, 0x70};
  return ip_is_v6(ip) && has_prefix(ip, p, 4);
}
static bool c_local(const uint8_t *ip) {
  static const uint8_t lo6[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  if (ip_is_v4(ip) && (ip[12] == 127 || ip[12] == 0)) return true;
  return ip_is_v6(ip) && memcmp(ip, lo6, 16) == 0;
}
static bool c_valid(const uint8_t *ip) {
  static const uint8_t zero[16] = {0};
  if (ip_is_v6(ip) && memcmp(ip, zero, 16) == 0) return false;
  if (c_rfc3849(ip)) return false;
  if (ip_is_internal(ip)) return false;
  if (ip_is_v4(ip)) {
    static const uint8_t any[4] = {0, 0, 0, 0}, none[4] = {255, 255, 255, 255};
    if (memcmp(ip + 12, any, 4) == 0 || memcmp(ip + 12, none, 4) == 0) return false;
  }
  return true;
}
/* c_routable for an IPv4 address (ip_is_v4), by its first octets: the
 * same ranges as the general form below (the IPv6-only ones cannot match),
 * in a switch instead of a dozen prefix compares. Every address a PEX
 * intake takes in is asked several times. */
static bool v4_routable(const uint8_t *v) {
  switch (v[0]) {
  case 0:   /* local (and 0.0.0.0, invalid) */
  case 10:  /* RFC 1918 */
  case 127: /* local */
    return false;
  case 100: return !(v[1] >= 64 && v[1] <= 127); /* RFC 6598 */
  case 169: return v[1] != 254;                  /* RFC 3927 */
  case 172: return !(v[1] >= 16 && v[1] <= 31);  /* RFC 1918 */
  case 192: return v[1] != 168 && !(v[1] == 0 && v[2] == 2); /* RFC 1918, RFC 5737 */
  case 198: return v[1] != 18 && v[1] != 19 && !(v[1] == 51 && v[2] == 100); /* RFC 2544, 5737 */
  case 203: return !(v[1] == 0 && v[2] == 113); /* RFC 5737 */
  case 255: return !(v[1] == 255 && v[2] == 255 && v[3] == 255); /* broadcast: invalid */
  default: return true;
  }
}

static bool c_routable(const uint8_t *ip) {
  if (ip_is_v4(ip)) return v4_routable(ip + 12);
  return c_valid(ip) && !(c_rfc1918(ip) || c_rfc2544(ip) || c_rfc3927(ip) || c_rfc4862(ip) || c_rfc6598(ip) ||
                          c_rfc5737(ip) || c_rfc4193(ip) || c_rfc4843(ip) || c_rfc7343(ip) || c_local(ip) ||
                          ip_is_internal(ip));
}
/* The address forms that carry an IPv4 address, routable or not. */
static bool c_carries_ipv4(const uint8_t *ip) {
  return ip_is_v4(ip) || c_rfc6145(ip) || c_rfc6052(ip) || c_rfc3964(ip) || c_rfc4380(ip);
}
static uint32_t be32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | (uint32_t)p[3];
}
static uint32_t c_linked_ipv4(const uint8_t *ip) {
  if (ip_is_v4(ip) || c_rfc6052(ip) || c_rfc6145(ip)) return be32(ip + 12);
  if (c_rfc3964(ip)) return be32(ip + 2);
  if (c_rfc4380(ip)) return ~be32(ip + 12);
  return 0;
}

#define PRED(name, fn)                         \
  bool pd_netaddr_is_##name(const pd_netaddr_t *a) { \
    uint8_t tmp[16];                           \
    return fn(norm_ip(a, tmp));                \
  }
PRED(ipv4, ip_is_v4)
PRED(ipv6, ip_is_v6)
PRED(rfc1918, c_rfc1918)
PRED(rfc2544, c_rfc2544)
PRED(rfc3927, c_rfc3927)
PRED(rfc6598, c_rfc6598)
PRED(rfc5737, c_rfc5737)
PRED(rfc3849, c_rfc3849)
PRED(rfc3964, c_rfc3964)
PRED(rfc6052, c_rfc6052)
PRED(rfc4380, c_rfc4380)
PRED(rfc4862, c_rfc4862)
PRED(rfc4193, c_rfc4193)
PRED(rfc6145, c_rfc6145)
PRED(rfc4843, c_rfc4843)
PRED(rfc7343, c_rfc7343)
PRED(he_net, c_he_net)
PRED(local, c_local)
PRED(internal, ip_is_internal)
PRED(valid, c_valid)
PRED(routable, c_routable)
#undef PRED

bool pd_netaddr_has_linked_ipv4(const pd_netaddr_t *a) {
  uint8_t tmp[16];
  const uint8_t *ip = norm_ip(a, tmp);
  return c_routable(ip) && c_carries_ipv4(ip);
}

uint32_t pd_netaddr_linked_ipv4(const pd_netaddr_t *a) {
  uint8_t tmp[16];
  return c_linked_ipv4(norm_ip(a, tmp));
}

static int net_class(const uint8_t *ip) {
  if (ip_is_internal(ip)) return PD_NET_INTERNAL;
  if (!c_routable(ip)) return PD_NET_UNROUTABLE;
  if (c_carries_ipv4(ip)) return PD_NET_IPV4;
  return PD_NET_IPV6;
}

int pd_netaddr_net_class(const pd_netaddr_t *a) {
  uint8_t tmp[16];
  return net_class(norm_ip(a, tmp));
}

size_t pd_netaddr_group(const pd_netaddr_t *a, bool allow_private, uint8_t out[PD_GROUP_MAX]) {
  uint8_t tmp[16];
  const uint8_t *ip = norm_ip(a, tmp);
  bool routable = c_routable(ip);
  if (ip_is_internal(ip)) {
    /* Internal: class byte then the 10 bytes after the /48 prefix. */
    out[0] = PD_NET_INTERNAL;
    memcpy(out + 1, ip + 6, 10);
    return 11;
  }
  if (!routable && !(allow_private && c_valid(ip))) {
    /* Local and every other unroutable address share one group. */
    out[0] = PD_NET_UNROUTABLE;
    return 1;
  }
  if (c_carries_ipv4(ip)) {
    uint32_t v4 = c_linked_ipv4(ip);
    out[0] = PD_NET_IPV4;
    out[1] = (uint8_t)(v4 >> 24);
    out[2] = (uint8_t)(v4 >> 16);
    return 3;
  }
  out[0] = PD_NET_IPV6;
  memcpy(out + 1, ip, 4);
  if (c_he_net(ip)) {
    out[5] = (uint8_t)(ip[4] | 0x0f); /* /36 */
    return 6;
  }
  return 5;
}

int pd_netaddr_check_acceptable(const pd_netaddr_t *a, bool allow_private, const char **why) {
  uint8_t tmp[16];
  const uint8_t *ip = norm_ip(a, tmp);
  if (c_routable(ip)) return 0;
  if (!c_valid(ip)) {
    if (ip != a->ip) {
      set_why(why, "TORv2 OnionCat address (unsupported)");
    } else if (ip_is_internal(ip)) {
      set_why(why, "internal address (fd6b:88c0:8724::/48)");
    } else if (c_rfc3849(ip)) {
      set_why(why, "documentation address");
    } else if (ip_is_v4(ip) && ip[12] == 255) {
      set_why(why, "broadcast address");
    } else {
      set_why(why, "unspecified address");
    }
    return PD_EINVAL;
  }
  if (allow_private) return 0;
  if (c_local(ip)) {
    set_why(why, ip_is_v4(ip) && ip[12] == 0 ? "this-network address (0.0.0.0/8)" : "loopback address");
  } else if (c_rfc1918(ip)) {
    set_why(why, "private address (RFC1918)");
  } else if (c_rfc2544(ip)) {
    set_why(why, "benchmarking address (RFC2544)");
  } else if (c_rfc3927(ip) || c_rfc4862(ip)) {
    set_why(why, "link-local address");
  } else if (c_rfc6598(ip)) {
    set_why(why, "shared address space (RFC6598)");
  } else if (c_rfc5737(ip)) {
    set_why(why, "documentation address");
  } else if (c_rfc4193(ip)) {
    set_why(why, "unique local address (RFC4193)");
  } else if (c_rfc4843(ip) || c_rfc7343(ip)) {
    set_why(why, "ORCHID address");
  } else {
    set_why(why, "unroutable address");
  }
  return PD_EUNROUTABLE;
}

/* ---- equality, node ids -------------------------------------------------- */

bool pd_netaddr_equal(const pd_netaddr_t *a, const pd_netaddr_t *b) {
  return a->port == b->port && memcmp(a->ip, b->ip, 16) == 0;
}

bool pd_netaddr_same_ip(const pd_netaddr_t *a, const pd_netaddr_t *b) { return memcmp(a->ip, b->ip, 16) == 0; }

static unsigned host_bits(const pd_netaddr_t *a, unsigned v6_prefix) {
  if (pd_netaddr_is_ipv4(a)) return 128;
  if (v6_prefix == 0) return PD_NETADDR_V6_HOST_PREFIX;
  return v6_prefix < 16 ? 16 : v6_prefix > 128 ? 128 : v6_prefix;
}

void pd_subnet_host(const pd_netaddr_t *a, unsigned v6_prefix, pd_subnet_t *out) {
  unsigned bits = host_bits(a, v6_prefix);
  memset(out, 0, sizeof *out);
  out->prefix = (uint8_t)bits;
  for (unsigned i = 0; i < 16; i++) {
    unsigned have = bits > i * 8 ? bits - i * 8 : 0;
    uint8_t mask = have >= 8 ? 0xff : (uint8_t)(0xff << (8 - have));
    out->ip[i] = a->ip[i] & mask;
  }
}

bool pd_netaddr_same_host(const pd_netaddr_t *a, const pd_netaddr_t *b, unsigned v6_prefix) {
  if (pd_netaddr_is_ipv4(a) != pd_netaddr_is_ipv4(b)) return false;
  /* the masked compare of pd_subnet_host, without building both subnets:
   * the dialer runs it over every inbound connection per newcomer */
  unsigned bits = host_bits(a, v6_prefix), whole = bits / 8;
  if (memcmp(a->ip, b->ip, whole) != 0) return false;
  if (bits % 8 == 0) return true;
  uint8_t mask = (uint8_t)(0xff << (8 - bits % 8));
  return (a->ip[whole] & mask) == (b->ip[whole] & mask);
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pd_node_id_parse(const char *hex, size_t len, uint8_t id[PD_NODE_ID_LEN]) {
  if (!hex || len != PD_NODE_ID_HEXLEN) return PD_EINVAL;
  uint8_t tmp[PD_NODE_ID_LEN];
  for (size_t i = 0; i < PD_NODE_ID_LEN; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return PD_EINVAL;
    tmp[i] = (uint8_t)(hi << 4 | lo);
  }
  memcpy(id, tmp, sizeof tmp);
  return 0;
}

int pd_node_id_format(const uint8_t id[PD_NODE_ID_LEN], char *buf, size_t cap) {
  static const char digits[] = "0123456789abcdef";
  if (!buf || cap < PD_NODE_ID_HEXLEN + 1) return PD_ERANGE;
  for (size_t i = 0; i < PD_NODE_ID_LEN; i++) {
    buf[2 * i] = digits[id[i] >> 4];
    buf[2 * i + 1] = digits[id[i] & 15];
  }
  buf[PD_NODE_ID_HEXLEN] = '\0';
  return PD_NODE_ID_HEXLEN;
}

/* ---- formatting ---------------------------------------------------------- */

/* Decimal digits of v (< 100000) at out; returns the count. */
static size_t put_dec(char *out, unsigned v) {
  char tmp[8];
  size_t n = 0;
  do {
    tmp[n++] = (char)('0' + v % 10);
    v /= 10;
  } while (v != 0);
  for (size_t i = 0; i < n; i++) out[i] = tmp[n - 1 - i];
  return n;
}

/* "a.b.c.d" or "a.b.c.d:port" without snprintf: policies see every gossiped
 * address as a string, and snprintf was most of that cost. */
static int format_v4(const pd_netaddr_t *a, bool with_port, char *buf, size_t cap) {
  char tmp[32];
  size_t n = 0;
  for (int i = 12; i < 16; i++) {
    n += put_dec(tmp + n, a->ip[i]);
    if (i < 15) tmp[n++] = '.';
  }
  if (with_port && a->port != 0) {
    tmp[n++] = ':';
    n += put_dec(tmp + n, a->port);
  }
  tmp[n] = '\0';
  if (!buf || n + 1 > cap) return PD_ERANGE;
  memcpy(buf, tmp, n + 1);
  return (int)n;
}

int pd_netaddr_format_ip(const pd_netaddr_t *a, char *buf, size_t cap) {
  char tmp[INET6_ADDRSTRLEN];
  if (!buf || cap == 0) return PD_ERANGE;
  if (ip_is_v4(a->ip)) return format_v4(a, false, buf, cap);
  struct in6_addr in6;
  memcpy(&in6, a->ip, 16);
  if (!inet_ntop(AF_INET6, &in6, tmp, sizeof tmp)) return PD_EINVAL;
  size_t n = strlen(tmp);
  if (n + 1 > cap) return PD_ERANGE;
  memcpy(buf, tmp, n + 1);
  return (int)n;
}

int pd_netaddr_format(const pd_netaddr_t *a, char *buf, size_t cap) {
  char ipb[INET6_ADDRSTRLEN];
  char tmp[INET6_ADDRSTRLEN + 16];
  if (ip_is_v4(a->ip)) return format_v4(a, true, buf, cap);
  int r = pd_netaddr_format_ip(a, ipb, sizeof ipb);
  if (r < 0) return r;
  if (a->port == 0) {
    snprintf(tmp, sizeof tmp, "%s", ipb);
  } else {
    snprintf(tmp, sizeof tmp, "[%s]:%u", ipb, (unsigned)a->port);
  }
  size_t n = strlen(tmp);
  if (!buf || n + 1 > cap) return PD_ERANGE;
  memcpy(buf, tmp, n + 1);
  return (int)n;
}

/* ---- parsing ------------------------------------------------------------- */

/* An IP literal of exactly n bytes at s (no brackets). */
static bool ip_literal(const char *s, size_t n, uint8_t ip[16]) {
  char tmp[INET6_ADDRSTRLEN + 1];
  if (n == 0 || n >= sizeof tmp) return false;
  memcpy(tmp, s, n);
  tmp[n] = '\0';
  struct in_addr v4;
  struct in6_addr v6;
  if (inet_pton(AF_INET, tmp, &v4) == 1) {
    memcpy(ip, k_v4_prefix, 12);
    memcpy(ip + 12, &v4, 4);
    return true;
  }
  if (inet_pton(AF_INET6, tmp, &v6) == 1) {
    memcpy(ip, &v6, 16);
    return true;
  }
  return false;
}

static bool is_digit(char c) { return c >= '0' && c <= '9'; }
static bool is_alnum(char c) { return is_digit(c) || (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z'); }

/* A DNS name: labels 1..63 of [A-Za-z0-9-], no leading/trailing '-', total
 * <= 253 (one trailing dot allowed), last label not all digits. */
static bool dns_name_ok(const char *s, size_t n, const char **why) {
  if (n > 0 && s[n - 1] == '.') n--;
  if (n == 0) {
    set_why(why, "empty host");
    return false;
  }
  if (n > PD_HOST_MAX) {
    set_why(why, "host name too long");
    return false;
  }
  size_t start = 0;
  bool all_digits = true;
  for (size_t i = 0; i <= n; i++) {
    if (i == n || s[i] == '.') {
      size_t len = i - start;
      if (len == 0) {
        set_why(why, "invalid host name: empty label");
        return false;
      }
      if (len > 63) {
        set_why(why, "invalid host name: label longer than 63");
        return false;
      }
      if (s[start] == '-' || s[i - 1] == '-') {
        set_why(why, "invalid host name: label starts or ends with '-'");
        return false;
      }
      if (i == n && all_digits) {
        set_why(why, "not a valid IPv4 address");
        return false;
      }
      start = i + 1;
      all_digits = true;
      continue;
    }
    if (!is_alnum(s[i]) && s[i] != '-') {
      set_why(why, "invalid host name: bad character");
      return false;
    }
    if (!is_digit(s[i])) all_digits = false;
  }
  return true;
}

/* Checks shared by all parsers: NULL/empty, length, characters. */
static int check_text(const char *s, size_t *len_out, const char **why) {
  if (!s || !*s) {
    set_why(why, "empty address");
    return PD_EINVAL;
  }
  size_t n = strnlen(s, PD_ADDR_MAX_INPUT + 1);
  if (n > PD_ADDR_MAX_INPUT) {
    set_why(why, "address too long");
    return PD_ETOOBIG;
  }
  for (size_t i = 0; i < n; i++) {
    unsigned char c = (unsigned char)s[i];
    if (c == ' ' || c == '\t' || c == '\n' || c == '\r') {
      set_why(why, "whitespace in address");
      return PD_EINVAL;
    }
    if (c < 0x20 || c >= 0x7f) {
      set_why(why, "invalid character in address");
      return PD_EINVAL;
    }
  }
  *len_out = n;
  return 0;
}

static int parse_port(const char *p, size_t n, uint16_t *port, const char **why) {
  if (n == 0) {
    set_why(why, "missing port");
    return PD_EINVAL;
  }
  if (!is_digit(p[0])) {
    set_why(why, "port is not a number");
    return PD_EINVAL;
  }
  uint32_t v = 0;
  for (size_t i = 0; i < n; i++) {
    if (!is_digit(p[i])) {
      set_why(why, "junk after port");
      return PD_EINVAL;
    }
    v = v * 10 + (uint32_t)(p[i] - '0');
    if (v > 65535) v = 65536; /* saturate */
  }
  if (v == 0) {
    set_why(why, "port 0");
    return PD_ERANGE;
  }
  if (v > 65535) {
    set_why(why, "port above 65535");
    return PD_ERANGE;
  }
  *port = (uint16_t)v;
  return 0;
}

static size_t count_char(const char *s, size_t n, char c) {
  size_t k = 0;
  for (size_t i = 0; i < n; i++) k += s[i] == c;
  return k;
}

static const char *find_char(const char *s, size_t n, char c) { return n ? memchr(s, c, n) : NULL; }

int pd_endpoint_parse(const char *s, unsigned flags, pd_endpoint_t *out, const char **why) {
  size_t n;
  int rc = check_text(s, &n, why);
  if (rc) return rc;

  pd_endpoint_t ep;
  memset(&ep, 0, sizeof ep);

  const char *at = find_char(s, n, '@');
  if (at) {
    if (!(flags & PD_PARSE_ALLOW_ID)) {
      set_why(why, "node id not allowed here");
      return PD_EINVAL;
    }
    if (pd_node_id_parse(s, (size_t)(at - s), ep.id) != 0) {
      set_why(why, "bad node id: expected 40 hex characters");
      return PD_EINVAL;
    }
    ep.has_id = true;
    n -= (size_t)(at - s) + 1;
    s = at + 1;
    if (find_char(s, n, '@')) {
      set_why(why, "more than one '@'");
      return PD_EINVAL;
    }
    if (n == 0) {
      set_why(why, "empty host");
      return PD_EINVAL;
    }
  }

  const char *host;
  size_t hlen;
  const char *port = NULL; /* text after ':' when a port is given */
  size_t plen = 0;
  bool bracketed = false;

  if (s[0] == '[') {
    const char *close = find_char(s, n, ']');
    if (!close) {
      set_why(why, "unclosed [");
      return PD_EINVAL;
    }
    bracketed = true;
    host = s + 1;
    hlen = (size_t)(close - host);
    if (hlen == 0) {
      set_why(why, "empty host");
      return PD_EINVAL;
    }
    const char *rest = close + 1;
    size_t rlen = n - (size_t)(rest - s);
    if (rlen > 0) {
      if (rest[0] != ':') {
        set_why(why, "junk after ]");
        return PD_EINVAL;
      }
      port = rest + 1;
      plen = rlen - 1;
    }
  } else {
    size_t colons = count_char(s, n, ':');
    if (colons >= 2) {
      /* An IPv6 literal without brackets. Only a bare address is
       * unambiguous; "2001:db8::1:80" could be either. */
      uint8_t ip[16];
      if (ip_literal(s, n, ip) && (flags & PD_PARSE_PORT_OPTIONAL)) {
        host = s;
        hlen = n;
      } else {
        const char *last = s + n;
        while (last > s && last[-1] != ':') last--;
        if (ip_literal(s, n, ip) || ip_literal(s, (size_t)(last - 1 - s), ip)) {
          set_why(why, "IPv6 address with a port needs brackets: [ip]:port");
        } else {
          const char *first = find_char(s, n, ':');
          set_why(why, ip_literal(s, (size_t)(first - s), ip) ? "junk after port" : "not an IP address");
        }
        return PD_EINVAL;
      }
    } else if (colons == 1) {
      const char *c = find_char(s, n, ':');
      host = s;
      hlen = (size_t)(c - s);
      port = c + 1;
      plen = n - hlen - 1;
      if (hlen == 0) {
        set_why(why, "empty host");
        return PD_EINVAL;
      }
    } else {
      host = s;
      hlen = n;
    }
  }

  if (port) {
    rc = parse_port(port, plen, &ep.port, why);
    if (rc) return rc;
  } else if (!(flags & PD_PARSE_PORT_OPTIONAL)) {
    set_why(why, "missing port");
    return PD_EINVAL;
  }

  if (find_char(host, hlen, '%')) {
    set_why(why, "IPv6 zone ids are not supported");
    return PD_EINVAL;
  }
  if (find_char(host, hlen, '[') || find_char(host, hlen, ']')) {
    set_why(why, "stray bracket");
    return PD_EINVAL;
  }

  if (ip_literal(host, hlen, ep.addr.ip)) {
    ep.is_ip = true;
    ep.addr.port = ep.port;
  } else if (bracketed || count_char(host, hlen, ':') > 0) {
    set_why(why, "not an IP address");
    return PD_EINVAL;
  } else if (!(flags & PD_PARSE_ALLOW_HOSTNAME)) {
    /* Digits and dots only: a malformed IPv4 literal like 1.2.3 or 257.0.0.1. */
    bool numeric = true;
    for (size_t i = 0; i < hlen; i++) numeric = numeric && (is_digit(host[i]) || host[i] == '.');
    set_why(why, numeric ? "not a valid IPv4 address" : "not an IP address");
    return PD_EINVAL;
  } else if (!dns_name_ok(host, hlen, why)) {
    return PD_EINVAL;
  }
  if (hlen > PD_HOST_MAX) { /* only a name with a trailing dot can get here */
    set_why(why, "host name too long");
    return PD_EINVAL;
  }
  memcpy(ep.host, host, hlen);
  ep.host[hlen] = '\0';
  if (out) *out = ep;
  return 0;
}

int pd_netaddr_parse(const char *s, unsigned flags, pd_netaddr_t *out, bool *has_id_out,
                     uint8_t id_out[PD_NODE_ID_LEN], const char **why) {
  pd_endpoint_t ep;
  int rc = pd_endpoint_parse(s, flags & ~(unsigned)PD_PARSE_ALLOW_HOSTNAME, &ep, why);
  if (rc) return rc;
  if (!ep.is_ip) { /* cannot happen without ALLOW_HOSTNAME; be safe */
    set_why(why, "not an IP address");
    return PD_EINVAL;
  }
  if (out) *out = ep.addr;
  if (has_id_out) *has_id_out = ep.has_id;
  if (id_out && ep.has_id) memcpy(id_out, ep.id, PD_NODE_ID_LEN);
  return 0;
}

static int parse_ip_n(const char *s, size_t n, uint8_t ip[16], const char **why) {
  if (n >= 2 && s[0] == '[') {
    if (s[n - 1] != ']') {
      set_why(why, find_char(s, n, ']') ? "junk after ]" : "unclosed [");
      return PD_EINVAL;
    }
    s++;
    n -= 2;
  } else if (n == 1 && s[0] == '[') {
    set_why(why, "unclosed [");
    return PD_EINVAL;
  }
  if (n == 0) {
    set_why(why, "empty address");
    return PD_EINVAL;
  }
  if (!ip_literal(s, n, ip)) {
    size_t colons = count_char(s, n, ':');
    if (colons == 1) {
      set_why(why, "unexpected port");
    } else if (find_char(s, n, '%')) {
      set_why(why, "IPv6 zone ids are not supported");
    } else {
      set_why(why, "not an IP address");
    }
    return PD_EINVAL;
  }
  return 0;
}

int pd_netaddr_parse_ip(const char *s, pd_netaddr_t *out, const char **why) {
  size_t n;
  int rc = check_text(s, &n, why);
  if (rc) return rc;
  pd_netaddr_t a;
  memset(&a, 0, sizeof a);
  rc = parse_ip_n(s, n, a.ip, why);
  if (rc) return rc;
  if (out) *out = a;
  return 0;
}

/* ---- sockaddr ------------------------------------------------------------ */

int pd_netaddr_from_sockaddr(const void *sa, pd_netaddr_t *out) {
  if (!sa || !out) return PD_EINVAL;
  sa_family_t fam;
  memcpy(&fam, (const char *)sa + offsetof(struct sockaddr, sa_family), sizeof fam);
  if (fam == AF_INET) {
    struct sockaddr_in in;
    memcpy(&in, sa, sizeof in);
    memcpy(out->ip, k_v4_prefix, 12);
    memcpy(out->ip + 12, &in.sin_addr, 4);
    out->port = ntohs(in.sin_port);
    return 0;
  }
  if (fam == AF_INET6) {
    struct sockaddr_in6 in6;
    memcpy(&in6, sa, sizeof in6);
    memcpy(out->ip, &in6.sin6_addr, 16);
    out->port = ntohs(in6.sin6_port);
    return 0;
  }
  return PD_EINVAL;
}

int pd_netaddr_to_sockaddr(const pd_netaddr_t *a, void *ss, size_t cap) {
  if (!a || !ss) return PD_EINVAL;
  if (ip_is_v4(a->ip)) {
    struct sockaddr_in in;
    if (cap < sizeof in) return PD_ERANGE;
    memset(&in, 0, sizeof in);
    in.sin_family = AF_INET;
    in.sin_port = htons(a->port);
    memcpy(&in.sin_addr, a->ip + 12, 4);
    memcpy(ss, &in, sizeof in);
    return (int)sizeof in;
  }
  struct sockaddr_in6 in6;
  if (cap < sizeof in6) return PD_ERANGE;
  memset(&in6, 0, sizeof in6);
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(a->port);
  memcpy(&in6.sin6_addr, a->ip, 16);
  memcpy(ss, &in6, sizeof in6);
  return (int)sizeof in6;
}

/* ---- subnets ------------------------------------------------------------- */

static void mask_bytes(uint8_t mask[16], unsigned prefix) {
  for (unsigned i = 0; i < 16; i++) {
    unsigned bits = prefix >= 8 ? 8 : prefix;
    mask[i] = (uint8_t)(0xff00u >> bits);
    prefix -= bits;
  }
}

/* Prefix length of a contiguous netmask (over `from`..15), or -1. */
static int mask_len(const uint8_t *m, unsigned from) {
  int len = 0;
  bool zero = false;
  for (unsigned i = from; i < 16; i++) {
    uint8_t b = m[i];
    int k = 0;
    while (k < 8 && (b & (0x80 >> k))) k++;
    if ((uint8_t)(0xff00u >> k) != b) return -1; /* 1-bits after a 0-bit */
    if (zero && k) return -1;
    if (k < 8) zero = true;
    len += k;
  }
  return len;
}

static bool subnet_is_v4(const pd_subnet_t *s) { return s->prefix >= 96 && ip_is_v4(s->ip); }

int pd_subnet_parse(const char *s, pd_subnet_t *out, const char **why) {
  size_t n;
  int rc = check_text(s, &n, why);
  if (rc) return rc;
  const char *slash = find_char(s, n, '/');
  size_t alen = slash ? (size_t)(slash - s) : n;
  pd_subnet_t sn;
  memset(&sn, 0, sizeof sn);
  rc = parse_ip_n(s, alen, sn.ip, why);
  if (rc) return rc;
  bool v4 = ip_is_v4(sn.ip);
  unsigned max = v4 ? 32 : 128;
  unsigned plen = max;
  if (slash) {
    const char *p = slash + 1;
    size_t pl = n - alen - 1;
    if (pl == 0) {
      set_why(why, "missing prefix length");
      return PD_EINVAL;
    }
    if (find_char(p, pl, '.') || find_char(p, pl, ':')) {
      /* A netmask such as 255.255.255.0. */
      uint8_t m[16];
      if (parse_ip_n(p, pl, m, NULL) != 0 || ip_is_v4(m) != v4) {
        set_why(why, "bad netmask");
        return PD_EINVAL;
      }
      int k = mask_len(m, v4 ? 12 : 0);
      if (k < 0) {
        set_why(why, "netmask is not contiguous");
        return PD_EINVAL;
      }
      plen = (unsigned)k;
    } else {
      unsigned v = 0;
      for (size_t i = 0; i < pl; i++) {
        if (!is_digit(p[i])) {
          set_why(why, "bad prefix length");
          return PD_EINVAL;
        }
        v = v * 10 + (unsigned)(p[i] - '0');
        if (v > 1000) v = 1000;
      }
      if (v > max) {
        set_why(why, v4 ? "prefix length above 32" : "prefix length above 128");
        return PD_EINVAL;
      }
      plen = v;
    }
  }
  sn.prefix = (uint8_t)(v4 ? 96 + plen : plen);
  uint8_t m[16];
  mask_bytes(m, sn.prefix);
  for (int i = 0; i < 16; i++) {
    if (sn.ip[i] & ~m[i]) {
      set_why(why, "host bits set");
      return PD_EINVAL;
    }
  }
  if (out) *out = sn;
  return 0;
}

int pd_subnet_format(const pd_subnet_t *s, char *buf, size_t cap) {
  pd_netaddr_t a;
  memcpy(a.ip, s->ip, 16);
  a.port = 0;
  char ipb[INET6_ADDRSTRLEN];
  int r = pd_netaddr_format_ip(&a, ipb, sizeof ipb);
  if (r < 0) return r;
  char tmp[INET6_ADDRSTRLEN + 8];
  if (pd_subnet_is_single(s)) {
    snprintf(tmp, sizeof tmp, "%s", ipb);
  } else {
    snprintf(tmp, sizeof tmp, "%s/%u", ipb, subnet_is_v4(s) ? (unsigned)s->prefix - 96 : (unsigned)s->prefix);
  }
  size_t n = strlen(tmp);
  if (!buf || n + 1 > cap) return PD_ERANGE;
  memcpy(buf, tmp, n + 1);
  return (int)n;
}

bool pd_subnet_contains(const pd_subnet_t *s, const pd_netaddr_t *a) {
  /* As CSubNet::Match: the address must be valid and of the subnet's
   * family (an IPv6 ::/0 does not match IPv4 addresses). */
  if (subnet_is_v4(s) != ip_is_v4(a->ip)) return false;
  if (!pd_netaddr_is_valid(a)) return false;
  uint8_t m[16];
  mask_bytes(m, s->prefix > 128 ? 128 : s->prefix);
  for (int i = 0; i < 16; i++) {
    if ((a->ip[i] & m[i]) != (s->ip[i] & m[i])) return false;
  }
  return true;
}

bool pd_subnet_is_single(const pd_subnet_t *s) { return s->prefix >= 128; }

void pd_subnet_from_addr(const pd_netaddr_t *a, pd_subnet_t *out) {
  memcpy(out->ip, a->ip, 16);
  out->prefix = 128;
}

bool pd_subnet_equal(const pd_subnet_t *a, const pd_subnet_t *b) {
  return a->prefix == b->prefix && memcmp(a->ip, b->ip, 16) == 0;
}
