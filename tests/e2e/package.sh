#!/usr/bin/env bash
# End-to-end checks of the packages scripts/package builds, on this (Debian) machine, as root.
# The .rpm cannot be installed here: its file list, modes, flags and scriptlets are checked.
# The .deb is checked with lintian, then installed with apt-get, and used as an admin would:
# `pfxhttp check` on the packaged configuration, a private Postfix instance on loopback with
# exactly the master.cf lines postinst prints (the packaged binary, user pfxhttp,
# /etc/pfxhttp/pfxhttp.yml edited to ask the packaged example API), and the whole real-Postfix
# suite (tests/e2e/postfix.sh) against /usr/sbin/pfxhttp. Then an upgrade to the same package
# with a higher version keeps the edited configuration and the state database, remove keeps
# them, and purge leaves nothing but the user pfxhttp (Debian keeps system users).
# The machine is left as found: the package is purged, and the user removed if this run made it.
# Run as root. Exit 0 when every check passed, 1 otherwise, 2 on a setup problem.
# Usage: tests/e2e/package.sh        (runs scripts/package)
#   PACKAGE_E2E_SUITE=0 skips the full suite (reported as SKIP); E2E_SMTP_PORT/E2E_TCP_PORT as
#   for tests/e2e/postfix.sh (this script uses E2E_SMTP_PORT + 10 for its own smtpd).
set -uo pipefail
cd "$(dirname "$0")/../.."
SMTP_PORT=$(( ${E2E_SMTP_PORT:-2625} + 10 ))

PASS=0; FAIL=0
ok()  { echo "PASS: $*"; PASS=$((PASS + 1)); }
bad() { echo "FAIL: $*"; FAIL=$((FAIL + 1)); }
die() { echo "FATAL: $*" >&2; exit 2; }
expect() { local d=$1; shift; if "$@"; then ok "$d"; else bad "$d"; fi; }
# mode_owner PATH: e.g. "640 root:pfxhttp"
mode_owner() { stat -c '%a %U:%G' "$1" 2>&1; }

[ "$(id -u)" = 0 ] || die "run as root (dpkg and postfix need it)"
. scripts/postfix-instance.sh
pfx_install_packages postfix swaks lintian rpm dpkg-shlibdeps:dpkg-dev setpriv:util-linux || die "apt-get install failed"
# The checks install, purge and remove what is named pfxhttp: refuse to run over an installation
# that is not this script's (a source installation uses the same /etc/pfxhttp).
dpkg -s pfxhttp >/dev/null 2>&1 && die "the package pfxhttp is installed: purge it first"
for d in /etc/pfxhttp /var/lib/pfxhttp; do [ -e "$d" ] && die "$d exists: this machine has a pfxhttp installation"; done
MADE_USER=1
getent passwd pfxhttp >/dev/null && MADE_USER=0

T=$(mktemp -d /tmp/pfxhttp-pkg.XXXXXX) || die mktemp
chmod 755 "$T"
STARTED=0; BG=()
cleanup() {
    set +e
    [ "$STARTED" = 1 ] && pfx_instance_stop "$T"
    [ ${#BG[@]} -gt 0 ] && kill "${BG[@]}" 2>/dev/null
    dpkg -s pfxhttp >/dev/null 2>&1 && dpkg --purge pfxhttp >/dev/null 2>&1
    # Neither existed when the run began (checked above): whatever a failed purge left is ours.
    rm -rf /etc/pfxhttp /var/lib/pfxhttp
    if [ "$MADE_USER" = 1 ] && getent passwd pfxhttp >/dev/null; then
        userdel pfxhttp
        getent group pfxhttp >/dev/null && groupdel pfxhttp
    fi
    [ "${KEEP:-0}" = 1 ] && echo "kept $T" || rm -rf "$T"
}
trap cleanup EXIT

echo "== scripts/package"
started=$(date +%s)
scripts/package > "$T/package.out" 2> "$T/package.err" || { cat "$T/package.err"; die "scripts/package failed"; }
echo "scripts/package took $(( $(date +%s) - started )) s"
DEB=$(grep '\.deb$' "$T/package.out" | tail -n 1)
RPM=$(grep '\.rpm$' "$T/package.out" | tail -n 1)
expect "scripts/package prints the two packages' paths as its last lines" \
    eval '[ "$(tail -n 2 "$T/package.out")" = "$DEB"$'"'\n'"'"$RPM" ] && [ -f "$DEB" ] && [ -f "$RPM" ]'
[ -f "$DEB" ] && [ -f "$RPM" ] || die "no packages"
VERSION=$(dpkg-deb -f "$DEB" Version)

echo "== the .deb, unpacked: dependencies, files, modes, maintainer scripts"
depends=$(dpkg-deb -f "$DEB" Depends)
expect "Depends: libc6 and adduser only ('$depends')" \
    eval '[ "$(printf "%s" "$depends" | tr -d " " | tr , "\n" | sed "s/(.*//" | sort | tr "\n" " ")" = "adduser libc6 " ]'
dpkg-deb -c "$DEB" | awk '{ sub(/^\./, "", $6); print $1, $2, $6 }' > "$T/deb.list"
want_file() { # want_file LIST PERMS OWNER PATH
    grep -qxF -- "$2 $3 $4" "$1" || { echo "  $4: wanted $2 $3, got: $(grep -- " $4$" "$1" || echo missing)"; return 1; }
}
deb_files_ok() {
    local r=0 d=/usr/share/doc/pfxhttp
    want_file "$T/deb.list" -rwxr-xr-x 0/0 /usr/sbin/pfxhttp || r=1
    want_file "$T/deb.list" -rw-r----- 0/0 /etc/pfxhttp/pfxhttp.yml || r=1
    for f in /usr/share/man/man8/pfxhttp.8.gz /usr/share/man/man5/pfxhttp.yml.5.gz \
        /usr/lib/systemd/system/pfxhttp-map.socket /usr/lib/systemd/system/pfxhttp-map@.service /usr/lib/systemd/system/pfxhttp-stats.service /usr/lib/systemd/system/pfxhttp-stats.timer \
        $d/README.md $d/copyright $d/changelog.Debian.gz $d/master.cf.snippet \
        $d/examples/pfxhttp.yml $d/examples/demo-api.py $d/examples/systemd/pfxhttp-map@.service \
        /usr/share/lintian/overrides/pfxhttp; do
        want_file "$T/deb.list" -rw-r--r-- 0/0 "$f" || r=1
    done
    return $r
}
expect "the .deb holds the binary, the man pages (gzipped), the conffile (0640), units, docs, examples" deb_files_ok
expect "nothing under /usr/local, /var or in a systemd .wants directory (units not enabled)" \
    eval '! grep -E " /usr/local| /var| .*\.wants/" "$T/deb.list"'
dpkg-deb -e "$DEB" "$T/control"
expect "conffiles: /etc/pfxhttp/pfxhttp.yml" grep -qx /etc/pfxhttp/pfxhttp.yml "$T/control/conffiles"
dpkg-deb -x "$DEB" "$T/root"
expect "the packaged units run /usr/sbin/pfxhttp" \
    grep -qx "ExecStart=/usr/sbin/pfxhttp --config /etc/pfxhttp/pfxhttp.yml socketmap" "$T/root/usr/lib/systemd/system/pfxhttp-map@.service"
expect "the packaged master.cf.snippet and example units run /usr/sbin/pfxhttp, never /usr/local" \
    eval 'grep -q "argv=/usr/sbin/pfxhttp " "$T/root/usr/share/doc/pfxhttp/master.cf.snippet" && ! grep -rq /usr/local "$T/root/usr/share/doc/pfxhttp/master.cf.snippet" "$T/root/usr/share/doc/pfxhttp/examples/systemd" "$T/root/usr/lib"'
# The master.cf lines postinst prints: lines of the packaged snippet, and the same in the rpm's %post.
printed_master_cf() { sed -n '/^pfxhttp-\|^  user=pfxhttp /p' "$1"; }
printed_master_cf "$T/control/postinst" > "$T/master.cf.postinst"
in_snippet() { # every line of $1 is a line of the packaged snippet
    [ -s "$1" ] && while IFS= read -r line; do grep -qxF -- "$line" "$T/root/usr/share/doc/pfxhttp/master.cf.snippet" || return 1; done < "$1"
}
expect "the master.cf lines postinst prints ($(wc -l < "$T/master.cf.postinst")) are lines of the packaged master.cf.snippet" \
    in_snippet "$T/master.cf.postinst"
expect "postinst and postrm never write Postfix's files" \
    eval '! grep -En "postconf -e|postconf -M|>>? */etc/postfix|sed -i" "$T/control/postinst" "$T/control/postrm"'
expect "the packaged configuration is the commented one, group and mode said in it" \
    eval 'cmp -s "$T/root/etc/pfxhttp/pfxhttp.yml" scripts/package.d/pfxhttp.yml && grep -q "^# .*pfxhttp check --user pfxhttp" scripts/package.d/pfxhttp.yml'

echo "== lintian"
lintian --fail-on none --tag-display-limit 0 "$DEB" > "$T/lintian.out" 2>&1
sed 's/^/  /' "$T/lintian.out"
expect "lintian: no error ($(grep -c '^E:' "$T/lintian.out") E:, $(grep -c '^W:' "$T/lintian.out") W:)" \
    eval '! grep -q "^E:" "$T/lintian.out"'

echo "== the .rpm (not installable here): files, modes, flags, scriptlets"
rpm -qp --qf '[%{FILEMODES:perms} %{FILEUSERNAME}:%{FILEGROUPNAME} %{FILEFLAGS:fflags} %{FILENAMES}\n]' "$RPM" > "$T/rpm.list" 2>&1
rpm_files_ok() {
    local r=0 d=/usr/share/doc/pfxhttp
    grep -qx -- "-rwxr-xr-x root:root  /usr/sbin/pfxhttp" "$T/rpm.list" || { echo "  /usr/sbin/pfxhttp"; r=1; }
    grep -qx -- "-rw-r----- root:pfxhttp cn /etc/pfxhttp/pfxhttp.yml" "$T/rpm.list" || { echo "  the config"; r=1; }
    for f in /usr/lib/systemd/system/pfxhttp-map.socket /usr/lib/systemd/system/pfxhttp-map@.service /usr/lib/systemd/system/pfxhttp-stats.service /usr/lib/systemd/system/pfxhttp-stats.timer; do
        grep -qx -- "-rw-r--r-- root:root  $f" "$T/rpm.list" || { echo "  $f"; r=1; }
    done
    for f in /usr/share/man/man8/pfxhttp.8.gz /usr/share/man/man5/pfxhttp.yml.5.gz $d/README.md $d/copyright \
        $d/master.cf.snippet $d/examples/pfxhttp.yml $d/examples/demo-api.py $d/examples/systemd/pfxhttp-map@.service; do
        grep -qx -- "-rw-r--r-- root:root d $f" "$T/rpm.list" || { echo "  $f"; r=1; }
    done
    return $r
}
sed 's/^/  /' "$T/rpm.list"
expect "rpm -qpl: the layout of the .deb; the config %config(noreplace), 0640, group pfxhttp" rpm_files_ok
expect "rpm -qpl: the same paths as the .deb (but the .deb's changelog and lintian override)" \
    eval 'diff <(grep -v "changelog.Debian.gz\|lintian" "$T/deb.list" | awk "\$3 !~ /\/\$/ {print \$3}" | sort) <(rpm -qpl "$RPM" | sort)'
rpm -qp --scripts "$RPM" > "$T/rpm.scripts" 2>&1
sed 's/^/  /' "$T/rpm.scripts"
expect "%pre creates the system user and group pfxhttp" \
    eval 'sed -n "/^preinstall/,/^postinstall/p" "$T/rpm.scripts" | grep -q "useradd -r -g pfxhttp" && grep -q "groupadd -r pfxhttp" "$T/rpm.scripts"'
expect "%post runs pfxhttp state init --user pfxhttp" \
    eval 'sed -n "/^postinstall/,\$p" "$T/rpm.scripts" | grep -q "/usr/sbin/pfxhttp state init --user pfxhttp --config /etc/pfxhttp/pfxhttp.yml"'
printed_master_cf "$T/rpm.scripts" > "$T/master.cf.rpm"
expect "%post prints the same master.cf lines as the .deb's postinst" cmp -s "$T/master.cf.rpm" "$T/master.cf.postinst"
# rpm's find-requires lists the C runtime's parts one by one (libc, libm, libgcc_s: Rust's std
# links them), and /usr/bin/env for the example API's #! line.
rpm -qpR "$RPM" | grep -Ev "^(shadow-utils|/bin/sh|/usr/bin/env|libc\.so\.6|libm\.so\.6|libgcc_s\.so\.1|rtld|rpmlib|config)\b" > "$T/rpm.other"
expect "rpm requires shadow-utils and the C runtime, nothing else ('$(tr '\n' ' ' < "$T/rpm.other")')" \
    eval 'rpm -qpR "$RPM" | grep -q "^shadow-utils" && rpm -qpR "$RPM" | grep -q "^libc.so.6" && ! [ -s "$T/rpm.other" ]'

echo "== apt-get install ./pfxhttp_${VERSION}_*.deb"
for f in main.cf master.cf; do [ -f /etc/postfix/$f ] && md5sum /etc/postfix/$f; done > "$T/postfix.before"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$DEB" < /dev/null > "$T/install.log" 2>&1
rc=$?
sed -i 's/\r$//' "$T/install.log"   # dpkg's output reaches apt through a terminal
expect "apt-get install of the .deb (rc=$rc)" [ $rc = 0 ]
[ $rc = 0 ] || { cat "$T/install.log"; die "cannot go on without the package installed"; }
echo "== installed: user, files, modes, the state database"
expect "postinst printed the master.cf lines it has, and changed nothing in /etc/postfix" \
    eval 'printed_master_cf "$T/install.log" | cmp -s - "$T/master.cf.postinst" && for f in main.cf master.cf; do [ -f /etc/postfix/$f ] && md5sum /etc/postfix/$f; done | cmp -s - "$T/postfix.before"'
sed -n '/pfxhttp is installed/,/^ 4\./p' "$T/install.log" | sed 's/^/  | /'
user=$(getent passwd pfxhttp)
expect "system user pfxhttp, group pfxhttp, no login, home /var/lib/pfxhttp ('$user')" \
    eval '[ "$(id -gn pfxhttp)" = pfxhttp ] && [ "$(id -u pfxhttp)" -lt 1000 ] && printf "%s" "$user" | grep -q ":/var/lib/pfxhttp:/usr/sbin/nologin$"'
expect "/usr/sbin/pfxhttp 755 root:root ($(mode_owner /usr/sbin/pfxhttp))" [ "$(mode_owner /usr/sbin/pfxhttp)" = "755 root:root" ]
expect "/etc/pfxhttp/pfxhttp.yml 640 root:pfxhttp ($(mode_owner /etc/pfxhttp/pfxhttp.yml))" \
    [ "$(mode_owner /etc/pfxhttp/pfxhttp.yml)" = "640 root:pfxhttp" ]
expect "/var/lib/pfxhttp 700 pfxhttp:pfxhttp ($(mode_owner /var/lib/pfxhttp))" [ "$(mode_owner /var/lib/pfxhttp)" = "700 pfxhttp:pfxhttp" ]
DB=/var/lib/pfxhttp/pfxhttp.db
expect "$DB 600 pfxhttp:pfxhttp ($(mode_owner $DB))" [ "$(mode_owner $DB)" = "600 pfxhttp:pfxhttp" ]
expect "pfxhttp state check as the user pfxhttp: usable" \
    eval 'setpriv --reuid=pfxhttp --regid=pfxhttp --clear-groups /usr/sbin/pfxhttp state check >/dev/null'
expect "man pfxhttp and man pfxhttp.yml find the packaged pages" \
    eval 'man -w pfxhttp | grep -qx /usr/share/man/man8/pfxhttp.8.gz && man -w 5 pfxhttp.yml | grep -qx /usr/share/man/man5/pfxhttp.yml.5.gz'
expect "the systemd units are installed and not enabled" \
    eval '[ -f /usr/lib/systemd/system/pfxhttp-map.socket ] && ! find /etc/systemd /usr/lib/systemd -path "*.wants/pfxhttp*" | grep -q .'
out=$(pfxhttp check 2>&1); rc=$?
expect "pfxhttp check (finds /etc/pfxhttp/pfxhttp.yml): OK, map demo, policy service policy (rc=$rc)" \
    eval '[ $rc = 0 ] && printf "%s" "$out" | grep -q "^/etc/pfxhttp/pfxhttp.yml: OK (1 socket map(s): demo; 1 policy service(s): policy"'
out=$(pfxhttp check --user pfxhttp 2>&1); rc=$?
expect "pfxhttp check --user pfxhttp: the user reads the config and the state database (rc=$rc)" \
    eval '[ $rc = 0 ] && ! printf "%s" "$out" | grep -qi "warning: server.state_db"'

echo "== a real Postfix with the printed master.cf lines, the packaged config asking the packaged example API"
API_PORT=$(pfx_free_port)
python3 /usr/share/doc/pfxhttp/examples/demo-api.py "$API_PORT" & BG+=($!)
pfx_wait_port "$API_PORT" || die "the example API did not start"
# The admin's edit: their API, and cached answers (so that a lookup leaves a row in the state
# database for the upgrade to keep).
sed -i -e "s#127.0.0.1:8080#127.0.0.1:$API_PORT#" \
    -e 's#^\(    value_field: result .*\)$#\1\n    cache: { ttl: 1h }#' /etc/pfxhttp/pfxhttp.yml
md5sum /etc/pfxhttp/pfxhttp.yml > "$T/conf.edited"
expect "the edited config passes pfxhttp check --user pfxhttp" eval 'pfxhttp check --user pfxhttp >/dev/null 2>&1'
pfx_instance_create "$T/pf" pfx-pkg.test
Q=$T/pf/spool
cat "$T/master.cf.postinst" >> "$T/pf/etc/master.cf"
echo "127.0.0.1:$SMTP_PORT inet n - n - - smtpd" >> "$T/pf/etc/master.cf"
# The main.cf lines postinst prints, with the "..." of existing restrictions filled in.
sed -n 's/^      \(virtual_alias_maps\|smtpd_recipient_restrictions\|pfxhttp-map_time_limit\|pfxhttp-policy_time_limit\) = /\1 = /p' "$T/install.log" \
    | sed 's/= \.\.\., /= reject_unauth_destination, /' >> "$T/pf/etc/main.cf"
expect "postinst printed the four main.cf lines" [ "$(grep -cE '^(virtual_alias_maps|smtpd_recipient_restrictions|pfxhttp-map_time_limit|pfxhttp-policy_time_limit) = ' "$T/pf/etc/main.cf")" = 4 ]
out=$(pfxhttp check --postfix --postfix-config "$T/pf/etc" 2>&1); rc=$?
printf '%s\n' "$out" | sed 's/^/  /'
expect "pfxhttp check --postfix finds nothing wrong with the printed lines (rc=$rc)" [ $rc = 0 ]
STARTED=1
pfx_instance_start "$T/pf" || die "postfix start failed"
out=$(postmap -c "$T/pf/etc" -q postmaster@example.org "socketmap:unix:$Q/private/pfxhttp-map:demo" 2>&1)
expect "postmap -q through spawn(8), user=pfxhttp, /usr/sbin/pfxhttp: postmaster@ -> admin@example.org ('$out')" \
    [ "$out" = admin@example.org ]
smtp() { swaks --server 127.0.0.1 --port $SMTP_PORT --from sender@example.net --to "$1" --quit-after RCPT 2>&1; }
out=$(smtp spam@pfx-pkg.test)
expect "smtpd check_policy_service through pfxhttp-policy: spam@ -> 554 from the API" \
    eval 'printf "%s" "$out" | grep -q "<\*\* 554 .*no mail for this address"'
out=$(smtp someone@pfx-pkg.test)
expect "smtpd check_policy_service: someone@ -> DUNNO -> 250" eval 'printf "%s" "$out" | grep -q "<-  250 2.1.5"'
pfx_instance_stop "$T/pf"; STARTED=0
rows() { python3 -c 'import sqlite3,sys; print(sqlite3.connect("file:"+sys.argv[1]+"?mode=ro", uri=True).execute("select count(*) from response_cache").fetchone()[0])' "$DB" 2>&1; }
ROWS=$(rows)
expect "the lookup left a cached answer in $DB ($ROWS rows)" eval '[ "$ROWS" -ge 1 ] 2>/dev/null'
expect "... and the database is still the user pfxhttp's ($(mode_owner $DB))" [ "$(mode_owner $DB)" = "600 pfxhttp:pfxhttp" ]

echo "== the whole real-Postfix suite against /usr/sbin/pfxhttp"
if [ "${PACKAGE_E2E_SUITE:-1}" = 0 ]; then
    echo "SKIP: tests/e2e/postfix.sh /usr/sbin/pfxhttp (PACKAGE_E2E_SUITE=0)"
else
    tests/e2e/postfix.sh /usr/sbin/pfxhttp > "$T/suite.log" 2>&1; rc=$?
    grep -E "^(FAIL|FATAL)" "$T/suite.log" | sed 's/^/  /'
    expect "tests/e2e/postfix.sh /usr/sbin/pfxhttp: $(tail -n 1 "$T/suite.log") (rc=$rc)" [ $rc = 0 ]
fi

echo "== upgrade to a higher version: the edited config and the state database are kept"
UP_VERSION=$VERSION+upgradetest1
# cargo-deb deletes every other version's .deb from target/debian: scripts/package's is put back.
cp "$DEB" "$T/built.deb"
cargo deb --no-build --quiet --deb-version "$UP_VERSION" -o "$T/up.deb" > "$T/up.build" 2>&1 \
    || { cat "$T/up.build"; die "cargo deb --deb-version failed"; }
cp "$T/built.deb" "$DEB"
DEBIAN_FRONTEND=noninteractive apt-get install -y -q "$T/up.deb" < /dev/null > "$T/upgrade.log" 2>&1; rc=$?
sed -i 's/\r$//' "$T/upgrade.log"
expect "apt-get install of $UP_VERSION over $VERSION (rc=$rc)" \
    eval '[ $rc = 0 ] && [ "$(dpkg-query -W -f "\${Version}" pfxhttp)" = "$UP_VERSION" ]'
expect "the edited /etc/pfxhttp/pfxhttp.yml is kept, no .dpkg-* file beside it" \
    eval 'md5sum -c --quiet "$T/conf.edited" && ! ls /etc/pfxhttp | grep -q dpkg'
expect "... still 640 root:pfxhttp ($(mode_owner /etc/pfxhttp/pfxhttp.yml))" [ "$(mode_owner /etc/pfxhttp/pfxhttp.yml)" = "640 root:pfxhttp" ]
expect "the state database keeps its rows ($(rows) of $ROWS) and owner ($(mode_owner $DB))" \
    eval '[ "$(rows)" = "$ROWS" ] && [ "$(mode_owner $DB)" = "600 pfxhttp:pfxhttp" ]'
expect "an upgrade prints no installation instructions again" eval '! grep -q "pfxhttp is installed" "$T/upgrade.log"'

echo "== remove: the configuration and the state database stay"
dpkg -r pfxhttp > "$T/remove.log" 2>&1; rc=$?
expect "dpkg -r pfxhttp (rc=$rc); status config-files" \
    eval '[ $rc = 0 ] && [ "$(dpkg-query -W -f "\${db:Status-Status}" pfxhttp)" = config-files ]'
expect "binary, man pages, units and docs are gone" \
    eval '! [ -e /usr/sbin/pfxhttp ] && ! [ -e /usr/share/man/man8/pfxhttp.8.gz ] && ! [ -e /usr/lib/systemd/system/pfxhttp-map.socket ] && ! [ -e /usr/share/doc/pfxhttp ]'
expect "the edited config and the state database ($(rows) rows) are still there" \
    eval 'md5sum -c --quiet "$T/conf.edited" && [ "$(rows)" = "$ROWS" ]'

echo "== purge: nothing left but the user"
dpkg --purge pfxhttp > "$T/purge.log" 2>&1; rc=$?
expect "dpkg --purge pfxhttp (rc=$rc); dpkg knows the package no more" \
    eval '[ $rc = 0 ] && ! dpkg -L pfxhttp >/dev/null 2>&1 && ! dpkg -s pfxhttp >/dev/null 2>&1'
expect "/etc/pfxhttp and /var/lib/pfxhttp are gone" eval '! [ -e /etc/pfxhttp ] && ! [ -e /var/lib/pfxhttp ]'
left=$(awk '$1 !~ /^d/ {print $3}' "$T/deb.list" | while read -r f; do [ -e "$f" ] && echo "$f"; done)
expect "no file of the package is left ('$left')" [ -z "$left" ]
expect "the user and group pfxhttp are kept (Debian does not remove system users)" \
    eval 'getent passwd pfxhttp >/dev/null && getent group pfxhttp >/dev/null'

echo "$PASS passed, $FAIL failed"
[ "$FAIL" = 0 ]
