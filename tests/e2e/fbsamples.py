"""Report messages for the feedback tests (stdlib only): bytes with CR LF
line ends, as a receiving MTA or a feedback loop would send them, each
parameterised so that it points at a given job and recipient by volley's
own marks (docs/feedback.md):

- the VERP return path `local+JOBID.INDEX@domain` (message/addr.c's
  msg_verp: verp()), where a bounce is addressed (`to`);
- the Message-ID `<JOBID.INDEX@hostname>` (message/render.c: msgid()),
  in the returned message's header.

Builders:
  arf(...)            RFC 5965 feedback report (abuse by default), with
                      Original-Mail-From, Original-Rcpt-To (rcpt_to=None
                      leaves it out), Source-IP, Arrival-Date, Reported-Domain
                      and the returned message (message/rfc822, header and a
                      short body); sent to a feedback-loop address
  dsn(...)            RFC 3464 delivery status notification as Postfix writes
                      it: failed 5.1.1 (default) or, with delayed=True,
                      delayed 4.4.1 with the returned header only
                      (text/rfc822-headers)
  qsbmf(...)          qmail's QSBMF plain bounce ("Hi. This is the qmail-send
                      program"), the message after "--- Below this line"
  exchange_ndr(...)   an Exchange/Outlook NDR (multipart/mixed with a
                      multipart/alternative, quoted-printable text, "Original
                      message headers")
  plain_bounce(...)   a plain text bounce (Gmail's wording) with the original
                      header after "----- Original message -----"
  garbage(...)        a message that is no report (an out-of-office reply)

Every builder takes rcpt (the recipient's address), to (where the report
goes: a VERP address for bounces), msgid (the returned Message-ID, with its
angle brackets) and returns bytes.
"""

import email.utils
import zlib

CRLF = b"\r\n"
DATE = "Mon, 07 Dec 2026 06:01:09 +0000"


def verp(local, domain, job, index):
    """volley's VERP return path (msg_verp)."""
    return "%s+%s.%d@%s" % (local, job, index, domain)


def msgid(job, index, host):
    """volley's Message-ID of an API job's recipient, with brackets."""
    return "<%s.%d@%s>" % (job, index, host)


def _crlf(text):
    """text (LF line ends) as bytes with CR LF."""
    return CRLF.join(text.encode("utf-8").split(b"\n"))


def _returned(rcpt, mid, sender, body=True):
    """The returned message's header (and a short body)."""
    head = ("Return-Path: <%s>\n"
            "Received: from msa.test (msa.test [198.51.100.7])\n"
            "\tby mx.dest.test with ESMTPS id 4ZkAAA1B2Cz3xY; %s\n"
            "From: Example News <news@example.com>\n"
            "To: %s\n"
            "Subject: Our December news\n"
            "Date: %s\n"
            "Message-ID: %s\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=utf-8\n" % (sender, DATE, rcpt, DATE, mid))
    return head + ("\nHello from the December issue.\n" if body else "")


def arf(rcpt, to, msgid, mail_from="news@example.com", rcpt_to=True, feedback_type="abuse",
        source_ip="198.51.100.7", reporter="fbl.isp.test"):
    """RFC 5965 report about the message with msgid sent to rcpt from
    mail_from (its envelope sender: the VERP address, or the job's plain
    one). rcpt_to False: no Original-Rcpt-To (some providers redact it)."""
    fields = ["Feedback-Type: %s" % feedback_type,
              "User-Agent: VolleyTestFBL/1.0",
              "Version: 1",
              "Original-Mail-From: <%s>" % mail_from]
    if rcpt_to:
        fields.append("Original-Rcpt-To: <%s>" % rcpt)
    fields += ["Arrival-Date: %s" % DATE,
               "Source-IP: %s" % source_ip,
               "Reported-Domain: example.com",
               "Reporting-MTA: dns; mx.%s" % reporter]
    b = "fbl_%08x" % zlib.crc32((rcpt + msgid).encode())
    text = ("From: <abuse@%s>\n"
            "To: <%s>\n"
            "Subject: FW: Our December news\n"
            "Date: %s\n"
            "Message-ID: <arf.%s@%s>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=feedback-report;\n"
            "\tboundary=\"%s\"\n"
            "\n"
            "This is a multi-part message in MIME format.\n"
            "\n--%s\n"
            "Content-Type: text/plain; charset=\"US-ASCII\"\n"
            "Content-Transfer-Encoding: 7bit\n"
            "\n"
            "This is an email abuse report for an email message received from IP\n"
            "%s on %s.\n"
            "\n--%s\n"
            "Content-Type: message/feedback-report\n"
            "\n"
            "%s\n"
            "\n--%s\n"
            "Content-Type: message/rfc822\n"
            "Content-Disposition: inline\n"
            "\n"
            "%s"
            "\n--%s--\n" % (reporter, to, DATE, b, reporter, b, b, source_ip, DATE, b,
                            "\n".join(fields), b, _returned(rcpt, msgid, mail_from), b))
    return _crlf(text)


def dsn(rcpt, to, msgid, delayed=False, mta="mx.dest.test"):
    """Postfix's DSN to `to` about rcpt: failed 5.1.1 with the whole
    message returned, or delayed 4.4.1 with its header only."""
    b = "7A1B2C3D4E.1796620000/%s" % mta
    if delayed:
        subject, action, status = "Delayed Mail (still being retried)", "delayed", "4.4.1"
        diag = "X-Postfix; connect to mx.dest.test[192.0.2.30]:25: Connection timed out"
        part = ("Content-Description: Undelivered Message Headers\n"
                "Content-Type: text/rfc822-headers\n\n%s" % _returned(rcpt, msgid, to, False))
        extra = "Will-Retry-Until: Tue,  8 Dec 2026 06:01:09 +0000 (UTC)\n"
    else:
        subject, action, status = "Undelivered Mail Returned to Sender", "failed", "5.1.1"
        diag = ("smtp; 550 5.1.1 <%s>: Recipient address rejected: User unknown in"
                " virtual mailbox table" % rcpt)
        part = ("Content-Description: Undelivered Message\n"
                "Content-Type: message/rfc822\n"
                "Content-Transfer-Encoding: 8bit\n\n%s" % _returned(rcpt, msgid, to))
        extra = "Remote-MTA: dns; %s\n" % mta
    text = ("Date: %s\n"
            "From: MAILER-DAEMON@%s (Mail Delivery System)\n"
            "Subject: %s\n"
            "To: %s\n"
            "Auto-Submitted: auto-replied\n"
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/report; report-type=delivery-status;\n"
            "\tboundary=\"%s\"\n"
            "Content-Transfer-Encoding: 8bit\n"
            "Message-Id: <20261207060109.7A1B2C3D4E@%s>\n"
            "\n"
            "This is a MIME-encapsulated message.\n"
            "\n--%s\n"
            "Content-Description: Notification\n"
            "Content-Type: text/plain; charset=utf-8\n"
            "\n"
            "This is the mail system at host %s.\n"
            "\n"
            "<%s>: %s\n"
            "\n--%s\n"
            "Content-Description: Delivery report\n"
            "Content-Type: message/delivery-status\n"
            "\n"
            "Reporting-MTA: dns; %s\n"
            "X-Postfix-Queue-ID: 7A1B2C3D4E\n"
            "Arrival-Date: %s\n"
            "\n"
            "Final-Recipient: rfc822; %s\n"
            "Original-Recipient: rfc822;%s\n"
            "Action: %s\n"
            "Status: %s\n"
            "%s"
            "Diagnostic-Code: %s\n"
            "\n--%s\n"
            "%s"
            "\n--%s--\n" % (DATE, mta, subject, to, b, mta, b, mta, rcpt,
                            diag.split("; ", 1)[1], b, mta, DATE, rcpt, rcpt, action,
                            status, extra, diag, b, part, b))
    return _crlf(text)


def qsbmf(rcpt, to, msgid, host="qmail.dest.test"):
    """qmail-send's permanent failure notice (QSBMF) with the message."""
    text = ("Date: 7 Dec 2026 06:01:09 -0000\n"
            "From: MAILER-DAEMON@%s\n"
            "To: %s\n"
            "Subject: failure notice\n"
            "\n"
            "Hi. This is the qmail-send program at %s.\n"
            "I'm afraid I wasn't able to deliver your message to the following addresses.\n"
            "This is a permanent error; I've given up. Sorry it didn't work out.\n"
            "\n"
            "<%s>:\n"
            "192.0.2.40 does not like recipient.\n"
            "Remote host said: 550 5.1.1 %s... User unknown\n"
            "Giving up on 192.0.2.40.\n"
            "\n"
            "--- Below this line is a copy of the message.\n"
            "\n%s" % (host, to, host, rcpt, rcpt, _returned(rcpt, msgid, to)))
    return _crlf(text)


def _qp(text):
    """Quoted-printable soft breaks at 76 columns (ASCII text only)."""
    out = []
    for line in text.split("\n"):
        while len(line) > 75:
            out.append(line[:75] + "=")
            line = line[75:]
        out.append(line)
    return "\n".join(out)


def exchange_ndr(rcpt, to, msgid, server="EXCH01.dest.test"):
    """An Exchange NDR: "Delivery has failed to these recipients or
    groups", #550 5.1.1 for administrators, the original header."""
    plain = ("Delivery has failed to these recipients or groups:\n"
             "\n"
             "%s (%s)\n"
             "The e-mail address you entered couldn't be found. Please check the "
             "recipient's e-mail address and try to resend the message. If the problem "
             "continues, please contact your helpdesk.\n"
             "\n"
             "Diagnostic information for administrators:\n"
             "\n"
             "Generating server: %s\n"
             "\n"
             "%s\n"
             "#550 5.1.1 RESOLVER.ADR.RecipNotFound; not found ##\n"
             "\n"
             "Original message headers:\n"
             "\n%s" % (rcpt.split("@")[0], rcpt, server, rcpt,
                       _returned(rcpt, msgid, to, False)))
    text = ("From: Microsoft Outlook <MicrosoftExchange329e71ec88ae4615bbc36ab6ce41109e@%s>\n"
            "To: <%s>\n"
            "Date: %s\n"
            "Subject: Undeliverable: Our December news\n"
            "Message-ID: <8a1c6c3e-4b1e-4a51-9f2a-7b3c4d5e6f70@%s>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: multipart/mixed; boundary=\"_000_8a1c6c3e_\"\n"
            "\n--_000_8a1c6c3e_\n"
            "Content-Type: multipart/alternative; boundary=\"_001_8a1c6c3e_\"\n"
            "\n--_001_8a1c6c3e_\n"
            "Content-Type: text/plain; charset=\"us-ascii\"\n"
            "Content-Transfer-Encoding: quoted-printable\n"
            "\n%s\n"
            "\n--_001_8a1c6c3e_\n"
            "Content-Type: text/html; charset=\"us-ascii\"\n"
            "\n"
            "<html><body><p>Delivery has failed to these recipients or groups:</p>"
            "</body></html>\n"
            "\n--_001_8a1c6c3e_--\n"
            "\n--_000_8a1c6c3e_--\n" % (server, to, DATE, server, _qp(plain)))
    return _crlf(text)


def plain_bounce(rcpt, to, msgid):
    """A plain text bounce (Gmail's words) with the original header."""
    text = ("From: Mail Delivery Subsystem <mailer-daemon@googlemail.com>\n"
            "To: %s\n"
            "Subject: Delivery Status Notification (Failure)\n"
            "Date: %s\n"
            "Message-ID: <6c1f6d2e.0a3b.4c5d.ffff@mx.google.com>\n"
            "MIME-Version: 1.0\n"
            "Content-Type: text/plain; charset=UTF-8\n"
            "\n"
            "Delivery to the following recipient failed permanently:\n"
            "\n"
            "     %s\n"
            "\n"
            "Technical details of permanent failure:\n"
            "Google tried to deliver your message, but it was rejected by the server for"
            " the recipient domain by mx.dest.test. [192.0.2.50].\n"
            "\n"
            "The error that the other server returned was:\n"
            "550 5.1.1 <%s>: Recipient address rejected: User unknown in local recipient"
            " table\n"
            "\n"
            "----- Original message -----\n"
            "\n%s" % (to, DATE, rcpt, rcpt, _returned(rcpt, msgid, to)))
    return _crlf(text)


def garbage(rcpt, to, msgid):
    """No report: an auto-reply quoting nothing a parser may take."""
    text = ("From: %s\n"
            "To: %s\n"
            "Subject: Out of office: Our December news\n"
            "Date: %s\n"
            "Message-ID: <ooo.%s>\n"
            "Auto-Submitted: auto-replied\n"
            "In-Reply-To: %s\n"
            "\n"
            "I am away until Monday and will read your message then.\n"
            % (rcpt, to, DATE, email.utils.make_msgid().strip("<>"), msgid))
    return _crlf(text)


# name: (builder, the kind `volley feedback parse` must say)
BUILDERS = {
    "arf": (arf, "arf"),
    "dsn": (dsn, "dsn"),
    "qsbmf": (qsbmf, "bounce-heuristic"),
    "exchange_ndr": (exchange_ndr, "bounce-heuristic"),
    "plain_bounce": (plain_bounce, "bounce-heuristic"),
    "garbage": (garbage, "not-report"),
}
