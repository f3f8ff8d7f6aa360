#![no_main]

use libfuzzer_sys::fuzz_target;
use listenq_accf::{parse_af_arg, FilterKind};

fuzz_target!(|data: &[u8]| {
    for kind in FilterKind::ALL {
        if let Ok(cfg) = parse_af_arg(kind, data) {
            assert_eq!(cfg.kind, kind);
            // Anything accepted is short, NUL-free up to its end, and only
            // uses the option alphabet.
            let arg = data.split(|&b| b == 0).next().unwrap_or_default();
            assert!(arg.len() <= listenq_accf::MAX_AF_ARG);
            assert!(arg
                .iter()
                .all(|b| b.is_ascii_alphanumeric() || b",=".contains(b)));
        }
    }
});
