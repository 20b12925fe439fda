#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel-log gate's own test, on the host: mk/kgate.sh must pass the
# clean run it is given, and fail each copy of it that lacks one thing it
# checks (the log from boot, the run's last line, a report only on the
# console, a taint, lockdep turned off, a missing or non-empty kmemleak
# report, a detector that never started). Writes TAP to TAP_FILE.
#
# Usage: kgate-test.sh REPO CLEAN_RUN_DIR TAP_FILE
set -uo pipefail
repo=$1 clean=$2 tapf=$3
kgate=$repo/mk/kgate.sh
work=$(mktemp -d)
trap 'rm -rf "$work"' EXIT
tap_prefix="kgate: "
. "$repo/mk/tap-lib.sh"

copy() { # NAME -> a copy of the clean run's gate inputs
	d=$work/$1
	mkdir -p "$d"
	for f in dmesg.txt console.log tainted.txt lockdep.txt kmemleak.txt; do
		[ -e "$clean/$f" ] && cp "$clean/$f" "$d/"
	done
	echo "$d"
}

# must_fail NAME WHY: kgate must fail the copy named NAME, saying WHY (a regex).
must_fail() {
	out=$("$kgate" "$work/$1" 2>&1)
	rc=$?
	[ "$rc" != 0 ] && echo "$out" | grep -qE "$2"
	tap $? "fails a run with $1 ($(echo "$out" | grep -m1 -oE "$2" || echo "exit $rc"))"
}

"$kgate" "$clean" > /dev/null 2>&1
tap $? "passes the clean run $clean"

d=$(copy wrapped-log); sed -i 1d "$d/dmesg.txt"
must_fail wrapped-log 'does not start at boot'
d=$(copy cut-log); sed -i '/rustmig-gate: end of run/d' "$d/dmesg.txt"
must_fail cut-log 'does not reach the end of the run'
d=$(copy report-in-log); sed -i '5a [    9.000000] BUG: KASAN: slab-use-after-free in a_test+0x1/0x2' "$d/dmesg.txt"
must_fail report-in-log 'kernel report\(s\) in the log'
d=$(copy report-on-console); echo '[  999.000000] WARNING: CPU: 1 PID: 1 at a_test.c:1 a_test+0x1/0x2' >> "$d/console.log"
must_fail report-on-console 'on the serial console'
d=$(copy warn-taint); echo $(( $(cat "$d/tainted.txt") | 512 )) > "$d/tainted.txt"
must_fail warn-taint 'tainted [0-9]+ \([A-Z]*W'
d=$(copy no-taint-file); rm -f "$d/tainted.txt"
must_fail no-taint-file 'did not save /proc/sys/kernel/tainted'
d=$(copy lockdep-off); echo ' debug_locks:                             0' > "$d/lockdep.txt"
must_fail lockdep-off 'lockdep was off'
d=$(copy no-kmemleak); rm -f "$d/kmemleak.txt"
must_fail no-kmemleak 'no kmemleak report was saved'
d=$(copy a-leak); printf 'unreferenced object 0xffff888100b05a00 (size 256):\n  comm "sh", pid 1\n' > "$d/kmemleak.txt"
must_fail a-leak 'kmemleak: 1 leak'
d=$(copy no-kasan); sed -i '/KernelAddressSanitizer initialized/d' "$d/dmesg.txt"
must_fail no-kasan "a detector did not start: no 'KernelAddressSanitizer"
tap_end
exit $failed
