"""The `jaxcps` command (also `python -m jaxcps`).

Each subcommand lives in its own module, which provides `add_arguments(parser)` and
`run(args) -> int`; this file only wires them up.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from collections.abc import Sequence

#: subcommand -> (module, one-line help)
SUBCOMMANDS = {
    "demo": ("jaxcps.demo.cli", "select the fastest algorithm per layer of a Flax CNN and time it"),
    "bench": ("jaxcps.bench.cli", "time every algorithm against XLA on a suite of conv layers"),
}


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        prog="jaxcps",
        description="Sparse-activation convolution (CPO, CPS, sparse direct) for JAX on CPU.",
    )
    commands = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")
    modules = {}
    unavailable = {}
    for name, (module_name, help_text) in SUBCOMMANDS.items():
        sub = commands.add_parser(name, help=help_text, description=help_text)
        try:
            module = importlib.import_module(module_name)
        except ImportError as e:  # e.g. `demo` without the optional flax dependency
            unavailable[name] = e
            continue
        module.add_arguments(sub)
        modules[name] = module
    args = parser.parse_args(argv)
    if args.command in unavailable:
        parser.error(
            f"'{args.command}' is unavailable: {unavailable[args.command]} "
            f"(pip install 'jaxcps[demo]' installs what it needs)"
        )
    return int(modules[args.command].run(args) or 0)


if __name__ == "__main__":
    sys.exit(main())
