"""Structured answers: generation restricted to the JSON answers the prompt asks for, and only to the valid ones.

The prompt's output format (`flagtrl.prompt`) asks for one JSON object and nothing else, one of `{"action": "buy"}`,
`{"action": "sell"}`, `{"action": "hold"}`. `AnswerGrammar` turns the answers that are valid in the current account
state (the action mask, FLAG-Trader eq. 8: no sell without shares, no buy without cash) into a regular language and
gives `model.generate` a logits processor for it: at every step each token that cannot continue a valid answer gets
probability 0, so whatever the model samples is one of those answers, spelled exactly, and a masked action cannot be
written. Within that set the model's own probabilities decide: the constraint renormalises, it does not choose.

The processor is outlines' (`outlines.from_transformers` + `outlines.backends.get_regex_logits_processor`, backend
outlines-core), the logits processor outlines itself hands `transformers.generate`; the agent keeps its own seeded
`generate` call and prompt token ids. Chosen over lm-format-enforcer 0.11.3 (its last release, 2025-08: its
transformers integration does not import under transformers 5, `transformers.tokenization_utils` is gone; the fix is
merged upstream but unreleased) and xgrammar 0.2.8 (its Linux x86-64 wheel requires triton, a GPU compiler, even for
CPU use). outlines-core is a prebuilt Rust wheel: it works offline on CPU and indexes SmolLM2's 49,152-token vocabulary
for this grammar in about 0.4 s. Two costs of outlines' processor, once per process: the first answer compiles
outlines-core's masking kernel with `torch.compile` (about 6 s on a 2-core CPU), and building a processor sets
`torch._dynamo.config.suppress_errors = True` (a process-wide switch: a failing `torch.compile` falls back to eager).
"""

from __future__ import annotations

import copy
import re

import numpy as np

from ..actions import ACTIONS
from ..prompt import ANSWER_PREFIX


def answer_text(action: str) -> str:
    """The exact answer the prompt's output format lists for `action`, e.g. `{"action": "buy"}`."""
    return f'{ANSWER_PREFIX}{action}"}}'


def valid_answers(action_mask: np.ndarray) -> list[str]:
    """The answers of the actions that `action_mask` allows (hold is always among them)."""
    return [answer_text(action) for action, valid in zip(ACTIONS, action_mask) if valid]


def answer_regex(action_mask: np.ndarray) -> str:
    """A regular expression that matches exactly the valid answers, nothing before or after them."""
    return "(" + "|".join(re.escape(answer) for answer in valid_answers(action_mask)) + ")"


# Every token spells at least one character, so no valid answer needs more tokens than this.
MAX_ANSWER_TOKENS = max(len(answer_text(action)) for action in ACTIONS)


class AnswerGrammar:
    """Logits processors that let a causal LM write only the valid answers of an account state.

    Args:
        model (`PreTrainedModel`): The causal LM that generates.
        tokenizer (`PreTrainedTokenizerBase`): Its tokenizer (the vocabulary the grammar is compiled against).

    One processor per action mask (at most four: hold is always valid), compiled on first use and reset before each
    answer.
    """

    def __init__(self, model, tokenizer):
        # Imported here: outlines takes over a second to import, which only constrained agents should pay.
        import outlines

        self._outlines = outlines
        # outlines switches the tokenizer it wraps to left padding; the agent's own tokenizer stays as it was.
        self._model = outlines.from_transformers(model, copy.copy(tokenizer))
        self._processors: dict[tuple[bool, ...], object] = {}

    def logits_processor(self, action_mask: np.ndarray):
        """The processor for this mask, reset for a new answer (pass it in `generate(logits_processor=[...])`)."""
        key = tuple(bool(valid) for valid in action_mask)
        if key not in self._processors:
            self._processors[key] = self._outlines.backends.get_regex_logits_processor(
                "outlines_core", self._model, answer_regex(action_mask)
            )
        processor = self._processors[key]
        processor.reset()
        return processor
