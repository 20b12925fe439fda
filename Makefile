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
# Always through clippy, so the lint pass of `rustcheck` reuses the same objects.
KMAKE  := $(MAKE) -C $(SRC) O=$(OBJ) LLVM=1 CLIPPY=1 -j$(JOBS)
KOUT   := $(OBJ)/arch/x86/boot/bzImage
STOUT  := $(CACHE)/selftests

.PHONY: all check deps tree config kernel rustcheck selftests demo vm-check \
	shell help clean distclean rustfmt

# `make`: build everything and boot the VM to show the driver at work.
all: kernel selftests
	@$(STAGE) demo $(REPO)/mk/vm.sh --mode demo --obj $(OBJ) --tests $(STOUT) --out $(RUN)/demo

# `make check`: build everything and run every test in the VM.
check: kernel rustcheck selftests
	@$(STAGE) vm-tests $(REPO)/mk/vm.sh --mode check --obj $(OBJ) --tests $(STOUT) --out $(RUN)/check
	@$(REPO)/mk/summary.sh $(RUN)/check

deps:
	@$(STAGE) deps $(REPO)/mk/deps.sh

tree: deps
	@$(STAGE) tree $(REPO)/mk/tree.sh $(REPO) $(SRC)

config: tree
	@$(STAGE) config $(REPO)/mk/config.sh $(SRC) $(OBJ) $(FRAGMENTS)

kernel: config
	@$(STAGE) kernel-build $(REPO)/mk/kbuild.sh $(OBJ)/build.log $(KMAKE) all

# rustfmt and clippy over the project's Rust code (the tree's own code is
# checked by its maintainers; a clippy pass over it would double the build).
rustcheck: kernel
	@$(STAGE) rustcheck $(REPO)/mk/rustcheck.sh $(SRC) $(OBJ) $(REPO) $(KMAKE)

# Format the project's Rust files in place (a developer tool; builds never edit the repository).
rustfmt:
	rustfmt --edition 2021 --config-path $(SRC)/.rustfmt.toml $$(find $(REPO)/rust $(REPO)/drivers $(REPO)/samples -name '*.rs')

selftests: config
	@$(STAGE) selftests $(REPO)/mk/selftests.sh $(SRC) $(OBJ) $(STOUT)

# Boot the VM with a shell on the console (interactive).
shell: kernel selftests
	$(REPO)/mk/vm.sh --mode shell --obj $(OBJ) --tests $(STOUT) --out $(RUN)/shell

help:
	@echo 'rustmig targets:'
	@echo '  make            install what is missing, build kernel + rustmig + selftests,'
	@echo '                  boot the VM and show the driver bound to the emulated devices'
	@echo '  make check      build the same and run every test in the VM; ends with'
	@echo '                  "N passed, N failed, N skipped", non-zero exit on any failure'
	@echo '  make deps       install the Debian packages (root)'
	@echo '  make tree       unpack linux-source-7.3, apply patches/, overlay the repo'
	@echo '  make config     configure $(OBJ) from kernel/configs/*.config'
	@echo '  make kernel     build bzImage and modules'
	@echo '  make rustcheck  rustfmt check, and no rustc/clippy warning in the project'"'"'s Rust code'
	@echo '  make rustfmt    format the project'"'"'s Rust files in place'
	@echo '  make selftests  build the vfio kselftests'
	@echo '  make shell      boot the VM with a shell on the console'
	@echo '  make clean      remove the build directories in $(CACHE)'
	@echo 'Variables: CACHE=$(CACHE) OBJ=$(OBJ) JOBS=$(JOBS)'

clean:
	rm -rf $(OBJ) $(STOUT) $(RUN)

distclean:
	rm -rf $(CACHE)
