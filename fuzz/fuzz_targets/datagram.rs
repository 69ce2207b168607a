//! Every service's datagram handler on arbitrary input: no panic, and no
//! reply larger than 512 bytes unless it merely echoes the request.
#![no_main]

use libfuzzer_sys::fuzz_target;
use sockit::service::{DatagramState, Service};

const SERVICES: [Service; 8] = [
    Service::Hello,
    Service::Echo,
    Service::Timestamp,
    Service::Daytime,
    Service::Time,
    Service::Discard,
    Service::Chargen,
    Service::Ping,
];

fuzz_target!(|data: &[u8]| {
    let mut out = Vec::new();
    let mut state = DatagramState::default();
    for service in SERVICES {
        if service.reply_datagram(data, 1024, &mut out, &mut state) {
            let bound = if service == Service::Echo { data.len() } else { 512 + data.len().min(1024) + 40 };
            assert!(out.len() <= bound, "{service:?}: {} bytes", out.len());
        }
    }
});
