"""Ray start-up shared by every driver, the Ray Train DDP trainer, and the reaper of a killed driver's Ray."""
