#include "raft_codec.hpp"

#include <algorithm>
#include <cstring>

#include <fmt/format.h>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/crc32c.hpp"
#include "hyperscale/cluster/codec.hpp"

namespace hs::cluster::raftc {
namespace {

void put_conf(Writer& w, const std::vector<Server>& servers) {
  w.var(servers.size());
  for (const auto& s : servers) {
    w.var(s.id);
    w.str(s.address);
    w.u8(static_cast<std::uint8_t>(s.role));
  }
}

std::vector<Server> get_conf(Reader& r) {
  std::vector<Server> out;
  const std::size_t n = r.count(kMaxServers);
  out.reserve(n);
  for (std::size_t i = 0; i < n && r.ok(); ++i) {
    Server s;
    s.id = r.var();
    s.address = r.str(kMaxAddress);
    s.role = r.u8();
    if (s.id == 0) r.fail("server id 0");
    if (s.role > RAFT_SPARE) r.fail("bad server role");
    out.push_back(std::move(s));
  }
  return out;
}

void put_raft_conf(Writer& w, const raft_configuration& c) { put_conf(w, from_raft_configuration(c)); }

// The payload of an entry as it goes to disk and on the wire. libraft 0.15 leaves a barrier
// entry's buffer uninitialised (raft_barrier mallocs it and never writes it); nothing reads it, but
// stored or sent as is it would make the log and the simulator's trace depend on heap garbage.
void put_entry_data(Writer& w, const raft_entry& e) {
  if (e.type == RAFT_BARRIER) {
    w.var(e.buf.len);
    w.out().insert(w.out().end(), e.buf.len, 0);
    return;
  }
  w.bytes({static_cast<const std::uint8_t*>(e.buf.base), e.buf.len});
}

Status reader_status(const Reader& r, const char* what) {
  if (r.ok() && r.done()) return ok_status();
  return make_error(Errc::corruption, fmt::format("{}: {}", what, r.ok() ? "trailing bytes" : r.error()));
}

}  // namespace

Result<Replayed> replay_records(const std::vector<node::Bytes>& records);

// ---------------------------------------------------------------- storage

node::Bytes encode_entry(std::uint64_t index, const raft_entry& e) {
  Writer w;
  w.u8(kEntry);
  w.var(index);
  w.var(e.term);
  w.u8(static_cast<std::uint8_t>(e.type));
  put_entry_data(w, e);
  return w.take();
}

node::Bytes encode_entry(const StoredEntry& e) {
  Writer w;
  w.u8(kEntry);
  w.var(e.index);
  w.var(e.term);
  w.u8(static_cast<std::uint8_t>(e.type));
  w.bytes(e.data);
  return w.take();
}

node::Bytes encode_truncate(std::uint64_t index) {
  Writer w;
  w.u8(kTruncate);
  w.var(index);
  return w.take();
}

node::Bytes encode_snapshot(const raft_snapshot& s) {
  Writer w;
  w.u8(kSnapshot);
  w.var(s.index);
  w.var(s.term);
  w.var(s.configuration_index);
  put_raft_conf(w, s.configuration);
  std::size_t total = 0;
  for (unsigned i = 0; i < s.n_bufs; ++i) total += s.bufs[i].len;
  w.var(total);
  for (unsigned i = 0; i < s.n_bufs; ++i) {
    const auto* p = static_cast<const std::uint8_t*>(s.bufs[i].base);
    w.out().insert(w.out().end(), p, p + s.bufs[i].len);
  }
  return w.take();
}

Result<Replayed> replay(const std::vector<node::Bytes>& records, std::uint64_t* torn) {
  Result<Replayed> all = replay_records(records);
  if (all.ok() || records.empty()) return all;
  // A torn last record: replay without it (it was never synced, so never acknowledged).
  std::vector<node::Bytes> head(records.begin(), records.end() - 1);
  Result<Replayed> rest = replay_records(head);
  if (!rest.ok()) return all;  // the damage is not (only) at the tail: report the first error
  if (torn != nullptr) ++*torn;
  return rest;
}

Result<Replayed> replay_records(const std::vector<node::Bytes>& records) {
  Replayed out;
  std::size_t pos = 0;
  for (const auto& rec : records) {
    Reader r(rec);
    const std::uint8_t kind = r.u8();
    if (kind == kSnapshot) {
      StoredSnapshot s;
      s.index = r.var();
      s.term = r.var();
      s.conf_index = r.var();
      s.conf = get_conf(r);
      s.data = r.bytes(kMaxData);
      HS_TRY(reader_status(r, "raft snapshot record"));
      // A snapshot starts the log (it is only written by a compaction): earlier records are gone.
      if (pos != 0) return make_error(Errc::corruption, fmt::format("raft log: snapshot record at position {}", pos));
      out.first = s.index + 1;
      out.snapshot = std::move(s);
    } else if (kind == kEntry) {
      StoredEntry e;
      e.index = r.var();
      e.term = r.var();
      e.type = r.u8();
      e.data = r.bytes(kMaxData);
      HS_TRY(reader_status(r, "raft entry record"));
      if (out.entries.empty()) {
        if (out.snapshot && (e.index == 0 || e.index > out.snapshot->index + 1)) {
          return make_error(Errc::corruption, fmt::format("raft log: entry {} does not follow snapshot {}", e.index,
                                                          out.snapshot->index));
        }
        if (!out.snapshot && e.index != out.first) {
          return make_error(Errc::corruption,
                            fmt::format("raft log: entry {} where {} was expected", e.index, out.first));
        }
        out.first = e.index;
      } else if (e.index != out.entries.back().index + 1) {
        return make_error(Errc::corruption,
                          fmt::format("raft log: entry {} after entry {}", e.index, out.entries.back().index));
      }
      if (e.type < RAFT_COMMAND || e.type > RAFT_CHANGE) {
        return make_error(Errc::corruption, fmt::format("raft log: entry {} has type {}", e.index, e.type));
      }
      out.entries.push_back(std::move(e));
    } else if (kind == kTruncate) {
      const std::uint64_t index = r.var();
      HS_TRY(reader_status(r, "raft truncate record"));
      while (!out.entries.empty() && out.entries.back().index >= index) out.entries.pop_back();
      if (out.entries.empty() && index < out.first) out.first = index;
    } else {
      return make_error(Errc::corruption, fmt::format("raft log: record {} has unknown kind {}", pos, kind));
    }
    ++pos;
  }
  if (out.snapshot && out.entries.empty()) out.first = out.snapshot->index + 1;
  return out;
}

node::Bytes encode_meta(const Meta& m) {
  Writer w;
  w.u8(2);
  w.var(m.seq);
  w.var(m.term);
  w.var(m.vote);
  const std::uint32_t crc = crc32c::value(w.out().data(), w.out().size());
  for (int i = 0; i < 4; ++i) w.u8(static_cast<std::uint8_t>(crc >> (8 * i)));
  return w.take();
}

Status decode_meta(std::span<const std::uint8_t> in, Meta& out) {
  if (in.size() < 5) return make_error(Errc::corruption, "raft term/vote record: too short");
  const auto body = in.first(in.size() - 4);
  std::uint32_t crc = 0;
  for (int i = 0; i < 4; ++i) crc |= static_cast<std::uint32_t>(in[in.size() - 4 + i]) << (8 * i);
  if (crc32c::value(body.data(), body.size()) != crc)
    return make_error(Errc::corruption, "raft term/vote record: bad checksum");
  Reader r(body);
  if (r.u8() != 2) r.fail("unknown version");
  out.seq = r.var();
  out.term = r.var();
  out.vote = r.var();
  return reader_status(r, "raft term/vote record");
}

// ---------------------------------------------------------------- libraft structures

int to_raft_configuration(const std::vector<Server>& servers, raft_configuration* out) {
  raft_configuration_init(out);
  for (const auto& s : servers) {
    const int rv = raft_configuration_add(out, s.id, s.address.c_str(), s.role);
    if (rv != 0) {
      raft_configuration_close(out);
      raft_configuration_init(out);
      return rv;
    }
  }
  return 0;
}

std::vector<Server> from_raft_configuration(const raft_configuration& c) {
  std::vector<Server> out;
  out.reserve(c.n);
  for (unsigned i = 0; i < c.n; ++i) {
    out.push_back(Server{c.servers[i].id, c.servers[i].address ? c.servers[i].address : "", c.servers[i].role});
  }
  return out;
}

int to_raft_entries(const std::vector<StoredEntry>& in, raft_entry** out, std::size_t* n) {
  *out = nullptr;
  *n = 0;
  if (in.empty()) return 0;
  std::size_t total = 0;
  for (const auto& e : in) total += e.data.size();
  auto* entries = static_cast<raft_entry*>(raft_calloc(in.size(), sizeof(raft_entry)));
  auto* batch = static_cast<std::uint8_t*>(raft_malloc(total == 0 ? 1 : total));
  if (entries == nullptr || batch == nullptr) {
    raft_free(entries);
    raft_free(batch);
    return RAFT_NOMEM;
  }
  std::size_t off = 0;
  for (std::size_t i = 0; i < in.size(); ++i) {
    entries[i].term = in[i].term;
    entries[i].type = in[i].type;
    entries[i].buf.base = batch + off;
    entries[i].buf.len = in[i].data.size();
    entries[i].batch = batch;
    if (!in[i].data.empty()) std::memcpy(batch + off, in[i].data.data(), in[i].data.size());
    off += in[i].data.size();
  }
  *out = entries;
  *n = in.size();
  return 0;
}

raft_snapshot* to_raft_snapshot(const StoredSnapshot& s) {
  auto* snap = static_cast<raft_snapshot*>(raft_calloc(1, sizeof(raft_snapshot)));
  if (snap == nullptr) return nullptr;
  snap->index = s.index;
  snap->term = s.term;
  snap->configuration_index = s.conf_index;
  snap->bufs = static_cast<raft_buffer*>(raft_calloc(1, sizeof(raft_buffer)));
  void* data = raft_malloc(s.data.empty() ? 1 : s.data.size());
  if (snap->bufs == nullptr || data == nullptr || to_raft_configuration(s.conf, &snap->configuration) != 0) {
    raft_free(data);
    raft_free(snap->bufs);
    raft_free(snap);
    return nullptr;
  }
  if (!s.data.empty()) std::memcpy(data, s.data.data(), s.data.size());
  snap->bufs[0].base = data;
  snap->bufs[0].len = s.data.size();
  snap->n_bufs = 1;
  return snap;
}

// ---------------------------------------------------------------- wire

Result<node::Bytes> encode_message(const raft_message& m, std::size_t max_bytes, bool* cut) {
  *cut = false;
  Writer w;
  w.u8(kWireVersion);
  w.u8(static_cast<std::uint8_t>(m.type));
  switch (m.type) {
    case RAFT_IO_REQUEST_VOTE: {
      const auto& a = m.request_vote;
      w.var(a.term);
      w.var(a.candidate_id);
      w.var(a.last_log_index);
      w.var(a.last_log_term);
      w.b(a.disrupt_leader);
      w.b(a.pre_vote);
      break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
      const auto& a = m.request_vote_result;
      w.var(a.term);
      w.b(a.vote_granted);
      w.u8(static_cast<std::uint8_t>(a.pre_vote));
      break;
    }
    case RAFT_IO_APPEND_ENTRIES: {
      const auto& a = m.append_entries;
      w.var(a.term);
      w.var(a.prev_log_index);
      w.var(a.prev_log_term);
      w.var(a.leader_commit);
      // Count the entries that fit: header so far + count varint (≤ 10 bytes) + each entry.
      std::size_t size = w.out().size() + 10, n = 0;
      for (unsigned i = 0; i < a.n_entries; ++i) {
        const std::size_t e = 10 + 1 + 10 + a.entries[i].buf.len;
        if (n > 0 && size + e > max_bytes) break;
        size += e;
        ++n;
      }
      if (n < a.n_entries) *cut = true;
      w.var(n);
      for (std::size_t i = 0; i < n; ++i) {
        w.var(a.entries[i].term);
        w.u8(static_cast<std::uint8_t>(a.entries[i].type));
        put_entry_data(w, a.entries[i]);
      }
      break;
    }
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
      const auto& a = m.append_entries_result;
      w.var(a.term);
      w.var(a.rejected);
      w.var(a.last_log_index);
      break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT: {
      const auto& a = m.install_snapshot;
      w.var(a.term);
      w.var(a.last_index);
      w.var(a.last_term);
      put_raft_conf(w, a.conf);
      w.var(a.conf_index);
      w.bytes({static_cast<const std::uint8_t*>(a.data.base), a.data.len});
      break;
    }
    case RAFT_IO_TIMEOUT_NOW: {
      const auto& a = m.timeout_now;
      w.var(a.term);
      w.var(a.last_log_index);
      w.var(a.last_log_term);
      break;
    }
    default:
      return make_error(Errc::invalid_argument, fmt::format("raft message type {} unknown", m.type));
  }
  if (w.out().size() > max_bytes) {
    return make_error(Errc::backpressure, fmt::format("raft message type {} is {} bytes, over the limit {}", m.type,
                                                      w.out().size(), max_bytes));
  }
  return w.take();
}

void free_message(raft_message& m) {
  if (m.type == RAFT_IO_APPEND_ENTRIES && m.append_entries.entries != nullptr) {
    raft_free(m.append_entries.entries[0].batch);
    raft_free(m.append_entries.entries);
    m.append_entries.entries = nullptr;
    m.append_entries.n_entries = 0;
  } else if (m.type == RAFT_IO_INSTALL_SNAPSHOT) {
    raft_configuration_close(&m.install_snapshot.conf);
    raft_configuration_init(&m.install_snapshot.conf);
    raft_free(m.install_snapshot.data.base);
    m.install_snapshot.data.base = nullptr;
  }
}

namespace {

Status decode_append_entries(Reader& r, raft_append_entries& a) {
  a.term = r.var();
  a.prev_log_index = r.var();
  a.prev_log_term = r.var();
  a.leader_commit = r.var();
  std::vector<StoredEntry> entries(r.count(kMaxEntries));
  for (auto& e : entries) {
    e.term = r.var();
    e.type = r.u8();
    if (e.type < RAFT_COMMAND || e.type > RAFT_CHANGE) r.fail("bad entry type");
    e.data = r.bytes(kMaxData);
    if (!r.ok()) break;
  }
  HS_TRY(reader_status(r, "raft AppendEntries"));
  std::size_t n = 0;
  if (to_raft_entries(entries, &a.entries, &n) != 0) return make_error(Errc::backpressure, "raft: out of memory");
  a.n_entries = static_cast<unsigned>(n);
  return ok_status();
}

Status decode_install_snapshot(Reader& r, raft_install_snapshot& a) {
  a.term = r.var();
  a.last_index = r.var();
  a.last_term = r.var();
  const auto conf = get_conf(r);
  a.conf_index = r.var();
  const auto data = r.bytes(kMaxData);
  HS_TRY(reader_status(r, "raft InstallSnapshot"));
  if (to_raft_configuration(conf, &a.conf) != 0) return make_error(Errc::backpressure, "raft: out of memory");
  a.data.base = raft_malloc(data.empty() ? 1 : data.size());
  if (a.data.base == nullptr) {
    raft_configuration_close(&a.conf);
    return make_error(Errc::backpressure, "raft: out of memory");
  }
  if (!data.empty()) std::memcpy(a.data.base, data.data(), data.size());
  a.data.len = data.size();
  return ok_status();
}

}  // namespace

Status decode_message(std::span<const std::uint8_t> in, raft_message& out) {
  std::memset(&out, 0, sizeof out);
  Reader r(in);
  if (r.u8() != kWireVersion) return make_error(Errc::protocol_error, "raft message: unknown version");
  out.type = r.u8();
  switch (out.type) {
    case RAFT_IO_REQUEST_VOTE: {
      auto& a = out.request_vote;
      a.term = r.var();
      a.candidate_id = r.var();
      a.last_log_index = r.var();
      a.last_log_term = r.var();
      a.disrupt_leader = r.b();
      a.pre_vote = r.b();
      break;
    }
    case RAFT_IO_REQUEST_VOTE_RESULT: {
      auto& a = out.request_vote_result;
      a.term = r.var();
      a.vote_granted = r.b();
      const std::uint8_t pv = r.u8();
      if (pv > raft_tribool_false) r.fail("bad pre_vote");
      a.pre_vote = static_cast<raft_tribool>(pv);
      break;
    }
    case RAFT_IO_APPEND_ENTRIES:
      return decode_append_entries(r, out.append_entries);
    case RAFT_IO_APPEND_ENTRIES_RESULT: {
      auto& a = out.append_entries_result;
      a.term = r.var();
      a.rejected = r.var();
      a.last_log_index = r.var();
      break;
    }
    case RAFT_IO_INSTALL_SNAPSHOT:
      return decode_install_snapshot(r, out.install_snapshot);
    case RAFT_IO_TIMEOUT_NOW: {
      auto& a = out.timeout_now;
      a.term = r.var();
      a.last_log_index = r.var();
      a.last_log_term = r.var();
      break;
    }
    default:
      return make_error(Errc::protocol_error, fmt::format("raft message: unknown type {}", out.type));
  }
  return reader_status(r, "raft message");
}

// -------------------------------------------------------------------- fragments

bool is_fragment(std::span<const std::uint8_t> in) {
  return in.size() >= 2 && in[0] == kWireVersion && in[1] == kFragment;
}

std::vector<node::Bytes> fragment(std::span<const std::uint8_t> whole, std::uint64_t id, std::size_t max_bytes) {
  constexpr std::size_t kHeader = 2 + 5 * 10;  // version, type, id, index, count, total, the chunk's length
  HS_ASSERT(max_bytes > kHeader, "raft: fragment size {} leaves no room after the header", max_bytes);
  const std::size_t step = max_bytes - kHeader;
  const std::size_t count = (whole.size() + step - 1) / step;
  std::vector<node::Bytes> out;
  out.reserve(count);
  for (std::size_t i = 0; i < count; ++i) {
    Writer w;
    w.u8(kWireVersion);
    w.u8(kFragment);
    w.var(id);
    w.var(i);
    w.var(count);
    w.var(whole.size());
    w.bytes(whole.subspan(i * step, std::min(step, whole.size() - i * step)));
    out.push_back(std::move(w.out()));
  }
  return out;
}

Status decode_fragment(std::span<const std::uint8_t> in, Fragment& out) {
  Reader r(in);
  if (r.u8() != kWireVersion || r.u8() != kFragment) return make_error(Errc::protocol_error, "raft fragment: not one");
  out.id = r.var();
  const std::uint64_t index = r.var(), count = r.var();
  out.total = r.var();
  out.chunk = r.bytes(kMaxData);
  HS_TRY(reader_status(r, "raft fragment"));
  if (count == 0 || count > kMaxFragments || index >= count)
    return make_error(Errc::protocol_error,
                      fmt::format("raft fragment: index {} of {} (at most {})", index, count, kMaxFragments));
  if (out.chunk.empty() || out.chunk.size() > out.total)
    return make_error(Errc::protocol_error,
                      fmt::format("raft fragment: chunk of {} bytes in a message of {}", out.chunk.size(), out.total));
  out.index = static_cast<std::uint32_t>(index);
  out.count = static_cast<std::uint32_t>(count);
  return ok_status();
}

bool Reassembly::recent(std::uint64_t from, std::uint64_t id) const {
  return std::find(recent_.begin(), recent_.end(), std::make_pair(from, id)) != recent_.end();
}

void Reassembly::retire() {
  if (recent_.size() < kRecent)
    recent_.emplace_back(from_, id_);
  else
    recent_[recent_next_++ % kRecent] = {from_, id_};
  chunks_.clear();
  chunks_.shrink_to_fit();
  held_ = 0;
  have_ = 0;
}

Reassembly::Outcome Reassembly::add(std::uint64_t from, Fragment f, std::size_t max_total, node::Bytes* whole,
                                    std::string* why) {
  if (recent(from, f.id)) return Outcome::stale;
  const bool current = !chunks_.empty() && from == from_ && f.id == id_;
  if (!current) {
    if (f.total > max_total) {
      *why = fmt::format("message of {} bytes over the reassembly limit of {}", f.total, max_total);
      return Outcome::refused;
    }
    if (!chunks_.empty()) {
      ++replaced_;
      retire();
    }
    from_ = from;
    id_ = f.id;
    total_ = f.total;
    chunks_.resize(f.count);
  }
  if (f.count != chunks_.size() || f.total != total_) {
    *why = fmt::format("fragment {} says {} fragments of {} bytes; the message has {} of {}", f.index, f.count, f.total,
                       chunks_.size(), total_);
    return Outcome::refused;
  }
  if (!chunks_[f.index].empty()) return Outcome::duplicate;
  if (held_ + f.chunk.size() > total_) {
    *why = fmt::format("fragments hold more than the message's {} bytes", total_);
    retire();
    return Outcome::refused;
  }
  held_ += f.chunk.size();
  chunks_[f.index] = std::move(f.chunk);
  if (++have_ < chunks_.size()) return Outcome::partial;
  if (held_ != total_) {
    *why = fmt::format("fragments hold {} bytes; the message has {}", held_, total_);
    retire();
    return Outcome::refused;
  }
  whole->clear();
  whole->reserve(total_);
  for (const auto& c : chunks_) whole->insert(whole->end(), c.begin(), c.end());
  retire();
  return Outcome::complete;
}

}  // namespace hs::cluster::raftc
