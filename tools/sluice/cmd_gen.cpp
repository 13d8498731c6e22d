// sluice gen -o FILE: deterministic synthetic traffic to a pcap file.
#include <cstdio>
#include <random>

#include "engine/io/gen/traffic_gen.h"
#include "tools/sluice/command.h"

namespace sluice::cli {

void RegisterGen(CLI::App& app, ExitCode& exit_code) {
  struct Args {
    std::string out;
    uint64_t packets = 1'000'000;
    std::string sizes = "64";
    TrafficSpec spec;
    bool seed_given = false;
  };
  auto args = std::make_shared<Args>();
  auto* cmd = app.add_subcommand("gen", "Write deterministic synthetic traffic (198.18.0.0/15) to a pcap file");
  cmd->add_option("-o,--out", args->out, "Output pcap file")->required();
  cmd->add_option("-n,--packets", args->packets, "Number of packets")->check(CLI::Range(uint64_t{1}, uint64_t{1} << 32));
  cmd->add_option("--flows", args->spec.flows, "Number of distinct flows")->check(CLI::Range(1u, 1u << 24));
  cmd->add_option("--sizes", args->sizes, "Frame sizes: 64, imix (7:4:1 of 60/590/1514) or 1500")
      ->check(CLI::IsMember({"64", "imix", "1500"}));
  cmd->add_option("--ipv6", args->spec.ipv6_share, "Share of IPv6 flows, 0..1")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--udp", args->spec.udp_share, "Share of UDP flows, 0..1 (the rest TCP)")->check(CLI::Range(0.0, 1.0));
  cmd->add_option("--replies", args->spec.reply_share, "Share of packets from server to client, 0..1")
      ->check(CLI::Range(0.0, 1.0));
  cmd->add_option_function<uint64_t>("--seed", [args](uint64_t s) { args->spec.seed = s; args->seed_given = true; },
                                     "Random seed (printed; default: a fresh one)");
  cmd->callback([args, &exit_code] {
    if (!args->seed_given) args->spec.seed = std::random_device{}();
    ParseSizeMix(args->sizes, &args->spec.sizes);
    std::fprintf(stderr, "sluice gen: %llu packets, %u flows, sizes %s, ipv6 %.2f, udp %.2f, replies %.2f, seed %llu\n",
                 static_cast<unsigned long long>(args->packets), args->spec.flows, args->sizes.c_str(),
                 args->spec.ipv6_share, args->spec.udp_share, args->spec.reply_share,
                 static_cast<unsigned long long>(args->spec.seed));
    const Status s = WritePcap(args->spec, args->packets, args->out);
    if (!s.ok()) {
      std::fprintf(stderr, "sluice gen: %s\n", s.message().c_str());
      exit_code.value = 1;
      return;
    }
    exit_code.value = 0;
  });
}

}  // namespace sluice::cli
