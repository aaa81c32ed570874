"""Errors the tool raises on purpose: each message says what, where, and what to do."""


class PtxError(Exception):
    """Base class of every error ptx-annotator reports to a user."""


class StudyError(PtxError):
    """A study folder or file cannot be read as a CT study."""


class SeriesError(StudyError):
    """One image series is inconsistent (sizes, orientations, positions) or damaged."""


class NotCTError(StudyError):
    """The series is an image series, but not CT."""


class GeometryMismatchError(PtxError):
    """Two volumes or masks do not share shape and patient geometry."""


class CheckpointError(PtxError):
    """A model checkpoint is missing, corrupt, or does not match its metadata."""


class AnnotationLockedError(PtxError):
    """Another process holds the write lock of an annotator's mask."""


class InvalidAnnotatorError(PtxError):
    """An annotator name that cannot be used as a name on disk."""
