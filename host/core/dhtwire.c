/* dhtwire — the DHT's packet and message codec. See dhtwire.h and docs/protocol.md §11.1–11.2. */
#include "dhtwire.h"

#include <string.h>

#include "err.h"

/* Offsets inside a packet (§11.1). */
enum {
  OFF_VERSION = 4,
  OFF_KIND = 5,
  OFF_NONCE = 6,
  OFF_SRC_ID = 18,
  /* WHOAREYOU */
  OFF_ID_NONCE = PD_DHT_HEADER_LEN,
  OFF_WAY_PUBKEY = OFF_ID_NONCE + PD_DHT_ID_NONCE_LEN,
  OFF_WAY_SEQ = OFF_WAY_PUBKEY + PD_DHT_PK_LEN,
  /* HANDSHAKE */
  OFF_EPH = PD_DHT_HEADER_LEN,
  OFF_HS_PUBKEY = OFF_EPH + PD_DHT_PK_LEN,
  OFF_SIG = OFF_HS_PUBKEY + PD_DHT_PK_LEN,
  OFF_RECLEN = OFF_SIG + PD_DHT_SIG_LEN,
};

/* Body sizes of the fixed-size messages (§11.2). */
enum {
  PING_LEN = PD_DHT_MSG_HEAD + 8,
  PONG_LEN = PD_DHT_MSG_HEAD + 8 + 16 + 2,
  NODES_HEAD = PD_DHT_MSG_HEAD + 2, /* total, count */
};

/* --- names -------------------------------------------------------------- */
static const char *const reason_names[PD_DHTW_R_COUNT] = {
    [PD_DHTW_OK] = "none",
    [PD_DHTW_R_MAGIC] = "dht_magic",
    [PD_DHTW_R_VERSION] = "dht_version",
    [PD_DHTW_R_KIND] = "dht_kind",
    [PD_DHTW_R_MALFORMED] = "dht_malformed",
    [PD_DHTW_R_MESSAGE] = "dht_message",
};

const char *pd_dhtwire_reason_name(pd_dhtwire_reason_t r) {
  if ((unsigned)r >= PD_DHTW_R_COUNT) return "invalid";
  return reason_names[r];
}

/* --- big-endian helpers ------------------------------------------------- */
static uint16_t get16(const uint8_t *p) { return (uint16_t)((unsigned)p[0] << 8 | p[1]); }

static uint64_t get64(const uint8_t *p) {
  uint64_t v = 0;
  for (int i = 0; i < 8; i++) v = v << 8 | p[i];
  return v;
}

static void put16(uint8_t *p, uint16_t v) {
  p[0] = (uint8_t)(v >> 8);
  p[1] = (uint8_t)v;
}

static void put64(uint8_t *p, uint64_t v) {
  for (int i = 7; i >= 0; i--) {
    p[i] = (uint8_t)v;
    v >>= 8;
  }
}

static bool record_len_ok(size_t n) { return n >= PD_DHT_RECORD_MIN && n <= PD_DHT_RECORD_MAX; }

/* --- packets ------------------------------------------------------------ */
pd_dhtwire_reason_t pd_dht_packet_decode(const uint8_t *buf, size_t len, pd_dht_packet_t *out) {
  /* Order: the size bounds every packet shares, then magic, version, kind,
   * then the kind's own sizes (docs/protocol.md §11.1). */
  if (!buf || len < PD_DHT_HEADER_LEN || len > PD_DHT_MAX_PACKET) return PD_DHTW_R_MALFORMED;
  if (memcmp(buf, PD_DHT_MAGIC, 4) != 0) return PD_DHTW_R_MAGIC;
  if (buf[OFF_VERSION] != PD_DHT_VERSION) return PD_DHTW_R_VERSION;
  uint8_t kind = buf[OFF_KIND];
  if (kind > PD_DHT_HANDSHAKE) return PD_DHTW_R_KIND;

  memset(out, 0, sizeof *out);
  out->kind = kind;
  out->header = buf;
  out->nonce = buf + OFF_NONCE;
  out->src_id = buf + OFF_SRC_ID;

  switch (kind) {
  case PD_DHT_MESSAGE:
    if (len < PD_DHT_MIN_PACKET) return PD_DHTW_R_MALFORMED;
    out->ad_len = PD_DHT_HEADER_LEN;
    break;
  case PD_DHT_WHOAREYOU:
    if (len != PD_DHT_WHOAREYOU_LEN) return PD_DHTW_R_MALFORMED;
    out->id_nonce = buf + OFF_ID_NONCE;
    out->pubkey = buf + OFF_WAY_PUBKEY;
    out->record_seq = get64(buf + OFF_WAY_SEQ);
    return PD_DHTW_OK;
  default: { /* PD_DHT_HANDSHAKE */
    if (len < PD_DHT_HANDSHAKE_MIN) return PD_DHTW_R_MALFORMED;
    size_t rl = get16(buf + OFF_RECLEN);
    if (rl != 0 && !record_len_ok(rl)) return PD_DHTW_R_MALFORMED;
    /* len >= 193 > 168, and rl <= 512: no overflow below. */
    if (len - PD_DHT_HANDSHAKE_FIXED < rl + PD_DHT_MSG_HEAD + PD_DHT_TAG_LEN) return PD_DHTW_R_MALFORMED;
    out->eph_pubkey = buf + OFF_EPH;
    out->pubkey = buf + OFF_HS_PUBKEY;
    out->id_signature = buf + OFF_SIG;
    out->record = rl ? buf + PD_DHT_HANDSHAKE_FIXED : NULL;
    out->record_len = rl;
    out->ad_len = PD_DHT_HANDSHAKE_FIXED + rl;
    break;
  }
  }
  out->ciphertext = buf + out->ad_len;
  out->ciphertext_len = len - out->ad_len;
  return PD_DHTW_OK;
}

void pd_dht_header_encode(uint8_t out[PD_DHT_HEADER_LEN], uint8_t kind,
                          const uint8_t nonce[PD_DHT_NONCE_LEN], const uint8_t src_id[PD_DHT_ID_LEN]) {
  memcpy(out, PD_DHT_MAGIC, 4);
  out[OFF_VERSION] = PD_DHT_VERSION;
  out[OFF_KIND] = kind;
  memcpy(out + OFF_NONCE, nonce, PD_DHT_NONCE_LEN);
  memcpy(out + OFF_SRC_ID, src_id, PD_DHT_ID_LEN);
}

void pd_dht_whoareyou_encode(uint8_t out[PD_DHT_WHOAREYOU_LEN], const uint8_t nonce[PD_DHT_NONCE_LEN],
                             const uint8_t src_id[PD_DHT_ID_LEN],
                             const uint8_t id_nonce[PD_DHT_ID_NONCE_LEN],
                             const uint8_t pubkey[PD_DHT_PK_LEN], uint64_t record_seq) {
  pd_dht_header_encode(out, PD_DHT_WHOAREYOU, nonce, src_id);
  memcpy(out + OFF_ID_NONCE, id_nonce, PD_DHT_ID_NONCE_LEN);
  memcpy(out + OFF_WAY_PUBKEY, pubkey, PD_DHT_PK_LEN);
  put64(out + OFF_WAY_SEQ, record_seq);
}

int pd_dht_handshake_head_encode(uint8_t *out, size_t cap, size_t *len,
                                 const uint8_t nonce[PD_DHT_NONCE_LEN],
                                 const uint8_t src_id[PD_DHT_ID_LEN],
                                 const uint8_t eph_pubkey[PD_DHT_PK_LEN],
                                 const uint8_t pubkey[PD_DHT_PK_LEN],
                                 const uint8_t id_signature[PD_DHT_SIG_LEN],
                                 const uint8_t *record, size_t record_len) {
  /* The same rule the decoder applies: no record, or one of 130..512 bytes. */
  if (record_len != 0 && (!record || !record_len_ok(record_len))) return PD_EINVAL;
  size_t n = PD_DHT_HANDSHAKE_FIXED + record_len;
  if (n > cap) return PD_ETOOBIG;
  pd_dht_header_encode(out, PD_DHT_HANDSHAKE, nonce, src_id);
  memcpy(out + OFF_EPH, eph_pubkey, PD_DHT_PK_LEN);
  memcpy(out + OFF_HS_PUBKEY, pubkey, PD_DHT_PK_LEN);
  memcpy(out + OFF_SIG, id_signature, PD_DHT_SIG_LEN);
  put16(out + OFF_RECLEN, (uint16_t)record_len);
  if (record_len) memcpy(out + PD_DHT_HANDSHAKE_FIXED, record, record_len);
  *len = n;
  return 0;
}

/* --- messages ----------------------------------------------------------- */
static bool distances_ok(const uint8_t *d, size_t n) {
  if (n < 1 || n > PD_DHT_MAX_DISTANCES) return false;
  for (size_t i = 0; i < n; i++) {
    if (d[i] > PD_DHT_MAX_DISTANCE) return false;
    for (size_t j = 0; j < i; j++)
      if (d[j] == d[i]) return false;
  }
  return true;
}

pd_dhtwire_reason_t pd_dht_msg_decode(const uint8_t *buf, size_t len, pd_dht_msg_t *out) {
  if (!buf || len < PD_DHT_MSG_HEAD) return PD_DHTW_R_MESSAGE;
  memset(out, 0, sizeof *out);
  out->type = buf[0];
  out->request_id = get64(buf + 1);
  const uint8_t *b = buf + PD_DHT_MSG_HEAD;
  switch (out->type) {
  case PD_DHT_PING:
    if (len != PING_LEN) return PD_DHTW_R_MESSAGE;
    out->record_seq = get64(b);
    return PD_DHTW_OK;
  case PD_DHT_PONG:
    if (len != PONG_LEN) return PD_DHTW_R_MESSAGE;
    out->record_seq = get64(b);
    memcpy(out->observed.ip, b + 8, 16);
    out->observed.port = get16(b + 24);
    return PD_DHTW_OK;
  case PD_DHT_FINDNODE: {
    if (len < PD_DHT_MSG_HEAD + 1) return PD_DHTW_R_MESSAGE;
    size_t n = b[0];
    if (len != PD_DHT_MSG_HEAD + 1 + n || !distances_ok(b + 1, n)) return PD_DHTW_R_MESSAGE;
    out->ndist = (uint8_t)n;
    memcpy(out->dist, b + 1, n);
    return PD_DHTW_OK;
  }
  case PD_DHT_NODES: {
    if (len < NODES_HEAD) return PD_DHTW_R_MESSAGE;
    uint8_t total = b[0], count = b[1];
    if (total < 1 || total > PD_DHT_MAX_TOTAL || count > PD_DHT_MAX_NODES) return PD_DHTW_R_MESSAGE;
    size_t pos = NODES_HEAD;
    for (unsigned i = 0; i < count; i++) {
      if (len - pos < 2) return PD_DHTW_R_MESSAGE;
      uint16_t rl = get16(buf + pos);
      pos += 2;
      if (!record_len_ok(rl) || len - pos < rl) return PD_DHTW_R_MESSAGE;
      out->rec[i].bytes = buf + pos;
      out->rec[i].len = rl;
      pos += rl;
    }
    if (pos != len) return PD_DHTW_R_MESSAGE;
    out->total = total;
    out->nrec = count;
    return PD_DHTW_OK;
  }
  default:
    return PD_DHTW_R_MESSAGE;
  }
}

int pd_dht_msg_encode(const pd_dht_msg_t *m, uint8_t *out, size_t cap, size_t *len) {
  size_t n = PD_DHT_MSG_HEAD;
  switch (m->type) {
  case PD_DHT_PING:
    n = PING_LEN;
    break;
  case PD_DHT_PONG:
    n = PONG_LEN;
    break;
  case PD_DHT_FINDNODE:
    if (!distances_ok(m->dist, m->ndist)) return PD_EINVAL;
    n += 1 + (size_t)m->ndist;
    break;
  case PD_DHT_NODES:
    if (m->total < 1 || m->total > PD_DHT_MAX_TOTAL || m->nrec > PD_DHT_MAX_NODES) return PD_EINVAL;
    n = NODES_HEAD;
    for (unsigned i = 0; i < m->nrec; i++) {
      if (!m->rec[i].bytes || !record_len_ok(m->rec[i].len)) return PD_EINVAL;
      n += 2 + (size_t)m->rec[i].len;
    }
    break;
  default:
    return PD_EINVAL;
  }
  if (n > cap) return PD_ETOOBIG;

  out[0] = m->type;
  put64(out + 1, m->request_id);
  uint8_t *b = out + PD_DHT_MSG_HEAD;
  switch (m->type) {
  case PD_DHT_PING:
    put64(b, m->record_seq);
    break;
  case PD_DHT_PONG:
    put64(b, m->record_seq);
    memcpy(b + 8, m->observed.ip, 16);
    put16(b + 24, m->observed.port);
    break;
  case PD_DHT_FINDNODE:
    b[0] = m->ndist;
    memcpy(b + 1, m->dist, m->ndist);
    break;
  default: { /* PD_DHT_NODES */
    b[0] = m->total;
    b[1] = m->nrec;
    size_t pos = NODES_HEAD;
    for (unsigned i = 0; i < m->nrec; i++) {
      put16(out + pos, m->rec[i].len);
      memcpy(out + pos + 2, m->rec[i].bytes, m->rec[i].len);
      pos += 2 + (size_t)m->rec[i].len;
    }
    break;
  }
  }
  *len = n;
  return 0;
}

int pd_dht_nodes_split(const uint16_t *len, size_t n, uint8_t per_packet[PD_DHT_MAX_TOTAL]) {
  if (n > PD_DHT_MAX_NODES) return PD_EINVAL;
  for (size_t i = 0; i < n; i++)
    if (!record_len_ok(len[i])) return PD_EINVAL;
  /* Every record fits a packet alone (11 + 2 + 512 <= 1226), so at most n
   * packets: never more than PD_DHT_MAX_TOTAL. */
  int packets = 0;
  size_t size = NODES_HEAD;
  per_packet[0] = 0;
  for (size_t i = 0; i < n; i++) {
    size_t add = 2 + (size_t)len[i];
    if (per_packet[packets] > 0 && size + add > PD_DHT_MAX_MSG) {
      per_packet[++packets] = 0;
      size = NODES_HEAD;
    }
    per_packet[packets]++;
    size += add;
  }
  return packets + 1;
}

/* --- distance ----------------------------------------------------------- */
unsigned pd_dht_logdist(const uint8_t a[PD_DHT_ID_LEN], const uint8_t b[PD_DHT_ID_LEN]) {
  for (unsigned i = 0; i < PD_DHT_ID_LEN; i++) {
    unsigned x = (unsigned)(a[i] ^ b[i]);
    if (x) {
      unsigned lz = 0;
      while (!(x & 0x80)) {
        x <<= 1;
        lz++;
      }
      return PD_DHT_ID_LEN * 8 - (i * 8 + lz);
    }
  }
  return 0;
}

int pd_dht_distcmp(const uint8_t target[PD_DHT_ID_LEN], const uint8_t a[PD_DHT_ID_LEN],
                   const uint8_t b[PD_DHT_ID_LEN]) {
  for (unsigned i = 0; i < PD_DHT_ID_LEN; i++) {
    uint8_t da = a[i] ^ target[i], db = b[i] ^ target[i];
    if (da != db) return da < db ? -1 : 1;
  }
  return 0;
}
