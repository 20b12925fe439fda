#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Summarise a 'make check' VM run: every TAP result file, each test program's
# exit status, and the kernel-log gate (mk/kgate.sh: any kernel report fails the run). Ends with
# the line "N passed, N failed, N skipped"; exits non-zero on any failure.
#
# Usage: summary.sh OUT_DIR
set -uo pipefail
out=$1
pass=0 fail=0 skip=0
# Every failure in one line, repeated at the end: a log cut in the middle
# still shows what failed.
failures=()

if [ ! -f "$out/done" ]; then
	echo "summary: the VM run did not finish; console tail:"
	tail -n 80 "$out/console.log" 2>/dev/null
	fail=$((fail + 1))
	failures+=("the VM run did not finish")
fi

for tap in "$out"/results/*.tap; do
	[ -e "$tap" ] || continue
	name=$(basename "$tap" .tap)
	p=$(grep -cE '^ok [0-9]+' "$tap" | head -1)
	s=$(grep -cE '^ok [0-9]+.*# (SKIP|skip)' "$tap" | head -1)
	f=$(grep -cE '^not ok [0-9]+' "$tap" | head -1)
	p=$((p - s))
	rc=$(cat "$out/results/$name.rc" 2>/dev/null || echo 0)
	# A program that failed without a failing TAP line still failed.
	if [ "$rc" != 0 ] && [ "$rc" != 4 ] && [ "$f" = 0 ]; then
		f=1
		echo "summary: $name exited $rc without a failing TAP line; its output:"
		tail -n 30 "$tap" | sed 's/^/  | /'
		failures+=("$name: exited $rc")
	fi
	if [ "$f" != 0 ]; then
		echo "summary: $name: failures:"
		grep -E -A12 '^not ok [0-9]+' "$tap" | sed 's/^/  | /'
		while read -r line; do
			failures+=("$name: $line")
		done < <(grep -E '^not ok [0-9]+' "$tap")
	fi
	printf 'summary: %-36s %3d passed, %3d failed, %3d skipped\n' "$name" "$p" "$f" "$s"
	pass=$((pass + p)) fail=$((fail + f)) skip=$((skip + s))
done

# The kernel-log gate: any report from boot to power-off, or a detector off.
if "$(dirname "$0")/kgate.sh" "$out"; then
	pass=$((pass + 1))
else
	fail=$((fail + 1))
	failures+=("the kernel-log gate (kgate, above)")
fi

if [ "$fail" != 0 ] && [ -f "$out/dmesg.txt" ]; then
	echo "summary: kernel log, rustmig and vfio lines:"
	grep -iE 'rustmig|vfio' "$out/dmesg.txt" | tail -n 40 | sed 's/^/  | /'
	echo "summary: kernel log, last 30 lines:"
	tail -n 30 "$out/dmesg.txt" | sed 's/^/  | /'
fi

for f in "${failures[@]}"; do
	echo "summary: FAILED: $f"
done
echo "$pass passed, $fail failed, $skip skipped"
[ "$fail" = 0 ]
