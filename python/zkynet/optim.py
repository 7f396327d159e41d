"""zkynet.optim: optimizers named after torch.optim.

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.back(); opt.step()
"""
from ._zkynet import optim as _optim

SGD = _optim.SGD

__all__ = ["SGD"]
