"""What each battery row did, collected across the battery's modules for test_zz_figures."""

RESULTS: dict[str, dict] = {}
#: Rows the battery holds in all (set by each module at import), so the figures know when all ran.
EXPECTED: set[str] = set()
