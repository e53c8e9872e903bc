"""Studies: each paper table (or a search) as a small declarative, reproducible object.

A `Study` names the paper table it reproduces, a base configuration, the factors it varies (a
grid) or an Optuna search space, its profiles (`smoke`: minutes on 2 CPU cores with offline
data; `paper`: the paper's protocol) and the paper's reference numbers (raygan.study.spec).
`expand` turns a study and a profile into the exact list of trials: the same study, profile and
flags always give the same list, in the same order (raygan.study.expansion). The catalogue holds
every study of the `studies` package (raygan.study.catalogue). Nothing here imports Ray; the Tune
layer (`raygan.tune`) runs the list. A study file imports what it declares from here.
"""

from raygan.study.catalogue import STUDIES, find_study, load_studies
from raygan.study.expansion import (
    apply_sampled,
    base_config,
    estimate_seconds,
    estimate_worker_hours,
    expand,
    narrow_profile,
    profile_classes,
    resolve_folder_dataset,
    search_base,
    search_instances,
    set_dotted,
    study_hash,
    validated,
)
from raygan.study.spec import (
    CPU_ABLATION_CLASSES,
    CPU_EPOCHS,
    CPU_TRAIN,
    CPU_TRAIN_WITH_ANOMALIES,
    SEARCH_METRIC,
    SMOKE_TRAIN,
    Comparison,
    Factor,
    FolderDataset,
    PaperSpeed,
    PaperTable,
    Profile,
    Study,
    Trial,
    naive_agad,
    parse_paper_cell,
)

__all__ = [
    "CPU_ABLATION_CLASSES",
    "CPU_EPOCHS",
    "CPU_TRAIN",
    "CPU_TRAIN_WITH_ANOMALIES",
    "SEARCH_METRIC",
    "SMOKE_TRAIN",
    "STUDIES",
    "Comparison",
    "Factor",
    "FolderDataset",
    "PaperSpeed",
    "PaperTable",
    "Profile",
    "Study",
    "Trial",
    "apply_sampled",
    "base_config",
    "estimate_seconds",
    "estimate_worker_hours",
    "expand",
    "find_study",
    "load_studies",
    "naive_agad",
    "narrow_profile",
    "parse_paper_cell",
    "profile_classes",
    "resolve_folder_dataset",
    "search_base",
    "search_instances",
    "set_dotted",
    "study_hash",
    "validated",
]
