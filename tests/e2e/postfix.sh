#!/usr/bin/env bash
# End-to-end checks of pfxhttp behind a REAL Postfix (Debian's 3.7): a private instance on
# loopback (postfix -c DIR, no systemd, nothing delivered anywhere), spawn(8) services running
# the built pfxhttp as nobody, a small HTTP API on 127.0.0.1, and real Postfix clients: postmap,
# smtpd (via swaks) with socketmap access checks and policy delegation, cleanup's virtual aliases,
# proxymap and tcp_table, failover with host health shared through the state database, a
# jwt_auth token shared by concurrently spawned processes; then the same binary behind systemd-socket-activate(1) in --inetd and
# fd-3 mode. pfxhttp's syslog lines go to a socket of the script's, to count requests per process.
# The instance itself comes from scripts/postfix-instance.sh.
# Run as root. Exit 0 when every check passed, 1 otherwise, 2 on a setup problem.
# Usage: tests/e2e/postfix.sh [path/to/pfxhttp]   (default: target/debug/pfxhttp)
set -uo pipefail
cd "$(dirname "$0")/../.."
BIN=$(readlink -f "${1:-target/debug/pfxhttp}")
SMTP_PORT=${E2E_SMTP_PORT:-2625}
TCP_PORT=${E2E_TCP_PORT:-10141}

PASS=0; FAIL=0
ok()  { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
die() { echo "FATAL: $*" >&2; exit 2; }
expect() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }

[ "$(id -u)" = 0 ] || die "run as root (postfix start and spawn(8) need it)"
[ -x "$BIN" ] || die "no pfxhttp binary at $BIN (cargo build first)"
. scripts/postfix-instance.sh
pfx_install_packages postfix swaks systemd-socket-activate:systemd setpriv:util-linux \
    || die "apt-get install postfix swaks systemd failed"

T=$(mktemp -d /tmp/pfxhttp-e2e.XXXXXX) || die mktemp
chmod 755 "$T"
CONF=$T/etc; Q=$T/spool; MAILLOG=$T/maillog; SYSLOG=$T/syslog
mkdir -p "$T/state"
chown nobody "$T/state"; chmod 700 "$T/state"
install -m 0755 "$BIN" "$T/pfxhttp"
STARTED=0; BG=()
cleanup() {
    set +e
    [ "$STARTED" = 1 ] && pfx_instance_stop "$T"
    [ ${#BG[@]} -gt 0 ] && kill "${BG[@]}" 2>/dev/null
    for _ in $(seq 20); do pgrep -f "$T/pfxhttp" >/dev/null || break; sleep 0.3; done
    pkill -f "$T/pfxhttp"
    [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT

# ---------------------------------------------------------------- syslog
# pfxhttp logs one line per request to syslog; a datagram socket of our own collects them, so
# the checks can count requests and the processes that served them.
python3 - "$T/log.sock" "$SYSLOG" <<'PY2' & BG+=($!)
import os, socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
s.bind(sys.argv[1]); os.chmod(sys.argv[1], 0o666)
with open(sys.argv[2], "ab", buffering=0) as out:
    while True:
        out.write(s.recv(65536).rstrip(b"\n") + b"\n")
PY2
for _ in $(seq 50); do [ -S "$T/log.sock" ] && break; sleep 0.1; done

# ---------------------------------------------------------------- the API
API_PORT=$(pfx_free_port)
cat > "$T/api.py" <<'PY'
import http.server, json, sys
ACCESS = {"blocked@pfx-e2e.test": "REJECT blocked by the HTTP API"}
ALIASES = {"alias@pfx-e2e.test": "target@pfx-e2e.test"}
SENDERS = {"alice@pfx-e2e.test": "alice@pfx-e2e.test", "bob@pfx-e2e.test": "bob@pfx-e2e.test"}
CACHED_ALIASES = {"cachealias@pfx-e2e.test": "cached@pfx-e2e.test"}
TOKENS = []
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_GET(self):
        self.send(200, {"token_requests": len(TOKENS)})
    def send(self, status, out):
        data = json.dumps(out).encode()
        self.send_response(status); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/token":
            TOKENS.append(raw)
            ok = b"username=postfix" in raw and b"password=e2e-secret" in raw
            return self.send(200, {"token": "tok-%d" % len(TOKENS), "expires_in": 3600}) if ok else self.send(401, {})
        if self.path == "/secure":
            if not (self.headers.get("Authorization") or "").startswith("Bearer tok-"):
                return self.send(401, {})
            self.path = "/lookup"
        body = json.loads(raw or b"{}")
        if self.path == "/access":
            out = {"result": ACCESS[body["key"]]} if body.get("key") in ACCESS else {}
        elif self.path == "/senders":
            out = {"result": SENDERS[body["key"]]} if body.get("key") in SENDERS else {}
        elif self.path == "/aliases":
            out = {"result": ALIASES[body["key"]]} if body.get("key") in ALIASES else {}
        elif self.path == "/cached-aliases":
            out = {"result": CACHED_ALIASES[body["key"]]} if body.get("key") in CACHED_ALIASES else {}
        elif self.path == "/lookup":
            out = {"result": body.get("key", "")[::-1]}
        elif self.path == "/policy":
            rcpt = body.get("recipient", "")
            out = {"action": "REJECT 5.7.1 refused by the HTTP policy" if rcpt.startswith("policy-blocked@") else "DUNNO"}
        else:
            out = {}
        data = json.dumps(out).encode()
        self.send_response(200); self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
python3 "$T/api.py" "$API_PORT" & BG+=($!)
pfx_wait_port "$API_PORT" || die "the test API did not start"

A=http://127.0.0.1:$API_PORT
# A second instance of the API, for the response cache: stopped halfway to play an outage.
CACHE_PORT=$(pfx_free_port)
python3 "$T/api.py" "$CACHE_PORT" & CACHE_API=$!; BG+=($CACHE_API)
pfx_wait_port "$CACHE_PORT" || die "the second test API did not start"
C=http://127.0.0.1:$CACHE_PORT
# The SMTP AUTH API, as Nauthilus answers: 200 with Auth-User, 403 for a wrong password. Stopped
# and started again to play an outage. It is also the OpenID provider of XOAUTH2/OAUTHBEARER:
# discovery, and RFC 7662 introspection (client postfix) that knows one active token.
cat > "$T/auth.py" <<'PY'
import base64, http.server, json, sys, urllib.parse
BASE = "http://127.0.0.1:" + sys.argv[1]
CLIENT = "Basic " + base64.b64encode(b"postfix:e2e-Introspect-9b2").decode()
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def answer(self, status, body, headers=()):
        data = json.dumps(body).encode()
        self.send_response(status)
        for k, v in headers: self.send_header(k, v)
        self.send_header("Content-Type", "application/json")
        self.send_header("Content-Length", str(len(data))); self.end_headers(); self.wfile.write(data)
    def do_GET(self):
        if self.path != "/.well-known/openid-configuration": return self.answer(404, {})
        self.answer(200, {"issuer": BASE, "jwks_uri": BASE + "/jwks", "introspection_endpoint": BASE + "/introspect"})
    def do_POST(self):
        raw = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        if self.path == "/introspect":
            if self.headers.get("Authorization") != CLIENT: return self.answer(401, {"error": "invalid_client"})
            token = urllib.parse.parse_qs(raw.decode()).get("token", [""])[0]
            return self.answer(200, {"active": token == "e2e-Token-7c1d", "email": "alice@pfx-e2e.test"})
        body = json.loads(raw or b"{}")
        ok = body.get("username") in ("alice", "alice@pfx-e2e.test") and body.get("password") == "e2e-Pass-5f3a"
        self.answer(200 if ok else 403, None, [("Auth-User", "alice@pfx-e2e.test")] if ok else [])
    def log_message(self, *a): pass
http.server.ThreadingHTTPServer(("127.0.0.1", int(sys.argv[1])), H).serve_forever()
PY
AUTH_PORT=$(pfx_free_port)
python3 "$T/auth.py" "$AUTH_PORT" & AUTH_API=$!; BG+=($AUTH_API)
pfx_wait_port "$AUTH_PORT" || die "the SMTP AUTH API did not start"
cat > "$T/pfxhttp.yml" <<EOF
server:
  state_db: $T/state/pfxhttp.db
  logging: { syslog_socket: $T/log.sock }
  http_client: { timeout: 2s, deadline: 5s }
socket_maps:
  mymap:   { target: $A/lookup,  payload: '{"key":"{{ key }}"}', value_field: result }
  access:  { target: $A/access,  payload: '{"key":"{{ key }}"}', value_field: result }
  virtual: { target: $A/aliases, payload: '{"key":"{{ key }}"}', value_field: result }
  senders: { target: $A/senders, payload: '{"key":"{{ key }}"}', value_field: result }
  down:    { target: http://127.0.0.1:1/x, value_field: result }
  failover:
    target: [ "http://127.0.0.1:1/lookup", "$A/lookup" ]
    payload: '{"key":"{{ key }}"}'
    value_field: result
  secure:
    target: $A/secure
    payload: '{"key":"{{ key }}"}'
    value_field: result
    jwt_auth:
      token_endpoint: $A/token
      credentials: { username: postfix, password: e2e-secret }
      content_type: application/x-www-form-urlencoded
  cached:
    # Postfix also looks up the rewritten address and the domain: "not found" kept for an
    # hour answers those during an outage, the alias itself answers stale for 15 s.
    target: $C/cached-aliases
    payload: '{"key":"{{ key }}"}'
    value_field: result
    cache: { negative_ttl: 1h, stale_if_error: 15s }
  fresh:
    target: $C/lookup
    payload: '{"key":"{{ key }}"}'
    value_field: result
    cache: { ttl: 1h }
dovecot_sasl:
  smtp-auth:
    target: "http://127.0.0.1:$AUTH_PORT/api/v1/auth/json"
    default_local_port: "587"
    failure_delay: 1s
    sasl_oidc_auth:
      configuration_uri: "http://127.0.0.1:$AUTH_PORT/.well-known/openid-configuration"
      client_id: postfix
      client_secret_file: $T/introspect-secret
policy_services:
  e2e:     { target: $A/policy, value_field: action }
  downpol: { target: http://127.0.0.1:1/x, value_field: action, default_action: "DEFER_IF_PERMIT 4.7.1 policy backend down" }
EOF
chmod 644 "$T/pfxhttp.yml"
echo e2e-Introspect-9b2 > "$T/introspect-secret"; chmod 644 "$T/introspect-secret"
"$T/pfxhttp" --config "$T/pfxhttp.yml" check >/dev/null 2>&1 || die "pfxhttp check failed"

# ---------------------------------------------------------------- Postfix
pfx_instance_create "$T" pfx-e2e.test
cat >> "$CONF/main.cf" <<EOF
smtpd_recipient_restrictions = reject_unauth_destination,
    check_recipient_access socketmap:unix:private/pfxhttp-map:access,
    check_policy_service { unix:private/pfxhttp-policy, policy_context=e2e }
e2e_down_checks = reject_unauth_destination,
    check_policy_service { unix:private/pfxhttp-policy, policy_context=downpol }
pfxhttp-policy_time_limit = 3600s
pfxhttp-map_time_limit = 3600s
pfxhttp-auth_time_limit = 3600s
127.0.0.1:${TCP_PORT}_time_limit = 3600s
virtual_alias_maps = socketmap:unix:private/pfxhttp-map:virtual, socketmap:unix:private/pfxhttp-map:cached
proxy_read_maps = proxy:socketmap:unix:private/pfxhttp-map:mymap
EOF
P="$T/pfxhttp --config $T/pfxhttp.yml"
cat >> "$CONF/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$((SMTP_PORT + 1)) inet n - n - - smtpd
  -o smtpd_recipient_restrictions=\$e2e_down_checks
pfxhttp-map    unix -   n       n       -       0       spawn
  user=nobody argv=$P socketmap
pfxhttp-policy unix -   n       n       -       0       spawn
  user=nobody argv=$P policy
127.0.0.1:$TCP_PORT inet n n n - 0 spawn
  user=nobody argv=$P tcp mymap
127.0.0.1:$((SMTP_PORT + 2)) inet n - n - - smtpd
  -o smtpd_sasl_auth_enable=yes
  -o smtpd_sasl_type=dovecot
  -o smtpd_sasl_path=private/pfxhttp-auth
  -o smtpd_recipient_restrictions=permit_sasl_authenticated,reject
  -o smtpd_sender_login_maps=socketmap:unix:private/pfxhttp-map:senders
  -o smtpd_sender_restrictions=reject_sender_login_mismatch
pfxhttp-auth unix -     n       n       -       0       spawn
  user=nobody argv=$P sasl smtp-auth
EOF
STARTED=1
pfx_instance_start "$T" || die "postfix start failed"
pq() { postmap -c "$CONF" -q "$@"; }

. tests/e2e/check-postfix.sh

echo "== logging.target: postlog, into Postfix's maillog_file through postlogd"
sed "s|logging: .*|logging: { target: postlog, postlog_socket: $Q/public/postlog }|" "$T/pfxhttp.yml" > "$T/postlog.yml"
chmod 644 "$T/postlog.yml"
# public/ is open to the postdrop group only: the service runs as user=nobody:postdrop.
printf '19:mymap postlog-check,' | setpriv --reuid=nobody --regid=postdrop --clear-groups \
    "$T/pfxhttp" --config "$T/postlog.yml" socketmap > "$T/postlog.out"
HOST=$(cut -d. -f1 /proc/sys/kernel/hostname)
for _ in $(seq 50); do grep -q "key=postlog-check" "$MAILLOG" && break; sleep 0.1; done
line=$(grep "key=postlog-check" "$MAILLOG")
expect "the lookup's line in maillog_file, as Postfix's own lines look ('$line')" \
    eval 'printf "%s" "$line" | grep -Eq "^[A-Z][a-z]{2} [0-9]{2} [0-9]{2}:[0-9]{2}:[0-9]{2} $HOST pfxhttp\[[0-9]+\]: proto=socketmap map=mymap key=postlog-check .*reply=OK"'
expect "... and the answer came back: 16:OK kcehc-goltsop, ($(cat "$T/postlog.out"))" eval '[ "$(cat "$T/postlog.out")" = "16:OK kcehc-goltsop," ]'
# target auto (the default) without a syslog socket: postlog.
sed "s|logging: .*|logging: { syslog_socket: $T/no-syslog, postlog_socket: $Q/public/postlog }|" "$T/pfxhttp.yml" > "$T/auto.yml"
chmod 644 "$T/auto.yml"
printf '16:mymap auto-check,' | setpriv --reuid=nobody --regid=postdrop --clear-groups \
    "$T/pfxhttp" --config "$T/auto.yml" socketmap > /dev/null
for _ in $(seq 50); do grep -q "key=auto-check" "$MAILLOG" && break; sleep 0.1; done
expect "target auto, no syslog socket: the line lands in maillog_file" grep -Eq " $HOST pfxhttp\[[0-9]+\]: proto=socketmap map=mymap key=auto-check " "$MAILLOG"
SM=socketmap:unix:$Q/private/pfxhttp-map

echo "== postmap through spawn(8)"
out=$(pq hello "$SM:mymap" 2>&1)
expect "postmap -q hello -> olleh (got '$out')" [ "$out" = olleh ]
out=$(pq nobody@x "$SM:access" 2>&1); rc=$?
expect "not found -> exit 1, no output (rc=$rc, '$out')" eval '[ $rc = 1 ] && [ -z "$out" ]'
out=$(pq any "$SM:down" 2>&1); rc=$?
expect "backend down -> query error (temporary), never not found (rc=$rc)" \
    eval '[ $rc != 0 ] && printf "%s" "$out" | grep -q "socketmap server temporary error"'
printf 'many%s\n' $(seq 1 30) | pq - "$SM:mymap" > "$T/many" 2>&1
n=$(grep -c . "$T/many")
expect "postmap -q - : 30 keys answered ($n)" [ "$n" = 30 ]
expect "postmap -q - : every answer is its key's (many7 -> 7ynam)" grep -qx "many7[[:space:]]*7ynam" "$T/many"
wait_log() { for _ in $(seq 50); do [ "$(grep -c "$1" "$SYSLOG" 2>/dev/null)" -ge "$2" ] && return; sleep 0.1; done; }
wait_log "map=mymap key=many" 30
pids=$(grep "map=mymap key=many" "$SYSLOG" | sed -n 's/.*pfxhttp\[\([0-9]*\)\].*/\1/p' | sort -u | wc -l)
lines=$(grep -c "map=mymap key=many" "$SYSLOG")
expect "postmap -q - : one pfxhttp process served all 30 lookups ($pids processes, $lines log lines)" \
    eval '[ "$pids" = 1 ] && [ "$lines" = 30 ]'
echo "== failover and the shared state database"
out=$(pq first "$SM:failover" 2>&1)
expect "first host refused, second answers -> tsrif ('$out')" [ "$out" = tsrif ]
out=$(pq second "$SM:failover" 2>&1)
expect "next process: answered ('$out')" [ "$out" = dnoces ]
wait_log "key=second" 1
first=$(grep "map=failover key=first" "$SYSLOG" | grep -o "attempts=[0-9]*")
second=$(grep "map=failover key=second" "$SYSLOG" | grep -o "attempts=[0-9]*")
expect "the next process skipped the host marked down ($first, then $second)" \
    eval '[ "$first" != attempts=1 ] && [ "$second" = attempts=1 ]'
down=$(setpriv --reuid=nobody --regid=nogroup --clear-groups $P state check 2>&1)
expect "pfxhttp state check lists 127.0.0.1:1 as down" eval 'printf "%s" "$down" | grep -q "127.0.0.1:1"'

echo "== jwt_auth: one token shared by every spawned process"
jobs=()
for i in $(seq 1 8); do pq "tok$i" "$SM:secure" > "$T/secure.$i" 2>&1 & jobs+=($!); done
wait "${jobs[@]}"
answered=$(cat "$T"/secure.* | grep -c "^[0-9]kot$")
tokens=$(python3 -c "import json,urllib.request; print(json.load(urllib.request.urlopen('$A/stats'))['token_requests'])")
expect "8 postmap processes at once: 8 answers, 1 token request ($answered answers, $tokens token requests)" \
    eval '[ "$answered" = 8 ] && [ "$tokens" = 1 ]'
expect "the password and the token never reach a log line" eval '! grep -Eq "e2e-secret|tok-[0-9]" "$SYSLOG" "$MAILLOG"'

out=$(pq hello proxy:socketmap:unix:private/pfxhttp-map:mymap 2>&1)
expect "proxy:socketmap through proxymap -> olleh ('$out')" [ "$out" = olleh ]
out=$(pq hello tcp:127.0.0.1:$TCP_PORT 2>&1)
expect "tcp_table through an inet spawn service -> olleh ('$out')" [ "$out" = olleh ]

echo "== smtpd: socketmap access check and policy delegation"
smtp() { swaks --server 127.0.0.1 --port "$1" --from sender@example.net --to "$2" --quit-after RCPT 2>&1; }
out=$(smtp $SMTP_PORT blocked@pfx-e2e.test)
expect "check_recipient_access socketmap: REJECT from the API" eval 'printf "%s" "$out" | grep -q "554.*blocked by the HTTP API"'
out=$(smtp $SMTP_PORT policy-blocked@pfx-e2e.test)
expect "check_policy_service: REJECT from the API" eval 'printf "%s" "$out" | grep -q "554 5.7.1.*refused by the HTTP policy"'
out=$(smtp $SMTP_PORT someone@pfx-e2e.test)
expect "check_policy_service: DUNNO -> accepted" eval 'printf "%s" "$out" | grep -q "<-  250 2.1.5"'
out=$(smtp $((SMTP_PORT + 1)) someone@pfx-e2e.test)
expect "policy backend down -> a 4xx (default_action), never a 5xx" eval 'printf "%s" "$out" | grep -q "<\*\* 450 4.7.1.*policy backend down"'

echo "== cleanup: virtual_alias_maps"
swaks --server 127.0.0.1 --port $SMTP_PORT --from sender@example.net --to alias@pfx-e2e.test >/dev/null 2>&1
for _ in $(seq 50); do grep -q "to=<target@pfx-e2e.test>" "$MAILLOG" 2>/dev/null && break; sleep 0.2; done
expect "virtual_alias_maps rewrote alias@ to target@ (mail log)" grep -q "to=<target@pfx-e2e.test>, orig_to=<alias@pfx-e2e.test>" "$MAILLOG"

echo "== SMTP AUTH through pfxhttp sasl (smtpd_sasl_type = dovecot)"
AUTH_SMTP=$((SMTP_PORT + 2))
auth() { # auth MECH PASSWORD [swaks options]
    local mech=$1 pw=$2; shift 2
    swaks --server 127.0.0.1 --port $AUTH_SMTP --from alice@pfx-e2e.test --to someone@pfx-e2e.test \
        --auth "$mech" --auth-user alice --auth-password "$pw" "$@" 2>&1
}
out=$(auth PLAIN e2e-Pass-5f3a)
expect "AUTH PLAIN -> 235, mail accepted" eval 'printf "%s" "$out" | grep -q "<-  235 2.7.0" && printf "%s" "$out" | grep -q "<-  250 2.0.0"'
out=$(auth LOGIN e2e-Pass-5f3a)
expect "AUTH LOGIN -> 235, mail accepted" eval 'printf "%s" "$out" | grep -q "<-  235 2.7.0" && printf "%s" "$out" | grep -q "<-  250 2.0.0"'
for _ in $(seq 50); do [ "$(grep -c "sasl_username=alice@pfx-e2e.test" "$MAILLOG")" -ge 2 ] && break; sleep 0.2; done
expect "the mail log names the Auth-User: sasl_method=PLAIN and LOGIN, sasl_username=alice@pfx-e2e.test" \
    eval 'grep -q "sasl_method=PLAIN, sasl_username=alice@pfx-e2e.test" "$MAILLOG" && grep -q "sasl_method=LOGIN, sasl_username=alice@pfx-e2e.test" "$MAILLOG"'
out=$(auth PLAIN e2e-Pass-5f3a --from bob@pfx-e2e.test --quit-after RCPT)
expect "smtpd_sender_login_maps through pfxhttp against the SASL user: bob@ is not alice's -> 553" \
    eval 'printf "%s" "$out" | grep -q "<\*\* 553 5.7.1.*not owned by user alice@pfx-e2e.test"'
started=$(date +%s%N)
out=$(auth PLAIN wrong-password --quit-after AUTH)
took=$(( ($(date +%s%N) - started) / 1000000 ))
expect "wrong password -> 535 after failure_delay (${took} ms)" \
    eval 'printf "%s" "$out" | grep -q "<\*\* 535 5.7.8.*Invalid login or password" && [ $took -ge 1000 ]'
# swaks has no XOAUTH2 or OAUTHBEARER: a scripted SMTP dialogue (EHLO, AUTH with the initial
# response, a mail when accepted) prints the AUTH reply's code, the mechanisms smtpd offered
# and whether the mail was sent.
cat > "$T/bearer.py" <<'PY'
import base64, smtplib, sys
port, mech, user, token = sys.argv[1:5]
if mech == "XOAUTH2": raw = f"user={user}\x01auth=Bearer {token}\x01\x01"
else: raw = f"n,a={user},\x01host=127.0.0.1\x01port={port}\x01auth=Bearer {token}\x01\x01"
s = smtplib.SMTP("127.0.0.1", int(port), timeout=20)
s.ehlo("client.pfx-e2e.test")
code, _ = s.docmd("AUTH", mech + " " + base64.b64encode(raw.encode()).decode())
# Accepted: a mail, so that smtpd logs the session's sasl_method and sasl_username.
sent = ""
if code == 235:
    sent = "sent" if not s.sendmail(user, ["someone@pfx-e2e.test"], "Subject: bearer\r\n\r\ne2e\r\n") else "refused"
print(code, s.esmtp_features.get("auth", "").strip(), sent)
s.quit()
PY
bearer() { timeout 30 python3 "$T/bearer.py" "$AUTH_SMTP" "$@" 2>&1; }
out=$(bearer XOAUTH2 alice@pfx-e2e.test e2e-Token-7c1d)
expect "AUTH XOAUTH2 with an active token (introspection) -> 235, mail sent; smtpd offers XOAUTH2 and OAUTHBEARER ($out)" \
    eval 'printf "%s" "$out" | grep -q "^235 .* sent$" && printf "%s" "$out" | grep -q "XOAUTH2" && printf "%s" "$out" | grep -q "OAUTHBEARER"'
out=$(bearer OAUTHBEARER alice@pfx-e2e.test e2e-Token-7c1d)
expect "AUTH OAUTHBEARER with the active token -> 235, mail sent ($out)" eval 'printf "%s" "$out" | grep -q "^235 .* sent$"'
for _ in $(seq 50); do grep -q "sasl_method=OAUTHBEARER, sasl_username=alice@pfx-e2e.test" "$MAILLOG" && break; sleep 0.2; done
expect "the mail log names the token's user: sasl_method=XOAUTH2 and OAUTHBEARER, sasl_username=alice@pfx-e2e.test" \
    eval 'grep -q "sasl_method=XOAUTH2, sasl_username=alice@pfx-e2e.test" "$MAILLOG" && grep -q "sasl_method=OAUTHBEARER, sasl_username=alice@pfx-e2e.test" "$MAILLOG"'
out=$(bearer XOAUTH2 alice@pfx-e2e.test e2e-Revoked-0000)
expect "AUTH XOAUTH2 with an inactive token -> 535 ($out)" eval 'printf "%s" "$out" | grep -q "^535 "'
kill $AUTH_API; wait $AUTH_API 2>/dev/null
out=$(bearer XOAUTH2 alice@pfx-e2e.test e2e-Token-7c1d)
expect "identity provider stopped -> AUTH XOAUTH2 gets 454, never 535 ($out)" eval 'printf "%s" "$out" | grep -q "^454 "'
out=$(auth PLAIN e2e-Pass-5f3a --quit-after AUTH)
expect "API stopped -> 454 (try again), never 535" \
    eval 'printf "%s" "$out" | grep -q "<\*\* 454 4.7.0" && ! printf "%s" "$out" | grep -q "535"'
python3 "$T/auth.py" "$AUTH_PORT" & AUTH_API=$!; BG+=($AUTH_API)
pfx_wait_port "$AUTH_PORT" || die "the SMTP AUTH API did not start again"
out=$(auth PLAIN e2e-Pass-5f3a --quit-after AUTH)
expect "API back -> the next AUTH gets 235" eval 'printf "%s" "$out" | grep -q "<-  235 2.7.0"'
wait_log "proto=sasl" 9
expect "one log line per AUTH, never the password or the token" \
    eval '[ "$(grep -c "proto=sasl" "$SYSLOG")" -ge 9 ] && ! grep -Eq "e2e-Pass-5f3a|e2e-Token-7c1d|e2e-Introspect-9b2" "$SYSLOG" "$MAILLOG"'
expect "no fatal SASL error in the mail log" eval '! grep -Eq "fatal: no SASL authentication mechanisms|warning: process .*smtpd.* exit status" "$MAILLOG"'

echo "== the response cache: an API outage"
mail() { swaks --server 127.0.0.1 --port $SMTP_PORT --from sender@example.net --to "$1" 2>&1; }
rewritten() { grep -c "to=<cached@pfx-e2e.test>, orig_to=<cachealias@pfx-e2e.test>" "$MAILLOG" 2>/dev/null; }
out=$(pq warm "$SM:fresh" 2>&1)
expect "fresh: first lookup asks the API -> mraw ('$out')" [ "$out" = mraw ]
mail cachealias@pfx-e2e.test >/dev/null
stored=$(date +%s)
for _ in $(seq 50); do [ "$(rewritten)" = 1 ] && break; sleep 0.2; done
expect "stale_if_error map: with the API up, cachealias@ is rewritten to cached@" [ "$(rewritten)" = 1 ]
kill $CACHE_API; wait $CACHE_API 2>/dev/null
out=$(mail cachealias@pfx-e2e.test)
for _ in $(seq 50); do [ "$(rewritten)" = 2 ] && break; sleep 0.2; done
expect "API stopped: the mail is accepted (250 after DATA) and still rewritten (mail log)" \
    eval 'printf "%s" "$out" | grep -q "<-  250 2.0.0" && [ "$(rewritten)" = 2 ]'
expect "... answered stale, with its age, in the log" grep -q "map=cached key=cachealias@pfx-e2e.test .*cache=stale age=" "$SYSLOG"
out=$(pq warm "$SM:fresh" 2>&1)
expect "API stopped: postmap -q answers from a fresh cache row ('$out')" [ "$out" = mraw ]
wait_log "map=fresh key=warm .*cache=hit" 1
expect "... and the log line says cache=hit" grep -q "map=fresh key=warm .*cache=hit" "$SYSLOG"
while [ $(( $(date +%s) - stored )) -le 16 ]; do sleep 0.5; done
out=$(mail cachealias@pfx-e2e.test)
expect "after the stale window: the same mail is deferred with a 4xx, never bounced" \
    eval 'printf "%s" "$out" | grep -q "<\*\* 4[0-9][0-9] " && ! printf "%s" "$out" | grep -q "<\*\* 5[0-9][0-9] "'

echo "== systemd socket activation (Accept=yes), as systemd-socket-activate(1) does it"
# The same binary behind a listening socket that is not Postfix's: a process per connection,
# run as nobody (setpriv execs, so LISTEN_PID stays the pfxhttp process's pid).
AS_NOBODY=(setpriv --reuid=nobody --regid=nogroup --clear-groups)
activate() { # activate PORT [--inetd] -- COMMAND...
    local port=$1; shift
    systemd-socket-activate -l "127.0.0.1:$port" -a "$@" >>"$T/activate.log" 2>&1 & BG+=($!)
    pfx_wait_port "$port"
}
INETD_PORT=$(pfx_free_port); FD3_PORT=$(pfx_free_port); FD3_TCP_PORT=$(pfx_free_port)
activate "$INETD_PORT" --inetd "${AS_NOBODY[@]}" $P socketmap
activate "$FD3_PORT" "${AS_NOBODY[@]}" $P socketmap
activate "$FD3_TCP_PORT" "${AS_NOBODY[@]}" $P tcp mymap
out=$(pq hello socketmap:inet:127.0.0.1:$INETD_PORT:mymap 2>&1)
expect "--inetd (connection on stdin/stdout): postmap -q socketmap:inet -> olleh ('$out')" [ "$out" = olleh ]
printf 'inetd%s\n' $(seq 1 20) | pq - socketmap:inet:127.0.0.1:$INETD_PORT:mymap > "$T/inetd" 2>&1
n=$(grep -c . "$T/inetd")
expect "--inetd: postmap -q - with 20 keys, 20 answers ($n)" eval '[ "$n" = 20 ] && grep -qx "inetd12[[:space:]]*21dteni" "$T/inetd"'
out=$(pq hello socketmap:inet:127.0.0.1:$FD3_PORT:mymap 2>&1)
expect "fd 3 (LISTEN_FDS=1): postmap -q socketmap:inet -> olleh ('$out')" [ "$out" = olleh ]
out=$(pq any socketmap:inet:127.0.0.1:$FD3_PORT:down 2>&1); rc=$?
expect "fd 3: backend down -> socketmap temporary error (rc=$rc)" \
    eval '[ $rc != 0 ] && printf "%s" "$out" | grep -q "socketmap server temporary error"'
out=$(pq hello tcp:127.0.0.1:$FD3_TCP_PORT 2>&1)
expect "fd 3: tcp_table lookup -> olleh ('$out')" [ "$out" = olleh ]
# In fd-3 mode the children's stderr is systemd-socket-activate's: its log must hold only its
# own lines, and every child must have exited 0.
for _ in $(seq 50); do
    [ "$(grep -c "^Spawned" "$T/activate.log")" = "$(grep -c "died with code" "$T/activate.log")" ] && break; sleep 0.1
done
other=$(grep -Ev "^(Listening on|Communication attempt|Connection from|Spawned|Execing|Child [0-9]+ died with code 0$)" "$T/activate.log")
deaths=$(grep -c "died with code 0" "$T/activate.log")
expect "activated pfxhttp processes: $deaths exited 0, nothing else on stderr ('$(printf "%s" "$other" | head -c 200)')" \
    eval '[ -z "$other" ] && [ "$deaths" = 8 ]'

echo "== the mail log"
expect "no unexpected disconnect, input format error or unknown error" \
    eval '! grep -Eq "unexpected disconnect|input format error|unknown error" "$MAILLOG"'

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
