"""papers/002 (GANomaly, Akcay et al. 2018), result (b) — "the best weight of the loss function
is: w_bce = 1, w_rec = 50, w_enc = 1" (w_adv, w_con, w_enc of its objective).

GANomaly with its own protocol, one class anomalous and the rest normal, every MNIST class in
turn; one weight at a time swept over {1, 5, 10, 25, 50, 100} while the other two stay at 1/50/1
(the default point once, not three times); 3 seeds. The notes name neither the data set nor the
values tried; MNIST is GANomaly's first benchmark.
paper: 10 classes x (1 + 3 x 5) weightings x 3 seeds = 480 trials.

    python studies/ganomaly_weights.py --profile smoke        # digits, minutes on 2 CPU cores
    python studies/ganomaly_weights.py --profile paper --dry-run
"""

from raygan.study import SMOKE_TRAIN, Factor, PaperTable, Profile, Study

WEIGHTS = (1.0, 5.0, 10.0, 25.0, 50.0, 100.0)
BEST = {"w_adv": 1.0, "w_con": 50.0, "w_enc": 1.0}  # papers/002 (b), GANomaly's defaults


def one_weight_at_a_time(factors: dict) -> bool:
    return sum(factors[name] != value for name, value in BEST.items()) <= 1


# papers/002 gives the best weighting only, no AUROC per weighting.
PAPER = PaperTable(source="papers/002 result (b): best w_adv/w_con/w_enc = 1/50/1 (no AUROC per weighting given)",
                   values={})

STUDY = Study(
    name="ganomaly_weights",
    reproduces="papers/002 (b): loss weights",
    caption=__doc__.split("\n\n")[0],
    base={"method": "ganomaly", "data": {"protocol": "anomaly_class"}},
    factors=(
        Factor("w_adv", WEIGHTS, key="loss.adversarial_weight", label="w_adv"),
        Factor("w_con", WEIGHTS, key="loss.contextual_weight", label="w_con"),
        Factor("w_enc", WEIGHTS, key="loss.latent_weight", label="w_enc"),
    ),
    where=one_weight_at_a_time,
    row_factors=("w_adv", "w_con", "w_enc"),
    profiles={
        "smoke": Profile(
            datasets=("digits",), classes={"digits": (3,)}, seeds=(0,), epochs=2,
            factors={"w_adv": (1.0, 10.0), "w_con": (1.0, 50.0), "w_enc": (1.0,)},
            overrides={"train": SMOKE_TRAIN},
            description="offline digits, class 3 anomalous, 1/50/1 and one change each of w_adv (10) and "
                        "w_con (1), 2 epochs: 3 trials",
        ),
        "paper": Profile(
            datasets=("mnist",), seeds=(0, 1, 2),
            description="MNIST, every class anomalous in turn, 16 weightings (one weight swept at a time), 3 seeds",
        ),
    },
    paper=PAPER,
)

if __name__ == "__main__":
    from raygan.cli.study import main  # the front door (and Ray) only when run as a script

    main(STUDY)
