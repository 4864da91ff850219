/*
 * From configuration to running parts: the spool, the suppression list,
 * events, the job registry, the engine, delivery and the API, each opened
 * after what it uses, and closed the other way round (the API first, so
 * no request reaches what is being torn down).
 */
#include "volleyd.h"

#include <stdio.h>

/* The engine's settings from the configuration file. */
static void engine_config(const struct cfg *c, struct eng_config *ec)
{
	eng_config_defaults(ec);
	ec->workers = (int)c->workers;
	ec->t = (struct eng_timeouts){
		.connect = c->timeouts.connect, .greeting = c->timeouts.greeting,
		.helo = c->timeouts.helo, .tls = c->timeouts.tls, .mail = c->timeouts.mail,
		.rcpt = c->timeouts.rcpt, .data = c->timeouts.data,
		.data_block = c->timeouts.data_block, .data_term = c->timeouts.data_term,
		.idle = c->timeouts.idle, .quit = c->timeouts.quit,
	};
	snprintf(ec->helo, sizeof ec->helo, "%s", c->negress ? c->egress[0].ehlo : c->hostname);
	ec->dns = true;
	dns_config_default(&ec->dns_cfg);
	ec->dns_cfg.servers = (const char *const *)c->dns.servers;
	ec->dns_cfg.nservers = c->dns.nservers;
	ec->dns_cfg.timeout_ms = (unsigned)c->dns.timeout_ms;
	ec->dns_cfg.allow_private = c->dns.allow_private;
	ec->dns_cfg.min_ttl = (uint32_t)(c->dns.min_ttl_ms / 1000);
	ec->dns_cfg.max_ttl = (uint32_t)(c->dns.max_ttl_ms / 1000);
	ec->dns_cfg.family = c->dns.ipv6 ? DNS_FAM_BOTH : DNS_FAM_V4;
	ec->dns_cfg.prefer_ipv6 = c->dns.prefer_ipv6;
}

static void sub_metrics(void *arg, struct vl_buf *out)
{
	sub_server_metrics(arg, out);
}

static void fb_metrics(void *arg, struct vl_buf *out)
{
	sched_feedback_metrics(arg, out);
}

static void imap_metrics_fn(void *arg, struct vl_buf *out)
{
	imap_metrics(arg, out);
}

static int imap_store(void *arg, const char *name, const char *head, size_t hlen,
		      const char *msg, size_t len, char *err, size_t errlen)
{
	return sub_inbox_store(arg, name, head, hlen, msg, len, err, errlen);
}

/* ---- the suppression list shared by a cluster ---- */

/* A change made here (API, CLI, bounces, complaints, unsubscribes): to
 * the cluster. */
static void supp_changed(void *arg, const struct sched_suppress_change *ch)
{
	clu_supp_push(arg, ch->add, ch->email, ch->reason, ch->job, ch->at);
}

/* Other nodes' changes: into the list, without the hook (no echo). */
static int supp_apply(void *arg, const struct clu_supp_entry *e, size_t n)
{
	struct sched_suppress_change ch[CLU_SUPP_BATCH];

	for (size_t i = 0; i < n && i < CLU_SUPP_BATCH; i++)
		ch[i] = (struct sched_suppress_change){ .add = e[i].add, .email = e[i].email,
							.reason = e[i].reason, .job = e[i].job,
							.at = e[i].at };
	return sched_suppress_apply(arg, ch, n < CLU_SUPP_BATCH ? n : CLU_SUPP_BATCH) < 0 ? -1 : 0;
}

static void supp_metrics(void *arg, struct vl_buf *out)
{
	struct clu_supp_stats st;

	clu_supp_stats(arg, &st);
	vl_prom_metric(out, "volley_cluster_suppressions_sent_total", "counter",
		       "Suppression-list changes of this node stored in Redis.", NULL,
		       (double)st.sent);
	vl_prom_metric(out, "volley_cluster_suppressions_received_total", "counter",
		       "Suppression-list changes of other nodes applied here.", NULL,
		       (double)st.received);
	vl_prom_metric(out, "volley_cluster_suppressions_pending", "gauge",
		       "Changes of this node waiting for Redis.", NULL, (double)st.pending);
	vl_prom_metric(out, "volley_cluster_suppressions_dropped_total", "counter",
		       "Changes not shared: the queue for Redis was full.", NULL,
		       (double)st.dropped);
	vl_prom_metric(out, "volley_cluster_suppressions_bad_total", "counter",
		       "Entries from Redis skipped as malformed.", NULL, (double)st.bad);
	vl_prom_metric(out, "volley_cluster_suppressions_syncs_total", "counter",
		       "Catch-ups with Redis's list (each connect).", NULL, (double)st.syncs);
	vl_prom_metric(out, "volley_cluster_suppressions_shared", "gauge",
		       "1 while the list is in sync with Redis.", NULL, st.up ? 1 : 0);
}

/* Before any writer of the list starts: each change reaches the hook. */
static int start_csupp(struct vd_daemon *v, const struct cfg *cfg, char *err, size_t errlen)
{
	char state[4200];

	if (!cfg->cluster.on)
		return 0;
	snprintf(state, sizeof state, "%s/cluster-suppression", cfg->data_dir);
	const struct cfg_cluster *k = &cfg->cluster;
	struct clu_supp_opts o = { .redis = k->redis, .password = k->password,
				   .tls = { .on = k->tls, .ca_file = k->tls_ca_file,
					    .cert = k->tls_cert, .key = k->tls_key,
					    .server_name = k->tls_server_name },
				   .node = k->node, .state_file = state,
				   .apply = supp_apply, .arg = v->sup };
	if (!(v->csupp = clu_supp_start(&o, err, errlen)))
		return -1;
	sched_suppress_set_hook(v->sup, supp_changed, v->csupp);
	return 0;
}

/* The feedback inbox (data_dir/feedback), which the return-path listener
 * and the IMAP poller both store into. */
static int open_inbox(struct vd_daemon *v, const struct cfg *cfg, char *err, size_t errlen)
{
	char path[4096];

	if (!cfg->feedback.on && !cfg->feedback.nmailboxes)
		return 0;
	snprintf(path, sizeof path, "%s/feedback", cfg->data_dir);
	return (v->inbox = sub_inbox_open(path, err, errlen)) ? 0 : -1;
}

static int start_imap(struct vd_daemon *v, const struct cfg *cfg, char *err, size_t errlen)
{
	char path[4096];

	if (!cfg->feedback.nmailboxes)
		return 0;
	snprintf(path, sizeof path, "%s/feedback/imap", cfg->data_dir);
	return (v->imap = imap_start(cfg, path, imap_store, v->inbox, err, errlen)) ? 0 : -1;
}

int vd_open(struct vd_daemon *v, const struct cfg *cfg, char *err, size_t errlen)
{
	char path[4096];
	struct eng_config ec;

	engine_config(cfg, &ec);
	snprintf(path, sizeof path, "%s/suppression", cfg->data_dir);
	if (!(v->spool = sched_spool_open(cfg->data_dir, err, errlen)) ||
	    sched_spool_ilog_start(v->spool, cfg->spool.intake_checkpoint_ms, err, errlen) < 0 ||
	    !(v->sup = sched_suppress_open(path, err, errlen)))
		goto fail;
	if (start_csupp(v, cfg, err, errlen) < 0)
		goto fail;
	snprintf(path, sizeof path, "%s/events", cfg->data_dir);
	if (!(v->ev = sched_events_open(path, cfg->events.rotate_bytes,
					(unsigned)cfg->events.keep_files, err, errlen)) ||
	    !(v->sc = sched_new(cfg, v->spool, err, errlen)) ||
	    (!(v->hooks = wh_start(cfg, v->ev, err, errlen)) && *err) ||
	    !(v->eng = eng_new(&ec, err, errlen)))
		goto fail;
	snprintf(path, sizeof path, "%s/tls-rpt", cfg->data_dir);
	if (cfg->tls_rpt.on && !(v->rpt = rpt_store_open(path, err, errlen)))
		goto fail;
	sched_set_tlsrpt(v->sc, v->rpt);
	/* before delivery starts: recovery mends jobs a crash left half made */
	if (cfg->submission.on && !(v->sublog = sub_log_open(cfg, v->spool, v->sc, err, errlen)))
		goto fail;
	if (sched_start(v->sc, v->sup, v->ev, v->eng, err, errlen) < 0)
		goto fail;
	v->started = true;
	/* reports stored in the inbox (by the receiver below, or by hand) */
	snprintf(path, sizeof path, "%s/feedback", cfg->data_dir);
	if (sched_feedback_start(v->sc, path, err, errlen) < 0)
		goto fail;
	/* the listeners before the API: once /v1/health answers, they take mail */
	if (open_inbox(v, cfg, err, errlen) < 0)
		goto fail;
	if ((cfg->submission.on || cfg->feedback.on) &&
	    !(v->smtp = sub_server_start(cfg, v->spool, v->sublog, v->inbox, err, errlen)))
		goto fail;
	if (start_imap(v, cfg, err, errlen) < 0)
		goto fail;
	if (cfg->unsubscribe.on &&
	    !(v->unsub = uns_start(&cfg->unsubscribe, v->sup, v->ev, err, errlen)) &&
	    cfg->unsubscribe.nlisten)
		goto fail;
	if (!(v->api = api_start(cfg, v->sc, v->spool, v->sup, v->ev, err, errlen)))
		goto fail;
	if (v->rpt && !(v->rpt_sender = api_tlsrpt_start(cfg, v->sc, v->spool, v->eng, v->rpt,
							  err, errlen)))
		goto fail;
	api_set_tlsrpt(v->api, v->rpt_sender);
	if (v->smtp)
		api_add_metrics(v->api, sub_metrics, v->smtp);
	api_add_metrics(v->api, fb_metrics, v->sc);
	if (v->imap)
		api_add_metrics(v->api, imap_metrics_fn, v->imap);
	if (v->unsub)
		api_add_metrics(v->api, uns_metrics, v->unsub);
	if (v->hooks)
		api_add_metrics(v->api, wh_metrics, v->hooks);
	if (v->csupp)
		api_add_metrics(v->api, supp_metrics, v->csupp);
	return 0;
fail:
	vl_log(VL_LOG_ERROR, "volleyd: %s", err);
	return -1;
}

void vd_close(struct vd_daemon *v, const struct cfg *cfg)
{
	if (v->api)
		api_drain(v->api);
	/* the API before the parts whose counters /metrics reads */
	api_stop(v->api);
	sub_server_stop(v->smtp);     /* no new messages; waiting sessions answered */
	uns_stop(v->unsub);           /* before the suppression list and events close */
	imap_stop(v->imap);           /* a poll in progress ends within a second */
	sub_inbox_close(v->inbox);    /* after both writers */
	wh_stop(v->hooks);            /* after the API: /metrics reads it */
	sub_log_close(v->sublog);     /* its jobs reach the registry */
	api_tlsrpt_stop(v->rpt_sender);  /* before the scheduler: it submits jobs */
	if (v->sc)
		sched_feedback_stop(v->sc);   /* it pauses jobs: before delivery stops */
	if (v->started)
		sched_stop(v->sc, cfg->shutdown_grace_ms);
	if (v->rpt)
		rpt_store_flush(v->rpt); /* the last results are in */
	rpt_store_close(v->rpt);
	sched_free(v->sc);
	eng_free(v->eng);        /* stopped by sched_stop, or never used */
	if (v->ev)
		sched_events_close(v->ev);
	/* every writer of the list has stopped: the hook goes, then the
	 * thread that applies the cluster's changes */
	if (v->sup)
		sched_suppress_set_hook(v->sup, NULL, NULL);
	clu_supp_stop(v->csupp);
	if (v->sup)
		sched_suppress_close(v->sup);
	sched_spool_close(v->spool);
}
