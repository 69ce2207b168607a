//! The peer node's receive path on arbitrary datagrams: envelope, frame
//! and membership decoding, decryption, and the delivery state machine,
//! with no panic and bounded state.
//!
//! The input is split at `0xFF 0xFE` into several datagrams that one node
//! receives in turn (so the delivery layer sees sequences, not just single
//! frames). Each is decoded as it arrives, and also sealed with a known key
//! and opened again (which must give it back), so the decoders behind the
//! encryption layer are reached too.
#![no_main]

use std::cell::RefCell;
use std::net::SocketAddr;
use std::rc::Rc;
use std::time::{Duration, Instant};

use libfuzzer_sys::fuzz_target;
use sockit::peer::crypto::Crypto;
use sockit::peer::delivery::{Delivery, MAX_MESSAGE};
use sockit::peer::message::{
    AppMessage, CodecState, Envelope, Frame, Kind, PeerId, WireCodec, decode_swim, open_envelope,
};

fuzz_target!(|data: &[u8]| {
    let me = PeerId {
        addr: "127.0.0.1:5000".parse().unwrap(),
        name: "me".into(),
        epoch: 1,
        session: 7,
    };
    let mut codec = WireCodec(Rc::new(RefCell::new(CodecState { me, full: None })));
    // Session 7 is "us", so data frames addressed to it reach the stream
    // logic instead of being dropped as stale.
    let mut delivery = Delivery::new(7);
    let mut sender = Crypto::new(b"fuzz", [1; 16]);
    let mut receiver = Crypto::new(b"fuzz", [2; 16]);
    let mut now = Instant::now();

    for datagram in split(data) {
        now += Duration::from_millis(10);
        receive(datagram, &mut codec, &mut delivery, now);

        // Through the encryption layer: seal `[kind][body]`, open, decode.
        // (A node never seals an empty plaintext: the kind is always there.)
        if !datagram.is_empty() {
            let mut sealed = Vec::new();
            sender.seal(datagram, &mut sealed);
            let opened = receiver.open(&mut sealed, now).expect("our own seal opens");
            assert_eq!(opened, datagram);
            let (&k, body) = opened.split_first().expect("not empty");
            let kind = match k {
                1 => Some(Kind::Swim),
                2 => Some(Kind::Data),
                3 => Some(Kind::Ack),
                _ => None,
            };
            if let Some(kind) = kind {
                handle(kind, body, &mut codec, &mut delivery, now);
            }
        }
        // Arbitrary bytes as a sealed datagram never authenticate.
        let mut forged = datagram.to_vec();
        assert!(receiver.open(&mut forged, now).is_err());

        let _ = AppMessage::decode(datagram);
        delivery.on_timer(now);
        let _ = delivery.drain();
    }
});

fn split(data: &[u8]) -> Vec<&[u8]> {
    let mut out = Vec::new();
    let mut start = 0;
    let mut i = 0;
    while i + 1 < data.len() {
        if data[i] == 0xFF && data[i + 1] == 0xFE {
            out.push(&data[start..i]);
            start = i + 2;
            i += 2;
        } else {
            i += 1;
        }
    }
    out.push(&data[start..]);
    out
}

fn receive(datagram: &[u8], codec: &mut WireCodec, delivery: &mut Delivery, now: Instant) {
    if let Envelope::Ours(kind, body) = open_envelope(datagram)
        && kind != Kind::Sealed
    {
        handle(kind, body, codec, delivery, now);
    }
}

fn handle(kind: Kind, body: &[u8], codec: &mut WireCodec, delivery: &mut Delivery, now: Instant) {
    let from: SocketAddr = "127.0.0.1:4000".parse().unwrap();
    match Frame::decode(kind, body) {
        Ok(Frame::Swim(payload)) => {
            if let Ok((_, members)) = decode_swim(payload, codec) {
                assert!(members.len() <= payload.len());
            }
        }
        Ok(Frame::Data(f)) => {
            for d in delivery.on_data(from, &f, now) {
                assert!(d.body.len() <= MAX_MESSAGE);
                let _ = AppMessage::decode(&d.body);
            }
        }
        Ok(Frame::Ack(a)) => delivery.on_ack(&a, now),
        Err(_) => {}
    }
}
