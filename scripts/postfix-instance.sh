# A private Postfix instance for trying pfxhttp out, sourced by scripts/demo and
# tests/e2e/postfix.sh (bash, as root).
#
# `postfix -c DIR` runs Debian's Postfix with its own main.cf, master.cf and queue, beside (and
# without touching) the system's instance, and without systemd. Everything listens on loopback
# only and nothing can leave the machine: every non-local transport is `error`, local mail is
# discarded. The spawn(8) services that run pfxhttp are added by the caller.

# pfx_install_packages PKG...: install the Debian packages among PKG whose command is missing.
# Each argument is `command[:package]`.
pfx_install_packages() {
    local want=() item cmd pkg
    for item in "$@"; do
        cmd=${item%%:*}; pkg=${item#*:}
        command -v "$cmd" >/dev/null 2>&1 || want+=("$pkg")
    done
    [ ${#want[@]} -eq 0 ] && return 0
    export DEBIAN_FRONTEND=noninteractive
    # Debian's postfix package asks what kind of mail system this is; "No configuration" leaves
    # the system's own instance unconfigured and stopped.
    echo "postfix postfix/main_mailer_type select No configuration" | debconf-set-selections
    apt-get update -qq >/dev/null 2>&1
    apt-get install -y -qq -o DPkg::Lock::Timeout=300 "${want[@]}" >/dev/null 2>&1
}

# pfx_instance_create DIR HOSTNAME: write DIR/etc/main.cf and DIR/etc/master.cf with the
# services every instance needs; the caller appends its own lines to both. The mail log is
# DIR/maillog.
pfx_instance_create() {
    local dir=$1 host=$2
    mkdir -p "$dir/etc" "$dir/spool" "$dir/data"
    chown postfix "$dir/data"
    cat > "$dir/etc/main.cf" <<EOF
compatibility_level = 3.6
queue_directory = $dir/spool
data_directory = $dir/data
mail_owner = postfix
setgid_group = postdrop
myhostname = $host
mydomain = $host
myorigin = \$myhostname
mydestination = \$myhostname
inet_interfaces = loopback-only
inet_protocols = ipv4
mynetworks = 127.0.0.0/8
relayhost =
default_transport = error:outbound delivery disabled in this instance
relay_transport = error:outbound delivery disabled in this instance
local_transport = discard:local delivery disabled in this instance
local_recipient_maps =
alias_maps =
alias_database =
biff = no
maillog_file = $dir/maillog
maillog_file_prefixes = $dir
EOF
    cat > "$dir/etc/master.cf" <<'EOF'
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
EOF
}

# pfx_instance_start DIR: check the configuration and start the instance; on failure print the
# mail log and return non-zero.
pfx_instance_start() {
    local dir=$1
    if ! postfix -c "$dir/etc" check >/dev/null 2>&1 || ! postfix -c "$dir/etc" start >/dev/null 2>&1; then
        cat "$dir/maillog" 2>/dev/null
        return 1
    fi
    # master(8) creates the service sockets before it forks the daemons; wait for one of them.
    for _ in $(seq 50); do [ -S "$dir/spool/private/proxymap" ] && break; sleep 0.1; done
}

# pfx_instance_stop DIR: stop the instance (quietly; nothing to do when it is not running).
pfx_instance_stop() {
    postfix -c "$1/etc" stop >/dev/null 2>&1 || true
}

# pfx_free_port: an unused TCP port on 127.0.0.1.
pfx_free_port() {
    python3 -c 'import socket; s=socket.socket(); s.bind(("127.0.0.1",0)); print(s.getsockname()[1])'
}

# pfx_wait_port PORT: wait (up to 5 s) until something listens on 127.0.0.1:PORT.
pfx_wait_port() {
    for _ in $(seq 50); do
        python3 -c "import socket; socket.create_connection(('127.0.0.1',$1),0.1)" 2>/dev/null && return 0
        sleep 0.1
    done
    return 1
}
