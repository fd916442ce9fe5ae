"""User-facing errors: the CLI prints their message and exits non-zero, without a traceback."""

from __future__ import annotations

import os


class PrimeDepthError(Exception):
    """Base class of every error whose message is meant for the user."""

    exit_code = 1


class InputError(PrimeDepthError, ValueError):
    """Bad input: an image, tensor, path or option that cannot be processed."""

    exit_code = 2


class WeightsNotFoundError(PrimeDepthError, FileNotFoundError):
    """Model weights could not be found locally and could not be downloaded."""

    exit_code = 3


def first_line(error: BaseException | str) -> str:
    """The first line of an error, prefixed with its type: a reason short enough for one message."""
    if isinstance(error, str):
        return error.splitlines()[0] if error else "no details"
    text = str(error).splitlines()[0] if str(error) else "no details"
    return f"{type(error).__name__}: {text}"


def weights_unavailable(
    what: str,
    source: str,
    error: BaseException | str,
    download: str | None = None,
    looked_in: str | None = None,
    alternatives: str = "pass a local folder instead",
) -> WeightsNotFoundError:
    """The one message for weights that are neither local nor downloadable.

    It says what was looked for and why it failed, where it was looked for, and how to provide it:
    go online (downloads are cached; HF_HUB_OFFLINE is named only when it is set), download
    ahead of time (`download`, default `hf download SOURCE`; "" leaves that advice out, e.g. for
    someone who just ran it) and copy the cache, or use the `alternatives`.
    """
    where = f" Looked in {looked_in}." if looked_in else ""
    command = f"hf download {source}" if download is None else download
    if os.environ.get("HF_HUB_OFFLINE", "").strip().lower() in ("1", "true", "yes", "on"):
        online = "unset HF_HUB_OFFLINE, which is set and makes only the local cache be read (downloads are cached)"
    else:
        online = "connect to the internet (the download happens once, then the cache is used)"
    ahead = f", or run `{command}` where you are online and copy the Hugging Face cache" if command else ""
    return WeightsNotFoundError(
        f"could not get the {what} '{source}' ({first_line(error)}).{where} To fix: {online}{ahead}, "
        f"or {alternatives}."
    )


class CaptionerUnavailableError(WeightsNotFoundError):
    """The BLIP-2 captioner that the automatic prompt ("auto") needs cannot be loaded.

    Raised once per job, before the first image, instead of failing (and retrying) per image.
    A WeightsNotFoundError, so its exit code is the one for missing weights (3).
    """

    exit_code = 3

    @classmethod
    def from_reason(cls, reason: str) -> CaptionerUnavailableError:
        """The one message: why (`check_captioner`'s reason), and the three ways out."""
        return cls(
            f"captioning is unavailable: {reason}. The automatic prompt (\"auto\", the default) captions "
            f"each image with BLIP-2. To fix: predict without captions with --prompt \"\" (the fastest), "
            f"or describe the images yourself with --prompt TEXT (in Python: prompt=\"\" or prompt=\"TEXT\"), "
            f"or fetch the captioner once with `primedepth download --captioner` where you are online "
            f"and copy the Hugging Face cache."
        )
