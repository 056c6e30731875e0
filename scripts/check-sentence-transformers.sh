#!/usr/bin/env bash
# Checks that `anbiq export --format hf` of a sentence encoder is a sentence-transformers model that embeds like
# anbiq: all-MiniLM-L6-v2 cut to 3 layers with its embeddings reduced to 128 dimensions by PCA (so the export holds
# Transformer, Pooling, Normalize and Dense modules), and a 128-wide 1-layer student distilled through
# `projection: keep` (Transformer, Pooling, Dense, Normalize); each one's embeddings of 200 Shakespeare lines stored
# by `infer` (f32), then its exported directory loaded with `SentenceTransformer` in the project's Python environment
# (scripts/bench/py.sh) and compared sentence by sentence (cosine ≥ 0.99999).
#   bash scripts/fetch-data.sh minilm && bash scripts/fetch-data.sh folio && bash scripts/check-sentence-transformers.sh
set -euo pipefail
root=$(cd "$(dirname "$0")/.." && pwd)
"$root/scripts/bench/setup-python.sh"
"$root/.bench/venv/bin/pip" install -q "transformers==5.24.0" "sentence-transformers==6.2.0"
work=$(mktemp -d /tmp/anbiq-st-check.XXXXXX)
[ -n "${KEEP:-}" ] || trap 'rm -rf "$work"' EXIT
head -n 200 "$root/data/folio/train.txt" >"$work/sentences.txt"
ln -s "$root/data/minilm" "$work/minilm"
cat >"$work/check.yaml" <<'YAML'
name: st-check
seed: 1
steps:
  teacher: {kind: import, hf: minilm, input_shape: [64]}
  lines: {kind: dataset, source: sentences, path: sentences.txt, tokenizer: {model: teacher}, context: 64, truncate: true}
  small: {kind: prune, model: teacher, data: lines.train, calibration: 200, layers: {keep: [0, 2, 4]}, pca: {size: 128}}
  embedded: {kind: infer, model: small, data: lines.train, store: {dtype: f32}}
  targets: {kind: infer, model: teacher, data: lines.train}
  narrow:
    kind: distill
    teacher: targets
    data: lines.train
    loss: {cosine_embedding: {}}
    projection: keep
    epochs: 1
    batch_size: 20
    model: {arch: bert, vocab_size: 30522, hidden_size: 128, num_hidden_layers: 1, num_attention_heads: 2,
            intermediate_size: 256, max_position_embeddings: 512, pooling: mean, normalize: true}
  embedded_narrow: {kind: infer, model: narrow, data: lines.train, store: {dtype: f32}}
YAML
anbiq=${ANBIQ:-$root/target/release/anbiq}
[ -x "$anbiq" ] || (cd "$root" && cargo build --release -q)
(cd "$work" && "$anbiq" run check.yaml --store "$work/store" >/dev/null)
for step in small narrow; do
  (cd "$work" && "$anbiq" export check.yaml $step "$work/$step" --format hf --store "$work/store")
  # The `infer` output of that model: its embeddings.json names it.
  embeddings=$(grep -rl "\"model\": \"$step\"" --include=embeddings.json "$work/store" | head -n 1 | xargs dirname)
  "$root/scripts/bench/py.sh" "$root/scripts/reference/check_sentence_transformers.py" "$work/$step" "$embeddings" \
    "$work/sentences.txt"
done
