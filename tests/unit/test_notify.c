/* Unit tests for notify.c: pd_daemon_notify sends one datagram, exactly
 * the state text, to a real AF_UNIX datagram socket bound at a path or at
 * an abstract "@name"; nothing without a socket; refusals for names that
 * are not a path or @name, or too long; an error (not a hang) when nobody
 * listens. The daemon's use of it (READY, RELOADING, STOPPING) is checked
 * against a real peerd in tests/integration/install_spec.lua. */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>
#include <cmocka.h>

#include <errno.h>
#include <limits.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <unistd.h>

#include "daemon.h"
#include "err.h"

/* Bind a datagram socket at name ("/path" or "@abstract"). */
static int bind_sink(const char *name) {
  struct sockaddr_un sa;
  memset(&sa, 0, sizeof sa);
  sa.sun_family = AF_UNIX;
  size_t n = strlen(name);
  assert_true(n < sizeof sa.sun_path);
  memcpy(sa.sun_path, name, n);
  if (name[0] == '@') sa.sun_path[0] = '\0';
  int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  assert_true(fd >= 0);
  socklen_t len = (socklen_t)(offsetof(struct sockaddr_un, sun_path) + n);
  assert_int_equal(bind(fd, (struct sockaddr *)&sa, len), 0);
  return fd;
}

/* One datagram within 5 s, NUL-terminated in buf; its length. */
static ssize_t recv_one(int fd, char *buf, size_t cap) {
  struct pollfd p = {.fd = fd, .events = POLLIN};
  assert_int_equal(poll(&p, 1, 5000), 1);
  ssize_t r = recv(fd, buf, cap - 1, 0);
  assert_true(r >= 0);
  buf[r] = '\0';
  return r;
}

static void nothing_without_a_socket(void **state) {
  (void)state;
  assert_int_equal(pd_daemon_notify(NULL, "READY=1"), 0);
  assert_int_equal(pd_daemon_notify("", "READY=1"), 0);
}

static void refuses_bad_names(void **state) {
  (void)state;
  assert_int_equal(pd_daemon_notify("relative/sock", "READY=1"), PD_EINVAL);
  assert_int_equal(pd_daemon_notify("vsock:2:1234", "READY=1"), PD_EINVAL);
  assert_int_equal(pd_daemon_notify("@", "READY=1"), PD_EINVAL);
  char longname[200];
  memset(longname, 'a', sizeof longname - 1);
  longname[0] = '/';
  longname[sizeof longname - 1] = '\0';
  assert_int_equal(pd_daemon_notify(longname, "READY=1"), PD_EINVAL);
}

static void sends_to_a_path(void **state) {
  (void)state;
  const char *base = getenv("TMPDIR");
  if (!base || !*base) base = "/tmp";
  char dir[256];
  snprintf(dir, sizeof dir, "%.200s/test_notify-XXXXXX", base);
  assert_non_null(mkdtemp(dir));
  char path[PATH_MAX];
  snprintf(path, sizeof path, "%s/notify", dir);
  int fd = bind_sink(path);
  char buf[256];
  assert_int_equal(pd_daemon_notify(path, "READY=1"), 1);
  assert_int_equal(recv_one(fd, buf, sizeof buf), 7);
  assert_string_equal(buf, "READY=1");
  /* several assignments in one datagram, newlines kept */
  assert_int_equal(pd_daemon_notify(path, "RELOADING=1\nMONOTONIC_USEC=123"), 1);
  recv_one(fd, buf, sizeof buf);
  assert_string_equal(buf, "RELOADING=1\nMONOTONIC_USEC=123");
  close(fd);
  unlink(path);
  /* nobody listens any more: an error, at once */
  int rc = pd_daemon_notify(path, "STOPPING=1");
  assert_true(rc == -ENOENT || rc == -ECONNREFUSED);
  rmdir(dir);
}

static void sends_to_an_abstract_name(void **state) {
  (void)state;
  char name[64];
  snprintf(name, sizeof name, "@peerd-test-notify-%ld", (long)getpid());
  int fd = bind_sink(name);
  char buf[256];
  assert_int_equal(pd_daemon_notify(name, "STOPPING=1"), 1);
  assert_int_equal(recv_one(fd, buf, sizeof buf), 10);
  assert_string_equal(buf, "STOPPING=1");
  close(fd);
  /* a name nobody holds */
  snprintf(name, sizeof name, "@peerd-test-notify-%ld-none", (long)getpid());
  assert_int_equal(pd_daemon_notify(name, "READY=1"), -ECONNREFUSED);
}

int main(void) {
  const struct CMUnitTest tests[] = {
      cmocka_unit_test(nothing_without_a_socket),
      cmocka_unit_test(refuses_bad_names),
      cmocka_unit_test(sends_to_a_path),
      cmocka_unit_test(sends_to_an_abstract_name),
  };
  return cmocka_run_group_tests(tests, NULL, NULL);
}
