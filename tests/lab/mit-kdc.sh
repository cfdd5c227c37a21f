#!/usr/bin/env bash
# Real MIT krb5 KDC lab: records the Kerberos traffic of real MIT clients (kinit, kvno)
# talking to real MIT KDCs (db2 and LDAP backends), one pcap per case.
#
#   tests/lab/mit-kdc.sh record OUTDIR
#   tests/lab/mit-kdc.sh up DIR       start the same KDCs (plus Apache) and leave them running
#   tests/lab/mit-kdc.sh down DIR     stop what `up` started (pid files) and delete the namespaces
#   tests/lab/mit-kdc.sh status DIR   exit 0 if the lab in DIR is up
#
# `record` writes OUTDIR/<case>.pcap and OUTDIR/CHECKS.txt: one PASS/FAIL line per verified
# fact, derived from the clients' KRB5_TRACE output, their exit codes and messages, and the
# KDCs' own logs -- never from the pcaps -- and exits non-zero if any check failed.
# `up` is for tests of a constrained-delegation client: it writes DIR/lab.env (the keys of
# samba-ad.sh's lab.env where the meaning is the same, plus MIT-specific ones) and ends with
# a self-check (DIR/log/selfcheck.txt). `record` and `up` share the namespaces: one at a time.
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
#   and with `up` only:
#     127.88.0.6:80  Apache + mod_auth_gssapi as exchange.lab.test (keytab from the LDAP KDC)
#     127.88.0.7:88  MIT KDC, same LDAP database as .4, kdc_max_dgram_reply_size = 300
#     127.88.0.8:88  MIT KDC of a second realm OTHER.TEST (LDAP, its own suffix in the same
#                    slapd), trusting LAB.TEST both ways (krbtgt/OTHER.TEST@LAB.TEST and
#                    krbtgt/LAB.TEST@OTHER.TEST, same keys on both sides): user dave, UPN
#                    dave@other.test, for cross-realm S4U2Self; svc_awseg@LAB.TEST is an alias
#                    of its krbtgt/LAB.TEST@OTHER.TEST, so that the enterprise name of the
#                    service refers back to LAB.TEST (as an AD global catalog would)
#   (`up` also writes /etc/netns/kcdmit-c/hosts: exchange.lab.test resolves in kcdmit-c)
#
# Environment: KCDMIT_CASES=REGEX records only the cases whose name matches;
#              KCDMIT_KEEP=1 keeps the work directory (traces, client output, KDC logs);
#              KCDMIT_KEEP_ON_FAILURE=1 leaves daemons and namespaces of a failed `up`;
#              KCDMIT_LOAD_USERS=N gives the LDAP database N more users, loaduser0..N-1 with
#              UPNs loaduser0@lab.test.. (aliases, as alice's), no keys (S4U2Self needs none),
#              under ou=load (bulk-loaded before slapd starts: 100,000 take about 4 s).
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
# `up` only
HTTPD=$NET.6            # Apache as exchange.lab.test
LSMALL=$NET.7           # LDAP (same database as .4), 300-byte UDP replies
OKDC=$NET.8             # realm OTHER.TEST (LDAP, suffix dc=other,dc=test)
OREALM=OTHER.TEST
OBASEDN=dc=other,dc=test
ODNSDOMAIN=other.test
DNSDOMAIN=lab.test
EXCHANGE_HOST=exchange.$DNSDOMAIN
TARGET_SPN=HTTP/$EXCHANGE_HOST
NETNS_ETC=/etc/netns/$NSC
UP_PACKAGES=(apache2 libapache2-mod-auth-gssapi python3-gssapi)
UP_DAEMONS=(slapd kdc-db2 kdc-small kdc-ldap kdc-ldapsmall kdc-other kdc-skew silent apache)
EXTRA_ADDRS=

usage() {
    echo "usage: $0 record OUTDIR | up DIR | down DIR | status DIR" >&2
    exit 2
}

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
    for a in "$KDC" "$DEAD" "$SMALL" "$LKDC" "$SKDC" $EXTRA_ADDRS; do ip -n "$NSK" addr add "$a/24" dev "$IFK"; done
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
    local ldapdb="        database_module = ldapconf
        key_stash_file = $W/ldapkdc/stash" ldapmod="[dbmodules]
    ldapconf = {
        db_library = kldap
        ldap_kerberos_container_dn = cn=krbcontainer,$BASEDN
        ldap_kdc_dn = $LDAP_ADMIN
        ldap_kadmind_dn = $LDAP_ADMIN
        ldap_service_password_file = $W/ldapkdc/service.keyfile
        ldap_servers = $LDAPI
        ldap_conns_per_server = 2
    }"
    kdc_conf ldap "$LKDC" "" "$ldapdb" "$ldapmod"
    # `up` only: a second KDC on the LDAP database that sends 52 for UDP replies > 300 B
    [ -z "$EXTRA_ADDRS" ] || kdc_conf ldapsmall "$LSMALL" "    kdc_max_dgram_reply_size = 300" "$ldapdb" "$ldapmod"
    # `up` only: the second realm, its own Kerberos container in the same slapd
    [ -z "$EXTRA_ADDRS" ] || kdc_conf other "$OKDC" "" "        database_module = ldapother
        key_stash_file = $W/ldapkdc/stash-other" "[dbmodules]
    ldapother = {
        db_library = kldap
        ldap_kerberos_container_dn = cn=krbcontainer,$OBASEDN
        ldap_kdc_dn = $LDAP_ADMIN
        ldap_kadmind_dn = $LDAP_ADMIN
        ldap_service_password_file = $W/ldapkdc/service.keyfile
        ldap_servers = $LDAPI
        ldap_conns_per_server = 2
    }" "$OREALM"
}

# kdc_conf NAME ADDRESS KDCDEFAULTS-LINES REALM-DB-LINES EXTRA-SECTIONS [REALM]
kdc_conf() {
    cat >"$W/kdc-$1.conf" <<EOF
[kdcdefaults]
    kdc_listen = $2:88
    kdc_tcp_listen = $2:88
$3
[realms]
    ${6:-$REALM} = {
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
maxsize 1073741824
suffix "$BASEDN"
rootdn "$LDAP_ADMIN"
rootpw $LDAP_PW
directory $W/ldap/db
index objectClass eq
index krbPrincipalName eq,pres,sub
EOF
    if [ -n "$EXTRA_ADDRS" ]; then      # `up`: the second realm's own suffix
        mkdir -p "$W/ldap/db-other"
        cat >>"$W/ldap/slapd.conf" <<EOF
database mdb
maxsize 1073741824
suffix "$OBASEDN"
directory $W/ldap/db-other
access to * by dn.exact="$LDAP_ADMIN" manage by * none
index objectClass eq
index krbPrincipalName eq,pres,sub
EOF
    fi
    printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: lab\no: lab\n' "$BASEDN" >"$W/ldap/base.ldif"
    case ${KCDMIT_LOAD_USERS:-0} in *[!0-9]*) lab_die "KCDMIT_LOAD_USERS must be a number of users, not '$KCDMIT_LOAD_USERS'" ;; esac
    if [ "${KCDMIT_LOAD_USERS:-0}" -gt 0 ]; then
        # (the realm's subtree is all of $BASEDN: the KDC finds them outside its container)
        awk -v n="$KCDMIT_LOAD_USERS" -v base="$BASEDN" -v realm="$REALM" -v dom="$DNSDOMAIN" 'BEGIN {
            printf "\ndn: ou=load,%s\nobjectClass: organizationalUnit\nou: load\n", base
            for (i = 0; i < n; i++)
                printf "\ndn: krbPrincipalName=loaduser%d@%s,ou=load,%s\nobjectClass: krbPrincipal\nobjectClass: krbPrincipalAux\nobjectClass: krbTicketPolicyAux\nkrbPrincipalName: loaduser%d@%s\nkrbPrincipalName: loaduser%d@%s@%s\nkrbCanonicalName: loaduser%d@%s\nkrbTicketFlags: 0\n", i, realm, base, i, realm, i, dom, realm, i, realm
        }' >>"$W/ldap/base.ldif"
    fi
    slapadd -q -f "$W/ldap/slapd.conf" -l "$W/ldap/base.ldif" >"$W/log/slapadd.log" 2>&1 \
        || { cat "$W/log/slapadd.log" >&2; lab_die "slapadd failed"; }
    if [ -n "$EXTRA_ADDRS" ]; then
        printf 'dn: %s\nobjectClass: dcObject\nobjectClass: organization\ndc: other\no: other\n' "$OBASEDN" \
            | slapadd -f "$W/ldap/slapd.conf" -b "$OBASEDN" >>"$W/log/slapadd.log" 2>&1 \
            || { cat "$W/log/slapadd.log" >&2; lab_die "slapadd $OBASEDN failed"; }
    fi
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

start_kdc() {  # start_kdc PROFILE ADDRESS [ENV=VALUE...]   (KDC_REALM: another realm)
    local prof=$1 addr=$2; shift 2
    daemon_start "$NSK" "$W/run/kdc-$prof.pid" "$W/log/krb5kdc-$prof.out" \
        env KRB5_CONFIG="$W/krb5-server.conf" KRB5_KDC_PROFILE="$W/kdc-$prof.conf" "$@" \
        krb5kdc -n -r "${KDC_REALM:-$REALM}"
    wait_addr "$addr" || { cat "$W/log/krb5kdc-$prof.out" "$W/log/kdc-$prof.log" >&2; lab_die "KDC $prof did not start"; }
}

start_silent_kdc() {  # binds UDP and TCP ADDRESS:88, accepts, reads, never answers
    silent_kdc_start "$NSK" "$DEAD" "$W/run/silent.pid" "$W/log/silent.out"
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
    ns_guard
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

# ---------------------------------------------------------------------------------------
# up / down / status: the KDCs of `record`, left running, plus Apache as exchange.lab.test,
# for the tests of a constrained-delegation client (they run in $NSC and read DIR/lab.env)

# ns_guard : refuse to take over the namespaces while processes run in them (a lab started
# by `up`, or another `record`): recreating them would cut those daemons off
ns_guard() {
    local ns left
    for ns in "$NSC" "$NSK"; do
        left=$(ns_leftover_pids "$ns")
        [ -z "${left// /}" ] || lab_die "namespace $ns is in use (pids: $left): an MIT lab started by 'mit-kdc.sh up DIR' (stop it: mit-kdc.sh down DIR) or another 'record' is running"
    done
}

# up_dir DIR : W = absolute DIR (created); refuse names that would break lab.env
up_dir() {
    mkdir -p "$1" || lab_die "cannot create $1"
    W=$(cd "$1" && pwd -P)
    case "$W" in *[[:space:]\'\"\$\`\\]*) lab_die "directory path must not contain spaces or quotes: $W" ;; esac
    LDAPI="ldapi://$(printf %s "$W/ldapi" | sed 's|/|%2F|g')"
}

lab_is_up() {
    local d
    [ -f "$W/lab.env" ] || return 1
    for d in "${UP_DAEMONS[@]}"; do
        [ -f "$W/run/$d.pid" ] && alive "$(cat "$W/run/$d.pid")" || return 1
    done
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NSC"
}

stop_up_daemons() {  # every pid file under DIR/run, all at once (Apache takes 1-2 s)
    local pf
    for pf in "$W"/run/*.pid; do [ -e "$pf" ] && daemon_stop "$pf" & done
    wait
}

up_net_down() {
    netns_down "$NSC"
    netns_down "$NSK"
    rm -rf "$NETNS_ETC"
    rmdir /etc/netns 2>/dev/null || true     # only if no other lab keeps files there
}

write_netns_etc() {  # names for the client namespace (`ip netns exec` bind-mounts them)
    mkdir -p "$NETNS_ETC"
    cat >"$NETNS_ETC/hosts" <<EOF
# written by tests/lab/mit-kdc.sh up for namespace $NSC (removed by 'down')
127.0.0.1 localhost
$CLIENT gw.$DNSDOMAIN gw
$LKDC kdc.$DNSDOMAIN kdc
$LSMALL kdc-small-udp.$DNSDOMAIN
$DEAD kdc-dead.$DNSDOMAIN
$KDC kdc-db2.$DNSDOMAIN
$OKDC kdc.$ODNSDOMAIN
$HTTPD $EXCHANGE_HOST exchange
EOF
    # no DNS server exists in the lab; make lookups of other names fail at once
    printf '# written by tests/lab/mit-kdc.sh\noptions timeout:1 attempts:1\n' >"$NETNS_ETC/resolv.conf"
}

# up_client_conf FILE "KDC..." [LIBDEFAULTS-LINES] : a client krb5.conf for the tests
up_client_conf() {
    local f=$1; shift
    client_conf up "$1" "    default_ccache_name = FILE:$W/run/krb5cc_default${2:+
$2}"
    { echo "# MIT client configuration for the MIT lab (use inside namespace $NSC)"; cat "$W/c-up.conf"; } >"$f"
    rm -f "$W/c-up.conf"
}

write_up_client_confs() {
    up_client_conf "$W/krb5.conf" "$LKDC"
    # MIT's own client as the reference for cross-realm S4U2Self: it knows OTHER.TEST's KDC
    sed -i -e "/^\[realms\]/a\\    $OREALM = {\n        kdc = $OKDC\n    }" \
        -e "/^\[domain_realm\]/a\\    .$ODNSDOMAIN = $OREALM\n    $ODNSDOMAIN = $OREALM" "$W/krb5.conf"
    up_client_conf "$W/krb5-small-udp.conf" "$LSMALL" "    udp_preference_limit = 4000"
    up_client_conf "$W/krb5-tcp-only.conf" "$LKDC" "    udp_preference_limit = 1"
    up_client_conf "$W/krb5-failover.conf" "$DEAD $LKDC"
    up_client_conf "$W/krb5-dead.conf" "$DEAD"
    up_client_conf "$W/krb5-db2.conf" "$KDC"
}

# ldap_dn PRINCIPAL : the DN of PRINCIPAL@REALM's entry
ldap_dn() {
    ldap ldapsearch -LLL -o ldif-wrap=no -b "cn=krbcontainer,$BASEDN" \
        "(krbPrincipalName=$1@$REALM)" dn | sed -n 's/^dn: //p'
}

# ldap_add PRINCIPAL ATTR VALUE [ATTR VALUE...] : add attribute values to its entry
ldap_add() {
    local pr=$1 dn ldif=; shift
    dn=$(ldap_dn "$pr")
    [ -n "$dn" ] || lab_die "no LDAP entry for $pr"
    while [ $# -ge 2 ]; do
        ldif="$ldif${ldif:+-
}add: $1
$1: $2
"
        shift 2
    done
    printf 'dn: %s\nchangetype: modify\n%s' "$dn" "$ldif" | ldap ldapmodify >>"$W/log/ldapmodify.log" 2>&1 \
        || lab_die "ldapmodify on $dn failed (see $W/log/ldapmodify.log)"
}

# up_principals : the accounts `up` adds to both databases (record's are there already).
# svc_awseg is the gateway's account (as in the Samba lab); svc_nopt may delegate to
# Exchange without protocol transition; svc_notallowed has protocol transition but may only
# delegate to HTTP/other.lab.test; svc_nodeleg has protocol transition and an empty list.
up_principals() {
    local p pr
    HTTP_PW="Kcd1-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
    for p in db2 ldap; do
        kadm "$p" "addprinc -pw $ALICE_PW +requires_preauth bob"
        kadm "$p" "addprinc -pw $ALICE_PW +requires_preauth -allow_tix carol"
        kadm "$p" "addprinc -pw $SVC_PW +requires_preauth -ok_to_auth_as_delegate svc_nopt"
        kadm "$p" "addprinc -pw $SVC_PW +requires_preauth +ok_to_auth_as_delegate svc_notallowed"
        kadm "$p" "addprinc -pw $SVC_PW +requires_preauth +ok_to_auth_as_delegate svc_nodeleg"
        # the same key for Exchange in both databases: Apache accepts tickets from every KDC
        kadm "$p" "cpw -pw $HTTP_PW $TARGET_SPN"
        srv "$p" kadmin.local -q listprincs >"$W/log/princs-$p.txt" 2>&1
        for pr in bob carol svc_nopt svc_notallowed svc_nodeleg; do
            grep -qx "$pr@$REALM" "$W/log/princs-$p.txt" || lab_die "principal $pr missing in the $p database"
        done
    done
    ldap_add svc_awseg krbAllowedToDelegateTo "$TARGET_SPN@$REALM"
    ldap_add svc_nopt krbAllowedToDelegateTo "$TARGET_SPN@$REALM"
    ldap_add svc_notallowed krbAllowedToDelegateTo "HTTP/other.$DNSDOMAIN@$REALM"
    for pr in bob carol; do     # UPN aliases, as record gives alice
        ldap_add "$pr" krbPrincipalName "$pr@$DNSDOMAIN@$REALM" krbCanonicalName "$pr@$REALM"
    done
}

# setup_other_realm : OTHER.TEST in its own container (suffix dc=other,dc=test of the same
# slapd), dave@OTHER.TEST with UPN dave@other.test, and the two-way trust with LAB.TEST:
# each cross-realm krbtgt made from one password in both realms (same salt, same keys).
# The service's enterprise name svc_awseg@LAB.TEST is an alias of krbtgt/LAB.TEST@OTHER.TEST:
# OTHER.TEST's KDC answers a S4U2Self for it with a referral back to LAB.TEST.
setup_other_realm() {
    local dn p pr
    srv other kdb5_ldap_util -D "$LDAP_ADMIN" -w "$LDAP_PW" -H "$LDAPI" create -subtrees "$OBASEDN" \
        -r "$OREALM" -s -P "$MASTER_PW" >"$W/log/kdb5_ldap_util-other.log" 2>&1 \
        || { cat "$W/log/kdb5_ldap_util-other.log" >&2; lab_die "kdb5_ldap_util create $OREALM failed"; }
    XREALM_PW="Trust-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')"
    oadm "addprinc -pw $ALICE_PW +requires_preauth dave"
    for pr in "krbtgt/$OREALM@$REALM" "krbtgt/$REALM@$OREALM"; do
        kadm ldap "addprinc -pw $XREALM_PW $pr"
        oadm "addprinc -pw $XREALM_PW $pr"
    done
    for pr in "dave@$OREALM" "krbtgt/$REALM@$OREALM" "krbtgt/$OREALM@$REALM"; do
        srv other kadmin.local -r "$OREALM" -q "getprinc $pr" 2>&1 | grep -qx "Principal: $pr" \
            || lab_die "principal $pr missing in the $OREALM database"
        srv ldap kadmin.local -q "getprinc $pr" 2>&1 | grep -qx "Principal: $pr" || [ "$pr" = "dave@$OREALM" ] \
            || lab_die "principal $pr missing in the $REALM database"
    done
    dn=$(oldap_dn "dave@$OREALM"); [ -n "$dn" ] || lab_die "no LDAP entry for dave"
    printf 'dn: %s\nchangetype: modify\nadd: krbPrincipalName\nkrbPrincipalName: dave@%s@%s\n-\nadd: krbCanonicalName\nkrbCanonicalName: dave@%s\n' \
        "$dn" "$ODNSDOMAIN" "$OREALM" "$OREALM" | oldapmod || lab_die "alias dave@$ODNSDOMAIN failed"
    dn=$(oldap_dn "krbtgt/$REALM@$OREALM"); [ -n "$dn" ] || lab_die "no LDAP entry for krbtgt/$REALM@$OREALM"
    printf 'dn: %s\nchangetype: modify\nadd: krbPrincipalName\nkrbPrincipalName: svc_awseg@%s@%s\n-\nadd: krbCanonicalName\nkrbCanonicalName: krbtgt/%s@%s\n' \
        "$dn" "$REALM" "$OREALM" "$REALM" "$OREALM" | oldapmod || lab_die "alias svc_awseg@$REALM failed"
}
oadm() {  # oadm QUERY : kadmin.local for OTHER.TEST
    srv other kadmin.local -r "$OREALM" -q "$1" >>"$W/log/kadmin-local.log" 2>&1 \
        || lab_die "kadmin.local ($OREALM): $1 failed (see $W/log/kadmin-local.log)"
}
oldap_dn() {
    ldap ldapsearch -LLL -o ldif-wrap=no -b "cn=krbcontainer,$OBASEDN" "(krbPrincipalName=$1)" dn | sed -n 's/^dn: //p'
}
oldapmod() { ldap ldapmodify >>"$W/log/ldapmodify.log" 2>&1; }

export_keytabs() {  # from the LDAP database (the KDC that does constrained delegation)
    local pr
    rm -f "$W/http.keytab" "$W/svc_awseg.keytab" "$W/domain.keytab"
    kadm ldap "ktadd -k $W/http.keytab -norandkey $TARGET_SPN"
    kadm ldap "ktadd -k $W/svc_awseg.keytab -norandkey svc_awseg"
    for pr in "krbtgt/$REALM" "$TARGET_SPN" "HTTP/other.$DNSDOMAIN" svc_awseg HTTP/svc_awseg \
              svc_nopt svc_notallowed svc_nodeleg HTTP/svc_nopt HTTP/svc_nopa alice bob carol; do
        kadm ldap "ktadd -k $W/domain.keytab -norandkey $pr"
    done
    klist -k "$W/http.keytab" 2>/dev/null | grep -q " $TARGET_SPN@$REALM\$" || lab_die "keytab $W/http.keytab has no $TARGET_SPN"
    klist -k "$W/domain.keytab" 2>/dev/null | grep -q " krbtgt/$REALM@$REALM\$" || lab_die "keytab $W/domain.keytab has no krbtgt"
    chmod 600 "$W"/*.keytab
}

write_password_files() {
    local a
    for a in svc_awseg svc_nopt svc_notallowed svc_nodeleg svc_nopa; do echo "$SVC_PW" >"$W/$a.password"; done
    echo "$ALICE_PW" >"$W/users.password"
    chmod 600 "$W"/*.password
}

write_apache() {  # Apache + mod_auth_gssapi as exchange.lab.test, config under DIR/apache
    rm -rf "$W/apache"
    lab_write_apache "$W/apache" "$W/http.keytab" "$EXCHANGE_HOST" "$HTTPD" MIT
}

start_apache() {
    daemon_start "$NSK" "$W/run/apache.pid" "$W/log/apache.out" \
        env KRB5_CONFIG="$W/krb5-server.conf" KRB5RCACHEDIR="$W/apache/rcache" \
        KRB5_TRACE="$W/apache/logs/krb5_trace.log" apache2 -f "$W/apache/httpd.conf" -DFOREGROUND
    local i
    for i in $(seq 1 100); do
        wait_listen "$NSK" tcp "$HTTPD" 80 1 && return 0
        alive "$(cat "$W/run/apache.pid")" || break
    done
    cat "$W/log/apache.out" "$W/apache/logs/error.log" >&2 2>/dev/null
    lab_die "apache does not listen on $HTTPD:80"
}

write_lab_env() {  # FILE
    local mit
    mit=$(dpkg-query -W -f='${Version}' krb5-kdc 2>/dev/null || echo unknown)
    cat >"$1" <<EOF
# kcdscope MIT krb5 lab; written by tests/lab/mit-kdc.sh up (shell-sourceable KEY=VALUE)
LAB_KIND=mit
LAB_DIR=$W
LAB_NS=$NSC
LAB_NS_GW=$NSC
LAB_NS_DC=$NSK
LAB_IFACE=$IFC
LAB_GW_ADDR=$CLIENT
LAB_HOSTS_FILE=$NETNS_ETC/hosts
LAB_REALM=$REALM
LAB_DNS_DOMAIN=$DNSDOMAIN
LAB_MIT_VERSION=$mit
LAB_KDC_HOST=kdc.$DNSDOMAIN
LAB_KDC_ADDR=$LKDC
LAB_KDC_PORT=88
LAB_KRB5_CONF=$W/krb5.conf
LAB_KDC_SMALL_UDP_ADDR=$LSMALL
LAB_KDC_SMALL_UDP_MAX=300
LAB_KRB5_CONF_SMALL_UDP=$W/krb5-small-udp.conf
LAB_KRB5_CONF_TCP_ONLY=$W/krb5-tcp-only.conf
LAB_KDC_DEAD_ADDR=$DEAD
LAB_KRB5_CONF_FAILOVER=$W/krb5-failover.conf
LAB_KRB5_CONF_DEAD=$W/krb5-dead.conf
LAB_KDC_DB2_ADDR=$KDC
LAB_KDC_DB2_SMALL_UDP_ADDR=$SMALL
LAB_KRB5_CONF_DB2=$W/krb5-db2.conf
LAB_KDC_SKEW_ADDR=$SKDC
LAB_KDC_SKEW_SECONDS=-600
LAB_KDC_LOG=$W/log/kdc-ldap.log
LAB_KDC_SMALL_UDP_LOG=$W/log/kdc-ldapsmall.log
LAB_EXCHANGE_HOST=$EXCHANGE_HOST
LAB_EXCHANGE_ADDR=$HTTPD
LAB_EXCHANGE_PORT=80
LAB_EXCHANGE_URL=http://$EXCHANGE_HOST/Microsoft-Server-ActiveSync
LAB_WHOAMI_URL=http://$EXCHANGE_HOST/whoami
LAB_TARGET_SPN=$TARGET_SPN
LAB_TARGET_GSS_NAME=HTTP@$EXCHANGE_HOST
LAB_HTTP_KEYTAB=$W/http.keytab
LAB_DOMAIN_KEYTAB=$W/domain.keytab
LAB_SVC_USER=svc_awseg
LAB_SVC_PRINCIPAL=svc_awseg@$REALM
LAB_SVC_PASSWORD_FILE=$W/svc_awseg.password
LAB_SVC_KEYTAB=$W/svc_awseg.keytab
LAB_SVC_NOPT_PRINCIPAL=svc_nopt@$REALM
LAB_SVC_NOPT_PASSWORD_FILE=$W/svc_nopt.password
LAB_SVC_NOT_ALLOWED_PRINCIPAL=svc_notallowed@$REALM
LAB_SVC_NOT_ALLOWED_PASSWORD_FILE=$W/svc_notallowed.password
LAB_SVC_NODELEG_PRINCIPAL=svc_nodeleg@$REALM
LAB_SVC_NODELEG_PASSWORD_FILE=$W/svc_nodeleg.password
LAB_SVC_NOPA_PRINCIPAL=HTTP/svc_nopa@$REALM
LAB_SVC_NOPA_PASSWORD_FILE=$W/svc_nopa.password
LAB_USER=alice
LAB_USER_UPN=alice@$DNSDOMAIN
LAB_USER_NEW=bob
LAB_USER_NEW_UPN=bob@$DNSDOMAIN
LAB_USER_DISABLED=carol
LAB_USER_DISABLED_UPN=carol@$DNSDOMAIN
LAB_USER_UNKNOWN_UPN=nosuch@$DNSDOMAIN
LAB_USERS_PASSWORD_FILE=$W/users.password
LAB_SPN_NOT_ALLOWED=HTTP/other.$DNSDOMAIN
LAB_SPN_UNKNOWN=HTTP/nosuch.$DNSDOMAIN
LAB_APACHE_PID_FILE=$W/run/apache.pid
LAB_APACHE_ERROR_LOG=$W/apache/logs/error.log
LAB_SELFCHECK=$W/log/selfcheck.txt
LAB_OTHER_REALM=$OREALM
LAB_OTHER_KDC_ADDR=$OKDC
LAB_OTHER_KDC_LOG=$W/log/kdc-other.log
LAB_OTHER_USER_UPN=dave@$ODNSDOMAIN
LAB_NOTRUST_REALM=NOTRUST.TEST
EOF
}

# uclient STEP CONF-FILE CMD... : like `client`, with a configuration file of `up`
uclient() {
    local step=$1 conf=$2; shift 2
    local tr="$W/trace/$CASE.$step"
    rm -f "$tr"
    ip netns exec "$NSC" env KRB5_CONFIG="$conf" KRB5CCNAME="FILE:$W/cc/$CASE" \
        KRB5_TRACE="$tr" "$@" >"$W/out/$CASE.$step" 2>&1
    RC[$step]=$?
    return 0
}

# gss STEP LAB-ENV ARGS... : tests/lab/gss-token.py (its own private ccache)
gss() {
    local step=$1; shift
    rm -f "$W/trace/$CASE.$step"
    ip netns exec "$NSC" "$PY" "$HERE/gss-token.py" "$@" --trace "$W/trace/$CASE.$step" \
        >"$W/out/$CASE.$step" 2>"$W/out/$CASE.$step.err"
    RC[$step]=$?
    return 0
}
remote_user_is() {  # remote_user_is STEP NAME... : the CGI saw one of NAMEs
    local n
    for n in "${@:2}"; do grep -qxF "REMOTE_USER=$n" "$W/out/$CASE.$1" && return 0; done
    return 1
}

no_token_401() {  # GET without Authorization: 401 + WWW-Authenticate: Negotiate
    ip netns exec "$NSC" "$PY" - "$EXCHANGE_HOST" <<'EOF'
import http.client, sys
c = http.client.HTTPConnection(sys.argv[1], 80, timeout=10)
c.request("GET", "/whoami")
r = c.getresponse()
r.read()
sys.exit(0 if r.status == 401 and r.getheader("WWW-Authenticate") == "Negotiate" else 1)
EOF
}

# up_self_check ENV-FILE : MIT's own S4U2Self + S4U2Proxy and an HTTP GET with the token,
# and each special account and KDC once. PASS/FAIL lines in DIR/log/selfcheck.txt.
up_self_check() {
    local env=$1 upn=alice@$DNSDOMAIN ent="alice\\@$DNSDOMAIN@$REALM"
    CHECKS=$W/log/selfcheck.txt
    : >"$CHECKS"
    NCHECK=0 NFAIL=0

    prepare selfcheck_kvno
    uclient kinit "$W/krb5.conf" kinit svc_awseg <"$W/svc_awseg.password"
    uclient kvno "$W/krb5.conf" kvno -U "$upn" -P "$TARGET_SPN"
    check "kinit svc_awseg (password file) at the LDAP KDC exits 0" rc_is kinit 0
    check_flow kinit "U>.4 ERR25 U>.4 AS-REP"
    check "kvno -U $upn -P $TARGET_SPN exits 0" rc_is kvno 0
    check_flow kvno "U>.4 ERR25 U>.4 TGS-REP T>.4 TGS-REP" "realm lookup, S4U2Self, S4U2Proxy"
    check "final ticket: $ent -> $TARGET_SPN@$REALM" tr_has kvno "TGS reply is for alice\\\\@$DNSDOMAIN@$REALM -> $TARGET_SPN@$REALM"
    check "KDC logged CONSTRAINED-DELEGATION for alice" klog_has ldap "CONSTRAINED-DELEGATION s4u-client=alice"

    prepare selfcheck_http_spnego
    gss gss "$env" "$upn" "$TARGET_SPN" --mech spnego --url "http://$EXCHANGE_HOST/whoami"
    check "gss-token.py $upn SPNEGO (impersonate + init_sec_context + GET) exits 0" rc_is gss 0
    check "S4U2Proxy ticket for the user (not the service account): $ent -> $TARGET_SPN" tr_has gss "TGS reply is for alice\\\\@$DNSDOMAIN@$REALM -> $TARGET_SPN@$REALM"
    check "HTTP 200 with the SPNEGO token" out_has gss '^HTTP_STATUS=200$'
    check "Apache REMOTE_USER is alice (alice@$REALM or $ent)" remote_user_is gss "alice@$REALM" "$ent"
    check "mutual authentication: Apache's Negotiate token completes the context" out_has gss '^MUTUAL_AUTH=ok$'

    prepare selfcheck_http_krb5
    gss gss "$env" alice "$TARGET_SPN" --mech krb5 --kinit --url "http://$EXCHANGE_HOST/Microsoft-Server-ActiveSync?Cmd=Sync"
    check "gss-token.py alice (NT-PRINCIPAL) krb5 mech, kinit ccache: exits 0" rc_is gss 0
    check "HTTP 200 with the raw krb5 token" out_has gss '^HTTP_STATUS=200$'
    check "Apache REMOTE_USER=alice@$REALM" remote_user_is gss "alice@$REALM"
    check "GET without a token: 401 + WWW-Authenticate: Negotiate" no_token_401

    prepare selfcheck_small_udp
    KLOG_OFF[ldapsmall]=$(wc -l <"$W/log/kdc-ldapsmall.log")
    uclient kinit "$W/krb5-small-udp.conf" kinit svc_awseg <"$W/svc_awseg.password"
    uclient kvno "$W/krb5-small-udp.conf" kvno -U "$upn" -P "$TARGET_SPN"
    check "300-byte UDP LDAP KDC: kinit and kvno -U -P exit 0" rc_both0 kinit kvno
    check_flow kinit "U>.7 ERR25 U>.7 ERR52 T>.7 AS-REP" "AS-REP too big for UDP: 52, then TCP"
    # (MIT's S4U code retries "tcp only" without tracing the 52 it got; the 88-byte UDP answer is it)
    check_flow kvno "U>.7 ERR25 U>.7 T>.7 TGS-REP U>.7 T>.7 TGS-REP" "S4U2Self and S4U2Proxy: each answered on UDP by 52, then sent again over TCP"
    check "both TGS-REQs were sent again 'tcp only' after a short UDP answer" eval \
        '[ "$(grep -c "Sending request (.*) to LAB.TEST (tcp only)" "$W/trace/$CASE.kvno")" = 2 ]'
    check "the 300-byte KDC (LDAP database) logged CONSTRAINED-DELEGATION" klog_has ldapsmall "CONSTRAINED-DELEGATION s4u-client=alice"
    check "gss-token.py through the 300-byte KDC: HTTP 200" eval \
        'gss gss2 "$env" "$upn" "$TARGET_SPN" --krb5-conf "$W/krb5-small-udp.conf" --url "http://$EXCHANGE_HOST/whoami"; rc_is gss2 0 && out_has gss2 "^HTTP_STATUS=200$"'

    local acct
    for acct in svc_notallowed svc_nodeleg svc_nopt; do
        prepare "selfcheck_$acct"
        uclient kinit "$W/krb5.conf" kinit "$acct" <"$W/$acct.password"
        uclient kvno "$W/krb5.conf" kvno -U "$upn" -P "$TARGET_SPN"
        check "kinit $acct exits 0" rc_is kinit 0
        check "kvno -U $upn -P $TARGET_SPN as $acct exits non-zero" rc_fail kvno
        check_flow kvno "U>.4 ERR25 U>.4 TGS-REP T>.4 ERR13" "S4U2Self ok, S4U2Proxy refused: BADOPTION"
        if [ $acct = svc_nopt ]; then
            check "KDC logged EVIDENCE_TKT_NOT_FORWARDABLE" klog_has ldap EVIDENCE_TKT_NOT_FORWARDABLE
        else
            check "KDC logged UNSUPPORTED_S4U2PROXY_REQUEST" klog_has ldap "UNSUPPORTED_S4U2PROXY_REQUEST.*for $TARGET_SPN@$REALM"
        fi
    done

    prepare selfcheck_users
    uclient kinit "$W/krb5.conf" kinit svc_awseg <"$W/svc_awseg.password"
    uclient bob "$W/krb5.conf" kvno -U "bob@$DNSDOMAIN" -P "$TARGET_SPN"
    uclient carol "$W/krb5.conf" kvno -I carol -P "$TARGET_SPN"
    uclient nosuch "$W/krb5.conf" kvno -U "nosuch@$DNSDOMAIN" -P "$TARGET_SPN"
    check "kvno -U bob@$DNSDOMAIN -P $TARGET_SPN exits 0" rc_is bob 0
    check "kvno -I carol (disabled, -allow_tix): S4U2Self refused with 18 CLIENT_REVOKED" tr_has carol "Got cred; $((-1765328384 + 18))/"
    check "kvno -U nosuch@$DNSDOMAIN: the AS-REQ probe gets 6 C_PRINCIPAL_UNKNOWN" tr_has nosuch "Received error from KDC: $((-1765328384 + 6))/"

    prepare selfcheck_cross_realm
    KLOG_OFF[other]=$(wc -l <"$W/log/kdc-other.log")
    uclient kinit "$W/krb5.conf" kinit svc_awseg <"$W/svc_awseg.password"
    uclient kvno "$W/krb5.conf" kvno -I "dave@$OREALM" -P "$TARGET_SPN"
    check "MIT's client: kvno -I dave@$OREALM -P $TARGET_SPN (cross-realm S4U2Self) exits 0" rc_is kvno 0
    check "final ticket: dave@$OREALM -> $TARGET_SPN@$REALM" tr_has kvno "TGS reply is for dave@$OREALM -> $TARGET_SPN@$REALM"
    check "$OREALM's KDC referred the S4U2Self back to $REALM" klog_has other "krbtgt/$REALM@$OREALM"

    prepare selfcheck_other_kdcs
    uclient kinit "$W/krb5-db2.conf" kinit alice <"$W/users.password"
    uclient kvno "$W/krb5-db2.conf" kvno "$TARGET_SPN"
    check "db2 KDC: kinit alice and kvno $TARGET_SPN exit 0" rc_both0 kinit kvno
    check "the dead KDC accepts TCP and never answers (UDP or TCP)" silent_kdc_check "$NSC" "$DEAD"
    check "$W/http.keytab holds $TARGET_SPN" eval 'klist -k "$W/http.keytab" | grep -q " $TARGET_SPN@$REALM\$"'

    echo "lab: self-check: $((NCHECK - NFAIL)) passed, $NFAIL failed ($CHECKS)" >&2
    [ "$NFAIL" = 0 ] || { grep '^FAIL' "$CHECKS" >&2; lab_die "self-check failed"; }
}

UP_OK=0
up_exit() {
    local rc=$?
    [ $UP_OK = 1 ] && return 0
    set +e
    if [ "${KCDMIT_KEEP_ON_FAILURE:-0}" = 1 ]; then
        echo "lab: up failed; KCDMIT_KEEP_ON_FAILURE=1: daemons and namespaces left (run: $0 down $W)" >&2
        return 0
    fi
    echo "lab: up failed; stopping what it started (logs in $W/log)" >&2
    stop_up_daemons
    up_net_down
    rm -f "$W/lab.env" "$W/lab.env.tmp"
    exit $rc
}

main_up() {
    local t0=$SECONDS
    lab_require_root
    lab_install "${PACKAGES[@]}" "${UP_PACKAGES[@]}"
    FAKETIME_LIB=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -1)
    [ -n "$FAKETIME_LIB" ] && [ -e "$FAKETIME_LIB" ] || lab_die "libfaketime.so.1 not found (package libfaketime)"
    "$PY" -c 'import gssapi' 2>/dev/null || lab_die "$PY has no gssapi module (package python3-gssapi)"
    up_dir "$1"
    if lab_is_up; then echo "lab: already up ($W/lab.env)" >&2; return 0; fi
    mkdir -p "$W/run"
    stop_up_daemons         # what an earlier `up` in DIR left
    rm -f "$W/lab.env"
    ns_guard
    chmod o+x "$W" 2>/dev/null || true
    rm -rf "$W/db2" "$W/ldap" "$W/ldapkdc" "$W/log" "$W/trace" "$W/out" "$W/cc" "$W/ldapi"
    mkdir -p "$W/run" "$W/log" "$W/trace" "$W/out" "$W/cc"
    trap up_exit EXIT
    trap 'exit 130' INT TERM
    EXTRA_ADDRS="$HTTPD $LSMALL $OKDC"
    make_network
    write_netns_etc
    write_server_confs
    write_up_client_confs
    setup_db2
    setup_ldap
    up_principals
    setup_other_realm
    export_keytabs
    write_password_files
    start_kdc db2 "$KDC"
    start_kdc small "$SMALL"
    start_kdc ldap "$LKDC"
    start_kdc ldapsmall "$LSMALL"
    KDC_REALM=$OREALM start_kdc other "$OKDC"
    start_kdc skew "$SKDC" LD_PRELOAD="$FAKETIME_LIB" FAKETIME="$KDC_SKEW"
    start_silent_kdc
    write_apache
    start_apache
    write_lab_env "$W/lab.env.tmp"
    up_self_check "$W/lab.env.tmp"
    mv "$W/lab.env.tmp" "$W/lab.env"
    UP_OK=1
    trap - EXIT INT TERM
    echo "lab: up in $((SECONDS - t0)) s; environment in $W/lab.env" >&2
}

main_down() {
    lab_require_root
    up_dir "$1"
    stop_up_daemons
    rm -f "$W/lab.env" "$W/lab.env.tmp" "$W/ldapi"
    local ns left busy=0
    for ns in "$NSC" "$NSK"; do
        left=$(ns_leftover_pids "$ns")
        if [ -n "${left// /}" ]; then
            echo "lab: namespace $ns kept: processes not started by this lab's pid files still run in it (pids: $left)" >&2
            busy=1
        fi
    done
    [ $busy = 0 ] || lab_die "down incomplete: stop those processes, then run down again"
    up_net_down
    echo "lab: down" >&2
}

main_status() {
    up_dir "$1"
    if lab_is_up; then echo up; else echo down; return 1; fi
}

case "${1:-}" in
    record) [ $# = 2 ] || usage; main_record "$2" ;;
    up)     [ $# = 2 ] || usage; main_up "$2" ;;
    down)   [ $# = 2 ] || usage; main_down "$2" ;;
    status) [ $# = 2 ] || usage; main_status "$2" ;;
    *) usage ;;
esac
