// Daemon configuration: a TOML file plus environment overrides, checked against a schema the daemon
// provides. Nothing is started from a config that has an error: load() returns every problem found,
// one per line, as `FILE:LINE:COL: key: message` (file) or `env HS_KEY: message` (environment).
//
// Keys are dotted ("node.listen"); in the file they are written as tables ([node] listen = "...")
// or dotted keys. The environment variable of a key is HS_ + the key upper-cased with dots turned
// into underscores (HS_NODE_LISTEN). Precedence: environment > file > schema default.
//
// Types and their text forms (used by defaults and environment values):
//   string       any text
//   int          a decimal integer (optionally bounded by min/max)
//   duration_ms  milliseconds: a TOML integer, or text "250ms", "5s", "2m", "1h", or a bare number
//   bool         true/false (environment also 1/0, yes/no)
//   string_list  a TOML array of strings; in the environment, comma-separated
//
// Relations between keys (e.g. election.lease below election.timeout_min) are checked once every
// key has its value: Config::check(relations) reports each broken one with every key it relates,
// that key's value and where the value came from.
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <string_view>
#include <variant>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::host {

enum class ValueType { string, integer, duration_ms, boolean, string_list };
std::string_view value_type_name(ValueType t) noexcept;

using ConfigValue = std::variant<std::string, std::int64_t, Duration, bool, std::vector<std::string>>;

struct ConfigEntry {
  std::string key;  // dotted, lower case: [a-z0-9_] segments
  ValueType type = ValueType::string;
  std::string default_value;  // text form; "" with required = true means no default
  std::string doc;
  bool required = false;
  std::optional<std::int64_t> min, max;  // integer / duration_ms (in ms) bounds
  // Extra check of a parsed value (e.g. "must be an IPv4:port"); returns a message on failure.
  std::function<std::optional<std::string>(const ConfigValue&)> check;
};

using ConfigSchema = std::vector<ConfigEntry>;

class Config;

// A rule over several keys that must hold once every key has its value (file + environment +
// defaults). A broken rule is reported as
//   `election.lease = 10s (m1.toml:12:9), election.timeout_min = 5s (default): RULE (WHY)`.
struct ConfigRelation {
  std::vector<std::string> keys;  // every key the rule reads (all in the schema), named in the error
  std::string rule;               // what must hold, e.g. "election.lease must be below election.timeout_min"
  std::string why;                // what relies on it (the consequence of breaking it)
  std::function<bool(const Config&)> holds;
};

// The environment variable name of a key: "node.listen" -> "HS_NODE_LISTEN".
std::string env_name(std::string_view key);

struct ConfigOptions {
  // Unknown HS_* environment variables are errors (a typo must not be ignored silently).
  bool strict_env = true;
};

class Config {
 public:
  using Env = std::map<std::string, std::string>;
  using Options = ConfigOptions;

  // Loads `path` (empty: no file) and the process environment.
  static Result<Config> load(const ConfigSchema& schema, const std::string& path);
  // As above with an explicit environment (tests).
  static Result<Config> load(const ConfigSchema& schema, const std::string& path, const Env& env, Options o = {});
  // Parses TOML text; `name` is used in error messages instead of a file name.
  static Result<Config> parse(const ConfigSchema& schema, std::string_view toml, const std::string& name,
                              const Env& env, Options o = {});

  // Typed access; the key must be in the schema with that type (a programming error otherwise:
  // std::logic_error).
  const std::string& str(std::string_view key) const;
  std::int64_t integer(std::string_view key) const;
  Duration duration(std::string_view key) const;
  bool boolean(std::string_view key) const;
  const std::vector<std::string>& list(std::string_view key) const;
  // Where the effective value came from: "default", "FILE:LINE:COL" or "env HS_KEY".
  const std::string& source(std::string_view key) const;

  // `--print-config`: every key with its effective value (TOML syntax) and its source.
  std::string dump() const;

  // Checks relations between keys; every broken one is reported, one per line (invalid_argument).
  // A relation naming a key that is not in the schema is a programming error (std::logic_error).
  Status check(const std::vector<ConfigRelation>& relations) const;

  // Replaces the value of `key` by `text` (parsed and checked like an environment value) with the
  // given source. For values settled after loading from other keys (e.g. admin.listen "auto"), so
  // that dump() shows what is used. Errors name the key; the config is unchanged then.
  Status set(std::string_view key, std::string_view text, std::string source);

  // The effective value in a short human form for messages: durations as "250ms" / "5s",
  // strings quoted, lists as in TOML.
  std::string display(std::string_view key) const;

 private:
  struct Item {
    std::size_t index = 0;  // into schema_
    ConfigValue value;
    std::string source;
  };
  const Item& item(std::string_view key, ValueType t) const;
  ConfigSchema schema_;
  std::map<std::string, Item, std::less<>> items_;
};

// The schema as a markdown table (key, env, type, default, description) for docs.
std::string schema_markdown(const ConfigSchema& schema);

// Checks a schema itself: unique well-formed keys, parsable defaults. Config::load calls it.
Status validate_schema(const ConfigSchema& schema);

}  // namespace hs::host
