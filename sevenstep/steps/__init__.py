"""The seven steps of the SGD recipe, one module each; importing this package fills the registry.

Each option is a fastai Callback on the Learner, attached as `learn.step1_init` ... `learn.step7_stop`.
What each step supplies to the Learner, and the fastai event it acts on (in the style of Keras' callbacks):

    step           module       supplies                                  acts on
    1 init         init.py      -                                         before_fit: fills the weights once
    2 predict      predict.py   make(image_shape, n_out) -> the model     (fastai's forward pass)
    3 loss         loss.py      func (the loss_func), n_out(n_classes)    (fastai's loss); check(): classes
    4 gradient     gradient.py  -                                         before_backward (numerical), before_step (clip)
    5 step         step.py      opt_func, lr                              before_step: moves the weights (sgd)
    6 repeat       repeat.py    loop(learn): fit, or fit_one_cycle        (starts fastai's fit)
    7 stop         stop.py      -                                         after_epoch (time_budget: after_batch too)

Every step may refuse, before training, a choice that cannot work with the model or data: `check(model, dls)`.
"""

from . import gradient, init, loss, predict, repeat, step, stop  # noqa: F401
