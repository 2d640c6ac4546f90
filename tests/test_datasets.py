"""Tests for datasets.load: the real task files, a malformed-input corpus, and a fuzz property."""

from __future__ import annotations

import math
import sys
from pathlib import Path

import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

sys.path.insert(0, str(Path(__file__).resolve().parents[1]))
from datasets import TASK_KINDS, DataError, Example, LoadResult, load  # noqa: E402

DATA = Path(__file__).resolve().parents[1] / "data"

# --------------------------------------------------------------------------- real files

# file: (kind, labelled, rows in the data README table)
REAL = {
    "ids-sst-train.csv": ("sst", True, 8544),
    "ids-sst-dev.csv": ("sst", True, 1101),
    "ids-sst-test-student.csv": ("sst", False, 2210),
    "quora-train.csv": ("para", True, 16174),
    "quora-dev.csv": ("para", True, 2021),
    "quora-test-student.csv": ("para", False, 2019),
    "sts-train.csv": ("sts", True, 6040),
    "sts-dev.csv": ("sts", True, 863),
    "sts-test-student.csv": ("sts", False, 1725),
}


def _real(name):
    p = DATA / name
    if not p.is_file():
        pytest.skip(f"{p} absent (run setup.sh)")
    kind, labelled, _ = REAL[name]
    return load(p, kind, labelled)


@pytest.mark.parametrize("name", sorted(REAL))
def test_real_file_counts(name):
    kind, labelled, rows = REAL[name]
    r = _real(name)
    assert len(r.examples) == rows - len(r.bad_rows)
    assert len(r.bad_rows) < 0.01 * rows
    assert len({e.id for e in r.examples}) == len(r.examples)
    for e in r.examples:
        assert e.id and e.sent1 and e.sent1 == e.sent1.strip()
        assert (e.sent2 is None) == (kind == "sst")
        assert "\t" not in e.sent1 and "\n" not in e.sent1
        if not labelled:
            assert e.label is None
        elif kind == "sst":
            assert type(e.label) is int and 0 <= e.label <= 4
        elif kind == "para":
            assert type(e.label) is int and e.label in (0, 1)
        else:
            assert type(e.label) is float and 0.0 <= e.label <= 5.0
    for line, reason in r.bad_rows:
        assert 2 <= line <= rows + 1 and reason


def test_real_sst_leading_spaces_stripped():
    r = _real("ids-sst-dev.csv")
    assert r.examples[0] == Example(
        "a7d575c9ed86ea9633660c67e",
        "It 's a lovely film with lovely performances by Buy and Accorsi .",
        None,
        3,
    )
    assert not any(e.sent1.startswith(" ") for e in r.examples)


def test_real_sst_test_ids_from_id_column():
    r = _real("ids-sst-test-student.csv")
    assert r.examples[0].id == "b7573736a6ddf7be102b7fee0"
    assert r.examples[0].sent1 == "Effective but too-tepid biopic"
    assert all(len(e.id) == 25 and "." not in e.id for e in r.examples)


def test_real_quora_labels_are_ints():
    r = _real("quora-dev.csv")
    assert r.examples[0].label == 1 and type(r.examples[0].label) is int
    assert {e.label for e in r.examples} == {0, 1}


# --------------------------------------------------------------------------- corpus helpers

HEADERS = {
    "sst": ["", "id", "sentence", "sentiment"],
    "para": ["", "id", "sentence1", "sentence2", "is_duplicate"],
    "sts": ["", "id", "sentence1", "sentence2", "similarity"],
}
N = 200  # good rows per file: one bad row is 0.5%, under the 1% budget
K = 100  # the row a case damages; data row k sits on physical line k + 2
LINE_K = K + 2
SENT = 2  # index of the (first) sentence field in a row
LAB = -1  # index of the label field


def good_label(kind, i):
    return {"sst": str(i % 5), "para": f"{i % 2}.0", "sts": f"{i % 51 / 10:.1f}"}[kind]


def good_rows(kind, n=N):
    rows = []
    for i in range(n):
        if kind == "sst":
            rows.append([str(i), f"id{i:04d}", f" sentence number {i} .", good_label(kind, i)])
        else:
            rows.append(
                [str(i), f"id{i:04d}", f"first {i}?", f"second {i}?", good_label(kind, i)]
            )
    return rows


def text(header, rows, eol="\n"):
    return "".join("\t".join(r) + eol for r in [header, *rows])


def good_file(kind):
    return text(HEADERS[kind], good_rows(kind))


def with_row(kind, k, fields=None, raw=None):
    """The good file with data row k replaced by `fields` (joined by tabs) or a raw line."""
    rows = good_rows(kind)
    lines = text(HEADERS[kind], rows).splitlines(keepends=True)
    lines[k + 1] = (raw if raw is not None else "\t".join(fields)) + "\n"
    return "".join(lines)


def set_field(kind, k, idx, value):
    row = good_rows(kind)[k]
    row[idx] = value
    return with_row(kind, k, row)


def expected_example(kind, i, labelled=True):
    lab = good_label(kind, i)
    to_value = {"sst": int, "para": lambda s: int(float(s)), "sts": float}[kind]
    label = to_value(lab) if labelled else None
    if kind == "sst":
        return Example(f"id{i:04d}", f"sentence number {i} .", None, label)
    return Example(f"id{i:04d}", f"first {i}?", f"second {i}?", label)


def all_good(r, kind, n=N, labelled=True):
    assert r.bad_rows == [] and r.report() == ""
    assert r.examples == [expected_example(kind, i, labelled) for i in range(n)]


# Each case: (name, build(kind) -> file content (str, bytes, or a special), outcome).
# Outcomes: ("ok", check(result, kind)), ("skip", [(line, reason part), ...], n_examples),
#           ("reject", message part; "{path}" stands for the file's path).


def skip(reason_part, line=LINE_K):
    """Outcome: one bad row on `line` whose reason contains `reason_part`."""
    return ("skip", [(line, reason_part)], N - 1)


def label(raw):
    """Build: the good file with row K's label replaced by `raw`."""
    return lambda kind: set_field(kind, K, LAB, raw)


def _ok_good(r, kind):
    all_good(r, kind)


def _ok_long(r, kind):
    assert r.bad_rows == []
    assert len(r.examples[K].sent1.split()) == 10_000
    assert r.examples[K].sent1.startswith("tok0 tok1") and r.examples[K].sent1.endswith("tok9999")


def _ok_doubled_quotes(r, kind):
    assert r.bad_rows == []
    assert r.examples[K].sent1 == 'He said "hi" , then "bye" .'
    assert r.examples[K + 1] == expected_example(kind, K + 1)


def _ok_label(raw, value):
    """(build, outcome) for a label that reads as `value` (type included)."""

    def check(r, kind):
        assert r.bad_rows == [] and len(r.examples) == N
        assert r.examples[K].label == value and type(r.examples[K].label) is type(value)

    return lambda kind: set_field(kind, K, LAB, raw), ("ok", check)


def _extra_leading(kind):
    h = ["0", "", *HEADERS[kind][1:]]
    return text(h, [[str(i + 1), f"{i}.0", *r[1:]] for i, r in enumerate(good_rows(kind))])


def _reordered(kind):
    h = HEADERS[kind]
    order = [len(h) - 1, *reversed(range(len(h) - 1))]  # label first, then the others reversed
    return text([h[j] for j in order], [[r[j] for j in order] for r in good_rows(kind)])


def _blank_lines(kind):
    lines = good_file(kind).splitlines(keepends=True)
    return "".join(lines[:50] + ["\n", "   \n"] + lines[50:] + ["\n", "\n"])


def _bad_after_blank(kind):
    lines = set_field(kind, K, LAB, "abc").splitlines(keepends=True)
    return "".join(["\n"] + lines[:50] + ["\n"] + lines[50:])  # row K moves to line K + 4


def _multiline_field(kind):
    # A legal CSV record whose quoted sentence holds a newline: rejected as a stray quote;
    # the continuation line is then read on its own (and is bad too).
    rows = good_rows(kind)
    rows[K][SENT] = '"broken\nsentence"'
    return text(HEADERS[kind], rows)


def _unbalanced_quote(kind):
    # An opening quote with no closing one: csv would swallow the rest of the file.
    return set_field(kind, K, SENT, '"stray quote here')


def _quote_tab_same_count(kind):
    # The quote closes on its line, so the field count is right, but it hides a tab.
    return set_field(kind, K, SENT, '"half\tand half"')


def _unbalanced_quote_big(kind):
    # The swallowed text outgrows csv's field size limit (131072) before the file ends.
    rows = good_rows(kind)
    for r in rows:
        r[SENT] += " word" * 200
    rows[K][SENT] = '"' + rows[K][SENT]
    return text(HEADERS[kind], rows)


def _stray_quote_at_eof(kind):
    rows = good_rows(kind)
    rows[-1][LAB] = '"' + rows[-1][LAB]
    return text(HEADERS[kind], rows)


def _truncated_file(kind):
    t = good_file(kind)
    return t[: t.rindex("\t")]  # last line cut just before its label, no newline


def _missing_tab(kind):
    row = good_rows(kind)[K]
    return with_row(kind, K, raw="\t".join(row[:-1]) + " " + row[-1])


def _dup_id(kind):
    row = good_rows(kind)[K]
    row[1] = "id0007"
    return with_row(kind, K, row)


def _crlf_bad_row(kind):
    rows = good_rows(kind)
    rows[K][LAB] = "abc"
    return text(HEADERS[kind], rows, eol="\r\n")


def _special(name):
    return lambda kind: name


def _wrong_header(kind):
    h = list(HEADERS[kind])
    h[1] = "ident"
    return text(h, good_rows(kind))


def _no_label_column(kind):
    return text(HEADERS[kind][:-1], [r[:-1] for r in good_rows(kind)])


def _latin1(kind):
    return set_field(kind, K, SENT, "caf\u00e9 au lait").encode("utf-8").replace(
        b"caf\xc3\xa9", b"caf\xe9"
    )


def _field_count_reason(kind, found):
    return f"expected {len(HEADERS[kind])} fields, found {found}"


COMMON = [
    # ----- read correctly
    ("good file", good_file, ("ok", _ok_good)),
    ("utf8 bom", lambda k: b"\xef\xbb\xbf" + good_file(k).encode(), ("ok", _ok_good)),
    ("crlf", lambda k: text(HEADERS[k], good_rows(k), "\r\n"), ("ok", _ok_good)),
    ("extra leading columns", _extra_leading, ("ok", _ok_good)),
    ("columns reordered", _reordered, ("ok", _ok_good)),
    ("blank lines", _blank_lines, ("ok", _ok_good)),
    ("no final newline", lambda k: good_file(k).rstrip("\n"), ("ok", _ok_good)),
    ("10000-token sentence", lambda k: set_field(k, K, SENT, " ".join(f"tok{i}" for i in range(10_000))),
     ("ok", _ok_long)),
    ("doubled quotes", lambda k: set_field(k, K, SENT, '"He said ""hi"" , then ""bye"" ."'),
     ("ok", _ok_doubled_quotes)),
    # ----- skipped (one bad row, with its physical line)
    ("missing field", lambda k: with_row(k, K, good_rows(k)[K][:-1]),
     skip("fields, found")),
    ("truncated file", _truncated_file, skip("fields, found", N + 1)),
    ("extra tab", lambda k: set_field(k, K, SENT, "one\ttwo"), skip("fields, found")),
    ("missing tab", _missing_tab,
     skip("fields, found")),
    ("unbalanced quote", _unbalanced_quote, skip(f"stray quote joins lines {LINE_K}-{N + 1}")),
    ("unbalanced quote, long swallow", _unbalanced_quote_big,
     skip(f"stray quote joins lines {LINE_K}-")),
    ("quoted tab", _quote_tab_same_count, skip("tab inside")),
    ("stray quote at end of file", _stray_quote_at_eof, skip("stray quote runs to the end", N + 1)),
    ("multi-line quoted field", _multiline_field,
     ("skip", [(LINE_K, f"stray quote joins lines {LINE_K}-{LINE_K + 1}"),
               (LINE_K + 1, "fields, found")], N - 1)),
    ("bad row after blank lines", _bad_after_blank, skip("'abc' is not a number", K + 4)),
    ("crlf bad row", _crlf_bad_row, skip("'abc' is not a number")),
    ("nan label", label("nan"), skip("not a finite number")),
    ("inf label", label("inf"), skip("not a finite number")),
    ("empty label", label(""), skip("empty label")),
    ("non-numeric label", label("abc"), skip("'abc' is not a number")),
    ("underscored label", label("1_0"), skip("'1_0' is not a number")),
    ("empty sentence", lambda k: set_field(k, K, SENT, ""), skip("empty sentence")),
    ("whitespace sentence", lambda k: set_field(k, K, SENT, "   "), skip("empty sentence")),
    ("empty id", lambda k: set_field(k, K, 1, " "), skip("empty id")),
    ("duplicate id", _dup_id, skip("duplicate id 'id0007' (first on line 9)")),
    # ----- rejected (DataError)
    ("empty file", lambda k: b"", ("reject", "{path}: file is empty")),
    ("whitespace file", lambda k: " \n\t\r\n\n", ("reject", "{path}: file is empty")),
    ("header only", lambda k: text(HEADERS[k], []), ("reject", "{path}: no data rows")),
    ("header and blank lines", lambda k: text(HEADERS[k], []) + "\n \n\n",
     ("reject", "{path}: no data rows")),
    ("wrong header", _wrong_header, ("reject", "{path}:1: header lacks column(s) 'id'")),
    ("label column absent", _no_label_column, ("reject", "{path}:1: header lacks column(s)")),
    ("non-utf8 bytes", _latin1, ("reject", f"{{path}}:{LINE_K}: not valid UTF-8 (byte 0xe9")),
    ("utf-16 file", lambda k: good_file(k).encode("utf-16"), ("reject", "{path}:1: not valid UTF-8")),
    ("missing file", _special("MISSING"), ("reject", "{path}: no such file")),
    ("directory", _special("DIR"), ("reject", "{path}: is a directory")),
]

SPECIFIC = {
    "sst": [
        ("label 5", label("5"), skip("not an integer 0..4")),
        ("label -1", label("-1"), skip("not an integer 0..4")),
        ("label 2.5", label("2.5"), skip("'2.5' is not an integer")),
        ("label 3.0", *_ok_label("3.0", 3)),
        ("label padded", *_ok_label(" 4 ", 4)),
    ],
    "para": [
        ("label 0.5", label("0.5"), skip("'0.5' is not 0 or 1")),
        ("label 2", label("2"), skip("not 0 or 1")),
        ("label -1", label("-1.0"), skip("not 0 or 1")),
        ("label 1", *_ok_label("1", 1)),
        ("empty sentence2", lambda k: set_field(k, K, 3, " "), skip("empty sentence2")),
        ("label 0.0", *_ok_label("0.0", 0)),
    ],
    "sts": [
        ("label -1", label("-1"), skip("'-1' is not in 0..5")),
        ("label 5.5", label("5.5"), skip("not in 0..5")),
        ("label 5", *_ok_label("5", 5.0)),
        ("empty sentence2", lambda k: set_field(k, K, 3, ""), skip("empty sentence2")),
        ("label 0", *_ok_label("0", 0.0)),
        ("label 4.6", *_ok_label("4.6", 4.6)),
    ],
}


CASES = [(kind, *c) for kind in TASK_KINDS for c in COMMON + SPECIFIC[kind]]


def _materialize(tmp_path, build, kind):
    content = build(kind)
    path = tmp_path / f"{kind}.csv"
    if content == "MISSING":
        return path
    if content == "DIR":
        path.mkdir()
        return path
    path.write_bytes(content if isinstance(content, bytes) else content.encode("utf-8"))
    return path


@pytest.mark.parametrize(
    "kind,name,build,outcome", CASES, ids=[f"{c[0]}-{c[1].replace(' ', '_')}" for c in CASES]
)
def test_corpus(tmp_path, kind, name, build, outcome):
    path = _materialize(tmp_path, build, kind)
    if outcome[0] == "reject":
        with pytest.raises(DataError) as ei:
            load(path, kind, labelled=True)
        msg = str(ei.value)
        assert outcome[1].format(path=path) in msg
        assert "\n" not in msg
        return
    r = load(path, kind, labelled=True)
    assert isinstance(r, LoadResult) and r.path == str(path)
    if outcome[0] == "ok":
        outcome[1](r, kind)
        return
    _, expected, n_examples = outcome
    assert [ln for ln, _ in r.bad_rows] == [ln for ln, _ in expected], r.bad_rows
    for (_, reason), (_, part) in zip(r.bad_rows, expected):
        assert part in reason
    assert len(r.examples) == n_examples
    assert {e.id for e in r.examples} >= {f"id{i:04d}" for i in range(N) if i not in (K, N - 1)}
    rep = r.report()
    assert rep.startswith(f"{path}: skipped {len(expected)} of {r.n_rows} rows")
    assert f"{path}:{expected[0][0]}: " in rep
    with pytest.raises(DataError, match="--strict") as ei:
        load(path, kind, labelled=True, strict=True)
    assert str(ei.value).startswith(f"{path}:{expected[0][0]}: {r.bad_rows[0][1]}")


def test_corpus_size():
    for kind in TASK_KINDS:
        kinds = [c for c in CASES if c[0] == kind]
        assert len(kinds) >= 20
        assert {c[3][0] for c in kinds} == {"ok", "skip", "reject"}


# --------------------------------------------------------------------------- budget, strict, unlabelled


def _with_bad(kind, bad):
    rows = good_rows(kind)
    for k in bad:
        rows[k][LAB] = "abc"
    return text(HEADERS[kind], rows)


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_budget_one_bad_row_passes_with_report(tmp_path, kind):
    p = tmp_path / "f.csv"
    p.write_text(_with_bad(kind, [10]))
    r = load(p, kind, True)
    assert r.bad_rows == [(12, "label 'abc' is not a number")]
    assert r.report() == (
        f"{p}: skipped 1 of 200 rows (bad rows):\n  {p}:12: label 'abc' is not a number"
    )


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_budget_two_bad_rows_of_200_is_exactly_one_percent_and_passes(tmp_path, kind):
    p = tmp_path / "f.csv"
    p.write_text(_with_bad(kind, [10, 20]))
    assert [ln for ln, _ in load(p, kind, True).bad_rows] == [12, 22]


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_budget_three_bad_rows_of_200_raises(tmp_path, kind):
    p = tmp_path / "f.csv"
    p.write_text(_with_bad(kind, [10, 20, 30]))
    with pytest.raises(DataError) as ei:
        load(p, kind, True)
    assert str(ei.value) == (
        f"{p}:12: label 'abc' is not a number "
        "(3 bad rows of 200, over the 1% budget; bad lines: 12, 22, 32)"
    )
    assert len(load(p, kind, True, max_bad_fraction=0.02).bad_rows) == 3


def test_budget_zero_and_report_limit(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(_with_bad("sts", range(0, 16, 2)))
    with pytest.raises(DataError, match=r"over the 0% budget"):
        load(p, "sts", True, max_bad_fraction=0.0)
    with pytest.raises(DataError, match=r"bad lines: 2, 4, 6, 8, 10, \.\.\.\)$"):
        load(p, "sts", True)
    r = load(p, "sts", True, max_bad_fraction=0.5)
    rep = r.report(limit=3).splitlines()
    assert rep[0] == f"{p}: skipped 8 of 200 rows (bad rows):"
    assert rep[1:] == [f"  {p}:{ln}: label 'abc' is not a number" for ln in (2, 4, 6)] + [
        "  ... and 5 more"
    ]


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_strict_raises_on_one_bad_row(tmp_path, kind):
    p = tmp_path / "f.csv"
    p.write_text(_with_bad(kind, [K]))
    with pytest.raises(DataError) as ei:
        load(p, kind, True, strict=True)
    assert str(ei.value) == f"{p}:{LINE_K}: label 'abc' is not a number (--strict; 1 bad rows of 200)"
    all_good(load(tmp_path / "f.csv", kind, False, strict=True), kind, labelled=False)


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_unlabelled_file(tmp_path, kind):
    p = tmp_path / "test.csv"
    p.write_text(text(HEADERS[kind][:-1], [r[:-1] for r in good_rows(kind)]))
    all_good(load(p, kind, False), kind, labelled=False)
    with pytest.raises(DataError, match="header lacks column"):
        load(p, kind, True)


@pytest.mark.parametrize("kind", TASK_KINDS)
def test_physical_line_numbers_after_multiline_records(tmp_path, kind):
    # Quoted fields spanning 3 and 2 lines push row 40 to line 44 and row 150 to line 155.
    rows = good_rows(kind)
    rows[20][SENT] = '"one\ntwo\nthree"'
    rows[40][SENT] = '"four\r\nfive"'
    rows[150][LAB] = "abc"
    p = tmp_path / "f.csv"
    p.write_bytes(text(HEADERS[kind], rows).encode())
    r = load(p, kind, True, max_bad_fraction=0.05)
    assert [ln for ln, _ in r.bad_rows] == [22, 23, 24, 44, 45, 155]
    assert r.bad_rows[0][1] == "stray quote joins lines 22-24"
    assert r.bad_rows[3][1] == "stray quote joins lines 44-45"
    assert r.bad_rows[-1] == (155, "label 'abc' is not a number")
    assert len(r.examples) == N - 3


def test_bad_arguments(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text(good_file("sst"))
    with pytest.raises(ValueError):
        load(p, "qqp", True)
    with pytest.raises(ValueError):
        load(p, "sst", True, max_bad_fraction=math.nan)


def test_header_with_duplicate_required_column(tmp_path):
    p = tmp_path / "f.csv"
    p.write_text("\tid\tsentence\tsentence\tsentiment\n0\ta\tb\tc\t1\n")
    with pytest.raises(DataError, match=r":1: column 'sentence' appears more than once"):
        load(p, "sst", True)


def test_huge_first_line_is_a_data_error(tmp_path):
    p = tmp_path / "f.csv"
    p.write_bytes(b"x" * 200_000)
    with pytest.raises(DataError, match=r":1: unreadable header"):
        load(p, "para", True)


def test_field_size_limit_restored(tmp_path):
    import csv

    before = csv.field_size_limit()
    p = tmp_path / "f.csv"
    p.write_text(set_field("sst", 3, SENT, "x" * 300_000))
    assert len(load(p, "sst", True).examples[3].sent1) == 300_000
    assert csv.field_size_limit() == before


# --------------------------------------------------------------------------- fuzz

_pieces = st.sampled_from(
    ["\t", "\n", "\r\n", "\r", '"', '""', " ", "id", "x", "0", "1", "2.5", "nan", "a1", "\ufeff", "\xe9"]
)
_header_texts = st.sampled_from(
    ["", *("\t".join(h) + "\n" for h in HEADERS.values())]
    + ["\t".join(h[:-1]) + "\n" for h in HEADERS.values()]  # unlabelled headers
)


@st.composite
def _mutated_good_files(draw):
    """A small valid file (any kind, labelled or not) with a few pieces spliced in."""
    kind = draw(st.sampled_from(TASK_KINDS))
    n = draw(st.integers(1, 5))
    cut = draw(st.sampled_from([None, -1]))
    t = text(HEADERS[kind][:cut], [r[:cut] for r in good_rows(kind, n)])
    for _ in range(draw(st.integers(0, 3))):
        i = draw(st.integers(0, len(t)))
        t = t[:i] + draw(_pieces) + t[i:]
    return t.encode()


_fuzz_bytes = st.one_of(
    st.binary(max_size=300),
    _mutated_good_files(),
    st.tuples(_header_texts, st.lists(_pieces, max_size=60)).map(
        lambda t: (t[0] + "".join(t[1])).encode()
    ),
    st.tuples(_header_texts, st.lists(_pieces, max_size=60), st.binary(max_size=8)).map(
        lambda t: (t[0] + "".join(t[1])).encode() + t[2]
    ),
)


@pytest.mark.parametrize("labelled", [True, False])
@pytest.mark.parametrize("kind", TASK_KINDS)
def test_fuzz_returns_result_or_data_error(tmp_path, kind, labelled):
    p = tmp_path / "fuzz.csv"

    @settings(max_examples=150, deadline=None, database=None,
              suppress_health_check=[HealthCheck.function_scoped_fixture, HealthCheck.too_slow])
    @given(data=_fuzz_bytes, strict=st.booleans())
    def run(data, strict):
        p.write_bytes(data)
        try:
            r = load(p, kind, labelled, strict=strict)
        except DataError as e:
            msg = str(e)
            assert msg.startswith(str(p)) and "\n" not in msg
            return
        assert isinstance(r, LoadResult) and r.n_rows > 0
        assert len(r.bad_rows) <= 0.01 * r.n_rows and not (strict and r.bad_rows)
        for e in r.examples:
            assert e.id and e.sent1 and not any(c in e.sent1 for c in "\t\r\n")
            assert (e.label is None) == (not labelled)
        for line, reason in r.bad_rows:
            assert 1 < line and reason and "\n" not in reason

    run()
