"""The ``tnnspec`` command. A mistake in a file is reported as located diagnostics, never a traceback."""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path

from ..api import check_file
from ..plugins import PluginError
from ..spec.components import BuilderError
from ..spec.diagnostics import Diagnostic, SpecError
from .argtypes import at_least_one
from .fit import add_compare_parser, add_fit_parser
from .interop import add_import_parser
from .search import add_search_parser
from .train import add_evaluate_parser, add_train_parser
from .upgrade import add_upgrade_parser
from .view import add_view_parser


def _print_diagnostics(diags: list[Diagnostic], strict: bool, stream) -> int:
    errors = 0
    for d in diags:
        if strict and d.severity == "warning":
            d = Diagnostic(d.file, d.line, d.column, "error", d.message)
        errors += d.severity == "error"
        print(d, file=stream)
    return errors


def cmd_validate(args) -> int:
    results, failed = [], 0
    for path in args.files:
        spec, diags = check_file(path)
        n_err = sum(d.severity == "error" or args.strict for d in diags)
        failed += n_err > 0
        if args.format == "json":
            results.append({"file": path, "valid": n_err == 0,
                            "diagnostics": [dict(d.to_dict(), severity="error" if args.strict else d.severity)
                                            for d in diags]})
            continue
        _print_diagnostics(diags, args.strict, sys.stdout)
        if n_err == 0:
            print(f"{path}: ok ({len(spec.areas)} areas, {len(spec.edges)} edges"
                  f"{f', {len(diags)} warning(s)' if diags else ''})")
    if args.format == "json":
        print(json.dumps(results, indent=2))
    return 1 if failed else 0


def cmd_docs(args) -> int:
    from ..plugins import load_plugins
    from ..spec import docgen

    load_plugins()
    origin = args.only
    if origin is not None and not any(docgen.names(kind, origin) for kind in ("cell", "op", "learning_rule")):
        print(f"error: no cells, ops or learning rules are registered by '{origin}'", file=sys.stderr)
        return 1
    if not args.update:
        sys.stdout.write(docgen.reference(origin))
        return 0
    stale = 0
    for name in args.update:
        path = Path(name)
        try:
            text = path.read_text(encoding="utf-8")
            new = docgen.update(text, origin)
        except (OSError, docgen.DocsError) as exc:
            print(f"error: {name}: {exc}", file=sys.stderr)
            return 1
        if new == text:
            continue
        stale += 1
        if args.check:
            print(f"{name}: generated docs are out of date (run: tnnspec docs --update {name}"
                  f"{f' --only {origin}' if origin else ''})", file=sys.stderr)
        else:
            path.write_text(new, encoding="utf-8")
            print(f"updated {name}")
    return 1 if args.check and stale else 0


def cmd_plugins(args) -> int:
    from ..plugins import DISABLE_ENV, disabled, plugins

    found = plugins()
    if disabled():
        print(f"plugins are disabled ({DISABLE_ENV} is set)")
        return 0
    if not found:
        print("no plugins installed (no 'tnnspec.cells', 'tnnspec.ops' or 'tnnspec.learning_rules' entry points)")
        return 0
    for p in found:
        what = f"error: {p.error}" if p.error else (", ".join(p.components) or "registers nothing new")
        print(f"{p.distribution} {p.version}  [{p.group}] {p.name} = {p.value}: {what}")
    return 1 if any(p.error for p in found) else 0


def cmd_schema(args) -> int:
    from ..spec.schema import schema_text

    text = schema_text()
    if args.output:
        Path(args.output).write_text(text)
    else:
        sys.stdout.write(text)
    return 0


def _load_or_report(path: str):
    spec, diags = check_file(path)
    _print_diagnostics(diags, False, sys.stderr)
    return spec


def cmd_summary(args) -> int:
    from .summary import summary_text

    spec = _load_or_report(args.file)
    if spec is None:
        return 1
    print(summary_text(spec, steps=args.steps, show_plan=not args.no_plan))
    return 0


def _non_negative(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"'{text}' is not a number") from None
    if not value >= 0 or value == float("inf"):
        raise argparse.ArgumentTypeError(f"must be a finite number >= 0, not {text}")
    return value


def cmd_render(args) -> int:
    from .. import render

    spec = _load_or_report(args.file)
    if spec is None:
        return 1
    if args.format == "text":
        print(render.text_summary(spec))
        return 0
    picture_options = [opt for opt, value in (("--min-weight", args.min_weight), ("--top-k", args.top_k),
                                              ("--rows", args.rows), ("--layout", args.layout),
                                              ("--weight-scale", args.weight_scale)) if value is not None]
    if args.unrolled and picture_options:
        print(f"error: {', '.join(picture_options)}: only for the area graph, not with --unrolled", file=sys.stderr)
        return 2
    if args.rows is not None and args.layout == "dot":
        print("error: --rows is an option of --layout rows, not of --layout dot", file=sys.stderr)
        return 2
    if args.unrolled:
        graph = render.unrolled(spec, steps=args.steps)
    else:
        graph = render.area_graph(spec, detail=args.detail, min_weight=args.min_weight, top_k=args.top_k,
                                  layout=args.layout or "auto", rows=args.rows,
                                  weight_scale=args.weight_scale or "auto")
    out = args.output or f"{Path(args.file).stem}{'_unrolled' if args.unrolled else ''}.svg"
    try:
        render.render(graph, out)
    except render.RenderError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    print(f"wrote {out}")
    return 0


def cmd_convert_weights(args) -> int:
    import torch
    from safetensors.torch import save_file

    from ..zoo.registry import WeightError, convert_weights

    try:
        ckpt = torch.load(args.checkpoint, map_location="cpu", weights_only=True)
    except Exception as exc:  # unreadable or unsafe file: say so, no traceback
        print(f"error: cannot read checkpoint {args.checkpoint}: {exc}", file=sys.stderr)
        return 1
    state = ckpt.get("state_dict", ckpt) if isinstance(ckpt, dict) else None
    if not isinstance(state, dict):
        print(f"error: {args.checkpoint} holds no state dict", file=sys.stderr)
        return 1
    try:
        out = convert_weights(args.source, state)
    except WeightError as exc:
        print(f"error: {exc}", file=sys.stderr)
        return 1
    save_file({k: v.contiguous() for k, v in out.items()}, args.output)
    print(f"wrote {len(out)} tensors to {args.output}")
    return 0


def build_parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(prog="tnnspec", description=(
        "Validate, summarise, render and compile brain-area graph specs (YAML/JSON)."))
    sub = p.add_subparsers(dest="command", required=True)

    v = sub.add_parser("validate", help="check spec files; exit 1 with located errors")
    v.add_argument("files", nargs="+", metavar="FILE")
    v.add_argument("--strict", action="store_true", help="treat warnings as errors")
    v.add_argument("--format", choices=("text", "json"), default="text")
    v.set_defaults(fn=cmd_validate)

    s = sub.add_parser("schema", help="write the JSON Schema (Draft-07) of the file format")
    s.add_argument("-o", "--output", metavar="FILE")
    s.set_defaults(fn=cmd_schema)

    m = sub.add_parser("summary", help="table of areas, shapes, parameters and arrival steps, and the plan")
    m.add_argument("file", metavar="FILE")
    m.add_argument("--steps", type=int, default=None, help="plan for T steps (default: the file's)")
    m.add_argument("--no-plan", action="store_true", help="leave out the step-by-step plan")
    m.set_defaults(fn=cmd_summary)

    r = sub.add_parser("render", help="draw the area graph or its unrolling in time")
    r.add_argument("file", metavar="FILE")
    r.add_argument("-o", "--output", metavar="OUT", help="OUT.svg, .png, .pdf or .dot")
    r.add_argument("--unrolled", action="store_true", help="space-time picture: one column per step")
    r.add_argument("--steps", type=int, default=None, help="steps to draw with --unrolled")
    r.add_argument("--detail", action="store_true", help="add channels, size and cell to each area")
    r.add_argument("--min-weight", type=_non_negative, default=None, metavar="W",
                   help="hide edges whose |weight| is below W (edges from inputs stay)")
    r.add_argument("--top-k", type=at_least_one, default=None, metavar="K",
                   help="keep only the K strongest incoming edges of each area (edges from inputs stay)")
    r.add_argument("--layout", choices=("auto", "dot", "rows"), default=None,
                   help="'rows': levels as rows, groups as column bands; 'dot': graphviz ranks; "
                        "'auto' (default): rows above 8 areas or with fractional levels")
    r.add_argument("--rows", type=at_least_one, default=None, metavar="N",
                   help="bin the levels into at most N rows (implies --layout rows)")
    r.add_argument("--weight-scale", choices=("auto", "linear", "log"), default=None,
                   help="line width by weight: 'auto' (default) is log when weights span over 1.5 decades")
    r.add_argument("--format", choices=("graph", "text"), default="graph", help="'text' prints to the terminal")
    r.set_defaults(fn=cmd_render)

    c = sub.add_parser("convert-weights", help="map a published checkpoint onto a zoo model's parameter names")
    c.add_argument("checkpoint", metavar="CHECKPOINT", help="a torch checkpoint (state dict, or {'state_dict': ...})")
    c.add_argument("--from", dest="source", required=True, metavar="NAME", help="zoo model name, e.g. cornet_rt")
    c.add_argument("-o", "--output", required=True, metavar="OUT.safetensors")
    c.set_defaults(fn=cmd_convert_weights)

    d = sub.add_parser("docs", help="the cells, ops and learning rules reference (plugins' included), generated from the registry")
    d.add_argument("--only", metavar="PACKAGE", help="only the components of this package ('tnnspec': the built-ins)")
    d.add_argument("--update", nargs="+", metavar="FILE",
                   help="rewrite the generated blocks (<!-- BEGIN tnnspec docs: ... -->) in these Markdown files")
    d.add_argument("--check", action="store_true", help="with --update: change nothing, exit 1 if a file is stale")
    d.set_defaults(fn=cmd_docs)

    pl = sub.add_parser("plugins", help="list the installed plugin packages and what they register")
    pl.set_defaults(fn=cmd_plugins)

    add_train_parser(sub)
    add_evaluate_parser(sub)
    add_fit_parser(sub)
    add_compare_parser(sub)
    add_import_parser(sub)
    add_upgrade_parser(sub)
    add_view_parser(sub)
    add_search_parser(sub)
    return p


def main(argv: list[str] | None = None) -> int:
    args = build_parser().parse_args(argv)
    try:
        return args.fn(args)
    except (PluginError, BuilderError) as exc:  # a broken plugin: its package and entry point, no traceback
        print(f"error: {exc}", file=sys.stderr)
        return 1
    except SpecError as exc:  # e.g. an include that fails late
        _print_diagnostics(exc.diagnostics, False, sys.stderr)
        return 1
    except BrokenPipeError:  # `tnnspec summary FILE | head`
        sys.stderr.close()
        return 0
