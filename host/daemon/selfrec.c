/* selfrec — the daemon's side of this node's record.
 *
 * Owns: building the record at start from the flags (--service NAME=
 * [HOST:]PORT, --attr KEY=VALUE, --external HOST) and the bound overlay
 * address, handing it to the node (GET/PUT /v1/self, the handshake), and
 * logging what it says.
 * Does not own: the record's rules and re-signing (core: self.c, record.c),
 * the API (core: api.c).
 */
#include <stdio.h>
#include <string.h>

#include "daemon_int.h"
#include "err.h"
#include "self.h"

int dmn_start_self(pd_daemon_t *d) {
  pd_self_config_t sc;
  memset(&sc, 0, sizeof sc);
  sc.network = d->cfg.network;
  sc.identity = &d->ident;
  if (d->cfg.p2p && d->p2p_bound.port != 0) {
    sc.has_listen = true;
    sc.listen = d->p2p_bound; /* a wildcard's IP is unspecified: learnt later */
  }
  sc.has_external = d->cfg.has_external;
  sc.external = d->cfg.external;
  int64_t now_ms = dmn_wall_now_ms();
  const char *why = NULL;
  int rc = pd_self_create(&d->self, &sc, now_ms, &why);
  if (rc == 0) {
    rc = pd_self_replace(d->self, d->cfg.services, d->cfg.nservices, d->cfg.attrs, d->cfg.nattrs,
                         now_ms, &why);
  }
  if (rc < 0) {
    LOG(d, PD_LOG_ERROR, "cannot build the node record", "error", pd_strerror(rc), "reason",
        why ? why : "?");
    return -1;
  }
  pd_node_set_self(d->node, d->self);
  const pd_record_t *r = pd_self_record(d->self);
  char seq[24], ns[8], disc[PD_ADDR_STRLEN] = "none", ann[PD_ADDR_STRLEN] = "unknown";
  snprintf(seq, sizeof seq, "%llu", (unsigned long long)r->seq);
  snprintf(ns, sizeof ns, "%u", (unsigned)r->nservices);
  if (r->has_discovery) pd_netaddr_format(&r->discovery, disc, sizeof disc);
  pd_netaddr_t ip;
  if (pd_self_announced(d->self, &ip)) pd_netaddr_format_ip(&ip, ann, sizeof ann);
  LOG(d, PD_LOG_INFO, "node record", "seq", seq, "discovery", disc, "services", ns, "announced",
      ann, "announced_from", pd_self_announced_source(d->self));
  return 0;
}
