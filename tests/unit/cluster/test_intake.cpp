// The job checks and remembered rejections managers and gates share (cluster/intake.hpp).
#include <catch2/catch.hpp>

#include "hyperscale/cluster/intake.hpp"

using namespace hs;
using namespace hs::cluster;
using namespace std::chrono_literals;

namespace {
JobSpec job(std::vector<std::pair<std::string, std::vector<std::string>>> wfs) {
  JobSpec s;
  s.job_id = "j-1";
  for (auto& [n, d] : wfs) {
    WorkflowSpec w;
    w.name = n;
    w.deps = d;
    s.workflows.push_back(w);
  }
  return s;
}
SubmitAck ack(const char* why) {
  SubmitAck a;
  a.code = Err::invalid;
  a.error = why;
  return a;
}
}  // namespace

TEST_CASE("intake: a job's role-independent checks name what is wrong", "[cluster][intake]") {
  CHECK_FALSE(check_job(job({{"a", {}}, {"b", {"a"}}}), 10, 100));
  CHECK(check_job(job({}), 10, 100) == std::optional<std::string>("the job has no workflows"));
  CHECK(check_job(job({{"a", {"b"}}, {"b", {"a"}}}), 10, 100) ==
        std::optional<std::string>("the workflow dependencies form a cycle"));
  CHECK(check_job(job({{"a", {"x"}}}), 10, 100)->find("unknown workflow 'x'") != std::string::npos);
  CHECK(check_job(job({{"a", {"a"}}}), 10, 100)->find("depends on itself") != std::string::npos);
  CHECK(check_job(job({{"a", {}}, {"a", {}}}), 10, 100)->find("duplicate workflow name") != std::string::npos);
  CHECK(check_job(job({{"a", {}}, {"b", {}}}), 1, 100)->find("the limit is 1") != std::string::npos);
  JobSpec bad = job({{"a b", {}}});
  CHECK(check_job(bad, 10, 100)->find("workflow name") != std::string::npos);
  bad = job({{"a", {}}});
  bad.workflows[0].plan.assign(101, 'x');
  CHECK(check_job(bad, 10, 100)->find("plan larger") != std::string::npos);
  bad = job({{"a", {}}});
  bad.job_id = "";
  CHECK(check_job(bad, 10, 100)->find("job id") != std::string::npos);
  CHECK(valid_id("dc-a_1.x", 64));
  CHECK_FALSE(valid_id("dc a", 64));
  CHECK_FALSE(valid_id(std::string(65, 'a'), 64));
}

TEST_CASE("intake: rejections are remembered per key and payload, for a TTL, bounded", "[cluster][intake]") {
  RejectionCache c(2, 10s);
  const Instant t0{0};
  c.remember("k1", 1, ack("one"), t0);
  c.remember("", 1, ack("no key"), t0);  // no key: nothing to remember
  CHECK(c.size() == 1);
  REQUIRE(c.find("k1", 1));
  CHECK(c.find("k1", 1)->error == "one");
  CHECK_FALSE(c.find("k1", 2));  // another payload: evaluated afresh, the rejection is forgotten
  CHECK_FALSE(c.find("k1", 1));
  c.remember("a", 1, ack("a"), t0);
  c.remember("b", 1, ack("b"), t0 + 1s);
  c.remember("c", 1, ack("c"), t0 + 2s);  // over the bound: the one expiring first goes
  CHECK(c.size() == 2);
  CHECK(c.evicted() == 1);
  CHECK_FALSE(c.find("a", 1));
  c.expire(t0 + 11s);  // b expired, c not
  CHECK_FALSE(c.find("b", 1));
  CHECK(c.find("c", 1));
  c.expire(t0 + 12s);
  CHECK(c.size() == 0);
  CHECK(c.queued() == 0);
}
