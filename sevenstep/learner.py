"""fastai's Learner, with its event dispatch made cheap for small models.

fastai's `Learner._call_one` sorts every callback by `order` on each event (about 20 a batch) and asks each
one; a callback without a handler answers through attribute look-ups delegated to the Learner and then to
the model. On a 784-30-10 MLP that was about half of an epoch. This Learner keeps, for each event, the
callbacks whose class (or instance) defines it, in fastai's order, and calls only those; the list is made
again whenever the callbacks change (add_cb, remove_cb, a context's added_cbs). Every callback receives the
same events in the same order as on a stock Learner (tests/test_speed.py records both); `after_fit` still
goes to every callback, since fastai's Callback resets its `run` switch there.
"""

from __future__ import annotations

from fastai.callback.core import event
from fastai.learner import Learner as FastaiLearner
from torch import Tensor


class Learner(FastaiLearner):
    def __call__(self, event_name):
        if isinstance(event_name, str):
            self._call_one(event_name)
        else:  # fastai also accepts a list of events
            for name in event_name:
                self._call_one(name)

    def _call_one(self, event_name):
        key = tuple(map(id, self.cbs.items))
        if self.__dict__.get("_listeners_key") != key:
            self._listeners_key, self._listeners = key, {}
        listeners = self._listeners.get(event_name)
        if listeners is None:
            if not hasattr(event, event_name):
                raise Exception(f"missing {event_name}")
            listeners = self._listeners[event_name] = [
                cb for cb in self.cbs.sorted("order") if event_name == "after_fit" or _handles(cb, event_name)
            ]
        for cb in listeners:
            cb(event_name)

    def _set_device(self, b):
        """fastai's, skipped when the batch is already where the model is (the fast path makes it there)."""
        device = next(self.model.parameters()).device
        if all(isinstance(t, Tensor) and t.device == device for t in b):
            return b
        return super()._set_device(b)


def _handles(cb, event_name: str) -> bool:
    return hasattr(type(cb), event_name) or event_name in cb.__dict__
