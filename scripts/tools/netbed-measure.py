#!/usr/bin/env python3
"""netbed's selftest measurement, run inside a 2-host bed (scripts/tools/netbed
--selftest). One program, three roles:

    netbed-measure.py recv ADDR PORT          bytes and seconds from the first
                                              to the last byte received
    netbed-measure.py send ADDR PORT SECONDS  sends zeros for SECONDS
    netbed-measure.py ping ADDR COUNT INTERVAL
                                              ICMP echo on a raw socket: min avg
                                              max in ms, and the losses
"""
import os, socket, struct, sys, time

def recv(addr, port):
    srv = socket.socket()
    srv.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
    srv.bind((addr, int(port)))
    srv.listen(1)
    srv.settimeout(30)
    conn, _ = srv.accept()
    conn.settimeout(30)
    buf = bytearray(1 << 20)
    total, first, last = 0, None, None
    while True:
        n = conn.recv_into(buf)
        if not n:
            break
        last = time.monotonic()
        if first is None:
            first = last
        total += n
    conn.close()
    print(total, (last - first) if total else 0.0)

def send(addr, port, seconds):
    give_up = time.monotonic() + 10
    while True:
        try:
            s = socket.create_connection((addr, int(port)), timeout=5)
            break
        except OSError:
            if time.monotonic() > give_up:
                raise
            time.sleep(0.05)
    block = bytes(1 << 18)
    end = time.monotonic() + float(seconds)
    while time.monotonic() < end:
        s.sendall(block)
    s.shutdown(socket.SHUT_WR)
    s.recv(1)  # the receiver closes once it has everything
    s.close()

def checksum(data):
    if len(data) % 2:
        data += b"\0"
    total = sum(struct.unpack("!%dH" % (len(data) // 2), data))
    while total >> 16:
        total = (total & 0xFFFF) + (total >> 16)
    return ~total & 0xFFFF

def ping(addr, count, interval):
    s = socket.socket(socket.AF_INET, socket.SOCK_RAW, socket.IPPROTO_ICMP)
    ident = os.getpid() & 0xFFFF
    rtts = []
    for seq in range(int(count)):
        body = b"netbed" * 8
        head = struct.pack("!BBHHH", 8, 0, 0, ident, seq)
        packet = struct.pack("!BBHHH", 8, 0, checksum(head + body), ident, seq) + body
        sent = time.perf_counter()
        s.sendto(packet, (addr, 0))
        deadline = sent + 1.0
        while True:
            left = deadline - time.perf_counter()
            if left <= 0:
                break
            s.settimeout(left)
            try:
                data = s.recv(2048)
            except socket.timeout:
                break
            ihl = (data[0] & 0x0F) * 4
            kind, _, _, rid, rseq = struct.unpack("!BBHHH", data[ihl:ihl + 8])
            if kind == 0 and rid == ident and rseq == seq:
                rtts.append((time.perf_counter() - sent) * 1000)
                break
        time.sleep(float(interval))
    if not rtts:
        print("nan nan nan", count)
    else:
        print("%.3f %.3f %.3f %d" % (min(rtts), sum(rtts) / len(rtts), max(rtts), int(count) - len(rtts)))

{"recv": recv, "send": send, "ping": ping}[sys.argv[1]](*sys.argv[2:])
