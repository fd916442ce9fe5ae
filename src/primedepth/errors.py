"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""


class PrimeDepthError(Exception):
    """Base class of every error whose message is meant for the user."""

    exit_code = 1


class InputError(PrimeDepthError, ValueError):
    """Bad input: an image, tensor, path or option that cannot be processed."""

    exit_code = 2


class WeightsNotFoundError(PrimeDepthError, FileNotFoundError):
    """Model weights could not be found locally and could not be downloaded."""

    exit_code = 3
