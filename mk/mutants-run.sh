#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Run the mutants of mk/mutants.txt in the VM (mk/guest-mutants.sh). The
# driver's mutants, built by mk/mutants.py as modules, share VMs: a new VM
# boots for the rest whenever one dies or hangs on a mutant (that mutant is
# then killed: it brought the kernel down or stuck it). Each kernel crate
# mutant is a kernel of its own, built in OBJ_M and booted alone.
#
# Usage: mutants-run.sh REPO SRC OBJ OBJ_M TESTS MUTANTS_DIR OUT_DIR [NAME...]
# With NAMEs, only those mutants run again; the others keep their verdicts.
set -uo pipefail
repo=$1 src=$2 obj=$3 obj_m=$4 tests=$5 mutants=$6 out=$7
shift 7
all=$(cat "$mutants/list" "$mutants/core-list")
only=${*:-}
if [ $# -gt 0 ]; then
	for m in "$@"; do
		grep -qx "$m" <<< "$all" || { echo "mutants: no mutant $m" >&2; exit 2; }
		rm -f "$out/results/mutant-$m".*
	done
else
	rm -rf "$out"
fi

# vm NAME_LIST OBJ INJECT: one VM for the mutants left of INJECT/list.
vm() {
	RUSTMIG_VM_STALL=${RUSTMIG_VM_STALL:-240} "$repo/mk/vm.sh" --mode mutants --keep --obj "$2" \
		--tests "$tests" --out "$out" --inject "$3" | grep -E '^(== mutant|   [a-z0-9-]+: |vm: )'
	# The mutant the VM was running when it died.
	for t in "$out"/results/mutant-*.txt.tmp; do
		[ -e "$t" ] || continue
		mv "$t" "${t%.tmp}"
		echo "mutants: $(basename "${t%.txt.tmp}" | sed 's/^mutant-//'): $(cat "${t%.tmp}")"
	done
}

# Decided, or not asked for: with NAMEs only those run.
decided() {
	[ -s "$out/results/mutant-$1.txt" ] && return 0
	[ -n "$only" ] && ! grep -qxF "$1" <<< "$(printf '%s\n' $only)"
}

# The driver's mutants the VM runs: all of them, or those asked for (the VM
# runs every mutant of its list that has no verdict yet).
inject=$mutants
if [ -n "$only" ]; then
	inject=$out/only
	rm -rf "$inject"
	mkdir -p "$inject" "$out/results"
	for m in $(cat "$mutants/list"); do
		decided "$m" && continue
		ln -s "$mutants/$m" "$inject/$m"
		echo "$m" >> "$inject/list"
	done
	touch "$inject/list"
fi
n=$(wc -l < "$mutants/list")
for boot in $(seq 1 "$n"); do
	left=0
	for m in $(cat "$mutants/list"); do
		decided "$m" || left=$((left + 1))
	done
	[ "$left" = 0 ] && break
	echo "mutants: VM $boot, $left driver mutant(s) to run"
	vm list "$obj" "$inject"
done

for m in $(cat "$mutants/core-list"); do
	decided "$m" && continue
	echo "mutants: building the kernel of $m"
	if ! python3 "$repo/mk/mutants.py" build-core "$repo" "$src" "$obj" "$obj_m" "$mutants" "$m"; then
		echo "mutants: $m does not build" >&2
		exit 1
	fi
	vm list "$obj_m" "$mutants/core/$m"
	decided "$m" || echo "not run: the VM ended before the mutant ran" > "$out/results/mutant-$m.txt"
done
exit 0
