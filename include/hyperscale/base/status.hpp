// Status / Result: the error type every fallible call in hyperscale returns.
//
// A Status is either OK or an error code plus a human-readable message with context
// ("open /var/wal/000001.seg: Permission denied"). Result<T> holds a T or an error Status.
// Both are [[nodiscard]] so an ignored error is a compile error under -Werror.
#pragma once

#include <cassert>
#include <string>
#include <string_view>
#include <utility>
#include <variant>

namespace hs {

enum class Errc : int {
  ok = 0,
  invalid_argument,  // bad input from a caller or a user; nothing changed
  not_found,
  already_exists,
  backpressure,  // a bounded queue is full; the caller decides to retry or drop
  timeout,
  cancelled,
  io_error,     // a syscall failed; message carries errno text
  corruption,   // stored data failed a check (CRC, framing)
  unavailable,  // the component is stopped, failed or shutting down
  permission_denied,
  protocol_error,  // a peer sent something we reject
  internal,        // a bug: an invariant did not hold
};

std::string_view errc_name(Errc c) noexcept;

class [[nodiscard]] Status {
 public:
  Status() noexcept = default;
  Status(Errc code, std::string message) : code_(code), message_(std::move(message)) {}

  static Status ok_status() noexcept { return Status(); }

  bool ok() const noexcept { return code_ == Errc::ok; }
  explicit operator bool() const noexcept { return ok(); }
  Errc code() const noexcept { return code_; }
  const std::string& message() const noexcept { return message_; }

  // "io_error: open /x: No such file or directory"
  std::string to_string() const;

  // Prefixes context: Status(io_error, "x").with_context("wal open") -> "wal open: x".
  Status with_context(std::string_view ctx) const;

  friend bool operator==(const Status& a, const Status& b) noexcept {
    return a.code_ == b.code_ && a.message_ == b.message_;
  }

 private:
  Errc code_ = Errc::ok;
  std::string message_;
};

inline Status ok_status() noexcept { return Status(); }
inline Status make_error(Errc c, std::string msg) { return Status(c, std::move(msg)); }
// Status from errno-style negative or positive error number, with context.
Status errno_status(std::string_view context, int err);

template <typename T>
class [[nodiscard]] Result {
 public:
  Result(T value) : v_(std::in_place_index<0>, std::move(value)) {}      // NOLINT: implicit by design
  Result(Status error) : v_(std::in_place_index<1>, std::move(error)) {  // NOLINT
    assert(!std::get<1>(v_).ok() && "Result constructed from an OK status");
  }

  bool ok() const noexcept { return v_.index() == 0; }
  explicit operator bool() const noexcept { return ok(); }

  T& value() & {
    assert(ok());
    return std::get<0>(v_);
  }
  const T& value() const& {
    assert(ok());
    return std::get<0>(v_);
  }
  T&& value() && {
    assert(ok());
    return std::get<0>(std::move(v_));
  }
  T* operator->() { return &value(); }
  const T* operator->() const { return &value(); }
  T& operator*() & { return value(); }
  const T& operator*() const& { return value(); }

  const Status& status() const& {
    static const Status kOk;
    return ok() ? kOk : std::get<1>(v_);
  }
  Status status() && { return ok() ? Status() : std::get<1>(std::move(v_)); }

  T value_or(T other) const& { return ok() ? std::get<0>(v_) : std::move(other); }

 private:
  std::variant<T, Status> v_;
};

}  // namespace hs

// Propagate an error Status from an expression returning Status.
#define HS_TRY(expr)                                 \
  do {                                               \
    ::hs::Status hs_try_status_ = (expr);            \
    if (!hs_try_status_.ok()) return hs_try_status_; \
  } while (0)

#define HS_CONCAT_INNER(a, b) a##b
#define HS_CONCAT(a, b) HS_CONCAT_INNER(a, b)
// HS_ASSIGN_OR_RETURN(auto x, expr_returning_result)
#define HS_ASSIGN_OR_RETURN(lhs, expr) HS_ASSIGN_OR_RETURN_IMPL(HS_CONCAT(hs_res_, __LINE__), lhs, expr)
#define HS_ASSIGN_OR_RETURN_IMPL(tmp, lhs, expr) \
  auto tmp = (expr);                             \
  if (!tmp.ok()) return std::move(tmp).status(); \
  lhs = std::move(tmp).value()
