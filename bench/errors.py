"""User-facing errors: one line, naming the problem, exit code 2 at the CLI."""


class BenchError(Exception):
    """A problem with the user's input (config key, file, value). The CLI prints it as one line."""

    exit_code = 2
