"""The CLI's one error: a failure to report on stderr with a non-zero exit code."""


class CliError(Exception):
    """A failure to report on stderr with a non-zero exit code."""
