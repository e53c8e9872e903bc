"""`raygan report <study dir> --figures DIR`: the paper's figures, drawn from a study's results.

- ``auroc_per_epoch_<dataset>.png`` — test AUROC per epoch, one panel per class, one line per row
  of the study's table (mean over seeds, band: min–max over seeds); papers/004 Fig. 6.
- ``score_boxes_<dataset>[_<row>].png`` — per class, box plots of the test anomaly scores of normal
  (n) and anomalous (a) images for two γ levels (.05 and .20 when the study has them, else its
  lowest and highest); whiskers at Tukey's fences [Q1 − 1.5 IQR, Q3 + 1.5 IQR], points beyond them
  left out, as papers/004 §6.3 does; Fig. 4. Scores are divided by the median normal score of
  their trial, so classes share one axis. Needs each trial's ``test_scores.npz`` (selected epoch).
- ``reconstructions_<dataset>_c<class>.png`` — normal and anomalous test images: input,
  reconstruction G(x) and |x − G(x)|, from each row's selected checkpoint; Figs. 2 and 3.
- ``gamma_vs_auroc.png`` — AUROC against γ, ours (solid, ± SD over classes) and the paper's
  (dashed), for studies whose rows include γ (Table 2's supervision study).

Every figure uses the lowest seed where one trial stands for a cell. Matplotlib's Agg backend
draws without a display.
"""

from __future__ import annotations

import json
import math
import re
import statistics
import sys
from collections.abc import Iterable
from pathlib import Path

import numpy as np

from raygan.analysis.parquet import read_results
from raygan.analysis.tables import class_aurocs, class_names, label
from raygan.core.errors import RayganError
from raygan.engine.loop import grid_images
from raygan.engine.run_dir import CONFIG_FILE, TEST_SCORES, selected_checkpoint
from raygan.store.layout import CURVES_FILE, trial_dir
from raygan.store.manifest import table_row_factors
from raygan.store.optuna_db import load_optuna_study
from raygan.study import Study, find_study

RECONSTRUCTION_CELLS = 10  # rows of the table shown in one reconstruction figure, at most
IMAGES_PER_KIND = 8  # normal and anomalous test images per reconstruction figure (Fig. 2: 8 + 8)
BOX_GAMMAS = (0.05, 0.20)  # papers/004 Fig. 4: models trained with 5% and 20% anomalies


def _pyplot():
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    return plt


def _save(fig, path: Path) -> Path:
    """Write one figure and free it (pyplot keeps every open figure alive)."""
    fig.savefig(path, dpi=110)
    _pyplot().close(fig)
    return path


def _slug(text: str) -> str:
    return re.sub(r"[^A-Za-z0-9.]+", "_", text).strip("_")


def _cell_name(names: list[str], values: tuple) -> str:
    return ", ".join(f"{n}={label(v)}" for n, v in zip(names, values)) or "all"


def _class_label(dataset: str, class_index: int) -> str:
    names = class_names(dataset)
    if not names or class_index >= len(names):
        return f"class {class_index}"
    name = names[class_index]
    return name if name == str(class_index) else f"{class_index} {name}"


def _class_role(rows: list[dict]) -> str:
    """What a trial's class is: the normal one (AGAD, Deep SAD) or the anomalous one (GANomaly)."""
    protocols = {r.get("data.protocol") for r in rows}
    return "anomalous class" if protocols == {"anomaly_class"} else "normal class"


class StudyResults:
    """A study's finished trials grouped the way its table is: dataset, then the other row factors."""

    def __init__(self, study_dir: Path) -> None:
        self.dir = Path(study_dir).expanduser().resolve()
        self.info, rows = read_results(self.dir)
        self.rows = [r for r in rows if r["status"] in ("finished", "stopped")]
        if not self.rows:
            raise RayganError(f"{self.dir} has no finished trials to draw")
        self.row_factors = [f for f in table_row_factors(self.info) if f != "dataset"]
        curves_path = self.dir / CURVES_FILE
        self.curves: dict[str, list[dict]] = {}
        if curves_path.exists():
            import pyarrow.parquet as pq

            for c in pq.read_table(curves_path).to_pylist():
                self.curves.setdefault(c["trial_key"], []).append(c)
        order = [tuple(t["factors"][f] for f in self.row_factors) for t in self.info.get("trial_list") or []]
        self.cell_order = list(dict.fromkeys(order + [self.cell(r) for r in self.rows]))

    def cell(self, row: dict) -> tuple:
        return tuple(row[f"factor.{f}"] for f in self.row_factors)

    def datasets(self) -> list[str]:
        return list(dict.fromkeys(r["factor.dataset"] for r in self.rows))

    def of(self, dataset: str) -> list[dict]:
        return [r for r in self.rows if r["factor.dataset"] == dataset]

    def cells(self, rows: Iterable[dict]) -> list[tuple]:
        present = {self.cell(r) for r in rows}
        return [c for c in self.cell_order if c in present]

    def trial_dir(self, row: dict) -> Path:
        return trial_dir(self.dir, row["trial_key"])


def _lowest_seed(rows: list[dict]) -> dict:
    return min(rows, key=lambda r: r["seed"])


def _colors(n: int) -> list:
    plt = _pyplot()
    cmap = plt.get_cmap("tab10" if n <= 10 else "tab20")
    return [cmap(i % cmap.N) for i in range(n)]


# --------------------------------------------------------------------------------------------
# Fig. 6: AUROC per epoch per class


def auroc_per_epoch(results: StudyResults, dataset: str, out_dir: Path) -> Path | None:
    plt = _pyplot()
    from matplotlib.ticker import MaxNLocator

    rows = [r for r in results.of(dataset) if r["trial_key"] in results.curves]
    if not rows:
        return None
    classes = sorted({r["factor.class_index"] for r in rows})
    cells = results.cells(rows)
    ncols = min(5, len(classes))
    nrows = math.ceil(len(classes) / ncols)
    fig, axes = plt.subplots(nrows, ncols, figsize=(max(6.4, 3.2 * ncols), 2.6 * nrows + 1.2), squeeze=False,
                             sharex=True, sharey=True)
    colors = _colors(len(cells))
    for ax, class_index in zip(axes.flat, classes):
        for color, cell in zip(colors, cells):
            seeds = [results.curves[r["trial_key"]] for r in rows
                     if r["factor.class_index"] == class_index and results.cell(r) == cell]
            if not seeds:
                continue
            by_epoch: dict[int, list[float]] = {}
            for curve in seeds:
                for point in curve:
                    if point.get("auroc_test") is not None:
                        by_epoch.setdefault(point["epoch"], []).append(point["auroc_test"])
            epochs = sorted(by_epoch)
            mean = [statistics.fmean(by_epoch[e]) for e in epochs]
            ax.plot(epochs, mean, color=color, marker="o", markersize=3, label=_cell_name(results.row_factors, cell))
            if len(seeds) > 1:
                ax.fill_between(epochs, [min(by_epoch[e]) for e in epochs], [max(by_epoch[e]) for e in epochs],
                                color=color, alpha=0.15, linewidth=0)
        ax.set_title(f"{_class_role(rows)} {_class_label(dataset, class_index)}", fontsize=9)
        ax.xaxis.set_major_locator(MaxNLocator(integer=True))
        ax.set_ylim(0.0, 1.02)
        ax.grid(alpha=0.3)
    for ax in list(axes.flat)[len(classes):]:
        ax.set_visible(False)
    for i, ax in enumerate(list(axes.flat)[:len(classes)]):
        if i + ncols >= len(classes):  # nothing drawn below it: it carries the epoch axis
            ax.tick_params(labelbottom=True)
            ax.set_xlabel("epoch")
    for ax in axes[:, 0]:
        ax.set_ylabel("test AUROC")
    handles, labels = axes.flat[0].get_legend_handles_labels()
    per_row = max(1, min(len(labels), int(fig.get_figwidth() * 72 / (7 * max(map(len, labels)) + 40))))
    fig.legend(handles, labels, loc="lower center", ncol=per_row, fontsize=8, frameon=False)
    fig.suptitle(f"{results.info['study']}: test AUROC per epoch, {dataset}\n(mean over seeds; band: min–max over seeds)",
                 fontsize=10)
    legend_rows = math.ceil(len(labels) / per_row)
    height = fig.get_figheight()  # inches: room for the legend rows
    fig.tight_layout(rect=(0, min(0.4, (0.15 + 0.22 * legend_rows) / height), 1, 1))  # leaves room for the suptitle
    return _save(fig, out_dir / f"auroc_per_epoch_{_slug(dataset)}.png")


# --------------------------------------------------------------------------------------------
# Fig. 4: class-wise score box plots with Tukey fences, two γ levels


def _box_gammas(levels: list[float]) -> list[float]:
    if all(any(math.isclose(g, level) for level in levels) for g in BOX_GAMMAS):
        return [next(level for level in levels if math.isclose(level, g)) for g in BOX_GAMMAS]
    return sorted({min(levels), max(levels)})


def score_boxes(results: StudyResults, dataset: str, out_dir: Path) -> list[Path]:
    """One figure per row of the table apart from γ (e.g. per method, per λ_adcon)."""
    plt = _pyplot()
    rows = [r for r in results.of(dataset) if (results.trial_dir(r) / TEST_SCORES).exists()]
    if not rows:
        return []
    other = [f for f in results.row_factors if f != "gamma"]
    groups: dict[tuple, list[dict]] = {}
    for r in rows:
        groups.setdefault(tuple(r[f"factor.{f}"] for f in other), []).append(r)
    paths = []
    for group, members in groups.items():
        gammas = _box_gammas(sorted({r["data.anomaly_fraction"] for r in members}))
        classes = sorted({r["factor.class_index"] for r in members})
        fig, ax = plt.subplots(figsize=(max(7.0, 1.3 * len(classes) + 1.5), 4.2))
        colors = {g: c for g, c in zip(gammas, ["tab:blue", "tab:red"])}
        width = 0.35
        ticks, tick_labels = [], []
        for i, class_index in enumerate(classes):
            ticks += [3 * i, 3 * i + 1.2]  # n, a
            tick_labels += ["n", "a"]
            for k, gamma in enumerate(gammas):
                cell = [r for r in members if r["factor.class_index"] == class_index
                        and math.isclose(r["data.anomaly_fraction"], gamma)]
                if not cell:
                    continue
                saved = np.load(results.trial_dir(_lowest_seed(cell)) / TEST_SCORES)  # once per cell
                scores, targets = saved["scores"], saved["targets"]
                scale = float(np.median(scores[targets == 0])) or 1.0
                offset = (k - (len(gammas) - 1) / 2) * width
                for kind in (0, 1):
                    ax.boxplot(scores[targets == kind] / scale, positions=[3 * i + 1.2 * kind + offset],
                               widths=width * 0.9, whis=1.5, showfliers=False, patch_artist=True,
                               boxprops={"facecolor": colors[gamma], "alpha": 0.55},
                               medianprops={"color": "black"})
        ax.set_xticks(ticks, tick_labels)
        for i, class_index in enumerate(classes):
            ax.annotate(_class_label(dataset, class_index), xy=(3 * i + 0.6, 0), xycoords=("data", "axes fraction"),
                        xytext=(0, -24), textcoords="offset points", ha="center", fontsize=8)
        ax.set_ylabel("score / median normal score")
        ax.grid(axis="y", alpha=0.3)
        from matplotlib.patches import Patch

        ax.legend(handles=[Patch(facecolor=colors[g], alpha=0.55, label=f"γ = {g:g}") for g in gammas],
                  fontsize=8, loc="upper left")
        name = _cell_name(other, group)
        ax.set_title(f"{results.info['study']}, {dataset}" + (f", {name}" if other else "")
                     + ": test scores of normal (n) and anomalous (a) images\n"
                     f"per {_class_role(members)}; whiskers at Tukey's fences Q1 − 1.5 IQR, Q3 + 1.5 IQR (beyond: left out)",
                     fontsize=9)
        fig.tight_layout()
        suffix = f"_{_slug(name)}" if other else ""
        paths.append(_save(fig, out_dir / f"score_boxes_{_slug(dataset)}{suffix}.png"))
    return paths


# --------------------------------------------------------------------------------------------
# Figs. 2 and 3: reconstructions from the selected checkpoint


class Reconstructor:
    """Loads each data set once and each trial's selected checkpoint on demand (CPU)."""

    def __init__(self) -> None:
        self.datasets: dict[tuple, object] = {}

    def images(self, config: dict) -> tuple[np.ndarray, np.ndarray, np.ndarray]:
        """(picked test images, their reconstructions, their 0/1 targets) of one trial's config."""
        import torch

        from raygan.engine.checkpoints import load_checkpoint
        from raygan.core.config import RunConfig
        from raygan.data import build_split, load_for_config, split_tensors
        from raygan.methods import load_method

        cfg = RunConfig.from_dict(config["config"])
        data = cfg.data
        key = (data.dataset, data.data_root, data.image_size, data.channels)
        if key not in self.datasets:
            self.datasets[key] = load_for_config(data)
        dataset = self.datasets[key]
        tensors = split_tensors(dataset, build_split(dataset, data), data.image_size)
        method = load_method(load_checkpoint(config["checkpoint"]), tensors.channels, tensors.image_size)
        picked = grid_images(tensors, IMAGES_PER_KIND)
        xs = [picked[t] for t in ("test_normal", "test_anomalous") if t in picked]
        targets = [np.full(len(picked[t]), i) for i, t in enumerate(("test_normal", "test_anomalous")) if t in picked]
        x = torch.cat(xs)
        return x.numpy(), method.reconstruct(x).numpy(), np.concatenate(targets)


def _to_display(x: np.ndarray) -> np.ndarray:
    """C×H×W in [-1, 1] -> H×W (grey) or H×W×3 in [0, 1]."""
    img = np.clip((x + 1) / 2, 0, 1)
    return img[0] if img.shape[0] == 1 else img.transpose(1, 2, 0)


def reconstructions(results: StudyResults, dataset: str, class_index: int, out_dir: Path,
                    loader: Reconstructor) -> Path | None:
    plt = _pyplot()
    rows = [r for r in results.of(dataset) if r["factor.class_index"] == class_index]
    cells = results.cells(rows)[:RECONSTRUCTION_CELLS]
    panels = []
    for cell in cells:
        trial = _lowest_seed([r for r in rows if results.cell(r) == cell])
        run_dir = results.trial_dir(trial)
        checkpoint = selected_checkpoint(run_dir)
        if not checkpoint.exists():
            continue
        config = json.loads((run_dir / CONFIG_FILE).read_text())
        x, x_hat, targets = loader.images({"config": config, "checkpoint": checkpoint})
        panels.append((cell, x, x_hat, targets))
    if not panels:
        if cells:  # trials to draw, but their checkpoints were not kept
            print(f"raygan: no reconstructions_{dataset}_c{class_index}.png: its trials have no "
                  f"checkpoints/selected.pt here (run with --keep-checkpoints none, or continued from an "
                  f"export, which keeps no checkpoints)", file=sys.stderr)
        return None
    n_images = len(panels[0][1])
    fig, axes = plt.subplots(3 * len(panels), n_images, figsize=(0.78 * n_images + 1.8, 0.8 * 3 * len(panels) + 0.8),
                             squeeze=False)
    diff_max = max(float(np.abs(x - x_hat).mean(1).max()) for _, x, x_hat, _ in panels) or 1.0
    for p, (cell, x, x_hat, targets) in enumerate(panels):
        diff = np.abs(x - x_hat).mean(1)  # over channels
        for i in range(n_images):
            for r, (image, cmap, vmax) in enumerate(((_to_display(x[i]), "gray", 1), (_to_display(x_hat[i]), "gray", 1),
                                                     (diff[i], "magma", diff_max))):
                ax = axes[3 * p + r, i]
                ax.imshow(image, cmap=None if image.ndim == 3 else cmap, vmin=0, vmax=vmax, interpolation="nearest")
                ax.set_xticks([])
                ax.set_yticks([])
                if p == 0 and r == 0:
                    ax.set_title("normal" if targets[i] == 0 else "anomalous", fontsize=7,
                                 color="tab:blue" if targets[i] == 0 else "tab:red")
                if i == 0:
                    what = ("input x", "G(x)", "|x − G(x)|")[r]
                    ax.set_ylabel(f"{_cell_name(results.row_factors, cell)}\n{what}" if r == 0 else what, fontsize=7)
    fig.suptitle(f"{results.info['study']}: {dataset}, {_class_role(rows)} {_class_label(dataset, class_index)} — test images, "
                 f"reconstructions and |difference| (selected checkpoint, seed {min(r['seed'] for r in rows)})",
                 fontsize=9)
    fig.tight_layout(rect=(0, 0, 1, 0.97))
    return _save(fig, out_dir / f"reconstructions_{_slug(dataset)}_c{class_index}.png")


# --------------------------------------------------------------------------------------------
# AUROC against γ (Table 2 as a plot)


def gamma_vs_auroc(results: StudyResults, study: Study | None, out_dir: Path) -> Path | None:
    if "gamma" not in results.row_factors:
        return None
    plt = _pyplot()
    factors = table_row_factors(results.info)  # as the table's rows: dataset first
    gamma_at = factors.index("gamma")
    lines: dict[tuple, dict[float, list[float]]] = {}  # table row without γ -> γ -> class means
    for key, classes in class_aurocs(results.info, results.rows).items():
        line = key[:gamma_at] + key[gamma_at + 1:]
        lines.setdefault(line, {})[key[gamma_at]] = [statistics.fmean(v) for v in classes.values()]
    if not lines:
        return None
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    others = [f for f in results.row_factors if f != "gamma"]
    for color, (line, points) in zip(_colors(len(lines)), lines.items()):
        gammas = sorted(points)
        means = [statistics.fmean(points[g]) for g in gammas]
        sds = [statistics.pstdev(points[g]) if len(points[g]) > 1 else 0.0 for g in gammas]
        label = line[0] + (f" ({_cell_name(others, line[1:])})" if others else "")
        ax.errorbar(gammas, means, yerr=sds, color=color, marker="o", capsize=3, label=f"{label}, ours")
        if study is not None and study.paper is not None:
            paper = [(g, study.paper.get((*line[:gamma_at], g, *line[gamma_at:]))) for g in gammas]
            paper = [(g, v[0]) for g, v in paper if v is not None]
            if paper:
                ax.plot(*zip(*paper), color=color, linestyle="--", marker="s", markersize=4, label=f"{label}, paper")
    ax.set_xlabel("γ = a/(n+a), fraction of labelled anomalies in training")
    ax.set_ylabel("test AUROC (%), mean over classes")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)
    ax.set_title(f"{results.info['study']}: AUROC against supervision (error bars: SD over classes)", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "gamma_vs_auroc.png")


# --------------------------------------------------------------------------------------------


def search_curves(results: StudyResults, out_dir: Path) -> Path | None:
    """A search has no table rows: validation AUROC per epoch, one line per trial."""
    plt = _pyplot()
    fig, ax = plt.subplots(figsize=(6.4, 4.2))
    for key, curve in sorted(results.curves.items()):
        points = sorted((c["epoch"], c["auroc_val"]) for c in curve if c.get("auroc_val") is not None)
        if points:
            ax.plot(*zip(*points), marker="o", markersize=3, label=key)
    from matplotlib.ticker import MaxNLocator

    ax.xaxis.set_major_locator(MaxNLocator(integer=True))
    ax.set_xlabel("epoch")
    ax.set_ylabel("validation AUROC (the search objective)")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7)
    ax.set_title(f"{results.info['study']}: validation AUROC per epoch and trial", fontsize=10)
    fig.tight_layout()
    return _save(fig, out_dir / "auroc_per_epoch.png")


def optuna_figures(study_dir: Path, results: StudyResults, out_dir: Path) -> list[Path]:
    """Optuna's own optimisation-history and parameter-importance plots of the search's study."""
    import warnings

    study = load_optuna_study(study_dir, results.info)
    if study is None:
        return []
    _pyplot()
    from optuna.visualization import matplotlib as optuna_plots

    written = []
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # the matplotlib backend is marked experimental
        ax = optuna_plots.plot_optimization_history(study, target_name="validation AUROC")
        written.append(_save(ax.figure, out_dir / "optimization_history.png"))
        try:
            ax = optuna_plots.plot_param_importances(study)
        except (ValueError, RuntimeError):  # fewer than two complete trials
            pass
        else:
            ax.figure.tight_layout()
            written.append(_save(ax.figure, out_dir / "param_importances.png"))
    return written


def write_figures(study_dir: Path, out_dir: Path) -> list[Path]:
    """Draw every figure the study's results allow into ``out_dir``; return the files written."""
    results = StudyResults(study_dir)
    study = find_study(results.info["study"])
    out_dir = Path(out_dir).expanduser()
    out_dir.mkdir(parents=True, exist_ok=True)
    if results.info.get("kind") == "search":
        return [p for p in [search_curves(results, out_dir), *optuna_figures(study_dir, results, out_dir)]
                if p is not None]
    written: list[Path] = []
    loader = Reconstructor()
    for dataset in results.datasets():
        written += [p for p in [auroc_per_epoch(results, dataset, out_dir)] if p is not None]
        written += score_boxes(results, dataset, out_dir)
        for class_index in sorted({r["factor.class_index"] for r in results.of(dataset)}):
            path = reconstructions(results, dataset, class_index, out_dir, loader)
            if path is not None:
                written.append(path)
    path = gamma_vs_auroc(results, study, out_dir)
    if path is not None:
        written.append(path)
    return written
