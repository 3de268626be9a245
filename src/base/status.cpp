#include "hyperscale/base/status.hpp"

#include <cstring>

#include <fmt/format.h>

namespace hs {

std::string_view errc_name(Errc c) noexcept {
  switch (c) {
    case Errc::ok:
      return "ok";
    case Errc::invalid_argument:
      return "invalid_argument";
    case Errc::not_found:
      return "not_found";
    case Errc::already_exists:
      return "already_exists";
    case Errc::backpressure:
      return "backpressure";
    case Errc::timeout:
      return "timeout";
    case Errc::cancelled:
      return "cancelled";
    case Errc::io_error:
      return "io_error";
    case Errc::corruption:
      return "corruption";
    case Errc::unavailable:
      return "unavailable";
    case Errc::permission_denied:
      return "permission_denied";
    case Errc::protocol_error:
      return "protocol_error";
    case Errc::internal:
      return "internal";
  }
  return "unknown";
}

std::string Status::to_string() const {
  if (ok()) return "ok";
  return fmt::format("{}: {}", errc_name(code_), message_);
}

Status Status::with_context(std::string_view ctx) const {
  if (ok()) return *this;
  return Status(code_, fmt::format("{}: {}", ctx, message_));
}

Status errno_status(std::string_view context, int err) {
  if (err < 0) err = -err;
  char buf[128];
  // GNU strerror_r returns a char* that may or may not point into buf.
  const char* text = strerror_r(err, buf, sizeof buf);
  Errc code = Errc::io_error;
  if (err == EACCES || err == EPERM)
    code = Errc::permission_denied;
  else if (err == ENOENT)
    code = Errc::not_found;
  else if (err == EEXIST)
    code = Errc::already_exists;
  else if (err == EINVAL)
    code = Errc::invalid_argument;
  else if (err == ETIMEDOUT)
    code = Errc::timeout;
  else if (err == ECANCELED)
    code = Errc::cancelled;
  return Status(code, fmt::format("{}: {} (errno {})", context, text, err));
}

}  // namespace hs
