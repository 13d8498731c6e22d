// `sluice run` end to end against the real kernel, in throwaway network namespaces
// (netns_lab.h): the daemon binary runs on the router with a config the test writes, its
// firewall rules come from `sluice rules -c CONFIG --firewall iptables` (FORWARD → NFQUEUE
// --queue-balance 0:1, the mark guard, the sluice-unmarked counter), and real traffic crosses
// it: curl and python3's http.server for TCP, netns_traffic for UDP. Needs root; skipped
// otherwise. The daemon runs in the lab's PID namespace, so it dies with the lab whatever
// ends the test.
//
// Every count is reconciled three ways: the traffic tools' (sent, received, per source), the
// daemon's (--stats-json, written at exit: its packets, its nfqueue_* counters per queue, its
// rule counters, and the kernel's per-queue figures read just before it closed the queues),
// and the kernel's own (/proc/net/netfilter/nfnetlink_queue, iptables rule counters).
//
// The router's rules: what `sluice rules` prints, then the test's counters (filter FORWARD,
// after sluice-unmarked; a verdict resumes at the next hook, so filter sees what mangle's queue
// rule let through):
//   mangle FORWARD  -m mark ! --mark G -j NFQUEUE --queue-balance 0:1 [--queue-bypass]  sluice-queue
//   filter FORWARD  -m mark ! --mark G                                                   sluice-unmarked
//   filter FORWARD  -m mark --mark G          test-verdicted   accepted by sluice
//   filter FORWARD  -m mark --mark 0x2/0x2    test-rule-mark   carrying a mark a rule set
//   filter FORWARD  -m dscp --dscp 46         test-dscp-ef     rewritten to DSCP EF by a rule
#include <gtest/gtest.h>
#include <signal.h>
#include <sys/socket.h>
#include <sys/stat.h>
#include <sys/un.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <cstring>
#include <filesystem>
#include <fstream>
#include <functional>
#include <iostream>
#include <map>
#include <nlohmann/json.hpp>
#include <sstream>
#include <thread>

#include "engine/core/cpus.h"
#include "engine/io/nfqueue/queue_stats.h"
#include "tests/netns/netns_lab.h"

namespace sluice {
namespace {

using testing::LabProcess;
using testing::kSanitized;
using testing::NetnsLab;
using testing::Node;
using Json = nlohmann::json;
using namespace std::chrono_literals;

constexpr const char* kGuard = "0x40000000/0x40000000";  // the config's default verdict mark
constexpr uint32_t kQueues = 2;
constexpr const char* kServer = NetnsLab::kServerAddr;
constexpr uint64_t kBlobBytes = 10'000'000;

// What `sluice run` left in its --stats-json file.
struct DaemonStats {
  Json j;

  uint64_t Counter(const std::string& name, uint32_t queue) const {
    for (const Json& c : j.at("counters")) {
      if (c.at("name") == name && c.at("labels").value("queue", "") == std::to_string(queue))
        return c.at("value").get<uint64_t>();
    }
    ADD_FAILURE() << "no counter " << name << "{queue=" << queue << "} in the stats";
    return UINT64_MAX;
  }
  // Summed over every label set (queues, shards).
  uint64_t Sum(const std::string& name) const {
    uint64_t n = 0;
    bool found = false;
    for (const Json& c : j.at("counters")) {
      if (c.at("name") != name) continue;
      n += c.at("value").get<uint64_t>();
      found = true;
    }
    if (!found) ADD_FAILURE() << "no counter " << name << " in the stats";
    return n;
  }
  uint64_t Packets(const std::string& key) const { return j.at("packets").at(key).get<uint64_t>(); }
  uint64_t Labeled(const std::string& name, const std::string& label, const std::string& value) const {
    for (const Json& c : j.at("counters")) {
      if (c.at("name") == name && c.at("labels").value(label, "") == value) return c.at("value").get<uint64_t>();
    }
    ADD_FAILURE() << "no counter " << name << "{" << label << "=" << value << "} in the stats";
    return 0;
  }
  uint64_t Rule(const std::string& name) const {
    for (const Json& r : j.at("rules")) {
      if (r.at("name") == name) return r.at("packets").get<uint64_t>();
    }
    ADD_FAILURE() << "no rule " << name << " in the stats";
    return UINT64_MAX;
  }
  uint64_t Verdicted(uint32_t q) const {
    return Counter("nfqueue_batch_accepted", q) + Counter("nfqueue_single_accepted", q) +
           Counter("nfqueue_payload_accepted", q) + Counter("nfqueue_dropped", q);
  }
  uint64_t SumOverQueues(const std::string& name) const {
    uint64_t n = 0;
    for (uint32_t q = 0; q < kQueues; ++q) n += Counter(name, q);
    return n;
  }
};

// One `sluice run` on the router.
struct Daemon {
  std::unique_ptr<LabProcess> proc;
  pid_t pid = -1;  // the daemon's own (not nsenter's)
  std::string stats_path;

  bool Signal(int sig) const { return pid > 0 && kill(pid, sig) == 0; }
  // SIGTERM, then its exit status (-1: it did not exit in time and was killed).
  int Terminate(std::chrono::milliseconds timeout = 20s) {
    Signal(SIGTERM);
    return proc->Wait(timeout);
  }
  const std::string& log() { return proc->output(); }
  DaemonStats Stats() const {
    std::ifstream in(stats_path);
    DaemonStats s;
    if (!in) {
      ADD_FAILURE() << "no stats file " << stats_path;
      s.j = Json::parse(R"({"counters": [], "rules": [], "packets": {}})");
      return s;
    }
    s.j = Json::parse(in);
    return s;
  }
};

struct SendResult {
  uint64_t sent = 0;
  std::map<std::string, uint64_t> by_source;
};

struct ReceiveResult {
  uint64_t received = 0;
  uint64_t duplicates = 0;
  std::map<std::string, uint64_t> by_source;
};

// "KEY <address> <n>" lines of a tool's output.
std::map<std::string, uint64_t> PerAddress(const std::string& out, const std::string& key) {
  std::map<std::string, uint64_t> m;
  std::istringstream lines(out);
  for (std::string l; std::getline(lines, l);) {
    std::istringstream f(l);
    std::string k, addr;
    uint64_t v = 0;
    if (f >> k >> addr >> v && k == key) m[addr] = v;
  }
  return m;
}

// Whether `text` holds "FILE:LINE:COLUMN: KEY" (a config error's location, then its key).
bool NamesLocation(const std::string& text, const std::string& file, const std::string& key) {
  for (std::size_t at = text.find(file + ":"); at != std::string::npos; at = text.find(file + ":", at + 1)) {
    std::size_t p = at + file.size() + 1;
    bool ok = true;
    for (int field = 0; field < 2 && ok; ++field) {  // LINE: then COLUMN:
      const std::size_t end = text.find_first_not_of("0123456789", p);
      ok = end != p && end != std::string::npos && text[end] == ':';
      p = end + 1;
    }
    if (ok && text.compare(p, key.size() + 1, " " + key) == 0) return true;
  }
  return false;
}

std::string Sha256(const std::string& path) {
  std::string out;
  testing::RunCommand({"sha256sum", path}, &out);
  return out.size() >= 64 ? out.substr(0, 64) : "sha256sum failed: " + out;
}

// The rules every test starts from: the firewall's view of a rule set that changes nothing
// essential (so a bypassed packet still reaches its destination).
std::string Config(const std::string& nfqueue_extra, const std::string& rules) {
  return "[io]\nbackend = \"nfqueue\"\n\n"
         "[io.nfqueue]\nqueue_first = 0\nqueue_count = 2\n" +
         nfqueue_extra +
         "\n[pipeline]\nshards = 2\n\n" + rules;
}

class SluiceRunNetns : public ::testing::Test {
 protected:
  void SetUp() override {
    if (!NetnsLab::Root())
      GTEST_SKIP() << "needs root: network namespaces, veth pairs and iptables";
    auto lab = NetnsLab::Create();
    ASSERT_TRUE(lab.ok()) << lab.status().message();
    lab_ = std::move(lab).value();
    char tmpl[] = "/tmp/sluice-run-netns-XXXXXX";
    ASSERT_NE(mkdtemp(tmpl), nullptr);
    dir_ = tmpl;
    chmod(dir_.c_str(), 0755);  // readable by the daemon after it drops to another user
  }

  void TearDown() override {
    if (HasFailure()) {
      for (const auto& d : daemons_) std::cout << "---- sluice run log:\n" << d->log();
    }
    daemons_.clear();  // kills any still running (they are the lab's children)
    http_.reset();
    lab_.reset();
    if (!dir_.empty()) std::filesystem::remove_all(dir_);
  }

  std::string Path(const std::string& name) const { return dir_ + "/" + name; }

  // Replaces a file in one rename, so a reload never reads half of it.
  std::string WriteFile(const std::string& name, const std::string& text) const {
    const std::string tmp = Path("." + name + ".tmp");
    {
      std::ofstream out(tmp);
      out << text;
    }
    chmod(tmp.c_str(), 0644);
    std::filesystem::rename(tmp, Path(name));
    return Path(name);
  }

  // The firewall rules `sluice rules` prints for the config, run in the router, then the
  // test's counters.
  void InstallFirewall(const std::string& config) {
    std::string script;
    ASSERT_EQ(testing::RunCommand({SLUICE_BIN, "rules", "-c", config, "--firewall", "iptables"},
                                  &script),
              0)
        << script;
    WriteFile("firewall.sh", script);
    ASSERT_TRUE(lab_->Must(Node::kRouter, "sh " + Path("firewall.sh")).ok());
    const std::string g = kGuard;
    ASSERT_TRUE(lab_->Must(Node::kRouter,
                           "iptables -w -t filter -A FORWARD -m mark --mark " + g +
                               " -m comment --comment test-verdicted && "
                               "iptables -w -t filter -A FORWARD -m mark --mark 0x2/0x2 "
                               "-m comment --comment test-rule-mark && "
                               "iptables -w -t filter -A FORWARD -m dscp --dscp 46 "
                               "-m comment --comment test-dscp-ef")
                    .ok());
  }

  uint64_t Iptables(const std::string& table, const std::string& comment) const {
    return lab_->IptablesPackets(table, "FORWARD", comment);
  }

  // Starts `sluice run -c config` in the router and waits for it to say it runs.
  Daemon* StartDaemon(const std::string& config, const std::vector<std::string>& extra = {}) {
    auto d = std::make_unique<Daemon>();
    d->stats_path = Path("stats-" + std::to_string(daemons_.size()) + ".json");
    // LeakSanitizer cannot run in the lab's PID namespace (it looks for its threads under
    // /proc/<pid as seen inside>, but /proc is the host's); ASan and UBSan still run.
    const char* asan = std::getenv("ASAN_OPTIONS");
    std::vector<std::string> argv = {"env", "ASAN_OPTIONS=" + std::string(asan ? asan : "") + ":detect_leaks=0"};
    argv.insert(argv.end(), daemon_env_.begin(), daemon_env_.end());
    argv.insert(argv.end(), {SLUICE_BIN, "run",
                                     "-c",       config,
                                     "--stats-json", d->stats_path,
                             "--stats-interval", "0.5"});
    argv.insert(argv.end(), extra.begin(), extra.end());
    d->proc = lab_->Spawn(Node::kRouter, argv);
    if (d->proc == nullptr) {
      ADD_FAILURE() << "cannot start sluice run";
      return nullptr;
    }
    d->pid = d->proc->ProgramPid();
    EXPECT_GT(d->pid, 0);
    daemons_.push_back(std::move(d));
    return daemons_.back().get();
  }
  // StartDaemon, then waits until the pipeline runs.
  Daemon* StartRunning(const std::string& config, const std::vector<std::string>& extra = {}) {
    Daemon* d = StartDaemon(config, extra);
    if (d == nullptr) return nullptr;
    EXPECT_TRUE(d->proc->WaitForText("shard(s), stages on", 20s)) << d->log();
    return d;
  }

  std::vector<KernelQueueStats> Kernel() const {
    auto k = ReadKernelQueueStats(lab_->NfqueueProcPath());
    EXPECT_TRUE(k.ok()) << k.status().message();
    return k.ok() ? *k : std::vector<KernelQueueStats>{};
  }

  // ---- UDP --------------------------------------------------------------------------------

  std::unique_ptr<LabProcess> StartReceiver(uint64_t expect, uint32_t port = 9000,
                                            uint32_t idle_ms = 3000) {
    auto rx = lab_->Spawn(Node::kServer, {SLUICE_NETNS_TRAFFIC, "udp-recv", "--port",
                                          std::to_string(port), "--expect", std::to_string(expect),
                                          "--timeout-ms", "120000", "--idle-ms",
                                          std::to_string(idle_ms)});
    EXPECT_TRUE(rx && rx->WaitForLine("ready", 5s));
    return rx;
  }
  static std::vector<std::string> SenderArgs(uint64_t count, uint64_t rate, uint64_t first,
                                             uint32_t size, uint32_t port,
                                             const std::string& sources) {
    return {SLUICE_NETNS_TRAFFIC, "udp-send", "--dst",  kServer,
            "--port",             std::to_string(port),  "--count", std::to_string(count),
            "--rate",             std::to_string(rate),  "--size",  std::to_string(size),
            "--first",            std::to_string(first), "--src",   sources};
  }
  static SendResult ParseSent(const std::string& out) {
    return {testing::OutputField(out, "sent"), PerAddress(out, "source")};
  }
  // Runs the sender to completion.
  SendResult Send(uint64_t count, uint64_t rate, uint64_t first = 0, uint32_t size = 64,
                  uint32_t port = 9000,
                  const std::string& sources = NetnsLab::kClientSources) const {
    std::string cmd;
    for (const std::string& a : SenderArgs(count, rate, first, size, port, sources)) cmd += a + " ";
    std::string out;
    EXPECT_EQ(lab_->Run(Node::kClient, cmd, &out), 0) << out;
    return ParseSent(out);
  }
  static ReceiveResult Received(LabProcess& rx) {
    EXPECT_EQ(rx.Wait(120s), 0) << rx.output();
    return {testing::OutputField(rx.output(), "received"), 0, PerAddress(rx.output(), "from")};
  }

  // ---- TCP --------------------------------------------------------------------------------

  // python3's http.server on the server at port 8080, serving dir_, logging each client as
  // address:port (what the server saw, after any translation).
  void StartHttpServer() {
    ASSERT_TRUE(lab_->Must(Node::kServer, "head -c " + std::to_string(kBlobBytes) +
                                              " /dev/urandom > " + Path("blob"))
                    .ok());
    blob_sha_ = Sha256(Path("blob"));
    const std::string script =
        "import functools, http.server, sys\n"
        "class H(http.server.SimpleHTTPRequestHandler):\n"
        "    def address_string(self): return '%s:%d' % self.client_address\n"
        "http.server.ThreadingHTTPServer((sys.argv[1], 8080),\n"
        "    functools.partial(H, directory=sys.argv[2])).serve_forever()\n";
    http_ = lab_->Spawn(Node::kServer, {"python3", "-u", "-c", script, kServer, dir_});
    ASSERT_TRUE(http_ != nullptr);
    int up = -1;
    for (int attempt = 0; attempt < 100 && up != 0; ++attempt) {  // until it listens
      std::this_thread::sleep_for(50ms);
      up = lab_->Run(Node::kServer, "curl -sf --max-time 2 -o /dev/null http://" +
                                        std::string(kServer) + ":8080/");
    }
    ASSERT_EQ(up, 0) << "the HTTP server did not come up: " << http_->output();
  }
  // Caps the client's TCP receive window, so that a transfer curl slows down (--limit-rate) is
  // slow on the wire too: otherwise the server sends megabytes ahead into the client's socket
  // buffer and the connection goes quiet long before curl has written the file.
  void ClampClientWindow() const {
    ASSERT_TRUE(lab_->Must(Node::kClient, "sysctl -qw net.ipv4.tcp_rmem='4096 131072 131072'").ok());
  }
  // 100 datagrams to each of kWanRules' ports, numbered from `first`.
  void SendToBothWanRules(uint64_t first) {
    EXPECT_EQ(Send(100, 10000, first, 64, 7001).sent, 100u);
    EXPECT_EQ(Send(100, 10000, first, 64, 7002).sent, 100u);
  }
  // The router's "wan" deleted and created again under a new index (a PPP reconnect), with the
  // server's end set up again. The pair is made from this process, whose PID namespace sees
  // the server's holder (the lab's commands run in a PID namespace of their own).
  void RecreateWan() {
    const std::string router_ns = "/proc/" + std::to_string(lab_->pid(Node::kRouter)) + "/ns/net";
    std::string out;
    ASSERT_EQ(testing::RunCommand({"nsenter", "--net=" + router_ns, "sh", "-c",
                                   "ip link del wan && ip link add wan type veth peer name s0 netns " +
                                       std::to_string(lab_->pid(Node::kServer)) +
                                       " && ip addr add 198.18.2.1/24 dev wan && ip link set wan up"},
                                  &out),
              0)
        << out;
    ASSERT_TRUE(lab_->Must(Node::kServer,
                           "ip addr add 198.18.2.2/24 dev s0 && ip link set s0 up && ip route add default via 198.18.2.1")
                    .ok());
  }
  // curl's arguments to fetch the blob through the router into `out`; prints curl's local port.
  std::vector<std::string> CurlArgs(const std::string& out, uint32_t port,
                                    const std::string& limit_rate = "",
                                    const std::string& source = "") const {
    std::vector<std::string> a = {"curl", "-sS", "-f", "--max-time", "60", "-o", out,
                                  "-w",   "local_port %{local_port}\n"};
    if (!limit_rate.empty()) a.insert(a.end(), {"--limit-rate", limit_rate});
    if (!source.empty()) a.insert(a.end(), {"--interface", source});
    a.push_back("http://" + std::string(kServer) + ":" + std::to_string(port) + "/blob");
    return a;
  }
  // Waits until `path` (a download in progress) holds at least `bytes`.
  static bool WaitForBytes(const std::string& path, uintmax_t bytes,
                           std::chrono::milliseconds timeout) {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      std::error_code ec;
      if (std::filesystem::file_size(path, ec) >= bytes && !ec) return true;
      std::this_thread::sleep_for(5ms);
    }
    return false;
  }
  // Fetches the blob to completion; returns curl's local port.
  uint64_t Fetch(const std::string& out, uint32_t port, const std::string& source = "") const {
    std::string cmd;
    for (const std::string& a : CurlArgs(out, port, "", source)) cmd += "'" + a + "' ";
    std::string text;
    EXPECT_EQ(lab_->Run(Node::kClient, cmd, &text), 0) << text;
    return testing::OutputField(text, "local_port");
  }
  // The client ports the HTTP server logged for GET /blob from `client`: lines of the form
  // `CLIENT:PORT - - [date] "GET /blob …`. (Parsed by hand: GCC 12's <regex> trips
  // -Wmaybe-uninitialized under the asan preset.)
  std::vector<uint32_t> ServerSawPorts(const std::string& client) {
    std::vector<uint32_t> ports;
    std::istringstream log(http_->output());
    const std::string prefix = client + ":";
    for (std::string line; std::getline(log, line);) {
      if (line.rfind(prefix, 0) != 0 || line.find("\"GET /blob ") == std::string::npos) continue;
      const std::size_t digits = prefix.size();
      const std::size_t end = line.find_first_not_of("0123456789", digits);
      if (end == digits || end == std::string::npos || line.compare(end, 5, " - - ") != 0) continue;
      ports.push_back(static_cast<uint32_t>(std::stoul(line.substr(digits, end - digits))));
    }
    return ports;
  }

  // ---- the daemon's figures against the kernel's ------------------------------------------

  // At exit, after the drain: every packet each queue delivered was received and verdicted
  // once, the kernel held nothing, and nothing failed. `loss` allows ENOBUFS loss,
  // `queue_full` the kernel's queue_dropped (a full queue, fail-closed).
  static void ExpectReconciledAtExit(const DaemonStats& s, bool loss = false,
                                     bool queue_full = false) {
    uint64_t received = 0, verdicted_accept = 0, dropped = 0, payload = 0;
    for (uint32_t q = 0; q < kQueues; ++q) {
      SCOPED_TRACE("queue " + std::to_string(q));
      const uint64_t ids = s.Counter("nfqueue_ids_received", q);
      EXPECT_EQ(s.Verdicted(q), ids) << "every packet received got exactly one verdict";
      EXPECT_EQ(s.Counter("nfqueue_kernel_queued", q), 0u) << "the drain left nothing queued";
      if (!queue_full) {
        EXPECT_EQ(s.Counter("nfqueue_kernel_queue_dropped", q), 0u);
      }
      const uint64_t lost = s.Counter("nfqueue_lost_ids", q);
      const uint64_t last_id = s.Counter("nfqueue_last_id", q);
      const uint64_t id_sequence = s.Counter("nfqueue_kernel_id_sequence", q);
      EXPECT_EQ(ids + lost + (id_sequence - last_id), id_sequence);
      EXPECT_EQ(lost + (id_sequence - last_id), s.Counter("nfqueue_kernel_queue_user_dropped", q));
      if (!loss) {
        EXPECT_EQ(ids, id_sequence) << "every id the kernel handed out arrived";
        EXPECT_EQ(s.Counter("nfqueue_enobufs", q), 0u);
      }
      for (const char* zero : {"nfqueue_truncated", "nfqueue_no_large_buffer", "nfqueue_malformed",
                               "nfqueue_send_enobufs", "nfqueue_send_errors", "nfqueue_deferred",
                               "nfqueue_verdicts_lost", "nfqueue_oversize_payload",
                               "nfqueue_orphans", "nfqueue_kernel_enoent", "nfqueue_kernel_eperm",
                               "nfqueue_kernel_einval", "nfqueue_kernel_other"}) {
        EXPECT_EQ(s.Counter(zero, q), 0u) << zero;
      }
      received += s.Counter("nfqueue_received", q);
      verdicted_accept += s.Counter("nfqueue_batch_accepted", q) +
                          s.Counter("nfqueue_single_accepted", q) +
                          s.Counter("nfqueue_payload_accepted", q);
      dropped += s.Counter("nfqueue_dropped", q);
      payload += s.Counter("nfqueue_payload_accepted", q);
    }
    EXPECT_TRUE(s.j.at("packets").at("balanced").get<bool>());
    EXPECT_EQ(s.Packets("in"), received) << "the graph saw every packet the queues handed over";
    EXPECT_EQ(s.Packets("accepted") + s.Packets("rewritten") + s.Packets("skipped"),
              verdicted_accept);
    EXPECT_EQ(s.Packets("dropped"), dropped);
    EXPECT_LE(payload, s.Packets("rewritten")) << "only changed packets carry bytes back";
  }

  // ---- a consumer that does not keep up ---------------------------------------------------

  // Whether every thread of `pid` is stopped (state T in /proc/PID/task/*/stat).
  static bool Stopped(pid_t pid) {
    std::error_code ec;
    bool any = false;
    for (const auto& task :
         std::filesystem::directory_iterator("/proc/" + std::to_string(pid) + "/task", ec)) {
      std::ifstream in(task.path() / "stat");
      std::string stat;
      std::getline(in, stat);
      const auto paren = stat.rfind(')');  // the command name may hold spaces and parens
      if (paren == std::string::npos || stat.substr(paren + 2, 1) != "T") return false;
      any = true;
    }
    return any && !ec;
  }
  // SIGSTOP, then waits until every thread of the daemon is stopped: from then on it receives
  // and verdicts nothing, so its kernel queues fill to their maxlen whatever the machine's
  // speed. nsenter, the daemon's parent, stops itself when it sees its child stop (and
  // continues the child when it is continued): wait for that too, or a SIGCONT could reach
  // it before it stops and leave it stopped, never reaping the daemon.
  static bool Freeze(const Daemon& d, std::chrono::milliseconds timeout = 5s) {
    if (!d.Signal(SIGSTOP)) return false;
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    while (std::chrono::steady_clock::now() < deadline) {
      if (Stopped(d.pid) && Stopped(d.proc->pid())) return true;
      std::this_thread::sleep_for(1ms);
    }
    return false;
  }
  // Undoes Freeze: nsenter, then the daemon (nsenter continues it too; twice is harmless).
  static bool Thaw(const Daemon& d) {
    return kill(d.proc->pid(), SIGCONT) == 0 && d.Signal(SIGCONT);
  }

  // Waits until the queue rule has seen `packets` (the sender's last datagrams may still be
  // crossing the client's veth when it exits): by then the kernel has decided the fate of
  // each — queued, passed unqueued or dropped. Returns the rule's count.
  uint64_t WaitForQueueRule(uint64_t packets, std::chrono::milliseconds timeout = 5s) const {
    const auto deadline = std::chrono::steady_clock::now() + timeout;
    uint64_t n = Iptables("mangle", "sluice-queue");
    while (n < packets && std::chrono::steady_clock::now() < deadline) {
      std::this_thread::sleep_for(10ms);
      n = Iptables("mangle", "sluice-queue");
    }
    return n;
  }

  std::unique_ptr<NetnsLab> lab_;
  std::string dir_;
  std::vector<std::string> daemon_env_;  // NAME=value for the daemons StartDaemon starts
  std::vector<std::unique_ptr<Daemon>> daemons_;
  std::unique_ptr<LabProcess> http_;
  std::string blob_sha_;
};

// ---- rule sets ----------------------------------------------------------------------------

// The client connects to port 80, the server listens on 8080: requests are rewritten on the
// way in and replies on the way back, so the client's TCP sees port 80 both ways.
constexpr const char* kPortRewriteRules = R"(
[[rule]]
number = 100
name = "web-to-8080"
action = "rewrite"
match = { proto = "tcp", dst = "198.18.2.2", dst_port = 80 }
rewrite = { dst_port = 8080 }

[[rule]]
number = 110
name = "web-replies-from-80"
action = "rewrite"
match = { proto = "tcp", src = "198.18.2.2", src_port = 8080 }
rewrite = { src_port = 80 }
)";

// (a) 10 MB over TCP through a destination-port rewrite and its reverse, both queues, GSO
// super-packets whole: the file arrives intact, every segment went back with new bytes.
TEST_F(SluiceRunNetns, TcpTransferThroughAPortRewriteBothWaysArrivesIntact) {
  const std::string config = WriteFile("sluice.toml", Config("", kPortRewriteRules));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  StartHttpServer();

  std::string listening;
  lab_->Run(Node::kServer, "ss -Hltn", &listening);
  EXPECT_EQ(listening.find(":80 "), std::string::npos) << "the server must not listen on 80\n"
                                                       << listening;
  Fetch(Path("got"), 80);
  EXPECT_EQ(Sha256(Path("got")), blob_sha_) << "the transfer was corrupted";
  EXPECT_EQ(ServerSawPorts("198.18.1.2").size(), 1u) << http_->output();

  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  const uint64_t in = s.Rule("web-to-8080"), out = s.Rule("web-replies-from-80");
  EXPECT_GT(in, 0u);
  EXPECT_GT(out, 0u);
  EXPECT_EQ(in + out, s.Packets("in")) << "every packet of the connection matched a rule";
  EXPECT_EQ(s.Packets("rewritten"), s.Packets("in"));
  EXPECT_EQ(s.SumOverQueues("nfqueue_payload_accepted"), s.Packets("in"))
      << "every packet went back with its new bytes";
  EXPECT_GT(s.SumOverQueues("nfqueue_large_copies"), 0u)
      << "GSO super-packets should have come through whole (and been rewritten whole)";
  EXPECT_EQ(s.SumOverQueues("nfqueue_large_buffer_waits") + s.SumOverQueues("nfqueue_no_large_buffer"), 0u);
  // With GSO on, sluice run keeps two bursts of large buffers per queue (2 × 64 × 2), above
  // the pool's default 64.
  EXPECT_GE(s.Labeled("pool_buffers", "class", "large"), 2u * 64u * kQueues);
  EXPECT_EQ(s.Packets("dropped"), 0u);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), s.SumOverQueues("nfqueue_ids_received"));
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), 0u);
}

// natd's rule: the client network's connections leaving through the outside interface (r1)
// get source ports from 20000-29999.
constexpr char kNaptOut[] = R"(
[nat]
seed = 7

[[rule]]
number = 100
name = "napt-out"
action = "translate-source-port"
match = { direction = "out", src = "198.18.1.0/24", proto = ["tcp", "udp"] }
translate = { ports = "20000-29999" }
)";

// (b) Stateful source-port translation: the server sees the client's connections coming from
// ports of the configured range, never the client's own ports; both transfers complete. The
// rule is natd's: outbound, with the server side (r1) named the outside interface, so the
// FORWARD hook's packets get their direction from it.
TEST_F(SluiceRunNetns, SourcePortTranslationShowsTheServerPortsFromTheRange) {
  const std::string config = WriteFile("sluice.toml", Config("outside_interfaces = [\"r1\"]\n", kNaptOut));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  StartHttpServer();

  // Two clients (two address pairs: the kernel may put them on different queues, each shard
  // with its own flow table).
  const uint64_t port_a = Fetch(Path("got-a"), 8080, "198.18.1.3");
  const uint64_t port_b = Fetch(Path("got-b"), 8080, "198.18.1.4");
  EXPECT_EQ(Sha256(Path("got-a")), blob_sha_);
  EXPECT_EQ(Sha256(Path("got-b")), blob_sha_);
  for (const auto& [client, own] : {std::pair{"198.18.1.3", port_a}, std::pair{"198.18.1.4", port_b}}) {
    const std::vector<uint32_t> seen = ServerSawPorts(client);
    ASSERT_EQ(seen.size(), 1u) << http_->output();
    EXPECT_GE(seen[0], 20000u) << client;
    EXPECT_LE(seen[0], 29999u) << client;
    EXPECT_NE(seen[0], own) << "the client's own port " << own << " reached the server";
    EXPECT_GE(own, 32768u) << "the client's port is its own ephemeral one, outside the range";
  }

  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.Sum("classify_nat_created"), 2u) << "one translation per connection";
  EXPECT_GT(s.Sum("classify_nat_out"), 0u);
  EXPECT_GT(s.Sum("classify_nat_in"), 0u) << "replies were translated back";
  EXPECT_EQ(s.Sum("classify_nat_exhausted") + s.Sum("classify_nat_untranslatable"), 0u);
  EXPECT_EQ(s.Packets("dropped"), 0u);
  EXPECT_EQ(s.Packets("rewritten"), s.Packets("in")) << "every packet translated one way or back";
}

// ICMP errors about translated flows, with two queues. The kernel queues a UDP datagram by
// (client, server, UDP) and the server's "port unreachable" about it by (server, client, ICMP):
// for each of 32 client addresses the two land on the same shard or not, by the kernel's hash,
// whose seed is drawn when xt_NFQUEUE first hashes (so all 32 land alike only under about one
// seed in 2^31). Either way the error must come back with the client's own port in its quote,
// or the client's kernel finds no socket for it and the client never hears "refused".
TEST_F(SluiceRunNetns, IcmpErrorsAboutTranslatedFlowsAreTranslatedOnWhicheverQueueTheyReach) {
  const std::string config = WriteFile("sluice.toml", Config("outside_interfaces = [\"r1\"]\n", kNaptOut));
  // The lab gives the client 198.18.1.2-9; 24 more (the router finds them by ARP). The
  // server answers all 32 at once: no ICMP rate limit in its namespace, so none is lost.
  ASSERT_TRUE(lab_->Must(Node::kClient, "for i in $(seq 10 33); do ip addr add 198.18.1.$i/24 dev c0 || exit 1; done").ok());
  ASSERT_TRUE(lab_->Must(Node::kServer, "sysctl -qw net.ipv4.icmp_ratemask=0").ok());
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  // From each client address, one datagram to a server port nobody listens on.
  const std::string probe = WriteFile("probe.py",
                                      "import socket\n"
                                      "for i in range(2, 34):\n"
                                      "    s = socket.socket(socket.AF_INET, socket.SOCK_DGRAM)\n"
                                      "    s.bind(('198.18.1.%d' % i, 0))\n"
                                      "    s.connect(('" + std::string(kServer) + "', 9))\n"
                                      "    s.settimeout(3)\n"
                                      "    s.send(b'probe')\n"
                                      "    try:\n"
                                      "        s.recv(64)\n"
                                      "        print('198.18.1.%d answered' % i)\n"
                                      "    except ConnectionRefusedError:\n"
                                      "        print('198.18.1.%d refused' % i)\n"
                                      "    except socket.timeout:\n"
                                      "        print('198.18.1.%d silence' % i)\n");
  std::string text;
  ASSERT_EQ(lab_->Run(Node::kClient, "python3 " + probe, &text), 0) << text;
  for (int i = 2; i < 34; ++i) {
    const std::string client = "198.18.1." + std::to_string(i);
    EXPECT_NE(text.find(client + " refused"), std::string::npos) << text;
  }

  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.Sum("classify_nat_created"), 32u);
  EXPECT_EQ(s.Sum("classify_nat_icmp_errors"), 32u) << "every error translated";
  EXPECT_GT(s.Sum("classify_nat_icmp_errors_peer"), 0u) << "some errors reached the other shard";
  EXPECT_LT(s.Sum("classify_nat_icmp_errors_peer"), 32u) << "some reached their flow's own";
  EXPECT_EQ(s.Packets("dropped"), 0u);
}

// (c) A million UDP datagrams at a rate sluice sustains, through both queues, fail-closed (so
// any overflow would show as the kernel's queue_dropped), with a drop rule, a mark rule and a
// DSCP rewrite on three of the eight sources. Generator, daemon and kernel agree exactly.
TEST_F(SluiceRunNetns, AMillionDatagramsReconcileBetweenGeneratorDaemonAndKernel) {
  const uint64_t count = 1'000'000;
  const uint64_t rate = kSanitized ? 50'000 : 100'000;
  // Each queue's I/O thread pinned to a CPU of its own (or both to the one there is).
  const std::vector<uint32_t> cpus = AllowedCpus();
  ASSERT_FALSE(cpus.empty());
  const uint32_t cpu0 = cpus.back(), cpu1 = cpus.front();
  std::string text = Config("fail_open = false\nqueue_maxlen = 262144\nrcvbuf_bytes = 134217728\n",
                            R"(
[[rule]]
number = 100
name = "drop-from-9"
action = "drop"
match = { proto = "udp", src = "198.18.1.9" }

[[rule]]
number = 200
name = "mark-from-8"
action = "mark"
match = { proto = "udp", src = "198.18.1.8" }
mark = 0x2

[[rule]]
number = 300
name = "ef-from-7"
action = "rewrite"
match = { proto = "udp", src = "198.18.1.7" }
rewrite = { dscp = "ef" }

[[rule]]
number = 400
name = "count-udp"
action = "count"
match = { proto = "udp", dst_port = 9000 }
)");
  const std::string pinned = "shards = 2\ncpus = [" + std::to_string(cpu0) +
                             (cpu1 != cpu0 ? ", " + std::to_string(cpu1) : std::string()) + "]\n";
  text.replace(text.find("shards = 2\n"), std::string("shards = 2\n").size(), pinned);
  const std::string config = WriteFile("sluice.toml", text);
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->proc->WaitForText("shard 0's I/O thread runs on CPU " + std::to_string(cpu0), 5s)) << d->log();
  EXPECT_TRUE(d->proc->WaitForText("shard 1's I/O thread runs on CPU " + std::to_string(cpu1), 5s)) << d->log();

  auto rx = StartReceiver(count, 9000, 1000);  // it never gets all: a source is dropped
  const auto start = std::chrono::steady_clock::now();
  const SendResult tx = Send(count, rate);
  const ReceiveResult got = Received(*rx);
  const double seconds =
      std::chrono::duration<double>(std::chrono::steady_clock::now() - start).count();
  ASSERT_EQ(tx.sent, count);
  const auto kernel = Kernel();  // before the daemon unbinds
  ASSERT_EQ(kernel.size(), kQueues);
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);

  // The generator: sent == received + policy drops, source by source.
  const uint64_t from9 = tx.by_source.at("198.18.1.9");
  EXPECT_GT(from9, 0u);
  EXPECT_EQ(got.received + from9, tx.sent);
  EXPECT_EQ(got.by_source.count("198.18.1.9"), 0u) << "a dropped source reached the server";
  for (const auto& [src, n] : tx.by_source) {
    if (src == "198.18.1.9") continue;
    EXPECT_EQ(got.by_source.count(src) ? got.by_source.at(src) : 0, n) << src;
  }
  EXPECT_EQ(got.duplicates, 0u);
  // The daemon against the generator.
  EXPECT_EQ(s.Packets("in"), tx.sent);
  EXPECT_EQ(s.Rule("drop-from-9"), from9);
  EXPECT_EQ(s.Packets("dropped"), from9);
  EXPECT_EQ(s.Rule("mark-from-8"), tx.by_source.at("198.18.1.8"));
  EXPECT_EQ(s.Rule("ef-from-7"), tx.by_source.at("198.18.1.7"));
  EXPECT_EQ(s.SumOverQueues("nfqueue_payload_accepted"), tx.by_source.at("198.18.1.7"))
      << "only the rewritten packets carried bytes back";
  EXPECT_EQ(s.Packets("rewritten"), tx.by_source.at("198.18.1.7") + tx.by_source.at("198.18.1.8"));
  EXPECT_EQ(s.Rule("count-udp"), tx.sent - from9 - tx.by_source.at("198.18.1.7") -
                                     tx.by_source.at("198.18.1.8"))
      << "count sees what earlier rules let through to it";
  // The kernel: every datagram was queued once, nothing overflowed, and the daemon's figures
  // are the kernel's.
  uint64_t id_sequence = 0;
  for (const KernelQueueStats& k : kernel) {
    SCOPED_TRACE("queue " + std::to_string(k.queue));
    EXPECT_EQ(k.queue_dropped, 0u);
    EXPECT_EQ(k.queue_user_dropped, 0u);
    EXPECT_EQ(k.queue_total, 0u);
    EXPECT_EQ(k.id_sequence, s.Counter("nfqueue_kernel_id_sequence", k.queue));
    EXPECT_EQ(k.id_sequence, s.Counter("nfqueue_ids_received", k.queue));
    EXPECT_GT(k.id_sequence, 0u) << "the balance spread the sources over both queues";
    id_sequence += k.id_sequence;
  }
  EXPECT_EQ(id_sequence, tx.sent);
  EXPECT_EQ(Iptables("mangle", "sluice-queue"), tx.sent);
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), 0u) << "nothing passed around sluice";
  EXPECT_EQ(Iptables("filter", "test-verdicted"), got.received);
  EXPECT_EQ(Iptables("filter", "test-rule-mark"), tx.by_source.at("198.18.1.8"))
      << "rule marks reach the kernel";
  EXPECT_EQ(Iptables("filter", "test-dscp-ef"), tx.by_source.at("198.18.1.7"))
      << "rewritten bytes reach the kernel";
  const double syscalls = static_cast<double>(s.SumOverQueues("nfqueue_recv_syscalls") +
                                              s.SumOverQueues("nfqueue_sendmsg_calls"));
  std::cout << "1M datagrams at " << rate << "/s in " << seconds << " s; daemon syscalls/packet "
            << syscalls / static_cast<double>(tx.sent) << "\n";
  RecordProperty("syscalls_per_packet", std::to_string(syscalls / static_cast<double>(tx.sent)));
}

// (d) kill -9 in the middle of a TCP transfer, with fail-open: the kernel unbinds the queues,
// --queue-bypass lets the connection's packets through unqueued, and the transfer completes.
// A restarted daemon is verdicting the connection's packets again within 1 s of its start.
TEST_F(SluiceRunNetns, KillNineMidTransferWithBypassCompletesAndARestartResumesVerdicts) {
  const std::string config = WriteFile("sluice.toml", Config("fail_open = true\n", R"(
[[rule]]
number = 100
name = "web-af21"
action = "rewrite"
match = { proto = "tcp", src_port = 8080 }
rewrite = { dscp = "af21" }
)"));
  InstallFirewall(config);
  Daemon* first = StartRunning(config);
  ASSERT_NE(first, nullptr);
  StartHttpServer();

  ClampClientWindow();
  auto curl = lab_->Spawn(Node::kClient, CurlArgs(Path("got"), 8080, "4M"));  // ~2.5 s
  ASSERT_NE(curl, nullptr);
  ASSERT_TRUE(WaitForBytes(Path("got"), 1'000'000, 10s)) << "the transfer did not start";

  ASSERT_LT(std::filesystem::file_size(Path("got")), kBlobBytes);
  ASSERT_TRUE(first->Signal(SIGKILL));
  EXPECT_NE(first->proc->Wait(5s), 0);
  EXPECT_TRUE(Kernel().empty()) << "the queues went with the process";
  const uint64_t unmarked = Iptables("filter", "sluice-unmarked");
  std::this_thread::sleep_for(300ms);
  EXPECT_GT(Iptables("filter", "sluice-unmarked"), unmarked)
      << "with nobody bound, --queue-bypass passes the connection's packets";

  const uint64_t verdicted = Iptables("filter", "test-verdicted");
  const auto restart = std::chrono::steady_clock::now();
  Daemon* second = StartDaemon(config);
  ASSERT_NE(second, nullptr);
  auto resumed = std::chrono::steady_clock::duration::max();
  while (std::chrono::steady_clock::now() - restart < 5s) {
    if (Iptables("filter", "test-verdicted") > verdicted) {
      resumed = std::chrono::steady_clock::now() - restart;
      break;
    }
    std::this_thread::sleep_for(5ms);
  }
  EXPECT_LT(std::filesystem::file_size(Path("got")), kBlobBytes)
      << "the restarted daemon carried the same connection on";
  // The fault matrix's "within 1 s" is a figure to report, not a wall-clock assertion (the
  // machine may be loaded): the test asserts only that verdicts resumed while it watched.
  ASSERT_NE(resumed, std::chrono::steady_clock::duration::max()) << "no verdicts after the restart\n"
                                                                 << second->log();
  const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(resumed).count();
  std::cout << "restart: verdicts resumed " << ms << " ms after exec\n";
  RecordProperty("resume_ms", std::to_string(ms));

  ASSERT_EQ(curl->Wait(60s), 0) << curl->output();
  EXPECT_EQ(Sha256(Path("got")), blob_sha_);
  ASSERT_EQ(second->Terminate(), 0) << second->log();
  const DaemonStats s = second->Stats();
  ExpectReconciledAtExit(s);
  // Some of the rest of the transfer went through the new daemon (how many segments depends
  // on GSO: each may be a 64 KiB super-packet, so a count threshold would depend on load).
  EXPECT_GT(s.Rule("web-af21"), 0u) << "the rest of the transfer went through the new daemon";
}

// (e) A 64 KiB socket buffer (the config's minimum) under a flood overflows: the kernel drops
// messages (queue_user_dropped, ENOBUFS on the socket). The daemon keeps going, verdicts
// what arrives, and the loss it reports is exactly the kernel's. Fail-closed: with fail-open
// the kernel would pass those packets instead of dropping them.
TEST_F(SluiceRunNetns, EnobufsIsSurvivedAndTheLossReportedEqualsTheKernels) {
  const std::string config = WriteFile(
      "sluice.toml", Config("fail_open = false\nrcvbuf_bytes = 65536\nqueue_maxlen = 65536\n", ""));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  const uint64_t flood = kSanitized ? 100000 : 200000;
  const uint64_t trickle = 200;
  auto rx = StartReceiver(flood + trickle);
  const SendResult tx_flood = Send(flood, 2'000'000, 0, 1400);
  // Slow traffic after the flood: it arrives whole, and it places the last lost ids between
  // delivered ones (where the daemon can see the gap).
  const SendResult tx_trickle = Send(trickle, 1000, flood, 1400);
  const ReceiveResult got = Received(*rx);
  const auto kernel = Kernel();
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s, /*loss=*/true);

  uint64_t user_dropped = 0;
  for (const KernelQueueStats& k : kernel) {
    EXPECT_EQ(k.queue_dropped, 0u);
    EXPECT_EQ(k.queue_user_dropped, s.Counter("nfqueue_kernel_queue_user_dropped", k.queue));
    user_dropped += k.queue_user_dropped;
  }
  ASSERT_GT(user_dropped, 0u) << "the flood did not overrun the socket buffer";
  std::cout << "flood of " << tx_flood.sent << ": the kernel dropped " << user_dropped
            << " for want of socket buffer\n";
  EXPECT_GT(s.SumOverQueues("nfqueue_enobufs"), 0u);
  EXPECT_EQ(s.SumOverQueues("nfqueue_lost_ids"), user_dropped) << "the loss sluice reports";
  EXPECT_EQ(got.received, tx_flood.sent + tx_trickle.sent - user_dropped);
  EXPECT_EQ(s.SumOverQueues("nfqueue_ids_received"), got.received);
  EXPECT_EQ(Iptables("mangle", "sluice-queue"), tx_flood.sent + tx_trickle.sent);
}

// (f) SIGTERM in the middle of a stream, fail-open: the daemon stops the kernel queueing to it,
// verdicts everything already queued (the kernel's queue_total reaches 0 before the sockets
// close), and exits 0; the packets that arrive meanwhile bypass. Nothing is lost anywhere.
TEST_F(SluiceRunNetns, SigtermMidStreamVerdictsEverythingQueuedAndLosesNothing) {
  const uint64_t count = kSanitized ? 100'000 : 200'000;
  const uint64_t rate = kSanitized ? 25'000 : 50'000;
  const std::string config = WriteFile("sluice.toml", Config("fail_open = true\n", R"(
[[rule]]
number = 100
name = "ef-from-7"
action = "rewrite"
match = { proto = "udp", src = "198.18.1.7" }
rewrite = { dscp = "ef" }
)"));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  auto rx = StartReceiver(count);
  auto tx = lab_->Spawn(Node::kClient,
                        SenderArgs(count, rate, 0, 64, 9000, NetnsLab::kClientSources));
  ASSERT_NE(tx, nullptr);
  std::this_thread::sleep_for(1500ms);
  const std::size_t mark = d->log().size();
  ASSERT_TRUE(d->Signal(SIGTERM));
  ASSERT_EQ(d->proc->Wait(20s), 0) << d->log();
  EXPECT_TRUE(d->proc->WaitForText("drained in", 0ms, mark)) << d->log();
  EXPECT_TRUE(Kernel().empty()) << "the queues are unbound";

  ASSERT_EQ(tx->Wait(60s), 0) << tx->output();
  const SendResult sent = ParseSent(tx->output());
  const ReceiveResult got = Received(*rx);
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  const uint64_t ids = s.SumOverQueues("nfqueue_ids_received");
  EXPECT_GT(ids, 0u);
  EXPECT_LT(ids, sent.sent) << "SIGTERM came mid-stream";
  std::cout << "SIGTERM after " << ids << " of " << sent.sent << " datagrams; "
            << d->log().substr(mark, d->log().find("\npackets ", mark) + 1 - mark);
  EXPECT_EQ(got.received, sent.sent) << "nothing lost: queued packets verdicted, later ones bypassed";
  EXPECT_EQ(Iptables("mangle", "sluice-queue"), sent.sent);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), ids);
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), sent.sent - ids)
      << "what sluice did not verdict passed around it, counted";
}

// (g) SIGHUP: a valid new rule file changes what happens to new packets while a TCP
// connection through a port rewrite stays up; an invalid one is refused with file:line:column
// and the rules in force stay.
TEST_F(SluiceRunNetns, SighupReloadsValidRulesUnderATcpTransferAndRefusesInvalidOnes) {
  const std::string v1 = Config("", kPortRewriteRules);
  const std::string v2 = v1 + R"(
[[rule]]
number = 200
name = "drop-udp-9000"
action = "drop"
match = { proto = "udp", dst_port = 9000 }
)";
  const std::string v3 = v2 + R"(
[[rule]]
number = 300
name = "broken"
action = "rewrite"
match = { proto = "udp" }
rewrite = { dst_port = 70000 }
)";
  const std::string config = WriteFile("sluice.toml", v1);
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  StartHttpServer();
  ClampClientWindow();
  auto curl = lab_->Spawn(Node::kClient, CurlArgs(Path("got"), 80, "4M"));  // ~2.5 s, via port 80
  ASSERT_NE(curl, nullptr);
  auto rx = StartReceiver(300, 9000, 60000);

  EXPECT_EQ(Send(100, 10000, 0).sent, 100u);  // v1: accepted
  std::size_t mark = d->log().size();
  WriteFile("sluice.toml", v2);
  ASSERT_TRUE(d->Signal(SIGHUP));
  ASSERT_TRUE(d->proc->WaitForText("reloaded", 5s, mark)) << d->log();
  EXPECT_EQ(Send(100, 10000, 100).sent, 100u);  // v2: dropped

  mark = d->log().size();
  WriteFile("sluice.toml", v3);
  ASSERT_TRUE(d->Signal(SIGHUP));
  ASSERT_TRUE(d->proc->WaitForText("refused", 5s, mark)) << d->log();
  EXPECT_TRUE(d->proc->WaitForText(config + ":", 1s, mark)) << "no file:line:column\n" << d->log();
  EXPECT_TRUE(NamesLocation(d->log().substr(mark), config, "rule[3].rewrite.dst_port")) << d->log().substr(mark);
  std::cout << "the refused reload, as logged:\n" << d->log().substr(mark);
  EXPECT_EQ(Send(100, 10000, 200).sent, 100u);  // still v2: dropped

  ASSERT_EQ(curl->Wait(60s), 0) << "the connection did not survive the reloads: "
                                << curl->output();
  EXPECT_EQ(Sha256(Path("got")), blob_sha_);
  kill(rx->ProgramPid(), SIGTERM);  // it expects more than will come
  const ReceiveResult got = Received(*rx);
  EXPECT_EQ(got.received, 100u) << "only the datagrams sent before the reload arrived";
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.Rule("drop-udp-9000"), 200u);
  EXPECT_EQ(s.Packets("dropped"), 200u);
  EXPECT_GT(s.Rule("web-to-8080"), 0u) << "the reloaded rules carried the connection on";
}

// Under systemd (Type=notify, WatchdogSec=): the daemon says READY=1 once its queues are
// bound, RELOADING=1 then READY=1 around a SIGHUP, STOPPING=1 when it drains, and pets the
// watchdog while its I/O threads turn. The test is the service manager's socket.
TEST_F(SluiceRunNetns, UnderSystemdItSaysReadyReloadingStoppingAndPetsTheWatchdog) {
  const std::string socket_path = Path("notify");
  const int fd = socket(AF_UNIX, SOCK_DGRAM | SOCK_CLOEXEC, 0);
  ASSERT_GE(fd, 0);
  sockaddr_un addr{};
  addr.sun_family = AF_UNIX;
  std::strncpy(addr.sun_path, socket_path.c_str(), sizeof addr.sun_path - 1);
  ASSERT_EQ(bind(fd, reinterpret_cast<const sockaddr*>(&addr), sizeof addr), 0);
  timeval tv{0, 100'000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  std::vector<std::string> seen;  // every datagram, in order
  // Reads until a datagram starting with `prefix` arrives (others are kept in `seen`).
  auto wait_for = [&](const std::string& prefix, std::chrono::milliseconds limit) -> std::string {
    const auto deadline = std::chrono::steady_clock::now() + limit;
    while (std::chrono::steady_clock::now() < deadline) {
      char buf[512];
      const ssize_t n = recv(fd, buf, sizeof buf, 0);
      if (n <= 0) continue;
      seen.emplace_back(buf, static_cast<std::size_t>(n));
      if (seen.back().rfind(prefix, 0) == 0) return seen.back();
    }
    return "";
  };
  daemon_env_ = {"NOTIFY_SOCKET=" + socket_path, "WATCHDOG_USEC=1000000"};
  const std::string config = WriteFile("sluice.toml", Config("", kPortRewriteRules));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  EXPECT_EQ(wait_for("READY=1", 5000ms), "READY=1\nSTATUS=nfqueue: 2 shard(s), 2 rule(s)");
  for (int i = 0; i < 2; ++i) EXPECT_EQ(wait_for("WATCHDOG=1", 3000ms), "WATCHDOG=1") << "ping " << i;

  ASSERT_TRUE(d->Signal(SIGHUP));
  EXPECT_EQ(wait_for("RELOADING=1", 5000ms).rfind("RELOADING=1\nMONOTONIC_USEC=", 0), 0u);
  EXPECT_EQ(wait_for("READY=1", 5000ms), "READY=1\nSTATUS=nfqueue: 2 shard(s), 2 rule(s)");
  EXPECT_EQ(wait_for("WATCHDOG=1", 3000ms), "WATCHDOG=1") << "pets go on after the reload";

  ASSERT_EQ(d->Terminate(), 0) << d->log();
  EXPECT_EQ(wait_for("STOPPING=1", 1000ms), "STOPPING=1\nSTATUS=draining");
  close(fd);
}

// The rules of the interface tests: datagrams to 7001 leaving through "wan", and to 7002
// leaving through an outside interface (io.nfqueue.outside_interfaces = ["wan"]), are dropped.
constexpr char kWanRules[] = R"(
[[rule]]
number = 100
name = "drop-out-wan"
action = "drop"
match = { proto = "udp", dst_port = 7001, out_interface = "wan" }

[[rule]]
number = 110
name = "drop-outbound"
action = "drop"
match = { proto = "udp", dst_port = 7002, direction = "out" }
)";

// (i) Interfaces that come and go. The rules and io.nfqueue.outside_interfaces name "wan",
// which does not exist at start; the router's server-side link is then renamed "wan", then
// deleted and created again under a new index (a PPP reconnect), and finally renamed away.
// The daemon follows each change (rtnetlink link notifications) with no SIGHUP: while "wan"
// exists, both drop rules match the datagrams leaving through it — one by its
// out_interface, one by the direction "wan" gives forwarded packets; before and after,
// neither matches.
TEST_F(SluiceRunNetns, RulesFollowAnInterfaceThatAppearsAndGoesWithoutASighup) {
  const std::string config = WriteFile("sluice.toml", Config("outside_interfaces = [\"wan\"]\n", kWanRules));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  auto rx1 = StartReceiver(400, 7001, 60000);
  auto rx2 = StartReceiver(400, 7002, 60000);
  // Runs `act` and waits until the daemon has logged one of `logged` and then recompiled its
  // rules (one link change may reach it as one or two notifications).
  auto change = [&](const std::function<void()>& act, std::initializer_list<const char*> logged) {
    const std::size_t mark = d->log().size();
    act();
    const auto deadline = std::chrono::steady_clock::now() + 5s;
    for (;;) {
      d->proc->WaitForText("rules recompiled", 100ms, mark);  // reads what the daemon wrote
      const std::string log = d->log().substr(mark);
      for (const char* what : logged) {
        const auto at = log.find(what);
        if (at != std::string::npos && log.find("rules recompiled", at) != std::string::npos) return;
      }
      ASSERT_LT(std::chrono::steady_clock::now(), deadline) << log;
    }
  };
  auto rename = [&](const std::string& from, const std::string& to) {
    return [&, from, to] {
      const Status ran = lab_->Must(Node::kRouter, "ip link set " + from + " down && ip link set " + from + " name " +
                                                       to + " && ip link set " + to + " up");
      ASSERT_TRUE(ran.ok()) << ran.message();
    };
  };

  SendToBothWanRules(0);  // no "wan" yet: both pass
  change(rename("r1", "wan"), {"interface wan appeared as index"});
  SendToBothWanRules(100);  // leaving through "wan": both dropped
  // A PPP reconnect: "wan" deleted and created again, under a new index.
  change([&] { RecreateWan(); }, {"interface wan appeared as index", "interface wan is now index"});
  SendToBothWanRules(200);  // through the new "wan": both dropped
  change(rename("wan", "r1"), {"interface wan (index"});
  SendToBothWanRules(300);  // "wan" is gone: both pass again

  for (LabProcess* rx : {rx1.get(), rx2.get()}) {
    kill(rx->ProgramPid(), SIGTERM);  // each expects more than will come
    EXPECT_EQ(Received(*rx).received, 200u) << "the 200 sent while \"wan\" existed were dropped";
  }
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.Rule("drop-out-wan"), 200u);
  EXPECT_EQ(s.Rule("drop-outbound"), 200u) << "counters carried on through the recompiles";
  EXPECT_EQ(s.Packets("dropped"), 400u);
}

// With io.nfqueue.watch_links = false the daemon does not watch links; a SIGHUP looks every
// name up again: the rules' through the reload, the outside interfaces' through the same
// path a failed link watch falls back on. Until the SIGHUP a renamed "wan" is unknown to
// both rules; after it, and after "wan" comes back under a new index and another SIGHUP, both
// match again.
TEST_F(SluiceRunNetns, WithoutTheLinkWatchASighupFollowsTheInterfaces) {
  const std::string config =
      WriteFile("sluice.toml", Config("outside_interfaces = [\"wan\"]\nwatch_links = false\n", kWanRules));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->proc->WaitForText("watch_links is false", 1s)) << d->log();
  auto rx1 = StartReceiver(300, 7001, 60000);
  auto rx2 = StartReceiver(300, 7002, 60000);
  // Sends a SIGHUP and waits until the daemon says it sees "wan" (the outside interfaces are
  // given to the queues before that line, and the reload before them).
  auto sighup = [&](const char* seen) {
    const std::size_t mark = d->log().size();
    ASSERT_TRUE(d->Signal(SIGHUP));
    ASSERT_TRUE(d->proc->WaitForText(seen, 5s, mark)) << d->log().substr(mark);
    EXPECT_NE(d->log().find("reloaded", mark), std::string::npos) << d->log().substr(mark);
  };

  ASSERT_TRUE(lab_->Must(Node::kRouter, "ip link set r1 down && ip link set r1 name wan && ip link set wan up").ok());
  SendToBothWanRules(0);  // "wan" exists, but nothing looked it up: both pass
  EXPECT_EQ(d->log().find("interface wan appeared"), std::string::npos) << d->log();
  sighup("interface wan appeared as index");
  SendToBothWanRules(100);  // leaving through "wan": both dropped
  RecreateWan();
  sighup("interface wan is now index");
  SendToBothWanRules(200);  // through the new "wan": both dropped

  for (LabProcess* rx : {rx1.get(), rx2.get()}) {
    kill(rx->ProgramPid(), SIGTERM);  // each expects more than will come
    EXPECT_EQ(Received(*rx).received, 100u) << "only the 100 sent before the first SIGHUP passed";
  }
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  // A reload starts the rules' counters afresh: these are the last SIGHUP's.
  EXPECT_EQ(s.Rule("drop-out-wan"), 100u);
  EXPECT_EQ(s.Rule("drop-outbound"), 100u);
  EXPECT_EQ(s.Packets("dropped"), 400u);
}

// A SIGHUP and a link change at the same moment: the reload may compile its rules before or
// after the rename, and the link notification may reach the daemon before or after the
// reload. Whichever order it meets them in, the rules in force afterwards are the new file's,
// compiled with the index "wan" has now.
TEST_F(SluiceRunNetns, ASighupTogetherWithALinkChangeEndsWithTheNewRulesOnTheNewIndex) {
  auto rules = [](int port) {
    return R"(
[[rule]]
number = 100
name = "drop-out-wan-)" + std::to_string(port) + R"("
action = "drop"
match = { proto = "udp", dst_port = )" + std::to_string(port) + R"(, out_interface = "wan" }
)";
  };
  const std::string config = WriteFile("sluice.toml", Config("outside_interfaces = [\"wan\"]\n", rules(7001)));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  auto rx1 = StartReceiver(200, 7001, 60000);
  auto rx2 = StartReceiver(200, 7002, 60000);

  const std::size_t mark = d->log().size();
  WriteFile("sluice.toml", Config("outside_interfaces = [\"wan\"]\n", rules(7002)));
  ASSERT_TRUE(d->Signal(SIGHUP));
  ASSERT_TRUE(lab_->Must(Node::kRouter, "ip link set r1 down && ip link set r1 name wan && ip link set wan up").ok());
  ASSERT_TRUE(d->proc->WaitForText("reloaded", 5s, mark)) << d->log();
  // The outside interfaces follow the link notification, and the daemon logs that first; if
  // the reload compiled before the rename, a recompile follows at once ("rules recompiled").
  // Whether one is due cannot be read from outside, so the test gives it a second.
  ASSERT_TRUE(d->proc->WaitForText("interface wan appeared as index", 5s, mark)) << d->log();
  d->proc->WaitForText("rules recompiled", 1s, mark);

  EXPECT_EQ(Send(100, 10000, 0, 64, 7001).sent, 100u);  // the old rule is gone: passes
  EXPECT_EQ(Send(100, 10000, 0, 64, 7002).sent, 100u);  // the new one, on wan's index: dropped
  for (LabProcess* rx : {rx1.get(), rx2.get()}) kill(rx->ProgramPid(), SIGTERM);
  EXPECT_EQ(Received(*rx1).received, 100u);
  EXPECT_EQ(Received(*rx2).received, 0u) << d->log().substr(mark);
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.Rule("drop-out-wan-7002"), 100u);
  EXPECT_EQ(s.Packets("dropped"), 100u);
}

// (h) --user nobody: after opening the queues the daemon runs as nobody with CAP_NET_ADMIN
// alone (every verdict is checked against it) and no way back; traffic still flows.
TEST_F(SluiceRunNetns, UnderUserNobodyTheDaemonHasOnlyCapNetAdminAndStillVerdicts) {
  const std::string config = WriteFile("sluice.toml", Config("", ""));
  InstallFirewall(config);
  ASSERT_EQ(chown(dir_.c_str(), 65534, 65534), 0);  // its stats file
  Daemon* d = StartRunning(config, {"--user", "nobody"});
  ASSERT_NE(d, nullptr);
  EXPECT_TRUE(d->proc->WaitForText("running as nobody", 1s)) << d->log();

  const std::string task_dir = "/proc/" + std::to_string(d->pid) + "/task";
  int threads = 0;
  for (const auto& task : std::filesystem::directory_iterator(task_dir)) {
    std::ifstream in(task.path() / "status");
    std::map<std::string, std::string> status;
    for (std::string l; std::getline(in, l);) {
      const auto colon = l.find(':');
      if (colon == std::string::npos) continue;
      std::string v = l.substr(colon + 1);
      v.erase(0, v.find_first_not_of(" \t"));
      status[l.substr(0, colon)] = v;
    }
    SCOPED_TRACE("thread " + task.path().filename().string());
    EXPECT_EQ(status["Uid"], "65534\t65534\t65534\t65534");
    EXPECT_EQ(status["Gid"], "65534\t65534\t65534\t65534");
    EXPECT_EQ(status["CapEff"], "0000000000001000") << "CAP_NET_ADMIN (12) only";
    EXPECT_EQ(status["CapPrm"], "0000000000001000");
    EXPECT_EQ(status["CapInh"], "0000000000000000");
    EXPECT_EQ(status["CapAmb"], "0000000000000000");
    EXPECT_EQ(status["NoNewPrivs"], "1");
    ++threads;
  }
  EXPECT_GE(threads, 3) << "main, the host and one I/O thread per queue";

  auto rx = StartReceiver(2000);
  const SendResult tx = Send(2000, 20000);
  EXPECT_EQ(Received(*rx).received, tx.sent);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), tx.sent) << "verdicted by the unprivileged daemon";
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  EXPECT_EQ(s.SumOverQueues("nfqueue_ids_received"), tx.sent);
}

// A second daemon on queues another holds exits 1 and says who holds them. One that cannot
// start for a reason found before binding (an unknown --user) says that reason instead: the
// queues are bound last, after everything that can fail or take long, so a daemon that will
// not run never holds a queue that nobody reads.
TEST_F(SluiceRunNetns, ASecondDaemonOnTakenQueuesExitsNamingTheHolder) {
  const std::string config = WriteFile("sluice.toml", Config("", ""));
  Daemon* first = StartRunning(config);
  ASSERT_NE(first, nullptr);
  Daemon* second = StartDaemon(config);
  ASSERT_NE(second, nullptr);
  EXPECT_EQ(second->proc->Wait(20s), 1);
  const auto q0 = FindQueue(Kernel(), 0);
  ASSERT_TRUE(q0.has_value());
  EXPECT_NE(second->log().find("NFQUEUE queue 0 is already bound by another socket (netlink portid " +
                               std::to_string(q0->portid) + ")"),
            std::string::npos)
      << second->log();
  EXPECT_EQ(q0->copy_mode, 2u);        // NFQNL_COPY_PACKET
  EXPECT_EQ(q0->copy_range, 65531u);   // the whole packet, as much as a verdict can return

  Daemon* third = StartDaemon(config, {"--user", "sluice-no-such-user"});
  ASSERT_NE(third, nullptr);
  EXPECT_EQ(third->proc->Wait(20s), 1);
  EXPECT_NE(third->log().find("no such user 'sluice-no-such-user'"), std::string::npos) << third->log();
  EXPECT_EQ(third->log().find("already bound"), std::string::npos) << "it tried the queues first:\n" << third->log();
  ASSERT_EQ(first->Terminate(), 0) << first->log();
}

// ---- slow consumer / queue full, no listener ------------------------------------------------

// A tiny queue and a consumer that cannot keep up. A burst alone overflows it only when the
// daemon happens to be slower than the sender, which depends on the machine; a daemon stopped
// (SIGSTOP) for the length of the burst is a consumer slower than any sender, so the queues
// fill to exactly their maxlen and every packet after that meets a full queue. The daemon
// then continues (SIGCONT) and verdicts what was queued.
constexpr uint32_t kTinyQueue = 16;
constexpr uint64_t kBurst = 2000;  // over 8 sources and 2 queues: far more than 2 × 16
constexpr uint64_t kBurstRate = 50'000;

// (i) Fail-open: a full queue accepts the packet unqueued instead of dropping it. Nothing is
// lost at the generator and the kernel's queue_dropped stays 0; what passed around sluice
// took no packet id and moved no kernel counter — only the sluice-unmarked rule counts it.
TEST_F(SluiceRunNetns, WithFailOpenAFullQueuePassesTheOverflowUnqueuedAndNothingIsLost) {
  const std::string config = WriteFile(
      "sluice.toml",
      Config("fail_open = true\nqueue_maxlen = " + std::to_string(kTinyQueue) + "\n", ""));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  auto rx = StartReceiver(kBurst);  // idle 3 s: longer than the daemon stays stopped

  ASSERT_TRUE(Freeze(*d)) << "the daemon did not stop";
  const SendResult tx = Send(kBurst, kBurstRate);
  ASSERT_EQ(tx.sent, kBurst);
  ASSERT_EQ(WaitForQueueRule(tx.sent), tx.sent);
  // While it is stopped: each queue holds at most its maxlen, and everything else went past.
  uint64_t queued = 0;
  for (const KernelQueueStats& k : Kernel()) {
    SCOPED_TRACE("queue " + std::to_string(k.queue));
    EXPECT_LE(k.queue_total, kTinyQueue);
    EXPECT_EQ(k.queue_total, k.id_sequence) << "nothing verdicted yet; ids only for queued packets";
    EXPECT_EQ(k.queue_dropped, 0u);
    EXPECT_EQ(k.queue_user_dropped, 0u);
    queued += k.queue_total;
  }
  EXPECT_GT(queued, 0u);
  ASSERT_LT(queued, tx.sent) << "the queues did not overflow";
  const uint64_t unmarked = Iptables("filter", "sluice-unmarked");
  EXPECT_EQ(unmarked, tx.sent - queued) << "the overflow passed unqueued, and was counted";
  ASSERT_TRUE(Thaw(*d));

  const ReceiveResult got = Received(*rx);
  EXPECT_EQ(got.received, tx.sent) << "fail-open: nothing lost at the generator";
  const auto kernel = Kernel();
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s);
  for (const KernelQueueStats& k : kernel) EXPECT_EQ(k.queue_dropped, 0u);
  EXPECT_EQ(s.SumOverQueues("nfqueue_ids_received"), queued)
      << "the daemon verdicted what was queued, once it ran again";
  EXPECT_EQ(s.SumOverQueues("nfqueue_lost_ids"), 0u)
      << "a packet that meets a full queue takes no id: no gap shows it";
  EXPECT_EQ(s.SumOverQueues("nfqueue_kernel_queue_dropped"), 0u);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), queued);
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), unmarked) << "nothing more passed around it";
  EXPECT_EQ(Iptables("mangle", "sluice-queue"), tx.sent);
  std::cout << "burst of " << tx.sent << " into 2 queues of " << kTinyQueue << ": " << queued
            << " queued and verdicted, " << unmarked << " passed unqueued (fail-open)\n";
}

// (j) Fail-closed: a full queue drops the packet and counts it in queue_dropped. The loss at
// the generator is exactly the kernel's queue_dropped summed over the queues, and the daemon
// reports that same figure (nfqueue_kernel_queue_dropped: read from the kernel, since such a
// packet takes no id and so leaves no gap the daemon could count).
TEST_F(SluiceRunNetns, FailClosedAFullQueueLosesExactlyTheKernelsQueueDroppedAndSluiceReportsIt) {
  const std::string config = WriteFile(
      "sluice.toml",
      Config("fail_open = false\nqueue_maxlen = " + std::to_string(kTinyQueue) + "\n", ""));
  InstallFirewall(config);
  Daemon* d = StartRunning(config);
  ASSERT_NE(d, nullptr);
  auto rx = StartReceiver(kBurst, 9000, 1500);  // it never gets all: ends 1.5 s after the last

  ASSERT_TRUE(Freeze(*d)) << "the daemon did not stop";
  const SendResult tx = Send(kBurst, kBurstRate);
  ASSERT_EQ(tx.sent, kBurst);
  ASSERT_EQ(WaitForQueueRule(tx.sent), tx.sent);
  uint64_t queued = 0, dropped = 0;
  for (const KernelQueueStats& k : Kernel()) {
    SCOPED_TRACE("queue " + std::to_string(k.queue));
    EXPECT_LE(k.queue_total, kTinyQueue);
    EXPECT_EQ(k.queue_total, k.id_sequence) << "nothing verdicted yet; ids only for queued packets";
    if (k.queue_dropped > 0) {
      EXPECT_EQ(k.queue_total, kTinyQueue) << "dropped only when full";
    }
    EXPECT_EQ(k.queue_user_dropped, 0u);
    queued += k.queue_total;
    dropped += k.queue_dropped;
  }
  EXPECT_EQ(queued + dropped, tx.sent) << "every packet was queued or dropped at the queue";
  ASSERT_GT(dropped, 0u) << "the queues did not overflow";
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), 0u) << "fail-closed: nothing passed unqueued";
  ASSERT_TRUE(Thaw(*d));

  const ReceiveResult got = Received(*rx);
  const auto kernel = Kernel();  // before the daemon unbinds
  ASSERT_EQ(d->Terminate(), 0) << d->log();
  const DaemonStats s = d->Stats();
  ExpectReconciledAtExit(s, /*loss=*/false, /*queue_full=*/true);
  uint64_t kernel_dropped = 0;
  for (const KernelQueueStats& k : kernel) {
    EXPECT_EQ(k.queue_dropped, s.Counter("nfqueue_kernel_queue_dropped", k.queue));
    kernel_dropped += k.queue_dropped;
  }
  EXPECT_EQ(kernel_dropped, dropped) << "nothing more was dropped once the daemon ran again";
  EXPECT_EQ(tx.sent - got.received, kernel_dropped) << "the loss at the generator";
  EXPECT_EQ(s.SumOverQueues("nfqueue_kernel_queue_dropped"), tx.sent - got.received)
      << "the loss sluice reports";
  EXPECT_EQ(s.SumOverQueues("nfqueue_lost_ids"), 0u)
      << "a packet that meets a full queue takes no id: no gap shows it";
  EXPECT_EQ(s.SumOverQueues("nfqueue_ids_received"), got.received);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), got.received);
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), 0u);
  std::cout << "burst of " << tx.sent << " into 2 queues of " << kTinyQueue << ": " << queued
            << " queued and verdicted, " << kernel_dropped << " dropped (queue_dropped)\n";
}

// (k) No listener: the queue rule is installed and no daemon runs. With --queue-bypass
// (`sluice rules` adds it when fail_open is set) the kernel passes packets past the rule
// unqueued, so traffic flows, counted by sluice-unmarked. Without it the kernel drops every
// packet that meets the rule — a blackhole, by design of fail-closed: nothing crosses the
// router uninspected, and no counter but the queue rule's own shows the loss (no queue is
// bound, so /proc/net/netfilter/nfnetlink_queue has no line for it).
TEST_F(SluiceRunNetns, WithNoListenerQueueBypassLetsTrafficFlow) {
  const std::string config = WriteFile("sluice.toml", Config("fail_open = true\n", ""));
  InstallFirewall(config);
  ASSERT_EQ(lab_->Run(Node::kRouter, "iptables -w -t mangle -S FORWARD | grep -q -- --queue-bypass"),
            0)
      << "sluice rules should emit --queue-bypass for fail_open = true";
  EXPECT_TRUE(Kernel().empty()) << "no queue is bound";
  auto rx = StartReceiver(kBurst);
  const SendResult tx = Send(kBurst, kBurstRate);
  ASSERT_EQ(tx.sent, kBurst);
  EXPECT_EQ(Received(*rx).received, tx.sent) << "bypass: traffic flows without a listener";
  EXPECT_EQ(Iptables("mangle", "sluice-queue"), tx.sent);
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), tx.sent) << "every packet passed unqueued";
  EXPECT_EQ(Iptables("filter", "test-verdicted"), 0u);
}

TEST_F(SluiceRunNetns, WithNoListenerAndNoBypassTheQueueRuleBlackholesTraffic) {
  const std::string config = WriteFile("sluice.toml", Config("fail_open = false\n", ""));
  InstallFirewall(config);
  ASSERT_EQ(lab_->Run(Node::kRouter, "iptables -w -t mangle -S FORWARD | grep -q -- --queue-bypass"),
            1)
      << "sluice rules should not emit --queue-bypass for fail_open = false";
  EXPECT_TRUE(Kernel().empty()) << "no queue is bound";
  auto rx = StartReceiver(kBurst);
  const SendResult tx = Send(kBurst, kBurstRate);
  ASSERT_EQ(tx.sent, kBurst);
  // Once the queue rule has seen every datagram the kernel has dropped each at the rule: none
  // is in flight behind it, so the receiver can stop now (it would wait for its timeout).
  EXPECT_EQ(WaitForQueueRule(tx.sent), tx.sent);
  kill(rx->ProgramPid(), SIGTERM);
  EXPECT_EQ(Received(*rx).received, 0u) << "without bypass and a listener: a blackhole";
  EXPECT_EQ(Iptables("filter", "sluice-unmarked"), 0u);
  EXPECT_EQ(Iptables("filter", "test-verdicted"), 0u);
  EXPECT_TRUE(Kernel().empty()) << "the kernel keeps no per-queue figure for an unbound queue";
}

}  // namespace
}  // namespace sluice
