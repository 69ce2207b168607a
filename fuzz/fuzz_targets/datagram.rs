//! Every service's datagram handler on arbitrary input: no panic, and no
//! reply larger than 512 bytes unless it merely echoes the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::chat::ChatConfig;
use sockit::http::SiteConfig;
use sockit::service::{Classic, DatagramState, ServiceKind};

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut state = DatagramState::default();
    for kind in ServiceKind::ALL {
        let Some(service) = kind.build(&SiteConfig::default(), &ChatConfig::default(), None).ok().and_then(|s| s.datagram()) else {
            continue;
        };
        if service.reply_datagram(data, 1024, &mut out, &mut state) {
            let bound = if service == Classic::Echo { data.len() } else { 512 + data.len().min(1024) + 40 };
            assert!(out.len() <= bound, "{kind:?}: {} bytes", out.len());
        }
    }
});
