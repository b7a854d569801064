"""Resources built from environment variables: one rule for reading and checking them.

Each resource names the variable behind each of its fields; pydantic parses the strings into
the fields' types (the same validation the Launchpad's run config gets). An unset or empty
variable keeps the field's default, and a bad value is refused with the variable and the value
named, instead of a bare ``invalid literal for int()`` later.
"""

from __future__ import annotations

import os
from collections.abc import Mapping
from typing import TypeVar

import pydantic

Model = TypeVar("Model", bound=pydantic.BaseModel)


def from_environment(cls: type[Model], variables: Mapping[str, str]) -> Model:
    """``cls`` with each field in ``variables`` (field -> variable) read from the environment.

    Args:
        cls: A pydantic model (a Dagster ``ConfigurableResource`` is one).
        variables: The variable behind each field that the environment may set.

    Raises:
        ValueError: A value that breaks its field's type or rule, naming variable and value.
    """
    given = {
        field: os.environ[var]
        for field, var in variables.items()
        if os.environ.get(var, "").strip()
    }
    try:
        return cls.model_validate(given)
    except pydantic.ValidationError as error:
        problems = []
        for problem in error.errors():
            field = str(problem["loc"][0]) if problem["loc"] else ""
            name = variables.get(field, field)
            if field not in given:  # required, and the environment did not give it
                problems.append(f"{name} is not set")
            else:
                problems.append(f"{name}={given.get(field, problem['input'])!r}: {problem['msg']}")
        raise ValueError(f"{cls.__name__} from the environment: {'; '.join(problems)}") from None
