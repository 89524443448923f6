#!/usr/bin/env python3
"""Makes the PyTorch parity fixtures of tests/test_parity.c.

    python3 tools/make_parity_fixture.py OUTDIR      (OUTDIR is normally tests/fixtures/parity)

Three small random models, one per family, each in its own directory OUTDIR/NAME:

  llama    llama3 rope scaling (old-style top-level rope_theta + rope_scaling), q/k/v/o
           biases (attention_bias), untied lm_head, F32 weights sharded into two files with
           model.safetensors.index.json
  qwen2    q/k/v biases, tied embeddings (no lm_head.weight), head_dim absent, BF16 weights
  mistral  explicit head_dim != hidden/heads, sliding window 4, new-style "rope_parameters",
           F16 weights

Each directory holds config.json, the weights, expected.json (sequences, log-probabilities,
entropies, the loss weights, AdamW results) and grads.safetensors (F32 gradient of the loss for
every parameter, Hugging Face names). OUTDIR/llama/score_expected.tsv is what
`gemc score --model OUTDIR/llama --ids ...` prints for the first llama sequence.

The reference values are computed in float64 from the weights exactly as stored (BF16/F16
values decoded back), by transformers when it is importable, else by the PyTorch "twin" below,
a self-contained re-implementation of transformers' modeling_llama / modeling_qwen2 /
modeling_mistral. When transformers is present the twin is run as well, with transformers'
float32 casts reproduced, and must agree with it to 1e-10: regenerating on a machine with
transformers validates the twin.

Needs torch (and numpy). No safetensors package: the files are read and written by hand.
"""

import json
import math
import os
import struct
import sys

try:
    import numpy as np
    import torch
    import torch.nn.functional as F
except ImportError:
    # `make fixtures` runs the python3 on PATH, which may lack torch where the system one has it
    # (Debian's python3-torch): go on there.
    for alt in ("/usr/bin/python3", "/usr/local/bin/python3"):
        if os.path.exists(alt) and os.path.realpath(alt) != os.path.realpath(sys.executable):
            print("note: no torch in %s; running under %s" % (sys.executable, alt), file=sys.stderr)
            os.execv(alt, [alt] + sys.argv)
    raise

SEED = 20240611
SEQ_LENS = (9, 17, 5)
ADAMW = dict(lr=1e-2, beta1=0.9, beta2=0.999, eps=1e-8, weight_decay=0.1, max_norm=1.0, steps=3)
TWIN_TOL = 1e-10
RISK = 3e-5  # see near_zero()
FLIP_TOL = 2e-5  # the most the final AdamW logprobs may move when near-zero gradients flip sign
MAX_SEED_TRIES = 1000

# ----------------------------------------------------------------------------------------------
# Model definitions


def llama_config():
    return {
        "architectures": ["LlamaForCausalLM"],
        "model_type": "llama",
        "vocab_size": 100,
        "hidden_size": 64,
        "intermediate_size": 160,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.02,
        "hidden_act": "silu",
        # old-style rope keys; original_max_position_embeddings 64 with head_dim 16 puts the
        # 8 frequencies in all three llama3 regimes (wavelengths 2*pi < 16, 32.3 in [16, 64],
        # the rest > 64)
        "rope_theta": 500000.0,
        "rope_scaling": {
            "rope_type": "llama3",
            "factor": 8.0,
            "low_freq_factor": 1.0,
            "high_freq_factor": 4.0,
            "original_max_position_embeddings": 64,
        },
        "attention_bias": True,
        "attention_dropout": 0.0,
        "mlp_bias": False,
        "pretraining_tp": 1,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": "float32",
    }


def qwen2_config():
    return {
        "architectures": ["Qwen2ForCausalLM"],
        "model_type": "qwen2",
        "vocab_size": 96,
        "hidden_size": 64,
        "intermediate_size": 128,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-6,
        "initializer_range": 0.02,
        "hidden_act": "silu",
        "rope_theta": 1000000.0,
        # as real Qwen2 configs: a window that is switched off
        "use_sliding_window": False,
        "sliding_window": 32768,
        "max_window_layers": 2,
        "attention_dropout": 0.0,
        "tie_word_embeddings": True,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "torch_dtype": "bfloat16",
    }


def mistral_config():
    return {
        "architectures": ["MistralForCausalLM"],
        "model_type": "mistral",
        "vocab_size": 80,
        "hidden_size": 48,
        "intermediate_size": 112,
        "num_hidden_layers": 2,
        "num_attention_heads": 4,
        "num_key_value_heads": 2,
        "head_dim": 16,
        "max_position_embeddings": 128,
        "rms_norm_eps": 1e-5,
        "initializer_range": 0.02,
        "hidden_act": "silu",
        # new-style rope keys (no top-level rope_theta)
        "rope_parameters": {"rope_type": "default", "rope_theta": 10000.0},
        "sliding_window": 4,
        "attention_dropout": 0.0,
        "tie_word_embeddings": False,
        "bos_token_id": 1,
        "eos_token_id": 2,
        "use_cache": True,
        "dtype": "float16",
    }


FIXTURES = [
    # name, config, storage dtype, shards
    ("llama", llama_config, "F32", 2),
    ("qwen2", qwen2_config, "BF16", 1),
    ("mistral", mistral_config, "F16", 1),
]


class Cfg:
    """The fields of a config.json the computation needs, resolved as transformers does."""

    def __init__(self, d):
        self.model_type = d["model_type"]
        self.V = d["vocab_size"]
        self.C = d["hidden_size"]
        self.I = d["intermediate_size"]
        self.L = d["num_hidden_layers"]
        self.Hq = d["num_attention_heads"]
        self.Hkv = d.get("num_key_value_heads") or self.Hq
        self.D = d.get("head_dim") or self.C // self.Hq
        self.eps = d["rms_norm_eps"]
        self.tied = bool(d.get("tie_word_embeddings", False))
        if self.model_type == "qwen2":
            self.qkv_bias, self.o_bias = True, False
        elif self.model_type == "llama":
            self.qkv_bias = self.o_bias = bool(d.get("attention_bias", False))
        else:
            self.qkv_bias = self.o_bias = False
        if self.model_type == "mistral":
            self.window = d.get("sliding_window") or 0
        elif self.model_type == "qwen2" and d.get("use_sliding_window"):
            raise ValueError("qwen2 sliding window is not modelled here")
        else:
            self.window = 0
        rp = d.get("rope_parameters")
        if rp is None:
            rp = dict(d.get("rope_scaling") or {})
            rp["rope_theta"] = d.get("rope_theta", 10000.0)
        self.rope = dict(rp)
        self.rope_type = rp.get("rope_type", rp.get("type", "default"))


def param_shapes(cfg):
    """Hugging Face name -> shape, in the order of a transformers state dict."""
    Q, KV = cfg.Hq * cfg.D, cfg.Hkv * cfg.D
    shapes = {"model.embed_tokens.weight": (cfg.V, cfg.C)}
    for l in range(cfg.L):
        p = "model.layers.%d." % l
        shapes[p + "self_attn.q_proj.weight"] = (Q, cfg.C)
        if cfg.qkv_bias:
            shapes[p + "self_attn.q_proj.bias"] = (Q,)
        shapes[p + "self_attn.k_proj.weight"] = (KV, cfg.C)
        if cfg.qkv_bias:
            shapes[p + "self_attn.k_proj.bias"] = (KV,)
        shapes[p + "self_attn.v_proj.weight"] = (KV, cfg.C)
        if cfg.qkv_bias:
            shapes[p + "self_attn.v_proj.bias"] = (KV,)
        shapes[p + "self_attn.o_proj.weight"] = (cfg.C, Q)
        if cfg.o_bias:
            shapes[p + "self_attn.o_proj.bias"] = (cfg.C,)
        shapes[p + "mlp.gate_proj.weight"] = (cfg.I, cfg.C)
        shapes[p + "mlp.up_proj.weight"] = (cfg.I, cfg.C)
        shapes[p + "mlp.down_proj.weight"] = (cfg.C, cfg.I)
        shapes[p + "input_layernorm.weight"] = (cfg.C,)
        shapes[p + "post_attention_layernorm.weight"] = (cfg.C,)
    shapes["model.norm.weight"] = (cfg.C,)
    if not cfg.tied:
        shapes["lm_head.weight"] = (cfg.V, cfg.C)
    return shapes


def random_weights(cfg, rng):
    """float64 numpy arrays. Matrices ~ N(0, 1.2/sqrt(fan_in)) (0.1 .. 0.17 here), embeddings
    and lm_head N(0, 0.25), norms 1 + N(0, 0.1), biases N(0, 0.2): logits far from flat."""
    out = {}
    for name, shape in param_shapes(cfg).items():
        if name.endswith("norm.weight"):
            w = 1.0 + 0.1 * rng.standard_normal(shape)
        elif name.endswith(".bias"):
            w = 0.2 * rng.standard_normal(shape)
        elif name in ("model.embed_tokens.weight", "lm_head.weight"):
            w = 0.25 * rng.standard_normal(shape)
        else:
            w = (1.2 / math.sqrt(shape[1])) * rng.standard_normal(shape)
        out[name] = w
    return out


# ----------------------------------------------------------------------------------------------
# safetensors by hand

DTYPE_SIZE = {"F32": 4, "BF16": 2, "F16": 2}


def encode(arr, dtype):
    """float64 array -> little-endian bytes of `dtype` (round to nearest even)."""
    f32 = np.ascontiguousarray(arr, dtype=np.float64).astype("<f4")
    if dtype == "F32":
        return f32.tobytes()
    if dtype == "F16":
        return f32.astype("<f2").tobytes()
    if dtype == "BF16":
        u = f32.view("<u4").astype(np.uint64)
        r = (u + 0x7FFF + ((u >> 16) & 1)) >> 16
        return r.astype("<u2").tobytes()
    raise ValueError(dtype)


def decode(buf, dtype, shape):
    """little-endian bytes -> float64 array."""
    if dtype == "F32":
        a = np.frombuffer(buf, dtype="<f4")
    elif dtype == "F16":
        a = np.frombuffer(buf, dtype="<f2")
    elif dtype == "BF16":
        a = (np.frombuffer(buf, dtype="<u2").astype("<u4") << 16).view("<f4")
    else:
        raise ValueError(dtype)
    return a.astype(np.float64).reshape(shape)


def st_write(path, tensors, dtype):
    """tensors: list of (name, float64 array). Returns {name: stored bytes}."""
    header, blobs, off = {}, [], 0
    stored = {}
    for name, arr in tensors:
        b = encode(arr, dtype)
        header[name] = {"dtype": dtype, "shape": list(arr.shape), "data_offsets": [off, off + len(b)]}
        blobs.append(b)
        stored[name] = b
        off += len(b)
    header["__metadata__"] = {"format": "pt"}
    h = json.dumps(header, separators=(",", ":")).encode()
    h += b" " * (-len(h) % 8)
    with open(path, "wb") as f:
        f.write(struct.pack("<Q", len(h)))
        f.write(h)
        for b in blobs:
            f.write(b)
    return stored


def st_read(path):
    """{name: float64 array}"""
    with open(path, "rb") as f:
        data = f.read()
    (n,) = struct.unpack("<Q", data[:8])
    header = json.loads(data[8 : 8 + n])
    base = 8 + n
    out = {}
    for name, t in header.items():
        if name == "__metadata__":
            continue
        a, b = t["data_offsets"]
        out[name] = decode(data[base + a : base + b], t["dtype"], tuple(t["shape"]))
    return out


def save_weights(d, cfg, weights, dtype, shards):
    names = list(param_shapes(cfg))
    if shards == 1:
        st_write(os.path.join(d, "model.safetensors"), [(n, weights[n]) for n in names], dtype)
        return
    # shard boundary: the embedding and the first layer in shard 1, the rest in shard 2
    first = [n for n in names if n == "model.embed_tokens.weight" or n.startswith("model.layers.0.")]
    groups = [first, [n for n in names if n not in first]]
    weight_map, total = {}, 0
    for i, group in enumerate(groups):
        fname = "model-%05d-of-%05d.safetensors" % (i + 1, len(groups))
        st_write(os.path.join(d, fname), [(n, weights[n]) for n in group], dtype)
        for n in group:
            weight_map[n] = fname
            total += weights[n].size * DTYPE_SIZE[dtype]
    index = {"metadata": {"total_size": total}, "weight_map": weight_map}
    with open(os.path.join(d, "model.safetensors.index.json"), "w") as f:
        json.dump(index, f, indent=2)
        f.write("\n")


def load_weights(d):
    """Everything the model directory stores, decoded to float64."""
    idx = os.path.join(d, "model.safetensors.index.json")
    if os.path.exists(idx):
        with open(idx) as f:
            files = sorted(set(json.load(f)["weight_map"].values()))
    else:
        files = ["model.safetensors"]
    out = {}
    for fn in files:
        out.update(st_read(os.path.join(d, fn)))
    return out


# ----------------------------------------------------------------------------------------------
# The twin: transformers' Llama / Qwen2 / Mistral decoder, written against the modeling files'
# semantics. `hf32` reproduces the float32 casts transformers makes inside a float64 model
# (RMSNorm, rotary cos/sin, eager attention softmax, and logits in old versions); the fixture
# values themselves are computed without them, i.e. in float64 throughout.


def rope_inv_freq(cfg):
    """inv_freq as transformers computes it: a float32 tensor, with rope scaling applied."""
    base = float(cfg.rope["rope_theta"])
    dim = cfg.D
    inv_freq = 1.0 / (base ** (torch.arange(0, dim, 2, dtype=torch.int64).float() / dim))
    t = cfg.rope_type
    if t == "default":
        return inv_freq
    if t == "linear":
        return inv_freq / float(cfg.rope["factor"])
    if t == "llama3":
        factor = float(cfg.rope["factor"])
        low_freq_factor = float(cfg.rope["low_freq_factor"])
        high_freq_factor = float(cfg.rope["high_freq_factor"])
        old_context_len = float(cfg.rope["original_max_position_embeddings"])
        low_freq_wavelen = old_context_len / low_freq_factor
        high_freq_wavelen = old_context_len / high_freq_factor
        wavelen = 2 * math.pi / inv_freq
        # wavelen < high_freq_wavelen: unchanged; wavelen > low_freq_wavelen: divided by factor
        inv_freq_llama = torch.where(wavelen > low_freq_wavelen, inv_freq / factor, inv_freq)
        # in between: a blend of the two
        smooth_factor = (old_context_len / wavelen - low_freq_factor) / (high_freq_factor - low_freq_factor)
        smoothed = (1 - smooth_factor) * inv_freq_llama / factor + smooth_factor * inv_freq_llama
        is_medium = ~(wavelen < high_freq_wavelen) * ~(wavelen > low_freq_wavelen)
        return torch.where(is_medium, smoothed, inv_freq_llama)
    raise ValueError("rope_type %s not modelled" % t)


def llama3_regimes(cfg):
    base = float(cfg.rope["rope_theta"])
    f = 1.0 / (base ** (torch.arange(0, cfg.D, 2, dtype=torch.int64).float() / cfg.D))
    wl = 2 * math.pi / f
    old = cfg.rope["original_max_position_embeddings"]
    lo, hi = old / cfg.rope["low_freq_factor"], old / cfg.rope["high_freq_factor"]
    return ["high" if w < hi else "low" if w > lo else "medium" for w in wl.tolist()]


def rotary_cos_sin(cfg, T, hf32, dtype=torch.float64):
    inv_freq = rope_inv_freq(cfg)  # float32
    if hf32:
        pos = torch.arange(T, dtype=torch.int64).float()
        freqs = (inv_freq[:, None] @ pos[None, :]).transpose(0, 1)  # [T, D/2], float32
        emb = torch.cat((freqs, freqs), dim=-1)
        return emb.cos().double(), emb.sin().double()
    pos = torch.arange(T, dtype=dtype)
    freqs = pos[:, None] * inv_freq.to(dtype)[None, :]
    emb = torch.cat((freqs, freqs), dim=-1)
    return emb.cos(), emb.sin()


def rotate_half(x):
    h = x.shape[-1] // 2
    return torch.cat((-x[..., h:], x[..., :h]), dim=-1)


def rms_norm(x, w, eps, hf32):
    if hf32:
        h = x.float()
        h = h * torch.rsqrt(h.pow(2).mean(-1, keepdim=True) + eps)
        return w * h.to(x.dtype)
    return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + eps))


def twin_logits(cfg, P, ids, hf32=False):
    """P: HF name -> float64 tensor; ids: int64 [T]. Returns float64 logits [T, V]."""
    T, D = ids.shape[0], cfg.D
    x = F.embedding(ids, P["model.embed_tokens.weight"])
    cos, sin = rotary_cos_sin(cfg, T, hf32, x.dtype)
    i = torch.arange(T)[:, None]
    j = torch.arange(T)[None, :]
    allowed = j <= i
    if cfg.window:
        allowed = allowed & (i - j < cfg.window)  # i - W < j <= i
    rep = cfg.Hq // cfg.Hkv
    for l in range(cfg.L):
        p = "model.layers.%d." % l
        h = rms_norm(x, P[p + "input_layernorm.weight"], cfg.eps, hf32)
        q = F.linear(h, P[p + "self_attn.q_proj.weight"], P.get(p + "self_attn.q_proj.bias"))
        k = F.linear(h, P[p + "self_attn.k_proj.weight"], P.get(p + "self_attn.k_proj.bias"))
        v = F.linear(h, P[p + "self_attn.v_proj.weight"], P.get(p + "self_attn.v_proj.bias"))
        q = q.view(T, cfg.Hq, D).transpose(0, 1)  # [Hq, T, D]
        k = k.view(T, cfg.Hkv, D).transpose(0, 1)  # [Hkv, T, D]
        v = v.view(T, cfg.Hkv, D).transpose(0, 1)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        # repeat_kv: query head h reads kv head h // rep
        k = k[:, None].expand(cfg.Hkv, rep, T, D).reshape(cfg.Hq, T, D)
        v = v[:, None].expand(cfg.Hkv, rep, T, D).reshape(cfg.Hq, T, D)
        s = torch.matmul(q, k.transpose(1, 2)) * (D**-0.5)
        s = s.masked_fill(~allowed, float("-inf"))
        if hf32:
            a = torch.softmax(s, dim=-1, dtype=torch.float32).to(s.dtype)
        else:
            a = torch.softmax(s, dim=-1)
        o = torch.matmul(a, v).transpose(0, 1).reshape(T, cfg.Hq * D)
        x = x + F.linear(o, P[p + "self_attn.o_proj.weight"], P.get(p + "self_attn.o_proj.bias"))
        h = rms_norm(x, P[p + "post_attention_layernorm.weight"], cfg.eps, hf32)
        g = F.linear(h, P[p + "mlp.gate_proj.weight"])
        u = F.linear(h, P[p + "mlp.up_proj.weight"])
        x = x + F.linear(F.silu(g) * u, P[p + "mlp.down_proj.weight"])
    x = rms_norm(x, P["model.norm.weight"], cfg.eps, hf32)
    head = P["model.embed_tokens.weight"] if cfg.tied else P["lm_head.weight"]
    logits = F.linear(x, head)
    if hf32 == "logits":
        logits = logits.float().double()
    return logits


# ----------------------------------------------------------------------------------------------
# The measurements, for any model given as (named leaf parameters, ids -> logits)


def near_zero(g, v):
    """Gradient elements that fp32 noise could turn into a different AdamW update: those whose
    gradients so far are all tiny next to the tensor's RMS. Adam's update m/sqrt(v) is then
    ruled by the noise (at the first step it is lr * sign(g)). v: the running mean of g^2,
    bias-corrected, as Adam keeps it. Exact zeros (rows of unused tokens) stay zero in fp32."""
    return (v > 0) & (v.sqrt() < RISK * g.pow(2).mean().sqrt())


def measure(params, logits_fn, seqs, wts, flip_near_zero=False):
    """params: list of (name, leaf tensor). Mutates the parameters (AdamW). With flip_near_zero,
    the AdamW steps negate the near-zero gradient elements (the robustness check)."""
    names = [n for n, _ in params]
    tensors = [t for _, t in params]

    def forward():
        lps, ents, loss = [], [], 0.0
        for s, w in zip(seqs, wts):
            logp = torch.log_softmax(logits_fn(s).double(), dim=-1)
            lp = logp[:-1].gather(1, s[1:, None])[:, 0]
            ent = -(logp.exp() * logp).sum(-1)
            lps.append(lp)
            ents.append(ent)
            loss = loss + (w * lp).sum()
        return lps, ents, loss

    for t in tensors:
        t.grad = None
    lps, ents, loss = forward()
    loss.backward()
    out = {
        "logprobs": [x.detach().clone() for x in lps],
        "entropies": [x.detach().clone() for x in ents],
        "grads": {n: t.grad.detach().clone() for n, t in params},
    }
    groups = [
        {"params": [t for t in tensors if t.dim() == 2], "weight_decay": ADAMW["weight_decay"]},
        {"params": [t for t in tensors if t.dim() != 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(
        groups, lr=ADAMW["lr"], betas=(ADAMW["beta1"], ADAMW["beta2"]), eps=ADAMW["eps"]
    )
    norms, at_risk = [], []
    vs = [torch.zeros_like(t) for t in tensors]
    for step in range(1, ADAMW["steps"] + 1):
        opt.zero_grad(set_to_none=True)
        _, _, loss = forward()
        loss.backward()
        norm = torch.nn.utils.clip_grad_norm_(tensors, max_norm=ADAMW["max_norm"])
        norms.append(float(norm))
        n_risk = 0
        for t, v in zip(tensors, vs):
            v.mul_(ADAMW["beta2"]).add_((1 - ADAMW["beta2"]) * t.grad.detach() ** 2)
            m = near_zero(t.grad, v / (1 - ADAMW["beta2"] ** step))
            n_risk += int(m.sum())
            if flip_near_zero:
                t.grad[m] = -t.grad[m]
        at_risk.append(n_risk)
        opt.step()
    with torch.no_grad():
        lps_after, _, _ = forward()
    out["adamw_grad_norms"] = norms
    out["adamw_logprobs"] = [x.detach().clone() for x in lps_after]
    out["adamw_at_risk"] = at_risk
    out["names"] = names
    return out


def run_twin(cfg, weights, seqs, wts, hf32=False, dtype=torch.float64, flip_near_zero=False):
    params = [(n, torch.tensor(weights[n], dtype=dtype, requires_grad=True)) for n in param_shapes(cfg)]
    P = dict(params)
    return measure(params, lambda ids: twin_logits(cfg, P, ids, hf32), seqs, [w.to(dtype) for w in wts], flip_near_zero)


def run_transformers(transformers, raw_cfg, cfg, weights, seqs, wts):
    classes = {
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "mistral": ("MistralConfig", "MistralForCausalLM"),
    }[cfg.model_type]
    config_cls = getattr(transformers, classes[0])
    model_cls = getattr(transformers, classes[1])
    d = {k: v for k, v in raw_cfg.items() if k not in ("architectures", "model_type", "dtype", "torch_dtype")}
    config = config_cls(**d)
    try:
        config._attn_implementation = "eager"
    except Exception:
        pass
    torch.manual_seed(0)
    model = model_cls(config).to(torch.float64)
    model.eval()
    sd = {n: torch.tensor(w, dtype=torch.float64) for n, w in weights.items()}
    missing, unexpected = model.load_state_dict(sd, strict=False)
    missing = [m for m in missing if "rotary" not in m and not (cfg.tied and m == "lm_head.weight")]
    if missing or unexpected:
        raise RuntimeError("transformers state dict mismatch: missing %s, unexpected %s" % (missing, unexpected))
    if cfg.tied and model.lm_head.weight.data_ptr() != model.model.embed_tokens.weight.data_ptr():
        model.tie_weights()
    params = list(model.named_parameters())
    if sorted(n for n, _ in params) != sorted(param_shapes(cfg)):
        raise RuntimeError("transformers parameters differ: %s" % [n for n, _ in params])
    logits_dtype = []

    def logits_fn(ids):
        out = model(input_ids=ids[None], use_cache=False).logits[0]
        logits_dtype.append(out.dtype)
        return out

    res = measure(params, logits_fn, seqs, wts)
    res["logits_fp32"] = logits_dtype[0] == torch.float32
    return res


def max_rel_diff(a, b):
    """max |a - b| / max(1, max |b|)"""
    if isinstance(a, dict):
        return max(max_rel_diff(a[k], b[k]) for k in b)
    if isinstance(a, (list, tuple)):
        return max(max_rel_diff(x, y) for x, y in zip(a, b))
    a = torch.as_tensor(a, dtype=torch.float64)
    b = torch.as_tensor(b, dtype=torch.float64)
    return float((a - b).abs().max() / max(1.0, float(b.abs().max())))


def compare(r_hf, r_twin):
    return max(
        max_rel_diff(r_twin[k], r_hf[k])
        for k in ("logprobs", "entropies", "grads", "adamw_grad_norms", "adamw_logprobs")
    )


# ----------------------------------------------------------------------------------------------


def fl(x):
    """float64 tensor -> list of Python floats (repr round-trips exactly)."""
    return [float(v) for v in x.reshape(-1).tolist()]


def draw(cfg, dtype, seed):
    """Weights (float64 values of `dtype`), token sequences and loss weights of one seed."""
    rng = np.random.default_rng(seed)
    weights = random_weights(cfg, rng)
    stored = {n: decode(encode(w, dtype), dtype, w.shape) for n, w in weights.items()}
    seqs = [rng.integers(0, cfg.V, size=n) for n in SEQ_LENS]
    # loss weights, rounded to float32 so that gemc's fp32 copy is the same number
    wts = [rng.standard_normal(n - 1).astype(np.float32).astype(np.float64) for n in SEQ_LENS]
    return stored, seqs, wts


def max_abs_diff(a, b):
    return max(float((x.double() - torch.as_tensor(y, dtype=torch.float64)).abs().max()) for x, y in zip(a, b))


def make_fixture(outdir, name, make_cfg, dtype, shards, fixture_seed, transformers):
    raw = make_cfg()
    cfg = Cfg(raw)
    d = os.path.join(outdir, name)
    os.makedirs(d, exist_ok=True)
    for old in os.listdir(d):
        if old.endswith(".safetensors") or old.endswith(".json") or old.endswith(".tsv"):
            os.remove(os.path.join(d, old))
    with open(os.path.join(d, "config.json"), "w") as f:
        json.dump(raw, f, indent=2)
        f.write("\n")

    # The fixture's random draw. Seeds are tried in turn until the AdamW results are robust: a
    # gradient element near zero by chance could change sign under fp32 noise, and Adam's first
    # step would then move that parameter by 2*lr instead of 0, a difference the final logprobs
    # show well above the test's tolerance. Near-zero elements that do not matter (k-bias
    # components along rotary frequencies too slow to turn within the sequences) are fine.
    for attempt in range(MAX_SEED_TRIES):
        seed = fixture_seed + 1000 * attempt
        stored, seqs_np, wts_np = draw(cfg, dtype, seed)
        seqs = [torch.tensor(s, dtype=torch.int64) for s in seqs_np]
        wts = [torch.tensor(w, dtype=torch.float64) for w in wts_np]
        plain = run_twin(cfg, stored, seqs, wts)
        flipped = run_twin(cfg, stored, seqs, wts, flip_near_zero=True)
        moved = max_abs_diff(flipped["adamw_logprobs"], plain["adamw_logprobs"])
        if moved <= FLIP_TOL:
            break
        print("  %s: seed %d rejected (near-zero gradients move the AdamW logprobs by %.2g)" % (name, seed, moved))
    else:
        raise SystemExit("error: no robust seed for %s in %d tries" % (name, MAX_SEED_TRIES))

    rng = np.random.default_rng(seed)
    save_weights(d, cfg, random_weights(cfg, rng), dtype, shards)
    weights = load_weights(d)  # the values as stored: the reference starts from these
    assert sorted(weights) == sorted(param_shapes(cfg))
    assert all(np.array_equal(weights[n], stored[n]) for n in weights)

    if transformers is not None:
        source = "transformers " + transformers.__version__
        ref = run_transformers(transformers, raw, cfg, weights, seqs, wts)
        hf32 = "logits" if ref["logits_fp32"] else True
        twin = run_twin(cfg, weights, seqs, wts, hf32=hf32)
        diff = compare(ref, twin)
        print("  %s: twin (with transformers' fp32 casts) vs transformers: max rel diff %.3g" % (name, diff))
        if not diff <= TWIN_TOL:
            raise SystemExit("error: the twin disagrees with transformers on %s (%.3g > %g)" % (name, diff, TWIN_TOL))
        pure = run_twin(cfg, weights, seqs, wts)
        print("  %s: pure float64 twin vs transformers: max rel diff %.3g" % (name, compare(ref, pure)))
    else:
        source = "pytorch-twin torch " + torch.__version__
        ref = run_twin(cfg, weights, seqs, wts)

    # what fp32 arithmetic costs: the twin in float32 against the reference, i.e. about the
    # errors gemc should show
    r32 = run_twin(cfg, weights, seqs, wts, dtype=torch.float32)
    g32 = max(
        float((r32["grads"][n].double() - ref["grads"][n]).norm() / ref["grads"][n].norm())
        for n in param_shapes(cfg)
    )
    print(
        "  %s: float32 twin vs reference: logprobs %.2g, entropies %.2g, grads (rel) %.2g, "
        "AdamW grad norms (rel) %.2g, AdamW logprobs %.2g"
        % (
            name,
            max_abs_diff(r32["logprobs"], ref["logprobs"]),
            max_abs_diff(r32["entropies"], ref["entropies"]),
            g32,
            max(abs(a / b - 1) for a, b in zip(r32["adamw_grad_norms"], ref["adamw_grad_norms"])),
            max_abs_diff(r32["adamw_logprobs"], ref["adamw_logprobs"]),
        )
    )

    grads = ref["grads"]
    st_write(
        os.path.join(d, "grads.safetensors"),
        [(n, grads[n].numpy()) for n in param_shapes(cfg)],
        "F32",
    )
    expected = {
        "source": source,
        "model_type": cfg.model_type,
        "weights_dtype": dtype,
        "seed": seed,
        "note": "float64 reference from the stored weights; logprobs[b][p] = ln p(ids[p+1] | ids[..p]), "
        "entropies[b][p] in nats for every position; loss L = sum_b sum_p dlogprobs[b][p] * logprobs[b][p]; "
        "grads.safetensors = dL/dparams (F32); adamw: %d steps of (grad of L, clip_grad_norm_(max_norm), "
        "AdamW with weight decay on 2-D params only), grad_norms before clipping, logprobs after the steps"
        % ADAMW["steps"],
        "sequences": [[int(t) for t in s] for s in seqs_np],
        "logprobs": [fl(x) for x in ref["logprobs"]],
        "entropies": [fl(x) for x in ref["entropies"]],
        "dlogprobs": [fl(torch.tensor(w)) for w in wts_np],
        "adamw": {
            "lr": ADAMW["lr"],
            "beta1": ADAMW["beta1"],
            "beta2": ADAMW["beta2"],
            "eps": ADAMW["eps"],
            "weight_decay": ADAMW["weight_decay"],
            "max_norm": ADAMW["max_norm"],
            "steps": ADAMW["steps"],
            "grad_norms": ref["adamw_grad_norms"],
            "logprobs": [fl(x) for x in ref["adamw_logprobs"]],
        },
    }
    with open(os.path.join(d, "expected.json"), "w") as f:
        json.dump(expected, f, indent=1)
        f.write("\n")

    if name == "llama":
        s, lp, ent = seqs_np[0], ref["logprobs"][0], ref["entropies"][0]
        with open(os.path.join(d, "score_expected.tsv"), "w") as f:
            for p in range(len(s) - 1):
                f.write("%d\t%d\t%.6f\t%.6f\n" % (p, int(s[p + 1]), float(lp[p]), float(ent[p])))

    lp_all = torch.cat(ref["logprobs"])
    ent_all = torch.cat(ref["entropies"])
    size = sum(os.path.getsize(os.path.join(d, f)) for f in os.listdir(d))
    print(
        "  %s: %s, %d params, logprobs in [%.2f, %.2f], entropy in [%.2f, %.2f] (max %.2f), "
        "grad norms %s, near-zero grads per AdamW step %s, %d bytes"
        % (
            name,
            dtype,
            sum(w.size for w in weights.values()),
            float(lp_all.min()),
            float(lp_all.max()),
            float(ent_all.min()),
            float(ent_all.max()),
            math.log(cfg.V),
            ["%.3f" % x for x in ref["adamw_grad_norms"]],
            ref["adamw_at_risk"],
            size,
        )
    )
    if cfg.rope_type == "llama3":
        print("  %s: llama3 rope regimes per frequency: %s" % (name, " ".join(llama3_regimes(cfg))))
    return source


def main():
    if len(sys.argv) != 2:
        print("usage: %s OUTDIR" % sys.argv[0], file=sys.stderr)
        return 2
    outdir = sys.argv[1]
    torch.set_num_threads(1)  # reproducible reductions
    try:
        import transformers  # noqa: F401
    except ImportError:
        transformers = None
        print(
            "note: transformers is not importable; the reference values come from the PyTorch twin "
            "of its modeling code (torch %s), in float64" % torch.__version__
        )
    os.makedirs(outdir, exist_ok=True)
    for k, (name, make_cfg, dtype, shards) in enumerate(FIXTURES):
        make_fixture(outdir, name, make_cfg, dtype, shards, SEED + k, transformers)
    print("wrote %s" % outdir)
    return 0


if __name__ == "__main__":
    sys.exit(main())
