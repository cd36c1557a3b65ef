/* AVX-512 legacy formats: q8x32 activation quantization and the Q4_0, Q4_1, Q5_0, Q5_1, Q8_0,
 * IQ4_NL and MXFP4 dot products, two 32-element blocks per 512-bit register. */
#include "quants.h"
#include "ts/prefetch.h"

/* How a row is computed, 16 blocks at a time: first their scales, d_w * d_x, in one register
 * (the f16 weight scales and the activation headers are picked out of 64-byte windows by
 * permutes, then one conversion), and the offset or minimum terms through s. Then each pair
 * of blocks takes its integer dot product, spreads its two scales over the pair's lanes with
 * one permute and adds with one multiply-add. Converting scales per pair, broadcasting them
 * per block or gathering them all cost more loads and uops than the integer work itself.
 *
 * In a pair register the int32/float lanes 0-7 belong to the first block, 8-15 to the second. */
#define HI ((__mmask16)0xFF00)

static void quantize_q8x32(const float *x, void *vy, int64_t n) {
    ts_block_q8x32 *y = (ts_block_q8x32 *)vy;
    for (int64_t i = 0; i < n / TS_QK; i++) {
        const __m512 a = _mm512_loadu_ps(x + i * TS_QK), b = _mm512_loadu_ps(x + i * TS_QK + 16);
        const float amax = _mm512_reduce_max_ps(_mm512_max_ps(_mm512_abs_ps(a), _mm512_abs_ps(b)));
        const float d = amax / 127.0f;
        const __m512 id = _mm512_set1_ps(d != 0.0f ? 1.0f / d : 0.0f);
        /* Rounds to nearest even (the MXCSR default); |x * id| <= 127 needs no clamp. */
        const __m512i qa = _mm512_cvtps_epi32(_mm512_mul_ps(a, id));
        const __m512i qb = _mm512_cvtps_epi32(_mm512_mul_ps(b, id));
        _mm_storeu_si128((__m128i *)y[i].qs, _mm512_cvtepi32_epi8(qa));
        _mm_storeu_si128((__m128i *)(y[i].qs + 16), _mm512_cvtepi32_epi8(qb));
        y[i].d = ts_f16_round(d);
        y[i].s = y[i].d * (float)_mm512_reduce_add_epi32(_mm512_add_epi32(qa, qb));
    }
}

/* For blocks of `stride` bytes (even) counted from a group start, as vpermt2d indices that
 * merge window j (64 bytes at 64j) into the running vector: lane b takes dword (b * stride / 4)
 * mod 16 of the window (index 16 + that) if block b's first dword lies in window j, else keeps
 * its own lane (index b). Merging through indices rather than masks keeps mask-register moves,
 * which share port 5 with the permutes, out of the loop. */
#define WIN_PICK(b, j) ((((b) * stride) >> 6) == (j) ? ((((b) * stride) >> 2) & 15) | 16 : (b))
#define WIN_IDX(j)                                                                                   \
    _mm512_setr_epi32(WIN_PICK(0, j), WIN_PICK(1, j), WIN_PICK(2, j), WIN_PICK(3, j), WIN_PICK(4, j),   \
                      WIN_PICK(5, j), WIN_PICK(6, j), WIN_PICK(7, j), WIN_PICK(8, j), WIN_PICK(9, j),   \
                      WIN_PICK(10, j), WIN_PICK(11, j), WIN_PICK(12, j), WIN_PICK(13, j), WIN_PICK(14, j), \
                      WIN_PICK(15, j))

/* The 64-byte window at p of which only `left` bytes exist (masked loads do not fault). */
TS_ALWAYS_INLINE __m512i window(const void *p, int64_t left) {
    return left >= 64 ? _mm512_loadu_si512(p) : _mm512_maskz_loadu_epi32((__mmask16)((1u << (left / 4)) - 1), p);
}

/* Lane b: the dword at byte b * stride of the nblk <= 16 weight blocks at w, of which avail
 * bytes exist (a multiple of 4 or of stride). Lanes past nblk are 0 or unused. */
TS_ALWAYS_INLINE __m512i weight_heads(const uint8_t *w, int stride, int64_t avail, int nblk) {
    /* 16 blocks of at most 34 bytes span at most 9 windows. */
    const __m512i idx[9] = {WIN_IDX(0), WIN_IDX(1), WIN_IDX(2), WIN_IDX(3), WIN_IDX(4),
                            WIN_IDX(5), WIN_IDX(6), WIN_IDX(7), WIN_IDX(8)};
    __m512i v = _mm512_setzero_si512();
    for (int j = 0; j <= ((nblk - 1) * stride >> 6); j++)
        v = _mm512_permutex2var_epi32(v, idx[j], window(w + 64 * j, avail - 64 * j));
    return v;
}

/* f16 scales d of 16 blocks as floats: the low or (stride 2 mod 4, odd blocks) high half of
 * each head dword. */
TS_ALWAYS_INLINE __m512 weight_d(__m512i heads, int stride) {
    const int odd = (stride & 2) << 3;
    const __m512i shift = _mm512_setr_epi32(0, odd, 0, odd, 0, odd, 0, odd, 0, odd, 0, odd, 0, odd, 0, odd);
    return _mm512_cvtph_ps(_mm512_cvtepi32_epi16(_mm512_srlv_epi32(heads, shift)));
}

/* The activation blocks' d (lanes 0-7) and s (lanes 8-15) of the nblk <= 8 blocks at x: the
 * headers sit 40 bytes (10 dwords) apart; the same index merging as for the weights. */
#define ACT_PICK(b, k, j) (((b) * 40 >> 6) == (j) ? ((((b) * 10 + (k)) & 15) | 16) : (b) + 8 * (k))
#define ACT_IDX(j)                                                                                   \
    _mm512_setr_epi32(ACT_PICK(0, 0, j), ACT_PICK(1, 0, j), ACT_PICK(2, 0, j), ACT_PICK(3, 0, j),       \
                      ACT_PICK(4, 0, j), ACT_PICK(5, 0, j), ACT_PICK(6, 0, j), ACT_PICK(7, 0, j),       \
                      ACT_PICK(0, 1, j), ACT_PICK(1, 1, j), ACT_PICK(2, 1, j), ACT_PICK(3, 1, j),       \
                      ACT_PICK(4, 1, j), ACT_PICK(5, 1, j), ACT_PICK(6, 1, j), ACT_PICK(7, 1, j))

TS_ALWAYS_INLINE __m512 act_heads8(const ts_block_q8x32 *x, int nblk) {
    _Static_assert(sizeof(ts_block_q8x32) == 40, "q8x32 headers sit 10 dwords apart");
    const __m512i idx[5] = {ACT_IDX(0), ACT_IDX(1), ACT_IDX(2), ACT_IDX(3), ACT_IDX(4)};
    const int64_t avail = (int64_t)nblk * (int64_t)sizeof(*x);
    __m512 v = _mm512_setzero_ps();
    for (int j = 0; j <= ((nblk - 1) * 40 >> 6); j++) {
        const __m512i win = window((const uint8_t *)x + 64 * j, avail - 64 * j);
        v = _mm512_permutex2var_ps(v, idx[j], _mm512_castsi512_ps(win));
    }
    return v;
}

/* What the float side adds besides d_w * d_x * dot: nothing, an offset of the stored quants
 * (extra = sum of d_w * s, scaled by -offset at the end) or a minimum (extra = sum m * s).
 * OFFSET_E8M0: an offset, with d_w a one-byte E8M0 scale (MXFP4) instead of an f16. */
enum { PLAIN, OFFSET, MINIMUM, OFFSET_E8M0 };

/* E8M0 scales of 16 blocks: byte (b * stride) % 4 of each head dword. */
TS_ALWAYS_INLINE __m512 weight_e8m0(__m512i heads, int stride) {
#define E8M0_SHIFT(b) (8 * (((b) * stride) & 3))
    const __m512i shift = _mm512_setr_epi32(E8M0_SHIFT(0), E8M0_SHIFT(1), E8M0_SHIFT(2), E8M0_SHIFT(3), E8M0_SHIFT(4),
                                            E8M0_SHIFT(5), E8M0_SHIFT(6), E8M0_SHIFT(7), E8M0_SHIFT(8), E8M0_SHIFT(9),
                                            E8M0_SHIFT(10), E8M0_SHIFT(11), E8M0_SHIFT(12), E8M0_SHIFT(13),
                                            E8M0_SHIFT(14), E8M0_SHIFT(15));
#undef E8M0_SHIFT
    return ts_avx512_e8m0_half(_mm512_and_si512(_mm512_srlv_epi32(heads, shift), _mm512_set1_epi32(0xFF)));
}

/* The activation side of a group's scales: d (dx) and s (sx) of its nblk <= 16 blocks at x,
 * 0 past nblk. Several weight rows against one activation row share them. */
TS_ALWAYS_INLINE void act_scales(const ts_block_q8x32 *x, int nblk, __m512 *dx, __m512 *sx) {
    const __m512 a0 = act_heads8(x, nblk < 8 ? nblk : 8);
    const __m512 a1 = nblk > 8 ? act_heads8(x + 8, nblk - 8) : _mm512_setzero_ps();
    const __m512i lo8 = _mm512_setr_epi32(0, 1, 2, 3, 4, 5, 6, 7, 16, 17, 18, 19, 20, 21, 22, 23);
    *dx = _mm512_permutex2var_ps(a0, lo8, a1);
    *sx = _mm512_permutex2var_ps(a0, _mm512_add_epi32(lo8, _mm512_set1_epi32(8)), a1);
}

/* c (returned): d_w * d_x of the nblk <= 16 blocks at w and x (activation scales dx, sx from
 * act_scales), 0 past nblk; *extra gains their offset or minimum terms. */
TS_ALWAYS_INLINE __m512 group_scales(const uint8_t *w, int stride, int64_t avail, __m512 dx, __m512 sx, int nblk,
                                     int kind, __m512 *extra) {
    const __m512i heads = weight_heads(w, stride, avail, nblk);
    if (kind == MINIMUM) {
        /* Heads are (d, m): convert both halves, then split the interleaved floats. */
        const __m512 h0 = _mm512_cvtph_ps(_mm512_castsi512_si256(heads));
        const __m512 h1 = _mm512_cvtph_ps(_mm512_extracti64x4_epi64(heads, 1));
        const __m512i even = _mm512_setr_epi32(0, 2, 4, 6, 8, 10, 12, 14, 16, 18, 20, 22, 24, 26, 28, 30);
        const __m512 mw = _mm512_permutex2var_ps(h0, _mm512_add_epi32(even, _mm512_set1_epi32(1)), h1);
        *extra = _mm512_fmadd_ps(mw, sx, *extra);
        return _mm512_mul_ps(_mm512_permutex2var_ps(h0, even, h1), dx);
    }
    const __m512 dw = kind == OFFSET_E8M0 ? weight_e8m0(heads, stride) : weight_d(heads, stride);
    if (kind == OFFSET || kind == OFFSET_E8M0) *extra = _mm512_fmadd_ps(dw, sx, *extra);
    return _mm512_mul_ps(dw, dx);
}

static inline __m512i act_pair(const ts_block_q8x32 *a, const ts_block_q8x32 *b) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)a->qs);
    /* A masked broadcast rather than an insert: it issues on either vector port, not only port 5. */
    return _mm512_mask_broadcast_i64x4(_mm512_castsi256_si512(lo), 0xF0, _mm256_loadu_si256((const __m256i *)b->qs));
}

/* With VNNI (no int16 saturation) the nibbles of Q4_0/Q4_1 are only masked, not shifted: the
 * high ones count 16 times, which their scale lanes undo. */
#ifdef TS_VNNI
#define SIXTEEN_HIGH 1
#else
#define SIXTEEN_HIGH 0
#endif

/* Integer dot products of a pair of weight blocks w, w1 with the activation pair xa (act_pair:
 * int32 lanes 0-7 for the first block, 8-15 for the second). A lone tail block passes w1 == w
 * and the same activation block twice. */

static inline __m512i nibbles_dot(const uint8_t *qs, const uint8_t *qs1, __m512i xa) {
#if SIXTEEN_HIGH
    __m512i v = _mm512_broadcast_i32x4(_mm_loadu_si128((const __m128i *)qs));
    v = _mm512_mask_broadcast_i32x4(v, HI, _mm_loadu_si128((const __m128i *)qs1));
    const __m512i keep = _mm512_set_epi64(-0x0F0F0F0F0F0F0F10, -0x0F0F0F0F0F0F0F10, 0x0F0F0F0F0F0F0F0F,
                                          0x0F0F0F0F0F0F0F0F, -0x0F0F0F0F0F0F0F10, -0x0F0F0F0F0F0F0F10,
                                          0x0F0F0F0F0F0F0F0F, 0x0F0F0F0F0F0F0F0F);
    return _mm512_dpbusd_epi32(ts_avx512_fresh_zero(), _mm512_and_si512(v, keep), xa);
#else
    return ts_avx512_dot_u8s8(ts_avx512_nibble_pair(qs, qs1), xa);
#endif
}

/* Fifth bits of a pair: bit j of qh is element j, and element j of the pair's second block
 * is byte 32 + j of the register. */
static inline __m512i fives_dot(const uint8_t *qs, const uint8_t *qs1, const uint8_t *qh, const uint8_t *qh1,
                                __m512i xa) {
    const uint64_t bits = ts_avx512_load_u32(qh) | (uint64_t)ts_avx512_load_u32(qh1) << 32;
    __m512i q = ts_avx512_nibble_pair(qs, qs1);
    q = _mm512_mask_add_epi8(q, _cvtu64_mask64(bits), q, _mm512_set1_epi8(16));
    return ts_avx512_dot_u8s8(q, xa);
}

static inline __m512i q4_0_pair(const ts_block_q4_0 *w, const ts_block_q4_0 *w1, __m512i xa) {
    return nibbles_dot(w->qs, w1->qs, xa);
}

static inline __m512i q4_1_pair(const ts_block_q4_1 *w, const ts_block_q4_1 *w1, __m512i xa) {
    return nibbles_dot(w->qs, w1->qs, xa);
}

static inline __m512i q5_0_pair(const ts_block_q5_0 *w, const ts_block_q5_0 *w1, __m512i xa) {
    return fives_dot(w->qs, w1->qs, w->qh, w1->qh, xa);
}

static inline __m512i q5_1_pair(const ts_block_q5_1 *w, const ts_block_q5_1 *w1, __m512i xa) {
    return fives_dot(w->qs, w1->qs, w->qh, w1->qh, xa);
}

/* Signed weights: with VNNI they move by +128 onto the unsigned side (the offset leaves through
 * s); without it int16 pairs would saturate, so the sign moves onto x instead. */
#ifdef TS_VNNI
#define SIGNED_KIND OFFSET
#define SIGNED_OFFSET 128.0f
#else
#define SIGNED_KIND PLAIN
#define SIGNED_OFFSET 0.0f
#endif

static inline __m512i q8_0_pair(const ts_block_q8_0 *w, const ts_block_q8_0 *w1, __m512i xa) {
    const __m256i lo = _mm256_loadu_si256((const __m256i *)w->qs);
    const __m512i q = _mm512_mask_broadcast_i64x4(_mm512_castsi256_si512(lo), 0xF0,
                                                  _mm256_loadu_si256((const __m256i *)w1->qs));
#ifdef TS_VNNI
    return _mm512_dpbusd_epi32(ts_avx512_fresh_zero(), _mm512_xor_si512(q, _mm512_set1_epi8(-128)), xa);
#else
    /* |-128| = 128 still fits the unsigned side, and 2*128*127 stays below 2^15. */
    return ts_avx512_dot_signed(_mm512_abs_epi8(q), _mm512_movepi8_mask(q), xa);
#endif
}

static inline __m512i iq4_nl_pair(const ts_block_iq4_nl *w, const ts_block_iq4_nl *w1, __m512i xa) {
    const __m512i q = ts_avx512_nibble_pair(w->qs, w1->qs);
#ifdef TS_VNNI
    return _mm512_dpbusd_epi32(ts_avx512_fresh_zero(), ts_avx512_iq4_shifted(q), xa);
#else
    return ts_avx512_dot_signed(ts_avx512_iq4_abs(q), ts_avx512_iq4_neg(q), xa);
#endif
}

static inline __m512i mxfp4_pair(const ts_block_mxfp4 *w, const ts_block_mxfp4 *w1, __m512i xa) {
    return ts_avx512_dot_u8s8(ts_avx512_mxfp4_shifted(ts_avx512_nibble_pair(w->qs, w1->qs)), xa);
}

/* Scale lanes of a pair (blocks a, a+1 of one half of the group): [c_a x8, c_a+1 x8] from
 * half = [c of the half's 8 blocks, the same / 16]; with sixteen_high the second four lanes
 * of each block (its high nibbles) take c / 16. */
TS_ALWAYS_INLINE __m512 pair_scales(__m512 half, int a, int sixteen_high) {
    const int b = a + 1, h = sixteen_high ? 8 : 0;
    return _mm512_permutexvar_ps(_mm512_setr_epi32(a, a, a, a, a + h, a + h, a + h, a + h, b, b, b, b, b + h, b + h,
                                                   b + h, b + h), half);
}

/* acc + the pair's integer dot d scaled by its blocks' lanes of half (see pair_scales). */
TS_ALWAYS_INLINE __m512 add_pair(__m512 acc, __m512i d, __m512 half, int a, int sixteen_high) {
    return _mm512_fmadd_ps(_mm512_cvtepi32_ps(d), pair_scales(half, a, sixteen_high), acc);
}

/* Most weight rows meet their activation row in runs of this many (see name##_rows). */
#define ROWS 4

/* The lane sums of v[0..7], each bit for bit _mm512_reduce_add_ps(v[i]): the same tree (the
 * 256-bit halves, then the 128-bit quarters, then lanes (0+2, 1+3), then those two), eight
 * rows at once, so a run of rows shares the shuffles a lone row's reduction needs alone. */
_Static_assert(ROWS == 4, "a run of rows reduces as eight vectors");
TS_ALWAYS_INLINE void reduce_add8(const __m512 v[8], float out[8]) {
    __m512 u[4], w[2];
    for (int i = 0; i < 4; i++)
        u[i] = _mm512_add_ps(_mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0x44),
                             _mm512_shuffle_f32x4(v[2 * i], v[2 * i + 1], 0xEE));
    for (int i = 0; i < 2; i++)
        w[i] = _mm512_add_ps(_mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0x88),
                             _mm512_shuffle_f32x4(u[2 * i], u[2 * i + 1], 0xDD));
    /* 128-bit lane k: lanes 0-1 of v[k]'s quarter sums, then those of v[k + 4]. */
    const __m512 z = _mm512_add_ps(_mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(1, 0, 1, 0)),
                                   _mm512_shuffle_ps(w[0], w[1], _MM_SHUFFLE(3, 2, 3, 2)));
    float sums[16];
    _mm512_storeu_ps(sums, _mm512_add_ps(z, _mm512_movehdup_ps(z)));
    for (int k = 0; k < 4; k++) {
        out[k] = sums[4 * k];
        out[k + 4] = sums[4 * k + 2];
    }
}

/* The last group of a row when exactly m blocks are left. */
#define TS_LEGACY_TAIL(name, block_t, m)                                                            \
    case m:                                                                                         \
        name##_group((const block_t *)w + g, ws, nr, x + g, m, m * (int64_t)sizeof(block_t), acc0, acc1, extra); \
        break;

/* The dot products of nr <= ROWS weight rows, ws bytes apart, with one activation row, 16
 * blocks at a time: the group's activation scales (shared by the rows), each row's scales,
 * then eight pairs, each activation pair loaded once for all rows, into two alternating
 * accumulators per row. Groups whose scale windows lie inside the row take a path with
 * constant sizes (plain loads, unrolled); the rest, at the row end, one that checks every load.
 * A last group of m < 16 blocks may end with a lone block, whose duplicate half meets a scale
 * of 0. Every row takes the same operations in the same order whatever nr is, so a row's
 * result does not depend on the rows computed with it. */
#define TS_LEGACY_DOT(name, block_t, pair, kind, sign, sixteen_high)                                \
    TS_ALWAYS_INLINE void name##_group(const block_t *w, size_t ws, int nr, const ts_block_q8x32 *x, int m, \
                                       int64_t avail, __m512 *acc0, __m512 *acc1, __m512 *extra) {  \
        __m512 dx, sx;                                                                              \
        act_scales(x, m, &dx, &sx);                                                                 \
        __m512 half[ROWS][2];                                                                       \
        const block_t *wr[ROWS];                                                                    \
        for (int r = 0; r < nr; r++) {                                                              \
            wr[r] = (const block_t *)((const uint8_t *)w + r * ws);                                 \
            const __m512 c = group_scales((const uint8_t *)wr[r], (int)sizeof(block_t), avail, dx, sx, m, kind, \
                                          &extra[r]);                                               \
            const __m512 c16 = _mm512_mul_ps(c, _mm512_set1_ps(1.0f / 16.0f));                      \
            half[r][0] = _mm512_shuffle_f32x4(c, c16, 0x44);                                        \
            half[r][1] = _mm512_shuffle_f32x4(c, c16, 0xEE);                                        \
        }                                                                                           \
        if (m == 16) {                                                                              \
            _Pragma("GCC unroll 8") for (int p = 0; p < 8; p += 2) {                                \
                const __m512i x0 = act_pair(x + 2 * p, x + 2 * p + 1);                              \
                const __m512i x1 = act_pair(x + 2 * p + 2, x + 2 * p + 3);                          \
                for (int r = 0; r < nr; r++) {                                                      \
                    const __m512i d0 = pair(wr[r] + 2 * p, wr[r] + 2 * p + 1, x0);                  \
                    const __m512i d1 = pair(wr[r] + 2 * p + 2, wr[r] + 2 * p + 3, x1);              \
                    acc0[r] = add_pair(acc0[r], d0, half[r][p / 4], (2 * p) % 8, sixteen_high);     \
                    acc1[r] = add_pair(acc1[r], d1, half[r][p / 4], (2 * p + 2) % 8, sixteen_high); \
                }                                                                                   \
            }                                                                                       \
            return;                                                                                 \
        }                                                                                           \
        /* Unrolled so that each pair's scale lanes come from a constant permute index. */          \
        _Pragma("GCC unroll 8") for (int p = 0; p < 8; p++) {                                       \
            if (2 * p >= m) continue;                                                               \
            const int b1 = 2 * p + 1 < m ? 2 * p + 1 : 2 * p;                                       \
            const __m512i xa = act_pair(x + 2 * p, x + b1);                                         \
            for (int r = 0; r < nr; r++) {                                                          \
                const __m512i d = pair(wr[r] + 2 * p, wr[r] + b1, xa);                              \
                acc0[r] = add_pair(acc0[r], d, half[r][p / 4], (2 * p) % 8, sixteen_high);          \
            }                                                                                       \
        }                                                                                           \
    }                                                                                               \
    TS_ALWAYS_INLINE void name##_run(int64_t n, float *s, const void *w, size_t ws, int nr, const void *vx) { \
        const ts_block_q8x32 *x = (const ts_block_q8x32 *)vx;                                       \
        const int64_t nb = n / TS_QK;                                                               \
        /* Bytes the scale windows of a full group reach from its start. */                        \
        const int64_t reach = 64 * ((15 * (int64_t)sizeof(block_t) >> 6) + 1);                     \
        __m512 acc0[ROWS], acc1[ROWS], extra[ROWS];                                                 \
        for (int r = 0; r < nr; r++) acc0[r] = acc1[r] = extra[r] = _mm512_setzero_ps();            \
        /* The rows run side by side: reaching past all of them keeps every prefetch ahead. */  \
        const size_t ahead = TS_PREFETCH_AHEAD < nr * ws ? nr * ws : TS_PREFETCH_AHEAD;            \
        int64_t g = 0;                                                                              \
        for (; (nb - g) * (int64_t)sizeof(block_t) >= reach; g += 16) {                             \
            for (int r = 0; r < nr; r++)                                                            \
                ts_prefetch_ahead((const uint8_t *)w + r * ws + g * sizeof(block_t), 16 * sizeof(block_t), ahead); \
            name##_group((const block_t *)w + g, ws, nr, x + g, 16, reach, acc0, acc1, extra);      \
        }                                                                                           \
        for (; g < nb; g += 16) {                                                                   \
            const int m = nb - g < 16 ? (int)(nb - g) : 16;                                         \
            for (int r = 0; r < nr; r++)                                                            \
                ts_prefetch_ahead((const uint8_t *)w + r * ws + g * sizeof(block_t), m * sizeof(block_t), ahead); \
            /* Rows are multiples of 64 elements in real models, so the last group holds an even   \
             * number of blocks: as a constant, the pair loop unrolls and the load masks fold     \
             * (measured 12-19% less time per row at 576 and 896 columns). */                     \
            switch (nb - g) {                                                                       \
            TS_LEGACY_TAIL(name, block_t, 2) TS_LEGACY_TAIL(name, block_t, 4) TS_LEGACY_TAIL(name, block_t, 6) \
            TS_LEGACY_TAIL(name, block_t, 8) TS_LEGACY_TAIL(name, block_t, 10) TS_LEGACY_TAIL(name, block_t, 12) \
            TS_LEGACY_TAIL(name, block_t, 14) TS_LEGACY_TAIL(name, block_t, 16)                     \
            default:                                                                                \
                name##_group((const block_t *)w + g, ws, nr, x + g, m, (nb - g) * (int64_t)sizeof(block_t), acc0, \
                             acc1, extra);                                                          \
            }                                                                                       \
        }                                                                                           \
        if (nr == ROWS) {                                                                           \
            __m512 v[2 * ROWS];                                                                     \
            float sums[2 * ROWS];                                                                   \
            for (int r = 0; r < ROWS; r++) {                                                        \
                v[r] = _mm512_add_ps(acc0[r], acc1[r]);                                             \
                v[ROWS + r] = extra[r];                                                             \
            }                                                                                       \
            reduce_add8(v, sums);                                                                   \
            for (int r = 0; r < ROWS; r++) s[r] = sums[r] + (sign) * sums[ROWS + r];                \
            return;                                                                                 \
        }                                                                                           \
        for (int r = 0; r < nr; r++)                                                                \
            s[r] = _mm512_reduce_add_ps(_mm512_add_ps(acc0[r], acc1[r])) + (sign) * _mm512_reduce_add_ps(extra[r]); \
    }                                                                                               \
    static void name(int64_t n, float *s, const void *w, const void *x) { name##_run(n, s, w, 0, 1, x); }

/* The vec_dot_rows of a TS_LEGACY_DOT: runs of ROWS rows, then the rows left one at a time. */
#define TS_LEGACY_DOT_ROWS(name)                                                                    \
    static void name##_rows(int64_t n, float *s, const void *w, size_t ws, const void *x, int nr) {  \
        int r = 0;                                                                                  \
        for (; r + ROWS <= nr; r += ROWS) name##_run(n, s + r, (const uint8_t *)w + r * ws, ws, ROWS, x); \
        for (; r < nr; r++) name(n, s + r, (const uint8_t *)w + r * ws, x);                         \
    }

TS_LEGACY_DOT(vec_dot_q4_0, ts_block_q4_0, q4_0_pair, OFFSET, -8.0f, SIXTEEN_HIGH)
TS_LEGACY_DOT(vec_dot_q4_1, ts_block_q4_1, q4_1_pair, MINIMUM, 1.0f, SIXTEEN_HIGH)
TS_LEGACY_DOT(vec_dot_q5_0, ts_block_q5_0, q5_0_pair, OFFSET, -16.0f, 0)
TS_LEGACY_DOT(vec_dot_q5_1, ts_block_q5_1, q5_1_pair, MINIMUM, 1.0f, 0)
TS_LEGACY_DOT(vec_dot_q8_0, ts_block_q8_0, q8_0_pair, SIGNED_KIND, -SIGNED_OFFSET, 0)
TS_LEGACY_DOT(vec_dot_iq4_nl, ts_block_iq4_nl, iq4_nl_pair, SIGNED_KIND, -SIGNED_OFFSET, 0)
TS_LEGACY_DOT(vec_dot_mxfp4, ts_block_mxfp4, mxfp4_pair, OFFSET_E8M0, -12.0f, 0)
/* Not Q8_0: four of its rows at a time measured 5-15% slower from DRAM than one at a time. */
TS_LEGACY_DOT_ROWS(vec_dot_q4_0)
TS_LEGACY_DOT_ROWS(vec_dot_q4_1)
TS_LEGACY_DOT_ROWS(vec_dot_q5_0)
TS_LEGACY_DOT_ROWS(vec_dot_q5_1)
TS_LEGACY_DOT_ROWS(vec_dot_iq4_nl)
TS_LEGACY_DOT_ROWS(vec_dot_mxfp4)

void TS_AVX512_NAME(ts_avx512_register_legacy)(ts_kernels *k) {
    k->quantize_q8x32 = quantize_q8x32;
    k->vec_dot[TS_TYPE_Q4_0] = vec_dot_q4_0;
    k->vec_dot[TS_TYPE_Q4_1] = vec_dot_q4_1;
    k->vec_dot[TS_TYPE_Q5_0] = vec_dot_q5_0;
    k->vec_dot[TS_TYPE_Q5_1] = vec_dot_q5_1;
    k->vec_dot[TS_TYPE_Q8_0] = vec_dot_q8_0;
    k->vec_dot[TS_TYPE_IQ4_NL] = vec_dot_iq4_nl;
    k->vec_dot[TS_TYPE_MXFP4] = vec_dot_mxfp4;
    k->vec_dot_rows[TS_TYPE_Q4_0] = vec_dot_q4_0_rows;
    k->vec_dot_rows[TS_TYPE_Q4_1] = vec_dot_q4_1_rows;
    k->vec_dot_rows[TS_TYPE_Q5_0] = vec_dot_q5_0_rows;
    k->vec_dot_rows[TS_TYPE_Q5_1] = vec_dot_q5_1_rows;
    k->vec_dot_rows[TS_TYPE_IQ4_NL] = vec_dot_iq4_nl_rows;
    k->vec_dot_rows[TS_TYPE_MXFP4] = vec_dot_mxfp4_rows;
}
