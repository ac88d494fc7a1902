/* banlist — see banlist.h.
 *
 * Layout: `bans` holds every ban in insertion order (the stable order of
 * pd_banlist_get; removal compacts it). Single-address bans (/128, i.e. a
 * /32 for IPv4) are also indexed by an open-addressing hash set of
 * (index + 1) into `bans` (linear probing, 0 = empty), so lookups are O(1).
 * Subnet bans are listed in `subnets` (indexes into `bans`, in order) and
 * scanned linearly. Removal and expiry are rare: they compact `bans` and
 * rebuild both indexes.
 */
#include "banlist.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

struct pd_banlist {
  pd_ban_t *bans;
  size_t n, cap;
  uint32_t *set; /* index + 1 into bans; 0 = empty */
  size_t set_cap;  /* power of two, or 0 */
  size_t nsingle;
  uint32_t *subnets; /* indexes into bans, insertion order */
  size_t nsubnet, subnet_cap;
  uint64_t adds; /* bans added or renewed, ever: a change since a count seen */
};

uint64_t pd_banlist_adds(const pd_banlist_t *bl) { return bl ? bl->adds : 0; }

static uint64_t ip_hash(const uint8_t ip[16]) {
  uint64_t a, b;
  memcpy(&a, ip, 8);
  memcpy(&b, ip + 8, 8);
  uint64_t h = a * 0x9e3779b97f4a7c15ULL ^ (b + 0x632be59bd9b4e019ULL) * 0xc2b2ae3d27d4eb4fULL;
  h ^= h >> 31;
  h *= 0xbf58476d1ce4e5b9ULL;
  h ^= h >> 29;
  return h;
}

static void normalize(pd_subnet_t *s) {
  for (int i = 0; i < 16; i++) {
    int bits = (int)s->prefix - i * 8;
    if (bits >= 8) continue;
    if (bits <= 0) {
      s->ip[i] = 0;
    } else {
      s->ip[i] &= (uint8_t)(0xFF00u >> bits);
    }
  }
}

static bool is_single(const pd_subnet_t *s) { return s->prefix == 128; }

static bool same_subnet(const pd_subnet_t *a, const pd_subnet_t *b) {
  return a->prefix == b->prefix && memcmp(a->ip, b->ip, 16) == 0;
}

static bool contains(const pd_subnet_t *s, const uint8_t ip[16]) {
  unsigned full = s->prefix / 8, rem = s->prefix % 8;
  if (memcmp(s->ip, ip, full) != 0) return false;
  if (rem == 0) return true;
  uint8_t mask = (uint8_t)(0xFF00u >> rem);
  return (ip[full] & mask) == s->ip[full];
}

/* Slot holding single ban on ip, or the empty slot where it would go. */
static size_t set_find(const pd_banlist_t *bl, const uint8_t ip[16], bool *found) {
  size_t mask = bl->set_cap - 1;
  size_t i = (size_t)ip_hash(ip) & mask;
  for (;;) {
    uint32_t v = bl->set[i];
    if (v == 0) {
      *found = false;
      return i;
    }
    if (memcmp(bl->bans[v - 1].subnet.ip, ip, 16) == 0) {
      *found = true;
      return i;
    }
    i = (i + 1) & mask;
  }
}

/* Rebuild both indexes from `bans`, growing the set when needed. */
static int rebuild(pd_banlist_t *bl) {
  size_t singles = 0, subs = 0;
  for (size_t i = 0; i < bl->n; i++) {
    if (is_single(&bl->bans[i].subnet)) {
      singles++;
    } else {
      subs++;
    }
  }
  size_t want = bl->set_cap ? bl->set_cap : 16;
  while (singles * 2 + 2 > want) want *= 2;
  if (want != bl->set_cap) {
    uint32_t *ns = calloc(want, sizeof(*ns));
    if (!ns) return PD_ENOMEM;
    free(bl->set);
    bl->set = ns;
    bl->set_cap = want;
  } else {
    memset(bl->set, 0, bl->set_cap * sizeof(*bl->set));
  }
  if (subs > bl->subnet_cap) {
    size_t c = bl->subnet_cap ? bl->subnet_cap : 8;
    while (c < subs) c *= 2;
    uint32_t *na = realloc(bl->subnets, c * sizeof(*na));
    if (!na) return PD_ENOMEM;
    bl->subnets = na;
    bl->subnet_cap = c;
  }
  bl->nsingle = 0;
  bl->nsubnet = 0;
  for (size_t i = 0; i < bl->n; i++) {
    const pd_subnet_t *s = &bl->bans[i].subnet;
    if (is_single(s)) {
      bool found;
      size_t slot = set_find(bl, s->ip, &found);
      bl->set[slot] = (uint32_t)i + 1;
      bl->nsingle++;
    } else {
      bl->subnets[bl->nsubnet++] = (uint32_t)i;
    }
  }
  return 0;
}

int pd_banlist_create(pd_banlist_t **out) {
  pd_banlist_t *bl = calloc(1, sizeof(*bl));
  if (!bl) return PD_ENOMEM;
  if (rebuild(bl) != 0) {
    free(bl);
    return PD_ENOMEM;
  }
  *out = bl;
  return 0;
}

void pd_banlist_destroy(pd_banlist_t *bl) {
  if (!bl) return;
  free(bl->bans);
  free(bl->set);
  free(bl->subnets);
  free(bl);
}

static void fill(pd_ban_t *b, const pd_subnet_t *s, int64_t created, int64_t until,
                 const char *reason) {
  memset(b, 0, sizeof(*b));
  b->subnet = *s;
  b->created = created;
  b->until = until;
  if (reason) {
    size_t len = strnlen(reason, PD_BAN_REASON_MAX - 1);
    memcpy(b->reason, reason, len);
    b->reason[len] = '\0';
  }
}

/* Index in bans of the ban on exactly s, or -1. */
static long find_ban(const pd_banlist_t *bl, const pd_subnet_t *s) {
  if (is_single(s)) {
    if (bl->nsingle == 0) return -1;
    bool found;
    size_t slot = set_find(bl, s->ip, &found);
    return found ? (long)bl->set[slot] - 1 : -1;
  }
  for (size_t k = 0; k < bl->nsubnet; k++) {
    if (same_subnet(&bl->bans[bl->subnets[k]].subnet, s)) return (long)bl->subnets[k];
  }
  return -1;
}

int pd_banlist_add(pd_banlist_t *bl, const pd_subnet_t *s_in, int64_t created, int64_t until,
                   const char *reason) {
  if (!bl || !s_in || s_in->prefix > 128) return PD_EINVAL;
  pd_subnet_t s = *s_in;
  normalize(&s);
  long at = find_ban(bl, &s);
  if (at >= 0) {
    fill(&bl->bans[at], &s, created, until, reason);
    bl->adds++;
    return 1;
  }
  if (bl->n >= UINT32_MAX - 1) return PD_ENOMEM;
  if (bl->n == bl->cap) {
    size_t c = bl->cap ? bl->cap * 2 : 16;
    pd_ban_t *nb = realloc(bl->bans, c * sizeof(*nb));
    if (!nb) return PD_ENOMEM;
    bl->bans = nb;
    bl->cap = c;
  }
  size_t idx = bl->n;
  fill(&bl->bans[idx], &s, created, until, reason);
  bl->n++;
  if (is_single(&s)) {
    if ((bl->nsingle + 1) * 2 + 2 > bl->set_cap) {
      int rc = rebuild(bl);
      if (rc != 0) {
        bl->n--;
        return rc;
      }
      bl->adds++;
      return 0; /* rebuild indexed the new ban */
    }
    bool found;
    size_t slot = set_find(bl, s.ip, &found);
    bl->set[slot] = (uint32_t)idx + 1;
    bl->nsingle++;
    bl->adds++;
    return 0;
  } else {
    if (bl->nsubnet == bl->subnet_cap) {
      size_t c = bl->subnet_cap ? bl->subnet_cap * 2 : 8;
      uint32_t *na = realloc(bl->subnets, c * sizeof(*na));
      if (!na) {
        bl->n--;
        return PD_ENOMEM;
      }
      bl->subnets = na;
      bl->subnet_cap = c;
    }
    bl->subnets[bl->nsubnet++] = (uint32_t)idx;
  }
  bl->adds++;
  return 0;
}

int pd_banlist_remove(pd_banlist_t *bl, const pd_subnet_t *s_in) {
  if (!bl || !s_in || s_in->prefix > 128) return PD_ENOENT;
  pd_subnet_t s = *s_in;
  normalize(&s);
  long at = find_ban(bl, &s);
  if (at < 0) return PD_ENOENT;
  memmove(&bl->bans[at], &bl->bans[at + 1], (bl->n - (size_t)at - 1) * sizeof(pd_ban_t));
  bl->n--;
  /* Rebuild cannot need more memory than it already has (fewer bans). */
  return rebuild(bl) == 0 ? 0 : PD_ENOMEM;
}

static bool active(const pd_ban_t *b, int64_t now) { return b->until == 0 || now < b->until; }

bool pd_banlist_is_banned(const pd_banlist_t *bl, const pd_netaddr_t *a, int64_t now,
                          pd_ban_t *match) {
  if (!bl || bl->n == 0 || !a) return false;
  if (bl->nsingle != 0) {
    bool found;
    size_t slot = set_find(bl, a->ip, &found);
    if (found) {
      const pd_ban_t *b = &bl->bans[bl->set[slot] - 1];
      if (active(b, now)) {
        if (match) *match = *b;
        return true;
      }
    }
  }
  for (size_t k = 0; k < bl->nsubnet; k++) {
    const pd_ban_t *b = &bl->bans[bl->subnets[k]];
    if (active(b, now) && contains(&b->subnet, a->ip)) {
      if (match) *match = *b;
      return true;
    }
  }
  return false;
}

size_t pd_banlist_expire(pd_banlist_t *bl, int64_t now) {
  if (!bl) return 0;
  size_t w = 0;
  for (size_t r = 0; r < bl->n; r++) {
    if (active(&bl->bans[r], now)) {
      if (w != r) bl->bans[w] = bl->bans[r];
      w++;
    }
  }
  size_t dropped = bl->n - w;
  if (dropped) {
    bl->n = w;
    (void)rebuild(bl); /* never grows: cannot fail */
  }
  return dropped;
}

size_t pd_banlist_count(const pd_banlist_t *bl) { return bl ? bl->n : 0; }

const pd_ban_t *pd_banlist_get(const pd_banlist_t *bl, size_t i) {
  if (!bl || i >= bl->n) return NULL;
  return &bl->bans[i];
}

void pd_banlist_clear(pd_banlist_t *bl) {
  if (!bl) return;
  bl->n = 0;
  (void)rebuild(bl);
}
