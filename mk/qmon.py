#!/usr/bin/env python3
# SPDX-License-Identifier: GPL-2.0
"""Send commands to a QEMU human monitor (HMP) on a unix socket and print
what each one answers: mk/vm.sh uses it to examine a guest that stopped
making progress (sysrq through the keyboard, the vCPUs' registers).

Usage: qmon.py SOCKET COMMAND...
"""
import socket
import sys
import time


def until_prompt(s, limit=30.0):
    buf = b""
    end = time.monotonic() + limit
    while not buf.endswith(b"(qemu) ") and time.monotonic() < end:
        s.settimeout(max(0.1, end - time.monotonic()))
        try:
            chunk = s.recv(65536)
        except socket.timeout:
            break
        if not chunk:
            break
        buf += chunk
    return buf.decode(errors="replace")


def main():
    if len(sys.argv) < 3:
        print(__doc__, file=sys.stderr)
        return 2
    s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        s.connect(sys.argv[1])
    except OSError as e:
        print(f"qmon: cannot reach the monitor at {sys.argv[1]}: {e}", file=sys.stderr)
        return 1
    until_prompt(s)
    for cmd in sys.argv[2:]:
        s.sendall(cmd.encode() + b"\n")
        out = until_prompt(s)
        # HMP echoes the command line (with terminal escapes) first.
        lines = out.replace("\r", "").split("\n")[1:]
        print(f"(qemu) {cmd}")
        print("\n".join(l for l in lines if l != "(qemu) "))
    return 0


if __name__ == "__main__":
    sys.exit(main())
