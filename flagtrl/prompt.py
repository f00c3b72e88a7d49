"""lang(s_t): the paper's prompt (Figure 3) built from a `TradingState` with the tokenizer's chat template.

Four parts: (1) the task, (2) the legible actions, (3) the state as JSON (recent prices and filings; the account
status and the previous decisions; the day's news), (4) the output format, whose answer opening `{"action": "` ends
the prompt. The prompt is kept in two token segments:

- the *market prefix*: task, actions, output format and market JSON; it depends only on (asset, date) and the trading
  mode (which words the actions), so the frozen layers' work on it can be cached and shared by every episode on that
  date;
- the *account suffix*: account JSON with the previous decisions, the day's news (`news_position="last"`, the default:
  the decision-relevant text right before the answer, where a small model's last token can find it), the assistant
  turn's opening and the answer prefix.

Both segments are tokenised separately and concatenated, so the prefix's tokens are identical for every episode on a
date. A hard token budget is enforced: the prefix drops filings, then shortens the price history (and drops news when
they sit in the market JSON); the suffix shows fewer previous decisions, then fewer news items.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import asdict, dataclass

from .actions import ACTIONS
from .anonymisation import ANONYMISED_NOTE, anonymise_state
from .state import TradingState


# v2: compact JSON, rounded account numbers; v3: trades at today's close, no reward named, answer prefix.
PROMPT_VERSION = "flag-v3"
ACCOUNT_MARKER = "Account state:"
_SENTIMENT_TAG = "(Sentiment:"

TASK_DESCRIPTION = (
    "You are a professional trader managing a single-asset account. Each trading day you decide one action for "
    "{asset} ({asset_class}). Your goal is to maximise the long-term return of the account while managing risk."
)
ACTIONS_DESCRIPTION = {
    "all_in": (
        "Actions: buy = invest all cash in {asset} at today's closing price; sell = sell all shares of {asset} at "
        "today's closing price; hold = keep the account as it is."
    ),
    "position": (
        "Actions: buy = be long {asset} from today's close to the next trading day's; sell = be short {asset} "
        "from today's close to the next trading day's; hold = stay flat (no position) until the next trading day."
    ),
}
NEWS_POSITIONS = ("last", "market")
NEWS_MARKER = "Today's news:"
# The opening of the answer the output format asks for: right after it the model writes the action word.
ANSWER_PREFIX = '{"action": "'
OUTPUT_FORMAT = (
    'Answer with one JSON object and nothing else, one of: {"action": "buy"}, {"action": "sell"}, {"action": "hold"}.'
)


@dataclass
class PromptConfig:
    """How lang(s_t) is built.

    Args:
        price_history_days (`int`, *optional*, defaults to `10`): Closing prices shown, the newest last.
        max_news_items (`int`, *optional*, defaults to `3`): News items kept per day (non-neutral sentiment first).
        max_news_chars (`int`, *optional*, defaults to `300`): Each news item is cut to this length (at a word).
        include_filings (`bool`, *optional*, defaults to `True`): Show the day's 10-K / 10-Q summaries.
        max_filing_chars (`int`, *optional*, defaults to `400`): Each filing summary is cut to this length.
        decision_history (`int`, *optional*, defaults to `10`): Previous actions, rewards and net values shown.
        max_prompt_tokens (`int`, *optional*, defaults to `512`): Hard budget of the whole prompt in tokens.
        account_tokens (`int`, *optional*): Tokens reserved for the account suffix (default: half the budget, at
            least 192); the market prefix gets the rest, so that its content never depends on the episode.
        answer_prefix (`bool`, *optional*, defaults to `True`): End the prompt with the opening of the answer,
            `{"action": "`, after the assistant turn's start. The next token is then the action word itself, so the
            LM head's rows of `sell`/`hold`/`buy` (the policy head's initialisation) score the answer the model would
            give, as TWOSOME's action-token likelihoods do; without it they are read where the model is about to
            write `{`, and SmolLM2's zero-shot preference there ignored the news (P(buy) 0.584 on both positive and
            negative days of a synthetic market).
        news_position (`str`, *optional*, defaults to `"last"`): Where the day's news goes: `last`, after the account
            state, right before the answer (part of the per-step suffix), or `market`, inside the market JSON (the
            cached prefix; the flag-v2 layout). Measured on SmolLM2-135M with its top 2 layers trained to classify
            the news of a synthetic market: `last` reached 100 % held-out accuracy in 50 steps, `market` stayed at
            chance (the last token, 150 tokens of account JSON later, does not find one sentence mid-prompt). `last`
            costs the news' tokens in the frozen layers on every step.
        anonymise (`bool`, *optional*, defaults to `False`): Hide what a model could have memorised
            (`flagtrl.anonymisation`): the ticker and company names become `ASSET` (other known companies `OTHER`)
            in the prompt, news and filings; dates become day offsets (`day -9` ... `day 0`) and `[date]`/`[year]`
            in text; the shown closes are rebased to 100 on the first day shown and currency amounts in text become
            `[amount]`. Compare an agent's results with and without it to measure memorisation (`flagtrl benchmark`'s
            `inputs: [real, anonymised]`); train with it so that a policy never learns from names or dates.
        anonymise_aliases (`dict[str, list[str]]`, *optional*): More names to hide per ticker (brands, people),
            beside `flagtrl.anonymisation.KNOWN_NAMES`.
    """

    price_history_days: int = 10
    max_news_items: int = 3
    max_news_chars: int = 300
    include_filings: bool = True
    max_filing_chars: int = 400
    decision_history: int = 10
    max_prompt_tokens: int = 512
    account_tokens: int | None = None
    answer_prefix: bool = True
    news_position: str = "last"
    anonymise: bool = False
    anonymise_aliases: dict[str, list[str]] | None = None

    def __post_init__(self):
        if self.news_position not in NEWS_POSITIONS:
            raise ValueError(f"news_position must be one of {list(NEWS_POSITIONS)}, got {self.news_position!r}.")
        if self.account_tokens is None:
            self.account_tokens = max(192, self.max_prompt_tokens // 2)
        if self.account_tokens >= self.max_prompt_tokens:
            raise ValueError(
                f"account_tokens={self.account_tokens} leaves no room for the market part in "
                f"max_prompt_tokens={self.max_prompt_tokens}."
            )

    def fingerprint(self) -> str:
        """Short hash of the prompt version and settings (part of cache keys and of saved adapters' config)."""
        settings = asdict(self)
        # The anonymisation fields join the hash only when set, so that real-input prompts keep their fingerprints.
        for name in ("anonymise", "anonymise_aliases"):
            if not settings[name]:
                settings.pop(name)
        payload = json.dumps({"version": PROMPT_VERSION, **settings}, sort_keys=True)
        return hashlib.sha256(payload.encode()).hexdigest()[:12]


def truncate_text(text: str, max_chars: int) -> str:
    """Cut `text` to at most `max_chars` characters at a word boundary, keeping a trailing "(Sentiment: ...)" tag."""
    text = " ".join(text.split())
    if len(text) <= max_chars:
        return text
    tag = ""
    if _SENTIMENT_TAG in text:
        body, _, rest = text.rpartition(_SENTIMENT_TAG)
        text, tag = body.rstrip(), f" {_SENTIMENT_TAG}{rest}"
    room = max(0, max_chars - len(tag) - 4)
    cut = text[:room].rsplit(" ", 1)[0] if " " in text[:room] else text[:room]
    return f"{cut} ...{tag}"


def select_news(news: list[str], max_items: int, max_chars: int) -> list[str]:
    """Keep at most `max_items` items: those with a positive/negative sentiment tag first, then the rest, in order."""

    def neutral(item: str) -> bool:
        return "sentiment: neutral" in item.lower() or _SENTIMENT_TAG.lower() not in item.lower()

    ordered = [n for n in news if not neutral(n)] + [n for n in news if neutral(n)]
    return [truncate_text(n, max_chars) for n in ordered[:max_items]]


def market_data(state: TradingState, config: PromptConfig, price_days: int, news_items: int, filings: bool) -> dict:
    """The market part of the state as a JSON-able dict (depends only on asset and date)."""
    dates, prices = state.dates[-price_days:], state.prices[-price_days:]
    data = {
        "asset": state.asset,
        "date": state.date,
        "recent_prices": {d: round(float(p), 2) for d, p in zip(dates, prices)},
    }
    if news_items and state.news:
        data["news"] = select_news(state.news, news_items, config.max_news_chars)
    if filings and state.filings:
        data["filings"] = [truncate_text(f, config.max_filing_chars) for f in state.filings]
    return data


def account_data(state: TradingState, config: PromptConfig, history: int | None = None) -> dict:
    """The account part of the state: balances and the previous decision metrics (depends on the episode)."""
    k = config.decision_history if history is None else history
    return {
        # Whole currency units and 3-decimal rewards: each digit is a token, and the account suffix is what every
        # step pays for in the frozen layers (the market prefix is cached).
        "cash_balance": round(state.cash),
        "asset_position": round(state.shares, 4),
        "total_account_value": round(state.account_value),
        "previous_actions": state.past_actions[-k:],
        "previous_rewards": [round(r, 3) for r in state.past_rewards[-k:]],
        "previous_net_values": [round(v) for v in state.past_values[-k:]],
        "valid_actions": [a for a, ok in zip(ACTIONS, state.action_mask) if ok],
    }


def build_messages(
    state: TradingState,
    config: PromptConfig,
    market: dict | None = None,
    history: int | None = None,
    news_items: int | None = None,
) -> list[dict[str, str]]:
    """Chat messages of lang(s_t): a system turn (task, actions, output format) and a user turn (market JSON, account
    JSON, and with `news_position="last"` the day's news after them). `news_items` caps the news shown (default:
    `config.max_news_items`). The state is rendered as given: `PromptBuilder` anonymises it first when
    `config.anonymise` is set (`PromptBuilder.visible_state`)."""
    news_items = config.max_news_items if news_items is None else news_items
    news_last = config.news_position == "last"
    if market is None:
        market = market_data(
            state, config, config.price_history_days, 0 if news_last else news_items, config.include_filings
        )
    system = [
        TASK_DESCRIPTION.format(asset=state.asset, asset_class=state.asset_class),
        ACTIONS_DESCRIPTION[state.mode].format(asset=state.asset),
        # The output format sits in the system turn, part of the cached market prefix, not the per-step suffix.
        OUTPUT_FORMAT,
    ]
    if config.anonymise:
        system.insert(1, ANONYMISED_NOTE)
    system = "\n".join(system)
    user = (
        f"Market state:\n{json.dumps(market, ensure_ascii=False, separators=(',', ':'))}\n\n"
        f"{ACCOUNT_MARKER}\n{json.dumps(account_data(state, config, history), separators=(',', ':'))}"
    )
    if news_last and news_items and state.news:
        news = select_news(state.news, news_items, config.max_news_chars)
        user += f"\n\n{NEWS_MARKER}\n{json.dumps(news, ensure_ascii=False)}"
    return [{"role": "system", "content": system}, {"role": "user", "content": user}]


@dataclass
class EncodedPrompt:
    """A tokenised prompt in its two segments.

    Args:
        market_ids (`list[int]`): Tokens of the market prefix (identical for every episode on `market_key`).
        account_ids (`list[int]`): Tokens of the account suffix, ending with the assistant turn's opening.
        market_key (`tuple[str, str, str, str]`): (asset, date, trading mode, prompt fingerprint): the cache key of the
            prefix (the mode is part of it: the prefix describes the actions, which differ between modes).
    """

    market_ids: list[int]
    account_ids: list[int]
    market_key: tuple[str, str, str, str]

    @property
    def input_ids(self) -> list[int]:
        return self.market_ids + self.account_ids

    def __len__(self) -> int:
        return len(self.market_ids) + len(self.account_ids)


class PromptBuilder:
    """Render and tokenise lang(s_t) under a hard token budget.

    Args:
        tokenizer (`PreTrainedTokenizerBase`): A tokenizer with a chat template.
        config (`PromptConfig`, *optional*): Prompt settings; defaults to `PromptConfig()`.
    """

    def __init__(self, tokenizer, config: PromptConfig | None = None):
        if getattr(tokenizer, "chat_template", None) is None:
            raise ValueError(
                f"The tokenizer {getattr(tokenizer, 'name_or_path', tokenizer)!r} has no chat template; "
                "flagtrl renders lang(s_t) with `apply_chat_template`. Set `tokenizer.chat_template` first."
            )
        self.tokenizer = tokenizer
        self.config = config or PromptConfig()
        self.fingerprint = self.config.fingerprint()
        # Tokenised market prefixes by (asset, date, mode): they never change within one builder.
        self._market_cache: dict[tuple[str, str, str], list[int]] = {}
        self.market_cache_size = 4096

    def visible_state(self, state: TradingState) -> TradingState:
        """The state the model is shown: `state` itself, or its anonymised copy when `config.anonymise` is set."""
        if not self.config.anonymise:
            return state
        return anonymise_state(state, self.config.price_history_days, self.config.anonymise_aliases)

    def render(
        self,
        state: TradingState,
        market: dict | None = None,
        history: int | None = None,
        news_items: int | None = None,
    ) -> tuple[str, str]:
        """The prompt text split into (market prefix, account suffix)."""
        return self._render(self.visible_state(state), market, history, news_items)

    def _render(
        self,
        state: TradingState,
        market: dict | None = None,
        history: int | None = None,
        news_items: int | None = None,
    ) -> tuple[str, str]:
        text = self.tokenizer.apply_chat_template(
            build_messages(state, self.config, market, history, news_items), tokenize=False, add_generation_prompt=True
        )
        if self.config.answer_prefix:
            text += ANSWER_PREFIX
        split = text.rfind(ACCOUNT_MARKER)
        return text[:split], text[split:]

    def _tokenize(self, text: str) -> list[int]:
        return self.tokenizer(text, add_special_tokens=False)["input_ids"]

    def encode_market(self, state: TradingState) -> list[int]:
        """Tokens of the market prefix, shrunk (news, then filings, then price history) to fit its budget.

        Raises:
            `ValueError`: when even one price and no text do not fit `max_prompt_tokens - account_tokens`.
        """
        config = self.config
        key = (state.asset, state.date, state.mode)
        if key in self._market_cache:
            return self._market_cache[key]
        state = self.visible_state(state)
        budget = config.max_prompt_tokens - config.account_tokens
        news = config.max_news_items if config.news_position == "market" else 0
        filings, days = config.include_filings, config.price_history_days
        while True:
            market = market_data(state, config, days, news, filings)
            market_ids = self._tokenize(self._render(state, market)[0])
            if len(market_ids) <= budget:
                break
            if news and state.news:
                news -= 1
            elif filings and state.filings:
                filings = False
            elif days > 1:
                days = max(1, days // 2)
            else:
                raise ValueError(
                    f"The market prompt for {key[0]} on {key[1]} needs {len(market_ids)} tokens with no news, "
                    f"no filings and one price; max_prompt_tokens - account_tokens = {budget} is too small."
                )
        if len(self._market_cache) >= self.market_cache_size:
            self._market_cache.pop(next(iter(self._market_cache)))
        self._market_cache[key] = market_ids
        return market_ids

    def encode(self, state: TradingState) -> EncodedPrompt:
        """Tokenise lang(s_t) within `max_prompt_tokens`.

        Raises:
            `ValueError`: when the account suffix exceeds its reserved `account_tokens`.
        """
        market_ids = self.encode_market(state)
        key = (state.asset, state.date, state.mode, self.fingerprint)
        state = self.visible_state(state)
        # Fewer previous decisions, then fewer news items (when they come last), are shown when the suffix would
        # overflow its budget (never the balances).
        stub = {"asset": state.asset, "date": state.date}
        history, news = self.config.decision_history, self.config.max_news_items
        account_ids = self._tokenize(self._render(state, stub, history, news)[1])
        while len(account_ids) > self.config.account_tokens and (history > 0 or news > 0):
            if history > 0:
                history = history // 2
            else:
                news -= 1
            account_ids = self._tokenize(self._render(state, stub, history, news)[1])
        if len(account_ids) > self.config.account_tokens:
            raise ValueError(
                f"The account part of the prompt for {key[0]} on {key[1]} needs {len(account_ids)} tokens even "
                f"with no previous decisions, more than account_tokens={self.config.account_tokens}; raise it."
            )
        return EncodedPrompt(market_ids, account_ids, key)
