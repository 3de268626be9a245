#include "hyperscale/host/wal_disk.hpp"

#include <algorithm>
#include <cstring>
#include <filesystem>
#include <optional>
#include <system_error>

#include "hyperscale/base/log.hpp"

namespace hs::host {

namespace {

// Record types of the disk's WAL. Payloads (little-endian):
//   put:        u32 key_len | key | value          erase:        key
//   append:     u32 log_len | log | record         truncate_log: log
//   snap_begin: (empty)     snap_end: u64 records in the snapshot     snap_abort: (empty)
//   replace_begin: log      replace_rec: u32 log_len | log | record   replace_end: u64 records
//   replace_abort: (empty)
// A replace_log is one contiguous run replace_begin, replace_rec x N, replace_end: replay applies it
// only at its replace_end, so a crash in the middle leaves the old log (open closes the run with
// replace_abort, as it does an unfinished snapshot).
enum RecType : std::uint32_t {
  kPut = 1,
  kErase = 2,
  kAppend = 3,
  kTruncateLog = 4,
  kSnapBegin = 5,
  kSnapEnd = 6,
  kSnapAbort = 7,
  kReplaceBegin = 8,
  kReplaceRec = 9,
  kReplaceEnd = 10,
  kReplaceAbort = 11,
};

constexpr std::size_t kLenSize = 4;

// Size of an entry as counted against Limits::max_bytes: its encoded WAL record, so the bound
// also bounds a snapshot's size.
std::size_t entry_bytes(std::size_t name_len, std::size_t value_len) {
  return wal::kRecordHeaderSize + kLenSize + name_len + value_len;
}

void put_u32(std::vector<std::uint8_t>& out, std::uint32_t v) {
  for (int i = 0; i < 4; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
void put_u64(std::vector<std::uint8_t>& out, std::uint64_t v) {
  for (int i = 0; i < 8; ++i) out.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
}
std::uint32_t get_u32(const std::uint8_t* p) {
  std::uint32_t v = 0;
  for (int i = 3; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}
std::uint64_t get_u64(const std::uint8_t* p) {
  std::uint64_t v = 0;
  for (int i = 7; i >= 0; --i) v = (v << 8) | p[i];
  return v;
}

void encode_named(std::vector<std::uint8_t>& out, std::string_view name, std::span<const std::uint8_t> data) {
  out.clear();
  put_u32(out, static_cast<std::uint32_t>(name.size()));
  out.insert(out.end(), name.begin(), name.end());
  out.insert(out.end(), data.begin(), data.end());
}

// Splits a named payload; false if malformed.
bool decode_named(std::span<const std::uint8_t> p, std::string& name, std::span<const std::uint8_t>& data) {
  if (p.size() < kLenSize) return false;
  const std::uint32_t n = get_u32(p.data());
  if (n > p.size() - kLenSize) return false;
  name.assign(reinterpret_cast<const char*>(p.data() + kLenSize), n);
  data = p.subspan(kLenSize + n);
  return true;
}

}  // namespace

WalDisk::WalDisk(runtime::Reactor& reactor, WalDiskOptions o)
    : reactor_(reactor),
      opts_(std::move(o)),
      alive_(std::make_shared<WalDisk*>(this)),
      writes_(reactor.metrics().counter("hs_host_disk_writes_total", "Disk writes accepted (WAL records)")),
      refused_bounds_(reactor.metrics().counter("hs_host_disk_refused_total", "Disk writes refused, by reason",
                                                {{"reason", "bounds"}})),
      refused_unavailable_(reactor.metrics().counter("hs_host_disk_refused_total", "Disk writes refused, by reason",
                                                     {{"reason", "unavailable"}})),
      refused_too_large_(reactor.metrics().counter("hs_host_disk_refused_total", "Disk writes refused, by reason",
                                                   {{"reason", "too_large"}})),
      errors_(reactor.metrics().counter("hs_host_disk_errors_total", "Disk I/O failures by reason (wal_io: fail-stop)",
                                        {{"reason", "wal_io"}})),
      compactions_ctr_(reactor.metrics().counter("hs_host_disk_compactions_total", "Disk snapshots written")),
      live_bytes_(reactor.metrics().gauge("hs_host_disk_live_bytes", "Bytes of live disk state (encoded)")),
      healthy_(reactor.metrics().gauge("hs_host_disk_healthy", "1 while the disk is usable, 0 after fail-stop")) {}

WalDisk::~WalDisk() {
  *alive_ = nullptr;
  if (wal_ && wal_->busy())
    log::warn("host", "disk_closed_busy", "dir={} note=writes in flight complete without waiters",
              log::quoted(opts_.dir));
}

Result<std::unique_ptr<WalDisk>> WalDisk::open(runtime::Reactor& reactor, WalDiskOptions o) {
  if (o.dir.empty()) return make_error(Errc::invalid_argument, "disk: data dir is empty");
  if (o.compact_ratio < 1.0)
    return make_error(Errc::invalid_argument, fmt::format("disk: compact_ratio {} must be >= 1", o.compact_ratio));
  if (o.segment_bytes < 4096)
    return make_error(Errc::invalid_argument, fmt::format("disk: segment_bytes {} must be >= 4096", o.segment_bytes));
  std::error_code ec;
  std::filesystem::create_directories(o.dir, ec);
  if (ec) return make_error(Errc::io_error, fmt::format("disk: create data dir {}: {}", o.dir, ec.message()));

  std::unique_ptr<WalDisk> d(new WalDisk(reactor, std::move(o)));
  wal::WalOptions wo;
  wo.dir = d->opts_.dir;
  wo.durability = d->opts_.durability;
  wo.segment_bytes = d->opts_.segment_bytes;
  // A snapshot rewrites the whole live state at once; the queue must hold it next to normal writes.
  wo.max_queued_bytes = std::max<std::size_t>(wo.max_queued_bytes, 2 * d->opts_.limits.max_bytes + (16u << 20));

  // Replay: records outside a snapshot apply to `live`; a snapshot is built aside and replaces
  // `live` only at its SNAP_END. An unfinished snapshot at the end of the log is discarded.
  State live;
  std::optional<State> building;
  std::uint64_t building_count = 0;
  std::optional<PendingReplace> replacing;  // an open replace_begin .. replace_end run
  std::uint64_t since_records = 0, since_bytes = 0, replayed = 0;
  Status bad;
  auto corrupt = [&](const wal::RecordView& r, std::string_view what) {
    bad = make_error(Errc::corruption, fmt::format("disk {}: {} at lsn {}", d->opts_.dir, what, r.lsn));
  };
  auto visit = [&](const wal::RecordView& r) {
    if (!bad.ok()) return;
    ++replayed;
    if (replacing && r.type != kReplaceRec && r.type != kReplaceEnd && r.type != kReplaceAbort)
      return corrupt(r, fmt::format("record type {} inside a replace_log run", r.type));
    if (r.type >= kReplaceBegin && r.type <= kReplaceAbort) {
      ++since_records;  // a replace run is never part of a snapshot
      since_bytes += wal::encoded_size(r.payload.size());
    }
    switch (r.type) {
      case kReplaceBegin:
        if (building) return corrupt(r, "replace_log run inside a snapshot");
        replacing.emplace();
        replacing->log.assign(reinterpret_cast<const char*>(r.payload.data()), r.payload.size());
        return;
      case kReplaceRec: {
        std::string name;
        std::span<const std::uint8_t> data;
        if (!replacing) return corrupt(r, "replace_log record outside a run");
        if (!decode_named(r.payload, name, data) || name != replacing->log)
          return corrupt(r, "malformed replace_log record");
        replacing->records.emplace_back(data.begin(), data.end());
        return;
      }
      case kReplaceEnd:
        if (!replacing || r.payload.size() != 8 || get_u64(r.payload.data()) != replacing->records.size())
          return corrupt(r, "replace_log end does not match its begin");
        replace(live, replacing->log, std::move(replacing->records));
        replacing.reset();
        return;
      case kReplaceAbort:
        replacing.reset();
        return;
      case kSnapBegin:
        building.emplace();
        building_count = 0;
        return;
      case kSnapEnd: {
        if (!building || r.payload.size() != 8 || get_u64(r.payload.data()) != building_count) {
          bad = make_error(Errc::corruption,
                           fmt::format("disk {}: snapshot end at lsn {} does not match its begin ({} records seen)",
                                       d->opts_.dir, r.lsn, building_count));
          return;
        }
        live = std::move(*building);
        building.reset();
        since_records = since_bytes = 0;
        return;
      }
      case kSnapAbort:
        building.reset();
        return;
      case kPut:
      case kErase:
      case kAppend:
      case kTruncateLog:
        if (r.type == kPut || r.type == kAppend) {
          std::string name;
          std::span<const std::uint8_t> data;
          if (!decode_named(r.payload, name, data)) {
            bad = make_error(Errc::corruption,
                             fmt::format("disk {}: malformed record type {} at lsn {}", d->opts_.dir, r.type, r.lsn));
            return;
          }
        }
        if (building) {
          apply(*building, r.type, r.payload);
          ++building_count;
        } else {
          apply(live, r.type, r.payload);
          ++since_records;
          since_bytes += wal::encoded_size(r.payload.size());
        }
        return;
      default:
        bad = make_error(Errc::corruption,
                         fmt::format("disk {}: unknown record type {} at lsn {}", d->opts_.dir, r.type, r.lsn));
    }
  };
  std::unique_ptr<wal::WalIo> io = d->opts_.io_factory ? d->opts_.io_factory(reactor) : nullptr;
  auto w = wal::Wal::open(reactor, wo, visit, std::move(io));
  if (!w.ok()) return w.status().with_context("disk open");
  if (!bad.ok()) {
    log::error("host", "disk_open_failed", "dir={} error={}", log::quoted(d->opts_.dir), log::quoted(bad.to_string()));
    return bad;
  }
  d->wal_ = std::move(w).value();
  d->max_payload_ = wo.max_payload;
  d->max_queued_bytes_ = wo.max_queued_bytes;
  d->state_ = std::move(live);
  d->records_since_snapshot_ = since_records;
  d->bytes_since_snapshot_ = since_bytes;
  d->replayed_ = replayed;
  d->last_lsn_ = d->wal_->next_lsn() - 1;
  d->durable_through_ = d->last_lsn_;
  d->healthy_.set(1);
  d->live_bytes_.set(static_cast<double>(d->state_.bytes));
  if (building) {
    // A crash in the middle of a snapshot: mark it abandoned so later records are not read as part of it.
    log::warn("host", "disk_snapshot_unfinished", "dir={} records={} action=abort_record", log::quoted(d->opts_.dir),
              building_count);
    HS_TRY(d->write(kSnapAbort, {}));
  }
  if (replacing) {
    // A crash in the middle of a replace_log: the old log stands; close the run.
    log::warn("host", "disk_replace_unfinished", "dir={} log={} records={} action=abort_record",
              log::quoted(d->opts_.dir), log::quoted(replacing->log), replacing->records.size());
    HS_TRY(d->write(kReplaceAbort, {}));
  }
  log::info("host", "disk_open", "dir={} records={} keys={} logs={} live_bytes={} durability={}",
            log::quoted(d->opts_.dir), replayed, d->state_.kv.size(), d->state_.logs.size(), d->state_.bytes,
            wal::durability_name(d->opts_.durability));
  return d;
}

void WalDisk::apply(State& s, std::uint32_t type, std::span<const std::uint8_t> payload) {
  std::string name;
  std::span<const std::uint8_t> data;
  switch (type) {
    case kPut: {
      if (!decode_named(payload, name, data)) return;
      auto it = s.kv.find(name);
      if (it != s.kv.end()) s.bytes -= entry_bytes(name.size(), it->second.size());
      s.bytes += entry_bytes(name.size(), data.size());
      s.kv[name] = node::Bytes(data.begin(), data.end());
      return;
    }
    case kErase: {
      name.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
      auto it = s.kv.find(name);
      if (it == s.kv.end()) return;  // replay of a partial history before a snapshot
      s.bytes -= entry_bytes(name.size(), it->second.size());
      s.kv.erase(it);
      return;
    }
    case kAppend: {
      if (!decode_named(payload, name, data)) return;
      s.bytes += entry_bytes(name.size(), data.size());
      s.logs[name].emplace_back(data.begin(), data.end());
      return;
    }
    case kTruncateLog: {
      name.assign(reinterpret_cast<const char*>(payload.data()), payload.size());
      auto it = s.logs.find(name);
      if (it == s.logs.end()) return;
      for (auto& r : it->second) s.bytes -= entry_bytes(name.size(), r.size());
      s.logs.erase(it);
      return;
    }
    default:
      return;
  }
}

void WalDisk::replace(State& s, const std::string& log, std::vector<node::Bytes> records) {
  auto it = s.logs.find(log);
  if (it != s.logs.end()) {
    for (auto& r : it->second) s.bytes -= entry_bytes(log.size(), r.size());
    s.logs.erase(it);
  }
  if (records.empty()) return;
  for (auto& r : records) s.bytes += entry_bytes(log.size(), r.size());
  s.logs[log] = std::move(records);
}

Status WalDisk::check_usable() {
  if (!health_.ok()) {
    refused_unavailable_.inc();
    return make_error(Errc::unavailable, fmt::format("disk {} has failed: {}", opts_.dir, health_.to_string()));
  }
  return ok_status();
}

Status WalDisk::write(std::uint32_t type, const std::vector<std::uint8_t>& payload) {
  const wal::Lsn expect = wal_->next_lsn();
  std::weak_ptr<WalDisk*> weak = alive_;
  auto lsn = wal_->append(type, payload, [weak, expect](Status st) {
    if (auto p = weak.lock(); p && *p) (*p)->on_durable(expect, st);
  });
  if (!lsn.ok()) {
    const Status& st = lsn.status();
    if (st.code() == Errc::backpressure) {
      reactor_.metrics()
          .counter("hs_host_disk_refused_total", "Disk writes refused, by reason", {{"reason", "wal_backpressure"}})
          .inc();
      log::warn("host", "disk_write_refused", "dir={} reason=wal_backpressure queued_bytes={}", log::quoted(opts_.dir),
                wal_->queued_bytes());
      return st.with_context("disk");
    }
    if (st.code() == Errc::invalid_argument) {
      refused_too_large_.inc();
      log::warn("host", "disk_write_refused", "dir={} reason=too_large bytes={} error={}", log::quoted(opts_.dir),
                payload.size(), log::quoted(st.to_string()));
      return st.with_context("disk");
    }
    fail(st, "append");
    return make_error(Errc::unavailable, st.with_context("disk").to_string());
  }
  last_lsn_ = *lsn;
  writes_.inc();
  ++records_since_snapshot_;
  bytes_since_snapshot_ += wal::encoded_size(payload.size());
  return ok_status();
}

void WalDisk::on_durable(wal::Lsn lsn, const Status& st) {
  if (!st.ok()) {
    fail(st, "wal_io");
    return;
  }
  if (lsn > durable_through_) durable_through_ = lsn;
  while (!waiters_.empty() && waiters_.front().lsn <= durable_through_ && health_.ok()) {
    auto fn = std::move(waiters_.front().fn);
    waiters_.pop_front();
    fn();
  }
}

void WalDisk::fail(const Status& st, std::string_view reason) {
  if (!health_.ok()) return;
  health_ = st.ok() ? make_error(Errc::internal, "disk failed") : st;
  errors_.inc();
  healthy_.set(0);
  log::error("host", "disk_failed", "dir={} reason={} error={} pending_syncs={} note=fail-stop", log::quoted(opts_.dir),
             reason, log::quoted(health_.to_string()), waiters_.size());
  waiters_.clear();  // nothing waiting on durability is acknowledged
  if (on_failure_) on_failure_(health_);
}

Status WalDisk::put(const std::string& key, std::span<const std::uint8_t> value) {
  HS_TRY(check_usable());
  auto it = state_.kv.find(key);
  const std::size_t old = it == state_.kv.end() ? 0 : entry_bytes(key.size(), it->second.size());
  const std::size_t add = entry_bytes(key.size(), value.size());
  if (it == state_.kv.end() && state_.kv.size() >= opts_.limits.max_keys) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: key limit {} reached", opts_.limits.max_keys));
  }
  if (state_.bytes - old + add > opts_.limits.max_bytes) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", opts_.limits.max_bytes));
  }
  encode_named(scratch_, key, value);
  HS_TRY(write(kPut, scratch_));
  apply(state_, kPut, scratch_);
  live_bytes_.set(static_cast<double>(state_.bytes));
  maybe_compact();
  return ok_status();
}

std::optional<node::Bytes> WalDisk::get(const std::string& key) const {
  auto it = state_.kv.find(key);
  if (it == state_.kv.end()) return std::nullopt;
  return it->second;
}

Status WalDisk::erase(const std::string& key) {
  HS_TRY(check_usable());
  if (state_.kv.find(key) == state_.kv.end()) return make_error(Errc::not_found, "disk: no key " + key);
  scratch_.assign(key.begin(), key.end());
  HS_TRY(write(kErase, scratch_));
  apply(state_, kErase, scratch_);
  live_bytes_.set(static_cast<double>(state_.bytes));
  maybe_compact();
  return ok_status();
}

Status WalDisk::append(const std::string& log, std::span<const std::uint8_t> record) {
  HS_TRY(check_usable());
  if (state_.logs.find(log) == state_.logs.end() && state_.logs.size() >= opts_.limits.max_logs) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: log limit {} reached", opts_.limits.max_logs));
  }
  if (state_.bytes + entry_bytes(log.size(), record.size()) > opts_.limits.max_bytes) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", opts_.limits.max_bytes));
  }
  encode_named(scratch_, log, record);
  HS_TRY(write(kAppend, scratch_));
  apply(state_, kAppend, scratch_);
  live_bytes_.set(static_cast<double>(state_.bytes));
  maybe_compact();
  return ok_status();
}

std::vector<node::Bytes> WalDisk::read_log(const std::string& log) const {
  auto it = state_.logs.find(log);
  return it == state_.logs.end() ? std::vector<node::Bytes>{} : it->second;
}

Status WalDisk::truncate_log(const std::string& log) {
  HS_TRY(check_usable());
  if (state_.logs.find(log) == state_.logs.end()) return make_error(Errc::not_found, "disk: no log " + log);
  scratch_.assign(log.begin(), log.end());
  HS_TRY(write(kTruncateLog, scratch_));
  apply(state_, kTruncateLog, scratch_);
  live_bytes_.set(static_cast<double>(state_.bytes));
  maybe_compact();
  return ok_status();
}

Status WalDisk::replace_log(const std::string& log, std::span<const node::Bytes> records) {
  HS_TRY(check_usable());
  auto it = state_.logs.find(log);
  if (it == state_.logs.end() && records.empty()) return ok_status();
  std::size_t old = 0, add = 0, wal_bytes = 0;
  if (it != state_.logs.end())
    for (const auto& r : it->second) old += entry_bytes(log.size(), r.size());
  for (const auto& r : records) {
    if (kLenSize + log.size() + r.size() > max_payload_) {
      refused_too_large_.inc();
      return make_error(Errc::invalid_argument, fmt::format("disk: replace_log {}: a record of {} bytes exceeds {}",
                                                            log, r.size(), max_payload_));
    }
    add += entry_bytes(log.size(), r.size());
    wal_bytes += wal::encoded_size(kLenSize + log.size() + r.size());
  }
  if (it == state_.logs.end() && state_.logs.size() >= opts_.limits.max_logs) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: log limit {} reached", opts_.limits.max_logs));
  }
  if (state_.bytes - old + add > opts_.limits.max_bytes) {
    refused_bounds_.inc();
    return make_error(Errc::backpressure, fmt::format("disk: byte limit {} reached", opts_.limits.max_bytes));
  }
  // The whole run must fit in the WAL's queue now: a refusal in the middle could not be undone.
  wal_bytes += wal::encoded_size(log.size()) + wal::encoded_size(8);
  if (wal_->queued_bytes() + wal_bytes > max_queued_bytes_) {
    reactor_.metrics()
        .counter("hs_host_disk_refused_total", "Disk writes refused, by reason", {{"reason", "wal_backpressure"}})
        .inc();
    log::warn("host", "disk_write_refused",
              "dir={} reason=wal_backpressure op=replace_log log={} bytes={} queued_bytes={}", log::quoted(opts_.dir),
              log::quoted(log), wal_bytes, wal_->queued_bytes());
    return make_error(Errc::backpressure, fmt::format("disk: replace_log {} of {} bytes does not fit the WAL queue "
                                                      "({} of {} bytes queued)",
                                                      log, wal_bytes, wal_->queued_bytes(), max_queued_bytes_));
  }
  scratch_.assign(log.begin(), log.end());
  HS_TRY(write(kReplaceBegin, scratch_));  // refused: nothing written, the old log stands
  // From here the run is contiguous (nothing else writes meanwhile). A write refused now leaves an
  // open run this process cannot close: fail-stop; the next open discards the run (old log).
  Status st;
  for (std::size_t i = 0; st.ok() && i < records.size(); ++i) {
    encode_named(scratch_, log, records[i]);
    st = write(kReplaceRec, scratch_);
  }
  if (st.ok()) {
    scratch_.clear();
    put_u64(scratch_, records.size());
    st = write(kReplaceEnd, scratch_);
  }
  if (!st.ok()) {
    fail(st, "replace_log");
    return make_error(Errc::unavailable, st.with_context("disk replace_log").to_string());
  }
  replace(state_, log, std::vector<node::Bytes>(records.begin(), records.end()));
  live_bytes_.set(static_cast<double>(state_.bytes));
  maybe_compact();
  return ok_status();
}

Status WalDisk::when_durable(SmallFn<void()> fn) {
  HS_TRY(check_usable());
  if (last_lsn_ <= durable_through_) {
    // Nothing pending: run on the next loop iteration (never re-entrantly).
    std::weak_ptr<WalDisk*> weak = alive_;
    return reactor_.defer([weak, fn = std::move(fn)]() mutable {
      if (auto p = weak.lock(); p && *p && (*p)->health_.ok()) fn();
    });
  }
  waiters_.push_back(Waiter{last_lsn_, std::move(fn)});
  return ok_status();
}

void WalDisk::maybe_compact() {
  if (compacting_ || !health_.ok()) return;
  const double threshold =
      std::max(static_cast<double>(opts_.compact_min_bytes), opts_.compact_ratio * static_cast<double>(state_.bytes));
  if (static_cast<double>(bytes_since_snapshot_) <= threshold) return;
  if (Status st = compact(); !st.ok())
    log::warn("host", "disk_compaction_postponed", "dir={} error={}", log::quoted(opts_.dir),
              log::quoted(st.to_string()));
}

Status WalDisk::compact() {
  HS_TRY(check_usable());
  if (compacting_) return make_error(Errc::unavailable, "disk: a snapshot is already being written");
  // The snapshot must fit in the WAL's queue next to what is queued already; else try again later.
  const std::size_t need = state_.bytes + 2 * wal::kRecordHeaderSize + 8;
  const std::size_t room = std::max<std::size_t>(64u << 20, 2 * opts_.limits.max_bytes + (16u << 20));
  if (wal_->queued_bytes() + need > room)
    return make_error(Errc::backpressure, fmt::format("disk: WAL queue holds {} bytes; snapshot of {} bytes waits",
                                                      wal_->queued_bytes(), need));
  const wal::Lsn begin = wal_->next_lsn();
  std::uint64_t count = 0;
  // Appends from here to SNAP_END are one contiguous run of the WAL (nothing else runs meanwhile).
  auto snap_write = [&](std::uint32_t type, const std::vector<std::uint8_t>& p) -> Status {
    const std::uint64_t keep_records = records_since_snapshot_, keep_bytes = bytes_since_snapshot_;
    Status st = write(type, p);
    records_since_snapshot_ = keep_records;  // snapshot records do not count towards the next one
    bytes_since_snapshot_ = keep_bytes;
    return st;
  };
  Status st = snap_write(kSnapBegin, {});
  for (auto it = state_.kv.begin(); st.ok() && it != state_.kv.end(); ++it) {
    encode_named(scratch_, it->first, it->second);
    st = snap_write(kPut, scratch_);
    ++count;
  }
  for (auto it = state_.logs.begin(); st.ok() && it != state_.logs.end(); ++it) {
    for (const auto& rec : it->second) {
      encode_named(scratch_, it->first, rec);
      st = snap_write(kAppend, scratch_);
      ++count;
      if (!st.ok()) break;
    }
  }
  if (st.ok()) {
    std::vector<std::uint8_t> end;
    put_u64(end, count);
    st = snap_write(kSnapEnd, end);
  }
  if (!st.ok()) {
    // A half-written snapshot cannot be closed with an abort record either (the WAL refused a
    // write): stop rather than leave the log in a state this run cannot describe.
    fail(st, "compaction");
    return st;
  }
  compacting_ = true;
  snapshot_begin_ = begin;
  records_since_snapshot_ = 0;
  bytes_since_snapshot_ = 0;
  std::weak_ptr<WalDisk*> weak = alive_;
  waiters_.push_back(Waiter{last_lsn_, [weak, begin]() {
                              if (auto p = weak.lock(); p && *p) {
                                WalDisk& d = **p;
                                d.compacting_ = false;
                                ++d.compactions_;
                                d.compactions_ctr_.inc();
                                auto deleted = d.wal_->truncate_before(begin);
                                if (!deleted.ok()) {
                                  // Old segments stay on disk until the next snapshot retries; data is safe.
                                  d.reactor_.metrics()
                                      .counter("hs_host_disk_errors_total",
                                               "Disk I/O failures by reason (wal_io: fail-stop)",
                                               {{"reason", "checkpoint"}})
                                      .inc();
                                  log::error("host", "disk_checkpoint_failed", "dir={} error={}",
                                             log::quoted(d.opts_.dir), log::quoted(deleted.status().to_string()));
                                  return;
                                }
                                log::debug("host", "disk_compacted", "dir={} begin_lsn={} segments_deleted={}",
                                           log::quoted(d.opts_.dir), begin, *deleted);
                              }
                            }});
  return ok_status();
}

bool WalDisk::busy() const { return wal_ && wal_->busy(); }

WalDiskStats WalDisk::stats() const {
  WalDiskStats s;
  s.live_bytes = state_.bytes;
  s.keys = state_.kv.size();
  s.logs = state_.logs.size();
  s.records_since_snapshot = records_since_snapshot_;
  s.bytes_since_snapshot = bytes_since_snapshot_;
  s.compactions = compactions_;
  s.replayed_records = replayed_;
  s.segments = wal_ ? wal_->segment_count() : 0;
  s.pending_syncs = waiters_.size();
  return s;
}

}  // namespace hs::host
