#![no_main]

use libfuzzer_sys::fuzz_target;
use listenq_accf::FilterKind;

fuzz_target!(|data: &[u8]| listenq_accf_fuzz::check(FilterKind::Tls, data));
