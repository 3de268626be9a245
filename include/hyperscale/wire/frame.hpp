// Wire frames: header parsing, AES-256-GCM sealing, replay guard, FlatBuffers verification, role matrix.
//
// Frame layout (all integers big-endian), 24-byte header followed by the sealed payload:
//
//   0  u32 magic        'H' 'S' 'W' '1'
//   4  u8  major        protocol major version; must equal kMajor
//   5  u8  minor        sender's protocol minor version (informational; negotiated per peer)
//   6  u16 type         message type, a value of fb::Body (messages.fbs)
//   8  u32 length       bytes that follow the header: ciphertext + 16-byte GCM tag
//  12  u8[12] nonce     random per frame
//  24  ciphertext       AES-256-GCM of the Envelope FlatBuffer; the 24 header bytes are the AAD
//  ..  u8[16] tag
//
// Decoding is a pure function of (bytes, codec state, time): FrameCodec::decode() runs every check in a
// fixed order and returns either a decoded message or exactly one rejection reason. It does no I/O,
// so unit tests and the fuzzer drive it directly; the transport (src/net) feeds it bytes.
#pragma once

#include <array>
#include <cstdint>
#include <deque>
#include <list>
#include <optional>
#include <span>
#include <string>
#include <string_view>
#include <unordered_map>
#include <vector>

#include "hyperscale/base/metrics.hpp"
#include "hyperscale/base/status.hpp"
#include "hyperscale/base/time.hpp"
#include "hyperscale/wire/messages.hpp"

namespace hs::wire {

inline constexpr std::uint32_t kMagic = 0x48535731;  // "HSW1"
inline constexpr std::uint8_t kMajor = 1;
inline constexpr std::uint8_t kMinor = 2;  // 1.1: RoleMessage; 1.2: Envelope.receiver_id (required)
inline constexpr std::size_t kHeaderSize = 24;
inline constexpr std::size_t kNonceSize = 12;
inline constexpr std::size_t kTagSize = 16;
inline constexpr std::size_t kKeySize = 32;

// Why a frame was dropped. Each reason is a label value of hs_wire_rejected_total{reason}.
enum class Reject : std::uint8_t {
  none = 0,
  truncated,  // fewer bytes than the header or than the header's length says
  bad_magic,
  version_mismatch,  // major version differs
  oversize,          // length field above the limit (checked before any allocation)
  unknown_type,      // type not in this build's schema
  auth_failed,       // GCM tag mismatch under every accepted key (wrong key, flipped bit)
  verify_failed,     // the envelope or body failed the FlatBuffers verifier
  type_mismatch,     // envelope says something the header contradicts
  wrong_cluster,
  wrong_receiver,  // sealed for another node (a frame replayed to a node it was not sent to), or no receiver
  role_not_allowed,
  replay,          // (sender, incarnation, sequence) seen already, or older than the window
  stale,           // timestamp older than max_age
  future,          // timestamp further ahead than max_future
  stalled,         // a started frame did not complete before the deadline (stream layer)
  trailing_bytes,  // a datagram longer than its frame
  kCount
};
std::string_view reject_name(Reject r) noexcept;

using MsgType = fb::Body;
std::string_view type_name(MsgType t) noexcept;
bool known_type(std::uint16_t raw) noexcept;

struct Limits {
  std::size_t max_tcp_frame = 1 << 20;  // header + sealed payload, bytes
  std::size_t max_udp_datagram = 1400;  // whole datagram, bytes
  Duration max_age = std::chrono::seconds(300);
  Duration max_future = std::chrono::seconds(60);
  std::size_t replay_window = 1024;         // sequence numbers tracked per (sender, incarnation)
  std::size_t replay_max_senders = 10'000;  // least recently seen evicted past this
  std::size_t verifier_max_depth = 64;
  std::size_t verifier_max_tables = 100'000;
};

// ---- header ----
struct FrameHeader {
  std::uint32_t magic = kMagic;
  std::uint8_t major = kMajor;
  std::uint8_t minor = kMinor;
  std::uint16_t type = 0;
  std::uint32_t length = 0;
  std::array<std::uint8_t, kNonceSize> nonce{};
};
void write_header(const FrameHeader& h, std::uint8_t* out) noexcept;  // kHeaderSize bytes
// Parses and checks magic, major version, type and length (against max_frame, counting the header)
// without allocating. Returns Reject::truncated if fewer than kHeaderSize bytes are given.
Reject parse_header(std::span<const std::uint8_t> bytes, std::size_t max_frame, FrameHeader& out) noexcept;

// ---- keys ----
struct Key {
  std::array<std::uint8_t, kKeySize> bytes{};
  // HKDF-SHA256(secret, salt = "hyperscale-wire-v1", info = "aes-256-gcm frame key").
  static Result<Key> derive(std::string_view secret);
  friend bool operator==(const Key&, const Key&) = default;
};
// Where a secret comes from: a file (first line, trailing whitespace trimmed) or an environment
// variable. Exactly one should be set; the file wins if both are.
struct SecretSource {
  std::string file;
  std::string env;
  bool empty() const noexcept { return file.empty() && env.empty(); }
};
inline constexpr std::size_t kMinSecretLength = 16;
Result<std::string> load_secret(const SecretSource& src);
struct Keyring {
  Key current;
  std::optional<Key> previous;  // accepted for decryption only (rotation)
};
// Loads current (required) and previous (optional) secrets and derives both keys.
Result<Keyring> load_keyring(const SecretSource& current, const SecretSource& previous);

// ---- role matrix ----
// Whether `sender` may send `type` to `receiver` (see docs/wire.md for the table).
bool role_allowed(MsgType type, fb::Role sender, fb::Role receiver) noexcept;

// ---- replay guard ----
class ReplayGuard {
 public:
  explicit ReplayGuard(const Limits& l);
  // Checks and, when accepted, records. Time in ms since the Unix epoch.
  Reject check(std::string_view sender, std::uint64_t incarnation, std::uint64_t sequence, std::int64_t ts_ms,
               std::int64_t now_ms);
  std::size_t senders() const noexcept { return map_.size(); }

 private:
  struct Window {
    std::uint64_t highest = 0;
    std::vector<std::uint64_t> bits;  // bit i: highest - i seen
    std::list<std::string>::iterator lru;
  };
  std::size_t window_;
  std::size_t max_senders_;
  std::int64_t max_age_ms_;
  std::int64_t max_future_ms_;
  std::list<std::string> lru_;  // front = most recent
  std::unordered_map<std::string, Window> map_;
};

// ---- codec ----
// A node's node id is the text a sender puts in Envelope.receiver_id to reach it: for a daemon
// (host::NetHost) its listen address "ip:port". A transport that listens on sockets also accepts
// frames sealed for its bound addresses (FrameCodec::accept_receiver), so nodes named otherwise
// (tests, benchmarks) are reachable by address.
struct Identity {
  std::string cluster_id = "hyperscale";
  std::string node_id;
  fb::Role role = fb::Role::Unknown;
  std::uint64_t incarnation = 0;  // 0: random at construction
  std::uint8_t minor = kMinor;    // protocol minor this node speaks (tests emulate newer peers)
};

enum class Channel : std::uint8_t { tcp, udp };

// A decoded, authenticated, verified message. Owns its bytes; `body` points into them.
struct Decoded {
  MsgType type = MsgType::NONE;
  std::uint8_t peer_minor = 0;
  std::vector<std::uint8_t> plaintext;
  std::string sender_id;
  fb::Role sender_role = fb::Role::Unknown;
  std::uint64_t incarnation = 0;
  std::uint64_t sequence = 0;
  std::uint64_t correlation = 0;
  bool is_reply = false;
  std::span<const std::uint8_t> body;
  bool used_previous_key = false;
};

struct DecodeResult {
  Reject reason = Reject::none;
  std::string detail;  // human-readable context for the log line
  Decoded msg;
  bool ok() const noexcept { return reason == Reject::none; }
};

// Rate-limited rejection log: the first `per_second` lines per reason per second are logged, the
// rest are counted and reported in one `rejects_suppressed` line when the next second starts.
class RejectLog {
 public:
  explicit RejectLog(std::uint32_t per_second = 5) : per_second_(per_second) {}
  void log(Reject r, Channel ch, std::string_view peer, std::string_view detail, Instant now);
  std::uint64_t suppressed_total() const noexcept { return suppressed_total_; }

 private:
  struct Slot {
    std::int64_t second = -1;
    std::uint32_t logged = 0;
    std::uint64_t suppressed = 0;
  };
  std::uint32_t per_second_;
  std::array<Slot, static_cast<std::size_t>(Reject::kCount)> slots_{};
  std::uint64_t suppressed_total_ = 0;
};

class FrameCodec {
 public:
  FrameCodec(Identity self, Keyring keys, Limits limits, metrics::Registry& metrics);
  ~FrameCodec();
  FrameCodec(const FrameCodec&) = delete;
  FrameCodec& operator=(const FrameCodec&) = delete;

  const Identity& self() const noexcept { return self_; }
  const Limits& limits() const noexcept { return limits_; }

  // Appends one sealed frame carrying `body` (a finished FlatBuffer whose root is `type`'s table) to
  // `out`, bound to `receiver` (the node id / address of the one node that may accept it; a reply
  // goes to the request's sender_id). Fails with invalid_argument if the frame would exceed the
  // channel's limit or `receiver` is empty.
  Status seal(MsgType type, std::span<const std::uint8_t> body, std::uint64_t correlation, bool is_reply, Channel ch,
              std::string_view receiver, std::vector<std::uint8_t>& out, std::int64_t now_ms);
  // As seal(), with explicit sequence and incarnation (tests: replays, forged senders). An empty
  // `receiver` leaves the field out, as a peer older than protocol 1.2 would.
  Status seal_raw(MsgType type, std::span<const std::uint8_t> body, std::uint64_t correlation, bool is_reply,
                  Channel ch, std::string_view receiver, std::vector<std::uint8_t>& out, std::int64_t now_ms,
                  std::uint64_t sequence, const Identity& as);

  // Also accept frames sealed for `name` (besides self().node_id): the transport registers the
  // addresses it is bound to. At most kMaxReceiverNames names; fails with invalid_argument past that
  // or for an empty name.
  static constexpr std::size_t kMaxReceiverNames = 4;
  Status accept_receiver(std::string name);
  bool is_receiver(std::string_view name) const noexcept;

  // Decodes one complete frame (exactly the bytes of one frame for TCP; a whole datagram for UDP).
  // Pure apart from the replay guard. Counting and logging are separate (note_reject) so the stream
  // layer can count rejections it finds itself (stalled, oversize in the header) the same way.
  DecodeResult decode(std::span<const std::uint8_t> frame, Channel ch, std::int64_t now_ms);

  // Counts hs_wire_rejected_total{reason} and writes a rate-limited log line.
  void note_reject(Reject r, Channel ch, std::string_view peer, std::string_view detail, Instant now);

  // Rotation: replaces the keyring (new frames sealed with keys.current).
  void set_keys(Keyring keys);
  void drop_previous_key();

  std::uint64_t rejected(Reject r) const noexcept;
  std::uint64_t sequence() const noexcept { return next_seq_; }
  static constexpr std::size_t overhead() noexcept { return kHeaderSize + kTagSize; }

 private:
  // The cipher contexts are keyed once per key (AES key expansion is most of a small frame's cost)
  // and take only the nonce per frame.
  struct Cipher {
    void* ctx = nullptr;  // EVP_CIPHER_CTX*
    bool keyed = false;   // holds the key of its slot (sealing: current; opening: current, previous)
  };
  bool open_with(Cipher& c, const Key& k, const FrameHeader& h, std::span<const std::uint8_t> frame,
                 std::vector<std::uint8_t>& plain);
  bool fill_nonce(std::uint8_t* nonce, std::size_t n);

  Identity self_;
  std::vector<std::string> receiver_names_;  // bounded by kMaxReceiverNames
  Keyring keys_;
  Limits limits_;
  ReplayGuard guard_;
  RejectLog log_;
  Cipher seal_, open_current_, open_previous_;
  // Random nonces are drawn from the CSPRNG a block at a time (one RAND_bytes call costs about what
  // sealing a small frame does); every nonce is still fresh random bytes, used once.
  std::array<std::uint8_t, 4092> nonce_pool_{};
  std::size_t nonce_used_ = nonce_pool_.size();
  flatbuffers::FlatBufferBuilder fbb_{1024};
  std::uint64_t next_seq_ = 1;
  std::array<metrics::Counter*, static_cast<std::size_t>(Reject::kCount)> rejected_{};
  metrics::Counter& decoded_;
  metrics::Counter& previous_key_used_;
  metrics::Counter& sealed_;
};

// Protocol minor negotiation: both sides speak the lower minor.
inline std::uint8_t negotiate_minor(std::uint8_t ours, std::uint8_t theirs) noexcept {
  return ours < theirs ? ours : theirs;
}

}  // namespace hs::wire
