// SPDX-License-Identifier: GPL-2.0

//! `#[kunit_tests]` makes a module of KUnit tests a module of `cargo test` tests.

use kernel::prelude::*;

#[kunit_tests(kunit_shim)]
mod tests {
    use super::*;

    #[test]
    fn a_test_runs() {
        assert_eq!(EINVAL.to_errno(), -22);
    }

    #[test]
    fn a_test_may_return_result() -> Result {
        let mut v = KVec::with_capacity(4, GFP_KERNEL)?;
        v.extend_from_slice(&[1u8, 2], GFP_KERNEL)?;
        v.push(3, GFP_KERNEL)?;
        assert_eq!(&v[..], &[1, 2, 3]);
        let e: Result<(), Error> = Err(EPROTO);
        assert_eq!(e, Err(EPROTO));
        Ok(())
    }
}
