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
"""
from ._zkynet import data as _data

Dataset = _data.Dataset
TensorDataset = _data.TensorDataset


class DataLoader(_data.DataLoader):
    """Minibatches of a dataset, shuffled with a seed, as lists of arrays. `dataset` is a
    zkynet Dataset, or an array-like (a numpy memmap, an h5py dataset, an array) or a tuple of
    them, read batch by batch through an ArrayDataset (nothing loaded whole)."""

    def __init__(self, dataset, batch_size=1, shuffle=False, drop_last=False, seed=0):
        if not isinstance(dataset, _data.Dataset):
            dataset = _data.ArrayDataset(*(dataset if isinstance(dataset, tuple) else (dataset,)))
        super().__init__(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, seed=seed)

HDF5Dataset = _data.HDF5Dataset
ArrayDataset = _data.ArrayDataset
write_hdf5 = _data.write_hdf5

__all__ = ["Dataset", "TensorDataset", "DataLoader", "HDF5Dataset", "ArrayDataset", "write_hdf5"]
