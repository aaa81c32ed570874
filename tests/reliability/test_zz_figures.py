"""The figures of the whole battery (runs last): inputs tried, clean refusals, data lost, tracebacks, wrong exits."""

import pytest

from tests.reliability.results import EXPECTED, RESULTS


def test_figures(capsys):
    missing = EXPECTED - set(RESULTS)
    if missing:
        pytest.skip(f"run the whole battery (tests/reliability) to get its figures; {len(missing)} rows did not run")
    rows = RESULTS.values()
    figures = {
        "inputs tried": len(RESULTS),
        "clean refusals": sum(r["refused"] and not r["traceback"] and r["fragment"] for r in rows),
        "accepted as they should be": sum(r["rc"] == 0 == r["expected"] for r in rows),
        "data lost or changed by a refused command": sum(r["store_changed"] for r in rows),
        "tracebacks": sum(r["traceback"] for r in rows),
        "wrong exit codes": sum(r["rc"] != r["expected"] for r in rows),
        "messages without the expected words": sum(not r["fragment"] for r in rows),
    }
    with capsys.disabled():
        print("\nreliability battery: " + "; ".join(f"{k} {v}" for k, v in figures.items()))
    assert figures["tracebacks"] == figures["wrong exit codes"] == figures["messages without the expected words"] == 0
    assert figures["data lost or changed by a refused command"] == 0
