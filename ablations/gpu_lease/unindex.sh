#!/usr/bin/env bash
# Keep the committed PNGs (20 MB) out of what travels to the device: out of the index, ignored.
cd "$(dirname "$0")/../.."
git ls-files '*.png' > /tmp/pngs.txt && git rm -q --cached --pathspec-from-file=/tmp/pngs.txt && echo '*.png' >> .git/info/exclude
git status --short | grep -v '^D ' | head
echo "unindexed $(wc -l < /tmp/pngs.txt) PNGs"
