"""The `primedepth` command line: a thin dispatcher over the sub-commands in `primedepth.commands`."""

from __future__ import annotations

import argparse
import importlib
import pkgutil
import signal
import sys
import threading
from collections.abc import Sequence
from types import FrameType

from . import __version__, commands
from .casting import drop_empty_fp32_warning
from .errors import PrimeDepthError

# Order in which the sub-commands are listed in `--help`; others follow alphabetically.
COMMAND_ORDER = ("predict", "eval", "train", "convert", "download", "info")

EXIT_CODES = """\
exit status:
  0    success
  1    some inputs failed (each is reported; the others were processed)
  2    bad arguments or inputs (nothing was computed)
  3    model weights (or the BLIP-2 captioner of --prompt auto) not found locally and not downloadable
  130  interrupted (Ctrl-C); 143 terminated (SIGTERM): partial files are removed
"""
INTERRUPTED, TERMINATED = 130, 143


class Terminated(KeyboardInterrupt):
    """SIGTERM (kill, timeout, schedulers, containers), raised like Ctrl-C so every `finally`
    and atomic writer cleans up on the way out."""


def _raise_terminated(signum: int, frame: FrameType | None) -> None:
    raise Terminated


def _command_modules() -> list[str]:
    names = [m.name for m in pkgutil.iter_modules(commands.__path__) if not m.name.startswith("_")]
    rank = {name: i for i, name in enumerate(COMMAND_ORDER)}
    return sorted(names, key=lambda n: (rank.get(n, len(rank)), n))


def _requested_command(argv: Sequence[str]) -> str | None:
    """The sub-command named in `argv` (None when help or the version is asked first), so that
    only its module is imported: `primedepth info` then loads no torch (under 1 s)."""
    for arg in argv:
        if arg in ("-h", "--help", "--version"):
            return None
        if not arg.startswith("-"):
            return arg
    return None


def build_parser(command: str | None = None) -> argparse.ArgumentParser:
    """The parser with every sub-command, or with only `command` when it is one of them."""
    parser = argparse.ArgumentParser(
        prog="primedepth",
        description="PrimeDepth: zero-shot monocular depth (affine-invariant inverse depth) "
        "from one Stable Diffusion step.",
        epilog=EXIT_CODES,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"primedepth {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true",
                        help="also show the libraries' own progress bars and messages (model loading)")
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND")
    names = _command_modules()
    for name in [command] if command in names else names:
        importlib.import_module(f"{commands.__name__}.{name}").register(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    argv = sys.argv[1:] if argv is None else list(argv)
    parser = build_parser(_requested_command(argv))
    args = parser.parse_args(argv)
    if getattr(args, "handler", None) is None:
        parser.print_help(sys.stderr)
        return 2
    drop_empty_fp32_warning()  # diffusers' "kept in float32: []" on every cast is noise
    if not args.verbose and getattr(args, "loads_models", True):
        from .loading import quiet_library_progress  # lazy: start-up speed (--help imports no torch)

        quiet_library_progress()
    in_main_thread = threading.current_thread() is threading.main_thread()  # signals need it
    previous = signal.signal(signal.SIGTERM, _raise_terminated) if in_main_thread else None
    try:
        return int(args.handler(args) or 0)
    except PrimeDepthError as error:
        print(f"primedepth {args.command}: error: {error}", file=sys.stderr)
        return error.exit_code
    except Terminated:
        print(f"primedepth {args.command}: terminated; partial outputs were removed", file=sys.stderr)
        return TERMINATED
    except KeyboardInterrupt:
        print(f"primedepth {args.command}: interrupted; partial outputs were removed", file=sys.stderr)
        return INTERRUPTED
    finally:
        if in_main_thread:
            signal.signal(signal.SIGTERM, previous)


if __name__ == "__main__":
    sys.exit(main())
