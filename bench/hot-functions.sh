# bench/run --hot-functions (sourced by bench/run once nginx serves $http_port and $https_port):
# runs a release build (with its symbols) of pfxhttp under callgrind through what serving processes do
# (start and EOF; the first lookup over HTTP and over HTTPS, the latter both writing and reading
# the CA bundle's index; cached answers; a hundred lookups on one connection; a policy request;
# the metrics' write at exit) and writes the functions of the binary that ran, grouped by the run
# that first ran them (see below), to scripts/hot-functions.txt (for scripts/link-hot-first).

command -v valgrind >/dev/null || pfx_install_packages valgrind ||
    { echo "bench/run: valgrind is needed (apt-get install valgrind)" >&2; exit 2; }
echo "== a release build that keeps its symbols"
# The release profile itself (another profile would name the symbols otherwise); the linker
# command keeps the symbols the profile strips.
PFXHTTP_KEEP_SYMBOLS=1 CARGO_TARGET_DIR=$repo/target/hot-functions cargo build --release --locked --quiet
bin=$repo/target/hot-functions/release/pfxhttp

cat > "$T/hot.yml" <<YAML
server:
  logging: { syslog_socket: $T/hot/log.sock }
  state_db: $T/hot/state.db
socket_maps:
  http: { target: 'http://127.0.0.1:$http_port/lookup', payload: '{"key":"{{ key }}"}', value_field: result }
  https: { target: 'https://127.0.0.1:$https_port/lookup', payload: '{"key":"{{ key }}"}', value_field: result }
  hit: { target: 'http://127.0.0.1:$http_port/lookup', payload: '{"key":"{{ key }}"}', value_field: result, cache: { ttl: 1h } }
policy_services:
  policy: { target: 'http://127.0.0.1:$http_port/lookup', payload: '{"key":"{{ recipient }}"}', value_field: result }
YAML
mkdir -p "$T/hot"
# A syslog socket that takes the log lines, so that sending them is among what runs.
python3 -c 'import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM); s.bind(sys.argv[1]); s.settimeout(600)
while True: s.recv(65536)' "$T/hot/log.sock" & sink=$!
trap 'kill $sink 2>/dev/null; cleanup' EXIT
wait_socket() { for _ in $(seq 1 50); do [ -S "$1" ] && return; sleep 0.1; done; return 1; }
wait_socket "$T/hot/log.sock" || { echo "bench/run: the syslog sink did not start" >&2; exit 1; }
netstring() { printf '%d:%s,' "${#1}" "$1"; }
lookups() { for i in $(seq 1 "$2"); do netstring "$1 user$i@example.org"; done; }
run() {
    local name=$1; shift
    echo "== callgrind: $name"
    SSL_CERT_FILE=$T/bundle.crt valgrind --tool=callgrind --demangle=no --callgrind-out-file="$T/hot/$name.cg" \
        "$bin" --config "$T/hot.yml" "$@" > "$T/hot/$name.out" 2> "$T/hot/$name.err" ||
        { cat "$T/hot/$name.err" >&2; exit 1; }
}
run idle socketmap < /dev/null
run http socketmap < <(lookups http 1)
run https-first socketmap < <(lookups https 1)
run https socketmap < <(lookups https 1)
run hit socketmap < <(lookups hit 1; lookups hit 1)
run warm socketmap < <(lookups http 100)
run policy policy policy < <(printf 'request=smtpd_access_policy\nrecipient=user@example.org\n\n')
grep -q 'OK mailbox@example.org' "$T/hot/https.out" || { echo "bench/run: no HTTPS answer: $(cat "$T/hot/https.out")" >&2; exit 1; }

python3 - "$bin" "$T"/hot/{idle,http,https-first,https,hit,warm,policy}.cg > "$T/hot/symbols" <<'PY'
import os, re, sys
binary, runs = os.path.realpath(sys.argv[1]), sys.argv[2:]
seen = set()
# By the first run that used them (what every start runs first, then what a lookup over HTTP
# adds, and so on), and by name within each run's share, which keeps a crate's and a module's
# functions together, and the list the same from one generation to the next.
for run in runs:
    new = []
    objects, functions, current = {}, {}, None
    for line in open(run, errors="replace"):
        m = re.match(r"^(c?)ob=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                objects[m.group(2)] = m.group(3).strip()
            if not m.group(1):
                current = objects.get(m.group(2))
                current = current and os.path.realpath(current)
            continue
        m = re.match(r"^(c?)fn=\((\d+)\)(?: (.*))?$", line)
        if m:
            if m.group(3):
                functions[m.group(2)] = m.group(3).strip()
            name = functions.get(m.group(2), "").split("'")[0]
            if not m.group(1) and current == binary and name.startswith("_") and name not in seen:
                seen.add(name)
                new.append(name)
    if new:
        print("\n".join(sorted(new)))
PY
found=$(wc -l < "$T/hot/symbols")
[ "$found" -ge 500 ] || { echo "bench/run: only $found functions of $bin found in the profiles; list not written" >&2; exit 1; }
cp "$T/hot/symbols" scripts/hot-functions.txt
# Cargo does not see the list change: the next release build relinks only when told to.
touch src/main.rs
echo "scripts/hot-functions.txt: $(wc -l < scripts/hot-functions.txt) functions"
