/* banlist — banned addresses and subnets, each with an expiry.
 *
 * Owns: the set of bans (single addresses and CIDR subnets), lookups
 * ("is this address banned now?"), expiry, listing. Single-address bans sit
 * in a hash set (O(1) lookup); subnet bans in a short array scanned in order.
 * Does not own: the decision to ban (reputation policy) nor persistence
 * (statestore.c writes the list as bans.json; bookstore.c reads the bans
 * of books written before bans.json existed).
 * Sans-I/O: every call that depends on time takes `now` (Unix seconds).
 * A ban with until == 0 never expires.
 */
#ifndef PD_BANLIST_H
#define PD_BANLIST_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "netaddr.h"

#define PD_BAN_REASON_MAX 96

typedef struct pd_ban {
  pd_subnet_t subnet;
  int64_t created; /* Unix seconds */
  int64_t until;   /* Unix seconds; 0 = permanent */
  char reason[PD_BAN_REASON_MAX];
} pd_ban_t;

typedef struct pd_banlist pd_banlist_t;

int pd_banlist_create(pd_banlist_t **out);
void pd_banlist_destroy(pd_banlist_t *bl);

/* Add or replace (same subnet) a ban. reason may be NULL. Returns 0, 1 when
 * an existing ban was replaced, or PD_ENOMEM. */
int pd_banlist_add(pd_banlist_t *bl, const pd_subnet_t *s, int64_t created, int64_t until,
                   const char *reason);
/* Remove the ban on exactly this subnet. 0 or PD_ENOENT. */
int pd_banlist_remove(pd_banlist_t *bl, const pd_subnet_t *s);
/* Is a matches any unexpired ban at `now`. The matching ban, if any and if
 * match != NULL, is copied out. */
bool pd_banlist_is_banned(const pd_banlist_t *bl, const pd_netaddr_t *a, int64_t now,
                          pd_ban_t *match);
/* Drop expired bans; returns how many were dropped. */
size_t pd_banlist_expire(pd_banlist_t *bl, int64_t now);
/* Number of bans held (expired ones included until pd_banlist_expire). */
size_t pd_banlist_count(const pd_banlist_t *bl);
/* Bans added or renewed since the list was made (monotonic): whoever acts on
 * bans (the network manager closing connections) compares it with the
 * count it saw last. */
uint64_t pd_banlist_adds(const pd_banlist_t *bl);
/* i-th ban in a stable order (insertion order, compacted on removal);
 * NULL past the end. */
const pd_ban_t *pd_banlist_get(const pd_banlist_t *bl, size_t i);
void pd_banlist_clear(pd_banlist_t *bl);

#endif
