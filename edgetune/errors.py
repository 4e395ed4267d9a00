"""The two ways a build can fail, mapped to the CLI's exit codes."""


class BadInput(Exception):
    """The user's input is wrong (file, key, value). Exit code 2. Message names the thing and the fix."""

    exit_code = 2


class StageFailed(Exception):
    """A stage ran and failed (e.g. export validation). Exit code 1."""

    exit_code = 1
