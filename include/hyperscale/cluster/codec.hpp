// A small binary codec for role messages: little-endian varints, length-prefixed strings and byte
// strings, each length checked against what is left and a per-field bound. A Reader that meets bad
// input stays failed (ok() == false) and returns zero values from then on, so decoders read every
// field and check once at the end. No allocation is made from a length that was not checked.
#pragma once

#include <cstdint>
#include <cstring>
#include <span>
#include <string>
#include <string_view>
#include <utility>
#include <vector>

namespace hs::cluster {

class Writer {
 public:
  void u8(std::uint8_t v) { out_.push_back(v); }
  void b(bool v) { u8(v ? 1 : 0); }
  void var(std::uint64_t v) {
    while (v >= 0x80) {
      out_.push_back(static_cast<std::uint8_t>(v | 0x80));
      v >>= 7;
    }
    out_.push_back(static_cast<std::uint8_t>(v));
  }
  void i64(std::int64_t v) { var((static_cast<std::uint64_t>(v) << 1) ^ static_cast<std::uint64_t>(v >> 63)); }
  void f64(double d) {
    std::uint64_t v;
    std::memcpy(&v, &d, 8);
    for (int i = 0; i < 8; ++i) out_.push_back(static_cast<std::uint8_t>(v >> (8 * i)));
  }
  void str(std::string_view s) {
    var(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  void bytes(std::span<const std::uint8_t> s) {
    var(s.size());
    out_.insert(out_.end(), s.begin(), s.end());
  }
  std::vector<std::uint8_t>& out() noexcept { return out_; }
  std::vector<std::uint8_t> take() { return std::move(out_); }

 private:
  std::vector<std::uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in) {}
  bool ok() const noexcept { return ok_; }
  bool done() const noexcept { return ok_ && pos_ == in_.size(); }
  const char* error() const noexcept { return err_; }
  std::uint8_t u8() {
    if (!need(1)) return 0;
    return in_[pos_++];
  }
  bool b() {
    const std::uint8_t v = u8();
    if (v > 1) fail("bad bool");
    return v == 1;
  }
  std::uint64_t var() {
    std::uint64_t v = 0;
    for (int shift = 0; shift < 64; shift += 7) {
      if (!need(1)) return 0;
      const std::uint8_t c = in_[pos_++];
      v |= static_cast<std::uint64_t>(c & 0x7f) << shift;
      if ((c & 0x80) == 0) return v;
    }
    fail("varint too long");
    return 0;
  }
  std::int64_t i64() {
    const std::uint64_t z = var();
    return static_cast<std::int64_t>((z >> 1) ^ (~(z & 1) + 1));
  }
  double f64() {
    if (!need(8)) return 0;
    std::uint64_t v = 0;
    for (int i = 0; i < 8; ++i) v |= static_cast<std::uint64_t>(in_[pos_++]) << (8 * i);
    double d;
    std::memcpy(&d, &v, 8);
    return d;
  }
  std::string str(std::size_t max) {
    const std::uint64_t n = var();
    if (n > max) {
      fail("string too long");
      return {};
    }
    if (!need(n)) return {};
    std::string s(reinterpret_cast<const char*>(in_.data() + pos_), n);
    pos_ += n;
    return s;
  }
  std::vector<std::uint8_t> bytes(std::size_t max) {
    const std::uint64_t n = var();
    if (n > max) {
      fail("bytes too long");
      return {};
    }
    if (!need(n)) return {};
    std::vector<std::uint8_t> s(in_.begin() + static_cast<std::ptrdiff_t>(pos_),
                                in_.begin() + static_cast<std::ptrdiff_t>(pos_ + n));
    pos_ += n;
    return s;
  }
  // A count of elements that follow; each element takes at least one byte, so more than what is
  // left (or more than `max`) is an error.
  std::size_t count(std::size_t max) {
    const std::uint64_t n = var();
    if (n > max || n > in_.size() - pos_) {
      fail("count too large");
      return 0;
    }
    return static_cast<std::size_t>(n);
  }
  void fail(const char* why) {
    if (ok_) err_ = why;
    ok_ = false;
  }

 private:
  bool need(std::uint64_t n) {
    if (!ok_) return false;
    if (n > in_.size() - pos_) {
      fail("truncated");
      return false;
    }
    return true;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  bool ok_ = true;
  const char* err_ = "";
};

}  // namespace hs::cluster
