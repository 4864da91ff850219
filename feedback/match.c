/* Matching hints: volley's VERP return path and Message-IDs carry the job
 * id and the recipient's index (message/addr.c msg_verp, render.c). */
#include "fb_int.h"

#include <ctype.h>
#include <errno.h>
#include <stdlib.h>
#include <string.h>

/* scheduler/spool.c's sched_id_valid, the same rule */
static bool id_valid(const char *s)
{
	if (s[12] != '-')
		return false;
	for (size_t i = 0; i < FB_JOB_ID_LEN; i++)
		if (i != 12 && !((s[i] >= '0' && s[i] <= '9') || (s[i] >= 'a' && s[i] <= 'f')))
			return false;
	return true;
}

/* decimal digits at s up to end: the value, or false (none, or too big) */
static bool index_at(const char *s, const char *end, size_t *v)
{
	if (s >= end || end - s > 19)
		return false;
	*v = 0;
	for (; s < end; s++) {
		if (!isdigit((unsigned char)*s))
			return false;
		*v = *v * 10 + (size_t)(*s - '0');
	}
	return true;
}

bool fb_match_verp(const char *addr, char job_id[FB_JOB_ID_LEN + 1], size_t *index)
{
	const char *at = addr ? strrchr(addr, '@') : NULL;

	if (!at)
		return false;
	/* the tag is the local part's last "+JOBID.INDEX" (a quote may close it) */
	const char *end = at;
	if (end > addr && end[-1] == '"')
		end--;
	const char *plus = NULL;
	for (const char *p = addr; p < end; p++)
		if (*p == '+')
			plus = p;
	if (!plus || end - plus < FB_JOB_ID_LEN + 3 || plus[FB_JOB_ID_LEN + 1] != '.')
		return false;
	if (!id_valid(plus + 1) || !index_at(plus + FB_JOB_ID_LEN + 2, end, index))
		return false;
	memcpy(job_id, plus + 1, FB_JOB_ID_LEN);
	job_id[FB_JOB_ID_LEN] = '\0';
	return true;
}

bool fb_match_msgid(const char *msgid, char job_id[FB_JOB_ID_LEN + 1], size_t *index,
		    bool *has_index)
{
	if (!msgid)
		return false;
	while (*msgid == ' ' || *msgid == '\t')
		msgid++;
	if (*msgid == '<')
		msgid++;
	const char *at = strchr(msgid, '@');
	if (!at || at - msgid < FB_JOB_ID_LEN || !id_valid(msgid))
		return false;
	const char *p = msgid + FB_JOB_ID_LEN;
	if (p == at) {
		*has_index = false;
		*index = 0;
	} else if (*p == '.' && index_at(p + 1, at, index)) {
		*has_index = true;
	} else {
		return false;
	}
	memcpy(job_id, msgid, FB_JOB_ID_LEN);
	job_id[FB_JOB_ID_LEN] = '\0';
	return true;
}
