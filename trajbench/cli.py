"""The ``trajbench`` command line: one sub-command per stage.

Each sub-command lives in the module that does the work and exposes ``main(argv) -> int``; this
file only dispatches and turns bad input into one clear line and a non-zero exit
(``TRAJBENCH_DEBUG=1`` shows the traceback instead).
"""

from __future__ import annotations

import importlib
import os
import sys

from . import __version__
from .cliargs import QUIET_HELP, quiet_output, split_quiet
from .errors import TrajbenchError

#: sub-command -> (module:function, one-line description)
COMMANDS: dict[str, tuple[str, str]] = {
    "envs": ("trajbench.catalog:envs_main", "list every environment family, its levels and expert"),
    "collect": ("trajbench.collect:main", "roll out a demonstrator and write an episode store"),
    "train": ("trajbench.pipeline.train:main", "train a policy on prompt-builder sequences"),
    "finetune": (
        "trajbench.pipeline.finetune_presets:main",
        "fine-tune a language model on text contexts (loss on the actions)",
    ),
    "evaluate": ("trajbench.pipeline.evaluate:main", "in-context evaluation on held-out levels"),
    "run": (
        "trajbench.pipeline.runner:main",
        "run a whole preset: collect, train, evaluate, report",
    ),
    "export": ("trajbench.data.minari:export_main", "write an episode store as a Minari dataset"),
    "import-minari": ("trajbench.data.minari:import_main", "build an episode store from Minari"),
    "render": ("trajbench.pipeline.render:main", "play a policy on a level and write a GIF"),
    "leaderboard": ("trajbench.leaderboard.cli:main", "submit, validate and build the leaderboard"),
    "analyze": ("trajbench.analysis:main", "analyses of what in a trajectory carries the lesson"),
}
#: The long commands: they show progress bars, and ``--quiet`` silences them and any chatter.
QUIET_COMMANDS = frozenset(
    {
        "collect",
        "train",
        "finetune",
        "evaluate",
        "run",
        "render",
        "export",
        "import-minari",
        "analyze",
    }
)


def _usage() -> str:
    width = max(len(c) for c in COMMANDS)
    lines = ["usage: trajbench COMMAND [--help] [OPTIONS]", "", "commands:"]
    lines += [f"  {name:<{width}}  {desc}" for name, (_, desc) in COMMANDS.items()]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    """Entry point of the ``trajbench`` console script."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in {"-h", "--help"}:
        print(_usage())
        return 0 if argv else 2
    if argv[0] in {"-V", "--version"}:
        print(f"trajbench {__version__}")
        return 0
    name = argv[0]
    if name not in COMMANDS:
        print(f"trajbench: error: unknown command {name!r}\n\n{_usage()}", file=sys.stderr)
        return 2
    module_name, func_name = COMMANDS[name][0].split(":")
    func = getattr(importlib.import_module(module_name), func_name)
    args, quiet = split_quiet(argv[1:]) if name in QUIET_COMMANDS else (argv[1:], False)
    try:
        with quiet_output(quiet):
            status = int(func(args) or 0)
        if name in QUIET_COMMANDS and {"-h", "--help"} & set(args):
            print(QUIET_HELP)
        return status
    except BrokenPipeError:  # e.g. `trajbench envs --json | head`
        os.dup2(os.open(os.devnull, os.O_WRONLY), sys.stdout.fileno())
        return 0
    except (TrajbenchError, ValueError, OSError) as err:  # OSError: a full disk, a read-only --out
        if os.environ.get("TRAJBENCH_DEBUG"):
            raise
        if isinstance(err, OSError) and err.filename and err.strerror:
            err = f"{err.filename}: {err.strerror}"
        print(f"trajbench {name}: error: {err}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print(f"trajbench {name}: interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
