// Run-time choice of instruction set (internal; see dispatch.c for the levels and USI_CPU).
//
// The package compiles for its platform's baseline (no -march: a consumer's binary must run
// on any x86-64). Hot code gets faster instructions in two ways:
//
// - USI_MULTIVERSION on a function: the compiler emits a baseline copy and an x86-64-v3 copy
//   (AVX2, FMA, BMI2...) and the loader binds the call to the one the CPU supports (an ifunc).
//   Put it on every externally visible kernel and on every static function whose address is
//   passed to the thread pool or that keeps a hot loop of its own. Leave small `static inline`
//   helpers unmarked: inlined into a v3 copy they are compiled (and vectorised) as v3. A call
//   between two marked functions goes through the ifunc and is never inlined, so do not mark
//   helpers that a marked function calls in its inner loop.
//   x86-64-v3 is exactly the ISA the kernels were built for before (-march=x86-64-v3), so on
//   an AVX2 machine the v3 copies give the same bits (same FMA contraction) as that build.
// - Hand-written intrinsics (AVX2, AVX-512, AVX512-BF16) sit in functions with a target
//   attribute, called only when usi_cpu_level() says so. That level can be capped (USI_CPU,
//   usi_cpu_cap_thread) to test the fallbacks; the ifunc copies cannot (the loader picks them
//   from cpuid: test the baseline copies under an emulator, Scripts/test-baseline-cpu).
#ifndef USI_DISPATCH_H
#define USI_DISPATCH_H

#if defined(__x86_64__) && (defined(__clang__) || defined(__GNUC__))
#define USI_X86 1
#define USI_MULTIVERSION __attribute__((target_clones("arch=x86-64-v3", "default")))
#else
#define USI_X86 0
#define USI_MULTIVERSION
#endif

#endif
