"""Configuration of `FlagPPOTrainer`: FLAG-Trader's PPO (paper Appendix A, Table 3) on TRL's base config."""

from __future__ import annotations

import logging
import math
from dataclasses import dataclass, field

import torch
from trl.trainer.base_config import _BaseConfig

from ..actions import resolve_trading_mode
from ..hardware import cpu_has_fast_bf16
from ..prompt import PromptConfig
from ..rewards import get_reward_function


logger = logging.getLogger(__name__)


@dataclass
class FlagPPOConfig(_BaseConfig):
    r"""
    Configuration class for [`FlagPPOTrainer`].

    One training *step* (`global_step`, what `logging_steps`, `save_steps` and `eval_steps` count) is one PPO
    iteration: a rollout of `num_envs` x `num_steps` environment steps followed by `update_epochs` of minibatch
    updates. Defaults are the paper's Table 3 unless listed under "changed defaults".

    Parameters:
        > Parameters that control the PPO loop

        total_timesteps (`int`, *optional*, defaults to `13860`): Environment steps of the whole run.
        num_envs (`int`, *optional*, defaults to `1`): Environments stepped together (one batched forward per step).
        num_steps (`int`, *optional*, defaults to `40`): Steps per environment per rollout.
        gamma (`float`, *optional*, defaults to `0.95`): Discount.
        gae_lambda (`float`, *optional*, defaults to `0.98`): GAE lambda.
        update_epochs (`int`, *optional*, defaults to `1`): Passes over each rollout.
        minibatch_size (`int`, *optional*, defaults to `32`): Samples per optimizer step (the last may be smaller);
            split into `gradient_accumulation_steps` micro-batches.
        norm_adv (`bool`, *optional*, defaults to `True`): Normalise advantages per minibatch.
        clip_coef (`float`, *optional*, defaults to `0.2`): Ratio clipping of the surrogate (and of the value loss).
        clip_vloss (`bool`, *optional*, defaults to `True`): Clip the value loss.
        ent_coef (`float`, *optional*, defaults to `0.05`): Entropy bonus.
        vf_coef (`float`, *optional*, defaults to `0.5`): Value-loss weight.
        kl_coef (`float`, *optional*, defaults to `0.05`): Weight of KL(pi || pi_ref) to the reference policy.
        target_kl (`float`, *optional*): Stop an iteration's epochs early once the approximate KL exceeds it.
        anneal_lr (`bool`, *optional*, defaults to `True`): Anneal both learning rates linearly to 0.
        learning_rate (`float`, *optional*, defaults to `5e-4`): eta, learning rate of the policy and value heads.
        llm_learning_rate (`float`, *optional*, defaults to `5e-5`): beta, learning rate of the trainable LLM layers.
        max_grad_norm (`float`, *optional*, defaults to `0.5`): Gradient clipping.
        gradient_accumulation_steps (`int`, *optional*, defaults to `8`): Micro-batches per minibatch.

        > Parameters that control the environment

        dataset_train_split (`str`, *optional*, defaults to `"train"`): Split whose date windows episodes come from.
        dataset_test_split (`str`, *optional*, defaults to `"test"`): Split of the periodic evaluation.
        assets (`list[str]`, *optional*): Assets to train on (all of the dataset's when unset); environment i
            trades `assets[i % len(assets)]`.
        max_episode_steps (`int`, *optional*, defaults to `65`): Episode length (clamped to the window).
        trading_mode (`str`, *optional*, defaults to `"all_in"`): `all_in` or `position` (`paper`: deprecated alias).
        initial_cash (`float`, *optional*, defaults to `100000.0`): Starting cash of each episode.
        transaction_cost_bps (`float`, *optional*, defaults to `0.0`): Trading cost in basis points.
        reward (`str`, *optional*, defaults to `"sharpe_delta"`): The step reward (`flagtrl.rewards`):
            `sharpe_delta` (the paper's eq. 3), `differential_sharpe` (Moody & Saffell 2001) or `log_return`.
        reward_scale (`float`, *optional*, defaults to `1.0`): Multiplies every reward before GAE (e.g. 100 puts
            daily log returns in percent, the scale at which the value head learns at the heads' learning rate).
        sharpe_min_periods (`int`, *optional*, defaults to `10`): `sharpe_delta`'s warm-up: SR_t = 0 until this many
            pnl values exist.
        dsr_eta (`float`, *optional*, defaults to `0.05`): `differential_sharpe`'s adaptation rate.
        dsr_initial_volatility (`float`, *optional*, defaults to `0.01`): `differential_sharpe`'s prior daily
            volatility (a fraction).

        Time limits: an episode that reaches `max_episode_steps` is truncated, not terminated; its last reward is
        bootstrapped with gamma x V(s_T) of the state it stopped in (Pardo et al., "Time Limits in Reinforcement
        Learning", ICML 2018), so the value of a state does not depend on a clock the prompt does not show.

        > Parameters that control the policy and the prompt

        num_trainable_layers (`int`, *optional*, defaults to `2`): Top LLM layers trained (the rest frozen); with
            `ModelConfig.use_peft`, the layers that carry LoRA adapters (`flagtrl.models.lora`; the model's layer
            count for LoRA on every layer).
        policy_head_init (`str`, *optional*, defaults to `"lm_head"`): `lm_head` or `random`.
        price_history_days (`int`, *optional*, defaults to `10`): Prices in the prompt.
        max_news_items (`int`, *optional*, defaults to `3`): News items in the prompt.
        max_prompt_tokens (`int`, *optional*, defaults to `512`): Hard prompt budget.
        decision_history (`int`, *optional*, defaults to `10`): Previous actions, rewards and account values shown
            (each costs tokens of the per-step suffix).
        news_position (`str`, *optional*, defaults to `"last"`): `last` (the day's news after the account, right
            before the answer) or `market` (inside the cached market JSON, the flag-v2 layout); see `PromptConfig`.
        anonymise (`bool`, *optional*, defaults to `False`): Train on anonymised prompts (`PromptConfig.anonymise`:
            no ticker, company names, dates or price levels), so that the policy cannot learn from what it memorised;
            the adapter keeps the setting, and its evaluation uses it.

        > Parameters that control speed (each one exact up to float rounding; turn all off for the plain loop)

        use_trunk_cache (`bool`, *optional*, defaults to `True`): Run the frozen layers once per market prefix
            (asset, date) and keep their keys/values in a `TrunkCache`; each prompt then sends only its account
            suffix through the frozen layers.
        trunk_cache_max_mb (`float`, *optional*, defaults to `2048`): Memory bound of the trunk cache in MiB (least
            recently used prefixes evicted). A prefix costs `num_frozen_layers x 2 x kv_heads x head_dim + hidden_size`
            values per token: ~11 MiB for a 240-token prefix of SmolLM2-135M in float32. Size it to hold every
            (asset, date) of the training windows: episodes revisit them in order, and a smaller LRU evicts each
            prefix just before its next use (the trainer logs `trunk_cache/hit_rate` and warns).
        reuse_rollout_hidden_states (`bool`, *optional*, defaults to `True`): Keep each rollout sample's frozen
            hidden states h1 (`batch_size x prompt_tokens x hidden_size` values; prefixes shared with the cache) so
            that the PPO update runs only the trainable top layers instead of the full model.
        last_token_top_layer (`bool`, *optional*, defaults to `True`): Compute the last trainable layer's attention
            query and MLP for the last token only (the heads read nothing else).

        > Parameters that control evaluation

        eval_max_days (`int`, *optional*): Evaluate on at most this many days of each test window (all when unset).

    Changed defaults (vs `TrainingArguments`): `learning_rate=5e-4`, `gradient_accumulation_steps=8`,
    `max_grad_norm=0.5`, `logging_steps=1`, `gradient_checkpointing=False`, `save_steps=50`, `report_to="none"`,
    `use_cpu=None` (unset: `True` when there is no CUDA or MPS device). `bf16` left unset (TRL's default) is `True` on
    a GPU and, on the CPU, `True` only with `use_cpu` and bf16 that beats float32 (AMX, AMD AVX512-BF16:
    `flagtrl.hardware.cpu_has_fast_bf16`). A value set in the YAML or on the
    command line is never changed (with `bf16` unset, an explicit `use_cpu: false` without a GPU trains in float32 on
    the CPU).
    `llm_learning_rate` (beta) is not given in the paper; 5e-5 is our choice.
    """

    total_timesteps: int = field(default=13860, metadata={"help": "Environment steps of the whole run."})
    num_envs: int = field(default=1, metadata={"help": "Environments stepped together per rank."})
    num_steps: int = field(default=40, metadata={"help": "Steps per environment per rollout."})
    gamma: float = field(default=0.95, metadata={"help": "Discount factor."})
    gae_lambda: float = field(default=0.98, metadata={"help": "GAE lambda."})
    update_epochs: int = field(default=1, metadata={"help": "Passes over each rollout."})
    minibatch_size: int = field(default=32, metadata={"help": "Samples per optimizer step."})
    norm_adv: bool = field(default=True, metadata={"help": "Normalise advantages per minibatch."})
    clip_coef: float = field(default=0.2, metadata={"help": "Surrogate (and value) clipping coefficient."})
    clip_vloss: bool = field(default=True, metadata={"help": "Clip the value loss."})
    ent_coef: float = field(default=0.05, metadata={"help": "Entropy bonus coefficient."})
    vf_coef: float = field(default=0.5, metadata={"help": "Value loss coefficient."})
    kl_coef: float = field(default=0.05, metadata={"help": "Coefficient of KL(pi || pi_ref)."})
    target_kl: float | None = field(default=None, metadata={"help": "Approximate-KL threshold for early stopping."})
    anneal_lr: bool = field(default=True, metadata={"help": "Anneal learning rates linearly to 0."})
    llm_learning_rate: float = field(default=5e-5, metadata={"help": "Learning rate of the trainable LLM layers."})

    dataset_train_split: str = field(default="train", metadata={"help": "Split of the training windows."})
    dataset_test_split: str = field(default="test", metadata={"help": "Split of the evaluation windows."})
    assets: list[str] | None = field(default=None, metadata={"help": "Assets to train on (default: all)."})
    max_episode_steps: int = field(default=65, metadata={"help": "Episode length in trading days."})
    trading_mode: str = field(default="all_in", metadata={"help": "Trading mode: all_in or position."})
    initial_cash: float = field(default=100_000.0, metadata={"help": "Starting cash of each episode."})
    transaction_cost_bps: float = field(default=0.0, metadata={"help": "Trading cost in basis points."})
    reward: str = field(
        default="sharpe_delta",
        metadata={"help": "Step reward: sharpe_delta (paper eq. 3), differential_sharpe or log_return."},
    )
    reward_scale: float = field(default=1.0, metadata={"help": "Multiplier of every reward before GAE."})
    sharpe_min_periods: int = field(default=10, metadata={"help": "sharpe_delta: SR is 0 until this many pnl values."})
    dsr_eta: float = field(default=0.05, metadata={"help": "differential_sharpe: adaptation rate of the moments."})
    dsr_initial_volatility: float = field(
        default=0.01, metadata={"help": "differential_sharpe: prior daily volatility (a fraction)."}
    )

    num_trainable_layers: int = field(default=2, metadata={"help": "Top LLM layers to train."})
    policy_head_init: str = field(default="lm_head", metadata={"help": "Policy head init: lm_head or random."})
    price_history_days: int = field(default=10, metadata={"help": "Closing prices shown in the prompt."})
    max_news_items: int = field(default=3, metadata={"help": "News items shown in the prompt."})
    max_prompt_tokens: int = field(default=512, metadata={"help": "Hard token budget of the prompt."})
    decision_history: int = field(default=10, metadata={"help": "Previous decisions shown in the prompt."})
    news_position: str = field(
        default="last", metadata={"help": "Where the news go: last (before the answer) or market."}
    )
    anonymise: bool = field(
        default=False, metadata={"help": "Anonymised prompts: no ticker, names, dates or price levels."}
    )

    use_trunk_cache: bool = field(
        default=True, metadata={"help": "Cache the frozen layers' keys/values per market prefix (asset, date)."}
    )
    trunk_cache_max_mb: float = field(default=2048, metadata={"help": "Memory bound of the trunk cache in MiB."})
    reuse_rollout_hidden_states: bool = field(
        default=True, metadata={"help": "PPO update on the rollout's frozen hidden states (top layers only)."}
    )
    last_token_top_layer: bool = field(
        default=True, metadata={"help": "Last trainable layer's query and MLP on the last token only."}
    )

    eval_max_days: int | None = field(default=None, metadata={"help": "Cap on the days of each evaluation window."})

    # Changed defaults
    learning_rate: float = field(default=5e-4, metadata={"help": "Learning rate of the heads (eta)."})
    gradient_accumulation_steps: int = field(default=8, metadata={"help": "Micro-batches per minibatch."})
    max_grad_norm: float = field(default=0.5, metadata={"help": "Gradient clipping norm."})
    logging_steps: float = field(default=1, metadata={"help": "Log every X PPO iterations."})
    gradient_checkpointing: bool = field(default=False, metadata={"help": "Not used by the PPO loop."})
    save_steps: float = field(default=50, metadata={"help": "Checkpoint every X PPO iterations."})
    report_to: str | list[str] = field(default="none", metadata={"help": "Trackers: none, wandb, tensorboard..."})
    use_cpu: bool | None = field(
        default=None, metadata={"help": "Train on the CPU. Unset: on the CPU when there is no CUDA or MPS device."}
    )

    def prompt_config(self) -> PromptConfig:
        """The prompt settings of this config as a `PromptConfig` (pass `vars(...)` to `FlagPolicy.from_backbone`)."""
        return PromptConfig(
            price_history_days=self.price_history_days,
            max_news_items=self.max_news_items,
            max_prompt_tokens=self.max_prompt_tokens,
            news_position=self.news_position,
            decision_history=self.decision_history,
            anonymise=self.anonymise,
        )

    def __post_init__(self):
        # Only the values left unset (auto, `None`) are resolved here; a value the user set is kept as set.
        has_accelerator = torch.cuda.is_available() or torch.backends.mps.is_available()
        if self.use_cpu is None:
            self.use_cpu = not has_accelerator
            logger.info("use_cpu unset: use_cpu=%s (CUDA or MPS device: %s).", self.use_cpu, has_accelerator)
        if self.bf16 is None and not self.fp16 and (self.use_cpu or not has_accelerator):
            # bf16 autocast only where it beats float32 (AMX, AMD AVX512-BF16; slower on other CPUs: `flagtrl.hardware`), and only
            # with use_cpu: transformers refuses bf16 without a GPU otherwise.
            self.bf16 = self.use_cpu and cpu_has_fast_bf16()
            logger.info("bf16 unset on the CPU: bf16=%s (use_cpu=%s).", self.bf16, self.use_cpu)
        super().__post_init__()
        self.trading_mode = resolve_trading_mode(self.trading_mode)  # a deprecated alias resolves, with a warning
        if self.num_envs < 1 or self.num_steps < 1:
            raise ValueError(f"num_envs and num_steps must be >= 1, got {self.num_envs} and {self.num_steps}.")
        if self.total_timesteps < self.batch_size:
            raise ValueError(
                f"total_timesteps={self.total_timesteps} is less than one rollout "
                f"(num_envs x num_steps = {self.batch_size})."
            )
        get_reward_function(  # a bad reward name or parameter fails here, not after the first rollout
            self.reward,
            sharpe_min_periods=self.sharpe_min_periods,
            dsr_eta=self.dsr_eta,
            dsr_initial_volatility=self.dsr_initial_volatility,
        )
        if not self.reward_scale > 0:
            raise ValueError(f"reward_scale must be positive, got {self.reward_scale}.")
        if self.minibatch_size < 1:
            raise ValueError(f"minibatch_size must be >= 1, got {self.minibatch_size}.")
        if self.trunk_cache_max_mb < 0:
            raise ValueError(f"trunk_cache_max_mb must be >= 0, got {self.trunk_cache_max_mb}.")

    @property
    def reward_kwargs(self) -> dict:
        """The reward's parameters, as `TradingEnv(reward_kwargs=...)` takes them."""
        return {
            "sharpe_min_periods": self.sharpe_min_periods,
            "dsr_eta": self.dsr_eta,
            "dsr_initial_volatility": self.dsr_initial_volatility,
        }

    @property
    def eval_interval(self) -> int | None:
        """PPO iterations between evaluations: `eval_steps`, or that fraction of the run when it is below 1 (as
        `TrainingArguments` reads a fractional value); `None` when evaluation is off."""
        if self.eval_strategy == "no" or not self.eval_steps:
            return None
        if self.eval_steps < 1:
            return max(1, math.ceil(self.eval_steps * self.num_iterations))
        return int(self.eval_steps)

    @property
    def batch_size(self) -> int:
        """Samples per rollout and rank: num_envs x num_steps."""
        return self.num_envs * self.num_steps

    @property
    def num_iterations(self) -> int:
        """PPO iterations of the run (total_timesteps is counted across ranks)."""
        return max(1, self.total_timesteps // (self.batch_size * max(1, self.world_size)))
