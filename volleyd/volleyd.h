/*
 * volleyd: the daemon's own wiring (not a library). main.c takes the
 * command line, signals and daemonising; wire.c turns the configuration
 * into the engine, scheduler and API and takes them down again.
 * Prefix: vd_.
 */
#ifndef VOLLEY_VOLLEYD_H
#define VOLLEY_VOLLEYD_H

#include "../api/api.h"
#include "../config/config.h"
#include "../engine/engine.h"
#include "../message/message.h"
#include "../scheduler/scheduler.h"

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
	bool started;            /* sched_start succeeded */
};

/* Open the spool (recovering it), start the engine, the scheduler and the
 * API. -1 after logging why; vd_close takes down what was opened. */
int vd_open(struct vd_daemon *v, const struct cfg *cfg);
/* SIGTERM: no new jobs, deliveries drain, the journal is committed. */
void vd_close(struct vd_daemon *v, const struct cfg *cfg);

#endif
