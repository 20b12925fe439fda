#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# make check's summary's own test, on the host: mk/summary.sh must pass a
# copy of the run just made (when that run passed) and fail each copy with
# one thing broken: a result file missing, a TAP cut short, a guest whose run
# says "failed", a required test that skipped, a program that died without a
# failing line. Writes TAP to TAP_FILE.
#
# Usage: summary-test.sh REPO RUN_DIR LIST TAP_FILE
set -uo pipefail
repo=$1 run=$2 list=$3 tapf=$4
summary=$repo/mk/summary.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tap_prefix="summary: "
. "$repo/mk/tap-lib.sh"

copy() { # NAME -> a copy of the run's results and gate inputs
	d=$work/$1
	mkdir -p "$d"
	cp -r "$run/results" "$d/"
	for f in done dmesg.txt console.log tainted.txt lockdep.txt kmemleak.txt; do
		[ -e "$run/$f" ] && cp "$run/$f" "$d/"
	done
	# This test's own result, which the list names, is not written yet.
	printf 'ok 1 summary: placeholder\n1..1\n' > "$d/results/$(basename "$tapf")"
	echo "$d"
}

# must_fail NAME WHY: the summary must fail the copy named NAME, saying WHY (a regex).
must_fail() {
	out=$("$summary" "$work/$1" "$list" 2>&1)
	rc=$?
	[ "$rc" != 0 ] && echo "$out" | grep -qE "$2"
	tap $? "fails a run with $1 ($(echo "$out" | grep -m1 -oE "$2" || echo "exit $rc"))"
}

d=$(copy clean)
out=$("$summary" "$d" "$list" 2>&1)
tap $? "passes the run $run ($(echo "$out" | tail -n 1))"

# The first file the list names, gone.
first=$(grep -m1 -vE '^(#|$)' "$list" | cut -d' ' -f1)
d=$(copy missing-file); rm -f "$d/results/$first.tap"
must_fail missing-file "$first: no result file"
# A program that died half-way: its plan says more tests than its lines.
d=$(copy cut-tap); tap=$d/results/rustmig.migration.edu.tap
awk '/^ok [0-9]+/ && ++n == 3 { exit } { print }' "$run/results/rustmig.migration.edu.tap" > "$tap"
must_fail cut-tap 'rustmig.migration.edu: truncated TAP'
# A host-side TAP written without its plan.
d=$(copy no-plan); sed -i '/^1\.\./d' "$d/results/host.tap"
must_fail no-plan 'host: truncated TAP'
d=$(copy done-failed); echo failed > "$d/done"
must_fail done-failed "the VM run did not finish ok \\(done: 'failed'\\)"
d=$(copy no-done); rm -f "$d/done"
must_fail no-done "the VM run did not finish ok \\(done: 'missing'\\)"
# Each test the list marks required, skipped.
while read -r file opt; do
	case "$opt" in noskip=*) ;; *) continue ;; esac
	d=$(copy "skip-$file")
	sed -i -E "s/^(ok [0-9]+ [^#]*(${opt#noskip=})[^#]*)\$/\\1 # SKIP no interrupt/" \
		"$d/results/$file.tap"
	must_fail "skip-$file" "$file: a required test skipped"
done < <(grep -vE '^(#|$)' "$list")
d=$(copy exit-without-failure); echo 139 > "$d/results/rustmig.migration.edu.rc"
must_fail exit-without-failure 'rustmig.migration.edu: exited 139'
tap_end
exit $failed
