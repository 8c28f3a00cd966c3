"""The demo's chart (PNG, matplotlib's Agg backend: no display needed).

Top: the price path (ETH on the left axis, BTC on the right). Bottom: each position's margin
ratio at every price block with the keeper (solid, with a second point after its actions in
the same step) and without it (dashed, ending at a liquidation), the keeper's actions marked.
Floats appear here only: the chart is the boundary where exact figures become pixels.
"""

from __future__ import annotations

from collections.abc import Sequence
from decimal import Decimal
from pathlib import Path
from typing import TYPE_CHECKING

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt

from keeper.demo import DEMO_THRESHOLDS

if TYPE_CHECKING:
    from keeper.demo import RunResult, Subject
    from keeper.policy import MarketThresholds

DEMO_TITLE = "keeper demo: a sharp move against the trader, with and without the keeper"
DEMO_MAINTENANCE = ((Decimal("0.025"), "ETH maintenance (liquidation)"),)

COLORS = ("tab:blue", "tab:orange", "tab:green", "tab:purple", "tab:brown")
MARKERS = {"top_up": ("^", "top-up"), "reduce": ("v", "reduce"), "close": ("s", "close")}


def _pct(value: Decimal | None) -> float | None:
    return None if value is None else float(value * 100)


def write_chart(
    path: Path,
    prices: Sequence[dict[str, Decimal]],
    subjects: Sequence[Subject],
    with_keeper: RunResult,
    without: RunResult,
    *,
    thresholds: MarketThresholds = DEMO_THRESHOLDS.default,
    maintenance: Sequence[tuple[Decimal, str]] = DEMO_MAINTENANCE,
    title: str = DEMO_TITLE,
    xlabel: str = "price step (one block each)",
) -> Path:
    """Draws the chart into `path` (PNG) and returns it: the prices of the first two markets
    of `prices` (left and right axes), and each subject's margin ratio with and without the
    keeper against `thresholds` and the `maintenance` lines (ratio, label)."""
    # the keeper's line: the ratio at each price block, and after its action in that step
    fig, (top, bottom) = plt.subplots(
        2, 1, figsize=(11, 9), sharex=True, gridspec_kw={"height_ratios": [1, 1.6]}
    )
    steps = list(range(len(prices)))
    symbols = list(prices[0]) if prices else []
    axes = [top, top.twinx()] if len(symbols) > 1 else [top]
    for symbol, axis, color in zip(symbols, axes, COLORS, strict=False):
        axis.plot(steps, [float(p[symbol]) for p in prices], color=color, label=symbol)
        axis.set_ylabel(f"{symbol} (USD)", color=color)
    top.set_title(title)
    top.grid(alpha=0.3)

    for i, s in enumerate(subjects):
        color = COLORS[i % len(COLORS)]
        xs: list[float] = []
        ys: list[float] = []
        for row in with_keeper.rows:
            seen, after = _pct(row.seen.get(s.label)), _pct(row.after.get(s.label))
            if seen is not None:
                xs.append(row.step)
                ys.append(seen)
            acted = any(subject == s.label for _, subject in row.actions)
            if acted and after is not None and after != seen:
                xs.append(row.step + 0.5)
                ys.append(after)
        bottom.plot(xs, ys, color=color, label=f"{s.label} (keeper)")
        bx = [r.step for r in without.rows if r.seen.get(s.label) is not None]
        by = [_pct(r.seen.get(s.label)) or 0.0 for r in without.rows if r.step in bx]
        bottom.plot(bx, by, color=color, linestyle="--", alpha=0.7, label=f"{s.label} (no keeper)")
        for liq in without.liquidations:
            if liq.subject == s.label:
                bottom.plot(
                    [liq.step], [_pct(liq.ratio) or 0.0], "x", color="red", markersize=11, mew=2.5
                )
        for row in with_keeper.rows:
            for kind, subject in row.actions:
                if subject != s.label:
                    continue
                marker, _ = MARKERS.get(kind, ("o", kind))
                y = _pct(row.seen.get(s.label))
                if y is not None:
                    bottom.plot([row.step], [y], marker, color=color, markersize=9, mec="black")
    th = thresholds
    for level, text in (
        (th.top_up_below, "top up below"),
        (th.reduce_below, "reduce below"),
        (th.close_below, "close below"),
    ):
        y = float(level * 100)
        bottom.axhline(y, color="grey", linewidth=0.8, linestyle=":")
        bottom.text(0.2, y + 0.1, text, color="grey", fontsize=8)
    for level, text in maintenance:
        y = float(level * 100)
        bottom.axhline(y, color="red", linewidth=0.8, linestyle=":")
        bottom.text(0.2, y + 0.1, text, color="red", fontsize=8)
    for marker, label in MARKERS.values():
        bottom.plot([], [], marker, color="white", mec="black", label=f"keeper: {label}")
    bottom.plot([], [], "x", color="red", mew=2.5, label="liquidated (no keeper)")
    bottom.set_ylabel("margin ratio (%)")
    bottom.set_xlabel(xlabel)
    bottom.set_ylim(bottom=0)
    bottom.grid(alpha=0.3)
    bottom.legend(fontsize=7, ncol=4, loc="upper center", bbox_to_anchor=(0.5, -0.13))
    fig.tight_layout()
    fig.savefig(path, format="png", dpi=110)
    plt.close(fig)
    return path
