"""docs/protocol.md against the code: field keys, caps, the EXACT bound and the worked example's bytes.

The document marks what this test reads with HTML comments, which render as nothing:
``<!-- field-keys: payload -->`` (and ``event``, ``definition``) and ``<!-- limits -->`` before a table,
``<!-- example: code -->`` before the example's Python code, ``<!-- example: f1 hex -->`` before a hex
dump and ``<!-- example: f1 bytes -->`` before the byte-by-byte table of the same frame.
"""

from __future__ import annotations

import inspect
import re
from pathlib import Path
from types import ModuleType
from typing import Any

import pytest
import zstandard

from edgewatch.protocol import columns, keys, limits

DOC = Path(__file__).resolve().parents[2] / "docs" / "protocol.md"
KEY_TABLES = {"payload": "", "event": "EVENT_", "definition": "DEF_"}  # table -> prefix of its names
FRAMES = ("f1", "f2", "f3")


def _doc() -> str:
    return DOC.read_text(encoding="utf-8")


def _after(marker: str) -> str:
    """The document after ``<!-- marker -->``, which must occur exactly once."""
    text = _doc()
    tag = f"<!-- {marker} -->"
    assert text.count(tag) == 1, f"docs/protocol.md must hold {tag!r} exactly once"
    return text[text.index(tag) + len(tag) :]


def _table(marker: str) -> list[list[str]]:
    """The body rows of the markdown table right after the marker, as stripped cells."""
    lines = _after(marker).lstrip("\n").splitlines()
    rows = []
    for line in lines:
        if not line.startswith("|"):
            break
        rows.append([cell.strip() for cell in line.strip().strip("|").split("|")])
    assert len(rows) > 2, f"no table after <!-- {marker} -->"
    assert set(rows[1][0]) <= set("-: "), f"the table after <!-- {marker} --> has no separator row"
    return rows[2:]


def _code_block(marker: str, language: str = "") -> str:
    match = re.match(rf"\s*```{language}\n(.*?)\n```", _after(marker), re.DOTALL)
    assert match, f"no ```{language} block right after <!-- {marker} -->"
    return match.group(1)


def _finals(module: ModuleType) -> dict[str, Any]:
    """The module's ``Final`` constants: what the wire format fixes."""
    names = [name for name, note in inspect.get_annotations(module).items() if "Final" in str(note)]
    assert names, f"{module.__name__} declares no Final constants"
    return {name: getattr(module, name) for name in names}


def _unquote(cell: str) -> str:
    return cell.strip("`* ")


def test_field_key_tables_match_keys_py() -> None:
    documented: dict[str, int] = {}
    for table, prefix in KEY_TABLES.items():
        numbers = []
        for row in _table(f"field-keys: {table}"):
            number, name = int(_unquote(row[0])), _unquote(row[1])
            assert name not in documented, f"key {name} is documented twice"
            if prefix:
                assert name.startswith(prefix), f"{name} is in the {table} key table"
            else:
                assert not name.startswith(tuple(p for p in KEY_TABLES.values() if p)), (
                    f"{name} is in the payload key table"
                )
            documented[name] = number
            numbers.append(number)
        assert len(numbers) == len(set(numbers)), f"the {table} key table uses a key number twice"
    assert documented == _finals(keys)


def test_limits_table_matches_limits_py() -> None:
    documented: dict[str, int] = {}
    for row in _table("limits"):
        name = _unquote(row[0])
        value = re.match(r"[\d,]+", row[1])
        assert value, f"the value of {name} must start with a number, not {row[1]!r}"
        assert name not in documented, f"cap {name} is documented twice"
        documented[name] = int(value.group().replace(",", ""))
    assert documented == _finals(limits)


def test_exact_bound_matches_columns_py() -> None:
    match = re.search(r"`2\^(\d+)` is the bound `EXACT`", _doc())
    assert match, "docs/protocol.md must say which power of two the bound EXACT is"
    documented = 1 << int(match.group(1))
    assert documented == columns.EXACT


@pytest.fixture(scope="module")
def example() -> dict[str, Any]:
    """The names the worked example's code defines, run against the current code."""
    namespace: dict[str, Any] = {}
    exec(compile(_code_block("example: code", "python"), f"{DOC}, worked example", "exec"), namespace)
    return namespace


@pytest.mark.parametrize("name", FRAMES)
def test_example_hex_is_what_the_code_encodes(example: dict[str, Any], name: str) -> None:
    documented = "".join(_code_block(f"example: {name} hex").split())
    assert documented == example[name].hex()


@pytest.mark.parametrize("name", FRAMES)
def test_example_heading_gives_the_frame_length(example: dict[str, Any], name: str) -> None:
    text = _doc()
    before = text[: text.index(f"<!-- example: {name} hex -->")]
    heading = before[before.rindex("\n### ") :].splitlines()[1]
    assert f" {len(example[name])} bytes" in heading, heading


@pytest.mark.parametrize("name", FRAMES)
def test_example_byte_table_covers_the_frame(example: dict[str, Any], name: str) -> None:
    frame: bytes = example[name]
    at = 0
    for row in _table(f"example: {name} bytes"):
        offset, data = int(row[0]), bytes.fromhex(_unquote(row[1]))
        assert offset == at, f"the row at offset {offset} should start at {at}"
        assert frame[offset : offset + len(data)] == data, f"the bytes at offset {offset}"
        at = offset + len(data)
    assert at == len(frame), "the byte table must end where the frame ends"


def test_example_key_frame_sizes(example: dict[str, Any]) -> None:
    match = re.search(r"The payload is (\d+) bytes; zstd would make it (\d+)", _doc())
    assert match, "the worked example must say how large the key frame's payload is, and compressed"
    frame: bytes = example["f1"]
    assert not frame[4] & 0x02, "the example's key frame is sent uncompressed"
    body = frame[5:]
    packed = zstandard.ZstdCompressor(level=3, write_content_size=True).compress(body)
    assert (int(match.group(1)), int(match.group(2))) == (len(body), len(packed))
