"""The textfile collector: *.prom files as node_exporter reads them; a bad file is skipped whole."""

from __future__ import annotations

import math
import os
from collections.abc import Sequence
from pathlib import Path

import pytest

from edgewatch.agent.collectors.base import Sample
from edgewatch.agent.collectors.textfile import TextfileCollector
from edgewatch.protocol import Kind

GOOD = """\
# HELP backup_last_success_timestamp_seconds When the nightly backup last worked.
# TYPE backup_last_success_timestamp_seconds gauge
backup_last_success_timestamp_seconds 1712345678
# HELP backup_bytes_written Bytes the backup wrote.
# TYPE backup_bytes_written counter
backup_bytes_written 123456789
apt_upgrades_pending{origin="Debian-Security",arch="amd64"} 3
apt_runs_total 12
ratio 0.25
huge 1.8446744073709552e+19
missing NaN
"""

BAD = """\
# TYPE raid_degraded gauge
raid_degraded{md="md0"} 0
raid_degraded{md="md1" 1
"""


def _values(samples: Sequence[Sample]) -> dict[tuple[str, tuple[tuple[str, str], ...]], object]:
    return {(s.name, s.labels): v for s, v in samples}


@pytest.fixture
def directory(tmp_path: Path) -> Path:
    d = tmp_path / "textfile"
    d.mkdir()
    (d / "backup.prom").write_text(GOOD)
    os.utime(d / "backup.prom", (1712345000.25, 1712345000.25))
    (d / "raid.prom").write_text(BAD)
    (d / "apt.prom.tmp").write_text("being_written{")  # a writer's temporary file: not read
    (d / "notes.txt").write_text("not metrics")
    (d / "nested.prom").mkdir()  # a directory named like a file: not read, not an error
    return d


def test_good_file_counts_and_bad_file_is_skipped_whole(directory: Path) -> None:
    samples = TextfileCollector("textfile", directory).collect(1712345700.0)
    got = _values(samples)
    assert got[("backup_last_success_timestamp_seconds", ())] == 1712345678
    assert got[("apt_upgrades_pending", (("arch", "amd64"), ("origin", "Debian-Security")))] == 3
    assert got[("ratio", ())] == 0.25
    assert got[("huge", ())] == 1.8446744073709552e19  # above 2**53: stays a float
    missing = got[("missing", ())]
    assert isinstance(missing, float)
    assert math.isnan(missing)
    assert not any(name.startswith("raid") for name, _ in got)  # none of the bad file, not even line 2
    assert got[("edgewatch_textfile_scrape_error", ())] == 1
    assert got[("edgewatch_textfile_mtime_seconds", (("file", "backup.prom"),))] == 1712345000.25
    assert ("edgewatch_textfile_mtime_seconds", (("file", "raid.prom"),)) not in got
    assert len(samples) == 9


def test_kinds_and_value_types(directory: Path) -> None:
    samples = TextfileCollector("textfile", directory).collect(0.0)
    kinds = {s.name: s.kind for s, _ in samples}
    assert kinds["backup_bytes_written"] == Kind.COUNTER  # TYPE counter
    assert kinds["apt_runs_total"] == Kind.COUNTER  # untyped, but named like a counter
    assert kinds["backup_last_success_timestamp_seconds"] == Kind.GAUGE
    assert kinds["ratio"] == Kind.GAUGE
    by_name = {s.name: (s, v) for s, v in samples}
    assert type(by_name["apt_runs_total"][1]) is int  # "12" is sent as an int, which costs less
    assert type(by_name["ratio"][1]) is float
    assert by_name["ratio"][0].precision is None  # floats are sent exactly


def test_fixing_the_file_clears_the_error(directory: Path) -> None:
    collector = TextfileCollector("textfile", directory)
    assert _values(collector.collect(0.0))[("edgewatch_textfile_scrape_error", ())] == 1
    (directory / "raid.prom").write_text(BAD.replace('"md1" 1', '"md1"} 1'))
    got = _values(collector.collect(10.0))
    assert got[("edgewatch_textfile_scrape_error", ())] == 0
    assert got[("raid_degraded", (("md", "md1"),))] == 1


def test_a_series_in_two_files_is_an_error_for_the_second(directory: Path) -> None:
    (directory / "raid.prom").unlink()
    (directory / "zzz.prom").write_text("ratio 0.5\nother 1\n")
    got = _values(TextfileCollector("textfile", directory).collect(0.0))
    assert got[("ratio", ())] == 0.25  # backup.prom is read first (names in order) and wins
    assert ("other", ()) not in got
    assert got[("edgewatch_textfile_scrape_error", ())] == 1


def test_missing_directory_is_an_error_not_a_crash(tmp_path: Path) -> None:
    got = _values(TextfileCollector("textfile", tmp_path / "nope").collect(0.0))
    assert got == {("edgewatch_textfile_scrape_error", ()): 1}


def test_empty_directory_is_fine(tmp_path: Path) -> None:
    got = _values(TextfileCollector("textfile", tmp_path).collect(0.0))
    assert got == {("edgewatch_textfile_scrape_error", ()): 0}


def test_kinds_follow_the_declared_type() -> None:
    from edgewatch.agent.collectors.base import SeriesCache
    from edgewatch.agent.collectors.textfile import to_samples
    from edgewatch.agent.promtext import parse
    from edgewatch.protocol import Kind

    text = (
        "# TYPE req_seconds histogram\n"
        'req_seconds_bucket{le="0.1"} 5\nreq_seconds_bucket{le="+Inf"} 7\n'
        "req_seconds_sum 1.5\nreq_seconds_count 7\n"
        "# TYPE odd_total gauge\nodd_total 3\n"
        "plain_total 9\n"
        "# TYPE lat summary\n"
        'lat{quantile="0.5"} 0.2\nlat_sum 4\nlat_count 20\n'
    )
    kinds = {s.name + str(dict(s.labels)): s.kind for s, _ in to_samples(SeriesCache(), parse(text))}
    assert kinds["req_seconds_bucket{'le': '0.1'}"] == Kind.COUNTER
    assert kinds["req_seconds_sum{}"] == Kind.COUNTER
    assert kinds["req_seconds_count{}"] == Kind.COUNTER
    assert kinds["odd_total{}"] == Kind.GAUGE  # declared a gauge: the name does not override it
    assert kinds["plain_total{}"] == Kind.COUNTER  # untyped and named like a counter
    assert kinds["lat{'quantile': '0.5'}"] == Kind.GAUGE
    assert kinds["lat_count{}"] == Kind.COUNTER
