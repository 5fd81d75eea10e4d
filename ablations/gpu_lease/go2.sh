#!/usr/bin/env bash
# Call 2: unpack the STS-B teacher (into call 1's $LEASE/w, or a fresh copy on a fresh machine),
# start $2 more runners, run until $1 seconds after this call began, then pack every cell that
# finished during the lease (no weights) into $OUT.
: "${LEASE:=${LEASE_DIR:-$HOME}}"; export LEASE  # where a lease works (root's home there)
DEADLINE=$1; K=${2:-7}; start=$(date +%s)
if [ ! -d $LEASE/w ]; then
  echo "fresh machine: STS-B only"; mkdir -p $LEASE/w $LEASE/logs; touch $LEASE/t0
  cp -a . $LEASE/w/
else
  cp -a .gpu/stsb $LEASE/w/.gpu/ && cp -a spd $LEASE/w/ && cp -a ablations/*.py $LEASE/w/ablations/
fi
cd $LEASE/w && source .gpu/bin/env.sh
python3 .gpu/bin/pack.py --unpack .gpu/stsb ablations/results/teachers/stsb/model || exit 1
for i in $(seq 1 $K); do setsid nohup bash .gpu/bin/queue.sh "stsb mrpc" b$i > /dev/null 2>&1 < /dev/null & done
while [ $(( $(date +%s) - start )) -lt $DEADLINE ]; do
  sleep 20
  n=$(find ablations/results/cells -name final.json -newer $LEASE/t0 | wc -l)
  echo "$(( $(date +%s) - start ))s: $n cells finished; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  pgrep -f queue.sh > /dev/null || break
done
pkill -f queue.sh; pkill -f ablations.run; sleep 2
find ablations/results/cells -name final.json -newer $LEASE/t0 | xargs -r -n1 dirname > $LEASE/done.txt
wc -l < $LEASE/done.txt
tar czf - --exclude=model --exclude=checkpoint.pt --exclude=.lock --exclude='*.tmp' -T $LEASE/done.txt | split -b 15M - $OUT/cells.tgz.
tar czf $OUT/logs.tgz -C "$LEASE" logs
ls -la $OUT
for f in $LEASE/logs/*.log; do echo "== $f"; grep -a "^\[" $f | tail -3; done
