/*
 * scheduler/bounce: bounce classification. Rules map a reply (code,
 * enhanced code, text) or a failure stage to a class and to hard/soft.
 * The built-in rules are scheduler/bounce.rules, compiled in (the
 * Makefile generates sched_bounce_builtin from it); a user's file is
 * consulted first. Depends on common/ only. Prefix: sched_bounce_.
 */
#ifndef VOLLEY_SCHED_BOUNCE_H
#define VOLLEY_SCHED_BOUNCE_H

#include <stdbool.h>
#include <stddef.h>

enum sched_bounce_class {
	SCHED_BC_NONE,               /* delivered: no class */
	SCHED_BC_INVALID_RECIPIENT, SCHED_BC_MAILBOX_FULL, SCHED_BC_INACTIVE_MAILBOX,
	SCHED_BC_POLICY, SCHED_BC_SPAM_BLOCK, SCHED_BC_RATE_LIMITED, SCHED_BC_DNS,
	SCHED_BC_TLS, SCHED_BC_ROUTING, SCHED_BC_PROTOCOL, SCHED_BC_TIMEOUT,
	SCHED_BC_MESSAGE_TOO_LARGE, SCHED_BC_OTHER,
	SCHED_BC_COUNT
};
/* "invalid-recipient", ...; NULL for SCHED_BC_NONE. */
const char *sched_bounce_class_name(enum sched_bounce_class c);
int sched_bounce_class_parse(const char *s, enum sched_bounce_class *c);

struct sched_bounce_verdict {
	enum sched_bounce_class cls;
	bool hard;                   /* permanent: retrying cannot help */
};
struct sched_bounce_rules;
/* user_file NULL or "": the built-in rules only. NULL with err naming the
 * file and line of a bad rule. */
struct sched_bounce_rules *sched_bounce_load(const char *user_file, char *err,
					     size_t errlen);
void sched_bounce_free(struct sched_bounce_rules *r);
/* code 0 when no reply came (stage says where it failed: connect, tls,
 * greeting, ...); enhanced "" when none. Always gives a verdict: a 5xx
 * nothing matches is other/hard, a 4xx or no reply other/soft. */
void sched_bounce_classify(const struct sched_bounce_rules *r, int code,
			   const char *enhanced, const char *text, const char *stage,
			   struct sched_bounce_verdict *v);

#endif
