/*
 * Processes: start, stop, and what they cost. CPU and memory are read from
 * /proc for a whole process tree, because a peer such as Postfix is a master
 * and a dozen children that come and go: the children that ended are in the
 * master's cutime/cstime once reaped, the living ones are added one by one.
 */
#include "vbench.h"

#include <jansson.h>

#include <arpa/inet.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <unistd.h>

static void redirect(int to, const char *path)
{
	int fd = open(path ? path : "/dev/null", O_WRONLY | O_CREAT | O_APPEND | O_CLOEXEC, 0644);
	if (fd >= 0) {
		dup2(fd, to);
		close(fd);
	}
}

/* What is running, for vb_kill_all from a signal handler. */
#define MAX_LIVE 64
static volatile pid_t live[MAX_LIVE];

static void live_set(pid_t old, pid_t new)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (live[i] == old) {
			live[i] = new;
			return;
		}
}

/* Processes that are not our children but must not outlive us (a
 * daemon that left our process group, such as Postfix's master). */
static volatile pid_t also[MAX_LIVE];

void vb_kill_also(pid_t pid, bool add)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (also[i] == (add ? 0 : pid)) {
			also[i] = add ? pid : 0;
			return;
		}
}

void vb_kill_all(void)
{
	for (int i = 0; i < MAX_LIVE; i++)
		if (also[i] > 0)
			kill(also[i], SIGTERM);
	/* Each child leads its own process group: this reaches its children
	 * too (Postfix's master and the processes it started). */
	for (int i = 0; i < MAX_LIVE; i++)
		/* Still our child (not reaped by a peer's own waitpid)? */
		if (live[i] > 0 && waitpid(live[i], NULL, WNOHANG) == 0)
			kill(-live[i], SIGTERM);
}

pid_t vb_spawn(char *const argv[], const char *out, const char *err)
{
	pid_t pid = fork();
	if (pid > 0)
		live_set(0, pid);
	if (pid != 0)
		return pid;
	int in = open("/dev/null", O_RDONLY);
	if (in >= 0)
		dup2(in, 0);
	redirect(1, out);
	redirect(2, err);
	/* Its own process group, so a Ctrl-C at the terminal reaches volley-bench,
	 * which then stops everything it started, in order. */
	setpgid(0, 0);
	execvp(argv[0], argv);
	fprintf(stderr, "volley-bench: cannot run %s: %s\n", argv[0], strerror(errno));
	_exit(127);
}

void vb_stop(pid_t pid, int grace_ms)
{
	if (pid <= 0)
		return;
	live_set(pid, 0);
	kill(pid, SIGTERM);
	for (int waited = 0; waited < grace_ms; waited += 10) {
		if (waitpid(pid, NULL, WNOHANG) == pid)
			return;
		usleep(10000);
	}
	kill(pid, SIGKILL);
	waitpid(pid, NULL, 0);
}

/* utime+stime (+cutime+cstime) of one process, seconds; -1 if gone. */
static double proc_cpu(pid_t pid, bool children, pid_t *ppid)
{
	char path[64], buf[1024];
	snprintf(path, sizeof path, "/proc/%d/stat", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return -1;
	size_t n = fread(buf, 1, sizeof buf - 1, f);
	fclose(f);
	buf[n] = 0;
	/* The command may hold spaces and parentheses: fields follow the last ')'. */
	char *p = strrchr(buf, ')');
	if (!p)
		return -1;
	int pp = 0;
	unsigned long long ut = 0, st = 0;
	long long cut = 0, cst = 0;
	if (sscanf(p + 2, "%*c %d %*d %*d %*d %*d %*u %*u %*u %*u %*u %llu %llu %lld %lld", &pp,
		   &ut, &st, &cut, &cst) != 5)
		return -1;
	if (ppid)
		*ppid = pp;
	double t = (double)(ut + st);
	if (children)
		t += (double)(cut + cst);
	return t / (double)sysconf(_SC_CLK_TCK);
}

/* Call fn for every live descendant of root. */
static void each_descendant(pid_t root, void (*fn)(pid_t, void *), void *arg)
{
	enum { MAXP = 65536 };
	pid_t *pids = vl_malloc(2 * MAXP * sizeof *pids), *parents = pids + MAXP;
	size_t n = 0;
	DIR *d = opendir("/proc");
	struct dirent *de;
	if (!d || !pids) {
		if (d)
			closedir(d);
		free(pids);
		return;
	}
	while ((de = readdir(d)) && n < MAXP) {
		pid_t pid = (pid_t)atoi(de->d_name), pp;
		if (pid > 0 && proc_cpu(pid, false, &pp) >= 0) {
			pids[n] = pid;
			parents[n++] = pp;
		}
	}
	closedir(d);
	/* Breadth-first from root over the parent links: trees are shallow. */
	pid_t queue[4096];
	size_t qh = 0, qt = 0;
	queue[qt++] = root;
	while (qh < qt) {
		pid_t p = queue[qh++];
		for (size_t i = 0; i < n; i++)
			if (parents[i] == p && qt < sizeof queue / sizeof *queue) {
				queue[qt++] = pids[i];
				fn(pids[i], arg);
			}
	}
	free(pids);
}

static void add_cpu(pid_t pid, void *arg)
{
	double t = proc_cpu(pid, true, NULL);
	if (t > 0)
		*(double *)arg += t;
}

double vb_tree_cpu(pid_t root)
{
	double t = proc_cpu(root, true, NULL);
	if (t < 0)
		return 0;
	each_descendant(root, add_cpu, &t);
	return t;
}

static long status_kb(pid_t pid, const char *key)
{
	char path[64], line[256];
	size_t kl = strlen(key);
	long kb = 0;
	snprintf(path, sizeof path, "/proc/%d/status", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return 0;
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, key, kl) && line[kl] == ':') {
			kb = atol(line + kl + 1);
			break;
		}
	fclose(f);
	return kb;
}

/* Proportional set size: shared pages divided among their sharers, so the
 * 80 processes of a Postfix that share its libraries count them once; the
 * same measure for every peer, so that the ratios compare like with like. */
static long pss_kb(pid_t pid)
{
	char path[64], line[256];
	long kb = 0;
	snprintf(path, sizeof path, "/proc/%d/smaps_rollup", (int)pid);
	FILE *f = fopen(path, "r");
	if (!f)
		return status_kb(pid, "VmRSS");
	while (fgets(line, sizeof line, f))
		if (!strncmp(line, "Pss:", 4)) {
			kb = atol(line + 4);
			break;
		}
	fclose(f);
	return kb;
}

struct tree_mem {
	long kb;
	int n;
};

static void add_pss(pid_t pid, void *arg)
{
	struct tree_mem *m = arg;
	m->kb += pss_kb(pid);
	m->n++;
}

long vb_tree_rss(pid_t root)
{
	struct tree_mem m = { 0, 0 };
	each_descendant(root, add_pss, &m);
	return m.kb + pss_kb(root);
}

int vb_free_port(void)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_addr.s_addr = htonl(INADDR_LOOPBACK) };
	socklen_t len = sizeof a;
	int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0), port = -1;
	if (fd < 0)
		return -1;
	if (bind(fd, (struct sockaddr *)&a, sizeof a) == 0 &&
	    getsockname(fd, (struct sockaddr *)&a, &len) == 0)
		port = ntohs(a.sin_port);
	close(fd);
	return port;
}

bool vb_wait_port(const char *ip, int port, int timeout_ms)
{
	struct sockaddr_in a = { .sin_family = AF_INET, .sin_port = htons((uint16_t)port) };
	if (inet_pton(AF_INET, ip, &a.sin_addr) != 1)
		return false;
	for (int t = 0; t < timeout_ms; t += 20) {
		int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
		if (rc == 0)
			return true;
		usleep(20000);
	}
	return false;
}

bool vb_wait_unix(const char *path, int timeout_ms)
{
	struct sockaddr_un a = { .sun_family = AF_UNIX };
	if (strlen(path) >= sizeof a.sun_path)
		return false;
	strcpy(a.sun_path, path);
	for (int t = 0; t < timeout_ms; t += 10) {
		int fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
		int rc = connect(fd, (struct sockaddr *)&a, sizeof a);
		close(fd);
		if (rc == 0)
			return true;
		usleep(10000);
	}
	return false;
}

int vb_system(const char *fmt, ...)
{
	char cmd[4096];
	va_list ap;
	va_start(ap, fmt);
	int n = vsnprintf(cmd, sizeof cmd, fmt, ap);
	va_end(ap);
	if (n < 0 || (size_t)n >= sizeof cmd)
		return -1;
	int st = system(cmd);
	return st == -1 ? -1 : WIFEXITED(st) ? WEXITSTATUS(st) : -1;
}

static void *meter_loop(void *arg)
{
	struct vb_meter *m = arg;
	for (;;) {
		pthread_mutex_lock(&m->mu);
		bool run = m->run;
		pthread_mutex_unlock(&m->mu);
		if (!run)
			break;
		long kb = vb_tree_rss(m->root);
		pthread_mutex_lock(&m->mu);
		if (kb > m->peak_kb)
			m->peak_kb = kb;
		pthread_mutex_unlock(&m->mu);
		usleep(250000);
	}
	return NULL;
}

void vb_meter_start(struct vb_meter *m, pid_t root)
{
	m->root = root;
	m->cpu0 = vb_tree_cpu(root);
	m->peak_kb = 0;
	m->run = true;
	pthread_mutex_init(&m->mu, NULL);
	pthread_create(&m->th, NULL, meter_loop, m);
}

void vb_meter_stop(struct vb_meter *m, double *cpu_s, long *peak_kb)
{
	double cpu = vb_tree_cpu(m->root) - m->cpu0;
	long kb = vb_tree_rss(m->root);
	pthread_mutex_lock(&m->mu);
	m->run = false;
	pthread_mutex_unlock(&m->mu);
	pthread_join(m->th, NULL);
	pthread_mutex_destroy(&m->mu);
	/* PSS for every peer, one process or eighty: samples, not a kernel
	 * high-water mark (there is none for PSS). */
	*peak_kb = kb > m->peak_kb ? kb : m->peak_kb;
	*cpu_s = cpu > 0 ? cpu : 0;
}

json_t *vb_last_json_line(const char *path)
{
	char line[4096], last[4096] = "";
	FILE *f = fopen(path, "r");

	if (!f)
		return NULL;
	while (fgets(line, sizeof line, f))
		if (line[0] == '{')
			memcpy(last, line, sizeof last);
	fclose(f);
	return json_loads(last, 0, NULL);
}
