#!/usr/bin/env python3
"""Seeds for fuzz_tlsa: TLSA answers for _25._tcp.mx.example.test (QR RD RA AD).
Run from this folder: python3 make.py. Names carry a hyphen: the Makefile
copies tests/fuzz/seeds/tlsa/*-* into the corpus, not this script."""
import hashlib
import struct

QNAME = b"".join(bytes([len(l)]) + l for l in b"_25._tcp.mx.example.test".split(b".")) + b"\0"


def answer(records, qid):
    msg = struct.pack("!HHHHHH", qid, 0x81A0, 1, len(records), 0, 0)
    msg += QNAME + struct.pack("!HH", 52, 1)
    for usage, selector, mtype, data in records:
        rdata = struct.pack("!BBB", usage, selector, mtype) + data
        msg += struct.pack("!HHHIH", 0xC00C, 52, 1, 300, len(rdata)) + rdata
    return msg


d256 = hashlib.sha256(b"volley").digest()
d512 = hashlib.sha512(b"volley").digest()
seeds = {
    "ee-spki-sha256": [(3, 1, 1, d256)],
    "ta-cert-sha256": [(2, 0, 1, d256)],
    "short-digest": [(3, 1, 1, d256[:31])],
    "two-records": [(3, 1, 1, d256), (3, 1, 2, d512)],
}
for i, (name, recs) in enumerate(seeds.items()):
    with open(name, "wb") as f:
        f.write(answer(recs, 0x1600 + i))
