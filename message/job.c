/*
 * The compiled job: its building blocks (pieces, static octets, templates
 * mapped to the job's variables), JSON reading helpers, the unsubscribe
 * headers, substitutions and the job's life. compose.c composes a content
 * object with them, raw.c a content string, render.c renders.
 */
#include "message_int.h"

#include <ctype.h>

#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/random.h>

int msg_fail(struct msg_err *e, const char *code, const char *field, const char *fmt, ...)
{
	va_list ap;

	snprintf(e->code, sizeof e->code, "%s", code);
	snprintf(e->field, sizeof e->field, "%s", field);
	va_start(ap, fmt);
	vsnprintf(e->message, sizeof e->message, fmt, ap);
	va_end(ap);
	return -1;
}

/* ---- the job's building blocks ---- */

struct piece *msg_job_piece(struct msg_job *j, enum piece_kind k)
{
	if (j->np == j->pcap) {
		j->pcap = j->pcap ? j->pcap * 2 : 16;
		j->p = vl_realloc(j->p, j->pcap * sizeof *j->p);
	}
	struct piece *p = &j->p[j->np++];
	memset(p, 0, sizeof *p);
	p->kind = k;
	return p;
}

void msg_job_static(struct msg_job *j, const char *s, size_t n)
{
	struct piece *p = j->np ? &j->p[j->np - 1] : NULL;

	if (!p || p->kind != PC_STATIC || p->s.off + p->s.len != j->stat.len) {
		p = msg_job_piece(j, PC_STATIC);
		p->s.off = j->stat.len;
	}
	vl_buf_append(&j->stat, s, n);
	p->s.len += n;
}

void msg_span_measure(const struct msg_job *j, struct span *s)
{
	const char *p = j->stat.p + s->off;
	const char *first = s->len ? memmem(p, s->len, "\r\n", 2) : NULL;

	s->nl = first != NULL;
	s->head = first ? (size_t)(first - p) : s->len;
	s->tail = 0;
	if (first) {
		const char *last = first;
		while ((first = memmem(last + 2, s->len - (size_t)(last + 2 - p), "\r\n", 2)))
			last = first;
		s->tail = s->len - (size_t)(last + 2 - p);
	}
}

static long var_of(struct msg_job *j, const char *name, enum msg_escape esc)
{
	size_t i = 0;

	while (i < j->nvars && strcmp(j->vars[i].name, name))
		i++;
	if (i == j->nvars) {
		if (j->nvars == MSG_JOB_VARS_MAX)
			return -1;
		j->vars = vl_realloc(j->vars, (j->nvars + 1) * sizeof *j->vars);
		memset(&j->vars[i], 0, sizeof j->vars[i]);
		j->vars[i].name = vl_strdup(name);
		j->nvars++;
	}
	if (esc == MSG_ESC_HEADER)
		j->vars[i].in_header = true;
	return (long)i;
}

int msg_job_tpl(struct msg_job *j, const char *src, size_t n, enum msg_escape esc,
		msg_static_fn how, const char *field, struct piece *p, struct msg_err *e)
{
	char err[200];
	struct msg_tpl *t = msg_tpl_compile(src, n, err, sizeof err);

	if (!t)
		return msg_fail(e, "invalid_field", field, "%s", err);
	p->nsegs = msg_tpl_nsegs(t);
	p->segs = vl_calloc(p->nsegs ? p->nsegs : 1, sizeof *p->segs);
	for (size_t i = 0; i < p->nsegs; i++) {
		struct tseg *s = &p->segs[i];
		const char *text;
		size_t len, slot = msg_tpl_seg(t, i, &text, &len);
		if (slot != SIZE_MAX) {
			long v = var_of(j, msg_tpl_slot(t, slot), esc);
			if (v < 0) {
				msg_tpl_free(t);
				return msg_fail(e, "invalid_field", field, "more than %d "
						"different substitutions in one job",
						MSG_JOB_VARS_MAX);
			}
			s->var = (size_t)v;
			continue;
		}
		s->var = SIZE_MAX;
		s->s.off = j->stat.len;
		if (how)
			how(j, text, len);
		else
			vl_buf_append(&j->stat, text, len);
		s->s.len = j->stat.len - s->s.off;
		msg_span_measure(j, &s->s);
	}
	msg_tpl_free(t);
	return 0;
}

int msg_job_slots(const char *src, size_t n, const char *field, struct msg_err *e)
{
	char err[200];
	struct msg_tpl *t = msg_tpl_compile(src, n, err, sizeof err);

	if (!t)
		return msg_fail(e, "invalid_field", field, "%s", err);
	int slots = !msg_tpl_is_static(t);
	msg_tpl_free(t);
	return slots;
}

int msg_job_header(struct msg_job *j, const char *name, const char *v, size_t n,
		   enum msg_hdr_kind k, unsigned flags, const char *field,
		   struct msg_err *e)
{
	int slots = msg_job_slots(v, n, field, e);

	if (slots < 0)
		return -1;
	if (slots) {
		struct piece *p = msg_job_piece(j, PC_HEADER);
		p->name = vl_strdup(name);
		p->hk = k;
		p->hflags = flags;
		return msg_job_tpl(j, v, n, MSG_ESC_HEADER, NULL, field, p, e);
	}
	struct vl_buf b;
	vl_buf_init(&b);
	msg_hdr_write(&b, name, v, n, k, flags, &j->smtputf8);
	msg_job_static(j, b.p, b.len);
	vl_buf_free(&b);
	return 0;
}

/* ---- reading JSON ---- */

int msg_json_fields(const json_t *o, const char *path, const char *const *names,
		    struct msg_err *e)
{
	const char *key;
	json_t *v;

	json_object_foreach((json_t *)o, key, v) {
		size_t i = 0;
		while (names[i] && strcmp(names[i], key))
			i++;
		if (!names[i]) {
			char f[160];
			snprintf(f, sizeof f, "%s.%s", path, key);
			return msg_fail(e, "unknown_field", f, "unknown field");
		}
	}
	return 0;
}

int msg_json_str(const json_t *o, const char *key, const char *path, bool required,
		 const char **s, size_t *n, struct msg_err *e)
{
	const json_t *v = json_object_get(o, key);
	char f[160];

	snprintf(f, sizeof f, "%s.%s", path, key);
	*s = NULL;
	*n = 0;
	if (!v || json_is_null(v))
		return required ? msg_fail(e, "invalid_field", f, "is required") : 0;
	if (!json_is_string(v))
		return msg_fail(e, "invalid_field", f, "must be a string");
	*s = json_string_value(v);
	*n = json_string_length(v);
	if (memchr(*s, '\0', *n) || !msg_utf8_valid(*s, *n))
		return msg_fail(e, "invalid_field", f, "must be valid UTF-8 without NUL");
	return 0;
}

bool msg_has_crlf(const char *s, size_t n)
{
	return memchr(s, '\r', n) || memchr(s, '\n', n);
}

/* ---- unsubscribe (RFC 8058) ---- */

static bool url_static_ok(const char *s, size_t n)
{
	for (size_t i = 0; i < n; i++)
		if (s[i] <= 32 || s[i] >= 127 || strchr("<>\"\\^`|", s[i]))
			return false;
	return true;
}

#define URL_MAX 800     /* a List-Unsubscribe URL: one word on a line < 998 */

/* "<mailto:...>" into m from an address or a mailto: URL. */
static int unsub_mailto(const char *mailto, char *m, size_t mlen, struct msg_err *e)
{
	const char *a = strncasecmp(mailto, "mailto:", 7) ? mailto : mailto + 7;
	size_t alen = strcspn(a, "?");
	bool utf8 = false;
	char why[120];

	if (strlen(a) + 10 > mlen)
		return msg_fail(e, "invalid_field", "unsubscribe.mailto", "is longer than "
				"%zu octets", mlen - 10);
	if (msg_addr_check(a, alen, &utf8, why, sizeof why) < 0 || utf8 ||
	    !url_static_ok(a + alen, strlen(a + alen)))
		return msg_fail(e, "invalid_address", "unsubscribe.mailto", "%s",
				utf8 ? "must be ASCII" : why);
	snprintf(m, mlen, "<mailto:%s>", a);
	return 0;
}

/* The URL's template: https, static parts of URL characters only. */
static int unsub_url(struct msg_job *j, struct piece *p, const char *url, size_t n,
		     struct msg_err *e)
{
	if (n < 9 || strncasecmp(url, "https://", 8) || n > URL_MAX)
		return msg_fail(e, "invalid_field", "unsubscribe.url", "must be an https "
				"URL (RFC 8058 one-click) of at most %d octets", URL_MAX);
	if (msg_job_tpl(j, url, n, MSG_ESC_URL, NULL, "unsubscribe.url", p, e) < 0)
		return -1;
	for (size_t i = 0; i < p->nsegs; i++) {
		const struct span *s = &p->segs[i].s;
		if (p->segs[i].var == SIZE_MAX && !url_static_ok(j->stat.p + s->off, s->len))
			return msg_fail(e, "invalid_field", "unsubscribe.url", "holds a "
					"character a URL may not (space, control, <>\"\\^`|)");
	}
	j->url_max = URL_MAX;
	return 0;
}

/* "builtin": absent (-1), false (0) or true (1). */
static int unsub_builtin(const json_t *u, int *b, struct msg_err *e)
{
	const json_t *v = u ? json_object_get(u, "builtin") : NULL;

	*b = -1;
	if (!v || json_is_null(v))
		return 0;
	if (!json_is_boolean(v))
		return msg_fail(e, "invalid_field", "unsubscribe.builtin", "must be true or false");
	*b = json_is_true(v);
	return 0;
}

/* List-Unsubscribe with volley's own URL per recipient (and the job's
 * mailto, m, when it gives one). */
static void unsub_builtin_piece(struct msg_job *j, const char *m)
{
	struct piece *p = msg_job_piece(j, PC_UNSUB);

	p->builtin = true;
	p->name = *m ? vl_strdup(m) : NULL;
	msg_job_static(j, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", 51);
}

int msg_unsub_compile(struct msg_job *j, const json_t *u, bool own, struct msg_err *e)
{
	static const char *const names[] = {"url", "mailto", "builtin", NULL};
	const char *url = NULL, *mailto = NULL;
	size_t ulen = 0, mlen;
	char m[300] = "";
	int builtin = -1;

	if (u && !json_is_object(u))
		return msg_fail(e, "invalid_field", "unsubscribe", "must be an object "
				"{\"url\", \"mailto\", \"builtin\"}");
	if (u && (msg_json_fields(u, "unsubscribe", names, e) < 0 ||
		  msg_json_str(u, "url", "unsubscribe", false, &url, &ulen, e) < 0 ||
		  msg_json_str(u, "mailto", "unsubscribe", false, &mailto, &mlen, e) < 0 ||
		  unsub_builtin(u, &builtin, e) < 0))
		return -1;
	if (u && !url && !mailto && builtin < 0)
		return msg_fail(e, "invalid_field", "unsubscribe", "needs url, mailto or builtin");
	if (builtin == 1 && url)
		return msg_fail(e, "invalid_field", "unsubscribe.builtin", "goes without url: "
				"the job's own URL or volley's, not both");
	if (builtin == 1 && !j->ubase)
		return msg_fail(e, "invalid_field", "unsubscribe.builtin", "volley's one-click "
				"unsubscribe is not configured (unsubscribe.base_url in volleyd's "
				"configuration)");
	if (mailto && unsub_mailto(mailto, m, sizeof m, e) < 0)
		return -1;
	/* volley's URL: asked for, or by default for bulk mail that has none */
	if (builtin == 1 || (builtin < 0 && j->ubase && !url && !own && !j->transactional)) {
		unsub_builtin_piece(j, m);
		return 0;
	}
	if (!url && !*m)
		return 0;
	if (!url) {
		char h[360];
		snprintf(h, sizeof h, "List-Unsubscribe: %s\r\n", m);
		msg_job_static(j, h, strlen(h));
		return 0;
	}
	struct piece *p = msg_job_piece(j, PC_UNSUB);
	p->name = *m ? vl_strdup(m) : NULL;
	if (unsub_url(j, p, url, ulen, e) < 0)
		return -1;
	msg_job_static(j, "List-Unsubscribe-Post: List-Unsubscribe=One-Click\r\n", 51);
	return 0;
}

int msg_unsub_url(const struct msg_job *j, const char *email, size_t index, char *out,
		  size_t outlen)
{
	size_t b = j->ubase ? strlen(j->ubase) : 0;

	if (!j->ubase || index > UINT32_MAX || outlen < b + 2 + MSG_UNSUB_TOKEN_MAX)
		return -1;
	memcpy(out, j->ubase, b);
	out[b] = '/';
	int n = msg_unsub_token_sign(j->usign, j->job_id, (uint32_t)index, email, out + b + 1,
				     outlen - b - 1);
	return n < 0 ? -1 : (int)b + 1 + n;
}

/* ---- the job ---- */

const char *msg_sub_string(const struct json_t *v, char tmp[MSG_SUB_TMP], size_t *len)
{
	if (json_is_string(v)) {
		*len = json_string_length(v);
		return json_string_value(v);
	}
	if (json_is_integer(v))
		snprintf(tmp, MSG_SUB_TMP, "%" JSON_INTEGER_FORMAT, json_integer_value(v));
	else if (json_is_real(v))
		snprintf(tmp, MSG_SUB_TMP, "%.17g", json_real_value(v));
	else if (json_is_boolean(v))
		snprintf(tmp, MSG_SUB_TMP, "%s", json_is_true(v) ? "true" : "false");
	else
		return NULL;
	*len = strlen(tmp);
	return tmp;
}

/* Every job substitution must be usable; variables take theirs. */
static int job_subs(struct msg_job *j, const json_t *subs, struct msg_err *e)
{
	const char *key;
	json_t *v;
	char f[160], tmp[MSG_SUB_TMP];
	size_t len;

	if (!subs || json_is_null(subs))
		return 0;
	if (!json_is_object(subs))
		return msg_fail(e, "invalid_field", "substitutions", "must be an object");
	json_object_foreach((json_t *)subs, key, v) {
		snprintf(f, sizeof f, "substitutions.%s", key);
		const char *s = msg_sub_string(v, tmp, &len);
		if (!s)
			return msg_fail(e, "invalid_field", f, "must be a string, number or "
					"boolean");
		if (memchr(s, '\0', len) || !msg_utf8_valid(s, len))
			return msg_fail(e, "invalid_field", f, "must be valid UTF-8 without NUL");
	}
	for (size_t i = 0; i < j->nvars; i++) {
		const char *s = msg_sub_string(json_object_get(subs, j->vars[i].name), tmp, &len);
		if (!s)
			continue;
		snprintf(f, sizeof f, "substitutions.%s", j->vars[i].name);
		if (j->vars[i].in_header && msg_has_crlf(s, len))
			return msg_fail(e, "invalid_field", f, "holds CR or LF and goes "
					"into a header");
		j->vars[i].job_val = vl_strndup(s, len);
		j->vars[i].job_len = len;
	}
	return 0;
}

static bool id_ok(const char *s)
{
	size_t n = strlen(s);

	if (n == 0 || n > 64)
		return false;
	for (size_t i = 0; i < n; i++)
		if (!((s[i] >= 'a' && s[i] <= 'z') || (s[i] >= 'A' && s[i] <= 'Z') ||
		      (s[i] >= '0' && s[i] <= '9') || strchr("-_", s[i])))
			return false;
	return true;
}

static int job_init(struct msg_job *j, const struct msg_job_opts *o, struct msg_err *e)
{
	char host[300], why[120];
	bool utf8;
	unsigned char r[12];

	if (!o || !o->job_id || !id_ok(o->job_id))
		return msg_fail(e, "invalid_field", "job_id", "must be 1 to 64 letters, "
				"digits, '-' or '_'");
	snprintf(host, sizeof host, "x@%s", o->hostname ? o->hostname : "");
	if (msg_addr_check(host, strlen(host), &utf8, why, sizeof why) < 0 || utf8)
		return msg_fail(e, "invalid_field", "hostname", "must be an ASCII domain: %s",
				why);
	j->job_id = vl_strdup(o->job_id);
	j->hostname = vl_strdup(o->hostname);
	j->max_size = o->max_size;
	j->transactional = o->transactional;
	if (o->unsub) {
		const char *why = msg_unsub_base_ok(o->unsub->base_url);
		if (why || o->unsub->keylen < MSG_UNSUB_SECRET_MIN ||
		    o->unsub->keylen > MSG_UNSUB_SECRET_MAX)
			return msg_fail(e, "invalid_field", "unsubscribe.base_url", "%s", why ? why :
					"the secret must be 32 to 1024 octets");
		j->ubase = vl_strdup(o->unsub->base_url);
		if (!(j->usign = msg_unsub_signer_new(o->unsub->key, o->unsub->keylen)))
			return msg_fail(e, "invalid_field", "unsubscribe.base_url", "cannot set "
					"up HMAC-SHA256 (OpenSSL)");
	}
	if (getrandom(r, sizeof r, 0) != (ssize_t)sizeof r) {
		uint64_t s = vl_now_ns() ^ (uintptr_t)j;
		for (size_t i = 0; i < sizeof r; i++)
			r[i] = (unsigned char)vl_rand(&s);
	}
	strcpy(j->boundary, "=_vl.");
	for (size_t i = 0; i < sizeof r; i++)
		snprintf(j->boundary + 5 + 2 * i, 3, "%02x", r[i]);
	j->boundary[5 + 2 * sizeof r] = '.';
	j->boundary[6 + 2 * sizeof r] = '\0';
	return 0;
}

size_t msg_job_static_size(const struct msg_job *j)
{
	size_t n = 0;

	for (size_t i = 0; i < j->np; i++) {
		n += j->p[i].kind == PC_STATIC ? j->p[i].s.len : 0;
		for (size_t k = 0; k < j->p[i].nsegs; k++)
			n += j->p[i].segs[k].s.len;
	}
	return n;
}

struct msg_job *msg_job_compile(const struct json_t *content,
				const struct json_t *substitutions,
				const struct json_t *unsubscribe,
				const struct msg_job_opts *o, struct msg_err *e)
{
	struct msg_job *j = vl_calloc(1, sizeof *j);
	int rc;

	memset(e, 0, sizeof *e);
	if (unsubscribe && json_is_null(unsubscribe))
		unsubscribe = NULL;
	rc = job_init(j, o, e);
	if (rc == 0 && json_is_string(content))
		rc = msg_raw_compile(j, json_string_value(content), json_string_length(content),
				     unsubscribe, e);
	else if (rc == 0 && json_is_object(content))
		rc = msg_compose_object(j, content, unsubscribe, e);
	else if (rc == 0)
		rc = msg_fail(e, "invalid_field", "content", "must be an object or a string");
	if (rc == 0)
		rc = job_subs(j, substitutions, e);
	if (rc == 0 && j->max_size && msg_job_static_size(j) > j->max_size)
		rc = msg_fail(e, "too_large", "content", "the message is %zu octets before "
			      "substitution, over the limit of %zu", msg_job_static_size(j),
			      j->max_size);
	if (rc < 0) {
		msg_job_free(j);
		return NULL;
	}
	return j;
}

void msg_job_free(struct msg_job *j)
{
	if (!j)
		return;
	for (size_t i = 0; i < j->np; i++) {
		free(j->p[i].segs);
		free(j->p[i].name);
	}
	for (size_t i = 0; i < j->nvars; i++) {
		free(j->vars[i].name);
		free(j->vars[i].job_val);
	}
	free(j->p);
	free(j->vars);
	free(j->job_id);
	free(j->hostname);
	free(j->ubase);
	msg_unsub_signer_free(j->usign);
	vl_buf_free(&j->stat);
	free(j);
}

bool msg_job_needs_smtputf8(const struct msg_job *j)
{
	return j->smtputf8;
}

bool msg_job_needs_8bitmime(const struct msg_job *j)
{
	return j->eightbit;
}

size_t msg_job_nvars(const struct msg_job *j)
{
	return j->nvars;
}

const char *msg_job_var(const struct msg_job *j, size_t i)
{
	return i < j->nvars ? j->vars[i].name : NULL;
}

bool msg_job_var_in_header(const struct msg_job *j, size_t i)
{
	return i < j->nvars && j->vars[i].in_header;
}


bool msg_job_body_static(const struct msg_job *j)
{
	for (size_t i = 0; i < j->np; i++)
		if (j->p[i].kind == PC_QP || j->p[i].kind == PC_RAW)
			return false;
	return true;
}

/* The domain of the address in a From value: inside <...> when there,
 * else the value itself; nothing when a template slot is in it. */
static int from_value_domain(const char *v, size_t n, char *out, size_t outlen)
{
	const char *lt = memrchr(v, '<', n), *end = v + n;

	if (memmem(v, n, "{{", 2))
		return -1;
	if (lt) {
		const char *gt = memchr(lt, '>', (size_t)(end - lt));
		v = lt + 1;
		end = gt ? gt : end;
	}
	const char *at = memrchr(v, '@', (size_t)(end - v));
	if (!at)
		return -1;
	size_t len = 0;
	for (const char *p = at + 1; p < end && len + 1 < outlen; p++)
		if (*p != ' ' && *p != '\t' && *p != '\r' && *p != '\n')
			out[len++] = (char)tolower((unsigned char)*p);
	out[len] = '\0';
	return len ? 0 : -1;
}

int msg_content_from_domain(const struct json_t *content, char *out, size_t outlen)
{
	const json_t *c = (const json_t *)content;

	if (json_is_object(c)) {
		const char *e = json_string_value(json_object_get(json_object_get(c, "from"),
								  "email"));
		return e ? from_value_domain(e, strlen(e), out, outlen) : -1;
	}
	const char *s = json_string_value(c);
	for (const char *line = s; line && *line && *line != '\r' && *line != '\n';) {
		const char *nl = strchr(line, '\n');
		size_t n = nl ? (size_t)(nl - line) : strlen(line);
		if (n > 5 && !strncasecmp(line, "From:", 5))
			return from_value_domain(line + 5, n - 5, out, outlen);
		line = nl ? nl + 1 : NULL;
	}
	return -1;
}
