"""The one error type a user can cause, and the wrapper that turns it into a one-line exit."""

import sys
from collections.abc import Callable


class PipelineError(Exception):
    """Bad input, a bad parameter or an unreachable source: the message names the file, row or key."""


def run_stage(main: Callable[[], None]) -> None:
    """Run a script's main, so that a user mistake ends in one clear line (exit 1) rather than a traceback."""
    try:
        main()
    except PipelineError as err:
        sys.exit(f"error: {err}")
