#!/usr/bin/env bash
# The layering test (meson suite `layering`): the build rule that keeps role code sans-IO.
#
# 1. Negative compiles: with the role libraries' guard flags (hs_role_cpp_args: a forced include of
#    hyperscale/node/sans_io_guard.hpp), each source below that reaches real I/O must FAIL with
#    "poisoned" in the diagnostics, and must COMPILE without the guard (so the failure is the
#    guard's doing, not a broken test source). A clean role-like source (every standard header, fmt,
#    base, node and every role header) must PASS with the guard, so this cannot pass vacuously.
# 2. Include rules (grep): role and node files include no runtime/net/wal/wire/host/sim/load/cli
#    header and no <uv.h>, <liburing.h>, thread, mutex or atomic header; node includes only base;
#    load includes no role, node, host or sim header; the role libraries' meson.build files name no
#    real-I/O dependency.
#
# Usage: check_layering.sh SOURCE_ROOT WORKDIR -- COMPILER... -- GUARD_ARGS...
set -u
root=$1
work=$2
shift 2
[ "${1:-}" = "--" ] || { echo "usage: $0 SOURCE_ROOT WORKDIR -- COMPILER... -- GUARD_ARGS..." >&2; exit 2; }
shift
cxx=()
while [ $# -gt 0 ] && [ "$1" != "--" ]; do cxx+=("$1"); shift; done
[ "${1:-}" = "--" ] || { echo "usage: missing -- before the guard args" >&2; exit 2; }
shift
guard=("$@")
[ ${#cxx[@]} -gt 0 ] && [ ${#guard[@]} -gt 0 ] || { echo "layering: no compiler or no guard args" >&2; exit 2; }

mkdir -p "$work"
failures=0
fail() { echo "FAIL: $*"; failures=$((failures + 1)); }
pass() { echo "ok:   $*"; }

common=(-std=c++20 -fsyntax-only -Wall -Wextra -Werror -I"$root/include" -I"$root/src")

compile() {  # compile FILE [extra args...]; output in $work/out.txt
  local f=$1
  shift
  "${cxx[@]}" "${common[@]}" "$@" "$f" >"$work/out.txt" 2>&1
}

# ---- 1. negative compiles: fail with the guard, compile without it ----
neg() {  # neg NAME SOURCE_TEXT
  local name=$1 src="$work/$1.cpp"
  printf '%s\n' "$2" >"$src"
  if ! compile "$src"; then
    fail "$name: does not compile even without the guard (a broken test source):"
    sed 's/^/    /' "$work/out.txt" | head -5
    return
  fi
  if compile "$src" "${guard[@]}"; then
    fail "$name: compiled with the sans-IO guard; expected a 'poisoned' error"
  elif grep -q 'poisoned' "$work/out.txt"; then
    pass "$name: rejected with the guard ($(grep -m1 -o 'attempt to use poisoned "[^"]*"' "$work/out.txt"))"
  else
    fail "$name: failed with the guard, but not because of it:"
    sed 's/^/    /' "$work/out.txt" | head -5
  fi
}

neg include_uv '#include <uv.h>
int main() { return 0; }'
neg include_liburing '#include <liburing.h>
int main() { return 0; }'
neg include_socket '#include <sys/socket.h>
int main() { return 0; }'
neg include_epoll '#include <sys/epoll.h>
int main() { return 0; }'
neg include_inet '#include <arpa/inet.h>
int main() { return 0; }'
neg call_uv_run 'struct uv_loop_s;
extern "C" int uv_run(uv_loop_s*, int);
int main() { return uv_run(nullptr, 0); }'
neg call_io_uring_submit 'struct io_uring;
extern "C" int io_uring_submit(io_uring*);
int main() { return io_uring_submit(nullptr); }'

# ---- the positive control: a role-like source compiles with the guard ----
pos="$work/clean_role.cpp"
{
  echo '#include <bits/stdc++.h>'
  echo '#include <fmt/format.h>'
  for d in base node swim cluster manager worker gate; do
    for h in "$root"/include/hyperscale/$d/*.hpp; do
      [ -e "$h" ] || continue
      [ "$(basename "$h")" = sans_io_guard.hpp ] && continue
      echo "#include \"hyperscale/$d/$(basename "$h")\""
    done
  done
  echo 'int main() { return 0; }'
} >"$pos"
for opt in -O0 -O2; do
  if compile "$pos" "$opt" "${guard[@]}"; then
    pass "clean role source (std, fmt, base, node and role headers) compiles with the guard at $opt"
  else
    fail "clean role source does not compile with the guard at $opt:"
    sed 's/^/    /' "$work/out.txt" | head -10
  fi
done

# ---- 2. include rules ----
cd "$root" || exit 2
role_dirs=(src/swim src/cluster src/manager src/worker src/gate src/node
  include/hyperscale/swim include/hyperscale/cluster include/hyperscale/manager include/hyperscale/worker
  include/hyperscale/gate include/hyperscale/node)
check_grep() {  # check_grep WHAT REGEX DIRS...
  local what=$1 re=$2
  shift 2
  local hits
  hits=$(grep -rnE --include='*.hpp' --include='*.cpp' --include='*.h' "$re" "$@" 2>/dev/null)
  if [ -n "$hits" ]; then
    fail "$what:"
    echo "$hits" | sed 's/^/    /'
  else
    pass "$what"
  fi
}
check_grep "role and node files include no real-I/O, simulator or host module header" \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]hyperscale/(runtime|net|wal|wire|host|sim|load|cli)/' "${role_dirs[@]}"
check_grep "role and node files include no libuv, liburing, socket, thread, mutex or atomic header" \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*<(uv\.h|uv/|liburing|sys/socket\.h|sys/epoll\.h|arpa/|netinet/|netdb\.h|thread>|mutex>|shared_mutex>|condition_variable>|atomic>|future>|semaphore>|stop_token>|latch>|barrier>)' \
  "${role_dirs[@]}"
check_grep "node includes only base" \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]hyperscale/(runtime|net|wal|wire|host|sim|load|cli|swim|cluster|manager|worker|gate)/' \
  src/node include/hyperscale/node
check_grep "load includes no role, node, host or simulator header" \
  '^[[:space:]]*#[[:space:]]*include[[:space:]]*[<"]hyperscale/(node|swim|cluster|manager|worker|gate|host|sim|cli)/' \
  src/load include/hyperscale/load
meson_files=(src/swim/meson.build src/cluster/meson.build src/manager/meson.build src/worker/meson.build
  src/gate/meson.build src/node/meson.build)
hits=$(grep -nE 'hs_(runtime|net|wal|wire|host|sim|load|test_support)_dep|uv_dep|uring_dep|threads_dep' "${meson_files[@]}")
if [ -n "$hits" ]; then
  fail "role libraries link base and node (and other roles) only:"
  echo "$hits" | sed 's/^/    /'
else
  pass "role libraries link base and node (and other roles) only"
fi
unguarded=0
for m in swim cluster manager worker gate; do
  if ! grep -q 'cpp_args : hs_role_cpp_args' "src/$m/meson.build"; then
    fail "src/$m/meson.build does not compile with cpp_args : hs_role_cpp_args"
    unguarded=1
  fi
done
[ "$unguarded" = 0 ] && pass "role libraries are compiled with the sans-IO guard"

if [ "$failures" -gt 0 ]; then
  echo "layering: $failures check(s) failed"
  exit 1
fi
echo "layering: all checks passed"
