// Encoding of libraft's RPCs and of the Raft storage records (private to the cluster module).
//
// Wire (one message = one datagram on the node contract, version byte first):
//   u8 version=1, u8 type, then the fields of that RPC as varints; entries as
//   {var term, u8 entry type, bytes data}; configurations as {count, {var id, str address, u8 role}}.
// Storage (records of the disk log `<storage_name>`):
//   kEntry {var index, var term, u8 type, bytes data}
//   kTruncate {var index}                 every stored entry >= index is gone
//   kSnapshot {var index, var term, var conf_index, configuration, bytes data}
// A compaction rewrites the log atomically as [kSnapshot, kEntry...] (Disk::replace_log).
// Decoders verify every length against its bound and what is left before reading.
#pragma once

#include <cstdint>
#include <optional>
#include <span>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/node/node.hpp"

extern "C" {
#include <raft.h>
}

namespace hs::cluster::raftc {

inline constexpr std::uint8_t kWireVersion = 1;
inline constexpr std::size_t kMaxEntries = 100'000;
inline constexpr std::size_t kMaxServers = 64;
inline constexpr std::size_t kMaxAddress = 64;
inline constexpr std::size_t kMaxData = 64u << 20;

// ---- storage ----
enum RecordKind : std::uint8_t { kEntry = 1, kTruncate = 2, kSnapshot = 3 };

struct Server {
  std::uint64_t id = 0;
  std::string address;
  int role = 0;
};

struct StoredEntry {
  std::uint64_t index = 0, term = 0;
  std::uint16_t type = 0;
  node::Bytes data;
};

struct StoredSnapshot {
  std::uint64_t index = 0, term = 0, conf_index = 0;
  std::vector<Server> conf;
  node::Bytes data;
};

node::Bytes encode_entry(std::uint64_t index, const raft_entry& e);
node::Bytes encode_entry(const StoredEntry& e);
node::Bytes encode_truncate(std::uint64_t index);
node::Bytes encode_snapshot(const raft_snapshot& s);

// The log replayed: the latest snapshot (if any) and the entries that follow it in the log, which
// start at `first` (entries may begin at or before snapshot->index: the trailing entries).
struct Replayed {
  std::optional<StoredSnapshot> snapshot;
  std::uint64_t first = 1;  // index of entries.front(); when empty, the next index to append
  std::vector<StoredEntry> entries;
};
// A last record that does not decode is a torn tail (a write cut by a crash before it was synced,
// so never acknowledged): it is dropped and counted in *torn. Anywhere else it is corruption.
Result<Replayed> replay(const std::vector<node::Bytes>& records, std::uint64_t* torn = nullptr);

// Term and vote live in two slots written alternately (`seq` counts the writes), each record
// checksummed (CRC32C): a write torn by a crash damages only the slot being written, and the other
// slot still holds the previous value. load picks the valid record with the highest seq.
struct Meta {
  std::uint64_t seq = 0, term = 0, vote = 0;
};
node::Bytes encode_meta(const Meta& m);
Status decode_meta(std::span<const std::uint8_t> in, Meta& out);

// ---- conversion to libraft structures (memory from raft_malloc; ownership passes to libraft) ----
// Fills a raft configuration; RAFT_* error code on failure (0 on success).
int to_raft_configuration(const std::vector<Server>& servers, raft_configuration* out);
std::vector<Server> from_raft_configuration(const raft_configuration& c);
// entries[] in one batch allocation, as libraft expects from load() and received AppendEntries.
int to_raft_entries(const std::vector<StoredEntry>& in, raft_entry** out, std::size_t* n);
raft_snapshot* to_raft_snapshot(const StoredSnapshot& s);  // nullptr when out of memory

// ---- wire ----
// Encodes `m` (server_id/address are not sent: the sender is the transport's `from`).
// An AppendEntries over max_bytes keeps only the entries that fit (at least one): *cut is set.
// Fails (empty Result) for an InstallSnapshot over max_bytes.
Result<node::Bytes> encode_message(const raft_message& m, std::size_t max_bytes, bool* cut);
// Decodes into `out`, allocating entries/configuration/data with raft_malloc; on error nothing
// is left allocated. `out.server_id`/`server_address` are left for the caller to set.
Status decode_message(std::span<const std::uint8_t> in, raft_message& out);
// Frees what decode_message allocated (for messages that are dropped instead of delivered).
void free_message(raft_message& m);

// ---- fragments ----
// A message over the transport's limit (an InstallSnapshot: libraft 0.15 sends a snapshot whole and
// cannot split it) travels as fragments, each one transport message:
//   u8 version=1, u8 kFragment, var id, var index, var count, var total, bytes chunk
// `id` names the message (unique per sender incarnation), `total` is the whole message's length.
// The receiver reassembles (Reassembly) and decodes the whole as usual.
inline constexpr std::uint8_t kFragment = 0xF0;  // outside libraft's message types
inline constexpr std::size_t kMaxFragments = 1u << 16;
bool is_fragment(std::span<const std::uint8_t> in);
// Splits `whole` into fragments of at most max_bytes each (max_bytes > the 52-byte header).
std::vector<node::Bytes> fragment(std::span<const std::uint8_t> whole, std::uint64_t id, std::size_t max_bytes);
struct Fragment {
  std::uint64_t id = 0, total = 0;
  std::uint32_t index = 0, count = 0;
  node::Bytes chunk;
};
Status decode_fragment(std::span<const std::uint8_t> in, Fragment& out);

// The one message being reassembled on a node (only a leader sends snapshots, so one at a time is
// enough: a fragment of another message replaces an unfinished one). Bounded: a message over
// `max_total` bytes is refused at its first fragment; fragments of a message recently completed or
// replaced are ignored (a ring of the last kRecent ids), so a duplicate cannot restart it.
class Reassembly {
 public:
  enum class Outcome { partial, complete, duplicate, stale, refused };
  // On `complete`, *whole holds the message and the slot is free again.
  Outcome add(std::uint64_t from, Fragment f, std::size_t max_total, node::Bytes* whole, std::string* why);
  std::size_t bytes_held() const noexcept { return held_; }
  std::uint64_t replaced() const noexcept { return replaced_; }

 private:
  static constexpr std::size_t kRecent = 8;
  void retire();
  bool recent(std::uint64_t from, std::uint64_t id) const;
  std::uint64_t from_ = 0, id_ = 0, total_ = 0;
  std::uint32_t have_ = 0;
  std::size_t held_ = 0;
  std::vector<node::Bytes> chunks_;                              // empty: no message in progress
  std::vector<std::pair<std::uint64_t, std::uint64_t>> recent_;  // (from, id), at most kRecent
  std::size_t recent_next_ = 0;
  std::uint64_t replaced_ = 0;
};

}  // namespace hs::cluster::raftc
