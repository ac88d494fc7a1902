/* gen_corpus — writes the seed corpora of tests/fuzz/corpus/<target>/ with
 * the real encoders (wire frames, signed node records, an encoded book) and
 * a few hand-written texts (addresses, HTTP requests, config files).
 *   cmake --build build-fuzz --target fuzz_gen_corpus
 *   rm -rf tests/fuzz/corpus && mkdir tests/fuzz/corpus
 *   build-fuzz/fuzz_gen_corpus tests/fuzz/corpus
 * Deterministic (fixed seeds and keys): rerunning it rewrites the same
 * files. Defined beside the fuzz targets (cmake/fuzz.cmake; not built by default), never
 * run by ctest.
 * Each seed starts with the byte its target reads first (docs/fuzzing.md). */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>

#include "bookstore.h"
#include "dhtwire.h"
#include "record.h"
#include "wire.h"

static const uint8_t MAGIC[PD_WIRE_MAGIC_LEN] = PD_WIRE_MAGIC_DEFAULT_INIT;
static const char *root;

static void put(const char *target, const char *name, uint8_t first, bool has_first,
                const void *data, size_t len) {
  char path[512];
  snprintf(path, sizeof path, "%s/%s", root, target);
  if (mkdir(path, 0755) != 0 && errno != EEXIST) {
    perror(path);
    exit(1);
  }
  snprintf(path, sizeof path, "%s/%s/%s", root, target, name);
  FILE *f = fopen(path, "wb");
  if (!f || (has_first && fputc(first, f) == EOF) || (len && fwrite(data, 1, len, f) != len) ||
      fclose(f) != 0) {
    perror(path);
    exit(1);
  }
}

static void must(int ok, const char *what) {
  if (!ok) {
    fprintf(stderr, "gen_corpus: %s failed\n", what);
    exit(1);
  }
}

static pd_netaddr_t v4(uint8_t a, uint8_t b, uint8_t c, uint8_t d, uint16_t port) {
  pd_netaddr_t n;
  memset(&n, 0, sizeof n);
  n.ip[10] = n.ip[11] = 0xff;
  n.ip[12] = a, n.ip[13] = b, n.ip[14] = c, n.ip[15] = d;
  n.port = port;
  return n;
}

static size_t make_record(uint8_t salt, bool rich, uint8_t *out, pd_identity_t *id) {
  uint8_t seed[32];
  memset(seed, salt, sizeof seed);
  must(pd_identity_from_seed(id, seed) == 0, "identity");
  pd_record_t r;
  must(pd_record_init(&r, "peerd", 1700000000000ull + salt, NULL) == 0, "record_init");
  if (rich) {
    r.has_discovery = true;
    r.discovery = v4(127, salt, 0, 1, 7411);
    pd_netaddr_t a = v4(127, salt, 0, 1, 26656);
    must(pd_record_set_service(&r, "p2p", &a, NULL) == 0, "service");
    a = v4(127, salt, 0, 2, 26657);
    must(pd_record_set_service(&r, "rpc", &a, NULL) == 0, "service");
    must(pd_record_set_attr(&r, "chain", "test-1", NULL) == 0, "attr");
    must(pd_record_set_attr(&r, "roles", "validator", NULL) == 0, "attr");
  }
  size_t len = 0;
  must(pd_record_sign(&r, id, NULL, out, PD_RECORD_MAX, &len) == 0, "record_sign");
  return len;
}

/* --- wire and peer: frames ------------------------------------------------ */
static void frames(void) {
  uint8_t buf[8192], all[16384], rec[PD_RECORD_MAX];
  size_t len = 0, all_len = 0;
  pd_identity_t id;
  size_t rlen = make_record(5, true, rec, &id);

  pd_wire_hello_t h;
  memset(&h, 0, sizeof h);
  h.max_version = h.min_version = PD_WIRE_VERSION;
  memcpy(h.node_id, id.id, PD_NODE_ID_LEN);
  memcpy(h.pubkey, id.pk, PD_WIRE_PUBKEY_LEN);
  memset(h.challenge, 0x5a, sizeof h.challenge);
  h.timestamp = 1700000000;
  h.has_listen = true;
  h.listen = v4(127, 5, 0, 1, 7411);
  h.network_len = 5;
  strcpy(h.network, "peerd");
  h.agent_len = 8;
  strcpy(h.agent, "peerd/0.1");
  h.agent_len = (uint8_t)strlen(h.agent);
  h.record = rec;
  h.record_len = (uint16_t)rlen;
  h.has_observed = true;
  h.observed = v4(127, 6, 0, 1, 40000);

  pd_wire_addr_entry_t e[12];
  memset(e, 0, sizeof e);
  for (unsigned i = 0; i < 12; i++) {
    e[i].addr = v4((uint8_t)(20 + i), 1, 2, (uint8_t)(3 + i), (uint16_t)(26656 + i));
    e[i].timestamp = 1700000000 - i;
  }
  e[1].has_id = true;
  memcpy(e[1].id, id.id, PD_NODE_ID_LEN);
  e[1].record = rec;
  e[1].record_len = (uint16_t)rlen;
  e[2].has_id = true;
  memset(e[2].id, 0x42, PD_NODE_ID_LEN);
  e[3].addr.ip[0] = 0x2a, e[3].addr.ip[1] = 0x01, e[3].addr.ip[2] = 0x04, e[3].addr.ip[3] = 0xf8;
  e[3].addr.ip[10] = e[3].addr.ip[11] = 0;
  uint8_t sig[PD_WIRE_SIG_LEN];
  memset(sig, 0x33, sizeof sig);

  /* one encoder at a time: each writes buf, then the seeds are cut from it */
#define EMIT(nm, type, call)                                                        \
  do {                                                                              \
    must((call) == 0, nm);                                                          \
    put("wire", "frame-" nm, (uint8_t)(type), true, buf, len);                      \
    put("wire", "frame-" nm "-chunk3", (uint8_t)((type) | (3 << 3)), true, buf, len); \
    put("wire", "payload-" nm, (uint8_t)(type), true, buf + PD_WIRE_HEADER_LEN,      \
        len - PD_WIRE_HEADER_LEN);                                                  \
    if ((type) != PD_WIRE_HELLO && (type) != PD_WIRE_HELLO_ACK)                      \
      put("peer", "frame-" nm, 0, true, buf, len);                                  \
    memcpy(all + all_len, buf, len);                                                \
    all_len += len;                                                                 \
  } while (0)
  EMIT("hello", PD_WIRE_HELLO, pd_wire_encode_hello(MAGIC, &h, buf, sizeof buf, &len));
  EMIT("ack", PD_WIRE_HELLO_ACK, pd_wire_encode_ack(MAGIC, sig, buf, sizeof buf, &len));
  EMIT("ping", PD_WIRE_PING, pd_wire_encode_ping(MAGIC, 0x0102030405060708ull, buf, sizeof buf, &len));
  EMIT("pong", PD_WIRE_PONG, pd_wire_encode_pong(MAGIC, 0x0102030405060708ull, buf, sizeof buf, &len));
  EMIT("getaddr", PD_WIRE_GETADDR, pd_wire_encode_getaddr(MAGIC, buf, sizeof buf, &len));
  EMIT("addr", PD_WIRE_ADDR, pd_wire_encode_addr(MAGIC, e, 12, buf, sizeof buf, &len));
  EMIT("goodbye", PD_WIRE_GOODBYE,
       pd_wire_encode_goodbye(MAGIC, PD_WIRE_BYE_MISBEHAVIOUR, "addr_flood", buf, sizeof buf, &len));
#undef EMIT
  put("wire", "stream-all", 0, true, all, all_len);
  put("wire", "stream-all-chunk1", 1 << 3, true, all, all_len);
  /* peer: after the handshake, so without HELLO / HELLO_ACK; a second ADDR
   * and clock steps of 5 s and 15 s between chunks */
  size_t hs = 0;
  pd_wire_msg_t *m = malloc(sizeof *m);
  pd_wire_decoder_t d;
  pd_wire_decoder_init(&d, MAGIC);
  for (int i = 0; i < 2; i++) { /* skip HELLO and HELLO_ACK */
    size_t used = 0;
    must(pd_wire_decoder_feed(&d, all + hs, all_len - hs, &used, m) == PD_WIRE_MESSAGE, "decode");
    hs += used;
  }
  pd_wire_decoder_free(&d);
  free(m);
  put("peer", "stream-ready", 0, true, all + hs, all_len - hs);
  put("peer", "stream-ready-chunk7-step5s", 7 | (5 << 4), true, all + hs, all_len - hs);
  put("peer", "stream-ready-step15s", 15 << 4, true, all + hs, all_len - hs);
}

/* --- sealed: fuzz_sealed's chunks (docs/fuzzing.md) ------------------------ */
/* Append one chunk [u16 length][prefix][body] to out. */
static void chunk(uint8_t *out, size_t *len, const uint8_t *prefix, size_t plen, const uint8_t *body,
                  size_t blen) {
  size_t n = plen + blen;
  out[(*len)++] = (uint8_t)(n >> 8);
  out[(*len)++] = (uint8_t)n;
  if (plen) memcpy(out + *len, prefix, plen);
  *len += plen;
  memcpy(out + *len, body, blen);
  *len += blen;
}

/* A frame as mode 0/2 wants it: [type][payload], no header. */
static void typed(uint8_t *out, size_t *len, const uint8_t *tamper, const uint8_t *frame, size_t n) {
  uint8_t pre[5];
  size_t pl = 0;
  if (tamper) {
    memcpy(pre, tamper, 4);
    pl = 4;
  }
  pre[pl++] = frame[4];
  chunk(out, len, pre, pl, frame + PD_WIRE_HEADER_LEN, n - PD_WIRE_HEADER_LEN);
}

static void sealed(void) {
  static uint8_t f[6][4096], typed_all[16384], whole_all[16384], buf[16384];
  size_t fl[6], tl = 0, wl = 0, len = 0;
  pd_wire_addr_entry_t e[12];
  memset(e, 0, sizeof e);
  for (unsigned i = 0; i < 12; i++) {
    e[i].addr = v4((uint8_t)(20 + i), 1, 2, (uint8_t)(3 + i), (uint16_t)(26656 + i));
    e[i].timestamp = 1700000000 - i;
  }
  e[1].has_id = true;
  memset(e[1].id, 0x42, PD_NODE_ID_LEN);
  must(pd_wire_encode_ping(MAGIC, 0x0102030405060708ull, f[0], 4096, &fl[0]) == 0, "ping");
  must(pd_wire_encode_pong(MAGIC, 0x0102030405060708ull, f[1], 4096, &fl[1]) == 0, "pong");
  must(pd_wire_encode_getaddr(MAGIC, f[2], 4096, &fl[2]) == 0, "getaddr");
  must(pd_wire_encode_addr(MAGIC, e, 12, f[3], 4096, &fl[3]) == 0, "addr");
  must(pd_wire_encode_goodbye(MAGIC, PD_WIRE_BYE_NORMAL, "bye", f[4], 4096, &fl[4]) == 0, "goodbye");
  uint8_t key[PD_WIRE_KEYX_LEN];
  memset(key, 0x77, sizeof key);
  must(pd_wire_encode_keyx(MAGIC, key, f[5], 4096, &fl[5]) == 0, "keyx");
  static const char *names[5] = {"ping", "pong", "getaddr", "addr", "goodbye"};
  for (int i = 0; i < 5; i++) {
    char nm[64];
    len = 0;
    typed(buf, &len, NULL, f[i], fl[i]);
    snprintf(nm, sizeof nm, "typed-%s", names[i]);
    put("sealed", nm, 0, true, buf, len);
    len = 0;
    chunk(buf, &len, NULL, 0, f[i], fl[i]);
    snprintf(nm, sizeof nm, "whole-%s", names[i]);
    put("sealed", nm, 1, true, buf, len);
    if (i < 4) { /* a stream of everything but GOODBYE, then GOODBYE */
      typed(typed_all, &tl, NULL, f[i], fl[i]);
      chunk(whole_all, &wl, NULL, 0, f[i], fl[i]);
    }
  }
  typed(typed_all, &tl, NULL, f[4], fl[4]);
  chunk(whole_all, &wl, NULL, 0, f[4], fl[4]);
  put("sealed", "typed-stream", 0, true, typed_all, tl);
  put("sealed", "typed-stream-pieces3-step5s", 2 << 2 | 5 << 4, true, typed_all, tl);
  put("sealed", "whole-stream-pieces1", 1 | 1 << 2, true, whole_all, wl);
  put("sealed", "whole-stream-step15s", 1 | 15 << 4, true, whole_all, wl);
  /* refused inside: a KEYX (unexpected) and a SEALED frame in a SEALED one (not_sealed) */
  len = 0;
  chunk(buf, &len, NULL, 0, f[5], fl[5]);
  put("sealed", "whole-keyx", 1, true, buf, len);
  uint8_t inner[PD_WIRE_HEADER_LEN + PD_WIRE_SEALED_MIN];
  memset(inner, 0, sizeof inner);
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_SEALED_MIN, inner);
  len = 0;
  chunk(buf, &len, NULL, 0, inner, sizeof inner);
  put("sealed", "whole-sealed-in-sealed", 1, true, buf, len);
  /* mode 2: each tamper on a PING, then a GETADDR after it */
  static const struct {
    const char *name;
    uint8_t op, pos_hi, pos_lo, val;
  } t[] = {{"tamper-flip-payload", 1, 0, 20, 0x01}, {"tamper-flip-tag", 1, 0, 40, 0x80},
           {"tamper-flip-length", 1, 0, 9, 0x01},   {"tamper-flip-flags", 1, 0, 5, 0x01},
           {"tamper-cut", 2, 0, 30, 0},             {"tamper-replay", 3, 0, 0, 0},
           {"tamper-drop", 4, 0, 0, 0},             {"tamper-swap", 5, 0, 0, 0}};
  for (size_t i = 0; i < sizeof t / sizeof t[0]; i++) {
    uint8_t op[4] = {t[i].op, t[i].pos_hi, t[i].pos_lo, t[i].val}, none[4] = {0, 0, 0, 0};
    len = 0;
    typed(buf, &len, op, f[0], fl[0]);
    typed(buf, &len, none, f[2], fl[2]);
    put("sealed", t[i].name, 2, true, buf, len);
  }
  /* mode 3: raw bytes after the handshake: a plain PING (not_sealed), a
   * SEALED frame no key made (bad_mac), a header over the limit */
  put("sealed", "raw-plain-ping", 3, true, f[0], fl[0]);
  uint8_t forged[PD_WIRE_HEADER_LEN + PD_WIRE_SEALED_MIN + 8];
  memset(forged, 0x11, sizeof forged);
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_SEALED_MIN + 8, forged);
  put("sealed", "raw-forged-sealed", 3, true, forged, sizeof forged);
  uint8_t big[PD_WIRE_HEADER_LEN];
  pd_wire_write_header(MAGIC, PD_WIRE_SEALED, PD_WIRE_MAX_PAYLOAD + 1, big);
  put("sealed", "raw-oversized", 3, true, big, sizeof big);
  /* fuzz_wire: the v3 frames too (KEYX, and a SEALED frame's outer layer) */
  put("wire", "frame-keyx", PD_WIRE_KEYX, true, f[5], fl[5]);
  put("wire", "frame-sealed", PD_WIRE_SEALED, true, forged, sizeof forged);
}

/* --- record ------------------------------------------------------------------ */
static void records(void) {
  uint8_t rec[PD_RECORD_MAX];
  pd_identity_t id;
  size_t len = make_record(7, false, rec, &id);
  put("record", "bare", 0, false, rec, len);
  len = make_record(8, true, rec, &id);
  put("record", "services-attrs", 0, false, rec, len);
}

/* --- netaddr ------------------------------------------------------------------ */
static void addresses(void) {
  static const struct { const char *name; unsigned flags; const char *s; } a[] = {
      {"v4", 0, "1.2.3.4:26656"},
      {"v6", 0, "[2001:db8::1]:7411"},
      {"v4-mapped", 1, "::ffff:10.1.2.3"},
      {"id", 2, "0123456789abcdef0123456789abcdef01234567@[2a01:4f8::1]:26656"},
      {"hostname", 4 | 2, "0123456789abcdef0123456789abcdef01234567@seed1.example.org:7411"},
      {"bare-ip", 1, "127.0.0.1"},
      {"subnet4", 1, "10.0.0.0/8"},
      {"subnet6", 1, "2001:db8::/32"},
      {"node-id", 0, "d0310a1b522272d2531cd3bec330ab3517893d5c"},
      {"teredo", 0, "[2001:0:4136:e378:8000:63bf:3fff:fdd2]:1"},
  };
  for (size_t i = 0; i < sizeof a / sizeof a[0]; i++)
    put("netaddr", a[i].name, (uint8_t)a[i].flags, true, a[i].s, strlen(a[i].s));
}

/* --- bookstore ---------------------------------------------------------------- */
static void book(void) {
  pd_rng_t rng;
  pd_rng_seed(&rng, 9);
  uint8_t key[PD_BOOK_KEY_LEN];
  memset(key, 0x11, sizeof key);
  pd_book_t *b = NULL;
  must(pd_book_create(&b, key, &rng, 0) == 0, "book_create");
  int64_t now = 1700000000;
  pd_netaddr_t src = v4(5, 6, 7, 8, 0);
  uint8_t nid[PD_NODE_ID_LEN];
  memset(nid, 0x42, sizeof nid);
  for (unsigned i = 0; i < 6; i++) {
    pd_netaddr_t a = v4((uint8_t)(30 + i), (uint8_t)i, 1, 2, (uint16_t)(26656 + i));
    must(pd_book_add(b, &a, i == 2 ? nid : NULL, now - 100 * i, &src, 0, now, NULL) == 1, "book_add");
    if (i < 2) must(pd_book_good(b, &a, false, now) == 1, "book_good");
    if (i == 3) must(pd_book_attempt(b, &a, true, now) == 0, "book_attempt");
  }
  pd_subnet_t s;
  must(pd_subnet_parse("10.0.0.0/8", &s, NULL) == 0, "subnet");
  must(pd_banlist_add(pd_book_bans(b), &s, now, now + 3600, "lab") >= 0, "ban");
  char *text = NULL;
  size_t len = 0;
  must(pd_bookstore_encode(b, now, &text, &len) == 0, "encode");
  put("bookstore", "book", 0, true, text, len);
  put("bookstore", "book-private-small", 3, true, text, len);
  put("bookstore", "book-cut", 0, true, text, len * 2 / 3); /* salvaged line by line */
  free(text);
  pd_book_destroy(b);
  const char *empty = "{\"format\":\"peerd-addrbook\",\"version\":1}";
  put("bookstore", "minimal", 0, true, empty, strlen(empty));
}

/* --- http_api ----------------------------------------------------------------- */
/* Append one request (Content-Length computed; body NULL: none). */
static void req(char *out, size_t cap, const char *method, const char *target, const char *hdrs,
                const char *body) {
  size_t n = strlen(out);
  if (body)
    snprintf(out + n, cap - n,
             "%s %s HTTP/1.1\r\nHost: 127.0.0.1:7412\r\n%sContent-Type: application/json\r\n"
             "Content-Length: %zu\r\n\r\n%s",
             method, target, hdrs, strlen(body), body);
  else
    snprintf(out + n, cap - n, "%s %s HTTP/1.1\r\nHost: 127.0.0.1:7412\r\n%s\r\n", method, target, hdrs);
}

static void http(void) {
  char b[4096];
#define SEED(name, first, ...)                                        \
  do {                                                                \
    b[0] = '\0';                                                      \
    __VA_ARGS__;                                                      \
    put("http_api", name, (uint8_t)(first), true, b, strlen(b));     \
  } while (0)
#define R(m, t, h, body) req(b, sizeof b, m, t, h, body)
  SEED("health", 0, R("GET", "/health", "", NULL));
  SEED("status-token", 64, R("GET", "/v1/status", "Authorization: Bearer fuzz\r\n", NULL));
  SEED("book-post", 0,
       R("POST", "/v1/book", "",
         "{\"addrs\":[\"1.2.3.4:26656\",\"0123456789abcdef0123456789abcdef01234567@[2a01:4f8::1]:26656\"],"
         "\"source\":\"5.6.7.8\"}"));
  SEED("book-list", 0, R("GET", "/v1/book?table=new&limit=2&source=5.6.7.8&banned=false", "", NULL));
  SEED("book-get", 0, R("GET", "/v1/book/%5B2a01%3A4f8%3A%3A1%5D%3A26656", "", NULL));
  SEED("events", 0,
       R("POST", "/v1/events", "",
         "{\"addr\":\"1.2.3.4:26656\",\"event\":\"misbehaved\",\"reason\":\"bad\",\"direction\":\"outbound\"}"));
  SEED("bans", 0, R("POST", "/v1/bans", "", "{\"target\":\"10.0.0.0/8\",\"duration\":3600,\"reason\":\"lab\"}");
       R("GET", "/v1/bans", "", NULL); R("DELETE", "/v1/bans?target=10.0.0.0%2F8", "", NULL));
  SEED("self-put-chunked", 0,
       strcat(b, "PUT /v1/self HTTP/1.1\r\nHost: 127.0.0.1\r\nContent-Type: application/json\r\n"
                 "Transfer-Encoding: chunked\r\n\r\n"
                 "1a\r\n{\"services\":{\"p2p\":26700},\r\n"
                 "12\r\n\"attrs\":{\"a\":\"b\"}}\r\n0\r\n\r\n"));
  SEED("dial-pex-metrics", 8, R("GET", "/v1/dial?n=2", "", NULL);
       R("GET", "/v1/pex?peer=7.7.7.7:26656&n=10", "", NULL); R("GET", "/metrics", "", NULL));
  SEED("save-reload-check", 0, R("POST", "/v1/save", "", NULL); R("POST", "/v1/policy/reload", "", NULL);
       R("POST", "/v1/policy/check", "", "{\"dir\":\"/tmp/p\"}"); R("POST", "/v1/policy/promote", "", NULL));
  SEED("stream", 0, R("GET", "/v1/events/stream?kinds=ban,unban,evict&since=3", "Last-Event-ID: 2\r\n", NULL));
  SEED("peers-protected", 0, R("POST", "/v1/protected", "", "{\"target\":\"127.0.0.3\"}");
       R("GET", "/v1/protected", "", NULL); R("GET", "/v1/explain/1.2.3.4:26656", "", NULL);
       R("GET", "/v1/policy", "Origin: http://localhost\r\n", NULL);
       R("POST", "/v1/peers", "", "{\"addr\":\"127.0.0.2:7411\"}"); R("GET", "/v1/peers", "", NULL));
  SEED("book-post-names", 0, R("POST", "/v1/book", "", "{\"addrs\":[\"localhost:26656\",\"nx.invalid:1\"]}"));
  SEED("self-get", 0, R("GET", "/v1/self", "", NULL); R("GET", "/v1/policy/shadow", "", NULL));
#undef R
#undef SEED
}

/* --- conffile ------------------------------------------------------------------ */
static void conf(void) {
  static const struct { const char *name; const char *s; } c[] = {
      {"basic", "max_inbound = 40\nlisten = \"0.0.0.0:7411\"\nservices = { p2p = 26656 }\n"
                "seeds = { \"seed1.example.org:7411\", \"seed2.example.org:7411\" }\n"},
      {"flags", "-- a comment\nallow_private = true\nmax_outbound = 8\nlog_level = \"debug\"\n"
                "api_listen = \"127.0.0.1:7412\"\nnetwork = \"lab\"\n"},
      {"computed", "local base = 7400\nlisten = \"127.0.0.1:\" .. (base + 11)\n"},
  };
  for (size_t i = 0; i < sizeof c / sizeof c[0]; i++)
    put("conffile", c[i].name, 0, false, c[i].s, strlen(c[i].s));
}

/* --- dhtwire: DHT datagrams and messages (docs/protocol.md §11.8's fields) -- */
static void dht(void) {
  uint8_t pkt[PD_DHT_MAX_PACKET], rec[PD_DHT_RECORD_MAX], k[PD_DHT_SIG_LEN];
  uint8_t src[PD_DHT_ID_LEN], nonce[PD_DHT_NONCE_LEN] = {[11] = 1};
  for (size_t i = 0; i < sizeof rec; i++) rec[i] = (uint8_t)i;
  for (size_t i = 0; i < sizeof k; i++) k[i] = (uint8_t)(0x40 + i);
  for (size_t i = 0; i < sizeof src; i++) src[i] = (uint8_t)(0xa0 + i);
  pd_dht_msg_t m[4];
  memset(m, 0, sizeof m);
  m[0].type = PD_DHT_PING, m[0].request_id = 0x0102030405060708ull, m[0].record_seq = 5;
  m[1].type = PD_DHT_PONG, m[1].request_id = 0x0102030405060708ull, m[1].record_seq = 7;
  m[1].observed = v4(203, 0, 113, 9, 26656);
  m[2].type = PD_DHT_FINDNODE, m[2].request_id = 0x1112131415161718ull, m[2].ndist = 3;
  m[2].dist[0] = 160, m[2].dist[1] = 159, m[2].dist[2] = 158;
  m[3].type = PD_DHT_NODES, m[3].request_id = 0x1112131415161718ull, m[3].total = 2, m[3].nrec = 2;
  m[3].rec[0].bytes = rec, m[3].rec[0].len = 130, m[3].rec[1].bytes = rec, m[3].rec[1].len = 300;
  static const char *const names[4] = {"ping", "pong", "findnode", "nodes"};
  for (int i = 0; i < 4; i++) {
    size_t n = 0, mn = 0;
    /* the message alone, then sealed by the null cipher in a MESSAGE and a
     * HANDSHAKE (the NODES one carrying a record) */
    must(pd_dht_msg_encode(&m[i], pkt, sizeof pkt, &n) == 0, "dht msg");
    char name[64];
    snprintf(name, sizeof name, "msg-%s", names[i]);
    put("dhtwire", name, 0, false, pkt, n);
    pd_dht_header_encode(pkt, PD_DHT_MESSAGE, nonce, src);
    must(pd_dht_msg_encode(&m[i], pkt + 38, sizeof pkt - 38, &mn) == 0, "dht msg");
    memset(pkt + 38 + mn, 0, PD_DHT_TAG_LEN);
    snprintf(name, sizeof name, "message-%s", names[i]);
    put("dhtwire", name, 0, false, pkt, 38 + mn + PD_DHT_TAG_LEN);
    size_t rl = i == 3 ? 130 : 0;
    must(pd_dht_handshake_head_encode(pkt, sizeof pkt, &n, nonce, src, k, k + 32, k, rec, rl) == 0,
         "dht handshake");
    must(pd_dht_msg_encode(&m[i], pkt + n, sizeof pkt - n, &mn) == 0, "dht msg");
    memset(pkt + n + mn, 0, PD_DHT_TAG_LEN);
    snprintf(name, sizeof name, "handshake-%s", names[i]);
    put("dhtwire", name, 0, false, pkt, n + mn + PD_DHT_TAG_LEN);
  }
  pd_dht_whoareyou_encode(pkt, nonce, src, k, k + 16, 7);
  put("dhtwire", "whoareyou", 0, false, pkt, PD_DHT_WHOAREYOU_LEN);
}

int main(int argc, char **argv) {
  if (argc != 2) {
    fprintf(stderr, "usage: %s CORPUS_DIR\n", argv[0]);
    return 2;
  }
  root = argv[1];
  frames();
  sealed();
  records();
  addresses();
  book();
  http();
  conf();
  dht();
  return 0;
}
