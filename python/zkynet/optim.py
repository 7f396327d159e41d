"""zkynet.optim: optimizers named after torch.optim.

    opt = optim.SGD(model.parameters(), lr=0.1, momentum=0.9)
    opt.zero_grad(); loss.back(); opt.step()

    schedule = optim.WarmupCosineLR(opt, warmup_steps=100, total_steps=1000)   # per step, after opt.step()
"""
from ._zkynet import optim as _optim

Optimizer = _optim.Optimizer
SGD = _optim.SGD
Adam = _optim.Adam
AdamW = _optim.AdamW
RMSprop = _optim.RMSprop
StepLR = _optim.StepLR
CosineAnnealingLR = _optim.CosineAnnealingLR
WarmupCosineLR = _optim.WarmupCosineLR
clip_grad_norm = _optim.clip_grad_norm

__all__ = ["Optimizer", "SGD", "Adam", "AdamW", "RMSprop", "StepLR", "CosineAnnealingLR", "WarmupCosineLR", "clip_grad_norm"]
