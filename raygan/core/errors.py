"""User-facing errors.

A `RayganError` carries a message written for the person at the keyboard: it names the offending
value and says what to do. The CLI prints it without a traceback and exits with status 2.
"""


class RayganError(Exception):
    """An error caused by input or environment that the user can fix."""


class DataError(RayganError):
    """A data set is missing, unreadable, corrupt, or fails its checksum."""


class ConfigError(RayganError):
    """A configuration key is unknown or its value is impossible."""


def without_password(text: str) -> str:
    """URLs in ``text`` with their password masked (user:pw@ -> user:***@), for messages."""
    import re

    return re.sub(r"(//[^:/@]+:)[^@/]*@", r"\1***@", text)


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (its class name if it has none), for one-line errors."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
