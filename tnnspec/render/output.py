"""Writing a picture: ``.svg``/``.png``/``.pdf`` through graphviz's programs, or ``.dot`` text."""

from __future__ import annotations

import subprocess
from pathlib import Path

import graphviz

IMAGE_FORMATS = ("svg", "png", "pdf")
TEXT_FORMATS = ("dot", "gv")
NO_DOT = ("the graphviz 'dot' program is not installed; install it (apt-get install graphviz) "
          "or write .dot text instead")


class RenderError(RuntimeError):
    """A picture could not be written (graphviz missing, unknown format, layout failure)."""


def render(dot: graphviz.Digraph, out_path, *, dpi: int = 144) -> Path:
    """Write ``dot`` to ``out_path``; the suffix picks the format: ``.svg``, ``.png``, ``.pdf``
    (laid out by the graph's engine, needs the graphviz programs) or ``.dot``/``.gv`` (DOT text,
    needs nothing). ``dpi`` sets the resolution of PNGs. Returns the path written.

    Raises :class:`RenderError` when graphviz is not installed, the suffix is unknown, or
    graphviz fails.
    """
    path = Path(out_path)
    fmt = path.suffix.lower().lstrip(".")
    if fmt in TEXT_FORMATS:
        path.write_text(dot.source, encoding="utf-8")
        return path
    if fmt not in IMAGE_FORMATS:
        raise RenderError(f"cannot write '{path.name}': unknown picture format "
                          f"'{path.suffix or '(none)'}'; use .svg, .png, .pdf or .dot")
    graph = dot
    if fmt == "png":
        graph = dot.copy()
        graph.attr(dpi=str(dpi))
    try:
        data = graph.pipe(format=fmt)
    except graphviz.ExecutableNotFound:
        raise RenderError(NO_DOT) from None
    except (graphviz.CalledProcessError, subprocess.CalledProcessError) as exc:
        detail = (exc.stderr or b"").decode("utf-8", "replace").strip() if isinstance(exc.stderr, bytes) \
            else str(exc.stderr or "").strip()
        raise RenderError(f"graphviz could not lay out '{path.name}': {detail or exc}") from None
    path.write_bytes(data)
    return path
