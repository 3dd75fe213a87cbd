"""``make fit-demo``: which student explains a recurrent "brain" best, feedforward or recurrent?

A synthetic V4/IT data set with a known answer (tnnspec.neural.synthetic): the teacher network
(V1 -> V4 -> IT, strong lateral recurrence in V4 and IT, IT -> V4 feedback; the image is shown
for 100 ms, so everything after that is carried by recurrence) is recorded through random sparse
linear maps with latencies (V4 40 ms, IT 60 ms) and trial noise (reliability 0.8 per bin).
Three students with the teacher's areas and fresh weights are fitted to the dynamics
(``tnnspec fit --mode dynamics``) and compared (``tnnspec compare``):

* ``feedforward`` — the lateral and feedback edges removed;
* ``local`` — + lateral recurrence in V4 and IT;
* ``feedback`` — + IT -> V4 feedback (the teacher's own graph).

    python tools/fit_demo.py [--out out/fit-demo] [--epochs 40] [--stimuli 300]

Writes OUT/data (recordings.nc, stimuli.npz, the teacher), OUT/<student>/ (a fit run each, with
its report) and OUT/compare/ (compare.png, compare.md, compare.json). Minutes on 2 CPU cores.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import tnnspec  # noqa: E402
from tnnspec.neural.fit import run_fit  # noqa: E402
from tnnspec.neural.report import compare  # noqa: E402
from tnnspec.neural.synthetic import make_teacher, synthetic_recordings  # noqa: E402
from tnnspec.spec.neural import Dynamics  # noqa: E402

STUDENTS = {"feedforward": ("lateral", "feedback"), "local": ("feedback",), "feedback": ()}


def student(teacher_file: Path, name: str, drop: tuple[str, ...]) -> Path:
    """The teacher's graph with the edge types in ``drop`` disabled, written next to it."""
    tree = tnnspec.load(teacher_file).dump()
    tree["name"] = f"student_{name}"
    for e in tree["edges"]:
        if e["type"] in drop:
            e["enabled"] = False
    spec = tnnspec.Spec.model_validate(tree)
    path = teacher_file.parent / f"student_{name}.yaml"
    path.write_text(tnnspec.dumps(spec), encoding="utf-8")
    return path


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--out", default="out/fit-demo")
    p.add_argument("--epochs", type=int, default=40)
    p.add_argument("--stimuli", type=int, default=300)
    p.add_argument("--neurons", type=int, default=40, help="neurons per region")
    p.add_argument("--students", nargs="+", default=list(STUDENTS), choices=list(STUDENTS))
    args = p.parse_args(argv)
    out = Path(args.out)
    t0 = time.time()
    syn = synthetic_recordings(make_teacher(), n_stimuli=args.stimuli, neurons={"V4": args.neurons, "IT": args.neurons})
    rec, stim = syn.save(out / "data")
    print(f"data: {args.stimuli} stimuli x 6 repetitions, {args.neurons} neurons in V4 and IT -> {out / 'data'}")
    runs = []
    for name in args.students:
        spec = tnnspec.load(student(out / "data" / "teacher.yaml", name, STUDENTS[name]))
        print(f"fitting the {name} student ({sum(e.enabled for e in spec.edges)} edges) ...", flush=True)
        run_fit(spec, rec, stim, mode="dynamics", dynamics=Dynamics(epochs=args.epochs, lr=3e-3),
                out_dir=out / name, progress=True)
        runs.append(out / name)
    paths = compare(runs, out / "compare", labels=args.students)
    md = next(p for p in paths if p.suffix == ".md")
    print(md.read_text(encoding="utf-8"))
    print(f"done in {time.time() - t0:.0f} s: reports in {', '.join(str(r) for r in runs)}; comparison in {out / 'compare'}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
