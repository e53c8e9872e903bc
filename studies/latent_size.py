"""papers/002 (GANomaly, Akcay et al. 2018), result (a) — "the size of the latent vector will
affect the overall performance of the model and the best size is 100."

GANomaly with its own protocol, one class anomalous and the rest normal, every MNIST class in
turn, trained on normal images only, with the latent vector z of size 8, 16, 32, 64, 100, 128
or 256 (the loss weights at 1/50/1); 3 seeds. The notes in papers/002 name neither the data set
nor the sizes tried; MNIST is GANomaly's first benchmark, and the sizes bracket 100 on a log scale.
paper: 10 classes x 7 sizes x 3 seeds = 210 trials.

    python studies/latent_size.py --profile smoke        # digits, minutes on 2 CPU cores
    python studies/latent_size.py --profile paper --dry-run
"""

from raygan.study import SMOKE_TRAIN, Factor, PaperTable, Profile, Study

LATENT_SIZES = (8, 16, 32, 64, 100, 128, 256)

# papers/002 gives the argmax only, no AUROC per size: the report shows "—" in every row and
# states the claim, which the measured rows confirm or not.
PAPER = PaperTable(source="papers/002 result (a): best latent size 100 (no AUROC per size given)", values={})

STUDY = Study(
    name="latent_size",
    reproduces="papers/002 (a): latent size",
    caption=__doc__.split("\n\n")[0],
    base={"method": "ganomaly", "data": {"protocol": "anomaly_class"}},
    factors=(Factor("latent", LATENT_SIZES, key="model.latent_size", label="|z|"),),
    row_factors=("latent",),
    profiles={
        "smoke": Profile(
            datasets=("digits",), classes={"digits": (3,)}, seeds=(0,), epochs=2,
            factors={"latent": (16, 100)},
            overrides={"train": SMOKE_TRAIN},
            description="offline digits, class 3 anomalous, |z| ∈ {16, 100}, 2 epochs: 2 trials",
        ),
        "paper": Profile(
            datasets=("mnist",), seeds=(0, 1, 2),
            description="MNIST, every class anomalous in turn, 7 latent sizes, 3 seeds",
        ),
    },
    paper=PAPER,
)

if __name__ == "__main__":
    from raygan.cli.study import main  # the front door (and Ray) only when run as a script

    main(STUDY)
