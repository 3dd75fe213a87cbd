"""Random valid tnnspec files for the differential tests (tests/test_differential.py).

:func:`specs` draws plain data (what a user writes in YAML), valid by construction: every shape
is tracked while the file is drawn, so each edge transform ends in the shape its target needs,
every cell gets a drive it accepts, every area is reached through a chain of feedforward edges
from the image, and every edge that could close a loop within one step has a delay >= 1.

What the drawn files contain (all tiny: 1-4 channels, 3-6 px maps, 2-5 areas, at most 6 steps):

- inputs: an image ``[C, S, S]`` shown ``static``, ``on_off`` (with a blank) or as a
  ``sequence`` of :data:`MAX_STEPS` frames; sometimes a vector cue ``[F]`` that drives
  attention edges;
- areas: ``identity``, ``time_decay`` (learnable and fixed), ``leaky``, ``additive_state``,
  ``simple_rnn``, ``gru``, ``lstm`` (with or without peepholes), ``reciprocal_gated`` and
  ``cornet_s_block`` cells; ``combine`` ``sum``, ``concat`` and ``multiplicative``; every
  ``before_arrival`` mode; ops: conv, batch norm (plain and ``per_step``), group norm, relu,
  tanh, elu, scale, size-keeping 3x3 max pools and 2x2 max pools that halve the map;
- edges: feedforward chain, extra feedforward and skip edges, lateral self-loops, feedback,
  attention (``gain`` and ``relative_gain``, per-channel and spatial) and normalization edges,
  with explicit or default delays, ``from_step``, ``weight``, explicit ``name``s, and
  ``enabled: false`` on non-chain edges and areas;
- readouts: global pools, linear heads, flatten heads and raw outputs, some ``cumulative``.

No ``dropout``: train-mode calls would draw different masks in the two networks compared.
"""

from __future__ import annotations

import io

from hypothesis import strategies as st
from ruamel.yaml import YAML

MAX_STEPS = 6  # the longest run drawn; sequence inputs carry this many frames

STATEFUL = ["time_decay", "time_decay_fixed", "leaky", "additive_state", "simple_rnn", "gru", "lstm",
            "reciprocal_gated", "cornet_s_block"]
CONV_RNN = ("simple_rnn", "gru", "lstm")  # map any drive channels to the area's


def text(data) -> str:
    """Plain data as YAML text (block style: every key on its own line, so errors point at it)."""
    yaml = YAML(typ="safe", pure=True)
    yaml.default_flow_style = False
    buf = io.StringIO()
    yaml.dump(data, buf)
    return buf.getvalue()


def _cell(draw, kind: str) -> tuple[dict | str, bool]:
    """The cell as written, and whether it keeps the drive's channels (else: maps to the area's)."""
    kernel = draw(st.sampled_from([1, 3]))
    if kind == "identity":
        return "identity", True
    if kind == "time_decay":
        return {"type": "time_decay", "decay": draw(st.sampled_from([0.2, 0.5, 0.9]))}, True
    if kind == "time_decay_fixed":
        return {"type": "time_decay", "learnable": False, "decay": draw(st.sampled_from([0.0, 0.5, 1.0]))}, True
    if kind == "leaky":
        return {"type": "leaky", "tau_ms": draw(st.sampled_from([10.0, 20.0, 50.0])),
                "activation": draw(st.sampled_from(["identity", "tanh", "relu"]))}, True
    if kind == "additive_state":
        return "additive_state", True
    if kind == "simple_rnn":
        return {"type": "simple_rnn", "kernel": kernel,
                "activation": draw(st.sampled_from(["elu", "tanh", "relu"]))}, False
    if kind == "gru":
        return {"type": "gru", "kernel": kernel}, False
    if kind == "lstm":
        cell = {"type": "lstm", "kernel": kernel}
        if draw(st.booleans()):
            cell["peephole"] = True
        return cell, False
    if kind == "reciprocal_gated":
        return {"type": "reciprocal_gated", "kernel": kernel, "bias": draw(st.booleans())}, True
    if kind == "cornet_s_block":
        return {"type": "cornet_s_block", "inner_steps": draw(st.integers(1, 2)),
                "scale": draw(st.integers(1, 2))}, True
    raise AssertionError(kind)


# ops that keep the shape of a map (any channels: convs without ``channels`` output the target's)
_KEEP = ["relu", "tanh", "elu", {"norm": {"type": "batch"}}, {"norm": {"type": "batch", "per_step": True}},
         {"norm": {"type": "group", "groups": 1}}, {"scale": {"factor": 0.5, "offset": 0.1}},
         {"pool": {"type": "max", "kernel": 3, "stride": 1, "padding": 1}}]


def _conv(draw, channels: int | None = None) -> dict | str:
    kernel = draw(st.sampled_from([1, 3]))
    params = {"kernel": kernel}
    if channels is not None:
        params["channels"] = channels
    if kernel == 3 and channels is None and draw(st.booleans()):
        return "conv"
    return {"conv": params}


def _after_conv(draw) -> list:
    """What often follows a conv: nothing, a ReLU, conv + BN (+ ReLU) pairs for fusion..."""
    return draw(st.sampled_from([
        [], ["relu"], [{"norm": {"type": "batch"}}], [{"norm": {"type": "batch"}}, "relu"],
        [{"norm": {"type": "batch", "per_step": True}}, "relu"], [{"norm": {"type": "group", "groups": 1}}, "relu"],
        ["relu", {"pool": {"type": "max", "kernel": 3, "stride": 1, "padding": 1}}], ["tanh"]]))


def _area_ops(draw, cell_channels: int, channels: int, size: int, keep_shape: bool) -> tuple[list, int]:
    """Area ops taking the cell output (``cell_channels``) to ``channels``; returns (ops, output
    size factor: 1, or 2 when a final 2x2 max pool halves the map)."""
    ops: list = []
    if cell_channels != channels or draw(st.integers(0, 3)) == 0:
        ops.append(_conv(draw))  # a conv without channels outputs the area's
        ops += _after_conv(draw)
    for _ in range(draw(st.integers(0, 2))):
        ops.append(draw(st.sampled_from(_KEEP)))
    halve = not keep_shape and size >= 4 and draw(st.integers(0, 4)) == 0
    if halve:
        ops.append({"pool": {"type": "max", "kernel": 2, "ceil_mode": draw(st.booleans())}})
    return ops, (2 if halve else 1)


def _map_transform(draw, src: tuple[int, int], dst_size: int, channels: int | None, explicit: bool,
                   allow_plain: bool, sized: bool) -> tuple[list, int]:
    """A driving edge's transform from a map of ``src`` = (channels, size) to a map of size
    ``dst_size`` with ``channels`` channels (``None``: any, for concat). ``explicit``: write the
    conv's channels; ``sized``: a resample names its size (the target's size is known from
    another edge only). Returns (transform, channels delivered)."""
    cs, hs = src
    out: list = []
    if hs != dst_size:
        mode = draw(st.sampled_from(["nearest", "nearest", "bilinear"]))
        # without a size it resizes to the target's size, known only from another edge
        out.append({"resample": {"mode": mode, "size": [dst_size, dst_size]}} if sized or draw(st.booleans())
                   else {"resample": mode})
    if allow_plain and (channels is None or channels == cs) and draw(st.integers(0, 3)) == 0:
        if draw(st.booleans()):
            out.append(draw(st.sampled_from(["tanh", "relu", {"scale": 2.0}])))
        return out, cs
    c = channels if channels is not None else draw(st.integers(1, 3))
    out.append(_conv(draw, c if (explicit or channels is None) else None))
    out += _after_conv(draw)
    return out, c


@st.composite
def specs(draw, max_areas: int = 5) -> dict:
    """A valid spec as plain data (module docstring)."""
    n = draw(st.integers(2, max_areas))
    names = [f"A{i}" for i in range(n)]
    size = draw(st.integers(3, 6))
    c_in = draw(st.integers(1, 3))
    spec: dict = {"tnnspec": "1.1", "name": "diff"}

    # ---- areas: cell, combine, ops; drive channels are fixed once the driving edges are drawn
    areas: dict = {}
    info: dict = {}  # name -> dict(channels, combine, keeps (cell keeps drive channels), out_size)
    for i, name in enumerate(names):
        channels = draw(st.integers(1, 4))
        combine = draw(st.sampled_from(["sum"] * 4 + ["concat", "multiplicative"]))
        kinds = (["identity"] * 3 + STATEFUL) if combine != "concat" else ["identity", *CONV_RNN]
        kind = draw(st.sampled_from(kinds))
        cell, keeps = _cell(draw, kind)
        area: dict = {"level": i + 1, "channels": channels}
        mode = draw(st.sampled_from(["silent", "silent", "zero_drive", "zero_input"]))
        if mode != "silent":
            area["before_arrival"] = mode
        if combine != "sum":
            area["combine"] = combine
        if cell != "identity" or draw(st.booleans()):
            area["cell"] = cell
        # concat drives have other channels than the area: a conv RNN or an identity cell + conv op
        cell_channels = channels
        out_size = size
        if kind == "cornet_s_block":
            out_size = (size - 1) // 2 + 1
        if combine == "concat" and keeps:
            cell_channels = -1  # forces a first conv op
        ops, factor = _area_ops(draw, cell_channels, channels, out_size,
                                keep_shape=kind in ("additive_state", "cornet_s_block"))
        if factor == 2:
            out_size = -(-out_size // 2) if ops[-1]["pool"]["ceil_mode"] else out_size // 2
        if ops:
            area["ops"] = ops
        areas[name] = area
        info[name] = dict(channels=channels, combine=combine, out=(channels, out_size), drive=None, terms=0)

    out_shape = {"image": (c_in, size), **{a: info[a]["out"] for a in names}}
    edges: list[dict] = []
    seen: set = set()
    index = {"image": -1, "cue": -1, **{a: i for i, a in enumerate(names)}}
    explicit_names = iter(f"e{k}" for k in range(100))

    def delay_for(source, target, lo_loop=1):
        """None (the default delay) or steps; >= 1 where the edge could close a delay-0 loop."""
        if index[source] >= index[target]:
            return draw(st.integers(lo_loop, 2))
        return draw(st.one_of(st.none(), st.integers(0, 2)))

    def add(kind: str, source: str, target: str, chain: bool = False, **extra) -> dict | None:
        if (kind, source, target) in seen:
            return None
        seen.add((kind, source, target))
        t = info[target]
        edge: dict = {"type": kind, "source": source, "target": target}
        if kind in ("feedforward", "skip", "lateral", "feedback"):
            concat = t["combine"] == "concat"
            want = None if concat else t["channels"]
            transform, got = _map_transform(draw, out_shape[source], size, want, explicit=False,
                                            allow_plain=True, sized=chain or concat)
            if concat:
                t["terms"] += got
                # the loader checks attention/normalization shapes against a concat drive
                # without the terms whose shapes it infers later (from the area itself or later
                # areas, or through a resample without a size): a loader bug. Those edges then
                # get channel-free shapes.
                t["late"] = t.get("late", False) or index[source] >= index[target]
            if transform:
                edge["transform"] = transform
        edge.update(extra)
        delay = draw(st.integers(0, 1)) if chain and draw(st.booleans()) else (
            None if chain else delay_for(source, target))
        if kind in ("lateral", "feedback", "attention", "normalization") and index[source] >= index[target]:
            delay = draw(st.integers(1, 2))
        if delay is not None:
            edge["delay"] = delay
        if not chain and draw(st.integers(0, 3)) == 0:
            edge["from_step"] = draw(st.integers(1, 3))
        if draw(st.integers(0, 4)) == 0:
            edge["weight"] = draw(st.sampled_from([0.5, -1.0, 2.0, 0.0]))
        if draw(st.integers(0, 5)) == 0:
            edge["name"] = next(explicit_names)
        if not chain and draw(st.integers(0, 11)) == 0:
            edge["enabled"] = False
        edges.append(edge)
        return edge

    chain = ["image"] + names
    for source, target in zip(chain, chain[1:]):
        add("feedforward", source, target, chain=True)
    for i in range(1, n):
        for source in draw(st.lists(st.sampled_from(chain[:i + 1]), max_size=2, unique=True)):
            add(draw(st.sampled_from(["feedforward", "skip"])), source, names[i])
    for name in names:
        if draw(st.integers(0, 2)) == 0:
            add("lateral", name, name)
    for j in range(1, n):
        for target in draw(st.lists(st.sampled_from(names[:j]), max_size=1)):
            add("feedback", names[j], target)
    for name in names:  # the drive's channels are now known
        t = info[name]
        t["drive"] = t["terms"] if t["combine"] == "concat" else t["channels"]

    # ---- attention and normalization edges (they need the drive's shape)
    cue = None
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(names))
        dc = info[target]["drive"]
        relative = draw(st.booleans())
        squash = "tanh" if relative else "sigmoid"
        extra = {"mode": "relative_gain"} if relative else {}
        source = draw(st.sampled_from(["cue", "image", *names]))
        per_channel = not info[target].get("late") and draw(st.booleans())
        if source == "cue":
            cue = cue or draw(st.integers(1, 3))
            transform = [{"linear": dc if per_channel else 1}, squash]
        elif per_channel:  # a gain per channel
            transform = [{"pool": "avg"}, {"linear": dc}, squash]
        else:  # a spatial spotlight [1, S, S]
            transform = ([{"resample": "nearest"}] if out_shape[source][1] != size else [])
            transform += [{"conv": {"kernel": 1, "channels": 1}}, squash]
        add("attention", source, target, transform=transform, **extra)
    for _ in range(draw(st.integers(0, 2))):
        target = draw(st.sampled_from(names))
        dc = info[target]["drive"]
        source = draw(st.sampled_from(["image", *names]))
        over = info[target].get("late") or draw(st.booleans())
        transform = [{"resample": "nearest"}] if out_shape[source][1] != size else []
        if not over or draw(st.booleans()):
            transform.append({"conv": {"kernel": 1, "channels": dc if not over else draw(st.integers(1, 2))}})
        extra = {"pool": {"kernel": draw(st.sampled_from([1, 3])), "over_channels": over},
                 "sigma": draw(st.sampled_from([0.5, 1.0, 2.0])), "power": draw(st.sampled_from([1.0, 2.0]))}
        if transform:
            extra["transform"] = transform
        add("normalization", source, target, **extra)

    if n > 2 and draw(st.integers(0, 9)) == 0:  # a lesioned area
        areas[draw(st.sampled_from(names[1:]))]["enabled"] = False

    # ---- time, inputs, readouts
    default = draw(st.sampled_from([None, "sweep", 0, 1, {"feedforward": 1, "skip": 0}]))
    time: dict = {"steps": draw(st.integers(2, MAX_STEPS))}
    if default is not None:
        time["default_delay"] = default
    spec["time"] = time
    schedule = draw(st.sampled_from(["static", "on_off", "sequence"]))
    image: dict = {"shape": [c_in, size, size]}
    if schedule == "on_off":
        start = draw(st.integers(0, 1))
        sched = {"type": "on_off", "start": start, "blank": draw(st.sampled_from([0.0, 0.5]))}
        stop = draw(st.one_of(st.none(), st.integers(start + 1, start + 3)))
        if stop is not None:
            sched["stop"] = stop
        image["schedule"] = sched
    elif schedule == "sequence":
        image["schedule"] = "sequence"
    spec["inputs"] = {"image": image}
    if cue is not None:
        spec["inputs"]["cue"] = {"shape": [cue]}
    spec["areas"] = areas
    spec["edges"] = edges
    readouts = {}
    for k in range(draw(st.integers(1, 2))):
        source = draw(st.sampled_from(names[1:] if k == 0 else names))
        head = draw(st.sampled_from([
            [{"pool": "avg"}, {"linear": 3}], [{"pool": "max"}], ["flatten", {"linear": 2}], [],
            [{"pool": "avg"}, {"linear": 2}, "relu"]]))
        r: dict = {"source": source}
        if head:
            r["head"] = head
        if draw(st.integers(0, 2)) == 0:
            r["cumulative"] = True
        readouts[f"r{k}"] = r
    spec["readouts"] = readouts
    return spec
