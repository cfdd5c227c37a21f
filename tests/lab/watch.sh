#!/usr/bin/env bash
# Live capture lab: `kcdscope watch` with eBPF and with libpcap, beside tcpdump, on the
# wire of the MIT lab (tests/lab/mit-kdc.sh up) while real MIT clients talk to real KDCs;
# then the probe's own cases in namespaces of their own: TSO/GRO super-packets, IPv4 and
# IPv6 fragments, loopback seen once, a counted flood, no privileges, detach on SIGINT,
# SIGTERM and SIGKILL.
#
#   tests/lab/watch.sh run OUTDIR KCDSCOPE
#
# Writes into OUTDIR: tcpdump.pcap, {ebpf,pcap}.ndjson, {ebpf,pcap}.pcapng and their
# stderr, the per-case files (tso.*, frag.*, lo.*, flood.*), and CHECKS.txt with one
# PASS/FAIL line per fact checked here (the comparison of events is the Rust test's,
# tests/tests/watch_lab.rs). Needs root; installs missing Debian packages itself.
set -u
set -o pipefail

HERE=$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)
# shellcheck source=lib.sh
. "$HERE/lib.sh"

[ "${1:-}" = run ] && [ $# = 3 ] || { echo "usage: $0 run OUTDIR KCDSCOPE" >&2; exit 2; }
OUT=$2
KCD=$3
NSA=kcdw-a        # probe cases: the sender, watched
NSB=kcdw-b        # the receiver
W=
PIDS=()
NCHECK=0
NFAIL=0

cleanup() {
    local rc=$? p
    set +e
    trap - EXIT INT TERM
    for p in "${PIDS[@]}"; do kill -KILL "$p" 2>/dev/null; wait "$p" 2>/dev/null; done
    [ -n "$W" ] && bash "$HERE/mit-kdc.sh" down "$W/lab" >/dev/null 2>&1
    netns_down "$NSA"; netns_down "$NSB"
    [ -n "$W" ] && rm -rf "$W"
    exit $rc
}

check() {  # check TEXT CMD... : PASS if CMD succeeds
    local text=$1; shift
    NCHECK=$((NCHECK + 1))
    if "$@"; then echo "PASS $text" >>"$OUT/CHECKS.txt"
    else echo "FAIL $text" >>"$OUT/CHECKS.txt"; NFAIL=$((NFAIL + 1)); fi
}

# start_watch NS NAME ARGS... : kcdscope watch in NS, stderr in OUT/NAME.err; returns once
# it says it is watching (its pid in WATCH_PID).
start_watch() {
    local ns=$1 name=$2; shift 2
    ip netns exec "$ns" "$KCD" watch "$@" >"${WATCH_STDOUT:-$OUT/$name.out}" 2>"$OUT/$name.err" &
    WATCH_PID=$!
    PIDS+=("$WATCH_PID")
    for _ in $(seq 1 100); do grep -q '^kcdscope: watching' "$OUT/$name.err" && return 0; sleep 0.05; done
    cat "$OUT/$name.err" >&2
    lab_die "kcdscope watch ($name) did not start"
}

# stop_pid SIGNAL PID : signal it and wait for it; its exit status in STOP_RC.
stop_pid() {
    kill "-$1" "$2" 2>/dev/null
    wait "$2" 2>/dev/null
    STOP_RC=$?
}

# The ids of the probe's programs loaded in the kernel (bpftool 7.1 does not list TCX
# attachments under `net show`, but links are listed with their program).
kcd_progs() { bpftool prog show 2>/dev/null | awk '/ name kcd_(ingress|egress) / {sub(":", "", $1); print $1}'; }
kcd_links() {
    local p
    for p in $(kcd_progs); do bpftool link show 2>/dev/null | grep -c "prog $p\b"; done | awk '{s += $1} END {print s + 0}'
}
# Nothing of ours left: no program loaded (so no link), no classic tc filter in NS either.
probe_gone() {
    [ -z "$(kcd_progs)" ] &&
    ! ip netns exec "$1" tc filter show dev "$2" ingress 2>/dev/null | grep -q kcd_ &&
    ! ip netns exec "$1" tc filter show dev "$2" egress 2>/dev/null | grep -q kcd_
}
probe_attached() { [ "$(kcd_links)" = "$1" ]; }

# The "N packets matched, N captured, N dropped" of a watch's last status line.
counters() { grep -o '[0-9]* packets matched, [0-9]* captured, [0-9]* dropped' "$OUT/$1.err" | tail -1; }
field() { counters "$1" | awk -v k="$2" '{for (i = 2; i <= NF; i++) if ($i ~ k) print $(i-1)}'; }

lab_require_root
lab_install bpftool tcpdump tshark iproute2 krb5-user tmux openssl
mkdir -p "$OUT" || lab_die "cannot create $OUT"
OUT=$(cd "$OUT" && pwd)
: >"$OUT/CHECKS.txt"
trap cleanup EXIT
trap 'exit 130' INT TERM
W=$(mktemp -d /tmp/kcdwatch.XXXXXX)
chmod 755 "$W"  # Apache (www-data) reads its keytab under it
t0=$SECONDS

# ---------------------------------------------------------------------------------------
# 1. The MIT lab: eBPF, libpcap and tcpdump watch the client's interface at once.
bash "$HERE/mit-kdc.sh" up "$W/lab" >"$W/up.log" 2>&1 || { tail -20 "$W/up.log" >&2; lab_die "mit-kdc.sh up failed"; }
# shellcheck disable=SC1091
. "$W/lab/lab.env"
NS=$LAB_NS
IF=$LAB_IFACE

capture_start "$NS" "$IF" "$OUT/tcpdump.pcap" "port 88"
TCPDUMP_PID=$CAPTURE_PID
start_watch "$NS" ebpf -i "$IF" --backend ebpf --no-fallback -o "$OUT/ebpf.ndjson" --write-pcap "$OUT/ebpf.pcapng"
EBPF_PID=$WATCH_PID
start_watch "$NS" pcap -i "$IF" --backend pcap -o "$OUT/pcap.ndjson" --write-pcap "$OUT/pcap.pcapng"
PCAP_PID=$WATCH_PID
check "the probe is attached to $IF, ingress and egress (2 TCX links)" probe_attached 2
grep -q "with eBPF" "$OUT/ebpf.err"; check "the eBPF watch says it captures with eBPF" test $? = 0
grep -q "with libpcap" "$OUT/pcap.err"; check "the libpcap watch says it captures with libpcap" test $? = 0

kc() {  # kc CONF CMD... : an MIT client in the client namespace
    local conf=$1; shift
    ip netns exec "$NS" env KRB5_CONFIG="$conf" KRB5CCNAME="FILE:$W/cc" "$@" >>"$W/clients.log" 2>&1
}
PW=$(head -1 "$LAB_USERS_PASSWORD_FILE")
kc "$LAB_KRB5_CONF" kinit alice <<<"$PW"; check "kinit alice (UDP) succeeds" test $? = 0
kc "$LAB_KRB5_CONF" kvno "$LAB_TARGET_SPN"; check "kvno $LAB_TARGET_SPN succeeds" test $? = 0
kc "$LAB_KRB5_CONF" kinit alice <<<"not-the-password"; check "kinit alice with a wrong password fails" test $? != 0
kc "$LAB_KRB5_CONF_TCP_ONLY" kinit alice <<<"$PW"; check "kinit alice over TCP succeeds" test $? = 0
kc "$LAB_KRB5_CONF_SMALL_UDP" kinit alice <<<"$PW"; check "kinit alice against the 300-byte UDP KDC (52, then TCP) succeeds" test $? = 0
kc "$LAB_KRB5_CONF" kinit -k -t "$LAB_SVC_KEYTAB" "$LAB_SVC_PRINCIPAL"; check "the service account gets its TGT from its keytab" test $? = 0
kc "$LAB_KRB5_CONF" kvno -U alice -P "$LAB_TARGET_SPN"; check "S4U2Self + S4U2Proxy for alice to $LAB_TARGET_SPN succeeds" test $? = 0
kc "$LAB_KRB5_CONF" kinit "$LAB_SVC_NOT_ALLOWED_PRINCIPAL" <<<"$(head -1 "$LAB_SVC_NOT_ALLOWED_PASSWORD_FILE")"
kc "$LAB_KRB5_CONF" kvno -U alice -P "$LAB_TARGET_SPN"; check "S4U2Proxy to a target not allowed is refused" test $? != 0
kc "$LAB_KRB5_CONF" kvno HTTP/nosuch.lab.test; check "kvno of an unknown service fails" test $? != 0
sleep 0.5
capture_stop; CAPTURE_PID=
chown "$(id -u):$(id -g)" "$OUT/tcpdump.pcap" 2>/dev/null || true
stop_pid TERM "$EBPF_PID"; check "the eBPF watch exits 0 on SIGTERM" test "$STOP_RC" = 0
stop_pid INT "$PCAP_PID"; check "the libpcap watch exits 0 on SIGINT" test "$STOP_RC" = 0
check "nothing of the probe is left after SIGTERM" probe_gone "$NS" "$IF"
n_tcpdump=$(tcpdump -r "$OUT/tcpdump.pcap" -n 2>/dev/null | wc -l)
check "eBPF captured what tcpdump did ($n_tcpdump packets), none dropped" test "$(field ebpf captured)" = "$n_tcpdump" -a "$(field ebpf dropped)" = 0
check "libpcap captured what tcpdump did ($n_tcpdump packets), none dropped" test "$(field pcap captured)" = "$n_tcpdump" -a "$(field pcap dropped)" = 0
bash "$HERE/mit-kdc.sh" down "$W/lab" >/dev/null 2>&1

# ---------------------------------------------------------------------------------------
# 2. The probe's own cases, on a veth pair between two namespaces (MTU 1500, TSO and GRO
# on, as veth has them by default).
netns_up "$NSA"; netns_up "$NSB"
ip link add kcdwa0 netns "$NSA" type veth peer name kcdwb0 netns "$NSB" || lab_die "veth failed"
ip -n "$NSA" addr add 10.88.0.1/24 dev kcdwa0; ip -n "$NSB" addr add 10.88.0.2/24 dev kcdwb0
ip -n "$NSA" addr add fd88::1/64 dev kcdwa0 nodad; ip -n "$NSB" addr add fd88::2/64 dev kcdwb0 nodad
ip -n "$NSA" link set kcdwa0 up; ip -n "$NSB" link set kcdwb0 up
ip netns exec "$NSA" ethtool -K kcdwa0 tso on gso on >/dev/null 2>&1 || true
PY=/usr/bin/python3

# TSO: one 200 000-byte write over TCP to port 88; the receiver counts what it got.
ip netns exec "$NSB" $PY -c '
import socket, sys
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.88.0.2", 88)); s.listen(1); print("ready", flush=True)
c, _ = s.accept(); n = 0
while True:
    b = c.recv(1 << 16)
    if not b: break
    n += len(b)
open(sys.argv[1], "w").write(str(n))' "$W/tso.received" >"$W/tso.srv" &
SRV=$!; PIDS+=("$SRV")
for _ in $(seq 1 50); do grep -q ready "$W/tso.srv" && break; sleep 0.05; done
capture_start "$NSA" kcdwa0 "$OUT/tso.tcpdump.pcap" "tcp port 88"
start_watch "$NSA" tso -i kcdwa0 --json --write-pcap "$OUT/tso.pcapng" --no-fallback
WPID=$WATCH_PID
ip netns exec "$NSA" $PY -c '
import socket
s = socket.create_connection(("10.88.0.2", 88)); s.sendall(bytes(range(256)) * 781 + b"x" * 64); s.close()'
wait "$SRV"
sleep 0.3
capture_stop; CAPTURE_PID=
stop_pid INT "$WPID"; check "watch exits 0 on SIGINT" test "$STOP_RC" = 0
check "nothing of the probe is left after SIGINT" probe_gone "$NSA" kcdwa0
check "the receiver got 200000 bytes" test "$(cat "$W/tso.received" 2>/dev/null)" = 200000
tcp_payload() { tshark -r "$1" -Y 'tcp.dstport == 88' -T fields -e tcp.len 2>/dev/null | awk '{s += $1} END {print s + 0}'; }
max_frame() { tshark -r "$1" -T fields -e frame.len 2>/dev/null | sort -n | tail -1; }
check "tshark: the eBPF pcapng holds all 200000 bytes sent to port 88" test "$(tcp_payload "$OUT/tso.pcapng")" = 200000
check "tshark: so does tcpdump's capture" test "$(tcp_payload "$OUT/tso.tcpdump.pcap")" = 200000
mf=$(max_frame "$OUT/tso.pcapng")
check "super-packets larger than the MTU were copied whole (largest frame $mf bytes)" test "${mf:-0}" -gt 4096
check "tshark finds no malformed frame in the eBPF pcapng" test "$(tshark -r "$OUT/tso.pcapng" -Y '_ws.malformed' 2>/dev/null | wc -l)" = 0

# Fragments: UDP datagrams of 4000 bytes to port 88 (IPv4 and IPv6), 3 fragments each.
start_watch "$NSA" frag -i kcdwa0 --json --write-pcap "$OUT/frag.pcapng" --no-fallback
WPID=$WATCH_PID
ip netns exec "$NSA" $PY -c '
import socket
for fam, addr in ((socket.AF_INET, "10.88.0.2"), (socket.AF_INET6, "fd88::2")):
    s = socket.socket(fam, socket.SOCK_DGRAM)
    for i in range(5): s.sendto(bytes([i]) * 4000, (addr, 88))
# unrelated fragmented traffic, on another port, must not be taken
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(5): s.sendto(b"z" * 4000, ("10.88.0.2", 9999))'
sleep 0.3
stop_pid INT "$WPID"
nfrag=$(tshark -r "$OUT/frag.pcapng" 2>/dev/null | wc -l)
check "IPv4 and IPv6 fragments of port-88 datagrams captured, others not ($nfrag frames, 30 expected)" test "$nfrag" = 30
nre=$(tshark -r "$OUT/frag.pcapng" -Y 'udp.dstport == 88 && udp.length == 4008' 2>/dev/null | wc -l)
check "tshark reassembles all 10 datagrams from the eBPF capture" test "$nre" = 10
check "the decoder reassembled them: 10 datagrams of 4000 bytes" test "$(grep -c '"detail":"4000 bytes on a Kerberos port' "$OUT/frag.out")" = 10

# VLAN: tagged frames written straight onto the wire with a packet socket (this kernel has
# no 8021q module for VLAN devices): 3 with one 802.1Q tag, 2 double-tagged (802.1ad outer
# tag 20, 802.1Q inner tag 10), UDP to port 88.
# The same frames arrive at kcdwb0, whose receive path takes the outer tag out of the data
# into skb->vlan_tci before the TC hook (skb_vlan_untag; no 8021q needed): there the probe
# finds the tag out of band (KCD_FLAG_VLAN), as a NIC with VLAN offload would hand it over,
# and the agent puts it back into the frame.
capture_start "$NSA" kcdwa0 "$OUT/vlan.tcpdump.pcap" "vlan"
start_watch "$NSA" vlan -i kcdwa0 --json --write-pcap "$OUT/vlan.pcapng" --no-fallback
WPID=$WATCH_PID
WATCH_STDOUT=$OUT/vlanrx.out start_watch "$NSB" vlanrx -i kcdwb0 --json --write-pcap "$OUT/vlanrx.pcapng" --no-fallback
WPID_RX=$WATCH_PID
ip netns exec "$NSA" $PY -c '
import socket, struct, time
def csum(b):
    n = sum(struct.unpack("!10H", b)); n = (n >> 16) + (n & 0xffff); n += n >> 16
    return ~n & 0xffff
s = socket.socket(socket.AF_PACKET, socket.SOCK_RAW); s.bind(("kcdwa0", 0))
payload = b"v" * 100
udp = struct.pack("!HHHH", 40000, 88, 8 + len(payload), 0) + payload
for i in range(5):
    ip = struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + len(udp), 100 + i, 0, 64, 17, 0, socket.inet_aton("10.90.0.1"), socket.inet_aton("10.90.0.2"))
    ip = ip[:10] + struct.pack("!H", csum(ip)) + ip[12:]
    tags = struct.pack("!HH", 0x8100, 10) if i < 3 else struct.pack("!HHHH", 0x88a8, 20, 0x8100, 10)
    s.send(b"\xff" * 6 + b"\x02\x00\x00\x00\x00\x01" + tags + b"\x08\x00" + ip + udp)
    time.sleep(0.01)'
sleep 0.3
capture_stop; CAPTURE_PID=
stop_pid INT "$WPID"
nv=$(tshark -r "$OUT/vlan.pcapng" -Y 'vlan.id == 10 && udp.dstport == 88' 2>/dev/null | wc -l)
nt=$(tshark -r "$OUT/vlan.tcpdump.pcap" -Y 'vlan.id == 10 && udp.dstport == 88' 2>/dev/null | wc -l)
check "VLAN: tshark finds the 5 tagged datagrams (2 double-tagged) in the eBPF pcapng ($nv) as in tcpdump's ($nt)" test "$nv" = 5 -a "$nt" = 5
check "VLAN: the decoder read all 5" test "$(grep -c '"detail":"100 bytes on a Kerberos port' "$OUT/vlan.out")" = 5
stop_pid INT "$WPID_RX"
frames_hex() { tcpdump -r "$1" -nn -xx 2>/dev/null | grep '^[[:space:]]*0x' | md5sum; }
nrx=$(tshark -r "$OUT/vlanrx.pcapng" -Y 'vlan.id == 10 && udp.dstport == 88' 2>/dev/null | wc -l)
nrx20=$(tshark -r "$OUT/vlanrx.pcapng" -Y 'ieee8021ad.id == 20 && vlan.id == 10 && udp.dstport == 88' 2>/dev/null | wc -l)
check "VLAN out of band (receive side, tag in skb->vlan_tci): tshark finds the 5 tagged datagrams ($nrx), 2 of them with both tags ($nrx20), in the eBPF pcapng" test "$nrx" = 5 -a "$nrx20" = 2
check "VLAN out of band: the probe found all 5 tags beside the packet and the agent put them back (status: $(grep -o '[0-9]* VLAN tags restored' "$OUT/vlanrx.err"))" grep -q ', 5 VLAN tags restored' "$OUT/vlanrx.err"
check "VLAN in the data (sender side): no tag had to be put back" sh -c "! grep -q 'VLAN tags restored' '$OUT/vlan.err'"
# The frames as written are the frames as sent: the same bytes as tcpdump's on the sender.
check "VLAN out of band: the rebuilt frames are byte for byte those tcpdump saw sent" \
    test "$nrx" = 5 -a "$(frames_hex "$OUT/vlanrx.pcapng")" = "$(frames_hex "$OUT/vlan.tcpdump.pcap")"
check "VLAN out of band: the decoder read all 5" test "$(grep -c '"detail":"100 bytes on a Kerberos port' "$OUT/vlanrx.out")" = 5

# TLS on a port not watched (8443): the probe takes the connection from its ClientHello on
# (both directions, through its flow map) and the decoder reads it as a replay of tcpdump's
# capture does; a plain TCP connection on another unwatched port (9443) is not taken.
openssl req -x509 -newkey rsa:2048 -nodes -keyout "$W/tls.key" -out "$W/tls.crt" -subj /CN=tls.lab.test -days 1 >/dev/null 2>&1
ip netns exec "$NSB" openssl s_server -accept 8443 -cert "$W/tls.crt" -key "$W/tls.key" -naccept 1 -quiet </dev/null >/dev/null 2>&1 &
TLSSRV=$!; PIDS+=("$TLSSRV")
ip netns exec "$NSB" $PY -c '
import socket
s = socket.socket(); s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
s.bind(("10.88.0.2", 9443)); s.listen(1)
c, _ = s.accept(); c.recv(1000); c.sendall(b"HTTP/1.0 200 OK\r\n\r\nplain"); c.close()' &
PLAIN=$!; PIDS+=("$PLAIN")
sleep 0.3
capture_start "$NSA" kcdwa0 "$OUT/tls.tcpdump.pcap" "tcp port 8443"
WATCH_STDOUT=$OUT/tls.out start_watch "$NSA" tls -i kcdwa0 --json --write-pcap "$OUT/tls.pcapng" --no-fallback
WPID=$WATCH_PID
grep -q 'and TLS by its ClientHello on any TCP port' "$OUT/tls.err"; check "TLS: watch says it follows TLS by content on any TCP port" test $? = 0
ip netns exec "$NSA" timeout 10 openssl s_client -connect 10.88.0.2:8443 -servername tls.lab.test </dev/null >"$W/s_client.out" 2>&1
check "TLS: openssl s_client completed a handshake with s_server on 8443" grep -q 'Verify return code\|Cipher is' "$W/s_client.out"
ip netns exec "$NSA" $PY -c '
import socket
s = socket.create_connection(("10.88.0.2", 9443)); s.sendall(b"GET / HTTP/1.0\r\n\r\n"); s.recv(1000); s.close()'
wait "$TLSSRV" 2>/dev/null; wait "$PLAIN" 2>/dev/null
sleep 0.3
capture_stop; CAPTURE_PID=
stop_pid INT "$WPID"
tsh() { tshark -r "$1" -d tcp.port==8443,tls -Y "$2" -T fields -e "$3" 2>/dev/null; }
check "TLS: tshark finds the ClientHello for tls.lab.test in the eBPF pcapng ($(tsh "$OUT/tls.pcapng" 'tls.handshake.type == 1' tls.handshake.extensions_server_name))" \
    test "$(tsh "$OUT/tls.pcapng" 'tls.handshake.type == 1' tls.handshake.extensions_server_name)" = tls.lab.test
check "TLS: and the server's answer (ServerHello, certificate) on the way back" test "$(tsh "$OUT/tls.pcapng" 'tls.handshake.type == 2' frame.number | wc -l)" = 1
check "TLS: every packet with payload, as tcpdump has them ($(tshark -r "$OUT/tls.pcapng" -Y "tcp.len > 0" 2>/dev/null | wc -l) of $(tshark -r "$OUT/tls.tcpdump.pcap" -Y "tcp.len > 0" 2>/dev/null | wc -l))" \
    test "$(tshark -r "$OUT/tls.pcapng" -Y 'tcp.len > 0' 2>/dev/null | wc -l)" = "$(tshark -r "$OUT/tls.tcpdump.pcap" -Y 'tcp.len > 0' 2>/dev/null | wc -l)"
check "TLS: nothing of the plain connection on 9443" test "$(tshark -r "$OUT/tls.pcapng" -Y 'tcp.port == 9443' 2>/dev/null | wc -l)" = 0
check "TLS: the status line counts 1 TLS connection on other ports" grep -q ', 1 TLS connections on other ports' "$OUT/tls.err"
# The decoder read it live (tests/tests/watch_lab.rs compares these events with a replay of
# tcpdump's capture, field by field).
check "TLS: the live events name the server tls.lab.test" grep -q '"sni":"tls.lab.test"' "$OUT/tls.out"

# Loopback: every packet once.
capture_start "$NSA" lo "$OUT/lo.tcpdump.pcap" "udp port 88"
start_watch "$NSA" lo -i lo --json --no-fallback
WPID=$WATCH_PID
# paced, to a receiver, so that neither tcpdump nor the socket has a reason to drop any
ip netns exec "$NSA" $PY -c '
import socket, time
r = socket.socket(socket.AF_INET, socket.SOCK_DGRAM); r.bind(("127.0.0.1", 88))
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
for i in range(50):
    s.sendto(b"q" * 100, ("127.0.0.1", 88)); time.sleep(0.002)
r.settimeout(1); n = 0
try:
    while n < 50: r.recv(200); n += 1
except OSError: pass
open("'"$W"'/lo.received", "w").write(str(n))'
sleep 0.3
capture_stop; CAPTURE_PID=
stop_pid INT "$WPID"
nlo=$(tcpdump -r "$OUT/lo.tcpdump.pcap" -n 2>/dev/null | wc -l)
check "loopback: 50 datagrams sent, $(cat "$W/lo.received") received, tcpdump saw $nlo, eBPF captured $(field lo captured)" test "$(cat "$W/lo.received")" = 50 -a "$nlo" = 50 -a "$(field lo captured)" = 50

# Flood: 100 000 port-88 datagrams with a 1 MiB ring: captured + dropped = sent, exactly.
WATCH_STDOUT=$OUT/flood.ndjson start_watch "$NSA" flood -i kcdwa0 --no-fallback --buffer 1 --json
WPID=$WATCH_PID
ip netns exec "$NSA" $PY -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m = b"f" * 64
for i in range(100000): s.sendto(m, ("10.88.0.2", 88))' 
sleep 0.3
stop_pid TERM "$WPID"
grep -o 'kcdscope watch (eBPF): [^;]*' "$OUT/flood.err" > "$OUT/flood.counters" 2>/dev/null || true
c=$(grep -o '[0-9]* packets matched, [0-9]* captured, [0-9]* dropped' "$OUT/flood.counters" | tail -1)
set -- $c
check "flood: matched $1 = 100000 sent, captured $4 + dropped $6 = 100000" test "${1:-0}" = 100000 -a $(( ${4:-0} + ${6:-0} )) = 100000
# The events say it too: the last capture_dropped anomaly (written at the end) carries the
# final counters, and they add up.
# event_counters FILE : "dropped kernel agent matched captured" of its last capture_dropped event
event_counters() {
    grep '"capture_dropped"' "$1" | tail -1 | grep -o '"detail":"[^"]*"' |
        sed -E 's/.*"([0-9]+) packets dropped so far \(([0-9]+) in the kernel, ([0-9]+) in the agent\) of ([0-9]+) matched; ([0-9]+) captured"/\1 \2 \3 \4 \5/'
}
ec=$(event_counters "$OUT/flood.ndjson")
set -- $ec
if [ "${1:-0}" -gt 0 ]; then
    check "flood: the events' last capture_dropped: matched $4 = 100000 = captured $5 + dropped $1 ($2 kernel + $3 agent), as the status line" \
        test "${4:-0}" = 100000 -a $(( ${5:-0} + ${1:-0} )) = 100000 -a $(( ${2:-0} + ${3:-0} )) = "${1:-0}" -a "${5:-}" = "$(echo "$c" | awk '{print $4}')"
else
    check "flood: no drop, so no capture_dropped event (status line: $c)" sh -c "[ '$(echo "$c" | awk '{print $6}')' = 0 ] && ! grep -q capture_dropped '$OUT/flood.ndjson'"
fi

# The terminal UI's header, in a real terminal (tmux): a flood into a 1 MiB ring drained
# once a second must lose packets, and the header shows seen, captured and dropped, adding
# up once drained, the same numbers as the events' and the status line's.
TMUX_SOCK=kcd-watch-tui-$$
tmx() { tmux -L "$TMUX_SOCK" "$@"; }
tmx -f /dev/null new-session -d -x 132 -y 30 \
    "env TERM=xterm-256color ip netns exec $NSA $KCD watch -i kcdwa0 --no-fallback --buffer 1 --drain-every 1000 --tui -o $OUT/tui.ndjson 2>$OUT/tui.err; sleep 30"
for _ in $(seq 1 100); do tmx capture-pane -p -t 0 2>/dev/null | grep -q '^capture (eBPF): seen 0 ' && break; sleep 0.05; done
check "TUI: the header shows the capture counters before any packet" sh -c "tmux -L $TMUX_SOCK capture-pane -p -t 0 | grep -q '^capture (eBPF): seen 0 | captured 0 | dropped 0 (0 kernel, 0 agent)'"
ip netns exec "$NSA" $PY -c '
import socket
s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
m = b"t" * 64
for i in range(100000): s.sendto(m, ("10.88.0.2", 88))'
hdr=
for _ in $(seq 1 100); do
    hdr=$(tmx capture-pane -p -t 0 | grep '^capture (eBPF): seen 100000 ' | grep -v pending)
    [ -n "$hdr" ] && break
    sleep 0.1
done
tmx capture-pane -p -t 0 >"$OUT/tui.screen"
# "capture (eBPF): seen S | captured C | dropped D (K kernel, A agent)"
set -- $(echo "$hdr" | sed -E 's/.*seen ([0-9]+) \| captured ([0-9]+) \| dropped ([0-9]+) \(([0-9]+) kernel, ([0-9]+) agent\).*/\1 \2 \3 \4 \5/')
check "TUI: the header says seen ${1:-?} = 100000 = captured ${2:-?} + dropped ${3:-?}, and some were dropped" \
    test "${1:-0}" = 100000 -a $(( ${2:-0} + ${3:-0} )) = 100000 -a "${3:-0}" -gt 0
tui_captured=${2:-} tui_dropped=${3:-}
tmx send-keys -t 0 q
for _ in $(seq 1 100); do grep -q 'kcdscope watch (eBPF)' "$OUT/tui.err" && break; sleep 0.05; done
tmx kill-server 2>/dev/null
set -- $(event_counters "$OUT/tui.ndjson")
check "TUI: the events' last capture_dropped has the header's numbers (captured $tui_captured = ${5:-?}, dropped $tui_dropped = ${1:-?})" \
    test "${5:-x}" = "$tui_captured" -a "${1:-x}" = "$tui_dropped" -a "${4:-0}" = 100000
check "TUI: so does the status line at exit" grep -q "100000 packets matched, $tui_captured captured, $tui_dropped dropped" "$OUT/tui.err"

# No privileges: a clear error, exit code 4, no panic.
noprivs() {
    setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps=-all --bounding-set=-all "$KCD" watch -i lo --duration 1 >"$OUT/noprivs.out" 2>"$OUT/noprivs.err"
    echo $?
}
rc=$(noprivs)
check "without privileges: exit code 4 ($rc)" test "$rc" = 4
check "without privileges: the missing capabilities are named" grep -q 'CAP_BPF.*needed\|CAP_NET_RAW needed' "$OUT/noprivs.err"
check "without privileges: no panic" sh -c "! grep -q panicked '$OUT/noprivs.err'"
# --gateway-events: lines appended to the gateway's file while watch runs reach its output
# (a Kerberos event of the MIT run above stands in for the gateway's, which has the same schema).
: >"$W/gw.ndjson"
start_watch "$NSA" gw -i kcdwa0 --gateway-events "$W/gw.ndjson" -o "$OUT/gw.ndjson"
WPID=$WATCH_PID
grep -m1 '"event_type":"krb5"' "$OUT/ebpf.ndjson" | sed 's/"src_port":[0-9]*/"src_port":4242/' >>"$W/gw.ndjson"
echo 'not an event' >>"$W/gw.ndjson"
sleep 0.5
stop_pid INT "$WPID"
check "--gateway-events: an event appended while watching reaches the output" grep -q '"src_port":4242' "$OUT/gw.ndjson"
check "--gateway-events: a line that is not an event is counted and skipped" grep -q '1 gateway event lines were not events' "$OUT/gw.err"

# --report-every: the report with the capture counters, periodically and at the end.
ip netns exec "$NSA" "$KCD" watch -i kcdwa0 --report-every 0.5 --duration 1.6 >"$OUT/report.out" 2>"$OUT/report.err"
check "--report-every 0.5 for 1.6 s: 4 reports with the capture counters ($(grep -c '^capture (eBPF): ' "$OUT/report.out"))" test "$(grep -c '^capture (eBPF): .* dropped' "$OUT/report.out")" = 4

# The systemd unit's capabilities, as an unprivileged user, suffice for the eBPF probe.
CAPS=+bpf,+perfmon,+net_admin,+net_raw
ip netns exec "$NSA" setpriv --reuid=65534 --regid=65534 --clear-groups --inh-caps="$CAPS" --ambient-caps="$CAPS" \
    "$KCD" watch -i kcdwa0 --no-fallback --duration 1 >/dev/null 2>"$OUT/caps.err"
check "as nobody with CAP_BPF, CAP_PERFMON, CAP_NET_ADMIN, CAP_NET_RAW only (the unit's): eBPF loads" grep -q 'with eBPF' "$OUT/caps.err"
"$KCD" watch -i no-such-if0 --duration 1 >/dev/null 2>"$OUT/noif.err"
check "an unknown interface: a clear error" grep -q 'no interface named "no-such-if0"' "$OUT/noif.err"

# SIGKILL (as a panic with panic=abort would): the kernel removes the TCX links itself.
start_watch "$NSA" kill -i kcdwa0 --json --no-fallback
check "attached before SIGKILL" probe_attached 2
stop_pid KILL "$WATCH_PID"
sleep 0.5
check "nothing of the probe is left after SIGKILL" probe_gone "$NSA" kcdwa0

echo "lab: $((NCHECK - NFAIL)) passed, $NFAIL failed ($((SECONDS - t0)) s); checks in $OUT/CHECKS.txt" >&2
[ "$NFAIL" = 0 ]
