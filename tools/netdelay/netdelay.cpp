// hs-netdelay: a userspace link delay for tests, for kernels without sch_netem.
//
// Binds NFQUEUE queue N (libnetfilter_queue), holds every packet netfilter queues to it for a fixed
// delay on the monotonic clock, then accepts it (NF_ACCEPT), in arrival order. Single-threaded: one
// poll loop over the queue's netlink socket, a timerfd armed for the oldest held packet's deadline,
// and a signalfd for SIGTERM/SIGINT (then every held packet is accepted at once and the counters
// are printed).
//
// Bounded: at most --max-held packets are held; a packet over that is accepted immediately and
// counted. Fail-open: the queue has NFQA_CFG_F_FAIL_OPEN (the kernel accepts what does not fit in
// its queue instead of dropping it), and the rule that queues should bypass when nothing is bound
// (iptables `-j NFQUEUE --queue-bypass`, nft `queue ... bypass`), so a dead or slow hs-netdelay
// never black-holes traffic. Only packet metadata is copied to userspace (NFQNL_COPY_META).
//
// Usage: hs-netdelay --queue N --delay-ms N [--max-held N]   (needs CAP_NET_ADMIN)
// docs/gates.md ("Testing") describes how the gate e2e uses it.
#include <arpa/inet.h>
#include <linux/netfilter.h>  // NF_ACCEPT
#include <poll.h>
#include <signal.h>
#include <sys/signalfd.h>
#include <sys/socket.h>
#include <sys/timerfd.h>
#include <time.h>
#include <unistd.h>

#include <cerrno>
#include <charconv>
#include <cstdint>
#include <cstdio>
#include <cstring>
#include <deque>
#include <string_view>

#include <libnetfilter_queue/libnetfilter_queue.h>

namespace {

constexpr int kExitRuntime = 1;
constexpr int kExitUsage = 2;
constexpr std::uint32_t kDefaultMaxHeld = 10000;
constexpr std::uint32_t kMaxHeldLimit = 1000000;
constexpr std::uint32_t kMaxDelayMs = 60000;
constexpr unsigned kRcvBufBytes = 16u << 20;  // netlink receive buffer: bursts of queued packets
constexpr int kLoggedErrors = 20;             // the first errors are logged; all are counted

const char* const kUsage =
    "usage: hs-netdelay --queue N --delay-ms N [--max-held N]\n"
    "\n"
    "Delays every packet netfilter queues to NFQUEUE queue N by N milliseconds (monotonic clock),\n"
    "then accepts it, in order. A test tool for kernels without sch_netem. Needs CAP_NET_ADMIN.\n"
    "\n"
    "  --queue N      NFQUEUE queue number to bind (0..65535)\n"
    "  --delay-ms N   how long each packet is held (0..60000)\n"
    "  --max-held N   most packets held at once (default 10000, 1..1000000); a packet over it is\n"
    "                 accepted immediately and counted as accepted-over-limit\n"
    "  --help         this text\n"
    "\n"
    "Fail-open: the queue is set up with NFQA_CFG_F_FAIL_OPEN; give the rule that queues packets\n"
    "--queue-bypass (iptables) or `bypass` (nft) so traffic passes undelayed if hs-netdelay is not\n"
    "running. Example, 20 ms each way on veth0 (a 40 ms round trip), run in the link's namespace:\n"
    "  iptables -A OUTPUT -o veth0 -j NFQUEUE --queue-num 7 --queue-bypass\n"
    "  iptables -A INPUT -i veth0 -j NFQUEUE --queue-num 7 --queue-bypass\n"
    "  hs-netdelay --queue 7 --delay-ms 20\n"
    "Prints `hs-netdelay: bound queue N ...` once bound, and its counters on SIGTERM/SIGINT:\n"
    "  hs-netdelay: held=H accepted_late=L accepted_over_limit=O errors=E\n"
    "Exit: 0 after SIGTERM/SIGINT, 1 on a runtime error, 2 on bad usage.\n";

struct Options {
  std::uint16_t queue = 0;
  std::uint32_t delay_ms = 0;
  std::uint32_t max_held = kDefaultMaxHeld;
};

struct Held {
  std::uint32_t id;          // the kernel's packet id, for the verdict
  std::int64_t deadline_ns;  // CLOCK_MONOTONIC
};

struct Counters {
  std::uint64_t held = 0;                 // packets held for the delay
  std::uint64_t accepted_late = 0;        // accepted after their delay (or at shutdown)
  std::uint64_t accepted_over_limit = 0;  // accepted at once: --max-held packets were held
  std::uint64_t errors = 0;               // failed verdicts, receive errors, kernel error replies
};

struct State {
  Options opt;
  nfq_q_handle* qh = nullptr;
  std::deque<Held> held;  // arrival order == deadline order (one fixed delay); at most opt.max_held
  bool stopping = false;  // after SIGTERM/SIGINT: what still arrives is accepted at once
  Counters n;
};

std::int64_t now_ns() {
  timespec ts{};
  clock_gettime(CLOCK_MONOTONIC, &ts);
  return std::int64_t{ts.tv_sec} * 1000000000 + ts.tv_nsec;
}

void error(State& s, const char* what, int err) {
  ++s.n.errors;
  if (s.n.errors <= kLoggedErrors) {
    std::fprintf(stderr, "hs-netdelay: error: %s: %s%s\n", what, std::strerror(err),
                 s.n.errors == kLoggedErrors ? " (further errors are only counted)" : "");
  }
}

void accept(State& s, std::uint32_t id) {
  if (nfq_set_verdict(s.qh, id, NF_ACCEPT, 0, nullptr) < 0) {
    error(s, "NF_ACCEPT verdict not sent", errno);
  }
}

void print_counters(const State& s) {
  std::printf("hs-netdelay: held=%llu accepted_late=%llu accepted_over_limit=%llu errors=%llu\n",
              static_cast<unsigned long long>(s.n.held), static_cast<unsigned long long>(s.n.accepted_late),
              static_cast<unsigned long long>(s.n.accepted_over_limit), static_cast<unsigned long long>(s.n.errors));
  std::fflush(stdout);
}

int on_packet(nfq_q_handle* /*qh*/, nfgenmsg* /*msg*/, nfq_data* nfa, void* data) {
  auto& s = *static_cast<State*>(data);
  const nfqnl_msg_packet_hdr* ph = nfq_get_msg_packet_hdr(nfa);
  if (ph == nullptr) {
    error(s, "queued packet without a packet header (cannot give it a verdict)", EPROTO);
    return 0;
  }
  const std::uint32_t id = ntohl(ph->packet_id);
  if (s.stopping) {  // counted as held for no time, so held == accepted_late after a clean stop
    ++s.n.held;
    ++s.n.accepted_late;
    accept(s, id);
    return 0;
  }
  if (s.held.size() >= s.opt.max_held) {
    ++s.n.accepted_over_limit;
    accept(s, id);
    return 0;
  }
  s.held.push_back(Held{id, now_ns() + std::int64_t{s.opt.delay_ms} * 1000000});
  ++s.n.held;
  return 0;
}

// Accepts every held packet whose deadline passed (all of them when `all`), in order.
void release(State& s, bool all) {
  const std::int64_t t = now_ns();
  while (!s.held.empty() && (all || s.held.front().deadline_ns <= t)) {
    accept(s, s.held.front().id);
    ++s.n.accepted_late;
    s.held.pop_front();
  }
}

// Arms the timer for the oldest held packet (absolute), or disarms it when nothing is held.
bool arm(State& s, int tfd) {
  itimerspec its{};
  if (!s.held.empty()) {
    const std::int64_t d = s.held.front().deadline_ns;
    its.it_value.tv_sec = d / 1000000000;
    its.it_value.tv_nsec = d % 1000000000;
    if (its.it_value.tv_sec == 0 && its.it_value.tv_nsec == 0) its.it_value.tv_nsec = 1;  // 0 disarms
  }
  if (timerfd_settime(tfd, TFD_TIMER_ABSTIME, &its, nullptr) < 0) {
    error(s, "timerfd_settime", errno);
    return false;
  }
  return true;
}

bool parse_u32(std::string_view text, std::uint32_t lo, std::uint32_t hi, std::uint32_t& out) {
  std::uint32_t v = 0;
  const auto [end, ec] = std::from_chars(text.data(), text.data() + text.size(), v);
  if (ec != std::errc{} || end != text.data() + text.size() || v < lo || v > hi) return false;
  out = v;
  return true;
}

// 0 = parsed, 1 = --help printed, -1 = bad usage (message printed).
int parse_args(int argc, char** argv, Options& o) {
  bool have_queue = false, have_delay = false;
  for (int i = 1; i < argc; ++i) {
    const std::string_view a = argv[i];
    if (a == "--help" || a == "-h") {
      std::fputs(kUsage, stdout);
      return 1;
    }
    struct Flag {
      std::string_view name;
      std::uint32_t lo, hi;
      bool* seen;
    };
    bool dummy = false;
    const Flag flags[] = {{"--queue", 0, 65535, &have_queue},
                          {"--delay-ms", 0, kMaxDelayMs, &have_delay},
                          {"--max-held", 1, kMaxHeldLimit, &dummy}};
    const Flag* f = nullptr;
    for (const auto& c : flags) {
      if (a == c.name) f = &c;
    }
    if (f == nullptr) {
      std::fprintf(stderr, "hs-netdelay: unknown argument '%s'\n%s", argv[i], kUsage);
      return -1;
    }
    if (i + 1 >= argc) {
      std::fprintf(stderr, "hs-netdelay: %s needs a value\n", argv[i]);
      return -1;
    }
    std::uint32_t v = 0;
    if (!parse_u32(argv[i + 1], f->lo, f->hi, v)) {
      std::fprintf(stderr, "hs-netdelay: %s '%s': expected an integer in %u..%u\n", argv[i], argv[i + 1], f->lo, f->hi);
      return -1;
    }
    ++i;
    *f->seen = true;
    if (f->name == "--queue") o.queue = static_cast<std::uint16_t>(v);
    if (f->name == "--delay-ms") o.delay_ms = v;
    if (f->name == "--max-held") o.max_held = v;
  }
  if (!have_queue || !have_delay) {
    std::fprintf(stderr, "hs-netdelay: --queue and --delay-ms are required\n%s", kUsage);
    return -1;
  }
  return 0;
}

const char* hint(int err) {
  if (err == EPERM || err == EACCES) return " (hs-netdelay needs CAP_NET_ADMIN: run it as root)";
  return "";
}

int run(State& s) {
  // SIGTERM/SIGINT arrive on a signalfd: the loop accepts what it holds and prints its counters.
  sigset_t mask;
  sigemptyset(&mask);
  sigaddset(&mask, SIGTERM);
  sigaddset(&mask, SIGINT);
  if (sigprocmask(SIG_BLOCK, &mask, nullptr) < 0) {
    std::fprintf(stderr, "hs-netdelay: sigprocmask: %s\n", std::strerror(errno));
    return kExitRuntime;
  }
  const int sfd = signalfd(-1, &mask, SFD_CLOEXEC | SFD_NONBLOCK);
  const int tfd = timerfd_create(CLOCK_MONOTONIC, TFD_CLOEXEC | TFD_NONBLOCK);
  if (sfd < 0 || tfd < 0) {
    std::fprintf(stderr, "hs-netdelay: signalfd/timerfd_create: %s\n", std::strerror(errno));
    return kExitRuntime;
  }

  nfq_handle* h = nfq_open();
  if (h == nullptr) {
    const int err = errno;
    std::fprintf(stderr, "hs-netdelay: cannot open the nfnetlink queue socket: %s%s\n", std::strerror(err), hint(err));
    return kExitRuntime;
  }
  // The PF bind is a no-op on kernels >= 3.8 but still checks CAP_NET_ADMIN: a clear first error.
  if (nfq_bind_pf(h, AF_INET) < 0) {
    const int err = errno;
    std::fprintf(stderr, "hs-netdelay: cannot bind the nfnetlink queue handler for AF_INET: %s%s\n", std::strerror(err),
                 hint(err));
    nfq_close(h);
    return kExitRuntime;
  }
  s.qh = nfq_create_queue(h, s.opt.queue, &on_packet, &s);
  if (s.qh == nullptr) {
    const int err = errno;
    // CAP_NET_ADMIN was checked by the PF bind above: EPERM here is the kernel's answer for a
    // queue another socket has bound.
    std::fprintf(
        stderr, "hs-netdelay: cannot bind queue %u: %s%s\n", s.opt.queue, std::strerror(err),
        err == EPERM || err == EBUSY ? " (another process has this queue bound: pick another --queue)" : hint(err));
    nfq_close(h);
    return kExitRuntime;
  }
  const char* step = nullptr;
  if (nfq_set_mode(s.qh, NFQNL_COPY_META, 0) < 0) {
    step = "set copy mode NFQNL_COPY_META";
  } else if (nfq_set_queue_maxlen(s.qh, s.opt.max_held + 1024) < 0) {
    step = "set the kernel queue length";
  } else if (nfq_set_queue_flags(s.qh, NFQA_CFG_F_FAIL_OPEN, NFQA_CFG_F_FAIL_OPEN) < 0) {
    step = "set NFQA_CFG_F_FAIL_OPEN (kernel >= 3.6)";
  }
  if (step != nullptr) {
    std::fprintf(stderr, "hs-netdelay: queue %u: cannot %s: %s\n", s.opt.queue, step, std::strerror(errno));
    nfq_destroy_queue(s.qh);
    nfq_close(h);
    return kExitRuntime;
  }
  const unsigned rcvbuf = nfnl_rcvbufsiz(nfq_nfnlh(h), kRcvBufBytes);
  const int fd = nfq_fd(h);
  std::printf("hs-netdelay: bound queue %u delay_ms=%u max_held=%u rcvbuf=%u\n", s.opt.queue, s.opt.delay_ms,
              s.opt.max_held, rcvbuf);
  std::fflush(stdout);

  alignas(nlmsghdr) static char buf[1 << 16];
  pollfd fds[3] = {{fd, POLLIN, 0}, {tfd, POLLIN, 0}, {sfd, POLLIN, 0}};
  int rc = 0;
  for (bool stop = false; !stop;) {
    if (poll(fds, 3, -1) < 0) {
      if (errno == EINTR) continue;
      std::fprintf(stderr, "hs-netdelay: poll: %s\n", std::strerror(errno));
      rc = kExitRuntime;
      break;
    }
    if (fds[2].revents & POLLIN) {
      signalfd_siginfo si{};
      if (read(sfd, &si, sizeof si) == static_cast<ssize_t>(sizeof si)) {
        std::fprintf(stderr, "hs-netdelay: signal %u: accepting %zu held packet(s) and stopping\n", si.ssi_signo,
                     s.held.size());
      }
      stop = true;
      continue;
    }
    if (fds[0].revents & (POLLIN | POLLERR)) {
      for (;;) {
        const ssize_t n = recv(fd, buf, sizeof buf, MSG_DONTWAIT);
        if (n < 0) {
          if (errno == EAGAIN || errno == EWOULDBLOCK) break;
          if (errno == EINTR) continue;
          // ENOBUFS: the kernel dropped queue messages (their packets wait in the kernel's queue
          // until it is full, then fail-open accepts new ones); counted, the loop goes on.
          error(s, "recv on the queue socket", errno);
          if (errno != ENOBUFS) {
            rc = kExitRuntime;
            stop = true;
          }
          break;
        }
        // A kernel error reply (e.g. ENOENT: a verdict for a packet the kernel already dropped
        // because its device went down) comes back here as -1.
        if (nfq_handle_packet(h, buf, static_cast<int>(n)) < 0) error(s, "kernel reply to the queue", errno);
      }
    }
    if (fds[1].revents & POLLIN) {
      std::uint64_t expirations = 0;
      if (read(tfd, &expirations, sizeof expirations) < 0 && errno != EAGAIN) error(s, "read timerfd", errno);
    }
    release(s, false);
    if (!arm(s, tfd)) {
      rc = kExitRuntime;
      stop = true;
    }
  }
  // Accept what is held, then what the kernel queued but we have not read yet: destroying the
  // queue would drop those.
  release(s, true);
  s.stopping = true;
  for (ssize_t n; (n = recv(fd, buf, sizeof buf, MSG_DONTWAIT)) > 0;) {
    if (nfq_handle_packet(h, buf, static_cast<int>(n)) < 0) error(s, "kernel reply to the queue", errno);
  }
  print_counters(s);
  nfq_destroy_queue(s.qh);
  nfq_close(h);
  close(tfd);
  close(sfd);
  return rc;
}

}  // namespace

int main(int argc, char** argv) {
  State s;
  const int p = parse_args(argc, argv, s.opt);
  if (p != 0) return p > 0 ? 0 : kExitUsage;
  return run(s);
}
