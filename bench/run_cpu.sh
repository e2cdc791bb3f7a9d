#!/usr/bin/env bash
# CPU benchmarks beside their PyTorch peers on the same cores, in one run; prints both and the ratios:
#   embed     all-MiniLM-L6-v2 sentence embedding (bench_embed_cpu vs sentence-transformers), N documents
#   finetune  one fine-tuning step of a MiniLM classifier, batch 16 (bench_finetune_cpu vs transformers + AdamW)
# Usage: bench/run_cpu.sh [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-512}; th=${2:-$(nproc)}
make -s build/bench/bench_embed_cpu build/bench/bench_finetune_cpu
cpu=$(lscpu | sed -n 's/^Model name: *//p' | head -1)
ratio() { python3 -c "print(f'{float(\"$1\")/float(\"$2\"):.2f}')"; }

ours=$(RK_ROOT=$PWD build/bench/bench_embed_cpu --n "$n" --threads "$th")
peer=$(python3 bench/peers/embed_st.py --n "$n" --threads "$th" 2>/dev/null | grep '^embed_cpu_peer')
echo "$ours"; echo "$peer"
o=$(sed -n 's/.*ours_docs_per_s=\([0-9.]*\).*/\1/p' <<<"$ours"); p=$(sed -n 's/.*peer_docs_per_s=\([0-9.]*\).*/\1/p' <<<"$peer")
echo "embed_cpu ratio ours/peer = $(ratio "$o" "$p")x  ($o vs $p docs/s, $th threads, $cpu)"

ours=$(RK_ROOT=$PWD build/bench/bench_finetune_cpu --threads "$th")
peer=$(python3 bench/peers/finetune_torch.py --threads "$th" 2>/dev/null | grep '^finetune_cpu_peer')
echo "$ours"; echo "$peer"
o=$(sed -n 's/.*ours_tokens_per_s=\([0-9.]*\).*/\1/p' <<<"$ours"); p=$(sed -n 's/.*peer_tokens_per_s=\([0-9.]*\).*/\1/p' <<<"$peer")
echo "finetune_cpu ratio ours/peer = $(ratio "$o" "$p")x  ($o vs $p tokens/s, $th threads, $cpu)"
