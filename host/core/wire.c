/* wire — frame codec. See wire.h and docs/protocol.md. */
#include "wire.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

/* --- names -------------------------------------------------------------- */
static const char *const reason_names[PD_WIRE_R_COUNT] = {
    [PD_WIRE_R_NONE] = "none",
    [PD_WIRE_R_BAD_MAGIC] = "bad_magic",
    [PD_WIRE_R_UNKNOWN_TYPE] = "unknown_type",
    [PD_WIRE_R_BAD_FLAGS] = "bad_flags",
    [PD_WIRE_R_OVERSIZED] = "oversized",
    [PD_WIRE_R_BAD_LENGTH] = "bad_length",
    [PD_WIRE_R_TRUNCATED] = "truncated",
    [PD_WIRE_R_BAD_ADDRESS] = "bad_address",
    [PD_WIRE_R_TOO_MANY_ADDRESSES] = "too_many_addresses",
    [PD_WIRE_R_BAD_VERSION] = "bad_version",
    [PD_WIRE_R_BAD_TEXT] = "bad_text",
    [PD_WIRE_R_BAD_FIELD] = "bad_field",
    [PD_WIRE_R_NO_MEMORY] = "no_memory",
    [PD_WIRE_R_BAD_MAC] = "bad_mac",
    [PD_WIRE_R_NOT_SEALED] = "not_sealed",
};

const char *pd_wire_reason_name(pd_wire_reason_t r) {
  if ((unsigned)r >= PD_WIRE_R_COUNT) return "invalid";
  return reason_names[r];
}

static const char *const type_names[PD_WIRE_TYPE_COUNT] = {
    [0] = "unknown",
    [PD_WIRE_HELLO] = "hello",
    [PD_WIRE_HELLO_ACK] = "hello_ack",
    [PD_WIRE_PING] = "ping",
    [PD_WIRE_PONG] = "pong",
    [PD_WIRE_GETADDR] = "getaddr",
    [PD_WIRE_ADDR] = "addr",
    [PD_WIRE_GOODBYE] = "goodbye",
    [PD_WIRE_KEYX] = "keyx",
    [PD_WIRE_SEALED] = "sealed",
};

const char *pd_wire_type_name(unsigned type) {
  if (type >= PD_WIRE_TYPE_COUNT) return "unknown";
  return type_names[type];
}

static const char *const bye_names[] = {
    [PD_WIRE_BYE_NORMAL] = "normal",
    [PD_WIRE_BYE_PROTOCOL] = "protocol_error",
    [PD_WIRE_BYE_NETWORK] = "wrong_network",
    [PD_WIRE_BYE_VERSION] = "incompatible_version",
    [PD_WIRE_BYE_SELF] = "self_connection",
    [PD_WIRE_BYE_ID_MISMATCH] = "id_mismatch",
    [PD_WIRE_BYE_AUTH] = "auth_failed",
    [PD_WIRE_BYE_TOO_MANY] = "too_many_peers",
    [PD_WIRE_BYE_BANNED] = "banned",
    [PD_WIRE_BYE_DUPLICATE] = "duplicate",
    [PD_WIRE_BYE_TIMEOUT] = "timeout",
    [PD_WIRE_BYE_MISBEHAVIOUR] = "misbehaviour",
    [PD_WIRE_BYE_SEED_DONE] = "seed_done",
};

const char *pd_wire_bye_name(unsigned code) {
  if (code >= sizeof bye_names / sizeof bye_names[0]) return "unknown";
  return bye_names[code];
}

/* Payload bounds per type; min > max marks an unknown type. */
static const struct {
  uint32_t min, max;
} bounds[PD_WIRE_TYPE_COUNT] = {
    [0] = {1, 0},
    [PD_WIRE_HELLO] = {PD_WIRE_HELLO_MIN, PD_WIRE_HELLO_MAX},
    [PD_WIRE_HELLO_ACK] = {PD_WIRE_SIG_LEN, PD_WIRE_SIG_LEN},
    [PD_WIRE_PING] = {8, 8},
    [PD_WIRE_PONG] = {8, 8},
    [PD_WIRE_GETADDR] = {0, 0},
    [PD_WIRE_ADDR] = {2, PD_WIRE_ADDR_MAX_PAYLOAD},
    [PD_WIRE_GOODBYE] = {3, 3 + PD_WIRE_TEXT_MAX},
    [PD_WIRE_KEYX] = {PD_WIRE_KEYX_LEN, PD_WIRE_KEYX_LEN},
    [PD_WIRE_SEALED] = {PD_WIRE_SEALED_MIN, PD_WIRE_MAX_PAYLOAD},
};

static bool type_known(unsigned type) {
  return type < PD_WIRE_TYPE_COUNT && bounds[type].min <= bounds[type].max;
}

/* --- byte order --------------------------------------------------------- */
static uint16_t rd16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }
static uint32_t rd32(const uint8_t *p) {
  return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}
static uint64_t rd64(const uint8_t *p) { return (uint64_t)rd32(p) << 32 | rd32(p + 4); }

/* --- validation shared by encoder and decoder --------------------------- */
static bool addr_ok(const pd_netaddr_t *a) { return a->port != 0 && pd_netaddr_is_valid(a); }

/* Printable ASCII; with no_space, 0x21..0x7E. */
static bool text_ok(const uint8_t *s, size_t n, bool no_space) {
  uint8_t lo = no_space ? 0x21 : 0x20;
  for (size_t i = 0; i < n; i++)
    if (s[i] < lo || s[i] > 0x7E) return false;
  return true;
}

/* --- decoding payloads -------------------------------------------------- */
typedef struct {
  const uint8_t *p;
  size_t len, off;
} cursor_t;

static const uint8_t *take(cursor_t *c, size_t n) {
  if (c->len - c->off < n) return NULL;
  const uint8_t *r = c->p + c->off;
  c->off += n;
  return r;
}

static pd_wire_reason_t read_addr(const uint8_t *p, pd_netaddr_t *a) {
  memcpy(a->ip, p, 16);
  a->port = rd16(p + 16);
  return addr_ok(a) ? PD_WIRE_R_NONE : PD_WIRE_R_BAD_ADDRESS;
}

static pd_wire_reason_t parse_hello(cursor_t *c, pd_wire_hello_t *h) {
  const uint8_t *p = take(c, 97); /* bounds guarantee it */
  if (!p) return PD_WIRE_R_TRUNCATED;
  h->max_version = rd16(p);
  h->min_version = rd16(p + 2);
  if (h->min_version == 0 || h->min_version > h->max_version) return PD_WIRE_R_BAD_VERSION;
  memcpy(h->node_id, p + 4, PD_NODE_ID_LEN);
  memcpy(h->pubkey, p + 24, PD_WIRE_PUBKEY_LEN);
  memcpy(h->challenge, p + 56, PD_WIRE_CHALLENGE_LEN);
  uint64_t ts = rd64(p + 88);
  if (ts > (uint64_t)INT64_MAX) return PD_WIRE_R_BAD_FIELD;
  h->timestamp = (int64_t)ts;
  if (p[96] > 1) return PD_WIRE_R_BAD_FIELD;
  h->has_listen = p[96] == 1;
  memset(&h->listen, 0, sizeof h->listen);
  if (h->has_listen) {
    const uint8_t *a = take(c, 18);
    if (!a) return PD_WIRE_R_TRUNCATED;
    pd_wire_reason_t r = read_addr(a, &h->listen);
    if (r) return r;
  }
  const uint8_t *n = take(c, 1);
  if (!n) return PD_WIRE_R_TRUNCATED;
  if (*n == 0 || *n > PD_WIRE_NETWORK_MAX) return PD_WIRE_R_BAD_TEXT;
  h->network_len = *n;
  const uint8_t *s = take(c, h->network_len);
  if (!s) return PD_WIRE_R_TRUNCATED;
  if (!text_ok(s, h->network_len, true)) return PD_WIRE_R_BAD_TEXT;
  memcpy(h->network, s, h->network_len);
  h->network[h->network_len] = 0;
  n = take(c, 1);
  if (!n) return PD_WIRE_R_TRUNCATED;
  if (*n > PD_WIRE_AGENT_MAX) return PD_WIRE_R_BAD_TEXT;
  h->agent_len = *n;
  s = take(c, h->agent_len);
  if (!s) return PD_WIRE_R_TRUNCATED;
  if (!text_ok(s, h->agent_len, false)) return PD_WIRE_R_BAD_TEXT;
  memcpy(h->agent, s, h->agent_len);
  h->agent[h->agent_len] = 0;
  /* v2 extension: u16 record_len, record, u8 has_observed, [observed]. A
   * HELLO without it (v1) has neither; bytes after it are a later
   * version's, ignored. */
  h->record_len = 0;
  h->record = NULL;
  h->has_observed = false;
  memset(&h->observed, 0, sizeof h->observed);
  if (c->off < c->len) {
    const uint8_t *l = take(c, 2);
    if (!l) return PD_WIRE_R_TRUNCATED;
    uint16_t rl = rd16(l);
    if (rl > PD_WIRE_RECORD_MAX) return PD_WIRE_R_BAD_FIELD;
    const uint8_t *rec = take(c, rl);
    if (!rec) return PD_WIRE_R_TRUNCATED;
    h->record_len = rl;
    h->record = rl ? rec : NULL;
    const uint8_t *o = take(c, 1);
    if (!o) return PD_WIRE_R_TRUNCATED;
    if (*o > 1) return PD_WIRE_R_BAD_FIELD;
    if (*o == 1) {
      const uint8_t *a = take(c, 18);
      if (!a) return PD_WIRE_R_TRUNCATED;
      pd_wire_reason_t r = read_addr(a, &h->observed);
      if (r) return r;
      h->has_observed = true;
    }
  }
  c->off = c->len; /* later extensions are ignored */
  return PD_WIRE_R_NONE;
}

static pd_wire_reason_t parse_addr(cursor_t *c, pd_wire_msg_t *m) {
  const uint8_t *p = take(c, 2);
  if (!p) return PD_WIRE_R_TRUNCATED;
  uint16_t count = rd16(p);
  if (count > PD_WIRE_MAX_ADDRS) return PD_WIRE_R_TOO_MANY_ADDRESSES;
  m->addr.count = 0;
  for (uint16_t i = 0; i < count; i++) {
    const uint8_t *f = take(c, 1);
    if (!f) return PD_WIRE_R_TRUNCATED;
    if (*f & ~3u) return PD_WIRE_R_BAD_FIELD;
    bool has_id = *f & 1u, has_rec = *f & 2u;
    if (has_rec && !has_id) return PD_WIRE_R_BAD_FIELD; /* a record names its node */
    const uint8_t *e = take(c, has_id ? PD_WIRE_ADDR_ENTRY_MAX - 1 : PD_WIRE_ADDR_ENTRY_MIN - 1);
    if (!e) return PD_WIRE_R_TRUNCATED;
    pd_wire_addr_entry_t *out = &m->addr.entries[i];
    pd_wire_reason_t r = read_addr(e, &out->addr);
    if (r) return r;
    uint64_t ts = rd64(e + 18);
    if (ts > (uint64_t)INT64_MAX) return PD_WIRE_R_BAD_FIELD;
    out->timestamp = (int64_t)ts;
    out->has_id = has_id;
    if (has_id)
      memcpy(out->id, e + 26, PD_NODE_ID_LEN);
    else
      memset(out->id, 0, PD_NODE_ID_LEN);
    out->record_len = 0;
    out->record = NULL;
    if (has_rec) {
      const uint8_t *l = take(c, 2);
      if (!l) return PD_WIRE_R_TRUNCATED;
      uint16_t rl = rd16(l);
      if (rl == 0 || rl > PD_WIRE_RECORD_MAX) return PD_WIRE_R_BAD_FIELD;
      const uint8_t *rec = take(c, rl);
      if (!rec) return PD_WIRE_R_TRUNCATED;
      out->record_len = rl;
      out->record = rec;
    }
  }
  m->addr.count = count;
  return PD_WIRE_R_NONE;
}

static pd_wire_reason_t parse_bye(cursor_t *c, pd_wire_msg_t *m) {
  const uint8_t *p = take(c, 3); /* bounds guarantee it */
  if (!p) return PD_WIRE_R_TRUNCATED;
  m->bye.code = rd16(p);
  if (p[2] > PD_WIRE_TEXT_MAX) return PD_WIRE_R_BAD_TEXT;
  m->bye.text_len = p[2];
  const uint8_t *s = take(c, m->bye.text_len);
  if (!s) return PD_WIRE_R_TRUNCATED;
  if (!text_ok(s, m->bye.text_len, false)) return PD_WIRE_R_BAD_TEXT;
  memcpy(m->bye.text, s, m->bye.text_len);
  m->bye.text[m->bye.text_len] = 0;
  return PD_WIRE_R_NONE;
}

pd_wire_reason_t pd_wire_parse_payload(unsigned type, const uint8_t *p, size_t len,
                                       pd_wire_msg_t *out) {
  if (!type_known(type)) return PD_WIRE_R_UNKNOWN_TYPE;
  if (len > PD_WIRE_MAX_PAYLOAD) return PD_WIRE_R_OVERSIZED;
  if (len < bounds[type].min || len > bounds[type].max) return PD_WIRE_R_BAD_LENGTH;
  cursor_t c = {p, len, 0};
  pd_wire_reason_t r = PD_WIRE_R_NONE;
  out->type = (uint8_t)type;
  switch (type) {
  case PD_WIRE_HELLO: r = parse_hello(&c, &out->hello); break;
  case PD_WIRE_HELLO_ACK:
    memcpy(out->ack.sig, p, PD_WIRE_SIG_LEN);
    c.off = PD_WIRE_SIG_LEN;
    break;
  case PD_WIRE_PING:
  case PD_WIRE_PONG:
    out->nonce = rd64(p);
    c.off = 8;
    break;
  case PD_WIRE_GETADDR: break;
  case PD_WIRE_ADDR: r = parse_addr(&c, out); break;
  case PD_WIRE_GOODBYE: r = parse_bye(&c, out); break;
  case PD_WIRE_KEYX:
    memcpy(out->keyx.pk, p, PD_WIRE_KEYX_LEN);
    c.off = PD_WIRE_KEYX_LEN;
    break;
  case PD_WIRE_SEALED: /* opaque here: the session cipher opens it (seal.h) */
    out->sealed.hdr = NULL;
    out->sealed.data = p;
    out->sealed.len = len;
    c.off = len;
    break;
  default: return PD_WIRE_R_UNKNOWN_TYPE;
  }
  if (r) return r;
  if (c.off != c.len) return PD_WIRE_R_BAD_LENGTH; /* trailing bytes */
  return PD_WIRE_R_NONE;
}

/* --- encoding ----------------------------------------------------------- */
/* Writer that counts past the end of the buffer, so the same code measures. */
typedef struct {
  uint8_t *buf;
  size_t cap, off;
} writer_t;

static void put(writer_t *w, const void *src, size_t n) {
  if (w->buf && n <= w->cap && w->off <= w->cap - n) memcpy(w->buf + w->off, src, n);
  w->off += n;
}
static void put8(writer_t *w, uint8_t v) { put(w, &v, 1); }
static void put16(writer_t *w, uint16_t v) {
  uint8_t b[2] = {(uint8_t)(v >> 8), (uint8_t)v};
  put(w, b, 2);
}
static void put32(writer_t *w, uint32_t v) {
  uint8_t b[4] = {(uint8_t)(v >> 24), (uint8_t)(v >> 16), (uint8_t)(v >> 8), (uint8_t)v};
  put(w, b, 4);
}
static void put64(writer_t *w, uint64_t v) {
  put32(w, (uint32_t)(v >> 32));
  put32(w, (uint32_t)v);
}
static void put_addr(writer_t *w, const pd_netaddr_t *a) {
  put(w, a->ip, 16);
  put16(w, a->port);
}

static void begin(writer_t *w, const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t type) {
  put(w, magic, PD_WIRE_MAGIC_LEN);
  put8(w, type);
  put8(w, 0);   /* flags */
  put32(w, 0);  /* length, patched by finish() */
}

static int finish(writer_t *w, size_t *len) {
  size_t payload = w->off - PD_WIRE_HEADER_LEN;
  if (w->off > w->cap || !w->buf) {
    if (len) *len = w->off;
    return PD_ETOOBIG;
  }
  w->buf[6] = (uint8_t)(payload >> 24);
  w->buf[7] = (uint8_t)(payload >> 16);
  w->buf[8] = (uint8_t)(payload >> 8);
  w->buf[9] = (uint8_t)payload;
  if (len) *len = w->off;
  return 0;
}

static bool hello_ok(const pd_wire_hello_t *h, size_t *nlen, size_t *alen) {
  *nlen = strnlen(h->network, PD_WIRE_NETWORK_MAX + 1);
  *alen = strnlen(h->agent, PD_WIRE_AGENT_MAX + 1);
  if (h->min_version == 0 || h->min_version > h->max_version) return false;
  if (h->timestamp < 0) return false;
  if (h->has_listen && !addr_ok(&h->listen)) return false;
  if (*nlen == 0 || *nlen > PD_WIRE_NETWORK_MAX) return false;
  if (!text_ok((const uint8_t *)h->network, *nlen, true)) return false;
  if (*alen > PD_WIRE_AGENT_MAX) return false;
  if (h->record_len > PD_WIRE_RECORD_MAX || (h->record_len && !h->record)) return false;
  if (h->has_observed && !addr_ok(&h->observed)) return false;
  return text_ok((const uint8_t *)h->agent, *alen, false);
}

int pd_wire_encode_hello(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_hello_t *h,
                         uint8_t *buf, size_t cap, size_t *len) {
  size_t nlen, alen;
  if (!hello_ok(h, &nlen, &alen)) return PD_EINVAL;
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_HELLO);
  put16(&w, h->max_version);
  put16(&w, h->min_version);
  put(&w, h->node_id, PD_NODE_ID_LEN);
  put(&w, h->pubkey, PD_WIRE_PUBKEY_LEN);
  put(&w, h->challenge, PD_WIRE_CHALLENGE_LEN);
  put64(&w, (uint64_t)h->timestamp);
  put8(&w, h->has_listen ? 1 : 0);
  if (h->has_listen) put_addr(&w, &h->listen);
  put8(&w, (uint8_t)nlen);
  put(&w, h->network, nlen);
  put8(&w, (uint8_t)alen);
  put(&w, h->agent, alen);
  if (h->record_len || h->has_observed) { /* the v2 extension, when there is one */
    put16(&w, h->record_len);
    if (h->record_len) put(&w, h->record, h->record_len);
    put8(&w, h->has_observed ? 1 : 0);
    if (h->has_observed) put_addr(&w, &h->observed);
  }
  return finish(&w, len);
}

int pd_wire_encode_ack(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t sig[PD_WIRE_SIG_LEN],
                       uint8_t *buf, size_t cap, size_t *len) {
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_HELLO_ACK);
  put(&w, sig, PD_WIRE_SIG_LEN);
  return finish(&w, len);
}

static int encode_nonce(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t type, uint64_t nonce,
                        uint8_t *buf, size_t cap, size_t *len) {
  writer_t w = {buf, cap, 0};
  begin(&w, magic, type);
  put64(&w, nonce);
  return finish(&w, len);
}

int pd_wire_encode_ping(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint64_t nonce, uint8_t *buf,
                        size_t cap, size_t *len) {
  return encode_nonce(magic, PD_WIRE_PING, nonce, buf, cap, len);
}

int pd_wire_encode_pong(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint64_t nonce, uint8_t *buf,
                        size_t cap, size_t *len) {
  return encode_nonce(magic, PD_WIRE_PONG, nonce, buf, cap, len);
}

int pd_wire_encode_getaddr(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t *buf, size_t cap,
                           size_t *len) {
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_GETADDR);
  return finish(&w, len);
}

int pd_wire_encode_addr(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_addr_entry_t *entries,
                        size_t count, uint8_t *buf, size_t cap, size_t *len) {
  if (count > PD_WIRE_MAX_ADDRS || (count && !entries)) return PD_EINVAL;
  for (size_t i = 0; i < count; i++) {
    const pd_wire_addr_entry_t *e = &entries[i];
    if (!addr_ok(&e->addr) || e->timestamp < 0) return PD_EINVAL;
    if (e->record_len && (!e->has_id || !e->record || e->record_len > PD_WIRE_RECORD_MAX))
      return PD_EINVAL;
  }
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_ADDR);
  put16(&w, (uint16_t)count);
  for (size_t i = 0; i < count; i++) {
    const pd_wire_addr_entry_t *e = &entries[i];
    put8(&w, (uint8_t)((e->has_id ? 1 : 0) | (e->record_len ? 2 : 0)));
    put_addr(&w, &e->addr);
    put64(&w, (uint64_t)e->timestamp);
    if (e->has_id) put(&w, e->id, PD_NODE_ID_LEN);
    if (e->record_len) {
      put16(&w, e->record_len);
      put(&w, e->record, e->record_len);
    }
  }
  if (w.off - PD_WIRE_HEADER_LEN > PD_WIRE_MAX_MSG_PAYLOAD) return PD_ETOOBIG; /* too many records */
  return finish(&w, len);
}

int pd_wire_encode_keyx(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t pk[PD_WIRE_KEYX_LEN],
                        uint8_t *buf, size_t cap, size_t *len) {
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_KEYX);
  put(&w, pk, PD_WIRE_KEYX_LEN);
  return finish(&w, len);
}

void pd_wire_write_header(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint8_t type, uint32_t payload_len,
                          uint8_t hdr[PD_WIRE_HEADER_LEN]) {
  writer_t w = {hdr, PD_WIRE_HEADER_LEN, 0};
  put(&w, magic, PD_WIRE_MAGIC_LEN);
  put8(&w, type);
  put8(&w, 0);
  put32(&w, payload_len);
}

int pd_wire_encode_goodbye(const uint8_t magic[PD_WIRE_MAGIC_LEN], uint16_t code, const char *text,
                           uint8_t *buf, size_t cap, size_t *len) {
  size_t tlen = text ? strnlen(text, PD_WIRE_TEXT_MAX + 1) : 0;
  if (tlen > PD_WIRE_TEXT_MAX || !text_ok((const uint8_t *)text, tlen, false)) return PD_EINVAL;
  writer_t w = {buf, cap, 0};
  begin(&w, magic, PD_WIRE_GOODBYE);
  put16(&w, code);
  put8(&w, (uint8_t)tlen);
  if (tlen) put(&w, text, tlen);
  return finish(&w, len);
}

int pd_wire_encode(const uint8_t magic[PD_WIRE_MAGIC_LEN], const pd_wire_msg_t *msg, uint8_t *buf,
                   size_t cap, size_t *len) {
  switch (msg->type) {
  case PD_WIRE_HELLO: return pd_wire_encode_hello(magic, &msg->hello, buf, cap, len);
  case PD_WIRE_HELLO_ACK: return pd_wire_encode_ack(magic, msg->ack.sig, buf, cap, len);
  case PD_WIRE_PING: return pd_wire_encode_ping(magic, msg->nonce, buf, cap, len);
  case PD_WIRE_PONG: return pd_wire_encode_pong(magic, msg->nonce, buf, cap, len);
  case PD_WIRE_GETADDR: return pd_wire_encode_getaddr(magic, buf, cap, len);
  case PD_WIRE_ADDR:
    return pd_wire_encode_addr(magic, msg->addr.entries, msg->addr.count, buf, cap, len);
  case PD_WIRE_GOODBYE: /* text is NUL-terminated within its array or rejected */
    return pd_wire_encode_goodbye(magic, msg->bye.code, msg->bye.text, buf, cap, len);
  case PD_WIRE_KEYX: return pd_wire_encode_keyx(magic, msg->keyx.pk, buf, cap, len);
  default: return PD_EINVAL; /* SEALED frames are made by the session cipher */
  }
}

size_t pd_wire_encoded_size(const pd_wire_msg_t *msg) {
  static const uint8_t zero[PD_WIRE_MAGIC_LEN] = {0};
  size_t n = 0;
  int rc = pd_wire_encode(zero, msg, NULL, 0, &n);
  return rc == PD_ETOOBIG ? n : 0;
}

/* --- incremental decoder ------------------------------------------------ */
void pd_wire_decoder_init(pd_wire_decoder_t *d, const uint8_t magic[PD_WIRE_MAGIC_LEN]) {
  memset(d, 0, sizeof *d);
  memcpy(d->magic, magic, PD_WIRE_MAGIC_LEN);
}

void pd_wire_decoder_free(pd_wire_decoder_t *d) {
  free(d->buf);
  d->buf = NULL;
  d->cap = 0;
}

pd_wire_reason_t pd_wire_decoder_reason(const pd_wire_decoder_t *d) { return d->err; }

bool pd_wire_decoder_mid_frame(const pd_wire_decoder_t *d) {
  return d->err == PD_WIRE_R_NONE && d->hdr_have > 0;
}

/* Checks a complete header in the documented order. */
static pd_wire_reason_t check_header(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t *h,
                                     size_t *need) {
  if (memcmp(h, magic, PD_WIRE_MAGIC_LEN) != 0) return PD_WIRE_R_BAD_MAGIC;
  unsigned type = h[4];
  if (!type_known(type)) return PD_WIRE_R_UNKNOWN_TYPE;
  if (h[5] != 0) return PD_WIRE_R_BAD_FLAGS;
  uint32_t n = rd32(h + 6);
  if (n > PD_WIRE_MAX_PAYLOAD) return PD_WIRE_R_OVERSIZED;
  if (n < bounds[type].min || n > bounds[type].max) return PD_WIRE_R_BAD_LENGTH;
  *need = n;
  return PD_WIRE_R_NONE;
}

pd_wire_reason_t pd_wire_decode_frame(const uint8_t magic[PD_WIRE_MAGIC_LEN], const uint8_t *buf,
                                      size_t len, pd_wire_msg_t *out) {
  if (len < PD_WIRE_HEADER_LEN) return PD_WIRE_R_TRUNCATED;
  size_t need = 0;
  pd_wire_reason_t r = check_header(magic, buf, &need);
  if (r) return r;
  if (need != len - PD_WIRE_HEADER_LEN)
    return need > len - PD_WIRE_HEADER_LEN ? PD_WIRE_R_TRUNCATED : PD_WIRE_R_BAD_LENGTH;
  r = pd_wire_parse_payload(buf[4], buf + PD_WIRE_HEADER_LEN, need, out);
  if (!r && out->type == PD_WIRE_SEALED) out->sealed.hdr = buf;
  return r;
}

static int fail(pd_wire_decoder_t *d, pd_wire_reason_t r, size_t used, size_t *consumed) {
  d->err = r;
  d->bytes += used;
  *consumed = used;
  return r == PD_WIRE_R_NO_MEMORY ? PD_ENOMEM : PD_EINVAL;
}

static int deliver(pd_wire_decoder_t *d, const uint8_t *payload, size_t used, size_t *consumed,
                   pd_wire_msg_t *msg) {
  pd_wire_reason_t r = pd_wire_parse_payload(d->hdr[4], payload, d->need, msg);
  if (r) return fail(d, r, used, consumed);
  if (msg->type == PD_WIRE_SEALED) msg->sealed.hdr = d->hdr; /* valid until the next feed */
  d->hdr_have = 0;
  d->have = 0;
  d->need = 0;
  d->frames++;
  d->bytes += used;
  *consumed = used;
  return PD_WIRE_MESSAGE;
}

int pd_wire_decoder_feed(pd_wire_decoder_t *d, const uint8_t *data, size_t len, size_t *consumed,
                         pd_wire_msg_t *msg) {
  size_t off = 0;
  *consumed = 0;
  if (d->err) return d->err == PD_WIRE_R_NO_MEMORY ? PD_ENOMEM : PD_EINVAL;
  /* Between frames a buffer grown for one big split frame is not kept: an
   * ADDR answer arrives about once per connection, and the daemon holds
   * hundreds of connections (the lab thousands of hosts). */
  if (d->hdr_have == 0 && d->cap > 4096) {
    free(d->buf);
    d->buf = NULL;
    d->cap = 0;
  }

  /* Header: gather byte by byte, rejecting a bad magic byte at once. */
  if (d->hdr_have < PD_WIRE_HEADER_LEN) {
    if (d->hdr_have == 0 && len >= PD_WIRE_HEADER_LEN) {
      /* Fast path: whole header in this chunk. */
      memcpy(d->hdr, data, PD_WIRE_HEADER_LEN);
      for (size_t i = 0; i < PD_WIRE_MAGIC_LEN; i++)
        if (data[i] != d->magic[i]) return fail(d, PD_WIRE_R_BAD_MAGIC, i + 1, consumed);
      off = PD_WIRE_HEADER_LEN;
      d->hdr_have = PD_WIRE_HEADER_LEN;
    } else {
      while (off < len && d->hdr_have < PD_WIRE_HEADER_LEN) {
        uint8_t b = data[off++];
        if (d->hdr_have < PD_WIRE_MAGIC_LEN && b != d->magic[d->hdr_have])
          return fail(d, PD_WIRE_R_BAD_MAGIC, off, consumed);
        d->hdr[d->hdr_have++] = b;
      }
      if (d->hdr_have < PD_WIRE_HEADER_LEN) {
        d->bytes += off;
        *consumed = off;
        return PD_WIRE_NEED_MORE;
      }
    }
    pd_wire_reason_t r = check_header(d->magic, d->hdr, &d->need);
    if (r) return fail(d, r, off, consumed);
    d->have = 0;
  }

  /* Payload: decode in place when it is all here, else buffer it. */
  size_t avail = len - off;
  if (d->have == 0 && avail >= d->need) return deliver(d, data + off, off + d->need, consumed, msg);
  if (d->cap < d->need) {
    size_t ncap = d->need < 4096 ? 4096 : d->need;
    uint8_t *nb = realloc(d->buf, ncap);
    if (!nb) return fail(d, PD_WIRE_R_NO_MEMORY, off, consumed);
    d->buf = nb;
    d->cap = ncap;
  }
  size_t take_n = d->need - d->have;
  if (take_n > avail) take_n = avail;
  if (take_n) memcpy(d->buf + d->have, data + off, take_n);
  d->have += take_n;
  off += take_n;
  if (d->have == d->need) return deliver(d, d->buf, off, consumed, msg);
  d->bytes += off;
  *consumed = off;
  return PD_WIRE_NEED_MORE;
}

/* --- handshake helpers -------------------------------------------------- */
int pd_wire_negotiate_version(uint16_t a_min, uint16_t a_max, uint16_t b_min, uint16_t b_max,
                              uint16_t *out) {
  if (a_min == 0 || b_min == 0 || a_min > a_max || b_min > b_max) return PD_ERANGE;
  uint16_t v = a_max < b_max ? a_max : b_max;
  uint16_t floor = a_min > b_min ? a_min : b_min;
  if (v < floor) return PD_ERANGE;
  *out = v;
  return 0;
}

static int hexval(char c) {
  if (c >= '0' && c <= '9') return c - '0';
  if (c >= 'a' && c <= 'f') return c - 'a' + 10;
  if (c >= 'A' && c <= 'F') return c - 'A' + 10;
  return -1;
}

int pd_wire_magic_parse(const char *hex, uint8_t magic[PD_WIRE_MAGIC_LEN]) {
  if (!hex || strlen(hex) != 2 * PD_WIRE_MAGIC_LEN) return PD_EINVAL;
  uint8_t tmp[PD_WIRE_MAGIC_LEN];
  for (size_t i = 0; i < PD_WIRE_MAGIC_LEN; i++) {
    int hi = hexval(hex[2 * i]), lo = hexval(hex[2 * i + 1]);
    if (hi < 0 || lo < 0) return PD_EINVAL;
    tmp[i] = (uint8_t)(hi << 4 | lo);
  }
  memcpy(magic, tmp, PD_WIRE_MAGIC_LEN);
  return 0;
}

int pd_wire_magic_format(const uint8_t magic[PD_WIRE_MAGIC_LEN], char *buf, size_t cap) {
  static const char digits[] = "0123456789abcdef";
  if (cap < 2 * PD_WIRE_MAGIC_LEN + 1) return PD_ETOOBIG;
  for (size_t i = 0; i < PD_WIRE_MAGIC_LEN; i++) {
    buf[2 * i] = digits[magic[i] >> 4];
    buf[2 * i + 1] = digits[magic[i] & 15];
  }
  buf[2 * PD_WIRE_MAGIC_LEN] = 0;
  return 2 * PD_WIRE_MAGIC_LEN;
}
