# Shared helpers for the lab scripts. Source it; it defines functions only.
# Labs run real daemons inside network namespaces that the scripts create themselves,
# so nothing they start can reach or disturb the host's own network.

lab_die() { echo "lab: $*" >&2; exit 1; }

lab_require_root() {
    [ "$(id -u)" = 0 ] || lab_die "needs root (network namespaces, daemons on port 88); run as root or skip the lab tests"
}

# lab_install PKG... : install missing Debian packages without letting their postinst start
# daemons on the host (policy-rc.d), and undo libnss-winbind's edit of nsswitch.conf.
lab_install() {
    local missing=() p
    for p in "$@"; do
        dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
    done
    [ ${#missing[@]} = 0 ] && return 0
    [ "$(id -u)" = 0 ] || lab_die "packages missing: ${missing[*]}; install them as root (apt-get install ${missing[*]})"
    command -v apt-get >/dev/null || lab_die "packages missing: ${missing[*]} and no apt-get on this machine"
    echo "lab: installing ${missing[*]}" >&2
    local had_policy=0 nss_backup
    [ -e /usr/sbin/policy-rc.d ] && had_policy=1
    if [ $had_policy = 0 ]; then
        printf '#!/bin/sh\nexit 101\n' > /usr/sbin/policy-rc.d
        chmod +x /usr/sbin/policy-rc.d
    fi
    nss_backup=$(mktemp)
    cp /etc/nsswitch.conf "$nss_backup" 2>/dev/null || true
    echo "wireshark-common wireshark-common/install-setuid boolean false" | debconf-set-selections 2>/dev/null || true
    local rc=0
    if ! DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >/tmp/kcd-lab-apt.log 2>&1; then
        DEBIAN_FRONTEND=noninteractive apt-get update -q >>/tmp/kcd-lab-apt.log 2>&1 || true
        DEBIAN_FRONTEND=noninteractive apt-get install -y -q --no-install-recommends "${missing[@]}" >>/tmp/kcd-lab-apt.log 2>&1 || rc=$?
    fi
    [ $had_policy = 1 ] || rm -f /usr/sbin/policy-rc.d
    [ -s "$nss_backup" ] && cp "$nss_backup" /etc/nsswitch.conf
    rm -f "$nss_backup"
    [ $rc = 0 ] || { tail -20 /tmp/kcd-lab-apt.log >&2; lab_die "apt-get install ${missing[*]} failed (log: /tmp/kcd-lab-apt.log)"; }
}

# netns_up NAME : a fresh namespace with loopback up (an old one of that name is removed).
netns_up() {
    ip netns del "$1" 2>/dev/null || true
    ip netns add "$1" || lab_die "ip netns add $1 failed"
    ip netns exec "$1" ip link set lo up
}

netns_down() { ip netns del "$1" 2>/dev/null || true; }

# daemon_start NS PIDFILE LOGFILE CMD... : run CMD in its own session inside NS (Apache's
# prefork master signals its whole process group; setsid keeps the caller out of it).
daemon_start() {
    local ns=$1 pidfile=$2 log=$3; shift 3
    ip netns exec "$ns" setsid "$@" >"$log" 2>&1 < /dev/null &
    echo $! > "$pidfile"
}

# alive PID : running and not a zombie (a zombie child of ours still passes kill -0).
alive() {
    kill -0 "$1" 2>/dev/null || return 1
    [ "$(awk '{print $3}' "/proc/$1/stat" 2>/dev/null)" != Z ]
}

# session_alive SID : a process of that session (daemon_start's setsid) other than a zombie.
session_alive() {
    local out
    # No pipeline: under `set -o pipefail` an early exit of the reader could fail it spuriously.
    out=$(ps -o stat= -s "$1" 2>/dev/null || true)
    awk 'NF && $1 !~ /^Z/ { f = 1 } END { exit !f }' <<<"$out"
}

# daemon_stop PIDFILE : stop by that pid (and its session) only. Waits for the whole session,
# not the leader alone: Samba's leader is a zombie within 50 ms of SIGTERM while its prefork
# workers still run and hold port 88, and a daemon started again then cannot bind it (the
# lab's KDC restart then served from the dying workers for a moment, and then from nothing).
daemon_stop() {
    local pid
    [ -f "$1" ] || return 0
    pid=$(cat "$1")
    if [ -n "$pid" ] && { alive "$pid" || session_alive "$pid"; }; then
        kill -TERM -- "-$pid" 2>/dev/null || kill -TERM "$pid" 2>/dev/null || true
        for _ in $(seq 1 50); do { alive "$pid" || session_alive "$pid"; } || break; sleep 0.1; done
        if alive "$pid" || session_alive "$pid"; then
            kill -KILL -- "-$pid" 2>/dev/null || kill -KILL "$pid" 2>/dev/null || true
            for _ in $(seq 1 20); do session_alive "$pid" || break; sleep 0.1; done
        fi
    fi
    wait "$pid" 2>/dev/null || true
    rm -f "$1"
}

# wait_port NS PROTO PORT [SECONDS] [PIDFILE] : wait until something listens on PORT
# inside NS; gives up at once if the daemon in PIDFILE has died.
wait_port() {
    local ns=$1 proto=$2 port=$3 secs=${4:-20} pidfile=${5:-} flag out
    [ "$proto" = udp ] && flag=-uln || flag=-tln
    for _ in $(seq 1 $((secs * 10))); do
        # No pipeline: under `set -o pipefail` an early grep exit could fail it spuriously.
        out=$(ip netns exec "$ns" ss -H $flag "sport = :$port" 2>/dev/null || true)
        [ -n "$out" ] && return 0
        if [ -n "$pidfile" ] && [ -f "$pidfile" ] && ! alive "$(cat "$pidfile")"; then
            lab_die "the daemon for $proto/$port in $ns died (pid file $pidfile)"
        fi
        sleep 0.1
    done
    lab_die "nothing listens on $proto/$port in $ns after ${secs}s"
}

# capture_start NS IFACE FILE FILTER : tcpdump in NS; returns once it is listening.
capture_start() {
    local ns=$1 iface=$2 file=$3 filter=$4 err
    err=$(mktemp)
    ip netns exec "$ns" tcpdump -i "$iface" -n -U --immediate-mode -w "$file" "$filter" 2>"$err" &
    CAPTURE_PID=$!
    for _ in $(seq 1 100); do grep -q listening "$err" && break; sleep 0.05; done
    if ! grep -q listening "$err"; then
        kill "$CAPTURE_PID" 2>/dev/null || true
        wait "$CAPTURE_PID" 2>/dev/null || true
        cat "$err" >&2
        rm -f "$err"
        lab_die "tcpdump did not start"
    fi
    rm -f "$err"
}

capture_stop() {
    sleep 0.5
    kill -INT "$CAPTURE_PID" 2>/dev/null || true
    wait "$CAPTURE_PID" 2>/dev/null || true
}

# silent_kdc_start NS ADDRESS PIDFILE LOGFILE : a "KDC" that binds UDP and TCP ADDRESS:88,
# accepts connections, reads requests and never answers (clients time out, then fail over).
silent_kdc_start() {
    daemon_start "$1" "$3" "$4" /usr/bin/python3 -c '
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
' "$2"
}

# wait_listen NS PROTO ADDRESS PORT [SECONDS] : until something listens on ADDRESS:PORT in NS
# (wait_port matches the port on any address; labs run several servers on port 88)
wait_listen() {
    local ns=$1 proto=$2 addr=$3 port=$4 secs=${5:-20} flag out
    [ "$proto" = udp ] && flag=-Hlnu || flag=-Hlnt
    for _ in $(seq 1 $((secs * 10))); do
        out=$(ip netns exec "$ns" ss $flag "src $addr and sport = :$port" 2>/dev/null || true)
        [ -n "$out" ] && return 0
        sleep 0.1
    done
    return 1
}

# silent_kdc_check NS ADDRESS : from NS, ADDRESS:88 accepts a TCP connection and answers
# neither a UDP datagram nor a TCP request within 1 s (a silent KDC, not a missing one)
silent_kdc_check() {
    ip netns exec "$1" /usr/bin/python3 - "$2" <<'EOF'
import socket, sys
a = (sys.argv[1], 88)
u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
u.settimeout(1)
u.sendto(b"\x6a\x00", a)
try:
    u.recvfrom(65535)
    sys.exit(1)
except socket.timeout:
    pass
t = socket.create_connection(a, timeout=2)
t.settimeout(1)
t.sendall(b"\x00\x00\x00\x02\x6a\x00")
try:
    t.recv(65535)           # data or a close: it answered
    sys.exit(1)
except socket.timeout:
    sys.exit(0)
EOF
}

# ns_leftover_pids NS [SECONDS] : pids still in NS after waiting up to SECONDS (default 5)
# for them to go (a daemon's master can be gone while its workers are still exiting)
ns_leftover_pids() {
    local left
    for _ in $(seq 1 $((${2:-5} * 10))); do
        left=$(ip netns pids "$1" 2>/dev/null | tr '\n' ' ')
        [ -n "${left// /}" ] || return 0
        sleep 0.1
    done
    echo "$left"
}

# lab_write_apache AP KEYTAB HOST ADDR LAB: Apache + mod_auth_gssapi as the lab's Exchange
# (HOST, listening on ADDR:80), configuration and logs under AP, a CGI at
# /Microsoft-Server-ActiveSync and /whoami that echoes REMOTE_USER, a static page at
# /Microsoft-Server-ActiveSync/default.eas. Both labs use it.
lab_write_apache() {
    local AP=$1 keytab=$2 host=$3 addr=$4 lab=$5
    mkdir -p "$AP/run" "$AP/logs" "$AP/cgi" "$AP/rcache" "$AP/htdocs"
    cat > "$AP/cgi/whoami" <<'EOF'
#!/bin/sh
# echoes what mod_auth_gssapi established; drains a request body
[ -n "$CONTENT_LENGTH" ] && [ "$CONTENT_LENGTH" -gt 0 ] 2>/dev/null && head -c "$CONTENT_LENGTH" >/dev/null
printf 'Content-Type: text/plain\r\n\r\n'
printf 'REMOTE_USER=%s\n' "$REMOTE_USER"
printf 'AUTH_TYPE=%s\n' "$AUTH_TYPE"
printf 'REQUEST_METHOD=%s\n' "$REQUEST_METHOD"
printf 'SCRIPT_NAME=%s\n' "$SCRIPT_NAME"
printf 'QUERY_STRING=%s\n' "$QUERY_STRING"
EOF
    chmod 755 "$AP/cgi/whoami"
    echo "kcdscope lab exchange" > "$AP/htdocs/index.html"
    cp "$keytab" "$AP/http.keytab"
    chown root:www-data "$AP/http.keytab"
    chmod 640 "$AP/http.keytab"
    chown www-data:www-data "$AP/rcache"
    : > "$AP/logs/krb5_trace.log"
    chown www-data:www-data "$AP/logs/krb5_trace.log"
    chmod 755 "$AP" "$AP/cgi" "$AP/htdocs"
    local m=/usr/lib/apache2/modules
    cat > "$AP/httpd.conf" <<EOF
# Apache as "$host" for the kcdscope $lab lab
ServerRoot "$AP"
ServerName $host
Listen $addr:80
PidFile "$AP/run/httpd.pid"
DefaultRuntimeDir "$AP/run"
ErrorLog "$AP/logs/error.log"
LogLevel info auth_gssapi:debug
LoadModule mpm_prefork_module $m/mod_mpm_prefork.so
LoadModule authn_core_module $m/mod_authn_core.so
LoadModule authz_core_module $m/mod_authz_core.so
LoadModule authz_user_module $m/mod_authz_user.so
LoadModule auth_gssapi_module $m/mod_auth_gssapi.so
LoadModule alias_module $m/mod_alias.so
LoadModule cgi_module $m/mod_cgi.so
LoadModule mime_module $m/mod_mime.so
LoadModule env_module $m/mod_env.so
User www-data
Group www-data
StartServers 1
MinSpareServers 1
MaxSpareServers 2
KeepAlive On
LogFormat "%h %l %u %t \"%r\" %>s %b \"%{Authorization}i\"" kcd
CustomLog "$AP/logs/access.log" kcd
DocumentRoot "$AP/htdocs"
TypesConfig /dev/null
# (before the CGI: a static answer, authenticated all the same and logged with its user,
# for load tests, where a process per request would be the bottleneck)
Alias /Microsoft-Server-ActiveSync/default.eas "$AP/htdocs/index.html"
ScriptAlias /Microsoft-Server-ActiveSync "$AP/cgi/whoami"
ScriptAlias /whoami "$AP/cgi/whoami"
<Directory "$AP/cgi">
    Options +ExecCGI
</Directory>
<Location />
    AuthType GSSAPI
    AuthName "kcdscope lab Exchange"
    GssapiCredStore keytab:$AP/http.keytab
    GssapiAllowedMech krb5
    GssapiBasicAuth Off
    Require valid-user
</Location>
EOF
    runuser -u www-data -- test -r "$AP/http.keytab" \
        || lab_die "www-data cannot read $AP/http.keytab: every directory above $AP must be searchable by others (chmod o+x)"
    runuser -u www-data -- test -x "$AP/cgi/whoami" || lab_die "www-data cannot run $AP/cgi/whoami"
}

# A Samba AD DC provisioned into SMB for a lab: KDC and LDAP only, on one address, every
# runtime path under SMB (so that labs never touch the host's Samba), passwords that never
# expire (a lab may live longer than 42 days).
#   lab_samba_provision SMB REALM DOMAIN KDC_ADDR ADMIN_PASSWORD_FILE LOG
lab_samba_provision() {
    local SMB=$1 realm=$2 domain=$3 addr=$4 adminpw=$5 log=$6
    samba-tool domain provision --targetdir="$SMB" --realm="$realm" --domain="$domain" \
        --server-role=dc --dns-backend=NONE --host-name=dc1 --host-ip="$addr" \
        --adminpass="$(cat "$adminpw")" \
        --option="interfaces = $addr" --option="bind interfaces only = yes" \
        --option="server services = kdc, ldap" \
        --option="pid directory = $SMB/run" --option="log file = $SMB/log/samba.log" \
        --option="ncalrpc dir = $SMB/run/ncalrpc" \
        --option="winbindd socket directory = $SMB/run/winbindd" \
        --option="ntp signd socket directory = $SMB/run/ntp_signd" \
        >>"$log" 2>&1 \
        || { tail -15 "$log" >&2; lab_die "samba-tool domain provision failed (log: $log)"; }
    mkdir -p "$SMB/run" "$SMB/log"
    samba-tool domain passwordsettings set --max-pwd-age=0 -s "$SMB/etc/smb.conf" >>"$log" 2>&1 \
        || { tail -5 "$log" >&2; lab_die "samba-tool domain passwordsettings failed (log: $log)"; }
}

# AES only for the given accounts (relative DNs such as "CN=svc_awseg,CN=Users"): Samba
# 4.17 issues RC4 tickets to an SPN account without msDS-SupportedEncryptionTypes.
#   lab_samba_aes SMB DNSDOMAIN LOG RDN...
lab_samba_aes() {
    local SMB=$1 dnsdomain=$2 log=$3 base dn ldif=$1/etypes.ldif
    shift 3
    base=$(echo "$dnsdomain" | sed 's/^/DC=/; s/\./,DC=/g')
    : > "$ldif"
    for dn in "$@"; do
        printf 'dn: %s,%s\nchangetype: modify\nreplace: msDS-SupportedEncryptionTypes\nmsDS-SupportedEncryptionTypes: 24\n\n' "$dn" "$base" >> "$ldif"
    done
    ldbmodify -H "$SMB/private/sam.ldb" "$ldif" >>"$log" 2>&1 \
        || { tail -5 "$log" >&2; lab_die "ldbmodify msDS-SupportedEncryptionTypes failed (log: $log)"; }
}
