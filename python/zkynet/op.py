"""zkynet.op: the operators, named after torch.nn.functional where one exists."""
from .framework.op import *  # noqa: F401,F403
from .framework.op import __all__  # noqa: F401
