// SPDX-License-Identifier: GPL-2.0

//! Streams built with the driver's own encoder ([`Header::encode`], [`record_header`],
//! [`seal_record`], [`Layout`] and [`Cursor`]), as a device saves them: for tests.

use kernel::prelude::*;

use crate::descriptor;
use crate::stream::{
    record_header, seal_record, Cursor, Header, Layout, Section, Unit, FLAG_MANDATORY, OFFSET_LEN,
    TAG_END,
};

/// A stream and where its records are.
#[derive(Clone, Debug, PartialEq, Eq)]
pub struct Sample {
    pub bytes: Vec<u8>,
    /// The records, the end record last.
    pub records: Vec<Record>,
}

/// A record of a [`Sample`].
#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub struct Record {
    /// Where its record header starts in the stream.
    pub offset: u64,
    pub tag: u32,
    /// The length of its payload.
    pub len: u32,
}

/// Builds the stream that a device of compatibility descriptor `descriptor`, whose state is the
/// sections `sections` (tag and length, in order), saves; byte `o` of section `tag` is
/// `fill(tag, o)`.
pub fn stream(
    descriptor: &str,
    sections: &[(u32, u64)],
    fill: impl Fn(u32, u64) -> u8,
) -> Result<Sample, String> {
    let id = descriptor::parse(descriptor)?.identity;
    let sections: Vec<Section> = sections
        .iter()
        .map(|&(tag, len)| Section { tag, len })
        .collect();
    let layout = Layout::new(&sections).map_err(|e| format!("bad layout: {e:?}"))?;
    if layout.state_size() != id.state_size {
        return Err(format!(
            "the sections hold {} bytes, the descriptor's state_size is {}",
            layout.state_size(),
            id.state_size
        ));
    }
    build(&id, &layout, fill).map_err(|e| format!("cannot build the stream: {e:?}"))
}

fn build(
    id: &crate::stream::Identity,
    layout: &Layout,
    fill: impl Fn(u32, u64) -> u8,
) -> Result<Sample> {
    let mut v = Vec::new();
    let mut records = Vec::new();
    let mut unit = KVec::new();
    let mut cursor = Cursor::default();
    while let Some(u) = cursor.next_unit(layout) {
        unit.clear();
        let (tag, len) = match u {
            Unit::Header => {
                unit.extend_from_slice(&Header::encode(id, layout.payload_len()), GFP_KERNEL)?;
                v.extend_from_slice(&unit);
                continue;
            }
            Unit::Record { tag, offset, len } => {
                // CAST: At most `MAX_RECORD`.
                let rh = record_header(tag, FLAG_MANDATORY, (OFFSET_LEN + len) as u32);
                unit.extend_from_slice(&rh, GFP_KERNEL)?;
                unit.extend_from_slice(&offset.to_le_bytes(), GFP_KERNEL)?;
                for i in 0..len as u64 {
                    unit.push(fill(tag, offset + i), GFP_KERNEL)?;
                }
                (tag, OFFSET_LEN + len)
            }
            Unit::End => {
                unit.extend_from_slice(&record_header(TAG_END, FLAG_MANDATORY, 0), GFP_KERNEL)?;
                (TAG_END, 0)
            }
        };
        seal_record(&mut unit);
        records.push(Record {
            offset: v.len() as u64,
            tag,
            len: len as u32,
        });
        v.extend_from_slice(&unit);
    }
    if v.len() as u64 != layout.stream_len() {
        return Err(EINVAL);
    }
    Ok(Sample { bytes: v, records })
}
