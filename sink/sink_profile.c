/*
 * Provider profiles (--profile): volley-sink throttling per client IP as
 * Gmail, Yahoo and Microsoft do, so that volley's adaptive back-off meets
 * realistic pushback on loopback. Pure: the caller gives the time and
 * holds whatever lock it needs; nothing here does I/O.
 */
#include "sink.h"

#include <stdio.h>
#include <stdlib.h>
#include <string.h>

const char *const sink_prof_reason_names[SINK_PR_COUNT] = {
	[SINK_PR_OK] = "ok", [SINK_PR_CONNS] = "conns", [SINK_PR_RATE] = "rate",
	[SINK_PR_NEWIP] = "new_ip", [SINK_PR_RCPTS] = "rcpts",
	[SINK_PR_PERCONN] = "per_conn",
};

/*
 * The replies, as the providers send them (their postmaster pages and
 * the bounces senders see; written from memory, single-line where the
 * real one wraps over several lines). %s is the client's IP. The limits
 * are not the providers' (they do not publish them): plausible values a
 * benchmark can start from, every one overridable (docs/sink.md).
 */
#define GMAIL_RATE "Our system has detected an unusual rate of unsolicited mail " \
	"originating from your IP address. To protect our users from spam, mail " \
	"sent from your IP address has been temporarily rate limited. Please visit " \
	"https://support.google.com/mail/?p=UnsolicitedRateLimitError to review our " \
	"Bulk Email Senders Guidelines. - gsmtp"
#define YAHOO_TSS04 "[TSS04] Messages from %s temporarily deferred due to unexpected " \
	"volume or user complaints - 4.16.55.1; see https://postmaster.yahooinc.com/error-codes"
#define MS_650 "The mail server [%s] has been temporarily rate limited due to IP " \
	"reputation. For e-mail delivery information, see https://postmaster.live.com (S775)"

static const struct sink_profile profiles[] = {
	{
		.name = "gmail", .max_conns = 10, .rate = 20, .msgs_per_conn = 100,
		.rcpts_per_msg = 100, .new_defer_ms = 60000, .ramp_ms = 3600000,
		.ramp_start = 0.1, .conn_stage = SMTPD_ST_HELO, .rate_stage = SMTPD_ST_DOT,
		.newip_stage = SMTPD_ST_MAIL,
		.reply = {
			[SINK_PR_CONNS] = {421, "4.7.0 Try again later, closing connection. (EHLO) - gsmtp"},
			[SINK_PR_RATE] = {421, "4.7.28 [%s] " GMAIL_RATE},
			[SINK_PR_NEWIP] = {421, "4.7.0 [%s] This message is suspicious due to the "
				"very low reputation of the sending IP address. To protect our "
				"users from spam, mail sent from your IP address has been "
				"temporarily rate limited. - gsmtp"},
			[SINK_PR_RCPTS] = {452, "4.5.3 Your message has too many recipients. For "
				"more information regarding Google's sending limits, visit "
				"https://support.google.com/mail/?p=TooManyRecipientsError - gsmtp"},
			[SINK_PR_PERCONN] = {421, "4.7.0 Try again later, closing connection. - gsmtp"},
		},
	},
	{
		.name = "yahoo", .max_conns = 5, .rate = 10, .msgs_per_conn = 50,
		.rcpts_per_msg = 100, .new_defer_ms = 120000, .ramp_ms = 7200000,
		.ramp_start = 0.1, .conn_stage = SMTPD_ST_CONNECT, .rate_stage = SMTPD_ST_MAIL,
		.newip_stage = SMTPD_ST_CONNECT,
		.reply = {
			[SINK_PR_CONNS] = {421, "4.7.0 " YAHOO_TSS04},
			[SINK_PR_RATE] = {421, "4.7.0 " YAHOO_TSS04},
			[SINK_PR_NEWIP] = {421, "4.7.0 " YAHOO_TSS04},
			/* not a documented Yahoo text */
			[SINK_PR_RCPTS] = {452, "4.5.3 Too many recipients"},
			/* Yahoo's own, without an enhanced code */
			[SINK_PR_PERCONN] = {421, "Max message per connection reached, closing "
				"transmission channel"},
		},
	},
	{
		.name = "microsoft", .max_conns = 10, .rate = 15, .msgs_per_conn = 30,
		.rcpts_per_msg = 100, .new_defer_ms = 60000, .ramp_ms = 3600000,
		.ramp_start = 0.1, .conn_stage = SMTPD_ST_CONNECT, .rate_stage = SMTPD_ST_MAIL,
		.newip_stage = SMTPD_ST_MAIL,
		.reply = {
			[SINK_PR_CONNS] = {451, "4.7.650 " MS_650},
			[SINK_PR_RATE] = {451, "4.7.500 Server busy. Please try again later "
				"from [%s]. (S77714)"},
			[SINK_PR_NEWIP] = {451, "4.7.650 " MS_650},
			[SINK_PR_RCPTS] = {452, "4.5.3 Too many recipients"},
			/* Exchange's generic closing reply */
			[SINK_PR_PERCONN] = {421, "4.3.2 Service not available, closing "
				"transmission channel"},
		},
	},
};

const struct sink_profile *sink_prof_find(const char *name)
{
	for (size_t i = 0; i < VL_ARRAY_LEN(profiles); i++)
		if (!strcmp(profiles[i].name, name))
			return &profiles[i];
	return NULL;
}

/* ---- the table ---- */

void sink_prof_table_init(struct sink_prof_table *t, uint32_t cap)
{
	memset(t, 0, sizeof *t);
	t->cap = cap ? cap : 1;
	t->nbucket = 1;
	while (t->nbucket < t->cap * 2)
		t->nbucket <<= 1;
	t->e = vl_calloc(t->cap, sizeof *t->e);
	t->bucket = vl_malloc(sizeof *t->bucket * t->nbucket);
	for (uint32_t i = 0; i < t->nbucket; i++)
		t->bucket[i] = -1;
	t->head = t->tail = -1;
}

void sink_prof_table_free(struct sink_prof_table *t)
{
	free(t->e);
	free(t->bucket);
	memset(t, 0, sizeof *t);
}

static uint32_t slot_of(const struct sink_prof_table *t, const char *addr)
{
	return (uint32_t)(vl_hash(addr, strlen(addr)) & (t->nbucket - 1));
}

static void lru_unlink(struct sink_prof_table *t, int32_t i)
{
	struct sink_prof_ip *e = &t->e[i];

	if (e->prev >= 0)
		t->e[e->prev].next = e->next;
	else
		t->head = e->next;
	if (e->next >= 0)
		t->e[e->next].prev = e->prev;
	else
		t->tail = e->prev;
}

static void lru_push(struct sink_prof_table *t, int32_t i)
{
	t->e[i].prev = -1;
	t->e[i].next = t->head;
	if (t->head >= 0)
		t->e[t->head].prev = i;
	t->head = i;
	if (t->tail < 0)
		t->tail = i;
}

static void hash_remove(struct sink_prof_table *t, int32_t i)
{
	int32_t *p = &t->bucket[slot_of(t, t->e[i].addr)];

	while (*p != i)
		p = &t->e[*p].hnext;
	*p = t->e[i].hnext;
}

/* A slot for a new IP: a free one, else the least recently connected IP
 * without open connections, forgotten. -1 when none. */
static int32_t take_slot(struct sink_prof_table *t)
{
	if (t->n < t->cap)
		return (int32_t)t->n++;
	for (int32_t i = t->tail; i >= 0; i = t->e[i].prev) {
		if (t->e[i].conns)
			continue;
		lru_unlink(t, i);
		hash_remove(t, i);
		t->forgotten++;
		return i;
	}
	return -1;
}

struct sink_prof_ip *sink_prof_ip_get(struct sink_prof_table *t, const char *addr,
				      uint64_t now)
{
	uint32_t h = slot_of(t, addr);
	int32_t i;

	for (i = t->bucket[h]; i >= 0; i = t->e[i].hnext)
		if (!strcmp(t->e[i].addr, addr))
			break;
	if (i < 0) {
		if ((i = take_slot(t)) < 0)
			return NULL;
		struct sink_prof_ip *e = &t->e[i];
		memset(e, 0, sizeof *e);
		snprintf(e->addr, sizeof e->addr, "%s", addr);
		e->first_ms = e->tok_ms = now;
		e->tokens = -1;          /* filled at its first use */
		h = slot_of(t, e->addr); /* addr may have been cut short */
		e->hnext = t->bucket[h];
		t->bucket[h] = i;
	} else {
		lru_unlink(t, i);
	}
	lru_push(t, i);
	t->e[i].last_ms = now;
	return &t->e[i];
}

/* ---- decisions ---- */

double sink_prof_factor(const struct sink_profile *p, const struct sink_prof_ip *ip,
			uint64_t now)
{
	uint64_t age = now > ip->first_ms ? now - ip->first_ms : 0;

	if (age < p->new_defer_ms)
		return 0;
	age -= p->new_defer_ms;
	if (age >= p->ramp_ms)
		return 1;
	return p->ramp_start + (1 - p->ramp_start) * (double)age / (double)p->ramp_ms;
}

static enum sink_prof_reason throttle(struct sink_prof_ip *ip, enum sink_prof_reason r)
{
	if (ip)
		ip->throttled[r]++;
	return r;
}

/* The connection limit the IP has now: at least one while it is not new. */
static uint32_t conn_limit(const struct sink_profile *p, double f)
{
	double lim = (double)p->max_conns * f;

	return lim < 1 ? 1 : (uint32_t)lim;
}

enum sink_prof_reason sink_prof_connect(const struct sink_profile *p,
					struct sink_prof_table *t, const char *addr,
					uint64_t now, struct sink_prof_sess *ss)
{
	struct sink_prof_ip *ip = sink_prof_ip_get(t, addr, now);
	enum sink_prof_reason r = SINK_PR_OK;

	*ss = (struct sink_prof_sess){ .pending = SINK_PR_OK };
	if (!ip) {
		t->full++;
		r = SINK_PR_CONNS;
	} else {
		double f = sink_prof_factor(p, ip, now);
		if (f == 0 && p->newip_stage == SMTPD_ST_CONNECT)
			r = throttle(ip, SINK_PR_NEWIP);
		else if (p->max_conns && ip->conns >= conn_limit(p, f))
			r = throttle(ip, SINK_PR_CONNS);
	}
	if (r == SINK_PR_OK) {
		ip->conns++;
		ss->ip = ip;
		return r;
	}
	if (r == SINK_PR_CONNS && p->conn_stage != SMTPD_ST_CONNECT) {
		ss->pending = r;
		return SINK_PR_OK;
	}
	return r;
}

/* The rate bucket, refilled at now at the IP's current share. */
static bool take_token(const struct sink_profile *p, struct sink_prof_ip *ip, double f,
		       uint64_t now)
{
	double rate = p->rate * f;
	double burst = (p->burst > 0 ? p->burst : p->rate) * f;

	if (burst < 1)
		burst = 1;
	if (ip->tokens < 0) {
		ip->tokens = burst;
	} else if (now > ip->tok_ms) {
		ip->tokens += rate * (double)(now - ip->tok_ms) / 1000.0;
	}
	if (ip->tokens > burst)
		ip->tokens = burst;
	ip->tok_ms = now;
	if (ip->tokens < 1)
		return false;
	ip->tokens -= 1;
	return true;
}

enum sink_prof_reason sink_prof_command(const struct sink_profile *p,
					struct sink_prof_sess *ss, enum smtpd_stage st,
					int nrcpt, uint64_t now)
{
	struct sink_prof_ip *ip = ss->ip;

	if (ss->pending != SINK_PR_OK)
		return st == SMTPD_ST_QUIT ? SINK_PR_OK : ss->pending;
	if (!ip || st == SMTPD_ST_CONNECT || st > SMTPD_ST_DOT)
		return SINK_PR_OK;
	ip->last_ms = now;
	if (st == SMTPD_ST_MAIL) {
		ss->txn_token = false;
		if (p->msgs_per_conn && ss->msgs >= p->msgs_per_conn)
			return throttle(ip, SINK_PR_PERCONN);
	}
	if (st == SMTPD_ST_RCPT && p->rcpts_per_msg && (uint32_t)nrcpt >= p->rcpts_per_msg)
		return throttle(ip, SINK_PR_RCPTS);
	double f = sink_prof_factor(p, ip, now);
	if (f == 0 && st == p->newip_stage)
		return throttle(ip, SINK_PR_NEWIP);
	if (p->rate > 0 && st == p->rate_stage && !ss->txn_token) {
		if (!take_token(p, ip, f, now))
			return throttle(ip, SINK_PR_RATE);
		/* one token a message: at RCPT only its first recipient takes it */
		ss->txn_token = st == SMTPD_ST_RCPT;
	}
	return SINK_PR_OK;
}

void sink_prof_accepted(struct sink_prof_sess *ss, int nrcpt)
{
	ss->msgs++;
	ss->txn_token = false;
	if (ss->ip) {
		ss->ip->accepted++;
		ss->ip->rcpts += (uint64_t)nrcpt;
	}
}

void sink_prof_close(struct sink_prof_sess *ss)
{
	if (ss->ip && ss->ip->conns)
		ss->ip->conns--;
	ss->ip = NULL;
}

int sink_prof_reply(const struct sink_profile *p, enum sink_prof_reason r, const char *ip,
		    char *out, size_t outlen)
{
	const struct sink_prof_reply *rp = &p->reply[r];
	int n = snprintf(out, outlen, "%d ", rp->code);

	if (n > 0 && (size_t)n < outlen) {
#pragma GCC diagnostic push
#pragma GCC diagnostic ignored "-Wformat-nonliteral"
		/* the formats are this file's table, each with at most one %s */
		snprintf(out + n, outlen - (size_t)n, rp->fmt, ip);
#pragma GCC diagnostic pop
	}
	size_t len = strlen(out);
	if (len + 3 > outlen)
		len = outlen - 3;
	memcpy(out + len, "\r\n", 3);
	return rp->code;
}

void sink_prof_peer_addr(const char *peer, char *out, size_t outlen)
{
	const char *end;

	if (peer[0] == '[') {
		peer++;
		end = strchr(peer, ']');
	} else {
		end = strrchr(peer, ':');
	}
	size_t n = end ? (size_t)(end - peer) : strlen(peer);
	if (n >= outlen)
		n = outlen - 1;
	memcpy(out, peer, n);
	out[n] = '\0';
}

void sink_prof_json(const struct sink_profile *p, const struct sink_prof_table *t,
		    uint64_t now, struct vl_buf *out)
{
	vl_buf_printf(out, "\"profile\": \"%s\", \"ips_forgotten\": %llu, \"ips_full\": %llu, "
		      "\"ips\": {", p->name, (unsigned long long)t->forgotten,
		      (unsigned long long)t->full);
	for (int32_t i = t->head; i >= 0; i = t->e[i].next) {
		const struct sink_prof_ip *e = &t->e[i];
		uint64_t thr = 0;
		for (int r = 1; r < SINK_PR_COUNT; r++)
			thr += e->throttled[r];
		vl_buf_printf(out, "%s\"%s\": {\"conns\": %u, \"age_s\": %.1f, \"share\": %.3f, "
			      "\"accepted\": %llu, \"recipients\": %llu, \"throttled\": %llu",
			      i == t->head ? "" : ", ", e->addr, e->conns,
			      (double)(now > e->first_ms ? now - e->first_ms : 0) / 1000.0,
			      sink_prof_factor(p, e, now),
			      (unsigned long long)e->accepted, (unsigned long long)e->rcpts,
			      (unsigned long long)thr);
		for (int r = 1; r < SINK_PR_COUNT; r++)
			vl_buf_printf(out, "%s\"%s\": %llu", r == 1 ? ", \"by_reason\": {" : ", ",
				      sink_prof_reason_names[r],
				      (unsigned long long)e->throttled[r]);
		vl_buf_appends(out, "}}");
	}
	vl_buf_appends(out, "}");
}
