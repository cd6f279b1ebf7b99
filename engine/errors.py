"""User-facing error type shared by the command line and the GUI."""


class UserError(Exception):
    """A problem the user can fix: bad path, bad file, unknown class, no trained model, ...

    The message is one clear sentence; the CLI prints it on stderr (exit status 2) and the GUI shows
    it in a message box. Any other exception is a bug.
    """
