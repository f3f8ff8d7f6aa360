//! Kernel linker and module queries: kldload, kldunload, kldfind, kldstat,
//! modfind (sys/sys/linker.h, sys/sys/module.h).

use crate::layout::{
    KLD_ADDRESS_OFF as ADDRESS_OFF, KLD_FILE_STAT_SIZE, KLD_ID_OFF as ID_OFF,
    KLD_NAME_LEN as NAME_LEN, KLD_NAME_OFF as NAME_OFF, KLD_PATHNAME_LEN as PATHNAME_LEN,
    KLD_PATHNAME_OFF as PATHNAME_OFF, KLD_REFS_OFF as REFS_OFF, KLD_SIZE_OFF as SIZE_OFF,
};
use crate::sys::{self, SysResult};

pub use sys::{kldfind as find, kldload as load, kldunload as unload, modfind};

/// kldunload(2) of file `id`, tried again for up to `ms` while it is
/// refused with EBUSY: listenq keeps a closed TCP listener until one
/// network-epoch grace period after its close, and refuses to unload
/// while it does, so an unload right after a test closed its listeners
/// waits for that instead of guessing how long it takes.
pub fn unload_settled(id: i32, ms: u64) -> SysResult<()> {
    let start = sys::now_ms();
    loop {
        match unload(id) {
            Err(sys::Errno::EBUSY) if sys::now_ms().saturating_sub(start) < ms => sys::sleep_ms(10),
            r => return r,
        }
    }
}

/// The parts of struct kld_file_stat the tests look at.
pub struct KldStat {
    raw: [u8; KLD_FILE_STAT_SIZE],
}

fn cstr_field(b: &[u8]) -> &[u8] {
    let end = b.iter().position(|&c| c == 0).unwrap_or(b.len());
    &b[..end]
}

fn i32_at(b: &[u8], off: usize) -> i32 {
    i32::from_ne_bytes([b[off], b[off + 1], b[off + 2], b[off + 3]])
}

impl KldStat {
    pub fn name(&self) -> &[u8] {
        cstr_field(&self.raw[NAME_OFF..NAME_OFF + NAME_LEN])
    }
    pub fn pathname(&self) -> &[u8] {
        cstr_field(&self.raw[PATHNAME_OFF..PATHNAME_OFF + PATHNAME_LEN])
    }
    pub fn id(&self) -> i32 {
        i32_at(&self.raw, ID_OFF)
    }
    pub fn refs(&self) -> i32 {
        i32_at(&self.raw, REFS_OFF)
    }
    /// Where the kernel linker put the file (for symbolizing profiles).
    pub fn address(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[ADDRESS_OFF..ADDRESS_OFF + 8]);
        u64::from_ne_bytes(b)
    }
    pub fn size(&self) -> u64 {
        let mut b = [0u8; 8];
        b.copy_from_slice(&self.raw[SIZE_OFF..SIZE_OFF + 8]);
        u64::from_ne_bytes(b)
    }
}

pub fn stat(fileid: i32) -> SysResult<KldStat> {
    let mut st = KldStat {
        raw: [0; KLD_FILE_STAT_SIZE],
    };
    sys::kldstat(fileid, &mut st.raw)?;
    Ok(st)
}
