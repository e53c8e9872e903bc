"""Batch-norm strategies of AGAD §6.2 as norm factories.

A strategy is a factory ``(num_features) -> nn.Module`` that every backbone receives as its
``norm`` argument, so switching strategy never touches a backbone. All four strategies build the
same `RoutedBatchNorm2d`; they differ only in its two flags, which keeps parameter names
(``...main.weight``) identical across strategies and lets `bn_route` run on any model.

The train step says which kind of data the next forward pass carries with `bn_route`:

    with bn_route(generator, "pseudo_anomaly"):
        x_hat_prime = generator(x_hat)

A pass carries one kind of data only: to treat normals and true anomalies of one mini-batch
differently, forward them separately under their own routes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager

import torch
import torch.nn.functional as F
from torch import nn

from raygan.core.registry import Registry

NormFactory = Callable[[int], nn.Module]

ROUTES = ("normal", "pseudo_anomaly", "anomaly")

BN_STRATEGIES: Registry[NormFactory] = Registry("batch-norm strategy")


def _check_route(route: str) -> str:
    if route not in ROUTES:
        raise ValueError(f"unknown batch-norm route {route!r}; choose one of: {', '.join(ROUTES)}")
    return route


class RoutedBatchNorm2d(nn.Module):
    """BatchNorm2d whose behaviour in training depends on the data kind of the current pass.

    auxiliary: pseudo-anomalies x̂ = G(x) are normalised by their own BN (AdvProp, Xie et al.
        2020), so their statistics never mix into the main BN used at inference.
    freeze_for_anomalies: true anomalies are normalised with the main BN's running statistics
        and leave them untouched ("Freeze BN", AGAD Table 5), so the statistics describe normal
        data only.
    """

    def __init__(
        self, num_features: int, *, auxiliary: bool = False, freeze_for_anomalies: bool = False
    ) -> None:
        super().__init__()
        self.main = nn.BatchNorm2d(num_features)
        self.aux = nn.BatchNorm2d(num_features) if auxiliary else None
        self.freeze_for_anomalies = freeze_for_anomalies
        self._route = "normal"

    @property
    def auxiliary(self) -> bool:
        return self.aux is not None

    @property
    def route(self) -> str:
        return self._route

    @route.setter
    def route(self, value: str) -> None:
        self._route = _check_route(value)

    def _main_with_running_stats(self, x: torch.Tensor) -> torch.Tensor:
        # training=False normalises with the running statistics and never updates them, while
        # the affine weight and bias stay in the graph and still receive gradients.
        return F.batch_norm(
            x,
            self.main.running_mean,
            self.main.running_var,
            self.main.weight,
            self.main.bias,
            training=False,
            momentum=0.0,
            eps=self.main.eps,
        )

    def forward(self, x: torch.Tensor) -> torch.Tensor:
        if not self.training:
            # AdvProp: the main BN alone is used at inference, whatever the route.
            return self._main_with_running_stats(x)
        if self._route == "pseudo_anomaly" and self.aux is not None:
            return self.aux(x)
        if self._route == "anomaly" and self.freeze_for_anomalies:
            return self._main_with_running_stats(x)
        return self.main(x)

    def extra_repr(self) -> str:
        return (
            f"auxiliary={self.auxiliary}, freeze_for_anomalies={self.freeze_for_anomalies}, "
            f"route={self._route!r}"
        )


@BN_STRATEGIES.register("shared")
def shared_batch_norm(num_features: int) -> RoutedBatchNorm2d:
    # One BN for everything: AGAD's default, and the only strategy GANomaly knows.
    return RoutedBatchNorm2d(num_features)


@BN_STRATEGIES.register("advprop")
def advprop_batch_norm(num_features: int) -> RoutedBatchNorm2d:
    return RoutedBatchNorm2d(num_features, auxiliary=True)


@BN_STRATEGIES.register("freeze")
def freeze_batch_norm(num_features: int) -> RoutedBatchNorm2d:
    return RoutedBatchNorm2d(num_features, freeze_for_anomalies=True)


@BN_STRATEGIES.register("advprop+freeze")
def advprop_freeze_batch_norm(num_features: int) -> RoutedBatchNorm2d:
    return RoutedBatchNorm2d(num_features, auxiliary=True, freeze_for_anomalies=True)


def norm_factory(strategy_name: str) -> NormFactory:
    return BN_STRATEGIES.get(strategy_name)


@contextmanager
def bn_route(module: nn.Module, route: str) -> Iterator[nn.Module]:
    """Route every RoutedBatchNorm2d inside ``module`` for the duration of the block.

    Previous routes are restored on exit, also after an exception, so nested blocks compose.
    Iterating ``module.modules()`` reaches through wrappers such as DistributedDataParallel.
    """
    _check_route(route)
    routed = [m for m in module.modules() if isinstance(m, RoutedBatchNorm2d)]
    previous = [m.route for m in routed]
    for m in routed:
        m.route = route
    try:
        yield module
    finally:
        for m, old_route in zip(routed, previous):
            m.route = old_route
