#!/usr/bin/env bash
# One runner over the cells, in priority order: $1 = tasks order ("mrpc stsb" or "stsb mrpc").
# Several run at once; each cell's lock spreads them over the cells.
: "${LEASE:=${LEASE_DIR:-$HOME}}"; export LEASE  # where a lease works (root's home there)
cd $LEASE/w
id=$2
log=$LEASE/logs/runner$id.log
r() { python3 -m ablations.run "$@" >> $log 2>&1; echo "line done rc=$? $* $(date +%T)" >> $log; }
for t in $1; do
  until [ -f ablations/results/teachers/$t/model/model.safetensors ]; do sleep 5; done
  r components --tasks $t --seeds 5 --methods spd gmp_lr3e-4 no_replacing
  r movement_lr --tasks $t --seeds 5 --methods movement_lr3e-4 movement_lr1e-4
done
for t in $1; do
  r components --tasks $t --seeds 3 --methods logits_only one_shot official_readme
  [ $t = stsb ] && r sparsity --tasks stsb --seeds 3 --methods spd gmp_lr3e-4
  r overfitting --tasks $t --seeds 3 --methods spd gmp_lr3e-4
  r movement_lr --tasks $t --seeds 3 --methods movement
done
echo "queue end $(date +%T)" >> $log
