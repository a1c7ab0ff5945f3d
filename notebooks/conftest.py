"""The notebooks load the real embedding model: they belong to the slow lane (`make test`
passes --nbmake; `make test-fast` deselects slow items even when --nbmake is given)."""

from __future__ import annotations

import pytest


@pytest.hookimpl(tryfirst=True)  # before -m deselects
def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    for item in items:
        if item.path.suffix == ".ipynb":
            item.add_marker(pytest.mark.slow)
