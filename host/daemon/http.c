/* http — incremental HTTP/1.1 request parsing (see http.h). */
#include "http.h"

#include <limits.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>

#include <http_parser.h>

#include "err.h"

#define HDR_NAME_MAX 32
#define HDR_VALUE_MAX PD_HTTP_HDR_MAX
#define PIPELINE_SLACK (64 * 1024)

enum last_cb { LAST_NONE, LAST_FIELD, LAST_VALUE };

struct pd_http {
  http_parser parser; /* first: callbacks get a pointer to it */
  http_parser_settings settings;
  size_t max_header;
  size_t max_body;

  char *in; /* received, not yet parsed */
  size_t in_len;
  size_t in_cap;

  /* request under construction */
  bool in_message;
  bool ready;
  char *target;
  size_t target_len;
  size_t target_cap;
  char *body;
  size_t body_len;
  size_t body_cap;
  size_t header_bytes;
  enum last_cb last;
  char name[HDR_NAME_MAX + 1];
  size_t name_len;
  bool name_long;
  char value[HDR_VALUE_MAX + 1];
  size_t value_len;
  bool value_long;
  bool expect_continue;
  bool want_continue;
  pd_http_request_t req;

  /* sticky error */
  int err_rc;
  int err_status;
  const char *err_msg;
};

static int fail(pd_http_t *h, int rc, int status, const char *msg) {
  if (h->err_rc == 0) {
    h->err_rc = rc;
    h->err_status = status;
    h->err_msg = msg;
  }
  return -1;
}

static void reset_request(pd_http_t *h) {
  free(h->target);
  free(h->body);
  h->target = NULL;
  h->target_len = h->target_cap = 0;
  h->body = NULL;
  h->body_len = h->body_cap = 0;
  h->header_bytes = 0;
  h->last = LAST_NONE;
  h->name_len = h->value_len = 0;
  h->name_long = h->value_long = false;
  h->expect_continue = false;
  h->want_continue = false;
  h->in_message = false;
  h->ready = false;
  memset(&h->req, 0, sizeof h->req);
}

/* Grow *buf (NUL-terminated) to hold need bytes + NUL. */
static int reserve(char **buf, size_t *cap, size_t need) {
  if (need + 1 <= *cap) return 0;
  size_t ncap = *cap ? *cap : 256;
  while (ncap < need + 1) ncap *= 2;
  char *nb = realloc(*buf, ncap);
  if (!nb) return PD_ENOMEM;
  *buf = nb;
  *cap = ncap;
  return 0;
}

static int count_header(pd_http_t *h, size_t n) {
  h->header_bytes += n;
  if (h->header_bytes > h->max_header) {
    return fail(h, PD_ETOOBIG, 431, "request header section too large");
  }
  return 0;
}

static int on_message_begin(http_parser *p) {
  pd_http_t *h = (pd_http_t *)p;
  h->in_message = true;
  return 0;
}

static int on_url(http_parser *p, const char *at, size_t len) {
  pd_http_t *h = (pd_http_t *)p;
  if (count_header(h, len)) return -1;
  if (reserve(&h->target, &h->target_cap, h->target_len + len)) {
    return fail(h, PD_ENOMEM, 500, "out of memory");
  }
  memcpy(h->target + h->target_len, at, len);
  h->target_len += len;
  h->target[h->target_len] = '\0';
  return 0;
}

/* Keep a header the API's access checks read. */
static void keep_header(pd_http_t *h, const char *name, bool *has, char *dst) {
  size_t nl = strlen(name);
  if (h->name_long || h->name_len != nl || strncasecmp(h->name, name, nl) != 0) return;
  *has = true;
  dst[0] = '\0';
  if (h->value_long) return;
  size_t vl = h->value_len;
  while (vl > 0 && (h->value[vl - 1] == ' ' || h->value[vl - 1] == '\t')) vl--;
  memcpy(dst, h->value, vl);
  dst[vl] = '\0';
}

static void header_done(pd_http_t *h) {
  keep_header(h, "host", &h->req.has_host, h->req.host);
  keep_header(h, "origin", &h->req.has_origin, h->req.origin);
  keep_header(h, "content-type", &h->req.has_content_type, h->req.content_type);
  keep_header(h, "authorization", &h->req.has_authorization, h->req.authorization);
  keep_header(h, "last-event-id", &h->req.has_last_event_id, h->req.last_event_id);
  if (!h->name_long && !h->value_long && h->name_len == 6 &&
      strncasecmp(h->name, "expect", 6) == 0) {
    /* trim trailing blanks (http_parser strips leading ones) */
    size_t vl = h->value_len;
    while (vl > 0 && (h->value[vl - 1] == ' ' || h->value[vl - 1] == '\t')) vl--;
    if (vl == 12 && strncasecmp(h->value, "100-continue", 12) == 0) h->expect_continue = true;
  }
  h->name_len = h->value_len = 0;
  h->name_long = h->value_long = false;
}

static int on_header_field(http_parser *p, const char *at, size_t len) {
  pd_http_t *h = (pd_http_t *)p;
  if (count_header(h, len + (h->last != LAST_FIELD ? 4 : 0))) return -1;
  if (h->last == LAST_VALUE) header_done(h);
  h->last = LAST_FIELD;
  if (h->name_len + len > HDR_NAME_MAX) {
    h->name_long = true;
  } else {
    memcpy(h->name + h->name_len, at, len);
    h->name_len += len;
  }
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  pd_http_t *h = (pd_http_t *)p;
  if (count_header(h, len)) return -1;
  h->last = LAST_VALUE;
  if (h->value_len + len > HDR_VALUE_MAX) {
    h->value_long = true;
  } else {
    memcpy(h->value + h->value_len, at, len);
    h->value_len += len;
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  pd_http_t *h = (pd_http_t *)p;
  if (h->last == LAST_VALUE) header_done(h);
  if (!h->target) {
    if (reserve(&h->target, &h->target_cap, 0)) return fail(h, PD_ENOMEM, 500, "out of memory");
    h->target[0] = '\0';
  }
  bool chunked = (p->flags & F_CHUNKED) != 0;
  bool has_len = (p->flags & F_CONTENTLENGTH) != 0 && p->content_length != ULLONG_MAX;
  if (has_len && p->content_length > h->max_body) {
    return fail(h, PD_ETOOBIG, 413, "request body too large");
  }
  if (has_len && p->content_length > 0) {
    if (reserve(&h->body, &h->body_cap, (size_t)p->content_length)) {
      return fail(h, PD_ENOMEM, 500, "out of memory");
    }
  }
  if (h->expect_continue && (chunked || (has_len && p->content_length > 0)) &&
      (p->http_major > 1 || (p->http_major == 1 && p->http_minor >= 1))) {
    h->want_continue = true;
  }
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  pd_http_t *h = (pd_http_t *)p;
  if (h->body_len + len > h->max_body) {
    return fail(h, PD_ETOOBIG, 413, "request body too large");
  }
  if (reserve(&h->body, &h->body_cap, h->body_len + len)) {
    return fail(h, PD_ENOMEM, 500, "out of memory");
  }
  memcpy(h->body + h->body_len, at, len);
  h->body_len += len;
  h->body[h->body_len] = '\0';
  return 0;
}

static int on_chunk_header(http_parser *p) {
  pd_http_t *h = (pd_http_t *)p;
  /* content_length holds the size of the chunk about to arrive */
  if (p->content_length > h->max_body || h->body_len + p->content_length > h->max_body) {
    return fail(h, PD_ETOOBIG, 413, "request body too large");
  }
  return 0;
}

static int on_message_complete(http_parser *p) {
  pd_http_t *h = (pd_http_t *)p;
  if (!h->body) {
    if (reserve(&h->body, &h->body_cap, 0)) return fail(h, PD_ENOMEM, 500, "out of memory");
    h->body[0] = '\0';
  }
  h->req.method = http_method_str((enum http_method)p->method);
  h->req.target = h->target;
  h->req.target_len = h->target_len;
  h->req.body = h->body;
  h->req.body_len = h->body_len;
  h->req.keep_alive = http_should_keep_alive(p) != 0 && !p->upgrade;
  h->req.http_major = p->http_major;
  h->req.http_minor = p->http_minor;
  h->want_continue = false;
  h->in_message = false;
  h->ready = true;
  http_parser_pause(p, 1); /* hand out one request at a time */
  return 0;
}

int pd_http_create(pd_http_t **out, size_t max_header, size_t max_body) {
  pd_http_t *h = calloc(1, sizeof *h);
  if (!h) return PD_ENOMEM;
  h->max_header = max_header ? max_header : PD_HTTP_MAX_HEADER;
  h->max_body = max_body;
  http_parser_init(&h->parser, HTTP_REQUEST);
  http_parser_settings_init(&h->settings);
  h->settings.on_message_begin = on_message_begin;
  h->settings.on_url = on_url;
  h->settings.on_header_field = on_header_field;
  h->settings.on_header_value = on_header_value;
  h->settings.on_headers_complete = on_headers_complete;
  h->settings.on_body = on_body;
  h->settings.on_chunk_header = on_chunk_header;
  h->settings.on_message_complete = on_message_complete;
  *out = h;
  return 0;
}

void pd_http_destroy(pd_http_t *h) {
  if (!h) return;
  reset_request(h);
  free(h->in);
  free(h);
}

int pd_http_feed(pd_http_t *h, const char *data, size_t len) {
  if (h->err_rc) return h->err_rc;
  if (len == 0) return 0;
  if (h->in_len + len > h->max_header + h->max_body + PIPELINE_SLACK) {
    fail(h, PD_ETOOBIG, 413, "too much pipelined data");
    return h->err_rc;
  }
  if (h->in_len + len > h->in_cap) {
    size_t ncap = h->in_cap ? h->in_cap : 4096;
    while (ncap < h->in_len + len) ncap *= 2;
    char *nb = realloc(h->in, ncap);
    if (!nb) return PD_ENOMEM;
    h->in = nb;
    h->in_cap = ncap;
  }
  memcpy(h->in + h->in_len, data, len);
  h->in_len += len;
  return 0;
}

static void consume(pd_http_t *h, size_t n) {
  if (n > h->in_len) n = h->in_len;
  memmove(h->in, h->in + n, h->in_len - n);
  h->in_len -= n;
  if (h->in_len == 0 && h->in_cap > PIPELINE_SLACK) {
    free(h->in);
    h->in = NULL;
    h->in_cap = 0;
  }
}

static int map_errno(pd_http_t *h, enum http_errno e) {
  switch (e) {
  case HPE_HEADER_OVERFLOW:
    fail(h, PD_ETOOBIG, 431, "request header section too large");
    break;
  case HPE_INVALID_TRANSFER_ENCODING:
    fail(h, PD_EINVAL, 501, "unsupported transfer encoding");
    break;
  case HPE_INVALID_METHOD:
    fail(h, PD_EINVAL, 400, "invalid HTTP method");
    break;
  case HPE_INVALID_VERSION:
    fail(h, PD_EINVAL, 400, "invalid HTTP version");
    break;
  case HPE_INVALID_URL:
    fail(h, PD_EINVAL, 400, "invalid request target");
    break;
  case HPE_INVALID_CONTENT_LENGTH:
    fail(h, PD_EINVAL, 400, "invalid Content-Length");
    break;
  case HPE_UNEXPECTED_CONTENT_LENGTH:
    fail(h, PD_EINVAL, 400, "Content-Length with Transfer-Encoding");
    break;
  case HPE_INVALID_CHUNK_SIZE:
    fail(h, PD_EINVAL, 400, "invalid chunk size");
    break;
  case HPE_INVALID_HEADER_TOKEN:
    fail(h, PD_EINVAL, 400, "invalid character in header");
    break;
  default:
    fail(h, PD_EINVAL, 400, "malformed HTTP request");
    break;
  }
  return h->err_rc;
}

int pd_http_next(pd_http_t *h) {
  if (h->ready) reset_request(h);
  if (h->err_rc) return h->err_rc;
  if (h->in_len == 0) return 0;
  size_t n = http_parser_execute(&h->parser, &h->settings, h->in, h->in_len);
  enum http_errno e = HTTP_PARSER_ERRNO(&h->parser);
  if (e == HPE_PAUSED) {
    http_parser_pause(&h->parser, 0);
    consume(h, n);
    if (h->ready) return 1;
    return 0; /* not reached: we pause only on a complete message */
  }
  if (e != HPE_OK) {
    h->in_len = 0;
    if (h->err_rc) return h->err_rc; /* set by a callback */
    return map_errno(h, e);
  }
  consume(h, n);
  return 0;
}

const pd_http_request_t *pd_http_request(const pd_http_t *h) { return h->ready ? &h->req : NULL; }

bool pd_http_take_continue(pd_http_t *h) {
  bool w = h->want_continue;
  h->want_continue = false;
  return w;
}

bool pd_http_busy(const pd_http_t *h) { return h->in_message || h->in_len > 0; }
size_t pd_http_pending(const pd_http_t *h) { return h->in_len; }

int pd_http_error_status(const pd_http_t *h) { return h->err_rc ? h->err_status : 0; }
const char *pd_http_error_message(const pd_http_t *h) { return h->err_rc ? h->err_msg : ""; }

const char *pd_http_reason(int status) {
  switch (status) {
  case 100: return "Continue";
  case 200: return "OK";
  case 201: return "Created";
  case 202: return "Accepted";
  case 204: return "No Content";
  case 400: return "Bad Request";
  case 403: return "Forbidden";
  case 404: return "Not Found";
  case 405: return "Method Not Allowed";
  case 408: return "Request Timeout";
  case 409: return "Conflict";
  case 411: return "Length Required";
  case 413: return "Payload Too Large";
  case 414: return "URI Too Long";
  case 415: return "Unsupported Media Type";
  case 422: return "Unprocessable Entity";
  case 429: return "Too Many Requests";
  case 431: return "Request Header Fields Too Large";
  case 500: return "Internal Server Error";
  case 501: return "Not Implemented";
  case 503: return "Service Unavailable";
  case 505: return "HTTP Version Not Supported";
  default: return "Unknown";
  }
}

int pd_http_format_head(char *buf, size_t cap, int status, const char *content_type,
                        size_t body_len, bool keep_alive) {
  int n;
  if (content_type) {
    n = snprintf(buf, cap,
                 "HTTP/1.1 %d %s\r\nContent-Type: %s\r\nContent-Length: %zu\r\n"
                 "Connection: %s\r\n\r\n",
                 status, pd_http_reason(status), content_type, body_len,
                 keep_alive ? "keep-alive" : "close");
  } else {
    n = snprintf(buf, cap, "HTTP/1.1 %d %s\r\nContent-Length: %zu\r\nConnection: %s\r\n\r\n",
                 status, pd_http_reason(status), body_len, keep_alive ? "keep-alive" : "close");
  }
  if (n < 0 || (size_t)n >= cap) return PD_ETOOBIG;
  return n;
}

int pd_http_format_stream_head(char *buf, size_t cap, const char *content_type) {
  int n = snprintf(buf, cap,
                   "HTTP/1.1 200 OK\r\nContent-Type: %s\r\nCache-Control: no-store\r\n"
                   "Connection: close\r\nX-Accel-Buffering: no\r\n\r\n",
                   content_type ? content_type : "text/event-stream");
  if (n < 0 || (size_t)n >= cap) return PD_ETOOBIG;
  return n;
}
