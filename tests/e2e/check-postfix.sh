# `pfxhttp check --postfix` against the end-to-end instance's real Postfix configuration,
# sourced by tests/e2e/postfix.sh (which defines T, CONF, TCP_PORT, expect). The instance itself
# must pass; then each copy of its configuration directory, broken on purpose in one way, must
# give exit 78, name that problem, and nothing else.

# postfix_check DIR: run check --postfix on configuration directory DIR; sets out and rc.
postfix_check() {
    out=$("$T/pfxhttp" check --postfix --postfix-config "$1" 2>&1); rc=$?
}

# broken DESCRIPTION EXPECTED EDIT: copy the instance's configuration to $D, run EDIT (shell code
# that changes $D) and expect exit 78 with one problem whose text holds EXPECTED.
PCN=0
broken() {
    local what=$1 want=$2
    D=$T/pc.$((PCN += 1))
    cp -r "$CONF" "$D"
    eval "$3" || { bad "check --postfix, $what: the edit failed"; return; }
    postfix_check "$D"
    expect "check --postfix, $what -> 78, one problem: \"$want\" (rc=$rc: $(printf "%s" "$out" | head -c 400))" \
        eval '[ $rc = 78 ] && printf "%s" "$out" | grep -qF -- "$want" && printf "%s" "$out" | grep -q "): 1 problem(s)$"'
}

# edit_master PATTERN SED: run SED on the master.cf lines of $D matching PATTERN.
edit_master() { sed -i "/$1/$2" "$D/master.cf"; }

echo "== check --postfix: the instance's own configuration, then one broken part at a time"
postfix_check "$CONF"
expect "check --postfix on the working instance -> 0 ($rc: $(printf "%s" "$out" | head -c 600))" \
    eval '[ $rc = 0 ] && printf "%s" "$out" | grep -q "OK (4 pfxhttp service(s)"'

broken "unpriv -" "master.cf service pfxhttp-map: the unpriv column is \"-\"" \
    'postconf -c "$D" -F "pfxhttp-map/unix/unprivileged=-"'
broken "chroot y" "master.cf service pfxhttp-policy: the chroot column is \"y\"" \
    'postconf -c "$D" -F "pfxhttp-policy/unix/chroot=y"'
broken "user=root" "master.cf service pfxhttp-map: user=root: spawn(8) refuses" \
    'edit_master " socketmap$" s/user=nobody/user=root/'
broken "user= the mail owner" "master.cf service pfxhttp-policy: user=postfix: spawn(8) refuses" \
    'edit_master " policy$" s/user=nobody/user=postfix/'
broken "user= unknown" "user=pfx-no-such-user: no user pfx-no-such-user in /etc/passwd" \
    'edit_master " policy$" s/user=nobody/user=pfx-no-such-user/'
install -m 0600 "$T/pfxhttp.yml" "$T/private.yml"
broken "a configuration the user cannot read" "master.cf service pfxhttp-auth: user nobody cannot use what pfxhttp needs" \
    'edit_master " sasl smtp-auth$" "s|$T/pfxhttp.yml|$T/private.yml|"'
mkdir -p "$T/rootstate"; chmod 700 "$T/rootstate"; touch "$T/rootstate/pfxhttp.db"
sed "s|state_db: .*|state_db: $T/rootstate/pfxhttp.db|" "$T/pfxhttp.yml" > "$T/rootstate.yml"; chmod 644 "$T/rootstate.yml"
broken "a state database the user cannot reach" "the state database $T/rootstate/pfxhttp.db exists, but nobody cannot reach it" \
    'edit_master " sasl smtp-auth$" "s|$T/pfxhttp.yml|$T/rootstate.yml|"'
broken "argv= missing" "argv=$T/nosuch/pfxhttp is not an executable file" \
    'edit_master " policy$" "s|argv=$T/pfxhttp|argv=$T/nosuch/pfxhttp|"'
broken "--config missing" "the configuration $T/missing.yml does not exist" \
    'edit_master " policy$" "s|$T/pfxhttp.yml|$T/missing.yml|"'
broken "time limit unset" "pfxhttp-policy_time_limit is not set, so spawn(8) kills a pfxhttp process after command_time_limit (1000s)" \
    'postconf -c "$D" -X pfxhttp-policy_time_limit'
broken "time limit below max_lifetime" "pfxhttp-map_time_limit = 60s is below max_lifetime (3600s)" \
    'postconf -c "$D" -e "pfxhttp-map_time_limit = 60s"'
broken "socketmap: a map the configuration lacks" "map nosuch of unix:private/pfxhttp-map is not in $T/pfxhttp.yml" \
    'postconf -c "$D" -e "virtual_alias_maps = socketmap:unix:private/pfxhttp-map:nosuch"'
broken "socketmap: no such service" "main.cf virtual_alias_maps: unix:private/pfxhttp-nosuch names no master.cf service" \
    'postconf -c "$D" -e "virtual_alias_maps = socketmap:unix:private/pfxhttp-nosuch:virtual"'
broken "socketmap: a service running pfxhttp policy" "unix:private/pfxhttp-policy runs another pfxhttp command than \`pfxhttp socketmap\`" \
    'postconf -c "$D" -e "virtual_alias_maps = socketmap:unix:private/pfxhttp-policy:virtual"'
broken "tcp: no service on the port" "main.cf virtual_alias_maps: 127.0.0.1:$((TCP_PORT + 7)) names no master.cf service" \
    'postconf -c "$D" -e "virtual_alias_maps = tcp:127.0.0.1:$((TCP_PORT + 7))"'
broken "tcp: a map the configuration lacks" "$T/pfxhttp.yml has no socket_maps entry nosuchmap" \
    'edit_master " tcp mymap$" "s/ tcp mymap$/ tcp nosuchmap/"'
broken "check_policy_service: no such service" "main.cf smtpd_recipient_restrictions: unix:private/nosuch-policy names no master.cf service" \
    'postconf -c "$D" -e "smtpd_recipient_restrictions = reject_unauth_destination, check_policy_service unix:private/nosuch-policy"'
broken "check_policy_service: a policy_context the configuration lacks" "policy_context=nosuch: $T/pfxhttp.yml has no policy_services entry nosuch" \
    'postconf -c "$D" -e "e2e_down_checks = check_policy_service { unix:private/pfxhttp-policy, policy_context=nosuch }"'
broken "check_policy_service: no context, two policy services" "runs \`pfxhttp policy\` without a service name and $T/pfxhttp.yml has 2 policy services" \
    'postconf -c "$D" -e "e2e_down_checks = check_policy_service unix:private/pfxhttp-policy"'
broken "smtpd_sasl_path at a socketmap service" "smtpd_sasl_path = private/pfxhttp-map runs another pfxhttp command than \`pfxhttp sasl\`" \
    'postconf -c "$D" -P "127.0.0.1:$((SMTP_PORT + 2))/inet/smtpd_sasl_path=private/pfxhttp-map"'
broken "sasl: a dovecot_sasl service the configuration lacks" "dovecot_sasl service nosuch is not configured" \
    'edit_master " sasl smtp-auth$" "s/ sasl smtp-auth$/ sasl nosuch/"'
