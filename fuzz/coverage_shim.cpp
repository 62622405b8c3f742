// Coverage of the C++ core for the fuzzer, without clang.
//
// libFuzzer (bundled in atheris) takes coverage as arrays of 8-bit counters
// that a compiler fills in (clang's -fsanitize=fuzzer-no-link).  g++ has no
// such mode, but -fsanitize-coverage=trace-pc makes it call
// __sanitizer_cov_trace_pc() at the start of every basic block of the
// instrumented code.  This file, compiled *without* instrumentation and linked
// into the fuzz build of the extension (.ci/build_variant.sh fuzz), turns those
// calls into counters: the return address (one per basic block) is hashed into
// kSlots counters, which edgeworth_fuzz_register() hands to libFuzzer together
// with a PC table of the same length (libFuzzer requires one per counter).
// Hash collisions merge a few blocks into one feature; they cost the fuzzer
// some guidance, never correctness.  The worker threads of a large node sum
// (csrc/cf_bound.hpp) call it too; as with libFuzzer's own inline counters,
// the increments are not atomic, and a lost one likewise costs only guidance.
#include <cstddef>
#include <cstdint>

namespace {
constexpr std::size_t kSlots = std::size_t{1} << 17;
alignas(64) std::uint8_t counters[kSlots];
std::uintptr_t pc_table[2 * kSlots];  // (pc, flags) pairs; the pc is the slot number
}  // namespace

// Hidden, so that the instrumented code in this shared object binds to this
// definition and not to libFuzzer's own (which aborts: it dropped trace-pc).
extern "C" __attribute__((visibility("hidden"))) void __sanitizer_cov_trace_pc() {
  const auto pc = reinterpret_cast<std::uintptr_t>(__builtin_return_address(0));
  const std::size_t slot = (pc ^ (pc >> 17)) & (kSlots - 1);
  std::uint8_t& c = counters[slot];
  if (c != 0xff) ++c;  // saturate, as libFuzzer's own counters do (no wrap to 0)
}

// Called once by the fuzz harness with the addresses of libFuzzer's
// registration functions, which it looks up in atheris' libFuzzer module (that
// module is loaded with RTLD_LOCAL, so dlsym(RTLD_DEFAULT, ...) cannot see them).
extern "C" __attribute__((visibility("default"))) int edgeworth_fuzz_register(void* counters_init_fn,
                                                                                  void* pcs_init_fn) {
  using CountersInit = void (*)(std::uint8_t*, std::uint8_t*);
  using PcsInit = void (*)(const std::uintptr_t*, const std::uintptr_t*);
  if (counters_init_fn == nullptr || pcs_init_fn == nullptr) return -1;
  for (std::size_t i = 0; i < kSlots; ++i) pc_table[2 * i] = i + 1;
  reinterpret_cast<CountersInit>(counters_init_fn)(counters, counters + kSlots);
  reinterpret_cast<PcsInit>(pcs_init_fn)(pc_table, pc_table + 2 * kSlots);
  return 0;
}
