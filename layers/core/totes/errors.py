"""Named errors of the data platform.

Every error a user can meet has its own type, so callers (the CLI, the
handlers, Step Functions Retry/Catch rules) branch on the type, never on the
message text. Each carries a one-line message that names the problem and the
thing it concerns, and never a secret.
"""


class TotesError(Exception):
    """Base class of every error the platform raises on purpose."""


class DatabaseUnreachableError(TotesError):
    """Nothing accepts connections at the configured host and port."""


class AuthenticationFailedError(TotesError):
    """The server is up but refused the user name or password."""


class DatabaseNotFoundError(TotesError):
    """The server accepted the credentials but has no database of that name."""


class SchemaAlreadyExistsError(TotesError):
    """The target database already holds tables that would be overwritten."""


class SourceSchemaMissingError(TotesError):
    """The database does not hold the totesys tables an operation needs."""


class SnapshotFormatError(TotesError):
    """A snapshot folder is missing a table file or holds a malformed record."""
