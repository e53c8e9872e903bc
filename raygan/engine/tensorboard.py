"""One TensorBoard writer per run: loss terms, AUROC per epoch, image grids, score histograms,
and the run's HParams entry (written into the same run directory, so the HParams dashboard lists
this run's config against its final metrics).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

import torch
from torch.utils.tensorboard import SummaryWriter
from torch.utils.tensorboard.summary import hparams

from raygan.core.dicts import flatten

HPARAM_METRICS = ("hparam/auroc", "hparam/auroc_last", "hparam/auroc_val", "hparam/selected_epoch")


def hparam_values(values: Mapping) -> dict[str, float | int | str | bool]:
    """Values as TensorBoard's HParams takes them: numbers, text and flags as they are, anything else as text."""
    return {k: (v if isinstance(v, (int, float, str, bool)) else str(v)) for k, v in values.items()}


def flat_hparams(config: dict, prefix: str = "") -> dict[str, float | int | str | bool]:
    """A nested config as HParams entries with dotted names (``model.backbone``)."""
    return hparam_values(flatten(config, prefix))


class RunWriter:
    def __init__(self, log_dir: Path, config: dict, purge_step: int | None = None) -> None:
        # purge_step drops events a resumed run is about to write again.
        self.writer = SummaryWriter(str(log_dir), purge_step=purge_step)
        if not purge_step:
            exp, ssi, sei = hparams(flat_hparams(config), {m: 0.0 for m in HPARAM_METRICS})
            for summary in (exp, ssi, sei):
                self.writer.file_writer.add_summary(summary)

    def losses(self, terms: dict[str, float], step: int) -> None:
        for name, value in terms.items():
            self.writer.add_scalar(f"loss/{name}", value, step)

    def epoch(self, metrics: dict[str, float], epoch: int) -> None:
        for name in ("auroc_val", "ap_val", "val_loss", "auroc_test", "ap_test", "images_per_s"):
            if name in metrics:
                self.writer.add_scalar(f"epoch/{name}", metrics[name], epoch)

    def scores(self, scores: torch.Tensor, targets: torch.Tensor, epoch: int) -> None:
        for label, name in ((0, "normal"), (1, "anomalous")):
            part = scores[targets == label]
            if len(part):
                self.writer.add_histogram(f"scores/test_{name}", part, epoch)

    def reconstructions(self, x: torch.Tensor, x_hat: torch.Tensor, tag: str, epoch: int) -> None:
        """Rows: inputs, reconstructions, |x − x̂| (scaled to [0, 1])."""
        error = (x - x_hat).abs() / 2
        rows = torch.stack([(x + 1) / 2, (x_hat + 1) / 2, error]).clamp(0, 1)  # 3×n×C×H×W
        three, n, c, h, w = rows.shape
        grid = rows.permute(2, 0, 3, 1, 4).reshape(c, three * h, n * w)
        self.writer.add_image(f"reconstructions/{tag}", grid, epoch)

    def final(self, result: dict[str, float]) -> None:
        for name in HPARAM_METRICS:
            key = name.split("/", 1)[1]
            if key in result:
                self.writer.add_scalar(name, float(result[key]), 0)
        self.writer.flush()

    def close(self) -> None:
        self.writer.close()
