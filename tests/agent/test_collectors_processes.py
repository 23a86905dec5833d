"""ProcessCollector on golden /proc/[pid] folders: states, threads, top by CPU and by memory."""

from __future__ import annotations

from pathlib import Path

import pytest
from hypothesis import given
from hypothesis import strategies as st

from edgewatch.agent.collectors.processes import ProcessCollector, UserNames, parse_pid_stat

from .readings import PI, VM_NOW0, VM_NOW1, VM_T0, VM_T1, Reading, snapshot_copy, write

USERS = {0: "root", 1000: "pi"}


def user_name(uid: int) -> str:
    return USERS.get(uid, str(uid))


def collector(root: Path, top_n: int = 5) -> ProcessCollector:
    return ProcessCollector(root, top_n=top_n, page_size=4096, user_name=user_name)


def top(r: Reading, name: str) -> list[tuple[str, str, str, str, int | float | None]]:
    rows = [(dict(labels), v) for labels, v in r.of(name).items()]
    return sorted((d["rank"], d["pid"], d["name"], d["user"], v) for d, v in rows)


def test_states_threads_and_pids() -> None:
    r = Reading(collector(PI / "proc").collect(0.0))
    states = {dict(labels)["state"]: n for labels, n in r.of("node_processes_state").items()}
    assert states == {"R": 1, "S": 4, "D": 1, "Z": 1, "T": 1, "I": 1}
    assert r("node_processes_pids") == 9  # pid 666's stat is garbage: skipped
    assert r("node_processes_threads") == 23


def test_top_by_memory() -> None:
    r = Reading(collector(PI / "proc", top_n=3).collect(0.0))
    assert top(r, "edgewatch_process_resident_bytes") == [
        ("1", "512", "node-red", "pi", 25000 * 4096),
        ("2", "901", "python3", "pi", 12000 * 4096),
        ("3", "1", "systemd", "root", 3000 * 4096),
    ]


def test_names_with_spaces_and_parentheses_and_unknown_users() -> None:
    r = Reading(collector(PI / "proc", top_n=5).collect(0.0))
    rows = top(r, "edgewatch_process_resident_bytes")
    assert ("4", "640", "tmux: server", "pi", 1200 * 4096) in rows
    assert ("5", "733", "a) b", "999", 800 * 4096) in rows


def test_no_cpu_ranking_on_the_first_scan() -> None:
    r = Reading(collector(VM_T0 / "proc").collect(VM_NOW0))
    assert not r.of("edgewatch_process_cpu_percent")


def test_top_by_cpu_between_two_recorded_scans() -> None:
    c = collector(VM_T0 / "proc")
    c.collect(VM_NOW0)
    c._root = str(VM_T1 / "proc")
    r = Reading(c.collect(VM_NOW1))
    # the busy loop used 504 ticks (5.04 s) of the 5.16 s, dd 40 ticks before it exited (a zombie now);
    # the processes that used no CPU are not ranked
    assert top(r, "edgewatch_process_cpu_percent") == [
        ("1", "16547", "python3", "root", 97.7),
        ("2", "16548", "dd", "root", 7.8),
    ]
    states = {dict(labels)["state"]: n for labels, n in r.of("node_processes_state").items()}
    assert states == {"R": 1, "S": 2, "D": 0, "Z": 2, "T": 1, "I": 1}


def test_a_reused_pid_is_a_new_process_and_exited_processes_are_skipped(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    c = collector(root, top_n=3)
    c.collect(1000.0)
    # in the next 10 s: node-red uses 2 s of CPU; pid 733 exits and a new process gets its pid and uses
    # 1 s in all; pid 901's stat vanishes between the listing and the read
    stat = (root / "512" / "stat").read_text().replace(" 880000 45000 ", " 880150 45050 ")
    write(root / "512" / "stat", stat)
    stat = (root / "733" / "stat").read_text()
    write(root / "733" / "stat", stat.replace(" 5000 100 ", " 60 40 ").replace(" 240000000 ", " 240100000 "))
    (root / "901" / "stat").unlink()
    r = Reading(c.collect(1010.0))
    assert top(r, "edgewatch_process_cpu_percent") == [
        ("1", "512", "node-red", "pi", 20.0),
        ("2", "733", "a) b", "999", 10.0),
    ]
    assert r("node_processes_pids") == 8


def test_a_process_gone_before_its_status_is_read_is_not_ranked(tmp_path: Path) -> None:
    root = snapshot_copy(PI / "proc", tmp_path / "proc")
    (root / "512" / "status").unlink()
    r = Reading(collector(root, top_n=2).collect(0.0))
    assert [row[1] for row in top(r, "edgewatch_process_resident_bytes")] == ["901", "1"]


def test_top_zero_sends_counts_only() -> None:
    r = Reading(collector(PI / "proc", top_n=0).collect(0.0))
    assert r.names() == {"node_processes_state", "node_processes_threads", "node_processes_pids"}


@pytest.mark.parametrize("n", [-1, 21])
def test_top_is_bounded(n: int) -> None:
    with pytest.raises(ValueError, match="top_n"):
        ProcessCollector(PI / "proc", top_n=n)


def test_user_names_are_looked_up_once() -> None:
    asked: list[int] = []

    def lookup(uid: int) -> str:
        asked.append(uid)
        if uid == 0:
            return "root"
        raise KeyError(uid)

    names = UserNames(lookup)
    assert [names(0), names(0), names(4242), names(4242)] == ["root", "root", "4242", "4242"]
    assert asked == [0, 4242]


@given(st.text(alphabet=st.characters(blacklist_categories=["Cs"]), max_size=64), st.sampled_from("RSDZTI"))
def test_any_process_name_is_read_back(name: str, state: str) -> None:
    data = f"42 ({name}) {state} 1 42 42 0 -1 0 0 0 0 0 7 5 0 0 20 0 3 0 99 0 11 0 0\n".encode()
    assert parse_pid_stat("42", data) == ("42", name, state, 12, 3, 99, 11)


@pytest.mark.parametrize(
    "data", [b"", b"42 (x", b"42 (x) S 1 2", b"42 (x) S 1 42 42 0 -1 0 0 0 0 0 7 5 0 0 20 0 three 0 99 0 11"]
)
def test_garbage_stat_is_skipped(data: bytes) -> None:
    assert parse_pid_stat("42", data) is None
