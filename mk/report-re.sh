# SPDX-License-Identifier: GPL-2.0
# The dmesg gate's pattern (sourced by mk/summary.sh and mk/gate-check.sh):
# the header lines of kernel reports. KASAN and lockdep print 'BUG:' or
# 'WARNING:' lines, kmemleak 'suspected memory leaks'.
RUSTMIG_REPORT_RE='BUG:|WARNING:|UBSAN:|Oops|general protection fault|Kernel panic|Call Trace:|RIP: |INFO: task .* blocked for more than|INFO: trying to register non-static key|suspected memory leak|kernel BUG at|panicked at'
