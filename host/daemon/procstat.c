/* procstat — the process_* metrics, read from the OS (Linux /proc).
 *
 * Owns: CPU seconds, resident memory, open and maximum file descriptors of
 * this process, and its start time, in the form /metrics exports them
 * (Prometheus's standard process_* names).
 * Does not own: rendering (core: metrics.c), when they are read (at each
 * GET /metrics, through the node's counters view).
 */
#include <dirent.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <unistd.h>

#include "daemon_int.h"

void dmn_process_stats(pd_daemon_t *d, pd_metrics_net_t *out) {
  out->has_process = false;
  FILE *f = fopen("/proc/self/stat", "r");
  if (!f) return;
  char buf[1024];
  size_t n = fread(buf, 1, sizeof buf - 1, f);
  fclose(f);
  buf[n] = '\0';
  /* fields after the ")" that ends the command name: state is field 3;
   * utime 14, stime 15 (clock ticks), rss 24 (pages) */
  const char *p = strrchr(buf, ')');
  if (!p) return;
  unsigned long long utime = 0, stime = 0;
  long long rss = 0;
  int field = 2;
  for (const char *q = p + 1; *q && field < 24;) {
    while (*q == ' ') q++;
    field++;
    if (field == 14) utime = strtoull(q, NULL, 10);
    if (field == 15) stime = strtoull(q, NULL, 10);
    if (field == 24) rss = strtoll(q, NULL, 10);
    while (*q && *q != ' ') q++;
  }
  long ticks = sysconf(_SC_CLK_TCK);
  long page = sysconf(_SC_PAGESIZE);
  if (ticks <= 0 || page <= 0) return;
  out->process_cpu_seconds = (double)(utime + stime) / (double)ticks;
  out->process_rss_bytes = rss > 0 ? (uint64_t)rss * (uint64_t)page : 0;
  uint64_t fds = 0;
  DIR *dir = opendir("/proc/self/fd");
  if (dir) {
    for (struct dirent *e; (e = readdir(dir)) != NULL;)
      if (e->d_name[0] != '.') fds++;
    closedir(dir);
    if (fds) fds--; /* the directory's own descriptor */
  }
  out->process_open_fds = fds;
  struct rlimit rl;
  out->process_max_fds = getrlimit(RLIMIT_NOFILE, &rl) == 0 ? (uint64_t)rl.rlim_cur : 0;
  out->process_start_time = (double)pd_node_status(d->node)->started_at;
  out->has_process = true;
}
