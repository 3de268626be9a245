#include <fmt/format.h>

#include "hyperscale/load/plan.hpp"

namespace hs::load {
namespace {
std::uint64_t next_rand(std::uint64_t& s) {  // splitmix64
  std::uint64_t z = (s += 0x9E3779B97F4A7C15ull);
  z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9ull;
  z = (z ^ (z >> 27)) * 0x94D049BB133111EBull;
  return z ^ (z >> 31);
}
void append_u64(std::string& out, std::uint64_t v) {
  char buf[24];
  char* p = buf + sizeof buf;
  do {
    *--p = static_cast<char>('0' + v % 10);
    v /= 10;
  } while (v);
  out.append(p, static_cast<std::size_t>(buf + sizeof buf - p));
}
void append_hex(std::string& out, std::uint64_t v, int digits) {
  static const char* k = "0123456789abcdef";
  for (int i = digits - 1; i >= 0; --i) out.push_back(k[(v >> (i * 4)) & 0xF]);
}
}  // namespace

std::string Template::literal() const {
  std::string s;
  for (const auto& p : parts)
    if (p.kind == TemplatePart::Kind::literal) s += p.text;
  return s;
}

void render(const Template& t, TemplateScope& sc, std::string& out) {
  for (const auto& p : t.parts) {
    switch (p.kind) {
      case TemplatePart::Kind::literal:
        out += p.text;
        break;
      case TemplatePart::Kind::vu:
        append_u64(out, sc.vu);
        break;
      case TemplatePart::Kind::iteration:
        append_u64(out, sc.iteration);
        break;
      case TemplatePart::Kind::worker:
        append_u64(out, static_cast<std::uint64_t>(sc.worker));
        break;
      case TemplatePart::Kind::now_ms:
        append_u64(out, static_cast<std::uint64_t>(wall_time_us() / 1000));
        break;
      case TemplatePart::Kind::rand_int: {
        const std::uint64_t span = static_cast<std::uint64_t>(p.b - p.a) + 1;
        const std::int64_t v =
            p.a + static_cast<std::int64_t>(span ? next_rand(sc.rng_state) % span : next_rand(sc.rng_state));
        if (v < 0) {
          out.push_back('-');
          append_u64(out, static_cast<std::uint64_t>(-v));
        } else {
          append_u64(out, static_cast<std::uint64_t>(v));
        }
        break;
      }
      case TemplatePart::Kind::rand_hex:
        for (std::int64_t i = 0; i < p.a; i += 16)
          append_hex(out, next_rand(sc.rng_state), static_cast<int>(std::min<std::int64_t>(16, p.a - i)));
        break;
      case TemplatePart::Kind::uuid: {
        const std::uint64_t a = next_rand(sc.rng_state), b = next_rand(sc.rng_state);
        const std::uint64_t hi = (a & 0xFFFFFFFFFFFF0FFFull) | 0x4000ull;              // version 4
        const std::uint64_t lo = (b & 0x3FFFFFFFFFFFFFFFull) | 0x8000000000000000ull;  // variant 10
        append_hex(out, hi >> 32, 8);
        out.push_back('-');
        append_hex(out, (hi >> 16) & 0xFFFF, 4);
        out.push_back('-');
        append_hex(out, hi & 0xFFFF, 4);
        out.push_back('-');
        append_hex(out, lo >> 48, 4);
        out.push_back('-');
        append_hex(out, lo & 0xFFFFFFFFFFFFull, 12);
        break;
      }
      case TemplatePart::Kind::step_value:
      case TemplatePart::Kind::ctx: {
        const auto* m = p.kind == TemplatePart::Kind::ctx ? sc.ctx : sc.steps;
        if (m == nullptr) break;
        // Lookup key "name.key" without building a string: maps are small.
        for (const auto& [k, v] : *m) {
          if (k.size() == p.text.size() + 1 + p.key.size() && k.compare(0, p.text.size(), p.text) == 0 &&
              k[p.text.size()] == '.' && k.compare(p.text.size() + 1, std::string::npos, p.key) == 0) {
            out += v;
            break;
          }
        }
        break;
      }
    }
  }
}

}  // namespace hs::load
