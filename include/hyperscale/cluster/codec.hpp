// A small binary codec for role messages: little-endian varints, length-prefixed strings and byte
// strings, each length checked against what is left and a per-field bound. A Reader that meets bad
// input stays failed (ok() == false) and returns zero values from then on, so decoders read every
// field and check once at the end. No allocation is made from a length that was not checked.
//
// Records: a struct is written as a varint byte length followed by its fields (Writer::prefix_length
// after the fields, Reader::enter/leave around them). Inside a record, reads are limited to the
// record: a record that ends before a field (an older sender) leaves that field unread (at_end()),
// and what is left of it after the fields a reader knows (a newer sender) is skipped by leave().
// The rules built on this are in cluster/messages.hpp.
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
  // Inserts at `at` the varint length of everything written since: the length prefix of a record
  // whose fields were written from `at` on. Moves only those bytes.
  void prefix_length(std::size_t at) {
    std::uint8_t len[10];
    std::size_t n = 0;
    std::uint64_t v = out_.size() - at;
    while (v >= 0x80) {
      len[n++] = static_cast<std::uint8_t>(v | 0x80);
      v >>= 7;
    }
    len[n++] = static_cast<std::uint8_t>(v);
    out_.insert(out_.begin() + static_cast<std::ptrdiff_t>(at), len, len + n);
  }
  std::vector<std::uint8_t>& out() noexcept { return out_; }
  std::vector<std::uint8_t> take() { return std::move(out_); }

 private:
  std::vector<std::uint8_t> out_;
};

class Reader {
 public:
  explicit Reader(std::span<const std::uint8_t> in) : in_(in), end_(in.size()) {}
  bool ok() const noexcept { return ok_; }
  // Everything was read (no record is open and no byte is left).
  bool done() const noexcept { return ok_ && pos_ == in_.size(); }
  // Enters a record: reads its length, which must fit in what is left of the enclosing record (or
  // input), and limits reading to it. Returns the enclosing limit, for leave().
  std::size_t enter() {
    const std::uint64_t n = var();
    if (!ok_) return end_;
    if (n > end_ - pos_) {
      fail("record longer than what contains it");
      return end_;
    }
    const std::size_t outer = end_;
    end_ = pos_ + static_cast<std::size_t>(n);
    return outer;
  }
  // No byte of the current record is left: the fields that follow were not written by the sender.
  bool at_end() const noexcept { return pos_ == end_; }
  // Leaves the record entered with enter(): skips what is left of it (fields this reader does not
  // know) and restores the enclosing limit.
  void leave(std::size_t outer) {
    if (ok_) {
      skipped_ += end_ - pos_;
      pos_ = end_;
    }
    end_ = outer;
  }
  // Bytes skipped by leave() so far (fields of newer versions).
  std::size_t skipped() const noexcept { return skipped_; }
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
  // left of the record (or more than `max`) is an error.
  std::size_t count(std::size_t max) {
    const std::uint64_t n = var();
    if (n > max || n > end_ - pos_) {
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
    if (n > end_ - pos_) {
      fail("truncated");
      return false;
    }
    return true;
  }
  std::span<const std::uint8_t> in_;
  std::size_t pos_ = 0;
  std::size_t end_;  // reads stop here: the end of the innermost open record, or of the input
  std::size_t skipped_ = 0;
  bool ok_ = true;
  const char* err_ = "";
};

}  // namespace hs::cluster
