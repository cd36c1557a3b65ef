/* Token sampling over one row of logits: penalties, bias, constraint mask, top-k / min-p / top-p,
 * temperature and the draw; log-probabilities of the model's own logits. */
#ifndef TS_SAMPLING_H
#define TS_SAMPLING_H

#include <stdint.h>

#include "ts/kernels.h"

#ifdef __cplusplus
extern "C" {
#endif

typedef struct {
    double temperature;       /* <= 0, or so small that 1/T overflows a float: greedy */
    int32_t top_k;            /* <= 0, or at least the allowed tokens: off */
    double top_p;             /* >= 1: off; measured within the top-k set, after min-p */
    double min_p;             /* <= 0: off; relative to the best token's probability */
    double repeat_penalty;    /* 1: off; divides positive logits, multiplies negative ones */
    double presence_penalty;  /* subtracted once from every token of the recent window */
    double frequency_penalty; /* subtracted once per occurrence in the recent window */
} ts_sample_params;

/* A candidate token: its (adjusted) logit, its exp term relative to the best, its id. */
typedef struct {
    float v, e;
    int32_t id;
} ts_sample_cand;

/* Scratch for one call, sized for n_vocab tokens; reusable across calls and rows of that size. */
typedef struct {
    float *x;               /* (n_vocab) adjusted logits */
    float *e;               /* (n_vocab) exp terms */
    ts_sample_cand *cand;   /* (n_vocab) */
    int32_t *count;         /* (n_vocab) all zero on entry and on return */
    float *block_max;       /* (ceil(n_vocab / TS_BLOCK_MAX)): lets the filters skip whole blocks */
} ts_sample_work;

/* One token from logits (n): logit_bias adds bias[j] to token bias_id[j]; the penalties count
 * recent (n_recent token ids, the window); mask (NULL: all allowed) holds ceil(n / 32) words, bit
 * i % 32 of word i / 32 set = token i allowed. Non-finite logits count as masked; a bias or penalty
 * saturates at the float range. Greedy takes the
 * best (ties: lowest id; nothing allowed: 0). Otherwise top-k, min-p and top-p keep the best tokens
 * in (logit desc, id asc) order, and u in [0, 1) picks the token whose interval of the cumulative
 * tempered weights, summed in id order, holds u * total. kern NULL: the table in use.
 * Returns the token, or -1 when a bias or window id is outside [0, n). */
int32_t ts_sample(const ts_kernels *kern, const float *logits, int64_t n, const ts_sample_params *p,
                  const int32_t *bias_id, const float *bias, int n_bias, const int32_t *recent,
                  int64_t n_recent, const uint32_t *mask, double u, ts_sample_work *w);

/* One row of a ts_sample_rows call: ts_sample's arguments, and its result in token. */
typedef struct {
    const float *logits;
    ts_sample_params p;
    const int32_t *bias_id;
    const float *bias;
    int n_bias;
    const int32_t *recent;
    int64_t n_recent;
    const uint32_t *mask;
    double u;
    int32_t token;
} ts_sample_row;

/* ts_sample on each of n_rows rows of n logits, the rows spread over up to n_threads threads of the
 * global pool (<= 0: all) and no more than n_works: thread i uses works[i]. A row's token is the one
 * ts_sample alone gives it. */
void ts_sample_rows(const ts_kernels *kern, ts_sample_row *rows, int n_rows, int64_t n, ts_sample_work *works,
                    int n_works, int n_threads);

/* Log-softmax of logits (n; non-finite ones count as -inf) at token -> *lp_token, and the n_top best (ties: lowest id)
 * into top_id / top_lp, best first. Returns how many were written (min(n_top, n)). */
int ts_logprobs(const ts_kernels *kern, const float *logits, int64_t n, int32_t token, int n_top,
                int32_t *top_id, double *top_lp, double *lp_token, ts_sample_work *w);

#ifdef __cplusplus
}
#endif
#endif
