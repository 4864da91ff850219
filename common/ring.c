/*
 * The io_uring set-up every event loop here shares: a ring created
 * disabled (so the worker thread that enables it is its single issuer), a
 * provided-buffer ring for multishot recv, and an SQE getter that never
 * returns NULL.
 */
#include "common.h"

#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>
#include <sys/syscall.h>
#include <unistd.h>

#define BGID 0

int vl_ring_init(struct vl_ring *r, unsigned entries, unsigned cq_entries,
		 unsigned nbufs, unsigned bufsz, char *err, size_t errlen)
{
	struct io_uring_params p;
	int rc;

	memset(r, 0, sizeof *r);
	r->br = MAP_FAILED;
	r->ring.ring_fd = -1;
	r->nbufs = nbufs;
	r->bufsz = bufsz;
	memset(&p, 0, sizeof p);
	p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL |
		  IORING_SETUP_COOP_TASKRUN | IORING_SETUP_SINGLE_ISSUER |
		  IORING_SETUP_DEFER_TASKRUN | IORING_SETUP_R_DISABLED;
	p.cq_entries = cq_entries;
	rc = io_uring_queue_init_params(entries, &r->ring, &p);
	if (rc == -EINVAL) { /* an older kernel: a plain ring */
		memset(&p, 0, sizeof p);
		p.flags = IORING_SETUP_CQSIZE;
		p.cq_entries = cq_entries;
		rc = io_uring_queue_init_params(entries, &r->ring, &p);
	}
	if (rc < 0) {
		r->ring.ring_fd = -1;
		snprintf(err, errlen, "io_uring_queue_init: %s", strerror(-rc));
		return -1;
	}
	r->br = mmap(NULL, sizeof(struct io_uring_buf) * nbufs, PROT_READ | PROT_WRITE,
		     MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
	r->bufs = vl_malloc((size_t)nbufs * bufsz);
	if (r->br == MAP_FAILED) {
		snprintf(err, errlen, "buffer ring: out of memory");
		return -1;
	}
	struct io_uring_buf_reg reg = {
		.ring_addr = (unsigned long)r->br, .ring_entries = nbufs, .bgid = BGID,
	};
	rc = io_uring_register_buf_ring(&r->ring, &reg, 0);
	if (rc < 0) {
		snprintf(err, errlen, "provided buffer ring: %s (kernel 5.19+ needed)",
			 strerror(-rc));
		return -1;
	}
	io_uring_buf_ring_init(r->br);
	for (unsigned i = 0; i < nbufs; i++)
		io_uring_buf_ring_add(r->br, r->bufs + (size_t)i * bufsz, bufsz,
				      (unsigned short)i, io_uring_buf_ring_mask(nbufs), (int)i);
	io_uring_buf_ring_advance(r->br, (int)nbufs);
	return 0;
}

int vl_ring_enable(struct vl_ring *r)
{
	/* liburing 2.3 declares io_uring_enable_rings() but does not export
	 * it, so register directly. */
	if (!(r->ring.flags & IORING_SETUP_R_DISABLED))
		return 0;
	return syscall(__NR_io_uring_register, r->ring.ring_fd,
		       IORING_REGISTER_ENABLE_RINGS, NULL, 0) < 0 ? -1 : 0;
}

struct io_uring_sqe *vl_ring_sqe(struct vl_ring *r)
{
	struct io_uring_sqe *sqe;

	/* SQ full: submit, then retry; a ring that never takes anything is a
	 * broken invariant, and stopping loudly beats undefined behaviour. */
	for (int tries = 0; !(sqe = io_uring_get_sqe(&r->ring)); tries++) {
		int rc = io_uring_submit(&r->ring);
		if (rc < 0 && tries > 1000) {
			vl_log(VL_LOG_ERROR, "io_uring_submit: %s", strerror(-rc));
			abort();
		}
	}
	return sqe;
}

int vl_ring_wait(struct vl_ring *r, void (*fn)(void *arg, struct io_uring_cqe *cqe),
		 void *arg)
{
	struct io_uring_cqe *cqe;
	unsigned head, n = 0;
	int rc = io_uring_submit_and_wait(&r->ring, 1);

	if (rc < 0 && rc != -EINTR && rc != -ETIME && rc != -EBUSY) {
		vl_log(VL_LOG_ERROR, "io_uring_submit_and_wait: %s", strerror(-rc));
		return -1;
	}
	io_uring_for_each_cqe(&r->ring, head, cqe) {
		fn(arg, cqe);
		n++;
	}
	io_uring_cq_advance(&r->ring, n);
	return 0;
}

void vl_ring_recv(struct vl_ring *r, int fd, uint64_t user_data)
{
	struct io_uring_sqe *sqe = vl_ring_sqe(r);

	io_uring_prep_recv_multishot(sqe, fd, NULL, 0, 0);
	sqe->flags |= IOSQE_BUFFER_SELECT;
	sqe->buf_group = BGID;
	io_uring_sqe_set_data64(sqe, user_data);
}

const char *vl_ring_buf(const struct vl_ring *r, unsigned bid)
{
	return r->bufs + (size_t)bid * r->bufsz;
}

void vl_ring_buf_return(struct vl_ring *r, unsigned bid)
{
	io_uring_buf_ring_add(r->br, r->bufs + (size_t)bid * r->bufsz, r->bufsz,
			      (unsigned short)bid, io_uring_buf_ring_mask(r->nbufs), 0);
	io_uring_buf_ring_advance(r->br, 1);
}

void vl_ring_exit(struct vl_ring *r)
{
	if (r->ring.ring_fd > 0)
		io_uring_queue_exit(&r->ring);
	if (r->br && r->br != MAP_FAILED)
		munmap(r->br, sizeof(struct io_uring_buf) * r->nbufs);
	free(r->bufs);
	r->ring.ring_fd = -1;
	r->br = MAP_FAILED;
	r->bufs = NULL;
}

int vl_sockaddr_parse(const char *ip, uint16_t port, struct sockaddr_storage *ss,
		      socklen_t *len)
{
	struct sockaddr_in *a4 = (struct sockaddr_in *)ss;
	struct sockaddr_in6 *a6 = (struct sockaddr_in6 *)ss;

	memset(ss, 0, sizeof *ss);
	if (inet_pton(AF_INET, ip, &a4->sin_addr) == 1) {
		a4->sin_family = AF_INET;
		a4->sin_port = htons(port);
		*len = sizeof *a4;
		return 0;
	}
	if (inet_pton(AF_INET6, ip, &a6->sin6_addr) == 1) {
		a6->sin6_family = AF_INET6;
		a6->sin6_port = htons(port);
		*len = sizeof *a6;
		return 0;
	}
	return -1;
}

void vl_sockaddr_str(const struct sockaddr_storage *ss, char *out, size_t len)
{
	char ip[INET6_ADDRSTRLEN] = "?";

	if (ss->ss_family == AF_INET6) {
		const struct sockaddr_in6 *a = (const void *)ss;
		inet_ntop(AF_INET6, &a->sin6_addr, ip, sizeof ip);
		snprintf(out, len, "[%s]:%u", ip, ntohs(a->sin6_port));
	} else {
		const struct sockaddr_in *a = (const void *)ss;
		inet_ntop(AF_INET, &a->sin_addr, ip, sizeof ip);
		snprintf(out, len, "%s:%u", ip, ntohs(a->sin_port));
	}
}

bool vl_ip_literal(const char *s)
{
	char tmp[64];
	uint8_t ip[16];
	size_t n = strlen(s);

	if (n >= sizeof tmp)
		return false;
	if (n >= 2 && s[0] == '[' && s[n - 1] == ']') {
		memcpy(tmp, s + 1, n - 2);
		tmp[n - 2] = '\0';
	} else {
		memcpy(tmp, s, n + 1);
	}
	return inet_pton(AF_INET, tmp, ip) == 1 || inet_pton(AF_INET6, tmp, ip) == 1;
}

uint16_t vl_sockaddr_port(const struct sockaddr_storage *ss)
{
	if (ss->ss_family == AF_INET6)
		return ntohs(((const struct sockaddr_in6 *)ss)->sin6_port);
	return ntohs(((const struct sockaddr_in *)ss)->sin_port);
}
