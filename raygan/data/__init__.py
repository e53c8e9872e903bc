"""Data sets, one-class splits and the anomaly-aware batch sampler (plain PyTorch, no Ray)."""

from raygan.data.datasets import DATASETS, ImageDataset, load_dataset, to_model_input
from raygan.data.sampler import AnomalyBatchSampler
from raygan.data.splits import OneClassSplit, SplitTensors, build_split, load_for_config, split_tensors

__all__ = [
    "DATASETS",
    "AnomalyBatchSampler",
    "ImageDataset",
    "OneClassSplit",
    "SplitTensors",
    "build_split",
    "load_dataset",
    "load_for_config",
    "split_tensors",
    "to_model_input",
]
