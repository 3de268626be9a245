// SmallFn: a move-only callable with inline storage, used for messages between shards,
// io_uring completions and deferred work. Callables up to `Cap` bytes that are nothrow-movable are
// stored inline (no allocation); larger ones are boxed on the heap.
#pragma once

#include <cstddef>
#include <new>
#include <type_traits>
#include <utility>

namespace hs {

template <typename Sig, std::size_t Cap = 48>
class SmallFn;

template <typename R, typename... A, std::size_t Cap>
class SmallFn<R(A...), Cap> {
 public:
  SmallFn() noexcept = default;
  SmallFn(std::nullptr_t) noexcept {}  // NOLINT

  template <typename F, typename D = std::decay_t<F>,
            typename = std::enable_if_t<!std::is_same_v<D, SmallFn> && std::is_invocable_r_v<R, D&, A...>>>
  SmallFn(F&& f) {  // NOLINT: implicit like std::function
    if constexpr (fits_inline<D>()) {
      ::new (static_cast<void*>(buf_)) D(std::forward<F>(f));
      invoke_ = [](void* p, A... a) -> R { return (*static_cast<D*>(p))(std::forward<A>(a)...); };
      manage_ = [](void* dst, void* src) noexcept {
        D* s = static_cast<D*>(src);
        if (dst != nullptr) ::new (dst) D(std::move(*s));
        s->~D();
      };
    } else {
      D* boxed = new D(std::forward<F>(f));
      ::new (static_cast<void*>(buf_)) D*(boxed);
      invoke_ = [](void* p, A... a) -> R { return (**static_cast<D**>(p))(std::forward<A>(a)...); };
      manage_ = [](void* dst, void* src) noexcept {
        D** s = static_cast<D**>(src);
        if (dst != nullptr) {
          ::new (dst) D*(*s);
        } else {
          delete *s;
        }
      };
    }
  }

  SmallFn(SmallFn&& o) noexcept { move_from(o); }
  SmallFn& operator=(SmallFn&& o) noexcept {
    if (this != &o) {
      reset();
      move_from(o);
    }
    return *this;
  }
  SmallFn(const SmallFn&) = delete;
  SmallFn& operator=(const SmallFn&) = delete;
  ~SmallFn() { reset(); }

  void reset() noexcept {
    if (manage_ != nullptr) manage_(nullptr, buf_);
    invoke_ = nullptr;
    manage_ = nullptr;
  }

  explicit operator bool() const noexcept { return invoke_ != nullptr; }
  R operator()(A... a) { return invoke_(buf_, std::forward<A>(a)...); }

  template <typename D>
  static constexpr bool fits_inline() {
    return sizeof(D) <= Cap && alignof(D) <= alignof(std::max_align_t) && std::is_nothrow_move_constructible_v<D>;
  }

 private:
  void move_from(SmallFn& o) noexcept {
    if (o.manage_ != nullptr) o.manage_(buf_, o.buf_);
    invoke_ = o.invoke_;
    manage_ = o.manage_;
    o.invoke_ = nullptr;
    o.manage_ = nullptr;
  }

  alignas(std::max_align_t) std::byte buf_[Cap];
  R (*invoke_)(void*, A...) = nullptr;
  void (*manage_)(void* dst, void* src) noexcept = nullptr;
};

}  // namespace hs
