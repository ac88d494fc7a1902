/* rng — the seeded pseudo-random generator handed to the core.
 *
 * Owns: a small, fast, deterministic PRNG (xoshiro256**, seeded through
 * splitmix64) and the helpers the core needs: uniform ranges without modulo
 * bias, k random bits, a coin flip. Does not own: where the seed comes from.
 * The daemon seeds it from libsodium's randombytes; tests and the scenario
 * lab seed it from a number, so every run is reproducible.
 * Not for secrets: keys come from libsodium in the driver.
 */
#ifndef PD_RNG_H
#define PD_RNG_H

#include <stdint.h>

typedef struct pd_rng {
  uint64_t s[4];
} pd_rng_t;

/* Seed from a 64-bit number (any value, 0 included). */
void pd_rng_seed(pd_rng_t *r, uint64_t seed);
/* Next 64 random bits. */
uint64_t pd_rng_u64(pd_rng_t *r);
/* Uniform integer in [0, n); n == 0 returns 0. Unbiased (Lemire). */
uint64_t pd_rng_range(pd_rng_t *r, uint64_t n);
/* k (0..64) random low bits. */
uint64_t pd_rng_bits(pd_rng_t *r, unsigned k);
/* Uniform double in [0, 1). */
double pd_rng_unit(pd_rng_t *r);
/* Fill buf with len bytes. */
void pd_rng_fill(pd_rng_t *r, void *buf, unsigned long len);

#endif
