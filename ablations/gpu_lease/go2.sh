#!/usr/bin/env bash
# Call 2: unpack the STS-B teacher (into call 1's /root/w, or a fresh copy on a fresh machine),
# start $2 more runners, run until $1 seconds after this call began, then pack every cell that
# finished during the lease (no weights) into $OUT.
DEADLINE=$1; K=${2:-7}; start=$(date +%s)
if [ ! -d /root/w ]; then
  echo "fresh machine: STS-B only"; mkdir -p /root/w /root/logs; touch /root/t0
  cp -a . /root/w/
else
  cp -a .gpu/stsb /root/w/.gpu/ && cp -a spd /root/w/ && cp -a ablations/*.py /root/w/ablations/
fi
cd /root/w && source .gpu/bin/env.sh
python3 .gpu/bin/pack.py --unpack .gpu/stsb ablations/results/teachers/stsb/model || exit 1
for i in $(seq 1 $K); do setsid nohup bash .gpu/bin/queue.sh "stsb mrpc" b$i > /dev/null 2>&1 < /dev/null & done
while [ $(( $(date +%s) - start )) -lt $DEADLINE ]; do
  sleep 20
  n=$(find ablations/results/cells -name final.json -newer /root/t0 | wc -l)
  echo "$(( $(date +%s) - start ))s: $n cells finished; $(nvidia-smi --query-gpu=utilization.gpu,memory.used --format=csv,noheader)"
  pgrep -f queue.sh > /dev/null || break
done
pkill -f queue.sh; pkill -f ablations.run; sleep 2
find ablations/results/cells -name final.json -newer /root/t0 | xargs -r -n1 dirname > /root/done.txt
wc -l < /root/done.txt
tar czf - --exclude=model --exclude=checkpoint.pt --exclude=.lock --exclude='*.tmp' -T /root/done.txt | split -b 15M - $OUT/cells.tgz.
tar czf $OUT/logs.tgz -C /root logs
ls -la $OUT
for f in /root/logs/*.log; do echo "== $f"; grep -a "^\[" $f | tail -3; done
