"""The benchmark scripts are not run by the suite (they take minutes and report ratios, not pass/fail), but each
must at least import: a broken import only shows when `make bench` is next run, often much later."""

from __future__ import annotations

import importlib
import pkgutil

import pytest

import benchmarks

MODULES = sorted(info.name for info in pkgutil.iter_modules(benchmarks.__path__) if info.name != "__main__")


def test_every_item_of_make_bench_is_a_script() -> None:
    from benchmarks.__main__ import ITEMS

    assert set(ITEMS) <= set(MODULES)


@pytest.mark.parametrize("name", MODULES)
def test_benchmark_module_imports(name: str) -> None:
    importlib.import_module(f"benchmarks.{name}")
