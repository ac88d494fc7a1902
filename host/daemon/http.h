/* http — incremental HTTP/1.1 request parsing for the control API (sans-I/O).
 *
 * Owns: turning the bytes of one connection into complete requests (method,
 * target, body, keep-alive) over libhttp-parser, with limits: header section
 * <= max_header bytes (431), body <= max_body bytes (413, decided from
 * Content-Length before the body arrives, or while a chunked body grows),
 * malformed input -> 400 (501 for a Transfer-Encoding it cannot decode).
 * Pipelined requests are handed out one at a time: bytes after a complete
 * request stay buffered until the caller asks for the next one. Chunked
 * request bodies are decoded. Also owns the response head text
 * (status line, Content-Type, Content-Length, Connection), and that of a
 * streamed response (server-sent events: no length, ends at close).
 * Does not own: sockets, timers or what a request means (api.c, apiserver.c).
 * No clock, no I/O, no logging.
 *
 * Use: pd_http_feed() the bytes read, then call pd_http_next() until it
 * returns 0 (needs more bytes) or < 0 (error: reply pd_http_error_status()
 * and close). When it returns 1 a request is ready in pd_http_request(); it
 * stays valid until the next pd_http_next() call. After an error the
 * connection is done: further calls return the same error.
 */
#ifndef PD_HTTP_H
#define PD_HTTP_H

#include <stdbool.h>
#include <stddef.h>

#define PD_HTTP_MAX_HEADER (16 * 1024) /* default header section limit, bytes */
#define PD_HTTP_HDR_MAX 255            /* Host, Origin, Content-Type, Authorization kept */

typedef struct pd_http_request {
  const char *method; /* "GET", "POST", ... (static string) */
  char *target;       /* NUL-terminated request target as received */
  size_t target_len;
  char *body; /* NUL-terminated (the NUL is not counted); "" when empty */
  size_t body_len;
  bool keep_alive; /* the client wants the connection kept open */
  int http_major;
  int http_minor;
  /* Headers the API's access checks read (trailing blanks trimmed; a value
   * longer than its buffer is kept empty with has_* true, so it fails any
   * comparison). */
  bool has_host, has_origin, has_content_type, has_authorization;
  char host[PD_HTTP_HDR_MAX + 1];
  char origin[PD_HTTP_HDR_MAX + 1];
  char content_type[PD_HTTP_HDR_MAX + 1];
  char authorization[PD_HTTP_HDR_MAX + 1];
  /* Last-Event-ID (an event stream's reconnect point), kept the same way. */
  bool has_last_event_id;
  char last_event_id[PD_HTTP_HDR_MAX + 1];
} pd_http_request_t;

typedef struct pd_http pd_http_t;

/* Create a parser for one connection. max_header: header section bytes
 * (0 = PD_HTTP_MAX_HEADER); max_body: body bytes. 0 or PD_ENOMEM. */
int pd_http_create(pd_http_t **out, size_t max_header, size_t max_body);
void pd_http_destroy(pd_http_t *h);

/* Append bytes received. 0, or PD_ETOOBIG when more than max_header +
 * max_body + 64 KiB are waiting unparsed (the peer keeps pipelining while a
 * request is being served: close it), or PD_ENOMEM. */
int pd_http_feed(pd_http_t *h, const char *data, size_t len);

/* Parse what is buffered. 1: a request is ready (pd_http_request); 0: need
 * more bytes; < 0: error (PD_EINVAL malformed, PD_ETOOBIG limit), with
 * pd_http_error_status()/pd_http_error_message() saying what to answer. */
int pd_http_next(pd_http_t *h);

/* The request that pd_http_next() returned 1 for, or NULL. */
const pd_http_request_t *pd_http_request(const pd_http_t *h);

/* True once per request when the client sent "Expect: 100-continue", its
 * headers were accepted and its body has not fully arrived: the driver then
 * writes "HTTP/1.1 100 Continue\r\n\r\n". Clears the flag. */
bool pd_http_take_continue(pd_http_t *h);

/* True when the parser is in the middle of a request (some of it received). */
bool pd_http_busy(const pd_http_t *h);
/* Bytes buffered but not yet parsed (pipelined requests). */
size_t pd_http_pending(const pd_http_t *h);

/* After an error: the HTTP status to answer (400, 413, 431, 501) and a
 * short static message. */
int pd_http_error_status(const pd_http_t *h);
const char *pd_http_error_message(const pd_http_t *h);

/* Reason phrase for a status ("OK", "Not Found", ...; "Unknown" otherwise). */
const char *pd_http_reason(int status);

/* Write a response head into buf: status line, Content-Type (if not NULL),
 * Content-Length, Connection: keep-alive|close, blank line. Returns its
 * length, or PD_ETOOBIG when cap is too small. */
int pd_http_format_head(char *buf, size_t cap, int status, const char *content_type,
                        size_t body_len, bool keep_alive);

/* The head of a 200 response whose body is a stream that ends when the
 * connection closes (server-sent events): Content-Type, Cache-Control:
 * no-store, Connection: close, X-Accel-Buffering: no (proxies must not
 * buffer it), no Content-Length. Length or PD_ETOOBIG. */
int pd_http_format_stream_head(char *buf, size_t cap, const char *content_type);

#endif
