#include "hyperscale/base/status.hpp"

#include <cstring>

#include <fmt/format.h>

#include "hyperscale/base/enum_names.hpp"

namespace hs {

constexpr EnumNames<Errc, 13> kErrcNames{{"ok", "invalid_argument", "not_found", "already_exists", "backpressure",
                                          "timeout", "cancelled", "io_error", "corruption", "unavailable",
                                          "permission_denied", "protocol_error", "internal"}};
static_assert(kErrcNames.covers(Errc::internal));

std::string_view errc_name(Errc c) noexcept { return kErrcNames(c); }

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
