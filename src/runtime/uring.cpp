#include "hyperscale/runtime/uring.hpp"

#include <sys/eventfd.h>
#include <unistd.h>

#include <cerrno>

#include "hyperscale/base/log.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::runtime {

Result<std::unique_ptr<Uring>> Uring::create(Reactor& reactor, unsigned entries) {
  std::unique_ptr<Uring> u(new Uring(reactor));
  int rc = io_uring_queue_init(entries, &u->ring_, 0);
  if (rc < 0) return errno_status("io_uring_queue_init", rc);
  u->ring_ok_ = true;
  u->efd_ = eventfd(0, EFD_NONBLOCK | EFD_CLOEXEC);
  if (u->efd_ < 0) return errno_status("eventfd", errno);
  rc = io_uring_register_eventfd(&u->ring_, u->efd_);
  if (rc < 0) return errno_status("io_uring_register_eventfd", rc);
  // The CQ holds twice the SQ entries; never have more in flight than the CQ can hold.
  u->max_inflight_ = u->ring_.cq.ring_entries;
  u->slots_.resize(u->max_inflight_);
  u->free_.reserve(u->max_inflight_);
  for (std::size_t i = u->max_inflight_; i-- > 0;) u->free_.push_back(static_cast<std::uint32_t>(i));
  rc = uv_poll_init(reactor.loop(), &u->poll_, u->efd_);
  if (rc != 0) return make_error(Errc::io_error, std::string("uv_poll_init: ") + uv_strerror(rc));
  u->poll_open_ = true;
  u->poll_.data = u.get();
  rc = uv_poll_start(&u->poll_, UV_READABLE, [](uv_poll_t* h, int status, int) {
    auto* self = static_cast<Uring*>(h->data);
    if (status < 0) {
      log::error("uring", "poll_error", "error={}", log::quoted(uv_strerror(status)));
      return;
    }
    self->on_readable();
  });
  if (rc != 0) return make_error(Errc::io_error, std::string("uv_poll_start: ") + uv_strerror(rc));
  // The ring's poll handle alone does not keep the loop alive.
  uv_unref(reinterpret_cast<uv_handle_t*>(&u->poll_));
  log::debug("uring", "ring_created", "entries={} cq_entries={}", entries, u->max_inflight_);
  return u;
}

Uring::~Uring() {
  close();
  if (ring_ok_) io_uring_queue_exit(&ring_);
  if (efd_ >= 0) ::close(efd_);
  if (inflight_ > 0) {
    log::warn("uring", "destroyed_with_inflight", "count={} note=completions discarded", inflight_);
  }
}

void Uring::close() {
  if (poll_open_) {
    poll_open_ = false;
    uv_poll_stop(&poll_);
    uv_close(reinterpret_cast<uv_handle_t*>(&poll_), nullptr);
  }
}

io_uring_sqe* Uring::prepare(Completion cb) {
  if (free_.empty()) return nullptr;
  io_uring_sqe* sqe = io_uring_get_sqe(&ring_);
  if (sqe == nullptr) {
    // SQ full: submit what is queued and try once more.
    Status st = submit();
    if (!st.ok()) {
      log::error("uring", "submit_failed", "error={}", log::quoted(st.to_string()));
      return nullptr;
    }
    sqe = io_uring_get_sqe(&ring_);
    if (sqe == nullptr) return nullptr;
  }
  const std::uint32_t slot = free_.back();
  free_.pop_back();
  slots_[slot] = std::move(cb);
  io_uring_sqe_set_data64(sqe, static_cast<std::uint64_t>(slot));
  ++inflight_;
  ++unsubmitted_;
  return sqe;
}

Status Uring::submit() {
  if (unsubmitted_ == 0) return ok_status();
  int rc;
  do {
    rc = io_uring_submit(&ring_);
  } while (rc == -EINTR);
  if (rc < 0) return errno_status("io_uring_submit", rc);
  unsubmitted_ = 0;
  return ok_status();
}

void Uring::on_readable() {
  std::uint64_t v;
  while (::read(efd_, &v, sizeof v) > 0) {
  }
  reap();
}

void Uring::reap() {
  io_uring_cqe* cqe = nullptr;
  while (io_uring_peek_cqe(&ring_, &cqe) == 0 && cqe != nullptr) {
    const auto slot = static_cast<std::uint32_t>(io_uring_cqe_get_data64(cqe));
    const int res = cqe->res;
    io_uring_cqe_seen(&ring_, cqe);
    if (slot >= slots_.size() || !slots_[slot]) {
      log::error("uring", "unknown_completion", "slot={} res={}", slot, res);
      continue;
    }
    Completion cb = std::move(slots_[slot]);
    free_.push_back(slot);
    --inflight_;
    try {
      cb(res);
    } catch (const std::exception& e) {
      report_task_error(reactor_.metrics(), "uring_completion", e.what());
    }
  }
}

}  // namespace hs::runtime
