#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The VM runs of `make check`. The check's VM (mk/guest-check.sh, into
# RUN/check) runs on QEMU 11.1 with its two vCPUs on two host threads; beside
# it, one after the other, on the machine's QEMU (one host thread a VM):
#  - the gate-early VM: the use after free of mk/inject/ met before a few of
#    the check's tests (mk/guest-early.sh), into RUN/gate-early: make check's
#    own summary must fail it on the report alone (mk/gate-early.sh);
#  - the two test hosts (mk/xhost.sh), into RUN/xhost;
#  - the gate proof's VM (mk/guest-gate.sh, mk/gate-check.sh), into RUN/gate.
# The side VMs run at nice 10: the check's VM has the cores when its vCPUs
# want both (a vCPU thread preempted while it holds a guest spinlock stalls
# the other, which spins), and the side VMs take what it leaves. Their TAP
# files join the check's results once all are done. Each VM's time is
# printed, and the side runs' log follows the check's.
# With EARLY=NAME (make check EARLY=NAME) only the check runs, with that bug
# met first.
#
# Usage: check-vms.sh REPO OBJ TESTS RUN INSPECT INJECT QEMU_11 [EARLY]
set -uo pipefail
repo=$1 obj=$2 tests=$3 run=$4 inspect=$5 inject=$6 qemu11=$7 early=${8:-}
vm=$repo/mk/vm.sh
check=(env RUSTMIG_QEMU="$qemu11" RUSTMIG_VM_ACCEL=tcg "$vm" --mode check --obj "$obj"
	--tests "$tests" --out "$run/check" --inspect "$inspect")

if [ -n "$early" ]; then
	exec "${check[@]}" --inject "$inject" --early "$early"
fi

mkdir -p "$run"
side=$run/side
rm -rf "$side"
mkdir -p "$side/results"
start=$(date +%s)
since() { echo "$(( $(date +%s) - start ))s"; }
(
	renice -n 10 -p "$BASHPID" > /dev/null
	"$vm" --mode early --obj "$obj" --tests "$tests" --out "$run/gate-early" \
		--inject "$inject" --early use-after-free > "$side/gate-early-vm.log" 2>&1
	echo "== gate-early VM: exit $? after $(since) (its console: $side/gate-early-vm.log)"
	"$repo/mk/gate-early.sh" "$repo" "$run/gate-early" use-after-free "$side/results/gate-early.tap" ||
		tail -n 40 "$side/gate-early-vm.log" | sed 's/^/  | /'
	"$repo/mk/xhost.sh" "$repo" "$obj" "$tests" "$run" "$side/results" "$qemu11"
	echo "== xhost: done after $(since)"
	"$vm" --mode gate --obj "$obj" --tests "$tests" --out "$run/gate" --inject "$inject"
	echo "== gate proof VM: exit $? after $(since)"
	"$repo/mk/gate-check.sh" "$repo" "$run/gate" "$side/results/gate.tap" ||
		{ [ -s "$side/results/gate.tap" ] ||
			printf 'not ok 1 gate: the gate proof did not run (see above)\n1..1\n' \
				> "$side/results/gate.tap"; }
) > "$side/log" 2>&1 &
side_pid=$!
"${check[@]}"
rc=$?
echo "== check VM: exit $rc after $(since); waiting for the gate-early VM, the two test hosts" \
	"and the gate proof"
wait "$side_pid"
echo "== side VMs: done after $(since); their log:"
sed 's/^/side | /' "$side/log"
mkdir -p "$run/check/results"
cp "$side/results"/*.tap "$run/check/results/"
exit $rc
