/* fuzz_netaddr — libFuzzer target for the address parsers
 * (host/core/netaddr.c): pd_endpoint_parse, pd_netaddr_parse,
 * pd_netaddr_parse_ip, pd_subnet_parse and pd_node_id_parse.
 * Input: byte 0 holds the parser flags (PD_PARSE_*), the rest is the text,
 * copied into a buffer of exactly its length + NUL (so a read past the end
 * is an ASan report); a NUL inside the text ends it as C would.
 * Oracle beyond the sanitizers: a parser that succeeds sets no reason and
 * what it parsed formats and parses back to the same value; the predicates
 * and the network group run on every parsed address. Nothing outlives one
 * input. docs/fuzzing.md. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "netaddr.h"

static void use_addr(const pd_netaddr_t *a) {
  uint8_t g[PD_GROUP_MAX];
  size_t gl = pd_netaddr_group(a, false, g);
  if (gl < 1 || gl > PD_GROUP_MAX) abort();
  gl = pd_netaddr_group(a, true, g);
  if (gl < 1 || gl > PD_GROUP_MAX) abort();
  const char *why = NULL;
  (void)pd_netaddr_check_acceptable(a, false, &why);
  (void)pd_netaddr_check_acceptable(a, true, &why);
  (void)pd_netaddr_is_routable(a);
  (void)pd_netaddr_net_class(a);
  if (pd_netaddr_has_linked_ipv4(a)) (void)pd_netaddr_linked_ipv4(a);

  char txt[128];
  int n = pd_netaddr_format(a, txt, sizeof txt);
  if (n <= 0 || (size_t)n != strlen(txt)) abort();
  pd_netaddr_t back;
  if (pd_netaddr_parse(txt, PD_PARSE_PORT_OPTIONAL, &back, NULL, NULL, NULL) != 0) abort();
  if (!pd_netaddr_equal(a, &back)) abort();
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  unsigned flags = data[0] & (PD_PARSE_PORT_OPTIONAL | PD_PARSE_ALLOW_ID | PD_PARSE_ALLOW_HOSTNAME);
  data++;
  size--;
  char *s = malloc(size + 1);
  if (!s) abort();
  memcpy(s, data, size);
  s[size] = '\0';

  pd_endpoint_t ep;
  const char *why = NULL;
  if (pd_endpoint_parse(s, flags, &ep, &why) == 0) {
    if (strlen(ep.host) > PD_HOST_MAX) abort();
    if (ep.is_ip) use_addr(&ep.addr);
  } else if (!why) {
    abort();
  }

  pd_netaddr_t a;
  bool has_id = false;
  uint8_t id[PD_NODE_ID_LEN];
  why = NULL;
  if (pd_netaddr_parse(s, flags, &a, &has_id, id, &why) == 0) {
    use_addr(&a);
    if (has_id) {
      char hex[2 * PD_NODE_ID_LEN + 1];
      uint8_t id2[PD_NODE_ID_LEN];
      if (pd_node_id_format(id, hex, sizeof hex) < 0) abort();
      if (pd_node_id_parse(hex, strlen(hex), id2) != 0 || memcmp(id, id2, sizeof id) != 0) abort();
    }
  } else if (!why) {
    abort();
  }

  if (pd_netaddr_parse_ip(s, &a, NULL) == 0) use_addr(&a);

  pd_subnet_t sn;
  if (pd_subnet_parse(s, &sn, &why) == 0) {
    if (sn.prefix > 128) abort();
    char txt[128];
    pd_subnet_t back;
    if (pd_subnet_format(&sn, txt, sizeof txt) <= 0) abort();
    if (pd_subnet_parse(txt, &back, NULL) != 0) abort();
    if (back.prefix != sn.prefix || memcmp(back.ip, sn.ip, sizeof sn.ip) != 0) abort();
  }

  (void)pd_node_id_parse(s, size, id);
  free(s);
  return 0;
}
