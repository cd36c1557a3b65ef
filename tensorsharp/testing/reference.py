"""A plain numpy forward pass over dequantized weights: the oracle for the native one."""
from __future__ import annotations

import numpy as np

from tensorsharp.kernels import dequantize
from tensorsharp.models.base import FFN_GELU, Transformer
from tensorsharp.testing.quants import ACT_OF, quantize_act_ref


def _rmsnorm(x, w, eps):
    return x / np.sqrt(np.mean(x * x, axis=-1, keepdims=True) + eps) * w


def _rope(x, pos, n_rot, base, scale, neox, factors=None, mscale=1.0):
    """x (n, heads, head_dim), pos (n,); factors (n_rot/2) divide the frequencies."""
    x = x.copy()
    half = n_rot // 2
    theta = (np.asarray(pos, np.float64)[:, None] * scale) * base ** (-np.arange(half) * 2.0 / n_rot)
    if factors is not None:
        theta = theta / factors
    cos, sin = mscale * np.cos(theta)[:, None, :], mscale * np.sin(theta)[:, None, :]
    if neox:
        a, b = x[..., :half].copy(), x[..., half:n_rot].copy()
        x[..., :half], x[..., half:n_rot] = a * cos - b * sin, a * sin + b * cos
    else:
        a, b = x[..., 0:n_rot:2].copy(), x[..., 1:n_rot:2].copy()
        x[..., 0:n_rot:2], x[..., 1:n_rot:2] = a * cos - b * sin, a * sin + b * cos
    return x


def _gelu(x):
    return 0.5 * x * (1.0 + np.tanh(np.sqrt(2.0 / np.pi) * (x + 0.044715 * x ** 3)))


def reference_logits(model: Transformer, tokens, quantize_inputs: bool = False) -> np.ndarray:
    """Logits (n, n_vocab) of every position of one sequence, in float64.

    quantize_inputs rounds every matmul input as the kernels' activation quantizer does, which
    separates the error of 8-bit activations from everything else."""
    hp, tensors = model.hparams, model.gguf.tensors
    fused = model.fused_parts()  # e.g. phi3's attn_q.weight: rows of attn_qkv.weight

    def mul(x, name):
        if quantize_inputs:
            t = tensors[fused[name][0] if name in fused else name]
            x = quantize_act_ref(x.astype(np.float32), ACT_OF[t.type_name])
        return x @ weight(name).T

    def stored(name):
        t = tensors[name]
        w = dequantize(np.asarray(t.data), t.type_name, t.n_elements).astype(np.float64)
        return w.reshape(-1, int(t.shape[0])) if len(t.shape) > 1 else w

    def weight(name):
        if name in fused:
            whole, r0, r1 = fused[name]
            return stored(whole)[r0:r1]
        return stored(name)

    def opt(name):
        return weight(name) if name in tensors or name in fused else None

    def norm(x, name):
        w = opt(name)
        return x if w is None else _rmsnorm(x, w, hp.norm_eps)

    def glu(g, u):
        return (_gelu(g) if hp.ffn_act == FFN_GELU else g / (1.0 + np.exp(-g))) * u

    def routed(h, p):
        """Every expert of every token, then the top-k of the router's softmax weigh theirs."""
        r = mul(h, p + "ffn_gate_inp.weight")
        prob = np.exp(r - r.max(axis=1, keepdims=True))
        prob /= prob.sum(axis=1, keepdims=True)
        top = np.argsort(-prob, axis=1, kind="stable")[:, :hp.n_expert_used]
        w = np.take_along_axis(prob, top, axis=1)
        if hp.expert_norm:
            w /= w.sum(axis=1, keepdims=True)
        shape = (len(h), hp.n_expert, hp.n_ff_exp)
        a = glu(mul(h, p + "ffn_gate_exps.weight").reshape(shape), mul(h, p + "ffn_up_exps.weight").reshape(shape))
        down = tensors[p + "ffn_down_exps.weight"]
        if quantize_inputs:
            a = quantize_act_ref(a.reshape(-1, hp.n_ff_exp).astype(np.float32), ACT_OF[down.type_name]).reshape(shape)
        y = np.einsum("tef,edf->ted", a, weight(p + "ffn_down_exps.weight").reshape(hp.n_expert, hp.n_embd, -1))
        return np.einsum("tk,tkd->td", w, np.take_along_axis(y, top[:, :, None], axis=1))

    n = len(tokens)
    pos = np.arange(n)
    x = weight("token_embd.weight")[np.asarray(tokens)] * hp.embd_scale
    native = hp.native()
    for layer in range(hp.n_layer):
        lp, factors = model.layer_rope(layer)
        p = f"blk.{layer}."
        h = norm(x, p + "attn_norm.weight")
        q, k, v = (mul(h, p + f"attn_{s}.weight") for s in "qkv")
        for s, arr in (("q", q), ("k", k), ("v", v)):
            b = opt(p + f"attn_{s}.bias")
            if b is not None:
                arr += b
        if hp.qk_norm_whole:  # over all heads' rows at once
            q, k = norm(q, p + "attn_q_norm.weight"), norm(k, p + "attn_k_norm.weight")
        q = q.reshape(n, hp.n_head, hp.head_dim)
        k = k.reshape(n, hp.n_head_kv, hp.head_dim)
        v = v.reshape(n, hp.n_head_kv, hp.head_dim)
        if not hp.qk_norm_whole:
            q, k = norm(q, p + "attn_q_norm.weight"), norm(k, p + "attn_k_norm.weight")
        if lp.use_rope:
            q = _rope(q, pos, hp.n_rot, lp.rope_base, lp.rope_scale, hp.rope_neox, factors, lp.rope_mscale)
            k = _rope(k, pos, hp.n_rot, lp.rope_base, lp.rope_scale, hp.rope_neox, factors, lp.rope_mscale)
        group = hp.n_head // hp.n_head_kv
        k, v = np.repeat(k, group, axis=1), np.repeat(v, group, axis=1)
        scores = np.einsum("thd,shd->hts", q, k) * native["attn_scale"]
        if hp.attn_softcap:
            scores = hp.attn_softcap * np.tanh(scores / hp.attn_softcap)
        visible = pos[None, :] <= pos[:, None]
        if lp.window:
            visible &= pos[:, None] - pos[None, :] < lp.window
        scores = np.where(visible[None], scores, -np.inf)
        scores = np.exp(scores - scores.max(axis=-1, keepdims=True))
        scores /= scores.sum(axis=-1, keepdims=True)
        o = mul(np.einsum("hts,shd->thd", scores, v).reshape(n, -1), p + "attn_output.weight")
        x = x + hp.residual_scale * norm(o, p + "post_attention_norm.weight")
        h = norm(x, p + "ffn_norm.weight")
        if p + "ffn_gate_inp.weight" in tensors:
            o = routed(h, p)
            if p + "ffn_gate_shexp.weight" in tensors:  # Qwen2-MoE's shared expert
                shared = mul(glu(mul(h, p + "ffn_gate_shexp.weight"), mul(h, p + "ffn_up_shexp.weight")),
                             p + "ffn_down_shexp.weight")
                o = o + shared / (1.0 + np.exp(-h @ weight(p + "ffn_gate_inp_shexp.weight").reshape(-1, 1)))
        else:
            g, u = mul(h, p + "ffn_gate.weight"), mul(h, p + "ffn_up.weight")
            o = mul(glu(g, u), p + "ffn_down.weight")
        x = x + hp.residual_scale * norm(o, p + "post_ffw_norm.weight")
    x = _rmsnorm(x, weight("output_norm.weight"), hp.norm_eps)
    logits = mul(x, "output.weight" if "output.weight" in tensors else "token_embd.weight") / hp.logit_scale
    if hp.final_softcap:
        logits = hp.final_softcap * np.tanh(logits / hp.final_softcap)
    return logits
