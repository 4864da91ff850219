/*
 * GET /v1/jobs/{id}/recipients: every recipient's committed outcome, read
 * from the job's journal and feedback file without holding them in memory.
 * Both files are mapped (page cache, not the daemon's heap). A first pass
 * keeps one octet per recipient (its state); rows then go out a window at
 * a time: up to WIN_MAX matching recipients whose last records one more
 * pass finds. A ten-million-recipient job costs ten megabytes and a
 * window, not its journal and eight octets per recipient.
 */
#include "sched_int.h"

#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/stat.h>
#include <unistd.h>

#define WIN_MAX (1u << 20)       /* matching recipients per window */
#define FROM_FB (1ull << 63)     /* an offset into the feedback file */

struct map {
	const char *p;
	size_t len;
};

struct sched_cursor {
	struct sched_table *t;
	enum sched_state filter;
	struct map j, fb;
	size_t n;                     /* recipients */
	uint8_t *st;                  /* [n]: the state at open */
	size_t next;                  /* the first index not in a window yet */
	uint32_t *win;                /* the window's indexes, ascending */
	uint64_t *off;                /* ... their last record, offset + 1 */
	uint8_t *wst;                 /* ... their state while the pass runs */
	size_t nwin, at;              /* in the window; emitted */
	size_t wmax;                  /* the window's size */
	size_t left;                  /* rows still to emit (a page) */
	uint8_t *cls;                 /* [n]: the last class (sched_cursor_classes) */
	struct vl_buf pending;        /* formatted, not yet read */
	struct sched_rcpt r;
};

static void map_file(const char *path, struct map *m)
{
	struct stat st;
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	m->p = NULL;
	m->len = 0;
	if (fd < 0)
		return;
	if (fstat(fd, &st) == 0 && st.st_size > 0) {
		void *p = mmap(NULL, (size_t)st.st_size, PROT_READ, MAP_PRIVATE, fd, 0);
		if (p != MAP_FAILED) {
			madvise(p, (size_t)st.st_size, MADV_SEQUENTIAL);
			m->p = p;
			m->len = (size_t)st.st_size;
		}
	}
	close(fd);
}

static void unmap(struct map *m)
{
	if (m->p)
		munmap((void *)m->p, m->len);
}

/* Each whole record of m in order: fn(c, record, offset); stops at a
 * torn tail as replay does. */
static void each(struct sched_cursor *c, const struct map *m, uint64_t tag,
		 void (*fn)(struct sched_cursor *, const struct sched_jrec *, uint64_t))
{
	struct sched_jrec r;
	size_t rl;

	for (size_t off = 0; off < m->len && (rl = sched_journal_decode(m->p + off,
									 m->len - off, &r)); off += rl)
		fn(c, &r, (off + 1) | tag);
}

/* ---- the first pass: states ---- */

static void state_rec(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	(void)off;
	if (r->idx < c->n) {
		c->st[r->idx] = r->state;
		return;
	}
	/* a job-wide record (cancel, expiry) sets every state not final */
	for (size_t i = 0; r->idx == SCHED_JREC_ALL && i < c->n; i++)
		if (!sched_rstate_final(c->st[i]))
			c->st[i] = r->state;
}

/* Late bounces (feedback file) override a delivered state; complaints
 * change no state. */
static void late_rec(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	(void)off;
	if ((r->flags & SCHED_FBR_OOB) && r->idx < c->n && c->st[r->idx] == SCHED_R_DELIVERED)
		c->st[r->idx] = SCHED_R_BOUNCED;
}

/* ---- a window's pass: the records that tell why ---- */

static long win_find(const struct sched_cursor *c, uint32_t idx)
{
	size_t lo = 0, hi = c->nwin;

	if (!c->nwin || idx < c->win[0] || idx > c->win[c->nwin - 1])
		return -1;
	while (lo < hi) {
		size_t mid = (lo + hi) / 2;
		if (c->win[mid] < idx)
			lo = mid + 1;
		else
			hi = mid;
	}
	return lo < c->nwin && c->win[lo] == idx ? (long)lo : -1;
}

static void win_rec(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	long k = win_find(c, r->idx);

	if (k >= 0) {
		c->wst[k] = r->state;
		c->off[k] = off;
		return;
	}
	/* job-wide: the recipient's own last record keeps telling why */
	for (size_t i = 0; r->idx == SCHED_JREC_ALL && i < c->nwin; i++)
		if (!sched_rstate_final(c->wst[i])) {
			c->wst[i] = r->state;
			if (!c->off[i])
				c->off[i] = off;
		}
}

static void win_late(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	long k = win_find(c, r->idx);

	if (k >= 0 && (r->flags & SCHED_FBR_OOB) && c->wst[k] == SCHED_R_DELIVERED) {
		c->wst[k] = SCHED_R_BOUNCED;
		c->off[k] = off;
	}
}

/* The next window: up to wmax matching recipients from c->next on. */
static bool next_window(struct sched_cursor *c)
{
	c->nwin = c->at = 0;
	for (; c->next < c->n && c->nwin < c->wmax; c->next++)
		if (c->filter == SCHED_NSTATES || sched_rstate_api(c->st[c->next]) == c->filter)
			c->win[c->nwin++] = (uint32_t)c->next;
	if (!c->nwin)
		return false;
	memset(c->off, 0, c->nwin * sizeof *c->off);
	memset(c->wst, 0, c->nwin);
	each(c, &c->j, 0, win_rec);
	each(c, &c->fb, FROM_FB, win_late);
	return true;
}

struct sched_cursor *sched_cursor_new(struct sched_table *t, const char *journal,
				      const char *feedback, bool cancelled,
				      enum sched_state filter, size_t win)
{
	struct sched_cursor *c = vl_calloc(1, sizeof *c);
	size_t n = sched_table_count(t);

	c->wmax = win ? win : WIN_MAX;
	c->left = SIZE_MAX;
	c->t = t;
	c->filter = filter;
	c->n = n;
	c->st = vl_calloc(n + 1, 1);
	size_t w = n < c->wmax ? n + 1 : c->wmax;
	c->win = vl_calloc(w, sizeof *c->win);
	c->off = vl_calloc(w, sizeof *c->off);
	c->wst = vl_calloc(w, 1);
	vl_buf_init(&c->pending);
	map_file(journal, &c->j);
	map_file(feedback, &c->fb);
	each(c, &c->j, 0, state_rec);
	/* cancelled, but the delivery thread has not journaled it yet */
	for (size_t i = 0; cancelled && i < n; i++)
		if (!sched_rstate_final(c->st[i]))
			c->st[i] = SCHED_R_CANCELLED;
	each(c, &c->fb, 0, late_rec);
	return c;
}

static void rcpt_line(struct sched_cursor *c, size_t i, uint64_t off)
{
	struct sched_jrec r;
	char when[32];
	const struct map *m = off & FROM_FB ? &c->fb : &c->j;
	size_t at = (size_t)(off & ~FROM_FB);
	bool has = at && sched_journal_decode(m->p + at - 1, m->len - (at - 1), &r);

	vl_buf_printf(&c->pending, "{\"index\":%zu,\"email\":", i);
	vl_buf_json_string(&c->pending, c->r.email);
	vl_buf_printf(&c->pending, ",\"state\":\"%s\",\"attempts\":%u,\"updated\":",
		      sched_state_name(sched_rstate_api(c->st[i])), has ? r.attempts : 0);
	if (!has || !r.time) {
		vl_buf_appends(&c->pending, "null,\"bounce_class\":null,\"response\":null,"
			       "\"reason\":null}\n");
		return;
	}
	vl_iso8601(r.time, when);
	vl_buf_printf(&c->pending, "\"%s\",\"bounce_class\":", when);
	vl_buf_json_string(&c->pending, sched_bounce_class_name((enum sched_bounce_class)r.cls));
	/* as in events: a reply is a response; no reply, the words are the reason */
	if (!r.code) {
		vl_buf_appends(&c->pending, ",\"response\":null,\"reason\":");
		vl_buf_json_string(&c->pending, r.textlen ? r.text : NULL);
		vl_buf_appends(&c->pending, "}\n");
		return;
	}
	vl_buf_printf(&c->pending, ",\"response\":{\"code\":%d,\"enhanced\":", r.code);
	vl_buf_json_string(&c->pending, *r.enhanced ? r.enhanced : NULL);
	vl_buf_appends(&c->pending, ",\"text\":");
	vl_buf_json_string(&c->pending, r.text);
	vl_buf_appends(&c->pending, "},\"reason\":null}\n");
}

/* ---- bounce classes over the job ---- */

static void cls_rec(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	(void)off;
	if (r->idx < c->n)
		c->cls[r->idx] = r->cls;
}

static void cls_late(struct sched_cursor *c, const struct sched_jrec *r, uint64_t off)
{
	(void)off;
	if ((r->flags & SCHED_FBR_OOB) && r->idx < c->n)
		c->cls[r->idx] = r->cls;
}

json_t *sched_cursor_classes(struct sched_cursor *c)
{
	static const enum sched_state states[] = { SCHED_BOUNCED, SCHED_DEFERRED, SCHED_EXPIRED };
	size_t (*count)[SCHED_BC_COUNT] = vl_calloc(VL_ARRAY_LEN(states), sizeof *count);
	json_t *r = json_object();

	c->cls = vl_calloc(c->n + 1, 1);
	each(c, &c->j, 0, cls_rec);
	each(c, &c->fb, 0, cls_late);
	for (size_t i = 0; i < c->n; i++)
		for (size_t k = 0; k < VL_ARRAY_LEN(states); k++)
			if (sched_rstate_api(c->st[i]) == states[k] && c->cls[i] < SCHED_BC_COUNT)
				count[k][c->cls[i]]++;
	for (size_t k = 0; k < VL_ARRAY_LEN(states); k++) {
		json_t *o = json_object();
		for (int b = 1; b < SCHED_BC_COUNT; b++)
			if (count[k][b])
				json_object_set_new(o, sched_bounce_class_name((enum sched_bounce_class)b),
						    json_integer((json_int_t)count[k][b]));
		json_object_set_new(r, sched_state_name(states[k]), o);
	}
	free(count);
	return r;
}

void sched_cursor_page(struct sched_cursor *c, size_t first, size_t limit)
{
	c->next = first < c->n ? first : c->n;
	if (limit) {
		c->left = limit;
		if (limit < c->wmax)
			c->wmax = limit;
	}
}

size_t sched_recipients_read(struct sched_cursor *c, char *buf, size_t max)
{
	while (c->pending.len < max && c->left) {
		if (c->at == c->nwin && !next_window(c))
			break;
		size_t i = c->win[c->at];
		uint64_t off = c->off[c->at++];
		if (sched_table_get(c->t, i, &c->r) < 0) {
			c->next = c->n;
			c->at = c->nwin = 0;
			break;
		}
		rcpt_line(c, i, off);
		c->left--;
	}
	size_t n = c->pending.len < max ? c->pending.len : max;
	if (n) {
		memcpy(buf, c->pending.p, n);
		vl_buf_consume(&c->pending, n);
	}
	return n;
}

void sched_recipients_close(struct sched_cursor *c)
{
	if (!c)
		return;
	sched_table_close(c->t);
	unmap(&c->j);
	unmap(&c->fb);
	vl_buf_free(&c->pending);
	free(c->st);
	free(c->win);
	free(c->off);
	free(c->wst);
	free(c->cls);
	free(c);
}
