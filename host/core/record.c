/* record — signed node records. See record.h and docs/protocol.md §10. */
#include "record.h"

#include <string.h>

#include "err.h"

#define CTX_LEN (sizeof PD_RECORD_SIG_CONTEXT - 1)
#define SEQ_OFF (1 + PD_IDENTITY_PK_LEN + PD_NODE_ID_LEN) /* 53 */

static const char *const reason_names[PD_RECORD_R_COUNT] = {
    "none",          "record_malformed", "record_version", "record_id",
    "record_signature", "record_name",   "record_order",   "record_address",
    "record_network", "record_conflict", "record_stale",
};

const char *pd_record_reason_name(pd_record_reason_t r) {
  return (unsigned)r < PD_RECORD_R_COUNT ? reason_names[r] : "unknown";
}

static bool name_char(char c, bool first) {
  if ((c >= 'a' && c <= 'z') || (c >= '0' && c <= '9')) return true;
  return !first && (c == '.' || c == '_' || c == '-');
}

static bool name_ok_n(const char *s, size_t n) {
  if (n < 1 || n > PD_RECORD_NAME_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if (!name_char(s[i], i == 0)) return false;
  return true;
}

static bool value_ok_n(const char *s, size_t n) {
  if (n > PD_RECORD_VALUE_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] < 0x20 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

static bool network_ok_n(const char *s, size_t n) {
  if (n < 1 || n > PD_RECORD_NETWORK_MAX) return false;
  for (size_t i = 0; i < n; i++)
    if ((unsigned char)s[i] <= 0x20 || (unsigned char)s[i] > 0x7e) return false;
  return true;
}

bool pd_record_name_ok(const char *s) { return s && name_ok_n(s, strnlen(s, PD_RECORD_NAME_MAX + 1)); }

bool pd_record_value_ok(const char *s) {
  return s && value_ok_n(s, strnlen(s, PD_RECORD_VALUE_MAX + 1));
}

static bool addr_ok(const pd_netaddr_t *a) { return a && pd_netaddr_is_valid(a) && a->port != 0; }

int pd_record_init(pd_record_t *r, const char *network, uint64_t seq, const char **why) {
  if (!r || !network || !network_ok_n(network, strnlen(network, PD_RECORD_NETWORK_MAX + 1))) {
    if (why) *why = "network must be 1..32 printable characters without spaces";
    return PD_EINVAL;
  }
  memset(r, 0, sizeof *r);
  r->seq = seq;
  memcpy(r->network, network, strlen(network));
  return 0;
}

const pd_record_service_t *pd_record_service(const pd_record_t *r, const char *name) {
  if (!r || !name) return NULL;
  for (unsigned i = 0; i < r->nservices; i++)
    if (strcmp(r->services[i].name, name) == 0) return &r->services[i];
  return NULL;
}

const char *pd_record_attr(const pd_record_t *r, const char *key) {
  if (!r || !key) return NULL;
  for (unsigned i = 0; i < r->nattrs; i++)
    if (strcmp(r->attrs[i].key, key) == 0) return r->attrs[i].value;
  return NULL;
}

int pd_record_set_service(pd_record_t *r, const char *name, const pd_netaddr_t *addr,
                          const char **why) {
  if (!r || !pd_record_name_ok(name)) {
    if (why) *why = "service name must be 1..16 of [a-z0-9._-], starting with a letter or digit";
    return PD_EINVAL;
  }
  if (!addr_ok(addr)) {
    if (why) *why = "service endpoint needs an IP that is not unspecified and a port";
    return PD_EINVAL;
  }
  unsigned i = 0;
  while (i < r->nservices && strcmp(r->services[i].name, name) < 0) i++;
  if (i < r->nservices && strcmp(r->services[i].name, name) == 0) {
    r->services[i].addr = *addr;
    return 0;
  }
  if (r->nservices == PD_RECORD_MAX_SERVICES) {
    if (why) *why = "a record has at most 8 services";
    return PD_EFULL;
  }
  memmove(&r->services[i + 1], &r->services[i], (r->nservices - i) * sizeof r->services[0]);
  memset(&r->services[i], 0, sizeof r->services[i]);
  memcpy(r->services[i].name, name, strlen(name));
  r->services[i].addr = *addr;
  r->nservices++;
  return 0;
}

int pd_record_del_service(pd_record_t *r, const char *name) {
  if (!r || !name) return PD_EINVAL;
  for (unsigned i = 0; i < r->nservices; i++) {
    if (strcmp(r->services[i].name, name) != 0) continue;
    memmove(&r->services[i], &r->services[i + 1], (r->nservices - i - 1) * sizeof r->services[0]);
    r->nservices--;
    return 0;
  }
  return PD_ENOENT;
}

int pd_record_set_attr(pd_record_t *r, const char *key, const char *value, const char **why) {
  if (!r || !pd_record_name_ok(key)) {
    if (why) *why = "attribute key must be 1..16 of [a-z0-9._-], starting with a letter or digit";
    return PD_EINVAL;
  }
  unsigned i = 0;
  while (i < r->nattrs && strcmp(r->attrs[i].key, key) < 0) i++;
  bool found = i < r->nattrs && strcmp(r->attrs[i].key, key) == 0;
  if (!value) {
    if (!found) return PD_ENOENT;
    memmove(&r->attrs[i], &r->attrs[i + 1], (r->nattrs - i - 1) * sizeof r->attrs[0]);
    r->nattrs--;
    return 0;
  }
  if (!pd_record_value_ok(value)) {
    if (why) *why = "attribute value must be 0..64 printable ASCII characters";
    return PD_EINVAL;
  }
  if (!found) {
    if (r->nattrs == PD_RECORD_MAX_ATTRS) {
      if (why) *why = "a record has at most 8 attributes";
      return PD_EFULL;
    }
    memmove(&r->attrs[i + 1], &r->attrs[i], (r->nattrs - i) * sizeof r->attrs[0]);
    r->nattrs++;
  }
  memset(&r->attrs[i], 0, sizeof r->attrs[i]);
  memcpy(r->attrs[i].key, key, strlen(key));
  memcpy(r->attrs[i].value, value, strlen(value));
  return 0;
}

/* --- encoding --------------------------------------------------------------------------------- */

typedef struct wbuf {
  uint8_t *p;
  size_t n, cap;
  bool over;
} wbuf_t;

static void put(wbuf_t *w, const void *src, size_t n) {
  if (w->over || w->cap - w->n < n) {
    w->over = true;
    return;
  }
  memcpy(w->p + w->n, src, n);
  w->n += n;
}

static void put_u8(wbuf_t *w, unsigned v) {
  uint8_t b = (uint8_t)v;
  put(w, &b, 1);
}

static void put_addr(wbuf_t *w, const pd_netaddr_t *a) {
  uint8_t b[18];
  memcpy(b, a->ip, 16);
  b[16] = (uint8_t)(a->port >> 8);
  b[17] = (uint8_t)a->port;
  put(w, b, sizeof b);
}

/* The signed content (everything before the signature). */
static int encode_content(const pd_record_t *r, uint8_t *out, size_t cap, size_t *len) {
  wbuf_t w = {.p = out, .cap = cap};
  put_u8(&w, PD_RECORD_VERSION);
  put(&w, r->pubkey, sizeof r->pubkey);
  put(&w, r->id, sizeof r->id);
  uint8_t seq[8];
  for (int i = 0; i < 8; i++) seq[i] = (uint8_t)(r->seq >> (56 - 8 * i));
  put(&w, seq, 8);
  size_t nl = strlen(r->network);
  put_u8(&w, (unsigned)nl);
  put(&w, r->network, nl);
  put_u8(&w, r->has_discovery ? 1 : 0);
  if (r->has_discovery) put_addr(&w, &r->discovery);
  put_u8(&w, r->nservices);
  for (unsigned i = 0; i < r->nservices; i++) {
    size_t l = strlen(r->services[i].name);
    put_u8(&w, (unsigned)l);
    put(&w, r->services[i].name, l);
    put_addr(&w, &r->services[i].addr);
  }
  put_u8(&w, r->nattrs);
  for (unsigned i = 0; i < r->nattrs; i++) {
    size_t kl = strlen(r->attrs[i].key), vl = strlen(r->attrs[i].value);
    put_u8(&w, (unsigned)kl);
    put(&w, r->attrs[i].key, kl);
    put_u8(&w, (unsigned)vl);
    put(&w, r->attrs[i].value, vl);
  }
  if (w.over) return PD_ETOOBIG;
  *len = w.n;
  return 0;
}

/* "peerd-record-v1" || content, the message the signature covers. */
static size_t signed_message(const uint8_t *content, size_t n, uint8_t msg[CTX_LEN + PD_RECORD_MAX]) {
  memcpy(msg, PD_RECORD_SIG_CONTEXT, CTX_LEN);
  memcpy(msg + CTX_LEN, content, n);
  return CTX_LEN + n;
}

static bool content_valid(const pd_record_t *r) {
  if (!network_ok_n(r->network, strnlen(r->network, sizeof r->network))) return false;
  if (r->has_discovery && !addr_ok(&r->discovery)) return false;
  if (r->nservices > PD_RECORD_MAX_SERVICES || r->nattrs > PD_RECORD_MAX_ATTRS) return false;
  for (unsigned i = 0; i < r->nservices; i++) {
    if (!pd_record_name_ok(r->services[i].name) || !addr_ok(&r->services[i].addr)) return false;
    if (i && strcmp(r->services[i - 1].name, r->services[i].name) >= 0) return false;
  }
  for (unsigned i = 0; i < r->nattrs; i++) {
    if (!pd_record_name_ok(r->attrs[i].key) || !pd_record_value_ok(r->attrs[i].value)) return false;
    if (i && strcmp(r->attrs[i - 1].key, r->attrs[i].key) >= 0) return false;
  }
  return true;
}

int pd_record_sign(pd_record_t *r, const pd_identity_t *self, const pd_record_auth_t *auth,
                   uint8_t *out, size_t cap, size_t *len) {
  if (!r || !self || !out || !len || !content_valid(r)) return PD_EINVAL;
  memcpy(r->pubkey, self->pk, sizeof r->pubkey);
  memcpy(r->id, self->id, sizeof r->id);
  uint8_t content[PD_RECORD_MAX];
  size_t n = 0;
  if (encode_content(r, content, PD_RECORD_MAX - PD_IDENTITY_SIG_LEN, &n) < 0) return PD_ETOOBIG;
  if (cap < n + PD_IDENTITY_SIG_LEN) return PD_ETOOBIG;
  uint8_t msg[CTX_LEN + PD_RECORD_MAX];
  size_t mlen = signed_message(content, n, msg);
  int rc = auth && auth->sign ? auth->sign(auth->ud, self, msg, mlen, r->sig)
                              : pd_identity_sign(self, msg, mlen, r->sig);
  if (rc < 0) return rc;
  memcpy(out, content, n);
  memcpy(out + n, r->sig, PD_IDENTITY_SIG_LEN);
  *len = n + PD_IDENTITY_SIG_LEN;
  return 0;
}

/* --- decoding --------------------------------------------------------------------------------- */

typedef struct rbuf {
  const uint8_t *p;
  size_t n, off;
} rbuf_t;

static bool take(rbuf_t *b, void *dst, size_t n) {
  if (b->n - b->off < n) return false;
  if (dst) memcpy(dst, b->p + b->off, n);
  b->off += n;
  return true;
}

static bool take_u8(rbuf_t *b, unsigned *v) {
  uint8_t x;
  if (!take(b, &x, 1)) return false;
  *v = x;
  return true;
}

static bool take_addr(rbuf_t *b, pd_netaddr_t *a) {
  uint8_t x[18];
  if (!take(b, x, sizeof x)) return false;
  memset(a, 0, sizeof *a);
  memcpy(a->ip, x, 16);
  a->port = (uint16_t)((x[16] << 8) | x[17]);
  return true;
}

#define FAIL(reason, msg)    \
  do {                       \
    if (why) *why = (msg);   \
    return (reason);         \
  } while (0)

static pd_record_reason_t decode(const uint8_t *buf, size_t len, const char *network,
                                 const pd_record_auth_t *auth, bool verify, pd_record_t *out,
                                 const char **why) {
  if (why) *why = NULL;
  if (!buf || len < PD_RECORD_MIN) FAIL(PD_RECORD_R_MALFORMED, "record shorter than 130 bytes");
  if (len > PD_RECORD_MAX) FAIL(PD_RECORD_R_MALFORMED, "record longer than 512 bytes");
  if (buf[0] != PD_RECORD_VERSION) FAIL(PD_RECORD_R_BAD_VERSION, "record version is not 1");
  pd_record_t r;
  memset(&r, 0, sizeof r);
  rbuf_t b = {.p = buf, .n = len - PD_IDENTITY_SIG_LEN, .off = 1};
  take(&b, r.pubkey, sizeof r.pubkey);
  take(&b, r.id, sizeof r.id);
  uint8_t seq[8];
  take(&b, seq, 8);
  for (int i = 0; i < 8; i++) r.seq = (r.seq << 8) | seq[i];
  unsigned nl = 0, flags = 0, ns = 0, na = 0;
  if (!take_u8(&b, &nl) || nl < 1 || nl > PD_RECORD_NETWORK_MAX || !take(&b, r.network, nl))
    FAIL(PD_RECORD_R_MALFORMED, "record network length outside 1..32 or truncated");
  if (!network_ok_n(r.network, nl)) FAIL(PD_RECORD_R_BAD_NAME, "record network not printable");
  if (!take_u8(&b, &flags)) FAIL(PD_RECORD_R_MALFORMED, "record truncated at flags");
  if (flags & ~1u) FAIL(PD_RECORD_R_MALFORMED, "record flags has reserved bits set");
  if (flags & 1u) {
    r.has_discovery = true;
    if (!take_addr(&b, &r.discovery)) FAIL(PD_RECORD_R_MALFORMED, "record truncated in discovery endpoint");
    if (!addr_ok(&r.discovery)) FAIL(PD_RECORD_R_BAD_ADDRESS, "record discovery endpoint unspecified or port 0");
  }
  if (!take_u8(&b, &ns) || ns > PD_RECORD_MAX_SERVICES)
    FAIL(PD_RECORD_R_MALFORMED, "record service count above 8 or truncated");
  for (unsigned i = 0; i < ns; i++) {
    pd_record_service_t *s = &r.services[i];
    unsigned l = 0;
    if (!take_u8(&b, &l) || l < 1 || l > PD_RECORD_NAME_MAX || !take(&b, s->name, l) ||
        !take_addr(&b, &s->addr))
      FAIL(PD_RECORD_R_MALFORMED, "record service name length outside 1..16 or truncated");
    if (!name_ok_n(s->name, l)) FAIL(PD_RECORD_R_BAD_NAME, "record service name outside [a-z0-9._-]");
    if (!addr_ok(&s->addr)) FAIL(PD_RECORD_R_BAD_ADDRESS, "record service endpoint unspecified or port 0");
    if (i && strcmp(r.services[i - 1].name, s->name) >= 0)
      FAIL(PD_RECORD_R_UNSORTED, "record services not sorted by name or repeated");
  }
  r.nservices = (uint8_t)ns;
  if (!take_u8(&b, &na) || na > PD_RECORD_MAX_ATTRS)
    FAIL(PD_RECORD_R_MALFORMED, "record attribute count above 8 or truncated");
  for (unsigned i = 0; i < na; i++) {
    pd_record_attr_t *a = &r.attrs[i];
    unsigned kl = 0, vl = 0;
    if (!take_u8(&b, &kl) || kl < 1 || kl > PD_RECORD_NAME_MAX || !take(&b, a->key, kl) ||
        !take_u8(&b, &vl) || vl > PD_RECORD_VALUE_MAX || !take(&b, a->value, vl))
      FAIL(PD_RECORD_R_MALFORMED, "record attribute length out of range or truncated");
    if (!name_ok_n(a->key, kl)) FAIL(PD_RECORD_R_BAD_NAME, "record attribute key outside [a-z0-9._-]");
    if (!value_ok_n(a->value, vl)) FAIL(PD_RECORD_R_BAD_NAME, "record attribute value not printable ASCII");
    if (i && strcmp(r.attrs[i - 1].key, a->key) >= 0)
      FAIL(PD_RECORD_R_UNSORTED, "record attributes not sorted by key or repeated");
  }
  r.nattrs = (uint8_t)na;
  if (b.off != b.n) FAIL(PD_RECORD_R_MALFORMED, "record has bytes between its last field and the signature");
  if (!pd_identity_id_matches(r.pubkey, r.id))
    FAIL(PD_RECORD_R_BAD_ID, "record node id is not SHA-256 of its public key");
  if (network && strcmp(network, r.network) != 0)
    FAIL(PD_RECORD_R_WRONG_NETWORK, "record is for another network");
  memcpy(r.sig, buf + b.n, PD_IDENTITY_SIG_LEN);
  if (verify) {
    uint8_t msg[CTX_LEN + PD_RECORD_MAX];
    size_t mlen = signed_message(buf, b.n, msg);
    int rc = auth && auth->verify ? auth->verify(auth->ud, r.pubkey, msg, mlen, r.sig)
                                  : pd_identity_verify(r.pubkey, msg, mlen, r.sig);
    if (rc < 0) FAIL(PD_RECORD_R_BAD_SIGNATURE, "record signature does not verify");
  }
  if (out) *out = r;
  return PD_RECORD_OK;
}

pd_record_reason_t pd_record_decode(const uint8_t *buf, size_t len, const char *network,
                                    const pd_record_auth_t *auth, pd_record_t *out,
                                    const char **why) {
  return decode(buf, len, network, auth, true, out, why);
}

pd_record_reason_t pd_record_parse_trusted(const uint8_t *buf, size_t len, pd_record_t *out) {
  return decode(buf, len, NULL, NULL, false, out, NULL);
}

pd_record_reason_t pd_record_compare(const uint8_t *a, size_t alen, uint64_t aseq,
                                     const uint8_t *b, size_t blen, uint64_t bseq, bool *same) {
  bool eq = alen == blen && memcmp(a, b, alen) == 0;
  if (same) *same = eq;
  if (eq) return PD_RECORD_OK;
  if (bseq > aseq) return PD_RECORD_OK;
  if (bseq < aseq) return PD_RECORD_R_STALE;
  return PD_RECORD_R_CONFLICT;
}

uint64_t pd_record_next_seq(uint64_t prev, int64_t now_ms) {
  uint64_t next = prev == UINT64_MAX ? prev : prev + 1;
  if (now_ms > 0 && (uint64_t)now_ms > next) next = (uint64_t)now_ms;
  return next;
}

uint64_t pd_record_peek_seq(const uint8_t *buf, size_t len) {
  if (!buf || len < SEQ_OFF + 8) return 0;
  uint64_t s = 0;
  for (int i = 0; i < 8; i++) s = (s << 8) | buf[SEQ_OFF + i];
  return s;
}
