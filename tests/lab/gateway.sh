#!/usr/bin/env bash
# The gateway lab: real peers for `kcdscope gateway`, in network namespaces of its own.
#
#   gateway.sh up DIR      start (Samba is provisioned once and kept in DIR/samba)
#   gateway.sh down DIR    stop daemons, remove namespaces
#   gateway.sh publish DIR make new base + delta CRLs of the lab CA (after gateway-pki.sh revoke)
#   gateway.sh crl-stop DIR / crl-start DIR   the CRL web server down / up again
#   gateway.sh exchange-stop DIR / exchange-start DIR   Exchange (Apache) down / up again
#
#   kcdgw-gw  eth0 10.89.0.1  <-- veth -->  kcdgw-dc  eth0 10.89.0.2 dc1.lab.test (Samba AD: KDC, LDAP)
#   (the gateway, devices: curl,                     eth0 10.89.0.3 exchange.lab.test (Apache +
#    openssl s_client)                                              mod_auth_gssapi, echoes REMOTE_USER)
#                                                    eth0 10.89.0.4 crl.lab.test (Apache: base and
#                                                                   delta CRLs; /iis/ answers 404 for '+')
#                                                    eth0 10.89.0.9 a KDC that never answers
#                                                    eth0 10.89.0.5 the same Samba KDC again, through
#                                                                   a forwarder (kdc-forward-start/stop)
#
# DIR/lab.env says where everything is. The device PKI (tests/lab/gateway-pki.sh) is made
# afresh by every `up`.
set -euo pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

NS_GW=kcdgw-gw
NS_DC=kcdgw-dc
IFACE=eth0
NET=10.89.0
GW_ADDR=$NET.1
KDC_ADDR=$NET.2
EXCHANGE_ADDR=$NET.3
CRL_ADDR=$NET.4
DEAD_ADDR=$NET.9
FWD_ADDR=$NET.5
REALM=LAB.TEST
DNSDOMAIN=lab.test
EXCHANGE_HOST=exchange.$DNSDOMAIN
TARGET_SPN=HTTP/$EXCHANGE_HOST
NETNS_ETC=/etc/netns/$NS_GW
PACKAGES=(samba samba-ad-dc samba-ad-provision winbind krb5-user ldb-tools smbclient
          apache2 libapache2-mod-auth-gssapi curl openssl ethtool)

log() { echo "gateway-lab: [${SECONDS}s] $*" >&2; }
die() { lab_die "gateway-lab: $*"; }

set_paths() {
    mkdir -p "$1"
    D=$(cd "$1" && pwd)
    SMB=$D/samba
    SMBCONF=$SMB/etc/smb.conf
    RUN=$D/run
    LOGS=$D/logs
    AP=$D/apache
    CRLAP=$D/crl-apache
    PKI=$D/pki
    STAMP=$SMB/.kcdgw-provisioned
}

net_up() {
    netns_up "$NS_GW"
    netns_up "$NS_DC"
    ip -n "$NS_GW" link add "$IFACE" type veth peer name "$IFACE" netns "$NS_DC" || die "veth pair"
    local ns a
    for ns in "$NS_GW" "$NS_DC"; do
        ip netns exec "$ns" sysctl -qw net.ipv6.conf.all.disable_ipv6=1 2>/dev/null || true
    done
    ip -n "$NS_GW" addr add "$GW_ADDR/24" dev "$IFACE"
    for a in "$KDC_ADDR" "$EXCHANGE_ADDR" "$CRL_ADDR" "$DEAD_ADDR" "$FWD_ADDR"; do
        ip -n "$NS_DC" addr add "$a/24" dev "$IFACE"
    done
    ip -n "$NS_GW" link set "$IFACE" up
    ip -n "$NS_DC" link set "$IFACE" up
    mkdir -p "$NETNS_ETC"
    cat > "$NETNS_ETC/hosts" <<EOF
# written by tests/lab/gateway.sh for namespace $NS_GW (removed by 'down')
127.0.0.1 localhost
$GW_ADDR gw.$DNSDOMAIN
$KDC_ADDR dc1.$DNSDOMAIN
$EXCHANGE_ADDR $EXCHANGE_HOST
$CRL_ADDR crl.$DNSDOMAIN
EOF
    printf '# written by tests/lab/gateway.sh\noptions timeout:1 attempts:1\n' > "$NETNS_ETC/resolv.conf"
    for _ in $(seq 1 50); do
        ip -n "$NS_GW" link show "$IFACE" | grep -q 'state UP' && return 0
        sleep 0.1
    done
    die "the veth pair does not come up"
}

net_down() {
    netns_down "$NS_GW"
    netns_down "$NS_DC"
    rm -rf "$NETNS_ETC"
    rmdir /etc/netns 2>/dev/null || true
}

stool() { samba-tool "$@" -s "$SMBCONF" >>"$LOGS/provision.log" 2>&1 || { tail -15 "$LOGS/provision.log" >&2; die "samba-tool $* failed"; }; }

provision() {
    log "provisioning Samba AD DC into $SMB (kept for the next runs)"
    rm -rf "$SMB"
    mkdir -p "$SMB" "$LOGS"
    : > "$LOGS/provision.log"
    local a
    for a in admin svc_awseg svc_nodeleg users exchange; do
        echo "Kcd1-$(od -An -N9 -tx1 /dev/urandom | tr -d ' \n')-Aa" > "$D/$a.password"
    done
    chmod 600 "$D"/*.password
    lab_samba_provision "$SMB" "$REALM" LAB "$KDC_ADDR" "$D/admin.password" "$LOGS/provision.log"
    stool user create svc_awseg "$(cat "$D/svc_awseg.password")"
    stool spn add HTTP/svc_awseg svc_awseg
    stool delegation for-any-protocol svc_awseg on
    stool delegation add-service svc_awseg "$TARGET_SPN"
    # protocol transition on, but no service in msDS-AllowedToDelegateTo ("delegation removed")
    stool user create svc_nodeleg "$(cat "$D/svc_nodeleg.password")"
    stool spn add HTTP/svc_nodeleg svc_nodeleg
    stool delegation for-any-protocol svc_nodeleg on
    stool computer create EXCHANGE --service-principal-name="$TARGET_SPN"
    stool user setpassword 'EXCHANGE$' --newpassword="$(cat "$D/exchange.password")"
    stool user enable 'EXCHANGE$'
    local pw u
    pw=$(cat "$D/users.password")
    for u in alice bob carol dave; do
        stool user create "$u" "$pw" --mail-address="$u@$DNSDOMAIN"
    done
    lab_samba_aes "$SMB" "$DNSDOMAIN" "$LOGS/provision.log" "CN=svc_awseg,CN=Users" "CN=svc_nodeleg,CN=Users" "CN=EXCHANGE,CN=Computers"
    rm -f "$D/http.keytab"
    stool domain exportkeytab "$D/http.keytab" --principal="$TARGET_SPN"
    stamp > "$STAMP"
}

# what the cached domain was provisioned with: Samba's version and this script's accounts
stamp() { echo "$(samba -V) accounts-v2"; }

write_krb5_conf() {
    cat > "$D/krb5.conf" <<EOF
[libdefaults]
    default_realm = $REALM
    dns_lookup_kdc = false
    dns_lookup_realm = false
    rdns = false
[realms]
    $REALM = {
        kdc = $KDC_ADDR:88
    }
[domain_realm]
    .$DNSDOMAIN = $REALM
EOF
}

write_exchange() {
    lab_write_apache "$AP" "$D/http.keytab" "$EXCHANGE_HOST" "$EXCHANGE_ADDR" "gateway"
    # What Exchange received, as Apache saw it: the headers a device must not pass on.
    cat > "$AP/cgi/whoami" <<'EOF'
#!/bin/sh
# Exchange reads the whole body before it answers: a chunked one (no CONTENT_LENGTH) too.
if [ -n "$CONTENT_LENGTH" ]; then
    [ "$CONTENT_LENGTH" -gt 0 ] 2>/dev/null && head -c "$CONTENT_LENGTH" >/dev/null
elif [ "$REQUEST_METHOD" = POST ]; then
    cat >/dev/null
fi
case "$QUERY_STRING" in *hold=*) s=${QUERY_STRING##*hold=}; s=${s%%&*}; sleep "$s" ;; esac
printf 'Content-Type: text/plain\r\n\r\n'
printf 'REMOTE_USER=%s\n' "$REMOTE_USER"
printf 'AUTH_TYPE=%s\n' "$AUTH_TYPE"
printf 'REQUEST_METHOD=%s\n' "$REQUEST_METHOD"
printf 'QUERY_STRING=%s\n' "$QUERY_STRING"
printf 'X_FORWARDED_FOR=%s\n' "$HTTP_X_FORWARDED_FOR"
printf 'CONTENT_LENGTH=%s\n' "$CONTENT_LENGTH"
EOF
    chmod 755 "$AP/cgi/whoami"
    # Every request Apache read, with the scheme of its Authorization header and XFF.
    cat >> "$AP/httpd.conf" <<EOF
LogFormat "%m %U %>s xff=%{X-Forwarded-For}i auth=%{Authorization}i q=%q" gwlab
CustomLog "$AP/logs/received.log" gwlab
# A Ping is held up to Exchange's heartbeat; the lab holds one for 5 minutes (the CGI says
# nothing until then, and Apache's default Timeout of 60 s would end it).
Timeout 400
EOF
    # The same Exchange over HTTPS, with a certificate from a CA of its own.
    local T=$D/exchange-tls m=/usr/lib/apache2/modules
    rm -rf "$T"; mkdir -p "$T"
    openssl req -x509 -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/ca.key" \
        -subj "/CN=Lab Exchange CA" -days 30 -out "$T/ca.pem" 2>/dev/null
    openssl req -new -newkey ec -pkeyopt ec_paramgen_curve:P-256 -nodes -keyout "$T/server.key" \
        -subj "/CN=$EXCHANGE_HOST" -out "$T/server.csr" 2>/dev/null
    printf 'subjectAltName=DNS:%s\nextendedKeyUsage=serverAuth\nbasicConstraints=CA:FALSE\n' "$EXCHANGE_HOST" > "$T/ext"
    openssl x509 -req -in "$T/server.csr" -CA "$T/ca.pem" -CAkey "$T/ca.key" -CAcreateserial -days 30 \
        -extfile "$T/ext" -out "$T/server.pem" 2>/dev/null || die "Exchange's TLS certificate"
    chmod -R o+rX "$T"
    cat >> "$AP/httpd.conf" <<EOF
LoadModule ssl_module $m/mod_ssl.so
LoadModule socache_shmcb_module $m/mod_socache_shmcb.so
Listen $EXCHANGE_ADDR:443
<VirtualHost $EXCHANGE_ADDR:443>
    SSLEngine on
    SSLCertificateFile "$T/server.pem"
    SSLCertificateKeyFile "$T/server.key"
</VirtualHost>
EOF
}

write_bad_exchange() {
    local B=$D/apache-badkey
    rm -rf "$B"
    printf 'addent -password -p %s@%s -k 2 -e aes256-cts-hmac-sha1-96\n%s\nwkt %s\nquit\n' \
        "$TARGET_SPN" "$REALM" "not-the-account-password-$RANDOM" "$D/badkey.keytab" | ktutil >/dev/null 2>&1 \
        || die "ktutil could not write a keytab"
    lab_write_apache "$B" "$D/badkey.keytab" "$EXCHANGE_HOST" "$EXCHANGE_ADDR" "gateway (wrong key)"
    sed -i "s/^Listen $EXCHANGE_ADDR:80\$/Listen $EXCHANGE_ADDR:8080/" "$B/httpd.conf"
}

write_crl_server() {
    mkdir -p "$CRLAP/run" "$CRLAP/logs"
    local m=/usr/lib/apache2/modules
    cat > "$CRLAP/httpd.conf" <<EOF
# The CA's CRL distribution point. /pki/ serves everything; /iis/ answers 404 for names
# with '+', as IIS request filtering does without allowDoubleEscaping.
ServerRoot "$CRLAP"
ServerName crl.$DNSDOMAIN
Listen $CRL_ADDR:80
PidFile "$CRLAP/run/httpd.pid"
DefaultRuntimeDir "$CRLAP/run"
ErrorLog "$CRLAP/logs/error.log"
LoadModule mpm_prefork_module $m/mod_mpm_prefork.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule alias_module $m/mod_alias.so
LoadModule mime_module $m/mod_mime.so
User www-data
Group www-data
StartServers 1
MinSpareServers 1
MaxSpareServers 2
TypesConfig /dev/null
AddType application/pkix-crl .crl
LogFormat "%m %U %>s" crl
CustomLog "$CRLAP/logs/access.log" crl
DocumentRoot "$PKI/www"
RedirectMatch 404 "^/iis/.*\+"
Alias /iis/ "$PKI/www/pki/"
<Directory "$PKI/www">
    Require all granted
</Directory>
EOF
}

publish() {
    bash "$HERE/gateway-pki.sh" publish "$PKI" "${1:-7}"
    mkdir -p "$PKI/www/pki"
    local f
    for f in "$PKI"/crl/*.crl; do
        cp "$f" "$PKI/www/pki/$(basename "$f").new"
        mv "$PKI/www/pki/$(basename "$f").new" "$PKI/www/pki/$(basename "$f")"
    done
    # The issuing CA's CRL with its signature damaged (the last byte of the ECDSA value).
    python3 -c 'import sys; b = bytearray(open(sys.argv[1], "rb").read()); b[-1] ^= 0x55; open(sys.argv[2], "wb").write(b)' \
        "$PKI/crl/issuing.crl" "$PKI/www/pki/badsig.crl"
    chmod -R o+rX "$PKI/www"
}

start_daemons() {
    log "starting samba in $NS_DC"
    # KCD_LAB_SAMBA_LOG_LEVEL (e.g. "1 kerberos:3"): the KDC logs every request it serves
    # to $SMB/log/samba.log, a count of its own for the benchmark
    local level=()
    [ -n "${KCD_LAB_SAMBA_LOG_LEVEL:-}" ] && level=(--option="log level = $KCD_LAB_SAMBA_LOG_LEVEL" --option="max log size = 0")
    daemon_start "$NS_DC" "$RUN/samba.pid" "$LOGS/samba.stdout" \
        env KRB5_CONFIG="$SMB/private/krb5.conf" samba -F -M prefork -s "$SMBCONF" "${level[@]}"
    wait_port "$NS_DC" udp 88 60 "$RUN/samba.pid"
    wait_port "$NS_DC" tcp 88 60 "$RUN/samba.pid"
    silent_kdc_start "$NS_DC" "$DEAD_ADDR" "$RUN/silent.pid" "$LOGS/silent.log"
    wait_listen "$NS_DC" tcp "$DEAD_ADDR" 88 10 || die "silent KDC"
    write_exchange
    daemon_start "$NS_DC" "$RUN/apache.pid" "$LOGS/apache.stdout" \
        env KRB5_CONFIG="$D/krb5.conf" KRB5RCACHEDIR="$AP/rcache" apache2 -f "$AP/httpd.conf" -DFOREGROUND
    wait_listen "$NS_DC" tcp "$EXCHANGE_ADDR" 80 20 || { cat "$AP/logs/error.log" >&2; die "Exchange Apache"; }
    wait_listen "$NS_DC" tcp "$EXCHANGE_ADDR" 443 20 || { cat "$AP/logs/error.log" >&2; die "Exchange Apache (HTTPS)"; }
    write_bad_exchange
    daemon_start "$NS_DC" "$RUN/badkey.pid" "$LOGS/badkey.stdout" \
        env KRB5_CONFIG="$D/krb5.conf" KRB5RCACHEDIR="$D/apache-badkey/rcache" apache2 -f "$D/apache-badkey/httpd.conf" -DFOREGROUND
    wait_listen "$NS_DC" tcp "$EXCHANGE_ADDR" 8080 20 || { cat "$D/apache-badkey/logs/error.log" >&2; die "wrong-key Apache"; }
    write_crl_server
    daemon_start "$NS_DC" "$RUN/crl.pid" "$LOGS/crl.stdout" apache2 -f "$CRLAP/httpd.conf" -DFOREGROUND
    wait_listen "$NS_DC" tcp "$CRL_ADDR" 80 20 || { cat "$CRLAP/logs/error.log" >&2; die "CRL Apache"; }
}

stop_daemons() {
    local p
    for p in kdcfwd crl badkey apache silent samba; do daemon_stop "$RUN/$p.pid"; done
}

cmd_up() {
    lab_require_root
    lab_install "${PACKAGES[@]}"
    set_paths "$1"
    chmod o+x "$D"
    mkdir -p "$RUN" "$LOGS"
    stop_daemons
    net_up
    if [ -f "$STAMP" ] && [ "$(cat "$STAMP")" = "$(stamp)" ] && [ -f "$D/http.keytab" ]; then
        log "reusing the provisioned domain in $SMB"
    else
        provision
    fi
    write_krb5_conf
    log "device PKI"
    bash "$HERE/gateway-pki.sh" make "$PKI" http://crl.$DNSDOMAIN/pki
    publish 7
    chmod o+x "$PKI"
    start_daemons
    cat > "$D/lab.env" <<EOF
# written by tests/lab/gateway.sh up
LAB_NS_GW=$NS_GW
LAB_NS_DC=$NS_DC
LAB_GW_ADDR=$GW_ADDR
LAB_KDC_ADDR=$KDC_ADDR
LAB_DEAD_ADDR=$DEAD_ADDR
LAB_KDC_FORWARD_ADDR=$FWD_ADDR
LAB_KDC_FORWARD_LOG=$LOGS/kdcfwd.log
LAB_SAMBA_LOG=$SMB/log/samba.log
LAB_EXCHANGE_ADDR=$EXCHANGE_ADDR
LAB_EXCHANGE_HOST=$EXCHANGE_HOST
LAB_CRL_ADDR=$CRL_ADDR
LAB_REALM=$REALM
LAB_TARGET_SPN=$TARGET_SPN
LAB_SVC_PASSWORD_FILE=$D/svc_awseg.password
LAB_NODELEG_PASSWORD_FILE=$D/svc_nodeleg.password
LAB_PKI=$PKI
LAB_EXCHANGE_RECEIVED=$AP/logs/received.log
LAB_EXCHANGE_CA=$D/exchange-tls/ca.pem
LAB_CRL_ACCESS=$CRLAP/logs/access.log
LAB_SCRIPT=$HERE/gateway.sh
LAB_PKI_SCRIPT=$HERE/gateway-pki.sh
EOF
    log "up; environment in $D/lab.env"
}

cmd_down() {
    set_paths "$1"
    stop_daemons
    net_down
    rm -f "$D/lab.env"
    log "down"
}

case ${1:-} in
    up) [ $# = 2 ] || die "up DIR"; cmd_up "$2" ;;
    down) [ $# = 2 ] || die "down DIR"; cmd_down "$2" ;;
    publish) [ $# -ge 2 ] || die "publish DIR [DAYS]"; set_paths "$2"; publish "${3:-7}" ;;
    # CRLs whose nextUpdate is SECONDS away (to watch them expire)
    publish-short) [ $# = 3 ] || die "publish-short DIR SECONDS"; set_paths "$2"; export CRL_SECS=$3; publish ;;
    # the CRL distribution point's web server stopped and started again (an outage)
    crl-stop) [ $# = 2 ] || die "crl-stop DIR"; set_paths "$2"; daemon_stop "$RUN/crl.pid" ;;
    crl-start)
        [ $# = 2 ] || die "crl-start DIR"; set_paths "$2"
        daemon_start "$NS_DC" "$RUN/crl.pid" "$LOGS/crl.stdout" apache2 -f "$CRLAP/httpd.conf" -DFOREGROUND
        wait_listen "$NS_DC" tcp "$CRL_ADDR" 80 20 || die "CRL Apache" ;;
    # Exchange (the Apache on HTTP and HTTPS) stopped and started again
    exchange-stop) [ $# = 2 ] || die "exchange-stop DIR"; set_paths "$2"; daemon_stop "$RUN/apache.pid" ;;
    exchange-start)
        [ $# = 2 ] || die "exchange-start DIR"; set_paths "$2"
        daemon_start "$NS_DC" "$RUN/apache.pid" "$LOGS/apache.stdout" \
            env KRB5_CONFIG="$D/krb5.conf" KRB5RCACHEDIR="$AP/rcache" apache2 -f "$AP/httpd.conf" -DFOREGROUND
        wait_listen "$NS_DC" tcp "$EXCHANGE_ADDR" 80 20 || die "Exchange Apache" ;;
    # a second address of the one Samba KDC (a forwarder process), to be killed and started
    # again: both addresses reach the same Samba process
    kdc-forward-start)
        [ $# = 2 ] || die "kdc-forward-start DIR"; set_paths "$2"
        daemon_start "$NS_DC" "$RUN/kdcfwd.pid" "$LOGS/kdcfwd.log" /usr/bin/python3 -u "$HERE/kdc-forward.py" "$FWD_ADDR" "$KDC_ADDR"
        wait_listen "$NS_DC" tcp "$FWD_ADDR" 88 10 && wait_listen "$NS_DC" udp "$FWD_ADDR" 88 10 || die "KDC forwarder" ;;
    kdc-forward-stop) [ $# = 2 ] || die "kdc-forward-stop DIR"; set_paths "$2"; daemon_stop "$RUN/kdcfwd.pid" ;;
    *) die "usage: gateway.sh up|down|publish|publish-short|crl-stop|crl-start|exchange-stop|exchange-start|kdc-forward-start|kdc-forward-stop DIR" ;;
esac
