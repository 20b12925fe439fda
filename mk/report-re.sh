# SPDX-License-Identifier: GPL-2.0
# The kernel-log gate's pattern (sourced by mk/kgate.sh and mk/gate-check.sh):
# the header lines of kernel reports. KASAN, lockdep, the lockup and hung-task
# detectors print 'BUG:', 'WARNING:' or 'INFO:' lines, a WARN() 'cut here',
# kmemleak 'suspected memory leaks', RCU 'detected stall(s)', the hard lockup
# detector 'hard LOCKUP'; a taint that turns lockdep off says so.
RUSTMIG_REPORT_RE='BUG:|WARNING:|UBSAN:|Oops|general protection fault|Kernel panic|Call Trace:|RIP: |INFO: task .* blocked for more than|INFO: trying to register non-static key|suspected memory leak|kernel BUG at|panicked at|cut here|detected stall|self-detected stall|hard LOCKUP|workqueue lockup|Disabling lock debugging|Kernel memory leak detector disabled|kmemleak: .*(disabled|failed)|kmemleak: Memory pool empty'
