// The fragmenting of Raft messages over the transport's limit (src/cluster/raft_codec.hpp, private
// to the cluster module): split and reassembled whole in any order, duplicates and stale ids
// ignored, a message over the limit or inconsistent fragments refused. The simulator test
// "raft: a snapshot larger than a message is sent in fragments and installed" runs it end to end.
#include <catch2/catch.hpp>

#include <algorithm>
#include <numeric>

#include "cluster/raft_codec.hpp"
#include "hyperscale/cluster/codec.hpp"

using namespace hs;
using namespace hs::cluster::raftc;
using Outcome = Reassembly::Outcome;

namespace {

node::Bytes message(std::size_t n) {
  node::Bytes b(n);
  std::iota(b.begin(), b.end(), std::uint8_t{1});
  return b;
}

std::vector<Fragment> decoded(const std::vector<node::Bytes>& pieces) {
  std::vector<Fragment> out;
  for (const auto& p : pieces) {
    REQUIRE(is_fragment(p));
    REQUIRE(p.size() <= 100);
    Fragment f;
    REQUIRE(decode_fragment(p, f).ok());
    out.push_back(std::move(f));
  }
  return out;
}

}  // namespace

TEST_CASE("raft fragments: a message is split under the limit and reassembled whole, in any order") {
  const node::Bytes whole = message(1000);
  auto frags = decoded(fragment(whole, 7, 100));
  CHECK(frags.size() == (1000 + 47) / 48);
  std::reverse(frags.begin(), frags.end());
  Reassembly r;
  node::Bytes got;
  std::string why;
  for (std::size_t i = 0; i + 1 < frags.size(); ++i) CHECK(r.add(1, frags[i], 1 << 20, &got, &why) == Outcome::partial);
  CHECK(r.add(1, frags.back(), 1 << 20, &got, &why) == Outcome::complete);
  CHECK(got == whole);
  CHECK(r.bytes_held() == 0);
  // A duplicate of a finished message does not start it again.
  CHECK(r.add(1, frags[0], 1 << 20, &got, &why) == Outcome::stale);
}

TEST_CASE("raft fragments: duplicates, a replacing message, limits and inconsistent headers") {
  const auto a = decoded(fragment(message(300), 1, 100));
  const auto b = decoded(fragment(message(200), 2, 100));
  Reassembly r;
  node::Bytes got;
  std::string why;
  CHECK(r.add(1, a[0], 1 << 20, &got, &why) == Outcome::partial);
  CHECK(r.add(1, a[0], 1 << 20, &got, &why) == Outcome::duplicate);
  // Another message replaces the unfinished one; the old one's fragments are stale from then on.
  CHECK(r.add(1, b[0], 1 << 20, &got, &why) == Outcome::partial);
  CHECK(r.replaced() == 1);
  CHECK(r.add(1, a[1], 1 << 20, &got, &why) == Outcome::stale);
  for (std::size_t i = 1; i < b.size(); ++i) r.add(1, b[i], 1 << 20, &got, &why);
  CHECK(got == message(200));
  // Over the limit: refused at the first fragment, nothing held.
  const auto big = decoded(fragment(message(900), 3, 100));
  CHECK(r.add(1, big[0], 500, &got, &why) == Outcome::refused);
  CHECK(why.find("over the reassembly limit") != std::string::npos);
  CHECK(r.bytes_held() == 0);
  // A fragment that disagrees with the message in progress about its shape is refused.
  const auto c = decoded(fragment(message(300), 4, 100));
  CHECK(r.add(2, c[0], 1 << 20, &got, &why) == Outcome::partial);
  Fragment odd = c[1];
  odd.count += 1;
  CHECK(r.add(2, odd, 1 << 20, &got, &why) == Outcome::refused);
  CHECK(r.bytes_held() == c[0].chunk.size());
}

TEST_CASE("raft fragments: garbage is refused with a reason") {
  Fragment f;
  CHECK_FALSE(decode_fragment(node::Bytes{1, kFragment}, f).ok());
  auto p = fragment(message(50), 9, 100)[0];
  for (std::size_t cut = 0; cut < p.size(); ++cut)
    CHECK_FALSE(decode_fragment(std::span<const std::uint8_t>(p).first(cut), f).ok());
  // index >= count
  cluster::Writer w;
  w.u8(kWireVersion);
  w.u8(kFragment);
  w.var(9);
  w.var(3);
  w.var(3);
  w.var(10);
  w.bytes(node::Bytes(5, 1));
  CHECK_FALSE(decode_fragment(w.out(), f).ok());
}
