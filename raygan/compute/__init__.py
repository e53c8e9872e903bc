"""Compute: where and how a run computes: device choice and backend settings, the allocator's
memory hand-back, the distributed context a DDP worker trains in (plain PyTorch, no Ray)."""
