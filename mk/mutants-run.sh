#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the mutants built by mk/mutants.py in the VM (mk/guest-mutants.sh),
# booting a new VM for the rest whenever one dies or hangs on a mutant (that
# mutant is then killed: it brought the kernel down or stuck it).
#
# Usage: mutants-run.sh REPO OBJ TESTS MUTANTS_DIR OUT_DIR [NAME...]
# With NAMEs, only those mutants run again; the others keep their verdicts.
set -uo pipefail
repo=$1 obj=$2 tests=$3 mutants=$4 out=$5
shift 5
if [ $# -gt 0 ]; then
	for m in "$@"; do
		grep -qx "$m" "$mutants/list" || { echo "mutants: no mutant $m" >&2; exit 2; }
		rm -f "$out/results/mutant-$m".*
	done
else
	rm -rf "$out"
fi
n=$(wc -l < "$mutants/list")
for boot in $(seq 1 "$n"); do
	left=0
	for m in $(cat "$mutants/list"); do
		[ -s "$out/results/mutant-$m.txt" ] || left=$((left + 1))
	done
	[ "$left" = 0 ] && break
	echo "mutants: VM $boot, $left mutant(s) to run"
	RUSTMIG_VM_STALL=${RUSTMIG_VM_STALL:-240} "$repo/mk/vm.sh" --mode mutants --keep --obj "$obj" \
		--tests "$tests" --out "$out" --inject "$mutants" | grep -E '^(== mutant|   [a-z0-9-]+: |vm: )'
	# The mutant the VM was running when it died.
	for t in "$out"/results/mutant-*.txt.tmp; do
		[ -e "$t" ] || continue
		mv "$t" "${t%.tmp}"
		echo "mutants: $(basename "${t%.txt.tmp}" | sed 's/^mutant-//'): $(cat "${t%.tmp}")"
	done
done
exit 0
