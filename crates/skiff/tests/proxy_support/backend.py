"""Test backend for the proxy tests: answers every TCP or SCTP connection and UDP datagram
on the given ports with "<name> <client-ip>\n". Usage: backend.py NAME PROTO:ADDR:PORT...
(PROTO: tcp, udp or sctp; sctp listeners are skipped where the kernel has no SCTP)."""
import socket, sys, threading

name = sys.argv[1]


def tcp(addr, port, proto=0):
    try:
        s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    except OSError:
        return  # no SCTP in this kernel: the SCTP tests skip themselves
    s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    s.bind((addr, port))
    s.listen(128)
    while True:
        c, peer = s.accept()
        threading.Thread(target=serve, args=(c, peer), daemon=True).start()


def serve(c, peer):
    try:
        c.sendall(("%s %s\n" % (name, peer[0])).encode())
        c.settimeout(0.3)
        try:
            while c.recv(4096):
                pass
        except OSError:
            pass
    finally:
        c.close()


def udp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.bind((addr, port))
    while True:
        data, peer = s.recvfrom(4096)
        s.sendto(("%s %s\n" % (name, peer[0])).encode(), peer)


def sctp(addr, port):
    tcp(addr, port, socket.IPPROTO_SCTP)


for spec in sys.argv[2:]:
    proto, addr, port = spec.split(":")
    serve_proto = {"tcp": tcp, "udp": udp, "sctp": sctp}[proto]
    threading.Thread(target=serve_proto, args=(addr, int(port)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
