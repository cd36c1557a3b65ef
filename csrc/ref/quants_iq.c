/* Scalar reference kernels of the codebook i-quants: IQ2_XXS, IQ2_XS, IQ2_S, IQ3_XXS, IQ3_S,
 * IQ1_S, IQ1_M. */
#include <string.h>

#include "ts/fp16.h"
#include "ts/iq_grids.h"
#include "quants.h"

/* Every format unpacks to one signed int8 per element and a 3- or 4-bit code s per sub-block
 * whose weight is d * (2s + 1) * TS_IQ_SCALE of the type; dequantize and vec_dot share that
 * unpacking, so each bit layout lives in one place. IQ1's values g + 1/8 or g - 1/8 (g in -1..1)
 * are held times 8, which keeps them integers. */
typedef struct {
    int8_t q[TS_QK_K];
    int s[16];
    int sub; /* elements per sub-block: 32 or 16 */
    float d;
} iq_unpacked;

static uint32_t load_u32(const void *p) {
    uint32_t v;
    memcpy(&v, p, 4);
    return v;
}

/* The first len grid bytes into q with the sign bits of `signs` (bit j: element j negative). */
static void put_signed(int8_t *q, uint64_t grid, int signs, int len) {
    for (int j = 0; j < len; j++) {
        const int v = (int)((grid >> (8 * j)) & 0xFF);
        q[j] = (int8_t)((signs >> j) & 1 ? -v : v);
    }
}

static void put8(int8_t *q, uint64_t grid, int signs) { put_signed(q, grid, signs, 8); }
static void put4(int8_t *q, uint32_t grid, int signs) { put_signed(q, grid, signs, 4); }

static void unpack_iq2_xxs(const void *vx, iq_unpacked *u) {
    const ts_block_iq2_xxs *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 32;
    for (int ib = 0; ib < 8; ib++) {
        const uint32_t idx = load_u32(x->qs + 4 * ib), aux = load_u32(x->qs + 4 * ib + 2);
        u->s[ib] = (int)(aux >> 28);
        for (int l = 0; l < 4; l++)
            put8(u->q + 32 * ib + 8 * l, ts_iq2xxs_grid[(idx >> (8 * l)) & 0xFF],
                 ts_iq2_ksigns[(aux >> (7 * l)) & 127]);
    }
}

/* IQ2_XS and IQ2_S: a nibble of scales[t / 2] per 16 elements t. */
static void nibble_scales16(const uint8_t scales[8], int s[16]) {
    for (int t = 0; t < 16; t++) s[t] = (scales[t / 2] >> (4 * (t % 2))) & 0x0F;
}

static void unpack_iq2_xs(const void *vx, iq_unpacked *u) {
    const ts_block_iq2_xs *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 16;
    nibble_scales16(x->scales, u->s);
    for (int g = 0; g < 32; g++) put8(u->q + 8 * g, ts_iq2xs_grid[x->qs[g] & 511], ts_iq2_ksigns[x->qs[g] >> 9]);
}

static void unpack_iq2_s(const void *vx, iq_unpacked *u) {
    const ts_block_iq2_s *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 16;
    nibble_scales16(x->scales, u->s);
    for (int g = 0; g < 32; g++) {
        const int idx = x->qs[g] | ((x->qh[g / 4] >> (2 * (g % 4))) & 3) << 8;
        put8(u->q + 8 * g, ts_iq2s_grid[idx], x->signs[g]);
    }
}

static void unpack_iq3_xxs(const void *vx, iq_unpacked *u) {
    const ts_block_iq3_xxs *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 32;
    for (int ib = 0; ib < 8; ib++) {
        const uint32_t aux = load_u32(x->sas + 4 * ib);
        u->s[ib] = (int)(aux >> 28);
        for (int l = 0; l < 4; l++) {
            const int signs = ts_iq2_ksigns[(aux >> (7 * l)) & 127];
            int8_t *q = u->q + 32 * ib + 8 * l;
            put4(q, ts_iq3xxs_grid[x->qs[8 * ib + 2 * l]], signs);
            put4(q + 4, ts_iq3xxs_grid[x->qs[8 * ib + 2 * l + 1]], signs >> 4);
        }
    }
}

static void unpack_iq3_s(const void *vx, iq_unpacked *u) {
    const ts_block_iq3_s *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 32;
    for (int ib = 0; ib < 8; ib++) u->s[ib] = (x->scales[ib / 2] >> (4 * (ib % 2))) & 0x0F;
    for (int k = 0; k < 64; k++) {
        const int idx = x->qs[k] | ((x->qh[k / 8] >> (k % 8)) & 1) << 8;
        put4(u->q + 4 * k, ts_iq3s_grid[idx], x->signs[k / 2] >> (4 * (k % 2)));
    }
}

/* IQ1: grid bytes u hold g + 1; the value 8 * (g +- 1/8) of each element, with neg the offset's sign. */
static void put8_iq1(int8_t *q, uint64_t grid, int neg) {
    for (int j = 0; j < 8; j++) q[j] = (int8_t)(8 * ((int)((grid >> (8 * j)) & 0xFF) - 1) + (neg ? -1 : 1));
}

static void unpack_iq1_s(const void *vx, iq_unpacked *u) {
    const ts_block_iq1_s *x = vx;
    u->d = ts_f16_to_f32(x->d);
    u->sub = 32;
    for (int ib = 0; ib < 8; ib++) {
        const int qh = x->qh[ib];
        u->s[ib] = (qh >> 12) & 7;
        for (int l = 0; l < 4; l++)
            put8_iq1(u->q + 32 * ib + 8 * l, ts_iq1s_grid[x->qs[4 * ib + l] | ((qh >> (3 * l)) & 7) << 8], qh & 0x8000);
    }
}

static void unpack_iq1_m(const void *vx, iq_unpacked *u) {
    const ts_block_iq1_m *x = vx;
    uint16_t sc[4];
    memcpy(sc, x->scales, sizeof(sc));
    u->d = ts_f16_to_f32((ts_f16)((sc[0] >> 12) | ((sc[1] >> 8) & 0x00F0) | ((sc[2] >> 4) & 0x0F00) |
                                  (sc[3] & 0xF000)));
    u->sub = 16;
    for (int t = 0; t < 16; t++) u->s[t] = (sc[t / 4] >> (3 * (t % 4))) & 7;
    for (int g = 0; g < 32; g++) {
        const int nib = x->qh[g / 2] >> (4 * (g % 2));
        put8_iq1(u->q + 8 * g, ts_iq1s_grid[x->qs[g] | (nib & 7) << 8], nib & 8);
    }
}

/* The float operations of gguf.quants per family: the sub-block scale dl is rounded as there,
 * then multiplies each value (IQ1's g +- 1/8 is exact as a float). */
enum { FAM_IQ2, FAM_IQ3XXS, FAM_IQ3S, FAM_IQ1 };

static void dequantize_iq(const void *vx, float *y, int64_t n, size_t block_bytes, int fam,
                          void (*unpack)(const void *, iq_unpacked *)) {
    const uint8_t *x = vx;
    for (int64_t b = 0; b < n / TS_QK_K; b++, y += TS_QK_K) {
        iq_unpacked u;
        unpack(x + (size_t)b * block_bytes, &u);
        for (int sb = 0; sb < TS_QK_K / u.sub; sb++) {
            const float s = (float)u.s[sb];
            const float dl = fam == FAM_IQ2      ? u.d * (0.5f + s) * 0.25f
                             : fam == FAM_IQ3XXS ? u.d * (0.5f + s) * 0.5f
                                                 : u.d * (float)(2 * u.s[sb] + 1);
            for (int i = sb * u.sub; i < (sb + 1) * u.sub; i++)
                y[i] = fam == FAM_IQ1 ? dl * ((float)u.q[i] * 0.125f) : dl * (float)u.q[i];
        }
    }
}

/* sum over blocks of d * x.d * scale * sum_sb (2s + 1) * dot(q, x.qs): exact in int32 (at most
 * 8 * 31 * 32 * 62 * 127 for IQ3_XXS). scale: 1/8 for IQ2 and IQ1, 1/4 for IQ3_XXS, 1 for IQ3_S. */
static float vec_dot_iq(int64_t n, const void *vw, const void *vx, size_t block_bytes, float scale,
                        void (*unpack)(const void *, iq_unpacked *)) {
    const uint8_t *w = vw;
    const ts_block_q8k *x = vx;
    float sum = 0.0f;
    for (int64_t b = 0; b < n / TS_QK_K; b++) {
        iq_unpacked u;
        unpack(w + (size_t)b * block_bytes, &u);
        int32_t isum = 0;
        for (int sb = 0; sb < TS_QK_K / u.sub; sb++) {
            int32_t part = 0;
            for (int i = sb * u.sub; i < (sb + 1) * u.sub; i++) part += u.q[i] * x[b].qs[i];
            isum += (2 * u.s[sb] + 1) * part;
        }
        sum += (x[b].d * u.d) * (float)isum;
    }
    return sum * scale;
}

#define TS_IQ_KERNELS(name, block, fam, scale)                                                    \
    static void dequantize_##name(const void *x, float *y, int64_t n) {                          \
        dequantize_iq(x, y, n, sizeof(block), fam, unpack_##name);                                \
    }                                                                                             \
    static void vec_dot_##name(int64_t n, float *s, const void *w, const void *x) {              \
        *s = vec_dot_iq(n, w, x, sizeof(block), scale, unpack_##name);                            \
    }

TS_IQ_KERNELS(iq2_xxs, ts_block_iq2_xxs, FAM_IQ2, 0.125f)
TS_IQ_KERNELS(iq2_xs, ts_block_iq2_xs, FAM_IQ2, 0.125f)
TS_IQ_KERNELS(iq2_s, ts_block_iq2_s, FAM_IQ2, 0.125f)
TS_IQ_KERNELS(iq3_xxs, ts_block_iq3_xxs, FAM_IQ3XXS, 0.25f)
TS_IQ_KERNELS(iq3_s, ts_block_iq3_s, FAM_IQ3S, 1.0f)
TS_IQ_KERNELS(iq1_s, ts_block_iq1_s, FAM_IQ1, 0.125f)
TS_IQ_KERNELS(iq1_m, ts_block_iq1_m, FAM_IQ1, 0.125f)

void ts_register_scalar_iquants(ts_kernels *k) {
    k->dequantize[TS_TYPE_IQ2_XXS] = dequantize_iq2_xxs;
    k->dequantize[TS_TYPE_IQ2_XS] = dequantize_iq2_xs;
    k->dequantize[TS_TYPE_IQ2_S] = dequantize_iq2_s;
    k->dequantize[TS_TYPE_IQ3_XXS] = dequantize_iq3_xxs;
    k->dequantize[TS_TYPE_IQ3_S] = dequantize_iq3_s;
    k->dequantize[TS_TYPE_IQ1_S] = dequantize_iq1_s;
    k->dequantize[TS_TYPE_IQ1_M] = dequantize_iq1_m;
    k->vec_dot[TS_TYPE_IQ2_XXS] = vec_dot_iq2_xxs;
    k->vec_dot[TS_TYPE_IQ2_XS] = vec_dot_iq2_xs;
    k->vec_dot[TS_TYPE_IQ2_S] = vec_dot_iq2_s;
    k->vec_dot[TS_TYPE_IQ3_XXS] = vec_dot_iq3_xxs;
    k->vec_dot[TS_TYPE_IQ3_S] = vec_dot_iq3_s;
    k->vec_dot[TS_TYPE_IQ1_S] = vec_dot_iq1_s;
    k->vec_dot[TS_TYPE_IQ1_M] = vec_dot_iq1_m;
}
