// SPDX-License-Identifier: GPL-2.0

//! rustmig-inspect: reads, checks and compares rustmig migration streams and compatibility
//! descriptors.
//!
//! The stream format is the kernel driver's own module, `drivers/vfio/pci/rustmig/stream.rs`,
//! built here unchanged over the `kernel` shim crate of this workspace: the inspector parses
//! with the driver's [`Parser`](stream::Parser) and compares with the driver's
//! [`Identity::mismatch`](stream::Identity::mismatch). Its KUnit tests run under `cargo test`.
//!
//! The library's public surface is what the binary and the integration tests need: [`run`], the
//! command line, and [`sample`], streams built with the driver's encoder.

// The driver uses more of the module than the inspector does.
#[allow(dead_code)]
#[path = "../../../drivers/vfio/pci/rustmig/stream.rs"]
mod stream;

/// The defines and structs of `include/uapi/linux/vfio_rustmig.h`, as `stream.rs` has them.
use kernel::uapi;

mod cli;
mod compat;
mod descriptor;
mod inspect;
pub mod sample;

pub use cli::run;

#[cfg(test)]
mod uapi_tests;
