// SPDX-License-Identifier: GPL-2.0

//! rustmig: operates VFIO migration on a host (`list`, `state`, `save`, `load`, `preflight`,
//! `estimate`, through the VFIO uAPI, for any VFIO migration driver), and reads, checks and
//! compares rustmig migration streams and compatibility descriptors.
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
mod ops;
pub mod sample;
mod vfio;

pub use cli::run;

#[cfg(test)]
mod uapi_tests;
