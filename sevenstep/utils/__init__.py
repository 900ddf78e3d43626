"""Small utilities every part uses, none of them about training:

atomic.py    files written whole or not at all (runs, checkpoints, the decoded cache)
signals.py   Ctrl-C and SIGTERM alike; blocks (a save) that a signal cannot cut in half
tables.py    the text, Markdown and CSV tables that `compare`, `sweep`, `runs` and `predict` print and write
processes.py the Python processes sevenstep starts, without the current folder on their sys.path
docstrings.py  a docstring's first paragraph as one line (the command list, `sevenstep steps`)
lazy.py      how each part's __init__ offers its names without importing torch until one is used
"""
