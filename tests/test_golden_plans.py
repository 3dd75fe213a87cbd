"""The printed plans of a few zoo graphs, pinned.

A change in what a zoo model computes at which step — a time rule, a pass, the printer — shows
up here as a readable diff. After an intended change, regenerate with
``TNNSPEC_UPDATE_GOLDEN=1 pytest tests/test_golden_plans.py`` and read the diff before committing.
"""

from __future__ import annotations

import os
from pathlib import Path

import pytest

import tnnspec
import tnnspec.zoo

GOLDEN = Path(__file__).resolve().parent / "golden"
CASES = {
    # name: (zoo graph, optimize, call arguments of the plan)
    "cornet_rt.plain": ("cornet_rt", "none", {}),
    "cornet_rt.default": ("cornet_rt", "default", {}),
    "cornet_rt.last": ("cornet_rt", "default", {"readout_steps": "last"}),
    "cornet_rt.shared": ("cornet_rt", ("hoist", "share_constants", "prune"), {}),
    "blt_net_64.default": ("blt_net_64", "default", {}),
    "convrnn_shallow_gru.default": ("convrnn_shallow_gru", "default", {}),
    "ventral4.lesioned": ("../ventral4", "default", {"perturb": {"IT__V4": "cut", "V4": {"silence": True, "steps": [1]},
                                                                 "V1__V2": {"scale": 0.5, "steps": [2, 3]}}}),
}


def _spec(name: str):
    if name.startswith("../"):
        return tnnspec.load(Path(__file__).resolve().parents[1] / "graphs" / f"{name[3:]}.yaml")
    return tnnspec.zoo.load(name)


@pytest.mark.parametrize("case", sorted(CASES))
def test_printed_plan_is_pinned(case):
    graph, optimize, call = CASES[case]
    net = tnnspec.compile(_spec(graph), optimize=optimize)
    plan = net.call_plan(readout_steps=call.get("readout_steps"), perturb=call.get("perturb"))
    text = str(plan) + "\n"
    path = GOLDEN / f"{case}.plan.txt"
    if os.environ.get("TNNSPEC_UPDATE_GOLDEN") == "1":
        path.write_text(text, encoding="utf-8")
    assert path.exists(), f"{path} is missing: run with TNNSPEC_UPDATE_GOLDEN=1 once and read it"
    assert text == path.read_text(encoding="utf-8"), (
        f"the printed plan of {case} changed; if intended, regenerate (module docstring) and review the diff")
