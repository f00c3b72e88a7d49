"""What a benchmark runs: agents x assets x windows x seeds, read from one YAML recipe by TRL's `TrlParser`.

    flagtrl benchmark --config recipes/benchmark/investorbench_paper.yaml [--strict] [--output_dir DIR]

Top-level keys are the fields of `BenchmarkConfig` (unknown keys fail, TrlParser's rule). `agents` and `windows` are
lists of mappings; each agent mapping is checked against `AgentSpec` (unknown keys fail there too) and each window
against `WINDOW_KEYS`.
"""

from __future__ import annotations

import dataclasses
import re
from dataclasses import dataclass, field, fields

from ..actions import resolve_trading_mode


AGENT_TYPES = ("buy_and_hold", "random", "ma_crossover", "momentum", "zero_shot", "flag")
LLM_AGENT_TYPES = ("zero_shot", "flag")
WINDOW_KEYS = ("split", "start", "end", "months", "assets", "asset_class")
# What LLM agents read: the real prompt, or the anonymised one (`flagtrl.anonymisation`); rule agents read prices only.
INPUTS = ("real", "anonymised")
ANONYMISED_SUFFIX = "+anon"
_DATE = re.compile(r"^\d{4}-\d{2}-\d{2}$")


@dataclass
class AgentSpec:
    """One agent of a benchmark (an entry of the recipe's `agents` list).

    Args:
        type (`str`): `buy_and_hold`, `random`, `ma_crossover`, `momentum`, `zero_shot` (any causal LM, prompted) or
            `flag` (a trained FLAG adapter).
        name (`str`, *optional*): Name in reports and run files; defaults to `type`. Letters, digits, `-_.+` only.
        model (`str`, *optional*): `zero_shot`: Hub id or folder of the causal LM.
        adapter (`str`, *optional*): `flag`: adapter folder or Hub repo id (`FlagPolicy.from_pretrained`).
        scoring (`str`, *optional*, defaults to `"generate"`): `zero_shot`: `generate` (sample at `temperature`, parse)
            or `likelihood` (normalised action-token probabilities, one forward pass).
        temperature (`float`, *optional*, defaults to `0.6`): `zero_shot` with `generate`: sampling temperature
            (InvestorBench's 0.6); 0 decodes greedily.
        max_new_tokens (`int`, *optional*, defaults to `16`): `zero_shot` with `generate`: answer length.
        constrained (`bool`, *optional*, defaults to `False`): `zero_shot` with `generate`: restrict the answer to the
            valid JSON answers (structured generation; `False` is InvestorBench's free generation).
        greedy (`bool`, *optional*, defaults to `False`): Take the argmax of the agent's distribution instead of sampling
            it (`flag`, `zero_shot` with `likelihood`).
        knowledge_cutoff (`str`, *optional*): Training-data cutoff of the LLM (`YYYY`, `YYYY-MM` or `YYYY-MM-DD`); when
            absent it is read from the model card if the card states one.
        dtype (`str`, *optional*, defaults to `"auto"`): Weights dtype of LLM agents (`auto`: fp32 on CPUs without
            native bf16).
        prompt (`dict`, *optional*): `PromptConfig` overrides of `zero_shot` agents (a FLAG adapter uses its own).
        params (`dict`, *optional*): Constructor arguments of a rule (`short_window`, `lookback`, ...).
        assets (`list[str]`, *optional*): Only these of the benchmark's assets (e.g. to bound an LLM's CPU time).
        seeds (`list[int]`, *optional*): Replaces the benchmark's seeds for this agent.
        inputs (`list[str]`, *optional*): Replaces the benchmark's `inputs` for this LLM agent (`real`, `anonymised`).
        anonymise (`bool`, *optional*, defaults to `False`): Read anonymised prompts. Set by `inputs`, which gives each
            LLM agent an `anonymised` twin named `<name>+anon`; a FLAG adapter is evaluated with the inputs asked for,
            whatever it was trained with.
    """

    type: str
    name: str | None = None
    model: str | None = None
    adapter: str | None = None
    scoring: str = "generate"
    temperature: float = 0.6
    max_new_tokens: int = 16
    constrained: bool = False
    greedy: bool = False
    knowledge_cutoff: str | None = None
    dtype: str = "auto"
    prompt: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    assets: list[str] | None = None
    seeds: list[int] | None = None
    inputs: list[str] | None = None
    anonymise: bool = False

    def __post_init__(self):
        if self.type not in AGENT_TYPES:
            raise ValueError(f"Unknown agent type {self.type!r}; choose one of {list(AGENT_TYPES)}.")
        self.name = self.name or self.type
        if not re.fullmatch(r"[\w\-.+]+", self.name):
            raise ValueError(f"Agent name {self.name!r} may only hold letters, digits and -_.+ (it names files).")
        if self.type == "zero_shot" and not self.model:
            raise ValueError(f"Agent {self.name!r} (zero_shot) needs `model`: a Hub id or a folder.")
        if self.type == "flag" and not self.adapter:
            raise ValueError(f"Agent {self.name!r} (flag) needs `adapter`: a folder or a Hub repo id.")
        if self.scoring not in ("generate", "likelihood"):
            raise ValueError(f"Agent {self.name!r}: scoring must be generate or likelihood, got {self.scoring!r}.")
        if self.constrained and (self.type != "zero_shot" or self.scoring != "generate"):
            raise ValueError(f"Agent {self.name!r}: `constrained` applies to zero_shot agents with scoring generate.")
        if self.assets is not None:
            self.assets = [a.upper() for a in self.assets]
        if self.inputs is not None:
            check_inputs(self.inputs, f"agent {self.name!r}")

    @classmethod
    def from_dict(cls, data: dict) -> AgentSpec:
        if not isinstance(data, dict):
            raise ValueError(f"Each entry of `agents` must be a mapping, got {data!r}.")
        known = {f.name for f in fields(cls)}
        unknown = sorted(set(data) - known)
        if unknown:
            raise ValueError(
                f"Unknown key(s) {unknown} in agent {data.get('name') or data.get('type')!r}; valid keys: {sorted(known)}."
            )
        return cls(**data)

    @property
    def is_llm(self) -> bool:
        return self.type in LLM_AGENT_TYPES

    @property
    def base_name(self) -> str:
        """The agent's name without the anonymised twin's suffix (the pair the memorisation check compares)."""
        return self.name.removesuffix(ANONYMISED_SUFFIX) if self.anonymise else self.name

    @property
    def deterministic(self) -> bool:
        """Whether every seed gives the same run (then the benchmark runs one seed)."""
        if self.type in ("buy_and_hold", "ma_crossover", "momentum"):
            return True
        if self.type == "zero_shot":
            return self.temperature == 0 if self.scoring == "generate" else self.greedy
        if self.type == "flag":
            return self.greedy
        return False


@dataclass
class BenchmarkConfig:
    """Configuration of `flagtrl benchmark`.

    Parameters:
        dataset (`str`): Folder of a prepared market dataset (`datasets/prepare_*.py`).
        output_dir (`str`): Where the runs, the report, the tables and the plots are written.
        assets (`list[str]`): Tickers to evaluate, e.g. `[MSFT, JNJ]`.
        agents (`list[dict]`): The agents, each a mapping of `AgentSpec` fields (YAML only).
        windows (`list[dict]`): Evaluation windows: `{split: test}` (each asset's window in that split of the dataset),
            `{start: YYYY-MM-DD, end: YYYY-MM-DD}`, or `{start, end, months: 12}` (consecutive non-overlapping windows
            of that many calendar months from `start`, the last one ending by `end`: the rolling benchmark),
            optionally restricted with `assets: [...]` or `asset_class: stock|crypto` (YAML only).
        seeds (`list[int]`): Seeds of stochastic agents; deterministic agents run the first one only.
        inputs (`list[str]`): What the LLM agents read: `real` prompts, `anonymised` ones (no ticker, names, dates or
            price levels, `flagtrl.anonymisation`), or both: then each LLM agent runs twice (`<name>` and
            `<name>+anon`) and the report sets the two side by side, their difference a measured memorisation
            indicator. Rule agents read prices only and run once.
        mode (`str`): Trading mode: `all_in` (all-in buy / liquidate sell, the paper's MDP) or `position`.
        transaction_cost_bps (`float`): Cost of each trade in basis points (StockBench: 1 commission + 2 slippage).
            It lowers the `standard` metrics (the account); the `paper` metrics score positions and ignore it.
        initial_cash (`float`): Starting cash.
        risk_free_rate (`float`): Annual risk-free rate of the `standard` metrics.
        max_days (`int`, *optional*): Cap on the trading days of each window (quick runs).
        strict (`bool`): Refuse to run an LLM agent on a window that starts before its knowledge cutoff (or whose
            cutoff is unknown) instead of warning.
        plots (`bool`): Write the PNG plots.
        per_window (`bool`): Write the per-window tables (median runs, confidence intervals) and plots; turn off for a
            rolling benchmark of hundreds of windows, whose distribution section summarises them.
        confidence (`float`): Coverage of the bootstrap confidence intervals (0.95).
        bootstrap_resamples (`int`): Resamples of each interval (`flagtrl.statistics`).
        composite_rank (`bool`): Add StockBench's composite rank (z-scores of return, drawdown and Sortino) to the
            confidence tables.
        progress (`bool`): Show progress bars.
    """

    dataset: str = field(metadata={"help": "Folder of a prepared market dataset."})
    output_dir: str = field(metadata={"help": "Where runs, report, tables and plots are written."})
    assets: list[str] = field(default_factory=list, metadata={"help": "Tickers to evaluate."})
    agents: list[dict] = field(default_factory=list, metadata={"help": "Agents (YAML only), see AgentSpec."})
    windows: list[dict] = field(
        default_factory=lambda: [{"split": "test"}],
        metadata={"help": "Windows (YAML only): {split: test} or {start, end[, assets | asset_class]}."},
    )
    seeds: list[int] = field(default_factory=lambda: [0, 1, 2], metadata={"help": "Seeds of stochastic agents."})
    mode: str = field(default="all_in", metadata={"help": "Trading mode: all_in or position."})
    transaction_cost_bps: float = field(default=0.0, metadata={"help": "Cost of each trade in basis points."})
    initial_cash: float = field(default=100_000.0, metadata={"help": "Starting cash."})
    risk_free_rate: float = field(default=0.0, metadata={"help": "Annual risk-free rate of the standard metrics."})
    max_days: int | None = field(default=None, metadata={"help": "Cap on the trading days of each window."})
    strict: bool = field(default=False, metadata={"help": "Refuse windows before an LLM's knowledge cutoff."})
    inputs: list[str] = field(
        default_factory=lambda: ["real"], metadata={"help": "LLM agents' inputs: real, anonymised or both."}
    )
    plots: bool = field(default=True, metadata={"help": "Write the PNG plots."})
    per_window: bool = field(default=True, metadata={"help": "Write the per-window tables and plots."})
    confidence: float = field(default=0.95, metadata={"help": "Coverage of the bootstrap confidence intervals."})
    bootstrap_resamples: int = field(default=2000, metadata={"help": "Resamples of each bootstrap interval."})
    composite_rank: bool = field(default=False, metadata={"help": "Add StockBench's composite rank column."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        if not self.assets:
            raise ValueError("The benchmark needs `assets`, e.g. [MSFT, JNJ].")
        self.assets = [a.upper() for a in self.assets]
        if not self.agents:
            raise ValueError("The benchmark needs at least one entry in `agents`.")
        if not self.seeds:
            raise ValueError("The benchmark needs at least one seed.")
        self.mode = resolve_trading_mode(self.mode)  # a deprecated alias resolves, with a warning
        if self.transaction_cost_bps < 0:
            raise ValueError(f"transaction_cost_bps must be >= 0, got {self.transaction_cost_bps}.")
        check_inputs(self.inputs, "the benchmark")
        if not 0 < self.confidence < 1:
            raise ValueError(f"confidence must lie between 0 and 1, got {self.confidence}.")
        if self.bootstrap_resamples < 10:
            raise ValueError(f"bootstrap_resamples must be at least 10, got {self.bootstrap_resamples}.")
        names = [spec.name for spec in self.agent_specs]  # builds (and so checks) every agent
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Agent names must be unique; {duplicates} appear more than once (set `name`).")
        self.windows = [normalize_window(w) for w in self.windows]

    @property
    def agent_specs(self) -> list[AgentSpec]:
        """The `agents` entries as `AgentSpec`s, in their order; an LLM agent once per entry of `inputs` (its
        anonymised twin named `<name>+anon`, `input_variants`)."""
        specs = [a if isinstance(a, AgentSpec) else AgentSpec.from_dict(a) for a in self.agents]
        return [twin for spec in specs for twin in input_variants(spec, self.inputs)]


def check_inputs(inputs: list[str], owner: str) -> None:
    unknown = [i for i in inputs if i not in INPUTS] if isinstance(inputs, list) else [inputs]
    if unknown or not inputs:
        raise ValueError(f"inputs of {owner} must be a non-empty list of {list(INPUTS)}, got {inputs!r}.")


def input_variants(spec: AgentSpec, inputs: list[str]) -> list[AgentSpec]:
    """The runs of an agent per input kind: an LLM agent once per entry of `inputs` (the anonymised one named
    `<name>+anon`), a rule agent once."""
    if not spec.is_llm or spec.anonymise:
        return [spec]
    variants = []
    for kind in dict.fromkeys(spec.inputs or inputs):
        anonymised = kind == "anonymised"
        name = spec.name + ANONYMISED_SUFFIX if anonymised else spec.name
        variants.append(dataclasses.replace(spec, name=name, anonymise=anonymised, inputs=None))
    return variants


def normalize_window(window: dict | str) -> dict:
    """Check one `windows` entry; a bare split name (`test`) stands for `{split: test}`."""
    if isinstance(window, str):
        window = {"split": window}
    if not isinstance(window, dict):
        raise ValueError(f"Each window must be a mapping or a split name, got {window!r}.")
    unknown = sorted(set(window) - set(WINDOW_KEYS))
    if unknown:
        raise ValueError(f"Unknown key(s) {unknown} in window {window}; valid keys: {list(WINDOW_KEYS)}.")
    window = {k: str(v) if k in ("start", "end") else v for k, v in window.items()}  # YAML reads bare dates as dates
    if "split" in window:
        if "start" in window or "end" in window or "months" in window:
            raise ValueError(f"Window {window}: give either `split` or `start`/`end`, not both.")
    else:
        for key in ("start", "end"):
            if not _DATE.match(window.get(key, "")):
                raise ValueError(f"Window {window} needs `{key}` as YYYY-MM-DD (or use `split: test`).")
        if window["start"] > window["end"]:
            raise ValueError(f"Window {window} starts after it ends.")
        if "months" in window and not (isinstance(window["months"], int) and window["months"] >= 1):
            raise ValueError(f"Window {window}: `months` must be a whole number of months >= 1.")
    if "assets" in window:
        window["assets"] = [a.upper() for a in window["assets"]]
    return window


def parse_benchmark_config(argv: list[str] | None = None) -> BenchmarkConfig:
    """`--config recipe.yaml` plus command-line overrides, parsed by `trl.TrlParser` (unknown keys fail)."""
    from trl import TrlParser

    (config,) = TrlParser((BenchmarkConfig,)).parse_args_and_config(args=argv)
    return config
