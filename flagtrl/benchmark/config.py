"""What a benchmark runs: agents x assets x windows x seeds, read from one YAML recipe by TRL's `TrlParser`.

    flagtrl benchmark --config recipes/benchmark/investorbench_paper.yaml [--strict] [--output_dir DIR]

Top-level keys are the fields of `BenchmarkConfig` (unknown keys fail, TrlParser's rule). `agents` and `windows` are
lists of mappings; each agent mapping is checked against `AgentSpec` (unknown keys fail there too) and each window
against `WINDOW_KEYS`.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field, fields

from ..actions import TRADING_MODES


AGENT_TYPES = ("buy_and_hold", "random", "ma_crossover", "momentum", "zero_shot", "flag")
LLM_AGENT_TYPES = ("zero_shot", "flag")
WINDOW_KEYS = ("split", "start", "end", "assets", "asset_class")
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
    """

    type: str
    name: str | None = None
    model: str | None = None
    adapter: str | None = None
    scoring: str = "generate"
    temperature: float = 0.6
    max_new_tokens: int = 16
    greedy: bool = False
    knowledge_cutoff: str | None = None
    dtype: str = "auto"
    prompt: dict = field(default_factory=dict)
    params: dict = field(default_factory=dict)
    assets: list[str] | None = None
    seeds: list[int] | None = None

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
        if self.assets is not None:
            self.assets = [a.upper() for a in self.assets]

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
        windows (`list[dict]`): Evaluation windows: `{split: test}` (each asset's window in that split of the dataset)
            or `{start: YYYY-MM-DD, end: YYYY-MM-DD}`, optionally restricted with `assets: [...]` or
            `asset_class: stock|crypto` (YAML only).
        seeds (`list[int]`): Seeds of stochastic agents; deterministic agents run the first one only.
        mode (`str`): Trading mode: `paper` (all-in buy / liquidate sell, the paper's MDP) or `position`.
        transaction_cost_bps (`float`): Cost of each trade in basis points (StockBench: 1 commission + 2 slippage).
            It lowers the `standard` metrics (the account); the `paper` metrics score positions and ignore it.
        initial_cash (`float`): Starting cash.
        risk_free_rate (`float`): Annual risk-free rate of the `standard` metrics.
        max_days (`int`, *optional*): Cap on the trading days of each window (quick runs).
        strict (`bool`): Refuse to run an LLM agent on a window that starts before its knowledge cutoff (or whose
            cutoff is unknown) instead of warning.
        plots (`bool`): Write the PNG plots.
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
    mode: str = field(default="paper", metadata={"help": "Trading mode: paper or position."})
    transaction_cost_bps: float = field(default=0.0, metadata={"help": "Cost of each trade in basis points."})
    initial_cash: float = field(default=100_000.0, metadata={"help": "Starting cash."})
    risk_free_rate: float = field(default=0.0, metadata={"help": "Annual risk-free rate of the standard metrics."})
    max_days: int | None = field(default=None, metadata={"help": "Cap on the trading days of each window."})
    strict: bool = field(default=False, metadata={"help": "Refuse windows before an LLM's knowledge cutoff."})
    plots: bool = field(default=True, metadata={"help": "Write the PNG plots."})
    progress: bool = field(default=True, metadata={"help": "Show progress bars."})

    def __post_init__(self):
        if not self.assets:
            raise ValueError("The benchmark needs `assets`, e.g. [MSFT, JNJ].")
        self.assets = [a.upper() for a in self.assets]
        if not self.agents:
            raise ValueError("The benchmark needs at least one entry in `agents`.")
        if not self.seeds:
            raise ValueError("The benchmark needs at least one seed.")
        if self.mode not in TRADING_MODES:
            raise ValueError(f"Unknown trading mode {self.mode!r}; choose one of {list(TRADING_MODES)}.")
        if self.transaction_cost_bps < 0:
            raise ValueError(f"transaction_cost_bps must be >= 0, got {self.transaction_cost_bps}.")
        names = [spec.name for spec in self.agent_specs]  # builds (and so checks) every agent
        duplicates = sorted({n for n in names if names.count(n) > 1})
        if duplicates:
            raise ValueError(f"Agent names must be unique; {duplicates} appear more than once (set `name`).")
        self.windows = [normalize_window(w) for w in self.windows]

    @property
    def agent_specs(self) -> list[AgentSpec]:
        """The `agents` entries as `AgentSpec`s, in their order."""
        return [a if isinstance(a, AgentSpec) else AgentSpec.from_dict(a) for a in self.agents]


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
        if "start" in window or "end" in window:
            raise ValueError(f"Window {window}: give either `split` or `start`/`end`, not both.")
    else:
        for key in ("start", "end"):
            if not _DATE.match(window.get(key, "")):
                raise ValueError(f"Window {window} needs `{key}` as YYYY-MM-DD (or use `split: test`).")
        if window["start"] > window["end"]:
            raise ValueError(f"Window {window} starts after it ends.")
    if "assets" in window:
        window["assets"] = [a.upper() for a in window["assets"]]
    return window


def parse_benchmark_config(argv: list[str] | None = None) -> BenchmarkConfig:
    """`--config recipe.yaml` plus command-line overrides, parsed by `trl.TrlParser` (unknown keys fail)."""
    from trl import TrlParser

    (config,) = TrlParser((BenchmarkConfig,)).parse_args_and_config(args=argv)
    return config
