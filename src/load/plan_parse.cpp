// Workflow file → validated, normalised Plan. The only translation unit that includes toml++ (it is
// heavy to compile). JSON files are read with nlohmann-json and converted to the same tree, so one
// validator serves both syntaxes.
#include <fmt/format.h>
#include <toml++/toml.h>

#include <algorithm>
#include <cctype>
#include <cstdlib>
#include <cstring>
#include <fstream>
#include <nlohmann/json.hpp>
#include <set>
#include <sstream>

#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/host_port.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/toml_names.hpp"

namespace hs::load {
namespace {

using Json = nlohmann::json;

// Positions of every value in a (valid) JSON text, by path ("workflow[0].step[1].url"), so a JSON
// file's validation errors carry LINE:COL like a TOML file's.
class JsonPositions {
 public:
  explicit JsonPositions(const std::string& t) : t_(t) { value(""); }
  std::optional<std::pair<int, int>> find(std::string path) const {
    // Error paths are written loosely ("[test].name", "top level.x"): normalise, then walk up.
    if (path.rfind("top level", 0) == 0) path = path.size() > 10 ? path.substr(10) : "";
    if (!path.empty() && path[0] == '[') {
      const auto e = path.find(']');
      if (e != std::string::npos) path = path.substr(1, e - 1) + path.substr(e + 1);
    }
    for (;;) {
      auto it = pos_.find(path);
      if (it != pos_.end()) return it->second;
      const auto cut = path.find_last_of(".[");
      if (cut == std::string::npos || path.empty()) return std::nullopt;
      path = path.substr(0, cut);
    }
  }

 private:
  void ws() {
    while (i_ < t_.size() && std::isspace(static_cast<unsigned char>(t_[i_]))) adv();
  }
  void adv() {
    if (t_[i_] == '\n')
      ++line_, col_ = 1;
    else
      ++col_;
    ++i_;
  }
  std::string str() {
    std::string out;
    adv();  // opening quote
    while (i_ < t_.size() && t_[i_] != '"') {
      if (t_[i_] == '\\') adv();
      if (i_ < t_.size()) out += t_[i_], adv();
    }
    if (i_ < t_.size()) adv();
    return out;
  }
  void value(const std::string& path) {
    ws();
    if (i_ >= t_.size()) return;
    pos_.emplace(path, std::pair{line_, col_});
    const char ch = t_[i_];
    if (ch == '{') {
      adv();
      for (;;) {
        ws();
        if (i_ >= t_.size() || t_[i_] == '}') break;
        if (t_[i_] == ',') {
          adv();
          continue;
        }
        const std::string k = str();
        ws();
        if (i_ < t_.size() && t_[i_] == ':') adv();
        value(path.empty() ? k : path + "." + k);
      }
      if (i_ < t_.size()) adv();
    } else if (ch == '[') {
      adv();
      int n = 0;
      for (;;) {
        ws();
        if (i_ >= t_.size() || t_[i_] == ']') break;
        if (t_[i_] == ',') {
          adv();
          continue;
        }
        value(fmt::format("{}[{}]", path, n++));
      }
      if (i_ < t_.size()) adv();
    } else if (ch == '"') {
      str();
    } else {
      while (i_ < t_.size() && !std::strchr(",]} \t\r\n", t_[i_])) adv();
    }
  }
  const std::string& t_;
  std::size_t i_ = 0;
  int line_ = 1, col_ = 1;
  std::map<std::string, std::pair<int, int>> pos_;
};

struct Ctx {
  std::string file;
  std::vector<std::string> errors;
  const EnvLookup* env = nullptr;
  std::map<std::string, std::string> vars;
  std::optional<JsonPositions> json;

  std::string loc(const toml::node* n, const std::string& path) const {
    if (n != nullptr && n->source().begin.line > 0)
      return fmt::format("{}:{}:{}", file, n->source().begin.line, n->source().begin.column);
    if (json)
      if (auto p = json->find(path)) return fmt::format("{}:{}:{}", file, p->first, p->second);
    return fmt::format("{}:1:1 ({})", file, path);
  }
  void err(const toml::node* n, const std::string& path, const std::string& msg) {
    errors.push_back(fmt::format("{}: {}", loc(n, path), msg));
  }
};

// Reports keys of `t` that are not in `allowed`.
void check_keys(Ctx& c, const toml::table& t, const std::string& path, std::initializer_list<const char*> allowed) {
  for (auto&& [k, v] : t) {
    bool ok = false;
    for (const char* a : allowed) ok = ok || k.str() == a;
    if (!ok) c.err(&v, path + "." + std::string(k.str()), fmt::format("unknown key '{}' in {}", k.str(), path));
  }
}

std::optional<std::string> get_string(Ctx& c, const toml::table& t, const char* key, const std::string& path,
                                      bool required = false, const toml::node* parent = nullptr) {
  const toml::node* n = t.get(key);
  if (n == nullptr) {
    if (required) c.err(parent, path, fmt::format("{}: missing required key '{}'", path, key));
    return std::nullopt;
  }
  if (!n->is_string()) {
    c.err(n, path + "." + key, fmt::format("'{}' must be a string, not {}", key, toml_type_name(*n)));
    return std::nullopt;
  }
  return n->as_string()->get();
}

std::optional<std::int64_t> get_int(Ctx& c, const toml::table& t, const char* key, const std::string& path,
                                    std::int64_t lo, std::int64_t hi) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_integer()) {
    c.err(n, path + "." + key, fmt::format("'{}' must be an integer, not {}", key, toml_type_name(*n)));
    return std::nullopt;
  }
  const std::int64_t v = n->as_integer()->get();
  if (v < lo || v > hi) {
    c.err(n, path + "." + key, fmt::format("'{}' = {} is out of range [{}, {}]", key, v, lo, hi));
    return std::nullopt;
  }
  return v;
}

std::optional<bool> get_bool(Ctx& c, const toml::table& t, const char* key, const std::string& path) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_boolean()) {
    c.err(n, path + "." + key, fmt::format("'{}' must be true or false, not {}", key, toml_type_name(*n)));
    return std::nullopt;
  }
  return n->as_boolean()->get();
}

std::optional<Duration> get_duration(Ctx& c, const toml::table& t, const char* key, const std::string& path) {
  auto s = get_string(c, t, key, path);
  if (!s) return std::nullopt;
  auto d = parse_duration(*s);
  if (!d.ok()) {
    c.err(t.get(key), path + "." + key, fmt::format("'{}': {}", key, d.status().message()));
    return std::nullopt;
  }
  return *d;
}

std::optional<std::vector<std::string>> get_string_list(Ctx& c, const toml::table& t, const char* key,
                                                        const std::string& path) {
  const toml::node* n = t.get(key);
  if (n == nullptr) return std::nullopt;
  if (!n->is_array()) {
    c.err(n, path + "." + key, fmt::format("'{}' must be an array of strings", key));
    return std::nullopt;
  }
  std::vector<std::string> out;
  for (auto& el : *n->as_array()) {
    if (!el.is_string()) {
      c.err(&el, path + "." + key, fmt::format("'{}' must hold strings only, found {}", key, toml_type_name(el)));
      return std::nullopt;
    }
    out.push_back(el.as_string()->get());
  }
  return out;
}

Result<std::size_t> parse_size(const std::string& s) {
  std::size_t i = 0;
  while (i < s.size() && std::isdigit(static_cast<unsigned char>(s[i]))) ++i;
  if (i == 0) return make_error(Errc::invalid_argument, fmt::format("bad size '{}' (examples: 512, 64KiB, 1MiB)", s));
  const std::uint64_t n = std::strtoull(s.substr(0, i).c_str(), nullptr, 10);
  const std::string unit = s.substr(i);
  std::uint64_t mul = 1;
  if (unit.empty() || unit == "B")
    mul = 1;
  else if (unit == "KiB")
    mul = 1024;
  else if (unit == "MiB")
    mul = 1024 * 1024;
  else
    return make_error(Errc::invalid_argument, fmt::format("bad size unit in '{}' (B, KiB, MiB)", s));
  return static_cast<std::size_t>(n * mul);
}

// Template parsing with load-time resolution.
Result<Template> parse_template_impl(const std::string& s, const std::map<std::string, std::string>& vars,
                                     const EnvLookup& env, bool allow_runtime) {
  Template t;
  std::string lit;
  auto flush = [&]() {
    if (!lit.empty()) t.parts.push_back(TemplatePart{TemplatePart::Kind::literal, std::move(lit), {}, 0, 0});
    lit.clear();
  };
  std::size_t i = 0;
  while (i < s.size()) {
    if (s[i] == '$' && i + 1 < s.size() && s[i + 1] == '{') {
      const std::size_t end = s.find('}', i + 2);
      if (end == std::string::npos)
        return make_error(Errc::invalid_argument, fmt::format("unterminated '${{' in '{}'", s));
      const std::string e = s.substr(i + 2, end - i - 2);
      i = end + 1;
      auto runtime = [&](TemplatePart p) -> Status {
        if (!allow_runtime)
          return make_error(Errc::invalid_argument,
                            fmt::format("'${{{}}}' is not allowed here (only env and vars)", e));
        flush();
        t.parts.push_back(std::move(p));
        return ok_status();
      };
      if (e.rfind("env.", 0) == 0) {
        std::string name = e.substr(4), fallback;
        bool has_fb = false;
        if (auto p = name.find(":-"); p != std::string::npos) {
          fallback = name.substr(p + 2);
          name = name.substr(0, p);
          has_fb = true;
        }
        auto v = env ? env(name) : std::nullopt;
        if (v)
          lit += *v;
        else if (has_fb)
          lit += fallback;
        else
          return make_error(
              Errc::invalid_argument,
              fmt::format("environment variable '{}' is not set (give a fallback: ${{env.{}:-value}})", name, name));
      } else if (e.rfind("vars.", 0) == 0) {
        auto it = vars.find(e.substr(5));
        if (it == vars.end())
          return make_error(Errc::invalid_argument,
                            fmt::format("unknown variable '{}' ([vars] has no such key)", e.substr(5)));
        lit += it->second;
      } else if (e == "vu") {
        HS_TRY(runtime({TemplatePart::Kind::vu, {}, {}, 0, 0}));
      } else if (e == "iteration") {
        HS_TRY(runtime({TemplatePart::Kind::iteration, {}, {}, 0, 0}));
      } else if (e == "worker") {
        HS_TRY(runtime({TemplatePart::Kind::worker, {}, {}, 0, 0}));
      } else if (e == "uuid") {
        HS_TRY(runtime({TemplatePart::Kind::uuid, {}, {}, 0, 0}));
      } else if (e == "now.ms") {
        HS_TRY(runtime({TemplatePart::Kind::now_ms, {}, {}, 0, 0}));
      } else if (e.rfind("steps.", 0) == 0 || e.rfind("ctx.", 0) == 0) {
        const bool steps = e[0] == 's';
        const std::string rest = e.substr(steps ? 6 : 4);
        const auto dot = rest.find('.');
        if (dot == std::string::npos || dot == 0 || dot + 1 == rest.size())
          return make_error(Errc::invalid_argument,
                            fmt::format("'${{{}}}' must be ${{{}.NAME.KEY}}", e, steps ? "steps" : "ctx"));
        HS_TRY(runtime({steps ? TemplatePart::Kind::step_value : TemplatePart::Kind::ctx, rest.substr(0, dot),
                        rest.substr(dot + 1), 0, 0}));
      } else if (e.rfind("rand.int(", 0) == 0 && e.back() == ')') {
        const std::string args = e.substr(9, e.size() - 10);
        const auto comma = args.find(',');
        char* endp = nullptr;
        if (comma == std::string::npos)
          return make_error(Errc::invalid_argument, fmt::format("'${{{}}}': expected rand.int(a,b)", e));
        const long long a = std::strtoll(args.c_str(), &endp, 10);
        const long long b = std::strtoll(args.c_str() + comma + 1, &endp, 10);
        if (b < a) return make_error(Errc::invalid_argument, fmt::format("'${{{}}}': b must be >= a", e));
        HS_TRY(runtime({TemplatePart::Kind::rand_int, {}, {}, a, b}));
      } else if (e.rfind("rand.hex(", 0) == 0 && e.back() == ')') {
        const long long n = std::strtoll(e.c_str() + 9, nullptr, 10);
        if (n < 1 || n > 256)
          return make_error(Errc::invalid_argument, fmt::format("'${{{}}}': length must be 1..256", e));
        HS_TRY(runtime({TemplatePart::Kind::rand_hex, {}, {}, n, 0}));
      } else {
        return make_error(Errc::invalid_argument, fmt::format("unknown template '${{{}}}'", e));
      }
    } else {
      lit += s[i++];
    }
  }
  flush();
  return t;
}

Json toml_to_json(const toml::node& n) {
  switch (n.type()) {
    case toml::node_type::string:
      return n.as_string()->get();
    case toml::node_type::integer:
      return n.as_integer()->get();
    case toml::node_type::floating_point:
      return n.as_floating_point()->get();
    case toml::node_type::boolean:
      return n.as_boolean()->get();
    case toml::node_type::array: {
      Json a = Json::array();
      for (auto& el : *n.as_array()) a.push_back(toml_to_json(el));
      return a;
    }
    case toml::node_type::table: {
      Json o = Json::object();
      for (auto&& [k, v] : *n.as_table()) o[std::string(k.str())] = toml_to_json(v);
      return o;
    }
    default:
      return "<date/time>";  // dates and times have no meaning in a workflow file
  }
}

void json_to_toml(const Json& j, toml::table& out);
void json_into_array(const Json& j, toml::array& out) {
  for (const auto& el : j) {
    if (el.is_object()) {
      toml::table t;
      json_to_toml(el, t);
      out.push_back(std::move(t));
    } else if (el.is_array()) {
      toml::array a;
      json_into_array(el, a);
      out.push_back(std::move(a));
    } else if (el.is_string())
      out.push_back(el.get<std::string>());
    else if (el.is_boolean())
      out.push_back(el.get<bool>());
    else if (el.is_number_integer())
      out.push_back(el.get<std::int64_t>());
    else if (el.is_number())
      out.push_back(el.get<double>());
  }
}
void json_to_toml(const Json& j, toml::table& out) {
  for (auto it = j.begin(); it != j.end(); ++it) {
    const Json& v = it.value();
    if (v.is_object()) {
      toml::table t;
      json_to_toml(v, t);
      out.insert(it.key(), std::move(t));
    } else if (v.is_array()) {
      toml::array a;
      json_into_array(v, a);
      out.insert(it.key(), std::move(a));
    } else if (v.is_string())
      out.insert(it.key(), v.get<std::string>());
    else if (v.is_boolean())
      out.insert(it.key(), v.get<bool>());
    else if (v.is_number_integer())
      out.insert(it.key(), v.get<std::int64_t>());
    else if (v.is_number())
      out.insert(it.key(), v.get<double>());
  }
}

std::optional<Metric> metric_of(const std::string& k) {
  static const std::pair<const char*, Metric> kMap[] = {{"min", Metric::min},
                                                        {"mean", Metric::mean},
                                                        {"p50", Metric::p50},
                                                        {"p75", Metric::p75},
                                                        {"p90", Metric::p90},
                                                        {"p95", Metric::p95},
                                                        {"p99", Metric::p99},
                                                        {"p99.9", Metric::p999},
                                                        {"p99.99", Metric::p9999},
                                                        {"max", Metric::max},
                                                        {"error_rate", Metric::error_rate},
                                                        {"errors", Metric::errors},
                                                        {"rps", Metric::rps},
                                                        {"dropped_rate", Metric::dropped_rate}};
  for (auto& [n, m] : kMap)
    if (k == n) return m;
  return std::nullopt;
}

Result<std::pair<CmpOp, double>> parse_condition(Metric m, const std::string& cond) {
  std::size_t i = 0;
  while (i < cond.size() && cond[i] == ' ') ++i;
  CmpOp op;
  auto starts = [&](const char* p) { return cond.compare(i, std::strlen(p), p) == 0; };
  if (starts("<="))
    op = CmpOp::le, i += 2;
  else if (starts(">="))
    op = CmpOp::ge, i += 2;
  else if (starts("=="))
    op = CmpOp::eq, i += 2;
  else if (starts("<"))
    op = CmpOp::lt, i += 1;
  else if (starts(">"))
    op = CmpOp::gt, i += 1;
  else
    return make_error(Errc::invalid_argument, fmt::format("condition '{}' must start with one of < <= > >= ==", cond));
  while (i < cond.size() && cond[i] == ' ') ++i;
  std::string v = cond.substr(i);
  while (!v.empty() && v.back() == ' ') v.pop_back();
  char* end = nullptr;
  const double num = std::strtod(v.c_str(), &end);
  if (end == v.c_str()) return make_error(Errc::invalid_argument, fmt::format("condition '{}' has no number", cond));
  const std::string unit = end;
  if (metric_is_latency(m)) {
    double mul;
    if (unit == "us")
      mul = 1e3;
    else if (unit == "ms")
      mul = 1e6;
    else if (unit == "s")
      mul = 1e9;
    else
      return make_error(Errc::invalid_argument, fmt::format("latency condition '{}' needs a unit (us, ms, s)", cond));
    return std::pair{op, num * mul};
  }
  if (m == Metric::error_rate || m == Metric::dropped_rate) {
    if (unit == "%") return std::pair{op, num / 100.0};
    if (unit.empty()) return std::pair{op, num};
    return make_error(Errc::invalid_argument, fmt::format("rate condition '{}': write 1% or 0.01", cond));
  }
  if (!unit.empty())
    return make_error(Errc::invalid_argument, fmt::format("condition '{}': unexpected unit '{}'", cond, unit));
  return std::pair{op, num};
}

void parse_thresholds(Ctx& c, const toml::node* n, const std::string& path, const std::string& scope,
                      std::vector<Threshold>& out) {
  if (n == nullptr) return;
  if (!n->is_table()) {
    c.err(n, path, "thresholds must be a table of metric = \"<op> <value>\"");
    return;
  }
  for (auto&& [k, v] : *n->as_table()) {
    const std::string key(k.str());
    auto m = metric_of(key);
    if (!m) {
      c.err(&v, path + "." + key,
            fmt::format("unknown threshold metric '{}' (min, mean, p50, p75, p90, p95, p99, p99.9, p99.99, max, "
                        "error_rate, errors, rps, dropped_rate)",
                        key));
      continue;
    }
    std::string cond;
    bool abort = false;
    Duration after{0};
    if (v.is_string()) {
      cond = v.as_string()->get();
    } else if (v.is_table()) {
      const auto& t = *v.as_table();
      const std::string at = path + "." + key;
      check_keys(c, t, at, {"limit", "abort", "after"});
      auto lim = get_string(c, t, "limit", at, true, &v);
      if (!lim) continue;
      cond = *lim;
      // abort = true: judged live (cluster runs, `hyperscale run`) and a failure ends the run.
      if (auto ab = get_bool(c, t, "abort", at)) abort = *ab;
      if (t.get("after") != nullptr) {
        auto d = get_duration(c, t, "after", at);  // garbage and negative durations: an error there
        if (!d) continue;
        if (!abort) {
          c.err(t.get("after"), at + ".after",
                fmt::format("threshold '{}': 'after' applies to abort thresholds only (add abort = true)", key));
          continue;
        }
        after = *d;
      }
    } else {
      c.err(&v, path + "." + key, fmt::format("threshold '{}' must be a string like \"< 200ms\"", key));
      continue;
    }
    auto pc = parse_condition(*m, cond);
    if (!pc.ok()) {
      c.err(&v, path + "." + key, fmt::format("threshold '{}': {}", key, pc.status().message()));
      continue;
    }
    Threshold th;
    th.scope = scope;
    th.key = key;
    th.condition = cond;
    th.metric = *m;
    th.op = pc->first;
    th.value = pc->second;
    th.abort = abort;
    th.after = after;
    th.where = c.loc(&v, path + "." + key);
    out.push_back(std::move(th));
  }
}

std::optional<Template> templ(Ctx& c, const toml::node* n, const std::string& path, const std::string& s,
                              bool allow_runtime = true) {
  auto t = parse_template_impl(s, c.vars, *c.env, allow_runtime);
  if (!t.ok()) {
    c.err(n, path, t.status().message());
    return std::nullopt;
  }
  return std::move(t).value();
}

bool split_host_port(const std::string& hp, std::string& host, std::uint16_t& port, std::uint16_t default_port) {
  auto parsed = parse_host_port(hp, HostPortRules{.default_port = default_port});
  if (!parsed.ok()) return false;
  host = std::move(parsed->host);
  port = parsed->port;
  return true;
}

Expect parse_expect(Ctx& c, const toml::node* n, const std::string& path, StepType type) {
  Expect e;
  if (n == nullptr) return e;
  if (!n->is_table()) {
    c.err(n, path, "expect must be a table");
    return e;
  }
  const auto& t = *n->as_table();
  if (type == StepType::http) {
    check_keys(c, t, path, {"status", "body_contains", "header", "max_body"});
    if (const toml::node* s = t.get("status")) {
      std::vector<const toml::node*> items;
      if (s->is_array())
        for (auto& el : *s->as_array()) items.push_back(&el);
      else
        items.push_back(s);
      for (const toml::node* it : items) {
        if (it->is_integer()) {
          const auto v = it->as_integer()->get();
          if (v < 100 || v > 599)
            c.err(it, path + ".status", fmt::format("status {} is not an HTTP status (100..599)", v));
          e.status.push_back({static_cast<int>(v), static_cast<int>(v)});
        } else if (it->is_string() && it->as_string()->get().size() == 3 && it->as_string()->get().substr(1) == "xx" &&
                   it->as_string()->get()[0] >= '1' && it->as_string()->get()[0] <= '5') {
          const int cls = it->as_string()->get()[0] - '0';
          e.status.push_back({cls * 100, cls * 100 + 99});
        } else {
          c.err(it, path + ".status", "status entries must be codes (200) or classes (\"2xx\")");
        }
      }
    }
    if (auto s = get_string(c, t, "body_contains", path)) e.body_contains = *s;
    if (const toml::node* h = t.get("header")) {
      if (!h->is_table()) {
        c.err(h, path + ".header", "header must be { name = \"...\", contains = \"...\" }");
      } else {
        check_keys(c, *h->as_table(), path + ".header", {"name", "contains"});
        e.header_name = get_string(c, *h->as_table(), "name", path + ".header", true, h).value_or("");
        e.header_contains = get_string(c, *h->as_table(), "contains", path + ".header").value_or("");
      }
    }
  } else {
    check_keys(c, t, path, {"contains", "equals", "hex", "max_body"});
    if (auto s = get_string(c, t, "contains", path)) e.contains = *s;
    if (auto s = get_string(c, t, "equals", path)) e.equals = *s;
    if (auto s = get_string(c, t, "hex", path)) {
      std::string bytes;
      bool ok = s->size() % 2 == 0;
      for (std::size_t i = 0; ok && i < s->size(); i += 2) {
        char* end = nullptr;
        const std::string b = s->substr(i, 2);
        const long v = std::strtol(b.c_str(), &end, 16);
        ok = end == b.c_str() + 2;
        bytes.push_back(static_cast<char>(v));
      }
      if (!ok)
        c.err(t.get("hex"), path + ".hex", "hex must be an even number of hex digits");
      else
        e.equals = bytes;
    }
  }
  if (const toml::node* mb = t.get("max_body")) {
    if (mb->is_integer() && mb->as_integer()->get() > 0)
      e.max_body = static_cast<std::size_t>(mb->as_integer()->get());
    else if (mb->is_string()) {
      auto sz = parse_size(mb->as_string()->get());
      if (sz.ok())
        e.max_body = *sz;
      else
        c.err(mb, path + ".max_body", sz.status().message());
    } else
      c.err(mb, path + ".max_body", "max_body must be a size like 64KiB");
  }
  return e;
}

std::vector<Extract> parse_extract(Ctx& c, const toml::node* n, const std::string& path) {
  std::vector<Extract> out;
  if (n == nullptr) return out;
  if (!n->is_table()) {
    c.err(n, path, "extract must be a table of name = { from = ..., ... }");
    return out;
  }
  for (auto&& [k, v] : *n->as_table()) {
    const std::string p = path + "." + std::string(k.str());
    if (!v.is_table()) {
      c.err(&v, p, "an extract must be { from = \"json\"|\"header\"|\"regex\"|\"body\", ... }");
      continue;
    }
    const auto& t = *v.as_table();
    check_keys(c, t, p, {"from", "path", "name", "pattern", "group"});
    Extract x;
    x.name = std::string(k.str());
    auto from = get_string(c, t, "from", p, true, &v);
    if (!from) continue;
    if (*from == "json") {
      x.from = Extract::From::json;
      x.arg = get_string(c, t, "path", p, true, &v).value_or("");
      if (!x.arg.empty() && x.arg[0] != '/') c.err(t.get("path"), p + ".path", "path must be a JSON pointer like /a/b");
    } else if (*from == "header") {
      x.from = Extract::From::header;
      x.arg = get_string(c, t, "name", p, true, &v).value_or("");
    } else if (*from == "regex") {
      x.from = Extract::From::regex;
      x.arg = get_string(c, t, "pattern", p, true, &v).value_or("");
      x.group = static_cast<int>(get_int(c, t, "group", p, 0, 9).value_or(1));
    } else if (*from == "body") {
      x.from = Extract::From::body;
    } else {
      c.err(t.get("from"), p + ".from", fmt::format("unknown extract source '{}' (json, header, regex, body)", *from));
      continue;
    }
    out.push_back(std::move(x));
  }
  return out;
}

struct Defaults {
  bool tls_verify = true;
  Duration timeout = std::chrono::seconds(5);
  Duration connect_timeout = std::chrono::seconds(2);
  std::vector<std::pair<std::string, Template>> headers;
};

void parse_step(Ctx& c, const toml::node& sn, const std::string& path, const Defaults& d, Workflow& wf,
                std::vector<std::optional<std::vector<std::string>>>& afters) {
  if (!sn.is_table()) {
    c.err(&sn, path, "a step must be a table ([[workflow.step]])");
    return;
  }
  const auto& t = *sn.as_table();
  Step s;
  s.name = get_string(c, t, "name", path, true, &sn).value_or("");
  for (const auto& other : wf.steps)
    if (!s.name.empty() && other.name == s.name)
      c.err(t.get("name"), path + ".name", fmt::format("duplicate step name '{}'", s.name));
  const std::string type = get_string(c, t, "type", path).value_or("http");
  s.timeout = get_duration(c, t, "timeout", path).value_or(d.timeout);
  s.connect_timeout = get_duration(c, t, "connect_timeout", path).value_or(d.connect_timeout);
  afters.push_back(get_string_list(c, t, "after", path));
  parse_thresholds(c, t.get("thresholds"), path + ".thresholds", "step " + wf.name + "." + s.name, s.thresholds);
  s.extract = parse_extract(c, t.get("extract"), path + ".extract");
  if (auto of = get_string(c, t, "on_failure", path); of && *of != "skip-dependents")
    c.err(t.get("on_failure"), path + ".on_failure",
          "only on_failure = \"skip-dependents\" is supported by this version");

  if (type == "http") {
    s.type = StepType::http;
    check_keys(c, t, path,
               {"name", "type", "after", "timeout", "connect_timeout", "on_failure", "expect", "extract", "thresholds",
                "method", "url", "headers", "body", "json", "keepalive", "follow_redirects", "tls_verify"});
    s.tls_verify = get_bool(c, t, "tls_verify", path).value_or(d.tls_verify);
    s.method = get_string(c, t, "method", path).value_or("GET");
    static const std::set<std::string> kMethods = {"GET", "POST", "PUT", "DELETE", "PATCH", "HEAD", "OPTIONS"};
    if (!kMethods.count(s.method))
      c.err(t.get("method"), path + ".method", fmt::format("unknown HTTP method '{}'", s.method));
    if (auto fr = get_int(c, t, "follow_redirects", path, 0, 10); fr && *fr != 0)
      c.err(t.get("follow_redirects"), path + ".follow_redirects",
            "following redirects is not supported by this version (use 0)");
    s.keepalive = get_bool(c, t, "keepalive", path).value_or(true);
    auto url = get_string(c, t, "url", path, true, &sn);
    if (url) {
      auto ut = templ(c, t.get("url"), path + ".url", *url);
      if (ut) {
        // The scheme, host and port must be static; the path may hold runtime holes.
        std::string prefix =
            ut->parts.empty() || ut->parts[0].kind != TemplatePart::Kind::literal ? "" : ut->parts[0].text;
        std::size_t scheme_len = 0;
        if (prefix.rfind("http://", 0) == 0)
          scheme_len = 7;
        else if (prefix.rfind("https://", 0) == 0)
          scheme_len = 8, s.tls = true;
        else
          c.err(t.get("url"), path + ".url", fmt::format("url '{}' must start with http:// or https://", *url));
        if (scheme_len) {
          const auto slash = prefix.find('/', scheme_len);
          const std::string hp =
              prefix.substr(scheme_len, slash == std::string::npos ? std::string::npos : slash - scheme_len);
          if (slash == std::string::npos && ut->parts.size() > 1) {
            c.err(t.get("url"), path + ".url", "the url's host and port must not contain runtime templates");
          } else if (!split_host_port(hp, s.host, s.port, s.tls ? 443 : 80)) {
            c.err(t.get("url"), path + ".url", fmt::format("bad host:port '{}' in url", hp));
          } else {
            Template p = *ut;
            p.parts[0].text = slash == std::string::npos ? "/" : prefix.substr(slash);
            s.path = std::move(p);
          }
        }
      }
    }
    for (const auto& h : d.headers) s.headers.push_back(h);
    if (const toml::node* hn = t.get("headers")) {
      if (!hn->is_table())
        c.err(hn, path + ".headers", "headers must be a table of name = \"value\"");
      else
        for (auto&& [k, v] : *hn->as_table()) {
          if (!v.is_string()) {
            c.err(&v, path + ".headers", fmt::format("header '{}' must be a string", k.str()));
            continue;
          }
          auto ht = templ(c, &v, path + ".headers", v.as_string()->get());
          if (!ht) continue;
          auto it = std::find_if(s.headers.begin(), s.headers.end(), [&](auto& p) {
            return strcasecmp(p.first.c_str(), std::string(k.str()).c_str()) == 0;
          });
          if (it != s.headers.end())
            it->second = std::move(*ht);
          else
            s.headers.emplace_back(std::string(k.str()), std::move(*ht));
        }
    }
    const toml::node* body = t.get("body");
    const toml::node* json = t.get("json");
    if (body && json) c.err(json, path + ".json", "give either body or json, not both");
    if (body) {
      if (!body->is_string())
        c.err(body, path + ".body", "body must be a string");
      else if (auto bt = templ(c, body, path + ".body", body->as_string()->get()))
        s.body = std::move(*bt);
    } else if (json) {
      if (auto bt = templ(c, json, path + ".json", toml_to_json(*json).dump())) s.body = std::move(*bt);
      if (std::none_of(s.headers.begin(), s.headers.end(),
                       [](auto& p) { return strcasecmp(p.first.c_str(), "content-type") == 0; }))
        s.headers.emplace_back("Content-Type", Template::of("application/json"));
    }
  } else if (type == "tcp" || type == "udp") {
    s.type = type == "tcp" ? StepType::tcp : StepType::udp;
    if (s.type == StepType::tcp)
      check_keys(
          c, t, path,
          {"name", "type", "after", "timeout", "connect_timeout", "on_failure", "expect", "extract", "thresholds",
           "address", "tls", "send", "send_hex", "read_until", "read_bytes", "read", "connection"});
    else
      check_keys(c, t, path,
                 {"name", "type", "after", "timeout", "connect_timeout", "on_failure", "expect", "extract",
                  "thresholds", "address", "send", "send_hex", "reply", "max_reply"});
    if (auto a = get_string(c, t, "address", path, true, &sn)) {
      auto at = templ(c, t.get("address"), path + ".address", *a, false);
      if (at && !split_host_port(at->literal(), s.host, s.port, 0))
        c.err(t.get("address"), path + ".address", fmt::format("address '{}' must be host:port", at->literal()));
    }
    if (get_bool(c, t, "tls", path).value_or(false))
      c.err(t.get("tls"), path + ".tls", "TLS for TCP steps is not supported by this version");
    const toml::node* send = t.get("send");
    const toml::node* hex = t.get("send_hex");
    if (send && hex) c.err(hex, path + ".send_hex", "give either send or send_hex, not both");
    if (send) {
      if (!send->is_string())
        c.err(send, path + ".send", "send must be a string");
      else if (auto st = templ(c, send, path + ".send", send->as_string()->get()))
        s.send = std::move(*st);
    } else if (hex) {
      std::string bytes;
      const std::string hs = hex->is_string() ? hex->as_string()->get() : "";
      bool ok = !hs.empty() && hs.size() % 2 == 0;
      for (std::size_t i = 0; ok && i < hs.size(); i += 2) {
        char* end = nullptr;
        const std::string b = hs.substr(i, 2);
        const long v = std::strtol(b.c_str(), &end, 16);
        ok = end == b.c_str() + 2;
        bytes.push_back(static_cast<char>(v));
      }
      if (!ok)
        c.err(hex, path + ".send_hex", "send_hex must be an even number of hex digits");
      else
        s.send = Template::of(bytes);
    } else if (s.type == StepType::udp) {
      c.err(&sn, path, fmt::format("{}: udp step needs send or send_hex", path));
    }
    if (s.type == StepType::tcp) {
      if (auto ru = get_string(c, t, "read_until", path)) {
        if (ru->empty()) c.err(t.get("read_until"), path + ".read_until", "read_until must not be empty");
        s.read_until = *ru;
      }
      if (auto rb = get_int(c, t, "read_bytes", path, 1, 16 << 20)) s.read_bytes = static_cast<std::size_t>(*rb);
      if (auto r = get_string(c, t, "read", path)) {
        if (*r == "none")
          s.read_none = true;
        else
          c.err(t.get("read"), path + ".read", "read must be \"none\" (or use read_until / read_bytes)");
      }
      const int framing = !s.read_until.empty() + (s.read_bytes > 0) + s.read_none;
      if (framing != 1)
        c.err(&sn, path,
              fmt::format("{}: a tcp step needs exactly one of read_until, read_bytes, read = \"none\"", path));
      if (auto conn = get_string(c, t, "connection", path)) {
        if (*conn == "new")
          s.new_connection = true;
        else if (*conn != "keep")
          c.err(t.get("connection"), path + ".connection", "connection must be \"keep\" or \"new\"");
      }
    } else {
      s.reply = get_bool(c, t, "reply", path).value_or(true);
      if (const toml::node* mr = t.get("max_reply")) {
        auto sz = mr->is_string()
                      ? parse_size(mr->as_string()->get())
                      : (mr->is_integer()
                             ? Result<std::size_t>(static_cast<std::size_t>(mr->as_integer()->get()))
                             : Result<std::size_t>(make_error(Errc::invalid_argument, "max_reply must be a size")));
        if (!sz.ok() || *sz == 0 || *sz > 65507)
          c.err(mr, path + ".max_reply", "max_reply must be a size in 1..65507 bytes");
        else
          s.max_reply = *sz;
      }
    }
  } else {
    c.err(t.get("type"), path + ".type", fmt::format("unknown step type '{}' (http, tcp, udp)", type));
  }
  s.expect = parse_expect(c, t.get("expect"), path + ".expect", s.type);
  wf.steps.push_back(std::move(s));
}

void parse_workflow(Ctx& c, const toml::node& wn, const std::string& path, const Defaults& d, Plan& plan,
                    std::vector<const toml::node*>& wf_nodes) {
  if (!wn.is_table()) {
    c.err(&wn, path, "a workflow must be a table ([[workflow]])");
    return;
  }
  const auto& t = *wn.as_table();
  check_keys(c, t, path, {"name",        "kind",    "depends_on",    "on_dependency_failure",
                          "executor",    "vus",     "cores",         "duration",
                          "iterations",  "rate",    "time_unit",     "max_vus",
                          "pause",       "warmup",  "graceful_stop", "priority",
                          "datacenters", "provide", "thresholds",    "step"});
  Workflow wf;
  wf.name = get_string(c, t, "name", path, true, &wn).value_or("");
  for (const auto& o : plan.workflows)
    if (!wf.name.empty() && o.name == wf.name)
      c.err(t.get("name"), path + ".name", fmt::format("duplicate workflow name '{}'", wf.name));
  const std::string kind = get_string(c, t, "kind", path).value_or("test");
  if (kind == "setup")
    wf.kind = WorkflowKind::setup;
  else if (kind != "test")
    c.err(t.get("kind"), path + ".kind", "kind must be \"test\" or \"setup\"");
  wf.depends_on = get_string_list(c, t, "depends_on", path).value_or(std::vector<std::string>{});
  if (auto odf = get_string(c, t, "on_dependency_failure", path); odf && *odf != "skip")
    c.err(t.get("on_dependency_failure"), path + ".on_dependency_failure",
          "only \"skip\" is supported by this version");
  const std::string ex = get_string(c, t, "executor", path).value_or("constant-vus");
  if (ex == "constant-arrival-rate")
    wf.executor = Executor::constant_arrival_rate;
  else if (ex != "constant-vus")
    c.err(t.get("executor"), path + ".executor",
          fmt::format("unknown executor '{}' (constant-vus, constant-arrival-rate)", ex));
  constexpr std::int64_t kBig = 10'000'000;
  if (auto v = get_int(c, t, "vus", path, 1, 1'000'000))
    wf.vus = static_cast<std::uint64_t>(*v);
  else if (wf.kind == WorkflowKind::test && wf.executor == Executor::constant_vus && !t.get("vus"))
    c.err(&wn, path, fmt::format("{} '{}': constant-vus needs vus", path, wf.name));
  if (auto v = get_int(c, t, "cores", path, 1, 4096)) wf.cores = static_cast<std::uint32_t>(*v);
  wf.duration = get_duration(c, t, "duration", path).value_or(std::chrono::seconds(60));
  if (wf.duration <= Duration{0}) c.err(t.get("duration"), path + ".duration", "duration must be > 0");
  if (auto v = get_int(c, t, "iterations", path, 1, std::int64_t{1} << 50))
    wf.iterations = static_cast<std::uint64_t>(*v);
  if (auto v = get_int(c, t, "rate", path, 1, kBig)) wf.rate = static_cast<std::uint64_t>(*v);
  wf.time_unit = get_duration(c, t, "time_unit", path).value_or(std::chrono::seconds(1));
  if (wf.time_unit <= Duration{0}) c.err(t.get("time_unit"), path + ".time_unit", "time_unit must be > 0");
  if (auto v = get_int(c, t, "max_vus", path, 1, 1'000'000)) wf.max_vus = static_cast<std::uint64_t>(*v);
  if (wf.executor == Executor::constant_arrival_rate) {
    if (!wf.rate) c.err(&wn, path, fmt::format("{} '{}': constant-arrival-rate needs rate", path, wf.name));
    if (!wf.max_vus) wf.max_vus = std::max<std::uint64_t>(1, wf.rate * 2);
    if (t.get("pause")) c.err(t.get("pause"), path + ".pause", "pause applies to constant-vus only");
  } else {
    if (t.get("rate")) c.err(t.get("rate"), path + ".rate", "rate applies to constant-arrival-rate only");
    if (t.get("max_vus")) c.err(t.get("max_vus"), path + ".max_vus", "max_vus applies to constant-arrival-rate only");
  }
  wf.pause = get_duration(c, t, "pause", path).value_or(Duration{0});
  wf.warmup = get_duration(c, t, "warmup", path).value_or(Duration{0});
  if (wf.warmup >= wf.duration && t.get("warmup"))
    c.err(t.get("warmup"), path + ".warmup", "warmup must be shorter than duration");
  wf.graceful_stop = get_duration(c, t, "graceful_stop", path).value_or(std::chrono::seconds(30));
  const std::string pr = get_string(c, t, "priority", path).value_or("auto");
  if (pr == "auto")
    wf.priority = Priority::auto_;
  else if (pr == "low")
    wf.priority = Priority::low;
  else if (pr == "normal")
    wf.priority = Priority::normal;
  else if (pr == "high")
    wf.priority = Priority::high;
  else if (pr == "exclusive")
    wf.priority = Priority::exclusive;
  else
    c.err(t.get("priority"), path + ".priority", "priority must be auto, low, normal, high or exclusive");
  (void)get_string_list(c, t, "datacenters", path);
  parse_thresholds(c, t.get("thresholds"), path + ".thresholds", "workflow " + wf.name, wf.thresholds);

  const toml::node* steps = t.get("step");
  std::vector<std::optional<std::vector<std::string>>> afters;
  std::vector<const toml::node*> step_nodes;
  if (steps == nullptr || !steps->is_array() || steps->as_array()->empty()) {
    c.err(steps ? steps : &wn, path, fmt::format("{} '{}' has no steps ([[workflow.step]])", path, wf.name));
  } else {
    int i = 0;
    for (auto& sn : *steps->as_array()) {
      step_nodes.push_back(&sn);
      parse_step(c, sn, fmt::format("{}.step[{}]", path, i++), d, wf, afters);
    }
  }
  // Step DAG: default edge to the previous step; explicit `after` names.
  for (std::size_t i = 0; i < wf.steps.size() && i < afters.size(); ++i) {
    if (!afters[i]) {
      if (i > 0) wf.steps[i].after.push_back(static_cast<int>(i - 1));
      continue;
    }
    for (const auto& name : *afters[i]) {
      auto it = std::find_if(wf.steps.begin(), wf.steps.end(), [&](const Step& s) { return s.name == name; });
      const toml::node* an = step_nodes[i]->as_table()->get("after");
      if (it == wf.steps.end())
        c.err(an, path + ".after", fmt::format("step '{}': after names unknown step '{}'", wf.steps[i].name, name));
      else if (it - wf.steps.begin() == static_cast<long>(i))
        c.err(an, path + ".after", fmt::format("step '{}' cannot come after itself", name));
      else
        wf.steps[i].after.push_back(static_cast<int>(it - wf.steps.begin()));
    }
  }
  // Cycle check (Kahn).
  {
    std::vector<int> indeg(wf.steps.size(), 0);
    for (const auto& s : wf.steps) (void)s;
    for (std::size_t i = 0; i < wf.steps.size(); ++i) indeg[i] = static_cast<int>(wf.steps[i].after.size());
    std::vector<int> ready;
    for (std::size_t i = 0; i < indeg.size(); ++i)
      if (indeg[i] == 0) ready.push_back(static_cast<int>(i));
    std::size_t seen = 0;
    while (!ready.empty()) {
      const int n = ready.back();
      ready.pop_back();
      ++seen;
      for (std::size_t j = 0; j < wf.steps.size(); ++j)
        for (int a : wf.steps[j].after)
          if (a == n && --indeg[j] == 0) ready.push_back(static_cast<int>(j));
    }
    if (seen != wf.steps.size())
      c.err(steps, path, fmt::format("workflow '{}': the steps' after edges form a cycle", wf.name));
  }
  // ${steps.S.K} must name an ancestor step with that extract.
  auto ancestors = [&](std::size_t i) {
    std::set<int> out;
    std::vector<int> todo(wf.steps[i].after.begin(), wf.steps[i].after.end());
    while (!todo.empty() && out.size() <= wf.steps.size()) {
      const int a = todo.back();
      todo.pop_back();
      if (!out.insert(a).second) continue;
      for (int b : wf.steps[static_cast<std::size_t>(a)].after) todo.push_back(b);
    }
    return out;
  };
  for (std::size_t i = 0; i < wf.steps.size() && i < step_nodes.size(); ++i) {
    const auto anc = ancestors(i);
    auto check = [&](const Template& tp) {
      for (const auto& p : tp.parts) {
        if (p.kind != TemplatePart::Kind::step_value) continue;
        auto it = std::find_if(wf.steps.begin(), wf.steps.end(), [&](const Step& s) { return s.name == p.text; });
        if (it == wf.steps.end() || !anc.count(static_cast<int>(it - wf.steps.begin())))
          c.err(step_nodes[i], path,
                fmt::format("step '{}': ${{steps.{}.{}}} must name a step it runs after", wf.steps[i].name, p.text,
                            p.key));
        else if (std::none_of(it->extract.begin(), it->extract.end(),
                              [&](const Extract& x) { return x.name == p.key; }))
          c.err(step_nodes[i], path,
                fmt::format("step '{}': step '{}' extracts no '{}'", wf.steps[i].name, p.text, p.key));
      }
    };
    check(wf.steps[i].path);
    check(wf.steps[i].body);
    check(wf.steps[i].send);
    for (const auto& h : wf.steps[i].headers) check(h.second);
  }
  if (const toml::node* pv = t.get("provide")) {
    if (wf.kind != WorkflowKind::setup)
      c.err(pv, path + ".provide", "provide is only allowed on kind = \"setup\" workflows");
    else if (!pv->is_table())
      c.err(pv, path + ".provide", "provide must be a table of key = \"template\"");
    else
      for (auto&& [k, v] : *pv->as_table()) {
        if (!v.is_string()) {
          c.err(&v, path + ".provide", fmt::format("provide '{}' must be a string", k.str()));
          continue;
        }
        if (auto pt = templ(c, &v, path + ".provide", v.as_string()->get()))
          wf.provide.emplace_back(std::string(k.str()), *pt);
      }
  }
  wf_nodes.push_back(&wn);
  plan.workflows.push_back(std::move(wf));
}

Result<Plan> validate(Ctx& c, const toml::table& root) {
  Plan plan;
  plan.file = c.file;
  check_keys(c, root, "top level", {"version", "test", "defaults", "vars", "thresholds", "output", "workflow"});
  if (const toml::node* v = root.get("version")) {
    if (!v->is_integer() || v->as_integer()->get() != 1) c.err(v, "version", "version must be 1");
  } else {
    c.err(nullptr, "version", "missing required key 'version' (version = 1)");
  }
  std::string stem = c.file;
  if (auto p = stem.find_last_of('/'); p != std::string::npos) stem = stem.substr(p + 1);
  if (auto p = stem.find('.'); p != std::string::npos) stem = stem.substr(0, p);
  plan.test_name = stem;
  if (const toml::node* tn = root.get("test")) {
    if (!tn->is_table())
      c.err(tn, "test", "[test] must be a table");
    else {
      check_keys(c, *tn->as_table(), "[test]", {"name", "description", "tags"});
      plan.test_name = get_string(c, *tn->as_table(), "name", "test").value_or(stem);
      plan.description = get_string(c, *tn->as_table(), "description", "test").value_or("");
    }
  }
  if (const toml::node* vn = root.get("vars")) {
    if (!vn->is_table())
      c.err(vn, "vars", "[vars] must be a table");
    else
      for (auto&& [k, v] : *vn->as_table()) {
        if (!v.is_string()) {
          c.err(&v, "vars", fmt::format("var '{}' must be a string", k.str()));
          continue;
        }
        auto vt = templ(c, &v, "vars." + std::string(k.str()), v.as_string()->get(), false);
        if (vt) c.vars[std::string(k.str())] = vt->literal();
      }
  }
  plan.vars = c.vars;
  Defaults d;
  if (const toml::node* dn = root.get("defaults")) {
    if (!dn->is_table())
      c.err(dn, "defaults", "[defaults] must be a table");
    else {
      const auto& t = *dn->as_table();
      check_keys(c, t, "[defaults]", {"timeout", "connect_timeout", "tls_verify", "headers"});
      d.timeout = get_duration(c, t, "timeout", "defaults").value_or(d.timeout);
      d.connect_timeout = get_duration(c, t, "connect_timeout", "defaults").value_or(d.connect_timeout);
      d.tls_verify = get_bool(c, t, "tls_verify", "defaults").value_or(true);
      if (const toml::node* hn = t.get("headers")) {
        if (!hn->is_table())
          c.err(hn, "defaults.headers", "[defaults.headers] must be a table");
        else
          for (auto&& [k, v] : *hn->as_table()) {
            if (!v.is_string()) {
              c.err(&v, "defaults.headers", fmt::format("header '{}' must be a string", k.str()));
              continue;
            }
            if (auto ht = templ(c, &v, "defaults.headers", v.as_string()->get()))
              d.headers.emplace_back(std::string(k.str()), *ht);
          }
      }
    }
  }
  parse_thresholds(c, root.get("thresholds"), "thresholds", "run", plan.thresholds);
  plan.formats = {"json", "csv"};
  if (const toml::node* on = root.get("output")) {
    if (!on->is_table())
      c.err(on, "output", "[output] must be a table");
    else {
      const auto& t = *on->as_table();
      check_keys(c, t, "[output]", {"formats", "dir", "percentiles"});
      plan.out_dir = get_string(c, t, "dir", "output").value_or("");
      if (auto f = get_string_list(c, t, "formats", "output")) {
        plan.formats = *f;
        for (const auto& x : *f)
          if (x != "json" && x != "csv")
            c.err(t.get("formats"), "output.formats", fmt::format("unsupported output format '{}' (json, csv)", x));
      }
      if (const toml::node* pn = t.get("percentiles")) {
        if (!pn->is_array())
          c.err(pn, "output.percentiles", "percentiles must be an array of numbers");
        else
          for (auto& el : *pn->as_array()) {
            const double v = el.is_integer() ? static_cast<double>(el.as_integer()->get())
                                             : (el.is_floating_point() ? el.as_floating_point()->get() : -1.0);
            if (v <= 0 || v > 100)
              c.err(&el, "output.percentiles", "percentiles must be numbers in (0, 100]");
            else
              plan.percentiles.push_back(v);
          }
      }
    }
  }
  std::vector<const toml::node*> wf_nodes;
  const toml::node* wn = root.get("workflow");
  if (wn == nullptr || !wn->is_array() || wn->as_array()->empty()) {
    c.err(wn, "workflow", "the file defines no workflow ([[workflow]])");
  } else {
    int i = 0;
    for (auto& w : *wn->as_array()) parse_workflow(c, w, fmt::format("workflow[{}]", i++), d, plan, wf_nodes);
  }
  // Workflow dependencies: known names, no cycles; ctx references point at setup dependencies.
  for (std::size_t i = 0; i < plan.workflows.size() && i < wf_nodes.size(); ++i) {
    const auto& wf = plan.workflows[i];
    const toml::node* dn = wf_nodes[i]->as_table()->get("depends_on");
    for (const auto& dep : wf.depends_on) {
      if (dep == wf.name)
        c.err(dn, "depends_on", fmt::format("workflow '{}' depends on itself", wf.name));
      else if (std::none_of(plan.workflows.begin(), plan.workflows.end(),
                            [&](const Workflow& w) { return w.name == dep; }))
        c.err(dn, "depends_on", fmt::format("workflow '{}' depends on unknown workflow '{}'", wf.name, dep));
    }
    auto check_ctx = [&](const Template& tp) {
      for (const auto& p : tp.parts) {
        if (p.kind != TemplatePart::Kind::ctx) continue;
        auto it = std::find_if(plan.workflows.begin(), plan.workflows.end(),
                               [&](const Workflow& w) { return w.name == p.text; });
        if (it == plan.workflows.end() ||
            std::find(wf.depends_on.begin(), wf.depends_on.end(), p.text) == wf.depends_on.end())
          c.err(wf_nodes[i], "workflow",
                fmt::format("workflow '{}': ${{ctx.{}.{}}} needs '{}' in depends_on", wf.name, p.text, p.key, p.text));
        else if (std::none_of(it->provide.begin(), it->provide.end(), [&](auto& kv) { return kv.first == p.key; }))
          c.err(wf_nodes[i], "workflow",
                fmt::format("workflow '{}': workflow '{}' provides no '{}'", wf.name, p.text, p.key));
      }
    };
    for (const auto& s : wf.steps) {
      check_ctx(s.path);
      check_ctx(s.body);
      check_ctx(s.send);
      for (const auto& h : s.headers) check_ctx(h.second);
    }
  }
  {
    std::map<std::string, int> state;  // 0 new, 1 visiting, 2 done
    std::function<bool(const std::string&)> visit = [&](const std::string& n) {
      if (state[n] == 1) return false;
      if (state[n] == 2) return true;
      state[n] = 1;
      auto it =
          std::find_if(plan.workflows.begin(), plan.workflows.end(), [&](const Workflow& w) { return w.name == n; });
      if (it != plan.workflows.end())
        for (const auto& d2 : it->depends_on)
          if (d2 != n && !visit(d2)) return false;
      state[n] = 2;
      return true;
    };
    for (std::size_t i = 0; i < plan.workflows.size() && i < wf_nodes.size(); ++i)
      if (!visit(plan.workflows[i].name)) {
        c.err(wf_nodes[i], "workflow", fmt::format("workflow '{}': depends_on forms a cycle", plan.workflows[i].name));
        break;
      }
  }
  if (!c.errors.empty()) {
    std::string msg;
    for (const auto& e : c.errors) msg += e + "\n";
    msg.pop_back();
    return make_error(Errc::invalid_argument, std::move(msg));
  }
  const std::string canon = plan_to_json(plan);
  std::uint64_t h = 1469598103934665603ull;
  for (unsigned char ch : canon) h = (h ^ ch) * 1099511628211ull;
  plan.hash = fmt::format("{:016x}", h);
  return plan;
}

Json template_json(const Template& t) {
  std::string s;
  for (const auto& p : t.parts) {
    switch (p.kind) {
      case TemplatePart::Kind::literal:
        s += p.text;
        break;
      case TemplatePart::Kind::vu:
        s += "${vu}";
        break;
      case TemplatePart::Kind::iteration:
        s += "${iteration}";
        break;
      case TemplatePart::Kind::worker:
        s += "${worker}";
        break;
      case TemplatePart::Kind::uuid:
        s += "${uuid}";
        break;
      case TemplatePart::Kind::now_ms:
        s += "${now.ms}";
        break;
      case TemplatePart::Kind::step_value:
        s += "${steps." + p.text + "." + p.key + "}";
        break;
      case TemplatePart::Kind::ctx:
        s += "${ctx." + p.text + "." + p.key + "}";
        break;
      case TemplatePart::Kind::rand_int:
        s += fmt::format("${{rand.int({},{})}}", p.a, p.b);
        break;
      case TemplatePart::Kind::rand_hex:
        s += fmt::format("${{rand.hex({})}}", p.a);
        break;
    }
  }
  return s;
}

Json thresholds_json(const std::vector<Threshold>& ts) {
  Json o = Json::object();
  for (const auto& t : ts) {
    if (t.abort)
      o[t.key] = {{"limit", t.condition}, {"abort", true}, {"after_ns", t.after.count()}};
    else
      o[t.key] = t.condition;
  }
  return o;
}

}  // namespace

EnvLookup process_env() {
  return [](const std::string& n) -> std::optional<std::string> {
    const char* v = std::getenv(n.c_str());
    if (v == nullptr) return std::nullopt;
    return std::string(v);
  };
}

Result<Duration> parse_duration(const std::string& s) {
  if (s.empty()) return make_error(Errc::invalid_argument, "empty duration");
  std::size_t i = 0;
  double total_ns = 0;
  while (i < s.size()) {
    const std::size_t start = i;
    while (i < s.size() && (std::isdigit(static_cast<unsigned char>(s[i])) || s[i] == '.')) ++i;
    if (start == i)
      return make_error(Errc::invalid_argument, fmt::format("bad duration '{}' (examples: 500ms, 2s, 1m30s)", s));
    const double n = std::strtod(s.substr(start, i - start).c_str(), nullptr);
    const std::size_t us = i;
    while (i < s.size() && std::isalpha(static_cast<unsigned char>(s[i]))) ++i;
    const std::string unit = s.substr(us, i - us);
    double mul;
    if (unit == "us")
      mul = 1e3;
    else if (unit == "ms")
      mul = 1e6;
    else if (unit == "s")
      mul = 1e9;
    else if (unit == "m")
      mul = 60e9;
    else if (unit == "h")
      mul = 3600e9;
    else
      return make_error(Errc::invalid_argument, fmt::format("bad duration '{}': unit must be us, ms, s, m or h", s));
    total_ns += n * mul;
  }
  return Duration(static_cast<std::int64_t>(total_ns));
}

Result<Template> parse_template(const std::string& s, const std::map<std::string, std::string>& vars,
                                const EnvLookup& env) {
  return parse_template_impl(s, vars, env, true);
}

Result<Plan> load_plan_text(const std::string& text, const std::string& name, bool json, const EnvLookup& env) {
  Ctx c;
  c.file = name;
  c.env = &env;
  toml::table root;
  if (json) {
    Json j;
    try {
      j = Json::parse(text);
    } catch (const Json::parse_error& e) {
      // Byte offset -> line:col.
      std::size_t line = 1, col = 1;
      for (std::size_t i = 0; i + 1 < e.byte && i < text.size(); ++i) {
        if (text[i] == '\n')
          ++line, col = 1;
        else
          ++col;
      }
      return make_error(Errc::invalid_argument, fmt::format("{}:{}:{}: invalid JSON: {}", name, line, col, e.what()));
    }
    if (!j.is_object())
      return make_error(Errc::invalid_argument, fmt::format("{}:1:1: the JSON document must be an object", name));
    json_to_toml(j, root);
    c.json.emplace(text);
  } else {
    try {
      root = toml::parse(text, name);
    } catch (const toml::parse_error& e) {
      return make_error(Errc::invalid_argument, fmt::format("{}:{}:{}: invalid TOML: {}", name, e.source().begin.line,
                                                            e.source().begin.column, e.description()));
    }
  }
  return validate(c, root);
}

Result<Plan> load_plan_file(const std::string& path, const EnvLookup& env) {
  std::ifstream in(path, std::ios::binary);
  if (!in) return make_error(Errc::invalid_argument, fmt::format("{}: cannot open: {}", path, std::strerror(errno)));
  std::stringstream ss;
  ss << in.rdbuf();
  const bool json = path.size() > 5 && path.substr(path.size() - 5) == ".json";
  return load_plan_text(ss.str(), path, json, env);
}

std::string plan_to_json(const Plan& p) {
  Json j;
  j["version"] = p.version;
  j["test"] = {{"name", p.test_name}, {"description", p.description}};
  j["thresholds"] = thresholds_json(p.thresholds);
  j["output"] = {{"dir", p.out_dir}, {"formats", p.formats}, {"percentiles", p.percentiles}};
  Json wfs = Json::array();
  for (const auto& w : p.workflows) {
    Json wj;
    wj["name"] = w.name;
    wj["kind"] = w.kind == WorkflowKind::setup ? "setup" : "test";
    wj["depends_on"] = w.depends_on;
    wj["executor"] = w.executor == Executor::constant_vus ? "constant-vus" : "constant-arrival-rate";
    wj["vus"] = w.vus;
    if (w.cores > 0) wj["cores"] = w.cores;
    wj["duration_ns"] = w.duration.count();
    wj["iterations"] = w.iterations ? Json(*w.iterations) : Json(nullptr);
    wj["rate"] = w.rate;
    wj["time_unit_ns"] = w.time_unit.count();
    wj["max_vus"] = w.max_vus;
    wj["pause_ns"] = w.pause.count();
    wj["warmup_ns"] = w.warmup.count();
    wj["graceful_stop_ns"] = w.graceful_stop.count();
    wj["priority"] = static_cast<int>(w.priority);
    Json pv = Json::object();
    for (const auto& [k, v] : w.provide) pv[k] = template_json(v);
    wj["provide"] = pv;
    wj["thresholds"] = thresholds_json(w.thresholds);
    Json steps = Json::array();
    for (const auto& s : w.steps) {
      Json sj;
      sj["name"] = s.name;
      sj["type"] = s.type == StepType::http ? "http" : (s.type == StepType::tcp ? "tcp" : "udp");
      sj["after"] = s.after;
      sj["timeout_ns"] = s.timeout.count();
      sj["connect_timeout_ns"] = s.connect_timeout.count();
      sj["host"] = s.host;
      sj["port"] = s.port;
      if (s.type == StepType::http) {
        sj["method"] = s.method;
        sj["path"] = template_json(s.path);
        Json hs = Json::array();
        for (const auto& [k, v] : s.headers) hs.push_back({k, template_json(v)});
        sj["headers"] = hs;
        sj["body"] = template_json(s.body);
        sj["keepalive"] = s.keepalive;
        sj["tls"] = s.tls;
        sj["tls_verify"] = s.tls_verify;
      } else {
        sj["send"] = template_json(s.send);
        sj["read_until"] = s.read_until;
        sj["read_bytes"] = s.read_bytes;
        sj["read_none"] = s.read_none;
        sj["new_connection"] = s.new_connection;
        sj["reply"] = s.reply;
        sj["max_reply"] = s.max_reply;
      }
      Json ex = Json::array();
      for (const auto& r : s.expect.status) ex.push_back({r.lo, r.hi});
      sj["expect"] = {{"status", ex},
                      {"body_contains", s.expect.body_contains},
                      {"contains", s.expect.contains},
                      {"equals", s.expect.equals ? Json(*s.expect.equals) : Json(nullptr)},
                      {"header", {s.expect.header_name, s.expect.header_contains}}};
      Json xs = Json::array();
      for (const auto& x : s.extract) xs.push_back({x.name, static_cast<int>(x.from), x.arg, x.group});
      sj["extract"] = xs;
      sj["thresholds"] = thresholds_json(s.thresholds);
      steps.push_back(sj);
    }
    wj["steps"] = steps;
    wfs.push_back(wj);
  }
  j["workflow"] = wfs;
  return j.dump();
}

constexpr EnumNames<Metric, 14> kMetricNames{{"min", "mean", "p50", "p75", "p90", "p95", "p99", "p99.9", "p99.99",
                                              "max", "error_rate", "errors", "rps", "dropped_rate"},
                                             "?"};
static_assert(kMetricNames.covers(Metric::dropped_rate));

std::string metric_name(Metric m) { return kMetricNames(m); }

bool metric_is_latency(Metric m) {
  return m == Metric::min || m == Metric::mean || m == Metric::p50 || m == Metric::p75 || m == Metric::p90 ||
         m == Metric::p95 || m == Metric::p99 || m == Metric::p999 || m == Metric::p9999 || m == Metric::max;
}

}  // namespace hs::load
