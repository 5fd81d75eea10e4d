#!/usr/bin/env bash
# Here, after call 2: unpack the cells the device finished into the checkout (new folders only).
set -e
cd "$(dirname "$0")/../.."
src=${1:?files_at folder}
landed=$(mktemp)
cat "$src"/cells.tgz.* | tar tzf - | cut -d/ -f1-7 | sort -u > "$landed"
while read -r d; do [ -e "$d/final.json" ] && echo "exists already: $d"; done < "$landed"
cat "$src"/cells.tgz.* | tar xzf - --skip-old-files
wc -l < "$landed"
