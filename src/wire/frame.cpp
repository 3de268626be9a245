#include "hyperscale/wire/frame.hpp"

#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/rand.h>

#include <cstdlib>
#include <cstring>
#include <fstream>

#include "hyperscale/base/assert.hpp"
#include "hyperscale/base/enum_names.hpp"
#include "hyperscale/base/log.hpp"
#include "hyperscale/base/random.hpp"

namespace hs::wire {

namespace {

std::uint32_t load_be32(const std::uint8_t* p) noexcept {
  return (std::uint32_t{p[0]} << 24) | (std::uint32_t{p[1]} << 16) | (std::uint32_t{p[2]} << 8) | p[3];
}
std::uint16_t load_be16(const std::uint8_t* p) noexcept { return static_cast<std::uint16_t>((p[0] << 8) | p[1]); }
void store_be32(std::uint8_t* p, std::uint32_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 24);
  p[1] = static_cast<std::uint8_t>(v >> 16);
  p[2] = static_cast<std::uint8_t>(v >> 8);
  p[3] = static_cast<std::uint8_t>(v);
}
void store_be16(std::uint8_t* p, std::uint16_t v) noexcept {
  p[0] = static_cast<std::uint8_t>(v >> 8);
  p[1] = static_cast<std::uint8_t>(v);
}

EVP_CIPHER_CTX* cctx(void* p) { return static_cast<EVP_CIPHER_CTX*>(p); }

constexpr std::uint8_t bit(fb::Role r) { return static_cast<std::uint8_t>(1u << static_cast<unsigned>(r)); }
constexpr std::uint8_t C = bit(fb::Role::Client), G = bit(fb::Role::Gate), M = bit(fb::Role::Manager),
                       W = bit(fb::Role::Worker), ANY = C | G | M | W;

struct RoleRule {
  std::uint8_t senders;
  std::uint8_t receivers;
};

RoleRule role_rule(MsgType t) noexcept {
  using B = fb::Body;
  switch (t) {
    case B::Ping:
      return {ANY, ANY};
    case B::Pong:
      return {ANY, ANY};
    case B::ErrorReply:
      return {ANY, ANY};
    case B::RoleMessage:  // narrowed to role pairs in role_allowed()
      return {ANY, ANY};
    default:
      return {0, 0};
  }
}

std::string trim(std::string s) {
  while (!s.empty() && (s.back() == '\n' || s.back() == '\r' || s.back() == ' ' || s.back() == '\t')) s.pop_back();
  return s;
}

}  // namespace

constexpr EnumNames<Reject, 17> kRejectNames{{"none", "truncated", "bad_magic", "version_mismatch", "oversize",
                                              "unknown_type", "auth_failed", "verify_failed", "type_mismatch",
                                              "wrong_cluster", "wrong_receiver", "role_not_allowed", "replay", "stale",
                                              "future", "stalled", "trailing_bytes"}};
static_assert(kRejectNames.covers(Reject::kCount, true));

std::string_view reject_name(Reject r) noexcept { return kRejectNames(r); }

bool role_allowed(MsgType type, fb::Role sender, fb::Role receiver) noexcept {
  if (sender == fb::Role::Unknown || receiver == fb::Role::Unknown) return false;
  if (static_cast<unsigned>(sender) > 4 || static_cast<unsigned>(receiver) > 4) return false;
  RoleRule r = role_rule(type);
  if ((r.senders & bit(sender)) == 0 || (r.receivers & bit(receiver)) == 0) return false;
  if (type == MsgType::RoleMessage) {
    // Role traffic of sans-IO nodes (host::NetHost): client<->manager, manager<->manager,
    // manager<->worker, worker<->worker (SWIM probes inside one membership group), and the gate
    // tier: client<->gate, gate<->gate, gate<->manager. Not client<->client, client<->worker nor
    // gate<->worker.
    const std::uint8_t pair = static_cast<std::uint8_t>(bit(sender) | bit(receiver));
    return pair == (C | M) || pair == M || pair == (M | W) || pair == W || pair == (C | G) || pair == G ||
           pair == (G | M);
  }
  return true;
}

// ---- header ----

void write_header(const FrameHeader& h, std::uint8_t* out) noexcept {
  store_be32(out, h.magic);
  out[4] = h.major;
  out[5] = h.minor;
  store_be16(out + 6, h.type);
  store_be32(out + 8, h.length);
  std::memcpy(out + 12, h.nonce.data(), kNonceSize);
}

Reject parse_header(std::span<const std::uint8_t> b, std::size_t max_frame, FrameHeader& h) noexcept {
  if (b.size() < kHeaderSize) return Reject::truncated;
  h.magic = load_be32(b.data());
  if (h.magic != kMagic) return Reject::bad_magic;
  h.major = b[4];
  h.minor = b[5];
  if (h.major != kMajor) return Reject::version_mismatch;
  h.type = load_be16(b.data() + 6);
  h.length = load_be32(b.data() + 8);
  std::memcpy(h.nonce.data(), b.data() + 12, kNonceSize);
  if (max_frame < kHeaderSize + kTagSize || h.length > max_frame - kHeaderSize) return Reject::oversize;
  if (h.length < kTagSize) return Reject::truncated;
  if (!known_type(h.type)) return Reject::unknown_type;
  return Reject::none;
}

// ---- keys ----

Result<Key> Key::derive(std::string_view secret) {
  if (secret.size() < kMinSecretLength)
    return make_error(Errc::invalid_argument, fmt::format("cluster secret is {} characters; at least {} required",
                                                          secret.size(), kMinSecretLength));
  Key k;
  EVP_PKEY_CTX* pctx = EVP_PKEY_CTX_new_id(EVP_PKEY_HKDF, nullptr);
  if (pctx == nullptr) return make_error(Errc::internal, "HKDF: EVP_PKEY_CTX_new_id failed");
  static constexpr char kSalt[] = "hyperscale-wire-v1";
  static constexpr char kInfo[] = "aes-256-gcm frame key";
  std::size_t len = k.bytes.size();
  bool ok = EVP_PKEY_derive_init(pctx) > 0 && EVP_PKEY_CTX_set_hkdf_md(pctx, EVP_sha256()) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_salt(pctx, reinterpret_cast<const unsigned char*>(kSalt), sizeof(kSalt) - 1) > 0 &&
            EVP_PKEY_CTX_set1_hkdf_key(pctx, reinterpret_cast<const unsigned char*>(secret.data()),
                                       static_cast<int>(secret.size())) > 0 &&
            EVP_PKEY_CTX_add1_hkdf_info(pctx, reinterpret_cast<const unsigned char*>(kInfo), sizeof(kInfo) - 1) > 0 &&
            EVP_PKEY_derive(pctx, k.bytes.data(), &len) > 0 && len == k.bytes.size();
  EVP_PKEY_CTX_free(pctx);
  if (!ok) return make_error(Errc::internal, "HKDF-SHA256 derivation failed");
  return k;
}

Result<std::string> load_secret(const SecretSource& src) {
  std::string secret;
  if (!src.file.empty()) {
    std::ifstream f(src.file, std::ios::binary);
    if (!f) return make_error(Errc::not_found, fmt::format("cluster secret file {}: cannot open", src.file));
    std::string line;
    std::getline(f, line);
    secret = trim(std::move(line));
    if (secret.empty())
      return make_error(Errc::invalid_argument, fmt::format("cluster secret file {} is empty", src.file));
  } else if (!src.env.empty()) {
    const char* v = std::getenv(src.env.c_str());
    if (v == nullptr || *v == '\0')
      return make_error(Errc::not_found, fmt::format("cluster secret environment variable {} is not set", src.env));
    secret = trim(v);
  } else {
    return make_error(Errc::invalid_argument, "no cluster secret configured (wire.secret_file or wire.secret_env)");
  }
  if (secret.size() < kMinSecretLength)
    return make_error(Errc::invalid_argument,
                      fmt::format("cluster secret from {} is {} characters; at least {} required",
                                  src.file.empty() ? "$" + src.env : src.file, secret.size(), kMinSecretLength));
  return secret;
}

Result<Keyring> load_keyring(const SecretSource& current, const SecretSource& previous) {
  HS_ASSIGN_OR_RETURN(std::string cur, load_secret(current));
  Keyring ring;
  HS_ASSIGN_OR_RETURN(ring.current, Key::derive(cur));
  if (!previous.empty()) {
    auto prev = load_secret(previous);
    if (!prev.ok()) return prev.status().with_context("previous key");
    HS_ASSIGN_OR_RETURN(Key pk, Key::derive(prev.value()));
    ring.previous = pk;
  }
  return ring;
}

// ---- replay guard ----

ReplayGuard::ReplayGuard(const Limits& l)
    : window_(((std::max<std::size_t>(l.replay_window, 64) + 63) / 64) * 64),
      max_senders_(std::max<std::size_t>(l.replay_max_senders, 1)),
      max_age_ms_(std::chrono::duration_cast<std::chrono::milliseconds>(l.max_age).count()),
      max_future_ms_(std::chrono::duration_cast<std::chrono::milliseconds>(l.max_future).count()) {}

Reject ReplayGuard::check(std::string_view sender, std::uint64_t incarnation, std::uint64_t seq, std::int64_t ts_ms,
                          std::int64_t now_ms) {
  if (ts_ms < now_ms - max_age_ms_) return Reject::stale;
  if (ts_ms > now_ms + max_future_ms_) return Reject::future;
  std::string key;
  key.reserve(sender.size() + 17);
  key.append(sender);
  key.push_back('/');
  key.append(fmt::format("{:016x}", incarnation));
  auto it = map_.find(key);
  if (it == map_.end()) {
    if (map_.size() >= max_senders_) {
      map_.erase(lru_.back());
      lru_.pop_back();
    }
    lru_.push_front(key);
    Window w;
    w.highest = seq;
    w.bits.assign(window_ / 64, 0);
    w.bits[(seq % window_) / 64] |= 1ull << (seq % 64);
    w.lru = lru_.begin();
    map_.emplace(std::move(key), std::move(w));
    return Reject::none;
  }
  Window& w = it->second;
  auto test = [&](std::uint64_t s) { return (w.bits[(s % window_) / 64] >> (s % 64)) & 1; };
  auto set = [&](std::uint64_t s) { w.bits[(s % window_) / 64] |= 1ull << (s % 64); };
  auto clear = [&](std::uint64_t s) { w.bits[(s % window_) / 64] &= ~(1ull << (s % 64)); };
  if (seq > w.highest) {
    if (seq - w.highest >= window_) {
      std::fill(w.bits.begin(), w.bits.end(), 0);
    } else {
      for (std::uint64_t s = w.highest + 1; s < seq; ++s) clear(s);
      clear(seq);
    }
    w.highest = seq;
    set(seq);
  } else {
    if (w.highest - seq >= window_) return Reject::replay;
    if (test(seq)) return Reject::replay;
    set(seq);
  }
  lru_.splice(lru_.begin(), lru_, w.lru);
  return Reject::none;
}

// ---- rejection log ----

void RejectLog::log(Reject r, Channel ch, std::string_view peer, std::string_view detail, Instant now) {
  auto& s = slots_[static_cast<std::size_t>(r)];
  std::int64_t sec = std::chrono::duration_cast<std::chrono::seconds>(now).count();
  if (sec != s.second) {
    if (s.suppressed > 0)
      log::warn("wire", "rejects_suppressed", "reason={} count={} window_s=1", reject_name(r), s.suppressed);
    s.second = sec;
    s.logged = 0;
    s.suppressed = 0;
  }
  if (s.logged < per_second_) {
    ++s.logged;
    log::warn("wire", "frame_rejected", "reason={} channel={} peer={} detail={}", reject_name(r),
              ch == Channel::tcp ? "tcp" : "udp", log::quoted(peer), log::quoted(detail));
  } else {
    ++s.suppressed;
    ++suppressed_total_;
  }
}

// ---- codec ----

FrameCodec::FrameCodec(Identity self, Keyring keys, Limits limits, metrics::Registry& metrics)
    : self_(std::move(self)),
      keys_(std::move(keys)),
      limits_(limits),
      guard_(limits_),
      decoded_(metrics.counter("hs_wire_frames_decoded_total", "Frames that passed every check")),
      previous_key_used_(
          metrics.counter("hs_wire_previous_key_used_total", "Frames opened with the previous (rotating-out) key")),
      sealed_(metrics.counter("hs_wire_frames_sealed_total", "Frames sealed for sending")) {
  if (self_.incarnation == 0) {
    std::uint64_t inc = 0;
    if (RAND_bytes(reinterpret_cast<unsigned char*>(&inc), sizeof(inc)) != 1) {
      log::warn("wire", "rand_failed", "what=incarnation fallback=rng");
      inc = Rng(static_cast<std::uint64_t>(wall_time_us())).next_u64();
    }
    self_.incarnation = inc | 1;
  }
  for (Cipher* c : {&seal_, &open_current_, &open_previous_}) c->ctx = EVP_CIPHER_CTX_new();
  for (std::size_t i = 1; i < rejected_.size(); ++i) {
    rejected_[i] = &metrics.counter("hs_wire_rejected_total", "Frames dropped, by reason",
                                    {{"reason", std::string(reject_name(static_cast<Reject>(i)))}});
  }
}

FrameCodec::~FrameCodec() {
  for (Cipher* c : {&seal_, &open_current_, &open_previous_}) EVP_CIPHER_CTX_free(cctx(c->ctx));
}

void FrameCodec::set_keys(Keyring keys) {
  keys_ = std::move(keys);
  for (Cipher* c : {&seal_, &open_current_, &open_previous_}) c->keyed = false;
}

void FrameCodec::drop_previous_key() {
  keys_.previous.reset();
  open_previous_.keyed = false;
}

bool FrameCodec::fill_nonce(std::uint8_t* nonce, std::size_t n) {
  HS_ASSERT(n > 0 && n <= nonce_pool_.size(), "nonce of {} bytes, pool of {}", n, nonce_pool_.size());
  if (nonce_used_ + n > nonce_pool_.size()) {
    if (RAND_bytes(nonce_pool_.data(), static_cast<int>(nonce_pool_.size())) != 1) return false;
    nonce_used_ = 0;
  }
  std::memcpy(nonce, nonce_pool_.data() + nonce_used_, n);
  std::memset(nonce_pool_.data() + nonce_used_, 0, n);  // a nonce leaves the pool once
  nonce_used_ += n;
  return true;
}

std::uint64_t FrameCodec::rejected(Reject r) const noexcept {
  auto i = static_cast<std::size_t>(r);
  return i > 0 && i < rejected_.size() ? rejected_[i]->value() : 0;
}

void FrameCodec::note_reject(Reject r, Channel ch, std::string_view peer, std::string_view detail, Instant now) {
  auto i = static_cast<std::size_t>(r);
  if (i == 0 || i >= rejected_.size()) return;
  rejected_[i]->inc();
  log_.log(r, ch, peer, detail, now);
}

Status FrameCodec::accept_receiver(std::string name) {
  if (name.empty()) return make_error(Errc::invalid_argument, "receiver name is empty");
  if (is_receiver(name)) return ok_status();
  if (receiver_names_.size() >= kMaxReceiverNames)
    return make_error(Errc::invalid_argument, fmt::format("node {} already accepts {} receiver names; not adding {}",
                                                          self_.node_id, receiver_names_.size(), name));
  receiver_names_.push_back(std::move(name));
  return ok_status();
}

bool FrameCodec::is_receiver(std::string_view name) const noexcept {
  if (name.empty()) return false;
  if (name == self_.node_id) return true;
  for (const auto& n : receiver_names_)
    if (name == n) return true;
  return false;
}

Status FrameCodec::seal(MsgType type, std::span<const std::uint8_t> body, std::uint64_t correlation, bool is_reply,
                        Channel ch, std::string_view receiver, std::vector<std::uint8_t>& out, std::int64_t now_ms) {
  if (receiver.empty())
    return make_error(Errc::invalid_argument,
                      fmt::format("{} frame has no receiver: every frame is sealed for one node", type_name(type)));
  HS_TRY(seal_raw(type, body, correlation, is_reply, ch, receiver, out, now_ms, next_seq_, self_));
  ++next_seq_;
  return ok_status();
}

Status FrameCodec::seal_raw(MsgType type, std::span<const std::uint8_t> body, std::uint64_t correlation, bool is_reply,
                            Channel ch, std::string_view receiver, std::vector<std::uint8_t>& out, std::int64_t now_ms,
                            std::uint64_t sequence, const Identity& as) {
  if (seal_.ctx == nullptr) return make_error(Errc::internal, "cipher context allocation failed");
  fbb_.Clear();
  auto cluster = fbb_.CreateString(as.cluster_id);
  auto sender = fbb_.CreateString(as.node_id);
  flatbuffers::Offset<flatbuffers::String> recv;
  if (!receiver.empty()) recv = fbb_.CreateString(receiver.data(), receiver.size());
  fbb_.ForceVectorAlignment(body.size(), 1, 16);
  auto bodyv = fbb_.CreateVector(body.data(), body.size());
  fb::EnvelopeBuilder eb(fbb_);
  eb.add_minor(as.minor);
  eb.add_cluster_id(cluster);
  eb.add_sender_id(sender);
  eb.add_sender_role(as.role);
  eb.add_incarnation(as.incarnation);
  eb.add_sequence(sequence);
  eb.add_timestamp_ms(now_ms);
  eb.add_correlation(correlation);
  eb.add_is_reply(is_reply);
  eb.add_body(bodyv);
  if (!receiver.empty()) eb.add_receiver_id(recv);
  fbb_.Finish(eb.Finish());
  const std::size_t plain = fbb_.GetSize();
  const std::size_t total = kHeaderSize + plain + kTagSize;
  const std::size_t limit = ch == Channel::tcp ? limits_.max_tcp_frame : limits_.max_udp_datagram;
  if (total > limit)
    return make_error(Errc::invalid_argument,
                      fmt::format("{} frame of {} bytes exceeds the {} limit of {} bytes", type_name(type), total,
                                  ch == Channel::tcp ? "tcp" : "udp", limit));
  FrameHeader h;
  h.minor = as.minor;
  h.type = static_cast<std::uint16_t>(type);
  h.length = static_cast<std::uint32_t>(plain + kTagSize);
  if (!fill_nonce(h.nonce.data(), h.nonce.size()))
    return make_error(Errc::internal, "RAND_bytes failed for the frame nonce");
  const std::size_t base = out.size();
  out.resize(base + total);
  std::uint8_t* p = out.data() + base;
  write_header(h, p);
  auto* c = cctx(seal_.ctx);
  int n = 0;
  if (!seal_.keyed)
    seal_.keyed = EVP_EncryptInit_ex(c, EVP_aes_256_gcm(), nullptr, keys_.current.bytes.data(), nullptr) == 1;
  bool ok = seal_.keyed && EVP_EncryptInit_ex(c, nullptr, nullptr, nullptr, h.nonce.data()) == 1 &&
            EVP_EncryptUpdate(c, nullptr, &n, p, static_cast<int>(kHeaderSize)) == 1 &&
            EVP_EncryptUpdate(c, p + kHeaderSize, &n, fbb_.GetBufferPointer(), static_cast<int>(plain)) == 1 &&
            EVP_EncryptFinal_ex(c, p + kHeaderSize + n, &n) == 1 &&
            EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_GET_TAG, static_cast<int>(kTagSize), p + kHeaderSize + plain) == 1;
  if (!ok) {
    out.resize(base);
    return make_error(Errc::internal, "AES-256-GCM encryption failed");
  }
  sealed_.inc();
  return ok_status();
}

bool FrameCodec::open_with(Cipher& cipher, const Key& k, const FrameHeader& h, std::span<const std::uint8_t> frame,
                           std::vector<std::uint8_t>& plain) {
  auto* c = cctx(cipher.ctx);
  const std::size_t clen = h.length - kTagSize;
  plain.resize(clen);
  int n = 0;
  std::array<std::uint8_t, kTagSize> tag;
  std::memcpy(tag.data(), frame.data() + kHeaderSize + clen, kTagSize);
  if (!cipher.keyed) cipher.keyed = EVP_DecryptInit_ex(c, EVP_aes_256_gcm(), nullptr, k.bytes.data(), nullptr) == 1;
  if (!cipher.keyed || EVP_DecryptInit_ex(c, nullptr, nullptr, nullptr, h.nonce.data()) != 1) return false;
  if (EVP_DecryptUpdate(c, nullptr, &n, frame.data(), static_cast<int>(kHeaderSize)) != 1) return false;
  if (clen > 0 && EVP_DecryptUpdate(c, plain.data(), &n, frame.data() + kHeaderSize, static_cast<int>(clen)) != 1)
    return false;
  if (EVP_CIPHER_CTX_ctrl(c, EVP_CTRL_GCM_SET_TAG, static_cast<int>(kTagSize), tag.data()) != 1) return false;
  std::uint8_t fin[16];
  return EVP_DecryptFinal_ex(c, fin, &n) == 1;
}

DecodeResult FrameCodec::decode(std::span<const std::uint8_t> frame, Channel ch, std::int64_t now_ms) {
  DecodeResult r;
  auto fail = [&r](Reject why, std::string detail) -> DecodeResult& {
    r.reason = why;
    r.detail = std::move(detail);
    return r;
  };
  if (open_current_.ctx == nullptr || open_previous_.ctx == nullptr)
    return fail(Reject::auth_failed, "no cipher context");
  const std::size_t limit = ch == Channel::tcp ? limits_.max_tcp_frame : limits_.max_udp_datagram;
  FrameHeader h;
  if (Reject why = parse_header(frame, limit, h); why != Reject::none)
    return fail(why, fmt::format("header: {} bytes available, limit {}", frame.size(), limit));
  const std::size_t total = kHeaderSize + std::size_t{h.length};
  if (frame.size() < total) return fail(Reject::truncated, fmt::format("{} of {} bytes", frame.size(), total));
  if (frame.size() > total)
    return fail(Reject::trailing_bytes, fmt::format("{} bytes after the frame", frame.size() - total));
  const auto type = static_cast<MsgType>(h.type);

  Decoded& d = r.msg;
  if (!open_with(open_current_, keys_.current, h, frame, d.plaintext)) {
    if (!keys_.previous || !open_with(open_previous_, *keys_.previous, h, frame, d.plaintext))
      return fail(Reject::auth_failed, fmt::format("type={} length={}", type_name(type), h.length));
    d.used_previous_key = true;
    previous_key_used_.inc();
  }
  flatbuffers::Verifier v(d.plaintext.data(), d.plaintext.size(),
                          static_cast<flatbuffers::uoffset_t>(limits_.verifier_max_depth),
                          static_cast<flatbuffers::uoffset_t>(limits_.verifier_max_tables));
  if (d.plaintext.size() < 8 || !v.VerifyBuffer<fb::Envelope>(nullptr))
    return fail(Reject::verify_failed, fmt::format("envelope of {} bytes", d.plaintext.size()));
  const fb::Envelope* env = flatbuffers::GetRoot<fb::Envelope>(d.plaintext.data());
  if (env->minor() != h.minor)
    return fail(Reject::type_mismatch, fmt::format("header minor {} envelope minor {}", h.minor, env->minor()));
  if (env->cluster_id() == nullptr || env->cluster_id()->string_view() != self_.cluster_id)
    return fail(Reject::wrong_cluster,
                fmt::format("cluster_id={}", env->cluster_id() ? env->cluster_id()->str() : std::string("<none>")));
  d.sender_id = env->sender_id() ? env->sender_id()->str() : std::string();
  // The receiver binding: a frame sealed for another node (captured and replayed to this one) or
  // carrying no receiver (a peer older than 1.2) is dropped here, before the replay guard records
  // its sequence and before any handler sees it.
  if (env->receiver_id() == nullptr)
    return fail(Reject::wrong_receiver,
                fmt::format("no receiver_id: sender={} speaks minor {}; minor >= 2 required", d.sender_id, h.minor));
  if (!is_receiver(env->receiver_id()->string_view()))
    return fail(Reject::wrong_receiver,
                fmt::format("receiver_id={} self={} sender={} type={}", env->receiver_id()->str(), self_.node_id,
                            d.sender_id, type_name(type)));
  d.sender_role = env->sender_role();
  if (!role_allowed(type, d.sender_role, self_.role))
    return fail(Reject::role_not_allowed,
                fmt::format("type={} sender={} sender_role={} receiver_role={}", type_name(type), d.sender_id,
                            fb::EnumNameRole(d.sender_role), fb::EnumNameRole(self_.role)));
  // Honest senders align the body vector to 16 (seal_raw); a misaligned one would make typed reads of
  // the body misaligned, so it is refused.
  if (env->body() != nullptr && reinterpret_cast<std::uintptr_t>(env->body()->data()) % 8 != 0)
    return fail(Reject::verify_failed,
                fmt::format("body of type {} from {} is not 8-byte aligned", type_name(type), d.sender_id));
  if (env->body() == nullptr || !verify_body(type, {env->body()->data(), env->body()->size()},
                                             limits_.verifier_max_depth, limits_.verifier_max_tables))
    return fail(Reject::verify_failed, fmt::format("body of type {} from {}", type_name(type), d.sender_id));
  if (Reject why = guard_.check(d.sender_id, env->incarnation(), env->sequence(), env->timestamp_ms(), now_ms);
      why != Reject::none)
    return fail(why, fmt::format("sender={} incarnation={:016x} sequence={} ts_ms={} now_ms={}", d.sender_id,
                                 env->incarnation(), env->sequence(), env->timestamp_ms(), now_ms));
  d.type = type;
  d.peer_minor = h.minor;
  d.incarnation = env->incarnation();
  d.sequence = env->sequence();
  d.correlation = env->correlation();
  d.is_reply = env->is_reply();
  d.body = {env->body()->data(), env->body()->size()};
  decoded_.inc();
  return r;
}

}  // namespace hs::wire
