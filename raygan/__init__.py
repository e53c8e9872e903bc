"""raygan: Ray-distributed hyperparameter and ablation studies for GAN-based anomaly detection."""

__version__ = "0.1.0"
