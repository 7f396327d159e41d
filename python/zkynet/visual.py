"""Graph pictures: `plot_cg` writes a graph as Graphviz DOT and, when graphviz is installed, PNG.

    from zkynet.visual import plot_cg
    paths = plot_cg(result.root, title="simple model")   # ['zkynet-graphs/simple_model.dot', '...png']
"""
import os
import re

from ._zkynet import visual as _visual

to_dot = _visual.to_dot
graphviz_available = _visual.graphviz_available


def plot_cg(root, wait=None, title="", directory="zkynet-graphs", formats=("png",), show_values=True):
    """Writes the graph of `root` (a Node or a ModuleGraph) under `directory` and returns the paths.

    Headless: nothing is shown on screen. `wait` is accepted for compatibility with zkynet's
    original API (which kept a window open for `wait` seconds) and is ignored.
    """
    del wait
    os.makedirs(directory, exist_ok=True)
    stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", title).strip("_") or "graph"
    base = os.path.join(directory, stem)
    return _visual.render_graph(root, base, title=title, show_values=show_values, formats=list(formats))


__all__ = ["plot_cg", "to_dot", "graphviz_available"]
