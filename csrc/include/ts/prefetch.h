/* Software prefetch for the kernels that stream weights once per token. */
#ifndef TS_PREFETCH_H
#define TS_PREFETCH_H

#include <stddef.h>

/* A core that computes between its loads keeps too few lines in flight with the hardware
 * prefetcher alone: one thread streamed Q4_0 at 60-65% of the read probe and Q4_K/Q6_K at
 * ~75%; asking for the bytes this far ahead of the ones being read lifted them to 71-95%
 * (1024-8192 measured; 2048 was best or level on every shape). */
#define TS_PREFETCH_AHEAD ((size_t)2048)

/* Asks for [p + ahead, p + ahead + bytes). Weight rows lie back to back in every caller, so
 * that is the data of a later block or row; successive calls over consecutive ranges ask for
 * each line about once. Prefetches never fault, so running past the matrix end is harmless. */
static inline __attribute__((always_inline)) void ts_prefetch_ahead(const void *p, size_t bytes, size_t ahead) {
    for (size_t l = 0; l < bytes; l += 64) __builtin_prefetch((const char *)p + ahead + l, 0, 3);
}

#endif
