// volley-bench's Nodemailer peer: sends volley-bench's workload the way a
// Node application would, with Nodemailer's pooled SMTP transport, and
// prints one JSON line of figures on stdout.
//
//   node nodemailer.mjs '{"job": "job.json", "rcpts": "recipients.ndjson",
//     "count": 10000, "addrs": ["127.0.0.21"], "port": 2525, "tls": true,
//     "sessions": 100}'
//
// Recipient domain d{k}.s{a}.bench.test goes to addrs[a] (vb_rcpt_domain),
// through one pooled transport per address. Every message is rendered here,
// per recipient: substitutions from the recipient, then the job; values
// HTML-escaped in html_body and URL-escaped in the unsubscribe URL, as volley
// does. Latency is sendMail's call to its resolve (the sink's 250).
// Output: {"sent", "failed", "bounced" (5xx, of failed), "seconds", "p50_ms",
// "p99_ms", "first_error"}. Nodemailer does not retry: a 4xx is a failure.
//
// The mixed scenario adds "tx": {"job", "rcpts", "rate", "max", "sessions",
// "times"}: while the bulk runs, the transactional job's recipients are sent
// at rate a second (at most max) through a transporter of their own
// (sessions connections per address), as an application keeps one for its
// transactional mail; once the bulk has all its answers, no more are
// started. Each one's wall-clock submission and answer go to the file
// "times" ("index sent_ms answered_ms" a line, answered 0 when it failed),
// and the output gains "tx_sent" and "tx_failed".
import { createReadStream, readFileSync, writeFileSync } from 'node:fs';
import { createInterface } from 'node:readline';
import nodemailer from 'nodemailer';

const SLOT = /\{\{ *([A-Za-z0-9_.-]+) *\}\}/g;

// A template compiled once into static parts and slot names, like any
// application's template engine: no parsing per recipient.
function compile(src) {
	const parts = [], keys = [];
	let last = 0;
	for (const m of src.matchAll(SLOT)) {
		parts.push(src.slice(last, m.index));
		keys.push(m[1]);
		last = m.index + m[0].length;
	}
	parts.push(src.slice(last));
	return { parts, keys };
}

function render(t, value, esc) {
	let out = t.parts[0];
	for (let i = 0; i < t.keys.length; i++)
		out += esc(value(t.keys[i])) + t.parts[i + 1];
	return out;
}

const HTML = { '&': '&amp;', '<': '&lt;', '>': '&gt;', '"': '&quot;', "'": '&#39;' };
const asIs = (v) => v;
const htmlEsc = (v) => v.replace(/[&<>"']/g, (c) => HTML[c]);
// RFC 3986 unreserved characters stay, every other octet is %XX.
const urlEsc = (v) => encodeURIComponent(v).replace(/[!'()*]/g,
	(c) => '%' + c.charCodeAt(0).toString(16).toUpperCase());
const headerEsc = (v) => {
	if (/[\r\n]/.test(v))
		throw new Error('substitution value with CR or LF in a header');
	return v;
};

function tpl(s) {
	return typeof s === 'string' ? compile(s) : null;
}

// The job's templates and fixed fields, compiled once.
function loadJob(path) {
	const job = JSON.parse(readFileSync(path, 'utf8'));
	const c = job.content;
	if (!c || typeof c !== 'object')
		throw new Error('job.content must be an object (a raw message is not supported)');
	const u = job.unsubscribe || {};
	let mailto = u.mailto || null;
	if (mailto && !/^mailto:/i.test(mailto))
		mailto = 'mailto:' + mailto;
	const headers = Object.entries(c.headers || {}).map(([k, v]) => [k, compile(String(v))]);
	return {
		sender: job.envelope_sender || c.from.email,
		from: { name: c.from.name || '', address: c.from.email },
		replyTo: c.reply_to ? { name: c.reply_to.name || '', address: c.reply_to.email } : null,
		subject: compile(c.subject || ''),
		text: tpl(c.text_body),
		html: tpl(c.html_body),
		headers,
		subs: job.substitutions || {},
		unsubUrl: tpl(u.url),
		unsubMailto: mailto,
	};
}

// One recipient's message, rendered as volley renders it.
function message(job, r) {
	const rs = r.substitutions || {};
	const value = (k) => {
		const v = Object.hasOwn(rs, k) ? rs[k] : job.subs[k];
		if (v === undefined || v === null)
			throw new Error(`missing substitution "${k}"`);
		return String(v);
	};
	const headers = {};
	for (const [k, t] of job.headers)
		headers[k] = render(t, value, headerEsc);
	if (job.unsubUrl) {
		const url = '<' + render(job.unsubUrl, value, urlEsc) + '>';
		headers['List-Unsubscribe'] = job.unsubMailto ? `<${job.unsubMailto}>, ${url}` : url;
		headers['List-Unsubscribe-Post'] = 'List-Unsubscribe=One-Click';
	} else if (job.unsubMailto) {
		headers['List-Unsubscribe'] = `<${job.unsubMailto}>`;
	}
	const m = {
		envelope: { from: job.sender, to: [r.email] },
		from: job.from,
		to: { name: r.name || '', address: r.email },
		subject: render(job.subject, value, headerEsc),
		headers,
	};
	if (job.replyTo)
		m.replyTo = job.replyTo;
	if (job.text)
		m.text = render(job.text, value, asIs);
	if (job.html)
		m.html = render(job.html, value, htmlEsc);
	return m;
}

function transports(a, sessions = a.sessions) {
	const n = a.addrs.length, per = Math.floor(sessions / n), extra = sessions % n;
	return a.addrs.map((host, i) => nodemailer.createTransport({
		host, port: a.port, secure: false, name: 'nodemailer.bench.test',
		pool: true, maxConnections: Math.max(1, per + (i < extra ? 1 : 0)),
		maxMessages: Infinity,
		...(a.tls ? { requireTLS: true, tls: { rejectUnauthorized: false } }
			: { ignoreTLS: true }),
		disableFileAccess: true, disableUrlAccess: true, logger: false,
	}));
}

// Which transport: the sink address index in the domain (.s{a}.bench.test);
// a hand-made recipient elsewhere goes to the first.
function route(email, n) {
	const m = /\.s(\d+)\.bench\.test$/i.exec(email);
	const a = m ? Number(m[1]) : 0;
	return a < n ? a : 0;
}

// Nearest rank, as volley-bench's own vb_percentiles.
function pct(ms, n, p) {
	if (n === 0)
		return -1;
	return ms[Math.max(0, Math.ceil(p * n) - 1)];
}

const wallMs = () => performance.timeOrigin + performance.now();
const sleep = (ms) => new Promise((res) => setTimeout(res, ms));

// The mixed scenario's transactional stream, until bulkDone() says stop.
async function txStream(a, bulkDone) {
	const tx = a.tx, job = loadJob(tx.job), tr = transports(a, tx.sessions || 10);
	const lines = readFileSync(tx.rcpts, 'utf8').split('\n').filter((l) => l.trim());
	const sent = [], answered = [];
	let failed = 0, ok = 0, inflight = 0, wake = null;
	const start = performance.now();
	for (let i = 0; i < Math.min(lines.length, tx.max) && !bulkDone(); i++) {
		const due = start + i * 1000 / tx.rate - performance.now();
		if (due > 0)
			await sleep(due);
		if (bulkDone())
			break;
		const r = JSON.parse(lines[i]);
		sent[i] = wallMs();
		inflight++;
		tr[route(r.email, tr.length)].sendMail(message(job, r)).then(
			() => { answered[i] = wallMs(); ok++; },
			() => { answered[i] = 0; failed++; }).finally(() => {
			inflight--;
			if (wake && !inflight)
				wake();
		});
	}
	if (inflight)
		await new Promise((res) => { wake = res; });
	tr.forEach((t) => t.close());
	let out = '';
	for (let i = 0; i < sent.length; i++)
		if (sent[i] !== undefined)
			out += `${i} ${sent[i].toFixed(3)} ${(answered[i] || 0).toFixed(3)}\n`;
	writeFileSync(tx.times, out);
	return { tx_sent: ok, tx_failed: failed };
}

async function run(a) {
	const job = loadJob(a.job);
	const tr = transports(a);
	let bulkOver = false;
	const txp = a.tx ? txStream(a, () => bulkOver) : null;
	const window = 2 * Math.max(a.sessions, tr.length);
	const lat = new Float64Array(a.count);
	const st = { sent: 0, failed: 0, bounced: 0, first_error: '', inflight: 0 };
	let wake = null;

	const done = (t0, ok, err) => {
		if (ok)
			lat[st.sent++] = performance.now() - t0;
		else {
			st.failed++;
			st.bounced += err && err.responseCode >= 500 ? 1 : 0;
			if (!st.first_error)
				st.first_error = String(err && err.message || err);
		}
		st.inflight--;
		if (wake) {
			const w = wake;
			wake = null;
			w();
		}
	};
	// Wait for a free slot, or (limit 1) for everything to finish.
	const until = (limit) => st.inflight < limit ? null
		: new Promise((res) => { wake = res; });

	const rl = createInterface({ input: createReadStream(a.rcpts), crlfDelay: Infinity });
	const start = performance.now();
	let i = 0;
	for await (const line of rl) {
		if (i >= a.count)
			break;
		if (!line.trim())
			continue;
		i++;
		// A transactional scenario submits at its rate, as volley's jobs are.
		if (a.rate > 0) {
			const due = start + (i - 1) * 1000 / a.rate - performance.now();
			if (due > 0)
				await new Promise((res) => setTimeout(res, due));
		}
		let p;
		while ((p = until(window)))
			await p;
		st.inflight++;
		const t0 = performance.now();
		try {
			const r = JSON.parse(line);
			tr[route(r.email, tr.length)].sendMail(message(job, r))
				.then(() => done(t0, true), (e) => done(t0, false, e));
		} catch (e) {
			done(t0, false, e);
		}
	}
	rl.close();
	let p;
	while ((p = until(1)))
		await p;
	const seconds = (performance.now() - start) / 1000;
	bulkOver = true;
	const txr = txp ? await txp : {};
	tr.forEach((t) => t.close());
	if (i < a.count) {
		st.failed += a.count - i;
		st.first_error ||= `recipients file has only ${i} recipients`;
	}
	const ms = lat.subarray(0, st.sent).sort();
	return { sent: st.sent, failed: st.failed, bounced: st.bounced, seconds,
		 p50_ms: pct(ms, st.sent, 0.5), p99_ms: pct(ms, st.sent, 0.99),
		 first_error: st.first_error, ...txr };
}

function args(argv) {
	if (argv.length !== 1)
		throw new Error('usage: node nodemailer.mjs \'{"job":..,"rcpts":..,"count":..,' +
				'"addrs":[..],"port":..,"tls":..,"sessions":..}\'');
	const a = JSON.parse(argv[0]);
	for (const k of ['job', 'rcpts'])
		if (typeof a[k] !== 'string')
			throw new Error(`"${k}" must be a path`);
	if (!Array.isArray(a.addrs) || !a.addrs.length)
		throw new Error('"addrs" must be a non-empty array');
	a.count = Number(a.count);
	a.port = Number(a.port);
	a.sessions = Math.max(1, Number(a.sessions) || 1);
	a.tls = !!a.tls;
	return a;
}

try {
	console.log(JSON.stringify(await run(args(process.argv.slice(2)))));
} catch (e) {
	console.log(JSON.stringify({ sent: 0, failed: 0, bounced: 0, seconds: 0, p50_ms: -1,
				     p99_ms: -1, first_error: String(e && e.message || e) }));
	process.exitCode = 2;
}
