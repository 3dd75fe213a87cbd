"""What the live view shows for one spec file, rebuilt when the file or a file it includes changes.

:func:`build_picture` turns a valid spec into the JSON-ready part that needs a valid spec (the
two pictures as SVG, the summary table and the plan, details of every input, area, edge and
readout); :class:`ViewState` checks the file, keeps the last valid picture while the file has
errors (``stale``), and numbers every rebuild (``version``) so that clients ask only for news.
"""

from __future__ import annotations

import json
import os
import threading
import time
import uuid
from pathlib import Path
from typing import Any

from ..spec.diagnostics import Diagnostic
from ..spec.models import Spec

#: (mtime in ns, size, inode) of a file, or None when it does not exist
Signature = tuple[int, int, int] | None


def file_signature(path: str) -> Signature:
    try:
        st = os.stat(path)
    except OSError:
        return None
    return (st.st_mtime_ns, st.st_size, st.st_ino)


def check_and_list(path: str) -> tuple[Spec | None, list[Diagnostic], list[str]]:
    """:func:`tnnspec.api.check_file` on ``path``, with every file the loader read or looked for
    (``path`` first, then its includes at any depth). An unexpected failure (a bug, a broken
    plugin) becomes a diagnostic at the top of the file instead of an exception."""
    from ..api import check_file
    from ..spec.source import files_read

    with files_read() as files:
        try:
            spec, diags = check_file(path)
        except Exception as exc:  # noqa: BLE001 - the view must survive anything a file can cause
            spec, diags = None, [Diagnostic(path, 1, 1, "error", f"{type(exc).__name__}: {exc}")]
    return spec, list(diags), [path] + [f for f in files if f != path]


# ---------------------------------------------------------------- the picture of a valid spec

def _svg(graph) -> str:
    return graph.pipe(format="svg").decode("utf-8")


def _shape(shape) -> list[int] | None:
    return list(shape) if shape else None


def _op_text(entry) -> str:
    params = entry.op.model_dump(mode="json", exclude_unset=True)  # as written
    if not params:
        return entry.op_name
    return f"{entry.op_name}(" + ", ".join(f"{k}={_value_text(v)}" for k, v in params.items()) + ")"


def _value_text(value: Any) -> str:
    if isinstance(value, bool):
        return "true" if value else "false"
    if value is None:
        return "null"
    if isinstance(value, float):
        return f"{value:g}"
    if isinstance(value, (list, tuple)):
        return "[" + ", ".join(_value_text(v) for v in value) + "]"
    if isinstance(value, dict):
        return "{" + ", ".join(f"{k}: {_value_text(v)}" for k, v in value.items()) + "}"
    return str(value)


def _schedule_text(schedule) -> str:
    params = schedule.model_dump(mode="json", exclude={"type"})
    return schedule.type + (" (" + ", ".join(f"{k}={_value_text(v)}" for k, v in params.items()) + ")"
                            if params else "")


def build_picture(spec: Spec, steps: int | None = None) -> dict[str, Any]:
    """Everything the view shows that needs a valid spec, JSON-ready. A missing graphviz
    (``svg_error``) or a failing compile (``summary_error``) leaves the rest intact."""
    import graphviz

    from .. import render
    from ..graph.plan import build_plan
    from ..graph.timing import edge_delays

    plan = build_plan(spec, steps)
    delays = edge_delays(spec)
    levels = render.hierarchy_levels(spec)
    dt = spec.time.dt_ms
    out: dict[str, Any] = {"name": spec.name, "description": spec.description,
                           "time": {"dt_ms": dt, "steps": plan.steps},
                           "svg": {"area_graph": None, "unrolled": None}, "svg_error": None,
                           "summary": None, "plan": str(plan), "summary_error": None}
    try:
        out["svg"]["area_graph"] = _svg(render.area_graph(spec))
        out["svg"]["unrolled"] = _svg(render.unrolled(spec, steps=plan.steps, plan=plan))
    except graphviz.ExecutableNotFound:
        out["svg_error"] = ("graphviz's `dot` program is not installed, so the pictures cannot be drawn "
                            "(Debian/Ubuntu: apt-get install graphviz); the details, summary and plan "
                            "below are still live")
    except Exception as exc:  # noqa: BLE001 - e.g. dot failing on an odd graph: say so in the page
        out["svg_error"] = f"graphviz could not draw the pictures: {exc}"

    area_params: dict[str, int] = {}
    edge_params: list[int | None] = [None] * len(spec.edges)
    try:
        from ..cli import summary

        net = summary.compiled(spec)
        area_params = summary.area_parameters(spec, net, plan)
        edge_params = list(summary.edge_parameters(net, plan))
        out["summary"] = summary.summary_text(spec, steps=plan.steps, show_plan=False)
        out["plan"] = str(net.plan_for(plan.steps))  # the plan as `tnnspec summary` prints it (passes applied)
    except Exception as exc:  # noqa: BLE001 - a compile problem must not take the pictures down
        out["summary_error"] = f"could not compile the spec for the summary: {type(exc).__name__}: {exc}"

    names = plan.edge_names
    out["inputs"] = {name: {"kind": "input", "name": name, "shape": list(inp.shape),
                            "schedule": _schedule_text(inp.schedule), "description": inp.description,
                            "out_edges": [names[i] for i, e in enumerate(spec.edges) if e.source == name]}
                     for name, inp in spec.inputs.items()}
    out["areas"] = {}
    for name, area in spec.areas.items():
        arrival = plan.arrival.get(name)
        cell = area.cell.model_dump(mode="json")
        out["areas"][name] = {
            "kind": "area", "name": name, "level": levels[name], "level_given": area.level is not None,
            "group": area.group, "channels": area.channels,
            "cell": {"type": cell.pop("type", area.cell.name), "params": cell},
            "ops": [_op_text(op) for op in area.ops], "combine": area.combine,
            "before_arrival": area.before_arrival, "enabled": area.enabled,
            "drive_shape": _shape(plan.shapes.drive.get(name)),
            "output_shape": _shape(plan.shapes.output.get(name)),
            "params": area_params.get(name),
            "arrival": arrival, "arrival_ms": None if arrival is None else arrival * dt,
            "in_edges": [names[i] for i, e in enumerate(spec.edges) if e.target == name],
            "out_edges": [names[i] for i, e in enumerate(spec.edges) if e.source == name],
            "description": area.description,
        }
    out["edges"] = {}
    for i, e in enumerate(spec.edges):
        out["edges"][names[i]] = {
            "kind": "edge", "name": names[i], "index": i, "type": e.type, "source": e.source,
            "target": e.target, "transform": [_op_text(op) for op in e.transform],
            "delay_steps": delays[i], "delay_ms": delays[i] * dt, "weight": e.weight,
            "from_step": e.from_step, "enabled": e.enabled, "params": edge_params[i],
            "mode": getattr(e, "mode", None), "description": e.description,
        }
    out["readouts"] = {name: {"kind": "readout", "name": name, "source": r.source,
                              "head": [_op_text(op) for op in r.head], "cumulative": r.cumulative,
                              "output_shape": _shape(plan.shapes.readout.get(name))}
                       for name, r in spec.readouts.items()}
    return out


# ---------------------------------------------------------------- the live state

class ViewState:
    """The state of the view of one file: call :meth:`refresh` often (it rebuilds only when a
    watched file changed); read :meth:`json_bytes`; :meth:`wait` for a newer version.

    ``file`` is named in diagnostics as given (relative paths stay relative)."""

    def __init__(self, file: str | Path, steps: int | None = None):
        self.file = str(file)
        self.steps = steps
        self.version = 0
        self.session = uuid.uuid4().hex[:12]  # versions restart at 1 in a new server
        self.builds = 0  # how many times the state was rebuilt (tests: nothing is rebuilt needlessly)
        self._signatures: dict[str, Signature] = {}
        self._picture: dict[str, Any] | None = None  # of the last valid version
        self._picture_version: int | None = None
        self._state: dict[str, Any] = {}
        self._bytes = b"{}"
        self._cond = threading.Condition()
        self._closed = False

    # -- watching
    @property
    def files(self) -> list[str]:
        return list(self._signatures)

    def changed(self) -> bool:
        """Whether a watched file changed (or appeared, or went away) since the last build."""
        if not self._signatures:
            return True
        return any(file_signature(f) != sig for f, sig in self._signatures.items())

    def refresh(self, force: bool = False) -> bool:
        """Rebuild if a watched file changed (or ``force``); return whether it did."""
        if not (force or self.changed()):
            return False
        # signatures taken before reading: a save during the build is seen by the next refresh
        before = {f: file_signature(f) for f in self._signatures or [self.file]}
        spec, diags, files = check_and_list(self.file)
        signatures = {f: before[f] if f in before else file_signature(f) for f in files}
        picture = build_picture(spec, self.steps) if spec is not None else None
        with self._cond:
            self.version += 1
            self.builds += 1
            self._signatures = signatures
            if picture is not None:
                self._picture, self._picture_version = picture, self.version
            self._state = self._compose(spec is not None, diags)
            self._bytes = json.dumps(self._state).encode("utf-8")
            self._cond.notify_all()
        return True

    def _compose(self, valid: bool, diags: list[Diagnostic]) -> dict[str, Any]:
        errors = sum(d.severity == "error" for d in diags)
        state: dict[str, Any] = {
            "version": self.version,
            "session": self.session,
            "file": self.file,
            "files": self.files,
            "missing": [f for f, sig in self._signatures.items() if sig is None],
            "updated": time.strftime("%H:%M:%S"),
            "valid": valid,
            "stale": not valid and self._picture is not None,
            "picture_version": self._picture_version,
            "errors": errors,
            "warnings": len(diags) - errors,
            "diagnostics": [dict(d.to_dict(), text=str(d)) for d in diags],
        }
        empty = {"name": None, "svg": {"area_graph": None, "unrolled": None}, "svg_error": None,
                 "summary": None, "plan": None, "summary_error": None, "inputs": {}, "areas": {},
                 "edges": {}, "readouts": {}, "time": None, "description": None}
        state.update(self._picture if self._picture is not None else empty)
        return state

    # -- reading
    def snapshot(self) -> dict[str, Any]:
        with self._cond:
            return self._state

    def json_bytes(self) -> bytes:
        with self._cond:
            return self._bytes

    def wait(self, since: int, timeout: float) -> int:
        """Block until the version is past ``since`` (or ``timeout`` seconds, or :meth:`close`);
        return the current version."""
        with self._cond:
            self._cond.wait_for(lambda: self.version > since or self._closed, timeout)
            return self.version

    def close(self) -> None:
        """Wake every waiter (the server is stopping)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        return self._closed
