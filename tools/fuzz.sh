#!/usr/bin/env bash
# Long fuzz mode: the hypothesis parity test (tests/test_property.py) with thousands of
# examples. Run it before submitting a kernel change.
#
#   tools/fuzz.sh            # 5000 examples per property
#   tools/fuzz.sh 20000 -x   # count, then any pytest arguments
#
# Uses the python on PATH (activate the venv first). Prints the examples run and the result.
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
examples="${1:-5000}"
shift $(( $# > 0 ? 1 : 0 ))
export JAXCPS_FUZZ_EXAMPLES="$examples"
export JAX_PLATFORMS="${JAX_PLATFORMS:-cpu}"
start=$SECONDS
status=0
python -m pytest -q -p no:cacheprovider --hypothesis-show-statistics "$@" \
  "$root/tests/test_property.py" || status=$?
echo "fuzz: JAXCPS_FUZZ_EXAMPLES=$examples, $((SECONDS - start)) s, pytest exit status $status"
exit $status
