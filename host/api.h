/* api — the control API as a pure function: an HTTP request in, a response
 * (and at most one action for the driver) out.
 *
 * Owns: routing, request validation (JSON via jansson, query strings,
 * limits), the JSON responses, the Prometheus text exposition, the
 * {"error": "..."} shape of every 4xx/5xx. Documented in docs/api.md.
 * Does not own: sockets or HTTP framing (http.c, daemon.c) and never touches
 * a clock or a file: `now` comes in; a request that needs the driver (save
 * the book now) comes back with an action, and the driver calls
 * pd_api_complete() with the outcome.
 */
#ifndef PD_API_H
#define PD_API_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define PD_API_MAX_BODY (1024 * 1024) /* bytes; larger bodies get 413 */
#define PD_API_MAX_ADDRS 1000         /* addresses per POST /v1/book */
#define PD_API_MAX_DIAL 1000          /* n per GET /v1/dial */

typedef struct pd_api_request {
  const char *method; /* "GET", "POST", ... */
  const char *target; /* path with query string, as received (percent-encoded) */
  const char *body;   /* may be NULL when body_len == 0 */
  size_t body_len;
} pd_api_request_t;

enum pd_api_action {
  PD_API_ACTION_NONE = 0,
  PD_API_ACTION_SAVE = 1, /* save the book, then call pd_api_complete */
};

typedef struct pd_api_response {
  int status;
  const char *content_type; /* static string */
  char *body;               /* malloc'd; pd_api_response_free frees it */
  size_t body_len;
  enum pd_api_action action;
} pd_api_response_t;

/* Handle one request at now. Always fills resp (status >= 200). */
void pd_api_handle(pd_node_t *n, const pd_api_request_t *req, int64_t now, pd_api_response_t *resp);
/* Finish a response whose action the driver has performed (the node's status
 * already records the outcome). Replaces resp's body and status. */
void pd_api_complete(pd_node_t *n, int64_t now, pd_api_response_t *resp);
void pd_api_response_free(pd_api_response_t *resp);

/* Build an error response {"error": msg} with the given status. */
void pd_api_error(pd_api_response_t *resp, int status, const char *msg);

#endif
