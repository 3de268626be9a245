// Shared helpers of the host tests: free loopback ports, loop driving, raw HTTP.
#pragma once

#include <arpa/inet.h>
#include <netinet/in.h>
#include <sys/socket.h>
#include <unistd.h>

#include <chrono>
#include <filesystem>
#include <functional>
#include <string>

#include "hyperscale/base/random.hpp"
#include "hyperscale/runtime/reactor.hpp"
#include "hyperscale/wal/wal.hpp"

namespace hs::test {

// A port free for both TCP and UDP on 127.0.0.1 right now (bound with port 0, then released).
inline std::uint16_t free_port() {
  for (int attempt = 0; attempt < 50; ++attempt) {
    int t = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::bind(t, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      ::close(t);
      continue;
    }
    socklen_t len = sizeof(sa);
    ::getsockname(t, reinterpret_cast<sockaddr*>(&sa), &len);
    int u = ::socket(AF_INET, SOCK_DGRAM, 0);
    const bool ok = ::bind(u, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) == 0;
    ::close(u);
    ::close(t);
    if (ok) return ntohs(sa.sin_port);
  }
  return 0;
}

inline bool run_until(runtime::Reactor& r, const std::function<bool()>& pred,
                      std::chrono::milliseconds timeout = std::chrono::milliseconds(5000)) {
  r.run_nowait();
  const auto end = std::chrono::steady_clock::now() + timeout;
  while (!pred()) {
    if (std::chrono::steady_clock::now() > end) return false;
    uv_run(r.loop(), UV_RUN_NOWAIT);
    ::usleep(200);
  }
  return true;
}

inline void run_for(runtime::Reactor& r, std::chrono::milliseconds d) {
  const auto end = std::chrono::steady_clock::now() + d;
  while (std::chrono::steady_clock::now() < end) {
    uv_run(r.loop(), UV_RUN_NOWAIT);
    ::usleep(200);
  }
}

struct TempDir {
  std::string path;
  TempDir() {
    Rng rng(static_cast<std::uint64_t>(std::chrono::steady_clock::now().time_since_epoch().count()) ^ ::getpid());
    path = (std::filesystem::temp_directory_path() / ("hs-host-test-" + std::to_string(rng.next_u64()))).string();
    std::filesystem::create_directories(path);
  }
  ~TempDir() {
    std::error_code ec;
    std::filesystem::remove_all(path, ec);
  }
  std::uint64_t size() const {
    std::uint64_t n = 0;
    for (auto& e : std::filesystem::directory_iterator(path))
      if (e.is_regular_file()) n += e.file_size();
    return n;
  }
};

// A raw client socket: send bytes, read the whole reply (until the server closes).
struct HttpClient {
  int fd = -1;
  std::string reply;
  bool eof = false;
  explicit HttpClient(std::uint16_t port) {
    fd = ::socket(AF_INET, SOCK_STREAM, 0);
    sockaddr_in sa{};
    sa.sin_family = AF_INET;
    sa.sin_port = htons(port);
    sa.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
    if (::connect(fd, reinterpret_cast<sockaddr*>(&sa), sizeof(sa)) != 0) {
      ::close(fd);
      fd = -1;
    }
  }
  HttpClient(HttpClient&& o) noexcept : fd(o.fd), reply(std::move(o.reply)), eof(o.eof) { o.fd = -1; }
  HttpClient(const HttpClient&) = delete;
  HttpClient& operator=(const HttpClient&) = delete;
  ~HttpClient() {
    if (fd >= 0) ::close(fd);
  }
  bool send(const std::string& s) {
    return fd >= 0 && ::send(fd, s.data(), s.size(), MSG_NOSIGNAL) == (ssize_t)s.size();
  }
  // Non-blocking: reads what is there; true once the peer closed.
  bool poll() {
    char buf[65536];
    for (;;) {
      ssize_t n = ::recv(fd, buf, sizeof(buf), MSG_DONTWAIT);
      if (n > 0) {
        reply.append(buf, static_cast<std::size_t>(n));
        continue;
      }
      if (n == 0 || (n < 0 && errno != EAGAIN && errno != EWOULDBLOCK)) eof = true;
      return eof;
    }
  }
  int status() const {
    if (reply.size() < 12 || reply.compare(0, 9, "HTTP/1.1 ") != 0) return -1;
    return std::stoi(reply.substr(9, 3));
  }
  std::string body() const {
    auto p = reply.find("\r\n\r\n");
    return p == std::string::npos ? std::string() : reply.substr(p + 4);
  }
};

// One request on a fresh connection; runs the loop until the reply is complete.
inline HttpClient http(runtime::Reactor& r, std::uint16_t port, const std::string& request) {
  HttpClient c(port);
  c.send(request);
  run_until(r, [&] { return c.poll(); });
  return c;
}

// Fails every write after `ok_writes` with EIO.
struct FailIo final : wal::WalIo {
  FailIo(runtime::Reactor& r, int ok_writes) : r(r), real(wal::make_uring_io(r)), ok_writes(ok_writes) {}
  Status write_and_sync(int fd, const std::uint8_t* buf, std::size_t len, std::uint64_t off, bool sync, wal::IoDone wd,
                        wal::IoDone sd) override {
    if (calls++ < ok_writes) return real->write_and_sync(fd, buf, len, off, sync, std::move(wd), std::move(sd));
    (void)(r.defer([wd = std::move(wd)]() mutable { wd(-EIO); }).ok());
    if (sync) (void)(r.defer([sd = std::move(sd)]() mutable { sd(-ECANCELED); }).ok());
    return ok_status();
  }
  runtime::Reactor& r;
  std::unique_ptr<wal::WalIo> real;
  int calls = 0;
  int ok_writes;
};

}  // namespace hs::test
