/* dhtnet — the DHT's host in the daemon (docs/dht.md).
 *
 * Owns: the UDP socket (uv_udp on --dht-listen, else the overlay's listen
 * address), the engine (host/core/dht.c) and its timer, performing its
 * actions (datagrams out, finished lookups to the API connections waiting
 * for them), the glue to the node (dht.lua's admit through
 * pd_node_dht_admit, found records through pd_node_dht_feed into the book,
 * "want more" while the book is under PD_NODE_DHT_BOOK_TARGET), the
 * bootstrap (--bootnodes, dht.json, peerds in the book with their node
 * ids, records the node already holds), this
 * node's record handed to the engine when it changes, dht.json (the routing
 * table, saved with the book, read at start; corrupt: moved aside).
 * Does not own: the protocol or any decision (dht.c, dht.lua), HTTP
 * (apiserver.c, api.c).
 */
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>
#include <sodium.h>

#include "daemon_int.h"
#include "err.h"
#include "fsio.h"

#define DHT_MAX_FILE (4u * 1024 * 1024)
#define DHT_LOAD_MAX 128 /* nodes of dht.json contacted at start */
#define DHT_RECORDS_PER_TICK 8 /* held records offered while the table is small */

static void on_dht_timer(uv_timer_t *t);

static void draw_secret(void *ctx, uint8_t *buf, size_t len) {
  (void)ctx;
  randombytes_buf(buf, len);
}

static bool admit_hook(void *ctx, const pd_dht_admit_info_t *in) {
  pd_daemon_t *d = ctx;
  return pd_node_dht_admit_entry(d->node, in, dmn_wall_now());
}

static void found_hook(void *ctx, const uint8_t *bytes, size_t len, const pd_record_t *rec,
                       const pd_netaddr_t *from, int64_t now_ms) {
  pd_daemon_t *d = ctx;
  (void)pd_node_dht_found(d->node, bytes, len, rec, from, now_ms / 1000);
}

static bool want_more(void *ctx) {
  pd_daemon_t *d = ctx;
  return pd_node_dht_wants_more(d->node);
}

void dmn_dht_flush(pd_daemon_t *d) {
  if (!d->dht) return;
  pd_dht_action_t a;
  while (pd_dht_poll(d->dht, &a)) {
    if (a.kind == PD_DHT_A_SEND) {
      struct sockaddr_storage ss;
      if (pd_netaddr_to_sockaddr(&a.to, &ss, sizeof ss) < 0) continue;
      uv_buf_t b = uv_buf_init((char *)a.bytes, (unsigned)a.len);
      /* Datagrams are best effort: a full socket buffer drops one, as the
       * network would. */
      int rc = uv_udp_try_send(&d->dht_sock, &b, 1, (const struct sockaddr *)&ss);
      if (rc < 0) d->dht_send_errors++;
    } else if (a.kind == PD_DHT_A_LOOKUP_DONE) {
      dmn_complete_lookup(d, a.lookup_id);
    }
  }
  if (d->stopping) return;
  int64_t next = pd_dht_next_deadline_ms(d->dht);
  if (next == INT64_MAX) {
    uv_timer_stop(&d->dht_timer);
  } else {
    int64_t wait = next - dmn_wall_now_ms();
    if (wait < 0) wait = 0;
    if (wait > 3600000) wait = 3600000;
    uv_timer_start(&d->dht_timer, on_dht_timer, (uint64_t)wait, 0);
  }
}

/* Offer the engine nodes to contact while its table is small: the
 * bootnodes again (at most every 30 s), records the node holds. */
static void bootstrap(pd_daemon_t *d, int64_t now_ms) {
  if (pd_dht_passive(d->dht)) return;
  const pd_dht_table_t *t = pd_dht_table(d->dht);
  if (pd_dht_table_size(t) >= PD_DHTT_K) return;
  if (now_ms >= d->dht_next_boot) {
    d->dht_next_boot = now_ms + 30000;
    for (size_t i = 0; i < d->cfg.nbootnodes; i++) {
      const pd_bootnode_t *b = &d->cfg.bootnodes[i];
      (void)pd_dht_add_node(d->dht, b->id, &b->ep, b->rec_len ? b->rec : NULL, b->rec_len, now_ms);
    }
  }
  /* the saved book: peerds it holds with their node ids (a tried one was
   * connected to), drawn at random; a record fetched after the first PONG */
  pd_book_t *book = pd_node_book(d->node);
  for (int k = 0; k < 4; k++) {
    uint32_t id = pd_book_random_bucket(book, k % 2 ? PD_TABLE_NEW : PD_TABLE_TRIED);
    pd_book_info_t e;
    if (id == PD_BOOK_NO_ID || pd_book_info(book, id, &e) != 0 || !e.has_node_id || e.service_only)
      continue;
    (void)pd_dht_add_node(d->dht, e.node_id, &e.addr, NULL, 0, now_ms);
  }
  pd_node_dht_offer_records(d->node, &d->dht_rec_cursor, DHT_RECORDS_PER_TICK, now_ms);
}

/* The 1 s tick: our record if it changed, the bootstrap, the engine. */
void dmn_dht_tick(pd_daemon_t *d) {
  if (!d->dht || d->stopping) return;
  int64_t now = dmn_wall_now_ms();
  pd_node_dht_sync_record(d->node);
  bootstrap(d, now);
  pd_dht_on_tick(d->dht, now);
  dmn_dht_flush(d);
}

/* The engine's own deadlines (timeouts, revalidation, lookups): only its
 * work, not the bootstrap's once-a-second offers. */
static void on_dht_timer(uv_timer_t *t) {
  pd_daemon_t *d = t->data;
  if (!d->dht || d->stopping) return;
  pd_dht_on_tick(d->dht, dmn_wall_now_ms());
  dmn_dht_flush(d);
}

static void on_alloc(uv_handle_t *h, size_t suggested, uv_buf_t *buf) {
  (void)suggested;
  pd_daemon_t *d = h->data;
  *buf = uv_buf_init((char *)d->dht_buf, sizeof d->dht_buf);
}

static void on_recv(uv_udp_t *u, ssize_t nread, const uv_buf_t *buf, const struct sockaddr *addr,
                    unsigned flags) {
  pd_daemon_t *d = u->data;
  if (nread <= 0 || !addr || !d->dht || d->stopping) return;
  pd_netaddr_t from;
  if (pd_netaddr_from_sockaddr(addr, &from) != 0) return;
  if (flags & UV_UDP_PARTIAL) {
    d->dht_truncated++; /* longer than any packet: refused as malformed below */
  }
  pd_dht_on_packet(d->dht, &from, (const uint8_t *)buf->base, (size_t)nread, dmn_wall_now_ms());
  dmn_dht_flush(d); /* records it learnt are the dialer's at its next tick */
}

/* dht.json: {"format":"peerd-dht","version":1,"nodes":[{"record":B64},...]} */
static void load_table(pd_daemon_t *d, int64_t now_ms) {
  char path[PATH_CAP];
  int pl = snprintf(path, sizeof path, "%s/%s", d->cfg.data_dir, PD_DAEMON_DHT_FILE);
  if (pl < 0 || (size_t)pl >= sizeof path) return;
  char *buf = NULL;
  size_t len = 0;
  int rc = pd_fs_read_all(path, DHT_MAX_FILE, &buf, &len);
  if (rc == -ENOENT) return;
  if (rc < 0) {
    LOG(d, PD_LOG_WARN, "cannot read the DHT table; starting without it", "path", path, "error",
        pd_strerror(rc));
    return;
  }
  json_error_t jerr;
  json_t *doc = json_loadb(buf, len, 0, &jerr);
  free(buf);
  json_t *list = doc ? json_object_get(doc, "nodes") : NULL;
  const char *fmt = doc ? json_string_value(json_object_get(doc, "format")) : NULL;
  if (!doc || !json_is_array(list) || !fmt || strcmp(fmt, "peerd-dht") != 0 ||
      json_integer_value(json_object_get(doc, "version")) != 1) {
    json_decref(doc);
    char aside[PATH_CAP];
    int mrc = pd_fs_move_aside(d->cfg.data_dir, PD_DAEMON_DHT_FILE, dmn_wall_now(), aside, sizeof aside);
    LOG(d, PD_LOG_WARN, "DHT table file malformed; moved aside, starting without it", "path", path,
        "moved_to", mrc == 0 ? aside : "(could not move)");
    return;
  }
  size_t i, used = 0, bad = 0;
  json_t *e;
  json_array_foreach(list, i, e) {
    if (used >= DHT_LOAD_MAX) break;
    const char *b64 = json_string_value(json_object_get(e, "record"));
    uint8_t rec[PD_RECORD_MAX];
    size_t rl = 0;
    pd_record_t r;
    pd_netaddr_t ep;
    if (!b64 || strlen(b64) > 2 * PD_RECORD_MAX ||
        sodium_base642bin(rec, sizeof rec, b64, strlen(b64), NULL, &rl, NULL,
                          sodium_base64_VARIANT_ORIGINAL) != 0 ||
        pd_record_decode(rec, rl, d->cfg.network, NULL, &r, NULL) != PD_RECORD_OK ||
        !pd_dht_record_endpoint(&r, &ep)) {
      bad++;
      continue;
    }
    if (pd_dht_add_node(d->dht, r.id, &ep, rec, rl, now_ms) == 0) used++;
  }
  json_decref(doc);
  char nu[16], nb[16];
  dmn_fmt_u64(nu, sizeof nu, used);
  dmn_fmt_u64(nb, sizeof nb, bad);
  LOG(d, PD_LOG_INFO, "DHT table loaded: contacting its nodes", "path", path, "nodes", nu, "refused", nb);
}

void dmn_dht_save(pd_daemon_t *d) {
  if (!d->dht) return;
  const pd_dht_table_t *t = pd_dht_table(d->dht);
  json_t *arr = json_array();
  int rc = arr ? 0 : PD_ENOMEM;
  size_t n = 0;
  for (unsigned b = 1; rc == 0 && b <= PD_DHTT_BUCKETS; b++) {
    size_t bn = 0;
    const pd_dht_entry_t *e = pd_dht_table_bucket(t, b, &bn);
    for (size_t k = bn; k-- > 0;) { /* most recently seen first */
      char b64[sodium_base64_ENCODED_LEN(PD_RECORD_MAX, sodium_base64_VARIANT_ORIGINAL)];
      if (e[k].rec_len > PD_RECORD_MAX) continue;
      sodium_bin2base64(b64, sizeof b64, e[k].rec, e[k].rec_len, sodium_base64_VARIANT_ORIGINAL);
      json_t *x = json_pack("{ss}", "record", b64);
      if (!x || json_array_append_new(arr, x) != 0) {
        rc = PD_ENOMEM;
        break;
      }
      n++;
    }
  }
  if (rc == 0) rc = dmn_save_list(d, PD_DAEMON_DHT_FILE, "peerd-dht", "nodes", arr);
  json_decref(arr);
  char nn[16];
  dmn_fmt_u64(nn, sizeof nn, n);
  if (rc == 0)
    LOG(d, PD_LOG_DEBUG, "DHT table saved", "nodes", nn);
  else
    LOG(d, PD_LOG_WARN, "cannot save the DHT table", "error", pd_strerror(rc));
}

int dmn_start_dht(pd_daemon_t *d) {
  if (!d->cfg.dht) {
    LOG(d, PD_LOG_INFO, "DHT off (--dht off)");
    return 0;
  }
  if (!d->cfg.p2p) {
    LOG(d, PD_LOG_INFO, "DHT off: it runs beside the overlay (--p2p off)");
    return 0;
  }
  struct sockaddr_storage ss;
  const char *why = NULL;
  if (d->cfg.dht_listen) {
    if (pd_daemon_parse_listen(d->cfg.dht_listen, &ss, sizeof ss, &why) < 0) {
      LOG(d, PD_LOG_ERROR, "bad --dht-listen", "value", d->cfg.dht_listen, "error", why ? why : "?");
      return -1;
    }
  } else {
    /* the overlay's bound address, its port included, over UDP */
    socklen_t sl = sizeof ss;
    if (uv_tcp_getsockname(&d->p2p_server, (struct sockaddr *)&ss, (int *)&sl) != 0) {
      LOG(d, PD_LOG_ERROR, "DHT: cannot read the overlay's listen address");
      return -1;
    }
  }
  uv_udp_init(&d->loop, &d->dht_sock);
  d->dht_sock.data = d;
  d->dht_open = true;
  int rc = uv_udp_bind(&d->dht_sock, (const struct sockaddr *)&ss, 0);
  if (rc != 0) {
    char a[80];
    dmn_fmt_sockaddr(&ss, a, sizeof a);
    LOG(d, PD_LOG_ERROR, "DHT: cannot bind UDP", "addr", a, "error", uv_strerror(rc));
    return -1;
  }
  struct sockaddr_storage bound;
  int bl = sizeof bound;
  uv_udp_getsockname(&d->dht_sock, (struct sockaddr *)&bound, &bl);
  pd_netaddr_from_sockaddr(&bound, &d->dht_bound);
  /* A DHT port other than the overlay's goes into the record (attr "dht"). */
  if (d->self && d->dht_bound.port != d->p2p_bound.port) {
    char port[8];
    snprintf(port, sizeof port, "%u", (unsigned)d->dht_bound.port);
    if (pd_self_set_attr(d->self, PD_DHT_PORT_ATTR, port, dmn_wall_now_ms(), &why) < 0)
      LOG(d, PD_LOG_WARN, "DHT: cannot put its port into the record", "error", why ? why : "?");
  }
  pd_dht_config_t c;
  memset(&c, 0, sizeof c);
  c.self = &d->ident;
  c.network = d->cfg.network;
  c.secret_fn = draw_secret;
  c.admit = admit_hook;
  c.admit_ctx = d;
  c.found = found_hook;
  c.found_ctx = d;
  c.want_more = want_more;
  c.want_ctx = d;
  /* The dialer off (--max-outbound 0): the DHT answers, never asks. */
  c.passive = d->cfg.max_outbound == 0;
  int64_t now = dmn_wall_now_ms();
  d->dht = pd_dht_new(&c, &d->rng, now);
  if (!d->dht) {
    LOG(d, PD_LOG_ERROR, "DHT: cannot create the engine");
    return -1;
  }
  pd_node_dht_sync_record(d->node);
  rc = uv_udp_recv_start(&d->dht_sock, on_alloc, on_recv);
  if (rc != 0) {
    LOG(d, PD_LOG_ERROR, "DHT: cannot receive", "error", uv_strerror(rc));
    return -1;
  }
  uv_timer_init(&d->loop, &d->dht_timer);
  d->dht_timer.data = d;
  d->dht_timer_open = true;
  pd_node_set_dht(d->node, d->dht);
  if (!c.passive) load_table(d, now);
  char a[80], nb[16];
  dmn_fmt_sockaddr(&bound, a, sizeof a);
  dmn_fmt_u64(nb, sizeof nb, d->cfg.nbootnodes);
  LOG(d, PD_LOG_INFO, "DHT started", "listen", a, "bootnodes", nb, "mode",
      c.passive ? "answer-only (--max-outbound 0)" : "active");
  dmn_dht_tick(d);
  return 0;
}

void dmn_stop_dht(pd_daemon_t *d) {
  if (d->dht) {
    dmn_dht_save(d);
    pd_node_set_dht(d->node, NULL);
  }
  if (d->dht_timer_open) {
    uv_close((uv_handle_t *)&d->dht_timer, dmn_on_handle_closed);
    d->dht_timer_open = false;
  }
  if (d->dht_open) {
    uv_close((uv_handle_t *)&d->dht_sock, dmn_on_handle_closed);
    d->dht_open = false;
  }
}

void dmn_free_dht(pd_daemon_t *d) {
  pd_dht_free(d->dht);
  d->dht = NULL;
}
