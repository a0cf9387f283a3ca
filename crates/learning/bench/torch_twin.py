#!/usr/bin/env python3
"""PyTorch twin of `train-bench` (crates/learning/src/bin/train_bench.rs).

Same models (MLP 784-256-128-10; CNN conv16-conv32-linear, 3x3 "same" convolutions, ReLU,
2x2 max pooling), same data shape (8192 synthetic 28x28 samples in [0, 1), 10 random labels),
same optimiser (plain SGD, lr 0.01, momentum 0), same thread count, same batch sizes.
Prints one CSV line per case and repeat: `model,batch,samples_per_s`.

Install (not needed by CI):
    python3 -m venv ~/.cache/trainchain/torch-venv
    ~/.cache/trainchain/torch-venv/bin/pip install torch numpy
"""

import argparse
import time

import torch
from torch import nn

SAMPLES = 8192


def mlp():
    return nn.Sequential(
        nn.Linear(784, 256), nn.ReLU(), nn.Linear(256, 128), nn.ReLU(), nn.Linear(128, 10)
    )


def cnn():
    return nn.Sequential(
        nn.Unflatten(1, (1, 28, 28)),
        nn.Conv2d(1, 16, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Conv2d(16, 32, 3, padding=1), nn.ReLU(), nn.MaxPool2d(2),
        nn.Flatten(), nn.Linear(32 * 7 * 7, 10),
    )


CASES = [
    ("MLP 784-256-128-10", mlp, 64),
    ("MLP 784-256-128-10", mlp, 256),
    ("CNN conv16-conv32-linear", cnn, 64),
    ("CNN conv16-conv32-linear", cnn, 256),
]


def run(build, batch, x, y, steps):
    """Samples/s of `steps` SGD steps on batches drawn from a seeded permutation, as ours."""
    torch.manual_seed(1)
    model = build()
    opt = torch.optim.SGD(model.parameters(), lr=0.01, momentum=0.0)
    loss_fn = nn.CrossEntropyLoss()
    order = torch.randperm(SAMPLES)
    started = time.perf_counter()
    for step in range(steps):
        start = (step * batch) % (SAMPLES - batch + 1)
        idx = order[start:start + batch]
        opt.zero_grad(set_to_none=True)
        loss = loss_fn(model(x[idx]), y[idx])
        loss.backward()
        opt.step()
    return steps * batch / (time.perf_counter() - started)


def main():
    parser = argparse.ArgumentParser()
    parser.add_argument("--threads", type=int, default=torch.get_num_threads())
    parser.add_argument("--repeats", type=int, default=1)
    parser.add_argument("--secs", type=float, default=0.5)
    args = parser.parse_args()
    torch.set_num_threads(args.threads)
    gen = torch.Generator().manual_seed(0)
    x = torch.rand(SAMPLES, 784, generator=gen)
    y = torch.randint(0, 10, (SAMPLES,), generator=gen)
    # Calibrate like train-bench: a short warm-up run sets the steps that fill `secs`.
    steps = {}
    for name, build, batch in CASES:
        rate = run(build, batch, x, y, 5)
        steps[(name, batch)] = max(5, int(args.secs * rate / batch))
    for _ in range(args.repeats):
        for name, build, batch in CASES:
            rate = run(build, batch, x, y, steps[(name, batch)])
            print(f"{name},{batch},{rate:.1f}", flush=True)


if __name__ == "__main__":
    main()
