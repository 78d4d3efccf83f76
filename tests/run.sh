#!/usr/bin/env bash
# Runs envsnap's whole test suite on a fresh machine of this project's kind: installs
# what the tests need and is missing, then runs every test.
set -euo pipefail
cd "$(dirname "$0")/.."

missing=()
command -v git >/dev/null || missing+=(git)
command -v mount >/dev/null || missing+=(mount)
if [ ${#missing[@]} -gt 0 ]; then
  echo "installing: ${missing[*]}"
  apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq "${missing[@]}"
fi

cargo test --locked --all-targets
