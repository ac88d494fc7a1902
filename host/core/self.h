/* self — this node's own record (sans-I/O).
 *
 * Owns: what the node declares about itself (named service endpoints, each
 * with its own host or "the announced address"; attributes), the announced
 * address (given with --external, else the concrete listen address, else
 * learnt from what outbound peers observe: the IP that at least 3 of the
 * last 8 distinct outbound peers agree on, as discv5 and libp2p's identify
 * do), and the current signed record: every change that alters the content
 * re-signs it with a higher sequence (pd_record_next_seq).
 * Does not own: the record's format (record), the key (identity), where the
 * record is sent (the handshake, PEX, the API), the clock (now_ms is handed
 * in), CLI or JSON parsing.
 */
#ifndef PD_SELF_H
#define PD_SELF_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "identity.h"
#include "netaddr.h"
#include "record.h"

#define PD_SELF_OBSERVERS 8   /* observations kept (one per outbound peer) */
#define PD_SELF_AGREE 3       /* peers that must agree on an IP */

typedef struct pd_self pd_self_t;

typedef struct pd_self_config {
  const char *network;           /* copied */
  const pd_identity_t *identity; /* borrowed; outlives the self */
  const pd_record_auth_t *auth;  /* NULL: ed25519; copied */
  bool has_listen;               /* the overlay listens: discovery endpoint */
  pd_netaddr_t listen;           /* bound address; an unspecified IP = wildcard */
  bool has_external;             /* --external: the announced IP, never learnt */
  pd_netaddr_t external;         /* port ignored */
} pd_self_config_t;

/* A declared service: addr's IP is used when has_host, else the announced
 * address with addr's port. */
typedef struct pd_self_service {
  char name[PD_RECORD_NAME_MAX + 1];
  bool has_host;
  pd_netaddr_t addr;
} pd_self_service_t;

/* Builds and signs the first record (sequence pd_record_next_seq(0, now_ms)).
 * PD_EINVAL (*why), PD_ENOMEM. */
int pd_self_create(pd_self_t **out, const pd_self_config_t *cfg, int64_t now_ms, const char **why);
void pd_self_destroy(pd_self_t *s);

/* Declare (add or replace) a service; has_host false: the announced address.
 * Re-signs when the record changes. 0, PD_EINVAL/PD_EFULL (*why). */
int pd_self_set_service(pd_self_t *s, const char *name, bool has_host, const pd_netaddr_t *addr,
                        int64_t now_ms, const char **why);
int pd_self_del_service(pd_self_t *s, const char *name, int64_t now_ms);
/* value NULL removes. */
int pd_self_set_attr(pd_self_t *s, const char *key, const char *value, int64_t now_ms,
                     const char **why);
/* Replace every service and attribute at once (PUT /v1/self): all or
 * nothing; one re-sign. */
int pd_self_replace(pd_self_t *s, const pd_self_service_t *svc, size_t nsvc,
                    const pd_record_attr_t *attrs, size_t nattrs, int64_t now_ms, const char **why);

/* An outbound peer (peer_id) saw us at `observed` (its port is ignored).
 * Returns true when the announced address changed (the record was
 * re-signed). Ignored with --external or a concrete listen address. */
bool pd_self_observed(pd_self_t *s, const uint8_t peer_id[PD_NODE_ID_LEN],
                      const pd_netaddr_t *observed, int64_t now_ms);

/* The announced IP (port 0) if known. */
bool pd_self_announced(const pd_self_t *s, pd_netaddr_t *ip);
/* Where the announced address came from: "external", "listen", "observed"
 * or "unknown". */
const char *pd_self_announced_source(const pd_self_t *s);

const pd_record_t *pd_self_record(const pd_self_t *s);
const uint8_t *pd_self_bytes(const pd_self_t *s, size_t *len);
/* The declared services (as given, before the announced address is
 * applied) and how many. */
const pd_self_service_t *pd_self_services(const pd_self_t *s, size_t *n);
/* Parse "[HOST:]PORT" (HOST an IP literal, IPv6 in brackets): *has_host
 * false and only out->port set for a bare port. 0 or PD_EINVAL (*why). */
int pd_self_parse_endpoint(const char *s, bool *has_host, pd_netaddr_t *out, const char **why);
/* Parse "NAME=[HOST:]PORT" (--service). */
int pd_self_parse_service(const char *s, pd_self_service_t *out, const char **why);

/* How many times the record was re-signed since create. */
uint64_t pd_self_changes(const pd_self_t *s);

#endif
