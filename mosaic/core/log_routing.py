"""Which log records reach the console: a record logged with `extra=FILE_ONLY` goes to the run's
log file (run.log) only, e.g. another process's traceback whose one-line summary the run prints
anyway. The console handler of mosaic/conf/hydra/job_logging/mosaic.yaml carries ConsoleFilter."""
from __future__ import annotations

import logging

FILE_ONLY = {"file_only": True}


class ConsoleFilter(logging.Filter):
    def filter(self, record: logging.LogRecord) -> bool:
        return not getattr(record, "file_only", False)
