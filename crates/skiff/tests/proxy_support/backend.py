"""Test backend for the proxy tests: answers every TCP connection and UDP datagram on the
given ports with "<name> <client-ip>\n". Usage: backend.py NAME PROTO:ADDR:PORT..."""
import socket, sys, threading

name = sys.argv[1]


def tcp(addr, port):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
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


for spec in sys.argv[2:]:
    proto, addr, port = spec.split(":")
    threading.Thread(target=tcp if proto == "tcp" else udp, args=(addr, int(port)), daemon=True).start()
print("ready", flush=True)
threading.Event().wait()
