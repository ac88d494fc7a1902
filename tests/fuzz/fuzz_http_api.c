/* fuzz_http_api — libFuzzer target for the control API's request path:
 * the bytes of one HTTP connection through the request parser
 * (host/daemon/http.c), and every request it hands out through
 * pd_api_handle (host/core/api.c) against a small in-memory node (an empty
 * book, default config, a node record of our own; no policy files), as
 * apiserver.c does without the sockets.
 * Input: byte 0 picks the chunk size the bytes arrive in (0: all at once)
 * and whether a bearer token is required ("Bearer fuzz"); the rest is what
 * the client sends. At most 16 requests per input.
 * A request's driver action is completed as a driver with no DNS, no files
 * and no disk would: names fail to resolve, a reload or check fails to
 * read, a save is not recorded, a stream is accepted.
 * Oracle beyond the sanitizers: every response has a status in 200..599 and
 * a body; a JSON body parses, and a 4xx/5xx one carries "error"; an HTTP
 * error has a 4xx/5xx status. The node is made afresh for each input.
 * docs/fuzzing.md. */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include <jansson.h>

#include "api.h"
#include "err.h"
#include "http.h"
#include "self.h"

#define T0 1700000000
#define MAX_REQUESTS 16

static void check_response(const pd_api_response_t *rs) {
  if (rs->status < 200 || rs->status > 599 || !rs->body || !rs->content_type) abort();
  if (strncmp(rs->content_type, "application/json", 16) != 0) return;
  json_error_t e;
  json_t *j = json_loadb(rs->body, rs->body_len, 0, &e);
  if (!j || !json_is_object(j)) abort();
  if (rs->status >= 400 && !json_is_string(json_object_get(j, "error"))) abort();
  json_decref(j);
}

static void serve(pd_node_t *n, const pd_http_request_t *r, const char *token, int64_t now) {
  pd_api_request_t rq = {
      .method = r->method,
      .target = r->target,
      .body = r->body,
      .body_len = r->body_len,
      .host = r->has_host ? r->host : NULL,
      .origin = r->has_origin ? r->origin : NULL,
      .content_type = r->has_content_type ? r->content_type : NULL,
      .authorization = r->has_authorization ? r->authorization : NULL,
      .token = token,
      .last_event_id = r->has_last_event_id ? r->last_event_id : NULL,
  };
  pd_api_response_t rs;
  pd_api_handle(n, &rq, now, &rs);
  switch (rs.action) {
  case PD_API_ACTION_NONE: break;
  case PD_API_ACTION_RESOLVE:
    for (size_t i = 0; i < pd_api_pending_names(&rs); i++) {
      uint16_t port = 0;
      if (!pd_api_pending_name(&rs, i, &port)) abort();
      pd_api_resolved(&rs, i, NULL, 0, "fuzz: no DNS");
    }
    pd_api_complete(n, now, &rs);
    break;
  case PD_API_ACTION_RELOAD:
    pd_node_policy_load_failed(n, "fuzz: no policy files", now);
    pd_api_complete(n, now, &rs);
    break;
  case PD_API_ACTION_CHECK:
    (void)pd_api_pending_dir(&rs);
    pd_api_policy_checked(n, &rs, NULL, 0, "fuzz: no files", now);
    pd_api_complete(n, now, &rs);
    break;
  case PD_API_ACTION_STREAM: {
    uint32_t kinds = 0;
    bool has_since = false;
    uint64_t since = 0;
    if (!pd_api_stream_params(&rs, &kinds, &has_since, &since)) abort();
    pd_api_complete(n, now, &rs);
    break;
  }
  default: pd_api_complete(n, now, &rs); break;
  }
  if (rs.action != PD_API_ACTION_NONE) abort();
  if (getenv("PEERD_FUZZ_DEBUG")) /* what a seed reaches: PEERD_FUZZ_DEBUG=1 fuzz_http_api FILE */
    fprintf(stderr, "%s %s -> %d %.*s\n", r->method, r->target, rs.status,
            (int)(rs.body_len > 120 ? 120 : rs.body_len), rs.body ? rs.body : "");
  if (rs.body) check_response(&rs);
  char head[512];
  if (pd_http_format_head(head, sizeof head, rs.status, rs.content_type, rs.body_len, r->keep_alive) < 0)
    abort();
  pd_api_response_free(&rs);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);
int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size) {
  if (size < 1) return 0;
  size_t chunk = data[0] & 63;
  const char *token = (data[0] & 64) ? "fuzz" : NULL;
  data++;
  size--;

  pd_rng_t rng;
  pd_rng_seed(&rng, 7);
  uint8_t key[PD_BOOK_KEY_LEN] = {0};
  pd_book_t *book = NULL;
  if (pd_book_create(&book, key, &rng, 0) != 0) abort();
  pd_node_config_t cfg = {.allow_private = false, .save_interval = 300, .default_ban_secs = 3600};
  int64_t now = T0;
  pd_node_t *node = NULL;
  if (pd_node_create(&node, &cfg, book, &rng, now) != 0) abort();

  static pd_identity_t id; /* a constant: derived once, only read afterwards */
  static bool have_id;
  if (!have_id) {
    uint8_t seed[32];
    memset(seed, 3, sizeof seed);
    if (pd_identity_from_seed(&id, seed) != 0) abort();
    have_id = true;
  }
  pd_self_config_t sc = {.network = "peerd", .identity = &id, .has_listen = true};
  if (pd_netaddr_parse("127.9.0.1:7411", 0, &sc.listen, NULL, NULL, NULL) != 0) abort();
  pd_self_t *self = NULL;
  if (pd_self_create(&self, &sc, now * 1000, NULL) != 0) abort();
  pd_node_set_self(node, self);

  pd_http_t *h = NULL;
  if (pd_http_create(&h, 0, PD_API_MAX_BODY) != 0) abort();
  size_t off = 0;
  int served = 0;
  while (off < size && served < MAX_REQUESTS) {
    size_t n = chunk ? chunk : size - off;
    if (n > size - off) n = size - off;
    if (pd_http_feed(h, (const char *)data + off, n) != 0) break;
    off += n;
    int rc = 0;
    while (served < MAX_REQUESTS && (rc = pd_http_next(h)) == 1) {
      const pd_http_request_t *r = pd_http_request(h);
      if (!r || !r->method || !r->target || !r->body) abort();
      (void)pd_http_take_continue(h);
      serve(node, r, token, now);
      served++;
      now++;
    }
    if (rc < 0) {
      int st = pd_http_error_status(h);
      if (st < 400 || st > 599 || !pd_http_error_message(h)) abort();
      if (getenv("PEERD_FUZZ_DEBUG")) fprintf(stderr, "HTTP error %d %s\n", st, pd_http_error_message(h));
      break;
    }
  }
  (void)pd_http_busy(h);
  (void)pd_http_pending(h);
  pd_http_destroy(h);

  pd_node_set_self(node, NULL);
  pd_self_destroy(self);
  pd_node_destroy(node);
  return 0;
}
