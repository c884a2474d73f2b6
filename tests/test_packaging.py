"""The package ships its type marker (PEP 561): ``src/policylens/py.typed`` exists and setuptools' package data
names it for the ``policylens`` package (``pip wheel .`` then holds ``policylens/py.typed``)."""
from __future__ import annotations

from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[1]


def test_py_typed_is_shipped_as_package_data():
    tomllib = pytest.importorskip("tomllib")
    assert (ROOT / "src" / "policylens" / "py.typed").is_file()
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    assert config["build-system"]["build-backend"] == "setuptools.build_meta"  # the rule below is setuptools'
    assert "py.typed" in config["tool"]["setuptools"]["package-data"]["policylens"]
