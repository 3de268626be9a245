// Exact, versioned binary encoding of WorkflowStats (what a worker returns for one workflow and a
// manager merges). decode(encode(x)) == x field for field, histograms bucket for bucket, so merging
// decoded stats equals merging in process.
//
// Layout (version 1): "HSWS" magic, u8 version, then LEB128 varints and length-prefixed strings:
// name, outcome, note, started, completed, dropped, interrupted, iterations_failed, elapsed_ns,
// measured_ns, steps[] { name, total counts, measured counts, skipped, latency histogram (sum, min,
// max, sparse (index delta, count) buckets), per-second series }. Every length and count is checked
// against its bound and the bytes left; counts must add up (ok + failed = executed, reasons sum to
// failed). Garbage gives a clear error, never undefined behaviour.
#pragma once

#include <cstdint>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/load/stats.hpp"

namespace hs::load {

inline constexpr std::uint8_t kStatsCodecVersion = 1;
inline constexpr std::size_t kMaxStatsSteps = 4096;
inline constexpr std::size_t kMaxStatsString = 64 * 1024;
inline constexpr std::size_t kMaxStatsBytes = 64u << 20;

std::vector<std::uint8_t> encode_stats(const WorkflowStats& s);
Result<WorkflowStats> decode_stats(const std::uint8_t* data, std::size_t size);
inline Result<WorkflowStats> decode_stats(const std::vector<std::uint8_t>& b) {
  return decode_stats(b.data(), b.size());
}

}  // namespace hs::load
