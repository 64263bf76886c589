"""The `jaxnet` command: one module per subcommand, dispatched from `main`.

Importing the command modules and parsing a command line imports no JAX, scikit-learn or
matplotlib (tests/test_cli_latency.py): `--help`, `--version` and a mistyped flag answer at
once, and each command imports what it uses when it runs.
"""

from __future__ import annotations

import sys

from jaxnet.cli import cache, common, interrupt
from jaxnet.cli import evaluate as evaluate_command
from jaxnet.cli import export as export_command
from jaxnet.cli import gradcheck as gradcheck_command
from jaxnet.cli import predict as predict_command
from jaxnet.cli import sweep as sweep_command
from jaxnet.cli import train as train_command
from jaxnet.errors import JaxnetError

COMMANDS = (train_command, sweep_command, predict_command, evaluate_command, export_command,
            gradcheck_command)


def build_parser() -> common.Parser:
    from jaxnet import __version__

    parser = common.Parser(prog="jaxnet", description="N-layer MLPs in JAX with hand-written "
                           "backprop: train, sweep, predict, evaluate, export, gradcheck.")
    parser.add_argument("--version", action="version", version=f"jaxnet {__version__}")
    subparsers = parser.add_subparsers(dest="command", parser_class=common.Parser)
    for command in COMMANDS:
        command.add_parser(subparsers)
    for command_parser in subparsers.choices.values():  # every command compiles
        cache.add_flags(command_parser)
    return parser


def _skip_collection_at_exit() -> None:
    """Moves every object into the collector's permanent generation, which the collections
    of the interpreter's exit skip: a process that imported JAX otherwise spends ~0.2-0.4 s
    of its exit walking the whole heap (python scripts/bench.py --only latency; objects are
    still freed by their reference counts, and files closed, as before)."""
    import gc

    gc.freeze()


def main(argv=None) -> int:
    """Runs the command line `argv` (default sys.argv[1:]); returns the exit status.

    jaxnet's own user errors (JaxnetError) print one line, with the settings they name
    written as this command's flags, and return 2; anything else keeps its traceback.
    Run as the process's command (no `argv`), it leaves the heap uncollected to the
    interpreter's exit (`_skip_collection_at_exit`).
    """
    # First, before the commands import JAX: Ctrl-C or SIGTERM at any moment ends the
    # command with one line and 128 + the signal's number (jaxnet.cli.interrupt).
    args = None
    as_command = argv is None
    restore_signals = interrupt.install(exit_when_interrupted=as_command)
    try:
        argv = sys.argv[1:] if argv is None else list(argv)
        parser = build_parser()
        args = parser.parse_args(argv)
        if args.command is None:  # `jaxnet` alone: what to run is the user's choice
            parser.print_usage(sys.stderr)
            print("error: jaxnet: choose a command ('jaxnet train' trains with the defaults; "
                  "see jaxnet --help)", file=sys.stderr)
            return 2
        cache.enable(args)
        return args.run(args)
    except JaxnetError as err:
        print(f"error: {common.in_flags(err, args)}", file=sys.stderr)
        return 2
    except KeyboardInterrupt as err:
        print(interrupt.stopped(err, args), file=sys.stderr)
        return interrupt.exit_status(err)
    finally:
        restore_signals()
        if as_command:
            _skip_collection_at_exit()
