"""papers/004 Table 1 — "One-class semi-supervised anomaly detection benchmark performances. We
reported the average AUC in % that is computed over 3 runs."

Every class of MNIST, Fashion-MNIST, CIFAR-10 and CIFAR-100 (20 coarse classes) normal in turn,
the rest anomalous, no labelled anomalies (γ = 0); AGAD with the UNet++ generator, except MNIST,
which the paper's footnote trains with the naive encoder-decoder (Table 9 shows why). Beside it,
measured on the same splits rather than borrowed: GANomaly, Skip-GANomaly and the autoencoder,
each with its own networks and loss weights; 3 seeds.
paper: 4 methods x (10 + 10 + 10 + 20) classes x 3 seeds = 600 trials.

    python studies/one_class.py --profile smoke        # digits, minutes on 2 CPU cores
    python studies/one_class.py --profile cpu          # real Fashion-MNIST, 54 trials, about 3 h on 2 CPU cores (measured)
    python studies/one_class.py --profile paper --dry-run
"""

from raygan.study import (
    CPU_EPOCHS,
    CPU_TRAIN,
    SMOKE_TRAIN,
    Factor,
    PaperTable,
    Profile,
    Study,
    naive_agad,
    parse_paper_cell,
)

METHODS = ("agad", "ganomaly", "skip_ganomaly", "autoencoder")
# Footnote 4 of Table 1: MNIST "trained with naive encoder-decoder than UNet++". The offline
# handwritten digits stand in for MNIST in the smoke profile, so the same rule applies to them.
NAIVE_GENERATOR_DATASETS = ("mnist", "digits")
# AdvProp's auxiliary BN for x̂ is the paper's full model: Table 9's UNet rows print the same
# numbers as the AdvProp rows of Tables 4 and 5 (F-MNIST 98.3±2.21, CIFAR-100 92.8±11.5).
FULL_MODEL_BN = "advprop"


def agad_generator(factors: dict) -> dict:
    if factors["method"] != "agad":
        return {}  # the baselines keep their own generators (GANomaly's needs its latents)
    backbone = "naive" if factors["dataset"] in NAIVE_GENERATOR_DATASETS else "unetpp"
    return {"model": {"backbone": backbone, "bn_strategy": FULL_MODEL_BN}}


# The cpu profile repeats seeds where a gap cannot be called with one: the classes where AGAD and
# GANomaly were within 0.02 AUROC of each other at seed 0 in a one-seed benchmark run (2026-11-25:
# T-shirt .012, Trouser .004, Dress .014, Coat .017, Sneaker .001, Boot .005). The wide gaps
# (Pullover, Sandal, Shirt, Bag: .037-.045) had already held at seed 1 on Pullover and Bag.
CPU_CLOSE_CLASSES = (0, 1, 3, 4, 7, 9)
CPU_METHODS = ("agad", "ganomaly", "autoencoder")


def cpu_trials(trial: dict) -> bool:
    """Seed 0 of everything; seeds 1 and 2 of AGAD and GANomaly on the close classes."""
    return trial["seed"] == 0 or (trial["method"] in ("agad", "ganomaly") and trial["class_index"] in CPU_CLOSE_CLASSES)


# Table 1, row "Ours": class 0..K-1, then avg and SD (SD over classes, the population SD of the
# printed class values where they agree). The printed avg and SD do not always follow from the
# printed classes (MNIST: the classes give 98.9, printed 99.1 ± 0.86; CIFAR-100: 72.1 vs 71.6 in
# Table 9's naive row); both are transcribed as printed. CIFAR-100's row is split over two lines
# (classes 0-10, then 11-19 with avg and SD) and joined here. The baselines of the table (AnoGAN,
# OCGAN, GeoTrans, ARNet, ADGAN, DAGMM) are other methods, borrowed by the paper; our GANomaly,
# Skip-GANomaly and autoencoder rows have no paper number.
_OURS = {
    "mnist": "100. 100. 99.0 98.6 99.5 97.2 99.6 99.8 95.8 99.2 99.1 0.86",
    "fashion_mnist": "99.9 100. 100. 99.4 100. 100. 100. 100. 100. 100. 99.9 0.18",
    "cifar10": "99.9 99.5 98.8 98.4 99.7 94.7 100. 93.2 99.9 98.8 98.3 2.26",
    "cifar100": "99.9 99.6 99.8 99.8 99.9 99.7 99.9 99.9 99.4 99.8 99.9 "
                "99.1 99.9 86.4 96.9 61.7 99.0 99.8 86.5 99.7 96.3 8.88",
}


def _row(text: str) -> tuple[tuple[float, ...], tuple[float, float]]:
    *classes, avg, sd = [parse_paper_cell(x)[0] for x in text.split()]
    return tuple(classes), (avg, sd)


PAPER = PaperTable(
    source="papers/004 Table 1, row Ours (AUROC %, avg and SD over classes)",
    values={(dataset, "agad"): _row(text)[1] for dataset, text in _OURS.items()},
    per_class={(dataset, "agad"): _row(text)[0] for dataset, text in _OURS.items()},
)

STUDY = Study(
    name="one_class",
    reproduces="papers/004 Table 1",
    caption=__doc__.split("\n\n")[0],
    base={"data": {"anomaly_fraction": 0.0}},
    factors=(Factor("method", METHODS, key="method", label="Method"),),
    configure=agad_generator,
    row_factors=("method",),
    versus=("method", "agad", "ganomaly"),  # the reproduction's question: does AGAD beat GANomaly here?
    profiles={
        "smoke": Profile(
            datasets=("digits",), classes={"digits": (3,)}, seeds=(0,), epochs=10,  # 2 steps an epoch
            overrides={"train": SMOKE_TRAIN},
            description="offline digits, class 3, the four methods, 10 epochs: 4 trials",
        ),
        # Skip-GANomaly is left out of cpu: its UNet costs 14 min per trial on one thread (measured),
        # 2.3 h for ten classes, and it has no paper number either.
        "cpu": Profile(
            datasets=("fashion_mnist",), seeds=(0, 1, 2), epochs=CPU_EPOCHS,
            factors={"method": CPU_METHODS}, overrides={"train": CPU_TRAIN},
            configure=naive_agad, where=cpu_trials,
            description="real Fashion-MNIST, every class, AGAD (naive G) + GANomaly + autoencoder, 5 epochs, "
                        "batch 64; seeds 0-2 for AGAD and GANomaly on the six close classes, seed 0 elsewhere: 54 trials",
        ),
        "paper": Profile(
            datasets=("mnist", "fashion_mnist", "cifar10", "cifar100"), seeds=(0, 1, 2),
            description="Table 1: MNIST (naive G), F-MNIST, CIFAR-10, CIFAR-100 coarse (UNet++), every class, "
                        "AGAD + GANomaly + Skip-GANomaly + autoencoder, 3 seeds",
        ),
    },
    paper=PAPER,
)

if __name__ == "__main__":
    from raygan.cli.study import main  # the front door (and Ray) only when run as a script

    main(STUDY)
