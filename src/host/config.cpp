// Daemon config loader. The only translation unit of src/host that includes toml++ (it is heavy to
// compile).
#include "hyperscale/host/config.hpp"

#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <charconv>
#include <cstdlib>
#include <fstream>
#include <set>
#include <sstream>
#include <stdexcept>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/load/toml_names.hpp"

extern char** environ;

namespace hs::host {

constexpr EnumNames<ValueType, 5> kValueTypeNames{{"string", "int", "duration-ms", "bool", "string-list"}};
static_assert(kValueTypeNames.covers(ValueType::string_list));

std::string_view value_type_name(ValueType t) noexcept { return kValueTypeNames(t); }

std::string env_name(std::string_view key) {
  std::string s = "HS_";
  for (char c : key) s.push_back(c == '.' ? '_' : static_cast<char>(std::toupper(static_cast<unsigned char>(c))));
  return s;
}

namespace {

bool valid_key(std::string_view k) {
  if (k.empty() || k.front() == '.' || k.back() == '.') return false;
  char prev = 0;
  for (char c : k) {
    if (c == '.' && prev == '.') return false;
    if (!(std::islower(static_cast<unsigned char>(c)) || std::isdigit(static_cast<unsigned char>(c)) || c == '_' ||
          c == '.'))
      return false;
    prev = c;
  }
  return true;
}

std::string trim(std::string_view s) {
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.front()))) s.remove_prefix(1);
  while (!s.empty() && std::isspace(static_cast<unsigned char>(s.back()))) s.remove_suffix(1);
  return std::string(s);
}

std::optional<std::int64_t> parse_int(std::string_view s) {
  std::int64_t v = 0;
  auto [p, ec] = std::from_chars(s.data(), s.data() + s.size(), v);
  if (s.empty() || ec != std::errc() || p != s.data() + s.size()) return std::nullopt;
  return v;
}

// "250ms", "5s", "2m", "1h", or a bare number of milliseconds.
std::optional<std::int64_t> parse_duration_ms(std::string_view s) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return std::nullopt;
  auto n = parse_int(s.substr(0, i));
  if (!n) return std::nullopt;
  const std::string_view unit = s.substr(i);
  std::int64_t mul = 0;
  if (unit.empty() || unit == "ms") {
    mul = 1;
  } else if (unit == "s") {
    mul = 1000;
  } else if (unit == "m") {
    mul = 60'000;
  } else if (unit == "h") {
    mul = 3'600'000;
  } else {
    return std::nullopt;
  }
  if (*n > INT64_MAX / mul / 1'000'000) return std::nullopt;  // must fit in nanoseconds
  return *n * mul;
}

// Parses a value's text form (defaults, environment). Returns an error message or the value.
std::variant<ConfigValue, std::string> from_text(const ConfigEntry& e, std::string_view text) {
  switch (e.type) {
    case ValueType::string:
      return ConfigValue{std::string(text)};
    case ValueType::integer: {
      auto v = parse_int(trim(text));
      if (!v) return fmt::format("expected an integer, got '{}'", text);
      return ConfigValue{*v};
    }
    case ValueType::duration_ms: {
      auto v = parse_duration_ms(trim(text));
      if (!v) return fmt::format("expected a duration (e.g. 250ms, 5s, 2m, 1h, or milliseconds), got '{}'", text);
      return ConfigValue{Duration(std::chrono::milliseconds(*v))};
    }
    case ValueType::boolean: {
      std::string t = trim(text);
      std::transform(t.begin(), t.end(), t.begin(), [](unsigned char c) { return std::tolower(c); });
      if (t == "true" || t == "1" || t == "yes") return ConfigValue{true};
      if (t == "false" || t == "0" || t == "no") return ConfigValue{false};
      return fmt::format("expected a boolean (true/false), got '{}'", text);
    }
    case ValueType::string_list: {
      std::vector<std::string> out;
      std::string t = trim(text);
      if (t.empty()) return ConfigValue{out};
      std::size_t start = 0;
      for (;;) {
        const std::size_t comma = t.find(',', start);
        std::string part = trim(std::string_view(t).substr(start, comma == std::string::npos ? comma : comma - start));
        if (part.empty()) return fmt::format("empty element in list '{}'", text);
        out.push_back(std::move(part));
        if (comma == std::string::npos) break;
        start = comma + 1;
      }
      return ConfigValue{out};
    }
  }
  return std::string("unknown type");
}

std::variant<ConfigValue, std::string> from_toml(const ConfigEntry& e, const toml::node& n) {
  switch (e.type) {
    case ValueType::string:
      if (auto v = n.value_exact<std::string>()) return ConfigValue{*v};
      return fmt::format("expected a string, got {}", load::toml_type_name(n));
    case ValueType::integer:
      if (auto v = n.value_exact<std::int64_t>()) return ConfigValue{*v};
      return fmt::format("expected an integer, got {}", load::toml_type_name(n));
    case ValueType::duration_ms:
      if (auto v = n.value_exact<std::int64_t>()) {
        if (*v < 0 || *v > INT64_MAX / 1'000'000) return fmt::format("duration {} ms out of range", *v);
        return ConfigValue{Duration(std::chrono::milliseconds(*v))};
      }
      if (auto v = n.value_exact<std::string>()) return from_text(e, *v);
      return fmt::format("expected a duration (milliseconds, or text like \"5s\"), got {}", load::toml_type_name(n));
    case ValueType::boolean:
      if (auto v = n.value_exact<bool>()) return ConfigValue{*v};
      return fmt::format("expected a boolean, got {}", load::toml_type_name(n));
    case ValueType::string_list: {
      const toml::array* a = n.as_array();
      if (a == nullptr) return fmt::format("expected an array of strings, got {}", load::toml_type_name(n));
      std::vector<std::string> out;
      for (std::size_t i = 0; i < a->size(); ++i) {
        auto v = (*a)[i].value_exact<std::string>();
        if (!v) return fmt::format("element {} must be a string, got {}", i, load::toml_type_name((*a)[i]));
        out.push_back(*v);
      }
      return ConfigValue{out};
    }
  }
  return std::string("unknown type");
}

std::string value_text(const ConfigValue& v) {
  struct V {
    std::string operator()(const std::string& s) const { return toml_quote(s); }
    std::string operator()(std::int64_t i) const { return std::to_string(i); }
    std::string operator()(Duration d) const {
      return std::to_string(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
    }
    std::string operator()(bool b) const { return b ? "true" : "false"; }
    std::string operator()(const std::vector<std::string>& l) const {
      std::string s = "[";
      for (std::size_t i = 0; i < l.size(); ++i) s += (i ? ", " : "") + toml_quote(l[i]);
      return s + "]";
    }
    static std::string toml_quote(const std::string& s) {
      std::string out = "\"";
      for (char c : s) {
        if (c == '"' || c == '\\') {
          out += '\\';
          out += c;
        } else if (c == '\n') {
          out += "\\n";
        } else if (static_cast<unsigned char>(c) < 0x20) {
          out += fmt::format("\\u{:04x}", static_cast<unsigned>(c));
        } else {
          out += c;
        }
      }
      return out + "\"";
    }
  };
  return std::visit(V{}, v);
}

// Bounds and the entry's own check. Returns an error message.
std::optional<std::string> check_value(const ConfigEntry& e, const ConfigValue& v) {
  std::optional<std::int64_t> n;
  if (auto* i = std::get_if<std::int64_t>(&v)) n = *i;
  if (auto* d = std::get_if<Duration>(&v)) n = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
  if (n) {
    const char* unit = e.type == ValueType::duration_ms ? " ms" : "";
    if (e.min && *n < *e.min) return fmt::format("{}{} is below the minimum {}{}", *n, unit, *e.min, unit);
    if (e.max && *n > *e.max) return fmt::format("{}{} is above the maximum {}{}", *n, unit, *e.max, unit);
  }
  if (e.check) return e.check(v);
  return std::nullopt;
}

std::size_t edit_distance(std::string_view a, std::string_view b) {
  std::vector<std::size_t> prev(b.size() + 1), cur(b.size() + 1);
  for (std::size_t j = 0; j <= b.size(); ++j) prev[j] = j;
  for (std::size_t i = 1; i <= a.size(); ++i) {
    cur[0] = i;
    for (std::size_t j = 1; j <= b.size(); ++j)
      cur[j] = std::min({prev[j] + 1, cur[j - 1] + 1, prev[j - 1] + (a[i - 1] == b[j - 1] ? 0 : 1)});
    std::swap(prev, cur);
  }
  return prev[b.size()];
}

std::string suggestion(const ConfigSchema& schema, std::string_view key) {
  std::string best;
  std::size_t best_d = 4;
  for (const auto& e : schema) {
    const std::size_t d = edit_distance(key, e.key);
    if (d < best_d) {
      best_d = d;
      best = e.key;
    }
  }
  return best.empty() ? std::string() : fmt::format(" (did you mean '{}'?)", best);
}

std::string loc(const std::string& file, const toml::source_region& r) {
  if (r.begin.line == 0) return file;
  return fmt::format("{}:{}:{}", file, r.begin.line, r.begin.column);
}

}  // namespace

Status validate_schema(const ConfigSchema& schema) {
  std::set<std::string_view> seen;
  for (const auto& e : schema) {
    if (!valid_key(e.key)) return make_error(Errc::invalid_argument, fmt::format("config schema: bad key '{}'", e.key));
    if (!seen.insert(e.key).second)
      return make_error(Errc::invalid_argument, fmt::format("config schema: duplicate key '{}'", e.key));
    for (const auto& other : schema)
      if (other.key.size() > e.key.size() && other.key.compare(0, e.key.size(), e.key) == 0 &&
          other.key[e.key.size()] == '.')
        return make_error(Errc::invalid_argument,
                          fmt::format("config schema: key '{}' is also a table of '{}'", e.key, other.key));
    if (e.required) continue;
    auto v = from_text(e, e.default_value);
    if (auto* msg = std::get_if<std::string>(&v))
      return make_error(Errc::invalid_argument, fmt::format("config schema: default of '{}': {}", e.key, *msg));
    if (auto msg = check_value(e, std::get<ConfigValue>(v)))
      return make_error(Errc::invalid_argument, fmt::format("config schema: default of '{}': {}", e.key, *msg));
  }
  return ok_status();
}

Result<Config> Config::load(const ConfigSchema& schema, const std::string& path) {
  Env env;
  for (char** e = environ; e != nullptr && *e != nullptr; ++e) {
    std::string_view kv(*e);
    if (kv.substr(0, 3) != "HS_") continue;
    const auto eq = kv.find('=');
    if (eq == std::string_view::npos) continue;
    env.emplace(std::string(kv.substr(0, eq)), std::string(kv.substr(eq + 1)));
  }
  return load(schema, path, env);
}

Result<Config> Config::load(const ConfigSchema& schema, const std::string& path, const Env& env, Options o) {
  if (path.empty()) return parse(schema, "", "", env, o);
  std::ifstream f(path, std::ios::binary);
  if (!f) return make_error(Errc::not_found, fmt::format("{}: cannot open config file", path));
  std::stringstream ss;
  ss << f.rdbuf();
  if (f.bad()) return make_error(Errc::io_error, fmt::format("{}: read error", path));
  return parse(schema, ss.str(), path, env, o);
}

Result<Config> Config::parse(const ConfigSchema& schema, std::string_view text, const std::string& name, const Env& env,
                             Options o) {
  HS_TRY(validate_schema(schema));
  Config cfg;
  cfg.schema_ = schema;
  std::vector<std::string> errors;
  std::set<std::string> errored;  // keys with an error already (no second "required" error)
  std::map<std::string, std::size_t, std::less<>> index;
  for (std::size_t i = 0; i < cfg.schema_.size(); ++i) index.emplace(cfg.schema_[i].key, i);

  // 1. defaults
  for (std::size_t i = 0; i < cfg.schema_.size(); ++i) {
    const ConfigEntry& e = cfg.schema_[i];
    if (e.required) continue;
    cfg.items_[e.key] = Item{i, std::get<ConfigValue>(from_text(e, e.default_value)), "default"};
  }

  // 2. file
  if (!name.empty()) {
    toml::table root;
    try {
      root = toml::parse(text, name);
    } catch (const toml::parse_error& err) {
      return make_error(Errc::invalid_argument,
                        fmt::format("{}: TOML syntax error: {}", loc(name, err.source()), err.description()));
    }
    // Walks tables; a leaf must be a schema key, a table must be a prefix of one.
    std::function<void(const toml::table&, const std::string&)> walk = [&](const toml::table& t,
                                                                           const std::string& prefix) {
      for (const auto& [k, node] : t) {
        const std::string key = prefix.empty() ? std::string(k.str()) : prefix + "." + std::string(k.str());
        auto it = index.find(key);
        if (it == index.end()) {
          const toml::table* sub = node.as_table();
          bool is_prefix = false;
          for (const auto& e : cfg.schema_)
            if (e.key.size() > key.size() && e.key.compare(0, key.size(), key) == 0 && e.key[key.size()] == '.')
              is_prefix = true;
          if (sub != nullptr && is_prefix) {
            walk(*sub, key);
          } else {
            errors.push_back(
                fmt::format("{}: unknown key '{}'{}", loc(name, k.source()), key, suggestion(cfg.schema_, key)));
          }
          continue;
        }
        const ConfigEntry& e = cfg.schema_[it->second];
        auto v = from_toml(e, node);
        if (auto* msg = std::get_if<std::string>(&v)) {
          errors.push_back(fmt::format("{}: {}: {}", loc(name, node.source()), key, *msg));
          errored.insert(key);
          continue;
        }
        if (auto msg = check_value(e, std::get<ConfigValue>(v))) {
          errors.push_back(fmt::format("{}: {}: {}", loc(name, node.source()), key, *msg));
          errored.insert(key);
          continue;
        }
        cfg.items_[key] = Item{it->second, std::get<ConfigValue>(std::move(v)), loc(name, node.source())};
      }
    };
    walk(root, "");
  }

  // 3. environment
  std::map<std::string, std::size_t> env_index;
  for (std::size_t i = 0; i < cfg.schema_.size(); ++i) env_index.emplace(env_name(cfg.schema_[i].key), i);
  for (const auto& [var, value] : env) {
    if (var.rfind("HS_", 0) != 0) continue;
    auto it = env_index.find(var);
    if (it == env_index.end()) {
      if (o.strict_env) {
        std::string guess;
        for (const auto& e : cfg.schema_)
          if (edit_distance(var, env_name(e.key)) < 4) guess = fmt::format(" (did you mean {}?)", env_name(e.key));
        errors.push_back(fmt::format("env {}: unknown setting (no config key maps to it){}", var, guess));
      }
      continue;
    }
    const ConfigEntry& e = cfg.schema_[it->second];
    auto v = from_text(e, value);
    if (auto* msg = std::get_if<std::string>(&v)) {
      errors.push_back(fmt::format("env {}: {}: {}", var, e.key, *msg));
      errored.insert(e.key);
      continue;
    }
    if (auto msg = check_value(e, std::get<ConfigValue>(v))) {
      errors.push_back(fmt::format("env {}: {}: {}", var, e.key, *msg));
      errored.insert(e.key);
      continue;
    }
    cfg.items_[e.key] = Item{it->second, std::get<ConfigValue>(std::move(v)), "env " + var};
  }

  // 4. required keys
  for (const auto& e : cfg.schema_)
    if (e.required && cfg.items_.find(e.key) == cfg.items_.end() && errored.count(e.key) == 0)
      errors.push_back(fmt::format("{}: required key '{}' is not set (in the file, or env {})",
                                   name.empty() ? std::string("config") : name, e.key, env_name(e.key)));

  if (!errors.empty()) {
    std::string msg;
    for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
    return make_error(Errc::invalid_argument, std::move(msg));
  }
  return cfg;
}

const Config::Item& Config::item(std::string_view key, ValueType t) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw std::logic_error(fmt::format("config: key '{}' is not in the schema", key));
  if (schema_[it->second.index].type != t)
    throw std::logic_error(fmt::format("config: key '{}' is a {}, read as {}", key,
                                       value_type_name(schema_[it->second.index].type), value_type_name(t)));
  return it->second;
}

const std::string& Config::str(std::string_view key) const {
  return std::get<std::string>(item(key, ValueType::string).value);
}
std::int64_t Config::integer(std::string_view key) const {
  return std::get<std::int64_t>(item(key, ValueType::integer).value);
}
Duration Config::duration(std::string_view key) const {
  return std::get<Duration>(item(key, ValueType::duration_ms).value);
}
bool Config::boolean(std::string_view key) const { return std::get<bool>(item(key, ValueType::boolean).value); }
const std::vector<std::string>& Config::list(std::string_view key) const {
  return std::get<std::vector<std::string>>(item(key, ValueType::string_list).value);
}
const std::string& Config::source(std::string_view key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw std::logic_error(fmt::format("config: key '{}' is not in the schema", key));
  return it->second.source;
}

std::string Config::dump() const {
  std::string out;
  std::size_t width = 0;
  for (const auto& [k, it] : items_) width = std::max(width, k.size() + 3 + value_text(it.value).size());
  for (const auto& [k, it] : items_) {
    std::string line = k + " = " + value_text(it.value);
    out += fmt::format("{:<{}}  # {}\n", line, width, it.source);
  }
  return out;
}

Status Config::check(const std::vector<ConfigRelation>& relations) const {
  std::vector<std::string> errors;
  for (const auto& r : relations) {
    if (r.keys.empty() || !r.holds)
      throw std::logic_error(fmt::format("config: relation '{}' has no keys or no check", r.rule));
    for (const auto& k : r.keys)
      if (items_.find(k) == items_.end())
        throw std::logic_error(fmt::format("config: relation '{}' names key '{}', not in the schema", r.rule, k));
    if (r.holds(*this)) continue;
    std::string line;
    for (const auto& k : r.keys)
      line += fmt::format("{}{} = {} ({})", line.empty() ? "" : ", ", k, display(k), source(k));
    line += ": " + r.rule;
    if (!r.why.empty()) line += " (" + r.why + ")";
    errors.push_back(std::move(line));
  }
  if (errors.empty()) return ok_status();
  std::string msg;
  for (const auto& e : errors) msg += (msg.empty() ? "" : "\n") + e;
  return make_error(Errc::invalid_argument, std::move(msg));
}

Status Config::set(std::string_view key, std::string_view text, std::string source) {
  auto it = items_.find(key);
  if (it == items_.end()) throw std::logic_error(fmt::format("config: key '{}' is not in the schema", key));
  const ConfigEntry& e = schema_[it->second.index];
  auto v = from_text(e, text);
  if (auto* msg = std::get_if<std::string>(&v))
    return make_error(Errc::invalid_argument, fmt::format("{}: {} ({})", e.key, *msg, source));
  if (auto msg = check_value(e, std::get<ConfigValue>(v)))
    return make_error(Errc::invalid_argument, fmt::format("{}: {} ({})", e.key, *msg, source));
  it->second.value = std::get<ConfigValue>(std::move(v));
  it->second.source = std::move(source);
  return ok_status();
}

std::string Config::display(std::string_view key) const {
  auto it = items_.find(key);
  if (it == items_.end()) throw std::logic_error(fmt::format("config: key '{}' is not in the schema", key));
  if (const auto* d = std::get_if<Duration>(&it->second.value)) {
    const auto ms = std::chrono::duration_cast<std::chrono::milliseconds>(*d).count();
    return ms != 0 && ms % 1000 == 0 ? fmt::format("{}s", ms / 1000) : fmt::format("{}ms", ms);
  }
  return value_text(it->second.value);
}

std::string schema_markdown(const ConfigSchema& schema) {
  std::string out = "| key | environment | type | default | description |\n|---|---|---|---|---|\n";
  auto esc = [](std::string_view s) {
    std::string r;
    for (char c : s) {
      if (c == '|') {
        r += "\\|";
      } else if (c == '\n') {
        r += ' ';
      } else {
        r += c;
      }
    }
    return r;
  };
  for (const auto& e : schema) {
    std::string def = e.required ? "(required)" : e.default_value.empty() ? "\"\"" : "`" + e.default_value + "`";
    std::string type(value_type_name(e.type));
    if (e.min || e.max)
      type += fmt::format(" [{}..{}]", e.min ? std::to_string(*e.min) : "", e.max ? std::to_string(*e.max) : "");
    out += fmt::format("| `{}` | `{}` | {} | {} | {} |\n", e.key, env_name(e.key), type, esc(def), esc(e.doc));
  }
  return out;
}

}  // namespace hs::host
