#!/usr/bin/env bash
# Call 1: copy the tree to $LEASE/w, unpack the MRPC teacher, start $1 runners (setsid: they
# outlive this call), show their first minute.
: "${LEASE:=${LEASE_DIR:-$HOME}}"; export LEASE  # where a lease works (root's home there)
K=${1:-7}; WATCH=${2:-75}
mkdir -p "$LEASE" && touch "$LEASE/t0"
rm -rf "$LEASE/w" "$LEASE/logs"; mkdir -p "$LEASE/w" "$LEASE/logs"
cp -a . $LEASE/w/ && cd $LEASE/w && source .gpu/bin/env.sh
nvidia-smi --query-gpu=name,memory.total,memory.used,driver_version --format=csv
python3 -c "import torch, transformers, sys; print(sys.version.split()[0], torch.__version__, transformers.__version__, torch.cuda.is_available())"
nproc; free -g | head -2
python3 .gpu/bin/pack.py --unpack .gpu/mrpc ablations/results/teachers/mrpc/model || exit 1
rm -rf .gpu/mrpc
for i in $(seq 1 $K); do setsid nohup bash .gpu/bin/queue.sh "mrpc stsb" a$i > /dev/null 2>&1 < /dev/null & done
sleep $WATCH
nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv
for f in $LEASE/logs/*.log; do echo "== $f"; tail -c 600 $f | tr '\r' '\n' | tail -4; done
