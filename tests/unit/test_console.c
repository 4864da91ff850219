/* console/: the compiled-in assets and their lookup; the console's paths
 * the gate lets through without the token (api/http1.c); the per-second
 * history ring (scheduler/history.c). */
#include <criterion/criterion.h>
#include <jansson.h>
#include <string.h>

#include "../../console/console.h"
#include "../../api/api_int.h"
#include "../../scheduler/sched_int.h"

Test(console, assets_and_types)
{
	size_t len;
	const char *type, *p;

	p = con_asset("", &len, &type);
	cr_assert_not_null(p);
	cr_assert_str_eq(type, "text/html; charset=utf-8");
	cr_assert(len > 100 && strstr(p, "<script src=\"app.js\""));
	cr_assert_eq(len, strlen(p));
	p = con_asset("index.html?x=1", &len, &type);
	cr_assert(p && !strcmp(type, "text/html; charset=utf-8"));
	p = con_asset("app.js", &len, &type);
	cr_assert(p && !strcmp(type, "text/javascript; charset=utf-8"));
	cr_assert_not_null(strstr(p, "sessionStorage"));
	/* the trigraph-looking text and backslashes survive the C string */
	cr_assert_not_null(strstr(p, "'\\n'"));
	p = con_asset("app.css", &len, &type);
	cr_assert(p && !strcmp(type, "text/css; charset=utf-8"));
	cr_assert_null(con_asset("nope.js", &len, &type));
	cr_assert_null(con_asset("../app.js", &len, &type));
	cr_assert_null(con_asset(".hidden", &len, &type));
	cr_assert_null(con_asset("app.js/", &len, &type));
	cr_assert_null(con_asset("a%2fb", &len, &type));
	cr_assert_str_eq(con_ctype("x.bin"), "application/octet-stream");
	cr_assert(con_name_ok("a-b_c.9.js", 10));
	cr_assert(!con_name_ok("", 0));
}

Test(console, token_free_paths)
{
	static const char *yes[] = { "/", "/?a", "/console", "/console/", "/console/app.js",
				     "/console/x?y", "/console?z" };
	static const char *no[] = { "", "/v1/stats", "/consolex", "/console.js", "//",
				    "/v1/console/", "/Console/" };

	for (size_t i = 0; i < sizeof yes / sizeof *yes; i++)
		cr_assert(api_console_path(yes[i], strlen(yes[i])), "%s", yes[i]);
	for (size_t i = 0; i < sizeof no / sizeof *no; i++)
		cr_assert(!api_console_path(no[i], strlen(no[i])), "%s", no[i]);
	/* only the first n octets count */
	cr_assert(api_console_path("/console/app.js", 8));
	cr_assert(!api_console_path("/console/app.js", 7));
}

Test(console, history_ring)
{
	struct sched_hist *h = calloc(1, sizeof *h);
	uint32_t out[5][SCHED_HIST_KINDS];
	int64_t t = 1796600000;

	sched_hist_add(h, t, SCHED_HIST_DELIVERED);
	sched_hist_add(h, t, SCHED_HIST_DELIVERED);
	sched_hist_add(h, t + 1, SCHED_HIST_BOUNCED);
	sched_hist_add(h, t + 3, SCHED_HIST_DEFERRED);
	sched_hist_read(h, t + 3, 5, out);
	uint32_t want[5][3] = { { 0, 0, 0 }, { 2, 0, 0 }, { 0, 0, 1 }, { 0, 0, 0 }, { 0, 1, 0 } };
	cr_assert_arr_eq(out, want, sizeof want);
	/* an hour on, the slot of t is t + 3600's: the old counts are gone */
	sched_hist_add(h, t + SCHED_HIST_SECONDS, SCHED_HIST_BOUNCED);
	sched_hist_read(h, t + SCHED_HIST_SECONDS, 1, out);
	cr_assert(out[0][0] == 0 && out[0][2] == 1);
	sched_hist_read(h, t + 3, 4, out);   /* t's slot now holds a later second */
	cr_assert_eq(out[0][0], 0);
	json_t *j = sched_hist_json(h, t + SCHED_HIST_SECONDS, 99999);
	cr_assert_eq(json_integer_value(json_object_get(j, "seconds")), SCHED_HIST_SECONDS);
	cr_assert_eq(json_array_size(json_object_get(j, "bounced")), SCHED_HIST_SECONDS);
	cr_assert_eq(json_integer_value(json_array_get(json_object_get(j, "bounced"),
						       SCHED_HIST_SECONDS - 1)), 1);
	json_decref(j);
	free(h);
}
