"""What every method shares: networks, Adam optimisers, scoring in eval mode, state.

A method owns its model, its losses (with named weights), its train step and its anomaly score.
The epoch loop, Ray Train and Tune know nothing of either: they call `train_step(x, y)` with a
mini-batch and 0/1 targets, and `score(x)` for anomaly scores (higher = more anomalous).
"""

from __future__ import annotations

import contextlib
import dataclasses
from typing import ClassVar

import torch
from torch import nn

from raygan.compute.allocator import keep_freed_memory
from raygan.compute.devices import Autocast, autocast, to_float
from raygan.compute.distributed import DistributedContext
from raygan.core.config import LossConfig, ModelConfig, RunConfig, method_weight_names
from raygan.core.errors import ConfigError
from raygan.core.registry import Registry
from raygan.models import build_discriminator, build_generator, dcgan_init

Terms = dict[str, torch.Tensor]


class Method:
    """Base class; subclasses set the class variables and implement `train_step` (and `_score` unless ‖x − G(x)‖₂ is their score)."""

    name: ClassVar[str]
    # Semi-supervised baselines never see labelled anomalies: the loop trains them on normals only.
    uses_labelled_anomalies: ClassVar[bool] = False
    default_backbone: ClassVar[str]
    default_discriminator: ClassVar[str | None]
    default_bn_strategy: ClassVar[str] = "shared"
    default_weights: ClassVar[dict[str, float | bool]]
    # Weights the method reads; setting any other weight is an error, not a silent no-op.
    weight_names: ClassVar[tuple[str, ...]]
    # Further discriminators built like the main one, by name (papers/003's anomaly discriminator).
    extra_discriminators: ClassVar[tuple[str, ...]] = ()

    def __init__(self, cfg: RunConfig, channels: int, image_size: int, device: torch.device | str = "cpu") -> None:
        self.cfg = cfg
        self.device = torch.device(device)
        model = cfg.model
        self.generator: nn.Module = build_generator(
            model.backbone, channels, image_size, model.latent_size, model.bn_strategy
        ).to(self.device)
        self.discriminator: nn.Module | None = None
        if model.discriminator is not None:
            # The BN strategy acts on the generator, which carries x, x̂ and true anomalies
            # through separate routed passes (AGAD §6.2); D keeps plain shared BN.
            self.discriminator = build_discriminator(model.discriminator, channels, image_size).to(self.device)
        self.extra_d_modules: dict[str, nn.Module] = {
            name: build_discriminator(model.discriminator, channels, image_size).to(self.device)
            for name in self.extra_discriminators
        }
        # What the train steps call; `distribute` replaces them by their DDP wrappers.
        self.extra_d_wrapped: dict[str, nn.Module] = dict(self.extra_d_modules)
        # The unwrapped networks: state, eval-mode scoring and re-initialisation use these, while
        # train steps call self.generator / self.discriminator, which `distribute` may wrap in DDP.
        self.g_module, self.d_module = self.generator, self.discriminator
        self.distributed: DistributedContext | None = None
        self.precision = cfg.train.precision
        # Under bf16 the train steps call the networks through an autocast wrapper (fp32 outputs,
        # so every loss is computed in fp32); the fp32 path calls them directly, as before.
        self.generator = self._train_view(self.g_module)
        if self.d_module is not None:
            self.discriminator = self._train_view(self.d_module)
        self.extra_d_wrapped = {name: self._train_view(m) for name, m in self.extra_d_modules.items()}
        # CUDA: D's loss for the collapse check, copied to pinned host memory without waiting
        # (name -> (buffer, event)); read one step later (step_discriminator).
        self._pending_d_loss: dict[str, tuple[torch.Tensor, torch.cuda.Event]] = {}
        # NHWC lets oneDNN pick faster convolution kernels on CPU: 1.4x faster AGAD training
        # steps measured here (benchmarks/throughput.py); it changes no result beyond rounding.
        self.memory_format = torch.channels_last if cfg.train.channels_last else torch.contiguous_format
        for net in self.networks().values():
            net.to(memory_format=self.memory_format)
        if self.device.type == "cpu":
            # Step-sized activations stay in the heap instead of being page-faulted in again at
            # every step: 15-20% of an AGAD naive step on this CPU (raygan.compute.allocator).
            keep_freed_memory()
        train = cfg.train
        # Fused Adam: one kernel per parameter tensor instead of about ten elementwise ops, the
        # same update up to rounding. Each op is a parallel region, and on a shared 2-core CPU
        # every region waits for a descheduled thread: the optimizer steps took 0.5 s of a
        # 2-thread AGAD naive step, 0.3 s fused (benchmarks/throughput.py).
        adam = {"lr": train.lr, "betas": (train.beta1, train.beta2), "fused": self.device.type in ("cpu", "cuda")}
        self.optimizer_g = torch.optim.Adam(self.generator.parameters(), **adam)
        self.optimizer_d = (
            torch.optim.Adam(self.discriminator.parameters(), **adam) if self.discriminator is not None else None
        )
        self.extra_d_optimizers = {
            name: torch.optim.Adam(module.parameters(), **adam) for name, module in self.extra_d_modules.items()
        }
        self.discriminator_resets = 0

    # --- configuration ---------------------------------------------------------------------

    @classmethod
    def resolve(cls, cfg: RunConfig) -> RunConfig:
        """Fill the method's paper defaults into the null fields; reject weights it ignores."""
        loss_values = dataclasses.asdict(cfg.loss)
        for name in method_weight_names():
            if name not in cls.weight_names and loss_values[name] is not None:
                raise ConfigError(f"loss.{name} has no meaning for method {cls.name}; leave it unset")
            if name in cls.weight_names and loss_values[name] is None:
                loss_values[name] = cls.default_weights[name]
        if cls.default_discriminator is None and cfg.model.discriminator is not None:
            raise ConfigError(f"model.discriminator: method {cls.name} has no discriminator; leave it unset")
        model = dataclasses.replace(
            cfg.model,
            backbone=cfg.model.backbone or cls.default_backbone,
            discriminator=cfg.model.discriminator or cls.default_discriminator,
            bn_strategy=cfg.model.bn_strategy or cls.default_bn_strategy,
        )
        resolved = dataclasses.replace(cfg, model=model, loss=LossConfig(**loss_values))
        resolved.check()
        cls.check_model(resolved.model)
        return resolved

    @classmethod
    def check_model(cls, model: ModelConfig) -> None:
        """Hook: reject backbones the method cannot use (e.g. GANomaly needs latents)."""

    def weight(self, name: str) -> float:
        return float(getattr(self.cfg.loss, name))

    # --- training helpers --------------------------------------------------------------------

    def _train_view(self, module: nn.Module) -> nn.Module:
        return Autocast(module, self.device) if self.precision == "bf16" else module

    def prepare(self, x: torch.Tensor) -> torch.Tensor:
        """A batch on the method's device, in the networks' memory format."""
        return x.to(self.device, non_blocking=True).contiguous(memory_format=self.memory_format)

    def split_batch(self, x: torch.Tensor, y: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor, int]:
        """(x on the device with normals first, targets in the same order, number of normals).

        The targets are read on the host: the loop passes host labels, so counting normals never
        waits for the device (a boolean mask on a CUDA tensor would, every step). The sampler
        already yields normals first; other callers' batches are reordered here.
        """
        y = y.cpu()
        normal = y == 0
        n_normal = int(normal.sum())
        x = self.prepare(x)
        if not bool(normal[:n_normal].all()):
            order = torch.argsort((~normal).to(torch.uint8), stable=True)
            x, y = x[order.to(self.device)], y[order]
        return x, y, n_normal

    def networks(self) -> dict[str, nn.Module]:
        nets = {"generator": self.g_module}
        if self.d_module is not None:
            nets["discriminator"] = self.d_module
        nets.update(self.extra_d_modules)
        return nets

    def ddp_options(self) -> dict[str, dict]:
        """DistributedDataParallel keyword arguments per network (chosen from measurements).

        find_unused_parameters costs a graph traversal per step, so it is on only where a parameter
        really goes unused: AdvProp's auxiliary BN when no pseudo-anomaly pass runs. Buffers (BN
        running statistics) are broadcast from rank 0 at every forward (DDP's default), so all
        ranks score and freeze with the same statistics.
        """
        return {name: {"find_unused_parameters": False} for name in self.networks()}

    def distribute(self, context: DistributedContext) -> None:
        """Wrap the networks for data-parallel training (e.g. DDP through Ray's prepare_model)."""
        self.distributed = context
        options = self.ddp_options()
        self.generator = context.wrap(self._train_view(self.g_module), options["generator"])
        if self.d_module is not None:
            self.discriminator = context.wrap(self._train_view(self.d_module), options["discriminator"])
        for name, module in self.extra_d_modules.items():
            self.extra_d_wrapped[name] = context.wrap(self._train_view(module), options[name])

    def optimizers(self) -> dict[str, torch.optim.Optimizer]:
        opts = {"generator": self.optimizer_g}
        if self.optimizer_d is not None:
            opts["discriminator"] = self.optimizer_d
        opts.update(self.extra_d_optimizers)
        return opts

    def train_mode(self) -> None:
        for net in self.networks().values():
            net.train()

    def eval_mode(self) -> None:
        for net in self.networks().values():
            net.eval()

    def discriminator_local(self):
        """Context for the generator step's discriminator passes: no gradient all-reduce for D.

        The G step backpropagates through D only to reach G; D's own gradients from it are
        discarded (zeroed before the D step), so under DDP they must not be synchronised: and
        where the G loss does not use every D output (GANomaly's feature matching leaves D's
        classifier unused) a synchronised pass would leave DDP waiting for gradients forever.
        """
        stack = contextlib.ExitStack()
        for wrapped in (self.discriminator, *self.extra_d_wrapped.values()):
            if isinstance(wrapped, nn.parallel.DistributedDataParallel):
                stack.enter_context(wrapped.no_sync())
        return stack

    def step_generator(self, loss: torch.Tensor) -> None:
        self.optimizer_g.zero_grad(set_to_none=True)
        loss.backward()
        self.optimizer_g.step()

    def step_discriminator(self, loss: torch.Tensor, name: str = "discriminator") -> None:
        """Step one discriminator (the main one, or an extra one by name) and reset it if collapsed."""
        optimizer, module = self.optimizers()[name], self.networks()[name]
        optimizer.zero_grad(set_to_none=True)
        loss.backward()
        optimizer.step()
        # A collapsed D gives G no signal: re-initialise it (AGAD Alg. 1 δ; GANomaly, 1e-5).
        # Adam's moments belong to the old weights, so they are reset too. Under DDP the decision
        # uses the loss averaged over ranks and rank 0's new weights are broadcast, so replicas
        # never diverge.
        value = self._collapse_check_value(name, loss)
        if value is not None and value < self.cfg.loss.discriminator_reset_threshold:
            module.apply(dcgan_init)
            if self.distributed is not None:
                self.distributed.broadcast_module(module)
            optimizer.state.clear()
            self.discriminator_resets += 1
            # A loss still in flight came from the collapsed D: it must not reset the new one.
            self._pending_d_loss.pop(name, None)

    def _collapse_check_value(self, name: str, loss: torch.Tensor) -> float | None:
        """The (rank-averaged) D loss that decides a reset, or None if there is none yet.

        On CPU this step's loss: reading it costs nothing. On a GPU, ``loss.item()`` would make the
        host wait for the whole step every step; instead the loss is copied to pinned host memory
        without blocking and read at the next step, by when the GPU has long finished it, so a
        collapsed D is reset one step later than on CPU. (The pending value is not checkpointed.)
        """
        if self.device.type == "cpu":
            value = loss.item()
            return self.distributed.all_reduce_mean(value) if self.distributed is not None else value
        previous = None
        if name in self._pending_d_loss:
            buffer, event = self._pending_d_loss[name]
            event.synchronize()
            previous = float(buffer)
        signal = loss.detach().float().reshape(1)
        if self.distributed is not None:
            signal = self.distributed.all_reduce_mean_tensor(signal)
        buffer = self._pending_d_loss[name][0] if name in self._pending_d_loss else torch.empty(1, pin_memory=True)
        buffer.copy_(signal, non_blocking=True)
        event = torch.cuda.Event()
        event.record()
        self._pending_d_loss[name] = (buffer, event)
        return previous

    def train_step(self, x: torch.Tensor, y: torch.Tensor) -> Terms:
        """One optimisation step on a mini-batch; returns every loss term by name (detached)."""
        raise NotImplementedError

    # --- scoring -----------------------------------------------------------------------------

    @torch.no_grad()
    def score(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """Anomaly scores, networks in eval mode (BN running statistics: order-independent)."""
        was_training = self.g_module.training
        self.eval_mode()
        try:
            # Scores stay on the device until the end: one copy to the host, not one per batch.
            with autocast(self.device, self.precision):
                parts = [to_float(self._score(self.prepare(x[i : i + batch_size])))
                         for i in range(0, len(x), batch_size)]
        finally:
            if was_training:
                self.train_mode()
        return torch.cat(parts).cpu() if parts else torch.empty(0)

    def _score(self, x: torch.Tensor) -> torch.Tensor:
        """‖x − G(x)‖₂ (AGAD §3.3.3, the autoencoder, papers/003); methods with another score override it."""
        return reconstruction_l2(x, self.g_module(x))

    @torch.no_grad()
    def reconstruct(self, x: torch.Tensor, batch_size: int = 512) -> torch.Tensor:
        """G(x), networks in eval mode, ``batch_size`` images at a time."""
        was_training = self.g_module.training
        self.eval_mode()
        try:
            with autocast(self.device, self.precision):
                parts = [to_float(self.g_module(self.prepare(x[i : i + batch_size])))
                         for i in range(0, len(x), batch_size)]
            return torch.cat(parts).cpu() if parts else x.new_empty((0, *x.shape[1:])).cpu()
        finally:
            if was_training:
                self.train_mode()

    # --- state -------------------------------------------------------------------------------

    def state_dict(self) -> dict:
        state = {f"{k}_state": v.state_dict() for k, v in self.networks().items()}
        state.update({f"optimizer_{k}": v.state_dict() for k, v in self.optimizers().items()})
        state["discriminator_resets"] = self.discriminator_resets
        return state

    def load_state_dict(self, state: dict) -> None:
        for k, v in self.networks().items():
            v.load_state_dict(state[f"{k}_state"])
        for k, v in self.optimizers().items():
            v.load_state_dict(state[f"optimizer_{k}"])
        self.discriminator_resets = int(state.get("discriminator_resets", 0))


METHODS: Registry[type[Method]] = Registry("method")


def reconstruction_l2(x: torch.Tensor, x_hat: torch.Tensor) -> torch.Tensor:
    """‖x − x̂‖₂ per image (AGAD §3.3.3)."""
    return (x - x_hat).flatten(1).pow(2).sum(1).sqrt()
