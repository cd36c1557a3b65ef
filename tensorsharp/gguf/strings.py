"""Fast, bounds-checked parsing of GGUF string arrays (vocabularies of 100k+ tokens).

A GGUF string array is n records of (u64 length, bytes). Walking it one record at a time
in Python costs ~0.3 us per string, which dominates opening a 262k-token model. Instead:

1. Find the length fields with numpy. A field of a string shorter than 256 bytes is one
   byte followed by seven zero bytes, so every such position is a candidate; text rarely
   holds seven zero bytes, so candidates are almost exactly the real fields. Where each
   candidate's successor (position + 8 + length) is the next candidate, the whole run is
   proven to be real fields by induction from a known real one. Only where that chain
   breaks (a string of 256+ bytes, or zero bytes that look like fields) do we step one
   record in Python and pick the chain up again.
2. Decode many strings with one UTF-8 decode: shrink each length field to one NUL byte
   (another ASCII byte if some string holds a NUL), decode, and str.split. With an ASCII
   separator the joined bytes are valid UTF-8 exactly when every string is.
"""
from __future__ import annotations

import struct

import numpy as np

from tensorsharp.errors import GGUFError

_U64 = struct.Struct("<Q")
# Bytes handled per numpy pass. Small enough that the temporaries stay in cache and are
# reused instead of faulted in fresh (which costs more than the arithmetic), large enough
# that per-pass Python overhead is noise.
_CHUNK = 1 << 16


def read_string_array(buf, pos: int, n: int, size: int, what: str) -> tuple[list[str], int]:
    """The n strings of the array whose first record starts at buf[pos]; also the end position."""
    fields, end = string_fields(buf, pos, n, size, what)
    return decode_strings(buf, fields, end, what), end


def string_fields(buf, pos: int, n: int, size: int, what: str) -> tuple[np.ndarray, int]:
    """Offsets (int64, (n,)) of the n length fields starting at pos, and the position after the last string."""
    parts: list[np.ndarray] = []
    have = 0
    while have < n:
        end = min(size, pos + min(16 * (n - have) + 4096, _CHUNK))  # small arrays: read little
        found, pos, stalled = _scan_window(buf, pos, end, n - have, size, what, have)
        parts.append(found)
        have += len(found)
        if stalled:  # chains keep breaking (hostile or odd data): one record at a time is faster
            found, pos = _walk(buf, pos, n - have, size, what, have)
            parts.append(found)
            have += len(found)
    return (np.concatenate(parts) if parts else np.zeros(0, np.int64)), pos


def _step(buf, field_pos: int, size: int, index: int, what: str) -> int:
    """The position after record `index` whose length field is at field_pos, read exactly."""
    if field_pos + 8 > size:
        raise GGUFError(f"{what}: string #{index} length field at offset {field_pos} is beyond end of file (size {size})")
    n = _U64.unpack_from(buf, field_pos)[0]
    if n > size - field_pos - 8:
        raise GGUFError(f"{what}: string #{index} length {n} exceeds remaining {size - field_pos - 8} bytes")
    return field_pos + 8 + n


def _walk(buf, pos: int, n: int, size: int, what: str, first: int) -> tuple[np.ndarray, int]:
    if n > (size - pos) // 8:
        raise GGUFError(f"{what}: {n} more strings need at least {8 * n} bytes but only {size - pos} remain")
    fields = np.empty(n, dtype=np.int64)
    for i in range(n):
        fields[i] = pos
        pos = _step(buf, pos, size, first + i, what)
    return fields, pos


def _short_fields(win: np.ndarray) -> np.ndarray:
    """Positions p with win[p+1 : p+8] all zero: where a length field < 256 could start."""
    z = win == 0
    z2 = z[:-1] & z[1:]       # z2[q]: bytes q..q+1 are zero
    z4 = z2[:-2] & z2[2:]     # bytes q..q+3
    z7 = z4[:-3] & z4[3:]     # bytes q..q+6
    return np.flatnonzero(z7[1:])


def _scan_window(buf, pos: int, end: int, need: int, size: int, what: str,
                 first: int) -> tuple[np.ndarray, int, bool]:
    """Fields found from pos (a real field) within buf[pos:end]: (offsets, next field, stalled)."""
    win = np.frombuffer(buf[pos:end], dtype=np.uint8)
    cand = _short_fields(win)
    succ = cand + 8 + win[cand]
    # Last candidate of each run whose successors are the next candidates.
    breaks = np.append(np.flatnonzero(succ[:-1] != cand[1:]), len(cand) - 1)
    taken = np.zeros(len(cand), dtype=bool)
    single: list[int] = []
    rel = got = steps = 0  # rel is always the position of a real field, relative to pos
    stalled = False
    while got < need:
        steps += 1
        if steps > 64 and steps * 8 > got:
            stalled = True
            break
        k = int(np.searchsorted(cand, rel))
        if k < len(cand) and cand[k] == rel:
            b = int(breaks[np.searchsorted(breaks, k)])
            take = min(b - k + 1, need - got)
            taken[k:k + take] = True
            got += take
            last = k + take - 1
            rel = int(succ[last])
            if pos + rel > size:
                raise GGUFError(f"{what}: string #{first + got - 1} length {int(win[cand[last]])} exceeds "
                                f"remaining {size - pos - int(cand[last]) - 8} bytes")
        elif rel + 8 <= len(win) or end == size:
            single.append(rel)  # a string of 256+ bytes, or the file ends here
            rel = _step(buf, pos + rel, size, first + got, what) - pos
            got += 1
        else:
            break  # the next field crosses the window's end
    found = cand[taken]
    if single:
        found = np.insert(found, np.searchsorted(found, single), single)
    return found.astype(np.int64, copy=False) + pos, pos + rel, stalled


def decode_strings(buf, fields: np.ndarray, end: int, what: str) -> list[str]:
    """Decode the strings of the records at `fields` (the last one ending at `end`) as UTF-8."""
    out: list[str] = []
    n = len(fields)
    cuts = np.searchsorted(fields, np.arange(int(fields[0]), end, _CHUNK)).tolist()[1:] if n else []
    for a, b in zip([0] + cuts, cuts + [n]):
        if a < b:
            out += _decode_chunk(buf, fields[a:b], int(fields[b]) if b < n else end, what, a)
    return out


def _decode_chunk(buf, fields: np.ndarray, end: int, what: str, first: int) -> list[str]:
    n = len(fields)
    start = int(fields[0])
    rel = fields - start
    region = np.frombuffer(buf[start:end], dtype=np.uint8)
    keep = np.ones(len(region), dtype=bool)
    for j in range(1, 8):
        keep[rel + j] = False
    packed = region[keep]           # per record: the first byte of its length field, then its string
    slots = rel - 7 * np.arange(n)  # where those first bytes are in packed
    packed[slots] = 0
    try:
        text = packed[1:].tobytes().decode("utf-8")
    except UnicodeDecodeError as e:
        i = first + int(np.searchsorted(slots[1:] - 1, e.start))
        raise GGUFError(f"{what}: string #{i} is not valid UTF-8 ({e.reason})") from None
    parts = text.split("\0")
    if len(parts) == n:
        return parts
    # Some string holds a NUL: separate with an ASCII byte that no string holds.
    counts = np.bincount(packed, minlength=256)
    counts[0] -= n
    free = np.flatnonzero(counts[:128] == 0)
    data = packed.tobytes()
    if free.size == 0:
        bounds = slots.tolist() + [len(data)]
        return [data[bounds[i] + 1:bounds[i + 1]].decode("utf-8") for i in range(n)]
    packed[slots] = free[0]
    return packed[1:].tobytes().decode("utf-8").split(chr(free[0]))
