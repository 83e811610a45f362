"""bench/run.py's choice of cells: ``--only`` by id or prefix, and the connection counts each scenario runs at."""

from __future__ import annotations

import run


def _scenario(ident: str) -> run.Scenario:
    return next(scenario for scenario in run.SCENARIOS if scenario.id == ident)


def test_only_selects_by_id_or_prefix_and_nothing_selects_everything() -> None:
    assert run.selected(None, "S7")
    assert run.selected(["B-"], "B-S3") and not run.selected(["B-"], "S3")
    assert run.selected(["U1"], "U1-S2") and run.selected(["U1"], "U1")
    assert run.selected(["S4c"], "S4c-hit") and not run.selected(["S4c"], "S4")


def test_each_scenario_runs_at_its_connection_counts() -> None:
    every = [16, run.MAIN_CONNECTIONS, 256]
    assert run.cell_connections(_scenario("S3"), every) == every
    assert run.cell_connections(_scenario("B-S3"), every) == [run.MAIN_CONNECTIONS]  # mode B: main count only
    assert run.cell_connections(_scenario("U1-S2"), [run.MAIN_CONNECTIONS]) == [run.U1_CAPACITY_CONNECTIONS]
    assert run.cell_connections(_scenario("A0"), [16]) == [16]  # no main count asked: the ones asked


def test_mode_b_compares_with_mode_b_and_runs_unpinned() -> None:
    for ident in ("B-S1", "B-S2", "B-S3", "B-S4"):
        scenario = _scenario(ident)
        assert (scenario.mode, scenario.baseline, scenario.upstream) == ("B", "B-", "u0b")
    assert not _scenario("U1-S2").compare
