/* self — this node's own record. See self.h. */
#include "self.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

typedef struct observation {
  uint8_t peer[PD_NODE_ID_LEN];
  pd_netaddr_t ip; /* port 0 */
} observation_t;

struct pd_self {
  pd_self_config_t cfg;
  char network[PD_RECORD_NETWORK_MAX + 1];
  pd_record_auth_t auth;
  pd_self_service_t svc[PD_RECORD_MAX_SERVICES];
  size_t nsvc;
  pd_record_t attrs; /* holds the declared attributes, sorted and checked */
  bool has_learnt;
  pd_netaddr_t learnt;
  observation_t obs[PD_SELF_OBSERVERS];
  size_t nobs, obs_next;
  pd_record_t rec; /* the current signed record */
  uint8_t bytes[PD_RECORD_MAX];
  size_t len;
  uint64_t changes;
};

static pd_netaddr_t ip_only(const pd_netaddr_t *a) {
  pd_netaddr_t r = *a;
  r.port = 0;
  return r;
}

bool pd_self_announced(const pd_self_t *s, pd_netaddr_t *ip) {
  const pd_netaddr_t *a = NULL;
  if (s->cfg.has_external) a = &s->cfg.external;
  else if (s->cfg.has_listen && pd_netaddr_is_valid(&s->cfg.listen)) a = &s->cfg.listen;
  else if (s->has_learnt) a = &s->learnt;
  if (a && ip) *ip = ip_only(a);
  return a != NULL;
}

const char *pd_self_announced_source(const pd_self_t *s) {
  if (s->cfg.has_external) return "external";
  if (s->cfg.has_listen && pd_netaddr_is_valid(&s->cfg.listen)) return "listen";
  return s->has_learnt ? "observed" : "unknown";
}

/* The record the declarations give now (unsigned; seq, key, id unset). */
static int build(const pd_self_t *s, const pd_self_service_t *svc, size_t nsvc,
                 const pd_record_t *attrs, pd_record_t *r, const char **why) {
  int rc = pd_record_init(r, s->network, 0, why);
  if (rc < 0) return rc;
  pd_netaddr_t ann;
  bool known = pd_self_announced(s, &ann);
  if (s->cfg.has_listen && known) {
    r->has_discovery = true;
    r->discovery = ann;
    r->discovery.port = s->cfg.listen.port;
  }
  for (size_t i = 0; i < nsvc; i++) {
    pd_netaddr_t a = svc[i].addr;
    if (!svc[i].has_host) {
      if (!known) continue; /* appears once the announced address is known */
      uint16_t port = a.port;
      a = ann;
      a.port = port;
    }
    rc = pd_record_set_service(r, svc[i].name, &a, why);
    if (rc < 0) return rc;
  }
  r->nattrs = attrs->nattrs;
  memcpy(r->attrs, attrs->attrs, sizeof r->attrs);
  return 0;
}

static bool same_content(const pd_record_t *a, const pd_record_t *b) {
  pd_record_t x = *a, y = *b;
  x.seq = y.seq = 0;
  memset(x.sig, 0, sizeof x.sig);
  memset(y.sig, 0, sizeof y.sig);
  memset(x.pubkey, 0, sizeof x.pubkey);
  memset(y.pubkey, 0, sizeof y.pubkey);
  memset(x.id, 0, sizeof x.id);
  memset(y.id, 0, sizeof y.id);
  return memcmp(&x, &y, sizeof x) == 0;
}

/* Rebuild from (svc, attrs); when the content differs (or force), sign it
 * with the next sequence and adopt svc/attrs. All or nothing. */
static int commit(pd_self_t *s, const pd_self_service_t *svc, size_t nsvc, const pd_record_t *attrs,
                  int64_t now_ms, bool force, const char **why) {
  pd_record_t r;
  int rc = build(s, svc, nsvc, attrs, &r, why);
  if (rc < 0) return rc;
  if (!force && same_content(&r, &s->rec)) {
    if (svc != s->svc) {
      memmove(s->svc, svc, nsvc * sizeof *svc);
      s->nsvc = nsvc;
    }
    if (attrs != &s->attrs) s->attrs = *attrs;
    return 0;
  }
  r.seq = pd_record_next_seq(s->rec.seq, now_ms);
  uint8_t buf[PD_RECORD_MAX];
  size_t len = 0;
  rc = pd_record_sign(&r, s->cfg.identity, s->cfg.auth ? &s->auth : NULL, buf, sizeof buf, &len);
  if (rc < 0) {
    if (why) *why = rc == PD_ETOOBIG ? "the record would exceed 512 bytes" : "cannot sign the record";
    return rc;
  }
  if (svc != s->svc) {
    memmove(s->svc, svc, nsvc * sizeof *svc);
    s->nsvc = nsvc;
  }
  if (attrs != &s->attrs) s->attrs = *attrs;
  s->rec = r;
  memcpy(s->bytes, buf, len);
  s->len = len;
  if (!force) s->changes++;
  return 0;
}

int pd_self_create(pd_self_t **out, const pd_self_config_t *cfg, int64_t now_ms, const char **why) {
  if (why) *why = NULL;
  if (!out || !cfg || !cfg->identity || !cfg->network) return PD_EINVAL;
  pd_self_t *s = calloc(1, sizeof *s);
  if (!s) return PD_ENOMEM;
  s->cfg = *cfg;
  size_t nl = strnlen(cfg->network, sizeof s->network);
  if (nl >= sizeof s->network) nl = sizeof s->network - 1;
  memcpy(s->network, cfg->network, nl);
  s->cfg.network = s->network;
  if (cfg->auth) {
    s->auth = *cfg->auth;
    s->cfg.auth = &s->auth;
  }
  int rc = pd_record_init(&s->attrs, s->network, 0, why);
  if (rc == 0) rc = commit(s, s->svc, 0, &s->attrs, now_ms, true, why);
  if (rc < 0) {
    free(s);
    return rc;
  }
  *out = s;
  return 0;
}

void pd_self_destroy(pd_self_t *s) { free(s); }

static long find_svc(const pd_self_service_t *svc, size_t n, const char *name) {
  for (size_t i = 0; i < n; i++)
    if (strcmp(svc[i].name, name) == 0) return (long)i;
  return -1;
}

int pd_self_set_service(pd_self_t *s, const char *name, bool has_host, const pd_netaddr_t *addr,
                        int64_t now_ms, const char **why) {
  if (!s || !addr) return PD_EINVAL;
  if (!pd_record_name_ok(name)) {
    if (why) *why = "service name must be 1..16 of [a-z0-9._-], starting with a letter or digit";
    return PD_EINVAL;
  }
  if (addr->port == 0 || (has_host && !pd_netaddr_is_valid(addr))) {
    if (why) *why = "service endpoint needs a port and, when a host is given, a usable IP";
    return PD_EINVAL;
  }
  pd_self_service_t svc[PD_RECORD_MAX_SERVICES];
  memcpy(svc, s->svc, s->nsvc * sizeof *svc);
  size_t n = s->nsvc;
  long i = find_svc(svc, n, name);
  if (i < 0) {
    if (n == PD_RECORD_MAX_SERVICES) {
      if (why) *why = "a record has at most 8 services";
      return PD_EFULL;
    }
    i = (long)n++;
  }
  memset(&svc[i], 0, sizeof svc[i]);
  memcpy(svc[i].name, name, strlen(name));
  svc[i].has_host = has_host;
  svc[i].addr = *addr;
  return commit(s, svc, n, &s->attrs, now_ms, false, why);
}

int pd_self_del_service(pd_self_t *s, const char *name, int64_t now_ms) {
  if (!s || !name) return PD_EINVAL;
  long i = find_svc(s->svc, s->nsvc, name);
  if (i < 0) return PD_ENOENT;
  pd_self_service_t svc[PD_RECORD_MAX_SERVICES];
  size_t n = 0;
  for (size_t k = 0; k < s->nsvc; k++)
    if ((long)k != i) svc[n++] = s->svc[k];
  return commit(s, svc, n, &s->attrs, now_ms, false, NULL);
}

int pd_self_set_attr(pd_self_t *s, const char *key, const char *value, int64_t now_ms,
                     const char **why) {
  if (!s) return PD_EINVAL;
  pd_record_t attrs = s->attrs;
  int rc = pd_record_set_attr(&attrs, key, value, why);
  if (rc < 0) return rc;
  return commit(s, s->svc, s->nsvc, &attrs, now_ms, false, why);
}

int pd_self_replace(pd_self_t *s, const pd_self_service_t *svc, size_t nsvc,
                    const pd_record_attr_t *attrs, size_t nattrs, int64_t now_ms, const char **why) {
  if (!s || (nsvc && !svc) || (nattrs && !attrs)) return PD_EINVAL;
  if (nsvc > PD_RECORD_MAX_SERVICES || nattrs > PD_RECORD_MAX_ATTRS) {
    if (why) *why = "a record has at most 8 services and 8 attributes";
    return PD_EFULL;
  }
  pd_self_service_t next[PD_RECORD_MAX_SERVICES];
  for (size_t i = 0; i < nsvc; i++) {
    if (!pd_record_name_ok(svc[i].name) || svc[i].addr.port == 0 ||
        (svc[i].has_host && !pd_netaddr_is_valid(&svc[i].addr))) {
      if (why) *why = "a service needs a name of [a-z0-9._-], a port and, with a host, a usable IP";
      return PD_EINVAL;
    }
    if (find_svc(next, i, svc[i].name) >= 0) {
      if (why) *why = "a service name appears twice";
      return PD_EINVAL;
    }
    next[i] = svc[i];
  }
  pd_record_t a;
  int rc = pd_record_init(&a, s->network, 0, why);
  for (size_t i = 0; rc == 0 && i < nattrs; i++) {
    if (pd_record_attr(&a, attrs[i].key)) {
      if (why) *why = "an attribute key appears twice";
      return PD_EINVAL;
    }
    rc = pd_record_set_attr(&a, attrs[i].key, attrs[i].value, why);
  }
  if (rc < 0) return rc;
  return commit(s, next, nsvc, &a, now_ms, false, why);
}

bool pd_self_observed(pd_self_t *s, const uint8_t peer_id[PD_NODE_ID_LEN],
                      const pd_netaddr_t *observed, int64_t now_ms) {
  if (!s || !peer_id || !observed || !pd_netaddr_is_valid(observed)) return false;
  if (s->cfg.has_external || (s->cfg.has_listen && pd_netaddr_is_valid(&s->cfg.listen)))
    return false;
  /* One observation per peer: a peer seen again replaces its own. */
  size_t slot = s->nobs;
  for (size_t i = 0; i < s->nobs; i++)
    if (memcmp(s->obs[i].peer, peer_id, PD_NODE_ID_LEN) == 0) slot = i;
  if (slot == s->nobs) {
    if (s->nobs < PD_SELF_OBSERVERS) {
      s->nobs++;
    } else {
      slot = s->obs_next;
      s->obs_next = (s->obs_next + 1) % PD_SELF_OBSERVERS;
    }
  }
  memcpy(s->obs[slot].peer, peer_id, PD_NODE_ID_LEN);
  s->obs[slot].ip = ip_only(observed);
  /* The IP most observers agree on, if at least PD_SELF_AGREE do. */
  size_t best = 0;
  const pd_netaddr_t *pick = NULL;
  for (size_t i = 0; i < s->nobs; i++) {
    size_t c = 0;
    for (size_t k = 0; k < s->nobs; k++) c += pd_netaddr_equal(&s->obs[i].ip, &s->obs[k].ip);
    if (c > best) {
      best = c;
      pick = &s->obs[i].ip;
    }
  }
  if (!pick || best < PD_SELF_AGREE) return false;
  if (s->has_learnt && pd_netaddr_equal(&s->learnt, pick)) return false;
  pd_netaddr_t prev = s->learnt;
  bool had = s->has_learnt;
  s->learnt = *pick;
  s->has_learnt = true;
  if (commit(s, s->svc, s->nsvc, &s->attrs, now_ms, false, NULL) < 0) {
    s->learnt = prev;
    s->has_learnt = had;
    return false;
  }
  return true;
}

const pd_record_t *pd_self_record(const pd_self_t *s) { return s ? &s->rec : NULL; }

const uint8_t *pd_self_bytes(const pd_self_t *s, size_t *len) {
  if (!s) return NULL;
  if (len) *len = s->len;
  return s->bytes;
}

const pd_self_service_t *pd_self_services(const pd_self_t *s, size_t *n) {
  if (!s) return NULL;
  if (n) *n = s->nsvc;
  return s->svc;
}

uint64_t pd_self_changes(const pd_self_t *s) { return s ? s->changes : 0; }

int pd_self_parse_endpoint(const char *s, bool *has_host, pd_netaddr_t *out, const char **why) {
  if (!s || !has_host || !out) return PD_EINVAL;
  memset(out, 0, sizeof *out);
  bool digits = *s != '\0';
  for (const char *p = s; *p; p++) digits = digits && *p >= '0' && *p <= '9';
  if (digits) {
    unsigned long v = 0;
    for (const char *p = s; *p && v <= 65535; p++) v = v * 10 + (unsigned long)(*p - '0');
    if (v < 1 || v > 65535) {
      if (why) *why = "port must be 1..65535";
      return PD_EINVAL;
    }
    out->port = (uint16_t)v;
    *has_host = false;
    return 0;
  }
  const char *w = NULL;
  int rc = pd_netaddr_parse(s, 0, out, NULL, NULL, &w);
  if (rc < 0) {
    if (why) *why = w ? w : "expected [HOST:]PORT with HOST an IP address";
    return PD_EINVAL;
  }
  if (!pd_netaddr_is_valid(out) || out->port == 0) {
    if (why) *why = "the host must be a usable IP (not unspecified) and the port not 0";
    return PD_EINVAL;
  }
  *has_host = true;
  return 0;
}

int pd_self_parse_service(const char *s, pd_self_service_t *out, const char **why) {
  if (!s || !out) return PD_EINVAL;
  const char *eq = strchr(s, '=');
  size_t nl = eq ? (size_t)(eq - s) : 0;
  memset(out, 0, sizeof *out);
  if (!eq || nl < 1 || nl > PD_RECORD_NAME_MAX) {
    if (why) *why = "expected NAME=[HOST:]PORT with NAME 1..16 of [a-z0-9._-]";
    return PD_EINVAL;
  }
  memcpy(out->name, s, nl);
  if (!pd_record_name_ok(out->name)) {
    if (why) *why = "service name must be 1..16 of [a-z0-9._-], starting with a letter or digit";
    return PD_EINVAL;
  }
  return pd_self_parse_endpoint(eq + 1, &out->has_host, &out->addr, why);
}
