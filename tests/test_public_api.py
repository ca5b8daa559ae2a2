"""The public API: what `failover` exports, and that every package's exports are real."""

from __future__ import annotations

import importlib
import pkgutil
from importlib import metadata

import failover


def test_every_exported_name_is_importable_and_sorted() -> None:
    """`failover.__all__` is sorted, and each name in it is there."""
    assert failover.__all__ == sorted(failover.__all__)
    missing = [name for name in failover.__all__ if not hasattr(failover, name)]
    assert missing == []


def test_every_public_name_of_the_top_is_exported() -> None:
    """Nothing public lies at the top that `__all__` does not name (submodules aside)."""
    submodules = {info.name for info in pkgutil.iter_modules(failover.__path__)}
    public = {name for name in vars(failover) if not name.startswith("_")}
    assert public - set(failover.__all__) - submodules == set()


def test_every_package_exports_what_it_says() -> None:
    """Each module's `__all__` names only what the module holds (ruff's RUF022 keeps it sorted)."""
    checked = 0
    for info in pkgutil.walk_packages(failover.__path__, "failover."):
        module = importlib.import_module(info.name)
        exported = getattr(module, "__all__", None)
        if exported is None:
            continue
        assert [name for name in exported if not hasattr(module, name)] == [], info.name
        checked += 1
    assert checked > 50


def test_the_version_is_the_installed_one() -> None:
    """`failover.__version__` is the version the package was installed with."""
    assert failover.__version__ == metadata.version("failover")
