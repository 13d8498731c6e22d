#include "engine/io/pcap/pcap_records.h"

#include <fcntl.h>
#include <pcap/pcap.h>
#include <sys/stat.h>
#include <unistd.h>

#include <algorithm>
#include <cerrno>
#include <cstdio>
#include <cstring>
#include <utility>

namespace sluice {
namespace {

constexpr uint32_t kMagicMicro = 0xa1b2c3d4;
constexpr uint32_t kMagicNano = 0xa1b23c4d;
constexpr std::size_t kFileHeader = 24;
constexpr std::size_t kRecordHeader = 16;
// libpcap refuses records larger than this (pcap-int.h, MAXIMUM_SNAPLEN).
constexpr uint32_t kMaxCaplen = 262144;

struct FileHeader {
  uint32_t magic;
  uint16_t version_major, version_minor;
  int32_t thiszone;
  uint32_t sigfigs, snaplen, linktype;
};
static_assert(sizeof(FileHeader) == kFileHeader);

// Timestamps are signed 32-bit in the file (libpcap's struct pcap_timeval): read them so.
struct RecordHeader {
  int32_t sec, frac;
  uint32_t caplen, len;
};
static_assert(sizeof(RecordHeader) == kRecordHeader);

// Owners of what Open acquires, so that nothing leaks if a later step throws (bad_alloc).
struct PcapClose {
  void operator()(pcap_t* p) const noexcept { pcap_close(p); }
};
using PcapHandle = std::unique_ptr<pcap_t, PcapClose>;

class OwnedFd {
 public:
  explicit OwnedFd(int fd) noexcept : fd_(fd) {}
  OwnedFd(OwnedFd&& o) noexcept : fd_(std::exchange(o.fd_, -1)) {}
  OwnedFd& operator=(OwnedFd&&) = delete;
  ~OwnedFd() {
    if (fd_ >= 0) ::close(fd_);
  }
  int get() const noexcept { return fd_; }

 private:
  int fd_;
};

bool MaxCaplenIsLibpcaps(int dlt) noexcept {
  constexpr int kDbus = 231, kUsbPcap = 249, kEbhscr = 279;  // pcap-common.c, max_snaplen_for_dlt
  return dlt != kDbus && dlt != kUsbPcap && dlt != kEbhscr;
}

// The file read in chunks into one buffer that stays in cache, records walked with every
// length checked against what is left. (It mapped the file until measured beside this: on
// the 2-vCPU VM sluice is measured on, walking 1M × 64 B records and copying each out took
// 39 ns per record from the mapping, prefetching ahead, and 12 ns through 256 KiB read(2)s:
// the kernel copies the file in bulk, and the walk then reads from cache.) Reads stop at the
// size the file had when it was opened, as a mapping of it would.
class DirectReader final : public PcapRecordReader {
 public:
  static constexpr std::size_t kChunk = std::size_t{256} << 10;  // bytes per read(2)
  // Room for a chunk behind the largest record libpcap reads, header included.
  static constexpr std::size_t kCapacity = kChunk + kRecordHeader + kMaxCaplen;

  DirectReader(std::string path, OwnedFd&& fd, std::size_t size)
      : path_(std::move(path)),
        fd_(std::move(fd)),
        size_(size),
        offset_(kFileHeader),
        buf_(std::make_unique_for_overwrite<uint8_t[]>(kCapacity)) {
    direct_ = true;
  }

  Result Next(PcapRecord& out) noexcept override {
    if (!Have(kRecordHeader)) {
      if (read_failed_) return Result::kError;
      if (end_ == pos_) return Result::kEnd;
      return Fail("truncated dump file; tried to read " + std::to_string(kRecordHeader) +
                  " header bytes, only got " + std::to_string(end_ - pos_));
    }
    RecordHeader h;
    std::memcpy(&h, buf_.get() + pos_, sizeof h);
    if (h.caplen > kMaxCaplen) return Fail("invalid packet capture length " + std::to_string(h.caplen));
    if (!Have(kRecordHeader + h.caplen)) {
      if (read_failed_) return Result::kError;
      return Fail("truncated dump file; tried to read " + std::to_string(h.caplen) +
                  " captured bytes, only got " + std::to_string(end_ - pos_ - kRecordHeader));
    }
    out.sec = h.sec;
    out.frac = h.frac;
    // As libpcap does: bytes past the snapshot length are skipped, not handed out.
    out.caplen = h.caplen > snapshot_ ? snapshot_ : h.caplen;
    out.len = h.len;
    out.data = buf_.get() + pos_ + kRecordHeader;
    pos_ += kRecordHeader + h.caplen;
    ++records_;
    return Result::kRecord;
  }

  void SetFormat(const PcapFormat& f, uint32_t snapshot) {
    format_ = f;
    snapshot_ = snapshot;
  }

 private:
  // Whether n bytes from pos_ are in the buffer, reading on as needed (n <= kCapacity). False
  // when the file has fewer left, or a read failed (read_failed_, and error_ says why).
  bool Have(std::size_t n) noexcept {
    if (end_ - pos_ >= n) return true;
    // What is left of the last record read goes to the front (less than a record); the
    // records handed out before are done with (their data is valid until this Next).
    std::memmove(buf_.get(), buf_.get() + pos_, end_ - pos_);
    end_ -= pos_;
    pos_ = 0;
    while (end_ < n && offset_ < size_) {
      const std::size_t want = std::min({kChunk, kCapacity - end_, size_ - offset_});
      const ssize_t got = ::pread(fd_.get(), buf_.get() + end_, want, static_cast<off_t>(offset_));
      if (got < 0) {
        if (errno == EINTR) continue;
        read_failed_ = true;
        Fail(std::string("error reading dump file: ") + std::strerror(errno));  // libpcap's words
        return false;
      }
      if (got == 0) {
        size_ = offset_;  // the file has shrunk since it was opened: it ends here
        break;
      }
      end_ += static_cast<std::size_t>(got);
      offset_ += static_cast<std::size_t>(got);
    }
    return end_ >= n;
  }

  Result Fail(const std::string& why) {
    error_ = path_ + ": after " + std::to_string(records_) + " records: " + why;
    return Result::kError;
  }
  std::string path_;
  OwnedFd fd_;
  std::size_t size_;    // the file's size when opened: reading stops there
  std::size_t offset_;  // where the next read starts in the file
  std::unique_ptr<uint8_t[]> buf_;
  std::size_t pos_ = 0, end_ = 0;  // the unread bytes are buf_[pos_, end_)
  uint64_t records_ = 0;
  bool read_failed_ = false;
  uint32_t snapshot_ = kMaxCaplen;  // libpcap's effective snapshot length for the file
};

// Everything else, through libpcap (at nanosecond precision, so no timestamp loses digits).
// A classic pcap file in microseconds (byte-swapped, or an older version) is handed out in
// microseconds, as the file has them, so that what is written keeps the input's precision.
class LibpcapReader final : public PcapRecordReader {
 public:
  LibpcapReader(std::string path, PcapHandle&& p, bool micro)
      : path_(std::move(path)), p_(std::move(p)), micro_(micro) {
    format_.dlt = pcap_datalink(p_.get());
    format_.snaplen = static_cast<uint32_t>(pcap_snapshot(p_.get()));
    format_.nanosecond = !micro;
  }

  Result Next(PcapRecord& out) noexcept override {
    pcap_pkthdr* h = nullptr;
    const u_char* data = nullptr;
    const int rc = pcap_next_ex(p_.get(), &h, &data);
    if (rc == PCAP_ERROR_BREAK) return Result::kEnd;
    if (rc != 1) {
      error_ = path_ + ": after " + std::to_string(records_) + " records: " + pcap_geterr(p_.get());
      return Result::kError;
    }
    out.sec = h->ts.tv_sec;
    out.frac = micro_ ? h->ts.tv_usec / 1000 : h->ts.tv_usec;  // nanoseconds: opened so
    out.caplen = h->caplen;
    out.len = h->len;
    out.data = data;
    ++records_;
    return Result::kRecord;
  }

  void SetLinktype(uint32_t linktype) { format_.linktype = linktype; }

 private:
  std::string path_;
  PcapHandle p_;
  bool micro_;
  uint64_t records_ = 0;
};

// The header libpcap writes for a dead handle of `dlt`: asked of libpcap itself, so the
// DLT-to-LINKTYPE mapping is its own.
uint32_t LinktypeOfDlt(int dlt) {
  pcap_t* dead = pcap_open_dead(dlt, 65535);
  if (dead == nullptr) return static_cast<uint32_t>(dlt);
  char buf[64] = {};
  FILE* mem = fmemopen(buf, sizeof buf, "w");
  uint32_t linktype = static_cast<uint32_t>(dlt);
  if (mem != nullptr) {
    if (pcap_dumper_t* d = pcap_dump_fopen(dead, mem)) {
      pcap_dump_flush(d);
      FileHeader h;
      std::memcpy(&h, buf, sizeof h);
      linktype = h.linktype & 0x03ffffff;  // low bits: the link type; high bits: FCS info
      pcap_dump_close(d);                  // closes `mem`
    } else {
      std::fclose(mem);
    }
  }
  pcap_close(dead);
  return linktype;
}

}  // namespace

sluice::Result<std::unique_ptr<PcapRecordReader>> PcapRecordReader::Open(const std::string& path) {
  // libpcap opens every file first: it decides what is readable and says why not.
  char err[PCAP_ERRBUF_SIZE] = {};
  PcapHandle p(
      pcap_open_offline_with_tstamp_precision(path.c_str(), PCAP_TSTAMP_PRECISION_NANO, err));
  if (p == nullptr) return IoError(path + ": " + err);
  const int dlt = pcap_datalink(p.get());

  FileHeader h{};
  struct stat st{};
  OwnedFd fd(::open(path.c_str(), O_RDONLY | O_CLOEXEC));
  // The direct reader takes what it reads exactly as libpcap would: host byte order, version
  // 2.4 (libpcap swaps caplen and len in some older versions' records), and a link type whose
  // largest record is libpcap's MAXIMUM_SNAPLEN (D-Bus, EBHSCR and USBPcap allow more).
  const bool header = fd.get() >= 0 && fstat(fd.get(), &st) == 0 && S_ISREG(st.st_mode) &&
                      static_cast<std::size_t>(st.st_size) >= kFileHeader &&
                      pread(fd.get(), &h, sizeof h, 0) == static_cast<ssize_t>(sizeof h);
  const bool classic = header && (h.magic == kMagicMicro || h.magic == kMagicNano) &&
                       h.version_major == 2 && h.version_minor == 4 && MaxCaplenIsLibpcaps(dlt);
  if (classic) {
    posix_fadvise(fd.get(), 0, 0, POSIX_FADV_SEQUENTIAL);  // a larger read-ahead; advice only
    PcapFormat f;
    f.linktype = h.linktype;
    f.dlt = dlt;
    f.snaplen = h.snaplen;
    f.nanosecond = h.magic == kMagicNano;
    const auto snapshot = static_cast<uint32_t>(pcap_snapshot(p.get()));
    auto r =
        std::make_unique<DirectReader>(path, std::move(fd), static_cast<std::size_t>(st.st_size));
    r->SetFormat(f, snapshot);
    // `p` closes as this returns: libpcap only vetted the file.
    return std::unique_ptr<PcapRecordReader>(std::move(r));
  }
  const bool micro = header && (h.magic == kMagicMicro || h.magic == __builtin_bswap32(kMagicMicro));
  auto r = std::make_unique<LibpcapReader>(path, std::move(p), micro);
  r->SetLinktype(LinktypeOfDlt(dlt));
  return std::unique_ptr<PcapRecordReader>(std::move(r));
}

sluice::Result<std::unique_ptr<PcapRecordWriter>> PcapRecordWriter::Open(const std::string& path,
                                                                         const PcapFormat& format) {
  std::unique_ptr<PcapRecordWriter> w(new PcapRecordWriter());
  w->path_ = path;
  w->fd_ = ::open(path.c_str(), O_WRONLY | O_CREAT | O_TRUNC | O_CLOEXEC, 0644);
  if (w->fd_ < 0) return IoError(path + ": " + std::strerror(errno));
  w->buf_.resize(kBufferBytes);
  const FileHeader h{format.nanosecond ? kMagicNano : kMagicMicro, 2, 4, 0, 0, format.snaplen, format.linktype};
  std::memcpy(w->buf_.data(), &h, sizeof h);
  w->used_ = sizeof h;
  return w;
}

PcapRecordWriter::~PcapRecordWriter() { (void)Close(); }

void PcapRecordWriter::Write(const PcapRecord& r) noexcept {
  if (kRecordHeader + r.caplen > buf_.size() - used_) Flush();
  // caplen is at most 262144 (the readers refuse more), so a record fits an empty buffer.
  const RecordHeader h{static_cast<int32_t>(r.sec), static_cast<int32_t>(r.frac), r.caplen, r.len};
  std::memcpy(buf_.data() + used_, &h, sizeof h);
  std::memcpy(buf_.data() + used_ + sizeof h, r.data, r.caplen);
  used_ += sizeof h + r.caplen;
}

void PcapRecordWriter::Flush() noexcept {
  std::size_t done = 0;
  while (done < used_ && error_ == 0) {
    const ssize_t n = ::write(fd_, buf_.data() + done, used_ - done);
    if (n < 0) {
      if (errno == EINTR) continue;
      error_ = errno;
      break;
    }
    done += static_cast<std::size_t>(n);
  }
  used_ = 0;
}

Status PcapRecordWriter::Close() {
  if (fd_ < 0) return Status::Ok();
  Flush();
  if (::close(fd_) != 0 && error_ == 0) error_ = errno;
  fd_ = -1;
  if (error_ != 0) return IoError(path_ + ": write failed: " + std::strerror(error_));
  return Status::Ok();
}

}  // namespace sluice
