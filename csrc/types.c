/* Per-type block geometry and the activation format each weight type's dot product uses. */
#include "ts/types.h"

static const ts_type_traits TRAITS[TS_TYPE_COUNT] = {
    [TS_TYPE_F32] = {"F32", 1, 4, TS_ACT_F32},
    [TS_TYPE_F16] = {"F16", 1, 2, TS_ACT_F32},
    [TS_TYPE_BF16] = {"BF16", 1, 2, TS_ACT_F32},
    [TS_TYPE_Q4_0] = {"Q4_0", TS_QK, sizeof(ts_block_q4_0), TS_ACT_Q8X32},
    [TS_TYPE_Q4_1] = {"Q4_1", TS_QK, sizeof(ts_block_q4_1), TS_ACT_Q8X32},
    [TS_TYPE_Q5_0] = {"Q5_0", TS_QK, sizeof(ts_block_q5_0), TS_ACT_Q8X32},
    [TS_TYPE_Q5_1] = {"Q5_1", TS_QK, sizeof(ts_block_q5_1), TS_ACT_Q8X32},
    [TS_TYPE_Q8_0] = {"Q8_0", TS_QK, sizeof(ts_block_q8_0), TS_ACT_Q8X32},
    [TS_TYPE_IQ4_NL] = {"IQ4_NL", TS_QK, sizeof(ts_block_iq4_nl), TS_ACT_Q8X32},
    [TS_TYPE_MXFP4] = {"MXFP4", TS_QK, sizeof(ts_block_mxfp4), TS_ACT_Q8X32},
    [TS_TYPE_Q2_K] = {"Q2_K", TS_QK_K, sizeof(ts_block_q2_K), TS_ACT_Q8K},
    [TS_TYPE_Q3_K] = {"Q3_K", TS_QK_K, sizeof(ts_block_q3_K), TS_ACT_Q8K},
    [TS_TYPE_Q4_K] = {"Q4_K", TS_QK_K, sizeof(ts_block_q4_K), TS_ACT_Q8K},
    [TS_TYPE_Q5_K] = {"Q5_K", TS_QK_K, sizeof(ts_block_q5_K), TS_ACT_Q8K},
    [TS_TYPE_Q6_K] = {"Q6_K", TS_QK_K, sizeof(ts_block_q6_K), TS_ACT_Q8K},
    [TS_TYPE_IQ4_XS] = {"IQ4_XS", TS_QK_K, sizeof(ts_block_iq4_xs), TS_ACT_Q8K},
    [TS_TYPE_IQ2_XXS] = {"IQ2_XXS", TS_QK_K, sizeof(ts_block_iq2_xxs), TS_ACT_Q8K},
    [TS_TYPE_IQ2_XS] = {"IQ2_XS", TS_QK_K, sizeof(ts_block_iq2_xs), TS_ACT_Q8K},
    [TS_TYPE_IQ2_S] = {"IQ2_S", TS_QK_K, sizeof(ts_block_iq2_s), TS_ACT_Q8K},
    [TS_TYPE_IQ3_XXS] = {"IQ3_XXS", TS_QK_K, sizeof(ts_block_iq3_xxs), TS_ACT_Q8K},
    [TS_TYPE_IQ3_S] = {"IQ3_S", TS_QK_K, sizeof(ts_block_iq3_s), TS_ACT_Q8K},
    [TS_TYPE_IQ1_S] = {"IQ1_S", TS_QK_K, sizeof(ts_block_iq1_s), TS_ACT_Q8K},
    [TS_TYPE_IQ1_M] = {"IQ1_M", TS_QK_K, sizeof(ts_block_iq1_m), TS_ACT_Q8K},
};

const ts_type_traits *ts_type_traits_get(int type) {
    if (type < 0 || type >= TS_TYPE_COUNT || TRAITS[type].name == NULL) return NULL;
    return &TRAITS[type];
}

size_t ts_row_size(int type, int64_t n) {
    const ts_type_traits *t = ts_type_traits_get(type);
    if (t == NULL || n < 0 || n % t->block_size != 0) return 0;
    return (size_t)(n / t->block_size) * (size_t)t->type_size;
}

size_t ts_act_row_size(ts_act act, int64_t n) {
    switch (act) {
    case TS_ACT_F32: return (size_t)n * sizeof(float);
    case TS_ACT_Q8X32: return (size_t)(n / TS_QK) * sizeof(ts_block_q8x32);
    case TS_ACT_Q8K: return (size_t)(n / TS_QK_K) * sizeof(ts_block_q8k);
    }
    return 0;
}
