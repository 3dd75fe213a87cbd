"""Plot the key result of the normalization model of attention with graphs/reynolds_heeger.yaml.

Compiles the graph, sets the stimulus-drive conv to the identity (the paper's model), and
measures the equilibrium response of the V1 unit at the centre of the map, preferring the
stimulus orientation, over a range of contrasts, with and without attention, in two
configurations (Reynolds & Heeger 2009, Figs. 2-3):

* a small stimulus (5x5) and a large attention field (the whole map): contrast gain;
* a large stimulus (the whole map) and a small attention field (5x5): response gain.

Writes docs/images/reynolds_heeger.png (matplotlib, Agg backend).

    .venv/bin/python tools/plot_reynolds_heeger.py [--out FILE]
"""

from __future__ import annotations

import argparse
import sys
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))

import matplotlib  # noqa: E402

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402
from tnnspec.zoo import reynolds_heeger as rh  # noqa: E402

OUT = ROOT / "docs" / "images" / "reynolds_heeger.png"
SMALL_RADIUS = 2          # 5x5 positions


def contrast_response(net, stim_radius: int, field_radius: int, contrasts, attend: bool) -> np.ndarray:
    """Equilibrium response of the centre unit (orientation channel 0) at each contrast."""
    n = net.spec.inputs["stimulus"].shape[-1]
    return rh.responses(net, stim_radius, field_radius, contrasts, attend)[2][:, 0, n // 2, n // 2].numpy()


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--out", type=Path, default=OUT, help="the PNG to write")
    args = parser.parse_args(argv)
    spec, net = rh.model()
    n = spec.inputs["stimulus"].shape[-1]
    contrasts = np.logspace(-4, 0, 60)
    cases = [
        ("Large attention field, small stimulus:\ncontrast gain", SMALL_RADIUS, n // 2),
        ("Small attention field, large stimulus:\nresponse gain", n // 2, SMALL_RADIUS),
    ]
    fig, axes = plt.subplots(1, 2, figsize=(9, 3.8), constrained_layout=True)
    for ax, (title, stim_r, field_r) in zip(axes, cases):
        for attend, style, label in ((False, "k-", "attend away"), (True, "r-", "attend to the stimulus")):
            ax.semilogx(contrasts, contrast_response(net, stim_r, field_r, contrasts, attend), style,
                        label=label, lw=2)
        ax.set_title(title, fontsize=10)
        ax.set_xlabel("stimulus contrast")
        ax.grid(alpha=0.3, which="both", lw=0.5)
    axes[0].set_ylabel("response (centre unit)")
    axes[0].legend(frameon=False, fontsize=9)
    fig.suptitle("Normalization model of attention (Reynolds & Heeger 2009), graphs/reynolds_heeger.yaml",
                 fontsize=10)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.out, dpi=120)
    plt.close(fig)
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
