// hs-bench-swim-sim: SWIM + Lifeguard failure detection measured in the deterministic simulator.
//
// For N members and each network condition, runs independent trials (one seed each): a cluster
// that has been running (every member knows every other, confirmed) warms up, then one random
// member crashes. Reported, in protocol periods: time until the first member suspects the crashed
// one and until every live member has declared it dead (median and p99 over trials); messages sent
// per member per period; and false deaths (a live member declared dead, counted once per member
// and incarnation however many members learned it) per 10 000 member-periods.
//
// Usage: hs-bench-swim-sim [--sizes 10,100,1000] [--trials-scale 1.0] [--seed 1]
#include <algorithm>
#include <cmath>
#include <cstdio>
#include <cstdlib>
#include <cstring>
#include <map>
#include <set>
#include <string>
#include <vector>

#include "hyperscale/base/log.hpp"
#include "support/sim_cluster.hpp"

using namespace hs;
using namespace hs::swim;
using namespace std::chrono_literals;

namespace {

std::size_t g_max_piggyback = 0;  // 0: SwimConfig default

struct Condition {
  const char* name;
  double loss;
  bool slow;
  bool lifeguard = true;
};

struct Row {
  std::size_t n = 0;
  std::string cond;
  std::vector<double> suspect, dead;
  double member_periods = 0;
  std::uint64_t sent = 0;
  std::uint64_t false_deaths = 0;
  std::uint64_t false_suspicions = 0;
  std::size_t trials = 0;
  std::size_t undetected = 0;
};

double quantile(std::vector<double> v, double q) {
  if (v.empty()) return NAN;
  std::sort(v.begin(), v.end());
  // nearest rank
  std::size_t k = static_cast<std::size_t>(std::ceil(q * static_cast<double>(v.size())));
  if (k < 1) k = 1;
  return v[std::min(k, v.size()) - 1];
}

void trial(Row& row, std::size_t n, const Condition& cond, std::uint64_t seed, int warmup_periods) {
  ClusterOptions o;
  o.n = n;
  o.sim.seed = seed;
  o.sim.net.loss = cond.loss;
  o.bootstrap_full = true;
  o.check_invariants = false;
  if (!cond.lifeguard) o.cfg.lhm_max = 0;
  if (g_max_piggyback) o.cfg.max_piggyback = g_max_piggyback;  // no local health multiplier: plain SWIM timeouts
  const Duration period = o.cfg.period;
  SimCluster c(o);
  Rng r(seed ^ 0x9e3779b97f4a7c15ull);
  std::set<NodeId> slow;
  if (cond.slow) {
    const std::size_t k = std::max<std::size_t>(1, n / 10);
    while (slow.size() < k) slow.insert(1 + r.below(n));
    for (NodeId id : slow) (void)c.sim().set_slow(id, 5.0, 150ms);
  }
  NodeId victim = 0;
  do victim = 1 + r.below(n);
  while (slow.count(victim));

  Status st = c.sim().run_for(period * warmup_periods);
  if (!st.ok()) {
    std::fprintf(stderr, "trial failed: %s\n", st.to_string().c_str());
    std::exit(1);
  }
  const Instant crash = c.sim().now();
  (void)c.sim().crash(victim);
  const Duration limit = period * 200;
  std::size_t scanned = 0, seen = 0;
  const bool done = c.run_until(
      [&] {
        const auto& ds = c.deaths();
        for (; scanned < ds.size(); ++scanned)
          if (ds[scanned].node == victim && ds[scanned].t >= crash) ++seen;
        return seen >= n - 1;
      },
      limit, period / 4);
  // Let the end of dissemination settle so message counts are not cut mid-flight.
  const Instant end = c.sim().now();
  const double periods = to_seconds(end) / to_seconds(period);
  row.member_periods += periods * static_cast<double>(n);
  row.sent += c.sim().counters().sent;
  ++row.trials;
  for (const auto& ob : c.log())
    if (ob.node == victim && ob.to == State::suspect && ob.t >= crash) {
      row.suspect.push_back(to_seconds(ob.t - crash) / to_seconds(period));
      break;
    }
  if (done) {
    Instant last{0};
    for (const auto& d : c.deaths())
      if (d.node == victim && d.t >= crash) last = std::max(last, d.t);
    row.dead.push_back(to_seconds(last - crash) / to_seconds(period));
  } else {
    ++row.undetected;
  }
  std::set<std::pair<NodeId, std::uint32_t>> suspected;
  for (const auto& ob : c.log())
    if (ob.to == State::suspect && (ob.node != victim || ob.t < crash)) suspected.insert({ob.node, ob.incarnation});
  row.false_suspicions += suspected.size();
  std::set<std::pair<NodeId, std::uint32_t>> falsely;
  for (const auto& d : c.deaths())
    if (d.node != victim || d.t < crash) {
      falsely.insert({d.node, d.incarnation});
      if (std::getenv("HS_BENCH_DEBUG"))
        std::fprintf(stderr, "false death: seed=%llu node=%llu inc=%u observer=%llu t=%.2fs crash=%.2fs victim=%llu\n",
                     static_cast<unsigned long long>(seed), static_cast<unsigned long long>(d.node), d.incarnation,
                     static_cast<unsigned long long>(d.observer), to_seconds(d.t), to_seconds(crash),
                     static_cast<unsigned long long>(victim));
    }
  row.false_deaths += falsely.size();
}

}  // namespace

int main(int argc, char** argv) {
  std::vector<std::size_t> sizes{10, 100, 1000};
  double scale = 1.0;
  std::uint64_t seed = 1;
  for (int i = 1; i < argc; ++i) {
    std::string a = argv[i];
    if (a == "--sizes" && i + 1 < argc) {
      sizes.clear();
      std::string s = argv[++i];
      for (std::size_t p = 0; p < s.size();) {
        std::size_t q = s.find(',', p);
        if (q == std::string::npos) q = s.size();
        sizes.push_back(std::strtoull(s.substr(p, q - p).c_str(), nullptr, 10));
        p = q + 1;
      }
    } else if (a == "--trials-scale" && i + 1 < argc) {
      scale = std::atof(argv[++i]);
    } else if (a == "--max-piggyback" && i + 1 < argc) {
      g_max_piggyback = std::strtoull(argv[++i], nullptr, 10);
    } else if (a == "--seed" && i + 1 < argc) {
      seed = std::strtoull(argv[++i], nullptr, 10);
    } else {
      std::fprintf(stderr, "usage: %s [--sizes 10,100,1000] [--trials-scale 1.0] [--seed 1] [--max-piggyback k]\n",
                   argv[0]);
      return 2;
    }
  }
  log::set_level(log::Level::error);
  const Condition conds[] = {{"loss 0%", 0.0, false},
                             {"loss 5%", 0.05, false},
                             {"loss 20%", 0.20, false},
                             {"10% slowed 5x", 0.0, true},
                             {"10% slowed 5x, LHM off", 0.0, true, false}};
  std::printf(
      "SWIM + Lifeguard in the simulator: period 1 s, probe timeout 500 ms, k = 3, latency 0.5 ms + exp(2 ms)\n");
  std::printf(
      "times in protocol periods after the crash; p99 is nearest-rank over the trials (= max for < 100 trials)\n\n");
  std::printf(
      "| N | network | trials | first suspect p50 | p99 | all know dead p50 | p99 | msgs/member/period | false deaths "
      "/10k member-periods | false suspicions /10k member-periods |\n");
  std::printf("|---|---|---|---|---|---|---|---|---|---|\n");
  std::map<std::pair<std::size_t, std::string>, Row> rows;
  for (std::size_t n : sizes) {
    const int trials = std::max(1, static_cast<int>(std::lround(scale * (n <= 10 ? 60 : n <= 100 ? 24 : 4))));
    const int warmup = n <= 10 ? 300 : n <= 100 ? 60 : 20;
    for (const auto& cond : conds) {
      Row row;
      row.n = n;
      row.cond = cond.name;
      for (int t = 0; t < trials; ++t) trial(row, n, cond, seed + static_cast<std::uint64_t>(t) * 7919 + n, warmup);
      const double msgs = static_cast<double>(row.sent) / row.member_periods;
      const double fd = static_cast<double>(row.false_deaths) / row.member_periods * 10000.0;
      const double fs = static_cast<double>(row.false_suspicions) / row.member_periods * 10000.0;
      std::printf("| %zu | %s | %zu | %.2f | %.2f | %.2f | %.2f | %.2f | %.2f | %.1f |%s\n", n, cond.name, row.trials,
                  quantile(row.suspect, 0.5), quantile(row.suspect, 0.99), quantile(row.dead, 0.5),
                  quantile(row.dead, 0.99), msgs, fd, fs,
                  row.undetected
                      ? (" (" + std::to_string(row.undetected) + " not fully detected in 200 periods)").c_str()
                      : "");
      std::fflush(stdout);
      rows[{n, cond.name}] = row;
    }
  }
  auto get = [&](const char* c) -> Row* {
    auto it = rows.find({100, c});
    return it == rows.end() ? nullptr : &it->second;
  };
  Row* r0 = get("loss 0%");
  Row* r5 = get("loss 5%");
  if (r0 && r5) {
    std::printf("\nswim detect_median_periods=%.2f false_deaths_5pct=%.2f msgs_per_member_period=%.2f\n",
                quantile(r0->suspect, 0.5), static_cast<double>(r5->false_deaths) / r5->member_periods * 10000.0,
                static_cast<double>(r0->sent) / r0->member_periods);
  }
  return 0;
}
