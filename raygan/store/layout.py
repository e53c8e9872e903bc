"""A study directory's layout (``<storage>/<study>``): the one place its names are written.

    study.json          what was run (study, profile, hash, options): raygan.store.manifest
    rows/<key>.json     one record per finished, stopped or failed trial: raygan.store.records
    trials/<key>/       each trial's run directory (raygan.engine.run_dir), plus error.txt and
                        attempts.jsonl; a search trial over several instances has instead one run
                        directory per instance, i<index>-<instance>/, and instances.json
    tune/               the Tune experiment (restored by --resume)
    drivers.jsonl       one line per driver start and end: raygan.store.provenance
    results.parquet, curves.parquet   the records as tables (raygan.analysis.parquet)
    optuna.db           a search's Optuna study (raygan.store.optuna_db)
    same_score.json, best_config.json   what the report computed once
"""

from __future__ import annotations

from pathlib import Path

STUDY_FILE = "study.json"
RECORDS_DIR = "rows"
TRIALS_DIR = "trials"
TUNE_DIR = "tune"
DRIVERS_FILE = "drivers.jsonl"
RESULTS_FILE = "results.parquet"
CURVES_FILE = "curves.parquet"
OPTUNA_DB = "optuna.db"
SAME_SCORE_FILE = "same_score.json"
BEST_CONFIG_FILE = "best_config.json"
# in a trial's directory, besides the run's own files
ERROR_FILE = "error.txt"  # the message (and traceback) of a trial that raised
ATTEMPTS_FILE = "attempts.jsonl"  # one line per attempt: node, host, the epoch it started from
INSTANCES_FILE = "instances.json"  # a search trial over several instances: each completed one's values

# What a study export keeps from the study directory (besides rows/): never checkpoints,
# TensorBoard files or Tune's state.
EXPORTED_FILES = (STUDY_FILE, RESULTS_FILE, CURVES_FILE, SAME_SCORE_FILE, OPTUNA_DB, DRIVERS_FILE, BEST_CONFIG_FILE)


def trial_dir(study_dir: Path, key: str) -> Path:
    return Path(study_dir) / TRIALS_DIR / key


def record_path(study_dir: Path, key: str) -> Path:
    return Path(study_dir) / RECORDS_DIR / f"{key}.json"


def instance_dir(trial_directory: Path, index: int, instance_key: str) -> Path:
    """The run directory of a search trial's instance ``index`` (its key: data set, class, seed)."""
    return Path(trial_directory) / f"i{index}-{instance_key}"
