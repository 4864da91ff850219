/*
 * The process-wide log sink: stderr, or a file that logrotate may rename
 * (vl_log_reopen), and optionally syslog. The one piece of global state
 * in the tree: every thread logs, and a sink per thread would only move
 * the sharing elsewhere.
 */
#include "common.h"

#include <errno.h>
#include <fcntl.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdio.h>
#include <syslog.h>
#include <time.h>
#include <unistd.h>

static struct {
	pthread_mutex_t mu;           /* guards the rest but level */
	_Atomic int level;
	bool opened;                  /* vl_log_open was called */
	int fd;                       /* the file, or -1: stderr */
	bool take_stdio;              /* 1 and 2 follow the file */
	bool to_syslog, journal;
	char path[4096];
	char ident[32];
} lg = { .mu = PTHREAD_MUTEX_INITIALIZER, .level = VL_LOG_INFO, .fd = -1 };

static const char *const names[] = { "error", "warn", "info", "debug" };

void vl_log_set_level(enum vl_log_level lvl)
{
	atomic_store(&lg.level, (int)lvl);
}

/* Open path for appending; with take_stdio, stdout and stderr become it. */
static int open_file(const char *path, bool take_stdio, char *err, size_t errlen)
{
	int fd = open(path, O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0640);

	if (fd < 0)
		return vl_fail(err, errlen, "log file %s: %s", path, strerror(errno));
	if (take_stdio && (dup2(fd, 1) < 0 || dup2(fd, 2) < 0)) {
		close(fd);
		return vl_fail(err, errlen, "log file %s: %s", path, strerror(errno));
	}
	return fd;
}

int vl_log_open(const char *ident, const char *file, bool to_syslog, bool take_stdio,
		char *err, size_t errlen)
{
	int fd = -1;

	if (file && *file && (fd = open_file(file, take_stdio, err, errlen)) < 0)
		return -1;
	pthread_mutex_lock(&lg.mu);
	if (lg.fd >= 0)
		close(lg.fd);
	lg.fd = fd;
	lg.take_stdio = take_stdio;
	snprintf(lg.path, sizeof lg.path, "%s", fd >= 0 ? file : "");
	lg.journal = fd < 0 && getenv("JOURNAL_STREAM");
	if (lg.to_syslog && !to_syslog)
		closelog();
	snprintf(lg.ident, sizeof lg.ident, "%s", ident);
	if (to_syslog)
		openlog(lg.ident, LOG_PID | LOG_NDELAY, LOG_MAIL);
	lg.to_syslog = to_syslog;
	lg.opened = true;
	pthread_mutex_unlock(&lg.mu);
	return 0;
}

int vl_log_reopen(char *err, size_t errlen)
{
	int rc = 0;

	pthread_mutex_lock(&lg.mu);
	if (lg.fd >= 0) {
		int fd = open_file(lg.path, lg.take_stdio, err, errlen);
		/* dup2 swaps in one step: no line falls between the two files */
		if (fd >= 0 && dup2(fd, lg.fd) < 0)
			rc = vl_fail(err, errlen, "log file %s: %s", lg.path, strerror(errno));
		if (fd >= 0)
			close(fd);
		else
			rc = -1;
	}
	pthread_mutex_unlock(&lg.mu);
	return rc;
}

/* "2024-05-01T12:00:00.123Z " */
static void stamp(char *out, size_t len)
{
	struct timespec ts;
	struct tm tm;

	clock_gettime(CLOCK_REALTIME, &ts);
	gmtime_r(&ts.tv_sec, &tm);
	size_t n = strftime(out, len, "%Y-%m-%dT%H:%M:%S", &tm);
	snprintf(out + n, len - n, ".%03ldZ ", ts.tv_nsec / 1000000);
}

void vl_log_v(enum vl_log_level lvl, const char *fmt, va_list ap)
{
	static const int prio[] = { LOG_ERR, LOG_WARNING, LOG_INFO, LOG_DEBUG };
	char msg[1024], line[1200], ts[40] = "";

	if ((int)lvl > atomic_load(&lg.level))
		return;
	vsnprintf(msg, sizeof msg, fmt, ap);
	pthread_mutex_lock(&lg.mu);
	if (lg.fd >= 0)
		stamp(ts, sizeof ts);
	if (!lg.opened)          /* programs that never chose: as always */
		snprintf(line, sizeof line, "%.3f %s: %s\n", vl_wall_time(), names[lvl], msg);
	else if (lg.fd >= 0)
		snprintf(line, sizeof line, "%s%s: %s\n", ts, names[lvl], msg);
	else if (lg.journal)
		snprintf(line, sizeof line, "<%d>%s: %s\n", prio[lvl], names[lvl], msg);
	else
		snprintf(line, sizeof line, "%s: %s\n", names[lvl], msg);
	size_t n = strnlen(line, sizeof line - 1);
	if (line[n - 1] != '\n')       /* cut short: still one line */
		line[n - 1] = '\n';
	/* one write per line: lines of several threads never interleave */
	if (vl_write_all(lg.fd >= 0 ? lg.fd : 2, line, n) < 0 && lg.fd >= 0)
		vl_write_all(2, line, n);
	if (lg.to_syslog)
		syslog(prio[lvl], "%s", msg);
	pthread_mutex_unlock(&lg.mu);
}

void vl_log(enum vl_log_level lvl, const char *fmt, ...)
{
	va_list ap;

	va_start(ap, fmt);
	vl_log_v(lvl, fmt, ap);
	va_end(ap);
}
