/*
 * webhook: events POSTed to HTTPS endpoints (docs/webhooks.md). One thread
 * ("vl-hooks") with libcurl's multi interface serves every configured
 * webhook; each follows the events log from a durable cursor
 * (data_dir/webhooks/<name>.cursor), sends matching events in signed JSON
 * batches and moves its cursor only after a 2xx (at least once). Reads the
 * files itself: never slows delivery. Prefix: wh_.
 */
#ifndef VOLLEY_WEBHOOK_H
#define VOLLEY_WEBHOOK_H

#include <stddef.h>

#include "../common/common.h"
#include "../config/config.h"
#include "../scheduler/events.h"

struct wh;
/* Starts the thread when c has webhooks (NULL without: nothing to do, and
 * no error: check err[0]). Reads or makes each cursor first. */
struct wh *wh_start(const struct cfg *c, struct sched_events *ev, char *err, size_t errlen);
/* Prometheus lines (volley_webhook_*) for api_add_metrics. */
void wh_metrics(void *wh, struct vl_buf *out);
/* Stops within about a second: a request in flight is abandoned, the
 * cursors stay at the last acknowledged batch. NULL: nothing. */
void wh_stop(struct wh *w);

#endif
