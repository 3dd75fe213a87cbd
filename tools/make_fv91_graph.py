"""Write graphs/macaque_fv91.yaml: the Felleman & Van Essen (1991) visual hierarchy as a graph.

Reads the visual part of the Négyessy et al. (2006) macaque graph, which uses FV91's area names
(igraphdata packaging, CC BY-SA 2.0 UK; see data/macaque/README.md):
``negyessy2006_macaque_visuotactile_nodes.csv`` (``area, modality``) and
``negyessy2006_macaque_visuotactile_edges.csv`` (``source, target``; binary, directed, no
weights and no feedforward/feedback labels). The default data folder is the copy shipped in the
repository, ``data/macaque/negyessy2006``; ``../shared/data/macaque/negyessy2006`` is used when
the repository copy is missing.

Rules (also written into the generated file and docs/zoo/macaque.md):

* areas: the 30 areas whose modality is ``visual``; ``level`` = the area's hierarchical level
  in Felleman & Van Essen (1991), Figure 4 (``FV91_LEVEL``: V1 = 1 … TF, TH, 46 = 10), so V1
  sits one level above the image input (level 0). The data's ``MSTd/p`` is named ``MSTd``
  (a ``/`` is not allowed in names; FV91 places MSTd at level 7), and area ``46`` is named
  ``area46`` (a bare number is not a name: YAML 1.1 tools read it as an integer);
* ``group``: early, dorsal, ventral, polysensory (STP), parahippocampal, frontal (``GROUP``);
* one edge per connection of the data between two visual areas; its ``type`` comes from the
  levels, since the data carry no laminar labels: to a higher level ``feedforward``, to a
  lower level ``feedback``, between areas of the same level ``lateral``. This is a derivation
  from the 1991 levels, not the laminar pattern of each projection;
* every area is a leaky integrator of ``CHANNELS`` channels; every connection a 1x1 conv and
  one step (10 ms); no weights (the data are binary).

    .venv/bin/python tools/make_fv91_graph.py [--data DIR] [--out FILE] [--check]

``--check`` exits 1 when the file on disk differs from what the data give.
"""

from __future__ import annotations

import csv
import sys
from collections import Counter
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_generator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "graphs" / "macaque_fv91.yaml"
NODES = "negyessy2006_macaque_visuotactile_nodes.csv"
EDGES = "negyessy2006_macaque_visuotactile_edges.csv"

# Hierarchical level of each visual area in Felleman & Van Essen (1991), Cerebral Cortex 1:1-47,
# Figure 4 ("Hierarchy of visual areas"): 10 levels of cortical processing, V1 at level 1.
FV91_LEVEL = {
    "V1": 1,
    "V2": 2,
    "V3": 3, "VP": 3,
    "PIP": 4, "V3A": 4,
    "MDP": 5, "MIP": 5, "PO": 5, "MT": 5, "V4t": 5, "V4": 5,
    "DP": 6, "VOT": 6,
    "VIP": 7, "LIP": 7, "MSTd": 7, "MSTl": 7, "FST": 7, "PITd": 7, "PITv": 7,
    "7b": 8, "7a": 8, "FEF": 8, "STPp": 8, "CITd": 8, "CITv": 8,
    "STPa": 9, "AITd": 9, "AITv": 9,
    "36": 10, "46": 10, "TF": 10, "TH": 10,
}
FV91_LEVEL["area46"] = FV91_LEVEL["46"]   # the graph's name of FV91's area 46 (see RENAME)
# data name -> area name: "/" is not allowed in names, and a number is not a name (YAML 1.1 reads
# an unquoted 46 as an integer)
RENAME = {"MSTd/p": "MSTd", "46": "area46"}
GROUP = {
    "V1": "early", "V2": "early", "V3": "early", "VP": "early",
    "V3A": "dorsal", "PIP": "dorsal", "PO": "dorsal", "MT": "dorsal", "V4t": "dorsal", "DP": "dorsal",
    "MSTd": "dorsal", "MSTl": "dorsal", "FST": "dorsal", "LIP": "dorsal", "VIP": "dorsal", "7a": "dorsal",
    "V4": "ventral", "VOT": "ventral", "PITd": "ventral", "PITv": "ventral", "CITd": "ventral",
    "CITv": "ventral", "AITd": "ventral", "AITv": "ventral",
    "STPp": "polysensory", "STPa": "polysensory",
    "TF": "parahippocampal", "TH": "parahippocampal",
    "FEF": "frontal", "area46": "frontal",
}
CHANNELS = 8
IMAGE = 32          # image side; every area is a CHANNELS x IMAGE/2 x IMAGE/2 map
STEPS = 10
READOUT_AREA = "AITv"


def read_graph(data: Path) -> tuple[list[str], list[tuple[str, str]]]:
    """(visual areas in file order, directed connections between them), names as in the graph."""
    with open(data / NODES, newline="") as f:
        visual = [RENAME.get(r["area"], r["area"]) for r in csv.DictReader(f) if r["modality"] == "visual"]
    with open(data / EDGES, newline="") as f:
        pairs = [(RENAME.get(r["source"], r["source"]), RENAME.get(r["target"], r["target"]))
                 for r in csv.DictReader(f)]
    keep = set(visual)
    return visual, [(s, t) for s, t in pairs if s in keep and t in keep and s != t]


def edge_type(source_level: int, target_level: int) -> str:
    if target_level > source_level:
        return "feedforward"
    return "feedback" if target_level < source_level else "lateral"


def build(data: Path) -> str:
    """The YAML text of the graph (deterministic: same data, same bytes)."""
    visual, pairs = read_graph(data)
    missing = [a for a in visual if a not in FV91_LEVEL or a not in GROUP]
    if missing:
        raise SystemExit(f"areas without an FV91 level or group: {missing}")
    order = sorted(visual, key=lambda a: (FV91_LEVEL[a], list(GROUP.values()).index(GROUP[a]), a))
    rank = {a: i for i, a in enumerate(order)}
    pairs = sorted(set(pairs), key=lambda p: (rank[p[0]], rank[p[1]]))
    kinds = Counter(edge_type(FV91_LEVEL[s], FV91_LEVEL[t]) for s, t in pairs)
    side = IMAGE // 2
    renamed = ", ".join(f"{old} -> {new}" for old, new in RENAME.items())

    lines = [
        "# yaml-language-server: $schema=../schemas/tnnspec.schema.json",
        "# Generated by tools/make_fv91_graph.py from data/macaque/negyessy2006 (Négyessy et al. 2006,",
        "# igraphdata packaging). The connections are data under CC BY-SA 2.0 UK (licence:",
        "# data/macaque/negyessy2006/LICENSE-igraphdata-macaque-CC-BY-SA-2.0-UK.txt); this file, an",
        "# adaptation of them, is shared under the same licence. Do not edit by hand: change the script",
        "# and run it again (tests/test_zoo_misc.py checks that the two agree).",
        'tnnspec: "1.1"',
        "name: macaque_fv91",
        "description: >",
        "  The Felleman & Van Essen (1991) hierarchy of macaque visual cortex: the 30 visual areas of",
        f"  the FV91-named graph of Négyessy et al. (2006) and their {len(pairs)} connections, each area at",
        "  its hierarchical level in FV91's Figure 4 (V1 = 1 ... TF, TH, 46 = 10). The data carry no",
        "  laminar labels, so edge types are derived from the levels: to a higher level feedforward",
        f"  ({kinds['feedforward']}), to a lower level feedback ({kinds['feedback']}), within a level"
        f" lateral ({kinds['lateral']}).",
        f"  Every area is a leaky integrator (tau 20 ms) of {CHANNELS} channels over a {side}x{side} map;"
        " every",
        "  connection is one step (10 ms) and a 1x1 conv; the data are binary, so no weights.",
        f"  Renamed: {renamed}. Model card: docs/zoo/macaque.md.",
        "references:",
        '  - "Felleman, Van Essen (1991). Distributed hierarchical processing in the primate cerebral'
        ' cortex. Cerebral Cortex 1(1):1-47. (areas, hierarchical levels: Figure 4)"',
        '  - "Négyessy, Nepusz, Kocsis, Bazsó (2006). Prediction of the main cortical areas and'
        ' connections involved in the tactile function of the visual cortex by network analysis.'
        ' European Journal of Neuroscience 23(7):1919-1930. (connections)"',
        '  - "Data: igraphdata macaque graph (CC BY-SA 2.0 UK), copied in data/macaque/negyessy2006."',
        f"time: {{dt_ms: 10, steps: {STEPS}, default_delay: biological}}",
        "inputs:",
        f"  image: {{shape: [3, {IMAGE}, {IMAGE}], description: \"retinal image, reaching V1 in the same step\"}}",
        "templates:",
        "  cortical_area:",
        "    cell: {type: leaky, tau_ms: 20, activation: relu}",
        "areas:",
    ]
    for a in order:
        old = next((k for k, v in RENAME.items() if v == a), None)
        note = f', description: "{old} in the data"' if old else ""
        lines.append(f"  {a}: {{use: cortical_area, level: {FV91_LEVEL[a]}, group: {GROUP[a]}, "
                     f"channels: {CHANNELS}{note}}}")
    lines.append("edges:")
    lines.append("  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3, stride: 2}}]}")
    for s, t in pairs:
        lines.append(f"  - {{type: {edge_type(FV91_LEVEL[s], FV91_LEVEL[t])}, source: {s}, target: {t}, "
                     "transform: [{conv: {kernel: 1}}]}")
    lines += [
        "readouts:",
        f"  category: {{source: {READOUT_AREA}, head: [{{pool: avg}}, {{linear: 10}}],"
        f" description: a 10-way category readout from anterior IT ({READOUT_AREA})}}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return graph_generator.run(__doc__, build, "negyessy2006", OUT, argv)


if __name__ == "__main__":
    sys.exit(main())
