// SPDX-License-Identifier: GPL-2.0

//! The stream of a migration session, in and out of the device.
//!
//! [`Saver`] builds the stream one unit (the header, a record, the end record) at a time from
//! the device; [`Loader`] hands the writer's bytes to the [`Parser`], which gives it each
//! complete record to apply to the device. Either way the kernel memory used is a few
//! [`CHUNK`]s, whatever the size of the device's state. The data file itself, and every rule of
//! the uAPI about it, is `kernel::vfio::migration`'s [`Session`].
//!
//! The device's BARs are only touched with them locked ([`Bars`], the core's `memory_lock`) and
//! after checking, under that lock, that the session has not ended: a reset ends sessions under
//! `memory_lock`, so no stale data reaches a device after its reset.

#[cfg(doc)]
use crate::stream::CHUNK;
use crate::{
    backend::Bars,
    stream::{
        record_header,
        seal_record,
        section_data,
        Cursor,
        Event,
        Parser,
        Unit,
        FLAG_MANDATORY,
        HEADER_LEN,
        OFFSET_LEN,
        TAG_END, //
    },
    RustMig, //
};
use kernel::{
    prelude::*,
    sync::aref::ARef,
    vfio::{
        migration::{
            self,
            Part,
            Pending,
            Session, //
        },
        pci::Device,
    }, //
};

/// Locks the BARs of `dev` for an access on behalf of session `s`, unless it ended.
fn bars<'a>(dev: &'a Device<RustMig>, s: &Session<RustMig>) -> Result<Bars<'a>> {
    let bars = dev.lock_bars()?;
    // A reset ends the session under the lock just taken: checked after taking it, so no stale
    // stream reaches, or comes from, a reset device.
    if s.is_ended() {
        return Err(ENODEV);
    }
    Ok(bars)
}

/// The stream of a saving device.
pub(crate) struct Saver {
    /// The device.
    dev: ARef<Device<RustMig>>,
    /// The next unit to build.
    cursor: Cursor,
    /// Where the next unit starts in the stream.
    next: u64,
}

impl Saver {
    /// Creates the saver of `dev`'s stream.
    pub(crate) fn new(dev: &Device<RustMig>) -> Self {
        Saver {
            dev: dev.into(),
            cursor: Cursor::default(),
            next: 0,
        }
    }
}

impl migration::Saver<RustMig> for Saver {
    /// In PRE_COPY only the header: the device's state is read once it is stopped.
    fn pending(&self, stop_copy: bool) -> Pending {
        let left = self.dev.data().layout.stream_len() - self.next;
        let initial = if stop_copy {
            left
        } else {
            (HEADER_LEN as u64).saturating_sub(self.next)
        };
        Pending { initial, dirty: 0 }
    }

    fn produce(
        &mut self,
        s: &Session<RustMig>,
        stop_copy: bool,
        u: &mut KVec<u8>,
    ) -> Result<Option<Part>> {
        if self.pending(stop_copy).total() == 0 {
            return Ok(None);
        }
        let data = self.dev.data();
        // The cursor moves on only once the unit is built: a unit that fails to build is built
        // again by the next read.
        let mut cursor = self.cursor;
        let unit = cursor.next_unit(&data.layout).ok_or(EIO)?;
        match unit {
            Unit::Header => {
                let h = crate::stream::Header::encode(&data.identity, data.layout.payload_len());
                u.extend_from_slice(&h, GFP_KERNEL)?;
            }
            Unit::Record { tag, offset, len } => {
                // CAST: At most `MAX_RECORD`.
                let rh = record_header(tag, FLAG_MANDATORY, (OFFSET_LEN + len) as u32);
                u.extend_from_slice(&rh, GFP_KERNEL)?;
                u.extend_from_slice(&offset.to_le_bytes(), GFP_KERNEL)?;
                let at = u.len();
                u.resize(at + len, 0, GFP_KERNEL)?;
                let bars = bars(&self.dev, s)?;
                data.backend
                    .save(&bars, &data.held, tag, offset, &mut u[at..])?;
                seal_record(u);
            }
            Unit::End => {
                u.extend_from_slice(&record_header(TAG_END, FLAG_MANDATORY, 0), GFP_KERNEL)?;
                seal_record(u);
            }
        }
        self.cursor = cursor;
        // CAST: A unit is in memory.
        self.next += u.len() as u64;
        Ok(Some(Part::Initial))
    }
}

/// The stream of a resuming device.
pub(crate) struct Loader {
    /// The device.
    dev: ARef<Device<RustMig>>,
    parser: Parser,
    /// The section and offset the next record must carry.
    next_section: usize,
    next_offset: u64,
}

impl Loader {
    /// Creates the loader of `dev`'s stream.
    pub(crate) fn new(dev: &Device<RustMig>) -> Result<Self> {
        Ok(Loader {
            dev: dev.into(),
            parser: Parser::new()?,
            next_section: 0,
            next_offset: 0,
        })
    }
}

impl migration::Loader<RustMig> for Loader {
    /// Parses `bytes`, applying complete records to the device.
    fn consume(&mut self, s: &Session<RustMig>, bytes: &[u8]) -> Result {
        let io = &self.dev;
        let data = io.data();
        let dev = io.as_ref();
        let (next_section, next_offset) = (&mut self.next_section, &mut self.next_offset);
        self.parser.feed(bytes, |ev| match ev {
            Event::Header(h) => data.check_header(dev, h),
            Event::Record {
                tag,
                mandatory,
                payload,
            } => {
                let Some(idx) = data.layout.find(tag) else {
                    if mandatory {
                        if data.refusals.allow(dev) {
                            dev_err!(dev, "resume: unknown mandatory record {tag}\n");
                        }
                        return Err(EOPNOTSUPP);
                    }
                    return Ok(());
                };
                let (offset, bytes) = section_data(payload)?;
                let section = data.layout.sections()[idx];
                // Only the section being received has bytes left (`next_offset` is below its
                // length); for any other the subtraction means nothing, and may not be made.
                let want = if idx == *next_section {
                    (section.len - *next_offset).min(crate::stream::CHUNK as u64)
                } else {
                    0
                };
                if idx != *next_section || offset != *next_offset || bytes.len() as u64 != want {
                    if data.refusals.allow(dev) {
                        dev_err!(
                            dev,
                            "resume: record {tag} at {offset}+{} out of order\n",
                            bytes.len()
                        );
                    }
                    return Err(EINVAL);
                }
                let bars = bars(io, s)?;
                data.backend.load(&bars, &data.held, tag, offset, bytes)?;
                *next_offset += want;
                if *next_offset == section.len {
                    *next_section += 1;
                    *next_offset = 0;
                }
                Ok(())
            }
            Event::End => {
                if *next_section != data.layout.sections().len() {
                    if data.refusals.allow(dev) {
                        dev_err!(dev, "resume: stream ended before the device's state\n");
                    }
                    return Err(EINVAL);
                }
                Ok(())
            }
        })
    }

    /// Fails unless the whole stream was written and accepted.
    fn finish(&mut self, _s: &Session<RustMig>, written: u64) -> Result {
        if let Some(e) = self.parser.error() {
            return Err(e);
        }
        if !self.parser.is_complete() {
            let data = self.dev.data();
            let dev = self.dev.as_ref();
            if data.refusals.allow(dev) {
                dev_err!(
                    dev,
                    "resume incomplete: {written} of {} bytes written\n",
                    data.layout.stream_len()
                );
            }
            return Err(EINVAL);
        }
        Ok(())
    }
}
