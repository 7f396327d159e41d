"""Trains an MLP on the handwritten digits (Debian's python3-sklearn ships them) from Python,
prints held-out accuracy, and draws one training step's graph.

    .venv/bin/python examples/python/train_digits.py [--epochs 30] [--graphs zkynet-graphs]
"""
import argparse
import gzip
import time

import numpy as np

from zkynet import nn, optim
from zkynet.framework import cg, op
from zkynet.visual import plot_cg

DIGITS = "/usr/lib/python3/dist-packages/sklearn/datasets/data/digits.csv.gz"


def load_digits(seed=0, test_fraction=0.2):
    """(x_train, y_train, x_test, y_test): 8x8 images scaled to [0, 1], int64 labels."""
    with gzip.open(DIGITS, "rt") as f:
        data = np.loadtxt(f, delimiter=",")
    x = (data[:, :-1] / 16.0).astype(np.float32)
    y = data[:, -1].astype(np.int64)
    order = np.random.default_rng(seed).permutation(len(y))
    n_test = int(len(y) * test_fraction)
    test, train = order[:n_test], order[n_test:]
    return x[train], y[train], x[test], y[test]


class MLP(cg.Module):
    def __init__(self, hidden=64):
        super().__init__(inputs=(cg.Variable("x"),))
        self.l1 = nn.Linear(64, hidden)
        self.l2 = nn.Linear(hidden, 10)

    def call(self, x):
        return self.l2(op.relu(self.l1(x)))


class Loss(cg.Module):
    """Cross entropy of a model's logits; labels are not differentiated."""

    def __init__(self, model):
        super().__init__(inputs=(cg.Variable("x"), cg.Variable("y").requires_grad(False)))
        self.model = model

    def call(self, x, y):
        return op.cross_entropy(self.model(x), y)


def accuracy(model, x, y):
    with cg.no_grad():
        logits = model(x).value
    return float(np.mean(np.argmax(logits, axis=1) == y))


def train(epochs=30, batch_size=64, lr=0.1, seed=0, log=print):
    nn.manual_seed(seed)
    x_train, y_train, x_test, y_test = load_digits(seed)
    model = MLP()
    loss_module = Loss(model)
    opt = optim.SGD(model.parameters(), lr=lr, momentum=0.9)
    rng = np.random.default_rng(seed)
    for epoch in range(epochs):
        order = rng.permutation(len(y_train))
        start, total = time.perf_counter(), 0.0
        for i in range(0, len(order), batch_size):
            batch = order[i:i + batch_size]
            r = loss_module(x_train[batch], y_train[batch])
            opt.zero_grad()
            r.back()
            opt.step()
            total += float(r.value) * len(batch)
        if log and (epoch % 5 == 4 or epoch == epochs - 1):
            rate = len(order) / (time.perf_counter() - start)
            log(f"epoch {epoch + 1:3d}  loss {total / len(order):.4f}  {rate:,.0f} samples/s  "
                f"test accuracy {accuracy(model, x_test, y_test):.4f}")
    return model, loss_module, accuracy(model, x_test, y_test)


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--epochs", type=int, default=30)
    ap.add_argument("--graphs", default="zkynet-graphs")
    args = ap.parse_args()
    model, loss_module, acc = train(args.epochs)
    print(f"held-out accuracy {acc:.4f} on {int(1797 * 0.2)} test images")
    x_train, y_train, _, _ = load_digits()
    step = loss_module(x_train[:8], y_train[:8])
    print("graph of one step:", plot_cg(step, title="digits_mlp_step", directory=args.graphs))


if __name__ == "__main__":
    main()
