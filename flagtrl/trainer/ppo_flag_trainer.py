"""`FlagPPOTrainer`: FLAG-Trader's PPO (paper Appendix A) on TRL's trainer base.

TRL 1.16 has no PPO (removed in TRL PR #7020), and its last one generated free text against a reward model; FLAG-Trader's policy acts
in an environment. So the PPO loop lives here, read top to bottom like CleanRL's `ppo.py`, on `trl`'s `_BaseTrainer`:
`report_to`, logging callbacks and the progress bar, `push_to_hub`, the model card and accelerate (CPU, one GPU, DDP)
work as in any TRL trainer. One `global_step` is one PPO iteration: a rollout of `num_envs` x `num_steps` environment
steps, GAE, then `update_epochs` passes of clipped-surrogate minibatch updates with a value loss, an entropy bonus and
a KL penalty to the reference policy. Checkpoints hold the adapter, the optimizer, the scheduler, every RNG and the
environments' mid-episode state, so an interrupted run resumed gives the weights of an uninterrupted one.

Speed (each behind a config switch, all exact up to float rounding): the frozen layers run once per market prefix
(asset, date) through a `TrunkCache` and then only on each prompt's account suffix (`use_trunk_cache`); the update
reuses the rollout's frozen hidden states and runs only the trainable top layers (`reuse_rollout_hidden_states`); the
reference policy shares the frozen computation; the last trainable layer works on the last token only
(`last_token_top_layer`).
"""

from __future__ import annotations

import contextlib
import json
import logging
import os
import random
import time
from collections import defaultdict
from pathlib import Path

import numpy as np
import torch
from datasets import DatasetDict
from huggingface_hub import ModelCard
from transformers.trainer import OPTIMIZER_NAME, SCHEDULER_NAME, TRAINER_STATE_NAME
from transformers.trainer_utils import PREFIX_CHECKPOINT_DIR, get_last_checkpoint, rotate_checkpoints
from trl.trainer.base_trainer import _BaseTrainer

from ..actions import BUY, NUM_ACTIONS, SELL
from ..agents.baselines import BuyAndHoldAgent
from ..agents.flag_agent import FlagAgent
from ..backtest import evaluate_agents, split_windows
from ..data.schema import FULL_SPLIT, list_assets, market_series
from ..envs.trading_env import TradingEnv
from ..models.flag_policy import FlagPolicy
from ..models.trunk_cache import FrozenStates, TrunkCache
from ..prompt import PromptBuilder, PromptConfig
from ..rewards import running_sharpe
from .model_card import add_adapter_sections
from .ppo_flag_config import FlagPPOConfig
from .ppo_math import (
    categorical_kl,
    clipped_policy_loss,
    clipped_value_loss,
    compute_gae,
    explained_variance,
    masked_entropy,
    normalize_advantages,
)


logger = logging.getLogger(__name__)

# Each rank samples its own actions and episodes: the sampling generator's seed moves by RANK_SEED_STRIDE a rank and
# environment i of a rank is seeded seed + ENV_SEED_STRIDE * rank + i, so two ranks' environments share no seed while
# a rank has fewer than ENV_SEED_STRIDE environments.
RANK_SEED_STRIDE, ENV_SEED_STRIDE = 7919, 1000
# The rollout tensors that the update reads per micro-batch (moved to the model's device there).
UPDATE_TENSORS = ("masks", "actions", "log_probs", "values", "returns", "ref_log_probs")


def model_prompt_config(model: FlagPolicy, args: FlagPPOConfig) -> PromptConfig:
    """The prompt settings to train with, read from the model and checked against the config (the model owns its
    settings; the trainer never writes them).

    A model built without prompt settings (`FlagPolicy.from_backbone(..., prompt_config=None)`) takes the config's;
    `save_model` records them in the saved adapter.

    Raises:
        `ValueError`: if the model's prompt settings or `last_token_top_layer` differ from the config's.
    """
    configured = args.prompt_config()
    if model.config_flag.prompt_config:
        own = PromptConfig(**model.config_flag.prompt_config)
        if own != configured:
            raise ValueError(
                f"The policy was built with prompt settings {own}, but the training config asks for {configured}: "
                "pass the config's to FlagPolicy.from_backbone(prompt_config=...)."
            )
    else:
        logger.info("The policy was built without prompt settings: training with the config's %s.", configured)
    if model.last_token_top_layer != args.last_token_top_layer:
        raise ValueError(
            f"The policy was built with last_token_top_layer={model.last_token_top_layer}, but the training config "
            f"asks for last_token_top_layer={args.last_token_top_layer}: pass the config's to "
            "FlagPolicy.from_backbone(last_token_top_layer=...)."
        )
    return configured


def rollout_state_name(rank: int) -> str:
    return f"rollout_state_rank{rank}.pt"


# A checkpoint records the settings that shape a run's trajectory; resuming it under other values of any of them would
# silently splice two different runs (or fail deep inside `load_state_dict`). Budget, logging, saving and evaluation
# settings may change on resume (e.g. a larger `total_timesteps` continues a finished run).
RUN_SETTINGS_NAME = "run_settings.json"
RUN_SETTING_KEYS = (
    "seed", "assets", "dataset_train_split", "num_envs", "num_steps", "minibatch_size", "gradient_accumulation_steps",
    "update_epochs", "gamma", "gae_lambda", "learning_rate", "llm_learning_rate", "anneal_lr", "clip_coef", "vf_coef",
    "ent_coef", "kl_coef", "target_kl", "reward", "reward_kwargs", "reward_scale", "trading_mode", "max_episode_steps",
    "initial_cash", "transaction_cost_bps",
)  # fmt: skip


def run_settings(model: FlagPolicy, args: FlagPPOConfig, prompt_config: PromptConfig) -> dict:
    """What a checkpoint of this run must have been written with to be resumed (JSON-ready)."""
    settings = {key: getattr(args, key) for key in RUN_SETTING_KEYS}
    lora = model.peft_config
    settings["policy"] = {
        "trainable_layers": len(model.trainable_layers),
        "adapter": "top_layers" if lora is None else "lora",
        **(
            {}
            if lora is None
            else {"lora_r": lora.r, "lora_alpha": lora.lora_alpha, "target_modules": sorted(lora.target_modules)}
        ),
    }
    settings["prompt"] = prompt_config.fingerprint()
    return json.loads(json.dumps(settings, default=str))


class FlagPPOTrainer(_BaseTrainer):
    """Train a `FlagPolicy` with PPO on market episodes.

    Args:
        model (`FlagPolicy`): The actor-critic (its reference policy is the KL anchor).
        args (`FlagPPOConfig`): Training configuration.
        dataset (`datasets.DatasetDict`): A prepared market dataset (splits `full`, `train`, `test`).
        processing_class (`PreTrainedTokenizerBase`): The tokenizer, with a chat template.
        callbacks (`list[TrainerCallback]`, *optional*): Extra callbacks.
    """

    _tag_names = ["trl", "ppo", "flag-trader", "flagtrl", "trading"]
    _name = "FLAG-Trader PPO"
    _paper = {
        "title": "FLAG-Trader: Fusion LLM-Agent with Gradient-based Reinforcement Learning for Financial Trading",
        "id": "2502.11433",
        "citation": (
            "@inproceedings{xiong2025flagtrader,\n  title={{FLAG-Trader: Fusion LLM-Agent with Gradient-based "
            "Reinforcement Learning for Financial Trading}},\n  author={Xiong, Guojun and others},\n"
            "  booktitle={Findings of ACL},\n  year={2025}\n}"
        ),
    }

    def __init__(
        self,
        model: FlagPolicy,
        args: FlagPPOConfig,
        dataset: DatasetDict,
        processing_class,
        callbacks=None,
    ):
        if not isinstance(model, FlagPolicy):
            raise TypeError(f"FlagPPOTrainer trains a FlagPolicy, got {type(model).__name__}.")
        for split in (FULL_SPLIT, args.dataset_train_split):
            if split not in dataset:
                raise ValueError(f"The dataset has splits {list(dataset)}; the trainer needs {split!r}.")
        self.dataset = dataset
        super().__init__(
            model=model,
            args=args,
            train_dataset=dataset[args.dataset_train_split],
            # The periodic evaluation backtests the test windows (`evaluate`); transformers only checks it exists.
            eval_dataset=dataset[args.dataset_test_split] if args.dataset_test_split in dataset else None,
            processing_class=processing_class,
            callbacks=callbacks,
        )
        self.prompt_config = model_prompt_config(model, args)
        self.builder = PromptBuilder(processing_class, self.prompt_config)
        self.pad_token_id = processing_class.pad_token_id if processing_class.pad_token_id is not None else 0
        self.train_assets = [a.upper() for a in (args.assets or list_assets(dataset[args.dataset_train_split]))]
        self.series = {asset: market_series(dataset, asset) for asset in self.train_assets}
        self.train_windows = split_windows(dataset, args.dataset_train_split, self.train_assets)
        self.envs = [self._make_env(i) for i in range(args.num_envs)]
        self.rank = self.accelerator.process_index
        self.sampling_generator = torch.Generator().manual_seed(args.seed + RANK_SEED_STRIDE * self.rank)
        self.next_done = torch.zeros(args.num_envs)
        self.episode_stats: dict[str, list[float]] = defaultdict(list)
        self._envs_started = False
        # Derived state only: never checkpointed (a resumed run recomputes the same prefixes bit for bit).
        self.trunk_cache = TrunkCache(args.trunk_cache_max_mb) if args.use_trunk_cache else None
        self._warned_evictions = False
        self._fixed_eval_results: dict[int | None, dict] = {}
        self.last_eval_results: dict | None = None
        self._last_eval: tuple[tuple, dict[str, float]] | None = None  # ((step, max_days, prefix), metrics)

    # --- environments --------------------------------------------------------------------------------------------
    def _make_env(self, index: int) -> TradingEnv:
        args = self.args
        asset = self.train_assets[index % len(self.train_assets)]
        series, window = self.series[asset], self.train_windows[asset]
        first, last = series.window(*window)
        length = min(args.max_episode_steps, last - first)
        if length < args.max_episode_steps:
            logger.warning(
                "The %s window of %s (%s → %s) holds %d steps: episodes are %d steps instead of max_episode_steps=%d.",
                args.dataset_train_split,
                asset,
                *window,
                last - first,
                length,
                args.max_episode_steps,
            )
        return TradingEnv(
            series,
            window=window,
            episode_length=length,
            random_start=True,
            initial_cash=args.initial_cash,
            transaction_cost_bps=args.transaction_cost_bps,
            mode=args.trading_mode,
            reward=args.reward,
            reward_kwargs=args.reward_kwargs,
        )

    def _start_envs(self) -> None:
        for i, env in enumerate(self.envs):
            env.reset(seed=self.args.seed + ENV_SEED_STRIDE * self.rank + i)
        self._envs_started = True

    # --- optimisation --------------------------------------------------------------------------------------------
    def create_optimizer(self, model=None):
        """AdamW with two parameter groups: heads at eta (`learning_rate`), LLM layers at beta (`llm_learning_rate`)."""
        if self.optimizer is None:
            policy: FlagPolicy = self.model
            groups = [
                {"params": policy.head_parameters(), "lr": self.args.learning_rate, "name": "heads"},
                {"params": policy.llm_parameters(), "lr": self.args.llm_learning_rate, "name": "llm"},
            ]
            self.optimizer = torch.optim.AdamW(groups, eps=1e-5, weight_decay=self.args.weight_decay)
        return self.optimizer

    def create_scheduler(self, num_training_steps: int, optimizer=None):
        """Linear annealing to 0 over the PPO iterations (CleanRL's `anneal_lr`), or constant."""
        if self.lr_scheduler is None:
            if self.args.anneal_lr:

                def schedule(done: int) -> float:
                    return max(0.0, 1.0 - done / num_training_steps)

            else:

                def schedule(done: int) -> float:
                    return 1.0

            self.lr_scheduler = torch.optim.lr_scheduler.LambdaLR(optimizer or self.optimizer, schedule)
        return self.lr_scheduler

    # --- the loop --------------------------------------------------------------------------------------------------
    def train(self, resume_from_checkpoint: str | bool | None = None, **kwargs):
        args, accelerator = self.args, self.accelerator
        policy: FlagPolicy = self.model
        num_iterations = args.num_iterations
        self.create_optimizer()
        self.create_scheduler(num_iterations)
        self.model_wrapped, self.optimizer = accelerator.prepare(policy, self.optimizer)
        self.state.max_steps = num_iterations
        self.state.logging_steps, self.state.save_steps = args.logging_steps, args.save_steps
        self.state.global_step = 0
        if resume_from_checkpoint is True:
            resume_from_checkpoint = get_last_checkpoint(args.output_dir)
            if resume_from_checkpoint is None:
                logger.warning("No checkpoint in %s: training from scratch.", args.output_dir)
        if resume_from_checkpoint:
            self._load_checkpoint(resume_from_checkpoint)
        elif not self._envs_started:
            self._start_envs()

        self.control = self.callback_handler.on_train_begin(args, self.state, self.control)
        start_time, start_step = time.time(), self.state.global_step
        for iteration in range(self.state.global_step + 1, num_iterations + 1):
            self.control = self.callback_handler.on_step_begin(args, self.state, self.control)
            rollout_start = time.time()
            batch = self._rollout()
            rollout_time = time.time() - rollout_start
            stats = self._update(batch)
            if self.trunk_cache is not None:
                stats.update(self.trunk_cache.stats())
                self._warn_on_evictions()
            self.lr_scheduler.step()
            self.state.global_step = iteration
            self.state.epoch = iteration / num_iterations
            env_steps = (iteration - start_step) * args.batch_size * accelerator.num_processes
            stats.update(
                {
                    "time/rollout_seconds": rollout_time,
                    "time/env_steps_per_second": env_steps / (time.time() - start_time),
                    "env/total_steps": iteration * args.batch_size * accelerator.num_processes,
                    "lr/heads": self.optimizer.param_groups[0]["lr"],
                    "lr/llm": self.optimizer.param_groups[1]["lr"],
                }
            )
            stats.update(self._pop_episode_stats())
            self.control = self.callback_handler.on_step_end(args, self.state, self.control)
            if self.control.should_log or iteration == num_iterations:
                self.log(self._reduce(stats))
            if args.eval_interval and iteration % args.eval_interval == 0:
                self.evaluate()
            if self.control.should_save or (args.save_strategy != "no" and iteration == num_iterations):
                self._save_rollout_checkpoint()
                self.control = self.callback_handler.on_save(args, self.state, self.control)
            if self.control.should_training_stop:
                break
        self.control = self.callback_handler.on_train_end(args, self.state, self.control)
        return self.state

    @property
    def _uses_frozen_states(self) -> bool:
        """Whether h1 goes through `FlagPolicy.frozen_states` (to be cached or kept) rather than a plain forward."""
        return self.trunk_cache is not None or self.args.reuse_rollout_hidden_states

    def _frozen_states(self, prompts) -> FrozenStates:
        with self.accelerator.autocast():
            return self.model.frozen_states(prompts, self.trunk_cache, self.pad_token_id)

    @torch.no_grad()
    def _policy_step(self, prompts, masks: torch.Tensor, with_reference: bool, frozen: FrozenStates | None = None):
        """pi, V (and pi_ref) of a batch of prompts; from `frozen` (their h1) when given."""
        policy: FlagPolicy = self.model
        masks = masks.to(policy.device)
        with self.accelerator.autocast():
            if frozen is None:
                batch = policy.collate(prompts, self.pad_token_id)
                return policy(batch["input_ids"], batch["attention_mask"], masks, with_reference)
            hidden, attention_mask = frozen.padded()
            return policy(None, attention_mask, masks, with_reference, frozen_hidden=hidden)

    def _state_values(self, states) -> torch.Tensor:
        """V(s) of a list of `TradingState`s (no sampling, no reference), on the CPU."""
        encoded = [self.builder.encode(state) for state in states]
        masks = torch.as_tensor(np.stack([state.action_mask for state in states])).bool()
        frozen = self._frozen_states(encoded) if self._uses_frozen_states else None
        return self._policy_step(encoded, masks, with_reference=False, frozen=frozen).values.float().cpu()

    def _rollout(self) -> dict:
        """Step the `num_envs` environments `num_steps` times with the current policy (one batched forward per step)."""
        args = self.args
        steps, envs = args.num_steps, self.envs
        num_envs = len(envs)
        prompts: list = []
        masks = torch.zeros(steps, num_envs, NUM_ACTIONS, dtype=torch.bool)
        actions = torch.zeros(steps, num_envs, dtype=torch.long)
        log_probs, values = torch.zeros(steps, num_envs), torch.zeros(steps, num_envs)
        ref_log_probs = torch.zeros(steps, num_envs, NUM_ACTIONS)
        rewards, dones = torch.zeros(steps, num_envs), torch.zeros(steps, num_envs)
        env_rewards = torch.zeros(steps, num_envs)  # as the environment gave them: no scale, no bootstrap
        frozen_states: list[FrozenStates] = []
        for step in range(steps):
            states = [env.state() for env in envs]
            encoded = [self.builder.encode(state) for state in states]
            masks[step] = torch.as_tensor(np.stack([s.action_mask for s in states])).bool()
            frozen = self._frozen_states(encoded) if self._uses_frozen_states else None
            if frozen is not None and args.reuse_rollout_hidden_states:
                frozen_states.append(frozen)
            out = self._policy_step(encoded, masks[step], with_reference=args.kl_coef > 0, frozen=frozen)
            probs = out.log_probs.exp().cpu()
            action = torch.multinomial(probs, 1, generator=self.sampling_generator).squeeze(-1)
            prompts.append(encoded)
            dones[step] = self.next_done
            actions[step] = action
            log_probs[step] = out.log_probs.cpu().gather(1, action[:, None]).squeeze(1)
            values[step] = out.values.cpu()
            if out.ref_log_probs is not None:
                ref_log_probs[step] = out.ref_log_probs.cpu()
            time_limited = []
            for i, env in enumerate(envs):
                _, reward, terminated, truncated, info = env.step(int(action[i]))
                env_rewards[step, i] = reward
                rewards[step, i] = reward * args.reward_scale
                done = terminated or truncated
                self.next_done[i] = float(done)
                if truncated and not terminated:
                    time_limited.append((i, info["state"]))
                if done:
                    self._record_episode(env, info)
                    env.reset()
            if time_limited:
                # A time limit is not a state of the MDP: bootstrap from the state the episode stopped in.
                index = torch.tensor([i for i, _ in time_limited])
                rewards[step, index] += args.gamma * self._state_values([state for _, state in time_limited])
        next_states = [env.state() for env in envs]
        next_masks = torch.as_tensor(np.stack([s.action_mask for s in next_states])).bool()
        next_prompts = [self.builder.encode(s) for s in next_states]
        next_frozen = self._frozen_states(next_prompts) if self._uses_frozen_states else None
        next_value = self._policy_step(next_prompts, next_masks, False, frozen=next_frozen).values.cpu()
        advantages, returns = compute_gae(
            rewards, values, dones, next_value, self.next_done, args.gamma, args.gae_lambda
        )
        flat = [p for step_prompts in prompts for p in step_prompts]
        batch = {
            "prompts": flat,
            "masks": masks.reshape(-1, NUM_ACTIONS),
            "actions": actions.reshape(-1),
            "log_probs": log_probs.reshape(-1),
            "values": values.reshape(-1),
            "ref_log_probs": ref_log_probs.reshape(-1, NUM_ACTIONS),
            "advantages": advantages.reshape(-1),
            "returns": returns.reshape(-1),
            "rewards": rewards.reshape(-1),
            "env_rewards": env_rewards.reshape(-1),
        }
        if frozen_states:  # h1 of every sample, in the order of `prompts`, for the update
            batch["frozen_states"] = FrozenStates.concat(frozen_states)
        return batch

    def _record_episode(self, env: TradingEnv, info: dict) -> None:
        self.episode_stats["market/episode_return"].append(env.account_value / env.initial_cash - 1.0)
        # SR_T of the whole episode's pnl, per step (0 for a flat account): the final value of the `sharpe_delta` sum.
        self.episode_stats["market/episode_sharpe"].append(running_sharpe(env.pnl))
        self.episode_stats["market/episode_trades"].append(float(sum(a != "hold" for a in env.past_actions)))

    def _pop_episode_stats(self) -> dict[str, float]:
        stats = {k: float(np.mean(v)) for k, v in self.episode_stats.items() if v}
        if stats:
            stats["market/episodes"] = float(len(self.episode_stats["market/episode_return"]))
        self.episode_stats.clear()
        return stats

    def _update(self, batch: dict) -> dict[str, float]:
        """`update_epochs` passes of minibatch PPO updates over one rollout (CleanRL's loop: forward, losses, backward,
        clip, step). The losses stay on the model's device; statistics go to the CPU only to be logged."""
        args, accelerator = self.args, self.accelerator
        model, policy = self.model_wrapped, self.model
        size = len(batch["prompts"])
        stats: dict[str, list[float]] = defaultdict(list)
        for _ in range(args.update_epochs):
            order = torch.randperm(size, generator=self.sampling_generator)
            for start in range(0, size, args.minibatch_size):
                minibatch = order[start : start + args.minibatch_size]
                advantages = batch["advantages"][minibatch]
                if args.norm_adv:
                    advantages = normalize_advantages(advantages)
                # Gradient accumulation: micro-batches of one minibatch add up their gradients before one step.
                micro_batches = minibatch.tensor_split(min(args.gradient_accumulation_steps, len(minibatch)))
                micro_advantages = advantages.split([len(micro) for micro in micro_batches])
                for k, micro in enumerate(micro_batches):
                    inputs, old = self._micro_batch_inputs(batch, micro, micro_advantages[k])
                    last = k == len(micro_batches) - 1
                    sync = contextlib.nullcontext() if last else accelerator.no_sync(model)
                    with sync, accelerator.autocast():
                        out = model(
                            inputs["input_ids"],
                            inputs["attention_mask"],
                            old["masks"],
                            frozen_hidden=inputs["frozen_hidden"],
                        )
                        new_log_probs = out.log_probs.gather(1, old["actions"][:, None]).squeeze(1)
                        pg_loss, approx_kl, old_approx_kl, clip_fraction = clipped_policy_loss(
                            new_log_probs, old["log_probs"], old["advantages"], args.clip_coef
                        )
                        v_loss = clipped_value_loss(
                            out.values, old["values"], old["returns"], args.clip_coef, args.clip_vloss
                        )
                        entropy = masked_entropy(out.log_probs).mean()
                        loss = pg_loss - args.ent_coef * entropy + args.vf_coef * v_loss
                        kl = None
                        if args.kl_coef > 0:  # without it the rollout computed no reference log-probs
                            kl = categorical_kl(out.log_probs, old["ref_log_probs"]).mean()
                            loss = loss + args.kl_coef * kl
                        accelerator.backward(loss * len(micro) / len(minibatch))
                    logged = {
                        "objective/kl": kl,
                        "policy/loss": pg_loss,
                        "policy/approx_kl": approx_kl,
                        "policy/old_approx_kl": old_approx_kl,
                        "policy/clipfrac": clip_fraction,
                        "value/loss": v_loss,
                        "policy/entropy": entropy,
                        "objective/loss": loss,
                    }
                    for name, value in logged.items():
                        if value is not None:
                            stats[name].append(float(value.detach()))
                if args.max_grad_norm and args.max_grad_norm > 0:
                    grad_norm = accelerator.clip_grad_norm_(
                        [p for p in policy.parameters() if p.requires_grad], args.max_grad_norm
                    )
                    stats["policy/grad_norm"].append(float(grad_norm))
                self.optimizer.step()
                self.optimizer.zero_grad(set_to_none=True)
            if args.target_kl is not None and np.mean(stats["policy/approx_kl"]) > args.target_kl:
                break
        result = {name: float(np.mean(v)) for name, v in stats.items()}
        result.update(
            {
                "value/explained_variance": explained_variance(batch["values"], batch["returns"]),
                "objective/reward_mean": float(batch["env_rewards"].mean()),
                "policy/action_buy_fraction": float((batch["actions"] == BUY).float().mean()),
                "policy/action_sell_fraction": float((batch["actions"] == SELL).float().mean()),
            }
        )
        return result

    def _micro_batch_inputs(
        self, batch: dict, micro: torch.Tensor, advantages: torch.Tensor
    ) -> tuple[dict[str, torch.Tensor | None], dict[str, torch.Tensor]]:
        """What the update needs of the samples `micro` of a rollout batch, on the model's device: the model inputs
        and the rollout's tensors (`UPDATE_TENSORS` and the micro-batch's `advantages`).

        The inputs come one of three ways: h1 kept from the rollout (`reuse_rollout_hidden_states`), h1 from the trunk
        cache (`use_trunk_cache`), or the token ids for a full forward. With h1 given, only the trainable top layers
        run.

        Returns:
            `tuple[dict, dict]`: the inputs, `input_ids` (`None` with h1), `attention_mask` and `frozen_hidden` (`None`
            without h1); and the rollout's tensors by name.
        """
        device = self.model.device
        old = {key: batch[key][micro].to(device) for key in UPDATE_TENSORS}
        old["advantages"] = advantages.to(device)
        return self._model_inputs(batch, micro), old

    def _model_inputs(self, batch: dict, micro: torch.Tensor) -> dict[str, torch.Tensor | None]:
        """The model inputs of the samples `micro`, by the first of the three ways that applies (`_micro_batch_inputs`)."""
        if "frozen_states" in batch:
            frozen = batch["frozen_states"].select(micro)
        elif self.trunk_cache is not None:
            frozen = self._frozen_states([batch["prompts"][i] for i in micro.tolist()])
        else:
            inputs = self.model.collate([batch["prompts"][i] for i in micro.tolist()], self.pad_token_id)
            return {
                "input_ids": inputs["input_ids"],
                "attention_mask": inputs["attention_mask"],
                "frozen_hidden": None,
            }
        hidden, attention_mask = frozen.padded()
        return {"input_ids": None, "attention_mask": attention_mask, "frozen_hidden": hidden}

    def _warn_on_evictions(self) -> None:
        cache = self.trunk_cache
        if self._warned_evictions or not cache.evictions or not cache.entries:
            return
        self._warned_evictions = True
        entry_mb = cache.size_bytes / len(cache.entries) / 2**20
        windows = [self.series[asset].window(*self.train_windows[asset]) for asset in self.train_assets]
        days = sum(last - first + 1 for first, last in windows)
        logger.warning(
            "The trunk cache is full (%d prefixes, %.0f MiB) and evicts: episodes revisit the same days, so an LRU "
            "smaller than the %d (asset, date) prefixes of the training windows can miss on nearly every step. "
            "trunk_cache_max_mb=%d would hold them all (%.1f MiB each).",
            len(cache.entries),
            cache.size_bytes / 2**20,
            days,
            int(days * entry_mb) + 1,
            entry_mb,
        )

    def _reduce(self, stats: dict[str, float]) -> dict[str, float]:
        """Mean of each statistic over the ranks (each rank rolled out its own environments)."""
        if self.accelerator.num_processes == 1:
            return stats
        keys = sorted(stats)
        local = torch.tensor([stats[k] for k in keys], dtype=torch.float64, device=self.accelerator.device)
        reduced = self.accelerator.reduce(local, reduction="mean")
        return dict(zip(keys, reduced.tolist()))

    # --- evaluation --------------------------------------------------------------------------------------------
    def evaluate(
        self,
        eval_dataset=None,
        ignore_keys=None,
        metric_key_prefix: str = "eval",
        max_days: int | None = None,
    ) -> dict[str, float]:
        """Greedy backtest on the test windows of the training assets: the policy (`flag_trader`), the untrained
        policy (`untrained`: the frozen reference, computed once) and `buy_and_hold`; logged as
        `eval/<asset>/<agent>/<convention>_<metric>` and kept in `last_eval_results`. A second call at the same
        training step with the same `max_days` (e.g. the recipe's final backtest right after the periodic evaluation
        of the last iteration) returns the same metrics without backtesting the unchanged policy again.

        Args:
            max_days (`int`, *optional*): Days of each test window (default `eval_max_days`; all when both unset).
        """
        metrics: dict[str, float] = {}
        max_days = self.args.eval_max_days if max_days is None else max_days
        eval_key = (self.state.global_step, max_days, metric_key_prefix)
        if self._last_eval is not None and self._last_eval[0] == eval_key:
            return dict(self._last_eval[1])
        if self.accelerator.is_main_process and self.args.dataset_test_split in self.dataset:
            policy: FlagPolicy = self.model
            was_training = policy.training
            policy.eval()
            common = dict(
                max_days=max_days,
                mode=self.args.trading_mode,
                transaction_cost_bps=self.args.transaction_cost_bps,
                reward=self.args.reward,
                reward_kwargs=self.args.reward_kwargs,
            )
            split, assets = self.args.dataset_test_split, self.train_assets
            agents = {"flag_trader": FlagAgent(policy, self.processing_class, self.prompt_config)}
            results = evaluate_agents(agents, self.dataset, split, assets, **common)
            # The untrained policy and buy-and-hold never change: backtest them once per window length.
            if self._fixed_eval_results.get(max_days) is None:
                fixed = {"buy_and_hold": BuyAndHoldAgent()}
                if policy.reference is not None:
                    fixed["untrained"] = FlagAgent(
                        policy, self.processing_class, self.prompt_config, name="untrained", reference=True
                    )
                self._fixed_eval_results[max_days] = evaluate_agents(fixed, self.dataset, split, assets, **common)
            results.update(self._fixed_eval_results[max_days])
            policy.train(was_training)
            for (agent_name, asset), result in results.items():
                for convention, values in result.metrics.items():
                    for key in ("cumulative_return", "sharpe_ratio", "max_drawdown"):
                        metrics[f"{metric_key_prefix}/{asset}/{agent_name}/{convention}_{key}"] = getattr(values, key)
            self.log(metrics)
            self.last_eval_results = results
        self._last_eval = (eval_key, dict(metrics))
        self.accelerator.wait_for_everyone()
        return metrics

    # --- saving and resuming ---------------------------------------------------------------------------------------
    def save_model(self, output_dir: str | None = None, _internal_call: bool = False) -> None:
        """Save the adapter (trainable layers + heads, safetensors) and the tokenizer."""
        output_dir = output_dir or self.args.output_dir
        if self.accelerator.is_main_process:
            self.model.save_pretrained(
                output_dir, tokenizer=self.processing_class, prompt_config=vars(self.prompt_config)
            )
        self.accelerator.wait_for_everyone()

    def create_model_card(self, model_name=None, dataset_name=None, tags=None):
        """TRL's model card (base model, training procedure, versions, citation) followed by how to load the adapter
        and the last evaluation's table (`flagtrl.trainer.model_card`)."""
        super().create_model_card(model_name=model_name, dataset_name=dataset_name, tags=tags)
        if not self.is_world_process_zero():
            return
        readme = Path(self.args.output_dir) / "README.md"
        repo_id = self.hub_model_id or model_name or "flag-trader"
        card = add_adapter_sections(ModelCard.load(readme), self.model.config_flag, repo_id, self.last_eval_results)
        card.save(readme)

    def _save_rollout_checkpoint(self) -> None:
        folder = Path(self.args.output_dir) / f"{PREFIX_CHECKPOINT_DIR}-{self.state.global_step}"
        folder.mkdir(parents=True, exist_ok=True)
        if self.accelerator.is_main_process:
            self.model.save_pretrained(folder, tokenizer=self.processing_class, prompt_config=vars(self.prompt_config))
            torch.save(self.optimizer.state_dict(), folder / OPTIMIZER_NAME)
            torch.save(self.lr_scheduler.state_dict(), folder / SCHEDULER_NAME)
            self.state.save_to_json(str(folder / TRAINER_STATE_NAME))
            settings = run_settings(self.model, self.args, self.prompt_config)
            (folder / RUN_SETTINGS_NAME).write_text(json.dumps(settings, indent=2, sort_keys=True) + "\n")
        rollout_state = {
            "envs": [env.get_state() for env in self.envs],
            "next_done": self.next_done.clone(),
            "sampling_generator": self.sampling_generator.get_state(),
            "torch": torch.get_rng_state(),
            "numpy": np.random.get_state(legacy=False),
            "python": random.getstate(),
        }
        torch.save(rollout_state, folder / rollout_state_name(self.rank))
        self.accelerator.wait_for_everyone()
        if self.accelerator.is_main_process:
            # transformers' own rotation (by step number; it always keeps the newest checkpoint, to resume from).
            rotate_checkpoints(self.args.output_dir, self.args.save_total_limit, self.state.best_model_checkpoint)

    def _check_run_settings(self, folder: Path) -> None:
        """Refuse a checkpoint written with other trajectory-shaping settings (`RUN_SETTING_KEYS`, the policy's kind,
        the prompt), naming each difference."""
        path = folder / RUN_SETTINGS_NAME
        if not path.exists():
            return
        saved, current = json.loads(path.read_text()), run_settings(self.model, self.args, self.prompt_config)
        changed = [
            f"{key}: {saved.get(key)!r} -> {current.get(key)!r}" for key in current if saved.get(key) != current[key]
        ]
        if changed:
            raise ValueError(
                f"{folder} was written with other settings ({'; '.join(changed)}): resuming it would splice two "
                "different runs; delete it, choose another output_dir, or go back to its settings."
            )

    def _load_checkpoint(self, checkpoint: str | os.PathLike) -> None:
        from transformers import TrainerState
        from transformers.trainer_pt_utils import safe_globals

        folder = Path(checkpoint)
        rollout_file = folder / rollout_state_name(self.rank)
        if not rollout_file.exists():
            raise FileNotFoundError(
                f"{folder} has no {rollout_file.name}: it is not a complete FlagPPOTrainer checkpoint "
                f"(was it written with a different number of processes?)."
            )
        self._check_run_settings(folder)
        try:
            self.model.load_adapter(folder)
            self.optimizer.load_state_dict(torch.load(folder / OPTIMIZER_NAME, weights_only=True))
        except (KeyError, RuntimeError, ValueError) as error:  # a checkpoint older than its run_settings.json
            raise ValueError(
                f"{folder} does not fit this run's policy ({type(error).__name__}: {str(error).splitlines()[0][:200]}): "
                "it was written with other settings; delete it or choose another output_dir."
            ) from None
        self.lr_scheduler.load_state_dict(torch.load(folder / SCHEDULER_NAME, weights_only=True))
        self.state = TrainerState.load_from_json(str(folder / TRAINER_STATE_NAME))
        self.state.max_steps = self.args.num_iterations
        # The numpy RNG and environment states hold numpy arrays: allowlist them as transformers does for its RNG file.
        with safe_globals():
            rollout_state = torch.load(rollout_file, weights_only=True)
        for env, env_state in zip(self.envs, rollout_state["envs"]):
            env.set_state(env_state)
        self._envs_started = True
        self.next_done = rollout_state["next_done"]
        self.sampling_generator.set_state(rollout_state["sampling_generator"])
        torch.set_rng_state(rollout_state["torch"])
        np.random.set_state(rollout_state["numpy"])
        random.setstate(rollout_state["python"])
        logger.info("Resumed from %s at PPO iteration %d.", folder, self.state.global_step)
