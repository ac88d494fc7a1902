/* client — peerctl's HTTP/1.1 exchange with the control API.
 *
 * Owns: the API address (--api HOST:PORT, [v6]:PORT or unix:PATH), one
 * blocking connection per request (TCP or unix socket) with a connect and
 * read timeout, the request (Host, bearer token, JSON body), the response
 * through http-parser (status, Content-Type, body; chunked or not), and a
 * streaming mode that hands body bytes to a callback as they arrive
 * (server-sent events).
 * Does not own: what the bytes mean (peerctl.c parses JSON with jansson),
 * the command line.
 */
#ifndef PD_CTL_CLIENT_H
#define PD_CTL_CLIENT_H

#include <stdbool.h>
#include <stddef.h>

#define PD_CTL_DEFAULT_API "127.0.0.1:7412"

/* Failures that mean "the daemon could not be reached" (exit 3). */
enum {
  PD_CTL_OK = 0,
  PD_CTL_EADDR = -1,     /* a bad --api value (usage) */
  PD_CTL_ECONNECT = -2,  /* connect failed (refused, no such socket, timeout) */
  PD_CTL_EIO = -3,       /* send/receive failed, or the peer closed early */
  PD_CTL_ETIMEOUT = -4,  /* no (complete) answer in time */
  PD_CTL_EPROTO = -5,    /* not an HTTP response */
  PD_CTL_ENOMEM = -6,
};

typedef struct pd_ctl_api {
  bool is_unix;
  char path[108];      /* unix socket path */
  char host[64];       /* IP literal (no brackets) */
  char port[8];
  char host_header[80];
} pd_ctl_api_t;

/* Parse --api. 0 or PD_CTL_EADDR with *why. */
int pd_ctl_api_parse(const char *s, pd_ctl_api_t *out, const char **why);

typedef struct pd_ctl_response {
  int status;
  char content_type[128];
  char *body; /* NUL-terminated; malloc'd */
  size_t body_len;
} pd_ctl_response_t;

/* Body bytes as they arrive (streaming); return false to stop reading. */
typedef bool (*pd_ctl_body_fn)(void *ud, const char *data, size_t len);
/* Called once the response head is in (status known), before any body. */
typedef void (*pd_ctl_head_fn)(void *ud, int status, const char *content_type);

typedef struct pd_ctl_request {
  const char *method;
  const char *path;       /* with query string, percent-encoded */
  const char *body;       /* JSON or NULL */
  const char *token;      /* bearer token or NULL */
  const char *last_event_id; /* "Last-Event-ID" header or NULL */
  int timeout_ms;         /* connect, and each wait for bytes; <= 0: none after connect */
  /* Streaming: body bytes go to on_body instead of resp->body. idle_ms > 0
   * ends the read (PD_CTL_OK) after that long without bytes. */
  pd_ctl_head_fn on_head;
  pd_ctl_body_fn on_body;
  void *ud;
  int idle_ms;
} pd_ctl_request_t;

/* One exchange. 0 with resp filled (free with pd_ctl_response_free), or a
 * PD_CTL_E* code with *why (a static or strerror text). */
int pd_ctl_call(const pd_ctl_api_t *api, const pd_ctl_request_t *req, pd_ctl_response_t *resp,
                const char **why);
void pd_ctl_response_free(pd_ctl_response_t *resp);

#endif
