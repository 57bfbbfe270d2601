"""Paper figures laid out per size: built from hand-written run records (no training) at one
column (3.5 in) and one page (7.16 in), drawn, then checked from what matplotlib placed:
no two texts overlap, no legend over a data point, no font below 7 pt (exponents included)."""

from __future__ import annotations

import re
from pathlib import Path

import matplotlib.legend
import matplotlib.lines
import matplotlib.text
import numpy as np
import pytest
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from bench.report import plots, prepare
from bench.report.load import load_records
from test_report import energy_study, make_avalanche, new_parts, write_record, write_sweep

MATH_SHRINK = 0.7  # mathtext's size for each level of super- or subscript (SHRINK_FACTOR)
SIZES = {"column": 3.5, "page": 7.16}
COLUMN_MAX_HEIGHT = 4.5  # inches: a one-column figure leaves room for its caption and text


def resnet18_study(root: Path) -> Path:
    """SEW vs Sparse ResNet18 with eight sums; SEW's largest spike z reaches 12 at sum7."""
    study = root / "deep"
    write_sweep(study, {"arch": {"values": ["sew_resnet18", "sparse_resnet18"]},
                        "seed": {"values": [0, 1]}})
    for arch in ("sew_resnet18", "sparse_resnet18"):
        for s in range(2):
            sew = arch.startswith("sew")
            spikes = {"stem.sn": 5000.0} | {
                f"sum{k}": (4000.0 * (k + 1) ** 1.5 if sew else 3000.0 / (k + 1)) * (1 + s / 10)
                for k in range(8)}
            maxima = {p: (min(4 + k, 12) if sew else 4) for k, p in enumerate(spikes)}
            write_record(study, f"{arch}-{s}", arch=arch, seed=s, T=1, N=4, spikes=spikes,
                         max_spike=maxima, test_acc=0.9, energy=new_parts(100.0 + 10 * s),
                         grads={b: [10.0 ** (-k / 2)] * 5 for k, b in enumerate(
                             ["stem"] + [f"block{i}" for i in range(8)] + ["head"])})
    return study


def levels_study(root: Path) -> Path:
    study = root / "levels"
    write_sweep(study, {"arch": {"values": ["vgg16", "sew_resnet18"]},
                        "T": {"values": [1, 2, 4]}, "N": {"values": [1, 2, 4, 8]}})
    for arch in ("vgg16", "sew_resnet18"):
        for T in (1, 2, 4):
            for N in (1, 2, 4, 8):
                write_record(study, f"{arch}-T{T}N{N}", arch=arch, T=T, N=N,
                             test_acc=0.5 + 0.04 * T + 0.03 * N, spikes={"fc1.sn": 3.0},
                             energy=new_parts(1000.0 * T * N ** 0.5))
    return study


@pytest.fixture(scope="module")
def builders(tmp_path_factory) -> dict:
    root = tmp_path_factory.mktemp("layout")
    ava = prepare(load_records([make_avalanche(root)]))
    deep = prepare(load_records([resnet18_study(root)]))
    energy = prepare(load_records([energy_study(root)]))
    levels = prepare(load_records([levels_study(root)]))
    metrics = [("test_acc_pct", "accuracy (%)"), ("spikes_total_per_image", "spikes / image")]
    return {
        "avalanche": lambda: plots.avalanche_figure(ava.done, ava.records.layers,
                                                    list(ava.agg["label"])),
        "avalanche-resnet18": lambda: plots.avalanche_figure(deep.done, deep.records.layers,
                                                             list(deep.agg["label"])),
        "gradient": lambda: plots.gradient_figure(deep.done, deep.records.grads,
                                                  list(deep.agg["label"])),
        "levels": lambda: plots.levels_figure(levels.agg, ["arch"]),
        "energy": lambda: plots.energy_figure(energy.agg),
        "energy-two": lambda: plots.energy_figure(ava.agg),
        "bars": lambda: plots.bars_figure(deep.agg, metrics, "activity",
                                          hlines={"test_acc_pct": (91.0, "paper")}),
    }


def draw(fig: Figure) -> None:
    """Lay the figure out and place every artist, as saving it would (Agg canvas)."""
    FigureCanvasAgg(fig)
    fig.canvas.draw()


def texts(fig: Figure) -> list[matplotlib.text.Text]:
    """Every text matplotlib draws: titles, labels, tick labels, offset texts, value labels,
    legend entries (visible, non-empty)."""
    hidden = set()
    for ax in fig.axes:  # tick labels of ticks outside the view exist but are not drawn
        for axis in (ax.xaxis, ax.yaxis):
            drawn = set(axis._update_ticks())
            for tick in axis.get_major_ticks() + axis.get_minor_ticks():
                if tick not in drawn:
                    hidden.update({id(tick.label1), id(tick.label2)})
    found = [t for t in fig.findobj(matplotlib.text.Text)
             if t.get_visible() and t.get_text().strip() and _shown(t) and id(t) not in hidden]
    return list(dict.fromkeys(found))


def _shown(text: matplotlib.text.Text) -> bool:
    """Drawn: its axes (if any) is visible (a hidden panel's labels are not drawn)."""
    return text.axes is None or text.axes.get_visible()


def effective_pt(text: matplotlib.text.Text) -> float:
    """The smallest glyph size of a text: mathtext sets each super/subscript level at 0.7x."""
    size = text.get_fontsize()
    s = text.get_text()
    if s.count("$") < 2:
        return size
    depth, level = 0, 0
    for token in re.findall(r"[\^_]\{|[\^_].|\{|\}", s):
        if token[0] in "^_":
            depth = max(depth, level + 1)
            level += token.endswith("{")
        elif token == "{":
            level += 0  # a plain group keeps the size
        else:
            level = max(0, level - 1)
    return size * MATH_SHRINK ** depth


def overlaps(fig: Figure) -> list[tuple[str, str]]:
    renderer = fig.canvas.get_renderer()
    boxes = [(t.get_text(), t.get_window_extent(renderer)) for t in texts(fig)]
    out = []
    for i, (a, box_a) in enumerate(boxes):
        for b, box_b in boxes[i + 1:]:
            w = min(box_a.x1, box_b.x1) - max(box_a.x0, box_b.x0)
            h = min(box_a.y1, box_b.y1) - max(box_a.y0, box_b.y0)
            if w > 0.5 and h > 0.5:  # more than half a pixel each way: glyphs collide
                out.append((a, b))
    return out


def legends(fig: Figure) -> list[matplotlib.legend.Legend]:
    return [leg for leg in fig.findobj(matplotlib.legend.Legend) if leg.get_visible()]


def data_points(fig: Figure) -> list[tuple[str, np.ndarray]]:
    """Display coordinates of every plotted point: line vertices (markers, error bar ends)
    and the corners and centres of bars, each with what it belongs to."""
    out = []
    for ax in fig.axes:
        if not ax.get_visible():
            continue
        for line in ax.get_lines():
            xy = np.asarray(line.get_xydata(), float)
            xy = xy[np.isfinite(xy).all(axis=1)]
            if len(xy) and line.get_visible():
                out.append((line.get_gid() or line.get_label(),
                            line.get_transform().transform(xy)))
        for coll in ax.collections:  # error bars
            for path in coll.get_paths():
                xy = coll.get_transform().transform(path.vertices)
                out.append(("collection", xy[np.isfinite(xy).all(axis=1)]))
        for patch in ax.patches:
            box = patch.get_window_extent()
            clip = ax.get_window_extent()
            x0, x1 = max(box.x0, clip.x0), min(box.x1, clip.x1)
            y0, y1 = max(box.y0, clip.y0), min(box.y1, clip.y1)
            if x1 > x0 and y1 > y0:
                out.append((patch.get_gid() or "bar", np.array(
                    [[x0, y0], [x1, y1], [x0, y1], [x1, y0], [(x0 + x1) / 2, (y0 + y1) / 2]])))
    return out


def legend_hits(fig: Figure) -> list[str]:
    hits = []
    for leg in legends(fig):
        box = leg.get_window_extent()
        for what, xy in data_points(fig):
            inside = ((xy[:, 0] > box.x0) & (xy[:, 0] < box.x1) & (xy[:, 1] > box.y0)
                      & (xy[:, 1] < box.y1))
            if inside.any():
                hits.append(what)
    return hits


@pytest.mark.parametrize("size", list(SIZES))
@pytest.mark.parametrize("name", ["avalanche", "avalanche-resnet18", "gradient", "levels",
                                  "energy", "energy-two", "bars"])
def test_paper_figure_layout(builders, name, size):
    with plots.paper_size(size):
        fig = builders[name]()
    width, height = fig.get_size_inches()
    assert width == pytest.approx(SIZES[size])
    if size == "column":
        assert height <= COLUMN_MAX_HEIGHT, (name, height)
    draw(fig)
    assert overlaps(fig) == [], name
    assert legend_hits(fig) == [], name
    small = {t.get_text(): round(effective_pt(t), 2) for t in texts(fig)
             if effective_pt(t) < plots.MIN_PAPER_PT}
    assert small == {}, name
    for t in texts(fig):  # nothing drawn outside the page
        box = t.get_window_extent()
        assert box.x0 >= -1 and box.x1 <= fig.bbox.width + 1, (name, t.get_text())


def test_the_checks_catch_what_they_look_for():
    """Each check fails on a figure made to break it (tests that could fail)."""
    fig = Figure(figsize=(3.5, 2.5))
    ax = fig.subplots()
    ax.plot([0, 1, 2], [1, 50, 3], "o", label="data")  # 50: the middle of the log axis
    ax.set_yscale("log")
    ax.set_xticks([0, 0.02, 0.04], ["sum0", "sum1", "sum2"])  # crowded: labels collide
    ax.legend(loc="center")  # over the middle point
    ax.set_ylim(0.5, 5000)
    draw(fig)
    assert overlaps(fig)
    assert legend_hits(fig) == ["data"]
    exponents = [effective_pt(t) for t in texts(fig) if "^" in t.get_text()]
    assert exponents and min(exponents) == pytest.approx(10 * MATH_SHRINK)
    assert effective_pt(matplotlib.text.Text(text="$10^{4}$", fontsize=7)) == pytest.approx(4.9)
