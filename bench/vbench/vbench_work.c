/*
 * The workload: one job and its recipient list, written once into the run's
 * folder and read by every peer, so that all of them send the same messages.
 * The body is padded with plain prose lines (under 76 octets, so that
 * quoted-printable adds nothing) until a rendered message is about the
 * scenario's size; a render of the first recipient checks it.
 */
#include "vbench.h"

#include "../../message/message.h"

#include <errno.h>
#include <jansson.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

static const char *const prose[] = {
	"The winter schedule is out: every branch opens an hour later from",
	"Monday, and the reading rooms stay open until nine on Thursdays.",
	"Our volunteers sorted forty thousand books this autumn; thank you,",
	"and welcome to the ninety new members who joined in November.",
	"Next month we look at the history of the printing press, with a",
	"talk by the curator and a workshop where you set your own type.",
};
static const char *const cities[] = { "Amsterdam", "Zurich", "Lisbon", "Krakow", "Oslo", "Lyon" };

/* The providers scenario: recipients in proportion to the profiles'
 * allowed rates (all finish together at those rates), evenly interleaved;
 * domain dK.NAME.test, or NAME.test for one domain a profile. */
static void prov_domain(const struct vb_scen *sc, long i, char *out, size_t len)
{
	long w[VB_MAX_PROFILES], sum = 0;
	for (int k = 0; k < sc->nprofiles; k++)
		sum += w[k] = (long)(vb_prof_rate(sc->profiles[k]) + 0.5);
	long x = i % sum, k = 0;
	while (k + 1 < sc->nprofiles && x >= w[k])
		x -= w[k++];
	if (sc->domains > 1)
		snprintf(out, len, "d%ld.%s.test", (i / sum) % sc->domains, sc->profiles[k]);
	else
		snprintf(out, len, "%s.test", sc->profiles[k]);
}

void vb_rcpt_domain(const struct vb_scen *sc, long i, char *out, size_t len)
{
	if (sc->nprofiles) {
		prov_domain(sc, i, out, len);
		return;
	}
	long d = i % sc->domains;
	snprintf(out, len, "d%ld.s%ld.bench.test", d, d % sc->sink_addrs);
}

/* Prose lines up to about n octets, each ending in the given line end. */
static void pad(struct json_t **dst, const char *head, long n, const char *pre, const char *post)
{
	size_t cap = (size_t)n + 512, len = 0;
	char *s = vl_malloc(cap);
	len += (size_t)snprintf(s, cap, "%s", head);
	for (size_t i = 0; (long)len < n; i++)
		len += (size_t)snprintf(s + len, cap - len, "%s%s%s\n", pre,
					prose[i % (sizeof prose / sizeof *prose)], post);
	*dst = json_string(s);
	free(s);
}

static json_t *job_json(const struct vb_scen *sc, long body)
{
	json_t *text, *html;
	bool p = sc->personalised, pb = sc->personalised_body;
	pad(&text, pb ? "Hi {{ first }},\n\nthe {{ issue }} issue is out. Weather in {{ city }}: "
		       "cold.\n\n" : "Hello,\n\nthe {{ issue }} issue is out.\n\n",
	    body * 2 / 5, "", "");
	pad(&html, pb ? "<p>Hi {{ first }},</p>\n<p>the {{ issue }} issue is out. Weather in "
		       "{{ city }}: cold.</p>\n" : "<p>Hello,</p>\n<p>the {{ issue }} issue is out.</p>\n",
	    body * 3 / 5, "<p>", "</p>");
	json_t *j = json_pack("{s:s, s:s, s:{s:{s:s, s:s}, s:s, s:o, s:o}, s:{s:s}, s:{s:s, s:s}}",
			      "envelope_sender", "bounces@" VB_FROM_DOMAIN, "campaign", sc->name,
			      "content", "from", "email", "news@" VB_FROM_DOMAIN, "name",
			      "Volley Bench News", "subject",
			      p ? "{{ first }}, the {{ issue }} issue" : "The {{ issue }} issue", "text_body",
			      text, "html_body", html, "substitutions", "issue", "December",
			      "unsubscribe", "url",
			      p ? "https://" VB_FROM_DOMAIN "/u/{{ token }}" : "https://" VB_FROM_DOMAIN "/u",
			      "mailto", "unsubscribe@" VB_FROM_DOMAIN);
	/* Not personalised: the same message for all, To included (the list's
	 * address, as a mailing list writes it), so volleyd may share
	 * transactions (docs/jobs.md). */
	if (!p)
		json_object_set_new(json_object_get(j, "content"), "headers",
				    json_pack("{s:s}", "To", "Volley Bench readers <news@"
					      VB_FROM_DOMAIN ">"));
	if (sc->transactional)
		json_object_set_new(j, "priority", json_string("transactional"));
	return j;
}

/* Recipient i of the list: u<i>@..., or t<i>@... for the mixed
 * scenario's transactional stream (the sink logs those). */
static void rcpt_line(const struct vb_scen *sc, char local, long i, char *out, size_t len)
{
	char dom[96];
	vb_rcpt_domain(sc, i, dom, sizeof dom);
	if (sc->personalised)
		snprintf(out, len,
			 "{\"email\":\"%c%ld@%s\",\"name\":\"Reader %ld\",\"substitutions\":"
			 "{\"first\":\"Reader%ld\",\"city\":\"%s\",\"token\":\"t%08lx\"}}\n",
			 local, i, dom, i, i, cities[i % 6],
			 (unsigned long)i * 2654435761ul & 0xffffffff);
	else
		snprintf(out, len, "{\"email\":\"%c%ld@%s\",\"name\":\"Reader %ld\"}\n", local, i,
			 dom, i);
}

static int write_lists(const struct vb_scen *sc, struct vb_work *w, const char *jobline)
{
	FILE *r = fopen(w->rcpts, "w"), *s = fopen(w->submit, "w");
	char line[512];
	int rc = 0;
	if (!r || !s) {
		fprintf(stderr, "volley-bench: %s: %s\n", w->dir, strerror(errno));
		rc = -1;
	} else {
		fprintf(s, "%s\n", jobline);
		for (long i = 0; i < sc->recipients; i++) {
			rcpt_line(sc, 'u', i, line, sizeof line);
			fputs(line, r);
			fputs(line, s);
		}
	}
	if ((r && fclose(r)) || (s && fclose(s)))
		rc = -1;
	return rc;
}

/* Render the first recipient with volley's own composer: the message size. */
static long rendered_size(json_t *job, const struct vb_scen *sc)
{
	struct msg_job_opts o = { .job_id = "0194c1d2e3f4-5a6b7c8d", .hostname = "bench.example" };
	struct msg_err me;
	struct msg_job *j = msg_job_compile(json_object_get(job, "content"),
					    json_object_get(job, "substitutions"),
					    json_object_get(job, "unsubscribe"), &o, &me);
	if (!j) {
		fprintf(stderr, "volley-bench: the generated job: %s: %s\n", me.field, me.message);
		return -1;
	}
	const char *keys[] = { "first", "city", "token" }, *vals[] = { "Reader0", "Amsterdam",
								       "t00000000" };
	struct msg_rcpt rc = { .email = "u0@d0.s0.bench.test", .name = "Reader 0",
			       .nsubs = sc->personalised ? 3 : 0, .keys = keys, .vals = vals };
	struct msg_out out;
	msg_out_init(&out);
	long n = msg_render(j, &rc, 1795400000, &out, &me) < 0 ? -1 : (long)out.size;
	msg_out_free(&out);
	msg_job_free(j);
	return n;
}

static int dkim_key(const struct vb_scen *sc, struct vb_work *w)
{
	if (!sc->dkim[0])
		return 0;
	snprintf(w->dkim_key, sizeof w->dkim_key, "%s/dkim.pem", w->dir);
	int rc = !strcmp(sc->dkim, "rsa")
			 ? vb_system("openssl genpkey -algorithm RSA -pkeyopt rsa_keygen_bits:2048 "
				     "-out '%s' 2>/dev/null", w->dkim_key)
			 : vb_system("openssl genpkey -algorithm ed25519 -out '%s' 2>/dev/null",
				     w->dkim_key);
	if (rc != 0)
		fprintf(stderr, "volley-bench: openssl genpkey failed for the DKIM key\n");
	return rc ? -1 : 0;
}

/* The mixed scenario's transactional job (the bulk job's content,
 * priority transactional, its own campaign) and list. */
static int write_tx(const struct vb_scen *sc, struct vb_work *w, json_t *job)
{
	char line[512];
	snprintf(w->tx_job, sizeof w->tx_job, "%s/tx-job.json", w->dir);
	snprintf(w->tx_rcpts, sizeof w->tx_rcpts, "%s/tx-recipients.ndjson", w->dir);
	json_t *tx = json_deep_copy(job);
	json_object_set_new(tx, "priority", json_string("transactional"));
	json_object_set_new(tx, "campaign", json_string("mixed-transactional"));
	int rc = json_dump_file(tx, w->tx_job, JSON_INDENT(2));
	json_decref(tx);
	FILE *f = rc == 0 ? fopen(w->tx_rcpts, "w") : NULL;
	if (!f)
		return -1;
	for (long i = 0; i < sc->mixed_max; i++) {
		rcpt_line(sc, 't', i, line, sizeof line);
		fputs(line, f);
	}
	return fclose(f) == 0 ? 0 : -1;
}

int vb_work_write(const struct vb_scen *sc, const char *dir, struct vb_work *w)
{
	memset(w, 0, sizeof *w);
	w->sc = sc;
	snprintf(w->dir, sizeof w->dir, "%s", dir);
	snprintf(w->job, sizeof w->job, "%s/job.json", dir);
	snprintf(w->rcpts, sizeof w->rcpts, "%s/recipients.ndjson", dir);
	snprintf(w->submit, sizeof w->submit, "%s/submit.ndjson", dir);

	/* The headers and MIME frame take about 900 octets. */
	long body = sc->msg_size > 1400 ? sc->msg_size - 900 : 500;
	json_t *job = job_json(sc, body);
	long size = rendered_size(job, sc);
	/* One correction from the measured size gets within a line of it. */
	if (size > 0 && size != sc->msg_size) {
		json_decref(job);
		body += sc->msg_size - size;
		job = job_json(sc, body > 200 ? body : 200);
		size = rendered_size(job, sc);
	}
	char *line = json_dumps(job, JSON_COMPACT);
	int rc = size < 0 || !line || json_dump_file(job, w->job, JSON_INDENT(2)) < 0 ||
			 write_lists(sc, w, line) < 0 || dkim_key(sc, w) < 0 ||
			 (sc->mixed && write_tx(sc, w, job) < 0)
		 ? -1 : 0;
	w->msg_bytes = size;
	free(line);
	json_decref(job);
	return rc;
}
