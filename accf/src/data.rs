//! dataready: stock `sohasdata()` is `soreadable()`, i.e. Ready as soon as
//! there is at least one byte (more precisely `sb_lowat` bytes, which the
//! kernel wrapper checks; see the crate docs).

use crate::Progress;

#[derive(Clone, Copy, Debug, PartialEq, Eq)]
pub(crate) struct Data;

impl Data {
    /// The caller never passes an empty chunk, so any call means data.
    pub(crate) fn feed(&mut self, bytes: &[u8]) -> Progress {
        if bytes.is_empty() {
            Progress::NeedMore
        } else {
            Progress::Ready
        }
    }
}
