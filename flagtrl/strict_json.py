"""Strict JSON for every file flagtrl writes: no `Infinity` or `NaN` tokens.

JSON (RFC 8259) has no non-finite numbers, yet Python's `json` writes `Infinity` and `NaN` by default, and strict
parsers (JavaScript's `JSON.parse`, jq, Go, serde) reject the file. Some metrics are infinite or undefined in documented
cases (`flagtrl.metrics`: a Sortino ratio with no downside is `inf`, the Sharpe ratio of a single return is `nan`), so
every writer goes through `dumps` / `write_json`, with one encoding:

- a non-finite float is written as the *string* `"inf"`, `"-inf"` or `"nan"` (Python's `str(float)`, which `float()`
  reads back). A string rather than `null` keeps the sign of an infinity, which ranks a run (`-inf` Sharpe: a constant
  loss), and says which value it was;
- anything else that JSON cannot hold raises (`allow_nan=False`), so a new writer cannot bring `Infinity` back.

Readers that need the numbers back (the benchmark resuming from its run files) call `decode_non_finite` on the parts
they know to be numeric.
"""

from __future__ import annotations

import json
import math
from pathlib import Path
from typing import Any

import numpy as np


NON_FINITE_STRINGS = {"inf": math.inf, "-inf": -math.inf, "nan": math.nan}


def encode_non_finite(value: Any) -> Any:
    """Returns `value` with every non-finite float (nested in dicts, lists, tuples) replaced by its string, and NumPy
    scalars and arrays turned into plain Python values."""
    if isinstance(value, np.ndarray):
        value = value.tolist()
    elif isinstance(value, np.generic):
        value = value.item()
    if isinstance(value, float):
        return value if math.isfinite(value) else str(value)
    if isinstance(value, dict):
        return {key: encode_non_finite(item) for key, item in value.items()}
    if isinstance(value, (list, tuple)):
        return [encode_non_finite(item) for item in value]
    return value


def decode_non_finite(value: Any) -> Any:
    """The inverse of `encode_non_finite` for numeric data: the strings `"inf"`, `"-inf"` and `"nan"` (nested in dicts
    and lists) become floats. Apply it only to fields known to be numbers; other strings are left alone."""
    if isinstance(value, str):
        return NON_FINITE_STRINGS.get(value, value)
    if isinstance(value, dict):
        return {key: decode_non_finite(item) for key, item in value.items()}
    if isinstance(value, list):
        return [decode_non_finite(item) for item in value]
    return value


def dumps(value: Any, **kwargs) -> str:
    """`json.dumps` of `encode_non_finite(value)` with `allow_nan=False`; other keyword arguments pass through."""
    return json.dumps(encode_non_finite(value), allow_nan=False, **kwargs)


def write_json(path: str | Path, value: Any, **kwargs) -> None:
    """Writes `dumps(value, **kwargs)` to `path`, creating its folder."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(dumps(value, **kwargs))
