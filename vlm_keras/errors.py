"""The base of every error vlm_keras raises for bad input or a bad environment.

Each names the thing at fault (a file, an entry, an option) and says what was expected, so the
command line prints it as one line (`vlm-keras: error: ...`, exit code 2) instead of a traceback.
The concrete errors also derive from the built-in type they refine (`ValueError`, `OSError`,
`RuntimeError`), so code that catches those keeps working.
"""


class VlmKerasError(Exception):
    """Bad input or a bad environment, described in one line."""


class ModelFolderError(VlmKerasError, ValueError):
    """A folder that should hold a saved model does not, or holds a damaged or mismatched one."""


class ResumeError(VlmKerasError, ValueError):
    """A training backup belongs to a run with other settings."""


class OutputPathError(VlmKerasError, ValueError):
    """An output path that would overwrite an input of the run, or cannot be written."""


class DiskSpaceError(VlmKerasError, OSError):
    """Not enough free disk space for a file about to be written."""
