"""pcap files for perf/run: read records, and compare two rewrites of one input packet by packet.

compare(ours, peer) reports identical packets, differences, and packets that differ only by
tcprewrite 4.4.3's known zero-UDP-checksum bug, recognised exactly (the same rule as
tests/stages/rewrite/rewrite_tcprewrite_test.cpp): a UDP datagram whose checksum computes to
0 must carry 0xffff (RFC 768; 0 means "no checksum"); tcprewrite --fixcsum writes 0x0000. A
packet counts as that bug only if the two copies differ in exactly those two bytes, the peer
has 0x0000, ours has 0xffff, and ours verifies. Anything else is a difference.
Timestamps are compared in nanoseconds (sluice writes nanosecond pcap, tcprewrite keeps the
input's microseconds); the record header's lengths and the bytes must match exactly.
"""

import struct

MAGIC_US = 0xA1B2C3D4
MAGIC_NS = 0xA1B23C4D


class PcapError(Exception):
    pass


def read(path):
    """(link type, list of (timestamp ns, original length, bytes)) of a classic pcap file."""
    with open(path, "rb") as f:
        data = f.read()
    if len(data) < 24:
        raise PcapError(f"{path}: too short for a pcap header")
    magic_le = struct.unpack_from("<I", data, 0)[0]
    if magic_le in (MAGIC_US, MAGIC_NS):
        endian = "<"
    elif struct.unpack_from(">I", data, 0)[0] in (MAGIC_US, MAGIC_NS):
        endian = ">"
    else:
        raise PcapError(f"{path}: not a classic pcap file (pcapng is not read here)")
    magic = struct.unpack_from(endian + "I", data, 0)[0]
    scale = 1 if magic == MAGIC_NS else 1000
    link = struct.unpack_from(endian + "I", data, 20)[0]
    rec = struct.Struct(endian + "IIII")
    out, off = [], 24
    while off + 16 <= len(data):
        sec, frac, caplen, origlen = rec.unpack_from(data, off)
        off += 16
        if off + caplen > len(data):
            raise PcapError(f"{path}: record {len(out)} runs past the end of the file")
        out.append((sec * 1_000_000_000 + frac * scale, origlen, data[off:off + caplen]))
        off += caplen
    return link, out


def write(path, link, records, nanosecond=False):
    """Writes (timestamp ns, original length, bytes) records (tests)."""
    with open(path, "wb") as f:
        f.write(struct.pack("<IHHiIII", MAGIC_NS if nanosecond else MAGIC_US, 2, 4, 0, 0, 262144, link))
        for ts, origlen, data in records:
            frac = ts % 1_000_000_000 if nanosecond else (ts % 1_000_000_000) // 1000
            f.write(struct.pack("<IIII", ts // 1_000_000_000, frac, len(data), origlen))
            f.write(data)


def ones_sum(data, acc=0):
    if len(data) % 2:
        data = bytes(data) + b"\0"
    acc += sum(struct.unpack(f"!{len(data) // 2}H", data))
    while acc >> 16:
        acc = (acc & 0xFFFF) + (acc >> 16)
    return acc


def udp_checksum_offset(frame):
    """Offset of the UDP checksum in an Ethernet frame carrying IPv4/IPv6 UDP (no extension
    headers, not a fragment), and whether the datagram as stored verifies; (None, False) for
    anything else."""
    if len(frame) < 14:
        return None, False
    ethertype = struct.unpack_from("!H", frame, 12)[0]
    if ethertype == 0x0800 and len(frame) >= 34:
        ihl = (frame[14] & 0x0F) * 4
        total = struct.unpack_from("!H", frame, 16)[0]
        frag = struct.unpack_from("!H", frame, 20)[0] & 0x3FFF
        if frame[23] != 17 or frag or ihl < 20 or 14 + total > len(frame):
            return None, False
        l4, l4_len = 14 + ihl, total - ihl
        pseudo = frame[26:34] + struct.pack("!BBH", 0, 17, l4_len)
    elif ethertype == 0x86DD and len(frame) >= 54:
        l4_len = struct.unpack_from("!H", frame, 18)[0]
        if frame[20] != 17 or 54 + l4_len > len(frame):
            return None, False
        l4 = 54
        pseudo = frame[22:54] + struct.pack("!IxxxB", l4_len, 17)
    else:
        return None, False
    if l4_len < 8:
        return None, False
    verifies = ones_sum(frame[l4:l4 + l4_len], ones_sum(pseudo)) == 0xFFFF
    return l4 + 6, verifies


def is_peer_zero_udp_checksum_bug(ours, peer):
    if len(ours) != len(peer):
        return False
    csum, verifies = udp_checksum_offset(ours)
    if csum is None or not verifies:
        return False
    if ours[csum:csum + 2] != b"\xff\xff" or peer[csum:csum + 2] != b"\x00\x00":
        return False
    return ours[:csum] == peer[:csum] and ours[csum + 2:] == peer[csum + 2:]


class Comparison:
    def __init__(self):
        self.packets = 0
        self.identical = 0
        self.peer_zero_udp_checksum = []  # indices
        self.differences = []             # (index, what)

    @property
    def ok(self):
        return not self.differences

    def summary(self, peer="tcprewrite"):
        s = f"{self.packets} packets: {self.identical} byte-identical"
        if self.peer_zero_udp_checksum:
            s += (f", {len(self.peer_zero_udp_checksum)} differing only by {peer}'s zero-UDP-checksum bug "
                  f"(0x0000 written for a checksum that computes to 0; sluice writes 0xffff, RFC 768)")
        if self.differences:
            s += f", {len(self.differences)} DIFFERENT (first: #{self.differences[0][0]}: {self.differences[0][1]})"
        return s


def compare(ours_path, peer_path):
    link_a, a = read(ours_path)
    link_b, b = read(peer_path)
    c = Comparison()
    c.packets = max(len(a), len(b))
    if link_a != link_b:
        c.differences.append((0, f"link types differ: {link_a} vs {link_b}"))
    if len(a) != len(b):
        c.differences.append((min(len(a), len(b)), f"packet counts differ: {len(a)} vs {len(b)}"))
    for i, ((ts_a, len_a, d_a), (ts_b, len_b, d_b)) in enumerate(zip(a, b)):
        if d_a == d_b and ts_a == ts_b and len_a == len_b:
            c.identical += 1
        elif ts_a != ts_b:
            c.differences.append((i, f"timestamps differ: {ts_a} vs {ts_b} ns"))
        elif len_a != len_b:
            c.differences.append((i, f"original lengths differ: {len_a} vs {len_b}"))
        elif is_peer_zero_udp_checksum_bug(d_a, d_b):
            c.peer_zero_udp_checksum.append(i)
        else:
            first = next((k for k in range(min(len(d_a), len(d_b))) if d_a[k] != d_b[k]), min(len(d_a), len(d_b)))
            c.differences.append((i, f"bytes differ from offset {first} ({len(d_a)} vs {len(d_b)} bytes)"))
    return c
