/* api — the control API as a pure function: an HTTP request in, a response
 * (and at most one action for the driver) out.
 *
 * Owns: routing, request validation (JSON via jansson, query strings,
 * limits), the JSON responses, the Prometheus text exposition, the
 * {"error": "..."} shape of every 4xx/5xx. Documented in docs/api.md.
 * Does not own: sockets or HTTP framing (http.c, daemon.c) and never touches
 * a clock or a file: `now` comes in; a request that needs the driver (save
 * the book now) comes back with an action, and the driver calls
 * pd_api_complete() with the outcome (save the book, resolve host names,
 * reload the policy directory).
 */
#ifndef PD_API_H
#define PD_API_H

#include <stddef.h>
#include <stdint.h>

#include "node.h"

#define PD_API_MAX_BODY (1024 * 1024) /* bytes; larger bodies get 413 */
#define PD_API_MAX_ADDRS 1000         /* addresses per POST /v1/book */
#define PD_API_MAX_DIAL 1000          /* n per GET /v1/dial */
#define PD_API_MAX_NAMES 16           /* host names to resolve per POST /v1/book */
#define PD_API_MAX_PEX PD_BOOK_GETADDR_MAX /* n per GET /v1/pex */

typedef struct pd_api_request {
  const char *method; /* "GET", "POST", ... */
  const char *target; /* path with query string, as received (percent-encoded) */
  const char *body;   /* may be NULL when body_len == 0 */
  size_t body_len;
  /* Access (checked before anything else; docs/api.md "Access"). Headers
   * as received, NULL when absent: */
  const char *host;          /* must be an IP literal or localhost (no DNS rebinding) */
  const char *origin;        /* when present, its host as for Host (no cross-site calls) */
  const char *content_type;  /* a body must be application/json */
  const char *authorization; /* "Bearer TOKEN" when token is set */
  const char *token;         /* the driver's bearer token; NULL: none required */
  const char *last_event_id; /* Last-Event-ID (GET /v1/events/stream); NULL when absent */
} pd_api_request_t;

enum pd_api_action {
  PD_API_ACTION_NONE = 0,
  PD_API_ACTION_SAVE = 1,    /* save the book, then call pd_api_complete */
  PD_API_ACTION_RESOLVE = 2, /* resolve each pending host name (DNS), hand the
                                results to pd_api_resolved, then call
                                pd_api_complete */
  PD_API_ACTION_RELOAD = 3,  /* POST /v1/policy/reload: read the policy
                                directory afresh, load it with
                                pd_node_policy_load (or record a read failure
                                with pd_node_policy_load_failed), then call
                                pd_api_complete */
  PD_API_ACTION_CHECK = 5,   /* POST /v1/policy/check: read the policy files of
                                pd_api_pending_dir (as for a reload), hand them
                                to pd_api_policy_checked, then call
                                pd_api_complete */
  PD_API_ACTION_STREAM = 4,  /* GET /v1/events/stream: the request is valid;
                                read pd_api_stream_params, then either call
                                pd_api_complete (counted as 200: keep the
                                connection open and write server-sent events,
                                status and content_type as given, no body) or
                                answer something else (e.g. 503) yourself */
  PD_API_ACTION_PROMOTE = 6, /* POST /v1/policy/promote: the shadow set is
                                live already (pd_node_shadow_promote); the
                                live policy directory is now the shadow's
                                (pd_node_config(n)->policy_dir) and there is
                                no shadow directory: point the watchers
                                there, then call pd_api_complete (the body
                                is final) */
  PD_API_ACTION_LOOKUP = 7,  /* GET /v1/dht/lookup, GET /v1/nodes/ID: a DHT
                                lookup was started (pd_api_pending_lookup
                                names it; 0: none, there is no DHT); call
                                pd_api_complete once the DHT reports it done
                                (PD_DHT_A_LOOKUP_DONE), or at once for 0 */
};

/* State a response keeps while the driver performs its action (opaque). */
typedef struct pd_api_pending pd_api_pending_t;

typedef struct pd_api_response {
  int status;
  const char *content_type; /* static string */
  char *body;               /* malloc'd; pd_api_response_free frees it */
  size_t body_len;
  enum pd_api_action action;
  pd_api_pending_t *pending; /* owned; freed by pd_api_response_free */
  /* The route that served the request, as a pattern ("/v1/book/{addr}"):
   * a static string for the request-latency metric's label; NULL when no
   * route did (404, 405, refused by the access rules, malformed). */
  const char *route;
} pd_api_response_t;

/* Handle one request at now. Always fills resp (status >= 200). */
void pd_api_handle(pd_node_t *n, const pd_api_request_t *req, int64_t now, pd_api_response_t *resp);
/* Finish a response whose action the driver has performed (the node's status
 * already records the outcome). Replaces resp's body and status. */
void pd_api_complete(pd_node_t *n, int64_t now, pd_api_response_t *resp);
void pd_api_response_free(pd_api_response_t *resp);

/* PD_API_ACTION_RESOLVE: how many host names wait for resolution, and the
 * i-th one (host name without port; *port gets the port to use). */
size_t pd_api_pending_names(const pd_api_response_t *resp);
const char *pd_api_pending_name(const pd_api_response_t *resp, size_t i, uint16_t *port);
/* Report the i-th name's outcome: n addresses (ports already set), or
 * error != NULL (the resolver's message). Call once per name. */
void pd_api_resolved(pd_api_response_t *resp, size_t i, const pd_netaddr_t *addrs, size_t n,
                     const char *error);

/* PD_API_ACTION_CHECK: the directory to read (as the client gave it), and
 * the files read from it (read_error != NULL: the directory could not be
 * read; files ignored). Loads them into a scratch policy host (the set in
 * force is not touched) and keeps the report for pd_api_complete. */
const char *pd_api_pending_dir(const pd_api_response_t *resp);
void pd_api_policy_checked(pd_node_t *n, pd_api_response_t *resp, const pd_policy_file_t *files,
                           size_t nfiles, const char *read_error, int64_t now);
/* PD_API_ACTION_STREAM: the kinds asked for (a mask of enum pd_event_kind
 * bits: ?kinds=a,b, every kind without it) and where to replay from:
 * *has_since true when the client gave Last-Event-ID (it wins) or ?since=SEQ,
 * then events with seq > *since still held are sent first. false when resp
 * is not a stream. */
bool pd_api_stream_params(const pd_api_response_t *resp, uint32_t *kinds, bool *has_since,
                          uint64_t *since);

/* PD_API_ACTION_LOOKUP: the DHT lookup the response waits for (0: none). */
uint64_t pd_api_pending_lookup(const pd_api_response_t *resp);

/* The access rules alone (Host, Origin, token, Content-Type): 0, or the
 * refusal's status (403, 401, 415) and *why. pd_api_handle applies them. */
int pd_api_check_access(const pd_api_request_t *req, const char **why);

/* Build an error response {"error": msg} with the given status. */
void pd_api_error(pd_api_response_t *resp, int status, const char *msg);

#endif
