"""torchrun as sevenstep's launcher starts it (`python -m sevenstep.loop.torchrun ARGS`): torch's own entry
point, with how it ended said in one line instead of torch's tracebacks. The processes it stopped or lost
have said what they saved; a traceback of torchrun's signal handler below that would only bury it."""

import logging
import os
import signal
import sys

# torch elastic's loggers read it when they are made, at the imports below: its warnings would repeat ours
os.environ["LOGLEVEL"] = "CRITICAL"
from torch.distributed.elastic.multiprocessing.api import SignalException
from torch.distributed.elastic.multiprocessing.errors import ChildFailedError
from torch.distributed.run import main


def ended(code: int) -> str:
    return f"was stopped by {signal.Signals(-code).name}" if code < 0 else f"exited with code {code}"


if __name__ == "__main__":
    del os.environ["LOGLEVEL"]  # the processes it starts keep their own
    logging.getLogger("torch.distributed.elastic").setLevel(logging.CRITICAL)  # its modules' plain loggers
    try:
        main(sys.argv[1:])
    except SignalException as e:  # passed on to each process, which has saved its run
        sys.exit(128 + e.sigval)
    except ChildFailedError as e:
        rank, failure = e.get_first_failure()
        print(f"torchrun: process {rank} {ended(failure.exitcode)}; the others were stopped", file=sys.stderr)
        sys.exit(failure.exitcode if failure.exitcode > 0 else 1)
