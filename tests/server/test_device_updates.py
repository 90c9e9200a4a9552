"""What a device's report says about slots behind their desired artifact, read without judging it again."""

from __future__ import annotations

from edgefleet.server.services.device_updates import slots_behind


def test_only_slots_the_agent_says_are_behind_are_listed_sorted_by_slot() -> None:
    report = {
        "status": "updating",
        "slots": {
            "fallback": {"active": "a1", "desired": "a1", "state": "committed"},
            "default": {
                "active": "a1",
                "desired": "a2",
                "state": "failed:download_failed",
                "behind": "failed:download_failed",
                "retrying": True,
            },
            "default.shadow": {"active": None, "desired": "a3", "behind": "refused:rolled_back"},
        },
    }
    assert slots_behind(report) == [
        {
            "slot": "default",
            "desired": "a2",
            "active": "a1",
            "why": "failed:download_failed",
            "retrying": True,
        },
        {
            "slot": "default.shadow",
            "desired": "a3",
            "active": None,
            "why": "refused:rolled_back",
            "retrying": False,
        },
    ]


def test_no_report_an_old_agents_report_and_an_up_to_date_one_list_nothing() -> None:
    assert slots_behind(None) == []
    assert slots_behind({"slots": {"default": {"active": "a1", "state": "idle"}}}) == []
    assert slots_behind({"slots": {"default": {"active": "a1", "behind": None, "retrying": False}}}) == []
    assert slots_behind({"slots": {"default": "not a slot"}}) == []
