/* queue — the lab's event queue and the scheduling of events (scenario lab;
 * sim.h, lab.h).
 *
 * Owns: the discrete-event queue, a binary min-heap on (virtual time ms,
 * sequence number): ties are broken by scheduling order, so runs are
 * deterministic (pd_sim_queue_*, public for tests); lab_push_ev, which
 * schedules an event never before the virtual clock's now.
 * Does not own: what an event means (dispatch and the run loop: sim.c), the
 * clock itself (sim_t.now, advanced by the run loop), events naming a link
 * (lab_push_link_ev: links.c), the payloads events carry.
 */
#include "lab.h"

#include <stdlib.h>
#include <string.h>

#include "err.h"

void pd_sim_queue_init(pd_sim_queue_t *q) { memset(q, 0, sizeof *q); }

void pd_sim_queue_free(pd_sim_queue_t *q) {
  free(q->v);
  memset(q, 0, sizeof *q);
}

static bool ev_less(const pd_sim_event_t *a, const pd_sim_event_t *b) {
  return a->t < b->t || (a->t == b->t && a->seq < b->seq);
}

int pd_sim_queue_push(pd_sim_queue_t *q, const pd_sim_event_t *ev) {
  if (q->n == q->cap) {
    size_t nc = q->cap ? q->cap * 2 : 1024;
    pd_sim_event_t *nv = realloc(q->v, nc * sizeof *nv);
    if (!nv) return PD_ENOMEM;
    q->v = nv;
    q->cap = nc;
  }
  pd_sim_event_t e = *ev;
  e.seq = q->next_seq++;
  size_t i = q->n++;
  while (i > 0) {
    size_t parent = (i - 1) / 2;
    if (!ev_less(&e, &q->v[parent])) break;
    q->v[i] = q->v[parent];
    i = parent;
  }
  q->v[i] = e;
  return 0;
}

bool pd_sim_queue_pop(pd_sim_queue_t *q, pd_sim_event_t *out) {
  if (q->n == 0) return false;
  *out = q->v[0];
  pd_sim_event_t last = q->v[--q->n];
  size_t i = 0, n = q->n;
  for (;;) {
    size_t l = 2 * i + 1;
    if (l >= n) break;
    size_t c = l;
    if (l + 1 < n && ev_less(&q->v[l + 1], &q->v[l])) c = l + 1;
    if (!ev_less(&q->v[c], &last)) break;
    q->v[i] = q->v[c];
    i = c;
  }
  if (n > 0) q->v[i] = last;
  return true;
}

int64_t pd_sim_queue_peek_time(const pd_sim_queue_t *q) { return q->n ? q->v[0].t : INT64_MAX; }

/* Schedule an event at t (or now, if t is past). 0 or PD_ENOMEM. */
int lab_push_ev(sim_t *s, int64_t t, uint32_t kind, uint32_t a, uint32_t b, uint32_t c,
                uint64_t x, void *p) {
  pd_sim_event_t e = {.t = t < s->now ? s->now : t, .kind = kind, .a = a, .b = b, .c = c, .x = x,
                      .p = p};
  return pd_sim_queue_push(&s->q, &e);
}
