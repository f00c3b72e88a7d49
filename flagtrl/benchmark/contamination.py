"""Contamination guard: is the evaluation window after the LLM's knowledge cutoff?

An LLM whose training data cover the evaluation window may have read how the market went (StockBench's
"contamination-free" requirement: the test window lies after the model's training-data cutoff). The cutoff comes from
the agent's config (`knowledge_cutoff`) or, when absent, from the model card if it states a "knowledge cutoff" or a
"training data cutoff". A window that starts on or before the cutoff is *contaminated*: the benchmark warns, and
refuses with `--strict`. An unknown cutoff is reported as such (and refused with `--strict`, since it cannot be checked).
Rule-based agents have no pretrained knowledge and are always clean.

A cutoff given as a month (`2024-10`) or a year (`2024`) means its last day: the guard errs on the side of warning.
"""

from __future__ import annotations

import calendar
import json
import logging
import re
from dataclasses import asdict, dataclass
from pathlib import Path

from .config import AgentSpec


logger = logging.getLogger(__name__)

CLEAN, CONTAMINATED, UNKNOWN, NOT_APPLICABLE = "after cutoff", "BEFORE cutoff", "unknown cutoff", "n/a (no LLM)"

_MONTHS = {name.lower(): i for i, name in enumerate(calendar.month_name) if name}
_MONTHS.update({name.lower(): i for i, name in enumerate(calendar.month_abbr) if name})
_CUTOFF_PHRASE = re.compile(
    r"(knowledge|training[- ]data|data)[ -]cut[- ]?off(?: date)?\W{0,10}(?:(?:is|was|of|in)\s+)?", re.I
)
_ISO = re.compile(r"(\d{4})(?:-(\d{1,2}))?(?:-(\d{1,2}))?")
_MONTH_YEAR = re.compile(r"([A-Za-z]{3,9})\.?,? (\d{4})")


class ContaminationError(ValueError):
    """Raised in strict mode when an LLM agent would be evaluated on a window its training data may cover."""


@dataclass
class ContaminationCheck:
    """The verdict for one agent on one window.

    Args:
        agent (`str`), window_start (`str`), window_end (`str`): What was checked.
        cutoff (`str` or `None`): The knowledge cutoff as an ISO date (last day of a month/year given coarsely).
        source (`str`): Where the cutoff came from (`config`, `model card <path>`, or why it is unknown).
        status (`str`): `after cutoff`, `BEFORE cutoff`, `unknown cutoff` or `n/a (no LLM)`.
    """

    agent: str
    window_start: str
    window_end: str
    cutoff: str | None
    source: str
    status: str

    def to_dict(self) -> dict:
        return asdict(self)


def normalize_cutoff(value) -> str:
    """`2024`, `2024-10`, `2024-10-15` (or a `datetime.date`) as the ISO date of the cutoff's last day."""
    text = str(value).strip()
    match = _ISO.fullmatch(text)
    if not match:
        raise ValueError(f"Knowledge cutoff {value!r} is not a date: use YYYY, YYYY-MM or YYYY-MM-DD.")
    year, month, day = match.groups()
    year, month = int(year), int(month or 12)
    if not 1 <= month <= 12:
        raise ValueError(f"Knowledge cutoff {value!r} has no month {month}.")
    day = int(day) if day else calendar.monthrange(year, month)[1]
    return f"{year:04d}-{month:02d}-{day:02d}"


def parse_cutoff(text: str) -> str | None:
    """The cutoff a model card states after "knowledge cutoff" / "training data cutoff", or `None`.

    Reads `2024-06`, `2024-06-30`, `June 2024`, `Jun. 2024` and a bare year, just after the phrase.
    """
    for phrase in _CUTOFF_PHRASE.finditer(text):
        tail = text[phrase.end() : phrase.end() + 40]
        month_year = _MONTH_YEAR.match(tail)
        if month_year and month_year.group(1).lower().rstrip(".") in _MONTHS:
            return normalize_cutoff(f"{month_year.group(2)}-{_MONTHS[month_year.group(1).lower()]}")
        iso = _ISO.match(tail)
        if iso and 1900 < int(iso.group(1)) < 2200:
            return normalize_cutoff(iso.group(0))
    return None


def _model_card(model_name_or_path: str) -> tuple[str | None, str]:
    """The model card's text (a local folder's README.md, or the Hub's, read from the cache when offline)."""
    folder = Path(model_name_or_path)
    if folder.is_dir():
        card = folder / "README.md"
        return (card.read_text(errors="replace"), str(card)) if card.exists() else (None, f"no README.md in {folder}")
    try:
        from huggingface_hub import constants, hf_hub_download, try_to_load_from_cache

        cached = try_to_load_from_cache(model_name_or_path, "README.md")
        if not isinstance(cached, str) and not constants.HF_HUB_OFFLINE:
            cached = hf_hub_download(model_name_or_path, "README.md")
        if isinstance(cached, str):
            return Path(cached).read_text(errors="replace"), f"model card of {model_name_or_path}"
    except Exception as error:  # offline, unknown repo: the cutoff stays unknown
        return None, f"model card of {model_name_or_path} unavailable ({type(error).__name__})"
    return None, f"model card of {model_name_or_path} not cached (offline)"


def _base_model(spec: AgentSpec) -> str | None:
    if spec.type == "zero_shot":
        return spec.model
    config = Path(spec.adapter) / "adapter_config.json"
    if config.exists():
        return json.loads(config.read_text()).get("base_model_name_or_path")
    return None


def resolve_cutoff(spec: AgentSpec) -> tuple[str | None, str]:
    """(cutoff as an ISO date or `None`, its source) of an LLM agent: the config first, then the model card."""
    if spec.knowledge_cutoff:
        return normalize_cutoff(spec.knowledge_cutoff), "config"
    model = _base_model(spec)
    if model is None:
        return None, "no knowledge_cutoff in the config, base model unknown"
    text, source = _model_card(model)
    cutoff = parse_cutoff(text) if text else None
    if cutoff is None:
        return None, f"no knowledge_cutoff in the config; {source if text is None else source + ' states none'}"
    return cutoff, source


def check_window(
    spec: AgentSpec, start: str, end: str, cutoff: tuple[str | None, str] | None = None
) -> ContaminationCheck:
    """The verdict for `spec` on the window `[start, end]` (`cutoff` from `resolve_cutoff`, computed when `None`)."""
    if not spec.is_llm:
        return ContaminationCheck(spec.name, start, end, None, "rule-based agent", NOT_APPLICABLE)
    date, source = cutoff if cutoff is not None else resolve_cutoff(spec)
    if date is None:
        status = UNKNOWN
    else:
        status = CLEAN if start > date else CONTAMINATED
    return ContaminationCheck(spec.name, start, end, date, source, status)


def enforce(checks: list[ContaminationCheck], strict: bool) -> None:
    """Warn about every contaminated or unchecked window; in strict mode refuse them all at once, before any run."""
    flagged = [c for c in checks if c.status in (CONTAMINATED, UNKNOWN)]
    for check in flagged:
        if check.status == CONTAMINATED:
            message = (
                f"Contamination: agent {check.agent!r} is evaluated on {check.window_start} → {check.window_end}, "
                f"which starts before its knowledge cutoff {check.cutoff} ({check.source}): its training data may "
                "cover the test period."
            )
        else:
            message = (
                f"Contamination unchecked: agent {check.agent!r} has no known knowledge cutoff ({check.source}); "
                "set `knowledge_cutoff` in its config."
            )
        if not strict:
            logger.warning(message)
    if strict and flagged:
        lines = "\n".join(
            f"  {c.agent}: {c.window_start} → {c.window_end}, cutoff {c.cutoff or 'unknown'} ({c.source})"
            for c in flagged
        )
        raise ContaminationError(
            f"--strict: {len(flagged)} window(s) start before the agent's knowledge cutoff or cannot be checked:\n"
            f"{lines}\nEvaluate on later windows, or drop --strict to run with a warning."
        )
