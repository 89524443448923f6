#!/usr/bin/env python3
"""PyTorch peer of build/bench_cuda_train: transformers' causal LM in bf16 on the GPU, the same
batch and steps, timed the same way.

    python3 tools/bench/bench_cuda_train_torch.py [--config FILE] [--batch B] [--seq T]
        [--steps S] [--warmup W] [--peak-tflops F] [--lr F] [--seed N] [--no-fused]

The model is transformers' Qwen2ForCausalLM (LlamaForCausalLM, MistralForCausalLM for those
model types) built from the config.json with random weights (transformers' own init: matrices
~ N(0, initializer_range), norms 1, biases 0), in bfloat16 with attn_implementation="sdpa", on
cuda:0; nothing is downloaded. The token ids are random, B sequences of T. Each step:
zero_grad(set_to_none=True), forward, loss = the summed next-token cross-entropy over the
B*(T-1) predicted positions (minus the sum of their log-probs; the logits upcast to fp32 first,
as transformers' own loss does), backward, clip_grad_norm_(1.0), torch.optim.AdamW (fused=True
where this torch has it, else its default; weight decay 0.1 on 2-D parameters only, as gemc;
the moments in bf16 like the weights). torch.cuda.synchronize() before every clock reading.

Prints tokens/s, ms/step split into forward (model + loss) / backward / optimizer (zero_grad +
clip + AdamW), achieved TFLOP/s with bench_cuda_train.c's FLOP count and the MFU against
--peak-tflops. Without a CUDA device torch can use it prints one line and exits 0. The last
line is "RESULT key=value ...", read by tools/bench/run_cuda.sh. This is a benchmark: no
assertions.
"""

import argparse
import json
import os
import re
import sys
import time

import torch
import torch.nn.functional as F

CLASSES = {
    "llama": ("LlamaConfig", "LlamaForCausalLM"),
    "qwen2": ("Qwen2Config", "Qwen2ForCausalLM"),
    "mistral": ("MistralConfig", "MistralForCausalLM"),
}


def build_model(transformers, path):
    """The causal LM of the config.json at path, random weights, bf16, sdpa, on cuda:0."""
    with open(path) as f:
        model_type = json.load(f)["model_type"]
    config = getattr(transformers, CLASSES[model_type][0]).from_json_file(path)  # as a checkpoint's
    # transformers 4.56 renamed from_config's torch_dtype to dtype (the old name still works
    # there, with a deprecation warning); try the version's own name first
    version = tuple(int(x) for x in re.findall(r"\d+", transformers.__version__)[:2])
    names = ["dtype", "torch_dtype"] if version >= (4, 56) else ["torch_dtype", "dtype"]
    try:
        model = transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="sdpa", **{names[0]: torch.bfloat16})
    except TypeError:
        model = transformers.AutoModelForCausalLM.from_config(
            config, attn_implementation="sdpa", **{names[1]: torch.bfloat16})
    model.to("cuda")
    # only where the dtype was not honoured: a blanket cast would also round the float32 rope
    # frequencies (a buffer) to bf16
    if any(p.dtype != torch.bfloat16 for p in model.parameters()):
        model.to(dtype=torch.bfloat16)
    return model, config


def model_flops(model, config, T):
    """FLOPs per trained token as bench_cuda_train.c counts them: 6 * (non-embedding parameters
    + the head's V*C) + 12 * L * T * Hq * D / 2 (causal attention, forward + backward)."""
    V, C = config.vocab_size, config.hidden_size
    L, Hq = config.num_hidden_layers, config.num_attention_heads
    D = getattr(config, "head_dim", None) or C // Hq
    total = sum(p.numel() for p in model.parameters())  # a tied head appears once
    embed = V * C * (1 if config.tie_word_embeddings else 2)
    matmul = total - embed + V * C
    return 6.0 * matmul + 12.0 * L * T * Hq * D / 2.0, matmul, total


def main():
    here = os.path.dirname(os.path.abspath(__file__))
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(here, "qwen2.5-0.5b.json"), help="model config.json")
    ap.add_argument("--batch", type=int, default=4, help="sequences per batch (default 4)")
    ap.add_argument("--seq", type=int, default=1024, help="tokens per sequence (default 1024)")
    ap.add_argument("--steps", type=int, default=10, help="timed steps (default 10)")
    ap.add_argument("--warmup", type=int, default=3, help="warm-up steps (default 3)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="bf16 dense peak TFLOP/s for the MFU")
    ap.add_argument("--lr", type=float, default=1e-4, help="AdamW learning rate (default 1e-4)")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--no-fused", action="store_true", help="torch's default AdamW, not fused=True")
    args = ap.parse_args()
    B, T = args.batch, args.seq
    if B < 1 or T < 2 or args.steps < 1 or args.warmup < 0:
        ap.error("need --batch >= 1, --seq >= 2, --steps >= 1, --warmup >= 0")
    if not torch.cuda.is_available():
        print("torch: skipped: torch %s sees no CUDA device" % torch.__version__)
        return 0
    import transformers

    torch.manual_seed(args.seed)
    model, config = build_model(transformers, args.config)
    model.train()
    params = list(model.parameters())
    attn = getattr(model.config, "_attn_implementation", "?")
    V = config.vocab_size

    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
    ids = torch.randint(0, V, (B, T), dtype=torch.int64, device="cuda", generator=gen)
    targets = torch.full((B, T), -100, dtype=torch.int64, device="cuda")  # the last predicts nothing
    targets[:, :-1] = ids[:, 1:]
    targets = targets.reshape(-1)
    n_pred = B * (T - 1)
    groups = [
        {"params": [p for p in params if p.dim() == 2], "weight_decay": 0.1},
        {"params": [p for p in params if p.dim() != 2], "weight_decay": 0.0},
    ]
    opt_kw = dict(lr=args.lr, betas=(0.9, 0.999), eps=1e-8)
    fused = False
    if not args.no_fused:
        try:
            opt = torch.optim.AdamW(groups, fused=True, **opt_kw)
            fused = True
        except (TypeError, RuntimeError, ValueError):
            pass
    if not fused:
        opt = torch.optim.AdamW(groups, **opt_kw)

    fpt, n_matmul, n_params = model_flops(model, config, T)
    print(
        "torch: %s, torch %s (CUDA %s), transformers %s, %s (%s, attn %s, %s), %s, %d layers, hidden %d, "
        "intermediate %d, heads %d/%d, vocab %d, %s head"
        % (torch.cuda.get_device_name(0), torch.__version__, torch.version.cuda, transformers.__version__,
           type(model).__name__, str(next(model.parameters()).dtype).replace("torch.", ""), attn,
           "fused AdamW" if fused else "AdamW", args.config, config.num_hidden_layers, config.hidden_size,
           config.intermediate_size, config.num_attention_heads, config.num_key_value_heads, V,
           "tied" if config.tie_word_embeddings else "untied")
    )
    print(
        "torch: %.2fM parameters (%.2fM in matmuls incl. the head), %.3f GFLOP per token, batch %d x %d = %d "
        "tokens, %d warm-up + %d timed steps"
        % (n_params / 1e6, n_matmul / 1e6, fpt / 1e9, B, T, B * T, args.warmup, args.steps)
    )
    sys.stdout.flush()

    def step():
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        opt.zero_grad(set_to_none=True)
        torch.cuda.synchronize()
        t1 = time.perf_counter()
        logits = model(input_ids=ids, use_cache=False).logits
        loss = F.cross_entropy(logits.reshape(B * T, V).float(), targets, ignore_index=-100, reduction="sum")
        torch.cuda.synchronize()
        t2 = time.perf_counter()
        loss.backward()
        torch.cuda.synchronize()
        t3 = time.perf_counter()
        norm = torch.nn.utils.clip_grad_norm_(params, max_norm=1.0)
        opt.step()
        torch.cuda.synchronize()
        t4 = time.perf_counter()
        return float(loss) / n_pred, float(norm), t2 - t1, t3 - t2, (t1 - t0) + (t4 - t3)

    for s in range(args.warmup):
        loss, norm, f, b, o = step()
        print("warm-up %d/%d: loss %.4f, grad norm %.3f, %.2f ms" % (s + 1, args.warmup, loss, norm, 1e3 * (f + b + o)))
        sys.stdout.flush()
    fwd = bwd = optim = 0.0
    best = float("inf")
    for s in range(args.steps):
        loss, norm, f, b, o = step()
        fwd, bwd, optim = fwd + f, bwd + b, optim + o
        best = min(best, f + b + o)
        print(
            "step %d/%d: loss %.4f, grad norm %.3f, %.2f ms (fwd %.2f, bwd %.2f, opt %.2f)"
            % (s + 1, args.steps, loss, norm, 1e3 * (f + b + o), 1e3 * f, 1e3 * b, 1e3 * o)
        )
        sys.stdout.flush()
    S = args.steps
    step_s = (fwd + bwd + optim) / S
    tok_s = B * T / step_s
    tflops = tok_s * fpt / 1e12
    print(
        "torch: %.1f tokens/s, %.2f ms/step (forward %.2f, backward %.2f, optimizer %.2f), best step %.2f ms, "
        "peak memory %.1f GiB"
        % (tok_s, 1e3 * step_s, 1e3 * fwd / S, 1e3 * bwd / S, 1e3 * optim / S, 1e3 * best,
           torch.cuda.max_memory_allocated() / 2**30)
    )
    mfu = tflops / args.peak_tflops if args.peak_tflops > 0 else float("nan")
    if args.peak_tflops > 0:
        print("torch: %.1f TFLOP/s achieved, MFU %.1f%% of the %.1f TFLOP/s bf16 dense peak"
              % (tflops, 100 * mfu, args.peak_tflops))
    else:
        print("torch: %.1f TFLOP/s achieved (--peak-tflops F for the MFU)" % tflops)
    print(
        "RESULT impl=transformers tokens_per_s=%.3f step_ms=%.4f fwd_ms=%.4f bwd_ms=%.4f opt_ms=%.4f "
        "best_step_ms=%.4f tflops=%.4f mfu=%.5f peak_tflops=%.3f flops_per_token=%.0f params=%d loss=%.6f "
        "attn=%s fused=%d torch=%s transformers=%s"
        % (tok_s, 1e3 * step_s, 1e3 * fwd / S, 1e3 * bwd / S, 1e3 * optim / S, 1e3 * best, tflops, mfu,
           args.peak_tflops, fpt, n_params, loss, attn, int(fused), torch.__version__, transformers.__version__)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
