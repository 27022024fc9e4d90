#!/usr/bin/env python3
"""The figure of what a user's usual tool takes: one epoch of the same MLP
(784-256-128-10, ReLU, softmax cross-entropy, SGD with momentum 0.9) over the
same 60,000 Fashion-MNIST training images in PyTorch on the CPU, one process.

    python3 benchmarks/peers/torch_mlp.py [--batch 32 256] [--epochs 2] [--threads 2]

Prints seconds per epoch (the median over epochs after the first), the test
accuracy after the last epoch and the BLAS library the process loaded, one
line per batch size. Reads the IDX files with the standard library only
(gzip, struct); needs python3-torch. Debian's PyTorch does its GEMMs through
libblas.so.3: with libopenblas0-pthread installed that is OpenBLAS, without it
the reference BLAS, about 20 times slower for these matrices.
"""
import argparse
import gzip
import os
import statistics
import struct
import time

import torch


def read_idx(path):
    with gzip.open(path, "rb") as f:
        data = f.read()
    magic = struct.unpack(">I", data[:4])[0]
    if magic == 0x803:
        n, rows, cols = struct.unpack(">III", data[4:16])
        return torch.frombuffer(bytearray(data[16:]), dtype=torch.uint8).reshape(n, rows * cols)
    if magic == 0x801:
        (n,) = struct.unpack(">I", data[4:8])
        return torch.frombuffer(bytearray(data[8:]), dtype=torch.uint8).long()
    raise ValueError(f"{path}: not an IDX file")


def blas_library():
    """The BLAS libraries mapped into this process, by file name."""
    with open("/proc/self/maps") as f:
        names = {os.path.basename(line.split()[-1]) for line in f
                 if "blas" in os.path.basename(line.split()[-1])}
    return ", ".join(sorted(names)) or "none"


def main():
    p = argparse.ArgumentParser()
    p.add_argument("--data", default="/usr/share/datasets/fashion-mnist")
    p.add_argument("--batch", type=int, nargs="+", default=[32, 256])
    p.add_argument("--epochs", type=int, default=2)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--lr", type=float, default=0.05)
    a = p.parse_args()
    torch.set_num_threads(a.threads)
    torch.manual_seed(1)
    x = read_idx(f"{a.data}/train-images-idx3-ubyte.gz").float() / 255.0
    y = read_idx(f"{a.data}/train-labels-idx1-ubyte.gz")
    tx = read_idx(f"{a.data}/t10k-images-idx3-ubyte.gz").float() / 255.0
    ty = read_idx(f"{a.data}/t10k-labels-idx1-ubyte.gz")
    mean, std = x.mean(), x.std()
    x, tx = (x - mean) / std, (tx - mean) / std
    for batch in a.batch:
        model = torch.nn.Sequential(
            torch.nn.Linear(784, 256), torch.nn.ReLU(),
            torch.nn.Linear(256, 128), torch.nn.ReLU(),
            torch.nn.Linear(128, 10))
        opt = torch.optim.SGD(model.parameters(), lr=a.lr, momentum=0.9)
        loss_fn = torch.nn.CrossEntropyLoss()
        times = []
        for _ in range(a.epochs):
            order = torch.randperm(x.shape[0])
            start = time.perf_counter()
            for i in range(0, x.shape[0] - batch + 1, batch):
                idx = order[i:i + batch]
                opt.zero_grad()
                loss = loss_fn(model(x[idx]), y[idx])
                loss.backward()
                opt.step()
            times.append(time.perf_counter() - start)
        with torch.no_grad():
            acc = (model(tx).argmax(1) == ty).float().mean().item()
        steady = times[1:] or times
        print(f"pytorch {torch.__version__} cpu, {a.threads} threads, batch {batch}: "
              f"{statistics.median(steady):.2f} s per epoch (epochs: "
              f"{', '.join(f'{t:.2f}' for t in times)}), test accuracy {acc:.4f}, BLAS {blas_library()}",
              flush=True)


if __name__ == "__main__":
    main()
