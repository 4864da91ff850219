/*
 * volley user add|del|list: the submission users file (submit/submit.h:
 * name:HASH[:key=value]... lines), edited without the daemon.
 *   volley user add [--users FILE] NAME    the password from standard input
 *   volley user del [--users FILE] NAME
 *   volley user list [--users FILE]
 * An edit writes a new file beside the old one (fsync'd), renames it over
 * the old one and fsyncs the folder: a reader sees the old file or the
 * new one, never half of one. Edits are serialised by a lock on the
 * folder. Other lines, comments and a user's own settings stay as they
 * were; the file keeps its mode and owner (a new one is 0640).
 */
#include <errno.h>
#include <fcntl.h>
#include <libgen.h>
#include <limits.h>
#include <poll.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/file.h>
#include <sys/stat.h>
#include <termios.h>
#include <unistd.h>

#include "../submit/submit.h"
#include "cli.h"

#define DEFAULT_USERS "/etc/volley/users"
#define FILE_MAX (64u << 20)      /* a users file past this is not one */

static const char usage_line[] =
	"usage: volley user add|del|list [--users FILE] [NAME]";

static const char help_text[] =
	"The users of SMTP submission (docs/cli.md, docs/config.md), in the users file\n"
	"(--users FILE, else $VOLLEY_USERS, else " DEFAULT_USERS "): the file that\n"
	"submission.users names in volleyd's configuration. Needs no daemon.\n"
	"  add NAME   add NAME, or give NAME a new password (its settings stay). The\n"
	"             password is the first line of standard input; on a terminal it\n"
	"             is asked for twice, without echo. Hashed with yescrypt.\n"
	"  del NAME   remove NAME\n"
	"  list       the names, one a line\n"
	"More: volley(1), docs/cli.md.\n";

struct user_cmd {
	const char *op, *name, *file;
};

static volatile sig_atomic_t interrupted;
/* SIGINT and SIGTERM are blocked but while waiting for input (ppoll with
 * this mask), so one that comes is never lost between a check and a read. */
static sigset_t wait_mask;

static void on_int(int sig)
{
	(void)sig;
	interrupted = 1;
}

static int parse(int argc, char **argv, struct user_cmd *u)
{
	const char *pos[3];
	int npos = 0;

	u->file = getenv("VOLLEY_USERS");
	if (!u->file || !*u->file)
		u->file = DEFAULT_USERS;
	for (int i = 1; i < argc; i++) {
		if (!strcmp(argv[i], "--users") && i + 1 < argc) {
			u->file = argv[++i];
		} else if (!strncmp(argv[i], "--users=", 8)) {
			u->file = argv[i] + 8;
		} else if (argv[i][0] == '-' && argv[i][1]) {
			cli_err("user: unknown option %s; %s", argv[i], usage_line);
			return -1;
		} else if (npos == 2) {
			cli_err("user: too many arguments; %s", usage_line);
			return -1;
		} else {
			pos[npos++] = argv[i];
		}
	}
	u->op = npos ? pos[0] : "";
	u->name = npos > 1 ? pos[1] : NULL;
	bool named = strcmp(u->op, "list") != 0;
	if ((strcmp(u->op, "add") && strcmp(u->op, "del") && named) || !named != !u->name ||
	    !*u->file) {
		cli_err("user: %s", usage_line);
		return -1;
	}
	if (u->name && !cfg_user_name_ok(u->name)) {
		cli_err("user: '%s' is not a user name: 1 to 64 of letters, digits, '.', '_', "
			"'@', '+' and '-'", u->name);
		return -1;
	}
	return 0;
}

/* ---- the password ---- */

/* One line from fd 0 into buf (its line end dropped). 0, or -1 with the
 * reason printed. */
static int read_line(char *buf, size_t len)
{
	size_t n = 0;

	for (;;) {
		struct pollfd pf = { .fd = STDIN_FILENO, .events = POLLIN };
		char c;
		ssize_t r = ppoll(&pf, 1, NULL, &wait_mask);
		if (r >= 0 && !interrupted)
			r = read(STDIN_FILENO, &c, 1);
		if (r < 0 && errno == EINTR && !interrupted)
			continue;
		if (r < 0 || interrupted) {
			if (!interrupted)
				cli_err("user add: standard input: %s", strerror(errno));
			return -1;
		}
		if (r == 0 || c == '\n')
			break;
		if (c == '\0') {
			cli_err("user add: the password holds a NUL");
			return -1;
		}
		if (n + 1 >= len) {
			cli_err("user add: the password is longer than %d octets", SUB_PASS_MAX);
			return -1;
		}
		buf[n++] = c;
	}
	if (n && buf[n - 1] == '\r')
		n--;
	buf[n] = '\0';
	return 0;
}

/* On a terminal: asked without echo (the terminal restored whatever
 * happens, Ctrl-C included). */
static int prompt(const char *what, char *buf, size_t len)
{
	struct termios old, quiet;

	if (tcgetattr(STDIN_FILENO, &old) < 0) {
		cli_err("user add: terminal: %s", strerror(errno));
		return -1;
	}
	quiet = old;
	quiet.c_lflag &= ~(tcflag_t)ECHO;
	quiet.c_lflag |= ECHONL;
	/* echo off before the prompt: nothing typed after it is ever shown */
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet);
	fputs(what, stderr);
	fflush(stderr);
	int rc = read_line(buf, len);
	tcsetattr(STDIN_FILENO, TCSAFLUSH, &old);
	if (interrupted)
		fputc('\n', stderr);
	return rc;
}

static int get_password(const char *name, char *pw, size_t len)
{
	if (!isatty(STDIN_FILENO)) {
		if (read_line(pw, len) < 0)
			return -1;
		return 0;
	}
	char again[SUB_PASS_MAX + 2], what[128];
	snprintf(what, sizeof what, "Password for %s: ", name);
	int rc = prompt(what, pw, len);
	if (rc == 0)
		rc = prompt("Again: ", again, sizeof again);
	if (rc == 0 && strcmp(pw, again) != 0) {
		cli_err("user add: the two passwords differ; nothing changed");
		rc = -1;
	}
	memset(again, 0, sizeof again);
	return rc;
}

/* ---- the file ---- */

/* The whole file into b; 1 read, 0 none there, -1 error printed. */
static int read_file(const char *path, struct vl_buf *b, struct stat *st)
{
	int fd = open(path, O_RDONLY | O_CLOEXEC);

	if (fd < 0 && errno == ENOENT)
		return 0;
	if (fd < 0 || fstat(fd, st) < 0) {
		cli_err("user: %s: %s", path, strerror(errno));
		if (fd >= 0)
			close(fd);
		return -1;
	}
	if (!S_ISREG(st->st_mode) || st->st_size > (off_t)FILE_MAX) {
		cli_err("user: %s: not a users file (not a regular file, or over 64 MB)", path);
		close(fd);
		return -1;
	}
	for (;;) {
		char *p = vl_buf_reserve(b, 65536);
		ssize_t n = read(fd, p, 65536);
		if (n < 0 && errno == EINTR)
			continue;
		if (n < 0) {
			cli_err("user: %s: %s", path, strerror(errno));
			close(fd);
			return -1;
		}
		if (n == 0)
			break;
		b->len += (size_t)n;
	}
	close(fd);
	return 1;
}

/* The name of a user line (its length), or 0 for a comment or blank. */
static size_t line_name(const char *l, size_t n)
{
	size_t i = 0;

	while (i < n && (l[i] == ' ' || l[i] == '\t' || l[i] == '\r'))
		i++;
	if (i == n || l[i] == '#')
		return 0;
	const char *colon = memchr(l, ':', n);
	return colon ? (size_t)(colon - l) : n;
}

struct edit {
	const char *name;
	const char *hash;             /* add: the new hash; del: NULL */
	unsigned found;
};

/* old into out, line by line, the user's lines changed (add) or left out
 * (del). -1 with the error printed when the file names the user twice. */
static int rewrite(const char *path, const struct vl_buf *old, struct edit *e,
		   struct vl_buf *out)
{
	const char *p = old->p, *end = old->p + old->len;
	size_t nlen = strlen(e->name), no = 0;

	while (p < end) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p);
		no++;
		if (line_name(p, n) != nlen || memcmp(p, e->name, nlen) != 0) {
			vl_buf_append(out, p, n);
			vl_buf_append(out, "\n", 1);
		} else if (e->found++) {
			cli_err("user: %s:%zu: %s is in the file twice: fix that first", path,
				no, e->name);
			return -1;
		} else if (e->hash) {
			/* name:HASH[:settings]: the settings stay */
			const char *rest = nlen < n ? memchr(p + nlen + 1, ':', n - nlen - 1) : NULL;
			vl_buf_printf(out, "%s:%s", e->name, e->hash);
			if (rest)
				vl_buf_append(out, rest, (size_t)(p + n - rest));
			vl_buf_append(out, "\n", 1);
		}
		if (!nl)
			break;
		p = nl + 1;
	}
	if (e->hash && !e->found)
		vl_buf_printf(out, "%s:%s\n", e->name, e->hash);
	return 0;
}

/* data as the new file at path: a temporary file beside it, its mode and
 * owner those of the old one (st) or 0640, fsync'd, renamed, the folder
 * fsync'd. 0, or -1 with the error printed (the old file untouched). */
static int replace(const char *path, const struct vl_buf *data, const struct stat *st)
{
	char *dup = vl_strdup(path), tmp[PATH_MAX];
	const char *dir = dirname(dup), *base = strrchr(path, '/');
	int rc = -1, fd = -1;

	if ((size_t)snprintf(tmp, sizeof tmp, "%s/.%s.XXXXXX", dir, base ? base + 1 : path) >=
	    sizeof tmp) {
		cli_err("user: %s: path too long", path);
		goto out;
	}
	if ((fd = mkstemp(tmp)) < 0) {
		cli_err("user: cannot create a file in %s: %s", dir, strerror(errno));
		goto out;
	}
	const char *what = "write";
	if (vl_write_all(fd, data->p, data->len) < 0 ||
	    (what = "chmod", fchmod(fd, st ? st->st_mode & 07777 : 0640) < 0) ||
	    (what = "chown", st && (st->st_uid != geteuid() || st->st_gid != getegid()) &&
			      fchown(fd, st->st_uid, st->st_gid) < 0) ||
	    (what = "fsync", fsync(fd) < 0) || (what = "close", close(fd) < 0) ||
	    (fd = -1, what = "rename", rename(tmp, path) < 0) ||
	    (what = "fsync of the folder", vl_fsync_dir(dir) < 0)) {
		cli_err("user: %s: %s: %s; the file is as it was", path, what, strerror(errno));
		if (fd >= 0)
			close(fd);
		unlink(tmp);
		goto out;
	}
	rc = 0;
out:
	free(dup);
	return rc;
}

/* The folder of path locked against another volley user (released at exit). */
static int lock_dir(const char *path)
{
	char *dup = vl_strdup(path);
	const char *dir = dirname(dup);
	int fd = open(dir, O_RDONLY | O_DIRECTORY | O_CLOEXEC);

	if (fd < 0 || flock(fd, LOCK_EX) < 0) {
		cli_err("user: %s: %s", dir, strerror(errno));
		free(dup);
		return -1;
	}
	free(dup);
	return 0;
}

static int list(const char *path)
{
	struct vl_buf b;
	struct stat st;

	vl_buf_init(&b);
	int r = read_file(path, &b, &st);
	if (r == 0)
		cli_err("user list: %s: no such file", path);
	for (const char *p = b.p, *end = b.p + b.len; r > 0 && p < end;) {
		const char *nl = memchr(p, '\n', (size_t)(end - p));
		size_t n = nl ? (size_t)(nl - p) : (size_t)(end - p), k = line_name(p, n);
		if (k)
			printf("%.*s\n", (int)k, p);
		if (!nl)
			break;
		p = nl + 1;
	}
	vl_buf_free(&b);
	return r > 0 ? CLI_OK : CLI_FAILED;
}

static int edit(const struct user_cmd *u)
{
	bool add = !strcmp(u->op, "add");
	char pw[SUB_PASS_MAX + 2], hash[SUB_HASH_MAX], err[200];
	struct vl_buf old, out;
	struct stat st;
	struct edit e = { u->name, add ? hash : NULL, 0 };
	int rc = CLI_FAILED;

	if (add) {
		if (get_password(u->name, pw, sizeof pw) < 0)
			return interrupted ? CLI_INTERRUPTED : CLI_FAILED;
		int h = sub_hash_password(pw, hash, err, sizeof err);
		memset(pw, 0, sizeof pw);
		if (h < 0) {
			cli_err("user add: %s; nothing changed", err);
			return CLI_FAILED;
		}
	}
	if (lock_dir(u->file) < 0)
		return CLI_FAILED;
	vl_buf_init(&old);
	vl_buf_init(&out);
	int r = read_file(u->file, &old, &st);
	if (r == 0 && !add)
		cli_err("user del: %s: no such file", u->file);
	else if (r >= 0 && rewrite(u->file, &old, &e, &out) == 0) {
		if (!add && !e.found)
			cli_err("user del: no user %s in %s", u->name, u->file);
		else if (replace(u->file, &out, r ? &st : NULL) == 0)
			rc = CLI_OK;
	}
	if (rc == CLI_OK) {
		printf("%s %s in %s\n", add ? (e.found ? "new password for" : "added") : "removed",
		       u->name, u->file);
		if (r && (st.st_mode & 006))
			cli_err("warning: %s is readable or writable by others: volleyd refuses "
				"it (chmod o-rwx %s)", u->file, u->file);
	}
	vl_buf_free(&old);
	vl_buf_free(&out);
	return rc;
}

int cli_user(int argc, char **argv)
{
	struct user_cmd u;

	for (int i = 1; i < argc; i++)
		if (!strcmp(argv[i], "--help") || !strcmp(argv[i], "-h") ||
		    (i == 1 && !strcmp(argv[i], "help"))) {
			printf("%s\n\n%s", usage_line, help_text);
			return CLI_OK;
		}
	if (parse(argc, argv, &u) < 0)
		return CLI_USAGE;
	/* Ctrl-C at the prompt ends the wait (ppoll), never a write of the file */
	struct sigaction sa = { .sa_handler = on_int };
	sigset_t block;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);
	sigemptyset(&block);
	sigaddset(&block, SIGINT);
	sigaddset(&block, SIGTERM);
	sigprocmask(SIG_BLOCK, &block, &wait_mask);
	return !strcmp(u.op, "list") ? list(u.file) : edit(&u);
}
