#include "engine/core/status.h"

#include <gtest/gtest.h>

namespace sluice {
namespace {

TEST(Status, BothKeepsEachFailureInItsOwnWords) {
  const Status r = Both(IoError("reading in.pcap: short record"), IoError("writing out.pcap: disk full"));
  EXPECT_FALSE(r.ok());
  EXPECT_EQ(r.code(), StatusCode::kIoError);
  EXPECT_EQ(r.message(), "reading in.pcap: short record; writing out.pcap: disk full");
}

TEST(Status, BothIsTheOneFailureWhenOnlyOneFailed) {
  const Status first = Both(InvalidArgument("bad"), Status::Ok());
  EXPECT_EQ(first.code(), StatusCode::kInvalidArgument);
  EXPECT_EQ(first.message(), "bad");
  const Status second = Both(Status::Ok(), NotFound("gone"));
  EXPECT_EQ(second.code(), StatusCode::kNotFound);
  EXPECT_EQ(second.message(), "gone");
  EXPECT_TRUE(Both(Status::Ok(), Status::Ok()).ok());
}

TEST(Status, BothTakesTheFirstFailuresCode) {
  EXPECT_EQ(Both(NotFound("a"), IoError("b")).code(), StatusCode::kNotFound);
}

}  // namespace
}  // namespace sluice
