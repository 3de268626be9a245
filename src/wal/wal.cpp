#include "hyperscale/wal/wal.hpp"

#include <fcntl.h>
#include <sys/stat.h>
#include <unistd.h>

#include <cerrno>
#include <deque>

#include <fmt/format.h>

#include "hyperscale/base/log.hpp"
#include "hyperscale/base/metrics.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/runtime/uring.hpp"

namespace hs::wal {

const char* durability_name(Durability d) noexcept { return d == Durability::fsync ? "fsync" : "none"; }

namespace {

class UringIo final : public WalIo {
 public:
  explicit UringIo(runtime::Reactor& r) : reactor_(r) {}
  Status write_and_sync(int fd, const std::uint8_t* buf, std::size_t len, std::uint64_t offset, bool sync,
                        IoDone write_done, IoDone sync_done) override {
    HS_ASSIGN_OR_RETURN(runtime::Uring * ring, reactor_.uring());
    const unsigned need = sync ? 2 : 1;
    if (!ring->has_space(need)) return make_error(Errc::backpressure, "io_uring has no free completion slot");
    // Both SQEs must go in the same submission so the link holds.
    if (io_uring_sq_space_left(ring->raw()) < need) HS_TRY(ring->submit());
    if (io_uring_sq_space_left(ring->raw()) < need)
      return make_error(Errc::backpressure, "io_uring submission queue full");
    io_uring_sqe* w = ring->prepare(std::move(write_done));
    if (w == nullptr) return make_error(Errc::internal, "io_uring prepare failed with space reported");
    io_uring_prep_write(w, fd, buf, static_cast<unsigned>(len), offset);
    if (!sync) return ok_status();
    w->flags |= IOSQE_IO_LINK;  // fdatasync only after the write succeeded in full
    io_uring_sqe* s = ring->prepare(std::move(sync_done));
    if (s == nullptr) return make_error(Errc::internal, "io_uring prepare failed with space reported");
    io_uring_prep_fsync(s, fd, IORING_FSYNC_DATASYNC);
    return ok_status();
  }

 private:
  runtime::Reactor& reactor_;
};

struct Waiter {
  Lsn lsn;
  AppendDone done;
};

struct Batch {
  std::vector<std::uint8_t> buf;
  std::vector<Waiter> waiters;
};

constexpr std::size_t kSpareBuffers = 2;

}  // namespace

std::unique_ptr<WalIo> make_uring_io(runtime::Reactor& reactor) { return std::make_unique<UringIo>(reactor); }

struct Wal::Impl : std::enable_shared_from_this<Wal::Impl> {
  Impl(runtime::Reactor& r, WalOptions o)
      : reactor(r),
        opt(std::move(o)),
        m_appends(r.metrics().counter("hs_wal_appends_total", "Records appended and acknowledged durable")),
        m_batches(r.metrics().counter("hs_wal_batches_total", "Group-commit batches written (one write + one sync)")),
        m_bytes(r.metrics().counter("hs_wal_bytes_total", "Bytes written to WAL segments")),
        m_backpressure(r.metrics().counter("hs_wal_backpressure_total", "Appends refused because the queue was full")),
        m_queued(r.metrics().gauge("hs_wal_queued_bytes", "Bytes queued or in flight in the WAL")),
        m_healthy(r.metrics().gauge("hs_wal_healthy", "1 while the WAL accepts appends, 0 once it failed")),
        m_commit(r.metrics().histogram("hs_wal_commit_seconds", "Time from batch submission to durable completion",
                                       metrics::default_latency_buckets())) {}

  ~Impl() {
    if (fd >= 0) ::close(fd);
    if (lock_fd >= 0) ::close(lock_fd);  // releases the directory lock
  }

  runtime::Reactor& reactor;
  std::uint64_t turn_end_hook = 0;  // removed from the reactor when the Wal is closed
  WalOptions opt;
  std::unique_ptr<WalIo> io;
  RecoveryReport recovery;
  std::vector<SegmentFile> segments;  // back() is the active one
  int fd = -1;
  int lock_fd = -1;
  std::uint64_t seg_size = 0;  // bytes durable (or written, mode none) in the active segment
  Lsn next_lsn = 1;
  Lsn durable_lsn = 1;
  std::deque<Batch> queue;  // not yet submitted
  bool in_flight = false;
  Batch flight;
  int flight_pending = 0;
  int flight_write_res = 0;
  int flight_sync_res = 0;
  Instant flight_started{0};
  std::size_t queued_bytes = 0;  // queue + flight
  Status failed;
  bool closed = false;
  bool backpressure_logged = false;
  std::vector<std::vector<std::uint8_t>> spare;

  metrics::Counter& m_appends;
  metrics::Counter& m_batches;
  metrics::Counter& m_bytes;
  metrics::Counter& m_backpressure;
  metrics::Gauge& m_queued;
  metrics::Gauge& m_healthy;
  metrics::Histogram& m_commit;

  bool sync() const { return opt.durability == Durability::fsync; }
  const std::string& active_path() const { return segments.back().path; }

  void count_error(const char* reason) {
    reactor.metrics()
        .counter("hs_wal_errors_total", "WAL I/O errors (each makes the log fail-stop)", {{"reason", reason}})
        .inc();
  }

  Batch new_batch() {
    Batch b;
    if (!spare.empty()) {
      b.buf = std::move(spare.back());
      spare.pop_back();
      b.buf.clear();
    }
    return b;
  }

  void recycle(std::vector<std::uint8_t>&& buf) {
    if (spare.size() < kSpareBuffers && buf.capacity() <= 2 * opt.max_batch_bytes) spare.push_back(std::move(buf));
  }

  // Runs every waiter's callback; one that throws is logged and counted and the others still run.
  void complete(std::vector<Waiter>& ws, const Status& st) {
    for (auto& w : ws) {
      if (!w.done) continue;
      try {
        w.done(st);
      } catch (const std::exception& e) {
        log::error("wal", "callback_error", "lsn={} error={}", w.lsn, log::quoted(e.what()));
        reactor.metrics()
            .counter("hs_task_errors_total", "Errors raised by background tasks and timers",
                     {{"task", "wal_append_callback"}})
            .inc();
      }
    }
  }

  // Fail-stop: remember the first error, log it once, count it, fail every queued append.
  // `first` (the batch in flight, if it failed) is completed before the queued ones, in LSN order.
  void fail(Status st, const char* reason, std::vector<Waiter>* first = nullptr) {
    if (!failed.ok()) return;
    failed = std::move(st);
    count_error(reason);
    m_healthy.set(0);
    std::size_t pending = 0;
    for (const auto& b : queue) pending += b.waiters.size();
    if (in_flight) pending += flight.waiters.size();
    log::error("wal", "failed", "dir={} reason={} error={} pending_appends={} note={}", log::quoted(opt.dir), reason,
               log::quoted(failed.to_string()), pending,
               log::quoted("the log is fail-stop: every pending and later append fails"));
    std::deque<Batch> q = std::move(queue);
    queue.clear();
    for (auto& b : q) queued_bytes -= b.buf.size();
    m_queued.set(static_cast<double>(queued_bytes));
    if (first != nullptr) complete(*first, failed);
    for (auto& b : q) complete(b.waiters, failed);
  }

  Result<Lsn> append(std::uint32_t type, std::span<const std::uint8_t> payload, AppendDone done) {
    if (!failed.ok()) return failed;
    if (closed) return make_error(Errc::unavailable, "wal " + opt.dir + " is closed");
    if (payload.size() > opt.max_payload) {
      reactor.metrics()
          .counter("hs_wal_refused_total", "Appends refused as invalid", {{"reason", "payload_too_large"}})
          .inc();
      return make_error(Errc::invalid_argument, fmt::format("wal record payload of {} bytes exceeds the limit of {}",
                                                            payload.size(), opt.max_payload));
    }
    const std::size_t sz = encoded_size(payload.size());
    if (queued_bytes + sz > opt.max_queued_bytes) {
      m_backpressure.inc();
      if (!backpressure_logged) {
        backpressure_logged = true;
        log::warn("wal", "backpressure", "dir={} queued_bytes={} limit={} note={}", log::quoted(opt.dir), queued_bytes,
                  opt.max_queued_bytes, log::quoted("appends refused until the queue drains"));
      }
      return make_error(Errc::backpressure,
                        fmt::format("wal queue full ({} of {} bytes queued)", queued_bytes, opt.max_queued_bytes));
    }
    if (queue.empty() || queue.back().waiters.size() >= opt.max_batch_entries ||
        (!queue.back().waiters.empty() && queue.back().buf.size() + sz > opt.max_batch_bytes)) {
      queue.push_back(new_batch());
    }
    Batch& b = queue.back();
    const Lsn lsn = next_lsn++;
    encode_record(b.buf, lsn, type, payload);
    b.waiters.push_back(Waiter{lsn, std::move(done)});
    queued_bytes += sz;
    m_queued.set(static_cast<double>(queued_bytes));
    return lsn;
  }

  Status roll(Lsn first) {
    HS_ASSIGN_OR_RETURN(int nfd, create_segment(opt.dir, first, sync()));
    ::close(fd);
    fd = nfd;
    segments.push_back({first, opt.dir + "/" + segment_name(first), kSegmentHeaderSize});
    seg_size = kSegmentHeaderSize;
    log::info("wal", "segment_created", "file={} first_lsn={} segments={}", log::quoted(active_path()), first,
              segments.size());
    return ok_status();
  }

  // Turn end: submit the next batch if none is in flight.
  void flush() {
    if (in_flight || queue.empty() || !failed.ok()) return;
    Batch& b = queue.front();
    if (seg_size > kSegmentHeaderSize && seg_size + b.buf.size() > opt.segment_bytes) {
      Status st = roll(b.waiters.front().lsn);
      if (!st.ok()) {
        fail(st.with_context("wal segment rollover"), "rollover");
        return;
      }
    }
    const bool s = sync();
    auto self = shared_from_this();
    Status st = io->write_and_sync(
        fd, b.buf.data(), b.buf.size(), seg_size, s, [self](int res) { self->on_io(res, /*is_sync=*/false); },
        [self](int res) { self->on_io(res, /*is_sync=*/true); });
    if (!st.ok()) {
      if (st.code() == Errc::backpressure) return;  // the ring is busy: retried at the next turn end
      fail(st.with_context("wal submit"), "submit");
      return;
    }
    flight = std::move(b);
    queue.pop_front();
    in_flight = true;
    flight_pending = s ? 2 : 1;
    flight_write_res = 0;
    flight_sync_res = 0;
    flight_started = reactor.clock().now();
  }

  void on_io(int res, bool is_sync) {
    if (is_sync) {
      flight_sync_res = res;
    } else {
      flight_write_res = res;
    }
    if (--flight_pending > 0) return;
    finish();
  }

  void finish() {
    Batch b = std::move(flight);
    in_flight = false;
    const std::size_t len = b.buf.size();
    queued_bytes -= len;
    const Lsn first = b.waiters.front().lsn;
    if (!failed.ok()) {  // failed meanwhile (nothing else is submitted after a failure)
      m_queued.set(static_cast<double>(queued_bytes));
      complete(b.waiters, failed);
      return;
    }
    auto where = [&]() {
      return fmt::format("segment file {} offset {} ({} bytes, lsn {}..{})", active_path(), seg_size, len, first,
                         b.waiters.back().lsn);
    };
    if (flight_write_res < 0) {
      fail(errno_status("wal write " + where(), -flight_write_res), "write", &b.waiters);
      return;
    }
    if (static_cast<std::size_t>(flight_write_res) != len) {
      fail(make_error(Errc::io_error, fmt::format("wal short write {}: wrote {}", where(), flight_write_res)),
           "short_write", &b.waiters);
      return;
    }
    if (sync() && flight_sync_res < 0) {
      fail(errno_status("wal fdatasync " + where(), -flight_sync_res), "fsync", &b.waiters);
      return;
    }
    seg_size += len;
    durable_lsn = b.waiters.back().lsn + 1;
    if (backpressure_logged && queued_bytes < opt.max_queued_bytes / 2) {
      backpressure_logged = false;
      log::info("wal", "backpressure_cleared", "dir={} queued_bytes={}", log::quoted(opt.dir), queued_bytes);
    }
    m_queued.set(static_cast<double>(queued_bytes));
    m_batches.inc();
    m_bytes.inc(len);
    m_appends.inc(b.waiters.size());
    m_commit.observe(to_seconds(reactor.clock().now() - flight_started));
    complete(b.waiters, ok_status());
    recycle(std::move(b.buf));
  }

  void close() {
    closed = true;
    if (turn_end_hook != 0) {
      reactor.remove_turn_end(turn_end_hook);
      turn_end_hook = 0;
    }
    std::deque<Batch> q = std::move(queue);
    queue.clear();
    const Status st = make_error(Errc::unavailable, "wal " + opt.dir + " closed before the append was written");
    for (auto& b : q) {
      queued_bytes -= b.buf.size();
      complete(b.waiters, st);
    }
  }
};

Result<std::unique_ptr<Wal>> Wal::open(runtime::Reactor& reactor, WalOptions o, const RecordVisitor& visit,
                                       std::unique_ptr<WalIo> io) {
  if (o.dir.empty()) return make_error(Errc::invalid_argument, "wal dir is empty");
  if (o.max_payload > kMaxPayload) {
    return make_error(Errc::invalid_argument, fmt::format("wal max_payload {} exceeds {}", o.max_payload, kMaxPayload));
  }
  if (o.max_batch_entries == 0 || o.max_batch_bytes == 0 || o.segment_bytes <= kSegmentHeaderSize) {
    return make_error(Errc::invalid_argument, "wal batch/segment limits must be positive");
  }
  if (o.max_queued_bytes < encoded_size(o.max_payload)) {
    return make_error(Errc::invalid_argument, "wal max_queued_bytes is smaller than one maximal record");
  }
  if (o.create_dir && ::mkdir(o.dir.c_str(), 0755) != 0 && errno != EEXIST) {
    return errno_status("create wal dir " + o.dir, errno);
  }
  auto impl = std::make_shared<Impl>(reactor, std::move(o));
  impl->io = io ? std::move(io) : make_uring_io(reactor);
  auto lock = lock_dir(impl->opt.dir);
  if (!lock.ok()) {
    log::error("wal", "open_failed", "dir={} error={}", log::quoted(impl->opt.dir),
               log::quoted(lock.status().to_string()));
    impl->count_error("locked");
    return lock.status();
  }
  impl->lock_fd = lock.value();
  auto rep = recover_dir(impl->opt.dir, RecoverMode::open, visit);
  if (!rep.ok()) {
    log::error("wal", "open_failed", "dir={} error={}", log::quoted(impl->opt.dir),
               log::quoted(rep.status().to_string()));
    impl->count_error("recovery");
    return rep.status();
  }
  impl->recovery = std::move(rep).value();
  impl->segments = impl->recovery.segments;
  impl->next_lsn = impl->durable_lsn = impl->recovery.next_lsn;
  if (impl->recovery.torn_tail) {
    reactor.metrics().counter("hs_wal_torn_tails_total", "Torn tails truncated at recovery").inc();
  }
  if (impl->segments.empty()) {
    HS_ASSIGN_OR_RETURN(impl->fd, create_segment(impl->opt.dir, impl->next_lsn, impl->sync()));
    impl->segments.push_back({impl->next_lsn, impl->opt.dir + "/" + segment_name(impl->next_lsn), kSegmentHeaderSize});
    impl->seg_size = kSegmentHeaderSize;
  } else {
    const SegmentFile& a = impl->segments.back();
    impl->fd = ::open(a.path.c_str(), O_WRONLY | O_CLOEXEC);
    if (impl->fd < 0) return errno_status("open wal segment " + a.path, errno);
    impl->seg_size = a.size;
  }
  impl->m_healthy.set(1);
  const auto lvl = impl->sync() ? log::Level::info : log::Level::warn;
  log::logf(
      lvl, "wal", "open",
      "dir={} durability={} segments={} records={} next_lsn={} torn_tail={} segment_bytes={} max_queued_bytes={}{}",
      log::quoted(impl->opt.dir), durability_name(impl->opt.durability), impl->segments.size(), impl->recovery.records,
      impl->next_lsn, impl->recovery.torn_tail, impl->opt.segment_bytes, impl->opt.max_queued_bytes,
      impl->sync() ? "" : " note=\"durability=none: acknowledged appends are lost on power failure\"");
  std::weak_ptr<Impl> weak = impl;
  impl->turn_end_hook = reactor.on_turn_end([weak]() {
    if (auto p = weak.lock()) p->flush();
  });
  return std::unique_ptr<Wal>(new Wal(std::move(impl)));
}

Wal::~Wal() {
  if (impl_) impl_->close();
}

Result<Lsn> Wal::append(std::uint32_t type, std::span<const std::uint8_t> payload, AppendDone done) {
  return impl_->append(type, payload, std::move(done));
}

Result<std::size_t> Wal::truncate_before(Lsn lsn) {
  Impl& m = *impl_;
  if (!m.failed.ok()) return m.failed;
  std::size_t deleted = 0;
  while (m.segments.size() > 1 && m.segments[1].first_lsn <= lsn) {
    const std::string path = m.segments.front().path;
    if (::unlink(path.c_str()) != 0) {
      Status st = errno_status("wal checkpoint: remove " + path, errno);
      m.count_error("checkpoint");
      log::error("wal", "checkpoint_failed", "file={} error={}", log::quoted(path), log::quoted(st.to_string()));
      return st;
    }
    m.segments.erase(m.segments.begin());
    ++deleted;
  }
  if (deleted > 0) {
    if (m.sync()) {
      Status st = fsync_dir(m.opt.dir);
      if (!st.ok()) {
        m.count_error("checkpoint");
        log::error("wal", "checkpoint_failed", "dir={} error={}", log::quoted(m.opt.dir), log::quoted(st.to_string()));
        return st;
      }
    }
    log::info("wal", "checkpoint", "dir={} before_lsn={} deleted_segments={} oldest_lsn={}", log::quoted(m.opt.dir),
              lsn, deleted, m.segments.front().first_lsn);
  }
  return deleted;
}

const Status& Wal::health() const noexcept { return impl_->failed; }
Lsn Wal::next_lsn() const noexcept { return impl_->next_lsn; }
Lsn Wal::durable_lsn() const noexcept { return impl_->durable_lsn; }
std::size_t Wal::queued_bytes() const noexcept { return impl_->queued_bytes; }
std::size_t Wal::segment_count() const noexcept { return impl_->segments.size(); }
const RecoveryReport& Wal::recovery() const noexcept { return impl_->recovery; }
bool Wal::busy() const noexcept { return impl_->in_flight || !impl_->queue.empty(); }

}  // namespace hs::wal
