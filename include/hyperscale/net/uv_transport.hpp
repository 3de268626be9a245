// Transport over real sockets: TCP (pooled connections) and UDP on one shard's libuv loop.
//
// Inbound bytes go through wire::FrameCodec::decode (the pure decoder); the stream layer adds the
// frame deadline (a started frame must complete in time) and checks the header's length before any
// allocation. Any rejection on a TCP connection closes that connection; on UDP the datagram is dropped.
// Every rejection is counted in hs_wire_rejected_total{reason} and logged (rate-limited).
//
// Receiver binding: a frame sent to an endpoint is sealed for that endpoint's "ip:port" text; a reply
// for the requester's sender id. start() makes the codec accept frames sealed for the bound TCP and
// UDP addresses besides the identity's node id (docs/wire.md §1).
//
// Inbound connections are "pre-auth" until their first frame decodes (authenticated, right cluster,
// allowed role); only then do they take one of max_inbound_conns slots. Pre-auth connections are
// bounded in total (max_preauth_conns) and per source IP (max_preauth_per_source): a new connection
// over a bound evicts the oldest pre-auth connection (of that source first), so idle or slow
// unauthenticated connections can never keep a real peer out, and accepting never stops because of
// them. A pre-auth connection without a valid frame within preauth_timeout is closed. Every such
// close is counted in hs_net_conn_closed_total{reason=preauth_*} and logged (rate-limited); accept
// errors (fd limit) in hs_net_accept_errors_total{reason}, and at the fd limit the oldest pre-auth
// connection is closed to free a descriptor.
//
// Outbound pool: per-peer and total connection limits are reserved before uv_tcp_connect, so they
// hold however many requests arrive at once. Connections idle longer than idle_timeout close.
// Failed connects back off exponentially with jitter; frames wait in a bounded per-peer backlog and
// requests waiting there fail with a timeout at their deadline. Write queues are bounded per
// connection/peer and in total; a full queue returns backpressure to the caller.
#pragma once

#include <uv.h>

#include <memory>
#include <array>
#include <queue>
#include <set>
#include <unordered_map>
#include <vector>

#include "hyperscale/base/random.hpp"
#include "hyperscale/net/transport.hpp"
#include "hyperscale/runtime/reactor.hpp"

namespace hs::net {

struct TransportConfig {
  std::string listen_host = "127.0.0.1";
  std::uint16_t tcp_port = 0;  // 0: ephemeral
  std::uint16_t udp_port = 0;  // 0: ephemeral
  bool enable_tcp_listen = true;
  bool enable_udp = true;
  std::size_t max_conns_per_peer = 4;
  std::size_t max_conns_total = 1024;                  // outbound
  std::size_t max_inbound_conns = 4096;                // authenticated inbound connections
  std::size_t max_preauth_conns = 512;                 // inbound connections without a valid frame yet
  std::size_t max_preauth_per_source = 64;             // of those, from one source IP
  Duration preauth_timeout = std::chrono::seconds(2);  // first valid frame due by then (from accept)
  std::size_t open_new_at_inflight = 16;               // open another connection to a peer past this many requests
  Duration idle_timeout = std::chrono::seconds(60);
  Duration connect_timeout = std::chrono::seconds(5);
  Duration frame_deadline = std::chrono::seconds(5);
  Duration backoff_initial = std::chrono::milliseconds(100);
  Duration backoff_max = std::chrono::seconds(10);
  Duration sweep_period = std::chrono::milliseconds(100);
  std::size_t max_conn_write_queue = 8u << 20;  // bytes per connection (and per peer backlog)
  std::size_t max_total_write_queue = 256u << 20;
  std::size_t max_pending_requests = 65'536;
  std::size_t max_peers = 4096;
  std::uint64_t seed = 0;  // jitter; 0: random
};

struct TransportStats {
  std::size_t outbound_conns = 0;
  std::size_t outbound_conns_max = 0;  // high-water mark
  std::size_t inbound_conns = 0;       // pre-auth included
  std::size_t preauth_conns = 0;       // inbound, no valid frame yet
  std::size_t pending_requests = 0;
  std::size_t queued_bytes = 0;
  std::uint64_t connect_attempts = 0;
  std::uint64_t connect_failures = 0;
  std::size_t largest_frame_buffer = 0;  // largest receive buffer ever allocated for one frame
};

// What this transport has seen of one peer's reachability (for a client to tell "refused" from "no
// reply" from "the peer closed on us": a peer that authenticates nothing closes the connection).
struct PeerLink {
  bool known = false;                  // the transport has a peer entry for this endpoint
  std::uint32_t connect_failures = 0;  // consecutive failed connects (0 after a success)
  std::uint64_t connect_failures_total = 0;
  std::string last_connect_error;       // libuv's text of the last failed connect ("connection refused")
  std::uint64_t closed_after_send = 0;  // connections the peer closed (EOF) after frames went out on them
};

class UvTransport final : public Transport {
 public:
  UvTransport(runtime::Reactor& reactor, TransportConfig cfg, wire::Identity self, wire::Keyring keys,
              wire::Limits limits = {});
  ~UvTransport() override;
  UvTransport(const UvTransport&) = delete;
  UvTransport& operator=(const UvTransport&) = delete;

  // Binds and listens. Call once on the reactor's thread.
  Status start();
  // Closes every handle; pending requests fail with unavailable. Idempotent. `done` (optional) runs
  // once every handle has finished closing; after that the object may be destroyed anywhere.
  // Destroying it while handles are still open is only valid when its loop is not running (the
  // destructor runs the loop briefly to finish closing).
  void close(std::function<void()> done = {});
  bool fully_closed() const noexcept { return closed_ && open_handles_ == 0; }

  void on(wire::MsgType type, Handler h) override;
  Status send_datagram(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) override;
  Status send(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body) override;
  Status request(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body, Duration deadline,
                 ReplyFn done) override;
  Endpoint tcp_endpoint() const override { return tcp_ep_; }
  Endpoint udp_endpoint() const override { return udp_ep_; }

  wire::FrameCodec& codec() noexcept { return codec_; }
  TransportStats stats() const;
  std::size_t peer_conns(const Endpoint& to) const;
  PeerLink peer_link(const Endpoint& to) const;
  // Drops idle connections and retries peers now (tests).
  void sweep_now() { sweep(); }

  struct Conn;
  struct Peer;

 private:
  friend struct ConnAccess;
  Status enqueue(const Endpoint& to, wire::MsgType type, std::span<const std::uint8_t> body, std::uint64_t corr,
                 bool is_reply, Conn** used);
  Status reply_on(std::uint64_t conn_id, std::uint64_t corr, wire::MsgType type, std::span<const std::uint8_t> body,
                  std::string_view receiver);
  // send_datagram() sealed for `receiver` (a UDP reply: the requester's sender id, not its socket).
  Status send_datagram_for(const Endpoint& to, std::string_view receiver, wire::MsgType type,
                           std::span<const std::uint8_t> body);
  void check_all_closed();
  Status write_frame(Conn& c, wire::MsgType type, std::span<const std::uint8_t> body, std::uint64_t corr, bool is_reply,
                     std::string_view receiver);
  Peer* peer_for(const Endpoint& to, Status& err);
  Conn* pick_conn(Peer& p);
  Conn* open_conn(Peer& p);
  void on_connected(Conn& c, int status);
  void on_accept(int status);
  void on_read(Conn& c, const std::uint8_t* data, std::size_t n);
  void on_frame(Conn& c);
  void reject(Conn& c, wire::Reject r, std::string_view detail);
  void close_conn(Conn& c, std::string_view why);
  void conn_closed(Conn& c);  // handle fully closed: free
  void flush();
  void flush_conn(Conn& c);
  void on_written(Conn& c, std::size_t bytes, int status);
  void dispatch(wire::Decoded&& d, const Endpoint& from, Conn* c);
  void complete(std::uint64_t corr, Result<wire::Decoded> r);
  void arm_deadline_timer();
  void on_deadline_timer();
  void sweep();
  void admit_preauth(Conn& c);
  void preauth_forget(Conn& c);
  void close_preauth(Conn& c, std::size_t reason, std::string_view detail);
  void note_limited(std::size_t kind, std::string_view event, std::string_view what);
  void on_udp(const std::uint8_t* data, std::size_t n, const sockaddr* addr);
  Duration backoff_delay(std::uint32_t failures);
  std::int64_t wall_ms() const;

  runtime::Reactor& reactor_;
  TransportConfig cfg_;
  wire::FrameCodec codec_;
  Rng rng_;
  bool started_ = false;
  bool closed_ = false;
  std::shared_ptr<UvTransport*> alive_;
  std::uint64_t turn_end_hook_ = 0;  // removed from the reactor in the destructor
  int open_handles_ = 0;
  std::function<void()> on_all_closed_;
  std::vector<std::uint8_t> udp_out_;
  uv_tcp_t listener_{};
  uv_udp_t udp_{};
  uv_timer_t deadline_timer_{};
  std::int64_t deadline_armed_ns_ = -1;
  runtime::TaskId sweep_task_{};
  Endpoint tcp_ep_, udp_ep_;
  std::unordered_map<std::uint8_t, Handler> handlers_;
  std::unordered_map<std::string, std::unique_ptr<Peer>> peers_;
  std::unordered_map<std::uint64_t, Conn*> conns_;
  std::vector<std::uint64_t> dirty_;  // connection ids with staged bytes
  std::uint64_t next_conn_id_ = 1;
  std::uint64_t next_corr_ = 1;
  std::size_t outbound_ = 0, outbound_max_ = 0, inbound_ = 0;
  std::size_t inbound_authed_ = 0;  // inbound connections past their first valid frame
  // Pre-auth inbound connections by id (ids grow with accept order: the first is the oldest), in
  // total and per source IP. Bounded by max_preauth_conns; an entry leaves when its connection
  // authenticates or closes, a source's set when it empties.
  std::set<std::uint64_t> preauth_;
  std::unordered_map<std::string, std::set<std::uint64_t>> preauth_by_source_;
  Instant last_sweep_{0};
  std::uint64_t fd_limit_ = 0;  // RLIMIT_NOFILE at start; 0: unknown / unlimited
  // Rate-limited warnings (at most kLogPerSecond lines per kind and second, then one summary).
  struct LogSlot {
    std::int64_t second = -1;
    std::uint32_t logged = 0;
    std::uint64_t suppressed = 0;
  };
  std::array<LogSlot, 8> log_slots_{};
  std::size_t queued_bytes_ = 0;
  std::uint64_t connect_attempts_ = 0, connect_failures_ = 0;
  std::size_t largest_frame_buffer_ = 0;
  struct Pending {
    ReplyFn done;
    Instant deadline;
    std::uint64_t conn_id = 0;  // connection it was written on; 0 while in a peer backlog
    std::string peer;
  };
  std::unordered_map<std::uint64_t, Pending> pending_;
  using DL = std::pair<std::int64_t, std::uint64_t>;
  std::priority_queue<DL, std::vector<DL>, std::greater<>> deadlines_;
  std::vector<std::uint8_t> read_buf_;
  std::vector<std::uint8_t> dgram_buf_;
  metrics::Counter& send_errors_backpressure_;
  metrics::Counter& request_timeouts_;
  metrics::Counter& conn_closed_reject_;
  metrics::Counter& conn_closed_idle_;
  metrics::Counter& conn_closed_error_;
  metrics::Counter& connect_failures_ctr_;
  metrics::Counter& late_replies_;
  metrics::Counter& unhandled_;
  metrics::Counter& handler_errors_;
  metrics::Counter& refused_inbound_;
  // hs_net_conn_closed_total{reason=preauth_timeout|preauth_evicted|preauth_evicted_source|preauth_fd_limit}
  std::array<metrics::Counter*, 4> preauth_closed_{};
  metrics::Counter& accept_fd_limit_;
  metrics::Counter& accept_error_;
  metrics::Gauge& preauth_gauge_;
  metrics::Gauge& outbound_gauge_;
  metrics::Gauge& inbound_gauge_;
};

}  // namespace hs::net
