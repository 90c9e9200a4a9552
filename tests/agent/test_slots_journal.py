"""The install journal: durable appends, torn tails, replay of the last attempt, bounded size."""

from __future__ import annotations

import pytest

from edgefleet.agent.install.journal import Journal, last_attempt


def begin(attempt: str, artifact: str = "a1") -> dict:
    return {"attempt": attempt, "event": "begin", "artifact_id": artifact, "version": f"v-{artifact}"}


def done(attempt: str, step: str) -> dict:
    return {"attempt": attempt, "event": "done", "step": step}


def test_last_attempt_collects_steps_and_end():
    records = [begin("1"), done("1", "download"), {"attempt": "1", "event": "committed"}, begin("2", "a2")]
    records += [done("2", "download"), done("2", "verify"), done("1", "stage")]  # a stray record of attempt 1
    att = last_attempt(records)
    assert (att.attempt, att.artifact_id, att.steps_done, att.finished) == (
        "2",
        "a2",
        ["download", "verify"],
        False,
    )


@pytest.mark.parametrize("end", ["committed", "failed", "rolled_back", "interrupted"])
def test_terminal_events_finish_an_attempt(end):
    att = last_attempt([begin("1"), {"attempt": "1", "event": end, "code": "x"}])
    assert att.finished
    assert att.terminal == end


def test_no_records_no_attempt():
    assert last_attempt([]) is None


def test_torn_tail_is_ignored_and_cut_before_the_next_append(tmp_path):
    journal = Journal(tmp_path / "j.jsonl")
    journal.append(begin("1"))
    with journal.path.open("ab") as fh:
        fh.write(b'{"attempt": "1", "event": "do')  # a power cut mid-line
    assert journal.read() == [begin("1")]
    journal.append(done("1", "download"))
    assert journal.read() == [begin("1"), done("1", "download")]


def test_crash_between_the_bytes_of_an_append_loses_only_that_record(tmp_path):
    class Died(Exception):
        pass

    def crash(point: str) -> None:
        if point == "write:journal":
            raise Died

    journal = Journal(tmp_path / "j.jsonl")
    journal.append(begin("1"))
    with pytest.raises(Died):
        Journal(journal.path, crash=crash).append(done("1", "download"))
    assert journal.read() == [begin("1")]
    journal.append(done("1", "verify"))
    assert last_attempt(journal.read()).steps_done == ["verify"]


def test_journal_stays_bounded_and_keeps_the_latest_attempt(tmp_path):
    journal = Journal(tmp_path / "j.jsonl", max_bytes=4096)
    for i in range(200):
        journal.append(begin(str(i)))
        journal.append(done(str(i), "download"))
    assert journal.path.stat().st_size <= 4096
    att = last_attempt(journal.read())
    assert (att.attempt, att.steps_done) == ("199", ["download"])
