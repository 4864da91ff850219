/* The pure parts of a shared limit (cluster.h): the state machine and
 * a node's leases of one rate. */
#include "cluster.h"

#include <math.h>
#include <string.h>

void clu_fsm_init(struct clu_fsm *f, unsigned nodes)
{
	memset(f, 0, sizeof *f);
	f->mode = CLU_LOCAL;
	f->nodes = nodes ? nodes : 1;
}

bool clu_fsm_step(struct clu_fsm *f, enum clu_input in, unsigned nodes, uint64_t now_ms,
		  uint64_t timeout_ms)
{
	enum clu_mode was = f->mode;

	if (nodes)
		f->nodes = nodes;
	switch (in) {
	case CLU_IN_UP:
		f->last_reply_ms = now_ms;
		f->mode = CLU_SHARED;
		break;
	case CLU_IN_REPLY:
		f->last_reply_ms = now_ms;
		break;
	case CLU_IN_DOWN:
		f->mode = CLU_LOCAL;
		break;
	case CLU_IN_TICK:
		/* a Redis that hangs is as good as gone */
		if (f->waiting_since_ms && now_ms > f->waiting_since_ms &&
		    now_ms - f->waiting_since_ms > timeout_ms)
			f->mode = CLU_LOCAL;
		break;
	}
	return f->mode != was;
}

void clu_rate_init(struct clu_rate *r, double limit)
{
	memset(r, 0, sizeof *r);
	r->limit = limit;
	r->burst = limit < 1 ? 1 : limit;
}

unsigned clu_rate_want(const struct clu_rate *r, unsigned nodes)
{
	double n = nodes ? nodes : 1;
	double rate = r->recent > r->limit / n ? r->recent : r->limit / n;
	double w = rate * CLU_LEASE_PERIOD_MS / 1000.0, cap = r->burst / n;

	if (w > cap)
		w = cap;
	return w < 1 ? 1 : (unsigned)w;
}

void clu_rate_granted(struct clu_rate *r, unsigned got, uint64_t wait_ms, uint64_t now_ms)
{
	r->asked = false;
	if (got) {
		if (r->tokens <= 0 || now_ms > r->got_ms + CLU_LEASE_HOLD_MS)
			r->tokens = 0;
		r->tokens += got;
		r->got_ms = now_ms + wait_ms;   /* usable from then */
		r->ask_after_ms = 0;
	} else {
		r->ask_after_ms = now_ms + (wait_ms ? wait_ms : 1);
	}
}

/* Spent tokens a second, over windows of a second. */
static void count(struct clu_rate *r, uint64_t now_ms)
{
	if (!r->win_ms)
		r->win_ms = now_ms;
	r->win_n++;
	if (now_ms - r->win_ms >= 1000) {
		r->recent = r->win_n * 1000.0 / (double)(now_ms - r->win_ms);
		r->win_ms = now_ms;
		r->win_n = 0;
	}
}

/* The fallback: limit / N a second, one second's worth at most. */
static uint64_t take_local(struct clu_rate *r, unsigned nodes, uint64_t now_ms)
{
	double rate = r->limit / (nodes ? nodes : 1), burst = rate < 1 ? 1 : rate;

	if (!r->lfull) {
		r->ltok = burst;
		r->lat_ms = now_ms;
		r->lfull = true;
	}
	if (now_ms > r->lat_ms) {
		r->ltok += (double)(now_ms - r->lat_ms) * rate / 1000.0;
		if (r->ltok > burst)
			r->ltok = burst;
		r->lat_ms = now_ms;
	}
	if (r->ltok >= 1) {
		r->ltok -= 1;
		return 0;
	}
	uint64_t w = (uint64_t)ceil((1 - r->ltok) * 1000.0 / rate);
	return w ? w : 1;
}

uint64_t clu_rate_take(struct clu_rate *r, enum clu_mode mode, unsigned nodes,
		       uint64_t now_ms, bool *ask)
{
	*ask = false;
	if (r->tokens > 0 && now_ms > r->got_ms + CLU_LEASE_HOLD_MS)
		r->tokens = 0;            /* a stale lease: no late burst */
	bool usable = now_ms >= r->got_ms;
	if (mode == CLU_LOCAL) {
		if (r->tokens > 0 && usable) {   /* granted while shared: still ours */
			r->tokens--;
			count(r, now_ms);
			return 0;
		}
		uint64_t w = take_local(r, nodes, now_ms);
		if (!w)
			count(r, now_ms);
		return w;
	}
	r->lfull = false;                 /* a fresh local bucket next time */
	unsigned want = clu_rate_want(r, nodes);
	if (!r->asked && usable && now_ms >= r->ask_after_ms && r->tokens * 2 < (int64_t)want) {
		*ask = true;
		r->last_want = want;
	}
	if (r->tokens > 0) {
		if (!usable)
			return r->got_ms - now_ms;
		r->tokens--;
		count(r, now_ms);
		return 0;
	}
	if (r->asked || *ask)
		return CLU_LEASE_POLL_MS;
	return r->ask_after_ms > now_ms ? r->ask_after_ms - now_ms : CLU_LEASE_POLL_MS;
}

unsigned clu_conns_allowed(enum clu_mode mode, unsigned nodes, unsigned limit, unsigned granted,
			   unsigned want)
{
	unsigned may = granted;

	if (mode == CLU_LOCAL) {
		may = limit / (nodes ? nodes : 1);
		if (!may)
			may = 1;
	}
	return may < want ? may : want;
}

unsigned clu_quota_want(uint64_t cap, unsigned nodes)
{
	uint64_t w = cap / (8 * (uint64_t)(nodes ? nodes : 1));

	return w < 1 ? 1 : w > 1000 ? 1000 : (unsigned)w;
}

bool clu_quota_local_ok(uint64_t cap, unsigned nodes, uint64_t own)
{
	return own < cap / (nodes ? nodes : 1);
}

bool clu_conns_short(unsigned granted, unsigned want, unsigned limit, unsigned nodes)
{
	unsigned fair = limit / (nodes ? nodes : 1);

	if (!fair)
		fair = 1;
	return granted < (want < fair ? want : fair);
}
