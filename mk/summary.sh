#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Summarise a 'make check' VM run: every TAP result file, each test program's
# exit status, and the kernel-log gate (mk/kgate.sh: any kernel report fails
# the run). Ends with the line "N passed, N failed, N skipped"; exits non-zero
# on any failure.
#
# LIST (mk/results/*) names every result file the run must produce, one a
# line: a file that is missing, whose TAP plan ("1..N") is missing or does not
# match its test lines (a program that died half-way), fails; so does a run
# whose guest did not say "ok" in OUT_DIR/done. "FILE noskip=ERE": a test of
# FILE whose name matches ERE must not skip (a test the device must run).
#
# Usage: summary.sh OUT_DIR LIST
set -uo pipefail
out=$1 list=$2
pass=0 fail=0 skip=0
# Every failure in one line, repeated at the end: a log cut in the middle
# still shows what failed.
failures=()
failed() { # WHY
	fail=$((fail + 1))
	failures+=("$1")
	echo "summary: FAILED: $1"
}

[ -r "$list" ] || { echo "summary: no list of result files '$list'" >&2; exit 2; }
done_says=$(cat "$out/done" 2>/dev/null)
if [ "$done_says" != ok ]; then
	echo "summary: the guest's run says '${done_says:-nothing}' (done); console tail:"
	tail -n 80 "$out/console.log" 2>/dev/null
	failed "the VM run did not finish ok (done: '${done_says:-missing}')"
fi

declare -A noskip=()
while read -r file opt; do
	case "$file" in ''|'#'*) continue ;; esac
	noskip[$file]=${opt#noskip=}
	[ -s "$out/results/$file.tap" ] ||
		failed "$file: no result file (results/$file.tap): the program did not run, or died first"
done < "$list"

for tap in "$out"/results/*.tap; do
	[ -e "$tap" ] || continue
	name=$(basename "$tap" .tap)
	[ -n "${noskip[$name]+listed}" ] || echo "summary: $name: not in $(basename "$list")'s list"
	p=$(grep -cE '^ok [0-9]+' "$tap")
	s=$(grep -cE '^ok [0-9]+.*# (SKIP|skip)' "$tap")
	f=$(grep -cE '^not ok [0-9]+' "$tap")
	p=$((p - s))
	# The plan: one "1..N", and N test lines.
	plans=$(grep -cE '^1\.\.[0-9]+' "$tap")
	planned=$(grep -m1 -oE '^1\.\.[0-9]+' "$tap" | cut -d. -f3)
	if [ "$plans" != 1 ] || [ "$planned" != $((p + s + f)) ]; then
		f=$((f + 1))
		echo "summary: $name: $plans plan line(s), ${planned:-no} test(s) planned," \
			"$((p + s + f - 1)) reported; its end:"
		tail -n 15 "$tap" | sed 's/^/  | /'
		failures+=("$name: truncated TAP ($((p + s + f - 1)) of ${planned:-an unknown number of} tests)")
	fi
	rc=$(cat "$out/results/$name.rc" 2>/dev/null || echo 0)
	# A program that failed without a failing TAP line still failed.
	if [ "$rc" != 0 ] && [ "$rc" != 4 ] && [ "$f" = 0 ]; then
		f=1
		echo "summary: $name exited $rc without a failing TAP line; its output:"
		tail -n 30 "$tap" | sed 's/^/  | /'
		failures+=("$name: exited $rc")
	fi
	# Tests the device must run: a skip is a failure.
	if [ -n "${noskip[$name]:-}" ]; then
		while read -r line; do
			f=$((f + 1)) s=$((s - 1))
			failures+=("$name: a required test skipped: $line")
			echo "summary: $name: a required test skipped: $line"
		done < <(grep -E '^ok [0-9]+.*# (SKIP|skip)' "$tap" |
			grep -E "^ok [0-9]+ [^#]*(${noskip[$name]})")
	fi
	if grep -qE '^not ok [0-9]+' "$tap"; then
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
	failed "the kernel-log gate (kgate, above)"
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
