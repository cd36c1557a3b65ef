/* Token sampling over a row of logits: penalties, bias, mask, top-k / min-p / top-p, the draw,
 * and log-probabilities. No full sort of the vocabulary: block maxima and value thresholds narrow
 * the candidates first, so a 262k vocabulary costs a few passes over memory. */
#include <float.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "ts/sampling.h"
#include "ts/threadpool.h"

#define BLOCK TS_BLOCK_MAX
/* Candidate sets up to this size are sorted outright; larger ones are split by a histogram. */
#define SORT_MAX 2048
/* Buckets of each refinement of a large candidate set: one pass narrows it about this much. */
#define N_BUCKET 1024
/* Blocks of the draw's first pass: the crossing block is walked again token by token. */
#define DRAW_BLOCK 1024

/* ---- ordering of candidates: logit descending, then id ascending ---- */

static inline int before(const ts_sample_cand *a, const ts_sample_cand *b) {
    return a->v > b->v || (a->v == b->v && a->id < b->id);
}

static inline void swap_cand(ts_sample_cand *a, ts_sample_cand *b) {
    const ts_sample_cand t = *a;
    *a = *b;
    *b = t;
}

static void insertion_sort(ts_sample_cand *c, int64_t n) {
    for (int64_t i = 1; i < n; i++) {
        const ts_sample_cand t = c[i];
        int64_t j = i;
        for (; j > 0 && before(&t, &c[j - 1]); j--) c[j] = c[j - 1];
        c[j] = t;
    }
}

/* Median-of-three pivot into c[hi]; returns its final index after a Lomuto partition. */
static int64_t partition(ts_sample_cand *c, int64_t lo, int64_t hi) {
    const int64_t mid = lo + (hi - lo) / 2;
    if (before(&c[mid], &c[lo])) swap_cand(&c[mid], &c[lo]);
    if (before(&c[hi], &c[lo])) swap_cand(&c[hi], &c[lo]);
    if (before(&c[mid], &c[hi])) swap_cand(&c[mid], &c[hi]);
    const ts_sample_cand pivot = c[hi];
    int64_t s = lo;
    for (int64_t i = lo; i < hi; i++)
        if (before(&c[i], &pivot)) swap_cand(&c[i], &c[s++]);
    swap_cand(&c[s], &c[hi]);
    return s;
}

static void sort_cands(ts_sample_cand *c, int64_t n) {
    while (n > 16) {
        const int64_t p = partition(c, 0, n - 1);
        /* Recurse into the smaller side so the stack stays logarithmic. */
        if (p < n - 1 - p) {
            sort_cands(c, p);
            c += p + 1;
            n -= p + 1;
        } else {
            sort_cands(c + p + 1, n - 1 - p);
            n = p;
        }
    }
    insertion_sort(c, n);
}

/* The k first of c (n) in candidate order, sorted, at the front: quickselect, then a sort of k. */
static void select_sorted(ts_sample_cand *c, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (hi - lo > 16) {
        const int64_t p = partition(c, lo, hi);
        if (p == k - 1) break;
        if (p < k - 1) lo = p + 1;
        else hi = p - 1;
    }
    if (hi - lo <= 16 && lo <= hi) insertion_sort(c + lo, hi - lo + 1);
    sort_cands(c, k);
}

static int cmp_id(const void *a, const void *b) {
    const int32_t x = ((const ts_sample_cand *)a)->id, y = ((const ts_sample_cand *)b)->id;
    return (x > y) - (x < y);
}

/* ---- passes over the row ---- */

static float max_of(const float *bm, int64_t nb) {
    float best = -INFINITY;
    for (int64_t b = 0; b < nb; b++) best = bm[b] > best ? bm[b] : best;
    return best;
}

/* k-th largest of v (n > k - 1 >= 0), reordering v. */
static float kth_largest(float *v, int64_t n, int64_t k) {
    int64_t lo = 0, hi = n - 1;
    while (lo < hi) {
        const float pivot = v[lo + (hi - lo) / 2];
        int64_t i = lo, j = hi;
        while (i <= j) {
            while (v[i] > pivot) i++;
            while (v[j] < pivot) j--;
            if (i <= j) {
                const float t = v[i];
                v[i++] = v[j];
                v[j--] = t;
            }
        }
        if (k - 1 <= j) hi = j;
        else if (k - 1 >= i) lo = i;
        else break;
    }
    return v[k - 1];
}

/* The k best finite entries of x (1 <= k <= finite entries) into c, sorted. The k-th largest block
 * maximum bounds the k-th largest entry from below (k blocks reach it), so only blocks at or above
 * it are read. scratch: nb floats. */
static int64_t select_top(const float *x, int64_t n, const float *bm, int64_t k, float *scratch,
                          ts_sample_cand *c) {
    const int64_t nb = (n + BLOCK - 1) / BLOCK;
    float t = -FLT_MAX;
    if (k <= nb) {
        memcpy(scratch, bm, (size_t)nb * sizeof(float));
        const float kth = kth_largest(scratch, nb, k);
        t = kth > t ? kth : t;
    }
    int64_t m = 0;
    for (int64_t b = 0; b < nb; b++) {
        if (bm[b] < t) continue;
        const int64_t end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        for (int64_t i = b * BLOCK; i < end; i++)
            if (x[i] >= t) c[m++] = (ts_sample_cand){x[i], 0.0f, (int32_t)i};
    }
    select_sorted(c, m, k);
    return k;
}

/* ---- the logits as the filters see them ---- */

/* A bias or penalty saturates at the float range, so no finite logit turns infinite (the count of
 * finite entries stays what logits_prepare found); a masked one stays -inf. */
static inline float saturate(float v) { return v > FLT_MAX ? FLT_MAX : v < -FLT_MAX ? -FLT_MAX : v; }

static void refresh_block(const float *x, int64_t n, float *bm, int64_t i) {
    const int64_t b0 = i / BLOCK * BLOCK, end = b0 + BLOCK < n ? b0 + BLOCK : n;
    float m = -INFINITY;
    for (int64_t j = b0; j < end; j++) m = x[j] > m ? x[j] : m;
    bm[i / BLOCK] = m;
}

/* w->x = the logits with mask, bias and penalties applied; w->block_max its block maxima. Returns
 * the count of finite entries, or -1 for an id outside [0, n). */
static int64_t adjust(const ts_kernels *k, const float *logits, int64_t n, const ts_sample_params *p,
                      const int32_t *bias_id, const float *bias, int n_bias, const int32_t *recent,
                      int64_t n_recent, const uint32_t *mask, ts_sample_work *w) {
    float *x = w->x;
    for (int j = 0; j < n_bias; j++)
        if (bias_id[j] < 0 || bias_id[j] >= n) return -1;
    const int penalize = p->repeat_penalty != 1.0 || p->presence_penalty != 0.0 || p->frequency_penalty != 0.0;
    if (!penalize) n_recent = 0;
    for (int64_t j = 0; j < n_recent; j++)
        if (recent[j] < 0 || recent[j] >= n) return -1;
    const int64_t n_finite = k->logits_prepare(logits, mask, n, x, w->block_max);
    for (int j = 0; j < n_bias; j++)
        if (x[bias_id[j]] > -INFINITY) x[bias_id[j]] = saturate(x[bias_id[j]] + bias[j]);
    const float rp = (float)p->repeat_penalty;
    for (int64_t j = 0; j < n_recent; j++) w->count[recent[j]]++;
    for (int64_t j = 0; j < n_recent; j++) {
        const int32_t t = recent[j];
        const int32_t cnt = w->count[t];
        if (cnt == 0) continue;   /* a repeat of a token already penalized */
        w->count[t] = 0;
        float v = x[t];
        if (!(v > -INFINITY)) continue;
        if (rp != 1.0f) v = v > 0.0f ? v / rp : v * rp;
        x[t] = saturate((float)((double)v - cnt * p->frequency_penalty - p->presence_penalty));
    }
    for (int j = 0; j < n_bias; j++) refresh_block(x, n, w->block_max, bias_id[j]);
    for (int64_t j = 0; j < n_recent; j++) refresh_block(x, n, w->block_max, recent[j]);
    return n_finite;
}

/* ---- top-p over the whole vocabulary ---- */

/* The kept set of the implicit path: entries above tau, and those equal to it up to id lim. */
typedef struct {
    float tau;
    int64_t lim;
} cut;

static inline int kept(float v, int64_t i, cut c) { return v > c.tau || (v == c.tau && i <= c.lim); }

/* Walks c (m, sorted) adding e until the mass reaches need; the entry reaching it is the cut. */
static int walk_sorted(const ts_sample_cand *c, int64_t m, double *need, cut *out) {
    double cum = 0.0;
    for (int64_t j = 0; j < m; j++) {
        cum += c[j].e;
        if (cum >= *need) {
            *out = (cut){c[j].v, c[j].id};
            return 1;
        }
    }
    *need -= cum;
    return 0;
}

/* The smallest and largest value of c (m >= 1), four lanes at a time for the same reason. */
static void range_of(const ts_sample_cand *c, int64_t m, float *lo, float *hi) {
    float l[4], h[4];
    for (int q = 0; q < 4; q++) l[q] = h[q] = c[0].v;
    int64_t j = 0;
    for (; j + 4 <= m; j += 4)
        for (int q = 0; q < 4; q++) {
            l[q] = c[j + q].v < l[q] ? c[j + q].v : l[q];
            h[q] = c[j + q].v > h[q] ? c[j + q].v : h[q];
        }
    for (; j < m; j++) {
        l[0] = c[j].v < l[0] ? c[j].v : l[0];
        h[0] = c[j].v > h[0] ? c[j].v : h[0];
    }
    *lo = fminf(fminf(l[0], l[1]), fminf(l[2], l[3]));
    *hi = fmaxf(fmaxf(h[0], h[1]), fmaxf(h[2], h[3]));
}

/* The cut among c (m candidates in id order, values within [lo, hi]) where the mass in candidate
 * order reaches need; 0 when the whole mass falls short. Large sets are split by a histogram of
 * value, keeping only the bucket that holds the cut. */
static int cut_in(ts_sample_cand *c, int64_t m, float lo, float hi, double need, cut *out) {
    while (m > SORT_MAX) {
        if (hi == lo) return walk_sorted(c, m, &need, out);   /* all tied: id order is candidate order */
        double mass[N_BUCKET + 1] = {0};
        const float scale = (float)N_BUCKET / (hi - lo);
#define BUCKET(v) ((int)((hi - (v)) * scale < (float)N_BUCKET ? (hi - (v)) * scale : (float)N_BUCKET))
        for (int64_t j = 0; j < m; j++) mass[BUCKET(c[j].v)] += c[j].e;
        int b = 0;
        double cum = 0.0;
        for (; b <= N_BUCKET; b++) {
            if (cum + mass[b] >= need) break;
            cum += mass[b];
        }
        if (b > N_BUCKET) return 0;
        need -= cum;
        /* Stores unconditionally and advances on a match: no branch to mispredict. */
        int64_t k = 0;
        for (int64_t j = 0; j < m; j++) {
            c[k] = c[j];
            k += BUCKET(c[j].v) == b;
        }
#undef BUCKET
        m = k;
        range_of(c, m, &lo, &hi);
    }
    sort_cands(c, m);
    return walk_sorted(c, m, &need, out);
}

/* Entries of x (n) at or above t, with their terms e, into c in id order, skipping blocks whose
 * maximum is below t; stops once more than limit are found. Stores unconditionally and advances on
 * a match: no branch to mispredict. */
static int64_t collect(const float *x, const float *e, int64_t n, const float *bm, float t, ts_sample_cand *c,
                       int64_t limit) {
    int64_t m = 0;
    for (int64_t b = 0; b < (n + BLOCK - 1) / BLOCK && m <= limit; b++) {
        if (bm[b] < t) continue;
        const int64_t end = (b + 1) * BLOCK < n ? (b + 1) * BLOCK : n;
        for (int64_t i = b * BLOCK; i < end; i++) {
            c[m] = (ts_sample_cand){x[i], e[i], (int32_t)i};
            m += x[i] >= t;
        }
    }
    return m;
}

/* Four partial sums: one running sum would wait on each addition in turn. */
static double mass_of(const ts_sample_cand *c, int64_t m) {
    double s[4] = {0.0, 0.0, 0.0, 0.0};
    int64_t j = 0;
    for (; j + 4 <= m; j += 4)
        for (int q = 0; q < 4; q++) s[q] += c[j + q].e;
    for (; j < m; j++) s[0] += c[j].e;
    return (s[0] + s[1]) + (s[2] + s[3]);
}

/* First-level buckets of the whole row: TOP_BUCKETS over [mx - TOP_RANGE, mx], one for the rest. */
#define TOP_BUCKETS 4096
#define TOP_RANGE 64.0f

/* The bucket of v <= mx, TOP_BUCKETS for everything past TOP_RANGE and -inf. Masked entries lie
 * anywhere in a row, so the clamp is an integer min on the float's bits (ordered as the values are
 * for d >= 0), which compiles to a conditional move rather than a mispredicted branch. */
static inline int top_bucket(float mx, float v, float scale) {
    const float d = (mx - v) * scale, top = (float)TOP_BUCKETS;
    int32_t di, ti;
    memcpy(&di, &d, sizeof di);
    memcpy(&ti, &top, sizeof ti);
    di = di < ti ? di : ti;
    float c;
    memcpy(&c, &di, sizeof c);
    return (int)c;
}

/* Top-p over all finite entries of x: the smallest prefix in candidate order whose mass (e, terms
 * relative to the maximum mx) reaches need. Most rows reach it within a few nats of the maximum:
 * those entries are collected and sorted. Otherwise a histogram of the whole row finds the bucket
 * holding the cut, and only its entries go on. idx: n ints of scratch, zero on entry and return. */
static cut top_p_cut(const float *x, const float *e, int64_t n, int64_t n_finite, const float *bm, float mx,
                     double norm, double need, ts_sample_cand *c, int32_t *idx) {
    cut out;
    for (float delta = 2.0f; delta <= 16.0f; delta *= 2.0f) {
        const int64_t m = collect(x, e, n, bm, mx - delta, c, SORT_MAX);
        if (m > SORT_MAX) break;
        if (mass_of(c, m) >= need) {
            sort_cands(c, m);
            double left = need;
            /* Summed in another order the walk may stop short of need by rounding: all are kept. */
            if (!walk_sorted(c, m, &left, &out)) out = (cut){c[m - 1].v, c[m - 1].id};
            return out;
        }
    }
    const float scale = TOP_BUCKETS / TOP_RANGE;
    const int64_t nb = (n + BLOCK - 1) / BLOCK;
#define BUCKET(v) top_bucket(mx, v, scale)
    /* The entries below low weigh at most n_finite e^(low - mx) together; with low chosen so that
     * this stays under half of norm - need (a margin for rounding), the cut lies above it and blocks
     * whose maximum is below low can be passed over (the bulk of a real model's row). */
    const double tail = norm - need;
    const float low = tail > 0.0 ? (float)(mx + log(0.5 * tail / (double)n_finite)) : -FLT_MAX;
    /* Bucket numbers first, in a loop the compiler vectorizes; then the scatter of the masses. */
    for (int64_t bl = 0; bl < nb; bl++) {
        if (bm[bl] < low) continue;
        const int64_t end = (bl + 1) * BLOCK < n ? (bl + 1) * BLOCK : n;
        for (int64_t i = bl * BLOCK; i < end; i++) idx[i] = BUCKET(x[i]);
    }
    double mass[TOP_BUCKETS + 1] = {0};
    for (int64_t bl = 0; bl < nb; bl++) {
        if (bm[bl] < low) continue;
        const int64_t end = (bl + 1) * BLOCK < n ? (bl + 1) * BLOCK : n;
        for (int64_t i = bl * BLOCK; i < end; i++) mass[idx[i]] += e[i];
    }
    int b = 0;
    double cum = 0.0;
    for (; b <= TOP_BUCKETS; b++) {
        if (cum + mass[b] >= need) break;
        cum += mass[b];
    }
    int64_t m = 0;
    if (b <= TOP_BUCKETS)
        for (int64_t bl = 0; bl < nb; bl++) {
            if (bm[bl] < low || BUCKET(bm[bl]) > b) continue;   /* nothing of bucket b in this block */
            const int64_t end = (bl + 1) * BLOCK < n ? (bl + 1) * BLOCK : n;
            for (int64_t i = bl * BLOCK; i < end; i++) {
                c[m] = (ts_sample_cand){x[i], e[i], (int32_t)i};
                m += (idx[i] == b) & (x[i] > -INFINITY);
            }
        }
    memset(idx, 0, (size_t)n * sizeof(*idx));
    if (b > TOP_BUCKETS) return (cut){-FLT_MAX, n - 1};   /* rounding: the whole row is kept */
#undef BUCKET
    float lo, hi;
    range_of(c, m, &lo, &hi);
    if (!cut_in(c, m, lo, hi, need - cum, &out)) out = (cut){lo, n - 1};
    return out;
}

/* The smallest float f with (double)f - mx >= lmp: min-p's cutoff as a float threshold. */
static float min_p_cutoff(float mx, double lmp) {
    const double t = (double)mx + lmp;
    if (t <= -FLT_MAX) return -FLT_MAX;
    float f = (float)t;
    while ((double)f - mx < lmp) f = nextafterf(f, INFINITY);
    for (float g = nextafterf(f, -INFINITY); (double)g - mx >= lmp; g = nextafterf(f, -INFINITY)) f = g;
    return f;
}

/* ---- the draw ---- */

/* One draw weight exactly as the exp_sum kernels form it (see TS_EXP_MIN). */
static inline float term(float v, float mx, float inv_t) {
    const float a = (v - mx) * inv_t;
    return a >= TS_EXP_MIN ? expf(a) : 0.0f;
}

/* Draws from the kept entries of x (the cut) with weights e^((x - mx) * inv_t), walked in id order. */
static int32_t draw_implicit(const ts_kernels *k, const float *x, int64_t n, cut c, float mx, float inv_t,
                             double u, float *bsum) {
    /* Ties at tau past lim are out: above lim the threshold moves just past tau. */
    const float lo_hi = nextafterf(c.tau, INFINITY);
    int64_t nblk = 0;
    double total = 0.0;
    for (int64_t a = 0; a < n; nblk++) {
        int64_t end = a + DRAW_BLOCK < n ? a + DRAW_BLOCK : n;
        if (a <= c.lim && end > c.lim + 1) end = c.lim + 1;
        const float lo = a <= c.lim ? c.tau : lo_hi;
        bsum[nblk] = (float)k->exp_sum(x + a, end - a, mx, inv_t, lo, NULL);
        total += bsum[nblk];
        a = end;
    }
    const double target = u * total;
    double cum = 0.0;
    int64_t a = 0, last = -1;
    for (int64_t b = 0; b < nblk; b++) {
        int64_t end = a + DRAW_BLOCK < n ? a + DRAW_BLOCK : n;
        if (a <= c.lim && end > c.lim + 1) end = c.lim + 1;
        if (bsum[b] > 0.0f && cum + bsum[b] > target) {
            for (int64_t i = a; i < end; i++) {
                if (!kept(x[i], i, c)) continue;
                const float wi = term(x[i], mx, inv_t);
                if (wi <= 0.0f) continue;
                cum += wi;
                last = i;
                if (cum > target) return (int32_t)i;
            }
            return (int32_t)last;   /* rounding: the block's own terms fell short of its sum */
        }
        if (bsum[b] > 0.0f) {
            for (int64_t i = end - 1; i >= a; i--)
                if (kept(x[i], i, c) && term(x[i], mx, inv_t) > 0.0f) {
                    last = i;
                    break;
                }
        }
        cum += bsum[b];
        a = end;
    }
    return (int32_t)(last >= 0 ? last : 0);
}

/* Draws from c (m candidates) with weights e^((v - mx) / T), walked in id order. */
static int32_t draw_list(ts_sample_cand *c, int64_t m, float mx, double temperature, double u) {
    qsort(c, (size_t)m, sizeof(*c), cmp_id);
    double total = 0.0;
    for (int64_t j = 0; j < m; j++) total += exp(((double)c[j].v - mx) / temperature);
    const double target = u * total;
    double cum = 0.0;
    int64_t last = 0;
    for (int64_t j = 0; j < m; j++) {
        const double wj = exp(((double)c[j].v - mx) / temperature);
        if (wj <= 0.0) continue;
        cum += wj;
        last = j;
        if (cum > target) return c[j].id;
    }
    return c[last].id;
}

int32_t ts_sample(const ts_kernels *kern, const float *logits, int64_t n, const ts_sample_params *p,
                  const int32_t *bias_id, const float *bias, int n_bias, const int32_t *recent,
                  int64_t n_recent, const uint32_t *mask, double u, ts_sample_work *w) {
    const ts_kernels *k = kern ? kern : ts_kernels_get();
    const int64_t n_finite = adjust(k, logits, n, p, bias_id, bias, n_bias, recent, n_recent, mask, w);
    if (n_finite < 0) return -1;
    if (n_finite == 0) return 0;
    const float *x = w->x;
    const float mx = max_of(w->block_max, (n + BLOCK - 1) / BLOCK);
    /* A temperature so small that 1/T overflows a float leaves only the best: greedy. */
    if (p->temperature <= 0.0 || 1.0 / p->temperature > FLT_MAX) {
        int64_t b = 0;
        while (w->block_max[b] != mx) b++;
        int64_t i = b * BLOCK;
        while (x[i] != mx) i++;
        return (int32_t)i;
    }
    const int use_top_p = p->top_p < 1.0, use_min_p = p->min_p > 0.0;
    if (p->top_k > 0 && p->top_k < n_finite) {
        ts_sample_cand *c = w->cand;
        int64_t m = select_top(x, n, w->block_max, p->top_k, w->e, c);
        double norm = 0.0;
        for (int64_t j = 0; j < m; j++) norm += exp((double)c[j].v - mx);
        if (use_min_p) {
            const double lmp = log(p->min_p);
            while (m > 1 && (double)c[m - 1].v - mx < lmp) m--;
        }
        if (use_top_p) {
            const double need = p->top_p * norm;
            double cum = 0.0;
            for (int64_t j = 0; j < m; j++) {
                cum += exp((double)c[j].v - mx);
                if (cum >= need) {
                    m = j + 1;
                    break;
                }
            }
        }
        return draw_list(c, m, mx, p->temperature, u);
    }
    cut c = {-FLT_MAX, n - 1};
    if (use_min_p) c.tau = min_p_cutoff(mx, log(p->min_p));
    if (use_top_p) {
        const double norm = k->exp_sum(x, n, mx, 1.0f, -FLT_MAX, w->e);
        const cut cp = top_p_cut(x, w->e, n, n_finite, w->block_max, mx, norm, p->top_p * norm, w->cand, w->count);
        if (cp.tau >= c.tau) c = cp;   /* the shorter of the two prefixes */
    }
    return draw_implicit(k, x, n, c, mx, (float)(1.0 / p->temperature), u, w->e);
}

typedef struct {
    const ts_kernels *kern;
    ts_sample_row *rows;
    int n_rows;
    int64_t n;
    ts_sample_work *works;
} sample_rows_job;

static void sample_rows_task(void *ctx, int ith, int nth) {
    const sample_rows_job *j = ctx;
    for (int r = ith; r < j->n_rows; r += nth) {
        ts_sample_row *s = &j->rows[r];
        s->token = ts_sample(j->kern, s->logits, j->n, &s->p, s->bias_id, s->bias, s->n_bias, s->recent,
                             s->n_recent, s->mask, s->u, &j->works[ith]);
    }
}

void ts_sample_rows(const ts_kernels *kern, ts_sample_row *rows, int n_rows, int64_t n, ts_sample_work *works,
                    int n_works, int n_threads) {
    if (n_rows <= 0 || n_works <= 0) return;
    sample_rows_job j = {kern, rows, n_rows, n, works};
    int nth = n_rows < n_works ? n_rows : n_works;
    if (n_threads > 0 && n_threads < nth) nth = n_threads;
    ts_threadpool_run(ts_threadpool_global(), sample_rows_task, &j, nth);
}

int ts_logprobs(const ts_kernels *kern, const float *logits, int64_t n, int32_t token, int n_top,
                int32_t *top_id, double *top_lp, double *lp_token, ts_sample_work *w) {
    const ts_kernels *k = kern ? kern : ts_kernels_get();
    const int64_t n_finite = k->logits_prepare(logits, NULL, n, w->x, w->block_max);
    const float mx = max_of(w->block_max, (n + BLOCK - 1) / BLOCK);
    const double lse = mx + log(k->exp_sum(w->x, n, mx, 1.0f, -FLT_MAX, NULL));
    *lp_token = (double)w->x[token] - lse;
    const int64_t m = n_top < n_finite ? n_top : n_finite;
    if (m > 0) select_top(w->x, n, w->block_max, m, w->e, w->cand);
    for (int64_t j = 0; j < m; j++) {
        top_id[j] = w->cand[j].id;
        top_lp[j] = (double)w->cand[j].v - lse;
    }
    return (int)m;
}
