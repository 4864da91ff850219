/*
 * volley-blast: the ceiling for the engine's benchmark. Pre-rendered SMTP
 * transactions (MAIL, RCPT, BDAT LAST with a 4 KB body, in one write) sent
 * over N connections with epoll, counting replies and nothing else: what a
 * client with no per-message work at all reaches against the same sink.
 * With --tls, each connection does STARTTLS first (sessions resumed from
 * the thread's first one, certificates not verified) and every transaction
 * is one SSL_write (records of up to 16 KB): the TLS ceiling. Every
 * connection's set-up (banner, EHLO, STARTTLS, the handshake, EHLO again)
 * runs in the event loop, all of them at once: against a sink 50 ms away,
 * ten thousand of them one after another would take most of an hour.
 *
 *   volley-blast --route ADDR:PORT --conns 50 --messages 100000 [--size 4096]
 *                [--threads 2] [--tls]
 */
#include "../../common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <openssl/err.h>
#include <openssl/ssl.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <fcntl.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

/* Where a connection's set-up stands; each step waits for one reply
 * (the handshake for OpenSSL). Clear text goes from EHLO to READY. */
enum phase { P_BANNER, P_EHLO, P_STARTTLS, P_HANDSHAKE, P_EHLO_TLS, P_READY };

struct bconn {
	int fd;
	SSL *ssl;              /* --tls: after STARTTLS */
	enum phase phase;
	bool started;          /* a transaction went: its replies are a message */
	int replies_due;       /* final reply lines still expected */
	int col;               /* position in the current line (0..3) */
	bool final_line;       /* current line is "NNN " (last of a reply) */
};

struct shared {
	struct sockaddr_in addr;
	const char *txn;
	size_t txn_len;
	atomic_long left;      /* messages not yet started */
	atomic_long done;
	atomic_long errors;
	SSL_CTX *tls;          /* --tls, else NULL */
};

struct thread {
	pthread_t tid;
	struct shared *sh;
	int nconns;
	SSL_SESSION *sess;     /* --tls: resumed by the thread's other connections */
};

static void xsend(int fd, const char *p, size_t n)
{
	while (n > 0) {
		ssize_t w = send(fd, p, n, MSG_NOSIGNAL);
		if (w < 0 && errno == EINTR)
			continue;
		if (w <= 0)
			return; /* blocking socket: only on error; recv will see it */
		p += w;
		n -= (size_t)w;
	}
}

/* Count final reply lines ("NNN text"): the 4th octet is a space. */
static int count_replies(struct bconn *c, const char *p, size_t n)
{
	int finals = 0;

	for (size_t i = 0; i < n; i++) {
		if (c->col == 3)
			c->final_line = p[i] == ' ' || p[i] == '\r';
		if (p[i] == '\n') {
			finals += c->final_line;
			c->col = 0;
			c->final_line = false;
		} else if (c->col < 4) {
			c->col++;
		}
	}
	return finals;
}

/* The whole of p over TLS; a full socket buffer waits (poll). */
static void tls_send(struct bconn *c, const char *p, size_t n)
{
	while (n > 0) {
		int w = SSL_write(c->ssl, p, n > INT32_MAX ? INT32_MAX : (int)n);
		if (w > 0) {
			p += w;
			n -= (size_t)w;
			continue;
		}
		int e = SSL_get_error(c->ssl, w);
		struct pollfd pf = { c->fd, e == SSL_ERROR_WANT_READ ? POLLIN : POLLOUT, 0 };
		if (e != SSL_ERROR_WANT_WRITE && e != SSL_ERROR_WANT_READ)
			return;   /* the read side will see the failure */
		poll(&pf, 1, 1000);
	}
}

static void next_txn(struct shared *sh, struct bconn *c)
{
	if (atomic_fetch_sub(&sh->left, 1) <= 0)
		return;
	if (c->ssl)
		tls_send(c, sh->txn, sh->txn_len);
	else
		xsend(c->fd, sh->txn, sh->txn_len);
	c->replies_due = 3;
}

static const char ehlo[] = "EHLO blast.volley.test\r\n";

/* The handshake, as far as it goes now: 1 done, 0 waiting for the
 * peer, -1 failed. */
static int handshake(struct bconn *c)
{
	int r = SSL_do_handshake(c->ssl);
	if (r == 1)
		return 1;
	int e = SSL_get_error(c->ssl, r);
	if (e == SSL_ERROR_WANT_READ)
		return 0;
	if (e == SSL_ERROR_WANT_WRITE) {   /* a full socket buffer: rare */
		struct pollfd pf = { c->fd, POLLOUT, 0 };
		poll(&pf, 1, 1000);
		return handshake(c);
	}
	return -1;
}

/* A set-up step's reply is in: the next step. -1: the connection failed. */
static int setup_step(struct thread *t, struct bconn *c)
{
	switch (c->phase) {
	case P_BANNER:
		xsend(c->fd, ehlo, sizeof ehlo - 1);
		c->phase = P_EHLO;
		break;
	case P_EHLO:
		if (!t->sh->tls) {
			c->phase = P_READY;
			return 0;
		}
		xsend(c->fd, "STARTTLS\r\n", 10);
		c->phase = P_STARTTLS;
		break;
	case P_STARTTLS:
		c->ssl = SSL_new(t->sh->tls);
		SSL_set_fd(c->ssl, c->fd);
		if (t->sess)
			SSL_set_session(c->ssl, t->sess);
		SSL_set_connect_state(c->ssl);
		c->phase = P_HANDSHAKE;
		return handshake(c) < 0 ? -1 : 0;
	case P_EHLO_TLS:
		if (!t->sess)          /* the ticket came with the reply */
			t->sess = SSL_get1_session(c->ssl);
		c->phase = P_READY;
		return 0;
	default:
		return -1;
	}
	c->replies_due = 1;
	return 0;
}

/* What arrived: plain recv, or every record SSL has for us (0: none yet,
 * -1: the connection is over). */
static ssize_t conn_read(struct bconn *c, char *buf, size_t n)
{
	if (!c->ssl) {           /* -2: nothing after all (non-blocking) */
		ssize_t r = recv(c->fd, buf, n, 0);
		return r < 0 && (errno == EAGAIN || errno == EINTR) ? -2 : r;
	}
	int r = SSL_read(c->ssl, buf, (int)n);
	if (r > 0)
		return r;
	int e = SSL_get_error(c->ssl, r);
	return e == SSL_ERROR_WANT_READ || e == SSL_ERROR_WANT_WRITE ? 0 : -1;
}

static void conn_close(int ep, struct bconn *c)
{
	epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
	if (c->ssl)
		SSL_free(c->ssl);
	close(c->fd);
	c->ssl = NULL;
}

static void *run(void *arg)
{
	struct thread *t = arg;
	struct shared *sh = t->sh;
	int ep = epoll_create1(EPOLL_CLOEXEC);
	struct bconn *conns = vl_calloc((size_t)t->nconns, sizeof *conns);
	char buf[65536];
	int open = 0;

	for (int i = 0; i < t->nconns; i++) {
		struct bconn *c = &conns[i];
		int one = 1;
		c->fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		if (connect(c->fd, (struct sockaddr *)&sh->addr, sizeof sh->addr) < 0) {
			atomic_fetch_add(&sh->errors, 1);
			close(c->fd);
			c->fd = -1;
			continue;
		}
		setsockopt(c->fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
		if (sh->tls)   /* the handshake must not block the loop */
			fcntl(c->fd, F_SETFL, fcntl(c->fd, F_GETFL) | O_NONBLOCK);
		c->phase = P_BANNER;
		c->replies_due = 1;
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		open++;
	}
	while (open > 0) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < n; i++) {
			struct bconn *c = evs[i].data.ptr;
			ssize_t r = 0;
			bool gone = false;
			if (c->phase == P_HANDSHAKE) {
				int h = handshake(c);
				if (h == 0)
					continue;
				if (h > 0) {
					tls_send(c, ehlo, sizeof ehlo - 1);
					c->phase = P_EHLO_TLS;
					c->replies_due = 1;
				}
				gone = h < 0;
			}
			while (!gone && (r = conn_read(c, buf, sizeof buf)) > 0) {
				c->replies_due -= count_replies(c, buf, (size_t)r);
				if (!c->ssl)
					break;       /* epoll says when there is more */
			}
			if (r == -2)
				continue;
			if (gone || r < 0 || (r == 0 && !c->ssl) ||
			    (c->replies_due <= 0 && c->phase != P_READY && setup_step(t, c) < 0)) {
				atomic_fetch_add(&sh->errors, 1);
				conn_close(ep, c);
				open--;
				continue;
			}
			if (c->replies_due > 0)
				continue;
			if (c->phase != P_READY)
				continue;     /* still setting up */
			if (c->started)
				atomic_fetch_add(&sh->done, 1);
			c->started = true;
			next_txn(sh, c);
			if (c->replies_due <= 0) { /* nothing left: QUIT */
				conn_close(ep, c);
				open--;
			}
		}
	}
	SSL_SESSION_free(t->sess);
	free(conns);
	close(ep);
	return NULL;
}

int main(int argc, char **argv)
{
	char host[64] = "127.0.0.1";
	uint16_t port = 2525;
	uint64_t conns = 50, messages = 100000, size = 4096, threads = 2;
	bool tls = false;
	int opt;
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-blast %s\n", VL_VERSION);
		return 0;
	}
	static const struct option opts[] = {
		{"route", 1, 0, 'r'}, {"conns", 1, 0, 'c'}, {"messages", 1, 0, 'm'},
		{"size", 1, 0, 's'}, {"threads", 1, 0, 't'}, {"tls", 0, 0, 'T'}, {0, 0, 0, 0},
	};
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool bad = false;
		switch (opt) {
		case 'r': bad = vl_parse_hostport(optarg, host, sizeof host, &port) < 0; break;
		case 'c': bad = vl_parse_u64(optarg, &conns) < 0 || !conns; break;
		case 'm': bad = vl_parse_u64(optarg, &messages) < 0; break;
		case 's': bad = vl_parse_u64(optarg, &size) < 0; break;
		case 't': bad = vl_parse_u64(optarg, &threads) < 0 || !threads; break;
		case 'T': tls = true; break;
		default: bad = true;
		}
		if (bad) {
			fprintf(stderr, "usage: volley-blast --route ADDR:PORT [--conns N] "
				"[--messages N] [--size BYTES] [--threads N] [--tls]\n");
			return 2;
		}
	}
	struct rlimit rl;
	if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
		rl.rlim_cur = rl.rlim_max;
		setrlimit(RLIMIT_NOFILE, &rl);
	}
	/* One transaction, rendered once: the same shape volley-drive sends. */
	struct vl_buf body, txn;
	vl_buf_init(&body);
	vl_buf_init(&txn);
	vl_buf_appends(&body, "From: <sender@drive.test>\r\nTo: <user@drive.test>\r\n"
		       "Subject: message\r\nMessage-ID: <1@drive.test>\r\n\r\n");
	for (int line = 0; body.len < size + 120; line++)
		vl_buf_printf(&body, "%se line %06d of the test body, padding padding padding pad\r\n",
			      line % 10 == 3 ? "." : "x", line);
	vl_buf_printf(&txn, "MAIL FROM:<bounce@drive.test> SIZE=%zu\r\n"
		      "RCPT TO:<user@drive.test>\r\nBDAT %zu LAST\r\n", body.len, body.len);
	vl_buf_append(&txn, body.p, body.len);

	struct shared sh = {.txn = txn.p, .txn_len = txn.len};
	if (tls) {
		sh.tls = SSL_CTX_new(TLS_client_method());
		SSL_CTX_set_verify(sh.tls, SSL_VERIFY_NONE, NULL);
		SSL_CTX_set_session_cache_mode(sh.tls, SSL_SESS_CACHE_CLIENT);
	}
	sh.addr.sin_family = AF_INET;
	sh.addr.sin_port = htons(port);
	if (inet_pton(AF_INET, host, &sh.addr.sin_addr) != 1) {
		fprintf(stderr, "volley-blast: %s is not an IPv4 address\n", host);
		return 2;
	}
	atomic_store(&sh.left, (long)messages);
	struct thread *t = vl_calloc(threads, sizeof *t);
	struct rusage ru0, ru1;
	getrusage(RUSAGE_SELF, &ru0);
	uint64_t t0 = vl_now_ns();
	for (uint64_t i = 0; i < threads; i++) {
		t[i].sh = &sh;
		t[i].nconns = (int)(conns / threads + (i < conns % threads));
		pthread_create(&t[i].tid, NULL, run, &t[i]);
	}
	for (uint64_t i = 0; i < threads; i++)
		pthread_join(t[i].tid, NULL);
	uint64_t t1 = vl_now_ns();
	getrusage(RUSAGE_SELF, &ru1);
	double secs = (double)(t1 - t0) / 1e9;
	double cpu = (double)(ru1.ru_utime.tv_sec - ru0.ru_utime.tv_sec +
			      ru1.ru_stime.tv_sec - ru0.ru_stime.tv_sec) +
		     (double)(ru1.ru_utime.tv_usec - ru0.ru_utime.tv_usec +
			      ru1.ru_stime.tv_usec - ru0.ru_stime.tv_usec) / 1e6;
	long done = atomic_load(&sh.done);
	fprintf(stderr, "{\"messages\": %ld, \"errors\": %ld, \"seconds\": %.3f, "
		"\"msgs_per_s\": %.0f, \"cpu_us_per_msg\": %.1f}\n", done,
		atomic_load(&sh.errors), secs, (double)done / secs,
		cpu * 1e6 / (double)(done ? done : 1));
	free(t);
	SSL_CTX_free(sh.tls);
	vl_buf_free(&body);
	vl_buf_free(&txn);
	return done == (long)messages ? 0 : 1;
}
