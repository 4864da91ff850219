/*
 * A pool's queue of messages waiting for a session: FIFO, with urgent
 * (transactional) messages ahead of the rest. The site keeps up to
 * 2 x max_connections messages in the engine, so without this a message
 * submitted behind a bulk backlog waits for hundreds of others.
 */
#include "engine_int.h"

void eng_mq_push(struct eng_mq *q, struct eng_msg *m, bool front)
{
	m->next_ = NULL;
	if (!q->head) {
		q->head = q->tail = m;
	} else if (front || (m->urgent && !q->urgent)) {
		m->next_ = q->head;
		q->head = m;
	} else if (m->urgent) {          /* behind the urgent ones waiting */
		m->next_ = q->urgent->next_;
		q->urgent->next_ = m;
		if (q->tail == q->urgent)
			q->tail = m;
	} else {
		q->tail->next_ = m;
		q->tail = m;
	}
	/* a next transaction put first leaves the last urgent one as it is */
	if (m->urgent && (!q->urgent || !front))
		q->urgent = m;
	q->len++;
}

struct eng_msg *eng_mq_pop(struct eng_mq *q)
{
	struct eng_msg *m = q->head;

	if (m) {
		q->head = m->next_;
		if (!q->head)
			q->tail = NULL;
		if (q->urgent == m)
			q->urgent = NULL;
		q->len--;
	}
	return m;
}
