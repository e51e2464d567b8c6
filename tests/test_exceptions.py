"""The error helpers of lrsearch/exceptions.py: the "did you mean" hint and the exit-code rule."""

from __future__ import annotations

import pytest

from lrsearch.exceptions import (
    ConfigError,
    Interrupted,
    StorageError,
    StorageURLError,
    did_you_mean,
    exit_code_for,
)

CHOICES = ["cosine", "constant", "plateau"]


def test_a_close_name_is_suggested_with_repr_quoting_by_default() -> None:
    assert did_you_mean("cosin", CHOICES) == " Did you mean 'cosine'?"


def test_a_far_name_gives_no_hint() -> None:
    assert did_you_mean("zzzz", CHOICES) == ""
    assert did_you_mean("cosine", []) == ""


def test_only_the_closest_choice_is_named() -> None:
    assert did_you_mean("consta", CHOICES) == " Did you mean 'constant'?"


@pytest.mark.parametrize(
    ("quote", "expected"),
    [
        ("`", " Did you mean `cosine`?"),
        ("'", " Did you mean 'cosine'?"),
        (repr, " Did you mean 'cosine'?"),
        (lambda c: f"'{c}:x' for y", " Did you mean 'cosine:x' for y?"),
    ],
    ids=["backticks", "single-quotes", "repr", "callable"],
)
def test_quoting_styles(quote: str, expected: str) -> None:
    assert did_you_mean("cosin", CHOICES, quote=quote) == expected


def test_literal_quotes_and_repr_differ_for_a_name_with_a_quote() -> None:
    choices = ["it's"]
    assert did_you_mean("its", choices, quote="'") == " Did you mean 'it's'?"
    assert did_you_mean("its", choices) == ' Did you mean "it\'s"?'


def test_any_iterable_of_names_works() -> None:
    families = {"cosine": 1, "plateau": 2}
    assert did_you_mean("platau", families) == " Did you mean 'plateau'?"
    assert did_you_mean("platau", (name for name in families)) == " Did you mean 'plateau'?"


def test_a_quote_string_must_be_one_character() -> None:
    assert did_you_mean("cosin", CHOICES, quote='"') == ' Did you mean "cosine"?'
    with pytest.raises(ValueError, match="quote"):
        did_you_mean("cosin", CHOICES, quote="repr")


@pytest.mark.parametrize(
    ("exc", "code"),
    [
        (ConfigError("x"), 2),
        (StorageURLError("x"), 2),
        (StorageError("x"), 1),
        (Interrupted("x"), 130),
        (KeyboardInterrupt(), 130),
        (RuntimeError("x"), 1),
    ],
    ids=lambda v: type(v).__name__ if isinstance(v, BaseException) else str(v),
)
def test_exit_codes(exc: BaseException, code: int) -> None:
    assert exit_code_for(exc) == code
