//! Micro-benchmarks for the message hot path: line framing and reply
//! building, without sockets. `cargo bench --bench framing`.

use std::hint::black_box;

use criterion::{Criterion, Throughput, criterion_group, criterion_main};
use sockit::net::frame::{Frame, LineBuffer, split_datagram};
use sockit::service::message::MessageKind;
use sockit::service::{Classic, DatagramState};

/// 16 pipelined `ping N` lines, as one read delivers them.
fn pipelined_batch() -> Vec<u8> {
    (0..16)
        .flat_map(|i| format!("ping {i:010}\n").into_bytes())
        .collect()
}

fn framing(c: &mut Criterion) {
    let batch = pipelined_batch();
    let mut group = c.benchmark_group("framing");
    group.throughput(Throughput::Elements(16));
    group.bench_function("16 pipelined lines", |b| {
        let mut lines = LineBuffer::new(64 * 1024);
        b.iter(|| {
            lines.push(black_box(&batch));
            let mut n = 0;
            while let Some(frame) = lines.next_frame() {
                if let Frame::Line(line, _) = frame {
                    n += line.len();
                }
            }
            black_box(n)
        });
    });
    group.bench_function("16 ping replies", |b| {
        let mut lines = LineBuffer::new(64 * 1024);
        let mut out = Vec::with_capacity(4096);
        let mut state = DatagramState::default();
        b.iter(|| {
            lines.push(black_box(&batch));
            out.clear();
            let mut reply = Vec::with_capacity(64);
            while let Some(Frame::Line(line, _)) = lines.next_frame() {
                Classic::Message(MessageKind::Ping).reply_datagram(
                    line,
                    64 * 1024,
                    &mut reply,
                    &mut state,
                );
                out.extend_from_slice(&reply);
                out.push(b'\n');
            }
            black_box(out.len())
        });
    });
    group.finish();

    c.bench_function("split_datagram", |b| {
        b.iter(|| black_box(split_datagram(black_box(b"ping 0000000042\r\n"))))
    });
}

criterion_group!(benches, framing);
criterion_main!(benches);
