"""Ray Tune layer: a study's plan run as a Tuner (grid, or OptunaSearch with ASHA over epochs or
racing over instances), its trainable, recorder and resume."""
