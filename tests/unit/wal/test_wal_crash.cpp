// Crash test: a child process appends and prints each acknowledged LSN; it is killed with SIGKILL
// at random points; after each kill the log must hold every acknowledged record, intact.
#include <catch2/catch.hpp>

#include <poll.h>
#include <signal.h>
#include <sys/wait.h>
#include <unistd.h>

#include <chrono>
#include <cstdlib>
#include <string>

#include "hyperscale/base/random.hpp"
#include "hyperscale/wal/recovery.hpp"
#include "wal_test_util.hpp"

using namespace hs;
using namespace hs::wal;
using namespace hs::wal::test;

namespace {

struct Round {
  std::uint64_t max_acked = 0;
  std::uint64_t acks = 0;
};

// Runs the child for about `ms` milliseconds, SIGKILLs it, returns what it acknowledged.
Round run_child(const std::string& exe, const std::string& dir, int ms) {
  int fds[2];
  REQUIRE(::pipe(fds) == 0);
  const pid_t pid = ::fork();
  REQUIRE(pid >= 0);
  if (pid == 0) {
    ::dup2(fds[1], 1);
    ::close(fds[0]);
    ::close(fds[1]);
    ::execl(exe.c_str(), exe.c_str(), dir.c_str(), static_cast<char*>(nullptr));
    std::_Exit(127);
  }
  ::close(fds[1]);
  Round rd;
  std::string pending;
  auto consume = [&](const char* p, ssize_t n) {
    for (ssize_t i = 0; i < n; ++i) {
      if (p[i] == '\n') {
        const std::uint64_t lsn = std::strtoull(pending.c_str(), nullptr, 10);
        if (rd.acks > 0) REQUIRE(lsn == rd.max_acked + 1);  // acknowledged in LSN order
        rd.max_acked = lsn;
        ++rd.acks;
        pending.clear();
      } else {
        pending.push_back(p[i]);
      }
    }
  };
  char buf[4096];
  const auto end = std::chrono::steady_clock::now() + std::chrono::milliseconds(ms);
  for (;;) {
    const auto left = std::chrono::duration_cast<std::chrono::milliseconds>(end - std::chrono::steady_clock::now());
    if (left.count() <= 0) break;
    pollfd pfd{fds[0], POLLIN, 0};
    if (::poll(&pfd, 1, static_cast<int>(left.count())) <= 0) continue;
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;  // child exited early (reported below)
    consume(buf, n);
  }
  ::kill(pid, SIGKILL);
  int status = 0;
  REQUIRE(::waitpid(pid, &status, 0) == pid);
  // Lines written before the kill are still in the pipe: they were acknowledged too.
  for (;;) {
    const ssize_t n = ::read(fds[0], buf, sizeof buf);
    if (n <= 0) break;
    consume(buf, n);
  }
  ::close(fds[0]);
  INFO("child status " << status);
  REQUIRE(WIFSIGNALED(status));
  REQUIRE(WTERMSIG(status) == SIGKILL);
  return rd;
}

}  // namespace

TEST_CASE("SIGKILL at random points never loses an acknowledged record", "[wal][crash]") {
  const char* exe = std::getenv("WAL_CRASH_CHILD");
  REQUIRE(exe != nullptr);
  TempDir d;
  const std::string dir = d.path + "/wal";
  Rng rng(static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()));
  INFO("seed " << rng.seed());
  std::uint64_t max_acked = 0, total_acks = 0;
  const int kRounds = 24;
  for (int round = 0; round < kRounds; ++round) {
    const int ms = static_cast<int>(rng.range(150, 600));
    const Round rd = run_child(exe, dir, ms);
    INFO("round " << round << " ran " << ms << " ms, acks " << rd.acks << " max acked lsn " << rd.max_acked);
    if (rd.acks > 0) {
      REQUIRE(rd.max_acked > max_acked);
      max_acked = rd.max_acked;
    }
    total_acks += rd.acks;
    // Every acknowledged record is present and intact; every recovered record is one the child wrote.
    std::uint64_t seen = 0, bad = 0;
    auto rep = recover_dir(dir, RecoverMode::read_only, [&](const RecordView& v) {
      ++seen;
      if (v.type != type_for(v.lsn) ||
          std::vector<std::uint8_t>(v.payload.begin(), v.payload.end()) != payload_for(v.lsn)) {
        ++bad;
      }
    });
    REQUIRE(rep.ok());
    CHECK(bad == 0);
    CHECK(rep->segments.front().first_lsn == 1);
    CHECK(rep->next_lsn - 1 >= max_acked);
    CHECK(seen == rep->next_lsn - 1);
  }
  CHECK(total_acks > 0);
  WARN("crash test: " << kRounds << " SIGKILL rounds, " << total_acks << " acknowledged appends, max lsn "
                      << max_acked);
}
