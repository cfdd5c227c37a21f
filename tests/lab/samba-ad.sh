#!/usr/bin/env bash
# samba-ad.sh: a real Samba Active Directory DC (KDC + LDAP) and an Apache "Exchange"
# (mod_auth_gssapi) inside network namespaces, for kcdscope's gateway and agent tests.
#
#   samba-ad.sh up DIR            provision (first time) and start the lab; writes DIR/lab.env
#   samba-ad.sh down DIR          stop what `up` started (pid files) and delete the namespaces
#   samba-ad.sh record DIR OUTDIR record pcaps of the constrained-delegation cases with real
#                                 MIT clients; OUTDIR/CHECKS.txt says what was verified
#   samba-ad.sh status DIR        exit 0 if the lab in DIR is up
#   samba-ad.sh kdc-clock DIR OFF restart the KDC with its clock shifted by OFF (libfaketime,
#                                 e.g. -10m; 0 restores the real clock)
#   samba-ad.sh incident DIR OUT KCDSCOPE
#                                 record the bundled incident: one gateway, a device user per
#                                 outcome (kcdscope kcd token as the gateway); OUT/incident.pcap
#
# Topology: two namespaces joined by a veth pair, so the client side looks like the
# gateway host of a deployment (the agent watches that host's interface):
#
#   kcdsmb-gw  eth0 10.88.0.1  <-- veth -->  kcdsmb-dc  eth0 10.88.0.2 dc1.lab.test (KDC :88, LDAP)
#   (gateway, clients, tcpdump)                          eth0 10.88.0.3 exchange.lab.test (Apache :80)
#                                                        eth0 10.88.0.9 a KDC that never answers
#                                                             (binds UDP and TCP 88; LAB_KDC_DEAD_ADDR)
#
# Inside kcdsmb-gw, `ip netns exec` bind-mounts /etc/netns/kcdsmb-gw/hosts over /etc/hosts,
# so dc1.lab.test and exchange.lab.test resolve there (and only there).
# Environment: KCDSMB_KDC_FAST=no starts the KDC with "kdc enable fast = no" (default yes);
# KCDSMB_KEEP_ON_FAILURE=1 leaves daemons and namespaces of a failed `up` for debugging.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS_GW=kcdsmb-gw
NS_DC=kcdsmb-dc
IFACE=eth0
NET=10.88.0
GW_ADDR=$NET.1
KDC_ADDR=$NET.2
EXCHANGE_ADDR=$NET.3
DEAD_ADDR=$NET.9        # binds UDP and TCP 88, reads, never answers (client fail-over tests)
REALM=LAB.TEST
DNSDOMAIN=lab.test
DOMAIN=LAB
KDC_HOST=dc1.$DNSDOMAIN
EXCHANGE_HOST=exchange.$DNSDOMAIN
TARGET_SPN=HTTP/$EXCHANGE_HOST
OTHER_SPN=HTTP/other.$DNSDOMAIN
UNKNOWN_SPN=HTTP/nosuch.$DNSDOMAIN
NETNS_ETC=/etc/netns/$NS_GW
SYS_PY=/usr/bin/python3     # Debian's python3 (has gssapi); the pyenv one on PATH does not
PACKAGES=(samba samba-ad-dc samba-ad-provision winbind krb5-user ldb-tools smbclient
          apache2 libapache2-mod-auth-gssapi python3-gssapi tcpdump ethtool libfaketime)
# Bumped when provision() creates other accounts: a cached domain without them is redone.
ACCOUNTS_VERSION=3

log() { echo "samba-ad: [${SECONDS}s] $*" >&2; }
die() { lab_die "samba-ad: $*"; }

usage() {
    sed -n '2,14p' "${BASH_SOURCE[0]}" | sed 's/^# \{0,1\}//' >&2
    exit 2
}

# abs_dir DIR : absolute path of DIR (created); refuse names that would break lab.env.
abs_dir() {
    mkdir -p "$1" || die "cannot create $1"
    local d
    d=$(cd "$1" && pwd -P)
    case "$d" in *[[:space:]\'\"\$\`\\]*) die "directory path must not contain spaces or quotes: $d" ;; esac
    echo "$d"
}

pid_alive() { [ -f "$1" ] && kill -0 "$(cat "$1")" 2>/dev/null; }

# wait_daemon NS PROTO PORT SECONDS PIDFILE WHAT LOG... : wait_port, but give up at once
# (with the daemon's logs) when the daemon has exited
wait_daemon() {
    local ns=$1 proto=$2 port=$3 secs=$4 pidfile=$5 what=$6 flag i; shift 6
    [ "$proto" = udp ] && flag=-uln || flag=-tln
    for i in $(seq 1 $((secs * 10))); do
        ip netns exec "$ns" ss $flag 2>/dev/null | awk '{print $4}' | grep -q ":$port\$" && return 0
        if ! pid_alive "$pidfile"; then
            tail -n 20 "$@" >&2 2>/dev/null || true
            die "$what exited before listening on $proto/$port"
        fi
        sleep 0.1
    done
    tail -n 20 "$@" >&2 2>/dev/null || true
    die "$what does not listen on $proto/$port in $ns after ${secs}s"
}

gw() { ip netns exec "$NS_GW" "$@"; }

set_paths() {
    D=$1
    SMB=$D/samba
    SMBCONF=$SMB/etc/smb.conf
    SAMLDB=$SMB/private/sam.ldb
    RUN=$D/run
    LOGS=$D/logs
    AP=$D/apache
    SAMBA_PID=$RUN/samba.pid
    APACHE_PID=$RUN/apache.pid
    SILENT_PID=$RUN/silent-kdc.pid
    STAMP=$SMB/.kcdsmb-provisioned
}

# ---------------------------------------------------------------- namespaces

# ns_foreign_pids NS : pids inside NS that are not the daemons recorded under $D
ns_foreign_pids() {
    local ns=$1 p mine=""
    ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$ns" || return 0
    for f in "$SAMBA_PID" "$APACHE_PID" "$SILENT_PID"; do [ -f "$f" ] && mine="$mine $(cat "$f")"; done
    for p in $(ip netns pids "$ns" 2>/dev/null); do
        local sid
        sid=$(ps -o sid= -p "$p" 2>/dev/null | tr -d ' ') || continue
        case " $mine " in *" $sid "*|*" $p "*) ;; *) echo "$p" ;; esac
    done
}

# ns_guard : refuse to take over namespaces that another lab's daemons still use
ns_guard() {
    local ns f i
    for ns in "$NS_GW" "$NS_DC"; do
        for i in $(seq 1 50); do    # workers of a daemon just stopped may still be exiting
            f=$(ns_foreign_pids "$ns")
            [ -n "$f" ] || break
            sleep 0.1
        done
        [ -z "$f" ] || die "namespace $ns is in use by processes not started from $D (pids: $(echo $f)); run 'samba-ad.sh down' on the lab that owns it"
    done
}

net_up() {
    local ns
    NET_CREATED=1
    netns_up "$NS_GW"
    netns_up "$NS_DC"
    ip -n "$NS_GW" link add "$IFACE" type veth peer name "$IFACE" netns "$NS_DC" \
        || die "cannot create the veth pair between $NS_GW and $NS_DC"
    for ns in "$NS_GW" "$NS_DC"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 net.ipv6.conf.default.disable_ipv6=1 2>/dev/null || true
    done
    ip -n "$NS_GW" addr add "$GW_ADDR/24" dev "$IFACE"
    ip -n "$NS_DC" addr add "$KDC_ADDR/24" dev "$IFACE"
    ip -n "$NS_DC" addr add "$EXCHANGE_ADDR/24" dev "$IFACE"
    ip -n "$NS_DC" addr add "$DEAD_ADDR/24" dev "$IFACE"
    # no checksum/segmentation offload on the "wire": captures then hold real checksums and
    # MTU-sized TCP segments (a 4 KB S4U2Proxy TGS-REQ spans several), as on a real NIC's tap
    for ns in "$NS_GW" "$NS_DC"; do
        ip netns exec "$ns" ethtool -K "$IFACE" tx off sg off tso off gso off gro off >/dev/null 2>&1 \
            || log "warning: ethtool -K $IFACE in $ns failed; captures will show offloaded segments"
    done
    ip -n "$NS_GW" link set "$IFACE" up
    ip -n "$NS_DC" link set "$IFACE" up
    mkdir -p "$NETNS_ETC"
    cat > "$NETNS_ETC/hosts" <<EOF
# written by tests/lab/samba-ad.sh for namespace $NS_GW (removed by 'down')
127.0.0.1 localhost
$GW_ADDR gw.$DNSDOMAIN gw
$KDC_ADDR $KDC_HOST dc1
$EXCHANGE_ADDR $EXCHANGE_HOST exchange
EOF
    # no DNS server exists in the lab; make lookups of other names fail at once
    printf '# written by tests/lab/samba-ad.sh\noptions timeout:1 attempts:1\n' > "$NETNS_ETC/resolv.conf"
    local i
    for i in $(seq 1 50); do
        ip -n "$NS_GW" link show "$IFACE" | grep -q 'state UP' \
            && ip -n "$NS_DC" link show "$IFACE" | grep -q 'state UP' && return 0
        sleep 0.1
    done
    die "the veth pair between $NS_GW and $NS_DC does not come up"
}

net_down() {
    netns_down "$NS_GW"
    netns_down "$NS_DC"
    rm -rf "$NETNS_ETC"
    rmdir /etc/netns 2>/dev/null || true    # only if no other lab keeps files there
}

# ---------------------------------------------------------------- provisioning

gen_password() { echo "Kcd1-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')-Aa"; }

stool() { samba-tool "$@" -s "$SMBCONF" >>"$LOGS/provision.log" 2>&1 || { tail -15 "$LOGS/provision.log" >&2; die "samba-tool $* failed (log: $LOGS/provision.log)"; }; }

stamp_text() { echo "$(samba -V) accounts $ACCOUNTS_VERSION"; }

provision() {
    log "provisioning Samba AD DC (realm $REALM, domain $DOMAIN) into $SMB"
    rm -rf "$SMB"
    mkdir -p "$SMB" "$RUN" "$LOGS"
    : > "$LOGS/provision.log"
    local pw a
    for a in admin svc_awseg svc_nopt svc_nodeleg svc_stale users exchange other; do
        gen_password > "$D/$a.password"
    done
    chmod 600 "$D"/*.password
    lab_samba_provision "$SMB" "$REALM" "$DOMAIN" "$KDC_ADDR" "$D/admin.password" "$LOGS/provision.log"
    # service account used by the gateway: constrained delegation + protocol transition
    stool user create svc_awseg "$(cat "$D/svc_awseg.password")"
    stool spn add HTTP/svc_awseg svc_awseg
    stool delegation for-any-protocol svc_awseg on
    stool delegation add-service svc_awseg "$TARGET_SPN"
    # delegation to Exchange, but "Kerberos only" (no protocol transition)
    stool user create svc_nopt "$(cat "$D/svc_nopt.password")"
    stool spn add HTTP/svc_nopt svc_nopt
    stool delegation add-service svc_nopt "$TARGET_SPN"
    # protocol transition on, but no service in msDS-AllowedToDelegateTo
    stool user create svc_nodeleg "$(cat "$D/svc_nodeleg.password")"
    stool spn add HTTP/svc_nodeleg svc_nodeleg
    stool delegation for-any-protocol svc_nodeleg on
    # set up like svc_awseg; its keytab is exported below, then its password changed, so
    # the keytab holds an old key version (a stale keytab)
    stool user create svc_stale "$(cat "$D/svc_stale.password")"
    stool spn add HTTP/svc_stale svc_stale
    stool delegation for-any-protocol svc_stale on
    stool delegation add-service svc_stale "$TARGET_SPN"
    # the Exchange server and a second web server that is not in svc_awseg's list
    stool computer create EXCHANGE --service-principal-name="$TARGET_SPN"
    stool user setpassword 'EXCHANGE$' --newpassword="$(cat "$D/exchange.password")"
    stool user enable 'EXCHANGE$'
    stool computer create OTHER --service-principal-name="$OTHER_SPN"
    stool user setpassword 'OTHER$' --newpassword="$(cat "$D/other.password")"
    stool user enable 'OTHER$'
    # users (one password for all of them)
    pw=$(cat "$D/users.password")
    stool user create alice "$pw" --mail-address=alice@$DNSDOMAIN
    stool user create bob "$pw" --mail-address=bob@$DNSDOMAIN
    stool user create carol "$pw" --mail-address=carol@$DNSDOMAIN
    stool user disable carol
    # "Account is sensitive and cannot be delegated" (UF_NOT_DELEGATED)
    stool user create frank "$pw" --mail-address=frank@$DNSDOMAIN
    stool user sensitive frank on
    # an account that has expired
    stool user create ivan "$pw" --mail-address=ivan@$DNSDOMAIN
    stool user setexpiry ivan --days=0
    # the bundled incident's other devices: a user in 400 groups (a PAC too large for
    # UDP), and users whose gateway is misconfigured or whose KDC's clock is off
    stool user create grace "$pw" --mail-address=grace@$DNSDOMAIN
    stool user create erin "$pw" --mail-address=erin@$DNSDOMAIN
    stool user create dave "$pw" --mail-address=dave@$DNSDOMAIN
    local gbase gl=$SMB/groups.ldif i
    gbase=$(echo "$DNSDOMAIN" | sed 's/^/DC=/; s/\./,DC=/g')
    : > "$gl"
    for i in $(seq 1 400); do
        printf 'dn: CN=grp%03d,CN=Users,%s\nobjectClass: group\nsAMAccountName: grp%03d\nmember: CN=grace,CN=Users,%s\n\n' \
            "$i" "$gbase" "$i" "$gbase" >> "$gl"
    done
    ldbadd -H "$SAMLDB" "$gl" >>"$LOGS/provision.log" 2>&1 \
        || { tail -5 "$LOGS/provision.log" >&2; die "ldbadd of grace's 400 groups failed"; }

    # AES for every SPN account (Samba 4.17 issues RC4 tickets without it)
    lab_samba_aes "$SMB" "$DNSDOMAIN" "$LOGS/provision.log" "CN=svc_awseg,CN=Users" "CN=svc_nopt,CN=Users" \
        "CN=svc_nodeleg,CN=Users" "CN=svc_stale,CN=Users" "CN=EXCHANGE,CN=Computers" "CN=OTHER,CN=Computers"

    # keytabs: Exchange's (for Apache), the service account's, and the whole domain
    # (the last one lets tshark/tests decrypt tickets and FAST armor in the lab's captures)
    rm -f "$D/http.keytab" "$D/svc_awseg.keytab" "$D/domain.keytab"
    stool domain exportkeytab "$D/http.keytab" --principal="$TARGET_SPN"
    stool domain exportkeytab "$D/svc_awseg.keytab" --principal=svc_awseg@$REALM
    stool domain exportkeytab "$D/domain.keytab"
    rm -f "$D/svc_stale.keytab"
    stool domain exportkeytab "$D/svc_stale.keytab" --principal=svc_stale@$REALM
    stool user setpassword svc_stale --newpassword="$(gen_password)"
    stamp_text > "$STAMP"
}

write_smb_fast_option() {
    local fast=${KCDSMB_KDC_FAST:-yes}
    case "$fast" in yes|no) ;; *) die "KCDSMB_KDC_FAST must be yes or no" ;; esac
    # (re)write our settings block right after [global]
    awk -v fast="$fast" '
        /^\t# kcdsmb begin/ { skip=1; next }
        /^\t# kcdsmb end/   { skip=0; next }
        skip { next }
        { print }
        /^\[global\]/ {
            print "\t# kcdsmb begin"
            print "\tkdc enable fast = " fast
            print "\tlog level = 1 kerberos:3 auth_audit:3"
            print "\tmax log size = 0"
            print "\t# kcdsmb end"
        }' "$SMBCONF" > "$SMBCONF.new" && mv "$SMBCONF.new" "$SMBCONF"
    KDC_FAST=$fast
}

write_krb5_conf() {
    cat > "$D/krb5.conf" <<EOF
# MIT client configuration for the Samba AD lab (use inside namespace $NS_GW)
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    dns_canonicalize_hostname = false
    rdns = false
    forwardable = true
    kdc_timesync = 1
    default_ccache_name = FILE:$RUN/krb5cc_default

[realms]
    $REALM = {
        kdc = $KDC_ADDR:88
        default_domain = $DNSDOMAIN
    }

[domain_realm]
    .$DNSDOMAIN = $REALM
    $DNSDOMAIN = $REALM
EOF
    # the same with the never-answering KDC first (fail-over), or alone
    sed "s|^        kdc = $KDC_ADDR:88\$|        kdc = $DEAD_ADDR:88\n        kdc = $KDC_ADDR:88|" "$D/krb5.conf" > "$D/krb5-failover.conf"
    sed "s|^        kdc = $KDC_ADDR:88\$|        kdc = $DEAD_ADDR:88|" "$D/krb5.conf" > "$D/krb5-dead.conf"
}

# ---------------------------------------------------------------- apache

write_apache() {
    lab_write_apache "$AP" "$D/http.keytab" "$EXCHANGE_HOST" "$EXCHANGE_ADDR" "Samba AD"
}

# ---------------------------------------------------------------- lab.env

write_lab_env() {
    local ver
    ver=$(samba -V | awk '{print $2}')
    cat > "$D/lab.env.tmp" <<EOF
# kcdscope Samba AD lab; written by tests/lab/samba-ad.sh up (shell-sourceable KEY=VALUE)
LAB_KIND=samba
LAB_DIR=$D
LAB_NS=$NS_GW
LAB_NS_GW=$NS_GW
LAB_NS_DC=$NS_DC
LAB_IFACE=$IFACE
LAB_GW_ADDR=$GW_ADDR
LAB_HOSTS_FILE=$NETNS_ETC/hosts
LAB_REALM=$REALM
LAB_DOMAIN=$DOMAIN
LAB_DNS_DOMAIN=$DNSDOMAIN
LAB_KDC_HOST=$KDC_HOST
LAB_KDC_ADDR=$KDC_ADDR
LAB_KDC_PORT=88
LAB_KDC_FAST=$KDC_FAST
LAB_KRB5_CONF=$D/krb5.conf
LAB_KDC_DEAD_ADDR=$DEAD_ADDR
LAB_KRB5_CONF_FAILOVER=$D/krb5-failover.conf
LAB_KRB5_CONF_DEAD=$D/krb5-dead.conf
LAB_SAMBA_VERSION=$ver
LAB_SMB_CONF=$SMBCONF
LAB_SAM_LDB=$SAMLDB
LAB_ADMIN_PASSWORD_FILE=$D/admin.password
LAB_EXCHANGE_HOST=$EXCHANGE_HOST
LAB_EXCHANGE_ADDR=$EXCHANGE_ADDR
LAB_EXCHANGE_PORT=80
LAB_EXCHANGE_URL=http://$EXCHANGE_HOST/Microsoft-Server-ActiveSync
LAB_WHOAMI_URL=http://$EXCHANGE_HOST/whoami
LAB_TARGET_SPN=$TARGET_SPN
LAB_TARGET_GSS_NAME=HTTP@$EXCHANGE_HOST
LAB_HTTP_KEYTAB=$D/http.keytab
LAB_DOMAIN_KEYTAB=$D/domain.keytab
LAB_SVC_USER=svc_awseg
LAB_SVC_PRINCIPAL=svc_awseg@$REALM
LAB_SVC_PASSWORD_FILE=$D/svc_awseg.password
LAB_SVC_KEYTAB=$D/svc_awseg.keytab
LAB_SVC_NOPT_PRINCIPAL=svc_nopt@$REALM
LAB_SVC_NOPT_PASSWORD_FILE=$D/svc_nopt.password
LAB_SVC_NODELEG_PRINCIPAL=svc_nodeleg@$REALM
LAB_SVC_NODELEG_PASSWORD_FILE=$D/svc_nodeleg.password
LAB_SVC_NOT_ALLOWED_PRINCIPAL=svc_nodeleg@$REALM
LAB_SVC_NOT_ALLOWED_PASSWORD_FILE=$D/svc_nodeleg.password
LAB_USER=alice
LAB_USER_UPN=alice@$DNSDOMAIN
LAB_USER_NEW=bob
LAB_USER_NEW_UPN=bob@$DNSDOMAIN
LAB_USER_DISABLED=carol
LAB_USER_DISABLED_UPN=carol@$DNSDOMAIN
LAB_USER_UNKNOWN_UPN=nosuch@$DNSDOMAIN
LAB_USER_NOT_DELEGABLE_UPN=frank@$DNSDOMAIN
LAB_USER_EXPIRED_UPN=ivan@$DNSDOMAIN
LAB_SVC_STALE_PRINCIPAL=svc_stale@$REALM
LAB_SVC_STALE_KEYTAB=$D/svc_stale.keytab
LAB_KDC_UNRESOLVABLE_HOST=dc9.$DNSDOMAIN
LAB_USERS_PASSWORD_FILE=$D/users.password
LAB_SPN_NOT_ALLOWED=$OTHER_SPN
LAB_SPN_UNKNOWN=$UNKNOWN_SPN
LAB_SAMBA_PID_FILE=$SAMBA_PID
LAB_APACHE_PID_FILE=$APACHE_PID
LAB_SILENT_KDC_PID_FILE=$SILENT_PID
LAB_APACHE_ERROR_LOG=$AP/logs/error.log
LAB_SAMBA_LOG=$SMB/log/samba.log
EOF
    mv "$D/lab.env.tmp" "$D/lab.env"
}

# ---------------------------------------------------------------- helpers for clients

# s4u_http.py: S4U2Self + S4U2Proxy through MIT GSSAPI, then HTTP requests with Negotiate.
write_s4u_http_py() {
    cat > "$RUN/s4u_http.py" <<'EOF'
"""S4U2Self + S4U2Proxy through MIT GSSAPI (python3-gssapi), then HTTP with Negotiate.

Run with /usr/bin/python3 inside the gateway namespace, KRB5CCNAME holding the service
account's TGT. Prints KEY=VALUE lines; exit 0 when every HTTP exchange happened (whatever
the status), 3 on a GSSAPI failure (GSS_ERROR/MAJOR/MINOR say which), 4 on an HTTP failure.

Pitfall (measured): the impersonated credential must be acquired for the mechanism the
context uses. impersonate() for krb5 only + a SPNEGO context makes MIT's SPNEGO ignore it
and use the default ccache: the token then names the service account, not the user."""
import argparse, base64, http.client, sys
import gssapi

ap = argparse.ArgumentParser()
ap.add_argument("--user", required=True, help="user to impersonate")
ap.add_argument("--name-type", choices=["principal", "enterprise"], default="principal",
                help="principal: NT-PRINCIPAL (alice@LAB.TEST); enterprise: NT-ENTERPRISE (alice@lab.test)")
ap.add_argument("--target", required=True, help="host-based service, e.g. HTTP@exchange.lab.test")
ap.add_argument("--host", required=True)
ap.add_argument("--port", type=int, default=80)
ap.add_argument("--path", default="/Microsoft-Server-ActiveSync")
ap.add_argument("--mech", choices=["spnego", "krb5"], default="spnego", help="token type sent to the server")
ap.add_argument("--impersonate-mech", choices=["same", "krb5"], default="same",
                help="krb5 with --mech spnego reproduces the pitfall above")
ap.add_argument("--no-token-first", action="store_true", help="first GET without a token")
ap.add_argument("--replay", action="store_true", help="send the same token twice")
a = ap.parse_args()

KRB5 = gssapi.MechType.kerberos
SPNEGO = gssapi.OID.from_int_seq("1.3.6.1.5.5.2")
ENTERPRISE = gssapi.OID.from_int_seq("1.2.840.113554.1.2.2.6")  # GSS_KRB5_NT_ENTERPRISE_NAME

def get(auth):
    c = http.client.HTTPConnection(a.host, a.port, timeout=10)
    h = {"Host": a.host, "User-Agent": "kcdscope-lab"}
    if auth:
        h["Authorization"] = "Negotiate " + auth
    c.request("GET", a.path, headers=h)
    r = c.getresponse()
    body = r.read().decode("utf-8", "replace")
    c.close()
    return r.status, r.getheader("WWW-Authenticate") or "", body

def show(n, st, www, body):
    print("HTTP%d_STATUS=%d" % (n, st))
    print("HTTP%d_WWW_AUTHENTICATE=%s" % (n, www[:40]))
    for line in body.splitlines():
        if "=" in line:
            print("HTTP%d_%s" % (n, line))

n = 0
try:
    if a.no_token_first:
        n += 1
        show(n, *get(None))
    ntype = ENTERPRISE if a.name_type == "enterprise" else gssapi.NameType.kerberos_principal
    user = gssapi.Name(a.user, ntype)
    mech = KRB5 if a.mech == "krb5" else SPNEGO
    imech = KRB5 if a.impersonate_mech == "krb5" else mech
    svc = gssapi.Credentials(usage="initiate")
    print("SERVICE=%s" % svc.name)
    imp = svc.impersonate(user, mechs=[imech], usage="initiate")
    print("IMPERSONATED=%s" % imp.name)
    ctx = gssapi.SecurityContext(name=gssapi.Name(a.target, gssapi.NameType.hostbased_service),
                                 creds=imp, usage="initiate", mech=mech,
                                 flags=gssapi.RequirementFlag.mutual_authentication)
    tok = base64.b64encode(ctx.step()).decode()
    print("TOKEN_LEN=%d" % len(tok))
except gssapi.exceptions.GSSError as e:
    print("GSS_ERROR=%s" % str(e).replace("\n", " "))
    print("MAJOR=%d" % e.maj_code)
    print("MINOR=%d" % e.min_code)
    sys.exit(3)
try:
    for _ in range(2 if a.replay else 1):
        n += 1
        show(n, *get(tok))
except OSError as e:
    print("HTTP_ERROR=%s" % e)
    sys.exit(4)
EOF
}

# ---------------------------------------------------------------- up / down / status

# start_samba OFFSET : the DC, its clock shifted by OFFSET (libfaketime syntax, 0: none)
start_samba() {
    local pre=()
    if [ "$1" != 0 ]; then
        local lib
        lib=$(dpkg -L libfaketime 2>/dev/null | grep '/libfaketime\.so\.1$' | head -1)
        [ -n "$lib" ] && [ -e "$lib" ] || die "libfaketime.so.1 not found (package libfaketime)"
        pre=(LD_PRELOAD="$lib" FAKETIME="$1" FAKETIME_DONT_RESET=1)
    fi
    log "starting samba (KDC + LDAP) in $NS_DC at $KDC_ADDR, clock offset $1"
    daemon_start "$NS_DC" "$SAMBA_PID" "$LOGS/samba.stdout" \
        env "${pre[@]}" KRB5_CONFIG="$SMB/private/krb5.conf" samba -F -M prefork -s "$SMBCONF"
    wait_daemon "$NS_DC" udp 88 30 "$SAMBA_PID" samba "$LOGS/samba.stdout" "$SMB/log/samba.log"
    wait_daemon "$NS_DC" tcp 88 30 "$SAMBA_PID" samba "$LOGS/samba.stdout" "$SMB/log/samba.log"
}

# The bundled incident: the gateway (kcdscope kcd token) serving one device user per
# outcome, recorded on the gateway side as the agent would see it.
cmd_incident() {
    lab_require_root
    set_paths "$(abs_dir "$1")"
    lab_is_up || die "the lab in $D is not up (run: $0 up $D)"
    local out kcd pw
    out=$(abs_dir "$2")
    kcd=$3
    [ -x "$kcd" ] || die "$kcd is not an executable kcdscope"
    pw=$D/svc_awseg.password
    gwconf() { # NAME SERVICE-ACCOUNT PASSWORD-FILE
        printf '[service_account]\nuser = "%s"\npassword_file = "%s"\n\n[kcd]\ntarget_spn = "%s"\n\n[kdc]\ntimeout_ms = 1500\n\n[[domain]]\nrealm = "%s"\ndomain_controllers = ["%s"]\n' \
            "$2" "$3" "$TARGET_SPN" "$REALM" "$KDC_HOST" > "$out/$1.toml"
    }
    gwconf gw svc_awseg "$pw"
    gwconf gw-nodeleg svc_nodeleg "$D/svc_nodeleg.password"
    token() { # CONFIG USER
        gw "$kcd" kcd token --config "$out/$1.toml" --user "$2" --url "http://$EXCHANGE_HOST/whoami" \
            >> "$out/incident.log" 2>&1 || true
    }
    : > "$out/incident.log"
    capture_start "$NS_GW" "$IFACE" "$out/incident.pcap" "port 88 or port 80"
    token gw alice@$DNSDOMAIN            # healthy
    token gw grace@$DNSDOMAIN            # 400 groups: RESPONSE_TOO_BIG, then TCP
    token gw nosuch@$DNSDOMAIN           # unknown user
    token gw carol@$DNSDOMAIN            # disabled
    token gw frank@$DNSDOMAIN            # sensitive, cannot be delegated
    token gw ivan@$DNSDOMAIN             # expired
    token gw-nodeleg erin@$DNSDOMAIN     # the gateway's account may not delegate
    capture_stop
    # The KDC's clock 10 minutes behind, a second capture (rotated) for dave.
    cmd_kdc_clock "$D" -10m
    capture_start "$NS_GW" "$IFACE" "$out/incident-clock.pcap" "port 88 or port 80"
    token gw dave@$DNSDOMAIN
    capture_stop
    cmd_kdc_clock "$D" 0
    log "incident recorded in $out (incident.pcap, incident-clock.pcap; kcdscope's output in incident.log)"
}

cmd_kdc_clock() {
    lab_require_root
    set_paths "$(abs_dir "$1")"
    lab_is_up || die "the lab in $D is not up"
    daemon_stop "$SAMBA_PID"
    start_samba "$2"
    # start_samba's wait matches port 88 on any address, and the never-answering KDC
    # holds one: wait for the DC's own address.
    { wait_listen "$NS_DC" udp "$KDC_ADDR" 88 30 && wait_listen "$NS_DC" tcp "$KDC_ADDR" 88 30; } \
        || die "samba does not listen on $KDC_ADDR:88 after the restart (log: $LOGS/samba.stdout)"
}

lab_is_up() {
    [ -f "$D/lab.env" ] && pid_alive "$SAMBA_PID" && pid_alive "$APACHE_PID" && pid_alive "$SILENT_PID" \
        && ip netns list 2>/dev/null | awk '{print $1}' | grep -qx "$NS_GW"
}

stop_daemons() {
    # both at once: each daemon_stop waits for its daemon to exit (about 1-2 s each)
    daemon_stop "$APACHE_PID" &
    daemon_stop "$SAMBA_PID" &
    daemon_stop "$SILENT_PID" &
    wait
}

smoke_kinit() {
    local i
    for i in $(seq 1 30); do
        if gw env KRB5_CONFIG="$D/krb5.conf" KRB5CCNAME="FILE:$RUN/smoke.ccache" \
              kinit svc_awseg@$REALM < "$D/svc_awseg.password" >"$LOGS/smoke-kinit.log" 2>&1; then
            return 0
        fi
        sleep 0.5
    done
    cat "$LOGS/smoke-kinit.log" >&2
    die "kinit svc_awseg@$REALM against $KDC_ADDR:88 fails (Samba log: $SMB/log/samba.log)"
}

smoke_http() {
    local out
    out=$(gw env KRB5_CONFIG="$D/krb5.conf" KRB5CCNAME="FILE:$RUN/smoke.ccache" \
          "$SYS_PY" "$RUN/s4u_http.py" --user alice@$REALM --target "HTTP@$EXCHANGE_HOST" \
          --host "$EXCHANGE_HOST" --path /whoami --no-token-first 2>&1) \
        || { echo "$out" >&2; die "S4U2Self/S4U2Proxy/HTTP smoke test failed"; }
    echo "$out" > "$LOGS/smoke-http.log"
    echo "$out" | grep -qx 'HTTP1_STATUS=401' || { echo "$out" >&2; die "Apache did not answer 401 without a token"; }
    echo "$out" | grep -qx 'HTTP2_STATUS=200' || { echo "$out" >&2; die "Apache did not accept the delegated ticket (log: $AP/logs/error.log)"; }
    echo "$out" | grep -qx "HTTP2_REMOTE_USER=alice@$REALM" || { echo "$out" >&2; die "Apache named another user"; }
    rm -f "$RUN/smoke.ccache"
}

cmd_up() {
    local t0=$SECONDS
    lab_require_root
    lab_install "${PACKAGES[@]}"
    local c
    for c in samba samba-tool ldbmodify apache2 kinit kvno klist tcpdump runuser ethtool; do
        command -v "$c" >/dev/null || die "$c not found after installing packages"
    done
    "$SYS_PY" -c 'import gssapi' 2>/dev/null || die "$SYS_PY has no gssapi module (package python3-gssapi)"
    set_paths "$(abs_dir "$1")"
    chmod o+x "$D" 2>/dev/null || true
    if lab_is_up && [ "$(. "$D/lab.env"; echo "$LAB_KDC_FAST")" = "${KCDSMB_KDC_FAST:-yes}" ]; then
        log "already up ($D/lab.env)"
        return 0
    fi
    stop_daemons
    mkdir -p "$RUN" "$LOGS"
    ns_guard
    # a failed `up` stops what it started (its logs stay under DIR/logs, DIR/samba/log, DIR/apache/logs)
    NET_CREATED=0
    trap 'up_failed $?' EXIT
    net_up
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp_text)" ] && [ -f "$D/http.keytab" ]; then
        log "reusing the provisioned domain in $SMB"
    else
        provision
    fi
    write_smb_fast_option
    write_krb5_conf
    write_s4u_http_py

    start_samba 0
    smoke_kinit

    # after Samba's wait_daemon (which matches port 88 on any address)
    log "starting a never-answering KDC at $DEAD_ADDR:88 in $NS_DC"
    silent_kdc_start "$NS_DC" "$DEAD_ADDR" "$SILENT_PID" "$LOGS/silent-kdc.log"
    { wait_listen "$NS_DC" udp "$DEAD_ADDR" 88 10 && wait_listen "$NS_DC" tcp "$DEAD_ADDR" 88 10; } \
        || { cat "$LOGS/silent-kdc.log" >&2; die "the never-answering KDC does not listen on $DEAD_ADDR:88"; }
    silent_kdc_check "$NS_GW" "$DEAD_ADDR" || die "$DEAD_ADDR:88 answered or refused (it must accept and stay silent)"

    log "starting apache as $EXCHANGE_HOST ($EXCHANGE_ADDR:80) in $NS_DC"
    write_apache
    daemon_start "$NS_DC" "$APACHE_PID" "$LOGS/apache.stdout" \
        env KRB5_CONFIG="$D/krb5.conf" KRB5RCACHEDIR="$AP/rcache" KRB5_TRACE="$AP/logs/krb5_trace.log" \
        apache2 -f "$AP/httpd.conf" -DFOREGROUND
    wait_daemon "$NS_DC" tcp 80 20 "$APACHE_PID" apache "$LOGS/apache.stdout" "$AP/logs/error.log"
    smoke_http

    write_lab_env
    trap - EXIT
    log "up in $((SECONDS - t0)) s; environment in $D/lab.env"
}

up_failed() {
    [ "$1" != 0 ] || return 0
    if [ "${KCDSMB_KEEP_ON_FAILURE:-0}" = 1 ]; then
        log "up failed; KCDSMB_KEEP_ON_FAILURE=1: daemons and namespaces left as they are (run: $0 down $D)"
        return 0
    fi
    log "up failed; stopping what it started (logs: $LOGS, $SMB/log, $AP/logs)"
    stop_daemons
    [ "$NET_CREATED" = 1 ] && net_down
    rm -f "$D/lab.env"
}

cmd_down() {
    set_paths "$(abs_dir "$1")"
    lab_require_root
    daemon_stop "$RUN/record-tcpdump.pid"
    stop_daemons
    rm -f "$D/lab.env"
    local ns left busy=0
    for ns in "$NS_GW" "$NS_DC"; do
        left=$(ns_leftover_pids "$ns")
        if [ -n "$left" ]; then
            log "namespace $ns kept: processes not started by this lab's pid files still run in it (pids: $left) - another lab, or a test that did not stop its processes"
            busy=1
        fi
    done
    [ $busy = 0 ] || die "down incomplete: stop those processes, then run down again"
    net_down
    log "down"
}

cmd_status() {
    set_paths "$(abs_dir "$1")"
    if lab_is_up; then echo "up"; else echo "down"; return 1; fi
}

# ---------------------------------------------------------------- record

# check CASE DESCRIPTION COMMAND... : one PASS/FAIL line in CHECKS.txt
check() {
    local name=$1 desc=$2; shift 2
    if "$@" >/dev/null 2>&1; then echo "PASS $name: $desc" >> "$CHECKS"
    else echo "FAIL $name: $desc" >> "$CHECKS"; FAILS=$((FAILS + 1)); fi
}
# kerr N : MIT's com_err value for protocol error N (ERROR_TABLE_BASE_krb5 + N), as in traces
kerr() { echo $((-1765328384 + $1)); }

# case_start NAME DESCRIPTION : capture Kerberos and HTTP on the gateway's interface
case_start() {
    CASE=$1
    CW=$OUT/work/$CASE
    rm -rf "$CW"; mkdir -p "$CW"
    CC=FILE:$CW/ccache
    TRACE=$CW/krb5.trace
    : > "$TRACE"
    SMBLOG_OFF=$(stat -c %s "$SMB/log/samba.log" 2>/dev/null || echo 0)
    printf '%s\t%s\n' "$CASE" "$2" >> "$OUT/work/cases.tsv"
    capture_start "$NS_GW" "$IFACE" "$CW/all.pcap" 'port 88 or port 80'
    echo "$CAPTURE_PID" > "$RUN/record-tcpdump.pid"
}

case_stop() {
    capture_stop
    rm -f "$RUN/record-tcpdump.pid"
    tcpdump -r "$CW/all.pcap" -w "$OUT/$CASE.pcap" 'port 88' 2>/dev/null
    if [ "$(tcpdump -r "$CW/all.pcap" -nn 'tcp port 80' 2>/dev/null | wc -l)" -gt 0 ]; then
        tcpdump -r "$CW/all.pcap" -w "$OUT/${CASE}_http.pcap" 'tcp port 80' 2>/dev/null
    fi
    # what the KDC said about this case (Samba's own log, "Kerberos:" lines)
    tail -c +"$((SMBLOG_OFF + 1))" "$SMB/log/samba.log" 2>/dev/null \
        | grep -E '^[[:space:]]+Kerberos: ' | sed 's/^[[:space:]]*//' > "$CW/kdc.log" || true
    cp "$TRACE" "$OUT/$CASE.trace"
}

# client CMD... : an MIT client in the gateway namespace with the case's ccache and trace
client() { gw env KRB5_CONFIG="$D/krb5.conf" KRB5CCNAME="$CC" KRB5_TRACE="$TRACE" "$@"; }

# kinit_as USER PASSWORDFILE : exit code in KINIT_RC
kinit_as() {
    set +e
    client kinit "$1@$REALM" < "$2" > "$CW/kinit.out" 2>&1
    KINIT_RC=$?
    set -e
}

# kvno_s4u -U|-I USER SPN : S4U2Self for USER then S4U2Proxy to SPN; exit code in KVNO_RC
kvno_s4u() {
    set +e
    client kvno "$1" "$2" -P "$3" > "$CW/kvno.out" 2>&1
    KVNO_RC=$?
    client klist -f > "$CW/klist.out" 2>&1
    set -e
}

# http_s4u ARGS... : s4u_http.py (S4U2Self + S4U2Proxy by GSSAPI, then HTTP); exit code in HTTP_RC
http_s4u() {
    set +e
    client "$SYS_PY" "$RUN/s4u_http.py" --target "HTTP@$EXCHANGE_HOST" --host "$EXCHANGE_HOST" "$@" \
        > "$CW/client.out" 2>&1
    HTTP_RC=$?
    set -e
}

in_trace() { grep -qF -- "$1" "$TRACE"; }
not_in_trace() { ! grep -qF -- "$1" "$TRACE"; }
in_file() { grep -q -- "$2" "$1"; }
in_file_fixed() { grep -qF -- "$2" "$1"; }
kdc_said() { grep -qF -- "$1" "$CW/kdc.log"; }
kdc_silent() { ! grep -qF -- "$1" "$CW/kdc.log"; }
rc_is() { [ "$1" = "$2" ]; }
rc_not() { [ "$1" != "$2" ]; }

# step_result PRINC : result ("Got cred; CODE/...") of the first TGS request made for PRINC
step_result() {
    awk -v p="after requesting $1 " 'index($0, p) { on=1 } on && /Got cred; / {
        sub(/.*Got cred; /, ""); sub(/\/.*/, ""); print; exit }' "$TRACE"
}
step_is() { [ "$(step_result "$1")" = "$2" ]; }

# ticket_flags SERVER : klist -f flags of the ticket for SERVER in the case's ccache
ticket_flags() {
    awk -v s="$1" 'NF == 5 && $5 == s { getline; sub(/.*Flags: /, ""); print; exit }' "$CW/klist.out"
}
flags_have() { ticket_flags "$1" | grep -q "$2"; }
flags_lack() { local f; f=$(ticket_flags "$1"); [ -n "$f" ] && ! echo "$f" | grep -q "$2"; }
ticket_for_client() { grep -A1 -E "[[:space:]]$1\$" "$CW/klist.out" | grep -qF "for client $2,"; }

# index_flow PCAP : message flow (U:AS-REQ U:ERR25 T:TGS-REQ ...) by tshark, for INDEX.txt
index_flow() {
    command -v tshark >/dev/null || { echo "(tshark not installed)"; return; }
    tshark -r "$1" -Y kerberos -T fields -e ip.proto -e kerberos.msg_type -e kerberos.error_code 2>/dev/null \
        | awk -F'\t' '{ t = ($1 == 17) ? "U" : "T"; split($2, m, ","); n = split($3, e, ",")
              name = (m[1] == 10) ? "AS-REQ" : (m[1] == 11) ? "AS-REP" : (m[1] == 12) ? "TGS-REQ" : \
                     (m[1] == 13) ? "TGS-REP" : (m[1] == 30) ? "ERR" e[1] : "MSG" m[1]
              printf "%s%s:%s", (NR > 1 ? " " : ""), t, name } END { print "" }'
}
http_flow() {
    command -v tshark >/dev/null || { echo "(tshark not installed)"; return; }
    tshark -r "$1" -Y http -T fields -e http.request.method -e http.authorization -e http.response.code 2>/dev/null \
        | awk -F'\t' '{ if ($1 != "") printf "%s%s%s", (NR > 1 ? " " : ""), $1, ($2 != "" ? "(Negotiate)" : "")
                        else printf " %s", $3 } END { print "" }'
}

cmd_record() {
    lab_require_root
    set_paths "$(abs_dir "$1")"
    lab_is_up || die "the lab in $D is not up (run: $0 up $D)"
    OUT=$(abs_dir "$2")
    CHECKS=$OUT/CHECKS.txt
    FAILS=0
    trap '[ -f "$RUN/record-tcpdump.pid" ] && kill -INT "$(cat "$RUN/record-tcpdump.pid")" 2>/dev/null; rm -f "$RUN/record-tcpdump.pid"' EXIT
    write_s4u_http_py
    rm -rf "$OUT/work"
    rm -f "$OUT"/*.pcap "$OUT"/*.trace "$OUT/INDEX.txt"
    mkdir -p "$OUT/work"
    local ver fast mit
    ver=$(. "$D/lab.env"; echo "$LAB_SAMBA_VERSION")
    fast=$(. "$D/lab.env"; echo "$LAB_KDC_FAST")
    mit=$(dpkg-query -W -f='${Version}' krb5-user 2>/dev/null || echo unknown)
    {
        echo "# kcdscope Samba AD lab: facts verified while recording, from client exit codes,"
        echo "# KRB5_TRACE (MIT), klist, HTTP answers and Samba's KDC log (not from the pcaps)."
        echo "# Samba $ver (kdc enable fast = $fast), MIT krb5 $mit, recorded $(date -u +%FT%TZ)"
    } > "$CHECKS"
    local svc=svc_awseg pwf=$D/svc_awseg.password upn=alice@$DNSDOMAIN
    local svcp=svc_awseg@$REALM easync="/Microsoft-Server-ActiveSync?Cmd=Sync&User=alice&DeviceId=LAB0001&DeviceType=iPhone"

    # ---- the gateway's flow: S4U2Self + S4U2Proxy by GSSAPI, SPNEGO token to Apache
    case_start ok_http "S4U2Self (NT-PRINCIPAL alice) + S4U2Proxy to $TARGET_SPN by GSSAPI, SPNEGO token, Apache 200"
    kinit_as $svc "$pwf"
    http_s4u --user alice@$REALM --name-type principal --path "$easync"
    case_stop
    check $CASE "kinit $svcp with its password exits 0" rc_is $KINIT_RC 0
    check $CASE "trace: the AS-REP does not fit UDP: Samba answers 52 RESPONSE_TOO_BIG ($(kerr 52)), kinit retries over TCP" \
        eval 'in_trace "Received error from KDC: $(kerr 52)/" && in_trace "retrying with TCP"'
    check $CASE "GSSAPI impersonate + init_sec_context + HTTP: exit 0" rc_is $HTTP_RC 0
    check $CASE "trace: S4U2Self TGS-REP alice@$REALM -> $svcp" in_trace "TGS reply is for alice@$REALM -> $svcp"
    check $CASE "trace: S4U2Proxy TGS-REP alice@$REALM -> $TARGET_SPN@$REALM" in_trace "TGS reply is for alice@$REALM -> $TARGET_SPN@$REALM"
    check $CASE "HTTP 200 for GET /Microsoft-Server-ActiveSync with Authorization: Negotiate" in_file "$CW/client.out" '^HTTP1_STATUS=200$'
    check $CASE "Apache REMOTE_USER=alice@$REALM" in_file_fixed "$CW/client.out" "HTTP1_REMOTE_USER=alice@$REALM"
    check $CASE "the 200 carries WWW-Authenticate: Negotiate <mutual-auth token>" in_file "$CW/client.out" '^HTTP1_WWW_AUTHENTICATE=Negotiate .'
    check $CASE "samba log: s4u2self ... impersonating alice@$REALM ... [forwardable]" kdc_said "impersonating alice@$REALM to service $svcp [forwardable]"
    check $CASE "samba log: constrained delegation for alice@$REALM from $svcp to $TARGET_SPN@$REALM" kdc_said "constrained delegation for alice@$REALM from $svcp ($svcp) to $TARGET_SPN@$REALM"

    case_start ok_http_enterprise "as ok_http, user named by UPN (NT-ENTERPRISE alice@lab.test): MIT probes with an AS-REQ first"
    kinit_as $svc "$pwf"
    http_s4u --user "$upn" --name-type enterprise --path "$easync"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "GSSAPI + HTTP: exit 0" rc_is $HTTP_RC 0
    check $CASE "trace: AS-REQ for the enterprise name first (Identified realm of client principal)" in_trace "Identified realm of client principal as $REALM"
    check $CASE "trace: S4U2Proxy TGS-REP alice\\@$DNSDOMAIN@$REALM -> $TARGET_SPN@$REALM" in_trace "TGS reply is for alice\\@$DNSDOMAIN@$REALM -> $TARGET_SPN@$REALM"
    check $CASE "HTTP 200" in_file "$CW/client.out" '^HTTP1_STATUS=200$'
    check $CASE "Apache REMOTE_USER keeps the enterprise form alice\\@$DNSDOMAIN@$REALM (Samba does not canonicalize the cname)" in_file_fixed "$CW/client.out" "HTTP1_REMOTE_USER=alice\\@$DNSDOMAIN@$REALM"

    case_start ok_http_krb5 "as ok_http, raw Kerberos GSS token (mech krb5, no SPNEGO) in Negotiate"
    kinit_as $svc "$pwf"
    http_s4u --user alice@$REALM --name-type principal --mech krb5 --path "$easync"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "GSSAPI + HTTP: exit 0" rc_is $HTTP_RC 0
    check $CASE "HTTP 200 for a raw krb5 token" in_file "$CW/client.out" '^HTTP1_STATUS=200$'
    check $CASE "Apache REMOTE_USER=alice@$REALM" in_file_fixed "$CW/client.out" "HTTP1_REMOTE_USER=alice@$REALM"

    case_start spnego_wrong_identity "pitfall: impersonated cred for krb5 only + SPNEGO context: MIT uses the default ccache, no S4U2Proxy, Exchange sees the service account"
    kinit_as $svc "$pwf"
    http_s4u --user alice@$REALM --name-type principal --mech spnego --impersonate-mech krb5 --path /whoami
    case_stop
    check $CASE "GSSAPI + HTTP: exit 0" rc_is $HTTP_RC 0
    check $CASE "trace: S4U2Self TGS-REP alice@$REALM -> $svcp" in_trace "TGS reply is for alice@$REALM -> $svcp"
    check $CASE "trace: plain TGS-REP $svcp -> $TARGET_SPN@$REALM (no S4U2Proxy)" in_trace "TGS reply is for $svcp -> $TARGET_SPN@$REALM"
    check $CASE "HTTP 200" in_file "$CW/client.out" '^HTTP1_STATUS=200$'
    check $CASE "Apache REMOTE_USER=$svcp (the service account, not alice)" in_file_fixed "$CW/client.out" "HTTP1_REMOTE_USER=$svcp"
    check $CASE "samba log: no constrained delegation" kdc_silent "constrained delegation for"

    # ---- kvno: the same delegation with MIT's command-line client
    case_start ok_kvno "kvno -U alice@lab.test -P $TARGET_SPN: S4U2Self + S4U2Proxy succeed"
    kinit_as $svc "$pwf"
    kvno_s4u -U "$upn" "$TARGET_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -U $upn -P $TARGET_SPN exits 0" rc_is $KVNO_RC 0
    check $CASE "trace: S4U2Self result 0" step_is "$svcp" 0
    check $CASE "trace: S4U2Proxy result 0" step_is "$TARGET_SPN@$REALM" 0
    check $CASE "klist: $TARGET_SPN@$REALM ticket for client alice\\@$DNSDOMAIN@$REALM" ticket_for_client "$TARGET_SPN@$REALM" "alice\\@$DNSDOMAIN@$REALM"
    check $CASE "klist: S4U2Self ticket ($svcp) is forwardable (F)" flags_have "$svcp" F

    case_start wrong_password "kinit of the service account with a wrong password: 24 PREAUTH_FAILED"
    echo "Wrong-Password-1" > "$CW/wrong.password"
    kinit_as $svc "$CW/wrong.password"
    case_stop
    check $CASE "kinit with a wrong password exits non-zero" rc_not $KINIT_RC 0
    check $CASE "trace: Received error from KDC: $(kerr 24) (24 PREAUTH_FAILED)" in_trace "Received error from KDC: $(kerr 24)/"
    check $CASE "samba log: AS-REQ ERR_PREAUTH_FAILED for $svcp" kdc_said "AS-REQ ERR_PREAUTH_FAILED"

    case_start unknown_user "S4U2Self for a user that does not exist (NT-PRINCIPAL nosuch): 6 on the S4U2Self TGS-REQ"
    kinit_as $svc "$pwf"
    kvno_s4u -I nosuch "$TARGET_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -I nosuch exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: S4U2Self result $(kerr 6) (6 C_PRINCIPAL_UNKNOWN)" step_is "$svcp" "$(kerr 6)"
    check $CASE "trace: no S4U2Proxy request" not_in_trace "after requesting $TARGET_SPN@$REALM"
    check $CASE "samba log: S4U2Self principal to impersonate not found" kdc_said "reason=S4U2Self principal to impersonate not found"

    case_start unknown_user_enterprise "same by UPN (NT-ENTERPRISE nosuch@lab.test): MIT's AS-REQ probe gets 6, no TGS-REQ at all"
    kinit_as $svc "$pwf"
    kvno_s4u -U "nosuch@$DNSDOMAIN" "$TARGET_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -U nosuch@$DNSDOMAIN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: Received error from KDC: $(kerr 6) on the AS-REQ probe" in_trace "Received error from KDC: $(kerr 6)/"
    check $CASE "trace: no TGS request sent" not_in_trace "Generated subkey for TGS request"

    case_start disabled_user "S4U2Self for a disabled user (carol): Samba answers 12 POLICY (Windows: 18 CLIENT_REVOKED)"
    kinit_as $svc "$pwf"
    kvno_s4u -U "carol@$DNSDOMAIN" "$TARGET_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -U carol@$DNSDOMAIN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: AS-REQ probe for carol answered 25 (disabled is not revealed there)" in_trace "Received error from KDC: $(kerr 25)/"
    check $CASE "trace: S4U2Self result $(kerr 12) (12 POLICY)" step_is "$svcp" "$(kerr 12)"
    check $CASE "samba log: Principal may not act as client" kdc_said "reason=Principal may not act as client"

    case_start target_unknown "S4U2Proxy to an SPN nobody has ($UNKNOWN_SPN): 7 S_PRINCIPAL_UNKNOWN"
    kinit_as $svc "$pwf"
    kvno_s4u -U "$upn" "$UNKNOWN_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -P $UNKNOWN_SPN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: S4U2Self result 0" step_is "$svcp" 0
    check $CASE "trace: S4U2Proxy result $(kerr 7) (7 S_PRINCIPAL_UNKNOWN)" step_is "$UNKNOWN_SPN@$REALM" "$(kerr 7)"
    check $CASE "samba log: Service principal unknown" kdc_said "reason=Service principal unknown"

    case_start target_not_allowed "S4U2Proxy to $OTHER_SPN, an SPN that exists but is not in msDS-AllowedToDelegateTo: 13 BADOPTION"
    kinit_as $svc "$pwf"
    kvno_s4u -U "$upn" "$OTHER_SPN"
    case_stop
    check $CASE "kinit exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -P $OTHER_SPN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: S4U2Self result 0" step_is "$svcp" 0
    check $CASE "trace: S4U2Proxy result $(kerr 13) (13 BADOPTION)" step_is "$OTHER_SPN@$REALM" "$(kerr 13)"
    check $CASE "samba log: Constrained delegation not allowed" kdc_said "reason=Constrained delegation not allowed"

    case_start delegation_removed "svc_nodeleg (protocol transition on, empty msDS-AllowedToDelegateTo): 13 BADOPTION on S4U2Proxy"
    kinit_as svc_nodeleg "$D/svc_nodeleg.password"
    kvno_s4u -U "$upn" "$TARGET_SPN"
    case_stop
    check $CASE "kinit svc_nodeleg@$REALM exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -P $TARGET_SPN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: S4U2Self result 0" step_is "svc_nodeleg@$REALM" 0
    check $CASE "klist: S4U2Self ticket is forwardable (F)" flags_have "svc_nodeleg@$REALM" F
    check $CASE "trace: S4U2Proxy result $(kerr 13) (13 BADOPTION)" step_is "$TARGET_SPN@$REALM" "$(kerr 13)"
    check $CASE "samba log: Constrained delegation not allowed" kdc_said "reason=Constrained delegation not allowed"

    case_start no_protocol_transition "svc_nopt (delegation to $TARGET_SPN, Kerberos only): S4U2Self ticket not forwardable, 13 on S4U2Proxy"
    kinit_as svc_nopt "$D/svc_nopt.password"
    kvno_s4u -U "$upn" "$TARGET_SPN"
    case_stop
    check $CASE "kinit svc_nopt@$REALM exits 0" rc_is $KINIT_RC 0
    check $CASE "kvno -P $TARGET_SPN exits non-zero" rc_not $KVNO_RC 0
    check $CASE "trace: S4U2Self result 0" step_is "svc_nopt@$REALM" 0
    check $CASE "klist: S4U2Self ticket is NOT forwardable (no F)" flags_lack "svc_nopt@$REALM" F
    check $CASE "trace: S4U2Proxy result $(kerr 13) (13 BADOPTION)" step_is "$TARGET_SPN@$REALM" "$(kerr 13)"
    check $CASE "samba log: Missing forwardable flag on ticket for constrained delegation" kdc_said "reason=Missing forwardable flag on ticket for constrained delegation"

    # ---- what Exchange (Apache) does with tokens
    case_start http_refused "401 + WWW-Authenticate: Negotiate without a token, 200 with the delegated token, 401 when the same token is replayed"
    kinit_as $svc "$pwf"
    http_s4u --user alice@$REALM --name-type principal --path /whoami --no-token-first --replay
    case_stop
    check $CASE "client exits 0" rc_is $HTTP_RC 0
    check $CASE "GET without Authorization: 401" in_file "$CW/client.out" '^HTTP1_STATUS=401$'
    check $CASE "the 401 carries WWW-Authenticate: Negotiate" in_file "$CW/client.out" '^HTTP1_WWW_AUTHENTICATE=Negotiate$'
    check $CASE "GET with the delegated token: 200" in_file "$CW/client.out" '^HTTP2_STATUS=200$'
    check $CASE "GET with the delegated token: REMOTE_USER=alice@$REALM" in_file_fixed "$CW/client.out" "HTTP2_REMOTE_USER=alice@$REALM"
    check $CASE "the same token again (replay cache): 401" in_file "$CW/client.out" '^HTTP3_STATUS=401$'

    # ---- FAST (RFC 6113): MIT armors every TGS-REQ; whether replies are armored is the KDC's choice
    TRACE=$OUT/ok_kvno.trace
    check fast "MIT encodes its TGS-REQs into FAST requests (implicit TGT armor)" in_trace "Encoding request body and padata into FAST request"
    check fast "kinit does not armor the AS-REQ (no armor ccache, no anonymous PKINIT; no 'Using FAST due to' / 'Upgrading to FAST')" \
        eval '! grep -qE "Using FAST due to|Upgrading to FAST" "$TRACE"' 
    check fast "kinit: KDC signals FAST support in the AS exchange (FAST negotiation: available)" in_trace "FAST negotiation: available"
    CW=$OUT/work/target_not_allowed
    if [ "$fast" = yes ]; then
        check fast "KDC answers the TGS-REQs with FAST replies (FAST reply key)" in_trace "FAST reply key"
        check fast "samba log: the 13 BADOPTION goes out as a FAST inner KRB-ERROR" kdc_said "Making FAST inner KRB-ERROR"
    else
        check fast "kdc enable fast = no: TGS replies are not FAST (no 'FAST reply key'), although Samba still signals FAST" not_in_trace "FAST reply key"
        check fast "samba log: no FAST inner KRB-ERROR (the 13 BADOPTION is a plain KRB-ERROR)" kdc_silent "Making FAST inner KRB-ERROR"
    fi

    # ---- INDEX.txt: message flows (tshark; informational, not part of the checks)
    local f c desc
    {
        printf '# file  bytes  flow (U: UDP, T: TCP, ERRnn: KRB-ERROR code nn; HTTP: request(Negotiate) status)\n'
        while IFS=$'\t' read -r c desc; do
            f=$OUT/$c.pcap
            printf '%-34s %6s B  %s\n' "$c.pcap" "$(stat -c %s "$f")" "$(index_flow "$f")"
            [ -f "$OUT/${c}_http.pcap" ] && printf '%-34s %6s B  %s\n' "${c}_http.pcap" \
                "$(stat -c %s "$OUT/${c}_http.pcap")" "$(http_flow "$OUT/${c}_http.pcap")"
        done < "$OUT/work/cases.tsv"
    } > "$OUT/INDEX.txt"
    cp "$OUT/work/cases.tsv" "$OUT/CASES.tsv"

    trap - EXIT
    log "record: $(grep -c '^PASS' "$CHECKS" || true) checks passed, $FAILS failed; captures in $OUT"
    [ "$FAILS" = 0 ] || { grep '^FAIL' "$CHECKS" >&2; return 1; }
}

# ---------------------------------------------------------------- main

[ $# -ge 1 ] || usage
cmd=$1; shift
case "$cmd" in
    up)     [ $# = 1 ] || usage; cmd_up "$1" ;;
    down)   [ $# = 1 ] || usage; cmd_down "$1" ;;
    status) [ $# = 1 ] || usage; cmd_status "$1" ;;
    record) [ $# = 2 ] || usage; cmd_record "$1" "$2" ;;
    kdc-clock) [ $# = 2 ] || usage; cmd_kdc_clock "$1" "$2" ;;
    incident) [ $# = 3 ] || usage; cmd_incident "$1" "$2" "$3" ;;
    *) usage ;;
esac
