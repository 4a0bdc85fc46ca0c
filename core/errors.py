"""The one exception type for data a user gave us that cannot be used as it is.

Readers raise :class:`DataError` (or a paper-specific subclass) with a message that names the
file and what is wrong, so the runner can print one line and exit with code 2 instead of a
library traceback.
"""

from __future__ import annotations


class DataError(ValueError):
    """A data file is damaged, inconsistent or not in the expected layout; the message names it."""
