// The normalised plan: what a workflow file (TOML, or the same tree as JSON) becomes after parsing and
// validation. Load-time templates (${env.*}, ${vars.*}) are already resolved; the holes left are
// those resolved at dispatch (${ctx.W.K}) or per request (${vu}, ${iteration}, ${steps.S.K}, ...).
#pragma once

#include <cstdint>
#include <functional>
#include <map>
#include <optional>
#include <string>
#include <vector>

#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"

namespace hs::load {

struct TemplatePart {
  enum class Kind { literal, vu, iteration, worker, step_value, ctx, uuid, now_ms, rand_int, rand_hex };
  Kind kind = Kind::literal;
  std::string text;  // literal text; step name (step_value); workflow name (ctx)
  std::string key;   // extract name (step_value); key (ctx)
  std::int64_t a = 0, b = 0;
};

struct Template {
  std::vector<TemplatePart> parts;
  bool is_static() const noexcept {
    for (const auto& p : parts)
      if (p.kind != TemplatePart::Kind::literal) return false;
    return true;
  }
  // The text of a static template (literal parts concatenated).
  std::string literal() const;
  static Template of(std::string s) {
    Template t;
    if (!s.empty()) t.parts.push_back(TemplatePart{TemplatePart::Kind::literal, std::move(s), {}, 0, 0});
    return t;
  }
};

// Values available to runtime template holes.
struct TemplateScope {
  std::uint64_t vu = 0;
  std::uint64_t iteration = 0;
  int worker = 0;
  const std::map<std::string, std::string>* steps = nullptr;  // "step.key" -> value
  const std::map<std::string, std::string>* ctx = nullptr;    // "workflow.key" -> value
  std::uint64_t rng_state = 0x9E3779B97F4A7C15ull;
};
// Appends the rendered template to `out` (no allocation when `out` has capacity and no hole needs one).
void render(const Template& t, TemplateScope& scope, std::string& out);

enum class StepType { http, tcp, udp };
enum class Executor { constant_vus, constant_arrival_rate };
enum class WorkflowKind { test, setup };
enum class Priority { auto_, low, normal, high, exclusive };

struct StatusRange {
  int lo = 200, hi = 299;
};

struct Expect {
  std::vector<StatusRange> status;  // http; empty -> 2xx
  std::string body_contains;        // http
  std::string contains;             // tcp/udp
  std::optional<std::string> equals;
  std::optional<std::size_t> max_body;
  std::string header_name, header_contains;
};

struct Extract {
  enum class From { header, regex, json, body };
  std::string name;
  From from = From::body;
  std::string arg;  // header name, regex pattern, JSON pointer
  int group = 1;
};

enum class Metric { min, mean, p50, p75, p90, p95, p99, p999, p9999, max, error_rate, errors, rps, dropped_rate };
enum class CmpOp { lt, le, gt, ge, eq };

struct Threshold {
  std::string scope;      // "run", "workflow W", "step W.S"
  std::string key;        // as written: "p99"
  std::string condition;  // as written: "< 200ms"
  Metric metric = Metric::p99;
  CmpOp op = CmpOp::lt;
  double value = 0;   // latency: nanoseconds; rates: fraction; counts and rps: plain
  std::string where;  // FILE:LINE:COL
  // Long form `{ limit = "< 100ms", abort = true, after = "30s" }`: judged live on the merged
  // statistics once `after` has passed, and a failure stops the run (cluster: the job fails naming it).
  bool abort = false;
  Duration after{0};
};

struct Step {
  std::string name;
  StepType type = StepType::http;
  std::vector<int> after;  // indices of steps this one waits for
  Duration timeout = std::chrono::seconds(5);
  Duration connect_timeout = std::chrono::seconds(2);
  // http
  std::string method = "GET";
  bool tls = false;        // https:// (TLS through OpenSSL)
  bool tls_verify = true;  // verify the server certificate and host name
  std::string host;        // host as written (Host header)
  std::uint16_t port = 0;
  Template path;  // path and query, may hold runtime holes
  std::vector<std::pair<std::string, Template>> headers;
  Template body;
  bool keepalive = true;
  // tcp / udp
  Template send;
  std::string read_until;
  std::size_t read_bytes = 0;
  bool read_none = false;
  bool new_connection = false;  // tcp: connection = "new"
  bool reply = true;            // udp
  std::size_t max_reply = 64 * 1024;
  Expect expect;
  std::vector<Extract> extract;
  std::vector<Threshold> thresholds;
};

struct Workflow {
  std::string name;
  WorkflowKind kind = WorkflowKind::test;
  std::vector<std::string> depends_on;
  Executor executor = Executor::constant_vus;
  std::uint64_t vus = 1;
  // Cores (load-generator shards) the workflow runs on in a cluster, split over as many workers as
  // needed; 0: the manager's share of the free cores (docs/cluster.md "Parts").
  std::uint32_t cores = 0;
  Duration duration = std::chrono::seconds(60);
  std::optional<std::uint64_t> iterations;
  std::uint64_t rate = 0;
  Duration time_unit = std::chrono::seconds(1);
  std::uint64_t max_vus = 0;
  Duration pause{0};
  Duration warmup{0};
  Duration graceful_stop = std::chrono::seconds(30);
  Priority priority = Priority::auto_;
  std::vector<std::pair<std::string, Template>> provide;
  std::vector<Threshold> thresholds;
  std::vector<Step> steps;
};

struct Plan {
  int version = 1;
  std::string file;
  std::string test_name;
  std::string description;
  std::map<std::string, std::string> vars;
  std::vector<Threshold> thresholds;
  std::string out_dir;               // [output] dir ("" = default)
  std::vector<std::string> formats;  // json, csv
  std::vector<double> percentiles;   // extra percentiles reported in results.json (e.g. 75, 99.9)
  std::vector<Workflow> workflows;
  std::string hash;  // content hash of the normalised plan (hex)
};

// Lookup for ${env.NAME}; the default reads the process environment.
using EnvLookup = std::function<std::optional<std::string>(const std::string&)>;
EnvLookup process_env();

// Parses and validates a workflow file (.toml or .json). On error the status message holds one
// "FILE:LINE:COL: message" line per problem, and nothing else has happened.
Result<Plan> load_plan_file(const std::string& path, const EnvLookup& env = process_env());
Result<Plan> load_plan_text(const std::string& text, const std::string& name, bool json,
                            const EnvLookup& env = process_env());

// Parses one template string (exposed for tests). Load-time holes are resolved through vars/env.
Result<Template> parse_template(const std::string& s, const std::map<std::string, std::string>& vars,
                                const EnvLookup& env);

// Parses "500ms", "2s", "1m30s", "1h" (units us, ms, s, m, h).
Result<Duration> parse_duration(const std::string& s);

// Canonical JSON text of the normalised plan (what a cluster ships to workers; hashed for Plan::hash).
std::string plan_to_json(const Plan& p);

std::string metric_name(Metric m);
bool metric_is_latency(Metric m);

}  // namespace hs::load
