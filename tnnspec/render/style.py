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


def pen_scale(weight: float) -> float:
    """Pen-width factor from an edge's ``weight`` (|weight| clamped to [0.3, 3])."""
    return min(max(abs(weight), 0.3), 3.0)


def edge_style(spec: Spec, index: int, *, weights: bool = True) -> dict[str, str]:
    """graphviz attributes for edge ``index`` (style, colour, arrowhead, pen width)."""
    e = spec.edges[index]
    attrs = dict(LATERAL_BETWEEN if e.type == "lateral" and e.source != e.target else EDGE_STYLE[e.type])
    if weights and e.weight != 1.0:
        attrs["penwidth"] = f"{float(attrs['penwidth']) * pen_scale(e.weight):.2g}"
    return attrs


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
