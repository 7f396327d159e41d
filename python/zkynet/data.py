"""zkynet.data: datasets and loaders named after torch.utils.data.

    ds = data.TensorDataset(x, y)                  # numpy arrays, same first dimension
    loader = data.DataLoader(ds, batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader:                          # each batch a list of numpy arrays
        ...

    data.write_hdf5("train.h5", {"x": x, "y": y})  # chunked by rows
    ds = data.HDF5Dataset("train.h5", ["x", "y"])  # lazy: one read per dataset and batch

    x = np.load("x.npy", mmap_mode="r")            # or h5py.File("d.h5")["x"]
    ds = data.ArrayDataset(x, y)                   # lazy: each batch read through x[i:j]
    loader = data.DataLoader((x, y), batch_size=256)   # arrays: an ArrayDataset of them
    loader = data.DataLoader(ds, batch_size=256, pin_memory=True, device="cuda")  # Tensors on a GPU
"""
import warnings

from ._zkynet import cuda as _cuda
from ._zkynet import data as _data

Dataset = _data.Dataset
TensorDataset = _data.TensorDataset


class DataLoader(_data.DataLoader):
    """Minibatches of a dataset, shuffled with a seed, as lists of arrays. `dataset` is a
    zkynet Dataset, or an array-like (a numpy memmap, an h5py dataset, an array) or a tuple of
    them, read batch by batch through an ArrayDataset (nothing loaded whole).

    pin_memory (torch's name): batches are copied into pinned host memory, so copies to a GPU
    run asynchronously; ignored with a UserWarning when no CUDA device answers, as in torch.
    device (a zkynet extension): batches are zkynet Tensors delivered on that device ("cpu",
    "cuda", "cuda:1"); the next batch's copy to a GPU runs on a second stream while the
    current one is used. Without device, batches are numpy arrays as before."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=0, pin_memory=False,
                 device=None):
        if not isinstance(dataset, _data.Dataset):
            dataset = _data.ArrayDataset(*(dataset if isinstance(dataset, tuple) else (dataset,)))
        if pin_memory and not _cuda.is_available():
            warnings.warn("DataLoader: pin_memory=True is ignored: no CUDA device answers on this machine, "
                          "so batches stay in pageable memory", UserWarning, stacklevel=2)
            pin_memory = False
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed,
                         pin_memory=pin_memory, device=device)
        self._tensors = device is not None

    def __iter__(self):
        return self._iter_tensors() if self._tensors else super().__iter__()

HDF5Dataset = _data.HDF5Dataset
ArrayDataset = _data.ArrayDataset
write_hdf5 = _data.write_hdf5

__all__ = ["Dataset", "TensorDataset", "DataLoader", "HDF5Dataset", "ArrayDataset", "write_hdf5"]
