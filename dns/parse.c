/*
 * Raw DNS messages: the queries we send (built here, so the AD and DO bits
 * can be set: c-ares 1.18 has no API for either) and the answers, parsed
 * here rather than by ares_parse_*_reply because the cache needs what
 * those drop: the AD bit, TTLs of CNAMEs, the SOA of negative answers,
 * and TLSA, which c-ares 1.18 cannot parse at all.
 */
#include "dns_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#define HDR_LEN 12
#define FLAG_RA 0x0080
#define FLAG_AD 0x0020
#define RCODE_NOERROR 0
#define RCODE_SERVFAIL 2
#define RCODE_NXDOMAIN 3
#define RCODE_REFUSED 5
#define MAX_RRS 512              /* answer RRs looked at; more is abuse */
#define MAX_CNAMES 16

static uint16_t get16(const uint8_t *p) { return (uint16_t)(p[0] << 8 | p[1]); }

static uint32_t get32(const uint8_t *p)
{
	return (uint32_t)p[0] << 24 | (uint32_t)p[1] << 16 | (uint32_t)p[2] << 8 | p[3];
}

static bool host_char(uint8_t c)
{
	return (c >= 'a' && c <= 'z') || (c >= 'A' && c <= 'Z') ||
	       (c >= '0' && c <= '9') || c == '-' || c == '_';
}

static uint8_t lower(uint8_t c) { return c >= 'A' && c <= 'Z' ? c + 32 : c; }

int dns_name_expand(const uint8_t *buf, size_t len, size_t *off,
		    char out[DNS_NAME_MAX])
{
	size_t pos = *off, o = 0, end = 0;
	bool jumped = false, bad = false;

	for (int hops = 0;;) {
		if (pos >= len)
			return -1;
		uint8_t l = buf[pos];
		if ((l & 0xc0) == 0xc0) {    /* compression pointer */
			if (pos + 1 >= len || ++hops > 32)
				return -1;
			if (!jumped)
				end = pos + 2;
			jumped = true;
			pos = (size_t)(l & 0x3f) << 8 | buf[pos + 1];
			continue;
		}
		if (l & 0xc0)
			return -1;
		if (l == 0) {
			if (!jumped)
				end = pos + 1;
			break;
		}
		if (pos + 1 + l > len || o + l + 2 > DNS_NAME_MAX - 2)
			return -1;
		if (o)
			out[o++] = '.';
		for (size_t i = 0; i < l; i++) {
			uint8_t c = buf[pos + 1 + i];
			bad |= !host_char(c);
			out[o++] = (char)(host_char(c) ? lower(c) : '?');
		}
		pos += 1 + (size_t)l;
	}
	out[o] = '\0';
	*off = end;
	return bad ? -2 : 0;
}

int dns_normalize(const char *in, char out[DNS_NAME_MAX])
{
	size_t n = strlen(in), label = 0;

	if (n && in[n - 1] == '.')
		n--;
	if (n == 0 || n > 253)
		return -1;
	for (size_t i = 0; i < n; i++) {
		uint8_t c = (uint8_t)in[i];
		if (c == '.') {
			if (label == 0)
				return -1;
			label = 0;
		} else if (!host_char(c) || ++label > 63) {
			return -1;
		}
		out[i] = (char)lower(c);
	}
	out[n] = '\0';
	return label ? 0 : -1;
}

static unsigned classify4(const uint8_t *a)
{
	if (a[0] == 0 || a[0] >= 224)  /* this network, multicast, reserved */
		return DNS_ADDR_UNUSABLE;
	if (a[0] == 127)
		return DNS_ADDR_LOOPBACK;
	if (a[0] == 10 || (a[0] == 172 && (a[1] & 0xf0) == 16) ||
	    (a[0] == 192 && a[1] == 168) || (a[0] == 100 && (a[1] & 0xc0) == 64))
		return DNS_ADDR_PRIVATE;
	if (a[0] == 169 && a[1] == 254)
		return DNS_ADDR_LINKLOCAL;
	return 0;
}

unsigned dns_addr_classify(const struct dns_addr *a)
{
	static const uint8_t zero[16], mapped[12] = { [10] = 0xff, [11] = 0xff };
	const uint8_t *ip = a->ip;

	if (a->family == AF_INET)
		return classify4(ip);
	if (memcmp(ip, mapped, 12) == 0)
		return classify4(ip + 12);
	if (memcmp(ip, zero, 15) == 0)
		return ip[15] == 1 ? DNS_ADDR_LOOPBACK : DNS_ADDR_UNUSABLE;
	if (ip[0] == 0xff)
		return DNS_ADDR_UNUSABLE;
	if (ip[0] == 0xfe && (ip[1] & 0xc0) == 0x80)
		return DNS_ADDR_LINKLOCAL;
	if ((ip[0] & 0xfe) == 0xfc)
		return DNS_ADDR_PRIVATE;
	return 0;
}

int dns_build_query(const char *name, uint16_t qtype, bool do_bit,
		    uint8_t **out, size_t *outlen)
{
	size_t n = strlen(name), cap = HDR_LEN + n + 2 + 4 + 11;
	uint8_t *q = vl_calloc(1, cap), *p;

	q[2] = 0x01;                 /* RD */
	q[3] = FLAG_AD;              /* RFC 6840 5.7: we understand AD */
	q[5] = 1;                    /* QDCOUNT */
	q[11] = 1;                   /* ARCOUNT: the OPT record */
	p = q + HDR_LEN;
	for (const char *s = name; *s;) {
		size_t l = strcspn(s, ".");
		if (l == 0 || l > 63) {
			free(q);
			return -1;
		}
		*p++ = (uint8_t)l;
		memcpy(p, s, l);
		p += l;
		s += l + (s[l] == '.');
	}
	*p++ = 0;
	*p++ = (uint8_t)(qtype >> 8);
	*p++ = (uint8_t)qtype;
	*p++ = 0;
	*p++ = 1;                    /* class IN */
	/* OPT: root owner, type 41, class = UDP size, TTL = ext-rcode,
	 * version, DO|Z; c-ares drops these last 11 octets on FORMERR. */
	*p++ = 0;
	*p++ = 0;
	*p++ = DNS_T_OPT;
	*p++ = DNS_EDNS_SIZE >> 8;
	*p++ = DNS_EDNS_SIZE & 0xff;
	*p++ = 0;
	*p++ = 0;
	*p++ = do_bit ? 0x80 : 0;
	*p++ = 0;
	*p++ = 0;
	*p++ = 0;
	*out = q;
	*outlen = (size_t)(p - q);
	return 0;
}

/* ---- answers ---- */

struct rrv {                     /* one resource record, located */
	char owner[DNS_NAME_MAX];
	uint16_t type;
	uint32_t ttl;
	size_t rdoff, rdlen;
};

/* Locate count RRs from *off; class IN only. -1 when malformed. */
static int scan_rrs(const uint8_t *buf, size_t len, size_t *off, unsigned count,
		    struct rrv *v, size_t *nv, size_t maxv)
{
	for (unsigned i = 0; i < count; i++) {
		struct rrv tmp, *r = *nv < maxv ? &v[*nv] : &tmp;
		if (dns_name_expand(buf, len, off, r->owner) == -1 || *off + 10 > len)
			return -1;
		const uint8_t *p = buf + *off;
		r->type = get16(p);
		r->ttl = get32(p + 4) & 0x7fffffff;  /* RFC 2181 8 */
		r->rdlen = get16(p + 8);
		r->rdoff = *off + 10;
		if (r->rdoff + r->rdlen > len)
			return -1;
		*off = r->rdoff + r->rdlen;
		if (get16(p + 2) == 1 && r != &tmp)
			(*nv)++;
	}
	return 0;
}

static int skip_questions(const uint8_t *buf, size_t len, size_t *off, unsigned n)
{
	char name[DNS_NAME_MAX];

	for (unsigned i = 0; i < n; i++) {
		if (dns_name_expand(buf, len, off, name) == -1 || *off + 4 > len)
			return -1;
		*off += 4;
	}
	return 0;
}

static uint32_t min32(uint32_t a, uint32_t b) { return a < b ? a : b; }

/* Follow CNAMEs from qname within the answer; cur gets the last name. */
static uint32_t follow_cnames(const uint8_t *buf, size_t len, const struct rrv *v,
			      size_t nv, const char *qname, char cur[DNS_NAME_MAX])
{
	uint32_t ttl = UINT32_MAX;

	snprintf(cur, DNS_NAME_MAX, "%s", qname);
	for (int hops = 0; hops < MAX_CNAMES; hops++) {
		size_t i = 0;
		while (i < nv && !(v[i].type == DNS_T_CNAME && strcmp(v[i].owner, cur) == 0))
			i++;
		if (i == nv)
			break;
		size_t off = v[i].rdoff;
		char target[DNS_NAME_MAX];
		if (dns_name_expand(buf, len, &off, target) != 0)
			break;
		memcpy(cur, target, DNS_NAME_MAX);
		ttl = min32(ttl, v[i].ttl);
	}
	return ttl;
}

/* A TXT record's character-strings (RFC 1035 3.3.14), joined: each is a
 * length octet and that many octets, which must fill the rdata exactly. */
static int take_txt(const uint8_t *rd, size_t rdlen, struct dns_txt_rr *t)
{
	size_t at = 0, out = 0;

	while (at < rdlen) {
		size_t n = rd[at];
		if (at + 1 + n > rdlen)
			return 0;
		at += 1 + n;
	}
	t->data = vl_malloc(rdlen + 1);
	for (at = 0; at < rdlen; at += 1 + rd[at]) {
		memcpy(t->data + out, rd + at + 1, rd[at]);
		out += rd[at];
	}
	t->data[out] = '\0';
	t->len = out;
	return 1;
}

/* Add the rdata of v to a; 1 if kept, 0 if skipped as malformed. */
static int take_rr(const uint8_t *buf, size_t len, const struct rrv *v, struct dns_ans *a)
{
	switch (a->qtype) {
	case DNS_T_MX: {
		char host[DNS_NAME_MAX];
		size_t off = v->rdoff + 2;
		/* A target with odd octets is kept ('?' for them): the MX
		 * rules count it as malformed rather than the record vanish
		 * and the domain look as if it had no MX at all. */
		if (v->rdlen < 3 || dns_name_expand(buf, len, &off, host) == -1)
			return 0;
		a->u.mx[a->n].pref = get16(buf + v->rdoff);
		a->u.mx[a->n].host = vl_strdup(host);
		break;
	}
	case DNS_T_A:
	case DNS_T_AAAA: {
		struct dns_addr *d = &a->u.addr[a->n];
		size_t want = a->qtype == DNS_T_A ? 4 : 16;
		if (v->rdlen != want)
			return 0;
		memset(d, 0, sizeof *d);
		d->family = a->qtype == DNS_T_A ? AF_INET : AF_INET6;
		memcpy(d->ip, buf + v->rdoff, want);
		break;
	}
	case DNS_T_TLSA: {
		struct dns_tlsa_rr *t = &a->u.tlsa[a->n];
		if (v->rdlen < 3)
			return 0;
		t->usage = buf[v->rdoff];
		t->selector = buf[v->rdoff + 1];
		t->mtype = buf[v->rdoff + 2];
		t->len = v->rdlen - 3;
		t->data = vl_malloc(t->len ? t->len : 1);
		memcpy(t->data, buf + v->rdoff + 3, t->len);
		break;
	}
	case DNS_T_TXT:
		return take_txt(buf + v->rdoff, v->rdlen, &a->u.txt[a->n]);
	case DNS_T_PTR: {
		char host[DNS_NAME_MAX];
		size_t off = v->rdoff;
		/* a target that is not a host name is no name to confirm */
		if (dns_name_expand(buf, len, &off, host) != 0 || !host[0])
			return 0;
		a->u.ptr[a->n] = vl_strdup(host);
		break;
	}
	default:
		return 0;
	}
	return 1;
}

static size_t elem_size(uint16_t qtype)
{
	switch (qtype) {
	case DNS_T_MX: return sizeof(struct dns_mx_rr);
	case DNS_T_TLSA: return sizeof(struct dns_tlsa_rr);
	case DNS_T_TXT: return sizeof(struct dns_txt_rr);
	case DNS_T_PTR: return sizeof(char *);
	default: return sizeof(struct dns_addr);
	}
}

static void take_records(const uint8_t *buf, size_t len, const struct rrv *v,
			 size_t nv, const char *owner, struct dns_ans *a, uint32_t *ttl)
{
	size_t want = 0;

	for (size_t i = 0; i < nv; i++)
		want += v[i].type == a->qtype && strcmp(v[i].owner, owner) == 0;
	if (!want)
		return;
	a->u.mx = vl_calloc(want, elem_size(a->qtype));
	for (size_t i = 0; i < nv; i++)
		if (v[i].type == a->qtype && strcmp(v[i].owner, owner) == 0 &&
		    take_rr(buf, len, &v[i], a)) {
			a->n++;
			*ttl = min32(*ttl, v[i].ttl);
		}
}

/* RFC 2308 5: a negative answer lives min(SOA TTL, SOA MINIMUM). */
static bool soa_ttl(const uint8_t *buf, size_t len, const struct rrv *v, size_t nv,
		    uint32_t *ttl, bool *has_ns)
{
	char name[DNS_NAME_MAX];

	*has_ns = false;
	for (size_t i = 0; i < nv; i++) {
		*has_ns |= v[i].type == DNS_T_NS;
		if (v[i].type != DNS_T_SOA)
			continue;
		size_t off = v[i].rdoff;
		if (dns_name_expand(buf, len, &off, name) == -1 ||
		    dns_name_expand(buf, len, &off, name) == -1 ||
		    off + 20 > v[i].rdoff + v[i].rdlen)
			continue;
		*ttl = min32(v[i].ttl, get32(buf + off + 16));
		return true;
	}
	return false;
}

static enum dns_status rcode_status(unsigned rcode)
{
	switch (rcode) {
	case RCODE_NOERROR: return DNS_OK;
	case RCODE_NXDOMAIN: return DNS_NXDOMAIN;
	case RCODE_SERVFAIL:
	case RCODE_REFUSED: return DNS_SERVFAIL;
	default: return DNS_ERROR;
	}
}

/* No records: NXDOMAIN, NODATA, or a lame answer. */
static void negative(const uint8_t *buf, size_t len, const struct rrv *auth,
		     size_t nauth, uint16_t flags, struct dns_ans *a)
{
	bool has_ns;

	if (soa_ttl(buf, len, auth, nauth, &a->ttl, &has_ns))
		return;
	a->ttl = 0;                  /* RFC 2308 5: no SOA, not cached */
	if (a->status == DNS_NODATA && (has_ns || !(flags & FLAG_RA)))
		a->status = DNS_LAME;
}

static size_t cap_rrs(unsigned n) { return n < MAX_RRS ? n : MAX_RRS; }

static int parse_sections(const uint8_t *buf, size_t len, const char *qname,
			  struct dns_ans *a, struct rrv *v, size_t *nan, size_t *nauth)
{
	uint16_t flags = get16(buf + 2);
	size_t off = HDR_LEN;

	if (skip_questions(buf, len, &off, get16(buf + 4)) < 0 ||
	    scan_rrs(buf, len, &off, get16(buf + 6), v, nan, cap_rrs(get16(buf + 6))) < 0 ||
	    scan_rrs(buf, len, &off, get16(buf + 8), v + *nan, nauth,
		     cap_rrs(get16(buf + 8))) < 0)
		return -1;
	a->ad = flags & FLAG_AD;
	a->status = rcode_status(flags & 0xf);
	if (a->status != DNS_OK && a->status != DNS_NXDOMAIN)
		return 0;
	char cur[DNS_NAME_MAX];
	uint32_t ttl = follow_cnames(buf, len, v, *nan, qname, cur);
	a->cname_ttl = ttl;
	if (strcmp(cur, qname) != 0)
		a->canon = vl_strdup(cur);
	if (a->status == DNS_OK)
		take_records(buf, len, v, *nan, cur, a, &ttl);
	if (a->n) {
		a->ttl = ttl;
		return 0;
	}
	if (a->status == DNS_OK)
		a->status = DNS_NODATA;
	negative(buf, len, v + *nan, *nauth, flags, a);
	return 0;
}

int dns_parse_answer(const uint8_t *buf, size_t len, const char *qname,
		     uint16_t qtype, struct dns_ans *a)
{
	struct rrv *v;
	size_t nan = 0, nauth = 0;
	int rc = -1;

	memset(a, 0, sizeof *a);
	a->qtype = qtype;
	a->status = DNS_ERROR;
	a->cname_ttl = UINT32_MAX;
	if (len < HDR_LEN)
		return -1;
	v = vl_malloc((cap_rrs(get16(buf + 6)) + cap_rrs(get16(buf + 8)) + 1) * sizeof *v);
	if (parse_sections(buf, len, qname, a, v, &nan, &nauth) == 0)
		rc = 0;
	free(v);
	if (rc < 0) {
		dns_ans_free(a);
		a->qtype = qtype;
		a->status = DNS_ERROR;
	}
	return rc;
}

void dns_ans_free(struct dns_ans *a)
{
	for (size_t i = 0; i < a->n; i++) {
		if (a->qtype == DNS_T_MX)
			free(a->u.mx[i].host);
		else if (a->qtype == DNS_T_TLSA)
			free(a->u.tlsa[i].data);
		else if (a->qtype == DNS_T_TXT)
			free(a->u.txt[i].data);
		else if (a->qtype == DNS_T_PTR)
			free(a->u.ptr[i]);
	}
	free(a->u.mx);
	free(a->canon);
	memset(a, 0, sizeof *a);
}
