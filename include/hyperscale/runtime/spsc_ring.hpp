// Bounded single-producer / single-consumer ring with batched publication.
//
// The producer stages items with try_push() and makes them visible with publish(); the consumer
// takes every visible item with drain(). Indices are monotonically increasing 64-bit counters;
// head and tail live on separate cache lines and each side caches the other's index.
#pragma once

#include <atomic>
#include <cstddef>
#include <cstdint>
#include <memory>
#include <new>

namespace hs::runtime {

template <typename T>
class SpscRing {
 public:
  explicit SpscRing(std::size_t capacity) {
    std::size_t cap = 1;
    while (cap < capacity) cap <<= 1;
    cap_ = cap;
    mask_ = cap - 1;
    slots_ = std::make_unique<T[]>(cap);
  }
  SpscRing(const SpscRing&) = delete;
  SpscRing& operator=(const SpscRing&) = delete;

  std::size_t capacity() const noexcept { return cap_; }

  // ---- producer side ----
  // Stages `v` (moved from only on success). False when the ring is full, counting staged items.
  bool try_push(T& v) noexcept {
    if (staged_tail_ - cached_head_ >= cap_) {
      cached_head_ = head_.load(std::memory_order_acquire);
      if (staged_tail_ - cached_head_ >= cap_) return false;
    }
    slots_[staged_tail_ & mask_] = std::move(v);
    ++staged_tail_;
    return true;
  }
  // Items staged but not yet published.
  std::size_t staged() const noexcept { return staged_tail_ - published_tail_; }
  // Makes staged items visible to the consumer. Returns how many were published.
  std::size_t publish() noexcept {
    const std::size_t n = staged_tail_ - published_tail_;
    if (n != 0) {
      published_tail_ = staged_tail_;
      tail_.store(staged_tail_, std::memory_order_release);
    }
    return n;
  }
  bool producer_has_space() noexcept {
    cached_head_ = head_.load(std::memory_order_acquire);
    return staged_tail_ - cached_head_ < cap_;
  }
  // Producer marks itself blocked; the consumer clears it when it frees space (see take_waiter()).
  void set_producer_waiting() noexcept { waiting_.store(true, std::memory_order_seq_cst); }

  // ---- consumer side ----
  // Calls fn(T&) for up to `max` visible items, in FIFO order. Returns how many were consumed.
  template <typename F>
  std::size_t drain(F&& fn, std::size_t max) {
    std::size_t head = head_.load(std::memory_order_relaxed);
    std::size_t tail = tail_.load(std::memory_order_acquire);
    std::size_t n = 0;
    while (head != tail && n < max) {
      T& slot = slots_[head & mask_];
      T item = std::move(slot);
      ++head;
      ++n;
      // Publish progress in chunks so a blocked producer sees space early.
      if ((n & 255) == 0) head_.store(head, std::memory_order_release);
      fn(item);
    }
    head_.store(head, std::memory_order_release);
    return n;
  }
  bool empty_for_consumer() const noexcept {
    return head_.load(std::memory_order_relaxed) == tail_.load(std::memory_order_acquire);
  }
  // True (once) if the producer was blocked on this ring since the last call.
  bool take_waiter() noexcept {
    if (!waiting_.load(std::memory_order_seq_cst)) return false;
    return waiting_.exchange(false, std::memory_order_seq_cst);
  }

  // Destroys every item, visible or staged (shutdown). Returns how many were dropped.
  std::size_t clear_all() noexcept {
    std::size_t head = head_.load(std::memory_order_relaxed);
    std::size_t n = staged_tail_ - head;
    for (std::size_t i = head; i != staged_tail_; ++i) slots_[i & mask_] = T();
    head_.store(staged_tail_, std::memory_order_relaxed);
    published_tail_ = staged_tail_;
    tail_.store(staged_tail_, std::memory_order_relaxed);
    cached_head_ = staged_tail_;
    return n;
  }

 private:
  std::size_t cap_ = 0;
  std::size_t mask_ = 0;
  std::unique_ptr<T[]> slots_;
  alignas(64) std::atomic<std::size_t> head_{0};  // consumer-owned
  alignas(64) std::atomic<std::size_t> tail_{0};  // producer publishes
  alignas(64) std::size_t staged_tail_ = 0;       // producer-local
  std::size_t published_tail_ = 0;
  std::size_t cached_head_ = 0;
  alignas(64) std::atomic<bool> waiting_{false};
};

}  // namespace hs::runtime
