"""fastai's Learner, with its event dispatch made cheap for small models.

fastai's `Learner._call_one` sorts every callback by `order` on each event (about 20 a batch) and asks each
one; a callback without a handler answers through attribute look-ups delegated to the Learner and then to
the model, a large share of a small model's epoch (docs/performance.md, `make bench` row 2). This Learner keeps, for each event, the
callbacks whose class (or instance) defines it, in fastai's order, and calls only those; the list is made
again whenever the callbacks change (add_cb, remove_cb, a context's added_cbs, an order or a handler set
later: checked at every event outside a batch, and by their number inside one); a callback with its own
`__call__` hears every event. Every callback receives the same events in the same order as on a stock Learner
(tests/loop/test_learner.py records both); `after_fit` still goes to every callback, since fastai's Callback
resets its `run` switch there.

The rest of a batch's bookkeeping, made cheaper the same way (each part tested against fastai's own): the
Recorder (below), the model's device read once a pass instead of on every batch, and gradients dropped after
the step as PyTorch does. Together with the fast data path (sevenstep/data/decoded.py), a small model's epoch costs
1.3-1.7x a hand-written PyTorch loop's instead of 4-6x (`make bench`).
"""

from __future__ import annotations

from fastai.callback.core import Callback, event
from fastai.learner import Learner as FastaiLearner
from fastai.learner import Recorder as FastaiRecorder
from fastcore.basics import defaults
from fastcore.foundation import L

from ..callbacks import SparseCallback
from ..utils import signals


class Recorder(FastaiRecorder):
    """fastai's Recorder (same metrics accumulated, same lr and smoothed loss recorded on each batch), whose
    after_batch no longer rebuilds the list of metrics on every batch (it is made once a pass, in
    before_train/before_validate) nor computes the smoothed loss twice. It keeps fastai's name, `learn.recorder`."""

    def before_train(self):
        super().before_train()
        self._pass_mets = (True, list(self._train_mets))

    def before_validate(self):
        super().before_validate()
        self._pass_mets = (False, list(self._valid_mets))

    def after_train(self):
        super().after_train()
        self._pass_mets = None

    def after_validate(self):
        super().after_validate()
        self._pass_mets = None

    def after_batch(self):
        learn = self.learn
        if len(learn.yb) == 0:
            return
        training, mets = self.__dict__.get("_pass_mets") or (None, None)
        if training is not learn.training:  # outside a pass fastai announced: fastai's own lists
            mets = self._train_mets if learn.training else self._valid_mets
        for met in mets:
            met.accumulate(learn)
        if not learn.training:
            return
        self.lrs.append(learn.opt.hypers[-1]["lr"])
        learn.smooth_loss = self.smooth_loss.value
        self.losses.append(learn.smooth_loss)


class Learner(FastaiLearner):
    def __init__(self, *args, cbs=None, default_cbs: bool = True, **kwargs):
        # fastai's default callbacks, in their order, with sevenstep's Recorder in place of fastai's
        own = [Recorder if cb is FastaiRecorder else cb for cb in defaults.callbacks] if default_cbs else []
        super().__init__(*args, cbs=L(own) + L(cbs), default_cbs=False, **kwargs)

    # fastai's validate, get_preds, summary (through `with learn:`) and tta send before_fit and after_epoch
    # too; sevenstep's callbacks (the init step, the run log, the checkpointer) act on a real fit only, and sit
    # out while this count is above zero (callbacks.SparseCallback)
    def _not_a_fit(self, change: int) -> None:
        self.__dict__["not_a_fit"] = self.__dict__.get("not_a_fit", 0) + change

    def __enter__(self):
        self._not_a_fit(+1)
        try:
            return super().__enter__()
        except BaseException:  # no __exit__ follows a failed __enter__
            self._not_a_fit(-1)
            raise

    def __exit__(self, *exc):
        try:
            return super().__exit__(*exc)
        finally:
            self._not_a_fit(-1)

    def tta(self, *args, **kwargs):
        self._not_a_fit(+1)
        try:
            return super().tta(*args, **kwargs)
        finally:
            self._not_a_fit(-1)

    def __call__(self, event_name):
        if event_name == "after_epoch":
            # the epoch's bookkeeping is done whole: the run log's row, the loggers, the stop rule and the checkpoint
            # are all written, or none is. A Ctrl-C or SIGTERM during them stops the run once the checkpoint is
            # written (without this, a result could hold an epoch its checkpoint lacked, which `resume` redid)
            with signals.whole():
                self._call_one(event_name)
        elif isinstance(event_name, str):
            self._call_one(event_name)
        else:  # fastai also accepts a list of events
            for name in event_name:
                self._call_one(name)

    def _call_one(self, event_name):
        # made again when a callback is added or removed, its order changes, or it gains an attribute (a
        # handler set on the instance): what fastai, which looks them up on every event, would see. Inside a
        # batch only the number of callbacks is compared (the whole key, ~20 callbacks at ~9 events a batch,
        # was a tenth of a small model's fit): a change of order or a handler set during a batch is seen at the
        # next event outside one
        cbs = self.cbs.items
        state = self.__dict__
        if event_name not in _BATCH_EVENTS or state.get("_listeners_n") != len(cbs):
            key = tuple((id(cb), cb.order, len(cb.__dict__)) for cb in cbs)
            if state.get("_listeners_key") != key:
                self._listeners_key, self._listeners, self._listeners_n = key, {}, len(cbs)
        listeners = self._listeners.get(event_name)
        if listeners is None:
            if not hasattr(event, event_name):
                raise Exception(f"missing {event_name}")
            listeners = self._listeners[event_name] = [
                cb for cb in self.cbs.sorted("order") if event_name == "after_fit" or _handles(cb, event_name)
            ]
        for cb in listeners:
            cb(event_name)

    def all_batches(self):
        # the fast path's DataLoader makes its batches on its device: when that is where the model is (read once
        # a pass, a walk over the model's modules), fastai's _set_device has nothing to move on any batch
        param = next(self.model.parameters(), None)
        self._batches_in_place = (
            param is not None and getattr(self.dl, "decoded_device", None) == param.device
        )
        try:
            super().all_batches()
        finally:
            self._batches_in_place = False

    def _set_device(self, b):
        if self.__dict__.get("_batches_in_place"):
            return b
        return super()._set_device(b)


_BATCH_EVENTS = frozenset(
    ["before_batch", "after_pred", "after_loss", "before_backward", "after_backward", "before_step",
     "after_step", "after_cancel_batch", "after_batch"]
)  # fmt: skip


def _handles(cb, event_name: str) -> bool:
    """Does `cb` act on this event? A callback with a `__call__` of its own (fastai's VerboseCallback) may act
    on any."""
    call = type(cb).__call__
    if call is not Callback.__call__ and call is not SparseCallback.__call__:
        return True
    return hasattr(type(cb), event_name) or event_name in cb.__dict__
