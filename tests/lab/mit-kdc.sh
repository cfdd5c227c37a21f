#!/usr/bin/env bash
# Real MIT krb5 KDC lab: records the Kerberos traffic of real MIT clients (kinit, kvno)
# talking to real MIT KDCs (db2 and LDAP backends), one pcap per case.
#
#   tests/lab/mit-kdc.sh record OUTDIR
#
# writes OUTDIR/<case>.pcap and OUTDIR/CHECKS.txt: one PASS/FAIL line per verified fact,
# derived from the clients' KRB5_TRACE output, their exit codes and messages, and the
# KDCs' own logs -- never from the pcaps -- and exits non-zero if any check failed.
# Needs root (network namespaces, port 88); installs missing Debian packages itself.
#
# Two network namespaces joined by a veth pair, with loopback-range addresses
# (route_localnet) that exist only inside them, so nothing reaches the host's network:
#
#   kcdmit-c  the client (kinit, kvno)   127.88.0.10 on kcdmc0   <- tcpdump records here
#   kcdmit-k  the servers, on kcdmk0:
#     127.88.0.1:88  MIT KDC, db2 backend                                    (most cases)
#     127.88.0.2:88  a "KDC" that binds UDP and TCP 88 and never answers     (g_* cases)
#     127.88.0.3:88  MIT KDC, same db2 database, kdc_max_dgram_reply_size = 300 (error 52)
#     127.88.0.4:88  MIT KDC, LDAP backend (slapd on ldapi://), krbAllowedToDelegateTo
#     127.88.0.5:88  MIT KDC, same db2 database, its clock 10 min behind (libfaketime),
#                    so the client and the capture run 10 min ahead of it  (e_* cases)
#
# Environment: KCDMIT_CASES=REGEX records only the cases whose name matches;
#              KCDMIT_KEEP=1 keeps the work directory (traces, client output, KDC logs).
set -u
set -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NSC=kcdmit-c            # client namespace
NSK=kcdmit-k            # server namespace
IFC=kcdmc0
IFK=kcdmk0
NET=127.88.0
CLIENT=$NET.10
KDC=$NET.1              # db2
DEAD=$NET.2             # never answers
SMALL=$NET.3            # db2, 300-byte UDP replies
LKDC=$NET.4             # LDAP
SKDC=$NET.5             # db2, clock 10 min behind
REALM=LAB.TEST
BASEDN=dc=lab,dc=test
LDAP_ADMIN=cn=admin,$BASEDN
LDAP_PW=ldapsecret
MASTER_PW=masterkey
ALICE_PW=AlicePass1
SVC_PW=SvcPass1
KDC_SKEW='-10m'         # libfaketime offset of the skewed KDC's clock
PY=/usr/bin/python3
PACKAGES=(krb5-kdc krb5-admin-server krb5-user krb5-kdc-ldap slapd ldap-utils
          tcpdump libfaketime nftables iproute2)

usage() { echo "usage: $0 record OUTDIR" >&2; exit 2; }

W=
OUT=
CHECKS=
CAPTURE_PID=
LDAPI=
NCHECK=0
NFAIL=0
NS_MADE=0

cleanup() {
    local rc=$?
    set +e
    trap - EXIT INT TERM
    if [ -n "${CAPTURE_PID:-}" ] && kill -0 "$CAPTURE_PID" 2>/dev/null; then
        kill -INT "$CAPTURE_PID" 2>/dev/null; wait "$CAPTURE_PID" 2>/dev/null
    fi
    local pf
    if [ -n "$W" ]; then
        for pf in "$W"/run/*.pid; do [ -e "$pf" ] && daemon_stop "$pf"; done
    fi
    if [ $NS_MADE = 1 ]; then netns_down "$NSC"; netns_down "$NSK"; fi
    if [ -n "$W" ] && [ -d "$W" ]; then
        if [ "${KCDMIT_KEEP:-0}" = 1 ]; then echo "lab: work directory kept: $W" >&2; else rm -rf "$W"; fi
    fi
    exit $rc
}

# ---------------------------------------------------------------------------------------
# network: client and server namespaces, a veth "wire" between them

make_network() {
    local ns
    netns_up "$NSC"; NS_MADE=1
    netns_up "$NSK"
    ip link add "$IFC" netns "$NSC" type veth peer name "$IFK" netns "$NSK" || lab_die "veth failed"
    for ns in "$NSC" "$NSK"; do
        # 127.0.0.0/8 is local to lo by default; keep only 127.0.0.1 there so that
        # 127.88.0.0/24 can live on the veth (route_localnet lets it be routed)
        ip -n "$ns" route del table local 127.0.0.0/8 dev lo 2>/dev/null || true
        ip netns exec "$ns" sysctl -q -w net.ipv4.conf.all.route_localnet=1 >/dev/null
    done
    ip netns exec "$NSC" sysctl -q -w "net.ipv4.conf.$IFC.route_localnet=1" >/dev/null
    ip netns exec "$NSK" sysctl -q -w "net.ipv4.conf.$IFK.route_localnet=1" >/dev/null
    ip -n "$NSC" addr add "$CLIENT/24" dev "$IFC"
    local a
    for a in "$KDC" "$DEAD" "$SMALL" "$LKDC" "$SKDC"; do ip -n "$NSK" addr add "$a/24" dev "$IFK"; done
    ip netns exec "$NSC" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
    ip netns exec "$NSK" sysctl -q -w net.ipv6.conf.all.disable_ipv6=1 >/dev/null 2>&1 || true
    ip -n "$NSC" link set "$IFC" up
    ip -n "$NSK" link set "$IFK" up
}

# ---------------------------------------------------------------------------------------
# configuration files

write_server_confs() {
    cat >"$W/krb5-server.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
EOF
    echo "*/admin@$REALM *" >"$W/kadm5.acl"
    local db2="        database_name = $W/db2/principal
        key_stash_file = $W/db2/stash"
    kdc_conf db2 "$KDC" "" "$db2" ""
    kdc_conf small "$SMALL" "    kdc_max_dgram_reply_size = 300" "$db2" ""
    kdc_conf skew "$SKDC" "" "$db2" ""
    kdc_conf ldap "$LKDC" "" "        database_module = ldapconf
        key_stash_file = $W/ldapkdc/stash" "[dbmodules]
    ldapconf = {
        db_library = kldap
        ldap_kerberos_container_dn = cn=krbcontainer,$BASEDN
        ldap_kdc_dn = $LDAP_ADMIN
        ldap_kadmind_dn = $LDAP_ADMIN
        ldap_service_password_file = $W/ldapkdc/service.keyfile
        ldap_servers = $LDAPI
        ldap_conns_per_server = 2
    }"
}

# kdc_conf NAME ADDRESS KDCDEFAULTS-LINES REALM-DB-LINES EXTRA-SECTIONS
kdc_conf() {
    cat >"$W/kdc-$1.conf" <<EOF
[kdcdefaults]
    kdc_listen = $2:88
    kdc_tcp_listen = $2:88
$3
[realms]
    $REALM = {
$4
        acl_file = $W/kadm5.acl
        max_life = 10h 0m 0s
        max_renewable_life = 7d 0h 0m 0s
        default_principal_flags = +preauth
    }
[logging]
    kdc = FILE:$W/log/kdc-$1.log
    admin_server = FILE:$W/log/kadmind-$1.log
    default = FILE:$W/log/krb5-$1.log
$5
EOF
}

# client_conf NAME "KDC..." [LIBDEFAULTS-LINES] : $W/c-NAME.conf for the clients
client_conf() {
    local name=$1 kdcs=$2 extra=${3:-} k list=
    for k in $kdcs; do list="$list        kdc = $k
"; done
    cat >"$W/c-$name.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
    noaddresses = true
$extra
[realms]
    $REALM = {
$list    }
[domain_realm]
    .lab.test = $REALM
    lab.test = $REALM
EOF
}

write_client_confs() {
    client_conf main "$KDC"
    client_conf skew "$SKDC"
    client_conf skew_notimesync "$SKDC" "    kdc_timesync = 0"
    client_conf tcponly "$KDC" "    udp_preference_limit = 1"
    client_conf small "$SMALL" "    udp_preference_limit = 4000"
    client_conf failover "$DEAD $KDC"
    client_conf dead "$DEAD"
    client_conf ldap "$LKDC"
}

# ---------------------------------------------------------------------------------------
# databases, KDCs, slapd, the silent "KDC"

srv() {  # srv PROFILE CMD... : an admin tool against one KDC profile
    local prof=$1; shift
    env KRB5_CONFIG="$W/krb5-server.conf" KRB5_KDC_PROFILE="$W/kdc-$prof.conf" "$@"
}

kadm() {  # kadm PROFILE QUERY
    srv "$1" kadmin.local -q "$2" >>"$W/log/kadmin-local.log" 2>&1 \
        || lab_die "kadmin.local ($1): $2 failed (see $W/log/kadmin-local.log)"
}

# Flags given on addprinc replace default_principal_flags, hence +requires_preauth.
add_principals() {  # add_principals PROFILE
    local p=$1 pr
    kadm "$p" "addprinc -pw $ALICE_PW alice"
    kadm "$p" "addprinc -randkey HTTP/exchange.lab.test"
    kadm "$p" "addprinc -randkey HTTP/other.lab.test"
    kadm "$p" "addprinc -pw $SVC_PW +requires_preauth +ok_to_auth_as_delegate HTTP/svc_awseg"
    kadm "$p" "addprinc -pw $SVC_PW +requires_preauth +ok_to_auth_as_delegate svc_awseg"
    kadm "$p" "addprinc -pw $SVC_PW +requires_preauth -ok_to_auth_as_delegate HTTP/svc_nopt"
    kadm "$p" "addprinc -pw $SVC_PW -requires_preauth +ok_to_auth_as_delegate HTTP/svc_nopa"
    # kadmin.local reports errors but still exits 0: check the result
    srv "$p" kadmin.local -q listprincs >"$W/log/princs-$p.txt" 2>&1
    for pr in alice HTTP/exchange.lab.test HTTP/other.lab.test HTTP/svc_awseg svc_awseg \
              HTTP/svc_nopt HTTP/svc_nopa; do
        grep -qx "$pr@$REALM" "$W/log/princs-$p.txt" || lab_die "principal $pr missing in the $p database"
    done
    srv "$p" kadmin.local -q "getprinc HTTP/svc_awseg" 2>&1 | grep -q 'REQUIRES_PRE_AUTH.*OK_TO_AUTH_AS_DELEGATE' \
        || lab_die "HTTP/svc_awseg flags wrong in the $p database"
}

setup_db2() {
    mkdir -p "$W/db2"
    srv db2 kdb5_util create -s -r "$REALM" -P "$MASTER_PW" >"$W/log/kdb5_util.log" 2>&1 \
        || { cat "$W/log/kdb5_util.log" >&2; lab_die "kdb5_util create failed"; }
    add_principals db2
}

ldap() {  # ldap TOOL ARGS... : an OpenLDAP client tool bound as the directory admin
    local tool=$1; shift
    "$tool" -x -H "$LDAPI" -D "$LDAP_ADMIN" -w "$LDAP_PW" "$@"
}

setup_ldap() {
    mkdir -p "$W/ldap/db" "$W/ldapkdc"
    zcat /usr/share/doc/krb5-kdc-ldap/kerberos.schema.gz >"$W/ldap/kerberos.schema" \
        || lab_die "kerberos.schema missing (package krb5-kdc-ldap)"
    cat >"$W/ldap/slapd.conf" <<EOF
include /etc/ldap/schema/core.schema
include /etc/ldap/schema/cosine.schema
include $W/ldap/kerberos.schema
pidfile $W/ldap/slapd.pid
argsfile $W/ldap/slapd.args
modulepath /usr/lib/ldap
moduleload back_mdb
database mdb
maxsize 67108864
suffix "$BASEDN"
rootdn "$LDAP_ADMIN"
rootpw $LDAP_PW
directory $W/ldap/db
index objectClass eq
index krbPrincipalName eq,pres,sub
EOF
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: lab\no: lab\n' "$BASEDN" >"$W/ldap/base.ldif"
    slapadd -f "$W/ldap/slapd.conf" -l "$W/ldap/base.ldif" >"$W/log/slapadd.log" 2>&1 \
        || { cat "$W/log/slapadd.log" >&2; lab_die "slapadd failed"; }
    # slapd -d keeps it in the foreground (no fork), so the pid file holds the daemon
    daemon_start "$NSK" "$W/run/slapd.pid" "$W/log/slapd.out" \
        slapd -d 0 -h "$LDAPI" -f "$W/ldap/slapd.conf"
    local i
    for i in $(seq 1 100); do
        ldap ldapsearch -b "$BASEDN" -s base dn >/dev/null 2>&1 && break
        sleep 0.1
    done
    ldap ldapsearch -b "$BASEDN" -s base dn >/dev/null 2>&1 || { cat "$W/log/slapd.out" >&2; lab_die "slapd did not start"; }
    # the KDC's bind password, in the format kdb5_ldap_util stashsrvpw writes
    printf '%s#{HEX}%s\n' "$LDAP_ADMIN" "$(printf %s "$LDAP_PW" | od -An -tx1 | tr -d ' \n')" \
        >"$W/ldapkdc/service.keyfile"
    srv ldap kdb5_ldap_util -D "$LDAP_ADMIN" -w "$LDAP_PW" -H "$LDAPI" create -subtrees "$BASEDN" \
        -r "$REALM" -s -P "$MASTER_PW" >"$W/log/kdb5_ldap_util.log" 2>&1 \
        || { cat "$W/log/kdb5_ldap_util.log" >&2; lab_die "kdb5_ldap_util create failed"; }
    add_principals ldap
    # constrained delegation (the MIT equivalent of msDS-AllowedToDelegateTo)
    local pr dn
    for pr in HTTP/svc_awseg HTTP/svc_nopt; do
        dn=$(ldap ldapsearch -LLL -o ldif-wrap=no -b "cn=krbcontainer,$BASEDN" \
            "(krbPrincipalName=$pr@$REALM)" dn | sed -n 's/^dn: //p')
        [ -n "$dn" ] || lab_die "no LDAP entry for $pr"
        printf 'dn: %s\nchangetype: modify\nadd: krbAllowedToDelegateTo\nkrbAllowedToDelegateTo: HTTP/exchange.lab.test@%s\n' \
            "$dn" "$REALM" | ldap ldapmodify >>"$W/log/ldapmodify.log" 2>&1 \
            || lab_die "ldapmodify krbAllowedToDelegateTo on $dn failed"
    done
    # alice's UPN as an alias, so that the enterprise name alice@lab.test resolves
    dn=$(ldap ldapsearch -LLL -o ldif-wrap=no -b "cn=krbcontainer,$BASEDN" \
        "(krbPrincipalName=alice@$REALM)" dn | sed -n 's/^dn: //p')
    [ -n "$dn" ] || lab_die "no LDAP entry for alice"
    printf 'dn: %s\nchangetype: modify\nadd: krbPrincipalName\nkrbPrincipalName: alice@lab.test@%s\n-\nadd: krbCanonicalName\nkrbCanonicalName: alice@%s\n' \
        "$dn" "$REALM" "$REALM" | ldap ldapmodify >>"$W/log/ldapmodify.log" 2>&1 \
        || lab_die "ldapmodify (alias alice@lab.test) on $dn failed"
}

# wait_addr ADDRESS : until UDP and TCP ADDRESS:88 are bound in the server namespace
# (lib.sh's wait_port matches port 88 on any address; here four servers share the port)
wait_addr() {
    local i
    for i in $(seq 1 100); do
        if ip netns exec "$NSK" ss -Hlnu "src $1 and sport = :88" | grep -q . &&
           ip netns exec "$NSK" ss -Hlnt "src $1 and sport = :88" | grep -q .; then
            return 0
        fi
        sleep 0.1
    done
    return 1
}

start_kdc() {  # start_kdc PROFILE ADDRESS [ENV=VALUE...]
    local prof=$1 addr=$2; shift 2
    daemon_start "$NSK" "$W/run/kdc-$prof.pid" "$W/log/krb5kdc-$prof.out" \
        env KRB5_CONFIG="$W/krb5-server.conf" KRB5_KDC_PROFILE="$W/kdc-$prof.conf" "$@" \
        krb5kdc -n -r "$REALM"
    wait_addr "$addr" || { cat "$W/log/krb5kdc-$prof.out" "$W/log/kdc-$prof.log" >&2; lab_die "KDC $prof did not start"; }
}

start_silent_kdc() {  # binds UDP and TCP ADDRESS:88, accepts, reads, never answers
    cat >"$W/silent-kdc.py" <<'EOF'
import select, socket, sys
addr = sys.argv[1]
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.bind((addr, 88))
t = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
t.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
t.bind((addr, 88))
t.listen(16)
conns = []
while True:
    r, _, _ = select.select([u, t] + conns, [], [])
    for s in r:
        if s is u:
            u.recvfrom(65535)
        elif s is t:
            conns.append(t.accept()[0])
        elif not s.recv(65535):
            conns.remove(s)
            s.close()
EOF
    daemon_start "$NSK" "$W/run/silent.pid" "$W/log/silent.out" "$PY" "$W/silent-kdc.py" "$DEAD"
    wait_addr "$DEAD" || { cat "$W/log/silent.out" >&2; lab_die "silent KDC did not start"; }
}

# ---------------------------------------------------------------------------------------
# running clients, recording, checking

CASE=
CASE_T0=
declare -A RC
declare -A KLOG_OFF

# prepare CASE : a new case (client steps before `rec` are not recorded)
prepare() {
    CASE=$1
    RC=()
    rm -f "$W/cc/$CASE"
    echo "lab: case $CASE" >&2
    local k
    for k in db2 small ldap skew; do KLOG_OFF[$k]=$(wc -l <"$W/log/kdc-$k.log"); done
}

rec() {  # start recording the current case
    capture_start "$NSC" "$IFC" "$OUT/$CASE.pcap" "port 88"
    CASE_T0=$(date +%s.%N)
}

unrec() {
    capture_stop
    CAPTURE_PID=
    # tcpdump drops root and leaves its file to the tcpdump user
    chown "$(id -u):$(id -g)" "$OUT/$CASE.pcap" 2>/dev/null || true
}

# client STEP CONF CMD... : an MIT client in the client namespace, stdin passed through;
# trace in $W/trace/CASE.STEP, output in $W/out/CASE.STEP, exit code in RC[STEP]
client() {
    local step=$1 conf=$2; shift 2
    local tr="$W/trace/$CASE.$step"
    rm -f "$tr"
    ip netns exec "$NSC" env KRB5_CONFIG="$W/c-$conf.conf" KRB5CCNAME="FILE:$W/cc/$CASE" \
        KRB5_TRACE="$tr" "$@" >"$W/out/$CASE.$step" 2>&1
    RC[$step]=$?
    return 0
}

# pre STEP CONF CMD... : a client step that must succeed (credentials a case starts from)
pre() {
    client "$@"
    [ "${RC[$1]}" = 0 ] || { cat "$W/out/$CASE.$1" >&2; lab_die "$CASE: preparation step $1 failed"; }
}

record() {  # record PASS|FAIL TEXT
    echo "$1 $CASE: $2" >>"$CHECKS"
    NCHECK=$((NCHECK + 1))
    [ "$1" = PASS ] || { NFAIL=$((NFAIL + 1)); echo "lab: FAIL $CASE: $2" >&2; }
}

check() {  # check TEXT CMD... : PASS if CMD succeeds
    local text=$1; shift
    if "$@" >/dev/null 2>&1; then record PASS "$text"; else record FAIL "$text"; fi
}

rc_is() { [ "${RC[$1]:-x}" = "$2" ]; }
rc_fail() { [ -n "${RC[$1]:-}" ] && [ "${RC[$1]}" != 0 ]; }
tr_has() { grep -q -E -- "$2" "$W/trace/$CASE.$1"; }    # tr_has STEP REGEX
out_has() { grep -q -E -- "$2" "$W/out/$CASE.$1"; }       # client's own message
# tr_seq STEP REGEX... : trace lines match the REGEXes in this order
tr_seq() {
    local f="$W/trace/$CASE.$1"; shift
    "$PY" - "$f" "$@" <<'EOF'
import re, sys
pats, i = sys.argv[2:], 0
for line in open(sys.argv[1], errors="replace"):
    if i < len(pats) and re.search(pats[i], line):
        i += 1
sys.exit(0 if i == len(pats) else 1)
EOF
}
klog_has() {  # klog_has PROFILE REGEX : a line the KDC logged during this case
    tail -n +"$((KLOG_OFF[$1] + 1))" "$W/log/kdc-$1.log" | grep -q -E -- "$2"
}

# flow STEP : the KDC exchanges of one client run, read from its KRB5_TRACE, as tokens:
#   U>.1  UDP request to 127.88.0.1 (U>.1r: a retry)   T>.1  TCP request sent to .1
#   T~.1  TCP connection attempt to .1                  T-.1  TCP connection to .1 given
#                                                             up without an answer
#   ERRnn KRB-ERROR nn received    AS-REP / TGS-REP  reply received and decrypted
flow() {
    "$PY" - "$W/trace/$CASE.$1" "$NET." <<'EOF'
import re, sys
net = sys.argv[2]
base = 1765328384          # MIT com_err table base of the krb5 protocol errors
out, answered = [], {}
def h(a): return a[len(net) - 1:] if a.startswith(net) else a
def err(code):
    n = int(code) + base
    return "ERR%d" % n if 0 < n < 128 else "FAIL(%s)" % code
for line in open(sys.argv[1], errors="replace"):
    m = re.search(r"Sending (initial|retry) UDP request to dgram (\S+):88", line)
    if m:
        out.append("U>" + h(m.group(2)) + ("r" if m.group(1) == "retry" else "")); continue
    m = re.search(r"Initiating TCP connection to stream (\S+):88", line)
    if m:
        out.append("T~" + h(m.group(1))); answered[m.group(1)] = False; continue
    m = re.search(r"Sending TCP request to stream (\S+):88", line)
    if m:
        if out and out[-1] == "T~" + h(m.group(1)): out.pop()
        out.append("T>" + h(m.group(1))); continue
    m = re.search(r"Received answer \(\d+ bytes\) from stream (\S+):88", line)
    if m:
        answered[m.group(1)] = True; continue
    m = re.search(r"Terminating TCP connection to stream (\S+):88", line)
    if m:
        if not answered.get(m.group(1), True): out.append("T-" + h(m.group(1)))
        continue
    if "Request or response is too big for UDP" in line:
        out.append("ERR52"); continue
    m = re.search(r"Received error from KDC: (-\d+)/", line)
    if m:
        if int(m.group(1)) + base != 52: out.append(err(m.group(1)))
        continue
    m = re.search(r"(?:TGS request result:|Got cred;) (-?\d+)/", line)
    if m:
        if m.group(1) != "0": out.append(err(m.group(1)))
        continue
    if "Decrypted AS reply" in line: out.append("AS-REP"); continue
    if "TGS reply is for" in line: out.append("TGS-REP"); continue
print(" ".join(out))
EOF
}

# check_flow STEP "EXPECTED" [TEXT]
check_flow() {
    local got
    got=$(flow "$1")
    if [ "$got" = "$2" ]; then record PASS "$1 flow (trace): $2${3:+ -- $3}"
    else record FAIL "$1 flow (trace): expected '$2', got '$got'${3:+ -- $3}"; fi
}

# kdc_clock_behind PROFILE : the KDC's own log lines (its clock) are ~10 min behind the
# real clock at the start of the case
kdc_clock_behind() {
    tail -n +"$((KLOG_OFF[$1] + 1))" "$W/log/kdc-$1.log" | head -1 | "$PY" -c '
import sys, time
line, t0 = sys.stdin.readline(), float(sys.argv[1])
stamp = " ".join(line.split()[:3])
kdc = time.mktime(time.strptime(time.strftime("%Y ", time.localtime(t0)) + stamp, "%Y %b %d %H:%M:%S"))
sys.exit(0 if 590 <= t0 - kdc <= 640 else 1)' "$CASE_T0"
}

# ---------------------------------------------------------------------------------------
# the cases (case_NAME records NAME.pcap)

case_a_kinit_kvno() {
    prepare a_kinit_kvno; rec
    client kinit main kinit alice <<<"$ALICE_PW"
    client kvno main kvno HTTP/exchange.lab.test
    unrec
    check "kinit alice exits 0" rc_is kinit 0
    check_flow kinit "U>.1 ERR25 U>.1 AS-REP" "PREAUTH_REQUIRED, then AS-REP, all UDP"
    check "2nd AS-REQ carries PA-ENC-TIMESTAMP (2)" tr_has kinit 'Produced preauth for next request: .*PA-ENC-TIMESTAMP \(2\)'
    check "the 25 error offers FAST (PA-FX-FAST 136) and ETYPE-INFO2 (19)" tr_has kinit 'Processing preauth types: PA-FX-FAST \(136\), PA-ETYPE-INFO2 \(19\)'
    check "kvno HTTP/exchange.lab.test exits 0" rc_is kvno 0
    check_flow kvno "U>.1 TGS-REP"
    check "TGS-REQ is FAST-armored with the TGT (PA-FX-FAST)" tr_has kvno 'Encoding request body and padata into FAST request'
    check "TGS-REP: alice -> HTTP/exchange.lab.test" tr_has kvno 'TGS reply is for alice@LAB.TEST -> HTTP/exchange.lab.test@LAB.TEST'
}

case_b_wrong_password() {
    prepare b_wrong_password; rec
    client kinit main kinit alice <<<"WrongPass"
    unrec
    check "kinit with a wrong password exits non-zero" rc_fail kinit
    check_flow kinit "U>.1 ERR25 U>.1 ERR24" "PREAUTH_FAILED"
    check "kinit says the password is incorrect" out_has kinit 'Password incorrect'
}

case_c_unknown_client() {
    prepare c_unknown_client; rec
    client kinit main kinit nosuchuser <<<"whatever"
    unrec
    check "kinit nosuchuser exits non-zero" rc_fail kinit
    check_flow kinit "U>.1 ERR6" "C_PRINCIPAL_UNKNOWN on the first AS-REQ"
    check "kinit says the client is not in the database" out_has kinit "Client 'nosuchuser@LAB.TEST' not found in Kerberos database"
}

case_c_unknown_service() {
    prepare c_unknown_service
    pre tgt main kinit alice <<<"$ALICE_PW"
    rec
    client kvno main kvno HTTP/nope.lab.test
    unrec
    check "kvno HTTP/nope.lab.test exits non-zero" rc_fail kvno
    check_flow kvno "U>.1 ERR7 U>.1 ERR7" "S_PRINCIPAL_UNKNOWN twice: referrals on, then off"
    check "client tried with referrals on, then off" tr_seq kvno 'referrals on' 'referrals off'
}

case_d_response_too_big() {
    prepare d_response_too_big; rec
    client kinit small kinit alice <<<"$ALICE_PW"
    client kvno small kvno HTTP/exchange.lab.test
    unrec
    check "kinit and kvno exit 0" rc_both0 kinit kvno
    check_flow kinit "U>.3 ERR25 U>.3 ERR52 T>.3 AS-REP" "RESPONSE_TOO_BIG on UDP, same AS-REQ over TCP"
    check_flow kvno "U>.3 ERR52 T>.3 TGS-REP" "RESPONSE_TOO_BIG on UDP, same TGS-REQ over TCP"
    check "AS: the retry over TCP is the same request (same size)" same_size_retry kinit
    check "TGS: the retry over TCP is the same request (same size)" same_size_retry kvno
}
rc_both0() { rc_is "$1" 0 && rc_is "$2" 0; }
same_size_retry() {  # the request size before "retrying with TCP" equals the one after
    "$PY" - "$W/trace/$CASE.$1" <<'EOF'
import re, sys
sizes, big = [], None
for line in open(sys.argv[1]):
    m = re.search(r"Sending request \((\d+) bytes\)", line)
    if m: sizes.append(m.group(1))
    if "retrying with TCP" in line: big = len(sizes)
sys.exit(0 if big and len(sizes) > big and sizes[big - 1] == sizes[big] else 1)
EOF
}

case_d_udp_preference_limit_1() {
    prepare d_udp_preference_limit_1; rec
    client kinit tcponly kinit alice <<<"$ALICE_PW"
    client kvno tcponly kvno HTTP/exchange.lab.test
    unrec
    check "kinit and kvno exit 0" rc_both0 kinit kvno
    check_flow kinit "T>.1 ERR25 T>.1 AS-REP" "all TCP"
    check_flow kvno "T>.1 TGS-REP" "all TCP"
}

case_d_tcp_blocked() {
    prepare d_tcp_blocked
    # a firewall on the KDC host drops TCP/88 (SYNs never answered); UDP/88 still works
    ip netns exec "$NSK" nft -f - <<EOF || lab_die "nft failed"
table inet kcdmit_block {
    chain input {
        type filter hook input priority 0; policy accept;
        ip daddr $SMALL tcp dport 88 drop
    }
}
EOF
    rec
    client kinit small kinit alice <<<"$ALICE_PW"
    unrec
    ip netns exec "$NSK" nft delete table inet kcdmit_block
    check "kinit exits non-zero" rc_fail kinit
    check_flow kinit "U>.3 ERR25 U>.3 ERR52 T~.3 T-.3" "52 on UDP, TCP connection never established, client gives up"
    check "kinit says it cannot contact any KDC" out_has kinit "Cannot contact any KDC for realm 'LAB.TEST'"
    check "client waited >= 10 s for the TCP connection" tcp_wait_ge kinit 10
}
tcp_wait_ge() {  # seconds between the TCP connection attempt and giving up >= $2
    local a b
    a=$(grep -m1 'Initiating TCP connection' "$W/trace/$CASE.$1" | sed 's/^\[[0-9]*\] \([0-9.]*\):.*/\1/')
    b=$(grep -m1 'Terminating TCP connection' "$W/trace/$CASE.$1" | sed 's/^\[[0-9]*\] \([0-9.]*\):.*/\1/')
    [ -n "$a" ] && [ -n "$b" ] && "$PY" -c 'import sys; sys.exit(0 if float(sys.argv[2]) - float(sys.argv[1]) >= float(sys.argv[3]) else 1)' "$a" "$b" "$2"
}

case_e_skew_as_timesync_off() {
    prepare e_skew_as_timesync_off; rec
    client kinit skew_notimesync kinit alice <<<"$ALICE_PW"
    unrec
    check "KDC clock is ~10 min behind the client's (KDC log)" kdc_clock_behind skew
    check "kinit exits non-zero" rc_fail kinit
    check_flow kinit "U>.5 ERR25 U>.5 ERR37" "kdc_timesync=0: SKEW answers the PA-ENC-TIMESTAMP AS-REQ"
    check "KDC logged the skew" klog_has skew 'Clock skew too great'
}

case_e_skew_as_timesync_default() {
    prepare e_skew_as_timesync_default; rec
    client kinit skew kinit alice <<<"$ALICE_PW"
    unrec
    check "KDC clock is ~10 min behind the client's (KDC log)" kdc_clock_behind skew
    check "kinit exits 0" rc_is kinit 0
    check_flow kinit "U>.5 ERR25 U>.5 AS-REP" "default kdc_timesync: the client takes the KDC time from the 25 error"
    check "encrypted timestamp is ~10 min behind the client clock (KDC time used)" ts_uses_kdc_time kinit
}
ts_uses_kdc_time() {  # "Encrypted timestamp (for T.u)" vs the trace's own clock
    "$PY" - "$W/trace/$CASE.$1" <<'EOF'
import re, sys
for line in open(sys.argv[1]):
    m = re.match(r"\[\d+\] (\d+)\.\d+: Encrypted timestamp \(for (\d+)\.", line)
    if m:
        d = int(m.group(1)) - int(m.group(2))
        sys.exit(0 if 590 <= d <= 640 else 1)
sys.exit(1)
EOF
}

case_e_skew_tgs() {
    # the TGT comes from the skewed KDC with time sync (the ccache keeps the offset);
    # kvno with kdc_timesync = 0 ignores that offset: its TGS-REQs carry its own clock
    prepare e_skew_tgs
    pre tgt skew kinit alice <<<"$ALICE_PW"
    rec
    client kvno skew_notimesync kvno HTTP/exchange.lab.test
    unrec
    check "KDC clock is ~10 min behind the client's (KDC log)" kdc_clock_behind skew
    check "kinit (with time sync) learned a ~10 min offset" ts_uses_kdc_time tgt
    check "kvno exits non-zero" rc_fail kvno
    check_flow kvno "U>.5 ERR37 U>.5 ERR37" "valid TGT, TGS-REQ authenticator 10 min ahead: SKEW twice (referrals on/off)"
}

case_f_s4u2self() {
    prepare f_s4u2self; rec
    client kinit main kinit HTTP/svc_awseg <<<"$SVC_PW"
    client kvno main kvno -I alice HTTP/svc_awseg
    unrec
    check "kinit HTTP/svc_awseg and kvno -I alice exit 0" rc_both0 kinit kvno
    check_flow kinit "U>.1 ERR25 U>.1 AS-REP" "service account AS exchange"
    check_flow kvno "U>.1 TGS-REP" "S4U2Self"
    check "S4U2Self ticket is for alice to HTTP/svc_awseg" tr_has kvno 'TGS reply is for alice@LAB.TEST -> HTTP/svc_awseg@LAB.TEST'
    check "KDC logged PROTOCOL-TRANSITION for alice" klog_has db2 'PROTOCOL-TRANSITION s4u-client=alice@LAB.TEST'
}

case_f_s4u2self_enterprise() {
    prepare f_s4u2self_enterprise
    pre tgt main kinit HTTP/svc_awseg <<<"$SVC_PW"
    rec
    client kvno main kvno -U alice HTTP/svc_awseg
    unrec
    check "kvno -U alice (enterprise name) exits 0" rc_is kvno 0
    check_flow kvno "U>.1 ERR25 U>.1 TGS-REP" "AS-REQ realm lookup for the enterprise name, then S4U2Self"
    check "the realm lookup AS-REQ identified the client realm" tr_seq kvno 'Getting initial credentials for alice@LAB.TEST' 'Identified realm of client principal as LAB.TEST'
    check "S4U2Self ticket is for alice to HTTP/svc_awseg" tr_has kvno 'TGS reply is for alice@LAB.TEST -> HTTP/svc_awseg@LAB.TEST'
}

case_f_s4u2self_userprinc() {
    prepare f_s4u2self_userprinc
    pre tgt main kinit svc_awseg <<<"$SVC_PW"
    rec
    client kvno main kvno -I alice svc_awseg
    unrec
    check "kvno -I alice svc_awseg exits 0" rc_is kvno 0
    check_flow kvno "U>.1 TGS-REP" "S4U2Self to a user-style service account"
    check "S4U2Self ticket is for alice to svc_awseg" tr_has kvno 'TGS reply is for alice@LAB.TEST -> svc_awseg@LAB.TEST'
}

case_f_s4u2proxy_db2() {
    prepare f_s4u2proxy_db2; rec
    client kinit main kinit HTTP/svc_awseg <<<"$SVC_PW"
    client kvno main kvno -I alice -P HTTP/exchange.lab.test
    unrec
    check "kinit exits 0" rc_is kinit 0
    check "kvno -I alice -P HTTP/exchange.lab.test exits non-zero" rc_fail kvno
    check_flow kinit "U>.1 ERR25 U>.1 AS-REP"
    check_flow kvno "U>.1 TGS-REP T>.1 ERR13" "S4U2Self over UDP, S4U2Proxy over TCP (request > 1465 B) refused: BADOPTION"
    check "S4U2Proxy request is larger than udp_preference_limit (1465)" big_request kvno 1465
    check "kvno says constrained delegation failed" out_has kvno 'constrained delegation failed'
    check "KDC logged UNSUPPORTED_S4U2PROXY_REQUEST (db2 keeps no delegation list)" klog_has db2 'UNSUPPORTED_S4U2PROXY_REQUEST.*for HTTP/exchange.lab.test@LAB.TEST'
}
big_request() {  # the last request of STEP is larger than N bytes
    local n
    n=$(grep 'Sending request (' "$W/trace/$CASE.$1" | tail -1 | sed 's/.*Sending request (\([0-9]*\) bytes).*/\1/')
    [ -n "$n" ] && [ "$n" -gt "$2" ]
}

case_f_s4u2proxy_no_preauth() {
    prepare f_s4u2proxy_no_preauth; rec
    client kinit main kinit HTTP/svc_nopa <<<"$SVC_PW"
    client kvno main kvno -I alice -P HTTP/exchange.lab.test
    unrec
    check "kinit HTTP/svc_nopa exits 0" rc_is kinit 0
    check_flow kinit "U>.1 AS-REP" "no preauth required: AS-REP to the first AS-REQ"
    check "kvno exits non-zero" rc_fail kvno
    check_flow kvno "U>.1 TGS-REP T>.1 ERR60" "S4U2Proxy with a TGT obtained without preauth: GENERIC"
    check "error text is NO PREAUTH" tr_has kvno 'KDC returned error string: NO PREAUTH'
}

case_g_kdc_failover() {
    prepare g_kdc_failover; rec
    client kinit failover kinit alice <<<"$ALICE_PW"
    client kvno failover kvno HTTP/exchange.lab.test
    unrec
    check "kinit and kvno exit 0 (the second KDC answers)" rc_both0 kinit kvno
    check_flow kinit "U>.2 U>.1 ERR25 U>.2 U>.1 AS-REP" "each request goes to the silent first KDC, then after ~1 s to the second"
    check_flow kvno "U>.2 U>.1 TGS-REP" "the TGS-REQ too"
    check "~1 s between the request to the silent KDC and the fail-over" gap_between kinit "dgram $DEAD:88" "dgram $KDC:88" 0.9 2.0
}
gap_between() {  # gap_between STEP REGEX1 REGEX2 MIN MAX : seconds between first lines matching
    local a b
    a=$(grep -m1 -E "Sending initial UDP request to $2" "$W/trace/$CASE.$1" | sed 's/^\[[0-9]*\] \([0-9.]*\):.*/\1/')
    b=$(grep -m1 -E "Sending initial UDP request to $3" "$W/trace/$CASE.$1" | sed 's/^\[[0-9]*\] \([0-9.]*\):.*/\1/')
    [ -n "$a" ] && [ -n "$b" ] && "$PY" -c 'import sys; d = float(sys.argv[2]) - float(sys.argv[1]); sys.exit(0 if float(sys.argv[3]) <= d <= float(sys.argv[4]) else 1)' "$a" "$b" "$4" "$5"
}

case_g_kdc_unreachable() {
    prepare g_kdc_unreachable; rec
    client kinit dead kinit alice <<<"$ALICE_PW"
    unrec
    check "kinit exits non-zero" rc_fail kinit
    check_flow kinit "U>.2 T>.2 U>.2r U>.2r T-.2" "UDP, then TCP (connected, request sent), UDP retries, never an answer"
    check "kinit says it cannot contact any KDC" out_has kinit "Cannot contact any KDC for realm 'LAB.TEST'"
}

case_h_s4u2proxy_ldap_ok() {
    prepare h_s4u2proxy_ldap_ok; rec
    client kinit ldap kinit HTTP/svc_awseg <<<"$SVC_PW"
    client kvno ldap kvno -I alice -P HTTP/exchange.lab.test
    unrec
    check "kinit and kvno -I alice -P HTTP/exchange.lab.test exit 0" rc_both0 kinit kvno
    check_flow kinit "U>.4 ERR25 U>.4 AS-REP"
    check_flow kvno "U>.4 TGS-REP T>.4 TGS-REP" "S4U2Self over UDP, S4U2Proxy over TCP"
    check "final ticket: alice -> HTTP/exchange.lab.test" tr_has kvno 'TGS reply is for alice@LAB.TEST -> HTTP/exchange.lab.test@LAB.TEST'
    check "KDC logged CONSTRAINED-DELEGATION for alice" klog_has ldap 'CONSTRAINED-DELEGATION s4u-client=alice@LAB.TEST'
}

case_h_s4u2proxy_no_protocol_transition() {
    prepare h_s4u2proxy_no_protocol_transition
    pre tgt ldap kinit HTTP/svc_nopt <<<"$SVC_PW"
    rec
    client kvno ldap kvno -I alice -P HTTP/exchange.lab.test
    unrec
    check "kvno exits non-zero" rc_fail kvno
    check_flow kvno "U>.4 TGS-REP T>.4 ERR13" "S4U2Self ticket (not forwardable) then S4U2Proxy refused: BADOPTION"
    check "KDC logged EVIDENCE_TKT_NOT_FORWARDABLE" klog_has ldap 'EVIDENCE_TKT_NOT_FORWARDABLE'
}

case_h_s4u2proxy_target_not_allowed() {
    prepare h_s4u2proxy_target_not_allowed
    pre tgt ldap kinit HTTP/svc_awseg <<<"$SVC_PW"
    rec
    client kvno ldap kvno -I alice -P HTTP/other.lab.test
    unrec
    check "kvno exits non-zero" rc_fail kvno
    check_flow kvno "U>.4 TGS-REP T>.4 ERR13" "HTTP/other.lab.test not in krbAllowedToDelegateTo: BADOPTION"
    check "KDC logged UNSUPPORTED_S4U2PROXY_REQUEST (same status as db2's)" klog_has ldap 'UNSUPPORTED_S4U2PROXY_REQUEST.*for HTTP/other.lab.test@LAB.TEST'
}

case_h_s4u2proxy_upn_ok() {
    prepare h_s4u2proxy_upn_ok; rec
    client kinit ldap kinit HTTP/svc_awseg <<<"$SVC_PW"
    client kvno ldap kvno -U alice@lab.test -P HTTP/exchange.lab.test
    unrec
    check "kinit and kvno -U alice@lab.test -P HTTP/exchange.lab.test exit 0" rc_both0 kinit kvno
    check_flow kinit "U>.4 ERR25 U>.4 AS-REP"
    check_flow kvno "U>.4 ERR25 U>.4 TGS-REP T>.4 TGS-REP" "realm lookup for the UPN, S4U2Self, S4U2Proxy"
    check "realm lookup AS-REQ for the enterprise name alice@lab.test" tr_seq kvno 'Getting initial credentials for alice\\@lab.test@LAB.TEST' 'Identified realm of client principal as LAB.TEST'
    check "final ticket: alice@lab.test (enterprise) -> HTTP/exchange.lab.test" tr_has kvno 'TGS reply is for alice\\@lab.test@LAB.TEST -> HTTP/exchange.lab.test@LAB.TEST'
}

ALL_CASES=(a_kinit_kvno b_wrong_password c_unknown_client c_unknown_service
    d_response_too_big d_udp_preference_limit_1 d_tcp_blocked
    e_skew_as_timesync_off e_skew_as_timesync_default e_skew_tgs
    f_s4u2self f_s4u2self_enterprise f_s4u2self_userprinc f_s4u2proxy_db2 f_s4u2proxy_no_preauth
    g_kdc_failover g_kdc_unreachable
    h_s4u2proxy_ldap_ok h_s4u2proxy_upn_ok h_s4u2proxy_no_protocol_transition h_s4u2proxy_target_not_allowed)

# ---------------------------------------------------------------------------------------

main_record() {
    OUT=$1
    lab_require_root
    lab_install "${PACKAGES[@]}"
    FAKETIME_LIB=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -1)
    [ -n "$FAKETIME_LIB" ] && [ -e "$FAKETIME_LIB" ] || lab_die "libfaketime.so.1 not found (package libfaketime)"
    mkdir -p "$OUT" || lab_die "cannot create $OUT"
    OUT=$(cd "$OUT" && pwd)
    trap cleanup EXIT
    trap 'exit 130' INT TERM
    W=$(mktemp -d /tmp/kcdmit.XXXXXX)
    mkdir -p "$W/run" "$W/log" "$W/trace" "$W/out" "$W/cc"
    LDAPI="ldapi://$(printf %s "$W/ldapi" | sed 's|/|%2F|g')"
    CHECKS="$OUT/CHECKS.txt"
    : >"$CHECKS"
    local t0=$SECONDS c filter=${KCDMIT_CASES:-.}
    make_network
    write_server_confs
    write_client_confs
    setup_db2
    setup_ldap
    start_kdc db2 "$KDC"
    start_kdc small "$SMALL"
    start_kdc ldap "$LKDC"
    start_kdc skew "$SKDC" LD_PRELOAD="$FAKETIME_LIB" FAKETIME="$KDC_SKEW"
    start_silent_kdc
    for c in "${ALL_CASES[@]}"; do
        [[ $c =~ $filter ]] || continue
        rm -f "$OUT/$c.pcap"
        "case_$c"
    done
    echo "lab: $((NCHECK - NFAIL)) passed, $NFAIL failed ($((SECONDS - t0)) s); checks in $CHECKS" >&2
    [ "$NFAIL" = 0 ] && [ "$NCHECK" -gt 0 ]
}

case "${1:-}" in
    record) [ $# = 2 ] || usage; main_record "$2" ;;
    *) usage ;;
esac
