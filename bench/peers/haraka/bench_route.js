'use strict'
// volley-bench's Haraka peer (bench/vbench/vbench_haraka.c): every
// connection relays (the injector is on loopback), and a recipient domain
// d<N>.s<A>.bench.test goes to sink address A, as the other peers route
// it (the table is config/bench_routes.json, written by volley-bench).

exports.register = function () {
    this.routes = this.config.get('bench_routes.json')
}

exports.hook_connect = function (next, connection) {
    connection.relaying = true
    next()
}

exports.hook_get_mx = function (next, hmail, domain) {
    const m = /\.s(\d+)\.bench\.test$/.exec(domain)
    const r = m && this.routes[m[1]]
    if (!r) return next(DENY, `${domain} is not a bench domain`)
    next(OK, { exchange: r.host, port: r.port, priority: 10 })
}
