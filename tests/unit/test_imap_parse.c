/* imap/parse.c: framing with literals, the responses the poller reads
 * (tagged status, codes, CAPABILITY, SEARCH, FETCH), the URL split, and
 * hostile input: huge lines and literals, absurd UIDs, garbage. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../imap/imap.h"

static char err[256];

static long frame(const char *s, size_t max_lit)
{
	err[0] = '\0';
	return imap_frame(s, strlen(s), max_lit, err, sizeof err);
}

Test(imap_frame, lines_and_literals)
{
	const char *two = "* 3 EXISTS\r\nV1 OK done\r\n";
	cr_assert_eq(frame(two, 100), 12);
	cr_assert_eq(frame("* 3 EXI", 100), 0, "a partial line needs more");
	const char *f = "* 1 FETCH (UID 7 BODY[] {5}\r\nab\r\nc)\r\nV2 OK\r\n";
	cr_assert_eq(frame(f, 100), (long)(strlen(f) - strlen("V2 OK\r\n")));
	cr_assert_eq(frame("* 1 FETCH (BODY[] {5}\r\nab", 100), 0, "a partial literal");
	cr_assert_eq(frame("* 1 FETCH (BODY[] {5}\r\nab\r\nc", 100), 0, "no line after it");
	/* the literal holds what looks like a line end and a tag */
	const char *tricky = "* 1 FETCH (BODY[] {14}\r\nV2 OK fake\r\n\r\n)\r\n";
	cr_assert_eq(frame(tricky, 100), (long)strlen(tricky));
	cr_assert_eq(frame("* 1 FETCH (BODY[] {5+}\r\nabcde)\r\n", 100), 32, "{N+}");
	cr_assert_eq(frame("* OK bare LF\n", 100), 13);
}

Test(imap_frame, bounds)
{
	cr_assert_eq(frame("* 1 FETCH (BODY[] {101}\r\n", 100), -1);
	cr_assert(strstr(err, "literal of 101"), "%s", err);
	cr_assert_eq(frame("* 1 FETCH (BODY[] {99999999999}\r\n", 1000), -1);
	cr_assert(strstr(err, "malformed literal"), "%s", err);
	char *big = malloc(IMAP_LINE_MAX + 10);
	memset(big, 'a', IMAP_LINE_MAX + 5);
	big[IMAP_LINE_MAX + 5] = '\0';
	cr_assert_eq(frame(big, 100), -1, "a line without end past the bound");
	cr_assert(strstr(err, "longer than"), "%s", err);
	free(big);
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_appends(&b, "* 1 FETCH (");
	for (int i = 0; i <= IMAP_LITERALS_MAX; i++)
		vl_buf_appends(&b, "X {1}\r\na ");
	vl_buf_appends(&b, ")\r\n");
	vl_buf_append(&b, "", 1);
	cr_assert_eq(frame(b.p, 100), -1);
	cr_assert(strstr(err, "literals"), "%s", err);
	vl_buf_free(&b);
}

static int parse(const char *s, struct imap_resp *r)
{
	err[0] = '\0';
	return imap_resp_parse(s, strlen(s), r, err, sizeof err);
}

Test(imap_resp, tagged_and_codes)
{
	struct imap_resp r;

	cr_assert_eq(parse("V7 OK [READ-WRITE] Select completed.\r\n", &r), 0, "%s", err);
	cr_assert_eq(r.kind, IMAP_R_TAGGED);
	cr_assert_str_eq(r.tag, "V7");
	cr_assert_eq(r.status, IMAP_S_OK);
	cr_assert_str_eq(r.code, "READ-WRITE");
	cr_assert_eq(r.text_len, strlen("Select completed."));
	cr_assert_eq(parse("V2 NO [TRYCREATE] Mailbox doesn't exist: X\r\n", &r), 0);
	cr_assert_eq(r.status, IMAP_S_NO);
	cr_assert_str_eq(r.code, "TRYCREATE");
	cr_assert_eq(parse("V3 BAD Error in IMAP command\r\n", &r), 0);
	cr_assert_eq(r.status, IMAP_S_BAD);
	cr_assert_eq(parse("* OK [UIDVALIDITY 1796621944] UIDs valid\r\n", &r), 0);
	cr_assert_eq(r.kind, IMAP_R_UNTAGGED);
	cr_assert_str_eq(r.code, "UIDVALIDITY");
	cr_assert_eq(r.code_num, 1796621944u);
	cr_assert_eq(parse("* OK [UIDNEXT 2] Predicted next UID\r\n", &r), 0);
	cr_assert_eq(r.code_num, 2);
	cr_assert_eq(parse("* BYE going away\r\n", &r), 0);
	cr_assert_eq(r.status, IMAP_S_BYE);
	cr_assert_eq(parse("+ go ahead\r\n", &r), 0);
	cr_assert_eq(r.kind, IMAP_R_CONT);
	cr_assert_eq(parse("* 3 EXISTS\r\n", &r), 0);
	cr_assert_not(r.is_fetch);
	cr_assert_eq(parse("* FLAGS (\\Answered \\Seen)\r\n", &r), 0);
	cr_assert_eq(r.status, IMAP_S_NONE);
}

Test(imap_resp, capability)
{
	struct imap_resp r;

	cr_assert_eq(parse("* CAPABILITY IMAP4rev1 SASL-IR UIDPLUS MOVE LITERAL+\r\n", &r), 0);
	cr_assert(r.is_capability);
	cr_assert_eq(r.caps, IMAP_CAP_MOVE | IMAP_CAP_UIDPLUS);
	cr_assert_eq(parse("* CAPABILITY IMAP4rev1 MOVEX UIDPLUSS\r\n", &r), 0);
	cr_assert_eq(r.caps, 0, "a prefix is no capability");
	cr_assert_eq(parse("V1 OK [CAPABILITY IMAP4rev1 move] Logged in\r\n", &r), 0);
	cr_assert(r.is_capability);
	cr_assert_eq(r.caps, IMAP_CAP_MOVE);
}

Test(imap_resp, garbage)
{
	struct imap_resp r;
	const char *bad[] = {
		"V1 MAYBE fine\r\n", "V1\r\n", "* OK [UIDVALIDITY 0] zero\r\n",
		"* OK [UIDVALIDITY 4294967296] too big\r\n", "* OK [UIDVALIDITY x] no\r\n",
		"* OK [UIDVALIDITY 5 unclosed\r\n", "no line end", "*\r\n", "* \r\n",
		"V1OK\r\n", "\r\n", "* 99999999999 EXISTS\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(parse(bad[i], &r), -1, "accepted %s", bad[i]);
}

static int search(const char *s, uint32_t after, uint32_t *out, size_t max, size_t *n)
{
	err[0] = '\0';
	return imap_parse_search(s, strlen(s), after, out, max, n, err, sizeof err);
}

Test(imap_search, ordered_bounded)
{
	uint32_t u[4];
	size_t n;

	cr_assert_eq(search("* SEARCH 9 4 7 12 5\r\n", 4, u, 4, &n), 0, "%s", err);
	cr_assert_eq(n, 4);
	cr_assert_eq(u[0], 5);
	cr_assert_eq(u[1], 7);
	cr_assert_eq(u[2], 9);
	cr_assert_eq(u[3], 12);
	cr_assert_eq(search("* SEARCH 30 20 10 5 6 7 8\r\n", 0, u, 3, &n), 0);
	cr_assert_eq(n, 3, "the smallest three");
	cr_assert_eq(u[0], 5);
	cr_assert_eq(u[2], 7);
	cr_assert_eq(search("* SEARCH\r\n", 0, u, 3, &n), 0);
	cr_assert_eq(n, 0);
	cr_assert_eq(search("* SEARCH 3 3 3\r\n", 0, u, 3, &n), 0);
	cr_assert_eq(n, 1, "duplicates once");
	cr_assert_eq(search("* SEARCH 4294967295\r\n", 0, u, 3, &n), 0);
	cr_assert_eq(u[0], 4294967295u);
	cr_assert_eq(search("* SEARCH 2 (MODSEQ 917)\r\n", 0, u, 3, &n), 0);
	cr_assert_eq(n, 1);
	const char *bad[] = { "* SEARCH 4294967296\r\n", "* SEARCH 0\r\n", "* SEARCH 1x\r\n",
			      "* SEARCH -1\r\n", "* SEARCH 12345678901234567890123\r\n",
			      "* SEARCHES 1\r\n", "* SEARCH 1 \r\n trailing" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(search(bad[i], 0, u, 3, &n), -1, "accepted %s", bad[i]);
}

static int fetch(const char *s, size_t len, struct imap_fetch *f)
{
	err[0] = '\0';
	return imap_parse_fetch(s, len, f, err, sizeof err);
}

Test(imap_fetch, body_size_flags)
{
	struct imap_fetch f;
	const char *a = "* 1 FETCH (UID 7 RFC822.SIZE 21 FLAGS (\\Seen $Volley) BODY[] {21}\r\n"
			"Subject: hi\r\n\r\nbody\r\n)\r\n";
	cr_assert_eq(fetch(a, strlen(a), &f), 0, "%s", err);
	cr_assert_eq(f.seq, 1);
	cr_assert_eq(f.uid, 7);
	cr_assert(f.has_size);
	cr_assert_eq(f.size, 21);
	cr_assert(f.seen);
	cr_assert(f.has_body);
	cr_assert_eq(f.body_len, 21);
	cr_assert(!memcmp(f.body, "Subject: hi\r\n\r\nbody\r\n", 21));
	const char *b = "* 2 FETCH (FLAGS (\\Recent) UID 9)\r\n";
	cr_assert_eq(fetch(b, strlen(b), &f), 0, "%s", err);
	cr_assert_eq(f.uid, 9);
	cr_assert_not(f.seen);
	cr_assert_not(f.has_body);
	const char *c = "* 2 FETCH (UID 9 BODY[] NIL)\r\n";
	cr_assert_eq(fetch(c, strlen(c), &f), 0);
	cr_assert_not(f.has_body);
	const char *d = "* 2 FETCH (UID 9 BODY[] \"tiny\")\r\n";
	cr_assert_eq(fetch(d, strlen(d), &f), 0);
	cr_assert_eq(f.body_len, 4);
	const char *e = "* 2 FETCH (UID 9 BODY[HEADER.FIELDS (FROM)] {3}\r\nabc MODSEQ (4))\r\n";
	cr_assert_eq(fetch(e, strlen(e), &f), 0, "%s", err);
	cr_assert_not(f.has_body, "a section is not the whole message");
	/* a NUL inside the literal is kept */
	const char nul[] = "* 3 FETCH (UID 1 BODY[] {3}\r\na\0b)\r\n";
	cr_assert_eq(fetch(nul, sizeof nul - 1, &f), 0, "%s", err);
	cr_assert_eq(f.body_len, 3);
}

Test(imap_fetch, garbage)
{
	struct imap_fetch f;
	const char *bad[] = {
		"* 1 FETCH (UID 0)\r\n", "* 1 FETCH (UID 4294967296)\r\n", "* 0 FETCH (UID 1)\r\n",
		"* 1 FETCH (UID 1\r\n", "* 1 FETCH UID 1\r\n", "* 1 FETCH (UID 1) x\r\n",
		"* 1 FETCH (BODY[] {9}\r\nab)\r\n", "* 1 FETCH (RFC822.SIZE x)\r\n",
		"* 1 FETCH (FLAGS (\\Seen)\r\n", "* 1 FETCH (BODY[] \"a\\\"b\")\r\n",
		"* 1 FETCH (X (((((((((((((((((((((a))))))))))))))))))))))\r\n",
	};
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(fetch(bad[i], strlen(bad[i]), &f), -1, "accepted %s", bad[i]);
}

Test(imap_url, split)
{
	char base[512], folder[256];
	bool imp;

	cr_assert_eq(imap_url_split("imaps://imap.example.com/INBOX", base, sizeof base, folder,
				    sizeof folder, &imp, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(base, "imaps://imap.example.com/");
	cr_assert_str_eq(folder, "INBOX");
	cr_assert(imp);
	cr_assert_eq(imap_url_split("imap://localhost:1143/Feedback%20Loop", base, sizeof base,
				    folder, sizeof folder, &imp, err, sizeof err), 0, "%s", err);
	cr_assert_str_eq(base, "imap://localhost:1143/");
	cr_assert_str_eq(folder, "Feedback Loop");
	cr_assert_not(imp);
	cr_assert_eq(imap_url_split("imaps://h", base, sizeof base, folder, sizeof folder, &imp,
				    err, sizeof err), 0);
	cr_assert_str_eq(folder, "INBOX");
	const char *bad[] = { "http://h/INBOX", "imaps:///INBOX", "imaps://u@h/INBOX",
			      "imaps://h/IN%22BOX", "imaps://h/INBOX;UID=4", "imaps://h/a%2",
			      "imaps://h/a*", "imaps://h o/x" };
	for (size_t i = 0; i < sizeof bad / sizeof *bad; i++)
		cr_assert_eq(imap_url_split(bad[i], base, sizeof base, folder, sizeof folder,
					    &imp, err, sizeof err), -1, "accepted %s", bad[i]);
}
