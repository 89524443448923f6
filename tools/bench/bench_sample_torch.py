#!/usr/bin/env python3
"""PyTorch twin of build/bench_sample: the same sampling work in float32 on the CPU, timed the
same way.

    python3 tools/bench/bench_sample_torch.py --config FILE [--prompts B] [--prompt-len P]
        [--k K] [--new T] [--runs R] [--seed S] [--peak G] [--threads N]

The model is a compact Llama-family decoder with a KV cache written here (transformers is not
needed; rope, rms_norm, grouped-query attention, q/k/v/o biases, tied or untied head and the
sliding window follow the twin of tools/make_parity_fixture.py, whose config resolution and
rope frequencies it imports). Weights are random like gemc's (matrices ~ N(0,
initializer_range), norms 1, biases 0); the B prompts are P random token ids each.

One run, under torch.inference_mode():
  prefill  the B prompts as one [B, P] batch (causal attention), keeping each layer's keys
           (after rope) and values; the logits of each prompt's last position only; then each
           prompt's keys and values copied to its K candidates' rows of a preallocated
           [B*K, Hkv, P+T, D] cache, and the first token of every candidate drawn;
  decode   T-1 steps of batch B*K: one new token per row, its key and value written into the
           cache, attention over the row's P + j keys, the logits [B*K, V].
Every draw computes log_softmax, the entropy of the distribution (as gemc records it, in nats),
torch.multinomial on the probabilities and the drawn token's log-prob. No stop ids: every
candidate gets exactly T tokens. One untimed warm-up run, then R timed ones; printed from the
medians: generated tokens/s = B*K*T / run time, prefill ms, decode ms/step = (run - prefill) /
(T-1), achieved GFLOP/s with bench_sample.c's FLOP count, and the % of --peak G. The last line
is "RESULT key=value ...", read by tools/bench/run_sample.sh. This is a benchmark: no
assertions.
"""

import argparse
import json
import os
import statistics
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # importing the fixture tool leaves no __pycache__ in tools/
sys.path.insert(0, os.path.join(HERE, ".."))

# config resolution and rope; where the python3 on PATH lacks torch, importing it re-runs this
# script under the system python3 that has it (Debian's python3-torch)
import make_parity_fixture as mpf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def layer_params(cfg):
    """Non-embedding parameters (norm weights and biases included), as bench_sample.c."""
    total = 0
    for name, shape in mpf.param_shapes(cfg).items():
        if name in ("model.embed_tokens.weight", "lm_head.weight"):
            continue
        n = 1
        for s in shape:
            n *= s
        total += n
    return total


def run_flops(cfg, B, P, K, T):
    """Model FLOPs of one run, counted as bench_sample.c does (see its comment): prefill B*P
    positions at 2*P_layers + causal attention + the head on B rows; decode B*K*(T-1) positions
    at 2*P_layers + 2*V*C + 4*L*Hq*D*(P+j) for step j."""
    lp, head = float(layer_params(cfg)), 2.0 * cfg.V * cfg.C
    att = 4.0 * cfg.L * cfg.Hq * cfg.D
    prefill = B * (P * 2.0 * lp + att * P * (P + 1.0) / 2.0 + head)
    steps = T - 1.0
    keys = steps * P + steps * (steps + 1.0) / 2.0
    decode = B * K * (steps * (2.0 * lp + head) + att * keys)
    return prefill + decode


def init_weights(cfg, std):
    P = {}
    for name, shape in mpf.param_shapes(cfg).items():
        t = torch.empty(shape, dtype=torch.float32)
        if name.endswith("norm.weight"):
            t.fill_(1.0)
        elif t.dim() == 1:
            t.zero_()
        else:
            t.normal_(0.0, std)
        P[name] = t
    return P


class KVTwin:
    """A Llama-family decoder in float32 with a preallocated KV cache."""

    def __init__(self, cfg, P, max_len):
        self.cfg, self.P = cfg, P
        self.rep = cfg.Hq // cfg.Hkv
        inv_freq = mpf.rope_inv_freq(cfg)  # float32, rope scaling applied
        freqs = torch.arange(max_len, dtype=torch.float32)[:, None] * inv_freq[None, :]
        emb = torch.cat((freqs, freqs), dim=-1)
        self.cos, self.sin = emb.cos(), emb.sin()  # [max_len, D]
        self.head = P["model.embed_tokens.weight"] if cfg.tied else P["lm_head.weight"]
        self.kc = self.vc = None

    def _norm(self, x, w):
        return w * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + self.cfg.eps))

    def _qkv(self, l, h, n, t, cos, sin):
        """h [n, t, C] -> q [n, Hq, t, D], k and v [n, Hkv, t, D], rope applied to q and k."""
        cfg, P, p = self.cfg, self.P, "model.layers.%d.self_attn." % l
        q = F.linear(h, P[p + "q_proj.weight"], P.get(p + "q_proj.bias"))
        k = F.linear(h, P[p + "k_proj.weight"], P.get(p + "k_proj.bias"))
        v = F.linear(h, P[p + "v_proj.weight"], P.get(p + "v_proj.bias"))
        q = q.view(n, t, cfg.Hq, cfg.D).transpose(1, 2)
        k = k.view(n, t, cfg.Hkv, cfg.D).transpose(1, 2)
        v = v.view(n, t, cfg.Hkv, cfg.D).transpose(1, 2)
        q = q * cos + mpf.rotate_half(q) * sin
        k = k * cos + mpf.rotate_half(k) * sin
        return q, k, v

    def _attend(self, q, k, v, mask):
        """q [n, Hq, t, D] over k, v [n, Hkv, s, D] (query head h reads kv head h // rep,
        without copying the keys); mask [t, s] of allowed keys or None. -> [n, t, Hq*D]."""
        cfg = self.cfg
        n, t, s = q.shape[0], q.shape[2], k.shape[2]
        qg = q.reshape(n, cfg.Hkv, self.rep * t, cfg.D)  # heads of a group stacked along t
        w = torch.matmul(qg, k.transpose(2, 3)) * (cfg.D**-0.5)  # [n, Hkv, rep*t, s]
        if mask is not None:
            w = w.view(n, cfg.Hkv, self.rep, t, s).masked_fill(~mask, float("-inf"))
            w = w.view(n, cfg.Hkv, self.rep * t, s)
        a = torch.softmax(w, dim=-1)
        o = torch.matmul(a, v).view(n, cfg.Hq, t, cfg.D)
        return o.transpose(1, 2).reshape(n, t, cfg.Hq * cfg.D)

    def _block_end(self, l, x, o):
        P, p = self.P, "model.layers.%d." % l
        x = x + F.linear(o, P[p + "self_attn.o_proj.weight"], P.get(p + "self_attn.o_proj.bias"))
        h = self._norm(x, P[p + "post_attention_layernorm.weight"])
        g = F.linear(h, P[p + "mlp.gate_proj.weight"])
        u = F.linear(h, P[p + "mlp.up_proj.weight"])
        return x + F.linear(F.silu(g) * u, P[p + "mlp.down_proj.weight"])

    def prefill(self, ids, K, T):
        """ids [B, P] -> logits [B, V] of the last positions; the cache of B*K rows."""
        cfg, P = self.cfg, self.P
        B, Pl = ids.shape
        i = torch.arange(Pl)[:, None]
        j = torch.arange(Pl)[None, :]
        mask = j <= i
        if cfg.window:
            mask = mask & (i - j < cfg.window)
        cos, sin = self.cos[:Pl], self.sin[:Pl]
        x = F.embedding(ids, P["model.embed_tokens.weight"])
        self.kc, self.vc = [], []
        for l in range(cfg.L):
            h = self._norm(x, P["model.layers.%d.input_layernorm.weight" % l])
            q, k, v = self._qkv(l, h, B, Pl, cos, sin)
            kc = torch.empty(B * K, cfg.Hkv, Pl + T, cfg.D)
            vc = torch.empty(B * K, cfg.Hkv, Pl + T, cfg.D)
            kc[:, :, :Pl] = k.repeat_interleave(K, dim=0)  # each prompt's K candidates
            vc[:, :, :Pl] = v.repeat_interleave(K, dim=0)
            self.kc.append(kc)
            self.vc.append(vc)
            x = self._block_end(l, x, self._attend(q, k, v, mask))
        x = self._norm(x[:, -1], P["model.norm.weight"])
        return F.linear(x, self.head)

    def step(self, tokens, pos):
        """tokens [n] at position pos (the same for every row) -> logits [n, V]."""
        cfg, P = self.cfg, self.P
        n = tokens.shape[0]
        cos, sin = self.cos[pos : pos + 1], self.sin[pos : pos + 1]
        first = max(0, pos + 1 - cfg.window) if cfg.window else 0
        x = F.embedding(tokens[:, None], P["model.embed_tokens.weight"])  # [n, 1, C]
        for l in range(cfg.L):
            h = self._norm(x, P["model.layers.%d.input_layernorm.weight" % l])
            q, k, v = self._qkv(l, h, n, 1, cos, sin)
            self.kc[l][:, :, pos : pos + 1] = k
            self.vc[l][:, :, pos : pos + 1] = v
            o = self._attend(q, self.kc[l][:, :, first : pos + 1], self.vc[l][:, :, first : pos + 1], None)
            x = self._block_end(l, x, o)
        x = self._norm(x[:, 0], P["model.norm.weight"])
        return F.linear(x, self.head)


def draw(logits):
    """log_softmax, the raw entropy (nats), a multinomial draw, the drawn token's log-prob."""
    logp = torch.log_softmax(logits, dim=-1)
    p = logp.exp()
    entropy = -(p * logp).sum(-1)
    tok = torch.multinomial(p, 1)
    return tok[:, 0], logp.gather(1, tok)[:, 0], entropy


def generate(model, ids, K, T):
    """One run: returns (seconds of the prefill and first draw, seconds in all, mean entropy)."""
    B, Pl = ids.shape
    n = B * K
    out_ids = torch.empty(n, T, dtype=torch.int64)
    out_logp = torch.empty(n, T)
    out_ent = torch.empty(n, T)
    t0 = time.perf_counter()
    logits = model.prefill(ids, K, T).repeat_interleave(K, dim=0)
    tok, lp, h = draw(logits)
    out_ids[:, 0], out_logp[:, 0], out_ent[:, 0] = tok, lp, h
    t1 = time.perf_counter()
    for j in range(1, T):
        logits = model.step(tok, Pl + j - 1)
        tok, lp, h = draw(logits)
        out_ids[:, j], out_logp[:, j], out_ent[:, j] = tok, lp, h
    t2 = time.perf_counter()
    return t1 - t0, t2 - t0, float(out_ent.mean())


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="model config.json")
    ap.add_argument("--prompts", type=int, default=16, help="prompts (default 16)")
    ap.add_argument("--prompt-len", type=int, default=120, help="tokens per prompt (default 120)")
    ap.add_argument("--k", type=int, default=4, help="candidates per prompt (default 4)")
    ap.add_argument("--new", type=int, default=64, help="new tokens per candidate (default 64)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after one warm-up (default 3)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--peak", type=float, default=0.0, help="sgemm peak GFLOP/s for the %% of peak")
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    args = ap.parse_args()
    B, Pl, K, T, R = args.prompts, args.prompt_len, args.k, args.new, args.runs
    if B < 1 or Pl < 1 or K < 1 or T < 2 or R < 1:
        ap.error("need --prompts >= 1, --prompt-len >= 1, --k >= 1, --new >= 2, --runs >= 1")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        raw = json.load(f)
    cfg = mpf.Cfg(raw)
    if Pl + T > raw.get("max_position_embeddings", Pl + T):
        ap.error("--prompt-len + --new exceeds the model's context")
    std = raw.get("initializer_range") or 0.02
    P = init_weights(cfg, std)
    model = KVTwin(cfg, P, Pl + T)
    ids = torch.randint(0, cfg.V, (B, Pl), dtype=torch.int64)

    flops = run_flops(cfg, B, Pl, K, T)
    gen = B * K * T
    n_params = sum(p.numel() for p in P.values())
    print(
        "torch: kv-twin (tools/bench/bench_sample_torch.py), torch %s, %s (%s), %d layers, hidden %d, "
        "intermediate %d, heads %d/%d x %d, vocab %d, %s head"
        % (torch.__version__, args.config, cfg.model_type, cfg.L, cfg.C, cfg.I, cfg.Hq, cfg.Hkv, cfg.D, cfg.V,
           "tied" if cfg.tied else "untied")
    )
    print(
        "torch: %.2fM parameters (%.2fM non-embedding), %d prompts x %d tokens, k %d, %d new tokens = %d "
        "generated, %.3f GFLOP per run (%.4f per generated token), 1 warm-up + %d timed runs, %d threads"
        % (n_params / 1e6, layer_params(cfg) / 1e6, B, Pl, K, T, gen, flops / 1e9, flops / gen / 1e9, R,
           torch.get_num_threads())
    )
    sys.stdout.flush()

    with torch.inference_mode():
        w0 = time.perf_counter()
        _, _, h = generate(model, ids, K, T)
        print("warm-up: %.1f ms, mean raw entropy %.4f nats" % (1e3 * (time.perf_counter() - w0), h))
        sys.stdout.flush()
        pre, full = [], []
        for r in range(R):
            tp, tf, h = generate(model, ids, K, T)
            pre.append(tp)
            full.append(tf)
            print(
                "run %d/%d: %.1f ms (prefill %.1f, decode %.2f ms/step), %.1f tokens/s, mean raw entropy %.4f nats"
                % (r + 1, R, 1e3 * tf, 1e3 * tp, 1e3 * (tf - tp) / (T - 1), gen / tf, h)
            )
            sys.stdout.flush()
    t_full, t_pre = statistics.median(full), statistics.median(pre)
    step = (t_full - t_pre) / (T - 1)
    tok_s, gflops = gen / t_full, flops / t_full / 1e9
    print(
        "torch: %.1f tokens/s, %.1f ms per run (prefill %.1f, decode %.2f ms/step x %d), best run %.1f ms"
        % (tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, T - 1, 1e3 * min(full))
    )
    pct = 100.0 * gflops / args.peak if args.peak > 0 else float("nan")
    if args.peak > 0:
        print("torch: %.2f GFLOP/s achieved, %.1f%% of the %.1f GFLOP/s sgemm peak" % (gflops, pct, args.peak))
    else:
        print("torch: %.2f GFLOP/s achieved (--peak G for the %% of peak)" % gflops)
    print(
        "RESULT impl=kv-twin tokens_per_s=%.3f run_ms=%.3f prefill_ms=%.3f step_ms=%.4f gflops=%.3f "
        "pct_peak=%.4f peak_gflops=%.3f flops_per_token=%.0f params=%d entropy=%.6f min_tokens_per_s=%.3f "
        "max_tokens_per_s=%.3f runs=%d"
        % (tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, gflops, pct, args.peak, flops / gen, n_params, h,
           gen / max(full), gen / min(full), R)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
