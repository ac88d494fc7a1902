/* identity — ed25519 key pair and node ID. See identity.h. */
#include "identity.h"

#include <jansson.h>
#include <sodium.h>
#include <string.h>

#include "err.h"

#define FILE_HEADER "peerd-node-key v1\n"
#define FILE_MAGIC "peerd-node-key " /* any version */

int pd_identity_from_seed(pd_identity_t *id, const uint8_t seed[PD_IDENTITY_SEED_LEN]) {
  if (!id || !seed) return PD_EINVAL;
  if (crypto_sign_seed_keypair(id->pk, id->sk, seed) != 0) return PD_EINVAL;
  pd_identity_node_id(id->pk, id->id);
  return 0;
}

void pd_identity_wipe(pd_identity_t *id) {
  if (id) sodium_memzero(id, sizeof *id);
}

void pd_identity_node_id(const uint8_t pk[PD_IDENTITY_PK_LEN], uint8_t out[PD_IDENTITY_ID_LEN]) {
  uint8_t h[crypto_hash_sha256_BYTES];
  crypto_hash_sha256(h, pk, PD_IDENTITY_PK_LEN);
  memcpy(out, h, PD_IDENTITY_ID_LEN);
}

bool pd_identity_id_matches(const uint8_t pk[PD_IDENTITY_PK_LEN],
                            const uint8_t id[PD_IDENTITY_ID_LEN]) {
  uint8_t want[PD_IDENTITY_ID_LEN];
  pd_identity_node_id(pk, want);
  return memcmp(want, id, PD_IDENTITY_ID_LEN) == 0;
}

int pd_identity_sign(const pd_identity_t *id, const uint8_t *msg, size_t len,
                     uint8_t sig[PD_IDENTITY_SIG_LEN]) {
  if (!id || !sig || (!msg && len)) return PD_EINVAL;
  if (crypto_sign_detached(sig, NULL, msg, len, id->sk) != 0) return PD_EINVAL;
  return 0;
}

int pd_identity_verify(const uint8_t pk[PD_IDENTITY_PK_LEN], const uint8_t *msg, size_t len,
                       const uint8_t sig[PD_IDENTITY_SIG_LEN]) {
  if (!pk || !sig || (!msg && len)) return PD_EINVAL;
  return crypto_sign_verify_detached(sig, msg, len, pk) == 0 ? 0 : PD_EINVAL;
}

/* --- key file ------------------------------------------------------------ */
static void hex_put(char *dst, const uint8_t *src, size_t n) {
  static const char digits[] = "0123456789abcdef";
  for (size_t i = 0; i < n; i++) {
    dst[2 * i] = digits[src[i] >> 4];
    dst[2 * i + 1] = digits[src[i] & 15];
  }
}

static int hex_val(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

/* Exactly 2n hex characters into n bytes. */
static bool hex_get(uint8_t *dst, const char *src, size_t n) {
  for (size_t i = 0; i < n; i++) {
    int hi = hex_val(src[2 * i]), lo = hex_val(src[2 * i + 1]);
    if (hi < 0 || lo < 0) return false;
    dst[i] = (uint8_t)(hi << 4 | lo);
  }
  return true;
}

int pd_identity_encode(const pd_identity_t *id, char *buf, size_t cap, size_t *len) {
  if (!id || !buf) return PD_EINVAL;
  if (cap < PD_IDENTITY_FILE_LEN + 1) return PD_ETOOBIG;
  char *p = buf;
  memcpy(p, FILE_HEADER, 18);
  p += 18;
  memcpy(p, "seed ", 5);
  p += 5;
  hex_put(p, id->sk, PD_IDENTITY_SEED_LEN); /* the seed is sk[0..32) */
  p += 2 * PD_IDENTITY_SEED_LEN;
  *p++ = '\n';
  memcpy(p, "id ", 3);
  p += 3;
  hex_put(p, id->id, PD_IDENTITY_ID_LEN);
  p += 2 * PD_IDENTITY_ID_LEN;
  *p++ = '\n';
  *p = 0;
  if (len) *len = (size_t)(p - buf);
  return 0;
}

static int fail(const char **why, const char *msg, int code) {
  if (why) *why = msg;
  return code;
}

/* Matches a line "<key><2n hex>" at text[*off], followed by "\n" or the end
 * of the input when last. */
static bool take_line(const char *text, size_t len, size_t *off, const char *key, uint8_t *dst,
                      size_t n, bool last) {
  size_t klen = strlen(key), need = klen + 2 * n;
  if (len - *off < need) return false;
  if (memcmp(text + *off, key, klen) != 0) return false;
  if (!hex_get(dst, text + *off + klen, n)) return false;
  *off += need;
  if (*off < len && text[*off] == '\n') {
    (*off)++;
    return true;
  }
  return last && *off == len;
}

int pd_identity_decode(const char *text, size_t len, pd_identity_t *out, const char **why) {
  if (!text || !out) return fail(why, "no input", PD_EINVAL);
  if (len > PD_IDENTITY_FILE_MAX) return fail(why, "key file too long", PD_ETOOBIG);
  size_t hl = sizeof FILE_HEADER - 1, ml = sizeof FILE_MAGIC - 1;
  if (len < ml || memcmp(text, FILE_MAGIC, ml) != 0)
    return fail(why, "not a peerd node key file", PD_EFORMAT);
  if (len < hl || memcmp(text, FILE_HEADER, hl) != 0)
    return fail(why, "unsupported node key file version", PD_EFORMAT);
  size_t off = hl;
  uint8_t seed[PD_IDENTITY_SEED_LEN], idb[PD_IDENTITY_ID_LEN];
  if (!take_line(text, len, &off, "seed ", seed, sizeof seed, false)) {
    sodium_memzero(seed, sizeof seed);
    return fail(why, "bad seed line: expected 'seed ' and 64 hex characters", PD_ECORRUPT);
  }
  if (!take_line(text, len, &off, "id ", idb, sizeof idb, true)) {
    sodium_memzero(seed, sizeof seed);
    return fail(why, "bad id line: expected 'id ' and 40 hex characters", PD_ECORRUPT);
  }
  if (off != len) {
    sodium_memzero(seed, sizeof seed);
    return fail(why, "junk after the id line", PD_ECORRUPT);
  }
  pd_identity_t tmp;
  int rc = pd_identity_from_seed(&tmp, seed);
  sodium_memzero(seed, sizeof seed);
  if (rc) return fail(why, "seed rejected", PD_ECORRUPT);
  if (memcmp(tmp.id, idb, PD_IDENTITY_ID_LEN) != 0) {
    pd_identity_wipe(&tmp);
    return fail(why, "id line does not match the seed", PD_ECORRUPT);
  }
  *out = tmp;
  pd_identity_wipe(&tmp);
  return 0;
}

int pd_identity_decode_cometbft(const char *text, size_t len, pd_identity_t *out,
                                const char **why) {
  const char *w = NULL;
  int rc = 0;
  if (!text || !out) {
    w = "missing argument";
    rc = PD_EINVAL;
    goto done;
  }
  if (len > PD_IDENTITY_FILE_MAX) {
    w = "key file longer than 512 bytes";
    rc = PD_ETOOBIG;
    goto done;
  }
  json_error_t jerr;
  json_t *doc = json_loadb(text, len, JSON_REJECT_DUPLICATES, &jerr);
  if (!doc) {
    w = "not a JSON document";
    rc = PD_EFORMAT;
    goto done;
  }
  json_t *pk = json_object_get(doc, "priv_key");
  const char *type = json_string_value(json_object_get(pk, "type"));
  const char *value = json_string_value(json_object_get(pk, "value"));
  if (!type || strcmp(type, "tendermint/PrivKeyEd25519") != 0) {
    w = "priv_key.type is not tendermint/PrivKeyEd25519";
    rc = PD_EFORMAT;
  } else if (!value) {
    w = "priv_key.value is missing or not a string";
    rc = PD_ECORRUPT;
  } else {
    uint8_t raw[PD_IDENTITY_SK_LEN + 1];
    size_t n = 0;
    if (sodium_base642bin(raw, sizeof raw, value, strlen(value), NULL, &n, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        n != PD_IDENTITY_SK_LEN) {
      w = "priv_key.value is not base64 of 64 bytes";
      rc = PD_ECORRUPT;
    } else {
      pd_identity_t tmp;
      rc = pd_identity_from_seed(&tmp, raw);
      if (rc == 0 && sodium_memcmp(tmp.pk, raw + 32, PD_IDENTITY_PK_LEN) != 0) {
        w = "priv_key.value: the public key is not the seed's";
        rc = PD_ECORRUPT;
      }
      if (rc == 0) *out = tmp;
      pd_identity_wipe(&tmp);
    }
    sodium_memzero(raw, sizeof raw);
  }
  json_decref(doc);
done:
  if (why) *why = w;
  return rc;
}

int pd_identity_decode_any(const char *text, size_t len, pd_identity_t *out, const char **why) {
  size_t i = 0;
  while (text && i < len && (text[i] == ' ' || text[i] == '\t' || text[i] == '\n' || text[i] == '\r')) i++;
  if (text && i < len && text[i] == '{') return pd_identity_decode_cometbft(text, len, out, why);
  return pd_identity_decode(text, len, out, why);
}
