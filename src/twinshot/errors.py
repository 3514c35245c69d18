"""The one exception type a user of twinshot sees.

Library code raises :class:`TwinshotError` (or a subclass) for every problem caused by
the user's input: a missing file, a bad config key, a class with too few images. The CLI
prints its message on one line and exits with status 2; the HTTP service turns it into
a 4xx JSON error. Anything else is a bug.
"""

from __future__ import annotations


class TwinshotError(Exception):
    """A problem with the user's input or environment, explained in one line."""


class ConfigError(TwinshotError, ValueError):
    """A configuration key, value or name that is not valid."""


class DataError(TwinshotError, ValueError):
    """Data that cannot be used: an unreadable image, an empty folder, too few images."""


class ReadOnlyError(TwinshotError):
    """A change to a file that this process may only read (a read-only gallery, or one in
    a folder it cannot write)."""


class StorageError(TwinshotError):
    """The file system refused or failed a read or a write: a locked, full or failing disk,
    a folder that cannot be written."""


class DamagedError(DataError):
    """A file whose contents are damaged (a gallery with truncated vectors, unreadable
    settings...); ``twinshot gallery check`` names every problem."""
