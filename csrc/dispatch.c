/* Detects CPU features once and fills one kernel table per ISA level this CPU can run. */
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ts/kernels.h"

#if defined(TS_HAVE_X86)
#include <cpuid.h>
#include <sys/syscall.h>
#include <unistd.h>

/* AMX tiles: the CPU has them (CPUID 7.0 EDX bits 24 and 25: tiles and int8) and Linux lets this
 * process use their 8 KB of state, which it grants only on request (arch_prctl
 * ARCH_REQ_XCOMP_PERM for XTILEDATA, feature 18); a kernel without that request has none. */
static int amx_usable(void) {
#if defined(TS_HAVE_AMX) && defined(__linux__) && defined(SYS_arch_prctl)
    unsigned a, b, c, d;
    if (!__get_cpuid_count(7, 0, &a, &b, &c, &d) || !(d >> 24 & 1) || !(d >> 25 & 1)) return 0;
    return syscall(SYS_arch_prctl, 0x1023 /* ARCH_REQ_XCOMP_PERM */, 18) == 0;
#else
    return 0;
#endif
}
#endif

enum { LVL_SCALAR, LVL_AVX2, LVL_AVX512, LVL_AVX512VNNI, LVL_AMX, LVL_COUNT };
static const char *LEVEL_NAMES[LVL_COUNT] = {"scalar", "avx2", "avx512", "avx512vnni", "amx"};

static ts_kernels g_tables[LVL_COUNT];
static int g_supported[LVL_COUNT];
static int g_active = LVL_SCALAR;
static char g_available[128];
static pthread_once_t g_once = PTHREAD_ONCE_INIT;

static void cpu_detect(void) {
    g_supported[LVL_SCALAR] = 1;
#if defined(TS_HAVE_X86)
    __builtin_cpu_init();
    int avx2 = __builtin_cpu_supports("avx2") && __builtin_cpu_supports("fma");
    int avx512 = avx2 && __builtin_cpu_supports("avx512f") && __builtin_cpu_supports("avx512bw") &&
                 __builtin_cpu_supports("avx512vl") && __builtin_cpu_supports("avx512dq");
    g_supported[LVL_AVX2] = avx2;
    g_supported[LVL_AVX512] = avx512;
    g_supported[LVL_AVX512VNNI] = avx512 && __builtin_cpu_supports("avx512vnni");
    g_supported[LVL_AMX] = g_supported[LVL_AVX512VNNI] && amx_usable();
#endif
}

/* Each level starts as a copy of the one below, so a slot an ISA does not implement
 * falls back to the best lower implementation. */
static void fill_tables(void) {
    ts_kernels *t = &g_tables[LVL_SCALAR];
    memset(t, 0, sizeof(*t));
    ts_register_scalar(t);
    ts_register_scalar_ops(t);
    t->isa = LEVEL_NAMES[LVL_SCALAR];
#if defined(TS_HAVE_X86)
    g_tables[LVL_AVX2] = g_tables[LVL_SCALAR];
    ts_register_avx2(&g_tables[LVL_AVX2]);
    ts_register_avx2_ops(&g_tables[LVL_AVX2]);
    ts_register_avx2_gemm(&g_tables[LVL_AVX2]);
    g_tables[LVL_AVX512] = g_tables[LVL_AVX2];
    ts_register_avx512(&g_tables[LVL_AVX512]);
    ts_register_avx512_ops(&g_tables[LVL_AVX512]);
    ts_register_avx512_gemm(&g_tables[LVL_AVX512]);
    g_tables[LVL_AVX512VNNI] = g_tables[LVL_AVX512];
    ts_register_avx512vnni(&g_tables[LVL_AVX512VNNI]);
    ts_register_avx512vnni_gemm(&g_tables[LVL_AVX512VNNI]);
    ts_register_avx512vnni_packed(&g_tables[LVL_AVX512VNNI]);
    g_tables[LVL_AMX] = g_tables[LVL_AVX512VNNI];
#if defined(TS_HAVE_AMX)
    ts_register_amx_packed(&g_tables[LVL_AMX]);
#endif
#endif
    for (int i = 0; i < LVL_COUNT; i++) g_tables[i].isa = LEVEL_NAMES[i];
}

static void init_once(void) {
    cpu_detect();
    fill_tables();
    g_available[0] = '\0';
    for (int i = 0; i < LVL_COUNT; i++) {
        if (!g_supported[i]) continue;
        if (g_available[0]) strcat(g_available, ",");
        strcat(g_available, LEVEL_NAMES[i]);
        g_active = i;
    }
    const char *forced = getenv("TENSORSHARP_ISA");
    if (forced && forced[0]) {
        int found = -1;
        for (int i = 0; i < LVL_COUNT; i++)
            if (strcmp(forced, LEVEL_NAMES[i]) == 0) found = i;
        if (found >= 0 && g_supported[found]) {
            g_active = found;
        } else {
            fprintf(stderr, "tensorsharp: TENSORSHARP_ISA=%s is not available here (have %s); using %s\n",
                    forced, g_available, LEVEL_NAMES[g_active]);
        }
    }
}

const ts_kernels *ts_kernels_get(void) {
    pthread_once(&g_once, init_once);
    return &g_tables[g_active];
}

const ts_kernels *ts_kernels_for(const char *isa) {
    pthread_once(&g_once, init_once);
    for (int i = 0; i < LVL_COUNT; i++)
        if (strcmp(isa, LEVEL_NAMES[i]) == 0) return g_supported[i] ? &g_tables[i] : NULL;
    return NULL;
}

const char *ts_isa_available(void) {
    pthread_once(&g_once, init_once);
    return g_available;
}
