"""The shared pieces of the typed models."""

from __future__ import annotations

import pytest
from pydantic import ValidationError, model_validator

from fr_agent.core.types import Strict, first_error


class Inner(Strict):
    size: int


class Outer(Strict):
    inner: Inner

    @model_validator(mode="after")
    def _small(self) -> Outer:
        if self.inner.size > 9:
            raise ValueError("too big")
        return self


def error_of(data: dict) -> ValidationError:
    with pytest.raises(ValidationError) as caught:
        Outer.model_validate(data)
    return caught.value


def test_first_error_is_one_line_with_its_location():
    assert first_error(error_of({"inner": {"size": "x"}})).startswith("inner.size: Input should be a valid integer")
    assert first_error(error_of({"inner": {"size": 1}, "extra": 1})) == "extra: Extra inputs are not permitted"


def test_an_error_of_the_whole_object_takes_the_given_name():
    assert first_error(error_of({"inner": {"size": 10}}), "args") == "args: Value error, too big"
    assert first_error(error_of({"inner": {"size": 10}})) == "Value error, too big"
