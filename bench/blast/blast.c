/*
 * volley-blast: the ceiling for the engine's benchmark. Pre-rendered SMTP
 * transactions (MAIL, RCPT, BDAT LAST with a 4 KB body, in one write) sent
 * over N connections with epoll, counting replies and nothing else: what a
 * client with no per-message work at all reaches against the same sink.
 *
 *   volley-blast --route ADDR:PORT --conns 50 --messages 100000 [--size 4096]
 *                [--threads 2]
 */
#include "../../common/common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <getopt.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

struct bconn {
	int fd;
	int replies_due;       /* final reply lines still expected */
	bool ehlo_sent, ready; /* EHLO sent; its reply read */
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
};

struct thread {
	pthread_t tid;
	struct shared *sh;
	int nconns;
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

static void next_txn(struct shared *sh, struct bconn *c)
{
	if (atomic_fetch_sub(&sh->left, 1) <= 0)
		return;
	xsend(c->fd, sh->txn, sh->txn_len);
	c->replies_due = 3;
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
		c->replies_due = 1; /* the banner */
		struct epoll_event ev = {.events = EPOLLIN, .data.ptr = c};
		epoll_ctl(ep, EPOLL_CTL_ADD, c->fd, &ev);
		open++;
	}
	while (open > 0) {
		struct epoll_event evs[256];
		int n = epoll_wait(ep, evs, 256, 1000);
		for (int i = 0; i < n; i++) {
			struct bconn *c = evs[i].data.ptr;
			ssize_t r = recv(c->fd, buf, sizeof buf, 0);
			if (r <= 0) {
				atomic_fetch_add(&sh->errors, 1);
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				open--;
				continue;
			}
			c->replies_due -= count_replies(c, buf, (size_t)r);
			if (c->replies_due > 0)
				continue;
			if (c->ready)
				atomic_fetch_add(&sh->done, 1);
			if (!c->ehlo_sent) { /* banner read: say EHLO */
				c->ehlo_sent = true;
				xsend(c->fd, "EHLO blast.volley.test\r\n", 24);
				c->replies_due = 1;
				continue;
			}
			c->ready = true;
			next_txn(sh, c);
			if (c->replies_due <= 0) { /* nothing left: QUIT */
				epoll_ctl(ep, EPOLL_CTL_DEL, c->fd, NULL);
				close(c->fd);
				open--;
			}
		}
	}
	free(conns);
	close(ep);
	return NULL;
}

int main(int argc, char **argv)
{
	char host[64] = "127.0.0.1";
	uint16_t port = 2525;
	uint64_t conns = 50, messages = 100000, size = 4096, threads = 2;
	int opt;
	if (argc == 2 && strcmp(argv[1], "--version") == 0) {
		printf("volley-blast %s\n", VL_VERSION);
		return 0;
	}
	static const struct option opts[] = {
		{"route", 1, 0, 'r'}, {"conns", 1, 0, 'c'}, {"messages", 1, 0, 'm'},
		{"size", 1, 0, 's'}, {"threads", 1, 0, 't'}, {0, 0, 0, 0},
	};
	while ((opt = getopt_long(argc, argv, "", opts, NULL)) != -1) {
		bool bad = false;
		switch (opt) {
		case 'r': bad = vl_parse_hostport(optarg, host, sizeof host, &port) < 0; break;
		case 'c': bad = vl_parse_u64(optarg, &conns) < 0 || !conns; break;
		case 'm': bad = vl_parse_u64(optarg, &messages) < 0; break;
		case 's': bad = vl_parse_u64(optarg, &size) < 0; break;
		case 't': bad = vl_parse_u64(optarg, &threads) < 0 || !threads; break;
		default: bad = true;
		}
		if (bad) {
			fprintf(stderr, "usage: volley-blast --route ADDR:PORT [--conns N] "
				"[--messages N] [--size BYTES] [--threads N]\n");
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
	vl_buf_free(&body);
	vl_buf_free(&txn);
	return done == (long)messages ? 0 : 1;
}
