// CRC32C (Castagnoli, reflected polynomial 0x82F63B78), as used by iSCSI, ext4 and most storage formats.
//
//   std::uint32_t c = crc32c::value(data, n);               // one shot
//   c = crc32c::extend(c, more, m);                          // continue over more bytes
//
// value()/extend() use the SSE4.2 crc32 instruction when the CPU has it (checked once) and a table
// otherwise; extend_sw()/extend_hw() expose both paths so tests can check they agree.
#pragma once

#include <cstddef>
#include <cstdint>

namespace hs::crc32c {

// Continues a CRC32C: `crc` is a previous result (0 for the empty string).
std::uint32_t extend(std::uint32_t crc, const void* data, std::size_t n) noexcept;
inline std::uint32_t value(const void* data, std::size_t n) noexcept { return extend(0, data, n); }

// Table-driven (slicing-by-8) implementation; works on every CPU.
std::uint32_t extend_sw(std::uint32_t crc, const void* data, std::size_t n) noexcept;
// Hardware implementation; only call when hw_available().
std::uint32_t extend_hw(std::uint32_t crc, const void* data, std::size_t n) noexcept;
bool hw_available() noexcept;

}  // namespace hs::crc32c
