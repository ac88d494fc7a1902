/* sim — the scenario lab: many peerd hosts in one process on a virtual clock
 * (the second driver of the sans-I/O core, beside daemon.c). This header is
 * its API; the lab's files and what each owns are listed in lab.h.
 *
 * Owns: the virtual clock and the discrete-event queue (a binary heap
 * ordered by (virtual time ms, sequence number), so ties are broken by
 * scheduling order and runs are deterministic); the simulated hosts (each a
 * real pd_node + pd_netmgr + identity + seeded RNGs, with an address in a
 * chosen network group); simulated links (latency distribution, loss,
 * bandwidth cap, partitions); the scenario's Lua 5.4 state and the `sim`
 * API it sees (docs/scenarios.md); attacker hosts' scripted behaviour (ADDR
 * floods injected on their connections, a generated attacker-only pex.lua,
 * held inbound connections as persistent dials, black holes that never
 * answer); measurements (attacker share, components, diameter samples), the summary table,
 * results.json / series.csv (byte-identical for the same scenario + seed)
 * and, when gnuplot is installed, plots of the series (fork/exec of
 * gnuplot, here in the driver only; not part of the determinism check).
 * Does not own: any peer-discovery logic. Dial scheduling, handshakes, PEX,
 * the book, reputation and policies are the core's (netmgr, node, ...),
 * exactly as the daemon runs them; only time, randomness and transport are
 * simulated here. The wall clock is read only to print wall time and
 * events/s on the terminal, never into output files.
 *
 * Model (details in docs/scenarios.md):
 * - DIAL: if the target host is up and reachable (same partition side, not
 *   lost) it sees on_inbound after one one-way latency and the dialler sees
 *   on_connected after a round trip; a down host answers REFUSED after a
 *   round trip; an unknown, partitioned or lost dial fails TIMEOUT after
 *   connect_timeout. An inbound refusal is reported to the dialler as
 *   REFUSED.
 * - SEND: the bytes arrive at the other side after the connection's
 *   latency (drawn once per connection) plus the sender's bandwidth delay,
 *   never before earlier bytes of the same direction. Loss drops whole SEND
 *   actions (and connection attempts). Across a partition bytes vanish (the
 *   core's ping timeout notices).
 * - CLOSE: the other side gets on_closed after the bytes already in flight.
 * - RESOLVE: answered from the sim's name table after 1 ms.
 * - Timers: after each event for a host, its next wake-up is
 *   pd_netmgr_next_deadline_ms (and pd_node_tick runs once per virtual
 *   second, lazily, when the host wakes).
 */
#ifndef PD_SIM_H
#define PD_SIM_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

/* Virtual time 0 is this Unix time (ms): 2023-11-14T22:13:20Z. */
#define PD_SIM_EPOCH_MS ((int64_t)1700000000000)

/* ---- the event queue (exposed for tests) -------------------------------- */
typedef struct pd_sim_event {
  int64_t t;     /* virtual ms */
  uint64_t seq;  /* assigned by push: tie-breaker */
  uint32_t kind; /* driver-defined */
  uint32_t a, b, c;
  uint64_t x;
  void *p;
} pd_sim_event_t;

typedef struct pd_sim_queue {
  pd_sim_event_t *v;
  size_t n, cap;
  uint64_t next_seq;
} pd_sim_queue_t;

void pd_sim_queue_init(pd_sim_queue_t *q);
void pd_sim_queue_free(pd_sim_queue_t *q); /* does not free payloads */
/* Push a copy of *ev (its seq is assigned). 0 or PD_ENOMEM. */
int pd_sim_queue_push(pd_sim_queue_t *q, const pd_sim_event_t *ev);
/* Pop the earliest (smallest t, then smallest seq). false when empty. */
bool pd_sim_queue_pop(pd_sim_queue_t *q, pd_sim_event_t *out);
/* Earliest time, or INT64_MAX when empty. */
int64_t pd_sim_queue_peek_time(const pd_sim_queue_t *q);

/* ---- graph measurements (exposed for tests) ------------------------------ */
/* Diameter sample of an undirected graph in CSR form: n vertices, vertex v's
 * neighbours are adj[off[v] .. off[v+1]) (each edge listed from both ends;
 * duplicates are harmless). A breadth-first search from each of the k
 * sources src[0..k) (vertex ids < n): *diameter = the largest eccentricity
 * seen (a source's eccentricity is taken within its own component), *mean_path
 * = the mean shortest-path length over every (source, vertex it reaches,
 * vertex != source) pair, *pairs = the number of those pairs (0: both results
 * 0). With every vertex of a connected graph as a source, *diameter is the
 * exact diameter; with fewer it is a lower bound. 0, PD_EINVAL or PD_ENOMEM. */
int pd_sim_graph_sample(size_t n, const uint32_t *off, const uint32_t *adj, const uint32_t *src,
                        size_t k, uint32_t *diameter, double *mean_path, uint64_t *pairs);

/* ---- running a scenario ------------------------------------------------- */
typedef struct pd_sim_options {
  const char *scenario;      /* path of the scenario file */
  const char *scenario_text; /* or its text (then `scenario` is only its name) */
  uint64_t seed;
  const char *out_dir;       /* NULL: no files */
  const char *const *params; /* "NAME=VALUE" pairs for sim.param (--set) */
  size_t nparams;
  FILE *log;                 /* progress and summary; NULL: quiet */
  /* Sweeps (sweep.c, trials.c). swept: the names of the swept parameters
   * (at most 32 count). branch: what sim.branch() does. swept_read has bit
   * i set when sim.param read swept[i] before the branch (what runs before
   * sim.branch() is shared only by points that agree on those). It returns
   * 0 in each process that carries the run on, with *params / *nparams
   * replacing the run's (for sim.param and results.json), or a negative
   * code (sim.branch() raises an error); a process that only waits for the
   * branches never returns from it. NULL: sim.branch() changes nothing. */
  const char *const *swept;
  size_t nswept;
  int (*branch)(void *ctx, int64_t virtual_ms, uint32_t swept_read, const char *const **params,
                size_t *nparams);
  void *branch_ctx;
} pd_sim_options_t;

typedef struct pd_sim_report {
  int64_t virtual_ms;
  uint64_t events;
  size_t hosts;
  double wall_s;
  size_t rss_bytes; /* resident set at the end (0 if unknown) */
  size_t peak_rss_bytes; /* highest resident set of the process (getrusage; 0 if unknown) */
  bool assertion_failed;
} pd_sim_report_t;

/* Run a scenario. Returns 0 when it ran to completion with every
 * sim.assert holding; PD_EINVAL when the scenario failed (an assertion, a
 * Lua error: err holds "file:line: message"); PD_EIO when an output file
 * could not be written. *results_json (may be NULL) receives the results
 * document (malloc'd, the bytes written to results.json) even on failure. */
int pd_sim_run(const pd_sim_options_t *o, char **results_json, size_t *len, pd_sim_report_t *rep,
               char *err, size_t cap);

/* `peerd sim SCENARIO.lua [--seed N] [--out DIR] [--set NAME=VALUE]...`:
 * argv[0] is "sim". Prints progress and the summary to stderr/stdout.
 * Returns the process exit status (0 ok, 1 scenario failed, 2 usage). */
int pd_sim_main(int argc, char **argv);

#endif
