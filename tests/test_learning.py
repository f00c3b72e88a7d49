"""Proof that PPO learns: on a synthetic market whose prompt carries the sign of the next tradable move, a tiny
policy learns to follow it.

The market (`flagtrl.data.synthetic`, news accuracy 1.0) publishes on day t a news line whose sentiment is the sign of
the move from t to t+1, exactly the interval a decision of day t trades (`flagtrl.envs.trading_env`, timing). In
`position` mode buy is right on positive days and sell on negative ones. The reward is the account's log return (in
percent) and gamma = 0: an action's whole effect is its own reward. A tiny random Llama (2 layers, both trainable)
starts near a third for every action; after about 1,300 environment steps PPO must put more than 0.8 on the right
action for each signal, on held-out test-window days, both when the two layers train in full and when they train LoRA
adapters (peft, every linear module, base weights frozen). Flipping the sign of the policy loss makes either fail.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch
from conftest import build_tiny_llama, build_tiny_tokenizer, tiny_ppo_config

from flagtrl.actions import BUY, HOLD, NUM_ACTIONS, SELL
from flagtrl.backtest import split_windows
from flagtrl.data.schema import market_series
from flagtrl.data.synthetic import make_synthetic_dataset
from flagtrl.envs import TradingEnv
from flagtrl.models import FlagPolicy
from flagtrl.prompt import PromptBuilder, PromptConfig
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer


ASSET = "SYNA"


pytestmark = pytest.mark.usefixtures("one_torch_thread")


@pytest.fixture(scope="module")
def market():
    dataset = make_synthetic_dataset(assets={ASSET: "stock"}, seed=0, news_accuracy=1.0)
    return dataset, market_series(dataset, ASSET)


def prompt_tokenizer(series):
    """A byte-level BPE tokenizer trained on rendered prompts of this market, so that a prompt is ~260 tokens of
    words rather than ~620 of characters (the conftest tokenizer's), with the ChatML template and single-token
    action words (as in SmolLM2's tokenizer)."""
    renderer = PromptBuilder(build_tiny_tokenizer(), PromptConfig(max_prompt_tokens=4096))
    env = TradingEnv(series, episode_length=60, mode="position")
    _, info = env.reset(seed=0)
    texts = []
    for step in range(60):
        texts.append("".join(renderer.render(info["state"])))
        _, _, _, _, info = env.step(step % NUM_ACTIONS)
    return build_tiny_tokenizer(corpus=texts, vocab_size=1500)


def right_action_probabilities(trainer: FlagPPOTrainer, series, window) -> tuple[float, float]:
    """Mean P(buy | positive news) and P(sell | negative news) over the first 40 days of `window`."""
    env = TradingEnv(series, window=window, episode_length=None, random_start=False, mode="position")
    _, info = env.reset(seed=0)
    prompts, positive = [], []
    for _ in range(40):
        state = info["state"]
        prompts.append(trainer.builder.encode(state))
        positive.append("(Sentiment: positive)" in state.news[0])
        _, _, _, _, info = env.step(HOLD)
    with torch.no_grad():
        probs = trainer.model.action_probabilities(prompts, [[1, 1, 1]] * len(prompts)).numpy()
    positive = np.array(positive)
    assert 10 < positive.sum() < 30  # both signals are represented
    return float(probs[positive, BUY].mean()), float(probs[~positive, SELL].mean())


# LoRA on both layers (TWOSOME-style), every linear module: the heads alone cannot route the news to the last token.
LORA = dict(r=8, lora_alpha=16, lora_dropout=0.0, target_modules="all-linear")


@pytest.mark.parametrize("training", ["full", "lora"])
def test_ppo_learns_to_follow_an_informative_signal(market, tmp_path, training):
    dataset, series = market
    tokenizer = prompt_tokenizer(series)
    backbone = build_tiny_llama(len(tokenizer), num_layers=2, seed=0)
    peft_config = None
    if training == "lora":
        from peft import LoraConfig

        peft_config = LoraConfig(**LORA)
    policy = FlagPolicy.from_backbone(
        backbone, tokenizer, num_trainable_layers=2, base_model_name_or_path="tiny", peft_config=peft_config
    )
    args = tiny_ppo_config(
        tmp_path,
        trading_mode="position",
        reward="log_return",
        reward_scale=100.0,
        gamma=0.0,
        gae_lambda=0.0,
        num_envs=8,
        num_steps=8,
        total_timesteps=20 * 8 * 8,
        max_episode_steps=16,
        minibatch_size=32,
        gradient_accumulation_steps=1,
        update_epochs=4,
        learning_rate=3e-3,
        llm_learning_rate=3e-3,
        anneal_lr=False,
        kl_coef=0.0,
        ent_coef=0.01,
        price_history_days=3,
        max_news_items=1,
        logging_steps=5,
    )
    trainer = FlagPPOTrainer(policy, args, dataset, processing_class=tokenizer)
    test_window = split_windows(dataset, "test", [ASSET])[ASSET]
    buy_before, sell_before = right_action_probabilities(trainer, series, test_window)
    assert buy_before < 0.5 and sell_before < 0.5

    trainer.train()

    buy_after, sell_after = right_action_probabilities(trainer, series, test_window)
    assert buy_after > 0.8, f"P(buy | positive news): {buy_before:.3f} -> {buy_after:.3f}"
    assert sell_after > 0.8, f"P(sell | negative news): {sell_before:.3f} -> {sell_after:.3f}"
