"""Engine: one run in one process (or one DDP worker): the epoch loop, evaluation, checkpoints,
TensorBoard, devices, the detector and the cost estimate. Plain PyTorch, no Ray."""
