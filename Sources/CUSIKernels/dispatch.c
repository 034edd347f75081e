// The instruction-set level the library's own dispatch uses (see usi_dispatch.h).
//
// Levels are cumulative: each one adds to the one below, and a kernel chosen at level L uses
// nothing above L. The CPU's level is read once from cpuid; $USI_CPU (read once) and a
// per-thread cap set by usi_cpu_cap_thread can only lower it, so a test or a user can run the
// fallback paths on a machine that has the faster ones.
#include "usi_dispatch.h"
#include "usi_internal.h"

#include <stdatomic.h>
#include <stdlib.h>
#include <string.h>

static int detect_level(void) {
    int level = USI_CPU_BASELINE;
#if USI_X86
    __builtin_cpu_init();
    // The same test the loader's resolver makes for the target_clones("arch=x86-64-v3")
    // copies, so level AVX2 means "the v3 copies are running" too.
    if (!__builtin_cpu_supports("x86-64-v3")) return level;
    level = USI_CPU_AVX2;
    if (!__builtin_cpu_supports("avx512f")) return level;
    level = USI_CPU_AVX512;
    if (!(__builtin_cpu_supports("avx512bf16") && __builtin_cpu_supports("avx512bw") &&
          __builtin_cpu_supports("avx512vl")))
        return level;
    level = USI_CPU_AVX512_BF16;
#endif
    return level;
}

int usi_cpu_parse_level(const char *name) {
    if (!name) return -1;
    static const struct { const char *name; int level; } names[] = {
        {"baseline", USI_CPU_BASELINE}, {"avx2", USI_CPU_AVX2}, {"avx512", USI_CPU_AVX512},
        {"avx512bf16", USI_CPU_AVX512_BF16},
    };
    for (size_t i = 0; i < sizeof names / sizeof names[0]; i++)
        if (strcmp(name, names[i].name) == 0) return names[i].level;
    return -1;
}

const char *usi_cpu_level_name(int level) {
    switch (level) {
    case USI_CPU_BASELINE: return "baseline";
    case USI_CPU_AVX2: return "avx2";
    case USI_CPU_AVX512: return "avx512";
    case USI_CPU_AVX512_BF16: return "avx512bf16";
    default: return "unknown";
    }
}

static atomic_int g_detected = -1;
static atomic_int g_process = -1;  // detected, capped by $USI_CPU
static _Thread_local int tl_cap = -1;

int usi_cpu_detected_level(void) {
    int l = atomic_load(&g_detected);
    if (l < 0) {
        l = detect_level();
        atomic_store(&g_detected, l);
    }
    return l;
}

static int process_level(void) {
    int l = atomic_load(&g_process);
    if (l < 0) {
        l = usi_cpu_detected_level();
        // An unknown value caps nothing (the library does not print; `usi bench kernels`
        // shows the level in use).
        int cap = usi_cpu_parse_level(getenv("USI_CPU"));
        if (cap >= 0 && cap < l) l = cap;
        atomic_store(&g_process, l);
    }
    return l;
}

int usi_cpu_level(void) {
    int l = process_level();
    return tl_cap >= 0 && tl_cap < l ? tl_cap : l;
}

void usi_cpu_cap_thread(int level) { tl_cap = level < 0 ? -1 : level; }
