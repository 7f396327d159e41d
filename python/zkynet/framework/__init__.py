"""zkynet's graph framework: `cg` (modules, operators, graphs) and `op` (operators)."""
from . import cg, op  # noqa: F401
