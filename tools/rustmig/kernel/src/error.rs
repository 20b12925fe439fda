// SPDX-License-Identifier: GPL-2.0

//! Errors as in the kernel: an errno, kept negative.

use core::fmt;

/// An error: a kernel errno. As in the kernel it is `Copy`, comparable and prints as its name.
#[derive(Clone, Copy, PartialEq, Eq)]
pub struct Error(i32);

/// A `Result` whose error is an [`Error`] by default, as in the kernel.
pub type Result<T = (), E = Error> = core::result::Result<T, E>;

/// The errno constants.
pub mod code {
    use super::Error;

    macro_rules! declare_err {
        ($($name:ident = $errno:literal, $doc:literal;)*) => {
            $(
                #[doc = $doc]
                pub const $name: Error = Error(-$errno);
            )*

            /// Returns the name of a (positive) errno, if it is one of the constants.
            pub(super) fn name(errno: i32) -> Option<&'static str> {
                match errno {
                    $($errno => Some(stringify!($name)),)*
                    _ => None,
                }
            }
        };
    }

    declare_err! {
        ENOMEM = 12, "Out of memory.";
        EINVAL = 22, "Invalid argument.";
        EPROTO = 71, "Protocol error.";
        EBADMSG = 74, "Not a data message.";
        EPROTONOSUPPORT = 93, "Protocol not supported.";
        EOPNOTSUPP = 95, "Operation not supported on transport endpoint.";
    }
}

impl Error {
    /// Returns the error for a negative errno, [`code::EINVAL`] for anything else (as
    /// `kernel::error::Error::from_errno` does).
    pub fn from_errno(errno: i32) -> Error {
        if (-4095..0).contains(&errno) {
            Error(errno)
        } else {
            code::EINVAL
        }
    }

    /// Returns the errno, negative, as the kernel does.
    pub fn to_errno(self) -> i32 {
        self.0
    }

    /// Returns the errno's name (`"EINVAL"`), for the errnos of [`code`].
    pub fn name(&self) -> Option<&'static str> {
        code::name(-self.0)
    }
}

impl fmt::Debug for Error {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        match self.name() {
            Some(name) => f.write_str(name),
            None => f.debug_tuple("Error").field(&-self.0).finish(),
        }
    }
}

impl From<crate::alloc::AllocError> for Error {
    fn from(_: crate::alloc::AllocError) -> Error {
        code::ENOMEM
    }
}

#[cfg(test)]
mod tests {
    use super::code::*;
    use super::*;

    #[test]
    fn errors_have_their_names_and_numbers() {
        assert_eq!(EINVAL.to_errno(), -22);
        assert_eq!(EBADMSG.name(), Some("EBADMSG"));
        assert_eq!(format!("{EPROTONOSUPPORT:?}"), "EPROTONOSUPPORT");
        assert_eq!(Error::from_errno(-95), EOPNOTSUPP);
        assert_eq!(Error::from_errno(5), EINVAL);
        assert_eq!(format!("{:?}", Error::from_errno(-5)), "Error(5)");
        assert_eq!(Error::from(crate::alloc::AllocError), ENOMEM);
    }
}
