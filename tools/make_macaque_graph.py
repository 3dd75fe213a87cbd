"""Write graphs/macaque_markov2014.yaml from the Markov et al. (2014) inter-areal data.

Reads three CSVs of the xjwanglab/book packaging (MIT licence; see data/macaque/README.md):
``markov2014_29x29_fln.csv`` and ``markov2014_29x29_sln.csv`` (row = target, column = source)
and ``markov2014_29_hierarchy.csv``. The default data folder is the copy shipped in the
repository, ``data/macaque/markov2014``; the project-wide copy ``../shared/data/macaque/markov2014``
(next to the repository) is used when the repository copy is missing.

Rules (also written into the generated file and docs/zoo/macaque.md):

* areas: a ventral + dorsal + frontal subset (``AREAS``), ordered by hierarchy;
  ``level = 1 + hierarchy`` (rounded to 3 decimals), so that V1 (hierarchy 0) sits above the
  image input (level 0);
* one edge per projection with FLN > 0 between two areas of the subset;
* type from SLN: SLN > 0.5 feedforward, SLN < 0.5 feedback. Where SLN is exactly 0.5, or its
  direction contradicts the hierarchy (which is itself fitted to all SLN values), the hierarchy
  decides (feedforward when the target's level is higher); such edges say so in their
  description. Projections from FEF (8l, 8m) to V4 are ``attention`` edges (relative gain,
  a spatial map) instead;
* ``weight = 1 + log10(FLN) / 6`` (FLN 1e-6 -> 0, FLN 1 -> 1; at least 0.01), rounded to 4
  decimals: FLN spans five orders of magnitude, the weight a usable range.

    .venv/bin/python tools/make_macaque_graph.py [--data DIR] [--out FILE] [--check]

``--check`` exits 1 when the file on disk differs from what the data give.
"""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
import graph_generator  # noqa: E402

ROOT = Path(__file__).resolve().parents[1]
OUT = ROOT / "graphs" / "macaque_markov2014.yaml"

# area -> group (names as in the data; FEF = 8l + 8m, posterior IT = TEO, IT = TEpd, PFC = 46d)
AREAS = {
    "V1": "early", "V2": "early",
    "V4": "ventral", "TEO": "ventral", "TEpd": "ventral",
    "MT": "dorsal", "DP": "dorsal", "7A": "dorsal",
    "8l": "frontal", "8m": "frontal", "46d": "frontal",
}
FEF = ("8l", "8m")
ATTENTION_TARGETS = ("V4",)
CHANNELS = 8
IMAGE = 32          # image side; every area is a CHANNELS x IMAGE/2 x IMAGE/2 map
STEPS = 10
READOUT_AREA = "TEpd"


def read_matrix(path: Path) -> dict[str, dict[str, float]]:
    """``{target: {source: value}}`` from a square CSV whose rows are targets."""
    with open(path, newline="") as f:
        rows = list(csv.reader(f))
    sources = rows[0][1:]
    return {row[0]: {s: float(v) for s, v in zip(sources, row[1:])} for row in rows[1:]}


def read_hierarchy(path: Path) -> dict[str, float]:
    with open(path, newline="") as f:
        return {r["area"]: float(r["hierarchy"]) for r in csv.DictReader(f)}


def fln_weight(fln: float) -> float:
    return round(max(0.01, 1.0 + math.log10(fln) / 6.0), 4)


def edge_type(sln: float, source_level: float, target_level: float) -> tuple[str, bool]:
    """(type, decided by the hierarchy) for a driving projection."""
    by_levels = "feedforward" if target_level > source_level else "feedback"
    by_sln = "feedforward" if sln > 0.5 else "feedback" if sln < 0.5 else None
    return (by_levels, True) if by_sln != by_levels else (by_sln, False)


def build(data: Path) -> str:
    """The YAML text of the graph (deterministic: same data, same bytes)."""
    fln = read_matrix(data / "markov2014_29x29_fln.csv")
    sln = read_matrix(data / "markov2014_29x29_sln.csv")
    hier = read_hierarchy(data / "markov2014_29_hierarchy.csv")
    missing = [a for a in AREAS if a not in hier]
    if missing:
        raise SystemExit(f"areas not in the data: {missing}")
    order = sorted(AREAS, key=lambda a: (hier[a], a))
    level = {a: round(1.0 + hier[a], 3) for a in order}
    side = IMAGE // 2

    edges, retyped, attention = [], 0, 0
    for source in order:
        for target in order:
            f = fln[target][source] if source != target else 0.0
            if f <= 0.0:
                continue
            s = sln[target][source]
            w = fln_weight(f)
            note = f"FLN {f:.3e}, SLN {s:.3f}"
            if source in FEF and target in ATTENTION_TARGETS:
                attention += 1
                edges.append(
                    f"  - {{type: attention, source: {source}, target: {target}, mode: relative_gain, weight: {w},\n"
                    f"     transform: [{{conv: {{kernel: 1, channels: 1}}}}, tanh],\n"
                    f"     description: \"{note}; FEF -> V4 spatial attention: V4 drive * (1 + weight * map)\"}}")
                continue
            kind, by_levels = edge_type(s, level[source], level[target])
            if by_levels:
                retyped += 1
                note += ("; SLN = 0.5" if s == 0.5 else
                         f"; SLN says {'feedforward' if s > 0.5 else 'feedback'}") + ", typed by the hierarchy"
            edges.append(f"  - {{type: {kind}, source: {source}, target: {target}, weight: {w}, "
                         f"transform: [{{conv: {{kernel: 1}}}}],\n     description: \"{note}\"}}")

    lines = [
        "# yaml-language-server: $schema=../schemas/tnnspec.schema.json",
        "# Generated by tools/make_macaque_graph.py from data/macaque/markov2014 (Markov et al. 2014,",
        "# xjwanglab/book packaging, MIT licence: data/macaque/README.md). Do not edit by hand: change",
        "# the script and run it again (tests/test_zoo_misc.py checks that the two agree).",
        'tnnspec: "1.1"',
        "name: macaque_markov2014",
        "description: >",
        f"  A ventral + dorsal + frontal subset of the macaque cortical graph of Markov et al. (2014):",
        f"  {len(order)} areas and their {len(edges)} measured projections (retrograde tracers). Levels are",
        "  1 + the SLN-derived hierarchy value; a projection is feedforward when SLN > 0.5 and feedback",
        f"  when SLN < 0.5, except {retyped} whose SLN is 0.5 or contradicts the hierarchy, which the",
        "  hierarchy types (their descriptions say so). FEF (8l, 8m) -> V4 projections are spatial",
        f"  attention edges ({attention} in the data). weight = 1 + log10(FLN) / 6. Every area is a leaky",
        f"  integrator (tau 20 ms) of {CHANNELS} channels over a {side}x{side} map; every projection is one",
        "  step (10 ms) and a 1x1 conv. Model card: docs/zoo/macaque.md.",
        "references:",
        '  - "Markov, Ercsey-Ravasz, Ribeiro Gomes, Lamy, Magrou, Vezoli, Misery, Falchier, Quilodran, Gariel,'
        ' Sallet, Gamanut, Huissoud, Clavagnier, Giroud, Sappey-Marinier, Barone, Dehay, Toroczkai, Knoblauch,'
        ' Van Essen, Kennedy (2014). A weighted and directed interareal connectivity matrix for macaque'
        ' cerebral cortex. Cerebral Cortex 24(1):17-36."',
        '  - "Markov, Vezoli, Chameau, Falchier, Quilodran, Huissoud, Lamy, Misery, Giroud, Ullman, Barone,'
        ' Dehay, Knoblauch, Kennedy (2014). Anatomy of hierarchy: feedforward and feedback pathways in'
        ' macaque visual cortex. Journal of Comparative Neurology 522(1):225-259."',
        '  - "Chaudhuri, Knoblauch, Gariel, Kennedy, Wang (2015). A large-scale circuit mechanism for'
        ' hierarchical dynamical processing in the primate cortex. Neuron 88(2):419-431."',
        '  - "Data: https://github.com/xjwanglab/book (MIT licence), copied in data/macaque/markov2014."',
        f"time: {{dt_ms: 10, steps: {STEPS}, default_delay: biological}}",
        "inputs:",
        f"  image: {{shape: [3, {IMAGE}, {IMAGE}], description: \"retinal image, reaching V1 in the same step\"}}",
        "templates:",
        "  cortical_area:",
        "    cell: {type: leaky, tau_ms: 20, activation: relu}",
        "areas:",
    ]
    for a in order:
        lines.append(f"  {a}: {{use: cortical_area, level: {level[a]}, group: {AREAS[a]}, channels: {CHANNELS}, "
                     f"description: \"hierarchy {hier[a]:.4f}\"}}")
    lines.append("edges:")
    lines.append("  - {type: feedforward, source: image, target: V1, transform: [{conv: {kernel: 3, stride: 2}}]}")
    lines.extend(edges)
    lines += [
        "readouts:",
        f"  category: {{source: {READOUT_AREA}, head: [{{pool: avg}}, {{linear: 10}}],"
        " description: a 10-way category readout from IT (TEpd)}",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str] | None = None) -> int:
    return graph_generator.run(__doc__, build, "markov2014", OUT, argv)


if __name__ == "__main__":
    sys.exit(main())
