#!/usr/bin/env python3
"""PyTorch twin of build/bench_cpu_train: the same model shapes, batch and steps in float32 on
the CPU, timed the same way.

    python3 tools/bench/bench_cpu_train_torch.py --config FILE [--batch B] [--seq T]
        [--steps S] [--warmup W] [--peak G]

The model is transformers' LlamaForCausalLM / Qwen2ForCausalLM / MistralForCausalLM when
`import transformers` works (its default attention implementation), else the "twin" of
tools/make_parity_fixture.py (a plain PyTorch re-implementation of those modeling files, run one
sequence at a time since it takes one sequence of ids). Weights are random like gemc's
(matrices ~ N(0, initializer_range), norms 1, biases 0); the token ids are random, B sequences
of T. Each step: zero_grad(set_to_none=True), forward, mean next-token cross-entropy over the
B*(T-1) predicted positions, backward, clip_grad_norm_(1.0), torch.optim.AdamW (weight decay on
2-D parameters only, as gemc). torch.set_num_threads(os.cpu_count()) unless --threads N.

Prints tokens/s, ms/step split into forward (model + loss) / backward / optimizer (zero_grad +
clip + AdamW), achieved GFLOP/s with the same FLOP count as bench_cpu_train.c, and the MFU when
--peak (the sgemm GFLOP/s from `bench_cpu_train --roofline`) is given. The last line is
"RESULT key=value ...", read by tools/bench/run_cpu.sh. This is a benchmark: no assertions.
"""

import argparse
import json
import os
import sys
import time

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # importing the fixture tool leaves no __pycache__ in tools/
sys.path.insert(0, os.path.join(HERE, ".."))

# the twin; where the python3 on PATH lacks torch, importing it re-runs this script under the
# system python3 that has it (Debian's python3-torch)
import make_parity_fixture as mpf  # noqa: E402
import torch  # noqa: E402
import torch.nn.functional as F  # noqa: E402


def flops_per_token(cfg, T):
    """Model FLOPs per trained token, counted as bench_cpu_train.c does (see its comment):
    6 * (non-embedding parameters + the head's V*C) + 12 * L * T * Hq * D / 2 (causal)."""
    shapes = mpf.param_shapes(cfg)
    total = 0
    for name, shape in shapes.items():
        n = 1
        for s in shape:
            n *= s
        if name not in ("model.embed_tokens.weight", "lm_head.weight"):
            total += n
    total += cfg.V * cfg.C
    return 6.0 * total + 12.0 * cfg.L * T * cfg.Hq * cfg.D / 2.0, total


def init_(name, t, std):
    with torch.no_grad():
        if name.endswith("norm.weight"):
            t.fill_(1.0)
        elif t.dim() == 1:
            t.zero_()
        else:
            t.normal_(0.0, std)


def build_transformers(transformers, raw, cfg, std):
    classes = {
        "llama": ("LlamaConfig", "LlamaForCausalLM"),
        "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
        "mistral": ("MistralConfig", "MistralForCausalLM"),
    }[cfg.model_type]
    d = {k: v for k, v in raw.items() if k not in ("architectures", "model_type", "dtype", "torch_dtype")}
    config = getattr(transformers, classes[0])(**d)
    model = getattr(transformers, classes[1])(config).to(torch.float32)
    model.train()
    for name, p in model.named_parameters():
        init_(name, p, std)
    params = [p for _, p in model.named_parameters()]  # a tied head appears once

    def logits_fn(ids):  # ids [B, T] -> logits [B, T, V]
        return model(input_ids=ids, use_cache=False).logits

    impl = "transformers %s (%s, attn %s)" % (
        transformers.__version__,
        classes[1],
        getattr(config, "_attn_implementation", "default"),
    )
    return params, logits_fn, impl


def build_twin(cfg, std):
    P = {}
    for name, shape in mpf.param_shapes(cfg).items():
        t = torch.empty(shape, dtype=torch.float32)
        init_(name, t, std)
        P[name] = t.requires_grad_(True)

    def logits_fn(ids):  # the twin takes one sequence of ids at a time
        return torch.stack([mpf.twin_logits(cfg, P, ids[b]) for b in range(ids.shape[0])])

    return list(P.values()), logits_fn, "pytorch-twin (tools/make_parity_fixture.py)"


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", required=True, help="model config.json")
    ap.add_argument("--batch", type=int, default=8, help="sequences per batch (default 8)")
    ap.add_argument("--seq", type=int, default=256, help="tokens per sequence (default 256)")
    ap.add_argument("--steps", type=int, default=5, help="timed steps (default 5)")
    ap.add_argument("--warmup", type=int, default=1, help="warm-up steps (default 1)")
    ap.add_argument("--peak", type=float, default=0.0, help="sgemm peak GFLOP/s for the MFU")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--threads", type=int, default=os.cpu_count(), help="torch threads (default: all CPUs)")
    ap.add_argument("--twin", action="store_true", help="use the twin even when transformers exists")
    args = ap.parse_args()
    B, T = args.batch, args.seq
    if B < 1 or T < 2 or args.steps < 1 or args.warmup < 0:
        ap.error("need --batch >= 1, --seq >= 2, --steps >= 1, --warmup >= 0")

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    with open(args.config) as f:
        raw = json.load(f)
    cfg = mpf.Cfg(raw)
    std = raw.get("initializer_range") or 0.02

    transformers = None
    if not args.twin:
        try:
            import transformers
        except ImportError:
            transformers = None
    if transformers is not None:
        params, logits_fn, impl = build_transformers(transformers, raw, cfg, std)
    else:
        params, logits_fn, impl = build_twin(cfg, std)

    ids = torch.randint(0, cfg.V, (B, T), dtype=torch.int64)
    targets = torch.full((B, T), -100, dtype=torch.int64)  # the last position predicts nothing
    targets[:, :-1] = ids[:, 1:]
    targets = targets.reshape(-1)
    groups = [
        {"params": [p for p in params if p.dim() == 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() != 2], "weight_decay": 0.0},
    ]
    opt = torch.optim.AdamW(groups, lr=args.lr, betas=(0.9, 0.999), eps=1e-8)

    fpt, n_matmul = flops_per_token(cfg, T)
    n_params = sum(p.numel() for p in params)
    print(
        "torch: %s, torch %s, %s (%s), %d layers, hidden %d, intermediate %d, heads %d/%d x %d, "
        "vocab %d, %s head"
        % (impl, torch.__version__, args.config, cfg.model_type, cfg.L, cfg.C, cfg.I, cfg.Hq, cfg.Hkv, cfg.D,
           cfg.V, "tied" if cfg.tied else "untied")
    )
    print(
        "torch: %.2fM parameters (%.2fM in matmuls incl. the head), %.3f GFLOP per token, batch %d x %d = %d "
        "tokens, %d warm-up + %d timed steps, %d threads"
        % (n_params / 1e6, n_matmul / 1e6, fpt / 1e9, B, T, B * T, args.warmup, args.steps, torch.get_num_threads())
    )
    sys.stdout.flush()

    def step():
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        t1 = time.perf_counter()
        logits = logits_fn(ids)
        loss = F.cross_entropy(logits.reshape(B * T, cfg.V), targets, ignore_index=-100)
        t2 = time.perf_counter()
        loss.backward()
        t3 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        t4 = time.perf_counter()
        return float(loss), float(norm), t2 - t1, t3 - t2, (t1 - t0) + (t4 - t3)

    for s in range(args.warmup):
        loss, norm, f, b, o = step()
        print("warm-up %d/%d: loss %.4f, grad norm %.3f, %.1f ms" % (s + 1, args.warmup, loss, norm, 1e3 * (f + b + o)))
        sys.stdout.flush()
    fwd = bwd = optim = 0.0
    best = float("inf")
    for s in range(args.steps):
        loss, norm, f, b, o = step()
        fwd, bwd, optim = fwd + f, bwd + b, optim + o
        best = min(best, f + b + o)
        print(
            "step %d/%d: loss %.4f, grad norm %.3f, %.1f ms (fwd %.1f, bwd %.1f, opt %.1f)"
            % (s + 1, args.steps, loss, norm, 1e3 * (f + b + o), 1e3 * f, 1e3 * b, 1e3 * o)
        )
        sys.stdout.flush()
    S = args.steps
    step_s = (fwd + bwd + optim) / S
    tok_s = B * T / step_s
    gflops = tok_s * fpt / 1e9
    print(
        "torch: %.1f tokens/s, %.1f ms/step (forward %.1f, backward %.1f, optimizer %.1f), best step %.1f ms"
        % (tok_s, 1e3 * step_s, 1e3 * fwd / S, 1e3 * bwd / S, 1e3 * optim / S, 1e3 * best)
    )
    mfu = gflops / args.peak if args.peak > 0 else float("nan")
    if args.peak > 0:
        print("torch: %.2f GFLOP/s achieved, MFU %.1f%% of the %.1f GFLOP/s sgemm peak" % (gflops, 100 * mfu, args.peak))
    else:
        print("torch: %.2f GFLOP/s achieved (--peak G for the MFU)" % gflops)
    print(
        "RESULT impl=%s tokens_per_s=%.3f step_ms=%.3f fwd_ms=%.3f bwd_ms=%.3f opt_ms=%.3f gflops=%.3f mfu=%.4f "
        "peak_gflops=%.3f flops_per_token=%.0f params=%d loss=%.6f"
        % (
            "transformers" if transformers is not None else "pytorch-twin",
            tok_s,
            1e3 * step_s,
            1e3 * fwd / S,
            1e3 * bwd / S,
            1e3 * optim / S,
            gflops,
            mfu,
            args.peak,
            fpt,
            n_params,
            loss,
        )
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
