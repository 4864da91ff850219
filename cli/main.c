/*
 * volley: the command-line client of volleyd. Parses the command line,
 * picks the daemon's address, and runs one command (docs/cli.md).
 */
#include <errno.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>
#include <unistd.h>

#include "cli.h"

volatile sig_atomic_t cli_interrupted;
bool cli_bar_open;

enum { O_FLAG, O_STR, O_LONG };

/* cmds: the commands an option belongs to (NULL: every command). */
static const struct opt {
	const char *name, *alias;
	int kind;
	size_t off;
	const char *cmds;
} opts[] = {
	{"--socket", NULL, O_STR, offsetof(struct cli, socket), NULL},
	{"--data-dir", NULL, O_STR, offsetof(struct cli, data_dir), NULL},
	{"--url", NULL, O_STR, offsetof(struct cli, url), NULL},
	{"--token", NULL, O_STR, offsetof(struct cli, token), NULL},
	{"--json", NULL, O_FLAG, offsetof(struct cli, json), NULL},
	{"--recipients", NULL, O_STR, offsetof(struct cli, recipients), " submit "},
	{"--wait", NULL, O_FLAG, offsetof(struct cli, wait), " submit "},
	{"--idempotency-key", NULL, O_STR, offsetof(struct cli, idem_key), " submit "},
	{"--dry-run", NULL, O_FLAG, offsetof(struct cli, dry_run), " submit "},
	{"--watch", "-w", O_FLAG, offsetof(struct cli, watch), " status "},
	{"--follow", "-f", O_FLAG, offsetof(struct cli, follow), " events "},
	{"--job", NULL, O_STR, offsetof(struct cli, job), " events "},
	{"--limit", NULL, O_LONG, offsetof(struct cli, limit), " jobs status suppression feedback "},
	{"--cluster", NULL, O_FLAG, offsetof(struct cli, cluster), " jobs "},
	{"--unmatched", NULL, O_FLAG, offsetof(struct cli, unmatched), " feedback "},
	{"--date", NULL, O_STR, offsetof(struct cli, date), " tls-report "},
	{"--send", NULL, O_FLAG, offsetof(struct cli, send), " tls-report "},
};

/* help: what the command does, for `volley COMMAND --help` (docs/cli.md). */
static const struct cmd {
	const char *name;
	int (*fn)(const struct cli *);
	int min, max;
	const char *usage, *help;
} cmds[] = {
	{"submit", cli_submit, 1, 1,
	 "submit JOB.json [--recipients LIST.csv|LIST.ndjson] [--wait] [--idempotency-key K]"
	 " [--dry-run]",
	 "Submit a job (docs/jobs.md; '-' reads it from standard input) and print its id.\n"
	 "  --recipients LIST    stream a .csv (header row, an email column) or .ndjson list\n"
	 "  --wait               show progress until every recipient is final\n"
	 "  --idempotency-key K  a repeated submission returns the first job's id\n"
	 "  --dry-run            print the body that would be sent; send nothing\n"},
	{"status", cli_status, 0, 1, "status [ID] [--watch]",
	 "One job's state and counters; without ID, the jobs table.\n"
	 "  --watch, -w  redraw the progress until the job is done\n"},
	{"jobs", cli_jobs, 0, 0, "jobs [--limit N] [--cluster]",
	 "The jobs, newest first (default 100).\n"
	 "  --cluster   every node's of the cluster (docs/cluster.md): the nodes\n"
	 "              Redis has registered, each asked at its listener (api.listen,\n"
	 "              with --token) or else its socket; a NODE column first\n"},
	{"cancel", cli_control, 1, 1, "cancel ID",
	 "Cancel a job: every recipient not yet final becomes cancelled.\n"},
	{"pause", cli_control, 1, 1, "pause ID", "Stop starting new deliveries of a job.\n"},
	{"resume", cli_control, 1, 1, "resume ID", "Resume a paused job.\n"},
	{"queues", cli_queues, 0, 0, "queues",
	 "The destination sites: queued, deferred, in flight, rate, back-off, TLS.\n"},
	{"events", cli_events, 0, 0, "events [-f] [--job ID]",
	 "The event log, oldest first.\n"
	 "  --follow, -f  keep printing new events until Ctrl-C\n"
	 "  --job ID      only that job's events\n"},
	{"stats", cli_stats, 0, 0, "stats", "The daemon's counters, one 'name  value' a line.\n"},
	{"bounces", cli_bounces, 1, 1, "bounces ID",
	 "A job's bounced recipients as CSV: email,code,enhanced,bounce_class,text.\n"},
	{"health", cli_health, 0, 0, "health",
	 "Whether the daemon is up and accepting jobs; exit 1 unless it says ok.\n"},
	{"suppression", cli_suppression, 1, 2,
	 "suppression list [--limit N] | add EMAIL | remove EMAIL | import FILE",
	 "The suppression list: addresses volley never sends to.\n"
	 "  list [--limit N]  the addresses in order, with reason, job and time added\n"
	 "  add EMAIL         suppress an address\n"
	 "  remove EMAIL      take an address off the list (exit 1 if it was not on it)\n"
	 "  import FILE       add every address of FILE, one a line ('-': standard\n"
	 "                    input; blank lines and lines starting with # skipped);\n"
	 "                    prints how many were added, names each failure\n"},
	{"feedback", cli_feedback, 0, 2,
	 "feedback [list] [--unmatched] [--limit N] | domains | resume-domain DOMAIN | "
	 "parse [--json] FILE...",
	 "What came back after delivery: late bounces and complaints (docs/feedback.md).\n"
	 "  list [--unmatched] [--limit N]  the newest reports read, with their match and\n"
	 "                                  effect (default 50; --unmatched: those that\n"
	 "                                  matched no recipient)\n"
	 "  domains                         sending domains' complaint rates over 24 h\n"
	 "  resume-domain DOMAIN            unblock a domain paused for its complaint\n"
	 "                                  rate; resume the jobs its block paused\n"
	 "  parse [--json] FILE...          classify stored messages and show their match\n"
	 "                                  (no daemon; '-' reads standard input)\n"},
	{"tls-check", cli_tls_check, 1, 1, "tls-check DOMAIN",
	 "What volley would do with TLS for DOMAIN: MX hosts, TLSA, MTA-STS.\n"},
	{"tls-report", cli_tls_report, 1, 1, "tls-report DOMAIN [--date YYYY-MM-DD] [--send]",
	 "The day's TLS-RPT report of DOMAIN (today, UTC, by default).\n"
	 "  --send  send it now to the domain's rua URIs and print the outcome\n"},
};

void cli_err(const char *fmt, ...)
{
	va_list ap;

	if (cli_bar_open)
		putchar('\n');
	cli_bar_open = false;
	fflush(stdout);
	fputs("volley: ", stderr);
	va_start(ap, fmt);
	vfprintf(stderr, fmt, ap);
	va_end(ap);
	fputc('\n', stderr);
}

void cli_print_json(const json_t *v)
{
	json_dumpf(v, stdout, JSON_COMPACT | JSON_ENCODE_ANY);
	putchar('\n');
}

bool cli_sleep_ms(long ms)
{
	struct timespec ts = {ms / 1000, (ms % 1000) * 1000000L};

	while (!cli_interrupted && nanosleep(&ts, &ts) < 0 && errno == EINTR)
		;
	return !cli_interrupted;
}

static void usage(FILE *out)
{
	fputs("usage: volley [--socket PATH | --data-dir DIR | --url URL [--token T]] "
	      "[--json] COMMAND ...\n\ncommands:\n", out);
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		fprintf(out, "  volley %s\n", cmds[i].usage);
	fputs("  volley dkim keygen --domain D --selector S [--algorithm rsa|ed25519] "
	      "[--bits N] [--out DIR]\n", out);
	fputs("  volley user add|del|list [--users FILE] [NAME]\n", out);
	fputs("  volley doctor [DOMAIN] [--config FILE] [--return-path DOMAIN] [--json]\n", out);
	fputs("\n'volley COMMAND --help' (or 'volley help COMMAND') explains one command.\n"
	      "exit codes: 0 ok, 1 the daemon reported a failure, 2 usage, "
	      "3 daemon not reachable, 130 interrupted.\nSee volley(1), docs/cli.md.\n", out);
}

static const struct opt *find_opt(const char *name, size_t len)
{
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++) {
		const struct opt *o = &opts[i];
		if ((strlen(o->name) == len && !strncmp(o->name, name, len)) ||
		    (o->alias && strlen(o->alias) == len && !strncmp(o->alias, name, len)))
			return o;
	}
	return NULL;
}

static int set_opt(struct cli *c, const struct opt *o, const char *val)
{
	char *p = (char *)c + o->off, *end;

	if (o->kind == O_FLAG) {
		*(bool *)p = true;
	} else if (o->kind == O_STR) {
		*(const char **)p = val;
	} else {
		errno = 0;
		long n = strtol(val, &end, 10);
		if (errno || *end || end == val || n <= 0) {
			cli_err("%s: not a positive number: %s", o->name, val);
			return -1;
		}
		*(long *)p = n;
	}
	return 0;
}

/* One option at argv[*i]; consumes its value. */
static int parse_opt(struct cli *c, int argc, char **argv, int *i, unsigned *used)
{
	const char *a = argv[*i], *eq = strchr(a, '=');
	size_t len = eq && a[1] == '-' ? (size_t)(eq - a) : strlen(a);
	const struct opt *o = find_opt(a, len);

	if (!o) {
		cli_err("unknown option %.*s (see volley --help)", (int)len, a);
		return -1;
	}
	*used |= 1u << (o - opts);
	if (o->kind == O_FLAG) {
		if (eq && a[1] == '-') {
			cli_err("%s takes no value", o->name);
			return -1;
		}
		return set_opt(c, o, NULL);
	}
	if (eq && a[1] == '-')
		return set_opt(c, o, eq + 1);
	if (*i + 1 >= argc) {
		cli_err("%s needs a value", o->name);
		return -1;
	}
	return set_opt(c, o, argv[++*i]);
}

static int positional(struct cli *c, const char *a)
{
	if (!c->cmd) {
		c->cmd = a;
		return 0;
	}
	if (c->nargs == CLI_MAX_ARGS) {
		cli_err("%s: too many arguments", c->cmd);
		return -1;
	}
	c->args[c->nargs++] = a;
	return 0;
}

static const struct cmd *find_cmd(const char *name)
{
	for (size_t i = 0; i < sizeof(cmds) / sizeof(cmds[0]); i++)
		if (!strcmp(cmds[i].name, name))
			return &cmds[i];
	return NULL;
}

/* Every option used belongs to the command; the argument count fits. */
static int check_cmd(const struct cli *c, const struct cmd *k, unsigned used)
{
	char word[32];

	snprintf(word, sizeof(word), " %s ", k->name);
	for (size_t i = 0; i < sizeof(opts) / sizeof(opts[0]); i++)
		if ((used & (1u << i)) && opts[i].cmds && !strstr(opts[i].cmds, word)) {
			cli_err("%s: no option %s", k->name, opts[i].name);
			return -1;
		}
	if (c->nargs < k->min || c->nargs > k->max) {
		cli_err("%s: %s; usage: volley %s", k->name,
			c->nargs < k->min ? "missing argument" : "too many arguments", k->usage);
		return -1;
	}
	if (c->watch && !c->nargs) {
		cli_err("status --watch needs a job ID");
		return -1;
	}
	if (c->dry_run && c->wait) {
		cli_err("--dry-run sends nothing, so there is nothing to --wait for");
		return -1;
	}
	if (c->socket && c->url) {
		cli_err("--socket and --url exclude each other");
		return -1;
	}
	return 0;
}

static const char global_opts[] =
	"global options: --socket PATH | --data-dir DIR | --url URL [--token T], --json\n";

/* volley COMMAND --help (or volley help COMMAND): that command only. */
static int cmd_help(const char *name)
{
	const struct cmd *k = find_cmd(name);

	if (!k && !strcmp(name, "user"))
		return cli_user(2, (char *[]){"user", "--help", NULL}) == CLI_OK ? 1 : -1;
	if (!k && !strcmp(name, "doctor"))
		return cli_doctor(2, (char *[]){"doctor", "--help", NULL}) == CLI_OK ? 1 : -1;
	if (!k && strcmp(name, "dkim")) {
		cli_err("unknown command %s (see volley --help)", name);
		return -1;
	}
	if (!k)
		return cli_dkim(2, (char *[]){"dkim", "--help", NULL}) == CLI_OK ? 1 : -1;
	printf("usage: volley %s\n\n%s\n%s", k->usage, k->help, global_opts);
	puts("More: volley(1), docs/cli.md.");
	return 1;
}

/* 0 to run, 1 for --help/--version (done), -1 for a usage error. */
static int parse(struct cli *c, int argc, char **argv, unsigned *used)
{
	bool rest = false, help = false;

	for (int i = 1; i < argc; i++) {
		const char *a = argv[i];
		if (rest || a[0] != '-' || !a[1]) {
			if (positional(c, a) < 0)
				return -1;
		} else if (!strcmp(a, "--")) {
			rest = true;
		} else if (!strcmp(a, "-h") || !strcmp(a, "--help")) {
			help = true;
		} else if (!strcmp(a, "--version")) {
			printf("volley %s\n", VL_VERSION);
			return 1;
		} else if (parse_opt(c, argc, argv, &i, used) < 0) {
			return -1;
		}
	}
	if (c->cmd && !strcmp(c->cmd, "help") && c->nargs)
		return cmd_help(c->args[0]);
	if (c->cmd && help)
		return cmd_help(c->cmd);
	if (help || (c->cmd && !strcmp(c->cmd, "help"))) {
		usage(stdout);
		return 1;
	}
	return 0;
}

static void on_sigint(int sig)
{
	(void)sig;
	cli_interrupted = 1;
}

int main(int argc, char **argv)
{
	/* dkim has its own options and needs no daemon (cli_dkim.c). */
	if (argc > 1 && !strcmp(argv[1], "dkim"))
		return cli_dkim(argc - 1, argv + 1);
	/* user edits the submission users file, no daemon either (cli_user.c). */
	if (argc > 1 && !strcmp(argv[1], "user"))
		return cli_user(argc - 1, argv + 1);
	/* doctor reads the configuration and asks DNS, no daemon (cli_doctor.c). */
	if (argc > 1 && !strcmp(argv[1], "doctor"))
		return cli_doctor(argc - 1, argv + 1);
	/* feedback parse reads stored messages, no daemon (cli_fbparse.c). */
	if (argc > 2 && !strcmp(argv[1], "feedback") && !strcmp(argv[2], "parse"))
		return cli_fbparse(argc - 2, argv + 2);
	struct cli c = {0};
	unsigned used = 0;
	int r = parse(&c, argc, argv, &used);

	if (r)
		return r > 0 ? CLI_OK : CLI_USAGE;
	if (!c.cmd) {
		usage(stderr);
		return CLI_USAGE;
	}
	const struct cmd *k = find_cmd(c.cmd);
	if (!k) {
		cli_err("unknown command %s (see volley --help)", c.cmd);
		return CLI_USAGE;
	}
	if (check_cmd(&c, k, used) < 0)
		return CLI_USAGE;
	c.tty = isatty(STDOUT_FILENO);
	/* No SA_RESTART: a sleep or poll returns at once on Ctrl-C. */
	struct sigaction sa = {.sa_handler = on_sigint};
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	r = k->fn(&c);
	cli_http_cleanup();
	if (fflush(stdout) == EOF && r == CLI_OK)
		r = CLI_FAILED;
	return r;
}
