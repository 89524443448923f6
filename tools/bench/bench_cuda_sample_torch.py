#!/usr/bin/env python3
"""PyTorch peer of build/bench_cuda_sample: transformers' generate in bf16 on the GPU, the same
prompts, candidates and lengths, timed the same way.

    python3 tools/bench/bench_cuda_sample_torch.py [--config FILE] [--prompts B] [--k K]
        [--prompt-len P] [--new-tokens T] [--runs R] [--peak-tflops F] [--seed N]
        [--entropy scores|processor]

The model is built as in bench_cuda_train_torch.py (transformers' causal LM from the
config.json, random weights, bfloat16, attn_implementation="sdpa", cuda:0, nothing
downloaded), in eval mode. The B prompts are P random token ids each, one [B, P] batch with an
all-ones attention mask. Every call is model.generate with do_sample=True, temperature=1.0,
top_k=0, top_p=1.0, num_return_sequences=K (each prompt repeated K times), and
min_new_tokens = max_new_tokens = T, so that every candidate runs to exactly T tokens as in gemc
(the config's EOS id is masked until then). Its default KV cache (no static cache, no
torch.compile). One warm-up of each kind of call, then R timed repetitions of three calls:
  prefill   max_new_tokens 1;
  full      with the entropies: output_scores=True, return_dict_in_generate=True, then the
            entropy of every step's distribution computed from the returned scores
            (softmax, -sum p ln p) on the GPU: what "with entropies" costs transformers;
  no-ent    the same generate without output_scores.
With --entropy processor (or when holding every step's [B*K, V] float32 scores runs out of
memory: 40 GB at the default shape) the entropies come instead from a LogitsProcessor that
computes them at each step and keeps only those. torch.cuda.synchronize() before every clock
reading. Printed from the medians: generated tokens/s = B*K*T / run time, with and without the
entropies, the entropy overhead, prefill ms, decode ms/step = (run - prefill) / (T-1), achieved
TFLOP/s with bench_cuda_sample.c's FLOP count and the % of --peak-tflops. Without a CUDA device
torch can use it prints one line and exits 0. The last line is "RESULT key=value ...", read by
tools/bench/run_cuda.sh. This is a benchmark: no assertions.
"""

import argparse
import os
import statistics
import sys
import time

import torch

HERE = os.path.dirname(os.path.abspath(__file__))
sys.dont_write_bytecode = True  # importing the training peer leaves no __pycache__ in tools/
sys.path.insert(0, HERE)

from bench_cuda_train_torch import build_model  # noqa: E402

OOM = getattr(torch.cuda, "OutOfMemoryError", RuntimeError)


def run_flops(model, config, B, P, K, T):
    """Model FLOPs of one run, as bench_cuda_sample.c counts them: prefill B*P positions at
    2*P_layers + causal attention + the head on B rows; decode B*K*(T-1) positions at 2*P_layers
    + 2*V*C + 4*L*Hq*D*(P+j) for step j."""
    V, C = config.vocab_size, config.hidden_size
    L, Hq = config.num_hidden_layers, config.num_attention_heads
    D = getattr(config, "head_dim", None) or C // Hq
    total = sum(p.numel() for p in model.parameters())
    lp = float(total - V * C * (1 if config.tie_word_embeddings else 2))
    head, att = 2.0 * V * C, 4.0 * L * Hq * D
    prefill = B * (P * 2.0 * lp + att * P * (P + 1.0) / 2.0 + head)
    steps = T - 1.0
    keys = steps * P + steps * (steps + 1.0) / 2.0
    decode = B * K * (steps * (2.0 * lp + head) + att * keys)
    return prefill + decode, lp, total


def entropy_of(scores):
    """[n, V] scores -> [n] entropies in nats, -sum p ln p over the softmax; masked (-inf)
    scores have p = 0 and add 0 (torch.special.entr(0) = 0)."""
    return torch.special.entr(torch.softmax(scores.float(), dim=-1)).sum(-1)


def make_processor(transformers):
    class EntropyProcessor(transformers.LogitsProcessor):
        """Keeps each step's entropies, leaves the scores as they are."""

        def __init__(self):
            self.h = []

        def __call__(self, input_ids, scores):
            self.h.append(entropy_of(scores))
            return scores

    return EntropyProcessor


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    ap.add_argument("--config", default=os.path.join(HERE, "qwen2.5-0.5b.json"), help="model config.json")
    ap.add_argument("--prompts", type=int, default=32, help="prompts (default 32)")
    ap.add_argument("--k", type=int, default=8, help="candidates per prompt (default 8)")
    ap.add_argument("--prompt-len", type=int, default=128, help="tokens per prompt (default 128)")
    ap.add_argument("--new-tokens", type=int, default=256, help="new tokens per candidate (default 256)")
    ap.add_argument("--runs", type=int, default=3, help="timed runs after the warm-ups (default 3)")
    ap.add_argument("--peak-tflops", type=float, default=0.0, help="bf16 dense peak TFLOP/s for the %% of peak")
    ap.add_argument("--seed", type=int, default=1234)
    ap.add_argument("--entropy", choices=("scores", "processor"), default="scores",
                    help="entropies from output_scores (default) or from a LogitsProcessor")
    args = ap.parse_args()
    B, P, K, T, R = args.prompts, args.prompt_len, args.k, args.new_tokens, args.runs
    if B < 1 or P < 1 or K < 1 or T < 2 or R < 1:
        ap.error("need --prompts >= 1, --prompt-len >= 1, --k >= 1, --new-tokens >= 2, --runs >= 1")
    if not torch.cuda.is_available():
        print("torch: skipped: torch %s sees no CUDA device" % torch.__version__)
        return 0
    import transformers

    torch.manual_seed(args.seed)
    model, config = build_model(transformers, args.config)
    model.eval()
    if P + T > config.max_position_embeddings:
        ap.error("--prompt-len + --new-tokens exceeds the model's context")
    attn = getattr(model.config, "_attn_implementation", "?")
    eos = config.eos_token_id
    eos = eos[0] if isinstance(eos, (list, tuple)) else eos
    if eos is None:
        eos = 0  # min_new_tokens needs one; nothing stops before T anyway
    gen = torch.Generator(device="cuda").manual_seed(args.seed + 1)
    ids = torch.randint(0, config.vocab_size, (B, P), dtype=torch.int64, device="cuda", generator=gen)
    mask = torch.ones_like(ids)
    EntropyProcessor = make_processor(transformers)
    mode = args.entropy

    def generate(new, entropies):
        """One timed generate; returns (seconds, mean entropy or None)."""
        kw = dict(
            input_ids=ids, attention_mask=mask, do_sample=True, temperature=1.0, top_k=0, top_p=1.0,
            num_return_sequences=K, min_new_tokens=new, max_new_tokens=new, eos_token_id=eos,
            pad_token_id=eos, use_cache=True,
        )
        proc = None
        if entropies and mode == "scores":
            kw.update(output_scores=True, return_dict_in_generate=True)
        elif entropies:
            proc = EntropyProcessor()
            kw["logits_processor"] = transformers.LogitsProcessorList([proc])
        torch.cuda.synchronize()
        t0 = time.perf_counter()
        with torch.inference_mode():
            out = model.generate(**kw)
            h = None
            if entropies and mode == "scores":
                h = torch.stack([entropy_of(s) for s in out.scores], dim=1)  # [B*K, new]
            elif entropies:
                h = torch.stack(proc.h, dim=1)
        torch.cuda.synchronize()
        dt = time.perf_counter() - t0
        seqs = out.sequences if hasattr(out, "sequences") else out
        if tuple(seqs.shape) != (B * K, P + new):
            sys.exit("torch: error: generate returned %s tokens, not %s" % (tuple(seqs.shape), (B * K, P + new)))
        del out, seqs
        return dt, (float(h.mean()) if h is not None else None)

    flops, lp, n_params = run_flops(model, config, B, P, K, T)
    n_gen = B * K * T
    print(
        "torch: %s, torch %s (CUDA %s), transformers %s, %s (%s, attn %s), %s, %d layers, hidden %d, "
        "intermediate %d, heads %d/%d, vocab %d, %s head"
        % (torch.cuda.get_device_name(0), torch.__version__, torch.version.cuda, transformers.__version__,
           type(model).__name__, str(next(model.parameters()).dtype).replace("torch.", ""), attn, args.config,
           config.num_hidden_layers, config.hidden_size, config.intermediate_size, config.num_attention_heads,
           config.num_key_value_heads, config.vocab_size, "tied" if config.tie_word_embeddings else "untied")
    )
    print(
        "torch: %.2fM parameters (%.2fM non-embedding), %d prompts x %d tokens, k %d, %d new tokens = %d "
        "generated, %.2f TFLOP per run, 1 warm-up of each call + %d timed runs, entropies from %s"
        % (n_params / 1e6, lp / 1e6, B, P, K, T, n_gen, flops / 1e12, R,
           "output_scores" if mode == "scores" else "a LogitsProcessor")
    )
    sys.stdout.flush()

    try:
        w, h = generate(T, True)
    except OOM:
        if mode != "scores":
            raise
        torch.cuda.empty_cache()
        mode = "processor"
        print("torch: output_scores ran out of GPU memory; entropies from a LogitsProcessor instead")
        w, h = generate(T, True)
    print("warm-up with entropies: %.1f ms, mean entropy %.4f nats" % (1e3 * w, h))
    w, _ = generate(T, False)
    print("warm-up without entropies: %.1f ms" % (1e3 * w))
    generate(1, False)
    sys.stdout.flush()

    pre, full, noent = [], [], []
    for r in range(R):
        tp, _ = generate(1, False)
        tf, h = generate(T, True)
        tn, _ = generate(T, False)
        pre.append(tp)
        full.append(tf)
        noent.append(tn)
        print(
            "run %d/%d: %.1f ms (prefill %.1f, decode %.3f ms/step), %.1f tokens/s, mean entropy %.4f nats; "
            "without entropies %.1f ms, %.1f tokens/s"
            % (r + 1, R, 1e3 * tf, 1e3 * tp, 1e3 * (tf - tp) / (T - 1), n_gen / tf, h, 1e3 * tn, n_gen / tn)
        )
        sys.stdout.flush()
    t_full, t_pre, t_noent = statistics.median(full), statistics.median(pre), statistics.median(noent)
    step, step_noent = (t_full - t_pre) / (T - 1), (t_noent - t_pre) / (T - 1)
    tok_s, tok_s_noent = n_gen / t_full, n_gen / t_noent
    overhead = (t_full - t_noent) / t_noent
    tflops = flops / t_full / 1e12
    print(
        "torch: %.1f tokens/s with entropies, %.1f ms per run (prefill %.1f, decode %.3f ms/step x %d), "
        "best run %.1f ms, peak memory %.1f GiB"
        % (tok_s, 1e3 * t_full, 1e3 * t_pre, 1e3 * step, T - 1, 1e3 * min(full),
           torch.cuda.max_memory_allocated() / 2**30)
    )
    print(
        "torch: %.1f tokens/s without entropies, %.1f ms per run (decode %.3f ms/step); entropy overhead %+.2f%%"
        % (tok_s_noent, 1e3 * t_noent, 1e3 * step_noent, 100 * overhead)
    )
    pct = 100.0 * tflops / args.peak_tflops if args.peak_tflops > 0 else float("nan")
    if args.peak_tflops > 0:
        print("torch: %.1f TFLOP/s achieved, %.1f%% of the %.1f TFLOP/s bf16 dense peak" % (tflops, pct, args.peak_tflops))
    else:
        print("torch: %.1f TFLOP/s achieved (--peak-tflops F for the %% of peak)" % tflops)
    print(
        "RESULT impl=transformers tokens_per_s=%.3f tokens_per_s_noent=%.3f entropy_overhead=%.5f run_ms=%.4f "
        "run_ms_noent=%.4f prefill_ms=%.4f step_ms=%.5f step_ms_noent=%.5f tflops=%.4f pct_peak=%.4f "
        "peak_tflops=%.3f flops_per_token=%.0f params=%d entropy=%.6f min_tokens_per_s=%.3f max_tokens_per_s=%.3f "
        "runs=%d entropy_mode=%s attn=%s torch=%s transformers=%s"
        % (tok_s, tok_s_noent, overhead, 1e3 * t_full, 1e3 * t_noent, 1e3 * t_pre, 1e3 * step, 1e3 * step_noent,
           tflops, pct, args.peak_tflops, flops / n_gen, n_params, h, n_gen / max(full), n_gen / min(full), R, mode,
           attn, torch.__version__, transformers.__version__)
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
