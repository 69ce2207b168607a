//! The peer wire format (docs/peer-protocol.md is the prose version).
//!
//! Every datagram of ours starts with a 4-byte header: the magic bytes
//! `C5 4B`, the protocol version, and a kind. `C5 4B` is not valid UTF-8,
//! so no text datagram (nc, the tutorials' node programs) can be mistaken
//! for ours: anything without the magic is a plain datagram. The kinds:
//!
//! - [`Kind::Swim`]: a membership message, encoded by [`WireCodec`] for foca;
//! - [`Kind::Data`] / [`Kind::Ack`]: the reliable message stream of
//!   `delivery.rs` ([`DataFrame`], [`AckFrame`]);
//! - [`Kind::Sealed`]: any of the above, encrypted (`crypto.rs`).
//!
//! Decoding is total: any byte string gives a value or a [`WireError`],
//! never a panic, and nothing here allocates more than the input's size.

use std::cell::RefCell;
use std::collections::HashSet;
use std::net::{IpAddr, Ipv4Addr, Ipv6Addr, SocketAddr};
use std::rc::Rc;

use bytes::{Buf, BufMut};
use foca::{Header, Member, Message, State};

/// The first two bytes of every datagram of ours.
pub const MAGIC: [u8; 2] = [0xC5, 0x4B];
/// The protocol version this build speaks.
pub const VERSION: u8 = 1;
/// Magic, version and kind.
pub const HEADER_LEN: usize = 4;
/// The largest datagram we send or accept as ours: under the IPv6 minimum
/// MTU (1280) less IP and UDP headers, so nothing is ever fragmented.
pub const MAX_DATAGRAM: usize = 1200;
/// Room left for the encryption envelope (nonce and tag) and the inner
/// kind byte inside [`MAX_DATAGRAM`].
pub const SEAL_OVERHEAD: usize = 24 + 16 + 1;
/// The largest foca payload: what is left of a datagram after the header
/// and the encryption envelope.
pub const MAX_SWIM_PAYLOAD: usize = MAX_DATAGRAM - HEADER_LEN - SEAL_OVERHEAD;
/// Fixed part of a data frame: four u64 and the flags byte.
pub const DATA_FRAME_FIXED: usize = 8 * 4 + 1;
/// The largest piece of a message one data frame carries.
pub const MAX_CHUNK: usize = MAX_SWIM_PAYLOAD - DATA_FRAME_FIXED;
/// The longest member name, in bytes.
pub const MAX_NAME: usize = 32;
/// Frames the selective-acknowledgement bitmap of an ack covers.
pub const SACK_BITS: usize = 256;

// A full data frame, and an ack, fit one datagram even when sealed.
const _: () = assert!(HEADER_LEN + SEAL_OVERHEAD + DATA_FRAME_FIXED + MAX_CHUNK <= MAX_DATAGRAM);
const _: () = assert!(HEADER_LEN + SEAL_OVERHEAD + 8 * 3 + SACK_BITS / 8 <= MAX_DATAGRAM);

/// What follows the header.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
#[repr(u8)]
pub enum Kind {
    /// A foca (SWIM) membership message.
    Swim = 1,
    /// A piece of an application message.
    Data = 2,
    /// An acknowledgement of data frames.
    Ack = 3,
    /// An encrypted datagram whose plaintext is `[kind][body]`.
    Sealed = 0x80,
}

impl Kind {
    fn from_u8(b: u8) -> Option<Kind> {
        Some(match b {
            1 => Kind::Swim,
            2 => Kind::Data,
            3 => Kind::Ack,
            0x80 => Kind::Sealed,
            _ => return None,
        })
    }
}

/// Why bytes were refused.
#[derive(Debug, Clone, Copy, PartialEq, Eq, thiserror::Error)]
pub enum WireError {
    /// The input ended inside a field.
    #[error("truncated")]
    Truncated,
    /// An unknown kind, tag or state byte.
    #[error("unknown tag {0}")]
    BadTag(u8),
    /// A member name that is empty, too long or has forbidden characters.
    #[error("invalid member name")]
    BadName,
    /// A field out of its range (a chunk too long, an unknown flag).
    #[error("field out of range")]
    OutOfRange,
    /// The member table is full and this is a member we do not know.
    #[error("member table full")]
    MembersFull,
    /// The encoder ran out of buffer space.
    #[error("no room in the output buffer")]
    NoRoom,
}

/// How a received datagram looks before anything else is parsed.
#[derive(Debug, PartialEq, Eq)]
pub enum Envelope<'a> {
    /// Not ours: a plain datagram from nc or the tutorials' programs.
    Plain,
    /// Ours, but a version this build does not speak.
    OtherVersion(u8),
    /// Ours, with a kind byte we do not know.
    UnknownKind(u8),
    /// Ours: the kind and the bytes after the header.
    Ours(Kind, &'a [u8]),
}

/// Classifies a datagram by its header.
///
/// ```
/// use sockit::peer::message::{Envelope, Kind, open_envelope};
/// assert_eq!(open_envelope(b"hello\n"), Envelope::Plain);
/// assert_eq!(open_envelope(&[0xC5, 0x4B, 1, 2, 9]), Envelope::Ours(Kind::Data, &[9][..]));
/// ```
pub fn open_envelope(datagram: &[u8]) -> Envelope<'_> {
    if datagram.len() < HEADER_LEN || datagram[..2] != MAGIC {
        return Envelope::Plain;
    }
    if datagram[2] != VERSION {
        return Envelope::OtherVersion(datagram[2]);
    }
    match Kind::from_u8(datagram[3]) {
        Some(kind) => Envelope::Ours(kind, &datagram[HEADER_LEN..]),
        None => Envelope::UnknownKind(datagram[3]),
    }
}

/// Appends the 4-byte header for `kind`.
pub fn write_header(out: &mut Vec<u8>, kind: Kind) {
    out.extend_from_slice(&MAGIC);
    out.push(VERSION);
    out.push(kind as u8);
}

/// A little cursor over untrusted bytes: every read is bounds-checked.
pub(crate) struct Reader<'a> {
    buf: &'a [u8],
}

impl<'a> Reader<'a> {
    pub(crate) fn new(buf: &'a [u8]) -> Self {
        Reader { buf }
    }

    pub(crate) fn bytes(&mut self, n: usize) -> Result<&'a [u8], WireError> {
        if self.buf.len() < n {
            return Err(WireError::Truncated);
        }
        let (head, rest) = self.buf.split_at(n);
        self.buf = rest;
        Ok(head)
    }

    pub(crate) fn u8(&mut self) -> Result<u8, WireError> {
        Ok(self.bytes(1)?[0])
    }

    fn u16(&mut self) -> Result<u16, WireError> {
        let b = self.bytes(2)?;
        Ok(u16::from_be_bytes([b[0], b[1]]))
    }

    pub(crate) fn u64(&mut self) -> Result<u64, WireError> {
        let b = self.bytes(8)?;
        Ok(u64::from_be_bytes(b.try_into().expect("8 bytes")))
    }

    pub(crate) fn rest(&mut self) -> &'a [u8] {
        std::mem::take(&mut self.buf)
    }

    fn consumed_from(&self, total: usize) -> usize {
        total - self.buf.len()
    }
}

/// A member's identity in the mesh, as foca sees it.
///
/// `addr` is where the member receives datagrams (foca keeps one entry
/// per address). `session` is random per process start: it names the
/// member's message streams, so a restarted process starts fresh ones.
/// `epoch` orders identities at one address: a restart (a later start
/// time) or a renewal after a false "down" (epoch + 1) wins over the old
/// identity, which is how a member that comes back rejoins at once.
#[derive(Debug, Clone, PartialEq, Eq, Hash)]
pub struct PeerId {
    /// Where the member receives datagrams.
    pub addr: SocketAddr,
    /// Its name in messages and `/peers`.
    pub name: String,
    /// Milliseconds since the Unix epoch at start, plus renewals.
    pub epoch: u64,
    /// Random per process; 0 only in the placeholder used to join.
    pub session: u64,
}

impl PeerId {
    /// The identity used to announce ourselves to a join address whose
    /// member we do not know yet: the receiver's codec replaces it with
    /// its own identity (see [`WireCodec`]).
    pub fn placeholder(addr: SocketAddr) -> PeerId {
        PeerId {
            addr,
            name: String::new(),
            epoch: 0,
            session: 0,
        }
    }

    fn is_placeholder(&self) -> bool {
        self.session == 0
    }
}

impl foca::Identity for PeerId {
    type Addr = SocketAddr;

    fn renew(&self) -> Option<Self> {
        Some(PeerId {
            epoch: self.epoch.wrapping_add(1),
            ..self.clone()
        })
    }

    fn addr(&self) -> SocketAddr {
        self.addr
    }

    fn win_addr_conflict(&self, adversary: &Self) -> bool {
        (self.epoch, self.session) > (adversary.epoch, adversary.session)
    }
}

/// Whether `name` may name a member: 1 to [`MAX_NAME`] bytes of letters,
/// digits and `-_.:@`. That keeps names one word (so `/msg NAME text`
/// parses), unable to fake a `[` message or `*` notice line, and safe to
/// print.
pub fn valid_name(name: &str) -> bool {
    !name.is_empty()
        && name.len() <= MAX_NAME
        && name
            .chars()
            .all(|c| c.is_alphanumeric() || matches!(c, '-' | '_' | '.' | ':' | '@'))
}

fn put_addr(out: &mut Vec<u8>, addr: &SocketAddr) {
    match addr.ip() {
        IpAddr::V4(ip) => {
            out.push(4);
            out.extend_from_slice(&ip.octets());
        }
        IpAddr::V6(ip) => {
            out.push(6);
            out.extend_from_slice(&ip.octets());
        }
    }
    out.extend_from_slice(&addr.port().to_be_bytes());
}

fn get_addr(r: &mut Reader<'_>) -> Result<SocketAddr, WireError> {
    let ip = match r.u8()? {
        4 => IpAddr::V4(Ipv4Addr::from(<[u8; 4]>::try_from(r.bytes(4)?).expect("4"))),
        6 => IpAddr::V6(Ipv6Addr::from(
            <[u8; 16]>::try_from(r.bytes(16)?).expect("16"),
        )),
        other => return Err(WireError::BadTag(other)),
    };
    Ok(SocketAddr::new(ip, r.u16()?))
}

fn put_id(out: &mut Vec<u8>, id: &PeerId) {
    put_addr(out, &id.addr);
    out.extend_from_slice(&id.epoch.to_be_bytes());
    out.extend_from_slice(&id.session.to_be_bytes());
    // Names are checked on the way in; a placeholder's is empty.
    let name = &id.name.as_bytes()[..id.name.len().min(MAX_NAME)];
    out.push(name.len() as u8);
    out.extend_from_slice(name);
}

fn get_id(r: &mut Reader<'_>) -> Result<PeerId, WireError> {
    let addr = get_addr(r)?;
    let epoch = r.u64()?;
    let session = r.u64()?;
    let len = usize::from(r.u8()?);
    if len > MAX_NAME {
        return Err(WireError::BadName);
    }
    let name = std::str::from_utf8(r.bytes(len)?).map_err(|_| WireError::BadName)?;
    let id = PeerId {
        addr,
        name: name.to_owned(),
        epoch,
        session,
    };
    if !id.is_placeholder() && !valid_name(name) {
        return Err(WireError::BadName);
    }
    Ok(id)
}

fn put_message(out: &mut Vec<u8>, message: &Message<PeerId>) {
    let (tag, id, probe) = match message {
        Message::Ping(n) => (0, None, Some(*n)),
        Message::Ack(n) => (1, None, Some(*n)),
        Message::PingReq {
            target,
            probe_number,
        } => (2, Some(target), Some(*probe_number)),
        Message::IndirectPing {
            origin,
            probe_number,
        } => (3, Some(origin), Some(*probe_number)),
        Message::IndirectAck {
            target,
            probe_number,
        } => (4, Some(target), Some(*probe_number)),
        Message::ForwardedAck {
            origin,
            probe_number,
        } => (5, Some(origin), Some(*probe_number)),
        Message::Announce => (6, None, None),
        Message::Feed => (7, None, None),
        Message::Gossip => (8, None, None),
        Message::Broadcast => (9, None, None),
        Message::TurnUndead => (10, None, None),
    };
    out.push(tag);
    if let Some(id) = id {
        put_id(out, id);
    }
    if let Some(n) = probe {
        out.push(n);
    }
}

fn get_message(r: &mut Reader<'_>) -> Result<Message<PeerId>, WireError> {
    Ok(match r.u8()? {
        0 => Message::Ping(r.u8()?),
        1 => Message::Ack(r.u8()?),
        2 => Message::PingReq {
            target: get_id(r)?,
            probe_number: r.u8()?,
        },
        3 => Message::IndirectPing {
            origin: get_id(r)?,
            probe_number: r.u8()?,
        },
        4 => Message::IndirectAck {
            target: get_id(r)?,
            probe_number: r.u8()?,
        },
        5 => Message::ForwardedAck {
            origin: get_id(r)?,
            probe_number: r.u8()?,
        },
        6 => Message::Announce,
        7 => Message::Feed,
        8 => Message::Gossip,
        9 => Message::Broadcast,
        10 => Message::TurnUndead,
        other => return Err(WireError::BadTag(other)),
    })
}

/// What the codec knows about the node it runs in: its own identity
/// (to answer a join addressed to a placeholder) and, once the member
/// table is full, which addresses are already in it.
#[derive(Debug)]
pub struct CodecState {
    /// This node's current identity.
    pub me: PeerId,
    /// `Some` while the member table is at its cap: the known addresses.
    /// A full table refuses strangers instead of growing.
    pub full: Option<HashSet<SocketAddr>>,
}

impl CodecState {
    fn admits(&self, addr: &SocketAddr) -> bool {
        self.full
            .as_ref()
            .is_none_or(|known| known.contains(addr) || *addr == self.me.addr)
    }
}

/// foca's [`foca::Codec`]: a compact binary encoding of membership
/// messages. Hand-written rather than serde + postcard so the bytes on the
/// wire are documented field by field, every length is checked against a
/// cap while decoding, and the member table can refuse strangers.
///
/// The state is shared with the node through an `Rc`: foca owns its codec,
/// and everything runs on one thread.
#[derive(Debug, Clone)]
pub struct WireCodec(pub Rc<RefCell<CodecState>>);

fn put_checked(buf: &mut impl BufMut, data: &[u8]) -> Result<(), WireError> {
    if buf.remaining_mut() < data.len() {
        return Err(WireError::NoRoom);
    }
    buf.put_slice(data);
    Ok(())
}

impl foca::Codec<PeerId> for WireCodec {
    type Error = WireError;

    fn encode_header(
        &mut self,
        header: &Header<PeerId>,
        mut buf: impl BufMut,
    ) -> Result<(), WireError> {
        let mut out = Vec::with_capacity(160);
        put_id(&mut out, &header.src);
        out.extend_from_slice(&header.src_incarnation.to_be_bytes());
        put_id(&mut out, &header.dst);
        put_message(&mut out, &header.message);
        put_checked(&mut buf, &out)
    }

    fn decode_header(&mut self, mut buf: impl Buf) -> Result<Header<PeerId>, WireError> {
        let chunk = buf.chunk();
        let total = chunk.len();
        let mut r = Reader::new(chunk);
        let src = get_id(&mut r)?;
        let src_incarnation = r.u16()?;
        let mut dst = get_id(&mut r)?;
        let message = get_message(&mut r)?;
        let used = r.consumed_from(total);
        if src.is_placeholder() {
            return Err(WireError::OutOfRange);
        }
        let state = self.0.borrow();
        if !state.admits(&src.addr) {
            return Err(WireError::MembersFull);
        }
        // A join names its target by address only: make it ours, so an
        // Announce reaches us under whatever address the joiner used.
        if dst.is_placeholder() && message == Message::Announce {
            dst = state.me.clone();
        }
        drop(state);
        buf.advance(used);
        Ok(Header {
            src,
            src_incarnation,
            dst,
            message,
        })
    }

    fn encode_member(
        &mut self,
        member: &Member<PeerId>,
        mut buf: impl BufMut,
    ) -> Result<(), WireError> {
        let mut out = Vec::with_capacity(80);
        put_id(&mut out, member.id());
        out.extend_from_slice(&member.incarnation().to_be_bytes());
        out.push(match member.state() {
            State::Alive => 0,
            State::Suspect => 1,
            State::Down => 2,
        });
        // foca requires a failed encode to leave the buffer untouched.
        put_checked(&mut buf, &out)
    }

    fn decode_member(&mut self, mut buf: impl Buf) -> Result<Member<PeerId>, WireError> {
        let chunk = buf.chunk();
        let total = chunk.len();
        let mut r = Reader::new(chunk);
        let id = get_id(&mut r)?;
        let incarnation = r.u16()?;
        let state = match r.u8()? {
            0 => State::Alive,
            1 => State::Suspect,
            2 => State::Down,
            other => return Err(WireError::BadTag(other)),
        };
        let used = r.consumed_from(total);
        if id.is_placeholder() {
            return Err(WireError::OutOfRange);
        }
        if !self.0.borrow().admits(&id.addr) {
            return Err(WireError::MembersFull);
        }
        buf.advance(used);
        Ok(Member::new(id, incarnation, state))
    }
}

/// Decodes a whole membership payload the way foca reads it: a header,
/// then (unless it is a custom broadcast) a `u16` count and that many
/// member updates. The node hands payloads to foca; this exists so the
/// fuzz target and debugging tools can decode one without a foca instance.
///
/// # Errors
/// A [`WireError`] for anything malformed (a count larger than the
/// payload can hold included).
pub fn decode_swim(
    payload: &[u8],
    codec: &mut WireCodec,
) -> Result<(Header<PeerId>, Vec<Member<PeerId>>), WireError> {
    use foca::Codec;
    if payload.len() > MAX_SWIM_PAYLOAD {
        return Err(WireError::OutOfRange);
    }
    let mut buf = payload;
    let header = codec.decode_header(&mut buf)?;
    let mut members = Vec::new();
    if buf.len() >= 2 && header.message != Message::Broadcast {
        let count = buf.get_u16();
        for _ in 0..count {
            members.push(codec.decode_member(&mut buf)?);
        }
    }
    Ok((header, members))
}

/// A piece of an application message, in the stream from session `src`
/// to session `dst`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct DataFrame<'a> {
    /// The sender's session.
    pub src: u64,
    /// The receiver's session, as the sender knows it: a frame for an
    /// earlier process at the receiver's address is dropped.
    pub dst: u64,
    /// The sender's oldest unacknowledged sequence number: every frame
    /// before it was acknowledged by this receiver.
    pub base: u64,
    /// This frame's position in the stream.
    pub seq: u64,
    /// The first frame of a message.
    pub first: bool,
    /// More frames of the same message follow.
    pub more: bool,
    /// The bytes of the message this frame carries.
    pub chunk: &'a [u8],
}

/// An acknowledgement, from the receiver (session `src`) of the stream
/// that session `dst` sends.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AckFrame {
    /// The acknowledging receiver's session.
    pub src: u64,
    /// The data sender's session.
    pub dst: u64,
    /// Every frame before this sequence number has arrived.
    pub next: u64,
    /// Bit `i` (bit `i % 64` of word `i / 64`) set: frame `next + 1 + i`
    /// has arrived too.
    pub sack: [u64; SACK_BITS / 64],
}

/// A decoded frame of ours (after decryption, when sealed).
#[derive(Debug, PartialEq, Eq)]
pub enum Frame<'a> {
    /// For foca.
    Swim(&'a [u8]),
    /// A piece of a message.
    Data(DataFrame<'a>),
    /// An acknowledgement.
    Ack(AckFrame),
}

const FLAG_MORE: u8 = 1;
const FLAG_FIRST: u8 = 2;

impl<'a> Frame<'a> {
    /// Decodes the body of a datagram of `kind` (not [`Kind::Sealed`]).
    ///
    /// # Errors
    /// A [`WireError`] for anything malformed.
    pub fn decode(kind: Kind, body: &'a [u8]) -> Result<Frame<'a>, WireError> {
        let mut r = Reader::new(body);
        match kind {
            Kind::Swim => {
                if body.len() > MAX_SWIM_PAYLOAD {
                    return Err(WireError::OutOfRange);
                }
                Ok(Frame::Swim(body))
            }
            Kind::Data => {
                let src = r.u64()?;
                let dst = r.u64()?;
                let base = r.u64()?;
                let seq = r.u64()?;
                let flags = r.u8()?;
                if flags & !(FLAG_MORE | FLAG_FIRST) != 0 {
                    return Err(WireError::OutOfRange);
                }
                let chunk = r.rest();
                if chunk.len() > MAX_CHUNK || base > seq {
                    return Err(WireError::OutOfRange);
                }
                Ok(Frame::Data(DataFrame {
                    src,
                    dst,
                    base,
                    seq,
                    first: flags & FLAG_FIRST != 0,
                    more: flags & FLAG_MORE != 0,
                    chunk,
                }))
            }
            Kind::Ack => {
                let src = r.u64()?;
                let dst = r.u64()?;
                let next = r.u64()?;
                let mut sack = [0u64; SACK_BITS / 64];
                for word in &mut sack {
                    *word = r.u64()?;
                }
                if !r.rest().is_empty() {
                    return Err(WireError::OutOfRange);
                }
                Ok(Frame::Ack(AckFrame {
                    src,
                    dst,
                    next,
                    sack,
                }))
            }
            Kind::Sealed => Err(WireError::BadTag(Kind::Sealed as u8)),
        }
    }

    /// The kind byte this frame is sent under.
    pub fn kind(&self) -> Kind {
        match self {
            Frame::Swim(_) => Kind::Swim,
            Frame::Data(_) => Kind::Data,
            Frame::Ack(_) => Kind::Ack,
        }
    }

    /// Appends the body (what follows the kind) to `out`.
    pub fn encode_body(&self, out: &mut Vec<u8>) {
        match self {
            Frame::Swim(payload) => out.extend_from_slice(payload),
            Frame::Data(d) => {
                for n in [d.src, d.dst, d.base, d.seq] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                let mut flags = 0;
                if d.more {
                    flags |= FLAG_MORE;
                }
                if d.first {
                    flags |= FLAG_FIRST;
                }
                out.push(flags);
                out.extend_from_slice(d.chunk);
            }
            Frame::Ack(a) => {
                for n in [a.src, a.dst, a.next] {
                    out.extend_from_slice(&n.to_be_bytes());
                }
                for word in a.sack {
                    out.extend_from_slice(&word.to_be_bytes());
                }
            }
        }
    }
}

/// An application message, as reassembled from data frames:
/// `[flags][id: u64][name length][name][text]`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct AppMessage<'a> {
    /// Sent with `/msg` to this member alone (not a broadcast).
    pub direct: bool,
    /// The sender's message counter: with the sender's session, a
    /// mesh-wide message id.
    pub id: u64,
    /// The sender's name.
    pub from: &'a str,
    /// What was typed (UTF-8 is expected but not trusted).
    pub text: &'a [u8],
}

const FLAG_DIRECT: u8 = 1;

impl<'a> AppMessage<'a> {
    /// Appends the encoded message.
    pub fn encode(&self, out: &mut Vec<u8>) {
        out.push(if self.direct { FLAG_DIRECT } else { 0 });
        out.extend_from_slice(&self.id.to_be_bytes());
        let name = &self.from.as_bytes()[..self.from.len().min(MAX_NAME)];
        out.push(name.len() as u8);
        out.extend_from_slice(name);
        out.extend_from_slice(self.text);
    }

    /// Decodes a reassembled message.
    ///
    /// # Errors
    /// A [`WireError`] for a malformed message or an invalid name.
    pub fn decode(body: &'a [u8]) -> Result<AppMessage<'a>, WireError> {
        let mut r = Reader::new(body);
        let flags = r.u8()?;
        if flags & !FLAG_DIRECT != 0 {
            return Err(WireError::OutOfRange);
        }
        let id = r.u64()?;
        let len = usize::from(r.u8()?);
        let from = std::str::from_utf8(r.bytes(len)?).map_err(|_| WireError::BadName)?;
        if !valid_name(from) {
            return Err(WireError::BadName);
        }
        Ok(AppMessage {
            direct: flags & FLAG_DIRECT != 0,
            id,
            from,
            text: r.rest(),
        })
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use foca::Codec;

    fn id(port: u16, name: &str) -> PeerId {
        PeerId {
            addr: SocketAddr::from(([127, 0, 0, 1], port)),
            name: name.into(),
            epoch: 1_700_000_000_000,
            session: 0xdead_beef,
        }
    }

    fn codec(me: PeerId) -> WireCodec {
        WireCodec(Rc::new(RefCell::new(CodecState { me, full: None })))
    }

    #[test]
    fn envelope_tells_ours_from_plain() {
        assert_eq!(open_envelope(b""), Envelope::Plain);
        assert_eq!(open_envelope(b"hello"), Envelope::Plain);
        assert_eq!(open_envelope(&[0xC5, 0x4B, 1]), Envelope::Plain);
        assert_eq!(
            open_envelope(&[0xC5, 0x4B, 2, 1]),
            Envelope::OtherVersion(2)
        );
        assert_eq!(open_envelope(&[0xC5, 0x4B, 1, 9]), Envelope::UnknownKind(9));
        let mut d = Vec::new();
        write_header(&mut d, Kind::Ack);
        assert_eq!(open_envelope(&d), Envelope::Ours(Kind::Ack, &[][..]));
    }

    #[test]
    fn headers_and_members_round_trip() {
        let mut c = codec(id(2, "bob"));
        let v6 = PeerId {
            addr: "[::1]:9999".parse().unwrap(),
            ..id(3, "carol")
        };
        for message in [
            Message::Ping(7),
            Message::Ack(8),
            Message::PingReq {
                target: v6.clone(),
                probe_number: 1,
            },
            Message::IndirectPing {
                origin: v6.clone(),
                probe_number: 2,
            },
            Message::IndirectAck {
                target: v6.clone(),
                probe_number: 3,
            },
            Message::ForwardedAck {
                origin: v6.clone(),
                probe_number: 4,
            },
            Message::Announce,
            Message::Feed,
            Message::Gossip,
            Message::Broadcast,
            Message::TurnUndead,
        ] {
            let header = Header {
                src: id(1, "alice"),
                src_incarnation: 3,
                dst: id(2, "bob"),
                message,
            };
            let mut buf = Vec::new();
            c.encode_header(&header, &mut buf).unwrap();
            let mut slice = &buf[..];
            assert_eq!(c.decode_header(&mut slice).unwrap(), header);
            assert!(slice.is_empty());
        }
        for state in [State::Alive, State::Suspect, State::Down] {
            let m = Member::new(v6.clone(), 9, state);
            let mut buf = Vec::new();
            c.encode_member(&m, &mut buf).unwrap();
            buf.extend_from_slice(b"tail");
            let mut slice = &buf[..];
            assert_eq!(c.decode_member(&mut slice).unwrap(), m);
            assert_eq!(slice, b"tail");
        }
    }

    #[test]
    fn a_join_to_a_placeholder_is_addressed_to_us() {
        let me = id(2, "bob");
        let mut c = codec(me.clone());
        let header = Header {
            src: id(1, "alice"),
            src_incarnation: 0,
            dst: PeerId::placeholder("10.0.0.1:2".parse().unwrap()),
            message: Message::Announce,
        };
        let mut buf = Vec::new();
        c.encode_header(&header, &mut buf).unwrap();
        assert_eq!(c.decode_header(&mut &buf[..]).unwrap().dst, me);
    }

    #[test]
    fn a_full_member_table_refuses_strangers() {
        let mut c = codec(id(2, "bob"));
        let known = id(1, "alice");
        c.0.borrow_mut().full = Some([known.addr].into_iter().collect());
        let mut buf = Vec::new();
        c.encode_member(&Member::alive(known.clone()), &mut buf)
            .unwrap();
        assert!(c.decode_member(&mut &buf[..]).is_ok());
        buf.clear();
        c.encode_member(&Member::alive(id(5, "eve")), &mut buf)
            .unwrap();
        assert_eq!(c.decode_member(&mut &buf[..]), Err(WireError::MembersFull));
    }

    #[test]
    fn encoding_never_overflows_a_small_buffer() {
        let mut c = codec(id(2, "bob"));
        let mut small = [0u8; 10];
        let mut slice = &mut small[..];
        assert_eq!(
            c.encode_member(&Member::alive(id(1, "alice")), &mut slice),
            Err(WireError::NoRoom)
        );
        assert_eq!(small, [0u8; 10], "a failed encode leaves the buffer clean");
    }

    #[test]
    fn bad_names_are_refused() {
        for bad in ["", "a b", "[x]", "*", "a/b", &"x".repeat(33), "a\nb"] {
            assert!(!valid_name(bad), "{bad:?}");
        }
        for good in ["alice", "host-9999", "127.0.0.1:4000", "née"] {
            assert!(valid_name(good), "{good:?}");
        }
        let mut c = codec(id(2, "bob"));
        let mut buf = Vec::new();
        c.encode_member(&Member::alive(id(1, "a b")), &mut buf)
            .unwrap();
        assert_eq!(c.decode_member(&mut &buf[..]), Err(WireError::BadName));
    }

    #[test]
    fn frames_round_trip_and_refuse_junk() {
        let data = Frame::Data(DataFrame {
            src: 1,
            dst: 2,
            base: 3,
            seq: 4,
            first: true,
            more: true,
            chunk: b"hi",
        });
        let ack = Frame::Ack(AckFrame {
            src: 2,
            dst: 1,
            next: 5,
            sack: [1, 2, 3, u64::MAX],
        });
        for f in [data, ack, Frame::Swim(b"swim")] {
            let mut body = Vec::new();
            f.encode_body(&mut body);
            assert_eq!(Frame::decode(f.kind(), &body).unwrap(), f);
            for cut in 0..body.len() {
                if f.kind() != Kind::Swim && (f.kind() == Kind::Ack || cut < DATA_FRAME_FIXED) {
                    assert!(Frame::decode(f.kind(), &body[..cut]).is_err(), "cut {cut}");
                }
            }
        }
        let long = vec![0u8; MAX_CHUNK + 1];
        let f = DataFrame {
            src: 1,
            dst: 2,
            base: 0,
            seq: 0,
            first: true,
            more: false,
            chunk: &long,
        };
        let mut body = Vec::new();
        Frame::Data(f).encode_body(&mut body);
        assert!(Frame::decode(Kind::Data, &body).is_err());
    }

    #[test]
    fn app_messages_round_trip() {
        let m = AppMessage {
            direct: true,
            id: 42,
            from: "alice",
            text: "héllo".as_bytes(),
        };
        let mut out = Vec::new();
        m.encode(&mut out);
        assert_eq!(AppMessage::decode(&out).unwrap(), m);
        assert!(AppMessage::decode(&out[..5]).is_err());
        assert!(AppMessage::decode(&[]).is_err());
    }
}
