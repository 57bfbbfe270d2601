"""Per-block gradient norms (bench.models.layer_groups) every k training steps.

Norms are computed on the device right before the optimiser step and kept as device tensors
until the epoch ends (at most steps/k per epoch), then moved to the host in one transfer.
"""

from __future__ import annotations

import lightning as L
import torch

from bench import schema
from bench.models import layer_groups


class GradNormProbe(L.Callback):
    """Keeps `rows` (step, group, grad_norm) and `epoch_means` (group -> mean of the last epoch)."""

    def __init__(self, every: int = 10) -> None:
        if every < 1:
            raise ValueError(f"every must be >= 1, got {every}")
        self.every = every
        self.rows: list[dict] = []
        self.epoch_means: dict[str, float] = {}
        self._groups: dict[str, list[torch.nn.Parameter]] = {}
        self._pending: list[tuple[int, torch.Tensor]] = []

    def setup(self, trainer, pl_module, stage: str) -> None:
        self._groups = {name: [p for p in mod.parameters() if p.requires_grad]
                        for name, mod in layer_groups(pl_module.model).items()}

    def on_before_optimizer_step(self, trainer, pl_module, optimizer) -> None:
        step = trainer.global_step
        if step % self.every:
            return
        norms = []
        for params in self._groups.values():
            grads = [p.grad for p in params if p.grad is not None]
            # _foreach_norm: one fused call per group instead of one kernel per tensor
            norms.append(torch.linalg.vector_norm(torch.stack(torch._foreach_norm(grads)))
                         if grads else torch.zeros((), device=pl_module.device))
        per_group = torch.stack(norms)
        total = torch.linalg.vector_norm(per_group)
        self._pending.append((step, torch.cat([per_group, total[None]]).detach()))

    def on_train_epoch_end(self, trainer, pl_module) -> None:
        if not self._pending:
            return
        steps = [s for s, _ in self._pending]
        values = torch.stack([v for _, v in self._pending]).float().cpu()  # [steps, groups + 1]
        self._pending = []
        names = [*self._groups, schema.TOTAL_GROUP]
        for i, step in enumerate(steps):
            for j, name in enumerate(names):
                self.rows.append({schema.STEP: step, schema.GROUP: name,
                                  schema.GRAD_NORM: float(values[i, j])})
            for logger in trainer.loggers:
                logger.log_metrics({f"grad_norm/{n}": float(values[i, j]) for j, n in enumerate(names)},
                                   step=step)
        self.epoch_means = {n: float(values[:, j].mean()) for j, n in enumerate(names)}

    def summary(self, split: str | None = None) -> dict[str, dict[str, float]]:
        """summary.json's gradient field (of the last training epoch, whatever the split)."""
        return {schema.GRAD_NORM_PER_BLOCK: dict(self.epoch_means)}

    # checkpointed so a run resumed after its last epoch still reports the last epoch's means
    # (`rows` are already in grads.csv)
    def state_dict(self) -> dict[str, dict[str, float]]:
        return {"epoch_means": dict(self.epoch_means)}

    def load_state_dict(self, state_dict: dict[str, dict[str, float]]) -> None:
        self.epoch_means = dict(state_dict.get("epoch_means", {}))
