"""A folder only this process's user can use, and files in it opened without following a link.

A session keeps its spool and its outbox here (`actors.spool`): they hold messages, and they are read
back by the next process, so nobody else may write them. The default folder sits in the shared temporary
folder, where another local user could create it first: a folder that is a link, not ours, or writable by
group or others is refused (`PrivateFilesRefused`, logged with why), never used. One that is ours and
merely readable by others (made by an older release under a 022 umask) is narrowed to 0700.
"""

from __future__ import annotations

import logging
import os
import stat
from pathlib import Path

log = logging.getLogger(__name__)

FOLDER_MODE = 0o700
FILE_MODE = 0o600


class PrivateFilesRefused(Exception):
    """The folder or a file in it could be written by someone else (or is a link): not used."""


def _refuse(path: Path, why: str) -> PrivateFilesRefused:
    log.error("refusing %s: %s", path, why)
    return PrivateFilesRefused(f"{path} {why}")


def ensure_private_folder(path: Path) -> None:
    """Create `path` (0700) or check the one there: a folder, ours, writable by nobody else."""
    path.parent.mkdir(parents=True, exist_ok=True)
    try:
        os.mkdir(path, FOLDER_MODE)
    except FileExistsError:
        pass
    st = os.lstat(path)
    if stat.S_ISLNK(st.st_mode):
        raise _refuse(path, "is a symbolic link; the spool folder must be a real folder")
    if not stat.S_ISDIR(st.st_mode):
        raise _refuse(path, "is not a folder")
    if st.st_uid != os.geteuid():
        raise _refuse(path, f"belongs to uid {st.st_uid}, not to this process's uid {os.geteuid()}")
    mode = stat.S_IMODE(st.st_mode)
    if mode & 0o022:
        raise _refuse(path, f"is writable by group or others (mode {mode:04o}); another user may plant files")
    if mode != FOLDER_MODE:
        log.warning("%s: mode %04o narrowed to %04o", path, mode, FOLDER_MODE)
        os.chmod(path, FOLDER_MODE)


def open_private(path: Path, flags: int) -> int:
    """Open (or create, 0600) a regular file of ours in a checked folder; a link is never followed."""
    try:
        fd = os.open(path, flags | os.O_NOFOLLOW | os.O_CLOEXEC, FILE_MODE)
    except OSError as err:
        if not path.is_symlink():
            raise
        raise _refuse(path, "is a symbolic link") from err
    try:
        st = os.fstat(fd)
        if not stat.S_ISREG(st.st_mode):
            raise _refuse(path, "is not a regular file")
        if st.st_uid != os.geteuid():
            raise _refuse(path, f"belongs to uid {st.st_uid}, not to this process's uid {os.geteuid()}")
        if stat.S_IMODE(st.st_mode) != FILE_MODE:
            os.fchmod(fd, FILE_MODE)  # a file an older release left readable to others
    except BaseException:
        os.close(fd)
        raise
    return fd
