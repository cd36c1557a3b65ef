# cython: boundscheck=False, wraparound=False, language_level=3
# Thin `with nogil` calls into csrc/; argument checking and allocation live in kernels.py.
from libc.stdint cimport int32_t, int64_t, uint8_t, uint16_t, uint32_t, uint64_t
from libc.stdlib cimport free, malloc
from ._kernels cimport *


cdef const ts_kernels *_table(str isa) except NULL:
    cdef const ts_kernels *k
    if isa is None:
        return ts_kernels_get()
    k = ts_kernels_for(isa.encode())
    if k == NULL:
        raise ValueError(f"ISA {isa!r} is not available here (have {available()})")
    return k


def isa():
    return ts_kernels_get().isa.decode()


def available():
    return ts_isa_available().decode().split(",")


def cpu_count():
    return ts_cpu_count()


def type_traits(int type_id):
    """(name, block_size, type_size, activation format) or None for an unsupported id."""
    cdef const ts_type_traits *t = ts_type_traits_get(type_id)
    if t == NULL:
        return None
    return t.name.decode(), t.block_size, t.type_size, t.act


def has_dot(int type_id, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    return k.dequantize[type_id] != NULL and k.vec_dot[type_id] != NULL


def row_exact(int type_id, str isa=None):
    """Whether a row's matmul result has the same bits alone as in a batch of any size."""
    cdef const ts_kernels *k = _table(isa)
    return k.gemm[type_id] == NULL or k.gemm_one[type_id] != 0


def packs(int type_id, str isa=None):
    """Whether weights of this type are repacked for this table's gemm_packed."""
    cdef const ts_kernels *k = _table(isa)
    return ts_repack_supported(type_id) != 0 and k.gemm_packed[type_id] != NULL


def pack_rows():
    return TS_PACK_ROWS


def slot_packable(int layer, int slot):
    return ts_model_slot_packable(layer, slot) != 0


def repack(const uint8_t[:, ::1] src, int type_id, int64_t cols, uint8_t[:, ::1] dst):
    cdef int rc
    with nogil:
        rc = ts_repack_rows(type_id, &src[0, 0], &dst[0, 0], src.shape[0], cols, src.shape[1])
    if rc != 0:
        raise ValueError("repack: unsupported type or sizes")


def dequantize_packed_row(const uint8_t[:, ::1] packed, int type_id, int64_t cols, int64_t row, float[::1] out,
                          str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef int rc
    if row < 0 or row >= packed.shape[0] or out.shape[0] != cols:
        raise ValueError("dequantize_packed_row: row or output size out of range")
    with nogil:
        rc = ts_repack_dequantize_row(k.dequantize[type_id], type_id, &packed[0, 0], row, cols, packed.shape[1], &out[0])
    if rc != 0:
        raise ValueError("dequantize_packed_row: unsupported type or sizes")


def dequantize(const uint8_t[::1] raw, int type_id, int64_t n, float[::1] out, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    if k.dequantize[type_id] == NULL:
        raise NotImplementedError(f"no dequantize for type {type_id}")
    with nogil:
        k.dequantize[type_id](&raw[0], &out[0], n)


def quantize_act(const float[::1] x, int act, uint8_t[::1] out, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef ts_quantize_row_fn q = k.quantize_q8k if act == 2 else k.quantize_q8x32
    if q == NULL:
        raise NotImplementedError("no activation quantizer")
    with nogil:
        q(&x[0], &out[0], x.shape[0])


def quantize_cache_row(const float[::1] x, int type_id, uint8_t[::1] out):
    """x -> Q8_0 (type 8) or Q4_0 (type 2) blocks in out, as the KV cache stores its rows."""
    if (type_id not in (2, 8) or x.shape[0] % 32
            or out.shape[0] < x.shape[0] // 32 * ts_cache_row_bytes(type_id, 32)):
        raise ValueError("quantize_cache_row: a Q8_0 or Q4_0 row, and room for it")
    with nogil:
        ts_quantize_cache_row(type_id, &x[0], &out[0], x.shape[0])


def cache_row_bytes(int type_id, int head_dim):
    """Bytes of a position's head_dim values in a KV cache of type F16, Q8_0 or Q4_0; 0 where that
    type cannot hold such heads."""
    return ts_cache_row_bytes(type_id, head_dim)


def matmul(const uint8_t[:, ::1] w, int type_id, int64_t cols, const float[:, ::1] x,
           float[:, ::1] y, int n_threads=0, str isa=None, bint packed=False):
    cdef const ts_kernels *k = _table(isa)
    cdef int rc
    with nogil:
        rc = ts_matmul(k, type_id, &w[0, 0], w.shape[0], cols, w.shape[1], packed, &x[0, 0], x.shape[0],
                       &y[0, 0], n_threads)
    if rc != 0:
        raise ValueError("matmul: unsupported type or inconsistent sizes")


def rmsnorm(const float[::1] x, const float[::1] w, float[::1] y, float eps, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef const float *wp = &w[0] if w is not None else NULL
    with nogil:
        k.rmsnorm(&x[0], wp, &y[0], x.shape[0], eps)


def softmax(float[::1] x, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    with nogil:
        k.softmax(&x[0], x.shape[0])


def unary(str op, const float[::1] x, float[::1] y, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    if op == "silu":
        with nogil:
            k.silu(&x[0], &y[0], x.shape[0])
    elif op == "gelu":
        with nogil:
            k.gelu(&x[0], &y[0], x.shape[0])
    else:
        raise ValueError(op)


def gated(str op, const float[::1] g, const float[::1] u, float[::1] y, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    if op == "swiglu":
        with nogil:
            k.swiglu(&g[0], &u[0], &y[0], g.shape[0])
    elif op == "geglu":
        with nogil:
            k.geglu(&g[0], &u[0], &y[0], g.shape[0])
    else:
        raise ValueError(op)


def layernorm(const float[::1] x, const float[::1] w, const float[::1] b, float[::1] y, float eps,
              str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef const float *wp = &w[0] if w is not None else NULL
    cdef const float *bp = &b[0] if b is not None else NULL
    if y.shape[0] != x.shape[0] or (w is not None and w.shape[0] != x.shape[0]) or (
            b is not None and b.shape[0] != x.shape[0]):
        raise ValueError("layernorm: x, w, b and y sizes differ")
    with nogil:
        k.layernorm(&x[0], wp, bp, &y[0], x.shape[0], eps)


def gelu_quick(const float[::1] x, float[::1] y, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    if y.shape[0] != x.shape[0]:
        raise ValueError("gelu_quick: x and y sizes differ")
    with nogil:
        k.gelu_quick(&x[0], &y[0], x.shape[0])


def attention_full(const float[:, ::1] q, const float[:, ::1] kk, const float[:, ::1] vv, float scale,
                   float[::1] scores, float[:, ::1] out, str isa=None):
    """Non-causal attention of one head: q (nq, head_dim), k and v (n_kv, head_dim) -> out (nq, head_dim);
    scores (nq * n_kv) is scratch."""
    cdef const ts_kernels *k = _table(isa)
    cdef int nq = q.shape[0], n_kv = kk.shape[0], hd = q.shape[1]
    if (nq == 0 or n_kv == 0 or hd == 0 or kk.shape[1] != hd or vv.shape[0] != n_kv
            or vv.shape[1] != hd or out.shape[0] != nq or out.shape[1] != hd
            or scores.shape[0] < nq * n_kv):
        raise ValueError("attention_full: inconsistent shapes")
    with nogil:
        k.attn_f32(&q[0, 0], hd, nq, &kk[0, 0], &vv[0, 0], hd, n_kv, hd, scale, &scores[0], &out[0, 0], hd)


def gemm_f16_tile(const uint16_t[:, ::1] w, const float[:, ::1] x, float[:, ::1] y, str isa=None):
    """y (nc, nr) = x (nc, n) @ w (nr, n)^T for nr, nc in 1..4, w holding F16 bit patterns."""
    cdef const ts_kernels *k = _table(isa)
    cdef int nr = w.shape[0], nc = x.shape[0]
    if not (1 <= nr <= 4 and 1 <= nc <= 4) or w.shape[1] != x.shape[1] or y.shape[0] != nc or y.shape[1] != nr:
        raise ValueError("gemm_f16_tile: inconsistent shapes")
    with nogil:
        k.gemm_f16_tile(w.shape[1], &w[0, 0], w.shape[1], &x[0, 0], x.shape[1], &y[0, 0], nr, nr, nc)


def rope(float[:, ::1] x, int n_rot, float pos, float freq_base, float freq_scale, bint neox,
         const float[::1] freq_factors=None, float mscale=1.0, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef const float *ff = &freq_factors[0] if freq_factors is not None else NULL
    with nogil:
        k.rope(&x[0, 0], x.shape[0], x.shape[1], n_rot, pos, freq_base, freq_scale, ff, mscale, neox)


def f16_to_f32(const uint16_t[::1] x, float[::1] y, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    with nogil:
        k.f16_to_f32(&x[0], &y[0], x.shape[0])


def f32_to_f16(const float[::1] x, uint16_t[::1] y, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    with nogil:
        k.f32_to_f16(&x[0], &y[0], x.shape[0])


def attention(const float[:, :, ::1] q, const uint8_t[:, :, ::1] kc, const uint8_t[:, :, ::1] vc, int kv_type,
              const int32_t[::1] q_pos, int window, float scale, float softcap,
              float[:, :, ::1] out, int n_threads=0, str isa=None, const float[::1] sinks=None):
    """kc, vc: (n_kv_head, n_ctx, bytes of a position's head_dim values in kv_type, F16, Q8_0 or Q4_0)."""
    cdef const ts_kernels *k = _table(isa)
    cdef int rc
    if (kc.shape[2] != ts_cache_row_bytes(kv_type, q.shape[2]) or vc.shape[0] != kc.shape[0] or vc.shape[1] != kc.shape[1]
            or vc.shape[2] != kc.shape[2]):
        raise ValueError("attention: the cache rows do not hold head_dim values of the cache type")
    cdef const float *sinks_p = NULL
    if sinks is not None:
        if sinks.shape[0] != q.shape[1]:
            raise ValueError("attention: one sink per head")
        sinks_p = &sinks[0]
    with nogil:
        rc = ts_attention(k, &q[0, 0, 0], &kc[0, 0, 0], &vc[0, 0, 0], kv_type, &q_pos[0], q.shape[0],
                          q.shape[1], kc.shape[0], q.shape[2], kc.shape[1], window, scale,
                          softcap, sinks_p, &out[0, 0, 0], n_threads)
    if rc != 0:
        raise ValueError("attention: inconsistent shapes or positions")


def read_probe(const uint8_t[::1] buf, int n_threads=0):
    cdef uint64_t s
    with nogil:
        s = ts_read_probe(&buf[0], buf.shape[0] // 8 * 8, n_threads)
    return s


def matvec_stream(list ws, int type_id, int64_t cols, const float[::1] x, float[::1] y, int n_threads=0,
                  str isa=None):
    """y = W x for each matrix of ws (uint8 (rows, row_bytes), all alike) back to back in C."""
    cdef const ts_kernels *k = _table(isa)
    cdef const uint8_t[:, ::1] w0 = ws[0]
    cdef int64_t rows = w0.shape[0], row_bytes = w0.shape[1]
    cdef int n = len(ws), i, rc
    cdef const uint8_t[:, ::1] wi
    if y.shape[0] != rows or x.shape[0] != cols:
        raise ValueError("matvec_stream: x or y does not fit the matrices")
    cdef const void **p = <const void **>malloc(n * sizeof(void *))
    if p == NULL:
        raise MemoryError()
    try:
        for i in range(n):
            wi = ws[i]
            if wi.shape[0] != rows or wi.shape[1] != row_bytes:
                raise ValueError("matvec_stream: the matrices differ in shape")
            p[i] = &wi[0, 0]
        with nogil:
            rc = ts_matvec_stream(k, type_id, p, n, rows, cols, row_bytes, &x[0], &y[0], n_threads)
    finally:
        free(p)
    if rc != 0:
        raise ValueError("matvec_stream: unsupported type or inconsistent sizes")


def logits_prepare(const float[::1] src, const uint32_t[::1] mask, float[::1] dst, float[::1] bm, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef const uint32_t *mask_p = &mask[0] if mask is not None else NULL
    cdef int64_t n = src.shape[0], finite
    if n == 0 or dst.shape[0] != n or bm.shape[0] != (n + 63) // 64 or (
            mask is not None and mask.shape[0] != (n + 31) // 32):
        raise ValueError("logits_prepare: sizes differ")
    with nogil:
        finite = k.logits_prepare(&src[0], mask_p, n, &dst[0], &bm[0])
    return finite


def exp_sum(const float[::1] x, float sub, float scale, float lo, float[::1] out=None, str isa=None):
    cdef const ts_kernels *k = _table(isa)
    cdef float *out_p = &out[0] if out is not None else NULL
    cdef double s
    if x.shape[0] == 0 or (out is not None and out.shape[0] != x.shape[0]):
        raise ValueError("exp_sum: sizes differ")
    with nogil:
        s = k.exp_sum(&x[0], x.shape[0], sub, scale, lo, out_p)
    return s


cdef class SampleWork:
    """Scratch of ts_sample for one vocabulary size; the arrays are allocated by kernels.py."""
    cdef ts_sample_work w
    cdef readonly int64_t n_vocab
    cdef object _keep

    def __init__(self, float[::1] x, float[::1] e, uint8_t[::1] cand, int32_t[::1] count,
                 float[::1] block_max):
        self.n_vocab = x.shape[0]
        if (e.shape[0] != self.n_vocab or count.shape[0] != self.n_vocab or cand.shape[0] < 12 * self.n_vocab
                or block_max.shape[0] < (self.n_vocab + 63) // 64):
            raise ValueError("SampleWork: buffers do not fit the vocabulary")
        self._keep = (x, e, cand, count, block_max)
        self.w.x = &x[0]
        self.w.e = &e[0]
        self.w.cand = <ts_sample_cand *>&cand[0]
        self.w.count = &count[0]
        self.w.block_max = &block_max[0]


cdef int _fill_row(ts_sample_row *r, tuple row, int64_t n) except -1:
    """One row of ts_sample's arguments (kernels._sample_row's tuple) into r; the arrays stay the
    caller's, alive for as long as r is used."""
    cdef const float[::1] logits = row[0]
    cdef const int32_t[::1] bias_id = row[8]
    cdef const float[::1] bias = row[9]
    cdef const int32_t[::1] recent = row[10]
    cdef const uint32_t[::1] mask = row[11]
    if logits.shape[0] != n or bias.shape[0] != bias_id.shape[0]:
        raise ValueError("sample: logits, bias or scratch sizes differ")
    r.logits = &logits[0]
    r.p.temperature = row[1]
    r.p.top_k = row[2]
    r.p.top_p = row[3]
    r.p.min_p = row[4]
    r.p.repeat_penalty = row[5]
    r.p.presence_penalty = row[6]
    r.p.frequency_penalty = row[7]
    r.bias_id = &bias_id[0] if bias_id.shape[0] > 0 else NULL
    r.bias = &bias[0] if bias.shape[0] > 0 else NULL
    r.n_bias = bias_id.shape[0]
    r.recent = &recent[0] if recent.shape[0] > 0 else NULL
    r.n_recent = recent.shape[0]
    r.mask = &mask[0] if mask is not None else NULL
    r.u = row[12]
    return 0


def sample(tuple row, SampleWork work, str isa=None):
    """ts_sample on one row (kernels._sample_row's tuple) of work.n_vocab logits."""
    cdef const ts_kernels *k = _table(isa)
    cdef ts_sample_row r
    cdef int32_t tok
    _fill_row(&r, row, work.n_vocab)
    with nogil:
        tok = ts_sample(k, r.logits, work.n_vocab, &r.p, r.bias_id, r.bias, r.n_bias, r.recent, r.n_recent, r.mask,
                        r.u, &work.w)
    if tok < 0:
        raise ValueError("sample: a logit-bias or recent token id is outside the vocabulary")
    return tok


def sample_rows(list rows, list works, int n_threads=0, str isa=None):
    """ts_sample_rows: each row kernels._sample_row's tuple, every row's logits of
    works[0].n_vocab; one SampleWork per thread. The tokens, -1 where a row's logit-bias or recent
    token id is outside the vocabulary."""
    cdef const ts_kernels *k = _table(isa)
    cdef int n_rows = len(rows), n_works = len(works), i
    cdef int64_t n
    cdef SampleWork work
    if n_rows == 0:
        return []
    if n_works == 0:
        raise ValueError("sample_rows: no scratch")
    n = (<SampleWork>works[0]).n_vocab
    cdef ts_sample_row *r = <ts_sample_row *>malloc(n_rows * sizeof(ts_sample_row))
    cdef ts_sample_work *w = <ts_sample_work *>malloc(n_works * sizeof(ts_sample_work))
    try:
        if r == NULL or w == NULL:
            raise MemoryError()
        for i in range(n_works):
            work = works[i]
            if work.n_vocab != n:
                raise ValueError("sample_rows: scratch sizes differ")
            w[i] = work.w
        for i in range(n_rows):
            _fill_row(&r[i], rows[i], n)
        with nogil:
            ts_sample_rows(k, r, n_rows, n, w, n_works, n_threads)
        return [r[i].token for i in range(n_rows)]
    finally:
        free(r)
        free(w)


def logprobs(const float[::1] logits, int32_t token, int32_t[::1] top_id, double[::1] top_lp,
             SampleWork work, str isa=None):
    """Log-softmax of logits at token; fills the best top_id.shape[0] and returns (lp, how many)."""
    cdef const ts_kernels *k = _table(isa)
    cdef double lp
    cdef int n_top = top_id.shape[0], m
    cdef int32_t *id_p = &top_id[0] if n_top > 0 else NULL
    cdef double *lp_p = &top_lp[0] if n_top > 0 else NULL
    if logits.shape[0] != work.n_vocab or top_lp.shape[0] != n_top or not 0 <= token < logits.shape[0]:
        raise ValueError("logprobs: token, output or scratch sizes do not fit the logits")
    with nogil:
        m = ts_logprobs(k, &logits[0], logits.shape[0], token, n_top, id_p, lp_p, &lp, &work.w)
    return lp, m


cdef ts_tensor _tensor(const uint8_t[:, ::1] data, int type_id, int64_t cols, bint packed=False):
    """A weight's rows as the C kernels see them; the caller keeps data alive."""
    cdef ts_tensor t
    t.data = &data[0, 0]
    t.type = type_id
    t.rows = data.shape[0]
    t.cols = cols
    t.row_bytes = data.shape[1]
    t.packed = packed
    return t


cdef class NativeModel:
    """A ts_model over weight views that this object keeps alive."""
    cdef ts_model *m
    cdef list _keep
    cdef readonly int n_layer, n_embd, n_head_kv, head_dim, n_vocab

    def __cinit__(self, dict hp):
        cdef ts_hparams h
        h.n_layer = hp["n_layer"]; h.n_embd = hp["n_embd"]; h.n_head = hp["n_head"]
        h.n_head_kv = hp["n_head_kv"]; h.head_dim = hp["head_dim"]; h.n_ff = hp["n_ff"]
        h.n_vocab = hp["n_vocab"]; h.n_rot = hp["n_rot"]; h.rope_neox = hp["rope_neox"]
        h.norm_eps = hp["norm_eps"]; h.ffn_act = hp["ffn_act"]; h.embd_scale = hp["embd_scale"]
        h.attn_scale = hp["attn_scale"]; h.attn_softcap = hp["attn_softcap"]
        h.final_softcap = hp["final_softcap"]; h.residual_scale = hp["residual_scale"]
        h.logit_scale = hp["logit_scale"]; h.qk_norm_whole = hp["qk_norm_whole"]
        h.n_expert = hp["n_expert"]; h.n_expert_used = hp["n_expert_used"]; h.n_ff_exp = hp["n_ff_exp"]
        h.expert_norm = hp["expert_norm"]; h.glu_alpha = hp["glu_alpha"]; h.glu_limit = hp["glu_limit"]
        self.m = ts_model_create(&h)
        if self.m == NULL:
            raise ValueError(f"inconsistent hyper-parameters: {hp}")
        self._keep = []
        self.n_layer, self.n_head_kv, self.head_dim, self.n_vocab = h.n_layer, h.n_head_kv, h.head_dim, h.n_vocab
        self.n_embd = h.n_embd

    def __dealloc__(self):
        if self.m != NULL:
            ts_model_free(self.m)

    def set_tensor(self, int layer, int slot, const uint8_t[:, ::1] data, int type_id, int64_t cols,
                   bint packed=False):
        cdef ts_tensor t = _tensor(data, type_id, cols, packed)
        if ts_model_set_tensor(self.m, layer, slot, &t) != 0:
            raise ValueError(f"weight (layer {layer}, slot {slot}) of shape ({data.shape[0]}, {cols}) "
                             f"and type {type_id} does not fit the model")
        self._keep.append(data)

    def set_layer_params(self, int layer, float rope_base, float rope_scale, int window,
                         float rope_mscale=1.0, bint use_rope=True):
        cdef ts_layer_params p
        p.rope_base, p.rope_scale, p.window = rope_base, rope_scale, window
        p.rope_mscale, p.use_rope = rope_mscale, use_rope
        if ts_model_set_layer_params(self.m, layer, &p) != 0:
            raise ValueError(f"bad parameters for layer {layer}")

    def finalize(self):
        cdef char msg[256]
        if ts_model_finalize(self.m, msg, 256) != 0:
            raise ValueError(msg.decode())


cdef class NativeContext:
    """Scratch space for forward steps of up to n_batch tokens."""
    cdef ts_context *c
    cdef NativeModel model
    cdef readonly int n_batch

    def __cinit__(self, NativeModel model, int n_batch):
        self.c = ts_context_create(model.m, n_batch)
        if self.c == NULL:
            raise MemoryError("cannot allocate a forward context")
        self.model = model
        self.n_batch = n_batch

    def __dealloc__(self):
        if self.c != NULL:
            ts_context_free(self.c)

    def forward(self, uint8_t[:, :, :, :, ::1] k_cache, uint8_t[:, :, :, :, ::1] v_cache, int kv_type,
                const int32_t[::1] tokens, const int32_t[::1] pos, const int32_t[::1] seq,
                const int32_t[::1] out_rows, float[:, ::1] logits, int n_threads=0,
                const float[:, ::1] embd=None, const int32_t[::1] attn_end=None,
                const int32_t[::1] hid_rows=None, float[:, ::1] hidden=None):
        """embd (n_tok, n_embd): input rows of the tokens given as -1; attn_end (n_tok): exclusive
        attention end per row; hidden (len(hid_rows), n_embd): final hidden states of the rows
        hid_rows lists (see ts_forward_hidden). k_cache, v_cache: (n_seq, n_layer, n_head_kv, n_ctx,
        bytes of a position's head_dim values in kv_type, F16, Q8_0 or Q4_0: ts_cache_row_bytes)."""
        cdef ts_kv_cache kv
        cdef int rc
        cdef int n_tok = tokens.shape[0]
        cdef int n_out = out_rows.shape[0]
        cdef const int32_t *rows_p = &out_rows[0] if n_out > 0 else NULL
        cdef float *logits_p = &logits[0, 0] if n_out > 0 else NULL
        cdef const float *embd_p = NULL
        cdef const int32_t *end_p = NULL
        cdef int n_hid = hid_rows.shape[0] if hid_rows is not None else 0
        cdef const int32_t *hid_p = &hid_rows[0] if n_hid > 0 else NULL
        cdef float *hidden_p = NULL
        kv.k = &k_cache[0, 0, 0, 0, 0]
        kv.v = &v_cache[0, 0, 0, 0, 0]
        kv.n_seq = k_cache.shape[0]
        kv.n_ctx = k_cache.shape[3]
        kv.type = kv_type
        if (n_tok != pos.shape[0] or n_tok != seq.shape[0]
                or k_cache.shape[1] != self.model.n_layer or k_cache.shape[2] != self.model.n_head_kv
                or k_cache.shape[4] != ts_cache_row_bytes(kv_type, self.model.head_dim)
                or any(v_cache.shape[i] != k_cache.shape[i] for i in range(5))
                or (n_out > 0 and (logits.shape[0] < n_out or logits.shape[1] != self.model.n_vocab))
                or (embd is not None and (embd.shape[0] != n_tok or embd.shape[1] != self.model.n_embd))
                or (attn_end is not None and attn_end.shape[0] != n_tok)
                or (n_hid > 0 and (hidden is None or hidden.shape[0] < n_hid
                                   or hidden.shape[1] != self.model.n_embd))):
            raise ValueError("forward: inconsistent batch, embedding, cache, logits or hidden shapes")
        if n_hid > 0:
            hidden_p = &hidden[0, 0]
        if embd is not None:
            embd_p = &embd[0, 0]
        if attn_end is not None:
            end_p = &attn_end[0]
        with nogil:
            rc = ts_forward_hidden(self.c, &kv, &tokens[0], &pos[0], &seq[0], embd_p, end_p, n_tok, rows_p, n_out,
                                   logits_p, hid_p, n_hid, hidden_p, n_threads)
        if rc != 0:
            raise ValueError("forward: token id, position, sequence or attention end out of range, batch too large, "
                             "or a cache type the model's head size does not allow")


cdef class NativeVit:
    """A ts_vit over weight views that this object keeps alive."""
    cdef ts_vit *v
    cdef list _keep
    cdef readonly int n_tokens, n_out, image_size

    def __cinit__(self, dict hp):
        cdef ts_vit_hparams h
        h.image_size = hp["image_size"]; h.patch_size = hp["patch_size"]; h.n_embd = hp["n_embd"]
        h.n_ff = hp["n_ff"]; h.n_head = hp["n_head"]; h.n_layer = hp["n_layer"]; h.eps = hp["eps"]
        h.ffn_act = hp["ffn_act"]; h.has_class = hp["has_class"]; h.proj = hp["proj"]
        h.pool = hp["pool"]; h.n_mm_ff = hp["n_mm_ff"]; h.n_out = hp["n_out"]
        self.v = ts_vit_create(&h)
        if self.v == NULL:
            raise ValueError(f"inconsistent encoder hyper-parameters: {hp}")
        self._keep = []
        self.n_tokens = ts_vit_n_tokens(self.v)
        self.n_out = h.n_out
        self.image_size = h.image_size

    def __dealloc__(self):
        if self.v != NULL:
            ts_vit_free(self.v)

    def set_tensor(self, int layer, int slot, const uint8_t[:, ::1] data, int type_id, int64_t cols):
        cdef ts_tensor t = _tensor(data, type_id, cols)
        if ts_vit_set_tensor(self.v, layer, slot, &t) != 0:
            raise ValueError(f"encoder weight (layer {layer}, slot {slot}) of shape ({data.shape[0]}, {cols}) "
                             f"and type {type_id} does not fit")
        self._keep.append(data)

    def finalize(self):
        cdef char msg[256]
        if ts_vit_finalize(self.v, msg, 256) != 0:
            raise ValueError(msg.decode())

    def encode(self, const float[:, :, ::1] pixels, float[:, ::1] out, int n_threads=0):
        cdef int rc
        if (pixels.shape[0] != 3 or pixels.shape[1] != self.image_size or pixels.shape[2] != self.image_size
                or out.shape[0] != self.n_tokens or out.shape[1] != self.n_out):
            raise ValueError("encode: pixels or output of the wrong shape")
        with nogil:
            rc = ts_vit_encode(self.v, &pixels[0, 0, 0], &out[0, 0], n_threads)
        if rc == -2:
            raise MemoryError("cannot allocate the encoder's scratch memory")
        if rc != 0:
            raise ValueError("encode: the encoder is not finalized")


cdef class NativeEncoder:
    """A ts_encoder over weight views that this object keeps alive."""
    cdef ts_encoder *e
    cdef list _keep
    cdef readonly int n_embd

    def __cinit__(self, dict hp):
        cdef ts_enc_hparams h
        h.n_embd = hp["n_embd"]; h.n_ff = hp["n_ff"]; h.n_head = hp["n_head"]; h.n_layer = hp["n_layer"]
        h.n_vocab = hp["n_vocab"]; h.n_pos = hp["n_pos"]; h.n_types = hp["n_types"]; h.n_ctx = hp["n_ctx"]
        h.eps = hp["eps"]; h.ffn = hp["ffn"]; h.rope_base = hp["rope_base"]
        self.e = ts_encoder_create(&h)
        if self.e == NULL:
            raise ValueError(f"inconsistent encoder hyper-parameters: {hp}")
        self._keep = []
        self.n_embd = h.n_embd

    def __dealloc__(self):
        if self.e != NULL:
            ts_encoder_free(self.e)

    def set_tensor(self, int layer, int slot, const uint8_t[:, ::1] data, int type_id, int64_t cols):
        cdef ts_tensor t = _tensor(data, type_id, cols)
        if ts_encoder_set_tensor(self.e, layer, slot, &t) != 0:
            raise ValueError(f"encoder weight (layer {layer}, slot {slot}) of shape ({data.shape[0]}, {cols}) "
                             f"and type {type_id} does not fit")
        self._keep.append(data)

    def finalize(self):
        cdef char msg[256]
        if ts_encoder_finalize(self.e, msg, 256) != 0:
            raise ValueError(msg.decode())

    def encode(self, const int32_t[::1] tokens, const int32_t[::1] seq_start, float[:, ::1] hidden, int n_threads=0):
        cdef int rc
        if tokens.shape[0] == 0 or seq_start.shape[0] == 0 or hidden.shape[0] != tokens.shape[0] \
                or hidden.shape[1] != self.n_embd:
            raise ValueError("encode: empty batch or output of the wrong shape")
        with nogil:
            rc = ts_encoder_encode(self.e, &tokens[0], <int>tokens.shape[0], &seq_start[0], <int>seq_start.shape[0],
                                   &hidden[0, 0], n_threads)
        if rc == -2:
            raise MemoryError("cannot allocate the encoder's scratch memory")
        if rc != 0:
            raise ValueError("encode: a token id out of range, sequences out of order or longer than the context")
