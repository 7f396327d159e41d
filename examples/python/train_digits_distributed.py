"""Trains the digits MLP of train_digits.py on several processes: data-parallel with the
Estimator (every rank trains on its shard of each minibatch, gradients averaged), or with
--pipeline on one stage of layers per rank (GPipe micro-batches). Prints the held-out
accuracy on rank 0 (data-parallel) or on the last stage (pipeline).

    mpiexec -n 2 .venv/bin/python examples/python/train_digits_distributed.py [--pipeline] [--epochs 30]
"""
import argparse

import numpy as np

from train_digits import load_digits
from zkynet import distributed as dist
from zkynet import nn, optim
from zkynet.framework import op

COMM = dist.COMM_WORLD


def make_mlp(seed=0):
    """The same model on every rank: data-parallel broadcasts rank 0's anyway, but a pipeline
    stage keeps the layers this rank built."""
    nn.manual_seed(seed)
    return nn.Sequential(nn.Linear(64, 64), nn.ReLU(), nn.Linear(64, 10))


def accuracy(logits, labels):
    return float(np.mean(np.argmax(logits, axis=1) == labels))


def train_data_parallel(x_train, y_train, x_test, y_test, epochs):
    model = make_mlp()
    dp = dist.DataParallel(model)
    est = nn.Estimator(model, op.cross_entropy, optim.SGD(model.parameters(), lr=0.1, momentum=0.9), epochs=epochs,
                       batchsize=64, seed=0)
    dp.attach(est)  # progress is printed by rank 0 only
    est.fit(x_train, y_train)
    if COMM.rank == 0:
        print(f"data-parallel (ranks: {COMM.size}): test accuracy {accuracy(est.predict(x_test), y_test):.4f} "
              f"({len(y_test)} images)")


def train_pipeline(x_train, y_train, x_test, y_test, epochs, batch_size=64):
    model = make_mlp()
    pipe = dist.Pipeline(model, micro_batches=4)
    opt = optim.SGD(pipe.parameters(), lr=0.1, momentum=0.9)
    rng = np.random.default_rng(0)  # the same batches on every rank
    for epoch in range(1, epochs + 1):
        order, total = rng.permutation(len(y_train)), 0.0
        for start in range(0, len(order), batch_size):
            batch = order[start:start + batch_size]
            opt.zero_grad()
            total += pipe.train_step(x_train[batch], y_train[batch], op.cross_entropy) * len(batch)
            opt.step()
        if COMM.rank == 0 and epoch % 10 == 0:
            print(f"epoch {epoch:3d}  loss {total / len(order):.4f}")
    logits = pipe.predict(x_test)  # every stage takes part; the last gets the logits
    if pipe.is_last:
        begin, end = pipe.layers
        print(f"pipeline of {pipe.stages} stages (the last: layers {begin}-{end - 1}): test accuracy "
              f"{accuracy(logits, y_test):.4f} ({len(y_test)} images)")


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--pipeline", action="store_true", help="one stage of layers per rank instead of data-parallel")
    ap.add_argument("--epochs", type=int, default=30)
    args = ap.parse_args()
    data = load_digits(seed=0)
    if args.pipeline:
        train_pipeline(*data, args.epochs)
    else:
        train_data_parallel(*data, args.epochs)


if __name__ == "__main__":
    main()
