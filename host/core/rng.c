/* rng — see rng.h. xoshiro256** by Blackman and Vigna (public domain). */
#include "rng.h"

#include <string.h>

static uint64_t splitmix64(uint64_t *x) {
  uint64_t z = (*x += 0x9e3779b97f4a7c15ULL);
  z = (z ^ (z >> 30)) * 0xbf58476d1ce4e5b9ULL;
  z = (z ^ (z >> 27)) * 0x94d049bb133111ebULL;
  return z ^ (z >> 31);
}

static inline uint64_t rotl(uint64_t x, int k) { return (x << k) | (x >> (64 - k)); }

void pd_rng_seed(pd_rng_t *r, uint64_t seed) {
  for (int i = 0; i < 4; i++) r->s[i] = splitmix64(&seed);
}

uint64_t pd_rng_u64(pd_rng_t *r) {
  uint64_t *s = r->s;
  const uint64_t result = rotl(s[1] * 5, 7) * 9;
  const uint64_t t = s[1] << 17;
  s[2] ^= s[0];
  s[3] ^= s[1];
  s[1] ^= s[2];
  s[0] ^= s[3];
  s[2] ^= t;
  s[3] = rotl(s[3], 45);
  return result;
}

uint64_t pd_rng_range(pd_rng_t *r, uint64_t n) {
  if (n == 0) return 0;
  /* Lemire's nearly-divisionless method on 64 bits. */
  unsigned __int128 m = (unsigned __int128)pd_rng_u64(r) * n;
  uint64_t l = (uint64_t)m;
  if (l < n) {
    uint64_t t = (0 - n) % n;
    while (l < t) {
      m = (unsigned __int128)pd_rng_u64(r) * n;
      l = (uint64_t)m;
    }
  }
  return (uint64_t)(m >> 64);
}

uint64_t pd_rng_bits(pd_rng_t *r, unsigned k) {
  if (k == 0) return 0;
  if (k >= 64) return pd_rng_u64(r);
  return pd_rng_u64(r) >> (64 - k);
}

double pd_rng_unit(pd_rng_t *r) { return (double)(pd_rng_u64(r) >> 11) * 0x1.0p-53; }

void pd_rng_fill(pd_rng_t *r, void *buf, unsigned long len) {
  unsigned char *p = buf;
  while (len > 0) {
    uint64_t v = pd_rng_u64(r);
    unsigned long n = len < 8 ? len : 8;
    memcpy(p, &v, n);
    p += n;
    len -= n;
  }
}
