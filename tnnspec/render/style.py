"""What the pictures share: hierarchy levels, edge styles per type, colours, delay labels.

Edge types are told apart by style, colour and arrowhead (docs/spec.md explains the types):

=============  =======================  ===========  =========
type           line                     colour       arrowhead
=============  =======================  ===========  =========
feedforward    solid, bold              near black   normal
lateral        self-loop (solid);       blue         normal
               dotted between areas                  (vee)
feedback       dashed                   red          normal
skip           solid, thin              grey         normal
attention      solid                    purple       odot
normalization  dotted                   orange       tee
=============  =======================  ===========  =========
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from types import SimpleNamespace

from ..graph.timing import edge_delay
from ..spec.models import BOTTOM_UP, Spec

EDGE_TYPES = ("feedforward", "lateral", "feedback", "skip", "attention", "normalization")
TOP_DOWN_TYPES = ("feedback", "attention", "normalization")

FONT = "Helvetica"
INPUT_FILL = "#fff2cc"
INPUT_BORDER = "#b59a3c"
SILENT_FILL = "#e6e6e6"
SILENT_FONT = "#a0a0a0"
SILENT_BORDER = "#c4c4c4"

# base attributes per edge type; lateral edges between two areas use LATERAL_BETWEEN
EDGE_STYLE: dict[str, dict[str, str]] = {
    "feedforward": {"style": "bold", "color": "#222222", "penwidth": "2", "arrowhead": "normal"},
    "lateral": {"style": "solid", "color": "#1f77b4", "penwidth": "1.3", "arrowhead": "normal"},
    "feedback": {"style": "dashed", "color": "#d62728", "penwidth": "1.6", "arrowhead": "normal"},
    "skip": {"style": "solid", "color": "#8c8c8c", "penwidth": "0.9", "arrowhead": "normal"},
    "attention": {"style": "solid", "color": "#8e44ad", "penwidth": "1.6", "arrowhead": "odot"},
    "normalization": {"style": "dotted", "color": "#e67e22", "penwidth": "1.8", "arrowhead": "tee"},
}
LATERAL_BETWEEN = {"style": "dotted", "color": "#1f77b4", "penwidth": "1.6", "arrowhead": "vee",
                   "arrowsize": "0.7"}

# light fills for group clusters, in order of first appearance
GROUP_FILLS = ("#e8f0fa", "#fbeee0", "#e7f4e7", "#f3e8f5", "#fbf7dc", "#e3f4f4", "#f7e6e6")
GROUP_BORDERS = ("#9db7d9", "#e0b98f", "#9fcb9f", "#c9a6cf", "#d8cd8a", "#93c7c7", "#d6a3a3")


def hierarchy_levels(spec: Spec) -> dict[str, float]:
    """The level of every input (0) and area: its ``level``, else one more than the highest
    level among the sources of its feedforward/skip edges (its longest feedforward distance
    from the inputs); an area with no bottom-up input gets level 1."""
    levels: dict[str, float] = {name: 0.0 for name in spec.inputs}
    levels.update({name: float(a.level) for name, a in spec.areas.items() if a.level is not None})
    preds: dict[str, list[str]] = {name: [] for name in spec.areas}
    for e in spec.edges:
        if e.type in BOTTOM_UP and e.target in preds and e.source != e.target \
                and (e.source in spec.inputs or e.source in spec.areas):
            preds[e.target].append(e.source)
    visiting: set[str] = set()

    def level(name: str) -> float:
        if name in levels:
            return levels[name]
        visiting.add(name)
        below = [level(p) for p in preds[name] if p not in visiting]
        visiting.discard(name)
        levels[name] = max(below, default=0.0) + 1.0
        return levels[name]

    for name in spec.areas:
        level(name)
    return {name: levels[name] for name in list(spec.inputs) + list(spec.areas)}


def level_text(value: float) -> str:
    return f"{value:g}"


def is_top_down(spec: Spec, index: int, levels: dict[str, float]) -> bool:
    """Feedback, attention and normalization edges, and any edge that goes down in level:
    drawn with ``constraint=false`` so that they never reorder the hierarchy."""
    e = spec.edges[index]
    if e.type in TOP_DOWN_TYPES:
        return True
    ls, lt = levels.get(e.source), levels.get(e.target)
    return ls is not None and lt is not None and lt < ls


def default_delay_of(spec: Spec, index: int) -> int:
    """The delay edge ``index`` would have without its own ``delay``/``delay_ms``."""
    bare = spec.edges[index].model_copy(update={"delay": None, "delay_ms": None})
    return edge_delay(SimpleNamespace(edges=[bare], inputs=spec.inputs, time=spec.time), 0)  # type: ignore[arg-type]


def delay_is_unusual(spec: Spec, index: int, delay: int) -> bool:
    """Worth a label: longer than one step, or not what ``time.default_delay`` gives this edge."""
    return delay > 1 or delay != default_delay_of(spec, index)


# pen width by weight: the factor on the type's pen width runs from WIDTH_MIN (weakest edge) to
# WIDTH_MAX (strongest); no pen is thinner than PEN_MIN points
WIDTH_MIN = 0.25
WIDTH_MAX = 1.0
PEN_MIN = 0.5
LOG_DECADES = 1.5      # weight_scale="auto" is "log" when the weights span more decades than this
WEIGHT_SCALES = ("auto", "linear", "log")


@dataclass(frozen=True)
class WidthScale:
    """How edge weights become pen widths: ``kind`` is "none" (every weight alike: every edge
    keeps its type's pen width), "linear" (width proportional to |weight|, the strongest edge
    at ``WIDTH_MAX`` times its type's width) or "log" (width linear in log |weight| from
    ``WIDTH_MIN`` at ``lo`` to ``WIDTH_MAX`` at ``hi``); ``lo``/``hi``: the smallest non-zero
    and the largest |weight| of the spec's edges."""

    kind: str
    lo: float = 1.0
    hi: float = 1.0
    signed: bool = False  # some weight is negative: the legend says |weight|

    def factor(self, weight: float) -> float:
        w = abs(weight)
        if self.kind == "none":
            return 1.0
        if w <= 0:
            return WIDTH_MIN
        if self.kind == "linear":
            return max(WIDTH_MIN, WIDTH_MAX * w / self.hi)
        t = (math.log10(w) - math.log10(self.lo)) / (math.log10(self.hi) - math.log10(self.lo))
        return WIDTH_MIN + (WIDTH_MAX - WIDTH_MIN) * min(max(t, 0.0), 1.0)

    def legend_text(self) -> str | None:
        """``line width: weight, log scale, 0.01 … 0.98``; None when widths do not vary."""
        if self.kind == "none":
            return None
        what = "|weight|" if self.signed else "weight"
        return f"line width: {what}, {'log scale' if self.kind == 'log' else 'linear'}, {self.lo:.3g} … {self.hi:.3g}"


def width_scale(spec: Spec, scale: str = "auto") -> WidthScale:
    """The :class:`WidthScale` of ``spec``'s edge weights: ``scale`` is "linear", "log", or
    "auto" (log when the non-zero |weights| span more than ``LOG_DECADES`` decades)."""
    if scale not in WEIGHT_SCALES:
        raise ValueError(f"weight_scale must be one of {', '.join(WEIGHT_SCALES)}, not {scale!r}")
    weights = [abs(e.weight) for e in spec.edges]
    nonzero = [w for w in weights if w > 0]
    if not nonzero or len(set(weights)) == 1:
        return WidthScale("none")
    lo, hi = min(nonzero), max(nonzero)
    signed = any(e.weight < 0 for e in spec.edges)
    if scale == "auto":
        scale = "log" if hi / lo > 10 ** LOG_DECADES else "linear"
    if scale == "log" and hi == lo:
        scale = "linear"
    return WidthScale(scale, lo, hi, signed)


def edge_style(spec: Spec, index: int, *, weights: bool = True, scale: WidthScale | None = None) -> dict[str, str]:
    """graphviz attributes for edge ``index`` (style, colour, arrowhead, pen width). With
    ``weights``, the pen width follows the edge's weight on ``scale`` (default: the spec's
    :func:`width_scale`); an edge keeps its type's pen width when all weights are alike."""
    e = spec.edges[index]
    attrs = dict(LATERAL_BETWEEN if e.type == "lateral" and e.source != e.target else EDGE_STYLE[e.type])
    if weights:
        scale = scale if scale is not None else width_scale(spec)
        if scale.kind != "none":
            attrs["penwidth"] = f"{max(PEN_MIN, float(attrs['penwidth']) * scale.factor(e.weight)):.2f}"
    return attrs


def edge_strength(spec: Spec, index: int) -> float:
    """What ``min_weight`` and ``top_k`` compare: the edge's |weight|."""
    return abs(spec.edges[index].weight)


def group_colours(spec: Spec) -> dict[str, tuple[str, str]]:
    """(fill, border) for every group, in order of first appearance."""
    out: dict[str, tuple[str, str]] = {}
    for area in spec.areas.values():
        if area.group is not None and area.group not in out:
            k = len(out) % len(GROUP_FILLS)
            out[area.group] = (GROUP_FILLS[k], GROUP_BORDERS[k])
    return out


def shape_text(shape) -> str:
    return "×".join(str(s) for s in shape) if shape else "?"


def html_escape(text: str) -> str:
    return text.replace("&", "&amp;").replace("<", "&lt;").replace(">", "&gt;")
