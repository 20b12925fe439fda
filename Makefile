# SPDX-License-Identifier: GPL-2.0
#
# rustmig: build a Linux 7.3 kernel with the rustmig vfio-pci variant driver
# from Debian's pristine source plus this repository, boot it under QEMU and
# run the tests.  `make help` lists the targets.

REPO       := $(abspath $(dir $(lastword $(MAKEFILE_LIST))))
# Everything built lives here, outside the tracked files.
CACHE      ?= $(HOME)/.cache/rustmig
SRC        := $(CACHE)/linux-7.3
OBJ        ?= $(CACHE)/obj-debug
RUN        ?= $(CACHE)/run
JOBS       ?= $(shell echo $$(( $$(nproc) + 1 )))
FRAGMENTS  ?= $(REPO)/kernel/configs/rustmig.config $(REPO)/kernel/configs/rustmig-debug.config

# Debian's rustc/bindgen (with rust-src) must win over a rustup toolchain.
export PATH := /usr/bin:/usr/sbin:$(PATH)

STAGE  := $(REPO)/mk/stage.sh
# rustmig (tools/rustmig) is built by rustup's cargo, offline, in $(CACHE).
CARGO     ?= $(or $(shell command -v cargo 2>/dev/null),$(wildcard $(HOME)/.cargo/bin/cargo))
TOOLS_OUT := $(CACHE)/tools
INSPECT   := $(TOOLS_OUT)/release/rustmig
# The VM runs it too (mk/guest-tool.sh).
export RUSTMIG_TOOL := $(INSPECT)
TCARGO     = env CARGO_TARGET_DIR=$(TOOLS_OUT) $(CARGO)
TFLAGS    := --offline --locked -j1 --manifest-path $(REPO)/tools/rustmig/Cargo.toml
# Always through clippy, so the lint pass of `rustcheck` reuses the same objects.
KMAKE  := $(MAKE) -C $(SRC) O=$(OBJ) LLVM=1 CLIPPY=1 -j$(JOBS)
KOUT   := $(OBJ)/arch/x86/boot/bzImage
STOUT  := $(CACHE)/selftests

.PHONY: all check qemu11 oot series series-check gate-proof gate-build gate-early bench deps tree config kernel rustcheck selftests demo vm-check \
	shell try qemu-repro mutants help clean distclean rustfmt tools

# `make`: build everything and boot the VM to show the driver at work.
all: kernel selftests
	@$(STAGE) demo $(REPO)/mk/vm.sh --mode demo --obj $(OBJ) --tests $(STOUT) --out $(RUN)/demo

# `make check`: build everything and run every test in the VM (QEMU 11.1, two
# vCPUs on two host threads); beside it, one after the other: a short run with
# a use after free met first, which make check's own summary must fail, the
# two test hosts, and the proof that the other gates fail (mk/check-vms.sh).
# Then the kernel-log gate's and the summary's own tests, and the summary,
# which requires every result file of mk/results/check.
# `make check EARLY=NAME`: only the check, with the driver with the bug of
# mk/inject/NAME.patch bound to a device first; the run must fail on its report.
EARLY ?=
check: kernel rustcheck oot selftests tools gate-build qemu11
	@$(STAGE) vm-tests $(REPO)/mk/check-vms.sh $(REPO) $(OBJ) $(STOUT) $(RUN) $(INSPECT) $(INJECT) \
		$(QEMU11) $(EARLY)
	@$(STAGE) kgate-test $(REPO)/mk/kgate-test.sh $(REPO) $(RUN)/check \
		$(RUN)/check/results/kgate-selftest.tap || true
	@$(STAGE) summary-test $(REPO)/mk/summary-test.sh $(REPO) $(RUN)/check $(REPO)/mk/results/check \
		$(RUN)/check/results/summary-selftest.tap || true
	@$(REPO)/mk/summary.sh $(RUN)/check $(REPO)/mk/results/check

# QEMU 11.1 from trixie-backports, unpacked into $(CACHE)/qemu-11 beside the
# machine's QEMU 10.0: the two test hosts migrate from 10.0 to 11.1, and run
# the in-guest QEMU cases with 11.1 too.
QEMU11 := $(CACHE)/qemu-11/qemu-system-x86_64
qemu11: deps
	@$(STAGE) qemu-11 $(REPO)/mk/qemu-11.sh $(CACHE)/qemu-11

# `make gate-proof`: the driver with each deliberate bug of mk/inject/*.patch
# (a use after free, a leak, a lock order inversion, a broken resume path),
# built as external modules in $(INJECT) and run in a VM of their own: each
# must be caught (KASAN, kmemleak, lockdep, QEMU's error), its report shown.
INJECT   := $(CACHE)/inject
GATE_TAP ?= $(RUN)/gate/gate.tap
gate-build: kernel
	@$(STAGE) gate-build $(REPO)/mk/inject.sh $(SRC) $(OBJ) $(REPO) $(INJECT)

gate-proof: kernel selftests gate-build
	-@$(STAGE) vm-gate $(REPO)/mk/vm.sh --mode gate --obj $(OBJ) --tests $(STOUT) --out $(RUN)/gate \
		--inject $(INJECT)
	@$(STAGE) gate-check $(REPO)/mk/gate-check.sh $(REPO) $(RUN)/gate $(GATE_TAP)

# `make gate-early`: a few of make check's tests with the use after free met
# before them; make check's summary must fail it, showing KASAN's report.
GATE_EARLY_TAP ?= $(RUN)/gate-early.tap
gate-early: kernel selftests gate-build
	-@$(STAGE) vm-gate-early $(REPO)/mk/vm.sh --mode early --obj $(OBJ) --tests $(STOUT) \
		--out $(RUN)/gate-early --inject $(INJECT) --early use-after-free
	@$(STAGE) gate-early-check $(REPO)/mk/gate-early.sh $(REPO) $(RUN)/gate-early use-after-free \
		$(GATE_EARLY_TAP)

# `make bench`: the same devices on a kernel without the debugging options,
# and the figures (round trip, malformed streams, QEMU migrations).
BENCH_OBJ ?= $(CACHE)/obj-bench
bench: qemu11
	@$(MAKE) --no-print-directory kernel selftests OBJ=$(BENCH_OBJ) \
		FRAGMENTS=$(REPO)/kernel/configs/rustmig.config
	@$(STAGE) vm-bench $(REPO)/mk/vm.sh --mode bench --obj $(BENCH_OBJ) --tests $(STOUT) \
		--out $(RUN)/bench
	@RUSTMIG_XHOST_GATE=0 $(STAGE) vm-xhost-bench $(REPO)/mk/xhost.sh $(REPO) $(BENCH_OBJ) \
		$(STOUT) $(RUN)/bench-xhost $(RUN)/bench-xhost/results $(QEMU11)

deps:
	@$(STAGE) deps $(REPO)/mk/deps.sh

tree: deps
	@$(STAGE) tree $(REPO)/mk/tree.sh $(REPO) $(SRC)

config: tree
	@$(STAGE) config $(REPO)/mk/config.sh $(SRC) $(OBJ) $(FRAGMENTS)

kernel: config
	@$(STAGE) kernel-build $(REPO)/mk/kbuild.sh $(OBJ)/build.log $(KMAKE) all

# `make series`: the repository as a patch series against pristine 7.3
# (mk/series.txt: the kernel crate, the driver, the sample, the docs, the
# selftests), each patch signed off by AUTHOR and checked by checkpatch
# --strict, in $(SERIES_OUT). `make series-check` applies them one by one to
# the pristine tree and builds the kernel after each (long: not in make check).
TARBALL    ?= /usr/src/linux-source-7.3.tar.xz
AUTHOR     ?= rustmig <rustmig@localhost>
SERIES_OUT ?= $(CACHE)/series/out
series: deps
	@$(STAGE) series python3 $(REPO)/mk/series.py series $(REPO) $(TARBALL) $(CACHE)/series \
		$(SERIES_OUT) "$(AUTHOR)"

series-check: series
	@$(STAGE) series-check python3 $(REPO)/mk/series.py check $(CACHE)/series $(SERIES_OUT) \
		$(FRAGMENTS)

# `make oot`: the driver built out of tree from the top-level Kbuild, as a
# user of a 7.3 tree with the kernel crate's vfio abstractions would build it
# (make -C TREE M=REPO); `make check` does it once.
OOT := $(CACHE)/oot
oot: kernel
	@$(STAGE) oot $(REPO)/mk/oot.sh $(SRC) $(OBJ) $(REPO) $(OOT)

# rustfmt and clippy over the project's Rust code (the tree's own code is
# checked by its maintainers; a clippy pass over it would double the build).
rustcheck: kernel
	@$(STAGE) rustcheck $(REPO)/mk/rustcheck.sh $(SRC) $(OBJ) $(REPO) $(KMAKE)

# Format the project's Rust files in place (a developer tool; builds never edit the repository).
rustfmt:
	rustfmt --edition 2021 --config-path $(SRC)/.rustfmt.toml $$(find $(REPO)/rust $(REPO)/drivers $(REPO)/samples $(REPO)/tools/rustmig -name '*.rs')

selftests: config
	@$(STAGE) selftests $(REPO)/mk/selftests.sh $(SRC) $(OBJ) $(STOUT)

# rustmig (tools/rustmig): its tests (the shared stream.rs's KUnit tests among them),
# then the release binary $(INSPECT).
tools:
	@command -v "$(CARGO)" > /dev/null 2>&1 || { echo "tools: no cargo, neither in PATH nor" \
		"in $(HOME)/.cargo/bin: install rustup's toolchain or set CARGO=/path/to/cargo" >&2; exit 1; }
	@$(STAGE) tools-test $(TCARGO) test $(TFLAGS) --workspace
	@$(STAGE) tools-build $(TCARGO) build $(TFLAGS) --release --bins
	@echo "tools: $(INSPECT)"

# `make try CMD='...'`: the check VM with rustmig bound to every device, CMD
# run inside (e.g. CMD='$$T/vfio_pci_migration_test -t NAME $$C'), then the
# kernel-log gate. For working on one test at a time.
try: kernel selftests
	@RUSTMIG_TRY="$(CMD)" $(REPO)/mk/vm.sh --mode try --obj $(OBJ) --tests $(STOUT) --out $(RUN)/try
	@$(REPO)/mk/kgate.sh $(RUN)/try

# `make mutants`: each logic mutation of mk/mutants.txt built into the driver
# as an external module and run against the fast suite in one VM (more if one
# brings the VM down); each mutation of the kernel crate's migration core is
# a kernel of its own (built in $(CACHE)/obj-mutant, a few minutes each) and
# boots alone. The table says which test killed each. ONLY='A B' runs those
# mutants again and keeps the other verdicts.
MUTANTS := $(CACHE)/mutants
mutants: kernel selftests
	@$(STAGE) mutants-build python3 $(REPO)/mk/mutants.py build $(REPO) $(SRC) $(OBJ) $(MUTANTS)
	@$(STAGE) vm-mutants $(REPO)/mk/mutants-run.sh $(REPO) $(SRC) $(OBJ) $(CACHE)/obj-mutant $(STOUT) \
		$(MUTANTS) $(RUN)/mutants $(ONLY)
	@python3 $(REPO)/mk/mutants.py report $(REPO) $(RUN)/mutants/results

# `make qemu-repro`: the lost virtio notification of multi-threaded TCG
# (Documentation: The test VM), without rustmig: device resets on one vCPU,
# 9p reads on the other. QEMU=... picks the outer QEMU binary.
# QEMU=11 uses QEMU 11.1 from trixie-backports, unpacked into $(CACHE)/qemu-11.
qemu-repro: kernel
	$(if $(filter 11,$(QEMU)),@$(REPO)/mk/qemu-11.sh $(CACHE)/qemu-11)
	RUSTMIG_VM_ACCEL=tcg,thread=multi RUSTMIG_VM_STALL=60 \
		RUSTMIG_QEMU=$(if $(filter 11,$(QEMU)),$(CACHE)/qemu-11/qemu-system-x86_64,$(or $(QEMU),qemu-system-x86_64)) \
		$(REPO)/mk/vm.sh --mode repro --obj $(OBJ) --out $(RUN)/repro$(QEMU)

# Boot the VM with a shell on the console (interactive).
shell: kernel selftests
	$(REPO)/mk/vm.sh --mode shell --obj $(OBJ) --tests $(STOUT) --out $(RUN)/shell

help:
	@echo 'rustmig targets:'
	@echo '  make            install what is missing, build kernel + rustmig + selftests,'
	@echo '                  boot the VM and show the driver bound to the emulated devices'
	@echo '  make check      build the same and run every test in the VM; ends with'
	@echo '                  "N passed, N failed, N skipped", non-zero exit on any failure'
	@echo '  make gate-proof the driver with deliberate bugs (mk/inject/): each must be'
	@echo '                  caught by KASAN, kmemleak, lockdep or QEMU (part of make check)'
	@echo '  make deps       install the Debian packages (root)'
	@echo '  make tree       unpack linux-source-7.3, apply patches/, overlay the repo'
	@echo '  make config     configure $(OBJ) from kernel/configs/*.config'
	@echo '  make kernel     build bzImage and modules'
	@echo '  make rustcheck  rustfmt check, and no rustc/clippy warning in the project'"'"'s Rust code'
	@echo '  make oot        the driver built out of tree from the top-level Kbuild (M=)'
	@echo '  make series     the upstream patch series, checkpatch --strict; series-check builds each'
	@echo '  make rustfmt    format the project'"'"'s Rust files in place'
	@echo '  make selftests  build the vfio kselftests'
	@echo '  make bench      a kernel without debugging options ($(BENCH_OBJ)) and the'
	@echo '                  figures: 256 MiB round trip, malformed streams, QEMU migrations'
	@echo '  make tools      test and build rustmig (tools/rustmig, cargo, offline)'
	@echo '                  into $(TOOLS_OUT)'
	@echo '  make mutants    logic mutations of the driver (mk/mutants.txt) against the fast'
	@echo '                  suite: which test kills each (not part of make check)'
	@echo '  make try CMD=.. the check VM with rustmig bound to every device, CMD run inside'
	@echo '  make shell      boot the VM with a shell on the console'
	@echo '  make clean      remove the build directories in $(CACHE)'
	@echo 'Variables: CACHE=$(CACHE) OBJ=$(OBJ) JOBS=$(JOBS)'

clean:
	rm -rf $(OBJ) $(STOUT) $(RUN) $(TOOLS_OUT) $(INJECT)

distclean:
	rm -rf $(CACHE)
