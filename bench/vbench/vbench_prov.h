/*
 * The providers scenario's state, shared by its run (vbench_prov.c) and
 * its report (vbench_provrep.c). Private to bench/vbench/.
 */
#ifndef VOLLEY_VBENCH_PROV_H
#define VOLLEY_VBENCH_PROV_H

#include "vbench.h"

#define VB_QSAMPLES 4096   /* /v1/queues samples, every 500 ms: 34 minutes */
#define VB_MAX_SRC 8
#define VB_MAX_REPLIES 24  /* distinct deferral replies kept per profile */

/* A deferral reply (or reason) seen, and how often. */
struct vb_reply {
	char cls[24];        /* bounce class */
	char text[112];      /* "421 4.7.28 Our system has ..." cut short */
	long n;
};

/* One profile: its sink, what volley did there, and the figures. */
struct vb_pdest {
	const char *name;    /* the profile's */
	char domain[96];     /* NAME.test (or dK.NAME.test) */
	struct vb_sink sink;
	long recipients;     /* of the job */
	/* From the events: per source (index in vb_prov.src) and in all. */
	long delivered[VB_MAX_SRC], deferred[VB_MAX_SRC];
	long bounced, expired, delivered_all, deferred_all;
	long by_class_rate, by_class_other;   /* deferrals classed rate-limited, not */
	int nreplies;
	struct vb_reply replies[VB_MAX_REPLIES];
	/* From /v1/queues, every 500 ms: volley's cap summed over its sources
	 * (< 0: some source unlimited), how many sources were suspended. */
	int nq;
	double qt[VB_QSAMPLES], qcap[VB_QSAMPLES];
	int qsusp[VB_QSAMPLES];
	long suspensions;    /* back-off episodes begun, over the sources */
	int last_level[VB_MAX_SRC];
	bool last_susp[VB_MAX_SRC];
	/* The figures (vbench_provrep.c). */
	double t_first, t_last;       /* first and last delivery, s since submission */
	double win_a, win_b;          /* the steady-state window */
	double steady, allowed;       /* accepted/s and allowed/s over it */
	double suspended;             /* the part of the run its sources were suspended */
};

struct vb_prov {
	const struct vb_env *e;
	char dir[320];       /* the run's volley folder */
	int n;
	struct vb_pdest d[VB_MAX_PROFILES];
	int nsrc;
	char src[VB_MAX_SRC][32];   /* egress source names, src0.. */
	char src_addr[VB_MAX_SRC][24];
	pid_t pid;
	struct vb_api *api;
	double seconds;      /* submission to the last final outcome (or the timeout) */
	long total, final, delivered, bounced;
	bool timed_out;
	char note[256];
};

/* The report: figures from the series, the table, JSON and PNG. */
void vb_prov_figures(struct vb_prov *p);
void vb_prov_table(const struct vb_prov *p);
int vb_prov_json(const struct vb_prov *p, const char *path);
int vb_prov_plot(const struct vb_prov *p, const char *path);

#endif
