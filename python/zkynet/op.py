"""zkynet.op: the very module zkynet.framework.op, under a shorter import path (one module,
two names: `zkynet.op is zkynet.framework.op`)."""
import sys

from .framework import op as _op

sys.modules[__name__] = _op
