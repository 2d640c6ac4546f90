"""Reading and validating the task files (SST-5, Quora paraphrase, STS).

File reading and validation only; tokenization and batching live elsewhere.

Files are tab separated with a header row (see ../shared/data/README.md); columns are found by
header name, and any other column (such as the unnamed leading index columns) is ignored.

Policy:

* A problem with the whole file (missing, a directory, empty or whitespace only, not UTF-8,
  header only, a required column absent from the header) raises DataError naming the file.
* A bad row (wrong field count, empty id or sentence, a label that is not a finite number in
  range, a duplicate id, a stray quote that joins lines) is skipped and recorded in
  LoadResult.bad_rows with its physical line number and a short reason.
* More bad rows than max_bad_fraction of the data rows, or any bad row under strict=True,
  raises DataError whose message starts with the first bad row as 'path:line: reason'.

Records are meant to be one physical line each. A quoted field that runs past the end of its
line (usually a stray quote) makes the record starting on that line bad ("stray quote joins
lines N-M"), and reading resumes on the next physical line, so the rows a stray quote would
swallow are still read (and checked) one by one. Blank lines are ignored.
"""

from __future__ import annotations

import csv
import io
import math
import os
import re
from dataclasses import dataclass, field

TASK_KINDS = ("sst", "para", "sts")

# Required columns per kind: (id, sentence columns, label column).
_COLUMNS = {
    "sst": ("id", ("sentence",), "sentiment"),
    "para": ("id", ("sentence1", "sentence2"), "is_duplicate"),
    "sts": ("id", ("sentence1", "sentence2"), "similarity"),
}

_NUMBER = re.compile(r"[+-]?(?:\d+(?:\.\d*)?|\.\d+)(?:[eE][+-]?\d+)?", re.ASCII)
_BOM = b"\xef\xbb\xbf"


class DataError(Exception):
    """One-line message: 'path:line: reason' or 'path: reason'."""


@dataclass
class Example:
    id: str
    sent1: str
    sent2: str | None  # None for SST
    label: int | float | None  # SST int 0-4, PARA int 0/1, STS float 0-5; None for test files


@dataclass
class LoadResult:
    path: str
    examples: list[Example] = field(default_factory=list)
    bad_rows: list[tuple[int, str]] = field(default_factory=list)  # (physical line, reason)

    @property
    def n_rows(self) -> int:
        """Data rows read: good and bad (blank lines not counted)."""
        return len(self.examples) + len(self.bad_rows)

    def report(self, limit: int = 5) -> str:
        """A few lines about the skipped rows; empty string when nothing was skipped."""
        if not self.bad_rows:
            return ""
        lines = [f"{self.path}: skipped {len(self.bad_rows)} of {self.n_rows} rows (bad rows):"]
        lines += [f"  {self.path}:{line}: {reason}" for line, reason in self.bad_rows[:limit]]
        if len(self.bad_rows) > limit:
            lines.append(f"  ... and {len(self.bad_rows) - limit} more")
        return "\n".join(lines)


def _short(s: str, n: int = 40) -> str:
    """repr of s, cut to about n characters (keeps messages on one line)."""
    return repr(s) if len(s) <= n else repr(s[:n]) + "..."


def _read_text(path: str) -> str:
    if not os.path.exists(path):
        raise DataError(f"{path}: no such file")
    if os.path.isdir(path):
        raise DataError(f"{path}: is a directory, not a file")
    try:
        with open(path, "rb") as fh:
            data = fh.read()
    except OSError as e:
        raise DataError(f"{path}: cannot read ({e.strerror or e})") from None
    if data.startswith(_BOM):
        data = data[len(_BOM):]
    try:
        text = data.decode("utf-8")
    except UnicodeDecodeError as e:
        before = data[: e.start].decode("utf-8")
        line = before.count("\n") + before.count("\r") - before.count("\r\n") + 1
        col = len(before) - max(before.rfind("\n"), before.rfind("\r"))
        raise DataError(
            f"{path}:{line}: not valid UTF-8 (byte 0x{data[e.start]:02x} at column {col})"
        ) from None
    if not text.strip():
        raise DataError(f"{path}: file is empty")
    return text


def _parse_label(kind: str, s: str) -> tuple[int | float | None, str | None]:
    """(value, None) or (None, reason)."""
    s = s.strip()
    if not s:
        return None, "empty label"
    try:
        v = float(s)
    except ValueError:
        return None, f"label {_short(s)} is not a number"
    if not math.isfinite(v):
        return None, f"label {_short(s)} is not a finite number"
    if not _NUMBER.fullmatch(s):
        return None, f"label {_short(s)} is not a number"
    if kind == "sst":
        if v != int(v) or not 0 <= v <= 4:
            return None, f"label {_short(s)} is not an integer 0..4"
        return int(v), None
    if kind == "para":
        if v not in (0.0, 1.0):
            return None, f"label {_short(s)} is not 0 or 1"
        return int(v), None
    if not 0.0 <= v <= 5.0:
        return None, f"label {_short(s)} is not in 0..5"
    return v, None


def load(
    path,
    kind: str,
    labelled: bool,
    strict: bool = False,
    max_bad_fraction: float = 0.01,
) -> LoadResult:
    """Read one task file; see the module docstring for the policy."""
    if kind not in TASK_KINDS:
        raise ValueError(f"kind must be one of {TASK_KINDS}, not {kind!r}")
    if not 0.0 <= max_bad_fraction <= 1.0:
        raise ValueError(f"max_bad_fraction must be in [0, 1], not {max_bad_fraction!r}")
    path = os.fspath(path)
    text = _read_text(path)
    lines = io.StringIO(text, newline="").readlines()  # physical lines, endings kept

    # Header: the first non-blank line.
    h = 0
    while not lines[h].strip():
        h += 1
    try:
        header = [name.strip() for name in next(csv.reader([lines[h]], delimiter="\t"))]
    except csv.Error as e:  # e.g. a first line of binary junk longer than csv's field limit
        raise DataError(f"{path}:{h + 1}: unreadable header ({e})") from None
    id_col, sent_cols, label_col = _COLUMNS[kind]
    required = [id_col, *sent_cols] + ([label_col] if labelled else [])
    missing = [c for c in required if c not in header]
    if missing:
        found = ", ".join(_short(c, 20) for c in header[:8]) + (", ..." if len(header) > 8 else "")
        raise DataError(
            f"{path}:{h + 1}: header lacks column(s) {', '.join(map(repr, missing))} (found: {found})"
        )
    for c in required:
        if header.count(c) > 1:
            raise DataError(f"{path}:{h + 1}: column {c!r} appears more than once in the header")
    i_id = header.index(id_col)
    i_sents = [header.index(c) for c in sent_cols]
    i_label = header.index(label_col) if labelled else None

    # The reader pulls lines from `pos`; moving `pos` back re-reads lines one record at a time.
    pos = h + 1
    n_lines = len(lines)

    def feed():
        nonlocal pos
        while pos < n_lines:
            pos += 1
            yield lines[pos - 1]

    def new_reader():  # a fresh one after a rewind (the old feed may have run out)
        return csv.reader(feed(), delimiter="\t")

    # A single line may be long (very long sentences are kept); fields that run on across
    # lines are bad anyway, so the longest line bounds any good field.
    old_limit = csv.field_size_limit()
    csv.field_size_limit(max(old_limit, max(map(len, lines)) + 1))
    try:
        reader = new_reader()
        result = LoadResult(path)
        first_line_of: dict[str, int] = {}
        while pos < n_lines:
            if not lines[pos].strip():
                pos += 1
                continue
            start = pos  # 0-based index of the record's first line
            try:
                row = next(reader)
            except csv.Error as e:
                if pos - start > 1:  # a quoted field ran on until it outgrew the size limit
                    reason = f"stray quote joins lines {start + 1}-{pos} and on ({e})"
                else:
                    reason = f"unreadable row ({e})"
                result.bad_rows.append((start + 1, reason))
                pos = start + 1
                reader = new_reader()
                continue
            line = start + 1
            ex, reason = None, None
            if pos - start > 1:
                reason = f"stray quote joins lines {line}-{pos}"
                pos = start + 1  # resume on the next physical line
                reader = new_reader()
            elif any("\n" in f or "\r" in f for f in row):
                reason = f"stray quote runs to the end of the file (line {line})"
            elif len(row) != len(header):
                reason = f"expected {len(header)} fields, found {len(row)}"
            else:
                rid = row[i_id].strip()
                sents = [row[i].strip() for i in i_sents]
                if not rid:
                    reason = "empty id"
                if reason is None:
                    for c, s in zip(sent_cols, sents):
                        if not s:
                            reason = f"empty {c}"
                        elif "\t" in s:
                            reason = f"tab inside {c} (stray quote?)"
                        if reason:
                            break
                label = None
                if reason is None and labelled:
                    label, reason = _parse_label(kind, row[i_label])
                if reason is None and rid in first_line_of:
                    reason = f"duplicate id {_short(rid)} (first on line {first_line_of[rid]})"
                if reason is None:
                    first_line_of[rid] = line
                    ex = Example(rid, sents[0], sents[1] if len(sents) > 1 else None, label)
            if ex is not None:
                result.examples.append(ex)
            else:
                result.bad_rows.append((line, reason))
    finally:
        csv.field_size_limit(old_limit)

    if result.n_rows == 0:
        raise DataError(f"{path}: no data rows (header only)")
    bad = result.bad_rows
    if bad:
        first = f"{path}:{bad[0][0]}: {bad[0][1]}"
        if strict:
            raise DataError(f"{first} (--strict; {len(bad)} bad rows of {result.n_rows})")
        if len(bad) > max_bad_fraction * result.n_rows:
            where = ", ".join(str(ln) for ln, _ in bad[:5]) + (", ..." if len(bad) > 5 else "")
            raise DataError(
                f"{first} ({len(bad)} bad rows of {result.n_rows}, over the "
                f"{max_bad_fraction * 100:g}% budget; bad lines: {where})"
            )
    return result
