"""Weights & Biases: a callback handed to the training loop, like fastai's, Keras' and Lightning's loggers.

`WandbLogger` logs a run to W&B, offline by default (no account, no network, no prompt); `WandbSession` is
what the runs of one command share: the mode, the folder, and what to tell the user. A new logger is a small
class in this package and one line where the CLI assembles the list (`callbacks` in sevenstep/cli/common.py).

fastai 2.8's own WandbCallback crashes in before_fit with today's fastcore (fastai issue 4173), and
`wandb.watch` logs nothing on short runs (log_freq=1000), so sevenstep logs through its own callback.
"""

from __future__ import annotations

import math
import os
from importlib.metadata import version
from pathlib import Path
from typing import Any

import torch

from .. import metrics
from ..callbacks import LOGGER_ORDER, SparseCallback
from ..loop.run_folder import PICTURES, WEIGHTS
from .wandb_session import WandbSession


def versions() -> dict[str, str]:
    return {f"versions.{p}": version(p) for p in ("sevenstep", "fastai", "torch", "wandb")}


def recipe_config(recipe) -> dict[str, Any]:
    """The recipe as flat dotted keys (steps.step.lr, data.source, ...), plus the split seed and versions."""
    from ..data.sources import SPLIT_SEED
    from ..loop.distributed import world_size
    from ..recipe import flatten

    processes = world_size()  # data-parallel processes
    extra = {
        "data.split_seed": SPLIT_SEED,
        "data.processes": processes,
        "data.effective_bs": recipe.data["bs"] * processes,
    }
    return dict(flatten(recipe.to_dict())) | extra | versions()


def epoch_keys() -> list[str]:
    """Each epoch's W&B keys: every declared metric each epoch's row has (sevenstep/metrics.py), its seconds."""
    return [m.wandb_key for m in metrics.METRICS.values() if m.each_epoch] + ["epoch_seconds"]


class WandbLogger(SparseCallback):
    """One W&B run per training run: config, per-batch training loss and lr (charted against `batch`),
    per-epoch validation metrics (against `epoch`), then the summary and pictures once the run is evaluated:
    predictions, top losses and confusion matrix (pictures.py), a linear model's weights.

    Batch rows are kept as tensors and sent once an epoch: no host-device sync per batch, and W&B's own
    process does not compete with training for the CPU batch after batch. A long run logs every k-th batch
    (each epoch's last always, in its epoch's row), about `batch_rows` of them, as Lightning's
    `log_every_n_steps` does: each W&B row costs about a millisecond, more than a batch of fastbook's models
    (docs/performance.md); every epoch's metrics are logged all the same."""

    order = LOGGER_ORDER
    batch_rows = 300  # per-batch rows a run aims at; 0: every batch

    def __init__(self, session: WandbSession, config: dict[str, Any] | None = None):
        self.session, self.config, self.pending = session, config or {}, []
        self.every = 1  # log every k-th batch (before_fit sets it from the fit's length)
        self.wb = None  # the W&B run (not `self.run`: that is fastai's own on/off flag for every callback)
        self.resumed, self.offset, self.last_step = None, 0, 0  # resumed: the checkpoint's state, once

    def before_fit(self):
        learn = self.learn
        n = learn.n_epoch * len(learn.dls.train)  # the fit's batches, resumed ones included: a fixed cadence
        self.every = max(1, math.ceil(n / self.batch_rows)) if self.batch_rows else 1
        if self.wb is not None:  # a second fit of the same Learner: its batches follow the first fit's
            self.offset = self.last_step
        else:  # started here, not earlier: a recipe that cannot build leaves no W&B run behind
            config = recipe_config(learn.run_info.recipe) | learn.run_info.config | self.config
            if learn.run_info.run_dir:  # what `sevenstep runs` lists, for predict, resume and report
                config["run_dir"] = str(Path(learn.run_info.run_dir).resolve())
                # and from the W&B folder: a project moved (or copied to another machine) still finds it
                config["run_dir_from_wandb"] = os.path.relpath(config["run_dir"], self.session.dir.resolve())
            resume = self.resumed and self.resumed["id"]
            recipe = learn.run_info.recipe
            self.wb = self.session.start(recipe.name, learn.run_info.job_type, config, learn.run_info.group, resume,
                                         tags=recipe.tags, notes=recipe.description)  # fmt: skip
            if self.wb is None:
                return
        # per-batch series against W&B's own step (the batch: no `batch` key, which `wandb leet` would chart
        # as a panel of its own), per-epoch ones against `epoch`, hidden as a chart in W&B's app
        self.wb.define_metric("epoch", hidden=True)
        for key in [*epoch_keys(), "layers/*"]:  # layers/*: inside steps 4 and 5, per layer (layer_stats.py)
            self.wb.define_metric(key, step_metric="epoch")
        if self.resumed:
            self._log_lost_epochs()
            self.resumed = None

    def batch(self) -> int:
        """The W&B step: training batches since the run began (fastai counts them from 0 at every fit)."""
        return self.offset + self.learn.train_iter

    def state_dict(self):
        if self.wb is None:
            return {"id": None, "log": None}
        return {"id": self.wb.id, "log": str(Path(self.wb.dir).parent)}

    def load_state_dict(self, state):
        self.resumed = state

    def _log_lost_epochs(self):
        """A killed process loses the rows W&B had not written yet: the epochs the checkpoint has and the
        stopped run's log lacks are logged again here, so that together the two logs have every epoch once."""
        from .local_runs import logged_epochs

        logged = logged_epochs(Path(self.resumed["log"])) if self.resumed.get("log") else set()
        per_epoch = len(self.learn.dls.train)
        for e in self.learn.run_log.restored:
            if e["epoch"] not in logged:
                self._log_epoch(e, e["epoch"] * per_epoch)

    def after_batch(self):
        if self.learn.training and self.wb is not None:
            learn, batch = self.learn, self.batch()
            if batch % self.every == 0 or learn.iter == learn.n_iter - 1:
                self.pending.append((batch, learn.loss.detach(), learn.opt.hypers[-1]["lr"]))

    def flush(self):
        """Send the batch rows not sent yet; also called when a run is interrupted mid-epoch."""
        if self.pending:
            losses = torch.stack([loss for _, loss, _ in self.pending]).tolist()  # one sync for them all
            for (batch, _, lr), loss in zip(self.pending, losses):
                self._log({"train/loss": loss, "train/lr": lr}, step=batch)
            self.pending = []

    def after_epoch(self):
        if self.wb is None:
            return
        # the epoch's last batch and the epoch itself share a step: one row, one call (W&B's calls are most of
        # what fastbook's 3-batch epochs cost around their arithmetic: docs/performance.md)
        last = self.pending.pop() if self.pending and self.pending[-1][0] == self.batch() else None
        self.flush()
        extra = {"train/loss": last[1].item(), "train/lr": last[2]} if last else {}
        if (stats := self.learn.__dict__.get("layer_stats")) is not None:
            extra |= stats.scalars(self.learn.epoch + 1) | stats.histograms(self.learn.epoch + 1)
        self._log_epoch(self.learn.run_log.epochs[-1], self.batch(), extra)

    def _log(self, row: dict, step: int) -> None:
        self.wb.log(row, step=step)
        self.last_step = max(self.last_step, step)

    def _log_epoch(self, e, batch: int, extra: dict | None = None):
        self._log(
            {
                "epoch": e["epoch"],
                **{m.wandb_key: e[m.name] for m in metrics.METRICS.values() if m.name in e},
                "epoch_seconds": e["seconds"],
                **(extra or {}),
            },
            step=batch,  # W&B's step is the batch: a resumed run's history continues the stopped one's
        )

    def after_fit(self):
        if self.wb is not None:
            self.flush()

    def after_run(self, run):
        """The run is evaluated and saved: its summary and pictures, then the W&B run is finished."""
        if self.wb is None:
            return
        import wandb

        from . import plots

        self.flush()  # Ctrl-C skips fastai's after_fit
        learn = self.learn
        self.wb.summary.update(
            _summary(run.accuracy, run.per_class, run.n_params, run.fit_seconds, run.metrics)
            | {"stop_reason": run.stop_reason, "epochs": len(run.epochs)}
            | ({"resumed_from": run.resumed_from} if run.resumed_from else {})
            | _test_summary(run.test)
        )
        if run.predictions is not None and learn.run_info.pictures:
            classes, targets = run.predictions
            vocab = [str(v) for v in learn.dls.vocab]
            images = learn.dls.valid.images.cpu()
            media = {
                "predictions": wandb.Image(
                    plots.to_image(plots.predictions_grid(images, classes, targets, vocab))
                )
            }
            for picture in PICTURES:  # written by InterpretationPictures, when the run has it
                if run.run_dir and (Path(run.run_dir) / picture).exists():
                    media[picture.removesuffix(".png")] = wandb.Image(str(Path(run.run_dir) / picture))
            if learn.step2_predict.pixels_to_weights:  # drawn once: the run folder's, where it has one
                drawn = Path(run.run_dir or ".") / WEIGHTS
                shape = tuple(images.shape[1:])
                media["weights"] = wandb.Image(
                    str(drawn) if run.run_dir and drawn.exists()
                    else plots.to_image(plots.linear_weights(learn.model, vocab, shape))
                )  # fmt: skip
            # the last step logged, not self.batch(): fastai's get_preds (interpretation) resets train_iter
            self._log(media, step=self.last_step)
        self.wb.finish(exit_code=1 if run.diverged else 0)

    def after_error(self, error: BaseException):
        if self.wb is not None:
            _finish_stopped(self.wb, error)

    def after_baseline(self, result, config: dict[str, Any], group: str | None):
        """A comparison's baseline as a W&B run of its own (job_type baseline), beside its SGD runs."""
        import wandb

        from . import plots

        wb = self.session.start(f"baseline-{result.distance}", "baseline", config | versions(), group)
        if wb is None:
            return
        try:
            wb.summary.update(_summary(result.accuracy, result.per_class, 0, result.fit_seconds))
            wb.log(
                {"ideal_digits": wandb.Image(plots.to_image(plots.ideal_digits(result.ideals, result.vocab)))}
            )
        except BaseException as e:  # Ctrl-C while it logs: a finished run that says so
            _finish_stopped(wb, e)
            raise
        wb.finish()

    def after_comparison(self, summary: dict[str, Any], group: str | None):
        """A comparison's whole table, intervals and verdicts included, as a wandb.Table in a run of its own
        (job type `comparison`) in the comparison's group; each method's mean also in that run's summary."""
        import wandb

        cells = summary["table"]
        config = {"compare.name": summary["name"], "seeds": summary["seeds"], "split": summary["split"]}
        wb = self.session.start(f"comparison-{summary['name']}", "comparison", config | versions(), group)
        if wb is None:
            return
        try:
            wb.log({"comparison": wandb.Table(columns=cells[0], data=cells[1:])})
            wb.summary.update(
                {f"mean/{m['method']}": m["mean"] for m in summary["methods"] if m.get("mean") is not None}
            )
        except BaseException as e:
            _finish_stopped(wb, e)
            raise
        wb.finish()

    def after_seeds(self, summary: dict[str, Any], group: str):
        """`run --seeds N`'s summary (the mean, its interval, each seed) as a run of its own (job type `seeds`)
        in the seeds' group, as a comparison's table is."""
        import wandb

        config = {"seeds.of": summary["name"], "seeds": summary["seeds"]}
        wb = self.session.start(f"seeds-{summary['name']}", "seeds", config | versions(), group)
        if wb is None:
            return
        try:
            rows = [[s, a] for s, a in zip(summary["seeds"], summary["accuracies"])]
            wb.log({"seeds": wandb.Table(columns=["seed", "accuracy"], data=rows)})
            interval = summary.get("interval") or [None, None]
            wb.summary.update(
                {"mean": summary["mean"], "interval_low": interval[0], "interval_high": interval[1]}
            )
        except BaseException as e:
            _finish_stopped(wb, e)
            raise
        wb.finish()


def _finish_stopped(wb, error: BaseException) -> None:
    wb.summary["stop_reason"] = "interrupted" if isinstance(error, KeyboardInterrupt) else "error"
    wb.finish(exit_code=1)


def _test_summary(test: dict[str, Any] | None) -> dict[str, Any]:
    """The held-out test set's figures, under test/ beside the validation ones."""
    if not test:
        return {}
    per_class = {f"test/per_class/{k}": v for k, v in test["per_class"].items()}
    finals = {f"test/{k}": v for k, v in (test.get("metrics") or {}).items()}
    return (
        {"test/accuracy": test["accuracy"], "test/loss": test["loss"], "test/n": test["n"]}
        | finals
        | per_class
    )


def _summary(accuracy, per_class, n_params, fit_seconds, finals: dict | None = None) -> dict[str, Any]:
    """The run's final figures: every declared final metric (sevenstep/metrics.py) by its name."""
    s = (finals or {}) | {"accuracy": accuracy, "n_params": n_params, "fit_seconds": fit_seconds}
    return {k: v for k, v in s.items() if v is not None} | {f"per_class/{k}": v for k, v in per_class.items()}
