#!/usr/bin/env bash
# The README's test command; fails on any failing test and when pytest collects no test.
set -euo pipefail
cd "$(dirname "$0")/.."
pip install -e ".[test]"
set +e
pytest "$@"
rc=$?
set -e
if [ "$rc" -eq 5 ]; then
  echo "ci/test.sh: pytest collected no tests" >&2
  exit 1
fi
exit "$rc"
