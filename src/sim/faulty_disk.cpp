#include "hyperscale/sim/faulty_disk.hpp"

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"

namespace hs::sim {

namespace {
// A restore of an earlier state of the medium cannot hit its bounds (that state fitted); if it does,
// the journal and the medium disagree, which is a simulator bug worth a loud line.
void restore_failed(const Status& st, const char* op, const std::string& name) {
  if (st.ok()) return;
  log::error("sim_disk", "restore_failed", "op={} name={} error={}", op, log::quoted(name),
             log::quoted(st.to_string()));
}
}  // namespace

std::size_t FaultyDisk::Undo::saved_bytes() const noexcept {
  std::size_t n = name.size() + (old_value ? old_value->size() : 0);
  for (const auto& r : old_records) n += r.size();
  return n;
}

Status FaultyDisk::set_refuse_probability(double p) {
  if (!(p >= 0.0 && p <= 1.0))
    return make_error(Errc::invalid_argument, fmt::format("sim disk: refuse probability {} not in [0, 1]", p));
  refuse_p_ = p;
  return ok_status();
}

void FaultyDisk::set_full(bool full) noexcept {
  if (full)
    cap_ = base_.bytes();
  else
    cap_.reset();
}

void FaultyDisk::set_crash_loss(CrashLoss mode) {
  mode_ = mode;
  if (!journaling()) {
    journal_.clear();
    journal_bytes_ = 0;
    durable_ = seq_;
  }
}

Status FaultyDisk::check_refused(const char* op, const std::string& name) {
  bool refuse = false;
  if (refuse_next_ > 0) {
    --refuse_next_;
    refuse = true;
  } else if (refuse_p_ > 0.0) {
    refuse = rng_.chance(refuse_p_);
  }
  if (!refuse) return ok_status();
  counters_.refused++;
  log::debug("sim_disk", "write_refused", "op={} name={} reason=injected", op, log::quoted(name));
  return make_error(Errc::io_error, fmt::format("disk: {} {}: injected write error (EIO)", op, name));
}

Status FaultyDisk::check_space(const char* op, const std::string& name, std::size_t grows_by) {
  if (!cap_ || grows_by == 0 || base_.bytes() + grows_by <= *cap_) return ok_status();
  counters_.refused_full++;
  log::debug("sim_disk", "write_refused", "op={} name={} reason=full need={} used={} cap={}", op, log::quoted(name),
             grows_by, base_.bytes(), *cap_);
  return make_error(Errc::backpressure, fmt::format("disk: {} {}: disk full (ENOSPC)", op, name));
}

void FaultyDisk::record(Undo u) {
  counters_.writes++;
  u.seq = ++seq_;
  if (!journaling()) {
    durable_ = seq_;
    return;
  }
  journal_bytes_ += u.saved_bytes();
  journal_.push_back(std::move(u));
  while (!journal_.empty() &&
         (journal_.size() > limits_.max_unsynced_writes || journal_bytes_ > limits_.max_unsynced_bytes)) {
    journal_bytes_ -= journal_.front().saved_bytes();
    durable_ = journal_.front().seq;
    journal_.pop_front();
    counters_.journal_evicted++;
  }
}

Status FaultyDisk::put(const std::string& key, std::span<const std::uint8_t> value) {
  HS_TRY(check_refused("put", key));
  std::optional<Bytes> old;
  if (cap_ || journaling()) old = base_.get(key);
  const std::size_t before = old ? old->size() + key.size() : 0;
  const std::size_t after = value.size() + key.size();
  HS_TRY(check_space("put", key, after > before ? after - before : 0));
  HS_TRY(base_.put(key, value));
  record(Undo{Undo::kPut, 0, key, std::move(old), {}});
  return ok_status();
}

Status FaultyDisk::erase(const std::string& key) {
  HS_TRY(check_refused("erase", key));
  std::optional<Bytes> old;
  if (journaling()) old = base_.get(key);
  HS_TRY(base_.erase(key));
  record(Undo{Undo::kErase, 0, key, std::move(old), {}});
  return ok_status();
}

Status FaultyDisk::append(const std::string& log, std::span<const std::uint8_t> record_bytes) {
  HS_TRY(check_refused("append", log));
  HS_TRY(check_space("append", log, record_bytes.size()));
  HS_TRY(base_.append(log, record_bytes));
  record(Undo{Undo::kAppend, 0, log, std::nullopt, {}});
  return ok_status();
}

Status FaultyDisk::truncate_log(const std::string& log) {
  HS_TRY(check_refused("truncate_log", log));
  std::vector<Bytes> old;
  if (journaling()) old = base_.read_log(log);
  HS_TRY(base_.truncate_log(log));
  record(Undo{Undo::kTruncate, 0, log, std::nullopt, std::move(old)});
  return ok_status();
}

Status FaultyDisk::replace_log(const std::string& log, std::span<const Bytes> records) {
  HS_TRY(check_refused("replace_log", log));
  std::size_t after = 0, before = 0;
  for (const auto& r : records) after += r.size();
  std::vector<Bytes> old = base_.read_log(log);
  for (const auto& r : old) before += r.size();
  HS_TRY(check_space("replace_log", log, after > before ? after - before : 0));  // a compaction frees room
  HS_TRY(base_.replace_log(log, records));
  if (!journaling()) old.clear();
  record(Undo{Undo::kReplace, 0, log, std::nullopt, std::move(old)});
  return ok_status();
}

Status FaultyDisk::sync_end(std::uint64_t pos) {
  if (fail_syncs_ > 0) {
    --fail_syncs_;
    counters_.syncs_failed++;
    log::debug("sim_disk", "sync_failed", "pos={} durable={} reason=injected", pos, durable_);
    return make_error(Errc::io_error, fmt::format("disk: sync to write {}: injected fsync error (EIO)", pos));
  }
  counters_.syncs_ok++;
  if (pos > durable_) durable_ = pos;
  while (!journal_.empty() && journal_.front().seq <= durable_) {
    journal_bytes_ -= journal_.front().saved_bytes();
    journal_.pop_front();
  }
  return ok_status();
}

void FaultyDisk::drop_log_tail(const std::string& log) {
  std::vector<Bytes> recs = base_.read_log(log);
  if (recs.empty()) return;
  recs.pop_back();
  restore_failed(base_.truncate_log(log), "truncate_log", log);
  for (const auto& r : recs) restore_failed(base_.append(log, r), "append", log);
}

void FaultyDisk::undo(const Undo& u) {
  switch (u.kind) {
    case Undo::kPut:
    case Undo::kErase:
      if (u.old_value) {
        restore_failed(base_.put(u.name, *u.old_value), "put", u.name);
      } else if (base_.get(u.name)) {
        restore_failed(base_.erase(u.name), "erase", u.name);
      }
      break;
    case Undo::kAppend:
      drop_log_tail(u.name);
      break;
    case Undo::kTruncate:
      for (const auto& r : u.old_records) restore_failed(base_.append(u.name, r), "append", u.name);
      break;
    case Undo::kReplace:
      restore_failed(base_.replace_log(u.name, u.old_records), "replace_log", u.name);
      break;
  }
}

void FaultyDisk::tear(const Undo& u) {
  // The newest write's effect is what the medium holds now; replace it by a partial one.
  std::optional<Bytes> now;
  if (u.kind == Undo::kPut) now = base_.get(u.name);
  if (u.kind == Undo::kAppend) {
    auto recs = base_.read_log(u.name);
    if (!recs.empty()) now = recs.back();
  }
  if (!now || now->size() < 2) {  // erase, truncate_log, replace_log, or too short to be partial: undone
    undo(u);
    counters_.lost_at_crash++;
    return;
  }
  const std::size_t k = static_cast<std::size_t>(rng_.range(1, static_cast<std::int64_t>(now->size()) - 1));
  Bytes torn(now->begin(), now->begin() + static_cast<std::ptrdiff_t>(k));
  if (u.kind == Undo::kPut && u.old_value) {
    const Bytes& old = *u.old_value;
    for (std::size_t i = k; i < now->size() && i < old.size(); ++i) torn.push_back(old[i]);
  }
  undo(u);
  if (u.kind == Undo::kPut) {
    restore_failed(base_.put(u.name, torn), "put", u.name);
  } else {
    restore_failed(base_.append(u.name, torn), "append", u.name);
  }
  counters_.torn_at_crash++;
}

void FaultyDisk::track_durable(bool on) {
  track_ = on;
  if (!journaling()) set_crash_loss(mode_);
}

std::vector<Bytes> FaultyDisk::durable_log(const std::string& log) const {
  std::vector<Bytes> recs = base_.read_log(log);
  for (auto it = journal_.rbegin(); it != journal_.rend(); ++it) {
    if (it->name != log) continue;
    if (it->kind == Undo::kAppend && !recs.empty()) recs.pop_back();
    if (it->kind == Undo::kTruncate || it->kind == Undo::kReplace) recs = it->old_records;
  }
  return recs;
}

void FaultyDisk::crash() {
  const std::size_t n = journal_.size();
  std::size_t keep = n;
  if (mode_ == CrashLoss::kAll) keep = 0;
  if (mode_ == CrashLoss::kSuffix) keep = static_cast<std::size_t>(rng_.below(n + 1));
  if (mode_ == CrashLoss::kTornLast && n > 0) {
    tear(journal_.back());
    keep = n - 1;
    journal_.pop_back();
  }
  while (journal_.size() > keep) {
    undo(journal_.back());
    journal_.pop_back();
    counters_.lost_at_crash++;
  }
  if (n > 0) log::debug("sim_disk", "crash_applied", "mode={} unsynced={} kept={}", static_cast<int>(mode_), n, keep);
  journal_.clear();
  journal_bytes_ = 0;
  durable_ = seq_;
}

}  // namespace hs::sim
