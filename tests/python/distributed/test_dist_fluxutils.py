"""FluxUtils' own tests (test/runtests.jl, test/mpi.jl) under mpiexec: an LSTM learns the mean of
x's features per step, fit data-parallel with each rank training on its share of the streams,
to FluxUtils' bound, mse(y, predict(x)) < 0.01. FluxUtils' hyperparameters (LSTM(10, 10) and
Dense(10, 1), AdamW at 1e-3, 10 epochs, seqsize 100, 10 groups of streams); 100 streams of
500 steps instead of 1000 of 1000, so the test takes seconds."""
import numpy as np

from dist_testing import SIZE
from zkynet import distributed as dist
from zkynet import nn, op, optim

F, N, T = 10, 100, 500


def fluxutils_series():
    x = np.random.default_rng(1234).standard_normal((F, N, T)).astype(np.float32)
    return x, x.mean(axis=0, keepdims=True)


def test_fluxutils_lstm_trains_data_parallel_on_its_share_of_the_streams():
    x, y = fluxutils_series()
    nn.manual_seed(0)
    lstm = nn.LSTM(10, 10, stateful=True)
    model = nn.Sequential(lstm, nn.Linear(10, 1))
    streams_seen = []

    def seqloss(prediction, target):  # prediction (seq, streams, 1): this rank's streams
        streams_seen.append(prediction.shape[1])
        return op.mse_loss(prediction, target)

    est = nn.Estimator(model, seqloss, optim.AdamW(model.parameters(), lr=1e-3), epochs=10, batchsize=10,
                       seqsize=100, verbose=False)
    est.on_sequence_start(lstm.reset_state)
    dist.DataParallel(model).attach(est)
    est.fit(x, y)

    # Every stream of every window trained once per epoch, over all ranks together.
    assert max(streams_seen) <= -(-10 // SIZE)
    total = float(dist.allreduce_array(np.array(float(sum(streams_seen))))[()])
    assert total == 10 * N * (T // 100)
    for name, p in model.named_parameters():
        value = np.asarray(p.value)
        assert np.array_equal(dist.bcast_array(value, 0), value), name
    y_hat = np.zeros_like(y)
    est.predict(x, out=y_hat)  # FluxUtils' predict!(ŷ, est, x)
    assert float(((y_hat - y) ** 2).mean()) < 0.01
