/* Unit tests for netaddr: parsing (good and every malformed form), printing,
 * Bitcoin Core's classification and network-group vectors
 * (src/test/netbase_tests.cpp: netbase_properties, netbase_networks,
 * netbase_getgroup, subnet_test), allow_private grouping, subnets, sockaddr. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <string.h>
#include <sys/socket.h>

#include "err.h"
#include "netaddr.h"

static const char *k_id = "0123456789abcdef0123456789ABCDEF01234567";

/* Parse a bare IP that must be valid text. */
static pd_netaddr_t IP(const char *s) {
  pd_netaddr_t a;
  const char *why = NULL;
  int rc = pd_netaddr_parse_ip(s, &a, &why);
  if (rc != 0) fail_msg("parse_ip(%s) failed: %s", s, why ? why : "?");
  return a;
}

static void assert_group(const char *s, bool allow_private, const uint8_t *want, size_t wlen) {
  pd_netaddr_t a = IP(s);
  uint8_t g[PD_GROUP_MAX];
  size_t n = pd_netaddr_group(&a, allow_private, g);
  if (n != wlen || memcmp(g, want, wlen) != 0) {
    char got[PD_GROUP_MAX * 4 + 1] = {0};
    for (size_t i = 0; i < n && i < PD_GROUP_MAX; i++) snprintf(got + 4 * i, 5, "%3u ", g[i]);
    fail_msg("group(%s, %d): got len %zu [%s], want len %zu", s, allow_private, n, got, wlen);
  }
}
#define GROUP(s, ap, ...)                                    \
  do {                                                       \
    static const uint8_t w_[] = {__VA_ARGS__};               \
    assert_group((s), (ap), w_, sizeof w_);                  \
  } while (0)

/* ---- parsing ---------------------------------------------------------- */

/* IsRoutable for IPv4, from Bitcoin Core's list of ranges (netaddress.cpp),
 * written out independently of netaddr.c's switch. */
static bool ref_v4_routable(uint8_t a, uint8_t b, uint8_t c, uint8_t d) {
  if ((a | b | c | d) == 0 || (a & b & c & d) == 255) return false; /* !IsValid */
  if (a == 10 || (a == 192 && b == 168) || (a == 172 && b >= 16 && b <= 31)) return false;
  if (a == 198 && (b == 18 || b == 19)) return false;                         /* RFC 2544 */
  if (a == 169 && b == 254) return false;                                     /* RFC 3927 */
  if (a == 100 && b >= 64 && b <= 127) return false;                          /* RFC 6598 */
  if ((a == 192 && b == 0 && c == 2) || (a == 198 && b == 51 && c == 100) ||
      (a == 203 && b == 0 && c == 113))
    return false; /* RFC 5737 */
  if (a == 127 || a == 0) return false; /* IsLocal */
  return true;
}

/* Every first two octets, with third and fourth octets at the ranges' edges. */
static void ipv4_routable_exhaustive(void **state) {
  (void)state;
  static const uint8_t cs[] = {0, 1, 2, 51, 100, 113, 254, 255}, ds[] = {0, 1, 254, 255};
  size_t routable = 0;
  for (unsigned a = 0; a < 256; a++)
    for (unsigned b = 0; b < 256; b++)
      for (size_t i = 0; i < sizeof cs; i++)
        for (size_t j = 0; j < sizeof ds; j++) {
          pd_netaddr_t x;
          memset(&x, 0, sizeof x);
          x.ip[10] = x.ip[11] = 0xff;
          x.ip[12] = (uint8_t)a;
          x.ip[13] = (uint8_t)b;
          x.ip[14] = cs[i];
          x.ip[15] = ds[j];
          bool want = ref_v4_routable((uint8_t)a, (uint8_t)b, cs[i], ds[j]);
          if (pd_netaddr_is_routable(&x) != want)
            fail_msg("%u.%u.%u.%u: routable %d, want %d", a, b, cs[i], ds[j], !want, want);
          routable += want;
        }
  assert_true(routable > 0 && routable < 256u * 256 * sizeof cs * sizeof ds);
}

static void parse_good(void **state) {
  (void)state;
  pd_netaddr_t a;
  bool has_id = true;
  uint8_t id[PD_NODE_ID_LEN];
  const char *why = NULL;

  assert_int_equal(pd_netaddr_parse("1.2.3.4:26656", 0, &a, &has_id, id, &why), 0);
  static const uint8_t v4[16] = {0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0xff, 0xff, 1, 2, 3, 4};
  assert_memory_equal(a.ip, v4, 16);
  assert_int_equal(a.port, 26656);
  assert_false(has_id);
  assert_true(pd_netaddr_is_ipv4(&a));
  assert_false(pd_netaddr_is_ipv6(&a));

  assert_int_equal(pd_netaddr_parse("[2001:db8::1]:80", 0, &a, NULL, NULL, &why), 0);
  static const uint8_t v6[16] = {0x20, 0x01, 0x0d, 0xb8, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 1};
  assert_memory_equal(a.ip, v6, 16);
  assert_int_equal(a.port, 80);
  assert_true(pd_netaddr_is_ipv6(&a));

  /* Highest port, leading zeros in the port. */
  assert_int_equal(pd_netaddr_parse("1.2.3.4:65535", 0, &a, NULL, NULL, &why), 0);
  assert_int_equal(a.port, 65535);
  assert_int_equal(pd_netaddr_parse("1.2.3.4:00080", 0, &a, NULL, NULL, &why), 0);
  assert_int_equal(a.port, 80);

  /* IPv4 in brackets is accepted (as Bitcoin Core's SplitHostPort). */
  assert_int_equal(pd_netaddr_parse("[1.2.3.4]:80", 0, &a, NULL, NULL, &why), 0);
  assert_memory_equal(a.ip, v4, 16);

  /* ID@host:port, mixed-case hex. */
  char buf[128];
  snprintf(buf, sizeof buf, "%s@1.2.3.4:26656", k_id);
  has_id = false;
  memset(id, 0, sizeof id);
  assert_int_equal(pd_netaddr_parse(buf, PD_PARSE_ALLOW_ID, &a, &has_id, id, &why), 0);
  assert_true(has_id);
  assert_int_equal(id[0], 0x01);
  assert_int_equal(id[7], 0xef);
  assert_int_equal(id[15], 0xef);
  assert_int_equal(id[19], 0x67);
  assert_int_equal(a.port, 26656);
  snprintf(buf, sizeof buf, "%s@[::1]:1", k_id);
  assert_int_equal(pd_netaddr_parse(buf, PD_PARSE_ALLOW_ID, &a, &has_id, NULL, &why), 0);
  assert_true(has_id);
  assert_int_equal(a.port, 1);

  /* Bare IPs with PD_PARSE_PORT_OPTIONAL. */
  assert_int_equal(pd_netaddr_parse("1.2.3.4", PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, &why), 0);
  assert_memory_equal(a.ip, v4, 16);
  assert_int_equal(a.port, 0);
  assert_int_equal(pd_netaddr_parse("2001:db8::1", PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, &why), 0);
  assert_memory_equal(a.ip, v6, 16);
  assert_int_equal(a.port, 0);
  assert_int_equal(pd_netaddr_parse("[2001:db8::1]", PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, &why), 0);
  assert_memory_equal(a.ip, v6, 16);
  assert_int_equal(pd_netaddr_parse("[2001:db8::1]:9", PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, &why), 0);
  assert_int_equal(a.port, 9);

  /* IPv4-mapped IPv6 text is the IPv4 address, same bytes. */
  assert_int_equal(pd_netaddr_parse("[::ffff:1.2.3.4]:80", 0, &a, NULL, NULL, &why), 0);
  assert_memory_equal(a.ip, v4, 16);
  assert_true(pd_netaddr_is_ipv4(&a));
  a = IP("::FFFF:0102:0304");
  assert_memory_equal(a.ip, v4, 16);
  a = IP("[::ffff:1.2.3.4]");
  assert_memory_equal(a.ip, v4, 16);
  assert_int_equal(a.port, 0);
}

struct bad_case {
  const char *in;
  unsigned flags;
  int code;
  const char *why;
};

static void parse_errors(void **state) {
  (void)state;
  char id_at[128], short_id[128], nonhex_id[128], long_id[128];
  snprintf(id_at, sizeof id_at, "%s@1.2.3.4:80", k_id);
  snprintf(short_id, sizeof short_id, "%.39s@1.2.3.4:80", k_id);
  snprintf(long_id, sizeof long_id, "%sa@1.2.3.4:80", k_id);
  snprintf(nonhex_id, sizeof nonhex_id, "%.39sg@1.2.3.4:80", k_id);
  const unsigned ID = PD_PARSE_ALLOW_ID, OPT = PD_PARSE_PORT_OPTIONAL;
  const struct bad_case cases[] = {
      {"", 0, PD_EINVAL, "empty address"},
      {"1.2.3.4:0", 0, PD_ERANGE, "port 0"},
      {"1.2.3.4:65536", 0, PD_ERANGE, "port above 65535"},
      {"1.2.3.4:99999999999999999999", 0, PD_ERANGE, "port above 65535"},
      {"1.2.3.4:4294967376", 0, PD_ERANGE, "port above 65535"}, /* 2^32 + 80 must not wrap */
      {"[::1]:0", 0, PD_ERANGE, "port 0"},
      {"1.2.3.4:http", 0, PD_EINVAL, "port is not a number"},
      {"1.2.3.4:-1", 0, PD_EINVAL, "port is not a number"},
      {"1.2.3.4:+80", 0, PD_EINVAL, "port is not a number"},
      {"1.2.3.4:80x", 0, PD_EINVAL, "junk after port"},
      {"[::1]:80junk", 0, PD_EINVAL, "junk after port"},
      {"1.2.3.4:80:90", 0, PD_EINVAL, "junk after port"},
      {"1.2.3.4", 0, PD_EINVAL, "missing port"},
      {"1.2.3.4:", 0, PD_EINVAL, "missing port"},
      {"[::1]", 0, PD_EINVAL, "missing port"},
      {"[::1]:", 0, PD_EINVAL, "missing port"},
      {"[::1", 0, PD_EINVAL, "unclosed ["},
      {"[::1:80", 0, PD_EINVAL, "unclosed ["},
      {"[::1]x80", 0, PD_EINVAL, "junk after ]"},
      {"[]:80", 0, PD_EINVAL, "empty host"},
      {":80", 0, PD_EINVAL, "empty host"},
      {"2001:db8::1:80", 0, PD_EINVAL, "IPv6 address with a port needs brackets: [ip]:port"},
      {"::ffff:1.2.3.4:80", 0, PD_EINVAL, "IPv6 address with a port needs brackets: [ip]:port"},
      {"2001:db8::1", 0, PD_EINVAL, "IPv6 address with a port needs brackets: [ip]:port"},
      {"a:b:c", 0, PD_EINVAL, "not an IP address"},
      {"[example.com]:80", 0, PD_EINVAL, "not an IP address"},
      {"[1.2.3]:80", 0, PD_EINVAL, "not an IP address"},
      {"[fe80::1%eth0]:80", 0, PD_EINVAL, "IPv6 zone ids are not supported"},
      {"example.com:80", 0, PD_EINVAL, "not an IP address"},
      {"257.0.0.1:80", 0, PD_EINVAL, "not a valid IPv4 address"},
      {"1.2.3:80", 0, PD_EINVAL, "not a valid IPv4 address"},
      {"01.2.3.4:80", 0, PD_EINVAL, "not a valid IPv4 address"},
      {"1.2.3.4.5:80", 0, PD_EINVAL, "not a valid IPv4 address"},
      {"::1]:80", 0, PD_EINVAL, "not an IP address"},
      {id_at, 0, PD_EINVAL, "node id not allowed here"},
      {short_id, ID, PD_EINVAL, "bad node id: expected 40 hex characters"},
      {long_id, ID, PD_EINVAL, "bad node id: expected 40 hex characters"},
      {nonhex_id, ID, PD_EINVAL, "bad node id: expected 40 hex characters"},
      {"@1.2.3.4:80", ID, PD_EINVAL, "bad node id: expected 40 hex characters"},
      {" 1.2.3.4:80", 0, PD_EINVAL, "whitespace in address"},
      {"1.2.3.4:80 ", 0, PD_EINVAL, "whitespace in address"},
      {"1.2.3.4: 80", 0, PD_EINVAL, "whitespace in address"},
      {"1.2.3.4:80\n", 0, PD_EINVAL, "whitespace in address"},
      {"1.2.3.4\x01:80", 0, PD_EINVAL, "invalid character in address"},
      {"1.2.3.4:80\xc3\xa9", 0, PD_EINVAL, "invalid character in address"},
      {"1.2.3.4x", OPT, PD_EINVAL, "not an IP address"},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    const struct bad_case *c = &cases[i];
    pd_netaddr_t a;
    const char *why = NULL;
    int rc = pd_netaddr_parse(c->in, c->flags, &a, NULL, NULL, &why);
    if (rc != c->code || !why || strcmp(why, c->why) != 0)
      fail_msg("case %zu \"%s\": rc %d why \"%s\", want %d \"%s\"", i, c->in, rc, why ? why : "(null)", c->code,
               c->why);
    /* The endpoint parser agrees on every one of them. */
    pd_endpoint_t ep;
    why = NULL;
    assert_int_equal(pd_endpoint_parse(c->in, c->flags, &ep, &why), c->code);
    assert_string_equal(why, c->why);
  }
  /* A second '@' after a good ID. */
  char two_at[160];
  snprintf(two_at, sizeof two_at, "%s@%s@1.2.3.4:80", k_id, k_id);
  const char *why = NULL;
  assert_int_equal(pd_netaddr_parse(two_at, ID, NULL, NULL, NULL, &why), PD_EINVAL);
  assert_string_equal(why, "more than one '@'");
  snprintf(two_at, sizeof two_at, "%s@", k_id);
  assert_int_equal(pd_netaddr_parse(two_at, ID, NULL, NULL, NULL, &why), PD_EINVAL);
  assert_string_equal(why, "empty host");
  /* NULL input, NULL why. */
  assert_int_equal(pd_netaddr_parse(NULL, 0, NULL, NULL, NULL, NULL), PD_EINVAL);
  assert_int_equal(pd_netaddr_parse("1.2.3.4:0", 0, NULL, NULL, NULL, NULL), PD_ERANGE);
  /* Embedded NUL: a C string ends there, so the port is missing. */
  static const char nul[] = "1.2.3.4\0:80";
  assert_int_equal(pd_netaddr_parse(nul, 0, NULL, NULL, NULL, &why), PD_EINVAL);
  assert_string_equal(why, "missing port");
  /* Failure leaves *out untouched. */
  pd_netaddr_t keep;
  memset(&keep, 0xab, sizeof keep);
  assert_int_equal(pd_netaddr_parse("1.2.3.4:0", 0, &keep, NULL, NULL, NULL), PD_ERANGE);
  assert_int_equal(keep.port, 0xabab);
}

static void parse_overlong(void **state) {
  (void)state;
  char buf[PD_ADDR_MAX_INPUT + 8];
  const char *why = NULL;
  /* Exactly PD_ADDR_MAX_INPUT: not "too long" (it fails for another reason). */
  memset(buf, 'a', PD_ADDR_MAX_INPUT);
  buf[PD_ADDR_MAX_INPUT] = '\0';
  int rc = pd_endpoint_parse(buf, PD_PARSE_PORT_OPTIONAL | PD_PARSE_ALLOW_HOSTNAME, NULL, &why);
  assert_int_equal(rc, PD_EINVAL);
  assert_string_equal(why, "host name too long");
  /* One more byte: PD_ETOOBIG from every parser. */
  memset(buf, 'a', PD_ADDR_MAX_INPUT + 1);
  buf[PD_ADDR_MAX_INPUT + 1] = '\0';
  assert_int_equal(pd_endpoint_parse(buf, PD_PARSE_ALLOW_HOSTNAME, NULL, &why), PD_ETOOBIG);
  assert_string_equal(why, "address too long");
  assert_int_equal(pd_netaddr_parse(buf, 0, NULL, NULL, NULL, &why), PD_ETOOBIG);
  assert_int_equal(pd_netaddr_parse_ip(buf, NULL, &why), PD_ETOOBIG);
  assert_int_equal(pd_subnet_parse(buf, NULL, &why), PD_ETOOBIG);
  /* A valid address padded with leading zeros in the port up to the limit. */
  memset(buf, '0', PD_ADDR_MAX_INPUT);
  memcpy(buf, "1.2.3.4:", 8);
  buf[PD_ADDR_MAX_INPUT - 1] = '1';
  buf[PD_ADDR_MAX_INPUT] = '\0';
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse(buf, 0, &a, NULL, NULL, &why), 0);
  assert_int_equal(a.port, 1);
}

static void parse_hostnames(void **state) {
  (void)state;
  const unsigned H = PD_PARSE_ALLOW_HOSTNAME;
  pd_endpoint_t ep;
  const char *why = NULL;

  assert_int_equal(pd_endpoint_parse("seed.example.com:26656", H, &ep, &why), 0);
  assert_false(ep.is_ip);
  assert_string_equal(ep.host, "seed.example.com");
  assert_int_equal(ep.port, 26656);
  assert_false(ep.has_id);

  assert_int_equal(pd_endpoint_parse("localhost", H | PD_PARSE_PORT_OPTIONAL, &ep, &why), 0);
  assert_string_equal(ep.host, "localhost");
  assert_int_equal(ep.port, 0);
  assert_int_equal(pd_endpoint_parse("a-b.c0.example.:1", H, &ep, &why), 0);
  assert_string_equal(ep.host, "a-b.c0.example.");

  char buf[600];
  snprintf(buf, sizeof buf, "%s@node-1.example.org:26656", k_id);
  assert_int_equal(pd_endpoint_parse(buf, H | PD_PARSE_ALLOW_ID, &ep, &why), 0);
  assert_true(ep.has_id);
  assert_string_equal(ep.host, "node-1.example.org");

  /* IP literals through the endpoint parser. */
  assert_int_equal(pd_endpoint_parse("[2001:db8::5]:7", H, &ep, &why), 0);
  assert_true(ep.is_ip);
  assert_string_equal(ep.host, "2001:db8::5");
  assert_int_equal(ep.addr.port, 7);
  assert_int_equal(ep.port, 7);
  assert_int_equal(pd_endpoint_parse("10.0.0.1:7", 0, &ep, &why), 0);
  assert_true(ep.is_ip);
  assert_string_equal(ep.host, "10.0.0.1");

  /* Names rejected without the flag. */
  assert_int_equal(pd_endpoint_parse("seed.example.com:26656", 0, &ep, &why), PD_EINVAL);
  assert_string_equal(why, "not an IP address");

  /* Labels: 63 ok, 64 not; total 253 ok, 254 not. */
  char lab[80];
  memset(lab, 'x', 63);
  lab[63] = '\0';
  snprintf(buf, sizeof buf, "%s.com:1", lab);
  assert_int_equal(pd_endpoint_parse(buf, H, &ep, &why), 0);
  snprintf(buf, sizeof buf, "%sx.com:1", lab);
  assert_int_equal(pd_endpoint_parse(buf, H, &ep, &why), PD_EINVAL);
  assert_string_equal(why, "invalid host name: label longer than 63");
  /* 4 labels of 63 + 3 dots = 255; trim to 253 and 254. */
  char name[400];
  snprintf(name, sizeof name, "%s.%s.%s.%s", lab, lab, lab, lab);
  name[253] = '\0'; /* ends with "...x", 253 chars, last label 61 chars */
  snprintf(buf, sizeof buf, "%s:1", name);
  assert_int_equal(pd_endpoint_parse(buf, H, &ep, &why), 0);
  assert_int_equal(strlen(ep.host), 253);
  snprintf(name, sizeof name, "%s.%s.%s.%s", lab, lab, lab, lab);
  name[254] = '\0';
  snprintf(buf, sizeof buf, "%s:1", name);
  assert_int_equal(pd_endpoint_parse(buf, H, &ep, &why), PD_EINVAL);
  assert_string_equal(why, "host name too long");

  const struct bad_case bad[] = {
      {"-a.com:1", H, PD_EINVAL, "invalid host name: label starts or ends with '-'"},
      {"a-.com:1", H, PD_EINVAL, "invalid host name: label starts or ends with '-'"},
      {"a..com:1", H, PD_EINVAL, "invalid host name: empty label"},
      {".com:1", H, PD_EINVAL, "invalid host name: empty label"},
      {"a_b.com:1", H, PD_EINVAL, "invalid host name: bad character"},
      {"a*b.com:1", H, PD_EINVAL, "invalid host name: bad character"},
      {"1.2.3:1", H, PD_EINVAL, "not a valid IPv4 address"},
      {"999.1.1.1:1", H, PD_EINVAL, "not a valid IPv4 address"},
      {"example.com", H, PD_EINVAL, "missing port"},
      {"example.com:0", H, PD_ERANGE, "port 0"},
      {"[example.com]:1", H, PD_EINVAL, "not an IP address"},
      {"exa mple.com:1", H, PD_EINVAL, "whitespace in address"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why = NULL;
    int rc = pd_endpoint_parse(bad[i].in, bad[i].flags, &ep, &why);
    if (rc != bad[i].code || !why || strcmp(why, bad[i].why) != 0)
      fail_msg("host case %zu \"%s\": rc %d why \"%s\"", i, bad[i].in, rc, why ? why : "(null)");
  }
  /* pd_netaddr_parse never accepts names, whatever the flags. */
  assert_int_equal(pd_netaddr_parse("example.com:1", H, NULL, NULL, NULL, &why), PD_EINVAL);
  assert_string_equal(why, "not an IP address");
}

static void parse_ip_only(void **state) {
  (void)state;
  pd_netaddr_t a;
  const char *why = NULL;
  assert_int_equal(pd_netaddr_parse_ip("1.2.3.4", &a, &why), 0);
  assert_int_equal(a.port, 0);
  assert_int_equal(pd_netaddr_parse_ip("[2001:db8::1]", &a, &why), 0);
  assert_true(pd_netaddr_is_ipv6(&a));
  const struct bad_case bad[] = {
      {"", 0, PD_EINVAL, "empty address"},
      {"[]", 0, PD_EINVAL, "empty address"},
      {"[", 0, PD_EINVAL, "unclosed ["},
      {"[::1", 0, PD_EINVAL, "unclosed ["},
      {"[::1]:80", 0, PD_EINVAL, "junk after ]"},
      {"1.2.3.4:80", 0, PD_EINVAL, "unexpected port"},
      {"example.com", 0, PD_EINVAL, "not an IP address"},
      {"fe80::1%1", 0, PD_EINVAL, "IPv6 zone ids are not supported"},
      {"1.2.3.4 ", 0, PD_EINVAL, "whitespace in address"},
      {"::1::2", 0, PD_EINVAL, "not an IP address"},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why = NULL;
    int rc = pd_netaddr_parse_ip(bad[i].in, &a, &why);
    if (rc != bad[i].code || !why || strcmp(why, bad[i].why) != 0)
      fail_msg("ip case %zu \"%s\": rc %d why \"%s\"", i, bad[i].in, rc, why ? why : "(null)");
  }
}

/* ---- formatting -------------------------------------------------------- */

static void format_round_trip(void **state) {
  (void)state;
  static const char *forms[] = {
      "1.2.3.4:26656", "255.255.255.254:1", "0.0.0.1:65535", "[2001:db8::1]:80", "[::1]:8333",
      "[fe80::1:2:3:4]:1", "[2001:470:abcd:9999:9999:9999:9999:9999]:9", "[::]:1", "1.2.3.4", "2001:db8::1",
      "::", "[64:ff9b::102:304]:5",
  };
  char buf[PD_ADDR_STRLEN];
  for (size_t i = 0; i < sizeof forms / sizeof forms[0]; i++) {
    pd_netaddr_t a, b;
    const char *why = NULL;
    if (pd_netaddr_parse(forms[i], PD_PARSE_PORT_OPTIONAL, &a, NULL, NULL, &why) != 0)
      fail_msg("parse %s: %s", forms[i], why);
    int n = pd_netaddr_format(&a, buf, sizeof buf);
    assert_int_equal(n, (int)strlen(forms[i]));
    assert_string_equal(buf, forms[i]);
    assert_int_equal(pd_netaddr_parse(buf, PD_PARSE_PORT_OPTIONAL, &b, NULL, NULL, &why), 0);
    assert_true(pd_netaddr_equal(&a, &b));
  }
  /* Non-canonical input prints canonical (compressed, lowercase; mapped as IPv4). */
  pd_netaddr_t a;
  assert_int_equal(pd_netaddr_parse("[2001:0DB8:0000:0000:0000:0000:0000:0001]:80", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_format(&a, buf, sizeof buf), 16);
  assert_string_equal(buf, "[2001:db8::1]:80");
  assert_int_equal(pd_netaddr_parse("[::ffff:10.0.0.1]:80", 0, &a, NULL, NULL, NULL), 0);
  pd_netaddr_format(&a, buf, sizeof buf);
  assert_string_equal(buf, "10.0.0.1:80");
  assert_int_equal(pd_netaddr_format_ip(&a, buf, sizeof buf), 8);
  assert_string_equal(buf, "10.0.0.1");
  a = IP("2001:db8::2");
  a.port = 5;
  assert_int_equal(pd_netaddr_format_ip(&a, buf, sizeof buf), 11);
  assert_string_equal(buf, "2001:db8::2");
  /* Longest IPv6 form fits PD_ADDR_STRLEN; a short buffer is an error, not truncation. */
  assert_int_equal(pd_netaddr_parse("[1111:2222:3333:4444:5555:6666:7777:8888]:65535", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_format(&a, buf, sizeof buf), 47);
  assert_true(pd_netaddr_format(&a, buf, 47) < 0);
  assert_int_equal(pd_netaddr_format(&a, buf, 48), 47);
  assert_true(pd_netaddr_format_ip(&a, buf, 4) < 0);
}

static void node_ids(void **state) {
  (void)state;
  uint8_t id[PD_NODE_ID_LEN];
  char buf[PD_NODE_ID_HEXLEN + 1];
  assert_int_equal(pd_node_id_parse(k_id, strlen(k_id), id), 0);
  assert_int_equal(pd_node_id_format(id, buf, sizeof buf), 40);
  assert_string_equal(buf, "0123456789abcdef0123456789abcdef01234567");
  assert_true(pd_node_id_format(id, buf, 40) < 0);
  assert_int_equal(pd_node_id_parse(k_id, 39, id), PD_EINVAL);
  assert_int_equal(pd_node_id_parse("zz23456789abcdef0123456789abcdef01234567", 40, id), PD_EINVAL);
  static const char nul[] = "0123456789abcdef0123\0" "456789abcdef01234567";
  assert_int_equal(pd_node_id_parse(nul, 41, id), PD_EINVAL);
  assert_int_equal(pd_node_id_parse(nul, 40, id), PD_EINVAL);
}

/* ---- Bitcoin Core classification vectors -------------------------------- */

static void bitcoin_properties(void **state) {
  (void)state;
  pd_netaddr_t a;
  /* netbase_properties */
  a = IP("127.0.0.1"); assert_true(pd_netaddr_is_ipv4(&a));
  a = IP("::FFFF:192.168.1.1"); assert_true(pd_netaddr_is_ipv4(&a));
  a = IP("::1"); assert_true(pd_netaddr_is_ipv6(&a));
  a = IP("10.0.0.1"); assert_true(pd_netaddr_is_rfc1918(&a));
  a = IP("192.168.1.1"); assert_true(pd_netaddr_is_rfc1918(&a));
  a = IP("172.31.255.255"); assert_true(pd_netaddr_is_rfc1918(&a));
  a = IP("198.18.0.0"); assert_true(pd_netaddr_is_rfc2544(&a));
  a = IP("198.19.255.255"); assert_true(pd_netaddr_is_rfc2544(&a));
  a = IP("2001:0DB8::"); assert_true(pd_netaddr_is_rfc3849(&a));
  a = IP("169.254.1.1"); assert_true(pd_netaddr_is_rfc3927(&a));
  a = IP("2002::1"); assert_true(pd_netaddr_is_rfc3964(&a));
  a = IP("FC00::"); assert_true(pd_netaddr_is_rfc4193(&a));
  a = IP("2001::2"); assert_true(pd_netaddr_is_rfc4380(&a));
  a = IP("2001:10::"); assert_true(pd_netaddr_is_rfc4843(&a));
  a = IP("2001:20::"); assert_true(pd_netaddr_is_rfc7343(&a));
  a = IP("FE80::"); assert_true(pd_netaddr_is_rfc4862(&a));
  a = IP("64:FF9B::"); assert_true(pd_netaddr_is_rfc6052(&a));
  a = IP("127.0.0.1"); assert_true(pd_netaddr_is_local(&a));
  a = IP("::1"); assert_true(pd_netaddr_is_local(&a));
  a = IP("8.8.8.8"); assert_true(pd_netaddr_is_routable(&a));
  a = IP("2001::1"); assert_true(pd_netaddr_is_routable(&a));
  a = IP("127.0.0.1"); assert_true(pd_netaddr_is_valid(&a));
  a = IP("FD6B:88C0:8724:edb1:8e4:3588:e546:35ca"); assert_true(pd_netaddr_is_internal(&a));

  /* netbase_networks (GetNetwork / GetNetClass) */
  a = IP("127.0.0.1"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_UNROUTABLE);
  a = IP("::1"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_UNROUTABLE);
  a = IP("8.8.8.8"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_IPV4);
  a = IP("2001::8888"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_IPV4); /* Teredo: linked IPv4 */
  a = IP("2001:4860::8888"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_IPV6);
  a = IP("fd6b:88c0:8724::1"); assert_int_equal(pd_netaddr_net_class(&a), PD_NET_INTERNAL);
  /* TORv2 OnionCat: Bitcoin Core now reads it as :: (invalid). */
  a = IP("FD87:D87E:EB43:edb1:8e4:3588:e546:35ca");
  assert_false(pd_netaddr_is_valid(&a));
  assert_false(pd_netaddr_is_routable(&a));
  assert_false(pd_netaddr_is_rfc4193(&a));
  assert_int_equal(pd_netaddr_net_class(&a), PD_NET_UNROUTABLE);

  /* Ranges: edges in and out. */
  a = IP("172.15.255.255"); assert_false(pd_netaddr_is_rfc1918(&a));
  a = IP("172.16.0.0"); assert_true(pd_netaddr_is_rfc1918(&a));
  a = IP("172.32.0.0"); assert_false(pd_netaddr_is_rfc1918(&a));
  a = IP("192.169.0.1"); assert_false(pd_netaddr_is_rfc1918(&a));
  a = IP("198.17.255.255"); assert_false(pd_netaddr_is_rfc2544(&a));
  a = IP("198.20.0.0"); assert_false(pd_netaddr_is_rfc2544(&a));
  a = IP("169.253.1.1"); assert_false(pd_netaddr_is_rfc3927(&a));
  a = IP("100.64.0.0"); assert_true(pd_netaddr_is_rfc6598(&a));
  a = IP("100.127.255.255"); assert_true(pd_netaddr_is_rfc6598(&a));
  a = IP("100.63.255.255"); assert_false(pd_netaddr_is_rfc6598(&a));
  a = IP("100.128.0.0"); assert_false(pd_netaddr_is_rfc6598(&a));
  a = IP("192.0.2.1"); assert_true(pd_netaddr_is_rfc5737(&a));
  a = IP("198.51.100.1"); assert_true(pd_netaddr_is_rfc5737(&a));
  a = IP("203.0.113.1"); assert_true(pd_netaddr_is_rfc5737(&a));
  a = IP("203.0.114.1"); assert_false(pd_netaddr_is_rfc5737(&a));
  a = IP("fdff::1"); assert_true(pd_netaddr_is_rfc4193(&a));
  a = IP("fe00::1"); assert_false(pd_netaddr_is_rfc4193(&a));
  a = IP("fe80:0:0:1::"); assert_false(pd_netaddr_is_rfc4862(&a)); /* /64 only */
  a = IP("::ffff:0:1.2.3.4"); assert_true(pd_netaddr_is_rfc6145(&a));
  a = IP("2001:1f::"); assert_true(pd_netaddr_is_rfc4843(&a));
  a = IP("2001:30::"); assert_false(pd_netaddr_is_rfc4843(&a));
  assert_false(pd_netaddr_is_rfc7343(&a));
  a = IP("2001:470::1"); assert_true(pd_netaddr_is_he_net(&a));
  a = IP("2001:471::1"); assert_false(pd_netaddr_is_he_net(&a));
  a = IP("0.1.2.3"); assert_true(pd_netaddr_is_local(&a));
  a = IP("127.255.255.255"); assert_true(pd_netaddr_is_local(&a));
  a = IP("::2"); assert_false(pd_netaddr_is_local(&a));

  /* IPv4 RFC checks apply only to IPv4: the same bytes in IPv6 are not them. */
  a = IP("a00::1"); assert_false(pd_netaddr_is_rfc1918(&a));
  a = IP("::10.0.0.1"); assert_false(pd_netaddr_is_rfc1918(&a));
  assert_true(pd_netaddr_is_routable(&a));
  /* ...and IPv6 checks only to IPv6: 32.1.13.184 is not RFC3849. */
  a = IP("32.1.13.184"); assert_false(pd_netaddr_is_rfc3849(&a));
  assert_true(pd_netaddr_is_routable(&a));
  /* Internal addresses are not IPv6 in Bitcoin Core's sense (m_net INTERNAL),
   * so the fc00::/7 test does not see them. */
  a = IP("fd6b:88c0:8724::1");
  assert_false(pd_netaddr_is_ipv6(&a));
  assert_false(pd_netaddr_is_rfc4193(&a));

  /* IsValid */
  static const char *invalid[] = {"::", "0.0.0.0", "255.255.255.255", "2001:db8::1", "2001:db8:ffff::",
                                  "fd6b:88c0:8724::1", "fd87:d87e:eb43::1", "::ffff:0.0.0.0"};
  for (size_t i = 0; i < sizeof invalid / sizeof invalid[0]; i++) {
    a = IP(invalid[i]);
    if (pd_netaddr_is_valid(&a) || pd_netaddr_is_routable(&a)) fail_msg("%s should be invalid", invalid[i]);
  }
  static const char *valid_unroutable[] = {
      "127.0.0.1", "0.0.0.1",    "10.1.2.3",   "192.168.0.1", "172.20.0.1", "198.18.5.5", "169.254.0.1",
      "100.64.1.1", "192.0.2.7", "198.51.100.9", "203.0.113.3", "::1",      "fe80::1",    "fc00::1",
      "fd00::1",   "2001:10::1", "2001:20::1",  "fd6c:88c0:8724::1",
  };
  for (size_t i = 0; i < sizeof valid_unroutable / sizeof valid_unroutable[0]; i++) {
    a = IP(valid_unroutable[i]);
    if (!pd_netaddr_is_valid(&a) || pd_netaddr_is_routable(&a))
      fail_msg("%s should be valid, unroutable", valid_unroutable[i]);
  }
  static const char *routable[] = {
      "8.8.8.8",  "1.2.3.4",  "250.1.2.3", "240.0.0.1",  "224.0.0.1",  "255.255.255.254", "100.63.0.1",
      "2001::1",  "2002:102:304::", "64:ff9b::102:304", "2001:470::1", "2a00:1450::1", "ff02::1", "::2",
  };
  for (size_t i = 0; i < sizeof routable / sizeof routable[0]; i++) {
    a = IP(routable[i]);
    if (!pd_netaddr_is_valid(&a) || !pd_netaddr_is_routable(&a)) fail_msg("%s should be routable", routable[i]);
  }
}

static void linked_ipv4(void **state) {
  (void)state;
  pd_netaddr_t a;
  a = IP("1.2.3.4");
  assert_true(pd_netaddr_has_linked_ipv4(&a));
  assert_int_equal(pd_netaddr_linked_ipv4(&a), 0x01020304u);
  a = IP("::FFFF:0:102:304"); /* RFC6145 */
  assert_true(pd_netaddr_has_linked_ipv4(&a));
  assert_int_equal(pd_netaddr_linked_ipv4(&a), 0x01020304u);
  a = IP("64:FF9B::102:304"); /* RFC6052 */
  assert_true(pd_netaddr_has_linked_ipv4(&a));
  assert_int_equal(pd_netaddr_linked_ipv4(&a), 0x01020304u);
  a = IP("2002:102:304:9999:9999:9999:9999:9999"); /* RFC3964 */
  assert_true(pd_netaddr_has_linked_ipv4(&a));
  assert_int_equal(pd_netaddr_linked_ipv4(&a), 0x01020304u);
  a = IP("2001:0:9999:9999:9999:9999:FEFD:FCFB"); /* Teredo, bits flipped */
  assert_true(pd_netaddr_has_linked_ipv4(&a));
  assert_int_equal(pd_netaddr_linked_ipv4(&a), 0x01020304u);
  a = IP("2001:4860::1");
  assert_false(pd_netaddr_has_linked_ipv4(&a));
  /* HasLinkedIPv4 requires IsRoutable. */
  a = IP("10.0.0.1");
  assert_false(pd_netaddr_has_linked_ipv4(&a));
}

/* ---- groups ------------------------------------------------------------- */

static void bitcoin_groups(void **state) {
  (void)state;
  /* netbase_getgroup, verbatim vectors (without asmap). */
  GROUP("127.0.0.1", false, 0); /* Local -> !Routable() */
  GROUP("10.0.0.1", false, 0);
  GROUP("169.254.1.1", false, 0);
  GROUP("1.2.3.4", false, PD_NET_IPV4, 1, 2);
  GROUP("::FFFF:0:102:304", false, PD_NET_IPV4, 1, 2);
  GROUP("64:FF9B::102:304", false, PD_NET_IPV4, 1, 2);
  GROUP("2002:102:304:9999:9999:9999:9999:9999", false, PD_NET_IPV4, 1, 2);
  GROUP("2001:0:9999:9999:9999:9999:FEFD:FCFB", false, PD_NET_IPV4, 1, 2);
  GROUP("2001:470:abcd:9999:9999:9999:9999:9999", false, PD_NET_IPV6, 32, 1, 4, 112, 175);
  GROUP("2001:2001:9999:9999:9999:9999:9999:9999", false, PD_NET_IPV6, 32, 1, 32, 1);
  /* 257.0.0.1 does not even parse here. */
  const char *why;
  assert_int_equal(pd_netaddr_parse_ip("257.0.0.1", NULL, &why), PD_EINVAL);
  /* More: the brief's example, he.net /36 low nibble, IPv6 /32, local forms. */
  GROUP("109.122.4.5", false, 0x01, 0x6d, 0x7a);
  GROUP("109.122.255.255", false, 0x01, 0x6d, 0x7a);
  GROUP("2001:470:1234::1", false, PD_NET_IPV6, 0x20, 0x01, 0x04, 0x70, 0x1f);
  GROUP("2001:470:1f00::1", false, PD_NET_IPV6, 0x20, 0x01, 0x04, 0x70, 0x1f);
  GROUP("2001:470:2000::1", false, PD_NET_IPV6, 0x20, 0x01, 0x04, 0x70, 0x2f);
  GROUP("2a00:1450:4001::1", false, PD_NET_IPV6, 0x2a, 0x00, 0x14, 0x50);
  GROUP("::1", false, 0);
  GROUP("0.0.0.0", false, 0);
  GROUP("::", false, 0);
  GROUP("2001:db8::1", false, 0);
  GROUP("fc00::1", false, 0);
  GROUP("fd87:d87e:eb43::1", false, 0); /* TORv2 -> :: */
  GROUP("250.1.2.3", false, PD_NET_IPV4, 250, 1);
  /* Internal: NET_INTERNAL + the 10 bytes after fd6b:88c0:8724::/48. */
  GROUP("fd6b:88c0:8724:1292:9400:eb46:07c4:ac07", false, PD_NET_INTERNAL, 0x12, 0x92, 0x94, 0x00, 0xeb, 0x46,
        0x07, 0xc4, 0xac, 0x07);
}

static void private_groups(void **state) {
  (void)state;
  /* allow_private: valid non-routable addresses get real groups. */
  GROUP("127.1.0.1", true, PD_NET_IPV4, 127, 1);
  GROUP("127.2.0.1", true, PD_NET_IPV4, 127, 2);
  GROUP("10.0.0.1", true, PD_NET_IPV4, 10, 0);
  GROUP("192.168.7.1", true, PD_NET_IPV4, 192, 168);
  GROUP("0.1.0.1", true, PD_NET_IPV4, 0, 1);
  GROUP("::1", true, PD_NET_IPV6, 0, 0, 0, 0);
  GROUP("fe80::1", true, PD_NET_IPV6, 0xfe, 0x80, 0, 0);
  GROUP("fd12:3456:789a::1", true, PD_NET_IPV6, 0xfd, 0x12, 0x34, 0x56);
  GROUP("2001:10::1", true, PD_NET_IPV6, 0x20, 0x01, 0x00, 0x10);
  /* Routable addresses are unaffected. */
  GROUP("1.2.3.4", true, PD_NET_IPV4, 1, 2);
  GROUP("2001:470:abcd:9999:9999:9999:9999:9999", true, PD_NET_IPV6, 32, 1, 4, 112, 175);
  GROUP("2001:0:9999:9999:9999:9999:FEFD:FCFB", true, PD_NET_IPV4, 1, 2);
  /* Invalid addresses stay {0}. */
  GROUP("0.0.0.0", true, 0);
  GROUP("255.255.255.255", true, 0);
  GROUP("::", true, 0);
  GROUP("2001:db8::1", true, 0);
  GROUP("fd87:d87e:eb43::1", true, 0);
  /* 127.1.0.1 and 127.2.0.1: one group without, two with allow_private. */
  pd_netaddr_t x = IP("127.1.0.1"), y = IP("127.2.0.1");
  uint8_t gx[PD_GROUP_MAX], gy[PD_GROUP_MAX];
  size_t nx = pd_netaddr_group(&x, false, gx), ny = pd_netaddr_group(&y, false, gy);
  assert_true(nx == ny && memcmp(gx, gy, nx) == 0);
  nx = pd_netaddr_group(&x, true, gx);
  ny = pd_netaddr_group(&y, true, gy);
  assert_false(nx == ny && memcmp(gx, gy, nx) == 0);
}

static void acceptable(void **state) {
  (void)state;
  static const struct {
    const char *ip;
    int code;          /* without allow_private */
    const char *why;   /* NULL when accepted */
    int code_private;  /* with allow_private */
  } cases[] = {
      {"8.8.8.8", 0, NULL, 0},
      {"2001:4860::8888", 0, NULL, 0},
      {"0.0.0.0", PD_EINVAL, "unspecified address", PD_EINVAL},
      {"::", PD_EINVAL, "unspecified address", PD_EINVAL},
      {"255.255.255.255", PD_EINVAL, "broadcast address", PD_EINVAL},
      {"2001:db8::1", PD_EINVAL, "documentation address", PD_EINVAL},
      {"fd6b:88c0:8724::1", PD_EINVAL, "internal address (fd6b:88c0:8724::/48)", PD_EINVAL},
      {"fd87:d87e:eb43::1", PD_EINVAL, "TORv2 OnionCat address (unsupported)", PD_EINVAL},
      {"127.0.0.1", PD_EUNROUTABLE, "loopback address", 0},
      {"::1", PD_EUNROUTABLE, "loopback address", 0},
      {"0.1.2.3", PD_EUNROUTABLE, "this-network address (0.0.0.0/8)", 0},
      {"10.0.0.1", PD_EUNROUTABLE, "private address (RFC1918)", 0},
      {"172.16.0.1", PD_EUNROUTABLE, "private address (RFC1918)", 0},
      {"192.168.1.1", PD_EUNROUTABLE, "private address (RFC1918)", 0},
      {"198.18.0.1", PD_EUNROUTABLE, "benchmarking address (RFC2544)", 0},
      {"169.254.1.1", PD_EUNROUTABLE, "link-local address", 0},
      {"fe80::1", PD_EUNROUTABLE, "link-local address", 0},
      {"100.64.0.1", PD_EUNROUTABLE, "shared address space (RFC6598)", 0},
      {"192.0.2.1", PD_EUNROUTABLE, "documentation address", 0},
      {"fc00::1", PD_EUNROUTABLE, "unique local address (RFC4193)", 0},
      {"2001:10::1", PD_EUNROUTABLE, "ORCHID address", 0},
      {"2001:20::1", PD_EUNROUTABLE, "ORCHID address", 0},
  };
  for (size_t i = 0; i < sizeof cases / sizeof cases[0]; i++) {
    pd_netaddr_t a = IP(cases[i].ip);
    const char *why = NULL;
    int rc = pd_netaddr_check_acceptable(&a, false, &why);
    if (rc != cases[i].code) fail_msg("%s: rc %d want %d", cases[i].ip, rc, cases[i].code);
    if (cases[i].why) {
      if (!why || strcmp(why, cases[i].why) != 0) fail_msg("%s: why \"%s\"", cases[i].ip, why ? why : "(null)");
    }
    rc = pd_netaddr_check_acceptable(&a, true, NULL);
    if (rc != cases[i].code_private) fail_msg("%s private: rc %d", cases[i].ip, rc);
  }
}

/* ---- subnets ------------------------------------------------------------ */

static pd_subnet_t SN(const char *s) {
  pd_subnet_t n;
  const char *why = NULL;
  if (pd_subnet_parse(s, &n, &why) != 0) fail_msg("subnet %s: %s", s, why ? why : "?");
  return n;
}

static bool match(const char *sn, const char *ip) {
  pd_subnet_t n = SN(sn);
  pd_netaddr_t a = IP(ip);
  return pd_subnet_contains(&n, &a);
}

static void subnets(void **state) {
  (void)state;
  /* subnet_test (Bitcoin Core), minus forms with host bits set which we reject. */
  pd_subnet_t a = SN("1.2.3.0/24"), b = SN("1.2.3.0/255.255.255.0"), c = SN("1.2.4.0/255.255.255.0");
  assert_true(pd_subnet_equal(&a, &b));
  assert_false(pd_subnet_equal(&a, &c));
  assert_int_equal(a.prefix, 120);
  assert_true(match("1.2.3.0/24", "1.2.3.4"));
  assert_false(match("1.2.2.0/24", "1.2.3.4"));
  assert_true(match("1.2.3.4", "1.2.3.4"));
  assert_true(match("1.2.3.4/32", "1.2.3.4"));
  assert_false(match("1.2.3.4", "5.6.7.8"));
  assert_false(match("1.2.3.4/32", "5.6.7.8"));
  assert_true(match("::ffff:127.0.0.1", "127.0.0.1"));
  assert_true(match("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:8"));
  assert_false(match("1:2:3:4:5:6:7:8", "1:2:3:4:5:6:7:9"));
  assert_true(match("1:2:3:4:5:6:7:0/112", "1:2:3:4:5:6:7:1234"));
  assert_true(match("192.168.0.0/24", "192.168.0.2"));
  assert_true(match("192.168.0.16/29", "192.168.0.18"));
  assert_true(match("1.2.2.110/31", "1.2.2.111"));
  assert_true(match("1.2.2.0/26", "1.2.2.63"));
  assert_false(match("1.2.2.0/26", "1.2.2.64"));
  assert_true(match("::/0", "1:2:3:4:5:6:7:1234"));
  assert_false(match("::/0", "::"));
  assert_false(match("::/0", "0.0.0.0"));
  assert_false(match("::/0", "1.2.3.4"));
  assert_false(match("0.0.0.0/0", "1:2:3:4:5:6:7:1234"));
  assert_true(match("0.0.0.0/0", "1.2.3.4"));
  assert_true(match("2001:db8::/32", "2001:db8::1") == false); /* documentation address is invalid */
  assert_true(match("2a00::/16", "2a00:1450::1"));
  assert_false(match("2a00::/16", "2a01::1"));

  /* Valid / invalid prefixes. */
  const char *why = NULL;
  pd_subnet_t n;
  assert_int_equal(pd_subnet_parse("0.0.0.0/0", &n, &why), 0);
  assert_int_equal(n.prefix, 96);
  assert_int_equal(pd_subnet_parse("1.2.3.4/32", &n, &why), 0);
  assert_true(pd_subnet_is_single(&n));
  assert_int_equal(pd_subnet_parse("1:2:3:4:5:6:7:8/128", &n, &why), 0);
  assert_int_equal(pd_subnet_parse("1::/16", &n, &why), 0);
  assert_int_equal(n.prefix, 16);
  assert_int_equal(pd_subnet_parse("1:2:3:4:5:6:7:8/ffff:ffff:ffff:ffff:ffff:ffff:ffff:ffff", &n, &why), 0);
  assert_int_equal(n.prefix, 128);
  const struct bad_case bad[] = {
      {"", 0, PD_EINVAL, "empty address"},
      {"1.2.3.0/-1", 0, PD_EINVAL, "bad prefix length"},
      {"1.2.3.0/33", 0, PD_EINVAL, "prefix length above 32"},
      {"1.2.3.0/300", 0, PD_EINVAL, "prefix length above 32"},
      {"1.2.3.0/99999999999", 0, PD_EINVAL, "prefix length above 32"},
      {"1.2.3.0/4294967320", 0, PD_EINVAL, "prefix length above 32"}, /* 2^32 + 24 */
      {"1:2:3:4:5:6:7:8/129", 0, PD_EINVAL, "prefix length above 128"},
      {"1:2:3:4:5:6:7:8/-1", 0, PD_EINVAL, "bad prefix length"},
      {"1.2.3.0/", 0, PD_EINVAL, "missing prefix length"},
      {"1.2.3.0/24x", 0, PD_EINVAL, "bad prefix length"},
      {"1.2.3.0/24/8", 0, PD_EINVAL, "bad prefix length"},
      {"1.2.3.4/24", 0, PD_EINVAL, "host bits set"},
      {"1.2.3.0/0", 0, PD_EINVAL, "host bits set"},
      {"1:2:3:4:5:6:7:8/33", 0, PD_EINVAL, "host bits set"},
      {"fuzzy", 0, PD_EINVAL, "not an IP address"},
      {"bloop/8", 0, PD_EINVAL, "not an IP address"},
      {"/8", 0, PD_EINVAL, "empty address"},
      {"1.2.3.0/255.255.232.0", 0, PD_EINVAL, "netmask is not contiguous"},
      {"1.2.3.0/255.0.255.255", 0, PD_EINVAL, "netmask is not contiguous"},
      {"1.1.1.1/ffff::", 0, PD_EINVAL, "bad netmask"},
      {"::1/255.0.0.0", 0, PD_EINVAL, "bad netmask"},
      {"1.2.3.0 /24", 0, PD_EINVAL, "whitespace in address"},
      {"[::1]/128", 0, 0, NULL},
  };
  for (size_t i = 0; i < sizeof bad / sizeof bad[0]; i++) {
    why = NULL;
    int rc = pd_subnet_parse(bad[i].in, &n, &why);
    if (rc != bad[i].code || (bad[i].why && (!why || strcmp(why, bad[i].why) != 0)))
      fail_msg("subnet case %zu \"%s\": rc %d why \"%s\"", i, bad[i].in, rc, why ? why : "(null)");
  }

  /* Formatting: IPv4 in IPv4 notation, single hosts bare. */
  static const char *fmt[] = {"1.2.3.0/24", "0.0.0.0/0", "10.0.0.0/8", "1.2.3.4", "2001:db8::/32", "::/0",
                              "1::/16", "2001:db8::1", "1.2.2.110/31"};
  char buf[PD_ADDR_STRLEN];
  for (size_t i = 0; i < sizeof fmt / sizeof fmt[0]; i++) {
    pd_subnet_t s = SN(fmt[i]);
    assert_int_equal(pd_subnet_format(&s, buf, sizeof buf), (int)strlen(fmt[i]));
    assert_string_equal(buf, fmt[i]);
  }
  pd_subnet_t s = SN("1.2.3.4/32");
  pd_subnet_format(&s, buf, sizeof buf);
  assert_string_equal(buf, "1.2.3.4");
  s = SN("1.2.3.4/255.255.255.254");
  assert_false(pd_subnet_parse("1.2.3.5/255.255.255.254", NULL, NULL) == 0);
  pd_subnet_format(&s, buf, sizeof buf);
  assert_string_equal(buf, "1.2.3.4/31");
  assert_true(pd_subnet_format(&s, buf, 5) < 0);

  /* from_addr */
  pd_netaddr_t x = IP("127.0.0.1");
  pd_subnet_from_addr(&x, &s);
  assert_true(pd_subnet_is_single(&s));
  assert_true(pd_subnet_contains(&s, &x));
  pd_netaddr_t y = IP("127.0.0.2");
  assert_false(pd_subnet_contains(&s, &y));
  pd_subnet_format(&s, buf, sizeof buf);
  assert_string_equal(buf, "127.0.0.1");
  pd_subnet_t t = SN("127.0.0.1");
  assert_true(pd_subnet_equal(&s, &t));
  x = IP("1:2:3:4:5:6:7:8");
  pd_subnet_from_addr(&x, &s);
  assert_true(pd_subnet_contains(&s, &x));
  y = IP("1:2:3:4:5:6:7:9");
  assert_false(pd_subnet_contains(&s, &y));
  /* Port does not matter for containment. */
  x.port = 99;
  assert_true(pd_subnet_contains(&s, &x));
}

/* ---- sockaddr ----------------------------------------------------------- */

static void sockaddrs(void **state) {
  (void)state;
  struct sockaddr_storage ss;
  pd_netaddr_t a, b;
  assert_int_equal(pd_netaddr_parse("1.2.3.4:26656", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_to_sockaddr(&a, &ss, sizeof ss), (int)sizeof(struct sockaddr_in));
  struct sockaddr_in in;
  memcpy(&in, &ss, sizeof in);
  assert_int_equal(in.sin_family, AF_INET);
  assert_int_equal(ntohs(in.sin_port), 26656);
  assert_int_equal(ntohl(in.sin_addr.s_addr), 0x01020304u);
  assert_int_equal(pd_netaddr_from_sockaddr(&ss, &b), 0);
  assert_true(pd_netaddr_equal(&a, &b));

  assert_int_equal(pd_netaddr_parse("[2001:db8::7]:443", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_to_sockaddr(&a, &ss, sizeof ss), (int)sizeof(struct sockaddr_in6));
  struct sockaddr_in6 in6;
  memcpy(&in6, &ss, sizeof in6);
  assert_int_equal(in6.sin6_family, AF_INET6);
  assert_int_equal(ntohs(in6.sin6_port), 443);
  assert_memory_equal(&in6.sin6_addr, a.ip, 16);
  assert_int_equal(pd_netaddr_from_sockaddr(&ss, &b), 0);
  assert_true(pd_netaddr_equal(&a, &b));

  /* A v4-mapped AF_INET6 sockaddr is the IPv4 address. */
  memset(&in6, 0, sizeof in6);
  in6.sin6_family = AF_INET6;
  in6.sin6_port = htons(8);
  assert_int_equal(inet_pton(AF_INET6, "::ffff:9.8.7.6", &in6.sin6_addr), 1);
  assert_int_equal(pd_netaddr_from_sockaddr(&in6, &b), 0);
  assert_true(pd_netaddr_is_ipv4(&b));
  assert_int_equal(pd_netaddr_parse("9.8.7.6:8", 0, &a, NULL, NULL, NULL), 0);
  assert_true(pd_netaddr_equal(&a, &b));

  /* Too small, other families. */
  assert_true(pd_netaddr_to_sockaddr(&a, &ss, sizeof(struct sockaddr_in) - 1) < 0);
  assert_int_equal(pd_netaddr_parse("[::1]:8", 0, &a, NULL, NULL, NULL), 0);
  assert_true(pd_netaddr_to_sockaddr(&a, &ss, sizeof(struct sockaddr_in)) < 0);
  memset(&ss, 0, sizeof ss);
  ss.ss_family = AF_UNIX;
  assert_int_equal(pd_netaddr_from_sockaddr(&ss, &b), PD_EINVAL);
}

static void equality(void **state) {
  (void)state;
  pd_netaddr_t a, b;
  assert_int_equal(pd_netaddr_parse("1.2.3.4:1", 0, &a, NULL, NULL, NULL), 0);
  assert_int_equal(pd_netaddr_parse("[::ffff:1.2.3.4]:2", 0, &b, NULL, NULL, NULL), 0);
  assert_false(pd_netaddr_equal(&a, &b));
  assert_true(pd_netaddr_same_ip(&a, &b));
  b.port = 1;
  assert_true(pd_netaddr_equal(&a, &b));
  b.ip[15] ^= 1;
  assert_false(pd_netaddr_same_ip(&a, &b));
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(ipv4_routable_exhaustive), cmocka_unit_test(parse_good),        cmocka_unit_test(parse_errors),       cmocka_unit_test(parse_overlong),
      cmocka_unit_test(parse_hostnames),   cmocka_unit_test(parse_ip_only),      cmocka_unit_test(format_round_trip),
      cmocka_unit_test(node_ids),          cmocka_unit_test(bitcoin_properties), cmocka_unit_test(linked_ipv4),
      cmocka_unit_test(bitcoin_groups),    cmocka_unit_test(private_groups),     cmocka_unit_test(acceptable),
      cmocka_unit_test(subnets),           cmocka_unit_test(sockaddrs),          cmocka_unit_test(equality),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
