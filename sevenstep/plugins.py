"""Your own step options, from your own files: `plugins = ["my_steps.py"]` in a recipe.

A plugin is a Python file (a path relative to the recipe) or an importable module that defines options with
the decorator the built-ins use, `@option("loss")` on a factory whose typed, defaulted parameters are its
schema (experiments/my_steps.py is the example). Loading one registers its options beside the built-ins, so
recipes, `--set`, comparisons, sweeps (their workers are forked from the process that loaded it, or, with
`processes`, read the trial's recipe) and `sevenstep steps --plugin FILE` all see them.

Everything that can go wrong in a user's file is reported as a UsageError naming the file and line.
"""

from __future__ import annotations

import hashlib
import importlib.util
import os
import sys
import traceback
from pathlib import Path

from .errors import UsageError

_loaded: dict[str, str] = {}  # plugin (a resolved path or a module name) -> sha256 of its source


def is_file(plugin: str) -> bool:
    return plugin.endswith(".py") or "/" in plugin or "\\" in plugin


def relative_to(plugin: str, folder: Path) -> str:
    """A file named in a recipe is read from the recipe's folder; a module name stays as it is."""
    return str((folder / plugin).resolve()) if is_file(plugin) and not Path(plugin).is_absolute() else plugin


TRUST = "SEVENSTEP_TRUST_PLUGINS"  # =1: import a saved run's plugin files even when they are not what it ran


def load(plugins: list[str], where: str = "recipe", expected: dict[str, str] | None = None) -> dict[str, str]:
    """Import each plugin (a file again when its source changed); returns {plugin: sha256 of its source} for
    the run's records. `expected` is what a saved run recorded (its recipe.toml's plugin_sha256): a plugin
    whose source is not that is refused before it is imported, since loading a run folder runs its code."""
    return {plugin: _load(plugin, where, expected) for plugin in plugins}


def _check(plugin: str, digest: str, where: str, expected: dict[str, str] | None) -> None:
    """`expected` is None for a recipe of your own; a saved run's ({} when it recorded no hashes) must match."""
    if expected is None or expected.get(plugin) == digest or os.environ.get(TRUST) == "1":
        return
    what = "is not one this run recorded" if plugin not in expected else "has changed since this run used it"
    raise UsageError(
        f"{where}: plugin {plugin} {what} (its SHA-256 differs), and loading it would run its code; "
        f"if you trust it, set {TRUST}=1 to load it anyway"
    )


def _load(plugin: str, where: str, expected: dict[str, str] | None = None) -> str:
    if is_file(plugin):
        path = Path(plugin)
        if not path.is_file():
            raise UsageError(f"{where}: plugin file {path} does not exist")
        source = path.read_bytes()  # read once: these bytes are hashed, and these bytes are run
        digest = hashlib.sha256(source).hexdigest()
        _check(plugin, digest, where, expected)
        if _loaded.get(plugin) == digest:
            return digest
        _forget(plugin)  # an edited file (a notebook's next run): its options are registered afresh
        name = f"sevenstep_plugin_{path.stem}_{hashlib.sha256(str(path).encode()).hexdigest()[:8]}"
        _import(lambda: _run(name, source, path), str(path), plugin)
    else:
        if plugin in _loaded:  # a module is imported once per process, as Python's import does
            return _loaded[plugin]
        spec = importlib.util.find_spec(plugin) if plugin.isidentifier() or "." in plugin else None
        if spec is None or spec.origin is None or not spec.origin.endswith(".py"):
            raise UsageError(
                f"{where}: plugin {plugin!r} is neither a .py file nor a module Python can import from source"
            )
        source = Path(spec.origin).read_bytes()
        digest = hashlib.sha256(source).hexdigest()
        _check(plugin, digest, where, expected)
        _import(lambda: _run(plugin, source, Path(spec.origin), spec), spec.origin, plugin)
    _loaded[plugin] = digest
    return digest


def _run(name: str, source: bytes, path: Path, spec=None) -> None:
    """Compile and run `source` itself as module `name`: not the file read again (it may have been swapped
    since it was hashed) nor a __pycache__ .pyc (one planted there would run other code than the hashed one)."""
    spec = spec or importlib.util.spec_from_file_location(name, path)
    module = importlib.util.module_from_spec(spec)
    sys.modules[name] = module  # dataclasses and pickling look modules up by name
    try:
        exec(compile(source, str(path), "exec", dont_inherit=True), module.__dict__)
    except BaseException:
        sys.modules.pop(name, None)
        raise


def _forget(plugin: str) -> None:
    from . import registry

    for options in registry.REGISTRY.values():
        for name in [n for n, opt in options.items() if opt.plugin == plugin]:
            del options[name]


def _import(run, filename: str, plugin: str) -> None:
    """Run the plugin's code; its mistakes become one line naming the file and line."""
    from . import registry

    registry.current_plugin = plugin
    try:
        run()
    except SyntaxError as e:
        raise UsageError(
            f"{e.filename or filename}, line {e.lineno}: syntax error in plugin: {e.msg}"
        ) from None
    except registry.OptionError as e:
        raise UsageError(f"{filename}: {e}") from None
    except SystemExit as e:  # sys.exit() at import would end sevenstep itself, as if it had succeeded
        raise UsageError(
            f"{filename}: plugin called sys.exit({e.code!r}) while loading; a plugin defines options"
        ) from None
    except Exception as e:
        frames = [f for f in traceback.extract_tb(e.__traceback__) if Path(f.filename) == Path(filename)]
        line = f", line {frames[-1].lineno}" if frames else ""
        raise UsageError(f"{filename}{line}: plugin failed to load: {type(e).__name__}: {e}") from None
    finally:
        registry.current_plugin = None
