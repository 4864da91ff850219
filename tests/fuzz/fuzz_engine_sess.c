/*
 * libFuzzer target: the engine's SMTP client session against a hostile
 * server. The input is what the server "says", cut into replies by the
 * reply parser; the session must never crash, must give every recipient
 * exactly one result, and must hand each message back exactly once when
 * it is done. Three messages wait in a queue as in a pool: with PIPELINING
 * and CHUNKING they go pipelined behind each other (eng_sess_pipe, as the
 * worker's conn_pipe offers them after each reply), several transactions
 * outstanding; a message over the transaction's recipient cap goes as
 * several, its next first in the queue, as the worker's msg_finished does.
 */
#include <stdlib.h>
#include <string.h>

#include "../../engine/engine_int.h"

#define NMSG 3
#define NRCPT 3

static int results[NMSG][NRCPT], done[NMSG];
static struct eng_msg msgs[NMSG];
static struct eng_msg *queue[NMSG * NRCPT + NMSG];
static size_t qh, qt;

static void on_result(struct eng_msg *m, size_t i, const struct eng_result *r)
{
	size_t k = (size_t)(m - msgs);
	if (k >= NMSG || i >= NRCPT || results[k][i]++ || !r->stage || !r->text)
		abort();
	if (r->maybe_delivered && r->status != ENG_TRANSIENT)
		abort();
}

/* The worker's hand_back and msg_finished. */
static void hand_back(struct eng_sess *s)
{
	struct eng_msg *m = s->finished;
	s->finished = NULL;
	while (m) {
		struct eng_msg *next = m->next_;
		if (m->pending_ == 0) {
			if (done[m - msgs]++)
				abort();
		} else {
			m->first_ += m->count_;
			m->count_ = 0;
			if (qh == 0)
				abort();
			queue[--qh] = m;
		}
		m = next;
	}
}

static enum eng_act next_act(struct eng_sess *s, enum eng_act act, bool dane)
{
	for (;;) {
		hand_back(s);
		eng_sess_output_taken(s);
		if (act == ENG_STARTTLS) {
			s->tls_on = true;
			s->tls_dane = dane;
			act = eng_sess_tls_done(s);
			continue;
		}
		if (act == ENG_IDLE && qh < qt) {
			act = eng_sess_start(s, queue[qh++]);
			continue;
		}
		if (act == ENG_WAIT && s->state == ENG_S_TXN)
			while (eng_sess_pipe_open(s) && qh < qt && eng_sess_pipe(s, queue[qh])) {
				qh++;
				hand_back(s);
			}
		eng_sess_output_taken(s);
		return act;
	}
}

int LLVMFuzzerTestOneInput(const unsigned char *data, size_t len)
{
	static struct eng_config cfg;
	static struct eng_route route;
	static const char *rcpts[] = {"a@x.test", "b@x.test", "c@x.test"};
	static struct iovec body[] = {{"Subject: x\r\n\r\n.dot\r\n", 21}};
	char err[64];

	if (len < 2)
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
	memset(done, 0, sizeof done);
	/* the second octet: which messages need 8BITMIME or REQUIRETLS, how
	 * many recipients each has, a large one (its BDAT after the replies) */
	qh = NMSG * NRCPT;
	qt = qh;
	for (int k = 0; k < NMSG; k++) {
		size_t n = 1 + (size_t)((data[1] >> (2 * k)) & 3) % NRCPT;
		msgs[k] = (struct eng_msg){.route = &route, .mail_from = "s@y.test",
			.rcpts = rcpts, .nrcpt = n, .body = body, .nbody = 1,
			.on_result = on_result, .size_ = 21, .pending_ = n,
			.eightbit = k == 1 && (data[0] & 0x40),
			.require_tls = k == 2 && (data[0] & 0x21) == 0x21};
		if (k == 1 && (data[1] & 0xc0) == 0xc0)
			msgs[k].size_ = 100000;  /* SIZE= only: the body is not read past 21 */
		queue[qt++] = &msgs[k];
	}
	struct eng_sess s;
	struct eng_reply_parser p;
	eng_sess_init(&s, &cfg, &route);
	eng_reply_parser_init(&p);
	bool dane = data[0] & 0x10; /* TLS authenticated, for REQUIRETLS */
	next_act(&s, eng_sess_connected(&s), dane);
	data += 2, len -= 2;

	bool closed = false;
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
		enum eng_act act = next_act(&s, eng_sess_reply(&s, &r), dane);
		if (act == ENG_CLOSE)
			closed = true;
		if (s.ntxn > ENG_PIPE_MAX || s.nbodies)
			abort();
	}
	if (!closed && s.ntxn)
		eng_sess_fail(&s, eng_sess_stage(&s), 0, "", "end of input");
	hand_back(&s);
	if (s.ntxn)
		abort();
	/* Every recipient the session took got exactly one result, and a
	 * message is handed back done exactly when all its recipients have. */
	for (int k = 0; k < NMSG; k++) {
		size_t given = 0;
		for (int i = 0; i < NRCPT; i++)
			given += (size_t)results[k][i];
		if (given != msgs[k].nrcpt - msgs[k].pending_ || done[k] > 1 ||
		    (done[k] == 1) != (msgs[k].pending_ == 0))
			abort();
	}
	eng_sess_free(&s);
	eng_reply_parser_free(&p);
	return 0;
}
