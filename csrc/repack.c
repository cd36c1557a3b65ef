/* Load-time weight repacking into the 16-row groups the packed gemm reads (layout: ts/repack.h). */
#include <stddef.h>
#include <string.h>

#include "ts/repack.h"

int ts_repack_block_elems(int type) {
    switch (type) {
    case TS_TYPE_Q4_0: case TS_TYPE_Q4_1: case TS_TYPE_Q5_0: case TS_TYPE_Q8_0: return TS_QK;
    case TS_TYPE_Q4_K: case TS_TYPE_Q6_K: return TS_QK_K;
    default: return 0;
    }
}

int ts_repack_supported(int type) { return ts_repack_block_elems(type) != 0; }

_Static_assert(sizeof(ts_block_q4_K) % 4 == 0 && offsetof(ts_block_q6_K, d) % 4 == 0 &&
                   offsetof(ts_block_q6_K, d) + 2 == sizeof(ts_block_q6_K),
               "k-quant blocks split into 4-byte pieces and (Q6_K) a trailing d");

/* Bytes of a k-quant block (bs bytes) that go in 4-byte pieces; Q6_K's d after them goes as d[16]. */
static int piece_bytes(int type, int bs) { return type == TS_TYPE_Q6_K ? (int)offsetof(ts_block_q6_K, d) : bs; }

/* The register of a packed k-quant block that holds piece p. */
static int slot(int type, int p) { return type == TS_TYPE_Q6_K ? ts_repack_q6_K_slot(p) : p; }

/* Block b of the 16 rows at `rows` (row_bytes apart) into its packed slot `out`. */
static void pack_block(int type, const uint8_t *rows, int64_t row_bytes, int64_t b, int bs, uint8_t *out) {
    if (ts_repack_block_elems(type) == TS_QK_K) {
        const int pb = piece_bytes(type, bs);
        for (int r = 0; r < TS_PACK_ROWS; r++) {
            const uint8_t *blk = rows + (size_t)r * (size_t)row_bytes + (size_t)b * bs;
            for (int p = 0; p < pb / 4; p++) memcpy(out + 64 * slot(type, p) + 4 * r, blk + 4 * p, 4);
            if (pb < bs) memcpy(out + TS_PACK_ROWS * pb + 2 * r, blk + pb, 2);
        }
        return;
    }
    const int head = type == TS_TYPE_Q4_1 ? 4 : type == TS_TYPE_Q5_0 ? 6 : 2; /* bytes before qs */
    const int qs_bytes = bs - head;
    uint8_t *q = out + 16 * head;
    for (int r = 0; r < TS_PACK_ROWS; r++) {
        const uint8_t *blk = rows + (size_t)r * (size_t)row_bytes + (size_t)b * bs;
        memcpy(out + 2 * r, blk, 2); /* d */
        if (type == TS_TYPE_Q4_1) memcpy(out + 32 + 2 * r, blk + 2, 2); /* m */
        for (int j = 0; j < qs_bytes / 4; j++) memcpy(q + 64 * j + 4 * r, blk + head + 4 * j, 4);
    }
    if (type != TS_TYPE_Q5_0) return;
    uint64_t qh5[8] = {0};
    for (int r = 0; r < TS_PACK_ROWS; r++) {
        const uint8_t *blk = rows + (size_t)r * (size_t)row_bytes + (size_t)b * bs;
        uint32_t qh;
        memcpy(&qh, blk + 2, 4);
        for (int j = 0; j < 8; j++) qh5[j] |= (uint64_t)(qh >> 4 * j & 0xF) << 4 * r;
    }
    memcpy(out + 32, qh5, sizeof qh5);
}

/* Block b of row r of the packed group at g (blocks bs bytes) back in the file's layout: pack_block
 * read backwards. */
static void unpack_block(int type, const uint8_t *g, int r, int64_t b, int bs, uint8_t *out) {
    const uint8_t *in = g + (size_t)b * TS_PACK_ROWS * bs;
    if (ts_repack_block_elems(type) == TS_QK_K) {
        const int pb = piece_bytes(type, bs);
        for (int p = 0; p < pb / 4; p++) memcpy(out + 4 * p, in + 64 * slot(type, p) + 4 * r, 4);
        if (pb < bs) memcpy(out + pb, in + TS_PACK_ROWS * pb + 2 * r, 2);
        return;
    }
    const int head = type == TS_TYPE_Q4_1 ? 4 : type == TS_TYPE_Q5_0 ? 6 : 2;
    const uint8_t *q = in + 16 * head;
    memcpy(out, in + 2 * r, 2);
    if (type == TS_TYPE_Q4_1) memcpy(out + 2, in + 32 + 2 * r, 2);
    for (int j = 0; j < (bs - head) / 4; j++) memcpy(out + head + 4 * j, q + 64 * j + 4 * r, 4);
    if (type != TS_TYPE_Q5_0) return;
    uint64_t qh5[8];
    memcpy(qh5, in + 32, sizeof qh5);
    uint32_t qh = 0;
    for (int j = 0; j < 8; j++) qh |= (uint32_t)(qh5[j] >> 4 * r & 0xF) << 4 * j;
    memcpy(out + 2, &qh, 4);
}

int ts_repack_dequantize_row(ts_dequantize_row_fn dequantize, int type, const void *data, int64_t row, int64_t cols,
                             int64_t row_bytes, float *out) {
    const int qk = ts_repack_block_elems(type);
    if (!dequantize || !qk || row < 0 || cols <= 0 || cols % qk) return -1;
    const int bs = (int)ts_type_traits_get(type)->type_size;
    if (row_bytes != cols / qk * bs) return -1;
    const uint8_t *g = (const uint8_t *)data + (size_t)(row / TS_PACK_ROWS) * TS_PACK_ROWS * (size_t)row_bytes;
    _Alignas(8) uint8_t blk[sizeof(ts_block_q6_K)]; /* the largest packed block */
    for (int64_t b = 0; b < cols / qk; b++) {
        unpack_block(type, g, (int)(row % TS_PACK_ROWS), b, bs, blk);
        dequantize(blk, out + b * qk, qk);
    }
    return 0;
}

int ts_repack_rows(int type, const void *src, void *dst, int64_t rows, int64_t cols, int64_t row_bytes) {
    const int qk = ts_repack_block_elems(type);
    if (!qk || rows <= 0 || rows % TS_PACK_ROWS || cols <= 0 || cols % qk) return -1;
    const int bs = (int)ts_type_traits_get(type)->type_size;
    const int64_t nb = cols / qk;
    if (row_bytes != nb * bs || src == dst) return -1;
    for (int64_t g = 0; g < rows / TS_PACK_ROWS; g++) {
        const uint8_t *in = (const uint8_t *)src + (size_t)g * TS_PACK_ROWS * (size_t)row_bytes;
        uint8_t *out = (uint8_t *)dst + (size_t)g * TS_PACK_ROWS * (size_t)row_bytes;
        for (int64_t b = 0; b < nb; b++) pack_block(type, in, row_bytes, b, bs, out + (size_t)b * TS_PACK_ROWS * bs);
    }
    return 0;
}
