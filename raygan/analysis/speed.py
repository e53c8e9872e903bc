"""The time to score one image by the value of one factor, ours beside the paper's.

Each trial times its trained detector at the end of its run (raygan.engine.latency), so the values
of a study run were measured on the same machine under the same conditions; ratios to the first
value (the naive generator, say) are what carries from one machine to another.
"""

from __future__ import annotations

import math
import statistics

from raygan.analysis.tables import label
from raygan.engine.latency import BATCH_SIZES, metric_name


def speed_rows(rows: list[dict], speed) -> list[dict]:
    """Per value of the factor (in the paper's order): finished trials timed, the median ms per image
    at each batch size, and the paper's figure."""
    out = []
    for value, paper_ms in speed.ms_per_image.items():
        timed = [r for r in rows if r["status"] == "finished" and r.get(f"factor.{speed.factor}") == value]
        medians = {}
        for b in BATCH_SIZES:
            values = [r[metric_name(b)] for r in timed if r.get(metric_name(b)) is not None
                      and not math.isnan(r[metric_name(b)])]
            medians[b] = (statistics.median(values), len(values)) if values else (None, 0)
        out.append({"value": value, "ms": medians, "paper_ms": paper_ms})
    return out


def render_speed(rows: list[dict], speed, fmt: str) -> str:
    entries = speed_rows(rows, speed)
    if not any(n for e in entries for _, n in e["ms"].values()):
        return ""  # trials recorded before runs timed their scoring
    first = entries[0]

    def ratio(x, y) -> str:
        return f"{x / y:.2f}" if x is not None and y else "—"

    header = [speed.factor, *(f"ms/image, batch {b}" for b in BATCH_SIZES),
              *(f"× {label(first['value'])}, batch {b}" for b in BATCH_SIZES), "trials timed", "paper ms/image",
              f"paper × {label(first['value'])}"]
    body = []
    for e in entries:
        body.append([label(e["value"]), *(f"{e['ms'][b][0]:.3g}" if e["ms"][b][0] is not None else "—" for b in BATCH_SIZES),
                     *(ratio(e["ms"][b][0], first["ms"][b][0]) for b in BATCH_SIZES),
                     str(max(n for _, n in e["ms"].values())), f"{e['paper_ms']:g}", ratio(e["paper_ms"], first["paper_ms"])])
    if fmt == "csv":
        return "\n".join(",".join(row) for row in [header, *body]) + "\n"
    lines = ["| " + " | ".join(header) + " |", "|" + " --- |" * len(header)]
    lines += ["| " + " | ".join(row) + " |" for row in body]
    note = (f"Scoring time per image (‖x − G(x)‖₂ or the method's own score, eval mode): each finished trial timed "
            f"its detector at the end of its run on the machine that trained it, median over repeats; here the median "
            f"over trials; paper: {speed.source}")
    return "\n".join(lines + ["", note]) + "\n"
