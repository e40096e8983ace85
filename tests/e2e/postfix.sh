#!/usr/bin/env bash
# End-to-end checks of pfxhttp behind a REAL Postfix (Debian's 3.7): a private instance on
# loopback (postfix -c DIR, no systemd, nothing delivered anywhere), spawn(8) services running
# the built pfxhttp as nobody, a small HTTP API on 127.0.0.1, and real Postfix clients: postmap,
# smtpd (via swaks) with socketmap access checks and policy delegation, and tcp_table.
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
need=()
command -v postfix >/dev/null 2>&1 || need+=(postfix)
command -v swaks >/dev/null 2>&1 || need+=(swaks)
if [ ${#need[@]} -gt 0 ]; then
    export DEBIAN_FRONTEND=noninteractive
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${need[@]}" >/dev/null 2>&1 || die "apt-get install ${need[*]} failed"
fi

T=$(mktemp -d /tmp/pfxhttp-e2e.XXXXXX) || die mktemp
chmod 755 "$T"
CONF=$T/etc; Q=$T/spool; MAILLOG=$T/maillog
mkdir -p "$CONF" "$Q" "$T/data" "$T/state"
chown postfix "$T/data"; chown nobody "$T/state"; chmod 700 "$T/state"
install -m 0755 "$BIN" "$T/pfxhttp"
STARTED=0; API=
cleanup() {
    set +e
    [ "$STARTED" = 1 ] && postfix -c "$CONF" stop >/dev/null 2>&1
    [ -n "$API" ] && kill "$API" 2>/dev/null
    for _ in $(seq 20); do pgrep -f "$T/pfxhttp" >/dev/null || break; sleep 0.3; done
    pkill -f "$T/pfxhttp"
    [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT

# ---------------------------------------------------------------- the API
API_PORT=$(python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])')
cat > "$T/api.py" <<'PY'
import http.server, json, sys
ACCESS = {"blocked@pfx-e2e.test": "REJECT blocked by the HTTP API"}
ALIASES = {"alias@pfx-e2e.test": "target@pfx-e2e.test"}
class H(http.server.BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    def do_POST(self):
        body = json.loads(self.rfile.read(int(self.headers.get("Content-Length") or 0)) or b"{}")
        if self.path == "/access":
            out = {"result": ACCESS[body["key"]]} if body.get("key") in ACCESS else {}
        elif self.path == "/aliases":
            out = {"result": ALIASES[body["key"]]} if body.get("key") in ALIASES else {}
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
python3 "$T/api.py" "$API_PORT" & API=$!
for _ in $(seq 50); do python3 -c "import socket; socket.create_connection(('127.0.0.1',$API_PORT),0.1)" 2>/dev/null && break; sleep 0.1; done

A=http://127.0.0.1:$API_PORT
cat > "$T/pfxhttp.yml" <<EOF
server:
  state_db: $T/state/pfxhttp.db
  logging: { syslog_socket: $T/no-syslog }
  http_client: { timeout: 2s, deadline: 5s }
socket_maps:
  mymap:   { target: $A/lookup,  payload: '{"key":"{{ key }}"}', value_field: result }
  access:  { target: $A/access,  payload: '{"key":"{{ key }}"}', value_field: result }
  virtual: { target: $A/aliases, payload: '{"key":"{{ key }}"}', value_field: result }
  down:    { target: http://127.0.0.1:1/x, value_field: result }
policy_services:
  e2e:     { target: $A/policy, value_field: action }
  downpol: { target: http://127.0.0.1:1/x, value_field: action, default_action: "DEFER_IF_PERMIT 4.7.1 policy backend down" }
EOF
chmod 644 "$T/pfxhttp.yml"
"$T/pfxhttp" --config "$T/pfxhttp.yml" check >/dev/null 2>&1 || die "pfxhttp check failed"

# ---------------------------------------------------------------- Postfix
cat > "$CONF/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $Q
data_directory = $T/data
mail_owner = postfix
setgid_group = postdrop
myhostname = pfx-e2e.test
mydomain = pfx-e2e.test
myorigin = \$myhostname
mydestination = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
default_transport = error:outbound delivery disabled in e2e test
relay_transport = error:outbound delivery disabled in e2e test
local_transport = discard:e2e test
local_recipient_maps =
alias_maps =
alias_database =
biff = no
maillog_file = $MAILLOG
maillog_file_prefixes = $T
smtpd_recipient_restrictions = reject_unauth_destination,
    check_recipient_access socketmap:unix:private/pfxhttp-map:access,
    check_policy_service { unix:private/pfxhttp-policy, policy_context=e2e }
e2e_down_checks = reject_unauth_destination,
    check_policy_service { unix:private/pfxhttp-policy, policy_context=downpol }
pfxhttp-policy_time_limit = 3600s
virtual_alias_maps = socketmap:unix:private/pfxhttp-map:virtual
proxy_read_maps = proxy:socketmap:unix:private/pfxhttp-map:mymap
EOF
P="$T/pfxhttp --config $T/pfxhttp.yml"
cat > "$CONF/master.cf" <<EOF
127.0.0.1:$SMTP_PORT inet n - n - - smtpd
127.0.0.1:$((SMTP_PORT + 1)) inet n - n - - smtpd
  -o smtpd_recipient_restrictions=\$e2e_down_checks
pickup    unix  n       -       n       60      1       pickup
cleanup   unix  n       -       n       -       0       cleanup
qmgr      unix  n       -       n       300     1       qmgr
rewrite   unix  -       -       n       -       -       trivial-rewrite
bounce    unix  -       -       n       -       0       bounce
defer     unix  -       -       n       -       0       bounce
trace     unix  -       -       n       -       0       bounce
verify    unix  -       -       n       -       1       verify
flush     unix  n       -       n       1000?   0       flush
proxymap  unix  -       -       n       -       -       proxymap
proxywrite unix -       -       n       -       1       proxymap
showq     unix  n       -       n       -       -       showq
error     unix  -       -       n       -       -       error
retry     unix  -       -       n       -       -       error
discard   unix  -       -       n       -       -       discard
anvil     unix  -       -       n       -       1       anvil
scache    unix  -       -       n       -       1       scache
postlog   unix-dgram n  -       n       -       1       postlogd
pfxhttp-map    unix -   n       n       -       0       spawn
  user=nobody argv=$P socketmap
pfxhttp-policy unix -   n       n       -       0       spawn
  user=nobody argv=$P policy
127.0.0.1:$TCP_PORT inet n n n - 0 spawn
  user=nobody argv=$P tcp mymap
EOF
postfix -c "$CONF" check >/dev/null 2>&1 || { cat "$MAILLOG" 2>/dev/null; die "postfix check failed"; }
postfix -c "$CONF" start >/dev/null 2>&1 || { cat "$MAILLOG" 2>/dev/null; die "postfix start failed"; }
STARTED=1
sleep 0.5
pq() { postmap -c "$CONF" -q "$@"; }
SM=socketmap:unix:$Q/private/pfxhttp-map

echo "== postmap through spawn(8)"
out=$(pq hello "$SM:mymap" 2>&1)
expect "postmap -q hello -> olleh (got '$out')" [ "$out" = olleh ]
out=$(pq nobody@x "$SM:access" 2>&1); rc=$?
expect "not found -> exit 1, no output (rc=$rc, '$out')" eval '[ $rc = 1 ] && [ -z "$out" ]'
out=$(pq any "$SM:down" 2>&1); rc=$?
expect "backend down -> query error (temporary), never not found (rc=$rc)" \
    eval '[ $rc != 0 ] && printf "%s" "$out" | grep -q "socketmap server temporary error"'
printf 'key%s\n' $(seq 1 30) | pq - "$SM:mymap" > "$T/many" 2>&1
n=$(grep -c . "$T/many")
expect "postmap -q - : 30 keys answered over one connection ($n)" [ "$n" = 30 ]
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

echo "== the mail log"
expect "no unexpected disconnect, input format error or unknown error" \
    eval '! grep -Eq "unexpected disconnect|input format error|unknown error" "$MAILLOG"'

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
