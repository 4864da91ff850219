/* libFuzzer: imap/'s response parser on whatever a server could send.
 * Framing never reads past the input; each framed response classified,
 * and read as SEARCH and FETCH; UIDs within 1..2^32-1, a body inside the
 * response, the SEARCH output ascending and bounded. */
#include <stdint.h>
#include <stdlib.h>
#include <string.h>

#include "../../imap/imap.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	const char *p = (const char *)data;
	size_t off = 0;
	char err[200];

	while (off < size) {
		long n = imap_frame(p + off, size - off, 4096, err, sizeof err);
		if (n <= 0)
			break;
		if ((size_t)n > size - off)
			__builtin_trap();
		const char *r = p + off;
		struct imap_resp resp;
		struct imap_fetch f;
		uint32_t uids[8];
		size_t nu;
		if (imap_resp_parse(r, (size_t)n, &resp, err, sizeof err) == 0 &&
		    (resp.kind == IMAP_R_TAGGED) != (resp.tag[0] != '\0'))
			__builtin_trap();
		if (imap_parse_search(r, (size_t)n, 3, uids, 8, &nu, err, sizeof err) == 0) {
			if (nu > 8)
				__builtin_trap();
			for (size_t i = 0; i < nu; i++)
				if (uids[i] <= 3 || (i && uids[i] <= uids[i - 1]))
					__builtin_trap();
		}
		if (imap_parse_fetch(r, (size_t)n, &f, err, sizeof err) == 0 && f.has_body &&
		    (f.body < r || f.body + f.body_len > r + n))
			__builtin_trap();
		off += (size_t)n;
	}
	/* the URL splitter on the same bytes as a string */
	char *s = malloc(size + 1), base[512], folder[256];
	bool imp;
	memcpy(s, data, size);
	s[size] = '\0';
	if (imap_url_split(s, base, sizeof base, folder, sizeof folder, &imp, err, sizeof err) == 0 &&
	    (strlen(folder) > 255 || !*folder))
		__builtin_trap();
	free(s);
	return 0;
}
