/* inevict — which inbound peer to evict when a newcomer finds the inbound
 * slots full: the C default of the evict_inbound hook (sans-I/O).
 *
 * Owns: the rule, after Bitcoin Core's SelectNodeToEvict (node/eviction.cpp):
 * among the candidates (inbound, authenticated, neither protected by the
 * node nor unconditional: the caller leaves those out), protect
 *   - PD_INEVICT_BY_GROUP (4) with the highest keyed hash of their network
 *     group (SipHash-2-4 under a secret key: an attacker cannot tell which
 *     groups win, so it cannot pick addresses to be protected);
 *   - PD_INEVICT_BY_LATENCY (8) of the rest with the lowest ping round trip
 *     (only measured ones: a peer younger than its first ping is not);
 *   - PD_INEVICT_BY_USEFUL (4) of the rest that most recently gave us an
 *     address we later completed an outbound handshake with (only ones that
 *     ever did);
 *   - half of the rest, longest connected first;
 * then, of those left, take the network group with the most candidates
 * (ties: the group whose newest member is the newest) and evict its newest
 * peer. Nobody left: no eviction (the newcomer is refused).
 * Deterministic: ties break by conn id. Does not own: who the candidates
 * are, closing the victim (netmgr), the Lua hook (policy, via node).
 */
#ifndef PD_INEVICT_H
#define PD_INEVICT_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PD_INEVICT_BY_GROUP 4
#define PD_INEVICT_BY_LATENCY 8
#define PD_INEVICT_BY_USEFUL 4
#define PD_INEVICT_KEY_LEN 16

typedef struct pd_inevict_cand {
  uint64_t conn_id;
  uint8_t group[PD_GROUP_MAX];
  size_t group_len;
  int64_t connected_ms; /* when it became ready */
  int64_t latency_ms;   /* smallest ping round trip seen; < 0: unknown */
  int64_t useful_ms;    /* last time an address it gave led to an outbound handshake; 0: never */
} pd_inevict_cand_t;

/* The victim's index in c[0..n), or -1 when every candidate is protected.
 * protected_out (may be NULL): n flags, set for the candidates the rule
 * protects. n above 100,000 is refused (-1). Allocates nothing past n
 * indices (returns -1 when that fails). */
long pd_inevict_select(const pd_inevict_cand_t *c, size_t n, const uint8_t key[PD_INEVICT_KEY_LEN],
                       bool *protected_out);

#endif
