"""--resume: what a study directory may be resumed with, and what the resume finds there.

A study directory holds one run of one study and profile (its hash); a resume with other trials,
another concurrency or another Optuna storage is refused with the reason. Finished trials are
kept (never trained again), unfinished ones continue from their last checkpoint.
"""

from __future__ import annotations

import json
import sys
import time
from dataclasses import replace
from pathlib import Path

from raygan.core.config import RunConfig
from raygan.core.dicts import flatten
from raygan.core.errors import RayganError
from raygan.store.layout import RECORDS_DIR, TRIALS_DIR, TUNE_DIR
from raygan.store.manifest import (
    manifest_path,
    read_manifest,
    saved_manifest,
    write_grown_manifest,
    write_manifest,
)
from raygan.store.records import damage_reason, records_with_hash, scan_records
from raygan.store.trial_files import epochs_done
from raygan.study import Trial
from raygan.tune.plan import Plan, RunOptions, study_dir_for, tune_concurrency


def check_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Refuse to mix different studies or profiles in one directory, or to resume nothing."""
    study_dir = study_dir_for(options.storage, plan.study)
    path = manifest_path(study_dir)
    if path.exists():
        saved, damage = read_manifest(path)
        if damage is not None:
            if not options.resume:
                raise RayganError(f"{damage}; run the same command with --resume to write it again")
            other = {r["study_hash"] for r in scan_records(study_dir)[0]} - {plan.study_hash}
            if other:
                raise RayganError(
                    f"--resume: {damage}, and the trial records under {study_dir / RECORDS_DIR} belong to other trials "
                    f"(hash {', '.join(sorted(other))}, now {plan.study_hash}); use the same profile and flags as the "
                    f"interrupted run"
                )
            return study_dir  # prepare_study_dir writes it again
        if not options.resume:
            raise RayganError(
                f"{study_dir} already holds a run of study {saved.get('study')} (profile {saved.get('profile')}); "
                f"pass --resume to continue it, or --storage DIR for a fresh one"
            )
        if (saved.get("study_hash") != plan.study_hash and not same_trials(saved, plan)
                and not grows(saved, plan)):
            raise RayganError(
                f"--resume: {study_dir} holds study {saved.get('study')} profile {saved.get('profile')} with other "
                f"trials (hash {saved.get('study_hash')}, now {plan.study_hash}); use the same profile and flags "
                f"as the interrupted run, or --storage DIR for a new study"
            )
    elif options.resume:
        raise RayganError(f"--resume: nothing to resume at {study_dir}; run without --resume to start the study")
    elif study_dir.is_dir() and (foreign := sorted(p.name for p in study_dir.iterdir() if p.name != "raygan-error.log")):
        # a folder of the user's own that happens to carry the study's name: never written into
        raise RayganError(f"{study_dir} holds files that are not a raygan study (no {path.name}: "
                          f"{', '.join(foreign[:4])}{', ...' if len(foreign) > 4 else ''}); pass --storage DIR "
                          f"for another place")
    return study_dir


def same_trials(saved: dict, plan: Plan) -> bool:
    """Whether a saved grid study's trials are the plan's, written before config fields were added:
    the same keys, factors and values, except new fields that hold their default (and so train
    exactly as before). A changed value or a removed field is a different study."""
    saved_list = saved.get("trial_list")
    if plan.study.is_search or not saved_list or len(saved_list) != len(plan.trials):
        return False
    return all(old["key"] == new.key and _trains_as(old, new) for old, new in zip(saved_list, plan.trials))


def grows(saved: dict, plan: Plan) -> bool:
    """Whether the plan is a saved grid study grown: every saved trial is in it and would train as
    before (more seeds, classes or levels), and it has more. Its records are kept, not trained again."""
    saved_list = saved.get("trial_list")
    planned = {t.key: t for t in plan.trials}
    if plan.study.is_search or not saved_list or len(saved_list) >= len(planned):
        return False
    return all(old["key"] in planned and _trains_as(old, planned[old["key"]]) for old in saved_list)


def _trains_as(old: dict, new: Trial) -> bool:
    """A saved trial (its dict in study.json) and a planned one are the same run: the same factors and
    config values, fields added since holding their default."""
    if old["factors"] != new.factors:
        return False
    defaults = flatten(RunConfig.from_dict({}).to_dict())
    before, now = flatten(old["config"]), flatten(new.config)
    if set(before) - set(now):
        return False
    return all(now[k] == (before[k] if k in before else defaults.get(k, object())) for k in now)


def reconcile(plan: Plan, options: RunOptions) -> Plan:
    """On --resume of a study whose trials are the same but were written before new config fields
    existed, the plan keeps the saved hash, so every record of the study carries one hash. A grown
    study takes the plan's hash (prepare_study_dir keeps the earlier one in study.json)."""
    saved = saved_manifest(study_dir_for(options.storage, plan.study))
    if (options.resume and saved.get("study_hash") and saved["study_hash"] != plan.study_hash
            and not grows(saved, plan)):
        return replace(plan, study_hash=saved["study_hash"])
    return plan


def prepare_study_dir(plan: Plan, options: RunOptions) -> Path:
    """Check, then create the study directory and its manifest. A grown grid gets the new manifest
    and a fresh Tune experiment, which runs every trial: those recorded as finished report once
    without training."""
    study_dir = check_study_dir(plan, options)
    saved = saved_manifest(study_dir)
    if options.resume and saved.get("study_hash") != plan.study_hash and grows(saved, plan):
        aside = write_grown_manifest(study_dir, plan.manifest(options), saved)
        had = len(saved["trial_list"])
        print(f"raygan: study {plan.study.name} grows from {had} to {len(plan.trials)} trials (profile "
              f"{plan.profile}): the {had} it had are kept as recorded, the others run"
              + (f"; its Tune experiment is kept in {aside}" if aside else ""), file=sys.stderr, flush=True)
    else:
        write_manifest(study_dir, plan.manifest(options))
    if options.resume and (why := tune_state_damage(study_dir / TUNE_DIR)):
        aside = study_dir / f"{TUNE_DIR}-damaged-{time.strftime('%Y%m%d-%H%M%S')}"
        (study_dir / TUNE_DIR).rename(aside)
        print(f"raygan: Tune's experiment state is damaged ({why}; a full disk cuts it short); set aside as "
              f"{aside.name}: the study continues from its records and checkpoints", file=sys.stderr, flush=True)
    return study_dir


def tune_state_damage(tune_dir: Path) -> str | None:
    """What is wrong with a Tune experiment's saved state (Tune writes it in place, so a full disk
    or a kill can cut it short and Tuner.restore then fails half-way), or None."""
    if not tune_dir.is_dir():
        return None
    pickled = tune_dir / "tuner.pkl"
    if pickled.exists() and pickled.stat().st_size == 0:
        return f"{pickled.name} is empty"
    for error in tune_dir.glob("*/error.pkl"):  # a trial's error Tune could not write: it cannot read it back
        if error.stat().st_size == 0:
            return f"{error.parent.name}/{error.name} is empty"
    states = sorted(tune_dir.glob("experiment_state-*.json"))  # the newest is what a restore reads
    if states:
        try:
            json.loads(states[-1].read_text())
        except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
            return f"{states[-1].name}: {damage_reason(exc)}"
    return None


def restorable(study_dir: Path) -> bool:
    """Whether the study directory holds a Tune experiment that Tuner.restore can continue."""
    from ray import tune

    return tune.Tuner.can_restore(str(study_dir / TUNE_DIR))


def check_resumed_concurrency(plan: Plan, options: RunOptions, study_dir: Path) -> None:
    """Tune restores an experiment with the concurrency it started with (pickled in its search
    state), so a --max-concurrent given on --resume would be ignored silently: refuse it instead."""
    if not (options.resume and options.max_concurrent is not None):
        return
    manifest = saved_manifest(study_dir)
    before = manifest.get("options", {}).get("max_concurrent")
    if tune_concurrency(plan, before) == options.max_concurrent or not restorable(study_dir) or grows(manifest, plan):
        return  # the same, or no Tune experiment to restore (a copy of an export, a grown grid): the new value applies
    started = f"--max-concurrent {before}" if before is not None else (
        "1 trial at a time (a search's default)" if plan.study.is_search else "no --max-concurrent (no limit)")
    how = (" (the search's TPE state lives in that experiment, so a search keeps its concurrency)"
           if plan.study.is_search else
           f"; to change it, continue from an export: `raygan study export {study_dir} --out COPY`, copy COPY to "
           f"<new storage>/{plan.study.name} and --resume there")
    raise RayganError(f"--resume --max-concurrent {options.max_concurrent}: {study_dir} started with {started}, and "
                      f"Tune restores that with its experiment; resume without --max-concurrent{how}")


def resume_summary(study_dir: Path, plan: Plan) -> str:
    """What --resume found: trials finished (kept), continuing from a checkpoint, starting afresh."""
    records = {r["trial_key"]: r for r in scan_records(study_dir)[0]}
    trials_dir = study_dir / TRIALS_DIR
    keys = set(records) | ({d.name for d in trials_dir.iterdir()} if trials_dir.is_dir() else set())
    total = len(plan.trials) if plan.trials else plan.samples
    finished, failed, continuing = 0, 0, []  # continuing: epochs done of each
    setup_epochs = {t.key: t.config["train"]["epochs"] for t in plan.trials}
    for key in sorted(keys):
        status = records.get(key, {}).get("status")
        done = epochs_done(trials_dir / key)
        if status in ("finished", "stopped") or (status is None and done == setup_epochs.get(key, plan.epochs)):
            finished += 1  # or all epochs done, not recorded yet (or its record damaged): recorded at the end
        elif done is not None:
            continuing.append(done)
        elif status == "failed":
            failed += 1
    fresh = max(0, total - finished - failed - len(continuing))
    parts = [f"{finished} finished (kept, not trained again)"]
    if failed:
        parts.append(f"{failed} failed (recorded; one whose process died is tried again)")
    epochs = ", ".join(f"{e}/{plan.epochs}" for e in continuing[:6]) + (", …" if len(continuing) > 6 else "")
    parts.append(f"{len(continuing)} continue{'s' if len(continuing) == 1 else ''} from a checkpoint"
                 + (f" (epochs done: {epochs})" if continuing else ""))
    parts.append(f"{fresh} start{'s' if fresh == 1 else ''} fresh")
    return f"resuming study {plan.study.name}, profile {plan.profile}, {total} trials: " + ", ".join(parts)


def continue_search_without_tune_state(plan: Plan, study_dir: Path, optuna: tuple) -> int:
    """A search resumed from a copy of its export has its records and its Optuna study but no Tune
    experiment (no searcher or scheduler state): it runs the samples not yet recorded, TPE going on
    from the trials the Optuna study holds; trials that study still shows running belonged to the
    killed driver and will never report, so they are failed and marked. Returns the samples left."""
    from raygan.tune.optuna_storage import fail_orphans

    storage, study_name = optuna
    recorded = len(records_with_hash(study_dir, plan.study_hash))
    orphans = fail_orphans(storage, study_name, "its driver ended before it reported; continued from an export")
    left = max(0, plan.samples - recorded)
    print(f"raygan: {study_dir} has no Tune experiment (a copy of an export): the search continues in its Optuna "
          f"study ({recorded} trials recorded, {left} to run; TPE goes on from the study's trials, ASHA from the "
          f"records{f'; {orphans} trial(s) left running there failed' if orphans else ''})",
          file=sys.stderr, flush=True)
    return left
