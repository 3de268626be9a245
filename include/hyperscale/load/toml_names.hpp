#pragma once
// How an error message names the type of a TOML value ("expected a string, got an integer"). One table for
// every TOML file the project reads (workflow files in load, daemon config in host). Include it only where
// toml++ is already included: it is heavy to compile.
#include <toml++/toml.h>

#include <string_view>

#include "hyperscale/base/enum_names.hpp"

namespace hs::load {

inline constexpr EnumNames<toml::node_type, 10> kTomlTypeNames{
    {"nothing", "a table", "an array", "a string", "an integer", "a float", "a boolean", "a date", "a time",
     "a date-time"},
    "a value"};
static_assert(kTomlTypeNames.covers(toml::node_type::date_time));
static_assert(static_cast<int>(toml::node_type::string) == 3 && static_cast<int>(toml::node_type::date) == 7,
              "toml::node_type changed its order: reorder kTomlTypeNames");

inline std::string_view toml_type_name(const toml::node& n) noexcept { return kTomlTypeNames(n.type()); }

}  // namespace hs::load
