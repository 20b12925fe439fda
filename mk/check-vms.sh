#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM runs of `make check`, side by side (each VM runs its vCPUs on one
# host thread, and the machine has two cores):
#  - the check itself (mk/guest-check.sh), into RUN/check;
#  - the same run with the use after free of mk/inject/ met before every test
#    (vm.sh --early), into RUN/gate-early: make check's own summary must fail
#    it and show KASAN's report (mk/gate-early.sh, whose TAP joins the check's
#    results).
# With EARLY=NAME (make check EARLY=NAME) only the check runs, with that bug
# met first.
#
# Usage: check-vms.sh REPO OBJ TESTS RUN INSPECT INJECT [EARLY]
set -uo pipefail
repo=$1 obj=$2 tests=$3 run=$4 inspect=$5 inject=$6 early=${7:-}
vm=$repo/mk/vm.sh

if [ -n "$early" ]; then
	exec "$vm" --mode check --obj "$obj" --tests "$tests" --out "$run/check" --inspect "$inspect" \
		--inject "$inject" --early "$early"
fi

mkdir -p "$run"
start=$(date +%s)
"$vm" --mode check --obj "$obj" --tests "$tests" --out "$run/gate-early" --inspect "$inspect" \
	--inject "$inject" --early use-after-free > "$run/gate-early.log" 2>&1 &
early_vm=$!
"$vm" --mode check --obj "$obj" --tests "$tests" --out "$run/check" --inspect "$inspect"
rc=$?
echo "== check VM: exit $rc after $(( $(date +%s) - start ))s; waiting for the gate-early VM"
wait "$early_vm"
echo "== gate-early VM: exit $? after $(( $(date +%s) - start ))s (its console: $run/gate-early.log)"
mkdir -p "$run/check/results"
"$repo/mk/gate-early.sh" "$repo" "$run/gate-early" use-after-free "$run/check/results/gate-early.tap" ||
	tail -n 40 "$run/gate-early.log" | sed 's/^/  | /'
exit $rc
