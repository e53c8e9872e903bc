"""Recording trials as they end: the Recorder callback writes a trial's record the moment it ends
(so a killed driver loses nothing), prints one line about it, and keeps the study's status line up
to date; `sweep` records, after Tune returns, any ended trial the callback did not."""

from __future__ import annotations

import contextlib
import re
import shutil
import signal
from pathlib import Path

from ray.tune import Callback

from raygan.core.paths import DISK_FULL
from raygan.store.layout import ERROR_FILE, RECORDS_DIR, trial_dir
from raygan.store.records import read_record, recorded_keys, scan_records, trial_record, write_record
from raygan.store.trial_files import error_message, prune_ended
from raygan.tune.context import DriverContext, current_driver
from raygan.tune.progress import StatusLine


def interrupted(record: dict, context: DriverContext) -> bool:
    """A trial that ended short because its driver was interrupted (Ctrl-C, SIGTERM, a full disk:
    Tune ends running trials gracefully). A grid trial that ended short always was (no scheduler
    stops grid trials); a search trial, when the driver saw the interrupt. It is not recorded;
    --resume continues it."""
    return record["status"] == "stopped" and (context.setup.kind == "grid" or bool(context.events.get("interrupted")))


def watch_interrupts(context: DriverContext) -> None:
    """Note the interrupt in the driver's events before Tune's own Ctrl-C handler ends the running
    trials, so that a search trial ended by it is not recorded as stopped (as if ASHA had stopped it)."""
    context.events["interrupted"] = False
    try:
        tune_handler = signal.getsignal(signal.SIGINT)
    except ValueError:
        return
    if not callable(tune_handler) or getattr(tune_handler, "raygan_watch", False):
        return

    def watch(signum, frame):
        context.events["interrupted"] = True
        tune_handler(signum, frame)

    watch.raygan_watch = True  # type: ignore[attr-defined]
    with contextlib.suppress(ValueError):
        signal.signal(signal.SIGINT, watch)


def stop_study(context: DriverContext, path: str) -> None:
    """A full disk: stop the study as an interrupt does (Tune ends the running trials gracefully,
    none is recorded as stopped or failed); run_plan then says where and how to continue."""
    if context.events.get("disk_full"):
        return
    context.events["disk_full"] = path
    handler = signal.getsignal(signal.SIGINT)
    if callable(handler) and handler is not signal.default_int_handler:
        handler(signal.SIGINT, None)


# A trial that died without a message while its study's disk has less than this free died of it:
# its error could not be written either.
NEARLY_FULL_BYTES = 64 * 2**20


def failed_for_disk(study_dir: Path, key: str, error) -> str | None:
    """The path that was full if a failed trial failed for a full disk (its error says so, or it
    left no message on a disk that is nearly full), else None."""
    try:
        text = str(failure_message(trial_dir(study_dir, key), error) or "")
    except Exception:  # noqa: BLE001  (Tune's error file may be empty: it could not be written)
        text = ""
    if "No space left on device" in text or "Disk quota exceeded" in text:
        match = re.search(r"No space left on device: '([^']+)'", text)
        return match.group(1) if match else str(study_dir)
    if text and (trial_dir(study_dir, key) / ERROR_FILE).exists():
        return None  # the trial's own message: a failure of its own
    try:
        nearly_full = shutil.disk_usage(study_dir).free < NEARLY_FULL_BYTES
    except OSError:
        return None
    return str(study_dir) if nearly_full else None


def failure_message(run_dir, error) -> str | None:
    """Why a trial failed: the error it raised (error.txt), else the last line of Tune's ``error``."""
    message = error_message(run_dir)
    if message is not None or error is None:
        return message
    lines = [ln.strip() for ln in str(error).splitlines() if ln.strip()]
    return lines[-1] if lines else type(error).__name__


def record_ended(context: DriverContext, key: str, config: dict, trial_id: str, status: str, error,
                 last_result: dict | None) -> dict:
    """Build the record of the Tune trial that ended with ``status`` (terminated or failed; ``error``:
    Tune's error, if any) and write it, pruning an ended trial's checkpoints (prune_ended); an
    interrupted grid trial is not written. Returns the record."""
    setup = context.setup
    factors, run_config = setup.factors_and_config(config)
    message = failure_message(trial_dir(context.study_dir, key), error) if status == "failed" else None
    record = trial_record(context.study_dir, context.plan_info, key, trial_id, status, message, factors,
                          run_config, last_result)
    if not interrupted(record, context):
        write_record(context.study_dir, record)
        prune_ended(trial_dir(context.study_dir, key), record, context.keep_checkpoints)
    return record


class TrialRecorder:
    """The Recorder's work and state, for the driver running now."""

    def __init__(self, context: DriverContext) -> None:
        self.context = context
        records = scan_records(context.study_dir)[0]
        # Counted from what is recorded (a damaged record too: its trial ended), so a resumed study
        # counts on from its finished trials.
        self.ended = recorded_keys(context.study_dir)
        self.failed = {r["trial_key"] for r in records if r["status"] == "failed"}
        self.status = StatusLine(context.plan_info.get("trials"))

    def write(self, trial, status: str) -> None:
        context = self.context
        key = context.setup.trial_key(trial.config, trial.trial_id)
        existing = read_record(context.study_dir, key)
        if existing is not None and existing["status"] == "finished":
            return  # a restored driver saw it end again; the first record stands
        error = trial.get_error() if status == "failed" else None
        if status == "failed" and (full := failed_for_disk(context.study_dir, key, error)):
            # not the trial's fault: it is not recorded as failed, and --resume runs it again
            self.status.print(f"{key} could not write its files: no space left on the device; not recorded")
            stop_study(context, full)
            return
        try:
            record = record_ended(context, key, trial.config, trial.trial_id, status, error, trial.last_result)
        except OSError as exc:
            if exc.errno not in DISK_FULL:
                raise
            # the atomic write left no half record; the trial is recorded again on --resume
            self.status.print(f"{key} {status}: its record could not be written (no space left on the device); "
                              f"--resume records it")
            stop_study(context, exc.filename or str(context.study_dir / RECORDS_DIR))
            return
        if interrupted(record, context):
            done = record["metrics"].get("epochs", (trial.last_result or {}).get("epochs_done", 0))
            self.status.print(f"{key} interrupted after {done} epoch(s): not recorded; --resume continues it")
            return
        if existing is None and key in self.ended:  # counted already: its record file was damaged
            self.status.print(f"{key} {record['status']}: recorded again (its record was damaged)")
            return
        self.ended.add(key)
        (self.failed.add if record["status"] == "failed" else self.failed.discard)(key)
        self.status.ended_here += 1
        metrics = record["metrics"]
        detail = (f"error: {record['error']}" if record["status"] == "failed" else
                  f"validation AUROC {metrics.get('auroc_val') or float('nan'):.4f} over {metrics['instances_done']} of "
                  f"{metrics['instances']} instances (test {metrics.get('auroc') or float('nan'):.4f})"
                  if "instances" in record else
                  f"test AUROC {metrics.get('auroc', float('nan')):.4f} (validation {metrics.get('auroc_val', float('nan')):.4f}, "
                  f"epoch {metrics.get('selected_epoch')} of {metrics.get('epochs')})")
        plan_info = context.plan_info
        total = f"/{plan_info['trials']}" if plan_info.get("trials") else ""
        self.status.print(f"[{len(self.ended)}{total}] {key} {record['status']}: {detail}")

    def step(self, iteration: int, trials) -> None:
        setup, running = self.context.setup, []
        for trial in trials:
            if trial.status != "RUNNING" or setup.trial_key(trial.config, trial.trial_id) in self.ended:
                continue
            epochs = setup.factors_and_config(trial.config)[1].get("train", {}).get("epochs") or self.context.plan_info.get("epochs")
            running.append(((trial.last_result or {}).get("epochs_done", 0), epochs or 0))
        finished = len(self.ended) - len(self.failed)
        self.status.update(self.status.text(finished, len(self.failed), running), force=iteration <= 1)

    def recover(self, trial) -> None:
        key = self.context.setup.trial_key(trial.config, trial.trial_id)
        error = failure_message(trial_dir(self.context.study_dir, key), trial.get_error()) or "its process or node died"
        last = trial.last_result or {}
        where = f"{last['hostname']} (node {str(last.get('node_id'))[:8]})" if last.get("hostname") else "its node"
        self.status.print(f"{key} failed on {where}: {error}; retry {trial.run_metadata.num_failures} of "
                          f"{trial.max_failures}, from its last checkpoint")


class Recorder(Callback):
    """The Tune callback. Tuner.restore brings back the one pickled when the study started: it keeps
    no state of its own (rebuilt by setup() from the driver running now)."""

    recorder: TrialRecorder | None = None

    def __getstate__(self):
        return {}  # pickled into tuner.pkl at the start; the state is rebuilt by setup()

    def setup(self, **info):
        context = current_driver()
        watch_interrupts(context)
        self.recorder = TrialRecorder(context)

    def on_trial_complete(self, iteration, trials, trial, **info):
        self.recorder.write(trial, "terminated")

    def on_trial_error(self, iteration, trials, trial, **info):
        self.recorder.write(trial, "failed")

    def on_trial_recover(self, iteration, trials, trial, **info):
        self.recorder.recover(trial)

    def on_step_end(self, iteration, trials, **info):
        self.recorder.step(iteration, trials)

    def on_experiment_end(self, trials, **info):
        self.recorder.status.close()


def sweep(context: DriverContext, results) -> None:
    """Record any ended trial the callback did not (e.g. ended while a previous driver died).
    ``results``: what Tuner.fit returned."""
    # A damaged record counts as missing: it is written again from the trial's metrics.json.
    have = {r["trial_key"] for r in scan_records(context.study_dir)[0]}
    for result in results:
        config = result.config or {}
        metrics = result.metrics or {}
        key = config.get("trial") if context.setup.kind == "grid" else metrics.get("trial_key")
        if key is None or key in have:
            continue
        record_ended(context, key, config, metrics.get("trial_id", ""), "failed" if result.error is not None else "terminated",
                     result.error, metrics)
