/* message/: template compilation and rendering. */
#include <criterion/criterion.h>
#include <stdio.h>
#include <string.h>

#include "../../message/message.h"

struct vars {
	const char *names[8], *values[8];
};

static const char *lookup(void *arg, size_t slot, const char *name, size_t *len)
{
	struct vars *v = arg;
	(void)slot;
	for (int i = 0; i < 8 && v->names[i]; i++)
		if (strcmp(v->names[i], name) == 0) {
			*len = strlen(v->values[i]);
			return v->values[i];
		}
	return NULL;
}

static const char *render(const char *src, struct vars *v, enum msg_escape esc, int want_rc)
{
	static char out[1024];
	char err[256] = "";
	struct msg_tpl *t = msg_tpl_compile(src, strlen(src), err, sizeof err);
	cr_assert_not_null(t, "%s", err);
	struct vl_buf b;
	vl_buf_init(&b);
	vl_buf_appends(&b, "X");
	int rc = msg_tpl_render(t, lookup, v, esc, &b, err, sizeof err);
	cr_assert_eq(rc, want_rc, "%s", err);
	if (rc < 0) {
		cr_assert_eq(b.len, 1, "nothing half-rendered");
		snprintf(out, sizeof out, "%s", err);
	} else {
		snprintf(out, sizeof out, "%.*s", (int)b.len - 1, b.p + 1);
	}
	vl_buf_free(&b);
	msg_tpl_free(t);
	return out;
}

Test(msg_tpl, substitution)
{
	struct vars v = {{"name", "campaign", "a.b-c_d"}, {"Ann", "fall", "x"}};
	cr_assert_str_eq(render("Hi {{ name }}, {{campaign}}{{  a.b-c_d  }}!", &v, MSG_ESC_NONE, 0),
			 "Hi Ann, fallx!");
	cr_assert_str_eq(render("{{name}}", &v, MSG_ESC_NONE, 0), "Ann");
	cr_assert_str_eq(render("no slots { } }} {x", &v, MSG_ESC_NONE, 0), "no slots { } }} {x");
	cr_assert_str_eq(render("", &v, MSG_ESC_NONE, 0), "");
	cr_assert_str_eq(render("{{ missing }}", &v, MSG_ESC_NONE, -1), "no value for 'missing'");
}

Test(msg_tpl, slots_listed)
{
	char err[128];
	const char *src = "{{ a }} {{b}} {{ a }}";
	struct msg_tpl *t = msg_tpl_compile(src, strlen(src), err, sizeof err);
	cr_assert_eq(msg_tpl_nslots(t), 3);
	cr_assert_str_eq(msg_tpl_slot(t, 1), "b");
	cr_assert_not(msg_tpl_is_static(t));
	msg_tpl_free(t);
	t = msg_tpl_compile("plain", 5, err, sizeof err);
	cr_assert(msg_tpl_is_static(t));
	msg_tpl_free(t);
}

Test(msg_tpl, malformed)
{
	char err[256];
	const char *bad[] = {"{{", "a {{ name", "{{ }}", "{{ a b }}", "{{ na$me }}", "x {{a}", NULL};
	for (int i = 0; bad[i]; i++) {
		err[0] = '\0';
		cr_assert_null(msg_tpl_compile(bad[i], strlen(bad[i]), err, sizeof err), "%s", bad[i]);
		cr_assert(strstr(err, "offset"), "%s: %s", bad[i], err);
	}
	static char longname[200] = "{{ ";
	memset(longname + 3, 'n', 100);
	strcat(longname, " }}");
	cr_assert_null(msg_tpl_compile(longname, strlen(longname), err, sizeof err));
}

Test(msg_tpl, escaping)
{
	struct vars v = {{"v"}, {"<a href=\"x\">Tom & 'Jerry'</a>"}};
	cr_assert_str_eq(render("<p>{{ v }}</p>", &v, MSG_ESC_HTML, 0),
			 "<p>&lt;a href=&quot;x&quot;&gt;Tom &amp; &#39;Jerry&#39;&lt;/a&gt;</p>");
	cr_assert_str_eq(render("{{ v }}", &v, MSG_ESC_NONE, 0), v.values[0]);
	struct vars inj = {{"s"}, {"hi\r\nBcc: victim@example.com"}};
	cr_assert(strstr(render("Subject: {{ s }}", &inj, MSG_ESC_HEADER, -1), "CR, LF or NUL"));
	cr_assert_str_eq(render("Subject: {{ s }}", &inj, MSG_ESC_NONE, 0),
			 "Subject: hi\r\nBcc: victim@example.com", "only headers refuse it");
}
