"""Errors a user can cause with neural data: a file that is missing something, stimuli that do not
match the recordings, a time mapping the unroll cannot cover."""

from __future__ import annotations


class NeuralDataError(ValueError):
    """A problem with recordings, stimuli or the time mapping. The message names the file (when
    there is one) and what is wrong, e.g. ``data.nc: coordinate 'region' is missing``; the command
    line prints it without a traceback."""
