"""Racing: how many instances a configuration earns (plain Python and scipy, no Ray).

An *instance* is one (data set, class, seed) a configuration is trained and validated on; a search
evaluates each configuration on the same instances in the same order. A `Race` holds the run
history, (configuration, instance index) -> validation value, and decides two things from it alone:

- the **incumbent**: among the configurations with the most completed instances, the best mean;
- whether a configuration is **rejected**: it shares at least ``min_instances`` completed
  instances with the incumbent, and a paired one-sided test over those shared instances says it is
  worse than the incumbent at ``p_value``.

The pairing is what makes few instances enough: an instance's difficulty (a hard class, a lucky
seed) moves every configuration alike and cancels in the per-instance difference, leaving the
configuration's own effect and its seed noise. SMAC3's intensifier races a challenger against the
incumbent the same way, and Optuna's WilcoxonPruner prunes on the same signed-rank test.

Tests: ``wilcoxon`` (signed-rank, zeros split between the signs as WilcoxonPruner does) makes no
assumption about the shape of the differences, but with n paired instances its smallest one-sided
p-value is 2^-n (0.125 at 3, 0.0625 at 4), so it cannot reject at p = 0.1 before 4 shared
instances; ``t`` (paired t-test) can reject at 3 when the differences are large and consistent, at
the price of assuming they are roughly normal.
"""

from __future__ import annotations

import math
from collections.abc import Hashable, Iterable
from dataclasses import dataclass

TESTS = ("wilcoxon", "t")
MODES = ("max", "min")


@dataclass(frozen=True)
class RacingRule:
    """The rule a race applies; every field is stated in a search's report."""

    test: str = "t"  # "t" (paired t-test) or "wilcoxon" (signed-rank)
    p_value: float = 0.1  # reject when the one-sided p-value is below this
    min_instances: int = 3  # never reject on fewer shared instances than this
    mode: str = "max"  # "max": higher validation values are better (AUROC)

    def __post_init__(self) -> None:
        if self.test not in TESTS:
            raise ValueError(f"racing test must be one of {', '.join(TESTS)}; got {self.test!r}")
        if not 0.0 < self.p_value < 1.0:
            raise ValueError(f"racing p_value must be in (0, 1); got {self.p_value}")
        if self.min_instances < 2:
            raise ValueError(f"racing min_instances must be >= 2 (a paired test needs two pairs); got {self.min_instances}")
        if self.mode not in MODES:
            raise ValueError(f"racing mode must be max or min; got {self.mode!r}")

    def describe(self) -> str:
        name = "paired t-test" if self.test == "t" else "Wilcoxon signed-rank test"
        return (f"one-sided {name} against the incumbent on shared instances, p < {self.p_value:g}, "
                f"from {self.min_instances} shared instances on")


@dataclass(frozen=True)
class Comparison:
    """A configuration against the incumbent on the instances both completed."""

    config: Hashable
    incumbent: Hashable | None
    shared: tuple[int, ...]  # instance indices both completed
    mean_difference: float  # incumbent − config on the shared instances, in the better direction (> 0: worse)
    p_value: float  # one-sided: H1 "config is worse"; 1.0 when not tested
    rejected: bool


def worse_p_value(differences: list[float], test: str) -> float:
    """One-sided p-value of H1: the differences (incumbent − challenger, oriented so that > 0 means
    the challenger is worse) are centred above zero."""
    n = len(differences)
    if n < 2:
        return 1.0
    if test == "t":
        mean = math.fsum(differences) / n
        sd = math.sqrt(math.fsum((d - mean) ** 2 for d in differences) / (n - 1))
        if sd <= 1e-12 * max(1.0, abs(mean)):  # every instance differs by the same amount (up to rounding)
            return 0.0 if mean > 0 else 1.0
        from scipy.stats import t as student_t

        return float(student_t.sf(mean / (sd / math.sqrt(n)), df=n - 1))
    if all(d == 0.0 for d in differences):
        return 1.0
    from scipy.stats import wilcoxon

    return float(wilcoxon(differences, alternative="greater", zero_method="zsplit").pvalue)


class Race:
    """The run history of a search and the racing decisions it implies. Configurations are any
    hashable ids (a Tune trial id); instances are indices into the search's fixed instance order.
    Recording an instance again replaces its value (a resumed trial reporting it once more)."""

    def __init__(self, rule: RacingRule | None = None) -> None:
        self.rule = rule or RacingRule()
        self._history: dict[Hashable, dict[int, float]] = {}

    def record(self, config: Hashable, instance: int, value: float) -> None:
        if isinstance(instance, bool) or not isinstance(instance, int) or instance < 0:
            raise ValueError(f"instance must be an index >= 0; got {instance!r}")
        value = float(value)
        if math.isnan(value):
            raise ValueError(f"configuration {config!r}, instance {instance}: the value is NaN")
        self._history.setdefault(config, {})[instance] = value

    def record_many(self, config: Hashable, values: Iterable[tuple[int, float]]) -> None:
        for instance, value in values:
            self.record(config, instance, value)

    @property
    def configs(self) -> tuple[Hashable, ...]:
        return tuple(self._history)

    def values(self, config: Hashable) -> dict[int, float]:
        return dict(sorted(self._history.get(config, {}).items()))

    def instances_done(self, config: Hashable) -> int:
        return len(self._history.get(config, {}))

    def instance_runs(self) -> int:
        """Instance-runs spent: the budget racing saves."""
        return sum(len(v) for v in self._history.values())

    def mean(self, config: Hashable) -> float:
        values = self._history.get(config)
        if not values:
            raise KeyError(f"configuration {config!r} has no completed instance")
        return math.fsum(values.values()) / len(values)

    def _better(self, value: float) -> float:
        return value if self.rule.mode == "max" else -value

    def incumbent(self) -> Hashable | None:
        """The best mean among the configurations with the most instances; ties go to the one
        recorded first (the incumbent does not change on a tie)."""
        if not self._history:
            return None
        most = max(len(v) for v in self._history.values())
        leaders = [c for c, v in self._history.items() if len(v) == most]
        return max(leaders, key=lambda c: (self._better(self.mean(c)), -leaders.index(c)))

    def compare(self, config: Hashable) -> Comparison:
        incumbent = self.incumbent()
        mine = self._history.get(config, {})
        if incumbent is None or incumbent == config:
            return Comparison(config, incumbent, tuple(sorted(mine)), 0.0, 1.0, False)
        theirs = self._history[incumbent]
        shared = tuple(sorted(set(mine) & set(theirs)))
        differences = [self._better(theirs[i]) - self._better(mine[i]) for i in shared]
        mean_difference = math.fsum(differences) / len(differences) if differences else 0.0
        if len(shared) < self.rule.min_instances:
            return Comparison(config, incumbent, shared, mean_difference, 1.0, False)
        p = worse_p_value(differences, self.rule.test)
        return Comparison(config, incumbent, shared, mean_difference, p, p < self.rule.p_value)

    def rejects(self, config: Hashable) -> bool:
        return self.compare(config).rejected
