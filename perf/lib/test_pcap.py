"""Unit tests of perf/lib/pcap.py: the packet-by-packet comparison perf/run trusts."""

import os
import struct
import sys
import tempfile
import unittest

sys.path.insert(0, os.path.dirname(os.path.abspath(__file__)))
import pcap  # noqa: E402


def ipv4_udp(payload, sport=1000, dport=53):
    udp_len = 8 + len(payload)
    ip = bytearray(struct.pack("!BBHHHBBH4s4s", 0x45, 0, 20 + udp_len, 1, 0, 64, 17, 0,
                               bytes([198, 18, 0, 1]), bytes([198, 19, 0, 2])))
    struct.pack_into("!H", ip, 10, 0xFFFF ^ pcap.ones_sum(ip))
    udp = bytearray(struct.pack("!HHHH", sport, dport, udp_len, 0) + payload)
    pseudo = ip[12:20] + struct.pack("!BBH", 0, 17, udp_len)
    csum = 0xFFFF ^ pcap.ones_sum(udp, pcap.ones_sum(pseudo))
    struct.pack_into("!H", udp, 6, csum or 0xFFFF)
    return b"\x02" * 6 + b"\x04" * 6 + b"\x08\x00" + bytes(ip) + bytes(udp)


def zero_checksum_datagram():
    """A UDP datagram whose checksum computes to 0 (stored as 0xffff): found by varying one
    payload word until the sum folds to 0xffff."""
    for w in range(65536):
        frame = ipv4_udp(struct.pack("!HH", 0x1234, w))
        if frame[14 + 20 + 6:14 + 20 + 8] == b"\xff\xff":
            return frame
    raise AssertionError("no payload word gives checksum 0")


class CompareTest(unittest.TestCase):
    def setUp(self):
        self.dir = tempfile.TemporaryDirectory()

    def tearDown(self):
        self.dir.cleanup()

    def files(self, ours, peer, ours_ns=True):
        a, b = os.path.join(self.dir.name, "ours.pcap"), os.path.join(self.dir.name, "peer.pcap")
        pcap.write(a, 1, ours, nanosecond=ours_ns)
        pcap.write(b, 1, peer, nanosecond=False)
        return a, b

    def test_identical_across_timestamp_precisions(self):
        recs = [(1_700_000_000_000_001_000 + i * 1000, 60, ipv4_udp(bytes(18))) for i in range(3)]
        c = pcap.compare(*self.files(recs, recs))
        self.assertTrue(c.ok)
        self.assertEqual((c.packets, c.identical), (3, 3))

    def test_tcprewrite_zero_udp_checksum_bug_is_recognised_exactly(self):
        ours = zero_checksum_datagram()
        peer = bytearray(ours)
        peer[40:42] = b"\x00\x00"
        c = pcap.compare(*self.files([(0, len(ours), ours)], [(0, len(ours), bytes(peer))]))
        self.assertTrue(c.ok)
        self.assertEqual(c.peer_zero_udp_checksum, [0])

    def test_the_bug_pattern_on_a_wrong_checksum_is_a_difference(self):
        ours = bytearray(ipv4_udp(b"abcd"))
        ours[40:42] = b"\xff\xff"  # 0xffff, but the datagram does not verify with it
        peer = bytearray(ours)
        peer[40:42] = b"\x00\x00"
        c = pcap.compare(*self.files([(0, len(ours), bytes(ours))], [(0, len(ours), bytes(peer))]))
        self.assertFalse(c.ok)

    def test_any_other_byte_is_a_difference(self):
        ours = ipv4_udp(b"abcd")
        peer = bytearray(ours)
        peer[36] ^= 1  # destination port
        c = pcap.compare(*self.files([(0, len(ours), ours)], [(0, len(ours), bytes(peer))]))
        self.assertEqual(len(c.differences), 1)
        self.assertIn("offset 36", c.differences[0][1])

    def test_missing_packets_and_timestamps_are_differences(self):
        p = ipv4_udp(b"")
        c = pcap.compare(*self.files([(0, len(p), p), (1000, len(p), p)], [(0, len(p), p)]))
        self.assertFalse(c.ok)
        c = pcap.compare(*self.files([(1000, len(p), p)], [(2000, len(p), p)]))
        self.assertIn("timestamps", c.differences[0][1])


if __name__ == "__main__":
    unittest.main()
