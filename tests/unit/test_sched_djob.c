/* scheduler/djob.c: one job's recipient states. The accounting rule of a
 * move (sched_rstate_journaled), then the real setter, sched_djob_set, on
 * a job built here: queued -> in flight -> delivered; deferred, retried,
 * bounced; suppressed; expiry and cancellation of everything waiting; the
 * counters it moves (at once or at the commit) add up to the states, and
 * the journal it writes, replayed as at a restart, gives the states back. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

#include "../../scheduler/deliver_int.h"
#include "unit.h"

enum {
	Q = SCHED_R_QUEUED, F = SCHED_R_INFLIGHT, DF = SCHED_R_DEFERRED,
	DL = SCHED_R_DELIVERED, B = SCHED_R_BOUNCED, X = SCHED_R_EXPIRED,
	C = SCHED_R_CANCELLED, S = SCHED_R_SUPPRESSED,
};

static char dir[64];

static void setup(void)
{
	unit_tmpdir(dir, sizeof dir, "djob");
}

static void teardown(void)
{
	unit_rmdir(dir);
}

TestSuite(sched_djob, .init = setup, .fini = teardown);

/* ---- the rule ---- */

Test(sched_djob, final_states)
{
	for (unsigned s = 0; s <= SCHED_R_SUPPRESSED; s++)
		cr_assert_eq(sched_rstate_final(s), s == DL || s == B || s == X || s == C || s == S,
			     "state %u", s);
}

Test(sched_djob, stored_states_as_the_api_names_them)
{
	static const char *const want[] = {
		[Q] = "queued", [F] = "in_flight", [DF] = "deferred", [DL] = "delivered",
		[B] = "bounced", [X] = "expired", [C] = "cancelled", [S] = "suppressed",
	};
	for (unsigned s = 0; s <= SCHED_R_SUPPRESSED; s++)
		cr_assert_str_eq(sched_state_name(sched_rstate_api(s)), want[s]);
	cr_assert_eq(sched_rstate_api(200), SCHED_QUEUED, "a damaged octet reads as queued");
}

Test(sched_djob, which_moves_are_journaled)
{
	/* published at once, never journaled: a dispatch and its undoing */
	for (unsigned s = 0; s <= SCHED_R_SUPPRESSED; s++)
		cr_assert_not(sched_rstate_journaled(s, F), "%u -> in flight", s);
	cr_assert_not(sched_rstate_journaled(F, Q));
	/* everything an outcome is */
	static const unsigned moves[][2] = {
		{ F, DL }, { F, DF }, { F, B }, { F, X }, { F, C }, /* results */
		{ Q, S },                  /* suppressed at dispatch */
		{ Q, B }, { Q, DF }, { DF, B }, { DF, DF }, /* a domain that did not resolve */
		{ Q, X }, { DF, X }, { Q, C }, { DF, C },    /* expiry, cancellation */
	};
	for (size_t i = 0; i < sizeof moves / sizeof *moves; i++)
		cr_assert(sched_rstate_journaled(moves[i][0], moves[i][1]), "%u -> %u",
			  moves[i][0], moves[i][1]);
}

/* ---- the setter, on a job built here ---- */

struct fix {
	struct sched_deliver *d;
	struct sched_job *j;
	struct sched_djob *dj;
};

static struct fix mk(size_t n)
{
	struct fix f;

	f.d = calloc(1, sizeof *f.d);
	f.j = calloc(1, sizeof *f.j);
	strcpy(f.j->id, "0194c1d2e3f4-5a6b7c8d");
	f.dj = calloc(1, sizeof *f.dj);
	f.dj->d = f.d;
	f.dj->j = f.j;
	f.dj->n = n;
	f.dj->nonfinal = n;
	f.dj->st = calloc(n + 1, 1);
	f.dj->att = calloc(n + 1, 1);
	f.dj->cls = calloc(n + 1, 1);
	vl_buf_init(&f.dj->jbuf);
	return f;
}

static void drop(struct fix *f)
{
	sched_djob_free(f->dj);
	free(f->j);
	free(f->d);
}

/* The registry's counts (all queued at first, plus what was published at
 * once and what a commit would apply) match the states, and nonfinal too. */
static void counts_add_up(const struct sched_djob *dj)
{
	long long want[SCHED_NSTATES] = { 0 }, nonfinal = 0;

	for (size_t i = 0; i < dj->n; i++) {
		want[sched_rstate_api(dj->st[i])]++;
		nonfinal += !sched_rstate_final(dj->st[i]);
	}
	for (int s = 0; s < SCHED_NSTATES; s++) {
		long long have = (s == SCHED_QUEUED ? (long long)dj->n : 0) + dj->delta[s] +
				 dj->now_delta[s];
		cr_assert_eq(have, want[s], "%s: %lld counted, %lld there",
			     sched_state_name((enum sched_state)s), have, want[s]);
	}
	cr_assert_eq((long long)dj->nonfinal, nonfinal);
}

/* The records written since the last call (the committer takes them). */
static size_t take_records(struct sched_djob *dj, struct sched_jrec *out, size_t max)
{
	size_t n = 0, off = 0, len;

	while (off < dj->jbuf.len &&
	       (len = sched_journal_decode(dj->jbuf.p + off, dj->jbuf.len - off, &out[n]))) {
		off += len;
		cr_assert_lt(++n, max + 1);
	}
	cr_assert_eq(off, dj->jbuf.len, "only whole records");
	vl_buf_reset(&dj->jbuf);
	dj->in_batch = false;
	dj->d->batch_dirty = false;
	return n;
}

static struct sched_jrec why(int code, const char *text)
{
	struct sched_jrec r = { .code = (int16_t)code };
	r.textlen = (uint16_t)snprintf(r.text, sizeof r.text, "%s", text);
	return r;
}

/* What sched_deliver_send does before the engine sees the message. */
static void dispatch(struct sched_djob *dj, uint32_t i)
{
	dj->att[i]++;
	sched_djob_set(dj, i, SCHED_R_INFLIGHT, NULL);
}

Test(sched_djob, queued_in_flight_delivered)
{
	struct fix f = mk(3);
	struct sched_djob *dj = f.dj;
	struct sched_jrec recs[4], ok = why(250, "2.0.0 queued as 12345");
	double t0 = vl_wall_time();

	dispatch(dj, 1);
	cr_assert_eq(dj->st[1], F);
	cr_assert_eq(dj->now_delta[SCHED_QUEUED], -1);
	cr_assert_eq(dj->now_delta[SCHED_IN_FLIGHT], 1);
	cr_assert(f.d->now_dirty, "published at the end of the round");
	cr_assert_eq(dj->jbuf.len, 0, "a dispatch is not journaled");
	cr_assert_not(dj->in_batch);
	counts_add_up(dj);

	sched_djob_set(dj, 1, SCHED_R_DELIVERED, &ok);
	cr_assert_eq(dj->st[1], DL);
	cr_assert_eq(dj->delta[SCHED_IN_FLIGHT], -1);
	cr_assert_eq(dj->delta[SCHED_DELIVERED], 1, "applied at the commit");
	cr_assert(dj->in_batch && f.d->batch_dirty);
	cr_assert_eq(dj->nonfinal, 2);
	counts_add_up(dj);
	cr_assert_eq(take_records(dj, recs, 4), 1);
	cr_assert_eq(recs[0].idx, 1);
	cr_assert_eq(recs[0].state, DL);
	cr_assert_eq(recs[0].attempts, 1);
	cr_assert_eq(recs[0].code, 250);
	cr_assert_str_eq(recs[0].text, "2.0.0 queued as 12345");
	cr_assert(recs[0].time >= (uint32_t)t0 && recs[0].time <= (uint32_t)vl_wall_time());
	drop(&f);
}

Test(sched_djob, deferred_retried_then_bounced)
{
	struct fix f = mk(2);
	struct sched_djob *dj = f.dj;
	struct sched_jrec recs[4], later = why(451, "4.3.0 try again later"),
				  gone = why(550, "5.1.1 no such user");

	gone.cls = SCHED_BC_INVALID_RECIPIENT;
	dispatch(dj, 0);
	sched_djob_set(dj, 0, SCHED_R_DEFERRED, &later);
	cr_assert_eq(dj->st[0], DF);
	cr_assert_eq(dj->nonfinal, 2, "deferred is not final");
	counts_add_up(dj);
	cr_assert_eq(take_records(dj, recs, 4), 1, "a deferral is journaled: attempts survive");
	cr_assert_eq(recs[0].state, DF);
	cr_assert_eq(recs[0].attempts, 1);
	cr_assert_eq(recs[0].code, 451);

	dispatch(dj, 0);
	cr_assert_eq(dj->now_delta[SCHED_DEFERRED], -1);
	counts_add_up(dj);
	sched_djob_set(dj, 0, SCHED_R_BOUNCED, &gone);
	cr_assert_eq(dj->nonfinal, 1);
	counts_add_up(dj);
	cr_assert_eq(take_records(dj, recs, 4), 1);
	cr_assert_eq(recs[0].state, B);
	cr_assert_eq(recs[0].attempts, 2);
	cr_assert_eq(recs[0].cls, SCHED_BC_INVALID_RECIPIENT);
	drop(&f);
}

Test(sched_djob, suppressed_at_dispatch)
{
	struct fix f = mk(2);
	struct sched_jrec recs[2], sup = why(0, "suppressed: the address is on the suppression list");

	sched_djob_set(f.dj, 1, SCHED_R_SUPPRESSED, &sup);
	cr_assert_eq(f.dj->st[1], S);
	cr_assert_eq(f.dj->delta[SCHED_QUEUED], -1);
	cr_assert_eq(f.dj->delta[SCHED_SUPPRESSED], 1);
	counts_add_up(f.dj);
	cr_assert_eq(take_records(f.dj, recs, 2), 1);
	cr_assert_eq(recs[0].state, S);
	cr_assert_eq(recs[0].attempts, 0);
	drop(&f);
}

/* r0 delivered, r1 in flight, r2 deferred, r3 and r5 queued, r4 bounced. */
static void mixed(struct sched_djob *dj)
{
	struct sched_jrec r = why(0, "");

	dispatch(dj, 0);
	sched_djob_set(dj, 0, SCHED_R_DELIVERED, &r);
	dispatch(dj, 1);
	dispatch(dj, 2);
	sched_djob_set(dj, 2, SCHED_R_DEFERRED, &r);
	dispatch(dj, 4);
	sched_djob_set(dj, 4, SCHED_R_BOUNCED, &r);
	counts_add_up(dj);
}

Test(sched_djob, expiry_ends_everything_waiting)
{
	struct fix f = mk(6);
	struct sched_djob *dj = f.dj;
	struct sched_jrec recs[8];
	static const uint8_t after[] = { DL, F, X, X, B, X };

	mixed(dj);
	take_records(dj, recs, 8);
	sched_djob_expire(dj);
	cr_assert(dj->expired);
	cr_assert_eq(memcmp(dj->st, after, sizeof after), 0, "in flight is left to finish");
	cr_assert_eq(dj->nonfinal, 1);
	counts_add_up(dj);
	cr_assert_eq(take_records(dj, recs, 8), 1, "one job-wide record");
	cr_assert_eq(recs[0].idx, SCHED_JREC_ALL);
	cr_assert_eq(recs[0].state, X);
	/* once */
	sched_djob_expire(dj);
	cr_assert_eq(dj->jbuf.len, 0);
	/* the one in flight comes back and finds its job expired */
	struct sched_jrec late = why(451, "4.4.1 timeout");
	sched_djob_set(dj, 1, SCHED_R_EXPIRED, &late);
	cr_assert_eq(dj->nonfinal, 0);
	counts_add_up(dj);
	drop(&f);
}

Test(sched_djob, cancel_and_pause_through_the_registry)
{
	char err[256] = "";
	struct cfg cfg = { 0 };
	struct sched_spool *sp = sched_spool_open(dir, err, sizeof err);
	cr_assert_not_null(sp, "%s", err);
	struct sched *sc = sched_new(&cfg, sp, err, sizeof err);
	cr_assert_not_null(sc, "%s", err);
	struct fix f = mk(6);
	struct sched_djob *dj = f.dj;
	struct sched_jrec recs[8];
	static const uint8_t after[] = { DL, F, C, C, B, C };

	f.d->sc = sc;
	mixed(dj);
	take_records(dj, recs, 8);
	f.j->state = SCHED_J_PAUSED;
	sched_djob_control(dj);
	cr_assert(dj->paused);
	cr_assert_not(dj->cancelled);
	cr_assert_eq(dj->jbuf.len, 0, "a pause changes no recipient");
	f.j->state = SCHED_J_CANCELLED;
	sched_djob_control(dj);
	cr_assert(dj->cancelled);
	cr_assert_eq(memcmp(dj->st, after, sizeof after), 0);
	counts_add_up(dj);
	cr_assert_eq(take_records(dj, recs, 8), 1);
	cr_assert_eq(recs[0].idx, SCHED_JREC_ALL);
	cr_assert_eq(recs[0].state, C);
	sched_djob_control(dj);
	cr_assert_eq(dj->jbuf.len, 0, "cancelled once");
	drop(&f);
	sched_free(sc);
	sched_spool_close(sp);
}

/* What a restart reads back is what was journaled: recipients in flight
 * at the crash are waiting again (at least once), everything else as it
 * was, attempts included. */
Test(sched_djob, journal_replayed_at_a_restart)
{
	struct fix a = mk(8), b = mk(8);
	struct sched_jrec r = why(451, "later");
	char path[128];
	FILE *fp;

	mixed(a.dj);
	dispatch(a.dj, 6);                    /* in flight at the crash */
	dispatch(a.dj, 7);
	sched_djob_set(a.dj, 7, SCHED_R_DEFERRED, &r);
	dispatch(a.dj, 7);                    /* deferred, then in flight again */
	snprintf(path, sizeof path, "%s/journal", dir);
	cr_assert_not_null(fp = fopen(path, "w"));
	cr_assert_eq(fwrite(a.dj->jbuf.p, 1, a.dj->jbuf.len, fp), a.dj->jbuf.len);
	fclose(fp);

	cr_assert_eq(sched_djob_replay(b.dj, path), 0);
	static const uint8_t st[] = { DL, Q, DF, Q, B, Q, Q, DF };
	static const uint8_t att[] = { 1, 0, 1, 0, 1, 0, 0, 1 };
	cr_assert_eq(memcmp(b.dj->st, st, sizeof st), 0);
	cr_assert_eq(memcmp(b.dj->att, att, sizeof att), 0);
	cr_assert_geq(b.dj->last_time, (double)(uint32_t)vl_wall_time() - 2);

	/* then the job expires: the job-wide record leaves finals alone */
	sched_djob_expire(a.dj);
	cr_assert_not_null(fp = fopen(path, "w"));
	cr_assert_eq(fwrite(a.dj->jbuf.p, 1, a.dj->jbuf.len, fp), a.dj->jbuf.len);
	fclose(fp);
	memset(b.dj->st, 0, 8);
	memset(b.dj->att, 0, 8);
	cr_assert_eq(sched_djob_replay(b.dj, path), 0);
	static const uint8_t st2[] = { DL, X, X, X, B, X, X, X };
	cr_assert_eq(memcmp(b.dj->st, st2, sizeof st2), 0);
	drop(&a);
	drop(&b);
}
