// An io_uring ring owned by one shard. Its completion eventfd is watched by the shard's libuv loop,
// so every completion callback runs on the owning shard's thread, like any other event.
//
//   auto* u = reactor.uring().value();
//   io_uring_sqe* sqe = u->prepare([](int res) { ... });   // nullptr: no free slot (backpressure)
//   io_uring_prep_write(sqe, fd, buf, len, off);
//   // submitted at the end of the loop turn, together with everything else prepared in the turn
#pragma once

#include <liburing.h>
#include <uv.h>

#include <cstdint>
#include <memory>
#include <vector>

#include "hyperscale/base/small_fn.hpp"
#include "hyperscale/base/status.hpp"

namespace hs::runtime {

class Reactor;

class Uring {
 public:
  // Called with the CQE result (bytes, 0, or -errno).
  using Completion = SmallFn<void(int res), 48>;

  static Result<std::unique_ptr<Uring>> create(Reactor& reactor, unsigned entries);
  Uring(const Uring&) = delete;
  Uring& operator=(const Uring&) = delete;
  ~Uring();

  // An SQE whose completion will call `cb` on the owning shard, or nullptr when the submission
  // queue or the in-flight limit is full (backpressure); then `cb` is dropped without being called,
  // so check has_space() first when the callback owns something that matters.
  io_uring_sqe* prepare(Completion cb);
  bool has_space(std::size_t n = 1) const noexcept { return inflight_ + n <= max_inflight_; }
  // Submits everything prepared so far (also done automatically at each loop turn end).
  Status submit();
  std::size_t inflight() const noexcept { return inflight_; }
  io_uring* raw() noexcept { return &ring_; }

  // Closes the poll handle; pending completions are discarded when the ring is destroyed.
  void close();

 private:
  explicit Uring(Reactor& r) : reactor_(r) {}
  void on_readable();
  void reap();

  Reactor& reactor_;
  io_uring ring_{};
  bool ring_ok_ = false;
  int efd_ = -1;
  uv_poll_t poll_{};
  bool poll_open_ = false;
  std::vector<Completion> slots_;
  std::vector<std::uint32_t> free_;
  std::size_t inflight_ = 0;
  std::size_t max_inflight_ = 0;
  unsigned unsubmitted_ = 0;
};

}  // namespace hs::runtime
