/* log — the driver's logfmt log on stderr.
 *
 * Owns: pd_log and pd_log_level_parse (daemon.h), and dmn_log_kv (a line
 * from an array of key/value pairs: the audit events, audit.c): one line per event,
 * ts=... level=... msg=... key=value, values quoted and escaped when they
 * need it, or (--log-format json) one JSON object per line; timestamps UTC
 * with milliseconds; numbers and socket addresses as log text (dmn_fmt_*).
 * Does not own: what is logged or when (each part logs its own events
 * through LOG, daemon_int.h), the level in force (the configuration).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include <jansson.h>

#include "daemon_int.h"

static const char *const level_names[] = {"debug", "info", "warn", "error"};

int pd_log_level_parse(const char *s) {
  if (!s) return -1;
  for (int i = 0; i < 4; i++) {
    if (strcmp(s, level_names[i]) == 0) return i;
  }
  return -1;
}

/* Append s to the line, quoted and escaped when it needs to be. */
static void log_value(char *line, size_t cap, size_t *off, const char *s) {
  bool quote = (*s == '\0');
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch <= ' ' || ch == '"' || ch == '=' || ch == '\\' || ch == 0x7f) quote = true;
  }
  size_t o = *off;
#define PUT(ch_)                        \
  do {                                  \
    if (o + 1 < cap) line[o++] = (ch_); \
  } while (0)
  if (quote) PUT('"');
  for (const char *p = s; *p; p++) {
    unsigned char ch = (unsigned char)*p;
    if (ch == '"' || ch == '\\') {
      PUT('\\');
      PUT((char)ch);
    } else if (ch == '\n') {
      PUT('\\');
      PUT('n');
    } else if (ch < ' ' || ch == 0x7f) {
      PUT('?');
    } else {
      PUT((char)ch);
    }
  }
  if (quote) PUT('"');
#undef PUT
  line[o < cap ? o : cap - 1] = '\0';
  *off = o;
}

/* "2026-12-03T19:55:01.123Z" (UTC, milliseconds). */
static void timestamp(char *buf, size_t cap) {
  struct timespec ts;
  clock_gettime(CLOCK_REALTIME, &ts);
  struct tm tm;
  gmtime_r(&ts.tv_sec, &tm);
  size_t n = strftime(buf, cap, "%Y-%m-%dT%H:%M:%S", &tm);
  snprintf(buf + n, cap - n, ".%03ldZ", ts.tv_nsec / 1000000);
}

/* One JSON object per line (jansson encodes: every value a string). */
static void log_json(int level, const char *ts, const char *msg, const char *const *kv,
                     size_t npairs) {
  json_t *o = json_object();
  if (!o) return;
  json_object_set_new(o, "ts", json_string(ts));
  json_object_set_new(o, "level", json_string(level_names[level]));
  json_object_set_new(o, "msg", json_string(msg));
  for (size_t i = 0; i < npairs; i++) {
    const char *k = kv[2 * i], *v = kv[2 * i + 1];
    json_t *jv = json_string(v ? v : "");
    if (!jv) jv = json_string("?"); /* not UTF-8 */
    json_object_set_new(o, k, jv);
  }
  char *line = json_dumps(o, JSON_COMPACT | JSON_PRESERVE_ORDER);
  json_decref(o);
  if (!line) return;
  fputs(line, stderr);
  fputc('\n', stderr);
  fflush(stderr);
  free(line);
}

/* One line: msg and npairs key/value pairs (kv[2i], kv[2i+1]). */
static void log_line(int opts, int level, const char *msg, const char *const *kv, size_t npairs) {
  int min_level = opts & 0xff;
  if (level < min_level) return;
  if (level < 0 || level > 3) level = PD_LOG_ERROR;
  char ts[40];
  timestamp(ts, sizeof ts);
  if (opts & PD_LOG_JSON) {
    log_json(level, ts, msg ? msg : "", kv, npairs);
    return;
  }
  char line[2048];
  size_t off = (size_t)snprintf(line, sizeof line, "ts=%s level=%s msg=", ts, level_names[level]);
  log_value(line, sizeof line, &off, msg ? msg : "");
  for (size_t i = 0; i < npairs; i++) {
    const char *k = kv[2 * i], *v = kv[2 * i + 1];
    if (off + 2 < sizeof line) {
      int n = snprintf(line + off, sizeof line - off, " %s=", k);
      if (n > 0) off += (size_t)n;
      if (off >= sizeof line) off = sizeof line - 1;
    }
    log_value(line, sizeof line, &off, v ? v : "");
  }
  if (off + 1 >= sizeof line) off = sizeof line - 2;
  line[off++] = '\n';
  line[off] = '\0';
  fputs(line, stderr);
  fflush(stderr);
}

#define LOG_MAX_PAIRS 32

void pd_log(int opts, int level, const char *msg, ...) {
  if (level < (opts & 0xff)) return;
  const char *kv[2 * LOG_MAX_PAIRS];
  size_t n = 0;
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    if (n < LOG_MAX_PAIRS) {
      kv[2 * n] = k;
      kv[2 * n + 1] = v;
      n++;
    }
  }
  va_end(ap);
  log_line(opts, level, msg, kv, n);
}

void dmn_log_kv(const pd_daemon_t *d, int level, const char *msg, const char *const *kv,
                size_t npairs) {
  log_line(d->cfg.log_level | (d->cfg.log_json ? PD_LOG_JSON : 0), level, msg, kv, npairs);
}

void dmn_fmt_i64(char *buf, size_t cap, int64_t v) { snprintf(buf, cap, "%lld", (long long)v); }
void dmn_fmt_u64(char *buf, size_t cap, uint64_t v) {
  snprintf(buf, cap, "%llu", (unsigned long long)v);
}

void dmn_fmt_sockaddr(const struct sockaddr_storage *ss, char *buf, size_t cap) {
  char ip[INET6_ADDRSTRLEN] = "?";
  int port = 0;
  if (ss->ss_family == AF_INET) {
    const struct sockaddr_in *a = (const struct sockaddr_in *)ss;
    uv_ip4_name(a, ip, sizeof ip);
    port = ntohs(a->sin_port);
    snprintf(buf, cap, "%s:%d", ip, port);
  } else if (ss->ss_family == AF_INET6) {
    const struct sockaddr_in6 *a = (const struct sockaddr_in6 *)ss;
    uv_ip6_name(a, ip, sizeof ip);
    port = ntohs(a->sin6_port);
    snprintf(buf, cap, "[%s]:%d", ip, port);
  } else {
    snprintf(buf, cap, "?");
  }
}
