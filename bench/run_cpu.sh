#!/usr/bin/env bash
# CPU benchmark of technique 1's encoder: ours and sentence-transformers on the same cores, same documents, in one
# run; prints both and the ratio. Usage: bench/run_cpu.sh [N] [THREADS]
set -euo pipefail
cd "$(dirname "$0")/.."
n=${1:-512}; th=${2:-$(nproc)}
make -s build/bench/bench_embed_cpu
ours=$(RK_ROOT=$PWD build/bench/bench_embed_cpu --n "$n" --threads "$th")
peer=$(python3 bench/peers/embed_st.py --n "$n" --threads "$th" 2>/dev/null | grep '^embed_cpu_peer')
echo "$ours"; echo "$peer"
o=$(sed -n 's/.*ours_docs_per_s=\([0-9.]*\).*/\1/p' <<<"$ours"); p=$(sed -n 's/.*peer_docs_per_s=\([0-9.]*\).*/\1/p' <<<"$peer")
python3 -c "print(f'embed_cpu ratio ours/peer = {float(\"$o\")/float(\"$p\"):.2f}x  ({\"$o\"} vs {\"$p\"} docs/s, $th threads, $(lscpu | sed -n 's/^Model name: *//p' | head -1))')"
