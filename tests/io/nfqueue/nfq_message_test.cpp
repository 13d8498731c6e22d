// Reading the kernel's NFQUEUE messages and writing verdicts, on bytes built in memory.
#include "engine/io/nfqueue/nfq_message.h"

#include <gtest/gtest.h>

#include "tests/io/nfqueue/nfq_test_kernel.h"

namespace sluice {
namespace {

using testing::BuildErrorMessage;
using testing::BuildPacketMessage;
using testing::DecodedVerdict;
using testing::DecodeVerdicts;
using testing::Ipv4Bytes;
using testing::PacketSpec;

TEST(ParseNfqMessage, ReadsEveryFieldAndPointsAtThePayloadInPlace) {
  PacketSpec s;
  s.id = 0xfffffff0u;
  s.hook = NF_INET_PRE_ROUTING;
  s.hw_protocol = ETH_P_IPV6;
  s.mark = 0xabc;
  s.in_if = 3;
  s.out_if = 7;
  s.skb_info = NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO;
  s.cap_len = 3000;
  s.hwaddr = true;
  s.timestamp = true;
  s.payload = Ipv4Bytes(1001, 9);
  const auto msg = BuildPacketMessage(s);
  const NfqMessage m = ParseNfqMessage(msg.data(), static_cast<uint32_t>(msg.size()));
  ASSERT_EQ(m.kind, NfqMessageKind::kPacket);
  EXPECT_TRUE(m.has_id);
  const NfqPacketFields& f = m.packet;
  EXPECT_EQ(f.id, 0xfffffff0u);
  EXPECT_EQ(f.hook, NF_INET_PRE_ROUTING);
  EXPECT_EQ(f.hw_protocol, ETH_P_IPV6);
  EXPECT_EQ(f.mark, 0xabcu);
  EXPECT_EQ(f.in_if, 3u);
  EXPECT_EQ(f.out_if, 7u);
  EXPECT_EQ(f.skb_info, static_cast<uint32_t>(NFQA_SKB_CSUMNOTREADY | NFQA_SKB_GSO));
  EXPECT_EQ(f.cap_len, 3000u);
  EXPECT_EQ(f.payload_off % 4, 0u);
  ASSERT_EQ(f.payload_len, 1001u);
  ASSERT_LE(f.payload_off + f.payload_len, msg.size());
  EXPECT_EQ(0, std::memcmp(msg.data() + f.payload_off, s.payload.data(), s.payload.size()));
}

TEST(ParseNfqMessage, AbsentOptionalAttributesReadAsZero) {
  PacketSpec s;
  s.id = 5;
  s.payload = Ipv4Bytes(60);
  const auto msg = BuildPacketMessage(s);
  const NfqMessage m = ParseNfqMessage(msg.data(), static_cast<uint32_t>(msg.size()));
  ASSERT_EQ(m.kind, NfqMessageKind::kPacket);
  EXPECT_EQ(m.packet.mark, 0u);
  EXPECT_EQ(m.packet.in_if, 0u);
  EXPECT_EQ(m.packet.skb_info, 0u);
  EXPECT_EQ(m.packet.cap_len, 0u);
  // nlmsghdr 16 + nfgenmsg 4 + packet header attribute 12 + payload attribute header 4.
  EXPECT_EQ(m.packet.payload_off, 36u);
}

TEST(ParseNfqMessage, APacketWithoutPayloadIsBadButKeepsItsId) {
  PacketSpec s;
  s.id = 77;
  auto msg = BuildPacketMessage(s);  // an empty NFQA_PAYLOAD
  NfqMessage m = ParseNfqMessage(msg.data(), static_cast<uint32_t>(msg.size()));
  EXPECT_EQ(m.kind, NfqMessageKind::kBadPacket);
  EXPECT_TRUE(m.has_id);
  EXPECT_EQ(m.packet.id, 77u);
}

TEST(ParseNfqMessage, ALengthBeyondTheBytesIsBadAndNothingIsReadPastThem) {
  PacketSpec s;
  s.id = 78;
  s.payload = Ipv4Bytes(400);
  auto msg = BuildPacketMessage(s);
  // Only the first 100 bytes arrived: the header claims more.
  std::vector<uint8_t> cut(msg.begin(), msg.begin() + 100);
  const NfqMessage m = ParseNfqMessage(cut.data(), static_cast<uint32_t>(cut.size()));
  EXPECT_EQ(m.kind, NfqMessageKind::kBadPacket);
  EXPECT_TRUE(m.has_id);
  EXPECT_EQ(m.packet.id, 78u);
  uint32_t id = 0;
  EXPECT_TRUE(PeekNfqPacketId(cut.data(), 40, &id));
  EXPECT_EQ(id, 78u);
  EXPECT_FALSE(PeekNfqPacketId(cut.data(), 20, &id));
}

TEST(ParseNfqMessage, AnAttributeOfTheWrongSizeMakesThePacketBad) {
  PacketSpec s;
  s.id = 79;
  s.mark = 1;
  s.payload = Ipv4Bytes(60);
  auto msg = BuildPacketMessage(s);
  // The mark attribute follows the packet header attribute (at 20 + 12): claim 6 bytes, not 8.
  auto* mark = reinterpret_cast<nlattr*>(msg.data() + 32);
  ASSERT_EQ(mark->nla_type, NFQA_MARK);
  mark->nla_len = 6;
  const NfqMessage m = ParseNfqMessage(msg.data(), static_cast<uint32_t>(msg.size()));
  EXPECT_EQ(m.kind, NfqMessageKind::kBadPacket);
  EXPECT_TRUE(m.has_id);
}

TEST(ParseNfqMessage, ErrorReportsAndOtherMessages) {
  auto err = BuildErrorMessage(ENOENT, 9);
  NfqMessage m = ParseNfqMessage(err.data(), static_cast<uint32_t>(err.size()));
  EXPECT_EQ(m.kind, NfqMessageKind::kError);
  EXPECT_EQ(m.error, ENOENT);
  EXPECT_EQ(m.seq, 9u);
  auto ack = BuildErrorMessage(0);
  m = ParseNfqMessage(ack.data(), static_cast<uint32_t>(ack.size()));
  EXPECT_EQ(m.kind, NfqMessageKind::kError);
  EXPECT_EQ(m.error, 0);

  auto done = BuildErrorMessage(0);
  reinterpret_cast<nlmsghdr*>(done.data())->nlmsg_type = NLMSG_DONE;
  EXPECT_EQ(ParseNfqMessage(done.data(), static_cast<uint32_t>(done.size())).kind,
            NfqMessageKind::kOther);
  EXPECT_EQ(ParseNfqMessage(done.data(), 8).kind, NfqMessageKind::kOther);
}

VerdictMessage Msg(bool batch, bool accept, uint32_t id, uint32_t mark,
                   const uint8_t* payload = nullptr, uint32_t len = 0) {
  return {.batch = batch,
          .accept = accept,
          .id = id,
          .mark = mark,
          .payload = payload,
          .payload_len = len,
          .first = 0,
          .count = 1};
}

std::vector<uint8_t> Gather(const VerdictWriter& w) {
  std::vector<uint8_t> out;
  for (uint32_t i = 0; i < w.iov_count(); ++i) {
    const auto* p = static_cast<const uint8_t*>(w.iov()[i].iov_base);
    out.insert(out.end(), p, p + w.iov()[i].iov_len);
  }
  return out;
}

TEST(VerdictWriter, WritesMessagesTheKernelReadsWithPayloadsByReference) {
  VerdictWriter w(/*queue=*/7, 16, 1 << 20);
  const uint8_t five[5] = {1, 2, 3, 4, 5};
  ASSERT_TRUE(w.Append(Msg(true, true, 100, 0x10)));
  ASSERT_TRUE(w.Append(Msg(false, true, 101, 0x11)));
  ASSERT_TRUE(w.Append(Msg(false, true, 102, 0x12, five, 5)));
  ASSERT_TRUE(w.Append(Msg(false, false, 0xffffffffu, 0x13)));
  // Back-to-back headers share an iovec; the payload is its own, then 3 bytes of padding.
  ASSERT_EQ(w.iov_count(), 4u);
  EXPECT_EQ(w.iov()[1].iov_base, five);
  EXPECT_EQ(w.iov()[2].iov_len, 3u);
  EXPECT_EQ(w.messages(), 4u);
  EXPECT_EQ(w.bytes(), 40u + 40u + 44u + 8u + 40u);

  const auto wire = Gather(w);
  ASSERT_EQ(wire.size(), w.bytes());
  std::vector<DecodedVerdict> v;
  ASSERT_TRUE(DecodeVerdicts(wire.data(), wire.size(), &v));
  ASSERT_EQ(v.size(), 4u);
  EXPECT_TRUE(v[0].batch);
  EXPECT_EQ(v[0].id, 100u);
  EXPECT_EQ(v[0].verdict, static_cast<uint32_t>(NF_ACCEPT));
  EXPECT_EQ(v[0].mark, 0x10u);
  EXPECT_FALSE(v[0].has_payload);
  EXPECT_FALSE(v[1].batch);
  EXPECT_EQ(v[1].id, 101u);
  EXPECT_EQ(v[2].payload, std::vector<uint8_t>(five, five + 5));
  EXPECT_EQ(v[3].verdict, static_cast<uint32_t>(NF_DROP));
  EXPECT_EQ(v[3].id, 0xffffffffu);
  for (const auto& d : v) EXPECT_EQ(d.queue, 7u);

  w.Clear();
  EXPECT_EQ(w.iov_count(), 0u);
  EXPECT_EQ(w.bytes(), 0u);
}

TEST(VerdictWriter, StopsAtTheChunkLimitAndRefusesPayloadsThatCannotGoBack) {
  VerdictWriter w(0, 16, 100);
  EXPECT_TRUE(w.Append(Msg(false, true, 1, 0)));
  EXPECT_TRUE(w.Append(Msg(false, true, 2, 0)));
  EXPECT_FALSE(w.Append(Msg(false, true, 3, 0)));  // 120 > 100
  EXPECT_EQ(w.messages(), 2u);

  std::vector<uint8_t> big(200);
  const VerdictMessage too_big = Msg(false, true, 4, 0, big.data(), 200);
  EXPECT_FALSE(w.FitsAlone(too_big));
  VerdictWriter roomy(0, 16, 1 << 20);
  std::vector<uint8_t> huge(kNfqMaxPayload + 1);
  EXPECT_TRUE(roomy.Append(Msg(false, true, 5, 0, huge.data(), kNfqMaxPayload)));
  EXPECT_FALSE(roomy.Append(Msg(false, true, 6, 0, huge.data(), kNfqMaxPayload + 1)));
}

TEST(VerdictWriter, StopsAtItsMessageCapacity) {
  VerdictWriter w(0, 2, 1 << 20);
  EXPECT_TRUE(w.Append(Msg(false, true, 1, 0)));
  EXPECT_TRUE(w.Append(Msg(false, true, 2, 0)));
  EXPECT_FALSE(w.Append(Msg(false, true, 3, 0)));
}

}  // namespace
}  // namespace sluice
