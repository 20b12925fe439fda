#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Read a `make check` run made with an early bug (vm.sh --early NAME): the
# bug's report came before every test, the whole suite ran after it (the
# malformed streams among them), and make check's own summary (mk/summary.sh,
# its kernel-log gate included) still fails the run and shows the report.
# Writes TAP to TAP_FILE.
#
# Usage: gate-early.sh REPO RUN_DIR NAME TAP_FILE
set -uo pipefail
repo=$1 out=$2 name=$3 tapf=$4
expect=$(sed -n 's/^Expect-dmesg: //p' "$repo/mk/inject/$name.patch")
tap_prefix="gate-early: "
. "$repo/mk/tap-lib.sh"

"$repo/mk/summary.sh" "$out" > "$out/summary.txt" 2>&1
rc=$?
sed 's/^/  | /' "$out/summary.txt" | grep -E 'kgate|passed,|^  \|   \|' | head -n 40
[ "$rc" != 0 ]
tap $? "make check's summary fails the run with $name's bug met first (exit $rc)"
grep -qE "$expect" "$out/summary.txt"
tap $? "the summary shows the report: $(grep -oE -m1 "$expect.*" "$out/summary.txt")"
report=$(grep -naE -m1 "$expect" "$out/dmesg.txt" | cut -d: -f1)
streams=$(grep -na -m1 'rustmig-test: rustmig.stream.edu starts' "$out/dmesg.txt" | cut -d: -f1)
[ -n "$report" ] && [ -n "$streams" ] && [ "$report" -lt "$streams" ]
tap $? "the report (log line ${report:-none}) came before the 9,000 malformed streams (line ${streams:-none})"
ran=$(grep -oE '^[0-9]+ passed' "$out/summary.txt" | cut -d' ' -f1)
[ "${ran:-0}" -ge 500 ]
tap $? "the whole suite ran after it (${ran:-0} passed)"
tap_end
exit $failed
