"""The race alone (raygan.study.racing, no Ray): incumbent, the paired one-sided test, and the minimum
number of shared instances before anything is rejected."""

from __future__ import annotations

import subprocess
import sys

import pytest
from scipy import stats

from raygan.study.racing import Race, RacingRule, worse_p_value

# Instance difficulty far larger than the configurations' differences: only a paired test sees them.
DIFFICULTY = [0.95, 0.60, 0.80, 0.70, 0.90, 0.65]


def race_of(rule: RacingRule, **configs: list[float]) -> Race:
    race = Race(rule)
    for name, values in configs.items():
        race.record_many(name, enumerate(values))
    return race


def test_the_incumbent_has_the_best_mean_among_the_configurations_with_the_most_instances():
    race = race_of(RacingRule(), a=[0.7, 0.7, 0.7, 0.7], b=[0.9, 0.9, 0.9], c=[0.8, 0.8, 0.8, 0.8])
    assert race.incumbent() == "c"  # b's mean is higher, over fewer instances
    race.record("b", 3, 0.9)
    assert race.incumbent() == "b"
    race.record("d", 0, 0.9)
    race.record_many("d", [(1, 0.9), (2, 0.9), (3, 0.9)])
    assert race.incumbent() == "b"  # a tie keeps the one recorded first
    assert race.instance_runs() == 16 and race.instances_done("d") == 4 and race.mean("a") == pytest.approx(0.7)


def test_a_clearly_worse_configuration_is_rejected_exactly_at_the_minimum_number_of_shared_instances():
    rule = RacingRule(test="t", p_value=0.1, min_instances=3)
    incumbent = [d + 0.05 for d in DIFFICULTY]
    race = race_of(rule, inc=incumbent)
    worse = [d - 0.05 + 0.005 * (-1) ** i for i, d in enumerate(DIFFICULTY)]
    race.record("worse", 0, worse[0])
    race.record("worse", 1, worse[1])
    assert not race.rejects("worse")  # 0.1 worse on both, but only 2 shared instances
    race.record("worse", 2, worse[2])
    verdict = race.compare("worse")
    assert verdict.rejected and verdict.incumbent == "inc" and verdict.shared == (0, 1, 2)
    assert verdict.mean_difference == pytest.approx(0.1 - 0.005 / 3) and verdict.p_value < 0.01


def test_a_better_or_equal_configuration_is_never_rejected():
    rule = RacingRule(test="t", p_value=0.1, min_instances=3)
    race = race_of(rule, inc=DIFFICULTY, better=[d + 0.02 for d in DIFFICULTY[:5]],
                   same=[d + 0.01 * (-1) ** i for i, d in enumerate(DIFFICULTY[:5])])
    for name in ("better", "same"):
        verdict = race.compare(name)
        assert not verdict.rejected and verdict.p_value > 0.3, verdict
    assert not race.rejects("inc")  # the incumbent against itself


def test_the_pairing_rejects_what_the_unpaired_means_cannot_tell_apart():
    """1 point worse on each of 5 instances whose difficulty spans 35 points: the paired test
    rejects; an unpaired (Welch) test of the same values would not come near p = 0.1."""
    challenger = [d - 0.01 + 0.002 * (i % 2) for i, d in enumerate(DIFFICULTY[:5])]
    race = race_of(RacingRule(test="t", p_value=0.1, min_instances=3), inc=DIFFICULTY, ch=challenger)
    assert race.rejects("ch")
    assert stats.ttest_ind(DIFFICULTY[:5], challenger, equal_var=False, alternative="greater").pvalue > 0.4


def test_only_the_instances_both_completed_are_compared():
    race = race_of(RacingRule(min_instances=3), inc=[0.9] * 6)
    race.record_many("late", [(3, 0.5), (4, 0.5)])
    assert race.compare("late").shared == (3, 4) and not race.rejects("late")
    race.record("late", 5, 0.5)
    assert race.compare("late").shared == (3, 4, 5) and race.rejects("late")


def test_the_t_test_p_value_is_scipys_paired_one_sided_t_test():
    a, b = [0.81, 0.74, 0.92, 0.66], [0.78, 0.75, 0.85, 0.62]
    differences = [x - y for x, y in zip(a, b)]
    assert worse_p_value(differences, "t") == pytest.approx(stats.ttest_rel(a, b, alternative="greater").pvalue)
    assert worse_p_value([0.1, 0.1, 0.1], "t") == 0.0  # identical differences: no spread, plainly worse
    assert worse_p_value([-0.1, -0.1, -0.1], "t") == 1.0


def test_wilcoxon_cannot_reject_before_four_shared_instances_at_p_one_tenth():
    """Its smallest one-sided p-value over n pairs is 2^-n: 0.125 at 3, 0.0625 at 4."""
    assert worse_p_value([0.3, 0.2, 0.1], "wilcoxon") == pytest.approx(1 / 8)
    assert worse_p_value([0.3, 0.2, 0.1, 0.4], "wilcoxon") == pytest.approx(1 / 16)
    assert worse_p_value([0.0, 0.0, 0.0, 0.0], "wilcoxon") == 1.0
    rule = RacingRule(test="wilcoxon", p_value=0.1, min_instances=3)
    race = race_of(rule, inc=DIFFICULTY, worse=[d - 0.1 for d in DIFFICULTY[:3]])
    assert not race.rejects("worse")
    race.record("worse", 3, DIFFICULTY[3] - 0.1)
    assert race.rejects("worse")


def test_mode_min_turns_the_comparison_around():
    race = race_of(RacingRule(mode="min", min_instances=3), low=[0.1, 0.2, 0.1, 0.2], high=[0.5, 0.6, 0.55])
    assert race.incumbent() == "low" and race.rejects("high")


def test_recording_again_replaces_the_value_and_bad_values_are_refused():
    race = Race()
    race.record("a", 0, 0.5)
    race.record("a", 0, 0.7)
    assert race.values("a") == {0: 0.7}
    with pytest.raises(ValueError, match="NaN"):
        race.record("a", 1, float("nan"))
    with pytest.raises(ValueError, match="instance must be an index"):
        race.record("a", -1, 0.5)


@pytest.mark.parametrize("kwargs, message", [
    ({"test": "welch"}, "racing test must be one of"),
    ({"p_value": 0.0}, "p_value must be in"),
    ({"min_instances": 1}, "min_instances must be >= 2"),
    ({"mode": "up"}, "mode must be max or min"),
])
def test_an_impossible_rule_names_what_is_wrong(kwargs, message):
    with pytest.raises(ValueError, match=message):
        RacingRule(**kwargs)


def test_the_race_imports_no_ray():
    code = "import sys, raygan.study.racing; assert not any(m.split('.')[0] in ('ray', 'optuna') for m in sys.modules)"
    subprocess.run([sys.executable, "-c", code], check=True, timeout=60)
