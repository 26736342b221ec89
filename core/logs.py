"""Log filters of our own. Settings name them in LOGGING."""

from __future__ import annotations

import logging


class ClientErrorsWithoutTraceback(logging.Filter):
    """A 4xx is the client's mistake, not ours: Django logs each (a staff member opening a page
    their role may not, a malformed request) with the exception's whole traceback, dozens of lines
    that bury the server errors an operator looks for. Keep the one line; keep 5xx tracebacks."""

    def filter(self, record: logging.LogRecord) -> bool:
        status = getattr(record, "status_code", None)
        if isinstance(status, int) and status < 500:
            record.exc_info = None
            record.exc_text = None
        return True
