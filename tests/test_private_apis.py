"""The other libraries' private names sevenstep leans on (docs/architecture.md says which and why), each with a
contract test: an upgrade that renames or reshapes one fails here, by name, not somewhere in a run."""

from __future__ import annotations

import inspect


def _params(func) -> list[str]:
    return list(inspect.signature(func).parameters)


def test_fastais_learner_events_batches_and_device():
    """loop/learner.py: `_call_one` is where fastai sends one event; `all_batches` and `_set_device` run a pass."""
    from fastai.learner import Learner

    assert _params(Learner._call_one) == ["self", "event_name"]
    assert _params(Learner.all_batches) == ["self"]
    assert _params(Learner._set_device) == ["self", "b"]
    assert "_call_one" in inspect.getsource(Learner.__call__)  # every event still goes through it


def test_fastais_recorder_row_while_an_epoch_is_recorded(tiny_folder):
    """callbacks.RunLog and the target rule read the Recorder's `log`, `values` and `metric_names`."""
    from torch import nn

    from sevenstep import data, metrics
    from sevenstep.loop.learner import Learner
    from sevenstep.steps import loss

    dls = data.dataloaders(f"folder:{tiny_folder}", bs=8)
    learn = Learner(dls, nn.Sequential(nn.Flatten(), nn.Linear(28 * 28, 2)), loss_func=loss.cross_entropy().func,
                    metrics=metrics.fastai_metrics())  # fmt: skip
    with learn.no_bar(), learn.no_logging():
        learn.fit(1, 0.01)
    r = learn.recorder
    assert list(r.metric_names) == ["epoch", "train_loss", "valid_loss", "accuracy", "time"]
    assert len(r.values) == 1 and len(r.values[0]) == 3  # the losses and the metric, not epoch or time
    assert r.log[0] == 0 and len(r.log) == 5  # the row as printed: its epoch first, as metric_names


def test_fastais_tracker_callback():
    """steps/stop.Patience runs fastai's TrackerCallback.after_epoch, then reads `new_best`, `best`, `wait`."""
    from fastai.callback.tracker import EarlyStoppingCallback, TrackerCallback

    cb = EarlyStoppingCallback(monitor="accuracy", comp=None)
    assert {"monitor", "comp", "min_delta"} <= set(_params(TrackerCallback.__init__))
    source = inspect.getsource(TrackerCallback.after_epoch)
    assert "self.new_best" in source and "self.best" in source
    assert hasattr(cb, "patience") and "self.wait" in inspect.getsource(EarlyStoppingCallback.after_epoch)


def test_fastais_distributed_broadcast():
    """loop/distributed.py replaces DistributedDL._broadcast (fastai's moves the order to CUDA, even on gloo)."""
    from fastai.distributed import DistributedDL

    from sevenstep.loop import distributed

    assert DistributedDL._broadcast is distributed._broadcast
    assert "_broadcast" in inspect.getsource(DistributedDL.before_iter) or "_broadcast" in inspect.getsource(
        DistributedDL
    )


def test_fasttransforms_method_lookup():
    """data/decoded.py asks a transform which function it would run for a type, without running it."""
    from fastai.vision.augment import RandomResizedCrop

    from sevenstep.data import decoded

    assert hasattr(RandomResizedCrop.encodes, "_resolve_method_with_cache")
    assert decoded._encodes_for(RandomResizedCrop, int) is None  # fastai leaves an int as it is


def test_fastprogress_console_fill():
    """cli/common.quiet_libraries blanks ConsoleProgressBar.fill, which its constructor prints."""
    import fastprogress.fastprogress as fp

    assert isinstance(fp.ConsoleProgressBar.fill, str)
    assert "fill" in inspect.getsource(fp.ConsoleProgressBar)


def test_typers_option_type_label():
    """cli/common.py wraps TyperOption.display_type_rich so that a flag is not labelled <bool> in --help."""
    import typer.core

    from sevenstep.cli import common

    assert _params(common._display_type) == ["self", "ctx"]
    assert typer.core.TyperOption.display_type_rich is not common._display_type  # the wrapper is in place


def test_optunas_trial_handle_and_state_update():
    """trials/study.py claims a queued trial with storage.set_trial_state_values(trial._trial_id, ...)."""
    import optuna
    from optuna.trial import TrialState

    optuna.logging.set_verbosity(optuna.logging.WARNING)
    storage = optuna.storages.InMemoryStorage()
    study = optuna.create_study(storage=storage)
    study.enqueue_trial({"x": 1})
    (waiting,) = study.get_trials(deepcopy=False, states=(TrialState.WAITING,))
    assert storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING) is True
    trial = optuna.Trial(study, waiting._trial_id)
    assert trial.suggest_int("x", 0, 3) == 1  # the queued point
    # a second claim of the same trial fails: one worker gets it
    assert storage.set_trial_state_values(waiting._trial_id, state=TrialState.RUNNING) is False
