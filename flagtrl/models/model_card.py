"""The model card of a saved FLAG-Trader adapter: what it is, how to load it, and its evaluation when known."""

from __future__ import annotations

from typing import TYPE_CHECKING


if TYPE_CHECKING:
    from .flag_policy import FlagPolicyConfig


def adapter_model_card(config: FlagPolicyConfig, repo_id: str, metrics_table: str | None = None) -> str:
    """A model card body for a FLAG-Trader adapter (Markdown with a YAML header).

    A LoRA adapter (`config.peft_type == "LORA"`) is tagged `library_name: peft`, and its card shows how to load the
    LoRA-adapted language model with `peft.PeftModel.from_pretrained` as well as the whole policy with flagtrl.

    Args:
        config (`FlagPolicyConfig`): The policy's settings (base model, layer split, actions, prompt version).
        repo_id (`str`): The Hub repo (or a name) the card is written for.
        metrics_table (`str`, *optional*): A Markdown table of the last evaluation.
    """
    lora = config.peft_type == "LORA"
    base = config.base_model_name_or_path
    if lora:
        trained = (
            f"LoRA adapters ([peft](https://github.com/huggingface/peft)) on the top {config.num_trainable_layers} "
            f"layers, with the base weights frozen, and a policy head over {config.action_tokens} and a value head "
            "trained in full are this adapter"
        )
    else:
        trained = (
            f"the lower layers are the frozen base model, the top {config.num_trainable_layers} layers, the final "
            f"norm, a policy head over {config.action_tokens} and a value head are this adapter"
        )
    lines = [
        "---",
        f"base_model: {base}",
        f"library_name: {'peft' if lora else 'flagtrl'}",
        f"tags: [flagtrl, flag-trader, ppo, trading, reinforcement-learning{', lora' if lora else ''}]",
        "---",
        "",
        f"# {repo_id.split('/')[-1]}",
        "",
        f"A FLAG-Trader policy ([arXiv 2502.11433](https://arxiv.org/abs/2502.11433)) trained with "
        f"[flagtrl](https://github.com/flagtrl/flagtrl) on top of `{base}`: {trained} "
        f"(prompt `{config.prompt_version}`).",
        "",
        "## How to load",
        "",
        "```python",
        "from flagtrl.agents.flag_agent import FlagAgent",
        "from flagtrl.models import FlagPolicy",
        "",
        f'policy = FlagPolicy.from_pretrained("{repo_id}")  # loads the base model, then the adapter',
        f'agent = FlagAgent.from_pretrained("{repo_id}")  # the policy behind the backtest agent protocol',
        "```",
    ]
    if lora:
        lines += [
            "",
            "The LoRA part is a standard peft adapter (`adapter_config.json`, `adapter_model.safetensors`); the policy "
            "and value heads and flagtrl's settings lie beside it (`flagtrl_heads.safetensors`, "
            "`flagtrl_config.json`). The LoRA-adapted language model alone:",
            "",
            "```python",
            "from peft import PeftModel",
            "from transformers import AutoModelForCausalLM",
            "",
            f'base = AutoModelForCausalLM.from_pretrained("{base}")',
            f'model = PeftModel.from_pretrained(base, "{repo_id}")',
            "```",
        ]
    lines += [
        "",
        f"Backtest: `flagtrl backtest --dataset DIR --asset MSFT --start 2020-10-01 --end 2021-05-05 "
        f"--agent flag:{repo_id}`",
    ]
    if metrics_table:
        lines += ["", "## Evaluation", "", metrics_table]
    return "\n".join(lines) + "\n"
