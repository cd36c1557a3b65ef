/* Load-time weight repacking: rows of the 32-element formats, Q4_K and Q6_K regrouped so that the
 * gemm reads sixteen rows' quants straight into register lanes (no unpack, transpose or gather per
 * call). */
#ifndef TS_REPACK_H
#define TS_REPACK_H

#include "ts/kernels.h"
#include "ts/types.h"

#ifdef __cplusplus
extern "C" {
#endif

/* Rows go in groups of TS_PACK_ROWS; group g keeps the bytes of rows 16g .. 16g + 15 (so it
 * starts where row 16g did), and in it block b's 16 copies sit together, 16 * block bytes from
 * b * 16 * block bytes. The 32-element formats:
 *   d[16] (f16, one per row), then Q4_1: m[16] (f16); Q5_0: fifth bits qh5[8] (uint64);
 *   then the quants as registers of 64 bytes, byte 4r + k of register j for row r:
 *     Q4_0 / Q4_1 / Q5_0 (registers 0..3): the row's qs[4j + k], i.e. element 4j + k in the low
 *       nibble and 16 + 4j + k in the high one;
 *     Q8_0 (registers 0..7): the row's qs[4j + k], element 4j + k.
 *   Q5_0's qh5[j] bit 4r + k is the fifth bit of element 4j + k of row r (j < 4: the low nibbles
 *   of register j, else the high nibbles of register j - 4).
 * Q4_K and Q6_K (super-blocks of 256) as 4-byte pieces: piece p (bytes 4p .. 4p + 3) of row r's
 * block sits at byte 64p + 4r, so register p's lane r is row r's piece p, quants and scales alike:
 *   Q4_K: piece 0 (d, dmin), 1 .. 3 the 6-bit scales and mins, 4 + 8i + j (i < 4, j < 8) qs[32i +
 *     4j ..]: elements 64i + 4j + k in the low nibbles, 64i + 32 + 4j + k in the high ones;
 *   Q6_K: pieces 0 .. 31 ql, 32 .. 47 qh, 48 .. 51 the int8 scales, their registers in the order
 *     of ts_repack_q6_K_slot; then d[16] (f16, one per row).
 *   Every nibble register holds four consecutive quants of each row per lane (the operand
 *   vpdpbusd and AMX's tile rows take); the scales of 16 rows decode with a few lane-wise shifts.
 * The size is the original's: a group is 16 rows of row_bytes. */
#define TS_PACK_ROWS 16

/* The register (0 .. 51) of a packed Q6_K block that holds file piece p: the order in which the
 * gemm first reads them, so that a block is read as one forward stream where the file's order
 * jumps back and forth (measured, the two orders were within noise of each other; from memory a
 * packed Q6_K matrix still takes ~10% longer than its rows at one token): the scales
 * (48 .. 51), then per half h of 128 elements ql 16h .. 16h + 7, qh 32 + 8h .. 32 + 8h + 7,
 * ql 16h + 8 .. 16h + 15. */
static inline int ts_repack_q6_K_slot(int p) {
    if (p >= 48) return p - 48;
    if (p >= 32) return 4 + 24 * ((p - 32) / 8) + 8 + (p - 32) % 8;
    return 4 + 24 * (p / 16) + (p % 16 < 8 ? p % 16 : 8 + p % 16);
}

/* 1 for the types with a packed layout. */
int ts_repack_supported(int type);
/* dst (rows, row_bytes) = src's rows (rows a multiple of TS_PACK_ROWS, each cols elements of
 * `type`, row_bytes apart) in the packed layout. Returns 0, or -1 on an unsupported type or bad
 * sizes. */
int ts_repack_rows(int type, const void *src, void *dst, int64_t rows, int64_t cols, int64_t row_bytes);

/* Elements per block of a packed type (32 or 256), 0 for the others. */
int ts_repack_block_elems(int type);
/* out (cols,) = row `row` of a packed matrix (rows row_bytes apart as in the file) as floats: each
 * block is put back in the file's layout and passed to `dequantize`, so the values are the ones
 * the unpacked row gives. What a packed tied embedding looks its tokens up with. Returns 0, or -1
 * on an unsupported type or bad sizes (the caller checks row against the matrix's rows). */
int ts_repack_dequantize_row(ts_dequantize_row_fn dequantize, int type, const void *data, int64_t row, int64_t cols,
                             int64_t row_bytes, float *out);

#ifdef __cplusplus
}
#endif
#endif
