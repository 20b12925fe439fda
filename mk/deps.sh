#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
#
# Install what rustmig needs to build a Linux 7.3 tree with Rust and boot it under
# QEMU: Debian trixie's toolchain and Debian's pristine linux-source-7.3 from
# trixie-backports, on a Debian 12 (bookworm) or 13 (trixie) machine.
#
# Idempotent: does nothing when every tool is already there.
set -euo pipefail

# Packages taken from trixie (rustc 1.85 + rust-src + bindgen 0.71 are the 7.3 minimums).
pkgs=(rustc rust-src bindgen clang lld llvm flex bison bc libelf-dev libssl-dev
      cpio zstd xz-utils kmod rsync qemu-system-x86 busybox-static make gcc binutils libc6-dev
      rustfmt rust-clippy uuid-dev patch diffutils linux-perf)
src_pkg=linux-source-7.3
tarball=/usr/src/linux-source-7.3.tar.xz

missing() {
	[ -f "$tarball" ] || return 0
	for t in /usr/bin/rustc /usr/bin/bindgen /usr/bin/clang /usr/bin/ld.lld \
		 /usr/bin/qemu-system-x86_64 /usr/bin/flex /usr/bin/bison /usr/bin/bc \
		 /usr/sbin/depmod /usr/bin/rsync /usr/bin/cpio /usr/bin/rustfmt /usr/bin/clippy-driver \
		 /usr/bin/patch /usr/bin/cmp /usr/bin/make /usr/bin/gcc /usr/bin/perf; do
		[ -x "$t" ] || return 0
	done
	[ -d /usr/lib/rustlib/src/rust/library ] || return 0
	dpkg -s libelf-dev libssl-dev uuid-dev >/dev/null 2>&1 || return 0
	return 1
}

if ! missing; then
	echo "deps: all present"
	exit 0
fi

if [ "$(id -u)" != 0 ]; then
	echo "deps: packages are missing and this is not root; install as root: ${pkgs[*]} $src_pkg" >&2
	exit 1
fi

export DEBIAN_FRONTEND=noninteractive
codename=$(. /etc/os-release && echo "${VERSION_CODENAME:-}")
src=/etc/apt/sources.list.d/rustmig-trixie.sources
if [ "$codename" != trixie ] && [ ! -f "$src" ]; then
	cat > "$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie trixie-updates trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi
if [ ! -f "$src" ] || ! grep -q trixie-backports "$src"; then
	# trixie itself: only the backports suite is needed.
	cat > "$src" <<'SRC'
Types: deb
URIs: http://deb.debian.org/debian
Suites: trixie-backports
Components: main
Signed-By: /usr/share/keyrings/debian-archive-keyring.gpg
SRC
fi

apt_get() { apt-get -y -q -o Dpkg::Use-Pty=0 --no-install-recommends "$@"; }

apt-get update -q -o Dpkg::Use-Pty=0
# '-t trixie' lets the toolchain pull trixie's libc; linux-source comes from
# backports by name only (a '-t trixie-backports' would drag half a library
# transition along). Do not name python3: it would replace /usr/bin/python3.
if ! apt_get install -t trixie "${pkgs[@]}" "$src_pkg/trixie-backports"; then
	echo "deps: first install attempt failed; repairing and retrying" >&2
	apt_get -f install -t trixie -o Dpkg::Options::=--force-overwrite
	apt_get install -t trixie "${pkgs[@]}" "$src_pkg/trixie-backports"
fi

if missing; then
	echo "deps: packages installed but a tool is still missing" >&2
	exit 1
fi
echo "deps: installed"
