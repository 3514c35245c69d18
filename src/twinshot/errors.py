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
