/* apistats — how long the control API takes to answer.
 *
 * Owns: peerd_api_request_seconds{route}, a histogram per route pattern
 * (the static label api.c puts in the response; "other" for requests no
 * route served), observed by apiserver.c from a complete request to its
 * response being handed to the socket (DNS, saves and reloads included;
 * for an event stream, its head), and its part of /metrics.
 * Does not own: the timing itself (apiserver.c reads uv_hrtime), rendering
 * (metrics.c).
 */
#include <string.h>

#include "daemon_int.h"

/* Seconds: 100 us .. 10 s. */
static const double bounds[DMN_API_BUCKETS] = {0.0001, 0.0005, 0.001, 0.0025, 0.005, 0.01,
                                               0.025,  0.05,   0.1,   0.5,    1,     10};

void dmn_api_observe(pd_daemon_t *d, const char *route, double seconds) {
  size_t r = 0;
  while (r < d->api_nroutes && d->api_routes[r] != route) r++;
  if (r == d->api_nroutes && route && r >= DMN_API_ROUTES - 1) {
    /* more patterns than expected: the last row is kept for "other" */
    route = NULL;
    for (r = 0; r < d->api_nroutes && d->api_routes[r]; r++) {
    }
  }
  if (r == d->api_nroutes) d->api_routes[d->api_nroutes++] = route;
  if (seconds < 0) seconds = 0;
  for (size_t b = 0; b < DMN_API_BUCKETS; b++) {
    if (seconds <= bounds[b]) d->api_buckets[r * DMN_API_BUCKETS + b]++;
  }
  d->api_count[r]++;
  d->api_sum[r] += seconds;
}

void dmn_api_stats_metrics(pd_daemon_t *d, pd_metrics_net_t *out) {
  out->api_nroutes = d->api_nroutes;
  out->api_nbounds = DMN_API_BUCKETS;
  out->api_routes = d->api_routes;
  out->api_bounds = bounds;
  out->api_buckets = d->api_buckets;
  out->api_count = d->api_count;
  out->api_sum = d->api_sum;
}
