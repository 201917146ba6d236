"""Reading the user's text files (goals, rubrics, data) so that bad bytes are an error naming
the file, the line and the byte offset, never a traceback.

Files must be UTF-8 (a UTF-8 byte-order mark is allowed). A UTF-16 or UTF-32 file, Latin-1 or
CP1252 bytes, binary data, a directory or a device where a file belongs, or a file above the size
bound are each refused with what to do about it.
"""
from __future__ import annotations

import codecs
import stat
from pathlib import Path

from harness.errors import InputError, Problem

# Far above any goal or rubric; data files get their own, larger bound.
MAX_CONFIG_BYTES = 1 << 20          # 1 MiB
MAX_DATA_BYTES = 2 << 30            # 2 GiB

_WIDE_BOMS = {codecs.BOM_UTF32_LE: "UTF-32", codecs.BOM_UTF32_BE: "UTF-32",
              codecs.BOM_UTF16_LE: "UTF-16", codecs.BOM_UTF16_BE: "UTF-16"}


def read_text(path: str | Path, *, max_bytes: int = MAX_CONFIG_BYTES) -> str:
    """The file's text, decoded as UTF-8; an :class:`InputError` for anything else.

    Only a regular file is read (``/dev/zero``, a pipe or a socket would never end, or block),
    and never more than ``max_bytes + 1`` bytes of it: a file whose size the system does not
    report (``/proc``) or that grows while read is still bounded.
    """
    path = Path(path)
    file = str(path)
    try:
        info = path.stat()
    except FileNotFoundError:
        raise InputError(Problem(file, None, None, "file not found")) from None
    except OSError as exc:
        raise InputError(Problem(file, None, None, f"cannot be read: {exc.strerror or exc}")) from None
    if stat.S_ISDIR(info.st_mode):
        raise InputError(Problem(file, None, None, "is a folder; expected a file"))
    if not stat.S_ISREG(info.st_mode):
        raise InputError(Problem(file, None, None, "is not a regular file (a device, pipe or socket); "
                                                   "expected a file"))
    too_big = f"at most {max_bytes:,} are read"
    if info.st_size > max_bytes:
        raise InputError(Problem(file, None, None, f"is {info.st_size:,} bytes; {too_big}"))
    try:
        with path.open("rb") as fh:
            raw = fh.read(max_bytes + 1)
    except OSError as exc:
        raise InputError(Problem(file, None, None, f"cannot be read: {exc.strerror or exc}")) from None
    if len(raw) > max_bytes:
        raise InputError(Problem(file, None, None, f"is more than {max_bytes:,} bytes; {too_big}"))
    return decode(raw, file)


def decode(raw: bytes, file: str) -> str:
    for bom, name in _WIDE_BOMS.items():
        if raw.startswith(bom):
            raise InputError(Problem(file, 1, None, f"is {name} text; save it as UTF-8"))
    try:
        return raw.decode("utf-8-sig")
    except UnicodeDecodeError as exc:
        line = raw.count(b"\n", 0, exc.start) + 1
        bad = raw[exc.start:exc.start + 4]
        hint = "binary data" if b"\x00" in raw[:8192] else "not UTF-8 (Latin-1 or CP1252?)"
        raise InputError(Problem(file, line, None, f"byte offset {exc.start}: {bad!r} is {hint}; save the "
                                                   f"file as UTF-8")) from None


__all__ = ["MAX_CONFIG_BYTES", "MAX_DATA_BYTES", "decode", "read_text"]
