#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Read the gate VM run (mk/guest-gate.sh): every deliberate bug of
# mk/inject/*.patch must have been caught, each the way its patch's
# "Expect-WHERE: REGEX" line says:
#   Expect-dmesg     the case's kernel log matches, and so does the dmesg
#                    gate's own pattern (mk/report-re.sh): make check would fail
#   Expect-kmemleak  kmemleak's report of the case matches (Expect-count:
#                    N, at least N objects do)
#   Expect-qemu      the QEMU migration case failed, its output matching
#   Expect-test      a kselftest case failed, its TAP matching, with no
#                    kernel report in the case's log (a logic bug)
# The report that caught each bug is printed. Writes TAP to TAP_FILE.
#
# Usage: gate-check.sh REPO GATE_OUT_DIR TAP_FILE
set -uo pipefail
repo=$1 out=$2 tapf=$3
res=$out/results
. "$repo/mk/report-re.sh"
tap_prefix="gate: "
. "$repo/mk/tap-lib.sh"

# Lines around the first match of REGEX in FILE, as the report that caught the bug.
excerpt() { # REGEX FILE
	first=$(grep -nE -m1 "$1" "$2" | cut -d: -f1)
	[ -n "$first" ] || return 0
	sed -n "$((first > 3 ? first - 3 : 1)),$((first + 24))p" "$2" | sed 's/^/  | /'
}

if [ ! -f "$out/done" ]; then
	tap 1 "the gate VM run finished"
	tail -n 60 "$out/console.log" 2>/dev/null | sed 's/^/  | /'
fi
for patch in "$repo"/mk/inject/*.patch; do
	name=$(basename "$patch" .patch)
	expect=$(sed -n 's/^Expect-\(dmesg\|kmemleak\|qemu\|test\): //p' "$patch")
	where=$(sed -n 's/^Expect-\(dmesg\|kmemleak\|qemu\|test\): .*/\1/p' "$patch")
	case "$where" in
	dmesg) file=$res/gate-$name.dmesg ;;
	kmemleak) file=$res/gate-$name.kmemleak ;;
	qemu) file=$res/gate-$name/qemu-migration.tap ;;
	test) file=$res/gate-$name.tap ;;
	*) tap 1 "$name: its patch has no Expect-dmesg/kmemleak/qemu/test line"; continue ;;
	esac
	# kmemleak's report is empty when it found nothing.
	if [ ! -s "$file" ] && ! { [ "$where" = kmemleak ] && [ -e "$file" ]; }; then
		tap 1 "$name: no $where output was saved ($file)"
		tail -n 20 "$res/gate-$name.log" 2>/dev/null | sed 's/^/  | /'
		continue
	fi
	if ! grep -qE "$expect" "$file"; then
		tap 1 "$name: the injected bug went unnoticed: no '$expect' in $where"
		tail -n 40 "$file" | sed 's/^/  | /'
		tail -n 20 "$res/gate-$name.log" 2>/dev/null | sed 's/^/  | /'
		continue
	fi
	case "$where" in
	dmesg)
		# The dmesg gate of make check sees the same report.
		grep -qE "$RUSTMIG_REPORT_RE" "$file"
		tap $? "$name: caught by the dmesg gate: $(grep -oE -m1 "$expect.*" "$file")"
		;;
	kmemleak)
		# The module is gone by the scan: its frames show as bare addresses.
		# Expect-count: every leaked object is reported, none hidden by a
		# stale pointer.
		count=$(grep -cE "$expect" "$file")
		want=$(sed -n 's/^Expect-count: //p' "$patch")
		if grep -q 'pci_device_probe' "$file" && [ "$count" -ge "${want:-1}" ]; then
			tap 0 "$name: caught by kmemleak, $count object(s) allocated in a probe: $(grep -oE -m1 "$expect" "$file")"
		else
			tap 1 "$name: kmemleak reported $count of the ${want:-1} leaked objects, or none allocated in a probe"
			sed 's/^/  | /' "$res/gate-$name.log" 2>/dev/null
		fi
		;;
	test)
		# Only the test saw it: the kernel log of the case has no report.
		! grep -qaE "$RUSTMIG_REPORT_RE" "$res/gate-$name.dmesg"
		tap $? "$name: caught by a test, not by a sanitizer: $(grep -oE -m1 "$expect" "$file")"
		;;
	qemu)
		grep -q '^not ok' "$file"
		tap $? "$name: QEMU's migration fails, with QEMU's error: $(grep -oE -m1 ".*$expect.*" "$file")"
		;;
	esac
	excerpt "$expect" "$file"
done
tap_end
exit $failed
