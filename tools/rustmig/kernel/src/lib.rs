// SPDX-License-Identifier: GPL-2.0

//! The part of the kernel crate that rustmig's stream module uses, for userspace.
//!
//! `drivers/vfio/pci/rustmig/stream.rs` is written against `kernel::prelude`, `kernel::crc`,
//! `kernel::xxhash` and `kernel::uapi` only, so that `rustmig-inspect` can build the very same
//! file. This crate provides those names with the kernel's signatures: [`uapi`] generated from
//! the uAPI header as the kernel's bindgen run generates it, fallible allocation ([`KVec`] with
//! [`GFP_KERNEL`]), [`Error`] and its errno constants, [`Result`], [`crc::Crc32c`] (computed here
//! rather than by the kernel's `crc32c()`), [`xxhash::Xxh64`] (the kernel crate's own file) and
//! `#[kunit_tests]`, which makes a module of KUnit tests a `#[cfg(test)]` module of `cargo test`
//! tests.
//!
//! Beyond the kernel's API it has [`Error::name`] returning a `&str` (the kernel's returns a
//! `CStr`), for the tool's messages.

#![forbid(unsafe_code)]

pub mod alloc;
pub mod crc;
pub mod error;
pub mod prelude;
/// XXH64: the kernel crate's own file, which is pure Rust.
#[path = "../../../../rust/kernel/xxhash.rs"]
pub mod xxhash;

/// The stream format's uAPI, `include/uapi/linux/vfio_rustmig.h`: its `RUSTMIG_*` defines and
/// its structs (the kernel has them from bindgen).
#[allow(non_camel_case_types)]
pub mod uapi {
    include!(concat!(env!("OUT_DIR"), "/uapi.rs"));
}

pub use alloc::{flags::GFP_KERNEL, KVec};
pub use error::{Error, Result};
