#!/usr/bin/env bash
# Keep the committed PNGs (20 MB) out of what travels to the device: out of the index, ignored.
cd "$(dirname "$0")/../.."
pngs=$(mktemp)
git ls-files '*.png' > "$pngs" && git rm -q --cached --pathspec-from-file="$pngs" && echo '*.png' >> .git/info/exclude
git status --short | grep -v '^D ' | head
echo "unindexed $(wc -l < "$pngs") PNGs"
