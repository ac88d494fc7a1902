/* intern — immutable byte strings kept once and shared. See intern.h. */
#include "intern.h"

#include <stdbool.h>
#include <stdlib.h>
#include <string.h>

#include <sodium.h>

#include "err.h"

/* A kept string: its header, then its bytes (what callers point at). */
typedef struct blob {
  uint64_t hash;
  uint32_t refs;
  uint32_t len;
  uint8_t bytes[];
} blob_t;

struct pd_intern {
  uint8_t key[crypto_shorthash_KEYBYTES];
  blob_t **slot; /* NULL: empty */
  size_t mask, count, bytes;
};

_Static_assert(PD_INTERN_KEY_LEN == crypto_shorthash_KEYBYTES, "siphash key");

static blob_t *blob_of(const uint8_t *p) {
  return (blob_t *)(void *)((uint8_t *)(uintptr_t)p - offsetof(blob_t, bytes));
}

static uint64_t hash(const pd_intern_t *s, const uint8_t *p, size_t n) {
  uint8_t out[crypto_shorthash_BYTES];
  crypto_shorthash(out, p, n, s->key);
  uint64_t h;
  memcpy(&h, out, sizeof h);
  return h;
}

int pd_intern_create(pd_intern_t **out, const uint8_t key[PD_INTERN_KEY_LEN]) {
  if (!out || !key) return PD_EINVAL;
  pd_intern_t *s = calloc(1, sizeof *s);
  if (!s) return PD_ENOMEM;
  s->slot = calloc(16, sizeof *s->slot);
  if (!s->slot) {
    free(s);
    return PD_ENOMEM;
  }
  memcpy(s->key, key, sizeof s->key);
  s->mask = 15;
  *out = s;
  return 0;
}

void pd_intern_destroy(pd_intern_t *s) {
  if (!s) return;
  for (size_t i = 0; i <= s->mask; i++) free(s->slot[i]);
  free(s->slot);
  free(s);
}

/* Twice the slots, every string placed again. */
static int grow(pd_intern_t *s) {
  size_t n = (s->mask + 1) * 2;
  blob_t **t = calloc(n, sizeof *t);
  if (!t) return PD_ENOMEM;
  for (size_t i = 0; i <= s->mask; i++) {
    blob_t *b = s->slot[i];
    if (!b) continue;
    size_t j = (size_t)b->hash & (n - 1);
    while (t[j]) j = (j + 1) & (n - 1);
    t[j] = b;
  }
  free(s->slot);
  s->slot = t;
  s->mask = n - 1;
  return 0;
}

const uint8_t *pd_intern_get(pd_intern_t *s, const uint8_t *bytes, size_t len) {
  if (!s || !bytes || len == 0 || len > PD_INTERN_MAX_LEN) return NULL;
  uint64_t h = hash(s, bytes, len);
  size_t i = (size_t)h & s->mask;
  for (blob_t *b; (b = s->slot[i]); i = (i + 1) & s->mask) {
    if (b->hash == h && b->len == len && memcmp(b->bytes, bytes, len) == 0) {
      if (b->refs == UINT32_MAX) return NULL;
      b->refs++;
      return b->bytes;
    }
  }
  /* at most 3/4 full, so that probes end */
  if ((s->count + 1) * 4 > (s->mask + 1) * 3) {
    if (grow(s) < 0) return NULL;
    i = (size_t)h & s->mask;
    while (s->slot[i]) i = (i + 1) & s->mask;
  }
  blob_t *b = malloc(sizeof *b + len);
  if (!b) return NULL;
  b->hash = h;
  b->refs = 1;
  b->len = (uint32_t)len;
  memcpy(b->bytes, bytes, len);
  s->slot[i] = b;
  s->count++;
  s->bytes += len;
  return b->bytes;
}

void pd_intern_put(pd_intern_t *s, const uint8_t *p) {
  if (!s || !p) return;
  blob_t *b = blob_of(p);
  if (--b->refs > 0) return;
  size_t i = (size_t)b->hash & s->mask;
  while (s->slot[i] != b) i = (i + 1) & s->mask;
  /* backward-shift deletion: later members of the probe run move up into
   * the hole when their home slot allows, so no tombstones are needed */
  size_t hole = i;
  for (size_t j = (i + 1) & s->mask; s->slot[j]; j = (j + 1) & s->mask) {
    size_t home = (size_t)s->slot[j]->hash & s->mask;
    /* j may move to hole when home is not cyclically in (hole, j] */
    bool stays = hole <= j ? (home > hole && home <= j) : (home > hole || home <= j);
    if (stays) continue;
    s->slot[hole] = s->slot[j];
    hole = j;
  }
  s->slot[hole] = NULL;
  s->count--;
  s->bytes -= b->len;
  free(b);
}

size_t pd_intern_count(const pd_intern_t *s) { return s ? s->count : 0; }
size_t pd_intern_bytes(const pd_intern_t *s) { return s ? s->bytes : 0; }

uint32_t pd_intern_refs(const pd_intern_t *s, const uint8_t *p) {
  (void)s;
  return p ? blob_of(p)->refs : 0;
}
