"""Mistakes in what a user gave (a path, a file, a model, an option value), kept apart from
bugs: `spec-vlm` reports a UserError as one line on stderr and exit status 2, anything else
keeps its traceback. Model-loading errors also subclass ValueError/OSError, which the nodes'
`spin()` reports as one line."""
from __future__ import annotations

import contextlib
from typing import Iterator

USER_ERROR_STATUS = 2         # as argparse exits on a bad command line


class UserError(Exception):
    """The user's input is wrong or unusable; the message names it and says why."""


def one_line(error: BaseException) -> str:
    """An exception's message on one line (library messages often span several)."""
    text = " ".join(str(error).split())
    return text or type(error).__name__


@contextlib.contextmanager
def blame(what: str) -> Iterator[None]:
    """Errors raised while reading something the user named are that thing's fault: turn
    them into a UserError that names it. Only around reading user input, so a bug elsewhere
    still shows its traceback."""
    from safetensors import SafetensorError
    try:
        yield
    except UserError:
        raise
    except (OSError, ValueError, KeyError, TypeError, IndexError, SafetensorError) as error:
        raise UserError(f"{what}: {one_line(error)}") from error
