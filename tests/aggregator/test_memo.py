"""The read path's memo: bounded by cost, least recently used out first, shared by threads."""

from __future__ import annotations

import threading

import pytest

from edgewatch.aggregator.memo import Memo


def test_a_value_is_made_once_and_the_least_recently_used_go_first() -> None:
    memo: Memo[str, str] = Memo(budget=80)
    made: list[str] = []

    def make(key: str) -> tuple[str, int]:
        made.append(key)
        return key.upper(), 10

    for key in "abcdefgh":
        assert memo.get(key, lambda key=key: make(key)) == key.upper()
    assert memo.get("a", lambda: make("a")) == "A"  # kept, and now the most recently used
    assert memo.get("i", lambda: make("i")) == "I"  # over the budget: "b" goes, not "a"
    assert memo.get("a", lambda: make("a")) == "A"
    assert memo.get("b", lambda: make("b")) == "B"
    assert made == [*"abcdefgh", "i", "b"]
    assert memo.cost <= 80
    assert len(memo) == 8


def test_a_value_of_over_an_eighth_of_the_budget_is_not_kept_nor_a_failure() -> None:
    memo: Memo[int, int] = Memo(budget=800)
    assert memo.get(1, lambda: (1, 101)) == 1
    assert len(memo) == 0

    def fail() -> tuple[int, int]:
        raise ValueError("corrupt")

    with pytest.raises(ValueError, match="corrupt"):
        memo.get(2, fail)
    assert memo.get(2, lambda: (2, 100)) == 2
    assert len(memo) == 1
    assert memo.cost == 100


def test_threads_share_it_and_it_stays_within_its_budget() -> None:
    memo: Memo[int, int] = Memo(budget=1000)
    wrong: list[tuple[int, int]] = []

    def work(seed: int) -> None:
        for i in range(3000):
            key = (i * 7 + seed) % 150
            value = memo.get(key, lambda key=key: (key * key, 1 + key % 20))
            if value != key * key:
                wrong.append((key, value))

    threads = [threading.Thread(target=work, args=(seed,)) for seed in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert wrong == []
    assert 0 < memo.cost <= 1000
