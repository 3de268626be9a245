// Load subcommands: run, validate, new, ping, target (docs/cli.md, docs/load.md).
#include <arpa/inet.h>
#include <fmt/format.h>
#include <llhttp.h>
#include <netdb.h>
#include <poll.h>
#include <sys/socket.h>
#include <unistd.h>

#include <algorithm>
#include <chrono>
#include <cstdio>
#include <cstring>
#include <fstream>
#include <iterator>
#include <memory>
#include <string>

#include "cli/commands.hpp"
#include "cli/local_cluster.hpp"
#include "hyperscale/base/host_port.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/load/engine.hpp"
#include "hyperscale/load/plan.hpp"
#include "hyperscale/load/report.hpp"
#include "hyperscale/load/target.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace hs::cli {
namespace {

struct RunArgs {
  std::string file;
  int shards = 0;
  std::string out;
  bool quiet = false;
  bool direct = false;  // hidden: the previous engine driver (load::run_plan), for A/B benchmarks
};

int cmd_run(const RunArgs& a) {
  auto plan = load::load_plan_file(a.file);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().message().c_str());
    return kExitUsage;
  }
  const bool tty = isatty(STDOUT_FILENO) != 0;
  LocalRunOptions opts;
  opts.shards = a.shards;
  {
    // The job carries the file's text: the worker parses it like `validate` did.
    std::ifstream f(a.file, std::ios::binary);
    opts.plan_text.assign(std::istreambuf_iterator<char>(f), std::istreambuf_iterator<char>());
    if (!f && !f.eof()) {
      std::fprintf(stderr, "hyperscale run: cannot read %s\n", a.file.c_str());
      return kExitUsage;
    }
  }
  int last_lines = 0;
  auto last_plain = std::chrono::steady_clock::now() - std::chrono::seconds(10);
  if (!a.quiet) {
    opts.on_progress = [tty, &last_lines, &last_plain](const load::LiveSnapshot& snap) {
      if (tty) {
        const std::string text = load::live_text(snap, true);
        std::string out;
        if (last_lines > 0) out += fmt::format("\x1b[{}A", last_lines);
        for (std::size_t i = 0, start = 0; i <= text.size(); ++i)
          if (i == text.size() || text[i] == '\n') {
            if (i > start) out += "\x1b[2K" + text.substr(start, i - start) + "\n";
            start = i + 1;
          }
        last_lines = static_cast<int>(std::count(text.begin(), text.end(), '\n'));
        std::fputs(out.c_str(), stdout);
        std::fflush(stdout);
      } else {
        const auto now = std::chrono::steady_clock::now();
        if (now - last_plain < std::chrono::seconds(5)) return;
        last_plain = now;
        std::fputs(load::live_text(snap, false).c_str(), stdout);
        std::fflush(stdout);
      }
    };
    std::printf("hyperscale run %s: test '%s', %zu workflow(s), plan %s\n", a.file.c_str(), plan->test_name.c_str(),
                plan->workflows.size(), plan->hash.c_str());
    std::fflush(stdout);
  }
  Result<load::RunStats> stats = make_error(Errc::internal, "not run");
  if (a.direct) {
    load::RunOptions direct;
    direct.shards = opts.shards;
    direct.on_progress = opts.on_progress;
    stats = load::run_plan(*plan, direct);
  } else {
    stats = run_local(*plan, opts);
  }
  if (!stats.ok()) {
    std::fprintf(stderr, "hyperscale run: %s\n", stats.status().to_string().c_str());
    return stats.status().code() == Errc::unavailable ? kExitInfrastructure : kExitInternal;
  }
  const int code = load::exit_code_for(*stats);
  std::fputs(load::summary_text(*plan, *stats, code).c_str(), stdout);
  const std::string dir = !a.out.empty() ? a.out : (!plan->out_dir.empty() ? plan->out_dir : "hs-results");
  auto written = load::write_results(*plan, *stats, code, dir);
  if (!written.ok()) {
    std::fprintf(stderr, "hyperscale run: writing results: %s\n", written.status().to_string().c_str());
    return kExitInternal;
  }
  std::string files;
  for (const auto& f : *written) files += (files.empty() ? "" : ", ") + f;
  std::printf("\nresults: %s\n", files.c_str());
  if (code == kExitInfrastructure) std::printf("no request reached its target (every connection failed): exit 5\n");
  return code;
}

int cmd_validate(const std::string& file, bool show_plan) {
  auto plan = load::load_plan_file(file);
  if (!plan.ok()) {
    std::fprintf(stderr, "%s\n", plan.status().message().c_str());
    return kExitUsage;
  }
  if (show_plan) {
    std::printf("%s\n", load::plan_to_json(*plan).c_str());
    return kExitOk;
  }
  std::printf("%s: ok — test '%s', plan %s\n", file.c_str(), plan->test_name.c_str(), plan->hash.c_str());
  for (const auto& w : plan->workflows) {
    std::string load_desc;
    if (w.kind == load::WorkflowKind::setup)
      load_desc = "setup (runs once)";
    else if (w.executor == load::Executor::constant_vus)
      load_desc = fmt::format("constant-vus {} VUs for {:.1f}s{}", w.vus, to_seconds(w.duration),
                              w.iterations ? fmt::format(" or {} iterations", *w.iterations) : "");
    else
      load_desc = fmt::format("constant-arrival-rate {}/{:.3g}s (max {} in flight) for {:.1f}s", w.rate,
                              to_seconds(w.time_unit), w.max_vus, to_seconds(w.duration));
    std::printf("  workflow %-16s %s; %zu step(s)%s\n", w.name.c_str(), load_desc.c_str(), w.steps.size(),
                w.depends_on.empty() ? "" : fmt::format("; after {}", fmt::join(w.depends_on, ", ")).c_str());
  }
  return kExitOk;
}

const char* kTemplate = R"(# A hyperscale workflow file (docs/load.md has the full reference).
# It runs as written against the built-in target:
#   hyperscale target --http 8080 &        # a small HTTP/TCP/UDP echo server on loopback
#   hyperscale run THIS_FILE               # live view, summary, results in ./hs-results
version = 1

[test]
name = "quickstart"

[defaults]
timeout = "2s"            # whole-step deadline
connect_timeout = "1s"

[vars]
# ${env.NAME:-fallback} reads the environment when the file is loaded.
base = "${env.TARGET_URL:-http://127.0.0.1:8080}"

[thresholds]              # over every test step of every workflow; a failure exits 3
error_rate = "< 1%"
p99 = "< 500ms"

[[workflow]]
name = "browse"
executor = "constant-vus" # closed model: each VU loops over the steps
vus = 8
duration = "5s"

[[workflow.step]]
name = "home"
url = "${vars.base}/"
expect = { status = [200], body_contains = "ok" }

[[workflow.step]]
name = "echo"
method = "POST"
url = "${vars.base}/echo"
body = "hello from VU ${vu}, iteration ${iteration}"

[[workflow]]
name = "steady-rate"
executor = "constant-arrival-rate"   # open model: 200 iterations per second, whatever the latency
rate = 200
time_unit = "1s"
max_vus = 50                         # iterations beyond 50 in flight are dropped and counted
duration = "5s"
depends_on = ["browse"]              # starts when browse completed

[workflow.thresholds]
p95 = "< 200ms"

[[workflow.step]]
name = "json"
url = "${vars.base}/json"
)";

int cmd_new(const std::string& file, bool overwrite) {
  if (!overwrite && access(file.c_str(), F_OK) == 0) {
    std::fprintf(stderr, "hyperscale new: %s exists (use --overwrite)\n", file.c_str());
    return kExitUsage;
  }
  std::ofstream f(file, std::ios::trunc);
  f << kTemplate;
  f.close();
  if (!f) {
    std::fprintf(stderr, "hyperscale new: cannot write %s\n", file.c_str());
    return kExitUsage;
  }
  std::printf("wrote %s\nnext: hyperscale target --http 8080 &  then  hyperscale run %s\n", file.c_str(), file.c_str());
  return kExitOk;
}

// ---- ping: one HTTP request with blocking sockets, timings and headers.
struct PingState {
  int status = 0;
  bool done = false;
  std::string field, headers, body;
  bool in_value = false;
};

int cmd_ping(const std::string& url, const std::string& method, const std::string& data, double timeout_s) {
  if (url.rfind("http://", 0) != 0) {
    std::fprintf(stderr, "hyperscale ping: only http:// URLs are supported\n");
    return kExitUsage;
  }
  std::string rest = url.substr(7);
  const auto slash = rest.find('/');
  const std::string hp = rest.substr(0, slash);
  const std::string path = slash == std::string::npos ? "/" : rest.substr(slash);
  auto addr = parse_host_port(hp, HostPortRules{.default_port = 80});
  if (!addr.ok()) {
    std::fprintf(stderr, "hyperscale ping: %s\n", addr.status().message().c_str());
    return kExitUsage;
  }
  const std::string host = addr->host, port = std::to_string(addr->port);
  using clk = std::chrono::steady_clock;
  const auto t0 = clk::now();
  addrinfo hints{};
  hints.ai_socktype = SOCK_STREAM;
  addrinfo* res = nullptr;
  if (int rc = getaddrinfo(host.c_str(), port.c_str(), &hints, &res); rc != 0) {
    std::fprintf(stderr, "hyperscale ping: resolve %s: %s\n", host.c_str(), gai_strerror(rc));
    return kExitInfrastructure;
  }
  const auto t_dns = clk::now();
  const int fd = socket(res->ai_family, SOCK_STREAM, 0);
  const int timeout_ms = static_cast<int>(timeout_s * 1000);
  timeval tv{timeout_ms / 1000, (timeout_ms % 1000) * 1000};
  setsockopt(fd, SOL_SOCKET, SO_RCVTIMEO, &tv, sizeof tv);
  setsockopt(fd, SOL_SOCKET, SO_SNDTIMEO, &tv, sizeof tv);
  if (connect(fd, res->ai_addr, res->ai_addrlen) != 0) {
    std::fprintf(stderr, "hyperscale ping: connect %s: %s\n", hp.c_str(), std::strerror(errno));
    freeaddrinfo(res);
    close(fd);
    return kExitInfrastructure;
  }
  freeaddrinfo(res);
  const auto t_conn = clk::now();
  std::string req = fmt::format("{} {} HTTP/1.1\r\nHost: {}\r\nUser-Agent: hyperscale-ping\r\nConnection: close\r\n",
                                method, path, hp);
  if (!data.empty() || method == "POST" || method == "PUT") req += fmt::format("Content-Length: {}\r\n", data.size());
  req += "\r\n" + data;
  if (send(fd, req.data(), req.size(), MSG_NOSIGNAL) != static_cast<ssize_t>(req.size())) {
    std::fprintf(stderr, "hyperscale ping: send: %s\n", std::strerror(errno));
    close(fd);
    return kExitInfrastructure;
  }
  PingState st;
  llhttp_settings_t s;
  llhttp_settings_init(&s);
  s.on_header_field = [](llhttp_t* p, const char* at, std::size_t n) {
    auto* ps = static_cast<PingState*>(p->data);
    if (ps->in_value) ps->headers += "\n", ps->in_value = false;
    ps->headers.append(at, n);
    return 0;
  };
  s.on_header_value = [](llhttp_t* p, const char* at, std::size_t n) {
    auto* ps = static_cast<PingState*>(p->data);
    if (!ps->in_value) ps->headers += ": ", ps->in_value = true;
    ps->headers.append(at, n);
    return 0;
  };
  s.on_body = [](llhttp_t* p, const char* at, std::size_t n) {
    auto* ps = static_cast<PingState*>(p->data);
    if (ps->body.size() < 4096) ps->body.append(at, std::min<std::size_t>(n, 4096 - ps->body.size()));
    return 0;
  };
  s.on_message_complete = [](llhttp_t* p) {
    static_cast<PingState*>(p->data)->done = true;
    return 0;
  };
  llhttp_t parser;
  llhttp_init(&parser, HTTP_RESPONSE, &s);
  parser.data = &st;
  char buf[16384];
  auto t_first = clk::time_point{};
  while (!st.done) {
    const ssize_t n = recv(fd, buf, sizeof buf, 0);
    if (n < 0) {
      std::fprintf(stderr, "hyperscale ping: receive: %s\n", errno == EAGAIN ? "timed out" : std::strerror(errno));
      close(fd);
      return kExitInfrastructure;
    }
    if (t_first == clk::time_point{}) t_first = clk::now();
    if (n == 0) {
      llhttp_finish(&parser);
      break;
    }
    if (llhttp_execute(&parser, buf, static_cast<std::size_t>(n)) != HPE_OK) {
      std::fprintf(stderr, "hyperscale ping: bad response: %s\n", llhttp_get_error_reason(&parser));
      close(fd);
      return kExitInfrastructure;
    }
  }
  const auto t_end = clk::now();
  close(fd);
  auto ms = [](auto d) { return std::chrono::duration<double, std::milli>(d).count(); };
  std::printf("%s %s -> %d\n", method.c_str(), url.c_str(), llhttp_get_status_code(&parser));
  std::printf("timings: dns %.2fms  connect %.2fms  ttfb %.2fms  total %.2fms\n", ms(t_dns - t0), ms(t_conn - t_dns),
              ms(t_first - t_conn), ms(t_end - t0));
  std::string hdrs = st.headers;
  for (std::size_t i = 0; (i = hdrs.find('\n', i)) != std::string::npos; i += 3) hdrs.replace(i, 1, "\n  ");
  std::printf("headers:\n  %s\n", hdrs.c_str());
  std::printf("body (%zu bytes shown):\n%s\n", st.body.size(), st.body.c_str());
  return st.done ? kExitOk : kExitInfrastructure;
}

int cmd_target(int http, int tcp, int udp, const std::string& host) {
  if (http < 0 && tcp < 0 && udp < 0) http = 8080, tcp = 9000, udp = 9001;
  runtime::ShardSetOptions so;
  so.shards = 1;
  so.handle_signals = true;
  so.pin = false;
  runtime::ShardSet set(so);
  load::Target target;
  Status started;
  bool ran = false;
  Status st = set.start([&](runtime::Reactor& r) {
    ran = true;
    started = target.start(r, {http, tcp, udp, host});
    if (!started.ok())
      r.request_node_stop("target failed to start");
    else
      std::printf("hyperscale target: http=%d tcp=%d udp=%d on %s (Ctrl-C stops)\n", target.http_port(),
                  target.tcp_port(), target.udp_port(), host.c_str());
    std::fflush(stdout);
  });
  if (!st.ok()) {
    std::fprintf(stderr, "hyperscale target: %s\n", st.to_string().c_str());
    return kExitInternal;
  }
  set.wait_for_stop_request();
  set.stop();
  if (!started.ok()) {
    std::fprintf(stderr, "hyperscale target: %s\n", started.message().c_str());
    return kExitInfrastructure;
  }
  const auto& c = target.counters();
  std::printf(
      "hyperscale target: served http_requests=%llu http_connections=%llu tcp_connections=%llu tcp_bytes=%llu "
      "udp_datagrams=%llu bad_requests=%llu\n",
      static_cast<unsigned long long>(c.http_requests), static_cast<unsigned long long>(c.http_connections),
      static_cast<unsigned long long>(c.tcp_connections), static_cast<unsigned long long>(c.tcp_bytes),
      static_cast<unsigned long long>(c.udp_datagrams), static_cast<unsigned long long>(c.bad_requests));
  return kExitOk;
}

}  // namespace

void register_load(CLI::App& app, Command& cmd) {
  {
    auto a = std::make_shared<RunArgs>();
    auto* sub = app.add_subcommand("run", "Run a workflow file on every core of this machine");
    sub->add_option("file", a->file, "Workflow file (.toml or .json)")->required();
    sub->add_option("--shards", a->shards, "Shards (cores) to use; 0 = one per core")->check(CLI::Range(0, 1024));
    sub->add_option("--out", a->out,
                    "Directory for results.json and results.csv (default: [output] dir or hs-results)");
    sub->add_flag("-q,--quiet", a->quiet, "No live view (summary only)");
    // Hidden: run on the previous single-process driver instead of the in-process manager + worker.
    sub->add_flag("--direct", a->direct, "Run without the in-process manager/worker (A/B benchmarks)")->group("");
    sub->callback([&cmd, a]() { cmd.run = [a]() { return cmd_run(*a); }; });
  }
  {
    auto file = std::make_shared<std::string>();
    auto plan = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("validate", "Check a workflow file; errors as FILE:LINE:COL: message (exit 2)");
    sub->add_option("file", *file, "Workflow file")->required();
    sub->add_flag("--plan", *plan, "Print the normalised plan as JSON");
    sub->callback([&cmd, file, plan]() { cmd.run = [file, plan]() { return cmd_validate(*file, *plan); }; });
  }
  {
    auto file = std::make_shared<std::string>();
    auto ow = std::make_shared<bool>(false);
    auto* sub = app.add_subcommand("new", "Write a commented workflow template that runs against `hyperscale target`");
    sub->add_option("file", *file, "File to create")->required();
    sub->add_flag("--overwrite", *ow, "Replace an existing file");
    sub->callback([&cmd, file, ow]() { cmd.run = [file, ow]() { return cmd_new(*file, *ow); }; });
  }
  {
    auto url = std::make_shared<std::string>();
    auto method = std::make_shared<std::string>("GET");
    auto data = std::make_shared<std::string>();
    auto timeout = std::make_shared<double>(10.0);
    auto* sub = app.add_subcommand("ping", "Send one HTTP request and show status, timings, headers and body");
    sub->add_option("url", *url, "http://host:port/path")->required();
    sub->add_option("-m,--method", *method, "HTTP method")->capture_default_str();
    sub->add_option("-d,--data", *data, "Request body");
    sub->add_option("-t,--timeout", *timeout, "Seconds")->check(CLI::Range(0.01, 600.0))->capture_default_str();
    sub->callback([&cmd, url, method, data, timeout]() {
      cmd.run = [url, method, data, timeout]() { return cmd_ping(*url, *method, *data, *timeout); };
    });
  }
  {
    auto http = std::make_shared<int>(-1), tcp = std::make_shared<int>(-1), udp = std::make_shared<int>(-1);
    auto host = std::make_shared<std::string>("127.0.0.1");
    auto* sub = app.add_subcommand("target",
                                   "Built-in HTTP/TCP/UDP echo target on 127.0.0.1 (or --host) for demos and tests "
                                   "(no flags: --http 8080 --tcp 9000 --udp 9001)");
    sub->add_option("--http", *http, "HTTP port (0 = any free port)")->check(CLI::Range(0, 65535));
    sub->add_option("--tcp", *tcp, "TCP echo port")->check(CLI::Range(0, 65535));
    sub->add_option("--udp", *udp, "UDP echo port")->check(CLI::Range(0, 65535));
    sub->add_option("--host", *host, "IPv4 address to listen on (e.g. one reachable from other network namespaces)")
        ->capture_default_str();
    sub->callback([&cmd, http, tcp, udp, host]() {
      cmd.run = [http, tcp, udp, host]() { return cmd_target(*http, *tcp, *udp, *host); };
    });
  }
}

}  // namespace hs::cli
