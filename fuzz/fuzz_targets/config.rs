//! Any text as lienthong.toml: a clear error or a valid Config, never a panic.
#![no_main]

use libfuzzer_sys::fuzz_target;
use lienthong::config::{Config, Overrides};

fuzz_target!(|data: &[u8]| {
    let Ok(text) = std::str::from_utf8(data) else {
        return;
    };
    let _ = Config::from_toml(
        text,
        std::path::Path::new("/nonexistent"),
        &Overrides::default(),
    );
});
