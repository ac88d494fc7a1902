/* log — the driver's logfmt log on stderr.
 *
 * Owns: pd_log and pd_log_level_parse (daemon.h): one line per event,
 * ts=... level=... msg=... key=value, values quoted and escaped when they
 * need it; numbers and socket addresses as log text (dmn_fmt_*).
 * Does not own: what is logged or when (each part logs its own events
 * through LOG, daemon_int.h), the level in force (the configuration).
 */
#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdarg.h>
#include <stdio.h>
#include <string.h>
#include <time.h>

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

void pd_log(int min_level, int level, const char *msg, ...) {
  if (level < min_level) return;
  if (level < 0 || level > 3) level = PD_LOG_ERROR;
  char line[2048];
  size_t off = 0;
  time_t t = time(NULL);
  struct tm tm;
  gmtime_r(&t, &tm);
  off = strftime(line, sizeof line, "ts=%Y-%m-%dT%H:%M:%SZ", &tm);
  off += (size_t)snprintf(line + off, sizeof line - off, " level=%s msg=", level_names[level]);
  log_value(line, sizeof line, &off, msg ? msg : "");
  va_list ap;
  va_start(ap, msg);
  for (;;) {
    const char *k = va_arg(ap, const char *);
    if (!k) break;
    const char *v = va_arg(ap, const char *);
    if (off + 2 < sizeof line) {
      int n = snprintf(line + off, sizeof line - off, " %s=", k);
      if (n > 0) off += (size_t)n;
      if (off >= sizeof line) off = sizeof line - 1;
    }
    log_value(line, sizeof line, &off, v ? v : "");
  }
  va_end(ap);
  if (off + 1 >= sizeof line) off = sizeof line - 2;
  line[off++] = '\n';
  line[off] = '\0';
  fputs(line, stderr);
  fflush(stderr);
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
