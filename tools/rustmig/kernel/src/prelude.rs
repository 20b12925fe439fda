// SPDX-License-Identifier: GPL-2.0

//! The names of the kernel prelude that rustmig's stream module uses.

pub use crate::alloc::{flags::*, KVVec, KVec};
pub use crate::error::{code::*, Error, Result};
pub use macros::kunit_tests;
