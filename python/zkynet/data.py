"""zkynet.data: datasets and loaders named after torch.utils.data.

    ds = data.TensorDataset(x, y)                  # numpy arrays, same first dimension
    loader = data.DataLoader(ds, batch_size=32, shuffle=True, seed=0)
    for xb, yb in loader:                          # each batch a list of numpy arrays
        ...
"""
from ._zkynet import data as _data

Dataset = _data.Dataset
TensorDataset = _data.TensorDataset
DataLoader = _data.DataLoader

__all__ = ["Dataset", "TensorDataset", "DataLoader"]
