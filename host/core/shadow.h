/* shadow — a second policy set that sees every decision the live one makes
 * and whose answers are only compared, never used (--shadow-policies DIR).
 *
 * Owns: the shadow's policy host (its own Lua state, limits, request budget
 * and circuit breakers: a pd_policy_t of its own); calling it on the inputs
 * of each live call (the same book, views, event and time); the comparison
 * per hook (what "agree" means: docs/policies.md, "Shadow policies");
 * counters per hook and result, since creation (metrics) and since the
 * shadow set was last loaded (GET /v1/policy/shadow); the last
 * PD_SHADOW_KEEP disagreements per hook, as text (the inputs and both
 * answers).
 * The random stream: a shadow call draws from a copy of the RNG as it was
 * when the live call began, so the same code answers the same (select's
 * picks included), and the live RNG ends where the live call left it.
 * Does not own: the live call and its C defaults (node.c hands in what the
 * live side used and, where the shadow may need it, the C default), the
 * policy files (the driver reads them), the JSON of the API (api.c).
 */
#ifndef PD_SHADOW_H
#define PD_SHADOW_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>

#include "addrbook.h"
#include "policy.h"
#include "rng.h"

#define PD_SHADOW_KEEP 8 /* disagreements kept per hook */

enum pd_shadow_result {
  PD_SHADOW_AGREE = 0,
  PD_SHADOW_DISAGREE,
  PD_SHADOW_ERROR, /* the shadow's call failed or was not run (breaker, budget) */
  PD_SHADOW_RESULT_COUNT
};
/* "agree", "disagree", "error" (label values of peerd_policy_shadow_calls_total). */
const char *pd_shadow_result_name(int result);

typedef struct pd_shadow_diff {
  int64_t at;       /* `now` of the decision */
  char input[160];  /* "addr=1.2.3.4:26656 from=5.6.7.8" */
  char live[224];   /* what the live side used: "true", "true (default)" */
  char shadow[224]; /* what the shadow answered */
} pd_shadow_diff_t;

typedef struct pd_shadow pd_shadow_t;

/* limits and clock as for pd_policy_create (the shadow's own host). */
int pd_shadow_create(pd_shadow_t **out, const pd_policy_limits_t *limits,
                     pd_policy_clock_fn clock, void *clock_ud);
void pd_shadow_destroy(pd_shadow_t *s);

/* The shadow's policy host (status, health, failures, budgets). */
pd_policy_t *pd_shadow_policy(pd_shadow_t *s);

/* pd_policy_load into the shadow's host; on success the counts since load
 * and the kept disagreements start again. */
int pd_shadow_load(pd_shadow_t *s, const pd_policy_file_t *files, size_t n, int64_t now, char *err,
                   size_t cap);
/* The driver could not read the shadow's directory: recorded as the last
 * load's outcome (and the shadow host's last error). */
void pd_shadow_load_failed(pd_shadow_t *s, const char *error, int64_t now);
/* The last load's outcome: 0 (or nothing tried yet) or < 0, with its
 * message and `now` (NULL / 0 when it succeeded). */
int pd_shadow_last_load(const pd_shadow_t *s, const char **error, int64_t *at);
/* A set is in force in the shadow: only then are decisions compared. */
bool pd_shadow_loaded(const pd_shadow_t *s);
/* After its set was promoted (pd_policy_adopt): nothing loaded, the counts
 * since load and the disagreements cleared; the totals stay. */
void pd_shadow_clear(pd_shadow_t *s, int64_t now);
/* `now` of the last successful load (or clear): what the counts since load count from. */
int64_t pd_shadow_since(const pd_shadow_t *s);

/* Comparisons of (hook, result): since creation (total) or since the load. */
uint64_t pd_shadow_count(const pd_shadow_t *s, int hook, int result, bool total);
/* The last disagreements of hook, newest first; returns how many (<= cap,
 * <= PD_SHADOW_KEEP). */
size_t pd_shadow_diffs(const pd_shadow_t *s, int hook, pd_shadow_diff_t *out, size_t cap);

/* ---- the comparisons: each runs the shadow's hook on the live call's
 * inputs and counts the result. `before` is the RNG as it was when the live
 * call began. `live_default`: the live side used the C default. Nothing
 * happens unless a shadow set is loaded. */

/* select: book_rng is the RNG the book draws from (book:random and the C
 * default pd_book_select); it is rewound to *before for the shadow and
 * left where the live call left it. ctx: the live call's (may be NULL).
 * Agree: the same set of ids. */
void pd_shadow_select(pd_shadow_t *s, pd_book_t *b, pd_rng_t *book_rng, const pd_rng_t *before,
                      size_t n, const pd_policy_select_ctx_t *ctx, int64_t now,
                      const uint32_t *live, size_t nlive, bool live_default);
/* score: agree within 1e-9 relative. def: the C default score of v. */
void pd_shadow_score(pd_shadow_t *s, const pd_peer_view_t *v, const pd_rng_t *before, int64_t now,
                     double live, bool live_default, double def);
/* evict_new (candidate_info) / evict_tried (candidate): the verdicts
 * (PD_BOOK_KEEP / REPLACE / WAIT, or PD_BOOK_HOOK_DEFAULT for nil, a
 * missing hook or a failure: the book's built-in rule) must be equal. */
void pd_shadow_evict_new(pd_shadow_t *s, const pd_book_t *b, uint32_t incumbent,
                         const pd_book_info_t *candidate, const pd_rng_t *before, int64_t now,
                         int live_verdict);
void pd_shadow_evict_tried(pd_shadow_t *s, const pd_book_t *b, uint32_t incumbent,
                           uint32_t candidate, const pd_rng_t *before, int64_t now,
                           int live_verdict);
/* reputation: the same new reputation (1e-9 relative) and the same ban
 * (none, seconds, permanent); the reason is shown, not compared. def: the C
 * default verdict. */
void pd_shadow_reputation(pd_shadow_t *s, const pd_peer_view_t *v, const char *event,
                          const char *reason, const pd_rng_t *before, int64_t now,
                          const pd_rep_verdict_t *live, bool live_default,
                          const pd_rep_verdict_t *def);
/* pex accept / share (hook PD_HOOK_PEX_ACCEPT or PD_HOOK_PEX_SHARE): the same
 * boolean; the C default of both is true. */
void pd_shadow_pex(pd_shadow_t *s, int hook, const pd_peer_view_t *addr,
                   const pd_peer_view_t *other, const pd_rng_t *before, int64_t now, bool live,
                   bool live_default);
/* dht admit / feed: the same boolean. def: admit's C default for node (the
 * shadow uses it when its hook is absent); feed's C default is true. */
void pd_shadow_dht_admit(pd_shadow_t *s, const pd_policy_dht_node_t *node, const pd_rng_t *before,
                         int64_t now, bool live, bool live_default, bool def);
void pd_shadow_dht_feed(pd_shadow_t *s, const pd_peer_view_t *node, const pd_peer_view_t *from,
                        const pd_rng_t *before, int64_t now, bool live, bool live_default);

#endif
