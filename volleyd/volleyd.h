/*
 * volleyd: the daemon's own wiring (not a library). main.c takes the
 * command line, signals and daemonising; wire.c turns the configuration
 * into the engine, scheduler and API and takes them down again.
 * Prefix: vd_.
 */
#ifndef VOLLEY_VOLLEYD_H
#define VOLLEY_VOLLEYD_H

#include "../api/api.h"
#include "../cluster/cluster.h"
#include "../config/config.h"
#include "../engine/engine.h"
#include "../imap/imap.h"
#include "../message/message.h"
#include "../scheduler/scheduler.h"
#include "../submit/submit.h"
#include "../unsub/unsub.h"
#include "../webhook/webhook.h"

/* Everything a running daemon holds (vd_open opens the spool, the
 * suppression list, events, the registry, the engine, delivery and the
 * API in that order). */
struct vd_daemon {
	struct engine *eng;
	struct sched_spool *spool;
	struct sched_suppress *sup;
	struct sched_events *ev;
	struct sched *sc;
	struct api *api;
	struct rpt_store *rpt;   /* TLS-RPT (tls_rpt set), or NULL */
	struct api_tlsrpt *rpt_sender;
	struct wh *hooks;             /* NULL without webhooks */
	struct sub_log *sublog;  /* submission's durable log, or NULL */
	struct sub_server *smtp; /* the SMTP listeners, or NULL */
	struct sub_inbox *inbox; /* data_dir/feedback (feedback.listen or .mailboxes), or NULL */
	struct imap_poller *imap; /* feedback.mailboxes, or NULL */
	struct uns_server *unsub; /* the one-click unsubscribe listener, or NULL */
	struct clu_supp *csupp;  /* the suppression list shared (cluster), or NULL */
	bool started;            /* sched_start succeeded */
};

/* Open the spool (recovering it), start the engine, the scheduler and the
 * API. -1 with err (also logged); vd_close takes down what was opened. */
int vd_open(struct vd_daemon *v, const struct cfg *cfg, char *err, size_t errlen);
/* SIGTERM: no new jobs, deliveries drain, the journal is committed. */
void vd_close(struct vd_daemon *v, const struct cfg *cfg);

/* What the daemon would refuse at start besides the file's syntax (DKIM
 * keys, dkim_required, bounce rules, the API socket's place): -1 with
 * err. --check-config and the start run the same checks. */
int vd_check(const struct cfg *c, char *err, size_t errlen);

/* Every configuration loaded (the first, then one per good reload),
 * newest last: none is freed before exit, since sites, routes and jobs
 * point into them. */
struct vd_cfgs {
	struct cfg **v;
	size_t n;
};
static inline struct cfg *vd_current(const struct vd_cfgs *c)
{
	return c->v[c->n - 1];
}
/* How volleyd was started, for a reload to follow. */
struct vd_opts {
	const char *config, *data_dir;
	bool foreground, check, verbose;
};
/* Where the log goes with c: NULL (stderr) in the foreground. */
const char *vd_log_file(const struct cfg *c, bool foreground, char *buf, size_t len);
/* SIGHUP: read the file again; a good one goes to delivery and the log,
 * a bad one is logged and changes nothing. */
void vd_reload(struct vd_daemon *v, struct vd_cfgs *cfgs, const struct vd_opts *o);

/* sd_notify: state ("READY=1", ...) to $NOTIFY_SOCKET when set. */
int vd_notify(const char *state);

#endif
