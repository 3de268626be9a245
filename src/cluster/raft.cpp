// RaftNode: libraft's raft_io over the node contract. See include/hyperscale/cluster/raft.hpp.
//
// libraft calls the io methods synchronously and expects their callbacks later, never from inside
// the call. Completions are therefore queued and run from a node timer: sends and snapshot reads
// at the next flush (a zero-delay timer), appends and snapshot writes when the sync barrier that
// covers them fires. Messages wait for the same barrier when the disk holds writes that are not yet
// durable (a vote, a term, entries), so nothing is communicated that a crash could take back.
#include "hyperscale/cluster/raft.hpp"

#include <cstdint>
#include <deque>
#include <map>
#include <optional>

#include <fmt/format.h>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/log.hpp"
#include "raft_codec.hpp"

namespace hs::cluster {

namespace {
constexpr std::uint64_t kTagTick = 1;
constexpr std::uint64_t kTagFlush = 2;
constexpr std::uint64_t kTagSyncBit = 1ull << 62;  // tag = kTagSyncBit | write sequence number

unsigned to_ms(Duration d) {
  return static_cast<unsigned>(std::chrono::duration_cast<std::chrono::milliseconds>(d).count());
}
}  // namespace

class RaftNode::Impl {
 public:
  Impl(RaftConfig c, StateMachine& sm) : cfg_(std::move(c)), sm_(sm) {
    meta_keys_[0] = cfg_.storage_name + "/meta.0";
    meta_keys_[1] = cfg_.storage_name + "/meta.1";
    for (auto id : cfg_.voters) addresses_[id] = fmt::format("{}", id);
  }

  ~Impl() {
    if (!inited_) return;
    closing_ = true;  // user callbacks are not run from here on: their owners are being destroyed
    ctx_ = nullptr;   // the context may already be gone; closing touches neither timers nor disk
    raft_close(&raft_, nullptr);
  }

  // ---------------------------------------------------------------- node events

  void start(node::Context& ctx) {
    ctx_ = &ctx;
    HS_ASSERT(!cfg_.voters.empty(), "raft: no voters configured");
    HS_ASSERT(addresses_.count(ctx.self()) == 1, "raft: this node {} is not a voter", ctx.self());
    HS_ASSERT(cfg_.heartbeat < cfg_.election, "raft: heartbeat {} ms must be under the election timeout {} ms",
              to_ms(cfg_.heartbeat), to_ms(cfg_.election));
    // Fragment ids unique per incarnation (a receiver ignores ids it has recently finished): the
    // start time in the high bits, a counter in the low 16.
    fragment_ids_ = static_cast<std::uint64_t>(std::chrono::duration_cast<std::chrono::milliseconds>(ctx.now()).count())
                    << 16;
    init_io();
    const std::string& self_addr = addresses_[ctx.self()];
    int rv = raft_init(&raft_, &io_, &fsm_, ctx.self(), self_addr.c_str());
    if (rv != 0) return fail("raft_init", rv);
    inited_ = true;
    tracer_.impl = this;
    tracer_.enabled = log::enabled(log::Level::trace);
    tracer_.emit = &Impl::trace;
    raft_.tracer = &tracer_;
    raft_set_election_timeout(&raft_, to_ms(cfg_.election));
    raft_set_heartbeat_timeout(&raft_, to_ms(cfg_.heartbeat));
    raft_set_install_snapshot_timeout(&raft_, to_ms(cfg_.install_snapshot_timeout));
    raft_set_snapshot_threshold(&raft_, cfg_.snapshot_threshold);
    raft_set_snapshot_trailing(&raft_, cfg_.snapshot_trailing);
    raft_set_pre_vote(&raft_, true);
    rv = bootstrap_if_pristine();
    if (rv != 0) return fail("raft_bootstrap", rv);
    rv = raft_start(&raft_);
    if (rv != 0) return fail("raft_start", rv);
    started_ = true;
    after_event();
  }

  void message(node::Context& ctx, node::NodeId from, std::span<const std::uint8_t> bytes) {
    ctx_ = &ctx;
    if (!running()) return;
    auto it = addresses_.find(from);
    if (it == addresses_.end()) {
      ++counters_.unknown_sender;
      log::logf(log::Level::warn, "raft", "unknown_sender", "node={} from={} bytes={}", ctx.self(), from, bytes.size());
      return;
    }
    std::optional<node::Bytes> whole;
    if (raftc::is_fragment(bytes)) {
      whole = reassemble(from, bytes);
      if (!whole) return;
      bytes = *whole;
    }
    raft_message m;
    Status s = raftc::decode_message(bytes, m);
    if (!s.ok()) {
      ++counters_.decode_errors;
      log::logf(log::Level::warn, "raft", "decode_error", "node={} from={} error={}", ctx.self(), from,
                log::quoted(s.to_string()));
      return;
    }
    m.server_id = from;
    m.server_address = it->second.c_str();
    ++counters_.received;
    if (m.type == RAFT_IO_APPEND_ENTRIES) {
      // libraft 0.15 workaround (safety). On an AppendEntries that adds no new entry, its follower
      // sets commit_index = min(leader_commit, last_stored) and answers last_log_index =
      // last_stored. A follower with a stale suffix from an older term (entries after
      // prev_log_index that the leader does not have) would then apply entries that were never
      // committed, and the leader would count it as holding entries it does not hold. Raft's rule
      // is min(leader_commit, index of the last new entry): only the entries up to
      // prev_log_index + n_entries are known to match the leader's. We clamp both here.
      const std::uint64_t end = m.append_entries.prev_log_index + m.append_entries.n_entries;
      if (m.append_entries.leader_commit > end) {
        m.append_entries.leader_commit = end;
        ++counters_.commit_clamped;
      }
      answering_ = from;
      answering_end_ = end;
    }
    recv_cb_(&io_, &m);  // ownership of m's allocations passes to libraft
    answering_ = 0;
    after_event();
  }

  void timer(node::Context& ctx, std::uint64_t tag) {
    ctx_ = &ctx;
    if (tag == kTagTick) {
      tick_timer_ = 0;
      if (!running()) return;
      arm_tick();
      tick_cb_(&io_);
    } else if (tag == kTagFlush) {
      flush_armed_ = false;
      flush();
    } else if ((tag & kTagSyncBit) != 0) {
      if ((tag & node::kSyncFailed) != 0) {
        // The barrier failed (fsync error): nothing it covered may be counted as durable, and
        // what libraft was told is pending can never complete. Fail-stop.
        failed_ = true;
        ++counters_.storage_errors;
        log::logf(log::Level::error, "raft", "sync_failed", "node={} barrier={}", ctx.self(),
                  tag & ~(kTagSyncBit | node::kSyncFailed));
      } else {
        synced(tag & ~kTagSyncBit);
      }
    }
    after_event();
  }

  // ---------------------------------------------------------------- API

  Status propose(node::Bytes command, Done done) {
    if (!running()) return make_error(Errc::unavailable, "raft: not running");
    if (raft_state(&raft_) != RAFT_LEADER) {
      ++counters_.proposals_refused;
      return make_error(Errc::unavailable, fmt::format("raft: not the leader (leader {})", leader_id()));
    }
    if (pending_ >= cfg_.max_pending_proposals) {
      ++counters_.proposals_refused;
      return make_error(Errc::backpressure, fmt::format("raft: {} proposals in flight", pending_));
    }
    auto* req = new Apply{{}, this, std::move(done)};
    raft_buffer buf;
    buf.len = command.size();
    buf.base = raft_malloc(command.empty() ? 1 : command.size());
    if (buf.base == nullptr) {
      delete req;
      return make_error(Errc::backpressure, "raft: out of memory");
    }
    if (!command.empty()) std::memcpy(buf.base, command.data(), command.size());
    req->req.data = req;
    const int rv = raft_apply(&raft_, &req->req, &buf, 1, &Impl::applied_cb);
    if (rv != 0) {
      raft_free(buf.base);
      delete req;
      ++counters_.proposals_refused;
      return make_error(rv == RAFT_NOTLEADER ? Errc::unavailable : Errc::internal,
                        fmt::format("raft_apply: {}", raft_strerror(rv)));
    }
    ++pending_;
    ++counters_.proposals;
    return ok_status();
  }

  Status transfer(node::NodeId to) {
    if (!running() || raft_state(&raft_) != RAFT_LEADER) return make_error(Errc::unavailable, "raft: not the leader");
    if (transfer_active_) return make_error(Errc::already_exists, "raft: a leadership transfer is in progress");
    transfer_req_.data = this;
    const int rv = raft_transfer(&raft_, &transfer_req_, to, &Impl::transfer_cb);
    if (rv != 0)
      return make_error(Errc::invalid_argument, fmt::format("raft_transfer to {}: {}", to, raft_strerror(rv)));
    transfer_active_ = true;
    return ok_status();
  }

  bool running() const noexcept {
    return started_ && !failed_ && raft_state(const_cast<raft*>(&raft_)) != RAFT_UNAVAILABLE;
  }
  bool is_leader() const noexcept { return running() && raft_state(const_cast<raft*>(&raft_)) == RAFT_LEADER; }
  bool is_ready_leader() const noexcept { return is_leader() && ready_term_ == term(); }
  std::uint64_t term() const noexcept { return inited_ ? raft_.current_term : 0; }
  node::NodeId leader_id() const noexcept {
    if (!running()) return 0;
    raft_id id = 0;
    const char* addr = nullptr;
    raft_leader(const_cast<raft*>(&raft_), &id, &addr);
    return id;
  }
  std::uint64_t commit_index() const noexcept { return inited_ ? raft_.commit_index : 0; }
  std::uint64_t last_applied() const noexcept { return inited_ ? raft_.last_applied : 0; }
  std::uint64_t last_index() const noexcept { return inited_ ? raft_last_index(const_cast<raft*>(&raft_)) : 0; }

  RaftConfig cfg_;
  StateMachine& sm_;
  bool started_ = false;
  bool failed_ = false;
  Counters counters_;
  std::function<void()> on_change_;
  std::function<void()> on_applied_;
  std::uint64_t seen_applied_ = 0;
  std::size_t pending_appends() const noexcept { return appends_.size(); }

 private:
  struct Apply {
    struct raft_apply req;
    Impl* self;
    Done done;
  };
  struct Completion {
    Done done;
    Status status;
    std::uint64_t index;
    std::uint64_t result;
  };
  struct Barrier {
    struct raft_barrier req;
    Impl* self;
    std::uint64_t term;
  };

  // ---------------------------------------------------------------- helpers

  void fail(const char* what, int rv) {
    failed_ = true;
    ++counters_.storage_errors;
    log::logf(log::Level::error, "raft", "failed", "node={} step={} error={} detail={}", ctx_ ? ctx_->self() : 0, what,
              log::quoted(raft_strerror(rv)), log::quoted(inited_ ? raft_errmsg(&raft_) : ""));
  }

  void after_event() {
    if (inited_ && started_ && !failed_ && raft_state(&raft_) == RAFT_UNAVAILABLE) {
      // libraft stopped itself (a storage error reported through an io method): fail-stop.
      fail("libraft became unavailable", RAFT_IOERR);
    }
    const std::uint64_t t = term();
    const bool lead = is_leader();
    const node::NodeId l = leader_id();
    const bool ready = is_ready_leader();
    bool changed = false;
    if (t != seen_term_ || lead != seen_leader_ || l != seen_leader_id_) {
      changed = true;
      const bool newly = lead && (!seen_leader_ || t != seen_term_);
      seen_term_ = t;
      seen_leader_ = lead;
      seen_leader_id_ = l;
      // While this leader hands its leadership over (transfer_leadership, a gate's hand-off on
      // SIGTERM), libraft names no leader (raft_leader gives 0) although this node still leads.
      const bool transferring = transfer_active_ || raft_.transfer != nullptr;
      if (lead)
        HS_ASSERT(l == ctx_->self() || (l == 0 && transferring),
                  "raft: leader of term {} is {} but this node {} leads (transfer in progress: {})", t, l, ctx_->self(),
                  transferring);
      if (newly) issue_barrier();  // once per term: not again when a transfer that failed ends
      log::logf(log::Level::info, "raft", "state", "node={} term={} leader={} is_leader={}", ctx_->self(), t, l, lead);
    }
    if (ready != seen_ready_) {
      changed = true;
      seen_ready_ = ready;
    }
    // User code runs here, outside libraft: it may propose again.
    while (!completions_.empty()) {
      Completion c = std::move(completions_.front());
      completions_.pop_front();
      c.done(c.status, c.index, c.result);
    }
    if (changed && on_change_) on_change_();
    if (const std::uint64_t a = last_applied(); a > seen_applied_) {
      seen_applied_ = a;
      if (on_applied_) on_applied_();
    }
  }

  // A new leader has not necessarily applied every entry committed in earlier terms (libraft
  // commits them with the first entry of its own term). The barrier is that entry: once it is
  // applied, this leader's state machine holds everything the cluster committed before it.
  void issue_barrier() {
    auto* b = new Barrier{{}, this, term()};
    b->req.data = b;
    const int rv = raft_barrier(&raft_, &b->req, &Impl::barrier_cb);
    if (rv != 0) {
      delete b;
      log::logf(log::Level::warn, "raft", "barrier_failed", "node={} term={} error={}", ctx_->self(), term(),
                log::quoted(raft_strerror(rv)));
    }
  }

  static void barrier_cb(struct raft_barrier* req, int status) {
    auto* b = static_cast<Barrier*>(req->data);
    Impl* s = b->self;
    const std::uint64_t t = b->term;
    delete b;
    if (s->closing_ || status != 0) return;
    if (s->is_leader() && s->term() == t) {
      s->ready_term_ = t;  // after_event reports it (never call user code from inside libraft)
      log::logf(log::Level::info, "raft", "leader_ready", "node={} term={} applied={}", s->ctx_->self(), t,
                s->last_applied());
    }
  }

  int bootstrap_if_pristine() {
    if (ctx_->disk().get(meta_keys_[0]).has_value() || ctx_->disk().get(meta_keys_[1]).has_value() ||
        !ctx_->disk().read_log(cfg_.storage_name).empty()) {
      return 0;
    }
    raft_configuration conf;
    std::vector<raftc::Server> servers;
    for (auto id : cfg_.voters) servers.push_back({id, addresses_[id], RAFT_VOTER});
    int rv = raftc::to_raft_configuration(servers, &conf);
    if (rv != 0) return rv;
    rv = raft_bootstrap(&raft_, &conf);
    raft_configuration_close(&conf);
    return rv == RAFT_CANTBOOTSTRAP ? 0 : rv;
  }

  bool write_ok(const Status& s, const char* what) {
    ++write_seq_;
    if (s.ok()) return true;
    ++counters_.storage_errors;
    failed_ = true;
    log::logf(log::Level::error, "raft", "storage_error", "node={} op={} error={}", ctx_->self(), what,
              log::quoted(s.to_string()));
    std::snprintf(io_.errmsg, sizeof io_.errmsg, "%s: %s", what, s.to_string().c_str());
    return false;
  }

  void ensure_sync() {
    if (requested_seq_ >= write_seq_) return;
    requested_seq_ = write_seq_;
    ++counters_.syncs;
    ctx_->sync(kTagSyncBit | requested_seq_);
  }

  void arm_flush() {
    if (flush_armed_) return;
    flush_armed_ = true;
    ctx_->set_timer(Duration{0}, kTagFlush);
  }

  void arm_tick() { tick_timer_ = ctx_->set_timer(std::chrono::milliseconds(tick_ms_), kTagTick); }

  void send_now(node::NodeId to, node::Bytes msg) {
    ++counters_.sent;
    ctx_->send(to, std::move(msg));
  }

  // Nothing leaves before a sync barrier covers every write made so far (see the header).
  void send_or_hold(node::NodeId to, node::Bytes msg) {
    if (synced_seq_ >= write_seq_) {
      send_now(to, std::move(msg));
    } else if (held_.size() >= cfg_.max_held_messages) {
      ++counters_.held_dropped;  // a lost message: Raft retries it (heartbeats, timeouts)
      log::logf(log::Level::warn, "raft", "held_full", "node={} to={} held={}", ctx_->self(), to, held_.size());
    } else {
      ++counters_.held_for_sync;
      held_.push_back(Held{to, std::move(msg), write_seq_});
      ensure_sync();
    }
  }

  // A fragment: kept until its message is whole. Returns the whole message, or nothing yet.
  std::optional<node::Bytes> reassemble(node::NodeId from, std::span<const std::uint8_t> bytes) {
    ++counters_.fragments_received;
    raftc::Fragment f;
    std::string why;
    Status st = raftc::decode_fragment(bytes, f);
    node::Bytes whole;
    const auto out = st.ok() ? reassembly_.add(from, std::move(f), cfg_.max_snapshot_bytes, &whole, &why)
                             : raftc::Reassembly::Outcome::refused;
    if (!st.ok()) why = st.to_string();
    if (out == raftc::Reassembly::Outcome::refused) {
      ++counters_.reassembly_refused;
      log::logf(log::Level::warn, "raft", "fragment_refused", "node={} from={} error={}", ctx_->self(), from,
                log::quoted(why));
    }
    if (out != raftc::Reassembly::Outcome::complete) return std::nullopt;
    ++counters_.reassembled;
    return whole;
  }

  void synced(std::uint64_t seq) {
    if (seq > synced_seq_) synced_seq_ = seq;
    while (!held_.empty() && held_.front().seq <= synced_seq_) {
      send_now(held_.front().to, std::move(held_.front().msg));
      held_.pop_front();
    }
    while (!appends_.empty() && appends_.front().seq <= synced_seq_) {
      auto a = appends_.front();
      appends_.pop_front();
      a.req->cb(a.req, 0);
    }
    while (!snap_puts_.empty() && snap_puts_.front().seq <= synced_seq_) {
      auto p = snap_puts_.front();
      snap_puts_.pop_front();
      p.req->cb(p.req, 0);
    }
  }

  void flush() {
    while (!sends_.empty()) {
      auto s = sends_.front();
      sends_.pop_front();
      if (s.req->cb) s.req->cb(s.req, s.status);
    }
    while (!snap_gets_.empty()) {
      auto g = snap_gets_.front();
      snap_gets_.pop_front();
      raft_snapshot* snap = nullptr;
      int status = load_snapshot(&snap);
      g->cb(g, snap, status);
    }
  }

  int load_snapshot(raft_snapshot** out) {
    *out = nullptr;
    auto replayed = raftc::replay(ctx_->disk().read_log(cfg_.storage_name));
    if (!replayed.ok() || !replayed->snapshot) return RAFT_NOTFOUND;
    *out = raftc::to_raft_snapshot(*replayed->snapshot);
    return *out == nullptr ? RAFT_NOMEM : 0;
  }

  // ---------------------------------------------------------------- raft_io

  static Impl* self(raft_io* io) { return static_cast<Impl*>(io->impl); }

  void init_io() {
    io_.version = 1;
    io_.impl = this;
    io_.init = [](raft_io*, raft_id, const char*) { return 0; };
    io_.close = &Impl::io_close;
    io_.load = &Impl::io_load;
    io_.start = &Impl::io_start;
    io_.bootstrap = &Impl::io_bootstrap;
    io_.recover = [](raft_io*, const raft_configuration*) { return RAFT_NOTFOUND; };
    io_.set_term = &Impl::io_set_term;
    io_.set_vote = &Impl::io_set_vote;
    io_.send = &Impl::io_send;
    io_.append = &Impl::io_append;
    io_.truncate = &Impl::io_truncate;
    io_.snapshot_put = &Impl::io_snapshot_put;
    io_.snapshot_get = &Impl::io_snapshot_get;
    io_.time = [](raft_io* io) -> raft_time {
      return static_cast<raft_time>(
          std::chrono::duration_cast<std::chrono::milliseconds>(self(io)->ctx_->now()).count());
    };
    io_.random = [](raft_io* io, int min, int max) -> int {
      if (max <= min) return min;
      return min + static_cast<int>(self(io)->ctx_->rng().below(static_cast<std::uint64_t>(max - min)));
    };
    fsm_.version = 1;
    fsm_.data = this;
    fsm_.apply = &Impl::fsm_apply;
    fsm_.snapshot = &Impl::fsm_snapshot;
    fsm_.restore = &Impl::fsm_restore;
  }

  static void io_close(raft_io* io, raft_io_close_cb cb) {
    Impl* s = self(io);
    if (s->tick_timer_ != 0 && s->ctx_ != nullptr && !s->closing_) s->ctx_->cancel_timer(s->tick_timer_);
    s->tick_timer_ = 0;
    // Pending requests end so that libraft releases what they hold. Appends end as written (status
    // 0), never failed: libraft 0.15 truncates its in-memory log from a failed append's first entry,
    // which releases the entries later pending appends still hold, and their own release then reads
    // freed memory (seed 873 of the manager sweep; "raft: a member destroyed with appends waiting").
    // The instance is closing (unavailable), so a written status only releases the entries: nothing
    // is applied or acknowledged from here, and what was not synced is not on disk at the next start.
    while (!s->appends_.empty()) {
      auto a = s->appends_.front();
      s->appends_.pop_front();
      a.req->cb(a.req, 0);
    }
    while (!s->snap_puts_.empty()) {
      auto p = s->snap_puts_.front();
      s->snap_puts_.pop_front();
      p.req->cb(p.req, RAFT_CANCELED);
    }
    while (!s->sends_.empty()) {
      auto p = s->sends_.front();
      s->sends_.pop_front();
      if (p.req->cb) p.req->cb(p.req, RAFT_CANCELED);
    }
    while (!s->snap_gets_.empty()) {
      auto g = s->snap_gets_.front();
      s->snap_gets_.pop_front();
      g->cb(g, nullptr, RAFT_CANCELED);
    }
    s->held_.clear();
    if (cb) cb(io);
  }

  static int io_load(raft_io* io, raft_term* term, raft_id* voted_for, raft_snapshot** snapshot,
                     raft_index* start_index, raft_entry** entries, size_t* n_entries) {
    Impl* s = self(io);
    *term = 0;
    *voted_for = 0;
    *snapshot = nullptr;
    *start_index = 1;
    *entries = nullptr;
    *n_entries = 0;
    // The newest valid slot wins; a torn slot (its write was never synced) is skipped.
    bool any = false, valid = false;
    for (const auto& key : s->meta_keys_) {
      auto bytes = s->ctx_->disk().get(key);
      if (!bytes) continue;
      any = true;
      raftc::Meta m;
      Status st = raftc::decode_meta(*bytes, m);
      if (!st.ok()) {
        ++s->counters_.torn_records;
        log::logf(log::Level::warn, "raft", "meta_slot_skipped", "node={} key={} error={}", s->ctx_->self(),
                  log::quoted(key), log::quoted(st.to_string()));
        continue;
      }
      if (!valid || m.seq > s->meta_.seq) s->meta_ = m;
      valid = true;
    }
    if (any && !valid) return s->load_error(make_error(Errc::corruption, "raft: no valid term/vote record"));
    *term = s->meta_.term;
    *voted_for = s->meta_.vote;
    auto records = s->ctx_->disk().read_log(s->cfg_.storage_name);
    const std::uint64_t torn_before = s->counters_.torn_records;
    auto replayed = raftc::replay(records, &s->counters_.torn_records);
    if (!replayed.ok()) return s->load_error(replayed.status());
    if (s->counters_.torn_records != torn_before) {
      // Remove the torn tail from the disk too, or the next append would land after it.
      records.pop_back();
      log::logf(log::Level::warn, "raft", "torn_tail_dropped", "node={} records={}", s->ctx_->self(), records.size());
      if (!s->write_ok(s->ctx_->disk().replace_log(s->cfg_.storage_name, records), "drop torn tail")) return RAFT_IOERR;
    }
    if (replayed->snapshot) {
      *snapshot = raftc::to_raft_snapshot(*replayed->snapshot);
      if (*snapshot == nullptr) return RAFT_NOMEM;
    }
    *start_index = replayed->first;
    int rv = raftc::to_raft_entries(replayed->entries, entries, n_entries);
    if (rv != 0) {
      if (*snapshot != nullptr) {
        raft_configuration_close(&(*snapshot)->configuration);
        raft_free((*snapshot)->bufs[0].base);
        raft_free((*snapshot)->bufs);
        raft_free(*snapshot);
        *snapshot = nullptr;
      }
      return rv;
    }
    s->last_index_ = replayed->entries.empty() ? replayed->first - 1 : replayed->entries.back().index;
    log::logf(log::Level::info, "raft", "loaded", "node={} term={} vote={} snapshot={} first={} last={}",
              s->ctx_->self(), *term, *voted_for, replayed->snapshot ? replayed->snapshot->index : 0, replayed->first,
              s->last_index_);
    return 0;
  }

  int load_error(const Status& st) {
    ++counters_.storage_errors;
    log::logf(log::Level::error, "raft", "load_failed", "node={} error={}", ctx_->self(), log::quoted(st.to_string()));
    std::snprintf(io_.errmsg, sizeof io_.errmsg, "%s", st.to_string().c_str());
    return RAFT_CORRUPT;
  }

  static int io_start(raft_io* io, unsigned msecs, raft_io_tick_cb tick, raft_io_recv_cb recv) {
    Impl* s = self(io);
    s->tick_ms_ = msecs;
    s->tick_cb_ = tick;
    s->recv_cb_ = recv;
    s->arm_tick();
    return 0;
  }

  static int io_bootstrap(raft_io* io, const raft_configuration* conf) {
    Impl* s = self(io);
    if (s->meta_.term != 0 || s->last_index_ != 0) return RAFT_CANTBOOTSTRAP;
    raft_buffer buf;
    int rv = raft_configuration_encode(conf, &buf);
    if (rv != 0) return rv;
    raft_entry e{};
    e.term = 1;
    e.type = RAFT_CHANGE;
    e.buf = buf;
    const bool ok =
        s->write_ok(s->ctx_->disk().append(s->cfg_.storage_name, raftc::encode_entry(1, e)), "bootstrap entry");
    raft_free(buf.base);
    if (!ok) return RAFT_IOERR;
    s->last_index_ = 1;
    return s->put_meta(1, 0) ? 0 : RAFT_IOERR;
  }

  bool put_meta(std::uint64_t term, std::uint64_t vote) {
    raftc::Meta m{meta_.seq + 1, term, vote};
    if (!write_ok(ctx_->disk().put(meta_keys_[m.seq % 2], raftc::encode_meta(m)), "term/vote")) return false;
    meta_ = m;
    ensure_sync();
    return true;
  }

  static int io_set_term(raft_io* io, raft_term term) {
    Impl* s = self(io);
    if (s->failed_) return RAFT_IOERR;
    HS_ASSERT(term >= s->meta_.term, "raft: term must not go back: {} -> {}", s->meta_.term, term);
    return s->put_meta(term, 0) ? 0 : RAFT_IOERR;
  }

  static int io_set_vote(raft_io* io, raft_id id) {
    Impl* s = self(io);
    if (s->failed_) return RAFT_IOERR;
    return s->put_meta(s->meta_.term, id) ? 0 : RAFT_IOERR;
  }

  static int io_send(raft_io* io, raft_io_send* req, const raft_message* m, raft_io_send_cb cb) {
    Impl* s = self(io);
    req->cb = cb;
    bool cut = false;
    raft_message clamped;
    if (m->type == RAFT_IO_APPEND_ENTRIES_RESULT && m->append_entries_result.rejected == 0 &&
        s->answering_ == m->server_id && m->append_entries_result.last_log_index > s->answering_end_) {
      // The synchronous answer to the AppendEntries being received (see message()): report only
      // the prefix that is known to match the leader's log.
      clamped = *m;
      clamped.append_entries_result.last_log_index = s->answering_end_;
      m = &clamped;
      ++s->counters_.commit_clamped;
    }
    const std::size_t limit =
        m->type == RAFT_IO_APPEND_ENTRIES ? s->cfg_.max_message_bytes : s->cfg_.max_snapshot_bytes;
    auto bytes = raftc::encode_message(*m, limit, &cut);
    int status = 0;
    if (!bytes.ok()) {
      ++s->counters_.oversize_dropped;
      log::logf(log::Level::warn, "raft", "send_dropped", "node={} to={} error={}", s->ctx_->self(), m->server_id,
                log::quoted(bytes.status().to_string()));
      status = RAFT_TOOBIG;
    } else {
      if (cut) ++s->counters_.cut_batches;
      if (bytes->size() <= s->cfg_.max_message_bytes) {
        s->send_or_hold(m->server_id, std::move(*bytes));
      } else {
        auto pieces = raftc::fragment(*bytes, ++s->fragment_ids_, s->cfg_.max_message_bytes);
        s->counters_.fragments_sent += pieces.size();
        log::logf(log::Level::info, "raft", "send_fragmented", "node={} to={} type={} bytes={} fragments={}",
                  s->ctx_->self(), m->server_id, m->type, bytes->size(), pieces.size());
        for (auto& p : pieces) s->send_or_hold(m->server_id, std::move(p));
      }
    }
    s->sends_.push_back(PendingSend{req, status});
    s->arm_flush();
    return 0;
  }

  static int io_append(raft_io* io, raft_io_append* req, const raft_entry entries[], unsigned n, raft_io_append_cb cb) {
    Impl* s = self(io);
    if (s->failed_) return RAFT_IOERR;
    req->cb = cb;
    for (unsigned i = 0; i < n; ++i) {
      const std::uint64_t index = s->last_index_ + 1;
      if (!s->write_ok(s->ctx_->disk().append(s->cfg_.storage_name, raftc::encode_entry(index, entries[i])),
                       "append")) {
        return RAFT_IOERR;
      }
      s->last_index_ = index;
    }
    s->appends_.push_back(PendingAppend{req, s->write_seq_});
    s->ensure_sync();
    return 0;
  }

  static int io_truncate(raft_io* io, raft_index index) {
    Impl* s = self(io);
    if (s->failed_) return RAFT_IOERR;
    HS_ASSERT(index >= 1, "raft: truncate at index 0");
    if (!s->write_ok(s->ctx_->disk().append(s->cfg_.storage_name, raftc::encode_truncate(index)), "truncate")) {
      return RAFT_IOERR;
    }
    if (index <= s->last_index_) s->last_index_ = index - 1;
    s->ensure_sync();
    return 0;
  }

  static int io_snapshot_put(raft_io* io, unsigned trailing, raft_io_snapshot_put* req, const raft_snapshot* snap,
                             raft_io_snapshot_put_cb cb) {
    Impl* s = self(io);
    if (s->failed_) return RAFT_IOERR;
    req->cb = cb;
    std::vector<node::Bytes> records;
    records.push_back(raftc::encode_snapshot(*snap));
    if (trailing > 0) {
      // Keep the entries after index - trailing (libraft may still send them to a follower).
      auto replayed = raftc::replay(s->ctx_->disk().read_log(s->cfg_.storage_name));
      if (!replayed.ok()) return s->load_error(replayed.status());
      const std::uint64_t keep_from = snap->index > trailing ? snap->index - trailing + 1 : 1;
      for (const auto& e : replayed->entries) {
        if (e.index >= keep_from) records.push_back(raftc::encode_entry(e));
      }
    } else {
      s->last_index_ = snap->index;  // an installed snapshot replaces the whole log
    }
    if (!s->write_ok(s->ctx_->disk().replace_log(s->cfg_.storage_name, records), "snapshot")) return RAFT_IOERR;
    if (trailing == 0) {
      ++s->counters_.snapshots_installed;
    } else {
      ++s->counters_.snapshots_taken;
    }
    s->snap_puts_.push_back(PendingSnapPut{req, s->write_seq_});
    s->ensure_sync();
    return 0;
  }

  static int io_snapshot_get(raft_io* io, raft_io_snapshot_get* req, raft_io_snapshot_get_cb cb) {
    Impl* s = self(io);
    req->cb = cb;
    s->snap_gets_.push_back(req);
    s->arm_flush();
    return 0;
  }

  // ---------------------------------------------------------------- raft_fsm

  // RaftConfig::snapshot_threshold_max: the next snapshot after as many entries as, at the mean
  // size of the entries applied since the last one, make up this snapshot's bytes.
  void adapt_snapshot_threshold(std::size_t snapshot_bytes) {
    const std::uint64_t mean =
        applied_entries_ == 0 ? 1 : std::max<std::uint64_t>(1, applied_bytes_ / applied_entries_);
    const unsigned lo = cfg_.snapshot_threshold, hi = std::max(cfg_.snapshot_threshold, cfg_.snapshot_threshold_max);
    const auto next = static_cast<unsigned>(std::clamp<std::uint64_t>(snapshot_bytes / mean, lo, hi));
    raft_set_snapshot_threshold(&raft_, next);
    counters_.snapshot_threshold = next;
    applied_bytes_ = applied_entries_ = 0;
  }

  static int fsm_apply(raft_fsm* fsm, const raft_buffer* buf, void** result) {
    Impl* s = static_cast<Impl*>(fsm->data);
    const std::uint64_t index = s->raft_.last_applied + 1;
    const std::uint64_t out = s->sm_.apply(index, {static_cast<const std::uint8_t*>(buf->base), buf->len});
    ++s->counters_.applied;
    s->applied_bytes_ += buf->len;
    ++s->applied_entries_;
    *result = reinterpret_cast<void*>(static_cast<std::uintptr_t>(out));
    return 0;
  }

  static int fsm_snapshot(raft_fsm* fsm, raft_buffer* bufs[], unsigned* n) {
    Impl* s = static_cast<Impl*>(fsm->data);
    node::Bytes data = s->sm_.snapshot();
    s->adapt_snapshot_threshold(data.size());
    *bufs = static_cast<raft_buffer*>(raft_malloc(sizeof(raft_buffer)));
    if (*bufs == nullptr) return RAFT_NOMEM;
    (*bufs)[0].base = raft_malloc(data.empty() ? 1 : data.size());
    if ((*bufs)[0].base == nullptr) {
      raft_free(*bufs);
      return RAFT_NOMEM;
    }
    if (!data.empty()) std::memcpy((*bufs)[0].base, data.data(), data.size());
    (*bufs)[0].len = data.size();
    *n = 1;
    return 0;
  }

  static int fsm_restore(raft_fsm* fsm, raft_buffer* buf) {
    Impl* s = static_cast<Impl*>(fsm->data);
    Status st = s->sm_.restore({static_cast<const std::uint8_t*>(buf->base), buf->len});
    if (!st.ok()) {
      log::logf(log::Level::error, "raft", "restore_failed", "node={} error={}", s->ctx_->self(),
                log::quoted(st.to_string()));
      return RAFT_CORRUPT;  // buf stays libraft's on failure
    }
    raft_free(buf->base);  // ownership passed to us on success
    return 0;
  }

  // ---------------------------------------------------------------- callbacks

  static void applied_cb(struct raft_apply* req, int status, void* result) {
    auto* a = static_cast<Apply*>(req->data);
    Impl* s = a->self;
    --s->pending_;
    Done done = std::move(a->done);
    const std::uint64_t index = req->index;
    delete a;
    if (s->closing_ || !done) return;
    Status st = status == 0 ? ok_status()
                            : make_error(status == RAFT_LEADERSHIPLOST ? Errc::unavailable : Errc::cancelled,
                                         fmt::format("raft: {}", raft_strerror(status)));
    s->completions_.push_back(Completion{std::move(done), std::move(st), index,
                                         static_cast<std::uint64_t>(reinterpret_cast<std::uintptr_t>(result))});
  }

  static void transfer_cb(struct raft_transfer* req) { static_cast<Impl*>(req->data)->transfer_active_ = false; }

  static void trace(raft_tracer* t, const char* file, int line, const char* message) {
    auto* s = static_cast<Impl*>(t->impl);
    log::logf(log::Level::trace, "raft", "libraft", "node={} at={}:{} msg={}", s->ctx_ ? s->ctx_->self() : 0, file,
              line, log::quoted(message));
  }

  struct PendingAppend {
    raft_io_append* req;
    std::uint64_t seq;
  };
  struct PendingSnapPut {
    raft_io_snapshot_put* req;
    std::uint64_t seq;
  };
  struct PendingSend {
    raft_io_send* req;
    int status;
  };
  struct Held {
    node::NodeId to;
    node::Bytes msg;
    std::uint64_t seq;
  };

  node::Context* ctx_ = nullptr;
  raft raft_{};
  raft_io io_{};
  raft_fsm fsm_{};
  raft_tracer tracer_{};
  struct raft_transfer transfer_req_ {};
  bool transfer_active_ = false;
  bool inited_ = false;
  bool closing_ = false;
  std::map<node::NodeId, std::string> addresses_;  // bounded by the configured voters
  std::string meta_keys_[2];
  raftc::Meta meta_;
  std::uint64_t last_index_ = 0;
  node::NodeId answering_ = 0;       // the leader whose AppendEntries is being received
  std::uint64_t answering_end_ = 0;  // its prev_log_index + n_entries
  std::size_t pending_ = 0;

  unsigned tick_ms_ = 100;
  raft_io_tick_cb tick_cb_ = nullptr;
  raft_io_recv_cb recv_cb_ = nullptr;
  node::TimerId tick_timer_ = 0;
  bool flush_armed_ = false;

  std::uint64_t write_seq_ = 0, synced_seq_ = 0, requested_seq_ = 0;
  std::deque<PendingAppend> appends_;     // bounded by libraft's own in-flight appends
  std::deque<PendingSnapPut> snap_puts_;  // at most one at a time in libraft
  std::deque<PendingSend> sends_;         // drained at every flush
  std::deque<raft_io_snapshot_get*> snap_gets_;
  std::uint64_t applied_bytes_ = 0, applied_entries_ = 0;  // since the last snapshot (adapt_snapshot_threshold)
  std::deque<Held> held_;                                  // bounded by cfg_.max_held_messages
  raftc::Reassembly reassembly_;                           // one message at a time, at most cfg_.max_snapshot_bytes
  std::uint64_t fragment_ids_ = 0;

  std::uint64_t ready_term_ = 0;
  bool seen_ready_ = false;
  std::deque<Completion> completions_;  // bounded by max_pending_proposals
  std::uint64_t seen_term_ = 0;
  bool seen_leader_ = false;
  node::NodeId seen_leader_id_ = 0;
};

// -------------------------------------------------------------------- RaftNode

RaftNode::RaftNode(RaftConfig config, StateMachine& fsm) : impl_(std::make_unique<Impl>(std::move(config), fsm)) {}
RaftNode::~RaftNode() = default;

void RaftNode::on_start(node::Context& ctx) { impl_->start(ctx); }
void RaftNode::on_message(node::Context& ctx, node::NodeId from, std::span<const std::uint8_t> msg) {
  impl_->message(ctx, from, msg);
}
void RaftNode::on_timer(node::Context& ctx, node::TimerId, std::uint64_t tag) { impl_->timer(ctx, tag); }
Status RaftNode::propose(node::Bytes command, Done done) { return impl_->propose(std::move(command), std::move(done)); }
Status RaftNode::transfer_leadership(node::NodeId to) { return impl_->transfer(to); }
bool RaftNode::is_leader() const noexcept { return impl_->is_leader(); }
bool RaftNode::is_ready_leader() const noexcept { return impl_->is_ready_leader(); }
std::uint64_t RaftNode::term() const noexcept { return impl_->term(); }
node::NodeId RaftNode::leader_id() const noexcept { return impl_->leader_id(); }
std::uint64_t RaftNode::commit_index() const noexcept { return impl_->commit_index(); }
std::uint64_t RaftNode::last_applied() const noexcept { return impl_->last_applied(); }
std::uint64_t RaftNode::last_index() const noexcept { return impl_->last_index(); }
bool RaftNode::started() const noexcept { return impl_->started_; }
bool RaftNode::failed() const noexcept { return impl_->failed_; }
const RaftConfig& RaftNode::config() const noexcept { return impl_->cfg_; }
void RaftNode::set_on_change(std::function<void()> fn) { impl_->on_change_ = std::move(fn); }
void RaftNode::set_on_applied(std::function<void()> fn) { impl_->on_applied_ = std::move(fn); }
const RaftNode::Counters& RaftNode::counters() const noexcept { return impl_->counters_; }
std::size_t RaftNode::pending_appends() const noexcept { return impl_->pending_appends(); }

Result<StoredCommands> read_stored_commands(const std::vector<node::Bytes>& records) {
  HS_ASSIGN_OR_RETURN(raftc::Replayed r, raftc::replay(records));
  StoredCommands out;
  if (r.snapshot) {
    out.snapshot_index = r.snapshot->index;
    out.snapshot = std::move(r.snapshot->data);
  }
  for (auto& e : r.entries)
    if (e.index > out.snapshot_index && e.type == RAFT_COMMAND) out.commands.emplace_back(e.index, std::move(e.data));
  return out;
}

}  // namespace hs::cluster
