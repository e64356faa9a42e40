"""The spool's on-disk format: a segment header, framed records, and a checking scanner.

A segment is one file, ``seg-<created ns>-<pid>-<random>.seg`` (``.spool`` for version 1)::

    header   magic b"LDNASPL\\x00" | version u16 (2) | 16 u16 | pid u32 | created ns u64
             | destination (16 bytes) | crc32 u32
    (version 1: magic | 1 u16 | 0 u16 | pid u32 | created ns u64 | crc32 u32, no destination)
    record   mark b"\\xd5\\x1e" | length u32 | crc32 u32 | body (``length`` bytes; the CRC
             covers the body)
    body     kind u8 | a u64 | b u64 | count u32 | data
             BATCH: a = sequence number in the segment, b = wall time appended (ns),
                    count = entries, data = count lengths (u32 each), then the entries
             ACK:   a = first, b = last sequence number delivered (inclusive),
                    count = lines in them, no data

All integers little-endian. Records are only ever appended; an ACK says the
batches it names were delivered (or given up: too old) and must never be read
again. A record is either whole and matching its CRC, or damage:

- a *torn tail*: the last record stops short of the length it announces, or
  fails its CRC, with no whole record after it (or the tail is zeros, what a
  file system leaves after a crash). A write cut by ``kill -9``, a full disk
  or a crash; cut off, nothing else lost.
- *corruption*: anything else, such as a flipped bit, or a block of zeros a
  crash left in the middle of the file, with whole records after it. The
  damaged bytes (up to the next whole record: ``next_record``) are moved to
  quarantine; the whole records after them are salvaged (``_segment.salvage``).
  The mark lets the checker find those later records (``bytes.find``, not a
  CRC at every byte). Damage inside the very last record cannot be told from
  a torn write.

Entries are opaque bytes to the spool (the sender's entries: a comma and one
serialized line).

The destination (``_destination``) says whose lines a segment holds: only a
process sending to the same place adopts it. Version 1 segments have none, so
no process adopts one by itself: only ``spool replay --any-destination``, run
with the key and URL they were written for. A header of a later version (the magic and
a version above ``VERSION``) is neither read nor damage: such a segment is left
alone for the library that wrote it, whatever else that version changed.
Versions before 2 look only at ``.spool`` names, so they never see a ``.seg``
segment: they neither send, delete nor count it.
"""

from __future__ import annotations

import os
import struct
import sys
import zlib
from array import array
from collections.abc import Sequence
from dataclasses import dataclass, field
from itertools import accumulate, pairwise

__all__ = [
    "ACK",
    "BATCH",
    "DESTINATION_SIZE",
    "FRAME_SIZE",
    "HEADER_SIZE",
    "MAX_BODY",
    "MAX_CANDIDATES",
    "VERSION",
    "AckBits",
    "Damage",
    "Header",
    "Record",
    "ack_frame",
    "batch_frame",
    "damaged_batch",
    "decode_entries",
    "decode_header",
    "encode_header",
    "next_record",
    "read_record",
    "salvage_lines",
    "torn_header",
]

MAGIC = b"LDNASPL\x00"
VERSION = 2
_HEADER = struct.Struct("<8sHHIQ")  # the fields every version so far starts with
_VERSION_AT = struct.Struct("<8sH")
DESTINATION_SIZE = 16
#: This version's header: the common fields, the destination, a CRC of all of them.
HEADER_SIZE = _HEADER.size + DESTINATION_SIZE + 4
_V1_HEADER_SIZE = _HEADER.size + 4
MARK = b"\xd5\x1e"
_FRAME = struct.Struct("<2sII")
_FIXED = struct.Struct("<BQQI")
FRAME_SIZE = _FRAME.size
#: Bytes of a record before its data: frame and fixed body fields.
RECORD_HEAD = _FRAME.size + _FIXED.size
BATCH = 1
ACK = 2
#: No record is larger: a batch record holds at most ``max_batch_bytes`` of lines (by
#: the buffer's per-line cost, more than a line takes here), an option capped at
#: ``_config._MAX_BATCH_CAP``, itself below the service's ``_limits.BODY_BYTES``.
#: A length above this is damage, not a reason to allocate gigabytes.
MAX_BODY = 64 * 1024 * 1024
# Batch numbers a segment may hold beyond one per RECORD_HEAD bytes of it (read_record):
# a margin for what a torn tail cut off and later records name.
_SEQ_SLACK = 1024
_LITTLE = sys.byteorder == "little"
#: Marks checked after damage before giving up and calling it corruption; also what
#: salvaging one segment may check in vain (``next_record``) before the rest of it goes
#: to quarantine whole: megabytes of garbage must not make adopting a segment slow.
MAX_CANDIDATES = 64


@dataclass(frozen=True)
class Header:
    version: int
    pid: int
    created_ns: int
    size: int  # where the first record starts (0 for a later version: not read)
    destination: bytes | None  # None: version 1, not recorded (or a later version's: unknown)

    @property
    def later(self) -> bool:
        """Written by a later version of the library: left alone, never read nor moved."""
        return self.version > VERSION


def encode_header(pid: int, created_ns: int, destination: bytes) -> bytes:
    if len(destination) != DESTINATION_SIZE:
        raise ValueError(f"a destination is {DESTINATION_SIZE} bytes")
    head = _HEADER.pack(MAGIC, VERSION, DESTINATION_SIZE, pid & 0xFFFFFFFF, created_ns)
    head += destination
    return head + struct.pack("<I", zlib.crc32(head))


def decode_header(data: bytes) -> Header | None:
    """The header, or None when it is short, foreign or damaged.

    ``data``: the file's first ``HEADER_SIZE`` bytes (fewer if it is shorter).
    """
    if len(data) < _VERSION_AT.size:
        return None
    magic, version = _VERSION_AT.unpack_from(data)
    if magic != MAGIC or version == 0:
        return None
    if version > VERSION:
        return Header(version, 0, 0, 0, None)
    size = _header_size(version)
    if len(data) < size:
        return None
    _, _, extra, pid, created_ns = _HEADER.unpack_from(data)
    (crc,) = struct.unpack_from("<I", data, size - 4)
    if crc != zlib.crc32(data[: size - 4]):
        return None
    if version == 1:
        return Header(1, pid, created_ns, size, None)
    if extra != DESTINATION_SIZE:
        return None
    return Header(version, pid, created_ns, size, bytes(data[_HEADER.size : size - 4]))


def torn_header(data: bytes) -> bool:
    """A header cut short (or never written: zeros): what a crash leaves, not corruption.

    ``data``: the file's first ``HEADER_SIZE`` bytes, as ``decode_header`` had them.
    """
    if data.count(0) == len(data):
        return True
    if len(data) < _VERSION_AT.size:
        return MAGIC.startswith(data[: len(MAGIC)])
    magic, version = _VERSION_AT.unpack_from(data)
    return magic == MAGIC and len(data) < _header_size(version)


def _header_size(version: int) -> int:
    return _V1_HEADER_SIZE if version == 1 else HEADER_SIZE


def batch_frame(seq: int, time_ns: int, entries: Sequence[bytes]) -> list[bytes]:
    """The parts of one BATCH record, for ``os.writev`` (the entries are not copied twice)."""
    lengths = array("I", map(len, entries))
    if not _LITTLE:
        lengths.byteswap()
    blob = b"".join(entries)
    fixed = _FIXED.pack(BATCH, seq, time_ns, len(entries))
    raw_lengths = lengths.tobytes()
    crc = zlib.crc32(blob, zlib.crc32(raw_lengths, zlib.crc32(fixed)))
    size = len(fixed) + len(raw_lengths) + len(blob)
    return [_FRAME.pack(MARK, size, crc) + fixed, raw_lengths, blob]


def ack_frame(first: int, last: int, lines: int) -> bytes:
    body = _FIXED.pack(ACK, first, last, lines)
    return _FRAME.pack(MARK, len(body), zlib.crc32(body)) + body


def decode_entries(data: bytes | memoryview, count: int) -> list[bytes]:
    """The entries of a BATCH record's data (lengths, then the entries)."""
    lengths = array("I")
    lengths.frombytes(data[: 4 * count])
    if not _LITTLE:
        lengths.byteswap()
    blob = bytes(data[4 * count :])
    return [blob[a:b] for a, b in pairwise(accumulate(lengths, initial=0))]


@dataclass(frozen=True)
class Record:
    """One whole record: where it is, what it says, and its data when it was read."""

    offset: int
    end: int
    kind: int
    a: int
    b: int
    count: int
    data: bytes | None = None


@dataclass(frozen=True)
class Damage:
    """What was found at ``offset`` instead of a record."""

    offset: int
    torn: bool  # True: a cut-off tail, False: corruption with data after it
    reason: str


def read_record(fd: int, offset: int, end: int, *, with_data: bool) -> Record | Damage | None:
    """The record at ``offset`` (None at ``end``), checked against its CRC when ``with_data``.

    Without ``with_data`` only the fixed fields are read: the caller skips a
    record it knows (an ACK, a batch already delivered) without reading it all.
    """
    if offset >= end:
        return None
    head = os.pread(fd, RECORD_HEAD, offset)
    if len(head) < RECORD_HEAD:
        return _damage(fd, offset, end, "incomplete record header", maybe_torn=True)
    mark, size, crc = _FRAME.unpack_from(head)
    if mark != MARK or size < _FIXED.size or size > MAX_BODY:
        return _damage(fd, offset, end, "not a record header", maybe_torn=False)
    record_end = offset + FRAME_SIZE + size
    if record_end > end:
        return _damage(fd, offset, end, "record runs past the end of the file", maybe_torn=True)
    kind, a, b, count = _FIXED.unpack_from(head, FRAME_SIZE)
    if kind not in (BATCH, ACK) or (kind == BATCH and 4 * count > size - _FIXED.size):
        return _damage(fd, offset, end, f"unknown record kind {kind}", maybe_torn=False)
    # Batches are numbered from 0 in their segment, a record each: a number past what a
    # file this size can hold, or a done mark's range backwards, is no record this library
    # wrote. Taken, a mark of batches 0 to 2**34 (its CRC right) held the scan, and the
    # sender, in a loop over each (H188).
    # (``end`` may be where a read stops short of the file's end: the file's own size
    # decides, asked only of a number past ``end``'s.)
    last = b if kind == ACK else a
    if a > last or (
        last > end // RECORD_HEAD + _SEQ_SLACK
        and last > os.fstat(fd).st_size // RECORD_HEAD + _SEQ_SLACK
    ):
        return _damage(fd, offset, end, "batch numbers past the file's", maybe_torn=False)
    data: bytes | None = None
    if with_data:
        body = os.pread(fd, size, offset + FRAME_SIZE)
        if len(body) < size:
            return _damage(fd, offset, end, "file shrank while reading", maybe_torn=True)
        if zlib.crc32(body) != crc:
            return _damage(fd, offset, end, "CRC mismatch", maybe_torn=True)
        data = body[_FIXED.size :]
    return Record(offset, record_end, kind, a, b, count, data)


def _damage(fd: int, offset: int, end: int, reason: str, *, maybe_torn: bool) -> Damage:
    # Zeros to the end are what a crash leaves where unsynced writes did not
    # reach the disk: a torn tail, whatever the length field seemed to say.
    if _zeros_to_end(fd, offset, end):
        return Damage(offset, True, reason)
    return Damage(offset, maybe_torn and not _record_after(fd, offset + 1, end), reason)


def _whole_record_at(fd: int, offset: int, end: int) -> bool:
    """A record with a valid head and CRC at ``offset`` (no damage classification: no recursion)."""
    head = os.pread(fd, FRAME_SIZE, offset)
    if len(head) < FRAME_SIZE:
        return False
    mark, size, crc = _FRAME.unpack(head)
    if mark != MARK or not _FIXED.size <= size <= min(MAX_BODY, end - offset - FRAME_SIZE):
        return False
    return bool(zlib.crc32(os.pread(fd, size, offset + FRAME_SIZE)) == crc)


def _zeros_to_end(fd: int, offset: int, end: int) -> bool:
    chunk = 1 << 16
    while offset < end:
        data = os.pread(fd, min(chunk, end - offset), offset)
        if not data or data.count(0) != len(data):
            return not data
        offset += len(data)
    return True


def _record_after(fd: int, offset: int, end: int) -> bool:
    """Is there a whole, CRC-checked record anywhere in ``offset``..``end``?

    Only after damage: a torn write is the last thing in a file, so a good
    record after the damage means corruption in the middle. Megabytes of
    garbage would make this slow (each chance mark may announce a long
    record to check), so after ``MAX_CANDIDATES`` it answers True: calling
    it corruption moves the bytes to quarantine instead of cutting them.
    """
    found, left = next_record(fd, offset, end, MAX_CANDIDATES)
    return found is not None or left < 0


def next_record(fd: int, offset: int, end: int, budget: int) -> tuple[int | None, int]:
    """Where the first whole, CRC-checked record in ``offset``..``end`` starts (None: none
    found), and what is left of ``budget``, the chance marks that may still be checked in
    vain; None and -1 once it is spent, so that garbage full of marks stays quick to pass."""
    chunk = 1 << 20
    while offset < end:
        data = os.pread(fd, min(chunk + FRAME_SIZE, end - offset), offset)
        if not data:
            break
        at = data.find(MARK)
        while 0 <= at < chunk:
            if _whole_record_at(fd, offset + at, end):
                return offset + at, budget
            budget -= 1
            if budget < 0:
                return None, -1
            at = data.find(MARK, at + 1)
        offset += chunk
    return None, budget


def damaged_batch(fd: int, start: int, stop: int) -> tuple[int, int] | None:
    """The sequence number and line count of the damaged record at ``start``, when they can
    be trusted though its CRC failed: a batch's head whose length ends exactly at ``stop``
    (where the next whole record starts) and whose lengths add up to its data (so the
    damage is in the lines, not the head). None otherwise: a block of zeros, a head that
    is not one, damage across several records; how many lines it held is not known."""
    head = os.pread(fd, RECORD_HEAD, start)
    if len(head) < RECORD_HEAD:
        return None
    mark, size, _ = _FRAME.unpack_from(head)
    kind, seq, _, count = _FIXED.unpack_from(head, FRAME_SIZE)
    if mark != MARK or kind != BATCH or start + FRAME_SIZE + size != stop:
        return None
    if 4 * count > size - _FIXED.size:
        return None
    lengths = array("I")
    lengths.frombytes(os.pread(fd, 4 * count, start + RECORD_HEAD))
    if len(lengths) != count:
        return None
    if not _LITTLE:
        lengths.byteswap()
    if sum(lengths) != size - _FIXED.size - 4 * count:
        return None
    return seq, count


def salvage_lines(fd: int, end: int) -> int:
    """Lines of the whole, CRC-checked batches not marked done anywhere in bytes
    ``0``..``end`` of damaged data (a quarantine file): what deleting it gives up, as far
    as it can be told. A damaged record's lines cannot be, nor, after ``MAX_CANDIDATES``
    chance marks in garbage, the rest: checking each may read megabytes."""
    window = 1 << 16
    pending: dict[int, int] = {}
    done: list[tuple[int, int]] = []
    misses = 0
    offset = 0
    while offset < end and misses <= MAX_CANDIDATES:
        data = os.pread(fd, min(window, end - offset), offset)
        at = data.find(MARK)
        if at < 0:
            # The last byte may be the first half of a mark.
            offset += max(1, len(data) - 1) if data else end
            continue
        offset += at
        if not _whole_record_at(fd, offset, end):
            misses += 1
            offset += 1
            continue
        size, kind, a, b, count = _whole_head(os.pread(fd, RECORD_HEAD, offset))
        if kind == BATCH:
            pending[a] = count
        elif kind == ACK:
            done.append((a, b))
        offset += FRAME_SIZE + size
    for first, last in done:
        for seq in [seq for seq in pending if first <= seq <= last]:
            del pending[seq]
    return sum(pending.values())


def _whole_head(head: bytes) -> tuple[int, int, int, int, int]:
    """A checked record's body size and fixed fields (kind, a, b, count)."""
    _, size, _ = _FRAME.unpack_from(head)
    kind, a, b, count = _FIXED.unpack_from(head, FRAME_SIZE)
    return size, kind, a, b, count


@dataclass
class AckBits:
    """Which sequence numbers of one segment are done: a bitmap, an eighth of a byte each."""

    bits: bytearray = field(default_factory=bytearray)

    def __contains__(self, seq: int) -> bool:
        i = seq >> 3
        return i < len(self.bits) and bool(self.bits[i] & (1 << (seq & 7)))

    def add(self, seq: int) -> bool:
        """Mark ``seq`` done; False when it already was."""
        i = seq >> 3
        if i >= len(self.bits):
            self.bits.extend(bytes(i + 1 - len(self.bits)))
        mask = 1 << (seq & 7)
        if self.bits[i] & mask:
            return False
        self.bits[i] |= mask
        return True
