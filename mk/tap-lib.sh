# SPDX-License-Identifier: GPL-2.0
# TAP for the host-side proof scripts (sourced): set tapf (the file) and
# tap_prefix (e.g. "gate: "), then call tap OK NAME; tap_end closes the plan.
n=0 failed=0
: > "$tapf"

tap() { # OK NAME: OK is an exit status, 0 for a pass
	n=$((n + 1))
	if [ "$1" = 0 ]; then
		echo "ok $n $tap_prefix$2" | tee -a "$tapf"
	else
		failed=1
		echo "not ok $n $tap_prefix$2" | tee -a "$tapf"
	fi
}

tap_end() {
	echo "1..$n" >> "$tapf"
}
