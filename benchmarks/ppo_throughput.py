"""PPO throughput of FLAG-Trader training: every speed-up off (the naive loop) against every speed-up on.

    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py                       # MSFT from skfolio, 40 steps, 1 env
    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py --assets MSFT,JNJ --steps 32 --num_envs 2
    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py --dataset data/investorbench --assets MSFT   # with news
    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py --sections exactness,levers      # no training runs

One process, the real SmolLM2-135M-Instruct (offline copy, `--dtype auto`: float32 on CPUs without AMX) and
the paper's settings (Table 3: 2 trainable layers, minibatch 32, 8 accumulation steps, KL to the reference, 512-token
prompts), the same seed; one PPO iteration of `--steps` environment steps per run:

- naive: `use_trunk_cache`, `reuse_rollout_hidden_states` and `last_token_top_layer` off, and the reference policy run
  as a separate model would be (its own pass through the frozen layers): a full forward for the rollout, another for
  the reference, and a full forward + backward again in the update;
- fast, cold: every speed-up on, the trunk cache empty (each market prefix is computed on first sight);
- fast, warm: the same run again on the same frozen trunk, its cache now holding the prefixes of those dates. This is
  the steady state of a real run, where episodes revisit the same (asset, date) prefixes: the paper's 13,860 steps on
  one asset's ~64-day window compute each prefix once, then hit the cache on >99% of the steps.

Sections (`--sections`, all by default):

- throughput: environment steps per second of each run and their ratios, the peak RSS, the trunk cache's size, the
  largest difference of the logged losses between the runs, and an estimate of the paper's full budget;
- exactness: the naive and the fast path, each against float32 arithmetic on the same (dtype-rounded) weights and
  states, in every dtype the project runs here (float32; bf16 where the CPU has bf16 instructions; bf16 and fp16 on a
  GPU): RMS and largest |d log pi|, |d V|, |d KL|, and whether the fast path stays within 2x the naive path's error;
- num_envs: env steps/s of one PPO iteration against `num_envs` on a warm trunk cache, suffixes batched or row by row;
- levers: per-sample CPU cost of a warm step's parts (frozen suffix, top layers, update, prompt building) and of each
  lever (trunk dtype, int8 dynamic quantisation, eager attention, a shorter account suffix), with its drift;
- lora: the training variants below, each in its own process (`--variants`).

LoRA beside full top layers (`--variants`, default `full,lora_top,lora_all`; `qlora_top` adds 4-bit QLoRA): the same
iteration with every speed-up on, each training variant in its own process (so that each peak RSS is its own), cold
then warm trunk cache:

- full: the paper's 2 top layers trained in full;
- lora_top: LoRA (`--lora_r`, alpha 2r, no dropout, `--lora_target_modules`) on the 2 top layers, base weights frozen;
- lora_all: LoRA on every layer (TWOSOME-style): no frozen trunk to cache, every step runs all layers, the reference
  (adapters disabled) too;
- qlora_top: lora_top on a 4-bit (nf4) model.

`--skip_speedups` runs the LoRA comparison alone (`--sections lora`).

Timings on a machine shared with other jobs vary from run to run: the ratios, measured minutes apart in one process
(the levers interleaved), and CPU seconds are the figures to read. By default the benchmark uses only the cores that
other jobs leave idle: with every core busy, each of the thousands of parallel regions of a forward waits for a
descheduled thread (we measured the same forward 7x slower with 2 threads than with 1 while another job held one of
the 2 cores).
"""

from __future__ import annotations

import argparse
import copy
import gc
import multiprocessing
import os
import resource
import tempfile
import time

import torch
from transformers import PrinterCallback


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from flagtrl.backtest import split_windows  # noqa: E402
from flagtrl.data.schema import load_market_dataset, market_series  # noqa: E402
from flagtrl.envs.trading_env import TradingEnv  # noqa: E402
from flagtrl.hardware import cpu_has_native_bf16  # noqa: E402
from flagtrl.models import FlagPolicy  # noqa: E402
from flagtrl.models.loading import (  # noqa: E402
    SMOLLM2_ID,
    cpu_has_fast_bf16,
    load_backbone,
    load_tokenizer,
    resolve_dtype,
)
from flagtrl.models.trunk_cache import TrunkCache, compute_prefix  # noqa: E402
from flagtrl.prompt import PromptBuilder, PromptConfig  # noqa: E402
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig  # noqa: E402
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer  # noqa: E402
from flagtrl.trainer.ppo_math import categorical_kl, masked_log_softmax  # noqa: E402


PAPER_TOTAL_TIMESTEPS = 13860
SPEEDUPS_OFF = dict(use_trunk_cache=False, reuse_rollout_hidden_states=False, last_token_top_layer=False)
# The fast path may be at most this much less accurate than the naive one (RMS against float32; tests/test_trunk_cache.py).
PATH_ERROR_FACTOR, PATH_ERROR_FLOOR = 2.0, 1e-5
LOSS_KEYS = ("objective/loss", "policy/loss", "value/loss", "objective/kl", "policy/entropy")


class NaiveReferenceTrainer(FlagPPOTrainer):
    """The naive loop's reference policy: a separate model, so its own full forward through the frozen layers."""

    @torch.no_grad()
    def _policy_step(self, prompts, masks, with_reference, frozen=None):
        out = super()._policy_step(prompts, masks, False, frozen)
        if with_reference:
            policy, reference = self.model, self.model.reference
            batch = policy.collate(prompts, self.pad_token_id)
            hidden = policy.frozen_forward(batch["input_ids"], batch["attention_mask"])
            ref_hidden = policy._top_forward(reference["layers"], reference["norm"], hidden, batch["attention_mask"])
            out.ref_log_probs = masked_log_softmax(reference["policy_head"](ref_hidden), masks.to(policy.device))
        return out


def prepare_dataset(path: str | None, assets: list[str]):
    """The market dataset and its folder (skfolio prices written to a temporary folder when `path` is unset)."""
    if path:
        return load_market_dataset(path), path
    from flagtrl.data.builder import build_market_dataset, save_market_dataset
    from flagtrl.data.sources import SKFOLIO_CARD, clip_dates, read_skfolio

    rows = clip_dates(read_skfolio(assets), "2019-01-01", "2021-05-06")
    dataset = build_market_dataset(rows, source="skfolio")
    folder = tempfile.mkdtemp(prefix="flagtrl-bench-")
    save_market_dataset(dataset, folder, SKFOLIO_CARD)
    print(f"dataset: skfolio adjusted closes of {','.join(assets)} (paper windows), written to {folder}")
    return dataset, folder


def peak_rss_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux


def make_config(args, output_dir: str, **overrides) -> FlagPPOConfig:
    num_steps = max(1, args.steps // args.num_envs)
    settings = dict(
        output_dir=output_dir,
        assets=args.assets,
        num_envs=args.num_envs,
        num_steps=num_steps,
        total_timesteps=num_steps * args.num_envs,  # one PPO iteration; the rest is Table 3's defaults
        max_prompt_tokens=args.max_prompt_tokens,
        seed=args.seed,
        disable_tqdm=True,
        report_to="none",
        save_strategy="no",
        eval_strategy="no",
        logging_steps=1,
    )
    if not torch.cuda.is_available():  # autocast as the frozen trunk's dtype, as `dtype: auto` and `bf16` pair them
        settings["bf16"] = args.trunk_dtype == torch.bfloat16
    settings.update(overrides)
    return FlagPPOConfig(**settings)


def build_policy(backbone, tokenizer, seed: int) -> FlagPolicy:
    torch.manual_seed(seed)  # the value head's initialisation
    return FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=2)


def timed_train(trainer: FlagPPOTrainer) -> tuple[float, float, dict]:
    """Wall-clock and CPU seconds of `trainer.train()`, and its last PPO log."""
    trainer.remove_callback(PrinterCallback)  # the tables below are the output
    start, start_cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    logs = [entry for entry in trainer.state.log_history if "policy/entropy" in entry]
    return seconds, cpu_seconds, logs[-1]


def sample_prompts(dataset, tokenizer, builder: PromptBuilder, args, count: int, burn_in: int = 0):
    """`count` states per asset from the training window, reached by random actions (other days than the runs'),
    after `burn_in` steps (a full decision history: the account suffix of a steady-state step)."""
    prompts, masks = [], []
    for asset in args.assets:
        series = market_series(dataset, asset)
        env = TradingEnv(
            series, window=split_windows(dataset, "train", [asset])[asset], episode_length=count + burn_in
        )
        env.reset(seed=args.seed + 99)
        generator = torch.Generator().manual_seed(args.seed)
        for step in range(count + burn_in):
            state = env.state()
            if step >= burn_in:
                prompts.append(builder.encode(state))
                masks.append(torch.as_tensor(state.action_mask))
            valid = torch.as_tensor(state.action_mask, dtype=torch.float)
            env.step(int(torch.multinomial(valid, 1, generator=generator)))
    return prompts, torch.stack(masks).bool()


def frozen_trunk_as(policy: FlagPolicy, dtype: torch.dtype) -> FlagPolicy:
    """A copy of `policy` whose frozen trunk (embeddings and frozen layers) is in `dtype`, as `load_backbone` would load
    it; the trainable top layers and heads stay float32, as in `FlagPolicy`."""
    variant = copy.deepcopy(policy)
    variant.backbone.model.embed_tokens.to(dtype)
    variant.frozen_layers.to(dtype)
    return variant


@torch.no_grad()
def path_outputs(policy: FlagPolicy, prompts, masks, fast: bool, dtype: torch.dtype, cache: TrunkCache | None = None):
    """log pi, V and pi_ref of `prompts` (4 per batch, as a rollout of 4 environments would), under the autocast the
    trainer uses for `dtype`. naive: a full forward, full top layers; fast: the trunk cache (cold, then warm: the
    second pass's numbers are returned) and the last-token top layer."""
    device = policy.device
    autocast = torch.autocast(device.type, dtype=dtype, enabled=dtype != torch.float32)
    before = policy.last_token_top_layer
    policy.last_token_top_layer = fast
    log_probs, values, ref_log_probs = [], [], []
    try:
        with autocast:
            for start in range(0, len(prompts), 4):
                rows, row_masks = prompts[start : start + 4], masks[start : start + 4].to(device)
                if fast:
                    for _ in ("cold", "warm"):
                        hidden, attention_mask = policy.frozen_states(rows, cache).padded()
                        out = policy(None, attention_mask, row_masks, with_reference=True, frozen_hidden=hidden)
                else:
                    batch = policy.collate(rows)
                    out = policy(batch["input_ids"], batch["attention_mask"], row_masks, with_reference=True)
                log_probs.append(out.log_probs.float().cpu())
                values.append(out.values.float().cpu())
                ref_log_probs.append(out.ref_log_probs.float().cpu())
    finally:
        policy.last_token_top_layer = before
    return torch.cat(log_probs), torch.cat(values), torch.cat(ref_log_probs)


def errors_against(outputs, reference, masks) -> dict[str, float]:
    """RMS and max of |log pi - log pi_32| over the valid actions, of |V - V_32| and of |KL - KL_32| over the states."""
    (log_probs, values, ref_log_probs), (log_probs_32, values_32, ref_log_probs_32) = outputs, reference
    d_log_probs = (log_probs - log_probs_32)[masks]
    d_values = values - values_32
    d_kl = categorical_kl(log_probs, ref_log_probs) - categorical_kl(log_probs_32, ref_log_probs_32)
    return {
        "log_pi_rms": float(d_log_probs.pow(2).mean().sqrt()),
        "log_pi_max": float(d_log_probs.abs().max()),
        "v_rms": float(d_values.pow(2).mean().sqrt()),
        "v_max": float(d_values.abs().max()),
        "kl_max": float(d_kl.abs().max()),
    }


VARIANTS = {
    "full": dict(peft=False, top_layers=True, bits=None),
    "lora_top": dict(peft=True, top_layers=True, bits=None),
    "lora_all": dict(peft=True, top_layers=False, bits=None),
    "qlora_top": dict(peft=True, top_layers=True, bits=4),
}
NUM_TOP_LAYERS = 2


def run_variant(name: str, args, dataset_path: str, threads: int, results) -> None:
    """One training variant in its own process: one PPO iteration on a cold trunk cache, then the same iteration from
    the same weights on the warm cache; puts its figures on `results` (a queue)."""
    from peft import LoraConfig
    from transformers import BitsAndBytesConfig

    torch.set_num_threads(threads)
    spec = VARIANTS[name]
    dataset = load_market_dataset(dataset_path)
    tokenizer = load_tokenizer(SMOLLM2_ID)
    quantization = None
    if spec["bits"] == 4:
        dtype = torch.bfloat16 if cpu_has_fast_bf16() else torch.float32
        quantization = BitsAndBytesConfig(load_in_4bit=True, bnb_4bit_quant_type="nf4", bnb_4bit_compute_dtype=dtype)
    backbone = load_backbone(SMOLLM2_ID, quantization_config=quantization, quantize_trainable_layers=spec["peft"])
    layers = NUM_TOP_LAYERS if spec["top_layers"] else backbone.config.num_hidden_layers
    peft_config = None
    if spec["peft"]:
        target = args.lora_target_modules.split(",")
        peft_config = LoraConfig(
            r=args.lora_r,
            lora_alpha=2 * args.lora_r,
            lora_dropout=0.0,
            target_modules=target[0] if len(target) == 1 else target,
        )
    torch.manual_seed(args.seed)
    policy = FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=layers, peft_config=peft_config)
    trainable = sum(p.numel() for p in policy.parameters() if p.requires_grad)
    initial = {k: v.clone() for k, v in policy.adapter_state_dict().items()}
    output_dir = tempfile.mkdtemp(prefix="flagtrl-bench-out-")
    # With LoRA on every layer the frozen trunk is the embedding table: nothing worth caching.
    overrides = dict(num_trainable_layers=layers, use_trunk_cache=policy.num_frozen_layers > 0)
    cold = FlagPPOTrainer(policy, make_config(args, output_dir, **overrides), dataset, processing_class=tokenizer)
    cold_seconds, cold_cpu, cold_log = timed_train(cold)
    warm_seconds, warm_cpu, warm_log = cold_seconds, cold_cpu, cold_log
    if cold.trunk_cache is not None:
        policy.load_adapter_state_dict(initial)
        warm = FlagPPOTrainer(policy, make_config(args, output_dir, **overrides), dataset, processing_class=tokenizer)
        warm.trunk_cache = cold.trunk_cache
        warm_seconds, warm_cpu, warm_log = timed_train(warm)
    results.put(
        {
            "name": name,
            "layers": layers,
            "trainable": trainable,
            "steps": cold.args.batch_size,
            "cold_seconds": cold_seconds,
            "warm_seconds": warm_seconds,
            "warm_cpu": warm_cpu,
            "peak_rss": peak_rss_gib(),
            "dtype": str(backbone.dtype),
            "loss": warm_log["objective/loss"],
        }
    )


def compare_variants(args, dataset_path: str) -> None:
    """Run each of `args.variants` in a fresh process and print its throughput and peak memory as it finishes."""
    context = multiprocessing.get_context("spawn")
    results = context.Queue()
    labels = {
        "full": f"full, top {NUM_TOP_LAYERS} layers",
        "lora_top": f"LoRA, top {NUM_TOP_LAYERS} layers",
        "lora_all": "LoRA, every layer",
        "qlora_top": f"QLoRA 4-bit, top {NUM_TOP_LAYERS} layers",
    }
    print()
    print(
        f"LoRA beside full top layers: one PPO iteration, every speed-up on, each variant in its own process "
        f"({torch.get_num_threads()} thread(s), LoRA r={args.lora_r} on {args.lora_target_modules}, "
        f"load average {os.getloadavg()[0]:.1f})"
    )
    print(
        f"{'training':<34}{'trained params':>15}{'env steps/s':>12}{'s/step':>8}{'cold s/step':>12}"
        f"{'CPU s/step':>11}{'vs full':>9}{'peak RSS GiB':>13}"
    )
    base = None
    for name in args.variants:
        process = context.Process(
            target=run_variant, args=(name, args, dataset_path, torch.get_num_threads(), results)
        )
        process.start()
        process.join()
        if process.exitcode != 0:
            raise RuntimeError(f"The {name} variant failed (exit code {process.exitcode}).")
        row = results.get(timeout=60)
        base = base or row
        rate = row["steps"] / row["warm_seconds"]
        print(
            f"{labels[name]:<34}{row['trainable']:>15,}{rate:>12.3f}{1 / rate:>8.2f}"
            f"{row['cold_seconds'] / row['steps']:>12.2f}{row['warm_cpu'] / row['steps']:>11.2f}"
            f"{base['warm_seconds'] / row['warm_seconds']:>8.2f}x{row['peak_rss']:>13.2f}",
            flush=True,
        )
    print(
        f"({base['steps']} environment steps a run, {base['dtype']}; env steps/s and s/step on the warm trunk cache, "
        f"'vs full' against the first variant; LoRA on every layer has no frozen trunk to cache; load average now "
        f"{os.getloadavg()[0]:.1f})"
    )


def float32_referenced_errors(policy: FlagPolicy, prompts, masks, dtypes: list[torch.dtype]) -> dict:
    """Each path (naive, fast) in each dtype against float32 arithmetic on the same weights and states.

    The frozen trunk is rounded to the dtype first and the float32 reference is built from those rounded weights, so
    what is measured is the arithmetic's rounding (and any error of a path), not the rounding of the weights."""
    masks = masks.bool()
    results = {}
    for dtype in dtypes:
        variant = frozen_trunk_as(policy, dtype)
        reference = path_outputs(copy.deepcopy(variant).float(), prompts, masks, False, torch.float32)
        results[dtype] = {
            "naive": errors_against(path_outputs(variant, prompts, masks, False, dtype), reference, masks),
            "fast": errors_against(path_outputs(variant, prompts, masks, True, dtype, TrunkCache()), reference, masks),
        }
        del variant
        gc.collect()
    return results


def print_equivalence(results: dict, count: int) -> None:
    print(
        f"\nExactness: each path against float32 arithmetic on the same weights, {count} states "
        f"(fast = trunk cache, cold then warm, + last-token top layer; naive = full forward)"
    )
    print(
        f"{'dtype':<10}{'path':<7}{'RMS |d log pi|':>16}{'max |d log pi|':>16}{'RMS |dV|':>11}{'max |dV|':>11}"
        f"{'max |d KL|':>12}  fast/naive (RMS log pi, V)"
    )
    for dtype, paths in results.items():
        for name in ("naive", "fast"):
            e = paths[name]
            ratio = ""
            if name == "fast":
                naive = paths["naive"]
                passes = all(e[k] <= PATH_ERROR_FACTOR * naive[k] + PATH_ERROR_FLOOR for k in ("log_pi_rms", "v_rms"))
                verdict = "ok" if passes else "FAST PATH WORSE"
                if naive["log_pi_rms"] < PATH_ERROR_FLOOR:  # float32 against itself: no ratio to speak of
                    ratio = f"float32 rounding ({verdict})"
                else:
                    r_lp, r_v = e["log_pi_rms"] / naive["log_pi_rms"], e["v_rms"] / max(naive["v_rms"], 1e-12)
                    ratio = f"{r_lp:.2f}, {r_v:.2f} ({verdict})"
            print(
                f"{str(dtype).replace('torch.', ''):<10}{name:<7}{e['log_pi_rms']:>16.2e}{e['log_pi_max']:>16.2e}"
                f"{e['v_rms']:>11.2e}{e['v_max']:>11.2e}{e['kl_max']:>12.2e}  {ratio}"
            )
    print(
        f"(the fast path passes when its RMS error is at most {PATH_ERROR_FACTOR:g}x the naive path's + "
        f"{PATH_ERROR_FLOOR:g}, the factor of tests/test_trunk_cache.py. A float32 row compares float32 with itself, "
        "so any error above the floor there is a path's own: it is the row that catches a cache bug on SmolLM2, whose "
        "bf16 rounding is larger than a position off by one)"
    )


def throughput_section(args, dataset, tokenizer, output_dir: str) -> FlagPolicy:
    """The naive loop against every speed-up on (cold, then warm trunk cache); returns the fast run's trained policy."""
    # --- fast: every speed-up on; cold cache, then the same run on a warm cache ------------------------------------
    backbone = load_backbone(SMOLLM2_ID, dtype=args.dtype)
    print(f"model: {SMOLLM2_ID}, {backbone.dtype}, {backbone.config.num_hidden_layers} layers (2 trainable)")
    policy = build_policy(backbone, tokenizer, args.seed)
    initial_adapter = {k: v.clone() for k, v in policy.adapter_state_dict().items()}  # a copy, not views
    cold = FlagPPOTrainer(policy, make_config(args, output_dir), dataset, processing_class=tokenizer)
    cold_seconds, cold_cpu, cold_log = timed_train(cold)
    cache: TrunkCache = cold.trunk_cache
    cold_misses, prefix_mb = cache.misses, cache.size_bytes / 2**20 / max(1, len(cache))
    policy.load_adapter_state_dict(initial_adapter)  # same starting weights, same frozen trunk (the cache stays valid)
    warm = FlagPPOTrainer(policy, make_config(args, output_dir), dataset, processing_class=tokenizer)
    warm.trunk_cache = cache
    hits_before = cache.hits
    warm_seconds, warm_cpu, warm_log = timed_train(warm)
    warm_hit_rate = (cache.hits - hits_before) / max(1, cache.hits - hits_before + cache.misses - cold_misses)
    fast_peak = peak_rss_gib()
    batch_size = cold.args.batch_size
    del cold, warm, backbone, cache
    gc.collect()

    trained = policy
    # --- naive: every speed-up off, the reference as a separate model ------------------------------------------------
    backbone = load_backbone(SMOLLM2_ID, dtype=args.dtype)
    policy = build_policy(backbone, tokenizer, args.seed)
    policy.last_token_top_layer = False  # the model owns this setting; the trainer checks it against SPEEDUPS_OFF
    naive = NaiveReferenceTrainer(policy, make_config(args, output_dir, **SPEEDUPS_OFF), dataset, tokenizer)
    naive_seconds, naive_cpu, naive_log = timed_train(naive)
    naive_peak = peak_rss_gib()

    seconds = {"naive": naive_seconds, "cold": cold_seconds, "warm": warm_seconds}
    cpu = {"naive": naive_cpu, "cold": cold_cpu, "warm": warm_cpu}
    rate = {name: batch_size / s for name, s in seconds.items()}
    cpu_rate = {name: batch_size / s for name, s in cpu.items()}
    print()
    print(
        f"PPO throughput, {batch_size} environment steps per run ({args.num_envs} env(s), {','.join(args.assets)}, "
        f"{torch.get_num_threads()} thread(s), load average now {os.getloadavg()[0]:.1f})"
    )
    print(
        f"{'run':<28}{'env steps/s':>12}{'s/step':>8}{'rollout s':>11}{'update s':>10}{'vs naive':>10}"
        f"{'CPU s/step':>12}{'vs naive':>10}"
    )
    for name, label, log in (
        ("naive", "naive (every speed-up off)", naive_log),
        ("cold", "fast, cold trunk cache", cold_log),
        ("warm", "fast, warm trunk cache", warm_log),
    ):
        rollout = log["time/rollout_seconds"]
        print(
            f"{label:<28}{rate[name]:>12.3f}{1 / rate[name]:>8.2f}{rollout:>11.1f}{seconds[name] - rollout:>10.1f}"
            f"{rate[name] / rate['naive']:>9.1f}x{1 / cpu_rate[name]:>12.2f}{cpu_rate[name] / cpu_rate['naive']:>9.1f}x"
        )
    print(
        f"speed-up (steady state, warm cache): {rate['warm'] / rate['naive']:.1f}x wall-clock, "
        f"{cpu_rate['warm'] / cpu_rate['naive']:.1f}x CPU time (the fairer figure when other jobs share the cores)"
    )
    print(
        f"trunk cache: {cold_misses} prefixes computed in the cold run, {prefix_mb:.1f} MiB each; "
        f"warm-run hit rate {warm_hit_rate:.0%}"
    )
    print(
        f"peak RSS: {fast_peak:.2f} GiB after the fast runs, {naive_peak:.2f} GiB after the naive run (process-wide)"
    )
    loss_diffs = {k: max(abs(naive_log[k] - cold_log[k]), abs(naive_log[k] - warm_log[k])) for k in LOSS_KEYS}
    same_actions = (
        naive_log["objective/reward_mean"] == cold_log["objective/reward_mean"] == warm_log["objective/reward_mean"]
    )
    print(
        "losses, naive vs fast runs (same seed): "
        + ", ".join(f"{k} {naive_log[k]:.5f} (max diff {d:.1e})" for k, d in loss_diffs.items())
        + f"; same actions: {same_actions}"
    )
    # Paper budget: every step at the warm rate, plus each distinct (asset, date) prefix computed once.
    windows = [market_series(dataset, a).window(*split_windows(dataset, "train", [a])[a]) for a in args.assets]
    days = sum(last - first + 1 for first, last in windows)
    for label, rates, costs in (("wall-clock", rate, seconds), ("CPU", cpu_rate, cpu)):
        prefix_seconds = max(0.0, (costs["cold"] - costs["warm"]) / max(1, cold_misses))
        fast_total = PAPER_TOTAL_TIMESTEPS / rates["warm"] + days * prefix_seconds
        print(
            f"paper budget ({PAPER_TOTAL_TIMESTEPS} steps) at this run's {label} cost: "
            f"naive {PAPER_TOTAL_TIMESTEPS / rates['naive'] / 3600:.1f} h, fast {fast_total / 3600:.1f} h "
            f"({days} prefixes x {prefix_seconds:.1f} s + every step at the warm rate)"
        )
    print(
        "(with 1 thread the CPU cost is the wall-clock time on one idle core; "
        f"the trunk cache of the whole run holds {days} prefixes, {days * prefix_mb:.0f} MiB)"
    )
    return trained


def machine_description() -> str:
    if torch.cuda.is_available():
        return f"GPU {torch.cuda.get_device_name()}"
    flags = open("/proc/cpuinfo").read() if os.path.exists("/proc/cpuinfo") else ""
    kind = (
        "AMX"
        if "amx_bf16" in flags
        else "AVX512-BF16"
        if "avx512_bf16" in flags
        else "AVX2"
        if "avx2" in flags
        else "?"
    )
    return f"CPU {kind}, {os.cpu_count()} cores"


def exactness_dtypes() -> list[torch.dtype]:
    """The dtypes the project runs here: float32; bf16 where the hardware has it; fp16 on a GPU."""
    if torch.cuda.is_available():
        return [torch.float32, torch.bfloat16, torch.float16]
    return [torch.float32] + ([torch.bfloat16] if cpu_has_native_bf16() else [])


def fill_trunk_cache(
    policy: FlagPolicy, cache: TrunkCache, dataset, builder: PromptBuilder, assets: list[str], mode: str
) -> None:
    """Compute the market prefix of every (asset, date) of the training windows once: the steady state of a run."""
    cache.bind(policy)
    for asset in assets:
        first, last = market_series(dataset, asset).window(*split_windows(dataset, "train", [asset])[asset])
        env = TradingEnv(
            market_series(dataset, asset),
            window=split_windows(dataset, "train", [asset])[asset],
            episode_length=last - first,
            mode=mode,
        )
        env.reset(seed=0)
        for _ in range(last - first + 1):
            prompt = builder.encode(env.state())
            key = (tuple(prompt.market_key), tuple(prompt.market_ids))
            if key not in cache.entries:
                cache.put(key, compute_prefix(policy, prompt.market_ids))
            if env.step(1)[2]:  # hold until the window's end
                break


def num_envs_section(policy: FlagPolicy, args, dataset, tokenizer, output_dir: str) -> None:
    """env steps/s of one PPO iteration (rollout + update) against num_envs, on a warm trunk cache.

    Each run is `num_envs x table_steps` environment steps from the same starting weights; episodes of
    `table_episode_steps` start on random dates and environment i trades asset i mod len(assets), so the rows of a
    batched step sit on different market prefixes. On a CPU each count runs with the suffixes row by row and batched."""
    counts = [int(n) for n in args.num_envs_table.split(",")]
    initial = {k: v.clone() for k, v in policy.adapter_state_dict().items()}
    cache = TrunkCache(batch_suffixes=False)
    start = time.process_time()
    config = make_config(args, output_dir, max_episode_steps=args.table_episode_steps)
    builder = PromptBuilder(tokenizer, config.prompt_config())
    fill_trunk_cache(policy, cache, dataset, builder, args.assets, config.trading_mode)
    print(
        f"\nnum_envs table: trunk cache filled with {len(cache)} prefixes in {time.process_time() - start:.0f} CPU s; "
        f"each run = num_envs x {args.table_steps} steps, episodes of {args.table_episode_steps} steps, "
        f"assets {','.join(args.assets)}, {torch.get_num_threads()} thread(s)"
    )
    modes = [False, True] if policy.device.type == "cpu" else [True]
    print(
        f"{'num_envs':>8}{'suffixes':>10}{'env steps/s':>13}{'CPU s/step':>12}{'rollout s/step':>16}"
        f"{'vs 1 env (wall)':>17}{'vs 1 env (CPU)':>16}"
    )
    base = {}
    for count in counts:
        for batched in modes:
            cache.batch_suffixes = batched
            policy.load_adapter_state_dict(initial)
            config = make_config(
                args,
                output_dir,
                num_envs=count,
                num_steps=args.table_steps,
                total_timesteps=count * args.table_steps,
                max_episode_steps=args.table_episode_steps,
            )
            trainer = FlagPPOTrainer(policy, config, dataset, processing_class=tokenizer)
            trainer.trunk_cache = cache
            misses = cache.misses
            seconds, cpu_seconds, log = timed_train(trainer)
            steps = count * args.table_steps
            rate, cpu_rate = steps / seconds, steps / cpu_seconds
            base.setdefault(batched, (rate, cpu_rate))
            extra = f"  ({cache.misses - misses} misses)" if cache.misses > misses else ""
            print(
                f"{count:>8}{'batched' if batched else 'rows':>10}{rate:>13.3f}{cpu_seconds / steps:>12.3f}"
                f"{log['time/rollout_seconds'] / steps:>16.3f}{rate / base[batched][0]:>16.2f}x"
                f"{cpu_rate / base[batched][1]:>15.2f}x{extra}"
            )
            del trainer
    policy.load_adapter_state_dict(initial)


def timed_min(functions: dict, repeats: int) -> dict[str, float]:
    """CPU seconds of each function, the minimum over `repeats` rounds that call them in turn (interleaved, so that
    a change of the machine's load hits every variant alike)."""
    best = dict.fromkeys(functions, float("inf"))
    for _ in range(repeats + 1):  # the first round warms up
        for name, function in functions.items():
            start = time.process_time()
            function()
            best[name] = min(best[name], time.process_time() - start)
    return best


def quantize_frozen_trunk(policy: FlagPolicy) -> FlagPolicy:
    """int8 dynamic quantisation (weights per output channel, activations per tensor at run time) of the frozen
    layers' linear maps of a float32 policy, in place; an opt-in lever of this benchmark: it changes the numbers."""
    from torch.ao.quantization import per_channel_dynamic_qconfig, quantize_dynamic

    for layer in policy.frozen_layers:
        quantize_dynamic(layer, {torch.nn.Linear: per_channel_dynamic_qconfig}, dtype=torch.qint8, inplace=True)
    return policy


def levers_section(policy: FlagPolicy, args, dataset, tokenizer, output_dir: str) -> None:
    """What a warm step costs, part by part, and what each lever saves (CPU s per sample, interleaved), with each
    lever's drift against the float32 computation on the same weights."""
    config = make_config(args, output_dir)
    count = args.lever_states
    states_args = argparse.Namespace(**{**vars(args), "assets": args.assets[:1]})
    builders = {
        history: PromptBuilder(
            tokenizer, PromptConfig(**{**vars(config.prompt_config()), "decision_history": history})
        )
        for history in (10, 5, 2)
    }
    prompts = {h: sample_prompts(dataset, tokenizer, b, states_args, count, 10)[0] for h, b in builders.items()}
    masks = sample_prompts(dataset, tokenizer, builders[10], states_args, count, 10)[1]
    default = prompts[config.decision_history]
    float32 = frozen_trunk_as(policy, torch.float32)
    variants = {"float32 trunk": float32}
    if cpu_has_native_bf16() or torch.cuda.is_available():
        variants["bf16 trunk"] = frozen_trunk_as(policy, torch.bfloat16)
    if policy.device.type == "cpu":
        variants["int8 dynamic trunk"] = quantize_frozen_trunk(frozen_trunk_as(policy, torch.float32))
    if args.compile_lever:
        # Each frozen layer compiled with dynamic shapes. The KV cache's layer index is a guard, so dynamo compiles one
        # graph per layer: its recompile limit (8 by default) is raised to cover them all.
        torch._dynamo.config.recompile_limit = max(torch._dynamo.config.recompile_limit, 2 * policy.num_frozen_layers)
        compiled = frozen_trunk_as(policy, torch.float32)
        for index in range(compiled.num_frozen_layers):
            compiled.backbone.model.layers[index] = torch.compile(compiled.backbone.model.layers[index], dynamic=True)
        variants["float32 trunk, torch.compile"] = compiled
    caches = {name: TrunkCache(batch_suffixes=False) for name in variants}
    eager = copy.deepcopy(float32)
    eager.backbone.config._attn_implementation = "eager"
    caches["float32 trunk, eager attention"], variants["float32 trunk, eager attention"] = TrunkCache(False), eager
    for name, variant in variants.items():
        variant.frozen_states(default, caches[name])  # the prefixes: a warm cache
    for history in (5, 2):
        float32.frozen_states(prompts[history], caches["float32 trunk"])

    def frozen(variant, name, rows):
        return lambda: variant.frozen_states(rows, caches[name])

    suffix = {name: frozen(v, name, default) for name, v in variants.items()}
    for history in (5, 2):
        suffix[f"float32 trunk, decision_history {history}"] = frozen(float32, "float32 trunk", prompts[history])
    with torch.no_grad():
        suffix_seconds = timed_min(suffix, args.lever_repeats)
    tokens = {h: sum(len(p.account_ids) for p in rows) / len(rows) for h, rows in prompts.items()}
    print(
        f"\nLevers ({count} states of {args.assets[0]}, CPU ms per sample, minimum of {args.lever_repeats} interleaved "
        f"rounds, {torch.get_num_threads()} thread(s), load average {os.getloadavg()[0]:.1f}); drift = max |d log pi| "
        "against the float32 trunk on the same weights"
    )
    print(f"frozen layers on the account suffix ({tokens[10]:.0f} tokens; market prefix cached):")
    reference = path_outputs(float32, default, masks, True, torch.float32, caches["float32 trunk"])
    for name, seconds in suffix_seconds.items():
        drift = ""
        if name in variants and name != "float32 trunk":
            dtype = torch.bfloat16 if "bf16" in name else torch.float32
            out = path_outputs(variants[name], default, masks, True, dtype, caches[name])
            drift = f"drift {errors_against(out, reference, masks.bool())['log_pi_max']:.2e}"
        if "decision_history" in name:
            drift = f"{tokens[int(name.split()[-1])]:.0f} suffix tokens (another prompt: a training choice)"
        print(f"  {name:<40}{seconds / count * 1e3:>9.1f} ms  {drift}")

    # A cache miss (a date the run has not met yet): the whole market prefix through the frozen layers, or only the
    # tokens after the asset's shared stem (`TrunkCache(share_stem=True)`, the default).
    seed_prompts = sample_prompts(
        dataset, tokenizer, builders[10], argparse.Namespace(**{**vars(states_args), "seed": args.seed + 1}), 2
    )[0]

    def cold(share_stem):
        def run():
            cache = TrunkCache(batch_suffixes=False, share_stem=share_stem)
            float32.frozen_states(seed_prompts, cache)  # two other dates: the stem is known
            float32.frozen_states(default, cache)

        return run

    with torch.no_grad():
        cold_seconds = timed_min({"whole prefix": cold(False), "stem + own tokens": cold(True)}, args.lever_repeats)
        stem_cache = TrunkCache(batch_suffixes=False)
        float32.frozen_states(seed_prompts, stem_cache)
        stem_out = path_outputs(float32, default, masks, True, torch.float32, stem_cache)
    stem = next(iter(stem_cache.stems.values()), None)
    prefix_tokens = sum(len(p.market_ids) for p in default) / len(default)
    print(
        f"a new date's market prefix ({prefix_tokens:.0f} tokens, {len(stem) if stem else 0} of them the asset's "
        "shared stem; two seeding dates and the suffixes included):"
    )
    for name, seconds in cold_seconds.items():
        print(f"  {name:<40}{seconds / count * 1e3:>9.1f} ms")
    stem_drift = errors_against(stem_out, reference, masks.bool())["log_pi_max"]
    print(
        f"  stem + own tokens: drift {stem_drift:.2e}; {cold_seconds['whole prefix'] / cold_seconds['stem + own tokens']:.2f}x"
    )

    # The top layers: the rollout's policy + reference forward, and the update's forward + backward, per sample.
    hidden, attention_mask = float32.frozen_states(default, caches["float32 trunk"]).padded()
    top = {}
    for autocast in (False, True) if policy.device.type == "cpu" else (True,):
        context = torch.autocast(policy.device.type, dtype=torch.bfloat16, enabled=autocast)
        label = "bf16 autocast" if autocast else "float32"

        def rollout(context=context):
            with torch.no_grad(), context:
                float32(None, attention_mask, masks, with_reference=True, frozen_hidden=hidden)

        def update(context=context):
            with context:
                out = float32(None, attention_mask, masks, frozen_hidden=hidden)
                (out.log_probs.sum() + out.values.sum()).backward()
            float32.zero_grad(set_to_none=True)

        top[f"rollout: top layers + reference, {label}"] = rollout
        top[f"update: top layers forward + backward, {label}"] = update
    top_seconds = timed_min(top, args.lever_repeats)
    print("trainable top layers (prompt of prefix + suffix, last-token top layer):")
    for name, seconds in top_seconds.items():
        print(f"  {name:<55}{seconds / count * 1e3:>9.1f} ms")
    encode = timed_min({"encode": lambda: sample_prompts(dataset, tokenizer, builders[10], states_args, count, 10)}, 1)
    print(f"prompt building and environment steps: {encode['encode'] / count * 1e3:.1f} ms per sample")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="MSFT", help="Comma-separated assets (environment i trades asset i %% n).")
    parser.add_argument("--steps", type=int, default=40, help="Environment steps of each run (one PPO iteration).")
    parser.add_argument("--num_envs", type=int, default=1, help="Environments stepped together (paper: 1).")
    parser.add_argument("--dataset", default=None, help="A prepared market dataset; default: skfolio prices.")
    parser.add_argument("--dtype", default="auto", help="Frozen trunk dtype (auto: float32 unless the CPU has AMX).")
    parser.add_argument("--max_prompt_tokens", type=int, default=512, help="Prompt budget (the recipes' 512).")
    parser.add_argument("--check_states", type=int, default=8, help="States per asset of the exactness comparison.")
    parser.add_argument(
        "--sections",
        default="throughput,exactness,num_envs,levers,lora",
        help="Comma-separated: throughput (naive vs fast), exactness (float32-referenced errors per dtype), num_envs "
        "(env steps/s against num_envs), levers (per-sample costs of a warm step and of each lever), lora (LoRA and "
        "full top layers, `--variants`).",
    )
    parser.add_argument("--num_envs_table", default="1,2,4,8,16", help="num_envs values of the num_envs table.")
    parser.add_argument("--table_steps", type=int, default=8, help="num_steps of each num_envs run (batch n x it).")
    parser.add_argument(
        "--table_episode_steps", type=int, default=20, help="max_episode_steps of the num_envs runs (varied starts)."
    )
    parser.add_argument("--lever_states", type=int, default=8, help="States of the lever measurements.")
    parser.add_argument("--lever_repeats", type=int, default=3, help="Interleaved repetitions (the minimum is kept).")
    parser.add_argument(
        "--compile_lever", action="store_true", help="Also measure torch.compile of the frozen layers."
    )
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads; 0: one per core left idle by other jobs (load average)."
    )
    parser.add_argument(
        "--variants",
        default="full,lora_top,lora_all",
        help="Training variants of the lora section, each in its own process: full, lora_top, lora_all, qlora_top.",
    )
    parser.add_argument("--lora_r", type=int, default=16, help="LoRA rank of the LoRA variants (alpha = 2 r).")
    parser.add_argument("--lora_target_modules", default="all-linear", help="LoRA target modules (comma-separated).")
    parser.add_argument("--skip_speedups", action="store_true", help="Only the LoRA comparison (`--sections lora`).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    args.assets = [a.strip().upper() for a in args.assets.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {sorted(VARIANTS)}")
    sections = {"lora"} if args.skip_speedups else {s.strip() for s in args.sections.split(",")}
    args.trunk_dtype = resolve_dtype(args.dtype)
    cores = os.cpu_count() or 1
    torch.set_num_threads(args.threads or max(1, min(cores, cores - round(os.getloadavg()[0]))))
    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
        f"(other jobs on this machine slow every run), {machine_description()}"
    )
    dataset, dataset_path = prepare_dataset(args.dataset, args.assets)
    tokenizer = load_tokenizer(SMOLLM2_ID)
    output_dir = tempfile.mkdtemp(prefix="flagtrl-bench-out-")
    policy = None
    if "throughput" in sections:
        policy = throughput_section(args, dataset, tokenizer, output_dir)
    if policy is None and sections & {"exactness", "num_envs", "levers"}:
        policy = build_policy(load_backbone(SMOLLM2_ID, dtype=args.dtype), tokenizer, args.seed)
    if "exactness" in sections:
        builder = PromptBuilder(tokenizer, make_config(args, output_dir).prompt_config())
        prompts, masks = sample_prompts(dataset, tokenizer, builder, args, args.check_states, burn_in=10)
        print_equivalence(float32_referenced_errors(policy, prompts, masks, exactness_dtypes()), len(prompts))
    if "num_envs" in sections:
        num_envs_section(policy, args, dataset, tokenizer, output_dir)
    if "levers" in sections:
        levers_section(policy, args, dataset, tokenizer, output_dir)
    if "lora" in sections and args.variants:
        del policy
        gc.collect()
        compare_variants(args, dataset_path)


if __name__ == "__main__":
    main()
