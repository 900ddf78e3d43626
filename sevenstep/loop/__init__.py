"""The training loop: a recipe becomes a fastai Learner with the seven steps as callbacks, is fitted, evaluated
and saved; the same path serves `run`, `resume`, every run of a comparison and every trial of a sweep.

    train.py        run(recipe, cbs): build the Learner, fit, evaluate, save, then `after_run`; Run, its result;
                    load_learner(run_dir): a saved run's Learner again
    learner.py      fastai's Learner, each event sent only to the callbacks that handle it; a cheaper Recorder
    run_folder.py   what a run's folder holds, and how it is written and read
    checkpoint.py   a checkpoint after every epoch, and exact resume from one
    distributed.py  data-parallel runs through fastai's distrib_ctx (--processes N); the launcher's signals
    torchrun.py     torchrun's own entry point, as the launcher starts it, its endings said in one line
"""

from ..utils.lazy import exports

__all__ = ["Run", "run", "build_learner", "load_learner", "Learner"]
__getattr__ = exports(
    __name__,
    {
        "Run": ".train",
        "run": ".train",
        "build_learner": ".train",
        "load_learner": ".train",
        "Learner": ".learner",
    },
)
