/*
 * Whether a job's content is the same for every recipient, so that the
 * recipients of one destination may share a transaction (one message,
 * several RCPTs). The one place that decides it: the scheduler asks at a
 * job's load (msg_job_shareable) and per recipient it would add to a
 * message (msg_rcpt_shareable). docs/jobs.md has the rule in words. And
 * whether a recipient's body is the job's common one, whatever the headers
 * (msg_rcpt_body_static: one DKIM body hash for all such recipients).
 */
#include "message_int.h"

#include <string.h>

/* A variable renders the same for everyone: the job gives its value and
 * no predefined per-recipient value (email, name, to_header) wins over
 * or stands for it. A recipient's own value is msg_rcpt_shareable's. */
static bool var_invariant(const struct var *v)
{
	return v->job_val && strcmp(v->name, "email") && strcmp(v->name, "name") &&
	       strcmp(v->name, "to_header");
}

static bool piece_invariant(const struct msg_job *j, const struct piece *p)
{
	switch (p->kind) {
	case PC_TO:          /* the recipient's own address: never shown to others */
		return false;
	case PC_UNSUB:       /* volley's own URL carries a token per recipient */
		if (p->builtin)
			return false;
		break;
	default:
		break;
	}
	for (size_t i = 0; i < p->nsegs; i++)
		if (p->segs[i].var != SIZE_MAX && !var_invariant(&j->vars[p->segs[i].var]))
			return false;
	return true;
}

bool msg_job_shareable(const struct msg_job *j)
{
	for (size_t i = 0; i < j->np; i++)
		if (!piece_invariant(j, &j->p[i]))
			return false;
	return true;
}

bool msg_rcpt_shareable(const struct msg_job *j, const struct msg_rcpt *r)
{
	for (size_t k = 0; k < r->nsubs; k++)
		for (size_t i = 0; i < j->nvars; i++)
			if (!strcmp(r->keys[k], j->vars[i].name))
				return false;
	return true;
}

/* A body part's slots: job values only, none the recipient's own. */
static bool part_common(const struct msg_job *j, const struct piece *p,
			const struct msg_rcpt *r)
{
	for (size_t i = 0; i < p->nsegs; i++) {
		const struct var *v = p->segs[i].var == SIZE_MAX ? NULL : &j->vars[p->segs[i].var];
		if (!v)
			continue;
		if (!var_invariant(v))
			return false;
		for (size_t k = 0; k < r->nsubs; k++)
			if (!strcmp(r->keys[k], v->name))
				return false;
	}
	return true;
}

bool msg_rcpt_body_static(const struct msg_job *j, const struct msg_rcpt *r)
{
	for (size_t i = 0; i < j->np; i++)
		if ((j->p[i].kind == PC_QP || j->p[i].kind == PC_RAW) &&
		    !part_common(j, &j->p[i], r))
			return false;
	return true;
}
