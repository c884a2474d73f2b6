"""Command groups (``policylens dt ...``, ``policylens sim ...``): a table of sub-commands, each a module's
``main(argv)`` (or ``"module:function"``) with a one-line help, dispatched by name."""
from __future__ import annotations

import importlib
import sys


def usage(group: str, subcommands: dict, examples: list) -> str:
    width = max(map(len, subcommands))
    lines = [f"  {name:<{width}}  {help_}" for name, (_, help_) in subcommands.items()]
    return (f"usage: policylens {group} SUBCOMMAND [options]   (policylens {group} SUBCOMMAND --help for its "
            "options)\n\nsubcommands:\n" + "\n".join(lines) + "\n\n" + "\n".join(f"  {e}" for e in examples))


def dispatch(group: str, subcommands: dict, examples: list, argv=None):
    """Run the sub-command ``argv[0]`` with the rest; print the usage for no argument or ``--help``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] in ("-h", "--help", "help"):
        print(usage(group, subcommands, examples))
        return None
    name, rest = argv[0], argv[1:]
    if name not in subcommands:
        raise ValueError(f"unknown {group} subcommand {name!r}; expected one of: {', '.join(subcommands)}")
    module, _, function = subcommands[name][0].partition(":")
    return getattr(importlib.import_module(module), function or "main")(rest)
