#!/usr/bin/python3
"""The peer of volley-feedback-bench: Python's standard email package on the
same samples, round robin, doing the comparable work (parse the message,
find the report part, read the per-recipient or feedback fields and the
returned Message-ID; plain text bounces: the text decoded). Prints
"feedback_peer_rate N reports/s".
   bench/feedback-peer.py COUNT SAMPLES_DIR"""
import email
import email.parser
import sys
import time

NAMES = ["postfix-dsn.eml", "postfix-delayed.eml", "multi-rcpt-dsn.eml", "dsn-base64.eml",
         "arf-rfc5965.eml", "arf-yahoo.eml", "arf-microsoft.eml", "qsbmf.eml",
         "exchange-ndr.eml", "gmail-plain.eml", "not-report.eml"]


def headers_of(part):
    p = part.get_payload()
    return p[0] if isinstance(p, list) else email.parser.HeaderParser().parsestr(p)


def one(raw):
    m = email.message_from_bytes(raw)
    out = {"to": m.get("Delivered-To") or m.get("To"), "rcpts": []}
    for part in m.walk():
        ct = part.get_content_type()
        if ct == "message/delivery-status":
            blocks = part.get_payload()
            if (part.get("Content-Transfer-Encoding") or "").lower() == "base64":
                raw64 = "".join(str(b) for b in blocks) if isinstance(blocks, list) else blocks
                text = email.message_from_string("Content-Transfer-Encoding: base64\n\n" + raw64)
                text = text.get_payload(decode=True).decode("latin-1").replace("\r\n", "\n")
                blocks = [email.message_from_string(b) for b in text.split("\n\n") if b.strip()]
            for b in blocks[1:]:
                out["rcpts"].append((b.get("Final-Recipient"), b.get("Action"), b.get("Status"),
                                     b.get("Diagnostic-Code")))
        elif ct == "message/feedback-report":
            f = headers_of(part)
            out["fb"] = (f.get("Feedback-Type"), f.get_all("Original-Rcpt-To"))
        elif ct in ("message/rfc822", "text/rfc822-headers"):
            out["msgid"] = headers_of(part).get("Message-ID")
        elif ct == "text/plain" and "text" not in out:
            out["text"] = part.get_payload(decode=True)[:65536]
    return out


def main():
    count = int(sys.argv[1])
    msgs = [open(f"{sys.argv[2]}/{n}", "rb").read() for n in NAMES]
    t0 = time.monotonic()
    for i in range(count):
        one(msgs[i % len(msgs)])
    print(f"feedback_peer_rate {count / (time.monotonic() - t0):.0f} reports/s")


if __name__ == "__main__":
    main()
