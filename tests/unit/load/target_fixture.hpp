// Shared by the in-process load tests: free loopback ports and the built-in target on its own shard.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <catch2/catch.hpp>
#include <chrono>
#include <thread>

#include "hyperscale/load/target.hpp"
#include "hyperscale/runtime/shard_set.hpp"

namespace hs::load::testing {

int free_port(int type) {
  const int fd = socket(AF_INET, type, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  REQUIRE(bind(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0);
  socklen_t len = sizeof a;
  getsockname(fd, reinterpret_cast<sockaddr*>(&a), &len);
  close(fd);
  return ntohs(a.sin_port);
}

bool connectable(int port) {
  const int fd = socket(AF_INET, SOCK_STREAM, 0);
  sockaddr_in a{};
  a.sin_family = AF_INET;
  a.sin_port = htons(static_cast<std::uint16_t>(port));
  a.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  const bool ok = connect(fd, reinterpret_cast<sockaddr*>(&a), sizeof a) == 0;
  close(fd);
  return ok;
}

struct TargetProc {
  runtime::ShardSet set{[] {
    runtime::ShardSetOptions o;
    o.shards = 1;
    o.pin = false;
    return o;
  }()};
  Target target;
  int http = free_port(SOCK_STREAM), tcp = free_port(SOCK_STREAM), udp = free_port(SOCK_DGRAM);
  TargetProc() {
    REQUIRE(set.start([this](runtime::Reactor& r) {
                 Status st = target.start(r, {http, tcp, udp, "127.0.0.1"});
                 if (!st.ok()) FAIL(st.to_string());
               })
                .ok());
    for (int i = 0; i < 200 && !connectable(http); ++i) std::this_thread::sleep_for(std::chrono::milliseconds(10));
  }
  // Stops the target; its counters are then safe to read here.
  const TargetCounters& stop() {
    set.stop();
    return target.counters();
  }
};

}  // namespace hs::load::testing
