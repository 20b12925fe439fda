#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# `make check`'s two test hosts: two VMs, each with the rustmig kernel and its
# own devices (mk/devices, backing files in its own output directory), joined
# by a virtual network that exists only on this machine (a QEMU stream netdev
# over loopback: host 1 at 10.99.0.1, host 2 at 10.99.0.2). Host 1's QEMUs
# migrate to host 2's across it (mk/guest-xhost.sh, mk/qemu-migrate.py's
# xhost cases); host 1 reads host 2's backing files through the host root.
# Then, here: each VM's kernel log through the gate, and the backing files of
# the devices last migrated compared once more. Results go to TAP_DIR as
# xhost*.tap, for make check's summary.
#
# Usage: xhost.sh REPO OBJ TESTS RUN TAP_DIR QEMU_11
# RUSTMIG_XHOST_CASES="xhost-cancel ...": only these cases of qemu-migrate.py
# (and neither the QEMU 11.1 in-guest cases nor the final compare).
# RUSTMIG_XHOST_GATE=0: no kernel-log gate (make bench: its kernel has no
# detectors to gate on).
set -uo pipefail
repo=$1 obj=$2 tests=$3 run=$4 tapdir=$5 qemu11=$6
out=$run/xhost
vm=$repo/mk/vm.sh
# The stream netdev's port on this machine's loopback.
port=${RUSTMIG_XHOST_PORT:-47311}
rm -rf "$out"
mkdir -p "$out" "$tapdir"

start=$(date +%s)
common=(--mode xhost --obj "$obj" --tests "$tests")
export RUSTMIG_IVSHMEM_MB=16 RUSTMIG_QEMU_11=$qemu11
RUSTMIG_XHOST=2 RUSTMIG_XHOST_NET=server:$port RUSTMIG_XHOST_PEER_OUT=$out/host1 \
	"$vm" "${common[@]}" --out "$out/host2" > "$out/host2.log" 2>&1 &
host2=$!
RUSTMIG_XHOST=1 RUSTMIG_XHOST_NET=client:$port RUSTMIG_XHOST_PEER_OUT=$out/host2 \
	"$vm" "${common[@]}" --out "$out/host1"
rc1=$?
echo "== xhost: host 1 exit $rc1 after $(( $(date +%s) - start ))s; waiting for host 2"
wait "$host2"
rc2=$?
echo "== xhost: host 2 exit $rc2 after $(( $(date +%s) - start ))s (its console: $out/host2.log)"
[ "$rc2" = 0 ] || tail -n 40 "$out/host2.log" | sed 's/^/  host 2 | /'

n=0
tap=$tapdir/xhost-host.tap
: > "$tap"
check() { # NAME CMD...: one TAP line; the command's output under a failure
	n=$((n + 1))
	name=$1
	shift
	if o=$("$@" 2>&1); then
		echo "ok $n xhost: $name"
	else
		echo "not ok $n xhost: $name"
		printf '%s\n' "$o" | sed 's/^/# /'
	fi | tee -a "$tap"
}
for h in 1 2; do
	check "host $h's VM finished" test -f "$out/host$h/done"
	[ "${RUSTMIG_XHOST_GATE:-1}" = 0 ] ||
		check "host $h's kernel log passes the gate" "$repo/mk/kgate.sh" "$out/host$h"
done
# The last cross-host migrations moved C (QEMU 10.0 -> 11.1) and E (multifd)
# from host 1 to host 2.
[ -n "${RUSTMIG_XHOST_CASES:-}" ] ||
	for d in c e; do
		check "host 2's ivshmem-$d equals host 1's, byte for byte" \
			cmp "$out/host1/ivshmem-$d" "$out/host2/ivshmem-$d"
	done
echo "1..$n" >> "$tap"
# Each host's own TAP: host 1's cases, both hosts' shell checks.
for h in 1 2; do
	for t in "$out/host$h/results"/*.tap; do
		[ -e "$t" ] && cp "$t" "$tapdir/xhost-host$h-$(basename "$t")"
	done
done
exit 0
