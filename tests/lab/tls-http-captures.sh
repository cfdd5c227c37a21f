#!/usr/bin/env bash
# Records the TLS and HTTP captures of captures/tls and captures/http with real peers:
# openssl s_server/s_client with the device certificates of gateway-pki.sh (TLS 1.2 and
# 1.3, on 443 and on ports recognised only by content), and nginx publishing base, delta
# and expired CRLs (with a 404 on '+' names as IIS answers without allowDoubleEscaping)
# and answering ActiveSync requests with 401 (Negotiate + NTLM, and NTLM only).
#
#   tests/lab/tls-http-captures.sh OUTDIR     writes OUTDIR/tls/*.pcap, OUTDIR/http/*.pcap
#
# Everything runs in a network namespace of its own (kcddec) on its loopback, so nothing
# reaches the host's network. Needs root (namespace), openssl, nginx, curl, tcpdump.
set -euo pipefail
HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
. "$HERE/lib.sh"
lab_require_root
OUT=${1:?usage: tls-http-captures.sh OUTDIR}
mkdir -p "$OUT/tls" "$OUT/http"
OUT=$(cd "$OUT" && pwd)
NS=kcddec
WORK=$(mktemp -d /tmp/kcddec.XXXXXX)
PIDS=()
cleanup() {
    for p in "${PIDS[@]}"; do kill "$p" 2>/dev/null || true; done
    [ -f "$WORK/nginx.pid" ] && kill "$(cat "$WORK/nginx.pid")" 2>/dev/null || true
    sleep 0.5
    ip netns del "$NS" 2>/dev/null || true
    rm -rf "$WORK"
}
trap cleanup EXIT
ip netns del "$NS" 2>/dev/null || true
ip netns add "$NS"
ip -n "$NS" link set lo up
in_ns() { ip netns exec "$NS" "$@"; }

# The PKI, fresh (validity relative to now), and a copy whose CRLs expire one second
# after they are made.
"$HERE/gateway-pki.sh" make "$WORK/pki" http://crl.lab.test/pki >/dev/null
cp -r "$WORK/pki" "$WORK/pki-expired"
CRL_SECS=1 "$HERE/gateway-pki.sh" publish "$WORK/pki-expired" >/dev/null
P=$WORK/pki

capture() { # capture FILE FILTER : starts tcpdump in the namespace
    ip netns exec "$NS" tcpdump -i lo -U -s 0 -w "$1" "$2" 2>/dev/null &
    PIDS+=($!)
    sleep 1
}
stop_capture() {
    sleep 1
    local p=${PIDS[-1]}
    kill -TERM "$p" 2>/dev/null || true
    wait "$p" 2>/dev/null || true
    PIDS=("${PIDS[@]:0:${#PIDS[@]}-1}")
}

# ---- TLS: the server demands a client certificate of the lab's CAs
server() { # server PORT VERSIONFLAG
    ip netns exec "$NS" openssl s_server -accept "127.0.0.1:$1" "$2" -Verify 3 -verify_return_error -CAfile "$P/chain.pem" \
        -cert "$P/dev/serverauth.pem" -key "$P/dev/serverauth.key" -quiet -naccept 20 >/dev/null 2>&1 &
    PIDS+=($!)
    sleep 0.5
}
client() { # client PORT VERSIONFLAG [NAME]
    local args=(-connect "127.0.0.1:$1" "$2" -servername exchange.lab.test -CAfile "$P/chain.pem")
    [ -n "${3:-}" ] && args+=(-cert "$P/dev/$3.pem" -key "$P/dev/$3.key")
    # Sends a line once the handshake is done, then closes.
    (echo "GET / HTTP/1.0"; sleep 0.5) | in_ns timeout 5 openssl s_client "${args[@]}" >/dev/null 2>&1 || true
    sleep 0.3
}

capture "$OUT/tls/tls12-client-certs.pcap" "tcp port 443 or tcp port 4433"
server 443 -tls1_2
server 4433 -tls1_2
client 443 -tls1_2 alice        # accepted
client 443 -tls1_2 expired      # certificate_expired
client 443 -tls1_2 wrongca      # unknown_ca
client 443 -tls1_2 noeku        # unsupported_certificate
client 443 -tls1_2              # no certificate: handshake_failure
client 4433 -tls1_2 ldaponly    # accepted; LDAP-only CDP; port known by content only
stop_capture

capture "$OUT/tls/tls13.pcap" "tcp port 8443"
server 8443 -tls1_3
client 8443 -tls1_3 alice
client 8443 -tls1_3 expired
stop_capture

# ---- HTTP: nginx as the CDP web site and as an Exchange answering 401
mkdir -p "$WORK/www/pki" "$WORK/www/expired" "$WORK/nginx"
cp "$P"/crl/*.crl "$WORK/www/pki/"
cp "$WORK/pki-expired/crl/issuing.crl" "$WORK/www/expired/issuing.crl"
cat > "$WORK/nginx.conf" <<EOF
daemon on;
pid $WORK/nginx.pid;
error_log $WORK/nginx/error.log;
events {}
http {
    access_log $WORK/nginx/access.log;
    client_body_temp_path $WORK/nginx;
    types { application/pkix-crl crl; }
    server {
        listen 127.0.0.1:80;
        server_name crl.lab.test exchange.lab.test;
        # IIS without allowDoubleEscaping refuses names with '+' (the delta CRL).
        location ~ ^/iis/.*\+ { return 404; }
        location /iis/ { alias $WORK/www/pki/; }
        location /pki/ { alias $WORK/www/pki/; }
        location /expired/ { alias $WORK/www/expired/; }
        location = /Microsoft-Server-ActiveSync {
            add_header WWW-Authenticate Negotiate always;
            add_header WWW-Authenticate NTLM always;
            return 401;
        }
        location = /ntlm/Microsoft-Server-ActiveSync {
            add_header WWW-Authenticate NTLM always;
            return 401;
        }
    }
}
EOF
chmod -R a+rX "$WORK"
in_ns nginx -c "$WORK/nginx.conf"
sleep 2   # the expired CRL's nextUpdate passes
R=(--resolve crl.lab.test:80:127.0.0.1 --resolve exchange.lab.test:80:127.0.0.1 -s -o /dev/null)

capture "$OUT/http/crl-fetches.pcap" "tcp port 80"
# One keep-alive connection: base and delta CRLs, the delta refused by the IIS rule, a
# missing CRL, and an expired CRL.
in_ns curl "${R[@]}" http://crl.lab.test/pki/issuing.crl -o /dev/null http://crl.lab.test/pki/issuing+.crl \
    -o /dev/null http://crl.lab.test/iis/issuing+.crl -o /dev/null http://crl.lab.test/pki/missing.crl \
    -o /dev/null http://crl.lab.test/expired/issuing.crl -o /dev/null http://crl.lab.test/pki/root.crl
# Pipelined: three requests written at once on one connection.
in_ns python3 - <<'PY'
import socket
s = socket.create_connection(("127.0.0.1", 80))
req = b"".join(b"GET /pki/%s HTTP/1.1\r\nHost: crl.lab.test\r\n\r\n" % n for n in (b"root.crl", b"issuing+.crl", b"other-root.crl"))
s.sendall(req + b"HEAD /pki/root.crl HTTP/1.1\r\nHost: crl.lab.test\r\nConnection: close\r\n\r\n")
while s.recv(65536):
    pass
PY
stop_capture

capture "$OUT/http/eas.pcap" "tcp port 80"
EAS=http://exchange.lab.test/Microsoft-Server-ActiveSync
# Plain query, then the MS-ASHTTP base64 form (version 14.1, Sync, DeviceId, DeviceType
# SmartPhone, User bob), then NTLM-only, each with the credential kinds a device sends.
in_ns curl "${R[@]}" -X POST -H "MS-ASProtocolVersion: 14.1" -H "User-Agent: Apple-iPhone9C1/1602.92" \
    "$EAS?Cmd=Sync&User=alice%40lab.test&DeviceId=ApplDNQXYZ123&DeviceType=iPhone" --data-binary "abc"
B64=$(python3 -c 'import base64;b=bytes([141,0,9,4,16])+bytes(range(0,256,17))+bytes([4,1,2,3,4,10])+b"SmartPhone"+bytes([8,3])+b"bob";print(base64.b64encode(b).decode())')
in_ns curl "${R[@]}" -X POST -H "Authorization: Basic YWxpY2U6bm90LWEtcmVhbC1wYXNzd29yZA==" "$EAS?$B64" --data-binary @/dev/null
in_ns curl "${R[@]}" -X OPTIONS -H "Authorization: NTLM TlRMTVNTUAABAAAAB4IIogAAAAAAAAAAAAAAAAAAAAAKAGFKAAAADw==" \
    "http://exchange.lab.test/ntlm/Microsoft-Server-ActiveSync?Cmd=Ping&User=carol&DeviceId=WP8ABC&DeviceType=WindowsPhone"
stop_capture
echo "captures written to $OUT/tls and $OUT/http"
