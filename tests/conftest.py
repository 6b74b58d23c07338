"""Suite-wide pytest settings: markers and failure diagnostics.

The default per-test timeout (pytest-timeout) is `timeout` in pyproject.toml; integration
tests set their own with @pytest.mark.timeout."""

from __future__ import annotations

from pathlib import Path

import pytest

INTEGRATION_DIR = Path(__file__).parent / "integration"


def pytest_configure(config: pytest.Config) -> None:
    config.addinivalue_line(
        "markers", "integration: runs the real server with real clients (ffmpeg, rtmpdump)"
    )


def pytest_collection_modifyitems(config: pytest.Config, items: list[pytest.Item]) -> None:
    for item in items:
        if INTEGRATION_DIR in Path(str(item.fspath)).parents:
            item.add_marker(pytest.mark.integration)


@pytest.hookimpl(hookwrapper=True)
def pytest_runtest_makereport(item: pytest.Item, call: pytest.CallInfo):
    """On failure, append `diagnostics()` of every fixture value that has one (servers,
    process groups, scenario results): the stderr tails of the processes involved."""
    outcome = yield
    report = outcome.get_result()
    if report.when not in ("setup", "call") or not report.failed:
        return
    seen: set[int] = set()
    for name, value in getattr(item, "funcargs", {}).items():
        diagnostics = getattr(value, "diagnostics", None)
        if not callable(diagnostics) or id(value) in seen:
            continue
        seen.add(id(value))
        try:
            text = diagnostics()
        except Exception as exc:  # diagnostics must never hide the real failure
            text = f"(diagnostics failed: {exc!r})"
        if text:
            report.sections.append((f"diagnostics: {name}", text))
