#!/usr/bin/env python3
"""Replays wire frames captured off loopback to every node that was not their receiver.

Used by replay.sh (docs/wire.md, receiver binding). Standard library only.

  replay_frames.py PCAP NODE... [--summary FILE]
  NODE = name:port:admin_port   (the node's TCP+UDP listen port and its admin HTTP port)

1. Reads the pcap (tcpdump -w; Ethernet, Linux cooked v1/v2 or BSD loopback link types), keeps IPv4
   TCP and UDP packets whose destination port is a node's listen port.
2. TCP: payloads are reassembled per direction (4-tuple) by sequence number (retransmissions and
   overlaps dropped), then split into frames: each frame starts with the magic 'HSW1' and its 24-byte
   header carries the length of what follows. A stream whose capture started mid-frame is resynced at
   the next segment that starts with the magic. UDP: one datagram is one frame. All frames are then
   put in capture order (the order an eavesdropper would replay them in).
3. Every frame goes to every other node: a TCP frame on a fresh connection of its own (write, half
   close, read until the node closes), a UDP frame as one datagram. Datagrams go in small batches and
   the next batch waits until the node's hs_wire_rejected_total{reason="wrong_receiver"} has counted
   the previous one (bounded: 10 s, or 3 s without progress), so a full socket buffer cannot lose
   any; a node that stops counting is noted and no longer waited for.
4. Prints a JSON summary: per node, the frames sent to it (tcp, udp) and its wrong_receiver counter
   before the replay; and what was captured (frames by destination and channel).
"""
import bisect
import json
import socket
import struct
import sys
import threading
import time
import urllib.request

MAGIC = b"HSW1"
HEADER = 24
MAX_FRAME = 1 << 20


def read_pcap(path):
    """Yields (ts, proto, src, sport, dst, dport, seq, payload) for IPv4 TCP/UDP packets."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise SystemExit(f"{path}: not a pcap file ({len(data)} bytes)")
    magic = data[:4]
    if magic in (b"\xd4\xc3\xb2\xa1", b"\x4d\x3c\xb2\xa1"):
        end = "<"
    elif magic in (b"\xa1\xb2\xc3\xd4", b"\xa1\xb2\x3c\x4d"):
        end = ">"
    else:
        raise SystemExit(f"{path}: unknown pcap magic {magic.hex()} (pcapng is not supported; use tcpdump -w)")
    frac = 1e-9 if magic in (b"\x4d\x3c\xb2\xa1", b"\xa1\xb2\x3c\x4d") else 1e-6
    linktype = struct.unpack(end + "I", data[20:24])[0]
    off = 24
    while off + 16 <= len(data):
        sec, sub, incl, _ = struct.unpack(end + "IIII", data[off:off + 16])
        ts = sec + sub * frac
        pkt = data[off + 16:off + 16 + incl]
        off += 16 + incl
        if linktype == 1:  # Ethernet (Linux lo)
            if len(pkt) < 14 or pkt[12:14] != b"\x08\x00":
                continue
            ip = pkt[14:]
        elif linktype == 113:  # Linux cooked v1
            if len(pkt) < 16 or pkt[14:16] != b"\x08\x00":
                continue
            ip = pkt[16:]
        elif linktype == 276:  # Linux cooked v2
            if len(pkt) < 20 or pkt[0:2] != b"\x08\x00":
                continue
            ip = pkt[20:]
        elif linktype == 0:  # BSD loopback
            if len(pkt) < 4 or struct.unpack("<I", pkt[:4])[0] != 2:
                continue
            ip = pkt[4:]
        else:
            raise SystemExit(f"{path}: unsupported link type {linktype}")
        if len(ip) < 20 or ip[0] >> 4 != 4:
            continue
        ihl = (ip[0] & 0x0F) * 4
        total = struct.unpack(">H", ip[2:4])[0]
        proto = ip[9]
        src = socket.inet_ntoa(ip[12:16])
        dst = socket.inet_ntoa(ip[16:20])
        body = ip[ihl:total]
        if proto == 6 and len(body) >= 20:
            sport, dport, seq = struct.unpack(">HHI", body[:8])
            doff = (body[12] >> 4) * 4
            yield (ts, "tcp", src, sport, dst, dport, seq, body[doff:])
        elif proto == 17 and len(body) >= 8:
            sport, dport = struct.unpack(">HH", body[:4])
            yield (ts, "udp", src, sport, dst, dport, 0, body[8:])


def frames_of_stream(segments):
    """segments: list of (ts, seq, payload) of one direction. Returns ([(ts, frame)], bytes skipped):
    the whole frames found, in stream order, each with the capture time of the segment it ends in."""
    segments = [(t, s, p) for t, s, p in segments if p]
    if not segments:
        return [], 0
    base = segments[0][1]
    # Offsets relative to the first captured segment (32-bit wrap handled).
    rel = sorted(((s - base) % (1 << 32), t, p) for t, s, p in segments)
    stream = bytearray()
    seg_starts, seg_times = [], []  # where each appended segment begins in `stream`, and its time
    cursor = None
    for o, t, p in rel:
        if cursor is None:
            cursor = o
        if o + len(p) <= cursor:
            continue  # retransmission
        if o > cursor:  # a gap in the capture: carry on at this segment (resync below)
            cursor = o
        seg_starts.append(len(stream))
        seg_times.append(t)
        stream += p[cursor - o:]
        cursor = o + len(p)
    frames, skipped = [], 0

    def time_at(offset):
        i = bisect.bisect_right(seg_starts, offset) - 1
        return seg_times[max(i, 0)]

    pos = 0
    while pos + HEADER <= len(stream):
        if stream[pos:pos + 4] == MAGIC and stream[pos + 4] == 1:
            length = struct.unpack(">I", stream[pos + 8:pos + 12])[0]
            end = pos + HEADER + length
            if 16 <= length <= MAX_FRAME and end <= len(stream):
                frames.append((time_at(end - 1), bytes(stream[pos:end])))
                pos = end
                continue
            if end > len(stream):
                break  # the capture ended in this frame
        nxt = [s for s in seg_starts if s > pos and stream[s:s + 4] == MAGIC]
        if not nxt:
            break
        skipped += nxt[0] - pos
        pos = nxt[0]
    return frames, skipped


def metric(admin, reason="wrong_receiver"):
    url = f"http://127.0.0.1:{admin}/metrics"
    with urllib.request.urlopen(url, timeout=5) as r:
        text = r.read().decode()
    want = f'hs_wire_rejected_total{{reason="{reason}"}}'
    for line in text.splitlines():
        if line.startswith(want):
            return int(float(line.split()[-1]))
    return 0


def send_tcp(port, frame):
    s = socket.create_connection(("127.0.0.1", port), timeout=10)
    try:
        s.sendall(frame)
        s.shutdown(socket.SHUT_WR)
        while True:
            try:
                if not s.recv(65536):
                    return True
            except ConnectionResetError:
                return True
            except socket.timeout:
                return False
    finally:
        s.close()


def main():
    args = sys.argv[1:]
    summary_path = None
    if "--summary" in args:
        i = args.index("--summary")
        summary_path = args[i + 1]
        del args[i:i + 2]
    if len(args) < 3:
        raise SystemExit(__doc__)
    pcap = args[0]
    nodes = {}
    for spec in args[1:]:
        name, port, admin = spec.split(":")
        nodes[name] = (int(port), int(admin))
    by_port = {p: n for n, (p, _) in nodes.items()}

    streams = {}
    udp = []
    for ts, proto, src, sport, dst, dport, seq, payload in read_pcap(pcap):
        if dport not in by_port or dst != "127.0.0.1":
            continue
        if proto == "tcp":
            streams.setdefault((src, sport, dst, dport), []).append((ts, seq, payload))
        elif payload:
            udp.append((ts, by_port[dport], payload))
    timed = []  # (capture time, receiver name, channel, frame)
    skipped = 0
    for (src, sport, dst, dport), segs in streams.items():
        fr, sk = frames_of_stream(segs)
        skipped += sk
        timed += [(t, by_port[dport], "tcp", f) for t, f in fr]
    timed += [(t, n, "udp", p) for t, n, p in udp if p[:4] == MAGIC]
    timed.sort(key=lambda x: x[0])
    captured = [(n, ch, f) for _, n, ch, f in timed]
    if not captured:
        raise SystemExit("no frames in the capture")

    before = {n: metric(a) for n, (_, a) in nodes.items()}
    result = {n: {"tcp": 0, "udp": 0, "tcp_unclosed": 0, "wrong_receiver_before": before[n], "stopped_counting": False}
              for n in nodes}
    errors = []

    def replay_to(target):
        port, admin = nodes[target]
        res = result[target]
        batch = 0
        for receiver, channel, frame in captured:
            if receiver == target:
                continue
            if channel == "tcp":
                try:
                    if not send_tcp(port, frame):
                        res["tcp_unclosed"] += 1
                except OSError as e:
                    errors.append(f"{target}: tcp send: {e}")
                    continue
                res["tcp"] += 1
            else:
                u = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)
                u.sendto(frame, ("127.0.0.1", port))
                u.close()
                res["udp"] += 1
                batch += 1
                if batch == 16:
                    batch = 0
                    if res["stopped_counting"]:
                        time.sleep(0.005)
                        continue
                    want = before[target] + res["tcp"] + res["udp"]
                    start = changed = time.time()
                    last = metric(admin)
                    while last < want:
                        now = time.time()
                        if now - start > 10 or now - changed > 3:  # no progress: not counting these
                            res["stopped_counting"] = True
                            break
                        time.sleep(0.01)
                        v = metric(admin)
                        if v != last:
                            last, changed = v, time.time()

    threads = [threading.Thread(target=replay_to, args=(n,)) for n in nodes]
    for t in threads:
        t.start()
    for t in threads:
        t.join()

    count = {}
    for receiver, channel, _ in captured:
        key = f"{receiver}/{channel}"
        count[key] = count.get(key, 0) + 1
    out = {"nodes": result, "captured": count, "frames": len(captured), "tcp_streams": len(streams),
           "bytes_skipped_resync": skipped, "errors": errors[:20]}
    text = json.dumps(out, sort_keys=True)
    if summary_path:
        with open(summary_path, "w") as f:
            f.write(text + "\n")
    print(text)


if __name__ == "__main__":
    main()
