"""User-facing errors: each carries one line that the CLIs print without a traceback."""


class TfnasError(Exception):
    """Bad input from the user (flags, genotype strings, files, datasets, checkpoints)."""


class UnknownSpaceError(TfnasError, KeyError):
    def __str__(self) -> str:  # KeyError would quote the message
        return str(self.args[0])


class GenotypeError(TfnasError, ValueError):
    """A genotype string or file that does not fit its search space."""
