"""A search's Optuna study in a real Optuna storage (imports Optuna when used, never Ray).

By default the study lives in ``<study dir>/optuna.db`` (SQLite, through
``optuna.storages.RDBStorage``); ``--optuna-storage URL`` puts it in a database server, e.g.
PostgreSQL on a cluster's head node. The Optuna study is named ``raygan-<study>-<study hash>``, so
``optuna-dashboard sqlite:///<study dir>/optuna.db`` and ``optuna.load_study`` open it, and one
database can hold several searches without mixing them. SQLite serves one writer: the study's
driver is the only process that writes (trials report to the driver), which is what Optuna's
advice against SQLite for parallel writers leaves room for; several drivers on one database need
a server.
"""

from __future__ import annotations

from pathlib import Path

from raygan.core.errors import RayganError, first_line, without_password
from raygan.store.layout import OPTUNA_DB

TUNE_TRIAL_ATTR = "tune_trial_id"  # an Optuna trial's user attribute: its Tune trial


def default_url(study_dir) -> str:
    return f"sqlite:///{study_dir}/{OPTUNA_DB}"


def optuna_study_name(study: str, study_hash: str) -> str:
    return f"raygan-{study}-{study_hash}"


shown = without_password  # the URL as messages show it


def open_storage(url: str):
    """The storage (an RDBStorage), connected now: a malformed or unreachable URL fails here, before
    any trial."""
    from optuna.storages import RDBStorage

    try:
        return RDBStorage(url, engine_kwargs={"pool_pre_ping": True} if not url.startswith("sqlite") else None)
    except Exception as exc:  # SQLAlchemy's ArgumentError, OperationalError, a missing driver, ...
        raise RayganError(f"--optuna-storage {shown(url)}: cannot open it as an Optuna storage ({first_line(exc)})") from None


def load_optuna_study(study_dir: Path, info: dict):
    """The search's Optuna study from its storage (None if the search kept none, e.g. it ran
    before searches had one)."""
    import warnings

    import optuna

    url = (info.get("options") or {}).get("optuna_storage")
    if url is None:
        if not (Path(study_dir) / OPTUNA_DB).exists():
            return None
        url = default_url(Path(study_dir).expanduser().resolve())
    name = optuna_study_name(info["study"], info["study_hash"])
    optuna.logging.set_verbosity(optuna.logging.WARNING)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        try:
            return optuna.load_study(study_name=name, storage=open_storage(url))
        except KeyError:
            raise RayganError(f"{url} holds no Optuna study {name}; the search's trials are in results.parquet") from None
