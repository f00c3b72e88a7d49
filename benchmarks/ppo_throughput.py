"""PPO throughput of FLAG-Trader training: every speed-up off (the naive loop) against every speed-up on.

    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py                       # MSFT from skfolio, 40 steps, 1 env
    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py --assets MSFT,JNJ --steps 32 --num_envs 2
    HF_HUB_OFFLINE=1 python benchmarks/ppo_throughput.py --dataset data/investorbench --assets MSFT   # with news

One process, the real SmolLM2-135M-Instruct (offline copy, `dtype auto`: float32 on CPUs without native bf16) and
the paper's settings (Table 3: 2 trainable layers, minibatch 32, 8 accumulation steps, KL to the reference, 512-token
prompts), the same seed; one PPO iteration of `--steps` environment steps per run:

- naive: `use_trunk_cache`, `reuse_rollout_hidden_states` and `last_token_top_layer` off, and the reference policy run
  as a separate model would be (its own pass through the frozen layers): a full forward for the rollout, another for
  the reference, and a full forward + backward again in the update;
- fast, cold: every speed-up on, the trunk cache empty (each market prefix is computed on first sight);
- fast, warm: the same run again on the same frozen trunk, its cache now holding the prefixes of those dates. This is
  the steady state of a real run, where episodes revisit the same (asset, date) prefixes: the paper's 13,860 steps on
  one asset's ~64-day window compute each prefix once, then hit the cache on >99% of the steps.

LoRA beside full top layers (`--variants`, default `full,lora_top,lora_all`; `qlora_top` adds 4-bit QLoRA): the same
iteration with every speed-up on, each training variant in its own process (so that each peak RSS is its own), cold
then warm trunk cache:

- full: the paper's 2 top layers trained in full;
- lora_top: LoRA (`--lora_r`, alpha 2r, no dropout, `--lora_target_modules`) on the 2 top layers, base weights frozen;
- lora_all: LoRA on every layer (TWOSOME-style): no frozen trunk to cache, every step runs all layers, the reference
  (adapters disabled) too;
- qlora_top: lora_top on a 4-bit (nf4) model.

`--skip_speedups` runs the LoRA comparison alone.

It prints environment steps per second of each run and their ratios, the peak RSS, the trunk cache's size, the largest
difference of log-probabilities, values and KL between the naive and the fast computation on the same states, and of
the logged losses between the runs; then an estimate of the paper's full budget from the measured per-step costs.
Timings on a machine shared with other jobs vary from run to run: the ratios, measured minutes apart in one process,
are the figures to read. By default the benchmark uses only the cores that other jobs leave idle: with every core
busy, each of the thousands of parallel regions of a forward waits for a descheduled thread (we measured the same
forward 7x slower with 2 threads than with 1 while another job held one of the 2 cores).
"""

from __future__ import annotations

import argparse
import gc
import multiprocessing
import os
import resource
import tempfile
import time

import torch


os.environ.setdefault("HF_HUB_OFFLINE", "1")
os.environ.setdefault("HF_HUB_DISABLE_TELEMETRY", "1")

from flagtrl.backtest import split_windows  # noqa: E402
from flagtrl.data.schema import load_market_dataset, market_series  # noqa: E402
from flagtrl.envs.trading_env import TradingEnv  # noqa: E402
from flagtrl.models import FlagPolicy  # noqa: E402
from flagtrl.models.loading import SMOLLM2_ID, cpu_has_fast_bf16, load_backbone, load_tokenizer  # noqa: E402
from flagtrl.models.trunk_cache import TrunkCache  # noqa: E402
from flagtrl.prompt import PromptBuilder  # noqa: E402
from flagtrl.trainer.ppo_flag_config import FlagPPOConfig  # noqa: E402
from flagtrl.trainer.ppo_flag_trainer import FlagPPOTrainer  # noqa: E402
from flagtrl.trainer.ppo_math import categorical_kl, masked_log_softmax  # noqa: E402


PAPER_TOTAL_TIMESTEPS = 13860
SPEEDUPS_OFF = dict(use_trunk_cache=False, reuse_rollout_hidden_states=False, last_token_top_layer=False)
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
    settings.update(overrides)
    return FlagPPOConfig(**settings)


def build_policy(backbone, tokenizer, seed: int) -> FlagPolicy:
    torch.manual_seed(seed)  # the value head's initialisation
    return FlagPolicy.from_backbone(backbone, tokenizer, num_trainable_layers=2)


def timed_train(trainer: FlagPPOTrainer) -> tuple[float, float, dict]:
    """Wall-clock and CPU seconds of `trainer.train()`, and its last PPO log."""
    start, start_cpu = time.perf_counter(), time.process_time()
    trainer.train()
    seconds, cpu_seconds = time.perf_counter() - start, time.process_time() - start_cpu
    logs = [entry for entry in trainer.state.log_history if "policy/entropy" in entry]
    return seconds, cpu_seconds, logs[-1]


def sample_prompts(dataset, tokenizer, builder: PromptBuilder, args, count: int):
    """`count` states per asset from the training window, reached by random actions (other days than the runs')."""
    prompts, masks = [], []
    for asset in args.assets:
        series = market_series(dataset, asset)
        env = TradingEnv(series, window=split_windows(dataset, "train", [asset])[asset], episode_length=count)
        env.reset(seed=args.seed + 99)
        generator = torch.Generator().manual_seed(args.seed)
        for _ in range(count):
            state = env.state()
            prompts.append(builder.encode(state))
            masks.append(torch.as_tensor(state.action_mask))
            valid = torch.as_tensor(state.action_mask, dtype=torch.float)
            env.step(int(torch.multinomial(valid, 1, generator=generator)))
    return prompts, torch.stack(masks).bool()


@torch.no_grad()
def path_differences(policy: FlagPolicy, prompts, masks) -> dict[str, float]:
    """Largest |naive - fast| of log pi, V and KL(pi || pi_ref) on the same states and weights (cold, then warm)."""
    naive_last_token = policy.last_token_top_layer
    policy.last_token_top_layer = False
    outputs = []
    for prompt, mask in zip(prompts, masks):
        batch = policy.collate([prompt])
        outputs.append(policy(batch["input_ids"], batch["attention_mask"], mask[None], with_reference=True))
    policy.last_token_top_layer = True
    cache = TrunkCache()
    differences = {"log_probs": 0.0, "values": 0.0, "kl": 0.0}
    for _ in ("cold", "warm"):
        for start in range(0, len(prompts), 4):
            rows = prompts[start : start + 4]
            hidden, attention_mask = policy.frozen_states(rows, cache).padded()
            fast = policy(None, attention_mask, masks[start : start + 4], with_reference=True, frozen_hidden=hidden)
            for offset, naive in enumerate(outputs[start : start + 4]):
                valid = masks[start + offset]
                fast_lp, naive_lp = fast.log_probs[offset][valid], naive.log_probs[0][valid]
                differences["log_probs"] = max(differences["log_probs"], float((fast_lp - naive_lp).abs().max()))
                differences["values"] = max(
                    differences["values"], float((fast.values[offset] - naive.values[0]).abs())
                )
                kl_fast = categorical_kl(fast.log_probs[offset], fast.ref_log_probs[offset])
                kl_naive = categorical_kl(naive.log_probs[0], naive.ref_log_probs[0])
                differences["kl"] = max(differences["kl"], float((kl_fast - kl_naive).abs()))
    policy.last_token_top_layer = naive_last_token
    return differences


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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--assets", default="MSFT", help="Comma-separated assets (environment i trades asset i %% n).")
    parser.add_argument("--steps", type=int, default=40, help="Environment steps of each run (one PPO iteration).")
    parser.add_argument("--num_envs", type=int, default=1, help="Environments stepped together (paper: 1).")
    parser.add_argument("--dataset", default=None, help="A prepared market dataset; default: skfolio prices.")
    parser.add_argument("--max_prompt_tokens", type=int, default=512, help="Prompt budget (the recipes' 512).")
    parser.add_argument("--check_states", type=int, default=4, help="States per asset of the log-prob comparison.")
    parser.add_argument(
        "--threads", type=int, default=0, help="torch threads; 0: one per core left idle by other jobs (load average)."
    )
    parser.add_argument(
        "--variants",
        default="full,lora_top,lora_all",
        help="Training variants compared in their own processes: full, lora_top, lora_all, qlora_top ('' for none).",
    )
    parser.add_argument("--lora_r", type=int, default=16, help="LoRA rank of the LoRA variants (alpha = 2 r).")
    parser.add_argument("--lora_target_modules", default="all-linear", help="LoRA target modules (comma-separated).")
    parser.add_argument("--skip_speedups", action="store_true", help="Only the LoRA comparison (no naive run).")
    parser.add_argument("--seed", type=int, default=42)
    args = parser.parse_args()
    args.assets = [a.strip().upper() for a in args.assets.split(",")]
    args.variants = [v.strip() for v in args.variants.split(",") if v.strip()]
    unknown = sorted(set(args.variants) - set(VARIANTS))
    if unknown:
        parser.error(f"unknown --variants {unknown}; choose from {sorted(VARIANTS)}")
    cores = os.cpu_count() or 1
    torch.set_num_threads(args.threads or max(1, min(cores, cores - round(os.getloadavg()[0]))))

    print(
        f"torch {torch.__version__}, {torch.get_num_threads()} threads, load average {os.getloadavg()[0]:.1f} "
        f"(other jobs on this machine slow every run)"
    )
    dataset, dataset_path = prepare_dataset(args.dataset, args.assets)
    if args.skip_speedups:
        compare_variants(args, dataset_path)
        return
    tokenizer = load_tokenizer(SMOLLM2_ID)
    output_dir = tempfile.mkdtemp(prefix="flagtrl-bench-out-")

    # --- fast: every speed-up on; cold cache, then the same run on a warm cache ------------------------------------
    backbone = load_backbone(SMOLLM2_ID)
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
    prompts, masks = sample_prompts(dataset, tokenizer, cold.builder, args, args.check_states)
    differences = path_differences(policy, prompts, masks)  # on the trained weights
    batch_size = cold.args.batch_size
    del cold, warm, policy, backbone, cache
    gc.collect()

    # --- naive: every speed-up off, the reference as a separate model ------------------------------------------------
    backbone = load_backbone(SMOLLM2_ID)
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
    print(
        f"equivalence on {len(prompts)} states (trained weights, naive vs fast, cold and warm cache): "
        f"max |d log pi| {differences['log_probs']:.2e}, max |d V| {differences['values']:.2e}, "
        f"max |d KL| {differences['kl']:.2e}"
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
    if args.variants:
        compare_variants(args, dataset_path)


if __name__ == "__main__":
    main()
