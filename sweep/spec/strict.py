"""Strict reading of a parsed TOML table: every error names the file and the key."""

from __future__ import annotations

import math
from typing import Any

from sweep.errors import StudyFileError


class Parser:
    def __init__(self, where: str):
        self.where = where

    def fail(self, key: str, message: str):
        raise StudyFileError(f"{self.where}: {key} {message}")

    def only(self, table: dict, prefix: str, allowed: tuple[str, ...]) -> None:
        for key in table:
            if key not in allowed:
                self.fail(f"{prefix}{key}", f"is not a known key; known keys: {', '.join(allowed)}")

    def table(self, raw: dict, name: str) -> dict:
        value = raw.get(name, {})
        if not isinstance(value, dict):
            self.fail(name, f"must be a table [{name}]")
        return value

    def get(
        self,
        table: dict,
        key: str,
        types: tuple[type, ...],
        default: Any = None,
        required: bool = False,
    ) -> Any:
        short = key.rsplit(".", 1)[-1]
        if short not in table:
            if required:
                self.fail(key, "is required")
            return default
        value = table[short]
        if isinstance(value, float) and not math.isfinite(value):
            self.fail(key, f"must be a finite number, not {value}")
        # bool is a subclass of int in Python; TOML true is not a number.
        if not isinstance(value, types) or (isinstance(value, bool) and bool not in types):
            words = {str: "a string", int: "a whole number", float: "a number"}
            words |= {bool: "true or false", list: "a list", dict: "a table"}
            names = " or ".join(words.get(t, t.__name__) for t in types)
            names = names.replace("a number or a whole number", "a number")
            self.fail(key, f"must be {names}, not {type(value).__name__} {value!r}")
        return value

    def choice(self, table: dict, key: str, choices: tuple[str, ...], default: str) -> str:
        value = self.get(table, key, (str,), default)
        if value not in choices:
            self.fail(key, f"is {value!r}; choose one of {', '.join(choices)}")
        return value
