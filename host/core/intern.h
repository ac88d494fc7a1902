/* intern — immutable byte strings kept once and shared, with a count of
 * references (sans-I/O).
 *
 * Owns: one copy of each distinct byte string handed to pd_intern_get, how
 * many references it has, and freeing it with the last one.
 * Does not own: what the bytes mean. The record tables (rectable.c) keep
 * their records' signed bytes here: in the lab, where a thousand hosts
 * hold the same thousand records, one store shared by every host keeps one
 * copy of each instead of a thousand (docs/architecture.md, "Records").
 *
 * The index is open addressing with linear probing and backward-shift
 * deletion, keyed by SipHash (libsodium crypto_shorthash) with a key from
 * the caller. A store is not thread-safe; the lab is one thread.
 */
#ifndef PD_INTERN_H
#define PD_INTERN_H

#include <stddef.h>
#include <stdint.h>

typedef struct pd_intern pd_intern_t;

#define PD_INTERN_KEY_LEN 16
#define PD_INTERN_MAX_LEN (1u << 20) /* longest string kept */

int pd_intern_create(pd_intern_t **out, const uint8_t key[PD_INTERN_KEY_LEN]);
/* Frees every string, referenced or not: destroy a store after its users. */
void pd_intern_destroy(pd_intern_t *s);

/* A reference to the store's copy of bytes[0..len) (len >= 1): the same
 * pointer for the same bytes while any reference lives. NULL: no memory,
 * or len 0 or over PD_INTERN_MAX_LEN. */
const uint8_t *pd_intern_get(pd_intern_t *s, const uint8_t *bytes, size_t len);
/* Drop one reference to p (a pd_intern_get answer); the last one frees it.
 * NULL does nothing. */
void pd_intern_put(pd_intern_t *s, const uint8_t *p);

size_t pd_intern_count(const pd_intern_t *s);   /* distinct strings kept */
size_t pd_intern_bytes(const pd_intern_t *s);   /* their bytes */
uint32_t pd_intern_refs(const pd_intern_t *s, const uint8_t *p); /* references to p */

#endif
