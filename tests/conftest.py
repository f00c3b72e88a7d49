"""Shared fixtures: a tokenizer and a tiny Llama built offline, and the InvestorBench data when it is there."""

from __future__ import annotations

import json
import os
from pathlib import Path

import pytest


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

REPO_ROOT = Path(__file__).resolve().parents[1]
INVESTORBENCH_DIR = REPO_ROOT.parent / "shared" / "data" / "investorbench"

CHATML_TEMPLATE = (
    "{% for message in messages %}{{'<|im_start|>' + message['role'] + '\n' + message['content'] + '<|im_end|>' + '\n'}}"
    "{% endfor %}{% if add_generation_prompt %}{{ '<|im_start|>assistant\n' }}{% endif %}"
)


def build_tiny_tokenizer(corpus: list[str] | None = None, vocab_size: int = 400):
    """A byte-level BPE tokenizer trained in a second on prompt-like text, with a ChatML template and the action words
    `buy`, `sell`, `hold` as single tokens (as they are in SmolLM2's tokenizer). `corpus` and `vocab_size` train it on
    other text (e.g. rendered prompts, for word-sized tokens)."""
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import PreTrainedTokenizerFast

    backend = Tokenizer(models.BPE(unk_token="<unk>"))
    backend.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    backend.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=vocab_size,
        special_tokens=["<|endoftext|>", "<|im_start|>", "<|im_end|>", "<unk>"],
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
    )
    corpus = (
        corpus
        or [
            "You are a professional trader. Actions: buy sell hold. Market state: recent_prices news filings",
            'Account state: cash_balance asset_position total_account_value previous_actions {"action": "buy"}',
            '0123456789 . , : ; { } [ ] " - (Sentiment: positive) (Sentiment: negative) (Sentiment: neutral)',
        ]
        * 20
    )
    backend.train_from_iterator(corpus, trainer)
    backend.add_tokens(["buy", "sell", "hold"])
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=backend,
        bos_token="<|im_start|>",
        eos_token="<|im_end|>",
        unk_token="<unk>",
        pad_token="<|endoftext|>",
    )
    tokenizer.chat_template = CHATML_TEMPLATE
    return tokenizer


def build_tiny_llama(vocab_size: int, num_layers: int = 4, seed: int = 0, hidden_size: int = 32):
    """A random LlamaForCausalLM small enough for CPU unit tests (hidden 32, 4 layers; the MLP twice the hidden)."""
    import torch
    from transformers import LlamaConfig, LlamaForCausalLM

    torch.manual_seed(seed)
    config = LlamaConfig(
        vocab_size=vocab_size,
        hidden_size=hidden_size,
        intermediate_size=2 * hidden_size,
        num_hidden_layers=num_layers,
        num_attention_heads=4,
        num_key_value_heads=2,
        max_position_embeddings=1024,
        tie_word_embeddings=True,
        pad_token_id=0,
    )
    return LlamaForCausalLM(config)


def account_state(cash: float, shares: float, date: str = "2021-01-05", mask=None):
    """A two-day `TradingState` of asset AAA (closes 10 and 11) with this account; the all-in mask unless `mask`."""
    import numpy as np

    from flagtrl.state import TradingState

    mask = np.array([shares > 0, True, cash > 0] if mask is None else mask, dtype=np.int8)
    return TradingState(
        asset="AAA",
        asset_class="stock",
        date=date,
        step=0,
        dates=["2021-01-04", date],
        prices=np.array([10.0, 11.0]),
        news=[],
        filings=[],
        cash=cash,
        shares=shares,
        account_value=cash + 11.0 * shares,
        position=int(shares > 0),
        action_mask=mask,
    )


def tiny_ppo_config(output_dir, **overrides):
    """A `FlagPPOConfig` small enough for CPU unit tests: 2 environments, 4 steps a rollout, 3 PPO iterations,
    episodes of 6 steps (they cross rollout boundaries), fp32, no saving, evaluation or trackers."""
    from flagtrl.trainer.ppo_flag_config import FlagPPOConfig

    settings = dict(
        output_dir=str(output_dir),
        num_envs=2,
        num_steps=4,
        total_timesteps=3 * 2 * 4,
        max_episode_steps=6,
        minibatch_size=4,
        gradient_accumulation_steps=2,
        max_prompt_tokens=1024,
        use_cpu=True,
        bf16=False,
        disable_tqdm=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        seed=0,
    )
    settings.update(overrides)
    return FlagPPOConfig(**settings)


@pytest.fixture(scope="module")
def one_torch_thread():
    """One torch thread for a module's tests (CPU timing stays stable on 2-core machines), restored afterwards."""
    import torch

    threads = torch.get_num_threads()
    torch.set_num_threads(1)
    yield
    torch.set_num_threads(threads)


@pytest.fixture(scope="session")
def tiny_tokenizer():
    return build_tiny_tokenizer()


@pytest.fixture
def tiny_llama(tiny_tokenizer):
    return build_tiny_llama(len(tiny_tokenizer))


@pytest.fixture(scope="session")
def investorbench_dir() -> Path:
    if not (INVESTORBENCH_DIR / "msft.json").exists():
        pytest.skip(f"InvestorBench data not found at {INVESTORBENCH_DIR}")
    return INVESTORBENCH_DIR


def load_investorbench_series(directory: Path, asset: str, asset_class: str = "stock"):
    """A `MarketSeries` straight from an InvestorBench JSON file (tests that need no prepared dataset)."""
    from flagtrl.data.schema import MarketSeries

    raw = json.loads((directory / f"{asset.lower()}.json").read_text())
    dates = sorted(raw)
    return MarketSeries(
        asset=asset.upper(),
        asset_class=asset_class,
        dates=dates,
        close=[raw[d]["prices"] for d in dates],
        news=[list(raw[d].get("news") or []) for d in dates],
        filings=[list(raw[d].get("10k") or []) + list(raw[d].get("10q") or []) for d in dates],
    )


@pytest.fixture(scope="session")
def msft_series(investorbench_dir):
    return load_investorbench_series(investorbench_dir, "MSFT")
