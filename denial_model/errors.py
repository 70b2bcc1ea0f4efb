"""One error hierarchy for everything a user can fix.

A `DenialModelError` is a problem with what the user gave us (a claim file, a rule pack, a
model artifact, an option); its message names the file, row, column, rule or value at
fault. The CLI prints it as one line and exits 2. Any other exception is a bug in the
toolkit: the CLI reports it as an internal error with its traceback and exits 1, so a bug is
never mistaken for bad input.

The subclasses that used to be plain `ValueError`s keep `ValueError` as a second base, so
callers that caught `ValueError` still do.
"""

from __future__ import annotations

__all__ = [
    "ArtifactError",
    "ClaimTableError",
    "ConfigError",
    "DenialModelError",
    "PackError",
    "SparkError",
    "TrackingError",
    "X12Error",
]


class DenialModelError(Exception):
    """Base of every error the toolkit raises on purpose."""


class ClaimTableError(DenialModelError, ValueError):
    """A claim-line table (or file) that cannot be read as a whole: missing required column,
    unreadable or unknown file, a history too short to train on."""


class PackError(DenialModelError, ValueError):
    """A rule pack that cannot be used; the message names file, rule id and field."""


class ArtifactError(DenialModelError):
    """A model artifact that cannot be trusted or found (missing manifest, hash mismatch)."""


class ConfigError(DenialModelError, ValueError):
    """An option or setting out of its range (chunk size, simulator setting, output format)."""


class SparkError(DenialModelError):
    """Spark cannot run the job as set up: pyspark or a Java 17+ missing, an input it
    cannot read, an option it does not take."""


class TrackingError(DenialModelError):
    """An MLflow tracking store that cannot be reached when the job was told to require it."""


class OutputError(DenialModelError, OSError):
    """An output that cannot be written (full disk, read-only folder, file size limit); the
    message names the file. Nothing partial is left behind (`files.atomic_output`)."""


class X12Error(DenialModelError, ValueError):
    """An X12 837/835 file that cannot be read as it stands; the message names the file,
    the 1-based segment position and the problem."""
