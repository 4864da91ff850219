/*
 * TLS-RPT counting (RFC 8460) on the delivery thread: each result the
 * engine gives for a message is one session (the engine pools
 * connections, so a session here is a message's transaction attempt at
 * one MX host, not a TCP connection). It counts when TLS was negotiated
 * (a success) or failed with a result type (a failure); a message that
 * never reached TLS for another reason (refused connection, policy none,
 * the engine stopping) is no TLS session and is not counted.
 */
#include "deliver_int.h"

#include <arpa/inet.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

/* On the worker thread, inside on_result: the strings live only there. */
void sched_tlsrpt_copy(struct sched_dmsg *m, const struct eng_result *r)
{
	snprintf(m->tls_failure, sizeof m->tls_failure, "%s", r->tls_failure ? r->tls_failure : "");
	free(m->tls_tlsa);
	/* the RRset's text only when reports are kept: no allocation per
	 * DANE message otherwise */
	m->tls_tlsa = r->tls_tlsa && m->dj->d->rpt ? vl_strndup(r->tls_tlsa, RPT_STRINGS_MAX) : NULL;
}

void sched_tlsrpt_reset(struct sched_dmsg *m)
{
	m->tls_failure[0] = '\0';
	free(m->tls_tlsa);
	m->tls_tlsa = NULL;
}

/* "192.0.2.1:25" or "[2001:db8::1]:25" -> the address alone. */
static void peer_ip(const char *peer, char *out, size_t len)
{
	const char *colon = strrchr(peer, ':');
	size_t n = colon ? (size_t)(colon - peer) : strlen(peer);

	if (n >= 2 && peer[0] == '[' && peer[n - 1] == ']') {
		peer++;
		n -= 2;
	}
	snprintf(out, len, "%.*s", (int)n, peer);
}

static void source_ip(const struct eng_route *r, char *out, size_t len)
{
	const struct sockaddr_storage *ss = &r->source;

	out[0] = '\0';
	if (!r->has_source)
		return;
	if (ss->ss_family == AF_INET)
		inet_ntop(AF_INET, &((const struct sockaddr_in *)ss)->sin_addr, out, (socklen_t)len);
	else if (ss->ss_family == AF_INET6)
		inet_ntop(AF_INET6, &((const struct sockaddr_in6 *)ss)->sin6_addr, out, (socklen_t)len);
}

/* The policy's lines joined by \n, without CRs. */
static const char *sts_lines(const char *text, char *out, size_t len)
{
	size_t n = 0;

	for (; *text && n + 1 < len; text++)
		if (*text != '\r')
			out[n++] = *text;
	while (n && out[n - 1] == '\n')
		n--;
	out[n] = '\0';
	return out;
}

static const char *sts_mx(const struct sts_entry *e, char *out, size_t len)
{
	size_t n = 0;

	out[0] = '\0';
	for (size_t i = 0; i < e->policy.nmx && n + 1 < len; i++)
		n += (size_t)snprintf(out + n, len - n, "%s%s", i ? "\n" : "", e->policy.mx[i]);
	return out;
}

void sched_tlsrpt_record(struct sched_deliver *d, const struct sched_dmsg *m)
{
	const char *campaign = m->dj->j->campaign, *at = m->rcpt ? strrchr(m->rcpt, '@') : NULL;
	bool failed = m->tls_failure[0] != '\0';
	char rip[64], sip[64];

	if (!d->rpt || !at || (!failed && !m->tls_version[0]) || !m->q->site->routes ||
	    (campaign && !strcmp(campaign, SCHED_TLSRPT_CAMPAIGN)))
		return;
	const struct eng_route *route = &m->q->site->routes[m->host];
	peer_ip(m->peer, rip, sizeof rip);
	source_ip(route, sip, sizeof sip);
	struct rpt_session s = {
		.domain = at + 1,
		.policy_type = "no-policy-found",
		.success = !failed,
		.result_type = failed ? m->tls_failure : NULL,
		.sending_ip = sip[0] ? sip : NULL,
		.receiving_mx = route->name[0] ? route->name : NULL,
		.receiving_ip = rip[0] ? rip : NULL,
		.reason = failed ? m->r.text : NULL,
	};
	char lines[RPT_STRINGS_MAX], mx[TLS_STS_MX_MAX * (TLS_STS_NAME_MAX + 1) + 1];
	const struct sts_entry *sts = m->q->site->sts;
	if (m->tls_tlsa) {            /* DANE: the MX host's TLSA RRset */
		s.policy_type = "tlsa";
		s.policy_strings = m->tls_tlsa;
		s.mx_patterns = route->name;
	} else if (sts) {             /* the domain's MTA-STS policy (RFC 8460 4.4) */
		s.policy_type = "sts";
		s.policy_strings = sts_lines(sts->text, lines, sizeof lines);
		s.mx_patterns = sts_mx(sts, mx, sizeof mx);
	}
	rpt_store_add(d->rpt, &s);
}
