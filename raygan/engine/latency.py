"""How long a trained detector takes to score an image, at batch 1 and at a large batch.

Measured at the end of every run on the machine that trained it, so the trials of one study run
(the backbones of papers/004 Table 9, say) are timed side by side under the same conditions.
papers/004 Table 8 reports "the duration of inferencing one 32x32 image" on an A40.
"""

from __future__ import annotations

import statistics
import time

BATCH_SIZES = (1, 256)
# Repeats per batch size: single images are fast and noisy, a large batch is slow and steady.
REPEATS = {1: 21, 256: 3}


def metric_name(batch_size: int) -> str:
    return f"score_ms_per_image_b{batch_size}"


def scoring_ms_per_image(method, images: "torch.Tensor", batch_sizes=BATCH_SIZES) -> dict[str, float]:
    """Median milliseconds per image of ``method.score`` (eval mode, the scores copied to the host,
    which waits for the device) over a few repeats after one warm-up, at each batch size the images
    allow; images are cycled so that no repeat scores only one image."""
    out = {}
    for batch_size in batch_sizes:
        if len(images) < batch_size:
            continue
        repeats = REPEATS.get(batch_size, 3)
        times = []
        for i in range(repeats + 1):
            start = (i * batch_size) % (len(images) - batch_size + 1)
            batch = images[start:start + batch_size]
            began = time.perf_counter()
            method.score(batch, batch_size=batch_size)
            if i:  # the first is a warm-up (allocations, kernel selection)
                times.append(time.perf_counter() - began)
        out[metric_name(batch_size)] = 1e3 * statistics.median(times) / batch_size
    return out
