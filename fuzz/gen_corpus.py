#!/usr/bin/env python3
"""Writes the seed corpus under fuzz/corpus/ (deterministic; re-run after
editing).  Seeds are real-looking PhantomBuster webhooks and malformed
variants of them: numeric and string ids, unicode, deep nesting, duplicate
keys, huge numbers, NUL bytes, truncation.

    python3 fuzz/gen_corpus.py
"""
import json
import os
import struct

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "corpus")

REAL = (b'{"agentId":4717388215573025,"agentName":"Company enrichment - acme '
        b'batch","containerId":7583362109412873,"script":"LinkedIn Company '
        b'Scraper.js","scriptOrg":"phantombuster","branch":"master",'
        b'"launchDuration":1520,"runDuration":98211,"exitCode":0,'
        b'"exitMessage":"finished","resultObject":"[{\\"companyUrl\\":'
        b'\\"https://www.linkedin.com/company/acme-corp/\\",\\"name\\":'
        b'\\"Acme Corp\\"}]"}')


def obj(**kw):
    return json.dumps(kw, separators=(",", ":")).encode()


def base(**over):
    d = {"agentId": "4717388215573025", "agentName": "Profile scraper",
         "containerId": "7583362109412873", "script": "x.js",
         "scriptOrg": "phantombuster", "branch": "master",
         "launchDuration": 1520, "runDuration": 98211,
         "exitCode": 0, "exitMessage": "finished", "resultObject": ""}
    for k, v in over.items():
        if v is None:
            d.pop(k, None)
        else:
            d[k] = v
    return obj(**d)


payloads = {
    "real-numeric-ids": REAL,
    "string-ids": base(),
    "killed": base(exitCode=1, exitMessage="killed"),
    "agent-timeout": base(exitCode=137, exitMessage="agent timeout"),
    "org-timeout": base(exitCode=1, exitMessage="org timeout"),
    "global-timeout": base(exitCode=1, exitMessage="global timeout"),
    "no-log-timeout": base(exitCode=1, exitMessage="no log timeout"),
    "unknown-end": base(exitCode=-1, exitMessage="unknown"),
    "cookie-expired-87": base(exitCode=87, exitMessage="finished"),
    "minimal": b'{"containerId":1,"agentId":2,"exitCode":0,"exitMessage":""}',
    "id-chars": base(containerId="a-b_c.d:E9", agentId="Z:0"),
    "id-64": base(containerId="c" * 64),
    "id-65": base(containerId="c" * 65),
    "id-empty": base(containerId=""),
    "id-space": base(agentId="12 34"),
    "id-slash": base(containerId="../../etc"),
    "id-newline": base(containerId="12\n34"),
    "id-negative": base(containerId=-5),
    "id-zero": base(agentId=0),
    "id-float": b'{"containerId":1.0,"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-exp": b'{"containerId":1e3,"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-int64-max": b'{"containerId":9223372036854775807,"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-int64-overflow": b'{"containerId":9223372036854775808,"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-huge": b'{"containerId":' + b"9" * 400 + b',"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-bool": base(agentId=True),
    "id-null": b'{"containerId":null,"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "id-object": base(agentId={"id": 1}),
    "exitcode-string": base(exitCode="0"),
    "exitcode-float": b'{"containerId":1,"agentId":2,"exitCode":0.5,"exitMessage":"finished"}',
    "exitcode-huge": b'{"containerId":1,"agentId":2,"exitCode":1e400,"exitMessage":"finished"}',
    "exitcode-int64-min": b'{"containerId":1,"agentId":2,"exitCode":-9223372036854775808,"exitMessage":"finished"}',
    "exitmessage-number": base(exitMessage=0),
    "missing-container": base(containerId=None),
    "missing-agent": base(agentId=None),
    "missing-exitcode": base(exitCode=None),
    "missing-exitmessage": base(exitMessage=None),
    "unicode-name": base(agentName="Profils \u00e9t\u00e9 \u6f22\u5b57 \U0001f680"),
    "unicode-escaped": b'{"containerId":"1","agentId":"2","agentName":"\\u00e9\\ud83d\\ude80","exitCode":0,"exitMessage":"finished"}',
    "lone-surrogate": b'{"containerId":"1","agentId":"2","agentName":"\\ud800","exitCode":0,"exitMessage":"finished"}',
    "invalid-utf8": b'{"containerId":"1","agentId":"2","agentName":"\xc3\x28\xff","exitCode":0,"exitMessage":"finished"}',
    "overlong-utf8": b'{"containerId":"1","agentId":"2","agentName":"\xc0\xaf","exitCode":0,"exitMessage":"finished"}',
    "unicode-in-id": base(containerId="\u0661\u0662"),
    "nul-escaped": b'{"containerId":"1","agentId":"2","agentName":"a\\u0000b","exitCode":0,"exitMessage":"finished"}',
    "nul-raw-in-string": b'{"containerId":"1","agentId":"2","agentName":"a\x00b","exitCode":0,"exitMessage":"finished"}',
    "nul-after": base() + b"\x00",
    "duplicate-container": b'{"containerId":"1","containerId":"2","agentId":"2","exitCode":0,"exitMessage":"finished"}',
    "duplicate-nested": b'{"containerId":"1","agentId":"2","exitCode":0,"exitMessage":"finished","x":{"a":1,"a":2}}',
    "deep-32": b'{"containerId":1,"agentId":2,"exitCode":0,"exitMessage":"finished","x":' + b"[" * 31 + b"]" * 31 + b"}",
    "deep-33": b'{"containerId":1,"agentId":2,"exitCode":0,"exitMessage":"finished","x":' + b"[" * 32 + b"]" * 32 + b"}",
    "deep-3000": b"[" * 3000 + b"]" * 3000,
    "brackets-in-string": b'{"containerId":1,"agentId":2,"exitCode":0,"exitMessage":"finished","x":"' + b"[{" * 100 + b'\\"]"}',
    "result-object-object": base(resultObject={"rows": [{"url": "https://x"}]}),
    "result-object-big": base(resultObject=json.dumps([{"i": i, "name": "n%d" % i} for i in range(200)])),
    "truncated": base()[:57],
    "truncated-in-escape": b'{"containerId":"1","agentId":"\\u00',
    "trailing-data": base() + b'{"x":1}',
    "trailing-space": base() + b" \r\n\t",
    "bom": b"\xef\xbb\xbf" + base(),
    "bare-string": b'"finished"',
    "bare-number": b"7583362109412873",
    "array": b"[" + base() + b"]",
    "null": b"null",
    "empty-object": b"{}",
    "whitespace": b" \n ",
    "single-quote": b"{'containerId':1}",
    "comment": b'{"containerId":1,/*x*/"agentId":2,"exitCode":0,"exitMessage":"finished"}',
    "nan": b'{"containerId":1,"agentId":2,"exitCode":NaN,"exitMessage":"finished"}',
    "form-encoded": b"containerId=1&agentId=2&exitCode=0&exitMessage=finished",
}


def head(rid, at, queue):
    return (b'{"id":' + json.dumps(rid).encode() + b',"received_at":'
            + str(at).encode() + b',"queue":' + json.dumps(queue).encode()
            + b',"payload":')


RID = "3f2a9c1e0b7d4e5f8a6b2c1d0e9f8a7b"
Q = "phantombuster:webhooks"
envelopes = {
    "real": head(RID, 1762070095031, Q) + REAL + b"}",
    "string-ids": head(RID, 1762070095031, Q) + base() + b"}",
    "killed": head(RID, 1762070095031, "pb:q") + base(exitCode=1, exitMessage="killed") + b"}",
    "spaces": b'{ "id" : "a", "received_at" : 0, "queue" : "q", "payload" : ' + base() + b" }",
    "field-order": b'{"payload":' + base() + b',"queue":"q","received_at":1,"id":"x"}',
    "unicode-queue": head(RID, 1, "pb:\u00e9\u6f22") + base() + b"}",
    "escaped-queue": head(RID, 1, 'q"\\\n') + base() + b"}",
    "negative-at": head(RID, -9223372036854775808, Q) + base() + b"}",
    "at-float": head(RID, 1.5, Q) + base() + b"}",
    "at-string": b'{"id":"a","received_at":"1","queue":"q","payload":' + base() + b"}",
    "at-overflow": head(RID, 99999999999999999999, Q) + base() + b"}",
    "id-number": b'{"id":1,"received_at":1,"queue":"q","payload":' + base() + b"}",
    "missing-id": b'{"received_at":1,"queue":"q","payload":' + base() + b"}",
    "missing-payload": b'{"id":"a","received_at":1,"queue":"q"}',
    "payload-null": b'{"id":"a","received_at":1,"queue":"q","payload":null}',
    "payload-string": b'{"id":"a","received_at":1,"queue":"q","payload":"' + base().replace(b'"', b'\\"') + b'"}',
    "payload-bad-id": head(RID, 1, Q) + base(containerId="a b") + b"}",
    "payload-missing": head(RID, 1, Q) + base(exitMessage=None) + b"}",
    "payload-deep-40": head(RID, 1, Q) + b'{"containerId":1,"agentId":2,"exitCode":0,"exitMessage":"finished","x":' + b"[" * 40 + b"]" * 40 + b"}}",
    "duplicate-id": b'{"id":"a","id":"b","received_at":1,"queue":"q","payload":' + base() + b"}",
    "duplicate-in-payload": head(RID, 1, Q) + b'{"containerId":1,"containerId":2,"agentId":2,"exitCode":0,"exitMessage":"finished"}}',
    "nul-in-id": b'{"id":"a\\u0000b","received_at":1,"queue":"q","payload":' + base() + b"}",
    "truncated": (head(RID, 1, Q) + base())[:90],
    "no-tail": head(RID, 1, Q) + base(),
    "array": b"[" + head(RID, 1, Q) + base() + b"}]",
    "empty": b"",
}


def raw(rid, queue, at, payload):
    rid, queue = rid.encode(), queue.encode()
    return bytes([len(rid), len(queue)]) + struct.pack("<q", at) + rid + queue + payload


# binary seeds for the round-trip half of fuzz_envelope (see its comment)
envelopes.update({
    "rt-real": raw(RID, Q, 1762070095031, REAL),
    "rt-sample": raw(RID[:16], "pb", 1, b""),
    "rt-empty-id-queue": raw("", "", -1, b""),
    "rt-escapes": raw('a"b\\c\x01\x1f\x7f', "q\tq", 0, base()),
    "rt-unicode": raw("\u00e9", "\U0001f680", 2 ** 40, base(agentId="x")),
})


def write(sub, items):
    d = os.path.join(OUT, sub)
    os.makedirs(d, exist_ok=True)
    for name, data in items.items():
        with open(os.path.join(d, name), "wb") as f:
            f.write(data)


write("payload", payloads)
write("envelope", envelopes)
print("corpus: %d payload, %d envelope seeds" % (len(payloads), len(envelopes)))
