#!/usr/bin/env python3
"""Rebuilds trainchain's byte-level transformer in PyTorch from its safetensors export and
checks that it computes the same held-out loss and next-byte accuracy as trainchain did.

    cargo run --release -p learning --bin lm-bench -- --steps 300 --save /tmp/lm
    V/bin/python crates/learning/bench/lm_torch_rebuild.py /tmp/lm

`V` is a venv with `torch` and `safetensors` (`python3 -m venv V && V/bin/pip install torch
safetensors`); CI does not need it. The forward pass below is the one in
`crates/learning/README.md` ("The byte-level transformer"), written only from the exported
tensors and the spec: if it matches, anyone can load the model without trainchain. Exits 1
when the loss differs by more than `TOLERANCE` nats or the accuracy by more than one
prediction in a thousand.
"""

import json
import math
import sys
from pathlib import Path

import torch
import torch.nn.functional as F
from safetensors.torch import load_file

# f32 in a different summation order than trainchain's kernel: agreement to a few 1e-6 nats
# per byte is the expected difference; a wrong layout or a missing scale is off by 0.1 or more.
TOLERANCE = 1e-4


def lm_logits(w, x, heads, layers):  # x: [n, T] int64 bytes, T <= context
    n, T = x.shape
    h = w["embed.tok.weight"][x] + w["embed.pos.weight"][:T]
    dim = h.shape[-1]
    mask = torch.ones(T, T, dtype=torch.bool).tril()
    for i in range(layers):
        b = f"block{i}."
        a = F.layer_norm(h, (dim,), w[b + "ln1.weight"], w[b + "ln1.bias"], eps=1e-5)
        q, k, v = F.linear(a, w[b + "attn.qkv.weight"], w[b + "attn.qkv.bias"]).split(dim, -1)
        q, k, v = (t.view(n, T, heads, dim // heads).transpose(1, 2) for t in (q, k, v))
        s = (q @ k.transpose(-1, -2)) / (dim // heads) ** 0.5
        o = s.masked_fill(~mask, float("-inf")).softmax(-1) @ v
        o = o.transpose(1, 2).reshape(n, T, dim)
        h = h + F.linear(o, w[b + "attn.proj.weight"], w[b + "attn.proj.bias"])
        m = F.layer_norm(h, (dim,), w[b + "ln2.weight"], w[b + "ln2.bias"], eps=1e-5)
        f = F.relu(F.linear(m, w[b + "mlp.fc.weight"], w[b + "mlp.fc.bias"]))
        h = h + F.linear(f, w[b + "mlp.proj.weight"], w[b + "mlp.proj.bias"])
    h = F.layer_norm(h, (dim,), w["head.norm.weight"], w["head.norm.bias"], eps=1e-5)
    return F.linear(h, w["head.out.weight"], w["head.out.bias"])  # [n, T, vocab]


def main():
    if len(sys.argv) != 2:
        sys.exit(__doc__)
    folder = Path(sys.argv[1])
    weights = load_file(folder / "model.safetensors")
    windows = load_file(folder / "held_out.safetensors")["features"].to(torch.int64)
    expected = json.loads((folder / "eval.json").read_text())
    spec = expected["spec"]
    if spec["kind"] != "transformer":
        sys.exit(f"not a transformer: {spec}")
    x, y = windows[:, :-1], windows[:, 1:]
    with torch.no_grad():
        logits = lm_logits(weights, x, spec["heads"], spec["layers"])
    # Per window: the mean over its positions; then the mean over windows (trainchain's loss).
    per_position = F.cross_entropy(logits.transpose(1, 2), y, reduction="none")
    loss = per_position.double().mean(dim=1).mean().item()
    accuracy = (logits.argmax(-1) == y).double().mean().item()
    print(
        f"{len(windows)} held-out windows: PyTorch loss {loss:.6f} nats "
        f"({loss / math.log(2):.4f} bits per byte), accuracy {accuracy:.4f}; "
        f"trainchain {expected['loss']:.6f} nats, accuracy {expected['accuracy']:.4f}"
    )
    if abs(loss - expected["loss"]) > TOLERANCE or abs(accuracy - expected["accuracy"]) > 1e-3:
        sys.exit("MISMATCH: the PyTorch rebuild does not compute what trainchain computed")
    print("the PyTorch rebuild matches")


if __name__ == "__main__":
    main()
