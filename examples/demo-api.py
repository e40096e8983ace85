#!/usr/bin/env python3
"""A small example HTTP API for the pfxhttp demo: aliases, a mailbox check and a policy.

POST /aliases   {"key": "..."}            -> {"result": "..."} or {} (not found)
GET  /mailboxes/<address>                 -> text, or 404
POST /policy    {<policy attributes>}     -> {"action": "..."}
Usage: demo-api.py PORT   (listens on 127.0.0.1 only)
"""
import http.server
import json
import sys
import urllib.parse

ALIASES = {"postmaster@example.org": "admin@example.org", "info@example.org": "alice@example.org, bob@example.org"}
MAILBOXES = {"alice@example.org": "/var/mail/alice", "bob@example.org": "/var/mail/bob"}


class Api(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"

    def answer(self, status, body, ctype="application/json"):
        data = body.encode()
        self.send_response(status)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def do_GET(self):
        address = urllib.parse.unquote(self.path.removeprefix("/mailboxes/"))
        if address in MAILBOXES:
            self.answer(200, MAILBOXES[address], "text/plain")
        else:
            self.answer(404, "no such mailbox", "text/plain")

    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/aliases":
            key = body.get("key", "")
            self.answer(200, json.dumps({"result": ALIASES[key]} if key in ALIASES else {}))
        elif self.path == "/policy":
            rcpt = body.get("recipient", "")
            action = "REJECT no mail for this address" if rcpt.startswith("spam") else "DUNNO"
            self.answer(200, json.dumps({"action": action}))
        else:
            self.answer(404, "{}")

    def log_message(self, *args):
        pass


http.server.ThreadingHTTPServer.request_queue_size = 128
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), Api).serve_forever()
