"""Test client for the proxy tests. Prints one line per attempt:
  OK <reply>   REFUSED   TIMEOUT   ERROR <text>
Usage: client.py tcp|sctp|udp IP PORT COUNT [SOURCE_PORT] | client.py ping IP | client.py hold IP PORT SECONDS"""
import socket, sys, time

kind, ip = sys.argv[1], sys.argv[2]


def once_tcp(port, timeout=1.5, proto=0):
    s = socket.socket(socket.AF_INET, socket.SOCK_STREAM, proto)
    s.settimeout(timeout)
    try:
        s.connect((ip, port))
        data = b""
        while not data.endswith(b"\n"):
            chunk = s.recv(4096)
            if not chunk:
                break
            data += chunk
        return "OK " + data.decode().strip()
    except ConnectionRefusedError:
        return "REFUSED"
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return "ERROR %s" % e.strerror
    finally:
        s.close()


def once_udp(s, port):
    try:
        s.send(b"hello\n")
        data = s.recv(4096)
        return "OK " + data.decode().strip()
    except ConnectionRefusedError:
        return "REFUSED"
    except socket.timeout:
        return "TIMEOUT"
    except OSError as e:
        return "ERROR %s" % e.strerror


def ping():
    import struct
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    s.settimeout(1.0)
    payload = b"skiff"
    header = struct.pack("!BBHHH", 8, 0, 0, 0x1234, 1)
    csum_data = header + payload
    total = sum(struct.unpack("!%dH" % (len(csum_data) // 2), csum_data[: len(csum_data) // 2 * 2]))
    if len(csum_data) % 2:
        total += csum_data[-1] << 8
    total = (total >> 16) + (total & 0xFFFF)
    total += total >> 16
    checksum = ~total & 0xFFFF
    s.sendto(struct.pack("!BBHHH", 8, 0, checksum, 0x1234, 1) + payload, (ip, 0))
    deadline = time.time() + 1.0
    while time.time() < deadline:
        try:
            data, peer = s.recvfrom(2048)
        except socket.timeout:
            break
        icmp = data[(data[0] & 0x0F) * 4:]
        if peer[0] == ip and icmp[0] == 0:
            return "REPLY"
    return "NOREPLY"


if kind in ("tcp", "sctp"):
    proto = socket.IPPROTO_SCTP if kind == "sctp" else 0
    for _ in range(int(sys.argv[4])):
        print(once_tcp(int(sys.argv[3]), proto=proto), flush=True)
elif kind == "udp":
    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
    s.settimeout(1.0)
    if len(sys.argv) > 5:
        s.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        s.bind(("0.0.0.0", int(sys.argv[5])))
    # Connected, so ICMP errors (a rejection) are reported as ECONNREFUSED.
    s.connect((ip, int(sys.argv[3])))
    for _ in range(int(sys.argv[4])):
        print(once_udp(s, int(sys.argv[3])), flush=True)
elif kind == "ping":
    print(ping(), flush=True)
elif kind == "hold":
    # One long-lived connection: reads the greeting, then sends a byte every 100 ms for
    # SECONDS and reports whether the connection survived.
    s = socket.create_connection((ip, int(sys.argv[3])), timeout=2)
    s.recv(4096)
    print("CONNECTED", flush=True)
    end = time.time() + float(sys.argv[4])
    try:
        while time.time() < end:
            s.sendall(b"x")
            time.sleep(0.1)
        print("SURVIVED", flush=True)
    except OSError as e:
        print("BROKEN %s" % e, flush=True)
