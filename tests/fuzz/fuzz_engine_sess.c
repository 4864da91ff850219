/*
 * libFuzzer target: the engine's SMTP client session against a hostile
 * server. The input is what the server "says", cut into replies by the
 * reply parser; the session must never crash, must give every recipient
 * exactly one result, and must hand the message back exactly once.
 */
#include <stdlib.h>
#include <string.h>

#include "../../engine/engine_int.h"

static int results[4], finished;

static void on_result(struct eng_msg *m, size_t i, const struct eng_result *r)
{
	(void)m;
	if (i >= 4 || results[i]++ || !r->stage || !r->text)
		abort();
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	static struct eng_config cfg;
	static struct eng_route route;
	static const char *rcpts[] = {"a@x.test", "b@x.test", "c@x.test"};
	static struct iovec body[] = {{"Subject: x\r\n\r\n.dot\r\n", 21}};
	char err[64];

	if (len < 1)
		return 0;
	eng_config_defaults(&cfg);
	cfg.max_rcpts_per_txn = 1 + (data[0] & 3);
	eng_route_parse(&route, "127.0.0.1:25", err, sizeof err);
	route.tls = (enum tls_policy)((data[0] >> 2) % 7);
	/* the route's own limit (a policy's max_recipients_per_message) or the engine's */
	route.max_rcpts_per_txn = data[0] & 2 ? 1 + (data[0] & 1) : 0;
	route.implicit_tls = data[0] & 0x20;   /* the handshake, then the banner */
	if (data[0] & 0x80) {
		strcpy(route.auth_user, "u");
		strcpy(route.auth_pass, "p");
	}
	memset(results, 0, sizeof results);
	finished = 0;
	struct eng_msg m = {.route = &route, .mail_from = "s@y.test", .rcpts = rcpts,
			    .nrcpt = 3, .body = body, .nbody = 1, .on_result = on_result,
			    .size_ = 21, .pending_ = 3, .eightbit = data[0] & 0x40,
			    .require_tls = (data[0] & 0x21) == 0x21};
	struct eng_sess s;
	struct eng_reply_parser p;
	eng_sess_init(&s, &cfg, &route);
	eng_reply_parser_init(&p);
	bool dane = data[0] & 0x10; /* TLS authenticated, for REQUIRETLS */
	if (eng_sess_connected(&s) == ENG_STARTTLS) {   /* implicit TLS */
		s.tls_on = true;
		s.tls_dane = dane;
		eng_sess_tls_done(&s);
	}
	data++, len--;

	bool started = false, closed = false;
	size_t off = 0;
	while (off < len && !closed) {
		struct eng_reply r;
		size_t used;
		int rc = eng_reply_feed(&p, (const char *)data + off, len - off, &used, &r);
		off += used;
		if (rc < 0) {
			eng_sess_fail(&s, eng_sess_stage(&s), 0, "", "malformed");
			closed = true;
			break;
		}
		if (rc == 0)
			break;
		enum eng_act act = eng_sess_reply(&s, &r);
		vl_buf_reset(&s.out);
		for (;;) {
			if (s.finished) {
				struct eng_msg *f = s.finished;
				s.finished = NULL;
				if (f->pending_ == 0) {
					finished++;
				} else {
					f->first_ += f->count_;
					f->count_ = 0;
					started = false; /* the next chunk on this session */
				}
			}
			if (act == ENG_STARTTLS) {
				s.tls_on = true;
				s.tls_dane = dane;
				act = eng_sess_tls_done(&s);
				vl_buf_reset(&s.out);
				continue;
			}
			if (act == ENG_IDLE && !started && !finished) {
				started = true;
				act = eng_sess_start(&s, &m);
				vl_buf_reset(&s.out);
				continue;
			}
			break;
		}
		if (act == ENG_CLOSE)
			closed = true;
	}
	if (!closed && (s.msg || (started && !finished && m.pending_)))
		eng_sess_fail(&s, eng_sess_stage(&s), 0, "", "end of input");
	if (s.finished && s.finished->pending_ == 0)
		finished++;
	/* Every recipient the session took got exactly one result. */
	size_t given = 0;
	for (int i = 0; i < 3; i++)
		given += (size_t)results[i];
	if (given != 3 - m.pending_ || finished > 1)
		abort();
	eng_sess_free(&s);
	eng_reply_parser_free(&p);
	return 0;
}
