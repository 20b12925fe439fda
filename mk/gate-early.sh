#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Read the gate-early VM's run (vm.sh --mode early, mk/guest-early.sh): the
# bug's report came before the first test, the tests after it passed, and
# make check's own summary (mk/summary.sh with this run's list of result
# files, mk/results/early) still fails the run, on the kernel-log gate alone,
# and shows the report. Writes TAP to TAP_FILE.
#
# Usage: gate-early.sh REPO RUN_DIR NAME TAP_FILE
set -uo pipefail
repo=$1 out=$2 name=$3 tapf=$4
expect=$(sed -n 's/^Expect-dmesg: //p' "$repo/mk/inject/$name.patch")
tap_prefix="gate-early: "
. "$repo/mk/tap-lib.sh"

"$repo/mk/summary.sh" "$out" "$repo/mk/results/early" > "$out/summary.txt" 2>&1
rc=$?
sed 's/^/  | /' "$out/summary.txt" | grep -E 'kgate|passed,|FAILED|^  \|   \|' | head -n 40
[ "$rc" != 0 ]
tap $? "make check's summary fails the run with $name's bug met first (exit $rc)"
grep -qE "$expect" "$out/summary.txt"
tap $? "the summary shows the report: $(grep -oE -m1 "$expect.*" "$out/summary.txt")"
report=$(grep -naE -m1 "$expect" "$out/dmesg.txt" | cut -d: -f1)
first=$(grep -naE -m1 'rustmig-test: .* starts' "$out/dmesg.txt" | cut -d: -f1)
[ -n "$report" ] && [ -n "$first" ] && [ "$report" -lt "$first" ]
tap $? "the report (log line ${report:-none}) came before the first test (line ${first:-none})"
# The gate alone fails it: every result file is there and passes.
others=$(grep '^summary: FAILED: ' "$out/summary.txt" | sort -u | grep -vc 'the kernel-log gate')
ran=$(grep -oE '^[0-9]+ passed' "$out/summary.txt" | cut -d' ' -f1)
[ "$others" = 0 ] && [ "${ran:-0}" -ge 40 ]
tap $? "the tests after it ran and passed (${ran:-0} passed, $others other failure(s))"
tap_end
exit $failed
