#!/usr/bin/env bash
cd "$(dirname "$0")/../.."
git reset -q && sed -i '/^\*\.png$/d' .git/info/exclude && git status --short | head && echo reindexed
