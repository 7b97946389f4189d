"""Which log records reach the console: a record logged with `extra=FILE_ONLY` goes to the run's
log file (run.log) only, e.g. another process's traceback whose one-line summary the run prints
anyway. The console handler of mosaic/conf/hydra/job_logging/mosaic.yaml carries ConsoleFilter;
its file handler is RunLogFile."""
from __future__ import annotations

import logging
import sys

FILE_ONLY = {"file_only": True}


class ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)


class RunLogFile(logging.FileHandler):
    """The run's log file (run.log). When a record cannot be written (a full disk, a removed
    folder), says so once on stderr, in one line, and writes no more: logging's own handler prints
    a traceback for every record it fails on, dozens of lines before the run's one-line error."""

    failed = False

    def emit(self, record: logging.LogRecord) -> None:
        if not self.failed:
            super().emit(record)

    def handleError(self, record: logging.LogRecord) -> None:  # noqa: N802 - logging's name
        if self.failed or not logging.raiseExceptions:
            return
        self.failed = True
        error = sys.exc_info()[1]
        stream, self.stream = self.stream, None   # what it holds unwritten would fail again at close
        try:
            if stream is not None:
                stream.close()
        except (OSError, ValueError):
            pass
        why = getattr(error, "strerror", None) or error
        print(f"warning: the run log {self.baseFilename} could not be written ({why}); it is not written from "
              "here on, the console still shows the log", file=sys.stderr, flush=True)
