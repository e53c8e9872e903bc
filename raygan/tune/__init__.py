"""Ray Tune layer: a study's plan run as a Tuner (grid, or OptunaSearch with ASHA), its trainable,
recorder and resume."""
