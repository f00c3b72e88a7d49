"""The model card of a trained FLAG-Trader adapter.

TRL's card comes first (`trl.trainer.utils.generate_model_card`, which `FlagPPOTrainer.create_model_card` writes
through TRL's base trainer: the metadata, base model, training procedure, framework versions and citation); the
adapter's own sections follow it: what the adapter holds, how to load it and, after an evaluation, its metrics table.
Both are `huggingface_hub.ModelCard`s, so the metadata header is parsed and written by the Hub's own code.
"""

from __future__ import annotations

from collections.abc import Mapping

from huggingface_hub import ModelCard

from ..backtest import BacktestResult
from ..metrics_table import format_metrics_table
from ..models.flag_policy import FlagPolicyConfig
from ..models.model_card import adapter_model_card


def evaluation_table(
    results: Mapping[tuple[str, str], BacktestResult] | None, convention: str = "paper"
) -> str | None:
    """The metrics table of `FlagPPOTrainer.last_eval_results` (`(agent, asset)` → result), `None` without results."""
    if not results:
        return None
    by_asset: dict = {}
    for (agent, asset), result in results.items():
        by_asset.setdefault(asset, {})[agent] = result.metrics[convention]
    return format_metrics_table(by_asset, convention)


def add_adapter_sections(
    card: ModelCard,
    config: FlagPolicyConfig,
    repo_id: str,
    eval_results: Mapping[tuple[str, str], BacktestResult] | None = None,
) -> ModelCard:
    """Append the adapter's sections (how to load it, its last evaluation) to a trainer's model card.

    Args:
        card (`huggingface_hub.ModelCard`): The card TRL's base trainer wrote; its metadata is kept as it is.
        config (`FlagPolicyConfig`): The adapter's configuration (base model, trainable layers, actions, prompt).
        repo_id (`str`): The Hub repo id (or name) the loading instructions use.
        eval_results (`Mapping`, *optional*): `FlagPPOTrainer.last_eval_results`, shown as a `paper` table.

    Returns:
        `huggingface_hub.ModelCard`: `card`, its text extended.
    """
    adapter_card = ModelCard(adapter_model_card(config, repo_id, evaluation_table(eval_results)))
    card.text = card.text.rstrip("\n") + "\n\n" + adapter_card.text.lstrip("\n")
    return card
