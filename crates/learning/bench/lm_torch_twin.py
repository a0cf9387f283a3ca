#!/usr/bin/env python3
"""PyTorch twin of `lm-bench` (crates/learning/src/bin/lm_bench.rs): the same byte-level
transformer (pre-LayerNorm blocks, ReLU MLP of width 4·dim, learned positions, causal
attention, untied output layer), the same data (the shipped WordNet glosses cut into 65-byte
windows at stride 64), the same optimiser (SGD, lr 0.3, momentum 0.9), batch, steps and
thread count, all parameters trained. Prints tokens (predicted bytes) per second of the
steps after the first, as `lm-bench` does.

    V/bin/python crates/learning/bench/lm_torch_twin.py [--dim 64 --layers 2 --heads 4]
        [--steps 300] [--batch 32] [--threads 2]

`V` is a venv with `torch` (`python3 -m venv V && V/bin/pip install torch`); CI does not need
it. Run it interleaved with `lm-bench` on the same machine (README, "Learning engine").
"""

import argparse
import time
from pathlib import Path

import torch
import torch.nn.functional as F
from torch import nn

CORPUS = Path(__file__).resolve().parent.parent / "data" / "wordnet-glosses.txt"
CONTEXT = 64


class Block(nn.Module):
    def __init__(self, dim, heads):
        super().__init__()
        self.heads = heads
        self.ln1 = nn.LayerNorm(dim, eps=1e-5)
        self.qkv = nn.Linear(dim, 3 * dim)
        self.proj = nn.Linear(dim, dim)
        self.ln2 = nn.LayerNorm(dim, eps=1e-5)
        self.fc = nn.Linear(dim, 4 * dim)
        self.out = nn.Linear(4 * dim, dim)

    def forward(self, h, mask):
        n, t, dim = h.shape
        q, k, v = self.qkv(self.ln1(h)).split(dim, -1)
        q, k, v = (x.view(n, t, self.heads, dim // self.heads).transpose(1, 2) for x in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / (dim // self.heads) ** 0.5
        o = s.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        h = h + self.proj(o.transpose(1, 2).reshape(n, t, dim))
        return h + self.out(F.relu(self.fc(self.ln2(h))))


class Lm(nn.Module):
    def __init__(self, dim, layers, heads):
        super().__init__()
        self.tok = nn.Embedding(256, dim)
        self.pos = nn.Embedding(CONTEXT, dim)
        self.blocks = nn.ModuleList(Block(dim, heads) for _ in range(layers))
        self.norm = nn.LayerNorm(dim, eps=1e-5)
        self.head = nn.Linear(dim, 256)
        for p in self.parameters():
            if p.dim() > 1:
                nn.init.normal_(p, std=0.02)
        self.register_buffer("mask", torch.ones(CONTEXT, CONTEXT, dtype=torch.bool).tril())

    def forward(self, x):
        h = self.tok(x) + self.pos.weight[: x.shape[1]]
        for block in self.blocks:
            h = block(h, self.mask)
        return self.head(self.norm(h))


def main():
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--dim", type=int, default=64)
    parser.add_argument("--layers", type=int, default=2)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--steps", type=int, default=300)
    parser.add_argument("--batch", type=int, default=32)
    parser.add_argument("--threads", type=int, default=2)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(1)
    text = torch.frombuffer(bytearray(CORPUS.read_bytes()), dtype=torch.uint8).to(torch.int64)
    count = (len(text) - 1) // CONTEXT
    windows = torch.stack([text[i * CONTEXT : i * CONTEXT + CONTEXT + 1] for i in range(count)])
    model = Lm(args.dim, args.layers, args.heads)
    opt = torch.optim.SGD(model.parameters(), lr=0.3, momentum=0.9)
    order = torch.randperm(count)

    def step(i):
        idx = order[(i * args.batch + torch.arange(args.batch)) % count]
        batch = windows[idx]
        logits = model(batch[:, :-1])
        loss = F.cross_entropy(logits.reshape(-1, 256), batch[:, 1:].reshape(-1))
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        return loss

    step(0)  # the first step touches every buffer; lm-bench leaves it out too
    started = time.perf_counter()
    for i in range(1, args.steps):
        loss = step(i)
    secs = time.perf_counter() - started
    tokens = (args.steps - 1) * args.batch * CONTEXT
    params = sum(p.numel() for p in model.parameters())
    print(
        f"pytorch {torch.__version__}: lm:{args.dim},{args.layers},{args.heads} ({params} "
        f"parameters), {tokens / secs:.0f} tokens/s ({args.steps - 1} steps in {secs:.2f} s "
        f"after the first, {args.threads} threads), last loss {loss.item():.3f}"
    )


if __name__ == "__main__":
    main()
