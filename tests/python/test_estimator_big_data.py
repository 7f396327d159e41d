"""Data larger than memory from Python: the Estimator and DataLoader read h5py datasets, numpy
memmaps and zkynet's HDF5Dataset batch by batch (series: window by window) instead of copying
them whole. The big cases run a subprocess under a memory limit smaller than the data."""
import json
import os
import subprocess
import sys
import textwrap

import h5py
import numpy as np
import pytest

from zkynet import data, nn, optim
from zkynet.framework import op

PYTHON = "/usr/bin/python3"
MB = 1 << 20
FEATURES = 256                 # float32: 1 KiB a row
BIG_ROWS = 800 * 1024          # 800 MiB of x
MEMMAP_ROWS = 600 * 1024       # 600 MiB of x
MARGIN = 400 * MB              # what the limited process may use beyond its baseline: half the data


def run_python(code, *args, limit_kb=None):
    """Runs `code` in a fresh interpreter (under `ulimit -v limit_kb` when given); its
    completed process."""
    script = "import sys; sys.argv[1:] = %r\n" % (list(args),) + textwrap.dedent(code)
    command = [PYTHON, "-c", script]
    if limit_kb is not None:
        command = ["bash", "-c", 'ulimit -v %d; exec "$@"' % limit_kb, "bash"] + command
    env = dict(os.environ, PYTHONPATH=os.pathsep.join(p for p in sys.path if p), OMP_NUM_THREADS="1",
               OPENBLAS_NUM_THREADS="1")
    return subprocess.run(command, capture_output=True, text=True, env=env, timeout=120)


def status_kb(field):
    return "int(next(l.split()[1] for l in open('/proc/self/status') if l.startswith('%s:')))" % field


def baseline_virtual_kb():
    """The interpreter's virtual size after importing zkynet, h5py and numpy."""
    done = run_python("""
        import h5py, numpy, zkynet
        from zkynet import data, nn, optim
        print(%s)
    """ % status_kb("VmSize"))
    assert done.returncode == 0, done.stderr
    return int(done.stdout.split()[-1])


def write_rows(create, rows, seed=0):
    """Fills x (rows, FEATURES) float32 and y = x[:, :1] block by block (64 Mi of x at a time),
    through create(name, shape) -> a writable array-like."""
    block = np.random.default_rng(seed).standard_normal((64 * 1024, FEATURES), dtype=np.float32)
    x, y = create("x", (rows, FEATURES)), create("y", (rows, 1))
    for start in range(0, rows, len(block)):
        n = min(len(block), rows - start)
        x[start:start + n] = block[:n]
        y[start:start + n] = block[:n, :1]


@pytest.fixture(scope="module")
def big_h5(tmp_path_factory):
    path = str(tmp_path_factory.mktemp("big") / "big.h5")
    with h5py.File(path, "w") as f:
        write_rows(lambda name, shape: f.create_dataset(name, shape, dtype="f4"), BIG_ROWS)
    return path


TRAIN_FROM_H5 = """
    import h5py
    from zkynet import data, nn, optim
    from zkynet.framework import op
    path = sys.argv[1]
    model = nn.Linear(%d, 1)
    # In file order: a shuffled epoch of 800k rows reads row by row (~10 s), tested on small data.
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=1e-3), epochs=1, batchsize=8192,
                       shuffle=False, verbose=False)
    with h5py.File(path, "r") as f:
        h5py_loss = est.fit(f["x"], f["y"])[0]["loss"]        # h5py datasets, read batch by batch
    ds = data.HDF5Dataset(path, ["x", "y"])
    zkynet_loss = est.fit(ds)[0]["loss"]                       # zkynet's own, passed straight in
    rows = sum(len(yb) for _, yb in data.DataLoader(ds, batch_size=8192))
    print(rows, h5py_loss, zkynet_loss)
""" % FEATURES

# The control imports what the baseline and the training run import (with CUDA built in, zkynet
# maps the CUDA libraries: hundreds of MiB of address space), so that only the data differs.
LOAD_WHOLE = """
    import h5py
    from zkynet import data, nn, optim
    with h5py.File(sys.argv[1], "r") as f:
        try:
            x = f["x"][:]
        except MemoryError:
            print("MemoryError")
            raise SystemExit(0)
    print("loaded", x.nbytes)
"""


def test_an_hdf5_file_larger_than_the_memory_limit_trains_and_iterates(big_h5):
    data_bytes = BIG_ROWS * FEATURES * 4
    assert MARGIN < data_bytes
    limit_kb = baseline_virtual_kb() + MARGIN // 1024
    done = run_python(TRAIN_FROM_H5, big_h5, limit_kb=limit_kb)
    assert done.returncode == 0, done.stderr[-3000:]
    rows, h5py_loss, zkynet_loss = done.stdout.split()
    assert int(rows) == BIG_ROWS
    assert np.isfinite(float(h5py_loss)) and np.isfinite(float(zkynet_loss))
    # The control: the same limit refuses the data loaded whole, so the limit is real.
    control = run_python(LOAD_WHOLE, big_h5, limit_kb=limit_kb)
    assert control.stdout.split()[:1] == ["MemoryError"], control.stdout + control.stderr[-2000:]


@pytest.fixture(scope="module")
def big_memmap(tmp_path_factory):
    folder = tmp_path_factory.mktemp("memmap")
    paths = {}

    def create(name, shape):
        paths[name] = str(folder / (name + ".npy"))
        return np.lib.format.open_memmap(paths[name], mode="w+", dtype=np.float32, shape=shape)

    write_rows(create, MEMMAP_ROWS, seed=1)
    return paths["x"], paths["y"]


# A memmap maps its whole file, so a virtual-memory limit cannot tell lazy reads from eager
# ones; resident memory can: the peak (VmHWM) grows by what the process touched and kept.
MEMMAP_RUN = """
    import json
    import numpy as np
    from zkynet import data, nn, optim
    from zkynet.framework import op
    x, y = np.load(sys.argv[1], mmap_mode="r"), np.load(sys.argv[2], mmap_mode="r")
    before = %s
    if sys.argv[3] == "zkynet":
        model = nn.Linear(x.shape[1], 1)
        est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=1e-3), epochs=1, batchsize=8192,
                           shuffle=False, verbose=False)
        est.fit(x, y)
        for xb, yb in data.DataLoader(data.ArrayDataset(x, y), batch_size=8192, shuffle=True):
            pass
    else:  # the control: numpy reads every row through the mapping
        total = sum(float(x[i:i + 65536].sum()) for i in range(0, len(x), 65536))
    print(json.dumps({"growth_kb": %s - before}))
""" % (status_kb("VmHWM"), status_kb("VmHWM"))


def test_a_memmap_is_read_batch_by_batch_without_keeping_its_pages(big_memmap):
    data_kb = MEMMAP_ROWS * FEATURES * 4 // 1024
    lazy = run_python(MEMMAP_RUN, *big_memmap, "zkynet")
    assert lazy.returncode == 0, lazy.stderr[-3000:]
    control = run_python(MEMMAP_RUN, *big_memmap, "numpy")
    assert control.returncode == 0, control.stderr[-3000:]
    growth, control_growth = json.loads(lazy.stdout)["growth_kb"], json.loads(control.stdout)["growth_kb"]
    assert control_growth > 0.8 * data_kb  # the measure sees pages kept mapped
    assert growth < data_kb / 5


# ---- the same results as in memory, on small data --------------------------------------------

def small_regression(n=90, seed=3):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3))
    return x, x @ np.array([[1.0], [-2.0], [0.5]])


def fit_history(x, y, **spec):
    nn.manual_seed(7)
    model = nn.Linear(3, 1, dtype="float64")
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.05), epochs=3, batchsize=16,
                       validation_split=0.2, seed=2, verbose=False, **spec)
    return [(log["loss"], log["val_loss"]) for log in est.fit(x, y)], est


def test_h5py_datasets_train_as_the_same_arrays_in_memory(tmp_path):
    x, y = small_regression()
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
        assert fit_history(f["x"], f["y"])[0] == fit_history(x, y)[0]


def test_a_memmap_trains_as_the_same_array_in_memory(tmp_path):
    x, y = small_regression()
    np.save(tmp_path / "x.npy", x)
    assert fit_history(np.load(tmp_path / "x.npy", mmap_mode="r"), y)[0] == fit_history(x, y)[0]


def test_an_hdf5_dataset_is_passed_straight_in_and_read_once_per_epoch(tmp_path):
    x, y = small_regression()
    path = str(tmp_path / "d.h5")
    data.write_hdf5(path, {"x": x, "y": y}, chunk_rows=8)
    ds = data.HDF5Dataset(path, ["x", "y"])
    nn.manual_seed(7)
    model = nn.Linear(3, 1, dtype="float64")
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.05), epochs=3, batchsize=16,
                       validation_split=0.2, seed=2, verbose=False)
    history = [(log["loss"], log["val_loss"]) for log in est.fit(ds)]
    assert history == fit_history(x, y)[0]
    assert ds.read_stats()[1] == 3 * 2 * 90  # every row of x and y once per epoch


def test_h5py_series_are_read_window_by_window_as_in_memory(tmp_path):
    rng = np.random.default_rng(5)
    x = rng.normal(size=(1, 6, 40))
    y = 2 * x - 1
    with h5py.File(tmp_path / "s.h5", "w") as f:
        f["x"], f["y"] = x, y
        histories = []
        for xs, ys in ((f["x"], f["y"]), (x, y)):
            nn.manual_seed(1)
            model = nn.Linear(1, 1, dtype="float64")
            est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.1), epochs=2, batchsize=3,
                               seqsize=10, validation_split=0.25, verbose=False)
            histories.append([(log["loss"], log["val_loss"]) for log in est.fit(xs, ys)])
        assert histories[0] == histories[1]


def test_array_dataset_batches_equal_tensor_dataset_batches(tmp_path):
    x, y = small_regression(50)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["x"], f["y"] = x, y
        lazy = data.ArrayDataset(f["x"], f["y"])
        assert lazy.reads == 0  # nothing read up front
        for a, b in zip(data.DataLoader(lazy, batch_size=16, shuffle=True, seed=4),
                        data.DataLoader(data.TensorDataset(x, y), batch_size=16, shuffle=True, seed=4)):
            np.testing.assert_array_equal(a[0], b[0])
            np.testing.assert_array_equal(a[1], b[1])


def test_a_data_loader_takes_array_likes_and_tuples_of_them(tmp_path):
    x, y = small_regression(40)
    np.save(tmp_path / "x.npy", x)
    with h5py.File(tmp_path / "d.h5", "w") as f:
        f["y"] = y
        loader = data.DataLoader((np.load(tmp_path / "x.npy", mmap_mode="r"), f["y"]), batch_size=16)
        batches = list(loader)
        assert len(loader) == 3 and [len(b[0]) for b in batches] == [16, 16, 8]
        np.testing.assert_array_equal(np.concatenate([b[0] for b in batches]), x)
        np.testing.assert_array_equal(np.concatenate([b[0] for b in data.DataLoader(f["y"], batch_size=16)]), y)


def test_array_dataset_refuses_arrays_whose_rows_differ_and_non_arrays(tmp_path):
    with pytest.raises(ValueError, match=r"array 1 .*\(4,\).*\(5,2\)"):
        data.ArrayDataset(np.zeros((5, 2)), np.zeros(4))
    with pytest.raises(TypeError, match="not array-like"):
        data.ArrayDataset(object())


def test_predict_from_a_memmap_into_a_memmap(tmp_path):
    x, _ = small_regression(40)
    np.save(tmp_path / "x.npy", x)
    model = nn.Linear(3, 1, dtype="float64")
    est = nn.Estimator(model, op.mse_loss, optim.SGD(model.parameters(), lr=0.1), batchsize=16, verbose=False)
    out = np.lib.format.open_memmap(str(tmp_path / "p.npy"), mode="w+", dtype=np.float64, shape=(40, 1))
    assert est.predict(np.load(tmp_path / "x.npy", mmap_mode="r"), out=out) is out
    np.testing.assert_allclose(out, est.predict(x), rtol=1e-12)
