/* Engine configuration defaults and route parsing. */
#include "engine_int.h"

#include <arpa/inet.h>
#include <stdio.h>
#include <string.h>

void eng_config_defaults(struct eng_config *c)
{
	memset(c, 0, sizeof *c);
	snprintf(c->helo, sizeof c->helo, "localhost");
	c->max_rcpts_per_txn = 100;
	c->t = (struct eng_timeouts){
		.connect = 30000, .greeting = 300000, .helo = 300000,
		.tls = 120000, .mail = 300000, .rcpt = 300000, .data = 120000,
		.data_block = 180000, .data_term = 600000, .idle = 10000,
		.quit = 5000,
	};
}

int eng_route_parse(struct eng_route *r, const char *hostport, char *err,
		    size_t errlen)
{
	char host[256];
	uint16_t port;

	memset(r, 0, sizeof *r);
	r->tls = TLS_POLICY_DANE;
	r->max_connections = 50;
	r->max_messages_per_connection = 1000;
	if (vl_parse_hostport(hostport, host, sizeof host, &port) < 0) {
		snprintf(err, errlen, "route '%s': expected ADDR:PORT", hostport);
		return -1;
	}
	if (vl_sockaddr_parse(host, port, &r->addr, &r->addrlen) < 0) {
		snprintf(err, errlen, "route '%s': '%s' is not an IP address", hostport, host);
		return -1;
	}
	snprintf(r->name, sizeof r->name, "%s", host);
	return 0;
}
