// SPDX-License-Identifier: GPL-2.0

//! The sysfs attribute a variant driver may add to each device it is bound to.

/// The page of a sysfs attribute being shown, written through [`core::fmt::Write`].
///
/// What does not fit is not written, and the write fails with [`core::fmt::Error`].
///
/// # Examples
///
/// ```
/// use core::fmt::Write;
/// use kernel::vfio::pci::AttributeWriter;
///
/// let mut page = [0u8; 16];
/// let mut w = AttributeWriter::new(&mut page);
/// assert!(writeln!(w, "state_size={}", 4096).is_ok());
/// assert_eq!(w.len(), 16);
/// assert!(write!(w, "x").is_err());
/// assert_eq!(w.len(), 16);
/// assert_eq!(&page, b"state_size=4096\n");
/// ```
pub struct AttributeWriter<'a> {
    buf: &'a mut [u8],
    len: usize,
}

impl<'a> AttributeWriter<'a> {
    /// Creates a writer that fills `buf` from its start.
    pub fn new(buf: &'a mut [u8]) -> Self {
        Self { buf, len: 0 }
    }

    /// Returns the number of bytes written.
    pub fn len(&self) -> usize {
        self.len
    }

    /// Returns whether nothing was written.
    pub fn is_empty(&self) -> bool {
        self.len == 0
    }
}

impl core::fmt::Write for AttributeWriter<'_> {
    fn write_str(&mut self, s: &str) -> core::fmt::Result {
        let dst = self
            .buf
            .get_mut(self.len..self.len + s.len())
            .ok_or(core::fmt::Error)?;
        dst.copy_from_slice(s.as_bytes());
        self.len += s.len();
        Ok(())
    }
}
