"""Exceptions raised on bad input.

Every error a user can cause derives from :class:`LiquidgenError`; the CLI prints its
message on one line and exits with status 2. Anything else is a bug and gets a traceback.
"""


class LiquidgenError(Exception):
    """Base class for errors caused by user input (files, arguments, checkpoints)."""


class ImageReadError(LiquidgenError):
    """An image file is missing, unreadable, truncated or not an image."""


class CheckpointError(LiquidgenError):
    """A checkpoint folder is missing, incomplete, corrupt or does not match the model."""


class ConfigError(LiquidgenError):
    """A configuration value is invalid."""


class ShapeError(LiquidgenError):
    """A tensor or image has a size the model cannot take (e.g. not divisible by the factor)."""


class CodeRangeError(LiquidgenError):
    """Image codes lie outside ``[0, codebook_size)``."""


class OutputError(LiquidgenError):
    """An output location cannot be written, or holds files liquidgen may not replace.

    A command replaces only what it recognises as its own earlier output, or what the user
    allowed with ``--overwrite`` (see docs/reliability.md).
    """
