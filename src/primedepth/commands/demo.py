"""`primedepth demo`: the browser demo (Gradio) on its own, at http://127.0.0.1:7860/."""

from __future__ import annotations

import argparse

from .serve import add_model_arguments, add_request_arguments, add_server_arguments, serve_until_stopped, settings_from_args

DEFAULT_DEMO_PORT = 7860

DESCRIPTION = """\
Open PrimeDepth in the browser: upload a photo or pick an example, see the photo and its
colour depth side by side, download the 16-bit PNG and the .npy, or turn a short clip into a
depth video. Depth is relative (affine-invariant inverse depth). It binds 127.0.0.1 unless
--host is given; another address needs a key (--api-key-file FILE or $PRIMEDEPTH_API_KEY),
which browser users type into the login page once, or, loudly, --insecure-no-auth. To run it
next to the HTTP API on one model, use `primedepth serve --demo` (demo at /demo).
"""


def register(subparsers: argparse._SubParsersAction) -> None:
    """Add the `demo` sub-command."""
    parser = subparsers.add_parser("demo", help="browser demo (Gradio): photos and clips to depth",
                                   description=DESCRIPTION, formatter_class=argparse.RawDescriptionHelpFormatter)
    add_model_arguments(parser)
    add_request_arguments(parser)
    add_server_arguments(parser)
    parser.set_defaults(handler=run, port=DEFAULT_DEMO_PORT)


def run(args: argparse.Namespace) -> int:
    """Serve the demo until interrupted."""
    from ..serve.server import run_server  # lazy: gradio, fastapi, torch

    settings = settings_from_args(args)
    return serve_until_stopped("demo", lambda: run_server(settings, api=False, demo_path="/"))
