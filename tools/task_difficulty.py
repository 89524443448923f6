#!/usr/bin/env python3
"""How hard is the embedded default task for the tiny model? A PyTorch measurement.

gemc's demo trains configs/models/tiny-llama.json by SFT on the CPU for a few minutes and then
runs GEM, which needs a model that is right on some test prompts and wrong on others. This script
trains a PyTorch twin of that model on a task folder written by `make_task` and reports the
greedy accuracy on its test prompts, so that the task's knobs can be set to land in the middle.

The twin is the Llama of tiny-llama.json, written out here so that it needs nothing but torch:
byte-level vocabulary of 260, hidden 128, 4 layers, RMSNorm (eps 1e-5), rotary embeddings in
the rotate-half layout (theta 1e4), grouped-query attention with 4 query and 2 key/value heads
of 32, SwiGLU of width 352, tied input/output embeddings, weights ~ N(0, 0.02) as transformers
initialises them.

Training is the SFT stage of docs/algorithm.md section 6 on the same data: each sequence is the
plain chat template's prompt ("PROMPT\\n") followed by the chosen response and EOS (257); the loss is the
cross-entropy of the response tokens only (prompt masked), averaged over the batch's response
tokens; AdamW (betas 0.9/0.999, eps 1e-8), global gradient-norm clipping at 1.0, linear warmup
then cosine decay to a tenth of the peak. It stops after --tokens tokens (prompt + response,
padding not counted): set that to gemc's training throughput times the demo's SFT time budget.

Evaluation decodes every test prompt greedily (with a KV cache) until EOS or --max-new tokens;
a prompt counts as right when the text after the last "Final Answer:" is the answer, compared
as numbers.

    build/make_task --seed 1 --out /tmp/arith
    /usr/bin/python3 tools/task_difficulty.py /tmp/arith --tokens 1600000 --threads 1 --seed 1

needs torch (1.13 or later); prints the settings, the loss as it trains, three wrong answers and
one summary line. data/README.md records what it measured for the default task and its
neighbours. The accuracy varies a lot with --seed (the init and the batch order), so one run is
not a verdict: run a few seeds.
"""

import argparse
import json
import math
import os
import random
import re
import sys
import time

import torch
import torch.nn.functional as F

VOCAB, BOS, EOS = 260, 256, 257
HIDDEN, LAYERS, HEADS, KV_HEADS, HEAD_DIM, FFN = 128, 4, 4, 2, 32, 352
ROPE_THETA, NORM_EPS = 10000.0, 1e-5
MARKER = "Final Answer:"


class RMSNorm(torch.nn.Module):
    def __init__(self, n):
        super().__init__()
        self.weight = torch.nn.Parameter(torch.ones(n))

    def forward(self, x):
        return self.weight * (x * torch.rsqrt(x.pow(2).mean(-1, keepdim=True) + NORM_EPS))


def rotate_half(x):
    a, b = x.chunk(2, dim=-1)
    return torch.cat((-b, a), dim=-1)


class Block(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.ln1, self.ln2 = RMSNorm(HIDDEN), RMSNorm(HIDDEN)
        self.q = torch.nn.Linear(HIDDEN, HEADS * HEAD_DIM, bias=False)
        self.k = torch.nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.v = torch.nn.Linear(HIDDEN, KV_HEADS * HEAD_DIM, bias=False)
        self.o = torch.nn.Linear(HEADS * HEAD_DIM, HIDDEN, bias=False)
        self.gate = torch.nn.Linear(HIDDEN, FFN, bias=False)
        self.up = torch.nn.Linear(HIDDEN, FFN, bias=False)
        self.down = torch.nn.Linear(FFN, HIDDEN, bias=False)

    def forward(self, x, cos, sin, mask, cache=None):
        B, T, _ = x.shape
        h = self.ln1(x)
        q = self.q(h).view(B, T, HEADS, HEAD_DIM).transpose(1, 2)
        k = self.k(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        v = self.v(h).view(B, T, KV_HEADS, HEAD_DIM).transpose(1, 2)
        q = q * cos + rotate_half(q) * sin
        k = k * cos + rotate_half(k) * sin
        if cache is not None:
            if "k" in cache:
                k = torch.cat((cache["k"], k), dim=2)
                v = torch.cat((cache["v"], v), dim=2)
            cache["k"], cache["v"] = k, v
        rep = HEADS // KV_HEADS
        k = k.repeat_interleave(rep, dim=1)
        v = v.repeat_interleave(rep, dim=1)
        att = (q @ k.transpose(-1, -2)) / math.sqrt(HEAD_DIM)
        att = att.masked_fill(~mask, float("-inf")).softmax(-1)
        y = (att @ v).transpose(1, 2).reshape(B, T, HEADS * HEAD_DIM)
        x = x + self.o(y)
        h = self.ln2(x)
        return x + self.down(F.silu(self.gate(h)) * self.up(h))


class TinyLlama(torch.nn.Module):
    def __init__(self):
        super().__init__()
        self.embed = torch.nn.Embedding(VOCAB, HIDDEN)
        self.blocks = torch.nn.ModuleList(Block() for _ in range(LAYERS))
        self.norm = RMSNorm(HIDDEN)
        inv = 1.0 / (ROPE_THETA ** (torch.arange(0, HEAD_DIM, 2).float() / HEAD_DIM))
        self.register_buffer("inv_freq", inv, persistent=False)
        for m in self.modules():
            if isinstance(m, (torch.nn.Linear, torch.nn.Embedding)):
                torch.nn.init.normal_(m.weight, std=0.02)

    def forward(self, ids, pos, mask, caches=None):
        """ids, pos [B, T]; mask [B, 1, T, S] (True = may attend); logits [B, T, V]."""
        ang = pos[:, None, :, None].float() * self.inv_freq
        ang = torch.cat((ang, ang), dim=-1)
        cos, sin = ang.cos(), ang.sin()
        x = self.embed(ids)
        for i, blk in enumerate(self.blocks):
            x = blk(x, cos, sin, mask, caches[i] if caches is not None else None)
        return self.norm(x) @ self.embed.weight.t()


def read_jsonl(path):
    with open(path, encoding="utf-8") as f:
        return [json.loads(line) for line in f if line.strip()]


def encode(text):
    return list(text.encode("utf-8"))


def train_batch(pairs):
    """Right-padded ids, targets (-100 where no loss) and the count of real tokens."""
    seqs, targets = [], []
    for p in pairs:
        prompt = encode(p["prompt"] + "\n")
        resp = encode(p["chosen"]) + [EOS]
        seq = prompt + resp
        seqs.append(seq)
        # position t predicts seq[t+1]; only response tokens are targets
        targets.append([-100] * (len(prompt) - 1) + resp + [-100])
    T = max(len(s) for s in seqs)
    ids = torch.full((len(seqs), T), 0, dtype=torch.long)
    tgt = torch.full((len(seqs), T), -100, dtype=torch.long)
    for i, (s, t) in enumerate(zip(seqs, targets)):
        ids[i, : len(s)] = torch.tensor(s)
        tgt[i, : len(t)] = torch.tensor(t)
    return ids, tgt, sum(len(s) for s in seqs)


def lr_at(step, total, peak, warmup):
    if step < warmup:
        return peak * (step + 1) / warmup
    frac = min(1.0, (step - warmup) / max(1, total - warmup))
    return peak * (0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * frac)))


@torch.no_grad()
def greedy(model, prompts, max_new):
    """Left-padded batch decoding with a KV cache; returns the generated texts."""
    seqs = [encode(p + "\n") for p in prompts]
    B, T = len(seqs), max(len(s) for s in seqs)
    ids = torch.zeros((B, T), dtype=torch.long)
    valid = torch.zeros((B, T), dtype=torch.bool)
    for i, s in enumerate(seqs):
        ids[i, T - len(s) :] = torch.tensor(s)
        valid[i, T - len(s) :] = True
    pos = (valid.long().cumsum(-1) - 1).clamp(min=0)
    causal = torch.ones((T, T), dtype=torch.bool).tril()
    # a padding query attends to itself alone: with nothing to attend to, its softmax would be
    # NaN, and NaN times a zero weight still poisons the real rows
    mask = (causal[None, None] & valid[:, None, None, :]) | torch.eye(T, dtype=torch.bool)
    caches = [{} for _ in range(LAYERS)]
    logits = model(ids, pos, mask, caches)[:, -1]
    next_pos = pos[:, -1] + 1
    out = [[] for _ in range(B)]
    done = torch.zeros(B, dtype=torch.bool)
    for _ in range(max_new):
        tok = logits.argmax(-1)
        for i in range(B):
            if not done[i]:
                if tok[i].item() == EOS:
                    done[i] = True
                else:
                    out[i].append(tok[i].item())
        if done.all():
            break
        valid = torch.cat((valid, torch.ones((B, 1), dtype=torch.bool)), dim=1)
        mask = valid[:, None, None, :]
        logits = model(tok[:, None], next_pos[:, None], mask, caches)[:, -1]
        next_pos = next_pos + 1
    return [bytes(b for b in o if b < 256).decode("utf-8", "replace") for o in out]


def is_right(text, answer):
    at = text.rfind(MARKER)
    if at < 0:
        return False
    got = text[at + len(MARKER) :].strip()
    if not re.fullmatch(r"-?\d+(\.\d+)?", got):
        return False
    return float(got) == float(answer)


def main():
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("data", help="a folder written by make_task")
    ap.add_argument(
        "--tokens", type=int, default=1_600_000, help="training tokens (prompt + response)"
    )
    ap.add_argument("--batch", type=int, default=16, help="sequences a step")
    ap.add_argument("--lr", type=float, default=3e-3, help="peak learning rate")
    ap.add_argument("--warmup", type=int, default=30, help="warmup steps")
    ap.add_argument("--weight-decay", type=float, default=0.0)
    ap.add_argument("--max-new", type=int, default=160, help="greedy decoding limit")
    ap.add_argument("--eval-n", type=int, default=0, help="test prompts to decode (0: all)")
    ap.add_argument("--seed", type=int, default=1, help="init and shuffling seed")
    ap.add_argument("--threads", type=int, default=2)
    args = ap.parse_args()

    torch.set_num_threads(args.threads)
    torch.manual_seed(args.seed)
    rng = random.Random(args.seed)
    train = read_jsonl(os.path.join(args.data, "train_pairs.jsonl"))
    test = read_jsonl(os.path.join(args.data, "test_prompts.jsonl"))
    if args.eval_n:
        test = test[: args.eval_n]
    mean_len = sum(len(encode(p["prompt"] + "\n" + p["chosen"])) + 1 for p in train) / len(train)
    total_steps = max(1, round(args.tokens / (mean_len * args.batch)))
    print(
        f"data {args.data}: {len(train)} train pairs (mean {mean_len:.0f} tokens), "
        f"{len(test)} test prompts; tokens {args.tokens}, batch {args.batch}, ~{total_steps} "
        f"steps, lr {args.lr} warmup {args.warmup} cosine to 10%, wd {args.weight_decay}, "
        f"seed {args.seed}, threads {args.threads}",
        flush=True,
    )

    model = TinyLlama()
    opt = torch.optim.AdamW(
        model.parameters(), lr=args.lr, betas=(0.9, 0.999), eps=1e-8, weight_decay=args.weight_decay
    )
    order, cursor, seen, step, t0 = [], 0, 0, 0, time.time()
    while seen < args.tokens:
        if cursor + args.batch > len(order):
            order = list(range(len(train)))
            rng.shuffle(order)
            cursor = 0
        batch = [train[i] for i in order[cursor : cursor + args.batch]]
        cursor += args.batch
        ids, tgt, n = train_batch(batch)
        T = ids.shape[1]
        pos = torch.arange(T)[None].expand_as(ids)
        mask = torch.ones((T, T), dtype=torch.bool).tril()[None, None]
        logits = model(ids, pos, mask)
        loss = F.cross_entropy(logits.reshape(-1, VOCAB), tgt.reshape(-1), ignore_index=-100)
        for g in opt.param_groups:
            g["lr"] = lr_at(step, total_steps, args.lr, args.warmup)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        torch.nn.utils.clip_grad_norm_(model.parameters(), 1.0)
        opt.step()
        seen += n
        step += 1
        if step % 50 == 0 or seen >= args.tokens:
            print(
                f"step {step:5d} | tokens {seen:8d} | loss {loss.item():.4f} | "
                f"{seen / (time.time() - t0):.0f} tok/s",
                flush=True,
            )
    train_s = time.time() - t0

    model.eval()
    t1, right = time.time(), 0
    shown = 0
    for i in range(0, len(test), 50):
        chunk = test[i : i + 50]
        texts = greedy(model, [r["prompt"] for r in chunk], args.max_new)
        for r, text in zip(chunk, texts):
            ok = is_right(text, r["answer"])
            right += ok
            if shown < 3 and not ok:
                shown += 1
                print(f"wrong: {r['prompt']!r}\n  -> {text!r} (answer {r['answer']})")
    acc = right / len(test)
    half = 1.96 * math.sqrt(acc * (1 - acc) / len(test))
    print(
        f"accuracy {acc * 100:.1f}% ({right}/{len(test)}, 95% +-{half * 100:.1f}) after "
        f"{seen} tokens in {step} steps; train {train_s:.0f} s, eval {time.time() - t1:.0f} s"
    )


if __name__ == "__main__":
    sys.exit(main())
