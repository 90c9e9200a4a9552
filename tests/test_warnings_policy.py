"""The pytest configuration turns warnings from edgefleet's own code into failures (pyproject filterwarnings).

A warning attributed to an edgefleet module (raised there, or raised by a library on behalf of the edgefleet
code that called it) is a bug or a deprecation we must act on; a warning raised inside a third-party library
is left to the list of deliberate exceptions in pyproject.toml.
"""

from __future__ import annotations

import warnings

import pytest


def _warn_from(module: str, category: type[Warning]) -> None:
    warnings.warn_explicit("a warning", category, filename=f"{module}.py", lineno=1, module=module)


@pytest.mark.parametrize("module", ["edgefleet", "edgefleet.agent.sync", "tests.agent.test_sync"])
@pytest.mark.parametrize("category", [DeprecationWarning, UserWarning, RuntimeWarning, ResourceWarning])
def test_a_warning_from_our_code_fails(module: str, category: type[Warning]) -> None:
    with pytest.raises(category):
        _warn_from(module, category)


@pytest.mark.parametrize("module", ["sklearn.linear_model", "edgefleetish", "numpy"])
def test_a_warning_inside_a_third_party_library_stays_a_warning(module: str) -> None:
    # catch_warnings keeps the configured filters (pytest.warns would reset them to "always")
    with warnings.catch_warnings(record=True) as caught:
        _warn_from(module, UserWarning)
    assert [type(w.message) for w in caught] == [UserWarning]
