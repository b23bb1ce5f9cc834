"""Errors the driver reports as one line, before anything is started or written."""


class StudyError(ValueError):
    """A study spec, folder or CLI argument cannot be used; the message names the field and the fix."""
