"""Inside steps 4 and 5, layer by layer: what the gradient was, how large the weights are, how far the step moved
them, and what each layer put out. `layers.csv` and `layers.png` in the run folder, per-layer scalars in W&B.

fastai's ActivationStats hooks every layer on every batch; here one training batch is looked at every few
epochs (about 50 records a run, the first and last epochs always), so that it stays on by default: on
fastbook's linear recipe it costs well under the run's noise (`python -m benchmarks.experiment_cost`). What it
records is read, never written: a run trains the same with it and without it (tested).

For each layer with weights of its own (nn.Linear, a convolution, a batchnorm), at the recorded batch:

- `grad_norm`: the gradient's norm, as step 5 receives it (after any clipping);
- `weight_norm`: the weights' norm before the step;
- `update_ratio`: how far step 5 moved them, relative to their size, ||w_after - w_before|| / ||w_before||:
  around 1e-3 is the classic healthy figure; far above, the learning rate is too high, far below, too low;
- `act_mean`, `act_std`: its outputs on that batch (a vanishing signal shows here too).

For each activation layer (ReLU, sigmoid, tanh, GELU): `act_mean`, `act_std`, and `dead_share`, the share of its
units that put out 0 for every image of the batch (for ReLU: units that no longer learn).
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
from torch import nn

from ..callbacks import LOGGER_ORDER, SparseCallback
from ..loop.run_folder import LAYER_COLUMNS, LAYERS, LAYERS_PICTURE

ACTIVATIONS = (nn.ReLU, nn.Sigmoid, nn.Tanh, nn.GELU)
POINTS = 50  # records a run aims at


def layers(model: nn.Module) -> dict[str, nn.Module]:
    """The layers looked at, by their names in the model: those with weights of their own, and activations."""
    found = {}
    for name, m in model.named_modules():
        if isinstance(m, ACTIVATIONS) or any(True for _ in m.parameters(recurse=False)):
            found[name] = m
    return found


def norm(tensors) -> float:
    """The norm of several tensors taken as one vector."""
    return math.sqrt(sum(float(t.detach().float().pow(2).sum()) for t in tensors))


def dead_share(out: torch.Tensor) -> float:
    """The share of units (features, or channels of an image) that are 0 for every item of the batch."""
    units = out.detach().transpose(0, 1).reshape(out.shape[1], -1) if out.dim() > 1 else out.detach()[None]
    return float((units == 0).all(dim=1).float().mean())


class LayerStats(SparseCallback):
    """One training batch looked at every `every` epochs (default: about 50 records a run): its rows in
    `self.rows`, `layers.csv` and `layers.png` when the run is saved; W&B's logger logs each record's scalars."""

    order = LOGGER_ORDER - 1  # its rows are ready before the loggers' after_epoch

    def __init__(self, every: int | None = None):
        self.every = every

    def before_fit(self):
        self.rows: list[dict[str, Any]] = getattr(self, "restored_rows", None) or []
        self.restored_rows, self.latest, self.tensors = None, [], {}
        n = self.learn.n_epoch
        self.period = self.every or max(1, math.ceil(n / POINTS))
        self.watched = layers(getattr(self.learn.model, "module", self.learn.model))
        self.hooks, self.outputs, self.before = [], {}, {}

    def _recording(self) -> bool:
        learn = self.learn
        epoch = learn.epoch
        last_batch = learn.iter == learn.n_iter - 1
        wanted = epoch == 0 or epoch + 1 == learn.n_epoch or (epoch + 1) % self.period == 0
        return learn.training and last_batch and wanted

    def before_batch(self):
        if not self._recording():
            return
        self.outputs = {}
        for name, m in self.watched.items():
            self.hooks.append(m.register_forward_hook(self._keep(name)))

    def _keep(self, name: str):
        def hook(module, inputs, out):
            # a copy: an in-place activation after the layer (nn.ReLU(inplace=True)) would overwrite it
            if isinstance(out, torch.Tensor):
                self.outputs[name] = out.detach().clone()

        return hook

    def before_step(self):
        if not self.hooks:
            return
        self.after_cancel_batch()
        self.before = {name: [p.detach().clone() for p in m.parameters(recurse=False)]
                       for name, m in self.watched.items() if not isinstance(m, ACTIVATIONS)}  # fmt: skip
        # the gradients themselves, for W&B's histograms (fastai's zero_grad empties them after the step)
        self.tensors = {name: {"gradients": torch.cat([p.grad.detach().flatten() for p in m.parameters(recurse=False)
                                                       if p.grad is not None] or [torch.zeros(0)]).cpu()}
                        for name, m in self.watched.items() if not isinstance(m, ACTIVATIONS)}  # fmt: skip
        self.grads = {name: norm(p.grad for p in m.parameters(recurse=False) if p.grad is not None)
                      for name, m in self.watched.items() if not isinstance(m, ACTIVATIONS)}  # fmt: skip

    def after_step(self):
        if not self.before:
            return
        learn, rows = self.learn, []
        at = {"epoch": learn.epoch + 1, "batch": learn.train_iter}
        for name, m in self.watched.items():
            row = at | {"layer": name or "model", "kind": type(m).__name__}
            out = self.outputs.get(name)
            if name in self.before:
                w0 = self.before[name]
                moved = norm(p.detach() - b for p, b in zip(m.parameters(recurse=False), w0))
                size = norm(w0)
                row |= {"grad_norm": self.grads[name], "weight_norm": size,
                        "update_ratio": moved / size if size else float("nan")}  # fmt: skip
            if name in self.tensors:
                weights = [p.detach().flatten() for p in m.parameters(recurse=False)]
                self.tensors[name]["weights"] = torch.cat(weights).cpu()
            if out is not None and out.numel():
                row |= {"act_mean": float(out.float().mean()), "act_std": float(out.float().std())}
                if isinstance(m, ACTIVATIONS):
                    row["dead_share"] = dead_share(out)
            rows.append(row)
        self.rows += rows
        self.latest, self.before, self.outputs = rows, {}, {}

    def after_cancel_batch(self):  # a batch or fit cut short (a divergence): no hook left on the model
        for h in self.hooks:
            h.remove()
        self.hooks = []

    after_fit = after_cancel_batch

    def state_dict(self):
        return {"rows": list(self.rows)}

    def load_state_dict(self, state):
        self.restored_rows = state.get("rows")

    def after_run(self, run):
        # the picture goes with the run's other pictures: a comparison draws its first seed's only
        if run.run_dir and self.rows:
            write(Path(run.run_dir), self.rows, picture=self.learn.run_info.pictures)

    def histograms(self, epoch: int) -> dict[str, Any]:
        """This epoch's record, if it has one, as W&B histograms of each layer's weights and gradients:
        layers/<layer>/weights, layers/<layer>/gradients (what wandb.watch logs, at this record's cadence)."""
        import wandb

        if not self.latest or self.latest[0]["epoch"] != epoch:
            return {}
        return {f"layers/{name}/{what}": wandb.Histogram(t.float().numpy())
                for name, kept in self.tensors.items() for what, t in kept.items() if t.numel()}  # fmt: skip

    def scalars(self, epoch: int) -> dict[str, float]:
        """This epoch's record, if it has one, as W&B keys: layers/<layer>/<what>."""
        return {f"layers/{r['layer']}/{k}": v for r in self.latest if r["epoch"] == epoch for k, v in r.items()
                if k not in ("epoch", "batch", "layer", "kind") and v == v}  # fmt: skip


def write(run_dir: Path, rows: list[dict[str, Any]], picture: bool = True) -> None:
    """layers.csv and (with `picture`) layers.png in the run's folder."""
    from ..utils import tables
    from . import plots

    tables.write_csv(run_dir / LAYERS, rows, LAYER_COLUMNS)
    if picture:
        plots.save(plots.layer_curves(rows), run_dir / LAYERS_PICTURE)
