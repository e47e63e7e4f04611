"""benchmarks/peers.py on tiny sizes: every peer module runs every workload, and the driver
runs its cells in subprocesses and renders its table, so the benchmark cannot rot unseen.

A peer whose framework is not installed (the ``peers`` extra) is skipped.
"""

from __future__ import annotations

import importlib
import importlib.util
import sys
from pathlib import Path
from types import ModuleType

import pytest

from nodes.llm.testing import LLMServer

BENCHMARKS = Path(__file__).resolve().parents[2] / "benchmarks"
if str(BENCHMARKS) not in sys.path:
    sys.path.append(str(BENCHMARKS))

from peers import PEERS  # noqa: E402
from peers.work import spin  # noqa: E402


def load_peer(name: str) -> ModuleType:
    if name != "asyncio":
        pytest.importorskip(name)
    return importlib.import_module(f"peers.with_{name}")


@pytest.mark.parametrize("name", PEERS)
def test_peer_runs_every_workload_and_keeps_its_limits(name: str, llm_server: LLMServer) -> None:
    peer = load_peer(name)
    with peer.session(2):
        assert peer.noop_map(50, 10) == 50
        assert 1 <= peer.sleep_map(12, 4, 0.01) <= 4
        assert peer.cpu_map(3, 2_000, 2) == [spin(2_000)] * 3
        assert peer.llm_calls(llm_server.base_url, 6, 3, 6_000) == 0
    stats = llm_server.stats
    assert stats.status_counts == {200: 6}
    assert stats.peak_in_flight <= 3


@pytest.mark.parametrize("name", PEERS)
def test_peer_notes_are_footnotes_for_known_workloads(name: str) -> None:
    driver = load_driver()
    assert set(driver.peer_notes(name)) <= set(driver.WORKLOADS)


def load_driver() -> ModuleType:
    """benchmarks/peers.py itself (its name is taken by the peers package)."""
    spec = importlib.util.spec_from_file_location("peers_driver", BENCHMARKS / "peers.py")
    assert spec is not None and spec.loader is not None
    driver = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(driver)
    return driver


def test_driver_runs_cells_in_subprocesses_and_renders_the_table() -> None:
    driver = load_driver()
    results = {
        "cores": 2,
        "sizes": {"noop": [20, 40], "sleep": 10, "cpu": 2, "rss": 100, "llm": 4},
        "notes": {"asyncio": driver.peer_notes("asyncio")},
        "workloads": {},
    }
    w = results["workloads"]
    w["noop"] = driver.run_noop(["asyncio"], [20, 40], 2)
    w["sleep"] = driver.run_sleep(["asyncio"], 10, 2)
    w["cpu"] = driver.run_cpu(["asyncio"], 2, 2)
    w["rss"] = driver.run_rss(["asyncio"], 100, 2, w["noop"])
    w["llm"] = driver.run_llm(["asyncio"], 4, 2)
    assert w["noop"]["asyncio"]["items"] == 40
    assert w["sleep"]["asyncio"]["peak_in_flight"] <= driver.SLEEP_LIMIT
    assert w["rss"]["asyncio"]["peak_rss_mb"] > 0
    assert w["llm"]["asyncio"]["answered"] == 4
    table = driver.table(results, ["asyncio", "ray"])
    assert "| no-op map, 40 items: µs/item |" in table
    assert "not installed" in table  # ray has no figures in these results
    assert "[1] no rate limiter in the standard library" in table


def test_a_cell_over_its_cap_is_killed_and_shown_as_over() -> None:
    driver = load_driver()
    r = driver.cell("asyncio", "sleep", {"n": 50, "limit": 1, "delay_s": 0.1, "cores": 2}, 0.2)
    assert r == {"status": "timeout", "phase": "work", "cap_s": 0.2}
    assert driver.fmt(r, str) == "> 0 s"
