"""Send an exact number of chat requests over keep-alive connections (for instruction
counts: wrk runs for a duration, this sends a fixed count).

    python3 gateway_client.py URL KEY CA_PEM REQUESTS CONNECTIONS [stream]

Exits non-zero unless every response is 200 with the expected body and every
connection was reused (one TCP/TLS connection per CONNECTIONS)."""

import http.client
import ssl
import sys
import threading
import urllib.parse

url, key, ca, total, conns = sys.argv[1:6]
stream = len(sys.argv) > 6 and sys.argv[6] == "stream"
total, conns = int(total), int(conns)
u = urllib.parse.urlsplit(url)
body = (
    '{"model":"bench","messages":[{"role":"user","content":"Say hello."}],"max_tokens":16'
    + (',"stream":true' if stream else "")
    + "}"
).encode()
headers = {"Content-Type": "application/json", "Authorization": "Bearer " + key}
errors = []


def worker(n):
    if u.scheme == "https":
        ctx = ssl.create_default_context(cafile=ca)
        c = http.client.HTTPSConnection(u.hostname, u.port, context=ctx, timeout=60)
    else:
        c = http.client.HTTPConnection(u.hostname, u.port, timeout=60)
    c.connect()
    sock = c.sock
    for _ in range(n):
        c.request("POST", u.path, body=body, headers=headers)
        r = c.getresponse()
        data = r.read()
        if r.status != 200 or (b"[DONE]" if stream else b"Hello") not in data:
            errors.append(f"{r.status}: {data[:200]!r}")
            return
        if c.sock is not sock:
            errors.append("connection was not kept alive")
            return
    c.close()


per = [total // conns + (1 if i < total % conns else 0) for i in range(conns)]
ts = [threading.Thread(target=worker, args=(n,)) for n in per]
for t in ts:
    t.start()
for t in ts:
    t.join()
if errors:
    sys.stderr.write(f"{len(errors)} failures, first: {errors[0]}\n")
    sys.exit(1)
