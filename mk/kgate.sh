#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# The kernel-report gate of a VM run (make check, and the gate proof's runs
# of the same suite): any kernel report from boot to power-off fails it, and
# so does any sign that a detector was off or that part of the log is missing.
# It reads what mk/guest-init.sh saved at the end of the run, and the serial
# console, which has every line the kernel printed, power-off included:
#   dmesg.txt     the whole ring (16 MiB): must start at boot ("Linux version")
#                 and end with guest-init's "rustmig-gate: end of run" line;
#   console.log   the serial console: reports, even from a guest that died;
#   tainted.txt   /proc/sys/kernel/tainted: only O, E and N (KUnit) allowed;
#   lockdep.txt   debug_locks must still be 1 (lockdep still checking);
#   kmemleak.txt  must exist (kmemleak on and readable); no leak in it.
# Prints one line per check that failed, with the report that failed it, and
# "kgate: clean (...)" otherwise. Exit status 0 when clean.
#
# Usage: kgate.sh OUT_DIR
set -uo pipefail
out=$1
. "$(dirname "$0")/report-re.sh"
bad=0

fail() { # MESSAGE
	bad=1
	echo "kgate: FAILED: $1"
}

# Lines around the first match of REGEX in FILE.
excerpt() { # REGEX FILE
	first=$(grep -naE -m1 "$1" "$2" | cut -d: -f1)
	[ -n "$first" ] || return 0
	sed -n "$((first > 5 ? first - 5 : 1)),$((first + 60))p" "$2" | sed 's/^/  | /'
}

dmesg=$out/dmesg.txt console=$out/console.log
if [ ! -s "$dmesg" ]; then
	fail "no kernel log was saved by the guest ($dmesg)"
else
	head -n 1 "$dmesg" | grep -q 'Linux version' ||
		fail "the saved log does not start at boot (the ring wrapped): first line '$(head -n 1 "$dmesg")'"
	grep -q 'rustmig-gate: end of run' "$dmesg" ||
		fail "the saved log does not reach the end of the run (no 'rustmig-gate: end of run' line)"
	if grep -qaE "$RUSTMIG_REPORT_RE" "$dmesg"; then
		first=$(grep -naE -m1 "$RUSTMIG_REPORT_RE" "$dmesg" | cut -d: -f1)
		during=$(head -n "$first" "$dmesg" | grep -a 'rustmig-test: .* starts' | tail -n 1 |
			sed 's/.*rustmig-test: \(.*\) starts.*/\1/')
		fail "kernel report(s) in the log: $(grep -caE "$RUSTMIG_REPORT_RE" "$dmesg") line(s), the first during ${during:-the start of the run, before any test program}:"
		excerpt "$RUSTMIG_REPORT_RE" "$dmesg"
	fi
	# The detectors said they were on.
	for on in 'KernelAddressSanitizer initialized' 'kmemleak: Kernel memory leak detector initialized' \
		'Lock dependency validator'; do
		grep -q "$on" "$dmesg" || fail "a detector did not start: no '$on' in the log"
	done
fi
# The console has every line too: a report printed after the log was saved
# (power-off), or by a guest that never saved it, is there.
# Only the kernel's lines (with their timestamp), not the tests' own output.
kconsole=$out/console.kernel.txt
grep -aE '^\[ *[0-9]+\.[0-9]+\]' "$console" > "$kconsole" 2>/dev/null
if grep -qaE "$RUSTMIG_REPORT_RE" "$kconsole" &&
	! { [ -s "$dmesg" ] && grep -qaE "$RUSTMIG_REPORT_RE" "$dmesg"; }; then
	fail "kernel report(s) on the serial console:"
	excerpt "$RUSTMIG_REPORT_RE" "$kconsole"
fi

# Taint: O (out-of-tree module, the gate proof's), E (unsigned module) and
# N (KUnit ran) are expected; any other flag is a report (W for a WARN, B, D,
# L for a soft lockup, ...), even one whose message was not recognised.
taint_letters=PFSRMBUDAWCIOELKXTNJ
if [ ! -s "$out/tainted.txt" ]; then
	fail "the guest did not save /proc/sys/kernel/tainted"
else
	t=$(cat "$out/tainted.txt")
	allowed=$(( (1 << 12) | (1 << 13) | (1 << 18) ))
	if [ $((t & ~allowed)) != 0 ]; then
		flags=
		for i in $(seq 0 19); do
			[ $(((t >> i) & 1)) = 1 ] && flags="$flags${taint_letters:$i:1}"
		done
		fail "the kernel is tainted $t ($flags): only O, E and N are expected"
	fi
fi

if ! grep -qE 'debug_locks: +1$' "$out/lockdep.txt" 2>/dev/null; then
	fail "lockdep was off at the end of the run: '$(cat "$out/lockdep.txt" 2>/dev/null)'"
fi

if [ ! -f "$out/kmemleak.txt" ]; then
	fail "no kmemleak report was saved: kmemleak was off or unreadable at the end of the run"
	grep -a 'kmemleak' "$dmesg" 2>/dev/null | tail -n 5 | sed 's/^/  | /'
elif grep -q 'unreferenced object' "$out/kmemleak.txt"; then
	fail "kmemleak: $(grep -c 'unreferenced object' "$out/kmemleak.txt") leak(s):"
	head -n 60 "$out/kmemleak.txt" | sed 's/^/  | /'
fi

if [ $bad = 0 ]; then
	echo "kgate: clean ($(wc -l < "$dmesg") lines read from boot to the end of the run," \
		"console $(wc -l < "$console") lines, tainted $(cat "$out/tainted.txt"), lockdep on, kmemleak clean)"
fi
exit $bad
