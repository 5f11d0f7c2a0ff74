"""The rediscovery benchmark's goals from a hand-made summary (pure; no database)."""

from __future__ import annotations

import math

from flows.pipelines.rediscovery_report import SELECTED_JUDGED, format_goals, goals


def _row(name: str, red: float, daf: float) -> dict:
    return {"list": name, "k": 100, "red_ge4": (red, 0.0), "daf": (daf, 0.0)}


def test_goals_by_hand() -> None:
    summary = [
        _row("screening/oracle", 5.0, 25.0),
        _row(SELECTED_JUDGED, 10.0, 51.0),
        _row("pool-AL/acquired", 3.0, 14.0),
        _row("continuous-AL/acquired", 10.0, 48.0),
        _row("random-pool-labels/acquired", 1.0, 5.0),
        _row("random-pool-labels/screen", 2.5, 12.0),
        _row("random-MP-labels/screen", 5.0, 22.0),
    ]
    g = goals({"summary": summary})
    assert g["plain_screening_daf"] == 25.0 and not g["plain_screening_daf_goal_met"]
    assert g["judged_screening_daf"] == 51.0 and g["judged_screening_daf_goal_met"]
    assert g["best_al_list"] == "continuous-AL/acquired"
    assert math.isclose(g["best_al_share_of_plain_screening"], 2.0) and g["share_goal_met"]
    assert g["best_al_vs_random_pool_labels"] == 4.0 and g["vs_random_pool_labels_goal_met"]
    assert g["best_al_vs_random_MP_labels"] == 2.0 and g["vs_random_MP_labels_goal_met"]
    assert "screening by the judges" in format_goals(g)
    # a run without the judged route reports no judged goal
    g = goals({"summary": [r for r in summary if r["list"] != SELECTED_JUDGED]})
    assert "judged_screening_daf" not in g and "judges" not in format_goals(g)
