"""The one exception of the images package.

``ImageError``: a build input is missing or wrong, or a build step failed. Its message is meant
for the operator as it stands: what failed and what to run next.
"""

from __future__ import annotations


class ImageError(RuntimeError):
    """A build input or build step failed; ``str()`` is the user-facing message."""
