"""Store: the on-disk study directory (manifest, trial records, driver log, Parquet, Optuna database)
and the provenance written with it. Every reader and writer of a study directory goes through it."""
