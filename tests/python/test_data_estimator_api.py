"""The Python side of HDF5Dataset (lazy, chunked reads) and of the Estimator's callbacks and
per-sequence hooks."""
import numpy as np
import pytest

from zkynet import data, nn, optim
from zkynet.framework import op


def test_hdf5_dataset_reads_rows_lazily_one_read_per_dataset_and_batch(tmp_path):
    x = np.arange(40, dtype=np.float32).reshape(20, 2)
    y = np.arange(20, dtype=np.int64)
    path = str(tmp_path / "train.h5")
    data.write_hdf5(path, {"x": x, "y": y}, chunk_rows=4)
    ds = data.HDF5Dataset(path, ["x", "y"])
    assert len(ds) == 20 and ds.names == ["x", "y"]
    assert ds.read_stats() == (0, 0)
    xb, yb = ds.get_batch([3, 4, 5, 17])
    np.testing.assert_array_equal(xb, x[[3, 4, 5, 17]])
    np.testing.assert_array_equal(yb, y[[3, 4, 5, 17]])
    assert ds.read_stats() == (2, 8)
    batches = list(data.DataLoader(ds, batch_size=8, shuffle=True, seed=1))
    np.testing.assert_array_equal(np.sort(np.concatenate([b[1] for b in batches])), y)


def test_hdf5_dataset_names_a_missing_dataset(tmp_path):
    path = str(tmp_path / "d.h5")
    data.write_hdf5(path, {"x": np.zeros((3, 2))})
    with pytest.raises(IndexError, match="nope"):
        data.HDF5Dataset(path, ["x", "nope"])


def regression():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(64, 3)).astype(np.float32)
    return x, x.sum(axis=1, keepdims=True)


def test_estimator_callbacks_see_each_epoch_and_can_stop_training():
    x, y = regression()
    model = nn.Linear(3, 1)
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.05), epochs=10, batchsize=16,
                       verbose=False)
    seen = []
    est.add_callback(lambda log: seen.append(log["epoch"]))          # None: go on
    est.add_callback(lambda log: log["epoch"] < 3)                   # False at epoch 3: stop
    logs = est.fit(x, y)
    assert seen == [1, 2, 3]
    assert [l["epoch"] for l in logs] == [1, 2, 3]


def test_an_exception_in_a_callback_reaches_the_caller():
    x, y = regression()
    model = nn.Linear(3, 1)
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.05), epochs=2, verbose=False)

    def broken(log):
        raise ValueError("from the callback")
    est.add_callback(broken)
    with pytest.raises(ValueError, match="from the callback"):
        est.fit(x, y)


def test_on_sequence_start_is_called_for_each_group_of_series():
    # Series as (features, streams, time): 6 streams of 40 steps in windows of 10, 3 streams a batch.
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 6, 40)).astype(np.float32)
    y = 2 * x - 1
    model = nn.Linear(1, 1)
    starts = []
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.1), epochs=3, batchsize=3,
                       seqsize=10, verbose=False)
    est.on_sequence_start(lambda: starts.append(1))
    est.fit(x, y)
    assert len(starts) == 3 * 2  # two groups of 3 streams per epoch
