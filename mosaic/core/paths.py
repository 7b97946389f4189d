"""Why a path a setting names cannot be read as a file, in words for a one-line error."""
from __future__ import annotations

import errno
import os
from pathlib import Path


def not_a_file(path: Path) -> str:
    """What `path` is instead of a readable file: "is a folder, not a file", "is a symbolic link
    that loops", "is a link to X, which does not exist", "is not a regular file" or "does not exist"
    (so the fix the message gives fits the case)."""
    try:
        os.stat(path)
    except OSError as e:
        if e.errno == errno.ELOOP:
            return "is a symbolic link that loops"
        if os.path.islink(path):
            return f"is a link to {os.readlink(path)}, which does not exist"
        return "does not exist"
    if Path(path).is_dir():
        return "is a folder, not a file"
    return "is a file" if Path(path).is_file() else "is not a regular file"
