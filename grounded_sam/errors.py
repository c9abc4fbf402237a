"""The errors grounded-sam raises on purpose.

``UserInputError`` is a mistake the caller can fix (a bad option, a missing file, a folder that must not be written
to); it is also a ``ValueError``, so callers that caught ``ValueError`` keep working. The command line prints these
as one line; anything else is a bug and keeps its traceback.
"""

from __future__ import annotations


class GroundedSAMError(Exception):
    """Base of every error grounded-sam raises on purpose."""


class UserInputError(GroundedSAMError, ValueError):
    """A mistake in what was asked for; the message says what was wrong and what to do."""


class InvalidImageError(UserInputError):
    """An input could not be read as an image; the message says which input and why."""


class InvalidVideoError(UserInputError):
    """An input could not be read as a video (or a folder or list of frames); the message says which and why."""


class OutputFolderError(UserInputError):
    """The output folder holds something a run must not write over; the message says what and what to do."""


class InvalidCheckpointError(UserInputError):
    """A model file or folder is not what it should be (not a SAM 2 checkpoint, a truncated file...)."""


class OutputWriteError(GroundedSAMError, OSError):
    """Writing to the output folder failed (no space, no permission...). What was written before is kept."""


class ModelNotAvailableError(GroundedSAMError, OSError):
    """A model could not be loaded from a local directory, the Hugging Face cache or the hub."""
