#!/usr/bin/env python3
"""A second address for the lab's one KDC: forwards Kerberos over UDP and TCP from
LISTEN:88 to KDC:88, so that a gateway configured with two domain controllers reaches the
same Samba process twice, and the first one can be killed (this process) and started again.
Each request forwarded is logged ("udp"/"tcp", the client), the fail-over test's count of
what reached the first address.

    kdc-forward.py LISTEN_ADDR KDC_ADDR
"""
import socket
import sys
import threading

listen, kdc = sys.argv[1], sys.argv[2]
log_lock = threading.Lock()


def log(*words):
    with log_lock:
        print(*words, flush=True)


def udp_one(srv, data, client):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(10)
    try:
        s.connect((kdc, 88))
        s.send(data)
        reply = s.recv(65536)
        srv.sendto(reply, client)
        log("udp", client[0], client[1], len(data), len(reply))
    except OSError as e:
        log("udp-failed", client[0], client[1], e)
    finally:
        s.close()


def udp_loop():
    srv = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    srv.bind((listen, 88))
    while True:
        data, client = srv.recvfrom(65536)
        threading.Thread(target=udp_one, args=(srv, data, client), daemon=True).start()


def pipe(a, b):
    try:
        while True:
            d = a.recv(65536)
            if not d:
                break
            b.sendall(d)
    except OSError:
        pass
    finally:
        for s in (a, b):
            try:
                s.shutdown(socket.SHUT_RDWR)
            except OSError:
                pass


def tcp_one(c, client):
    try:
        u = socket.create_connection((kdc, 88), timeout=10)
        u.settimeout(None)
    except OSError as e:
        log("tcp-failed", client[0], client[1], e)
        c.close()
        return
    log("tcp", client[0], client[1])
    threading.Thread(target=pipe, args=(u, c), daemon=True).start()
    pipe(c, u)


def tcp_loop():
    srv = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((listen, 88))
    srv.listen(64)
    while True:
        c, client = srv.accept()
        threading.Thread(target=tcp_one, args=(c, client), daemon=True).start()


threading.Thread(target=tcp_loop, daemon=True).start()
log("forwarding", listen, "->", kdc)
udp_loop()
