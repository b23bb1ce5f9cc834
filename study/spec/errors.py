"""Errors the driver reports as one line, before anything is started or written."""

from finetune.errors import InputError


class StudyError(InputError):
    """A study spec, folder or CLI argument cannot be used; the message names the field and the fix."""
