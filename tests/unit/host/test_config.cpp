// Daemon config: TOML + environment against a schema; every error class; dump and docs table.
#include <catch2/catch.hpp>

#include <fstream>

#include "helpers.hpp"
#include "hyperscale/host/config.hpp"
#include "hyperscale/host/daemon.hpp"

using namespace hs;
using namespace hs::host;
using namespace std::chrono_literals;

namespace {

ConfigSchema schema() {
  using T = ValueType;
  ConfigSchema s;
  s.push_back({"node.listen",
               T::string,
               "127.0.0.1:7101",
               "listen address",
               false,
               {},
               {},
               [](const ConfigValue& v) -> std::optional<std::string> {
                 if (std::get<std::string>(v).find(':') == std::string::npos) return "expected IPv4:port";
                 return std::nullopt;
               }});
  s.push_back({"node.cores", T::integer, "4", "cores", false, 1, 256, {}});
  s.push_back({"node.heartbeat", T::duration_ms, "1s", "heartbeat period", false, 10, {}, {}});
  s.push_back({"node.verbose", T::boolean, "false", "chatty", false, {}, {}, {}});
  s.push_back({"cluster.seeds", T::string_list, "", "seed | peers", false, {}, {}, {}});
  s.push_back({"cluster.name", T::string, "", "required name", true, {}, {}, {}});
  return s;
}

Result<Config> parse(std::string_view toml, Config::Env env = {}) {
  return Config::parse(schema(), toml, "d.toml", env);
}

std::string error_of(const Result<Config>& r) {
  REQUIRE(!r.ok());
  return r.status().message();
}

}  // namespace

TEST_CASE("Config: defaults < file < environment, with sources", "[host][config]") {
  auto c = parse(R"(
[node]
cores = 8
heartbeat = "250ms"
[cluster]
name = "dc1"
seeds = ["127.0.0.1:7101", "127.0.0.1:7102"]
)",
                 {{"HS_NODE_CORES", "16"}, {"HS_NODE_VERBOSE", "yes"}, {"PATH", "/bin"}});
  REQUIRE(c.ok());
  CHECK(c->str("node.listen") == "127.0.0.1:7101");
  CHECK(c->source("node.listen") == "default");
  CHECK(c->integer("node.cores") == 16);
  CHECK(c->source("node.cores") == "env HS_NODE_CORES");
  CHECK(c->duration("node.heartbeat") == 250ms);
  CHECK(c->source("node.heartbeat") == "d.toml:4:13");
  CHECK(c->boolean("node.verbose"));
  CHECK(c->list("cluster.seeds") == std::vector<std::string>{"127.0.0.1:7101", "127.0.0.1:7102"});
  CHECK(c->str("cluster.name") == "dc1");
  CHECK_THROWS_AS(c->integer("node.listen"), std::logic_error);
  CHECK_THROWS_AS(c->str("no.such"), std::logic_error);

  const std::string dump = c->dump();
  CHECK(dump.find("node.cores = 16") != std::string::npos);
  CHECK(dump.find("# env HS_NODE_CORES") != std::string::npos);
  CHECK(dump.find("cluster.seeds = [\"127.0.0.1:7101\", \"127.0.0.1:7102\"]") != std::string::npos);
  CHECK(dump.find("node.heartbeat = 250") != std::string::npos);

  // Dotted keys and env list / duration forms.
  auto d = parse("cluster.name = \"x\"\nnode.heartbeat = 2000\n",
                 {{"HS_CLUSTER_SEEDS", "a:1, b:2"}, {"HS_NODE_HEARTBEAT", "2m"}});
  REQUIRE(d.ok());
  CHECK(d->list("cluster.seeds") == std::vector<std::string>{"a:1", "b:2"});
  CHECK(d->duration("node.heartbeat") == 120s);
}

TEST_CASE("Config: every error class names the place and nothing is accepted", "[host][config]") {
  // Unknown key (with a suggestion), as a table key and as a dotted key.
  auto e = error_of(parse("[cluster]\nname = \"x\"\n[node]\ncors = 3\n"));
  CHECK(e == "d.toml:4:1: unknown key 'node.cors' (did you mean 'node.cores'?)");
  CHECK(error_of(parse("cluster.name = \"x\"\n[other]\nx = 1\n")) == "d.toml:2:2: unknown key 'other'");
  // Wrong types.
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.cores = \"8\"\n")) ==
        "d.toml:2:14: node.cores: expected an integer, got a string");
  CHECK(error_of(parse("cluster.name = 5\n")) == "d.toml:1:16: cluster.name: expected a string, got an integer");
  CHECK(error_of(parse("cluster.name = \"x\"\ncluster.seeds = [\"a\", 2]\n")) ==
        "d.toml:2:17: cluster.seeds: element 1 must be a string, got an integer");
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.verbose = \"true\"\n")).find("expected a boolean") !=
        std::string::npos);
  // Bad values: range, the entry's own check, a bad duration.
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.cores = 0\n")) ==
        "d.toml:2:14: node.cores: 0 is below the minimum 1");
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.listen = \"nowhere\"\n")) ==
        "d.toml:2:15: node.listen: expected IPv4:port");
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.heartbeat = \"5 parsecs\"\n")).find("expected a duration") !=
        std::string::npos);
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.heartbeat = \"5ms\"\n")) ==
        "d.toml:2:18: node.heartbeat: 5 ms is below the minimum 10 ms");
  // Syntax error.
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.cores = = 3\n")).find("d.toml:2:") == 0);
  CHECK(error_of(parse("cluster.name = \"x\"\nnode.cores = = 3\n")).find("TOML syntax error") != std::string::npos);
  // Required key missing.
  CHECK(error_of(parse("")) == "d.toml: required key 'cluster.name' is not set (in the file, or env HS_CLUSTER_NAME)");
  // Environment: unknown variable, bad value, out of range.
  CHECK(error_of(parse("cluster.name = \"x\"", {{"HS_NODE_CORS", "3"}})) ==
        "env HS_NODE_CORS: unknown setting (no config key maps to it) (did you mean HS_NODE_CORES?)");
  CHECK(error_of(parse("cluster.name = \"x\"", {{"HS_NODE_CORES", "many"}})) ==
        "env HS_NODE_CORES: node.cores: expected an integer, got 'many'");
  CHECK(error_of(parse("cluster.name = \"x\"", {{"HS_NODE_CORES", "1000"}})) ==
        "env HS_NODE_CORES: node.cores: 1000 is above the maximum 256");
  CHECK(error_of(parse("cluster.name = \"x\"", {{"HS_NODE_VERBOSE", "perhaps"}})).find("expected a boolean") !=
        std::string::npos);
  // Lenient env mode ignores unknown HS_ variables.
  CHECK(Config::parse(schema(), "cluster.name = \"x\"", "d.toml", {{"HS_OTHER", "1"}}, Config::Options{false}).ok());
  // Several errors are all reported, one per line.
  auto many = error_of(parse("node.cores = \"x\"\nnode.cors = 1\n", {{"HS_NODE_VERBOSE", "maybe"}}));
  CHECK(std::count(many.begin(), many.end(), '\n') == 3);
}

TEST_CASE("Config: files, missing files, bad schemas", "[host][config]") {
  test::TempDir dir;
  const std::string path = dir.path + "/node.toml";
  {
    std::ofstream f(path);
    f << "[cluster]\nname = \"from-file\"\n";
  }
  auto c = Config::load(schema(), path, {});
  REQUIRE(c.ok());
  CHECK(c->str("cluster.name") == "from-file");
  CHECK(c->source("cluster.name") == path + ":2:8");
  auto missing = Config::load(schema(), dir.path + "/nope.toml", {});
  REQUIRE(!missing.ok());
  CHECK(missing.status().message().find("cannot open config file") != std::string::npos);
  // Only the environment (no file).
  auto e = Config::load(schema(), "", {{"HS_CLUSTER_NAME", "env-only"}});
  REQUIRE(e.ok());
  CHECK(e->str("cluster.name") == "env-only");

  ConfigSchema bad = schema();
  bad.push_back({"node.cores", ValueType::integer, "1", "dup", false, {}, {}, {}});
  CHECK(validate_schema(bad).message().find("duplicate key") != std::string::npos);
  ConfigSchema bad_default = {{"a.b", ValueType::integer, "x", "", false, {}, {}, {}}};
  CHECK(validate_schema(bad_default).message().find("default of 'a.b'") != std::string::npos);
  ConfigSchema bad_key = {{"A.b", ValueType::string, "", "", false, {}, {}, {}}};
  CHECK(!validate_schema(bad_key).ok());
  CHECK(env_name("node.data_dir") == "HS_NODE_DATA_DIR");
}

TEST_CASE("Config: the schema renders as a markdown table", "[host][config]") {
  const std::string md = schema_markdown(schema());
  CHECK(md.rfind("| key | environment | type | default | description |\n|---|---|---|---|---|\n", 0) == 0);
  CHECK(md.find("| `node.cores` | `HS_NODE_CORES` | int [1..256] | `4` | cores |") != std::string::npos);
  CHECK(md.find("| `cluster.name` | `HS_CLUSTER_NAME` | string | (required) | required name |") != std::string::npos);
  CHECK(md.find("seed \\| peers") != std::string::npos);
}

namespace {

// Relations over the test schema: the heartbeat below a bound taken from another key.
std::vector<ConfigRelation> relations() {
  std::vector<ConfigRelation> r;
  r.push_back(
      {{"node.heartbeat", "node.cores"},
       "node.heartbeat must be below node.cores seconds",
       "a toy rule",
       [](const Config& c) { return c.duration("node.heartbeat") < std::chrono::seconds(c.integer("node.cores")); }});
  r.push_back({{"node.verbose", "cluster.seeds"}, "node.verbose needs cluster.seeds", "", [](const Config& c) {
                 return !c.boolean("node.verbose") || !c.list("cluster.seeds").empty();
               }});
  return r;
}

}  // namespace

TEST_CASE("Config: relations between keys are checked once every key has its value", "[host][config]") {
  // Defaults (heartbeat 1s, cores 4) satisfy them.
  auto ok = parse("cluster.name = \"x\"\n");
  REQUIRE(ok.ok());
  CHECK(ok->check(relations()).ok());
  // A file value against a default: both keys, their values and their sources are named.
  auto c = parse("cluster.name = \"x\"\nnode.heartbeat = \"5s\"\n");
  REQUIRE(c.ok());
  Status st = c->check(relations());
  REQUIRE(!st.ok());
  CHECK(st.code() == Errc::invalid_argument);
  CHECK(st.message() ==
        "node.heartbeat = 5s (d.toml:2:18), node.cores = 4 (default): node.heartbeat must be below node.cores "
        "seconds (a toy rule)");
  // An environment value against a file value; sub-second durations in ms.
  c = parse("cluster.name = \"x\"\nnode.cores = 1\n", {{"HS_NODE_HEARTBEAT", "1500ms"}});
  REQUIRE(c.ok());
  st = c->check(relations());
  REQUIRE(!st.ok());
  CHECK(st.message() ==
        "node.heartbeat = 1500ms (env HS_NODE_HEARTBEAT), node.cores = 1 (d.toml:2:14): node.heartbeat must be below "
        "node.cores seconds (a toy rule)");
  // Every broken relation is reported, one per line; a rule without a reason has no parentheses.
  c = parse("cluster.name = \"x\"\nnode.verbose = true\nnode.heartbeat = 4000\n");
  REQUIRE(c.ok());
  st = c->check(relations());
  REQUIRE(!st.ok());
  CHECK(st.message() ==
        "node.heartbeat = 4s (d.toml:3:18), node.cores = 4 (default): node.heartbeat must be below node.cores seconds "
        "(a toy rule)\n"
        "node.verbose = true (d.toml:2:16), cluster.seeds = [] (default): node.verbose needs cluster.seeds");
  // A relation over a key that is not in the schema is a programming error.
  std::vector<ConfigRelation> bad = {{{"node.nope"}, "x", "", [](const Config&) { return true; }}};
  CHECK_THROWS_AS(c->check(bad), std::logic_error);
}

TEST_CASE("Config: set() replaces a value after loading, checked like an environment value", "[host][config]") {
  auto c = parse("cluster.name = \"x\"\n");
  REQUIRE(c.ok());
  REQUIRE(c->set("node.cores", "12", "default (derived)").ok());
  CHECK(c->integer("node.cores") == 12);
  CHECK(c->source("node.cores") == "default (derived)");
  CHECK(c->dump().find("node.cores = 12") != std::string::npos);
  CHECK(c->dump().find("# default (derived)") != std::string::npos);
  // A bad value changes nothing and names the key.
  Status st = c->set("node.cores", "1000", "x");
  REQUIRE(!st.ok());
  CHECK(st.message() == "node.cores: 1000 is above the maximum 256 (x)");
  CHECK(c->integer("node.cores") == 12);
  CHECK_THROWS_AS(c->set("no.such", "1", "x"), std::logic_error);
  CHECK(c->display("node.heartbeat") == "1s");
  CHECK(c->display("node.listen") == "\"127.0.0.1:7101\"");
}

TEST_CASE("admin.listen: the default is loopback at the node port + 1000, shown by --print-config", "[host][config]") {
  const Config::Env base = {{"HS_NODE_LISTEN", "127.0.0.1:7101"},
                            {"HS_NODE_DATA_DIR", "/tmp/unused"},
                            {"HS_WIRE_SECRET_ENV", "HOST_TEST_ADMIN_SECRET"}};
  auto c = Config::parse(common_schema(), "", "", base);
  REQUIRE(c.ok());
  CHECK(c->str("admin.listen") == "auto");
  REQUIRE(resolve_admin_listen(*c).ok());
  CHECK(c->str("admin.listen") == "127.0.0.1:8101");
  CHECK(c->source("admin.listen") == "default (auto: 127.0.0.1, node.listen port + 1000)");
  CHECK(c->dump().find("admin.listen = \"127.0.0.1:8101\"") != std::string::npos);
  // host_settings gives the same address without resolving first; loopback: no warning.
  auto plain = Config::parse(common_schema(), "", "", base);
  REQUIRE(plain.ok());
  ::setenv("HOST_TEST_ADMIN_SECRET", "admin-listen-test-secret-0123456789", 1);
  auto h = host_settings(*plain, wire::fb::Role::Manager);
  REQUIRE(h.ok());
  CHECK(h->admin_enabled);
  CHECK(h->admin.listen.to_string() == "127.0.0.1:8101");
  CHECK(!admin_exposure_warning(*h).has_value());
  // An explicit address is kept as given (port 0: ephemeral); "" disables the port.
  auto e = Config::parse(
      common_schema(), "", "",
      {{"HS_NODE_LISTEN", "127.0.0.1:7101"}, {"HS_NODE_DATA_DIR", "/tmp/unused"}, {"HS_ADMIN_LISTEN", "127.0.0.1:0"}});
  REQUIRE(e.ok());
  REQUIRE(resolve_admin_listen(*e).ok());
  CHECK(e->str("admin.listen") == "127.0.0.1:0");
  CHECK(e->source("admin.listen") == "env HS_ADMIN_LISTEN");
  // A node port whose + 1000 passes 65535: an error naming both keys.
  auto high = Config::parse(common_schema(), "", "",
                            {{"HS_NODE_LISTEN", "127.0.0.1:65000"}, {"HS_NODE_DATA_DIR", "/tmp/unused"}});
  REQUIRE(high.ok());
  Status st = resolve_admin_listen(*high);
  REQUIRE(!st.ok());
  CHECK(
      st.message().find("admin.listen = \"auto\" (default), node.listen = \"127.0.0.1:65000\" (env HS_NODE_LISTEN)") !=
      std::string::npos);
  CHECK(st.message().find("66000, above 65535") != std::string::npos);
  // Any non-loopback address warns: the admin port has no authentication.
  Config::Env exposed = base;
  exposed["HS_ADMIN_LISTEN"] = "0.0.0.0:9000";
  auto open = Config::parse(common_schema(), "", "", exposed);
  REQUIRE(open.ok());
  auto oh = host_settings(*open, wire::fb::Role::Manager);
  REQUIRE(oh.ok());
  auto w = admin_exposure_warning(*oh);
  REQUIRE(w.has_value());
  CHECK(w->find("admin.listen 0.0.0.0:9000 is not a loopback address: the admin port has no authentication") !=
        std::string::npos);
}
