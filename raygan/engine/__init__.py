"""Engine: one run in one process (or one DDP worker): the epoch loop, evaluation, checkpoints, the
run directory, TensorBoard, the detector and the cost estimate. Plain PyTorch, no Ray."""
