#!/bin/sh
# SMTP submission's storage: 50 sessions store 50,000 messages of 4 KB, each
# session waiting for its message to be durable before the next (as it
# waits to answer 250), through the submission log (group commit: one
# fdatasync a batch) and through the API's per-job path (6 fsyncs a job),
# in the same run; prints messages/s, syncs/s and the ratio.
#   ITEMS=50000 THREADS=50 SIZE=4096 PER_JOB_ITEMS=50000 bench/submitlog.sh
set -eu
cd "$(dirname "$0")/.."
B=${VOLLEY_BUILD:-build}
ITEMS=${ITEMS:-50000}
exec "$B/volley-submitlog-bench" --items "$ITEMS" --threads "${THREADS:-50}" \
	--size "${SIZE:-4096}" --per-job-items "${PER_JOB_ITEMS:-$ITEMS}" ${DIR:+--dir "$DIR"}
