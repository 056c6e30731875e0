# Sourced by the SmolLM2 benchmarks (bench-llama.sh, bench-llm-distill.sh) from the repository root: the model, the
# transformers baseline, the release target dir (target-perf/), and `gguf`, the model's path.
export CARGO_TARGET_DIR=${CARGO_TARGET_DIR:-$PWD/target-perf}
bash scripts/fetch-data.sh smollm2 >/dev/null
bash scripts/bench/setup-python.sh
.bench/venv/bin/pip install -q "transformers==5.24.0" accelerate gguf==0.19.0
gguf=$PWD/data/smollm2/SmolLM2-135M-Instruct.Q4_1.gguf
