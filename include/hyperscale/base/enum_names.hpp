#pragma once
// One way to name the values of an enum: a constexpr table, indexed by the enumerator's value.
//
//   inline constexpr hs::EnumNames<Level, 6> kLevelNames{{"trace", "debug", "info", "warn", "error", "off"}};
//   static_assert(kLevelNames.covers(Level::off));   // every enumerator from 0 to the last one has a name
//   std::string_view level_name(Level l) noexcept { return kLevelNames(l); }
//
// The enum's enumerators must run 0, 1, 2, ... (no explicit gaps) and the names are listed in declaration
// order. `covers(last)` is checked at compile time next to the table, so a table that is shorter than the enum
// (an enumerator was added and the table was not) or has an empty name does not build; an enum with a
// `kCount` sentinel passes `kCount` and names everything before it. A value outside the table (a corrupt byte
// cast to the enum) gets the fallback name, never an out-of-bounds read.
#include <array>
#include <cstddef>
#include <string_view>
#include <type_traits>

namespace hs {

template <typename E, std::size_t N>
struct EnumNames {
  static_assert(std::is_enum_v<E>, "EnumNames names the values of an enum");

  std::array<const char*, N> names;
  const char* fallback = "unknown";

  static constexpr std::size_t index(E e) noexcept {
    using U = std::underlying_type_t<E>;
    const U v = static_cast<U>(e);
    if constexpr (std::is_signed_v<U>) {
      if (v < 0) return N;  // out of range
    }
    return static_cast<std::size_t>(v);
  }

  // The name of `e`, or the fallback when `e` is not an enumerator the table knows.
  constexpr const char* operator()(E e) const noexcept {
    const std::size_t i = index(e);
    return i < N ? names[i] : fallback;
  }

  // True when the table has exactly one non-empty name for each value 0..index(end) - with `end` either the
  // last enumerator (inclusive) or a kCount sentinel (exclusive, pass `sentinel = true`).
  constexpr bool covers(E end, bool sentinel = false) const noexcept {
    const std::size_t want = index(end) + (sentinel ? 0 : 1);
    if (want != N) return false;
    for (const char* n : names) {
      if (n == nullptr || n[0] == '\0') return false;
    }
    return true;
  }
};

}  // namespace hs
