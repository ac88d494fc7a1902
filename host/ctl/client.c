/* client — peerctl's HTTP exchange with the control API. See client.h. */
#include "client.h"

#include <errno.h>
#include <fcntl.h>
#include <netdb.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include <http_parser.h>

#ifndef PEERD_VERSION
#define PEERD_VERSION "unknown"
#endif

int pd_ctl_api_parse(const char *s, pd_ctl_api_t *out, const char **why) {
  memset(out, 0, sizeof *out);
  if (!s || !*s) {
    *why = "empty address";
    return PD_CTL_EADDR;
  }
  if (strncmp(s, "unix:", 5) == 0) {
    size_t n = strlen(s + 5);
    if (n == 0 || n >= sizeof out->path) {
      *why = n ? "unix socket path too long" : "unix: needs a path";
      return PD_CTL_EADDR;
    }
    out->is_unix = true;
    memcpy(out->path, s + 5, n + 1);
    snprintf(out->host_header, sizeof out->host_header, "localhost");
    return 0;
  }
  const char *colon;
  if (s[0] == '[') {
    const char *close = strchr(s, ']');
    if (!close || close[1] != ':' || (size_t)(close - s - 1) >= sizeof out->host) {
      *why = "expected [IPv6]:PORT";
      return PD_CTL_EADDR;
    }
    memcpy(out->host, s + 1, (size_t)(close - s - 1));
    colon = close + 1;
  } else {
    colon = strrchr(s, ':');
    if (!colon || (size_t)(colon - s) >= sizeof out->host || memchr(s, ':', (size_t)(colon - s))) {
      *why = "expected HOST:PORT, [IPv6]:PORT or unix:PATH";
      return PD_CTL_EADDR;
    }
    memcpy(out->host, s, (size_t)(colon - s));
  }
  const char *p = colon + 1;
  size_t pl = strlen(p);
  bool digits = pl > 0 && pl < sizeof out->port;
  for (size_t i = 0; digits && i < pl; i++) digits = p[i] >= '0' && p[i] <= '9';
  if (!digits || atoi(p) < 1 || atoi(p) > 65535) {
    *why = "bad port";
    return PD_CTL_EADDR;
  }
  memcpy(out->port, p, pl + 1);
  if (strlen(s) >= sizeof out->host_header) {
    *why = "address too long";
    return PD_CTL_EADDR;
  }
  snprintf(out->host_header, sizeof out->host_header, "%s", s);
  return 0;
}

/* Wait for fd to be ready for events; 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, int timeout_ms) {
  struct pollfd pfd = {.fd = fd, .events = events};
  for (;;) {
    int rc = poll(&pfd, 1, timeout_ms <= 0 ? -1 : timeout_ms);
    if (rc < 0 && errno == EINTR) continue;
    return rc < 0 ? -1 : rc;
  }
}

/* Non-blocking connect bounded by timeout_ms; the socket stays non-blocking. */
static int connect_one(int fd, const struct sockaddr *sa, socklen_t len, int timeout_ms,
                       const char **why) {
  int fl = fcntl(fd, F_GETFL, 0);
  if (fl < 0 || fcntl(fd, F_SETFL, fl | O_NONBLOCK) < 0) {
    *why = strerror(errno);
    return PD_CTL_ECONNECT;
  }
  if (connect(fd, sa, len) == 0) return 0;
  if (errno != EINPROGRESS && errno != EAGAIN) {
    *why = strerror(errno);
    return PD_CTL_ECONNECT;
  }
  int w = wait_fd(fd, POLLOUT, timeout_ms);
  if (w == 0) {
    *why = "connect timed out";
    return PD_CTL_ECONNECT;
  }
  int err = 0;
  socklen_t el = sizeof err;
  if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &el) < 0 || err) {
    *why = strerror(err ? err : errno);
    return PD_CTL_ECONNECT;
  }
  return 0;
}

static int open_conn(const pd_ctl_api_t *api, int timeout_ms, const char **why) {
  if (api->is_unix) {
    int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
    if (fd < 0) {
      *why = strerror(errno);
      return PD_CTL_ECONNECT;
    }
    struct sockaddr_un sa;
    memset(&sa, 0, sizeof sa);
    sa.sun_family = AF_UNIX;
    memcpy(sa.sun_path, api->path, strlen(api->path) + 1);
    int rc = connect_one(fd, (struct sockaddr *)&sa, sizeof sa, timeout_ms, why);
    if (rc < 0) {
      close(fd);
      return rc;
    }
    return fd;
  }
  struct addrinfo hints, *res = NULL;
  memset(&hints, 0, sizeof hints);
  hints.ai_family = AF_UNSPEC;
  hints.ai_socktype = SOCK_STREAM;
  hints.ai_flags = AI_NUMERICSERV | (strcmp(api->host, "localhost") == 0 ? 0 : AI_NUMERICHOST);
  int gai = getaddrinfo(api->host, api->port, &hints, &res);
  if (gai != 0) {
    *why = gai_strerror(gai);
    return PD_CTL_ECONNECT;
  }
  int fd = PD_CTL_ECONNECT;
  *why = "no address";
  for (struct addrinfo *ai = res; ai; ai = ai->ai_next) {
    int s = socket(ai->ai_family, ai->ai_socktype | SOCK_CLOEXEC, ai->ai_protocol);
    if (s < 0) {
      *why = strerror(errno);
      continue;
    }
    if (connect_one(s, ai->ai_addr, ai->ai_addrlen, timeout_ms, why) == 0) {
      fd = s;
      break;
    }
    close(s);
  }
  freeaddrinfo(res);
  return fd;
}

static int send_all(int fd, const char *p, size_t n, int timeout_ms, const char **why) {
  while (n > 0) {
    ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
    if (w > 0) {
      p += w;
      n -= (size_t)w;
      continue;
    }
    if (w < 0 && errno == EINTR) continue;
    if (w < 0 && (errno == EAGAIN || errno == EWOULDBLOCK)) {
      int r = wait_fd(fd, POLLOUT, timeout_ms);
      if (r > 0) continue;
      *why = r == 0 ? "timed out sending the request" : strerror(errno);
      return r == 0 ? PD_CTL_ETIMEOUT : PD_CTL_EIO;
    }
    *why = strerror(errno);
    return PD_CTL_EIO;
  }
  return 0;
}

/* The response as http-parser reports it. */
typedef struct rx {
  const pd_ctl_request_t *req;
  pd_ctl_response_t *resp;
  bool in_ct;      /* the header being read is Content-Type */
  bool head_done;
  bool complete;
  bool stop;       /* on_body asked to stop */
  bool nomem;
  size_t cap;
} rx_t;

static int on_header_field(http_parser *p, const char *at, size_t len) {
  rx_t *x = p->data;
  x->in_ct = len == 12 && strncasecmp(at, "content-type", 12) == 0;
  return 0;
}

static int on_header_value(http_parser *p, const char *at, size_t len) {
  rx_t *x = p->data;
  if (x->in_ct) {
    size_t have = strlen(x->resp->content_type);
    size_t room = sizeof x->resp->content_type - 1 - have;
    memcpy(x->resp->content_type + have, at, len < room ? len : room);
    x->resp->content_type[have + (len < room ? len : room)] = '\0';
  }
  return 0;
}

static int on_headers_complete(http_parser *p) {
  rx_t *x = p->data;
  x->resp->status = (int)p->status_code;
  x->head_done = true;
  if (x->req->on_head) x->req->on_head(x->req->ud, x->resp->status, x->resp->content_type);
  return 0;
}

static int on_body(http_parser *p, const char *at, size_t len) {
  rx_t *x = p->data;
  /* errors (>= 400) are collected whole, even while streaming */
  if (x->req->on_body && x->resp->status < 400) {
    if (!x->req->on_body(x->req->ud, at, len)) {
      x->stop = true;
      return 1;
    }
    return 0;
  }
  pd_ctl_response_t *r = x->resp;
  if (r->body_len + len + 1 > x->cap) {
    size_t nc = x->cap ? x->cap : 4096;
    while (nc < r->body_len + len + 1) nc *= 2;
    char *b = realloc(r->body, nc);
    if (!b) {
      x->nomem = true;
      return 1;
    }
    r->body = b;
    x->cap = nc;
  }
  memcpy(r->body + r->body_len, at, len);
  r->body_len += len;
  r->body[r->body_len] = '\0';
  return 0;
}

static int on_message_complete(http_parser *p) {
  rx_t *x = p->data;
  x->complete = true;
  return 1; /* stop: one response per connection */
}

static int build_request(const pd_ctl_api_t *api, const pd_ctl_request_t *req, char **out,
                         size_t *len) {
  size_t blen = req->body ? strlen(req->body) : 0;
  size_t cap = 512 + strlen(req->path) + (req->token ? strlen(req->token) : 0) + blen +
               (req->last_event_id ? strlen(req->last_event_id) : 0);
  char *buf = malloc(cap);
  if (!buf) return PD_CTL_ENOMEM;
  int n = snprintf(buf, cap,
                   "%s %s HTTP/1.1\r\nHost: %s\r\nUser-Agent: peerctl/%s\r\nAccept: %s\r\n"
                   "Connection: close\r\n",
                   req->method, req->path, api->host_header, PEERD_VERSION,
                   req->on_body ? "text/event-stream" : "application/json, text/plain");
  if (req->token) n += snprintf(buf + n, cap - (size_t)n, "Authorization: Bearer %s\r\n", req->token);
  if (req->last_event_id)
    n += snprintf(buf + n, cap - (size_t)n, "Last-Event-ID: %s\r\n", req->last_event_id);
  if (req->body)
    n += snprintf(buf + n, cap - (size_t)n,
                  "Content-Type: application/json\r\nContent-Length: %zu\r\n", blen);
  n += snprintf(buf + n, cap - (size_t)n, "\r\n");
  if (blen) memcpy(buf + n, req->body, blen);
  *out = buf;
  *len = (size_t)n + blen;
  return 0;
}

int pd_ctl_call(const pd_ctl_api_t *api, const pd_ctl_request_t *req, pd_ctl_response_t *resp,
                const char **why) {
  const char *dummy;
  if (!why) why = &dummy;
  memset(resp, 0, sizeof *resp);
  int fd = open_conn(api, req->timeout_ms, why);
  if (fd < 0) return fd;
  char *msg = NULL;
  size_t mlen = 0;
  int rc = build_request(api, req, &msg, &mlen);
  if (rc == 0) rc = send_all(fd, msg, mlen, req->timeout_ms, why);
  free(msg);
  if (rc < 0) {
    if (rc == PD_CTL_ENOMEM) *why = "out of memory";
    close(fd);
    return rc;
  }
  http_parser_settings st;
  http_parser_settings_init(&st);
  st.on_header_field = on_header_field;
  st.on_header_value = on_header_value;
  st.on_headers_complete = on_headers_complete;
  st.on_body = on_body;
  st.on_message_complete = on_message_complete;
  http_parser p;
  http_parser_init(&p, HTTP_RESPONSE);
  rx_t x = {.req = req, .resp = resp};
  p.data = &x;
  char buf[16384];
  while (!x.complete && !x.stop) {
    int wait_ms = req->timeout_ms;
    if (x.head_done && req->on_body) wait_ms = req->idle_ms > 0 ? req->idle_ms : -1;
    int w = wait_fd(fd, POLLIN, wait_ms);
    if (w == 0) {
      if (x.head_done && req->on_body && req->idle_ms > 0) break; /* quiet: done */
      *why = "no answer in time (--timeout)";
      rc = PD_CTL_ETIMEOUT;
      break;
    }
    ssize_t n = w < 0 ? -1 : recv(fd, buf, sizeof buf, 0);
    if (n < 0 && (errno == EINTR || errno == EAGAIN)) continue;
    if (n < 0) {
      *why = strerror(errno);
      rc = PD_CTL_EIO;
      break;
    }
    size_t used = http_parser_execute(&p, &st, buf, (size_t)n); /* n == 0: EOF */
    if (x.nomem) {
      *why = "out of memory";
      rc = PD_CTL_ENOMEM;
      break;
    }
    if (x.complete || x.stop) break;
    if (HTTP_PARSER_ERRNO(&p) != HPE_OK || used != (size_t)n) {
      *why = http_errno_description(HTTP_PARSER_ERRNO(&p));
      rc = PD_CTL_EPROTO;
      break;
    }
    if (n == 0) {
      if (x.head_done && req->on_body) break; /* the stream ended */
      *why = x.head_done ? "the daemon closed the connection mid-answer"
                         : "the daemon closed the connection without answering";
      rc = PD_CTL_EIO;
      break;
    }
  }
  close(fd);
  if (rc < 0) {
    pd_ctl_response_free(resp);
    return rc;
  }
  if (!resp->body) {
    resp->body = calloc(1, 1);
    if (!resp->body) {
      *why = "out of memory";
      return PD_CTL_ENOMEM;
    }
  }
  return 0;
}

void pd_ctl_response_free(pd_ctl_response_t *resp) {
  if (!resp) return;
  free(resp->body);
  resp->body = NULL;
  resp->body_len = 0;
}
