/* netaddr — peer addresses: parsing, printing, classification, network groups.
 *
 * Owns: the text forms `host:port`, `[ipv6]:port`, `ID@host:port`; IP
 * literals; CIDR subnets; Bitcoin Core's classification (CNetAddr::IsValid,
 * IsRoutable and the RFC predicates) and network groups
 * (NetGroupManager::GetGroup without asmap), reproduced exactly.
 * Does not own: DNS. A host name is split out and handed back with
 * PD_EHOSTNAME; the driver resolves it (uv_getaddrinfo) and calls back in.
 *
 * Representation: every IP is kept as 16 bytes in network order, IPv4 as the
 * IPv4-mapped IPv6 address ::ffff:a.b.c.d. That is Bitcoin Core's V1
 * serialization, the bytes its CService::GetKey() hashes, so placement in the
 * address book can match Bitcoin Core byte for byte. `::ffff:a.b.c.d` typed
 * as IPv6 text therefore *is* the IPv4 address a.b.c.d, as in Bitcoin Core.
 *
 * Node IDs are 20 bytes, written as 40 lowercase hex characters (CometBFT's
 * form: the first 20 bytes of SHA-256 of the node's ed25519 public key).
 * Input hex may be upper or lower case.
 */
#ifndef PD_NETADDR_H
#define PD_NETADDR_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#define PD_NODE_ID_LEN 20
#define PD_NODE_ID_HEXLEN 40
/* Longest text accepted by any parser here (bytes, without the NUL). */
#define PD_ADDR_MAX_INPUT 300
/* Buffer size that fits any formatted address, "ID@[v6]:port" included. */
#define PD_ADDR_STRLEN 112
/* Longest host name (RFC 1035) kept by pd_endpoint_t. */
#define PD_HOST_MAX 253
/* Largest group key (class byte + up to 16 address bytes). */
#define PD_GROUP_MAX 17

typedef struct pd_netaddr {
  uint8_t ip[16]; /* network order; IPv4 as ::ffff:a.b.c.d */
  uint16_t port;  /* host order; 0 = none */
} pd_netaddr_t;

/* Bitcoin Core's `enum Network` values that can occur for IP addresses.
 * (Old Bitcoin Core set class 255 for local addresses and then overwrote it:
 * local addresses group as {0}, like every unroutable one. PD_NET_LOCAL is
 * kept only to name that historical value; no group uses it.) */
enum pd_net {
  PD_NET_UNROUTABLE = 0,
  PD_NET_IPV4 = 1,
  PD_NET_IPV6 = 2,
  PD_NET_INTERNAL = 6,
  PD_NET_LOCAL = 255,
};

/* Flags for the parsers. */
enum {
  PD_PARSE_PORT_OPTIONAL = 1 << 0, /* bare IP/host accepted; port becomes 0 */
  PD_PARSE_ALLOW_ID = 1 << 1,      /* accept an `ID@` prefix */
  PD_PARSE_ALLOW_HOSTNAME = 1 << 2 /* accept a DNS name as host (endpoint only) */
};

/* A parsed "[ID@]host:port" before any DNS resolution. */
typedef struct pd_endpoint {
  char host[PD_HOST_MAX + 1]; /* host name or IP literal, no brackets */
  uint16_t port;
  bool has_id;
  uint8_t id[PD_NODE_ID_LEN];
  bool is_ip;        /* host was an IP literal: addr is filled in */
  pd_netaddr_t addr; /* valid when is_ip (port copied in) */
} pd_endpoint_t;

/* A CIDR subnet. Prefix length counts bits of the 16-byte form, so an IPv4
 * /24 is stored as prefix 96 + 24 = 120. Bits beyond the prefix are zero. */
typedef struct pd_subnet {
  uint8_t ip[16];
  uint8_t prefix; /* 0..128 */
} pd_subnet_t;

/* Parse "[ID@]host:port". Returns 0, PD_EINVAL/PD_ETOOBIG/PD_ERANGE with *why
 * set to a short static reason ("empty address", "port 0", "port above
 * 65535", "bad node id: expected 40 hex characters", "junk after port",
 * "missing port", "unclosed [", "address too long", ...). A host that is not
 * an IP literal is accepted only with PD_PARSE_ALLOW_HOSTNAME (is_ip false);
 * otherwise it is PD_EINVAL "not an IP address". `why` may be NULL. */
int pd_endpoint_parse(const char *s, unsigned flags, pd_endpoint_t *out, const char **why);

/* Parse an IP-literal address "ip:port" / "[ipv6]:port" (flags as above;
 * PD_PARSE_ALLOW_ID is accepted and the ID, if any, written to id_out when
 * not NULL, has_id_out likewise). Host names are PD_EINVAL. */
int pd_netaddr_parse(const char *s, unsigned flags, pd_netaddr_t *out, bool *has_id_out,
                     uint8_t id_out[PD_NODE_ID_LEN], const char **why);

/* Parse a bare IP literal ("1.2.3.4", "2001:db8::1", "[2001:db8::1]").
 * Port is set to 0. */
int pd_netaddr_parse_ip(const char *s, pd_netaddr_t *out, const char **why);

/* Build from a sockaddr (struct sockaddr_in / sockaddr_in6), as returned by
 * getaddrinfo or accept. Returns PD_EINVAL for other families. */
int pd_netaddr_from_sockaddr(const void *sa, pd_netaddr_t *out);
/* Fill a struct sockaddr_storage-sized buffer; returns its length or < 0. */
int pd_netaddr_to_sockaddr(const pd_netaddr_t *a, void *ss, size_t cap);

/* "1.2.3.4:26656" or "[2001:db8::1]:26656"; with port 0, just the IP
 * ("1.2.3.4" / "2001:db8::1"). Returns length written or < 0. */
int pd_netaddr_format(const pd_netaddr_t *a, char *buf, size_t cap);
/* The IP alone, never bracketed. */
int pd_netaddr_format_ip(const pd_netaddr_t *a, char *buf, size_t cap);
/* 40 lowercase hex characters + NUL (cap >= 41). */
int pd_node_id_format(const uint8_t id[PD_NODE_ID_LEN], char *buf, size_t cap);
int pd_node_id_parse(const char *hex, size_t len, uint8_t id[PD_NODE_ID_LEN]);

/* Exact equality of IP and port. */
bool pd_netaddr_equal(const pd_netaddr_t *a, const pd_netaddr_t *b);
bool pd_netaddr_same_ip(const pd_netaddr_t *a, const pd_netaddr_t *b);
/* Per-host limits and bans (issue 14): an IPv6 host is its /v6_prefix
 * (one /64 is one site's allocation), so rotating addresses inside it does
 * not make new hosts; IPv4 (and IPv4-mapped) is the address. v6_prefix 0
 * = PD_NETADDR_V6_HOST_PREFIX; values are clamped to 16..128. */
#define PD_NETADDR_V6_HOST_PREFIX 64
bool pd_netaddr_same_host(const pd_netaddr_t *a, const pd_netaddr_t *b, unsigned v6_prefix);
/* The subnet that is a's host in that sense (/128 form for IPv4). */
void pd_subnet_host(const pd_netaddr_t *a, unsigned v6_prefix, pd_subnet_t *out);

/* Bitcoin Core predicates (net_address.cpp / netaddress.cpp). */
bool pd_netaddr_is_ipv4(const pd_netaddr_t *a); /* ::ffff:0:0/96 */
bool pd_netaddr_is_ipv6(const pd_netaddr_t *a); /* everything else */
bool pd_netaddr_is_rfc1918(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc2544(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc3927(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc6598(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc5737(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc3849(const pd_netaddr_t *a);
bool pd_netaddr_is_rfc3964(const pd_netaddr_t *a); /* 6to4 */
bool pd_netaddr_is_rfc6052(const pd_netaddr_t *a); /* NAT64 64:ff9b::/96 */
bool pd_netaddr_is_rfc4380(const pd_netaddr_t *a); /* Teredo */
bool pd_netaddr_is_rfc4862(const pd_netaddr_t *a); /* link-local fe80::/64 */
bool pd_netaddr_is_rfc4193(const pd_netaddr_t *a); /* ULA fc00::/7 */
bool pd_netaddr_is_rfc6145(const pd_netaddr_t *a); /* ::ffff:0:0:0/96 */
bool pd_netaddr_is_rfc4843(const pd_netaddr_t *a); /* ORCHID */
bool pd_netaddr_is_rfc7343(const pd_netaddr_t *a); /* ORCHIDv2 */
bool pd_netaddr_is_he_net(const pd_netaddr_t *a);  /* 2001:470::/32 */
bool pd_netaddr_is_local(const pd_netaddr_t *a);   /* 127/8, 0/8, ::1 */
bool pd_netaddr_is_internal(const pd_netaddr_t *a);/* fd6b:88c0:8724::/48 */
bool pd_netaddr_is_valid(const pd_netaddr_t *a);
bool pd_netaddr_is_routable(const pd_netaddr_t *a);
/* HasLinkedIPv4 / GetLinkedIPv4 (host-order uint32). */
bool pd_netaddr_has_linked_ipv4(const pd_netaddr_t *a);
uint32_t pd_netaddr_linked_ipv4(const pd_netaddr_t *a);
/* GetNetClass. */
int pd_netaddr_net_class(const pd_netaddr_t *a);

/* May this address enter the book? Routable always; with allow_private also
 * any valid non-routable address (RFC1918, loopback, link-local, ULA, ...).
 * Returns 0 or PD_EUNROUTABLE / PD_EINVAL with *why ("unspecified address",
 * "private address (RFC1918)", "loopback address", ...). */
int pd_netaddr_check_acceptable(const pd_netaddr_t *a, bool allow_private, const char **why);

/* Network group bytes (NetGroupManager::GetGroup without asmap) into out,
 * returning the length (1..PD_GROUP_MAX). With allow_private, a valid
 * non-routable address is grouped as if routable: IPv4 (and linked IPv4) by
 * /16 under class PD_NET_IPV4, IPv6 by /32 under PD_NET_IPV6, so test
 * networks on 127.x.0.1 span distinct groups. */
size_t pd_netaddr_group(const pd_netaddr_t *a, bool allow_private, uint8_t out[PD_GROUP_MAX]);

/* Subnets: "1.2.3.0/24", "2001:db8::/32", or a bare IP (a /32 or /128).
 * Host bits set beyond the prefix are PD_EINVAL ("host bits set"). */
int pd_subnet_parse(const char *s, pd_subnet_t *out, const char **why);
int pd_subnet_format(const pd_subnet_t *s, char *buf, size_t cap); /* "1.2.3.0/24", bare IP for single hosts */
bool pd_subnet_contains(const pd_subnet_t *s, const pd_netaddr_t *a);
bool pd_subnet_is_single(const pd_subnet_t *s);
void pd_subnet_from_addr(const pd_netaddr_t *a, pd_subnet_t *out); /* /32 or /128 */
bool pd_subnet_equal(const pd_subnet_t *a, const pd_subnet_t *b);

#endif
