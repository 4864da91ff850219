/*
 * message: job templates, MIME composition, per-recipient rendering, DKIM.
 * So far: templates. A template is compiled once per job into static
 * segments and slots; rendering a recipient copies slot values into the
 * gaps, escaped for where they go, with no re-parse. Prefix: msg_.
 */
#ifndef VOLLEY_MESSAGE_H
#define VOLLEY_MESSAGE_H

#include <stdbool.h>
#include <stddef.h>

#include "../common/common.h"

#define MSG_VAR_MAX 64            /* octets in a substitution name */

struct msg_tpl;

/* Compile "Hi {{ name }}"-style text. Names are letters, digits, '_', '-'
 * and '.', spaces around them optional. An unterminated or malformed
 * "{{" is an error naming its offset; NULL with err filled. */
struct msg_tpl *msg_tpl_compile(const char *src, size_t len, char *err,
				size_t errlen);
void msg_tpl_free(struct msg_tpl *t);

/* Slots, in order of appearance; a name may appear several times. */
size_t msg_tpl_nslots(const struct msg_tpl *t);
const char *msg_tpl_slot(const struct msg_tpl *t, size_t i);
/* The template has no slots: render once for every recipient. */
bool msg_tpl_is_static(const struct msg_tpl *t);

/* Where a value goes decides its escaping. */
enum msg_escape {
	MSG_ESC_NONE,    /* text: as is */
	MSG_ESC_HTML,    /* & < > " ' as entities */
	MSG_ESC_HEADER,  /* refused if it holds CR, LF or NUL (header injection) */
};

/* The value of slot i (named name) for this recipient; NULL if it has
 * none, which is an error naming the variable. */
typedef const char *(*msg_value_fn)(void *arg, size_t slot, const char *name,
				    size_t *len);

/* Append the rendering to out. -1 with err filled (and out as it was). */
int msg_tpl_render(const struct msg_tpl *t, msg_value_fn value, void *arg,
		   enum msg_escape esc, struct vl_buf *out, char *err,
		   size_t errlen);

#endif
