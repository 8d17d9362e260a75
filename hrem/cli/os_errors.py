"""One-line messages for OS errors the user can fix (disk full, permissions, read-only disk, quotas, ...).

These are not bugs in hrem, so a traceback helps nobody: the message names the errno's meaning, the path
when the OS (or `hrem.utils.files.atomic_path`) attached one, and what to do. Any other OSError keeps its
traceback, because then something unexpected happened.
"""
from __future__ import annotations

import errno

# errno -> (what happened, what to do)
USER_FIXABLE: dict[int, tuple[str, str]] = {
    errno.ENOSPC: ("disk full", "free space and re-run"),
    errno.EDQUOT: ("disk quota exceeded", "free space within your quota and re-run"),
    errno.EFBIG: ("file too large", "the file system or the file-size limit (ulimit -f) refuses a file this big"),
    errno.EACCES: ("permission denied", "check the file and folder permissions, or choose another path"),
    errno.EPERM: ("operation not permitted", "check the file and folder permissions, or choose another path"),
    errno.EROFS: ("read-only file system", "choose an output folder on a writable disk"),
    errno.EMFILE: ("too many open files", "raise the limit (ulimit -n) or use fewer --workers"),
    errno.ENAMETOOLONG: ("file name too long", "choose a shorter path"),
    errno.ENOTDIR: ("not a folder", "a part of the path is a file; choose another path"),
    errno.EISDIR: ("is a folder", "expected a file there; choose another path"),
}

_WRITE_ERRNOS = (errno.ENOSPC, errno.EDQUOT, errno.EFBIG)
_DETAIL = {errno.ENOSPC: "no space left on device"}


def describe_os_error(exc: OSError) -> str | None:
    """'disk full writing /x/y.png (no space left on device); free space and re-run', or None when the
    error is not one the user can fix (then the caller lets it propagate with its traceback)."""
    known = USER_FIXABLE.get(exc.errno) if exc.errno is not None else None
    if known is None:
        return None
    what, fix = known
    verb = "writing" if exc.errno in _WRITE_ERRNOS else "at"
    where = f" {verb} {exc.filename}" if exc.filename else ""
    detail = f" ({_DETAIL[exc.errno]})" if exc.errno in _DETAIL else ""
    return f"{what}{where}{detail}; {fix}"


__all__ = ["USER_FIXABLE", "describe_os_error"]
