"""A trained FLAG policy behind the agent protocol: lang(s_t) in, pi(.|s_t) out."""

from __future__ import annotations

import logging

import numpy as np
import torch

from ..models.flag_policy import FlagPolicy
from ..models.hub import resolve_adapter_folder
from ..models.loading import load_tokenizer
from ..prompt import PROMPT_VERSION, PromptBuilder, PromptConfig
from ..state import TradingState


logger = logging.getLogger(__name__)


class FlagAgent:
    """Wrap a `FlagPolicy` and its tokenizer as a `TradingAgent`.

    Args:
        policy (`FlagPolicy`): The actor-critic.
        tokenizer (`PreTrainedTokenizerBase`): The tokenizer it was trained with.
        prompt_config (`PromptConfig`, *optional*): Defaults to the one saved with the policy.
        name (`str`, *optional*, defaults to `"flag_trader"`): Name in reports.
        reference (`bool`, *optional*, defaults to `False`): Act with the policy's frozen reference instead: the
            pre-trained layers and the initial head, i.e. the untrained policy (needs a policy built with its
            reference).
    """

    def __init__(
        self,
        policy: FlagPolicy,
        tokenizer,
        prompt_config: PromptConfig | None = None,
        name: str = "flag_trader",
        reference: bool = False,
    ):
        if reference and policy.reference is None:
            raise ValueError(
                "reference=True needs a FlagPolicy built with its reference policy (with_reference=True)."
            )
        self.policy = policy
        self.reference = reference
        self.tokenizer = tokenizer
        if prompt_config is None:
            prompt_config = PromptConfig(**policy.config_flag.prompt_config)
        self.builder = PromptBuilder(tokenizer, prompt_config)
        self.name = name

    @classmethod
    def from_pretrained(
        cls,
        adapter_name_or_path: str,
        name: str | None = None,
        prompt_overrides: dict | None = None,
        **kwargs,
    ) -> FlagAgent:
        """Load an adapter folder or Hub repo (with the tokenizer saved beside it, else the base model's).

        `prompt_overrides` replace settings of the prompt saved with the adapter, e.g. `{"anonymise": True}` to
        evaluate it on anonymised inputs (the benchmark's `inputs`); the other `kwargs` go to
        `FlagPolicy.from_pretrained`."""
        from transformers import AutoTokenizer

        folder = resolve_adapter_folder(adapter_name_or_path)
        policy = FlagPolicy.from_pretrained(folder, with_reference=False, **kwargs)
        if policy.config_flag.prompt_version != PROMPT_VERSION:
            logger.warning(
                "%s was trained with prompt %s; this flagtrl renders prompt %s, so its inputs differ from training.",
                adapter_name_or_path,
                policy.config_flag.prompt_version,
                PROMPT_VERSION,
            )
        if (folder / "tokenizer_config.json").exists():
            tokenizer = AutoTokenizer.from_pretrained(folder)
        else:
            tokenizer = load_tokenizer(policy.config_flag.base_model_name_or_path)
        prompt_config = PromptConfig(**{**(policy.config_flag.prompt_config or {}), **(prompt_overrides or {})})
        return cls(policy.eval(), tokenizer, prompt_config, name=name or f"flag:{adapter_name_or_path}")

    def reset(self, seed: int | None = None) -> None:
        pass

    @torch.no_grad()
    def action_distribution(self, state: TradingState) -> np.ndarray:
        prompt = self.builder.encode(state)
        probs = self.policy.action_probabilities(
            [prompt], [state.action_mask], self.tokenizer.pad_token_id or 0, reference=self.reference
        )
        # Renormalise in float64: float32 probabilities can miss 1 by more than numpy's `choice` tolerance (1.5e-8).
        probs = probs[0].double().cpu().numpy()
        return probs / probs.sum()
