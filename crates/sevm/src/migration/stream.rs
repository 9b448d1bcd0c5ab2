//! The sevm migration stream (snapshot files and live migration share it).
//!
//! ```text
//! stream  = MAGIC "SEVMMIG\0" ‖ LE32 version (2, or 3 for SEV-ES) ‖ header ‖ record* ‖ end
//! header  = LE32 policy ‖ LE64 ram_size ‖ LE64 firmware_size ‖ LE32 vcpus
//!           ‖ LE32 pdh_len (= 0x824) ‖ source PDH certificate
//!           ‖ LE32 session_len (= 0x80) ‖ SEND_START session
//! record  = 0x01 LE64 gpa ‖ 52-byte packet header ‖ LE32 len (16..=4096) ‖ transport bytes
//!         | 0x02 LE32 vcpu index ‖ LE32 len (≤ 64 KiB) ‖ VcpuState bytes
//!         | 0x03 LE32 len (≤ 4 KiB) ‖ device state bytes
//!         | 0x04 LE64 pass                     (start of a pre-copy pass; informative)
//!         | 0x05 LE32 vcpu index ‖ 52-byte packet header ‖ LE32 len (= 4096) ‖ transport bytes
//!                                              (a SEND_UPDATE_VMSA packet; version 3 only)
//! end     = 0xEE LE64 packet count ‖ SHA-256 digest
//! ```
//!
//! Every length is bounded before anything is allocated. The digest is
//! SHA-256 over every byte of the stream up to the end record's tag *except*,
//! in page records, the 52-byte packet header and the transport bytes: the
//! firmware's MAC covers those (FLAGS, IV, lengths and TRANS are its input;
//! hashing them again would cost throughput for nothing). A page record's
//! tag, GPA and length are hashed (real SEV firmware does not bind the GPA
//! into its MAC). The digest detects accidental corruption of the
//! unauthenticated parts (GPAs, vCPU and device state). How the end of the
//! stream is *authenticated* is described in [`super`](crate::migration).
//!
//! Version 1 hashed the packet headers too; this build reads versions 2 and
//! 3. Version 3 is version 2 with VMSA records (0x05), written for an SEV-ES
//! guest (the policy's ES bit) and only for one, so that a plain SEV stream
//! stays readable by a sevm that reads version 2 only, and an SEV-ES stream
//! is refused by such a sevm at its version rather than at its first VMSA
//! record (docs/guide/sevm-migration.md#stream-versions). VMSA records, as
//! page records, keep their packet header and transport bytes outside the
//! digest; they are not counted as page packets.
//!
//! Writing: the [`Writer`] stages everything but transport bytes in one
//! reused buffer and hands each batch of records to the output as one
//! vectored write (`writev`), so the page payloads are never copied in user
//! space. Reading: the [`Reader`] reuses the buffers of records given back
//! with [`Reader::recycle`].

use std::io::{IoSlice, Read, Write};

use sev_proto::abi::{PACKET_HEADER_LEN, SESSION_LEN, SEV_CERT_LEN};
use sev_proto::session::SessionBuffer;
use sha2::{Digest, Sha256};

/// First bytes of every stream.
pub const MAGIC: [u8; 8] = *b"SEVMMIG\0";
/// The newest format version this build writes and reads (SEV-ES guests).
pub const VERSION: u32 = 3;
/// The format version of a plain SEV guest's stream (no VMSA records).
pub const PLAIN_VERSION: u32 = 2;
/// The guest policy's ES bit: its stream has version [`VERSION`].
const POLICY_ES: u32 = 0x4;
/// Largest transport buffer of a page record (one page).
pub const MAX_PAGE_LEN: u32 = 4096;
/// Largest vCPU state record.
pub const MAX_VCPU_STATE_LEN: u32 = 64 << 10;
/// Largest device state record.
pub const MAX_DEVICE_STATE_LEN: u32 = 4 << 10;
/// Most vCPUs a header may announce.
pub const MAX_VCPUS: u32 = 1024;

const TAG_PAGE: u8 = 0x01;
const TAG_VCPU: u8 = 0x02;
const TAG_DEVICE: u8 = 0x03;
const TAG_PASS: u8 = 0x04;
const TAG_VMSA: u8 = 0x05;
const TAG_END: u8 = 0xEE;

/// The length of a VMSA record's transport bytes.
const VMSA_LEN: u32 = 4096;

/// The version of the stream of a guest with `policy`.
// UNCERTAIN (docs/protocol/choices.md#u40): version 3 for SEV-ES guests
// only, so plain SEV streams stay readable by a sevm that reads version 2.
pub fn version_for(policy: u32) -> u32 {
    if policy & POLICY_ES != 0 {
        VERSION
    } else {
        PLAIN_VERSION
    }
}

/// A malformed or unreadable stream.
#[derive(Debug, thiserror::Error)]
pub enum StreamError {
    /// Reading or writing failed (including a connection that dropped).
    #[error("migration stream I/O failed: {0}")]
    Io(#[from] std::io::Error),
    /// The stream ended before the end record.
    #[error("migration stream truncated: it ended inside {0}")]
    Truncated(&'static str),
    /// Not a sevm migration stream.
    #[error("not a sevm migration stream (bad magic {0:02x?})")]
    Magic([u8; 8]),
    /// A version this build does not read.
    #[error(
        "migration stream version {0} is not supported (this sevm reads versions \
         {PLAIN_VERSION} and {VERSION}; version {VERSION} carries SEV-ES guests)"
    )]
    Version(u32),
    /// A field is out of its bounds.
    #[error("malformed migration stream: {field} = {value:#x} ({problem})")]
    Field {
        /// Which field.
        field: &'static str,
        /// Its value.
        value: u64,
        /// What is wrong.
        problem: &'static str,
    },
    /// An unknown record tag.
    #[error("malformed migration stream: unknown record tag {0:#04x}")]
    Tag(u8),
}

/// The stream header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Header {
    /// The guest policy SEND_START returned.
    pub policy: u32,
    /// Guest RAM bytes.
    pub ram_size: u64,
    /// Firmware image bytes (mapped to end at 4 GiB).
    pub firmware_size: u64,
    /// vCPU count.
    pub vcpus: u32,
    /// The source platform's PDH certificate (for RECEIVE_START).
    pub source_pdh: Vec<u8>,
    /// The session SEND_START made for the target's PDH.
    pub session: SessionBuffer,
}

/// One record after the header.
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Record {
    /// A SEND_UPDATE_DATA packet for `gpa`.
    Page {
        /// Guest-physical address.
        gpa: u64,
        /// The 52-byte packet header.
        header: Vec<u8>,
        /// The transport bytes.
        trans: Vec<u8>,
    },
    /// One vCPU's register state.
    Vcpu {
        /// vCPU index.
        index: u32,
        /// `VcpuState::to_bytes`.
        state: Vec<u8>,
    },
    /// The machine's device state.
    Device(Vec<u8>),
    /// Start of pre-copy pass `n`.
    Pass(u64),
    /// A SEND_UPDATE_VMSA packet: vCPU `index`'s VMSA (SEV-ES).
    Vmsa {
        /// vCPU index.
        index: u32,
        /// The 52-byte packet header.
        header: Vec<u8>,
        /// The transport bytes (one page).
        trans: Vec<u8>,
    },
    /// The end: how many page packets came before, and the digest.
    End {
        /// Page records in the stream.
        packets: u64,
        /// SHA-256 as described in the module documentation.
        digest: [u8; 32],
    },
}

/// Writes a stream, keeping the digest and the byte count.
#[derive(Debug)]
pub struct Writer<W: Write> {
    out: W,
    hash: Sha256,
    bytes: u64,
    packets: u64,
    /// Everything of the current batch except transport bytes (reused).
    staged: Vec<u8>,
}

impl<W: Write> Writer<W> {
    /// Writes the magic, version and header.
    pub fn new(out: W, h: &Header) -> Result<Self, StreamError> {
        let mut w = Writer {
            out,
            hash: Sha256::new(),
            bytes: 0,
            packets: 0,
            staged: Vec::with_capacity(16 << 10),
        };
        w.put(&MAGIC);
        w.put(&version_for(h.policy).to_le_bytes());
        w.put(&h.policy.to_le_bytes());
        w.put(&h.ram_size.to_le_bytes());
        w.put(&h.firmware_size.to_le_bytes());
        w.put(&h.vcpus.to_le_bytes());
        w.put(&(h.source_pdh.len() as u32).to_le_bytes());
        w.put(&h.source_pdh);
        w.put(&(SessionBuffer::SIZE as u32).to_le_bytes());
        w.put(&h.session.to_bytes());
        w.records(&[])?;
        Ok(w)
    }

    /// Stages hashed bytes.
    fn put(&mut self, b: &[u8]) {
        self.hash.update(b);
        self.staged.extend_from_slice(b);
    }

    /// Stages bytes outside the digest.
    fn put_unhashed(&mut self, b: &[u8]) {
        self.staged.extend_from_slice(b);
    }

    /// Stages `r` except its transport bytes, which it returns. An `End`
    /// record's fields are computed here (the given values are ignored).
    fn stage<'r>(&mut self, r: &'r Record) -> Option<&'r [u8]> {
        match r {
            Record::Page { gpa, header, trans } => {
                self.put(&[TAG_PAGE]);
                self.put(&gpa.to_le_bytes());
                self.put_unhashed(header);
                self.put(&(trans.len() as u32).to_le_bytes());
                self.packets += 1;
                return Some(trans);
            }
            Record::Vcpu { index, state } => {
                self.put(&[TAG_VCPU]);
                self.put(&index.to_le_bytes());
                self.put(&(state.len() as u32).to_le_bytes());
                self.put(state);
            }
            Record::Device(state) => {
                self.put(&[TAG_DEVICE]);
                self.put(&(state.len() as u32).to_le_bytes());
                self.put(state);
            }
            Record::Pass(n) => {
                self.put(&[TAG_PASS]);
                self.put(&n.to_le_bytes());
            }
            Record::Vmsa {
                index,
                header,
                trans,
            } => {
                self.put(&[TAG_VMSA]);
                self.put(&index.to_le_bytes());
                self.put_unhashed(header);
                self.put(&(trans.len() as u32).to_le_bytes());
                return Some(trans);
            }
            Record::End { .. } => {
                self.put(&[TAG_END]);
                let digest: [u8; 32] = self.hash.clone().finalize().into();
                let packets = self.packets;
                self.put_unhashed(&packets.to_le_bytes());
                self.put_unhashed(&digest);
            }
        }
        None
    }

    /// Writes one record; an `End` record's fields are computed here (the
    /// given values are ignored).
    pub fn record(&mut self, r: &Record) -> Result<(), StreamError> {
        self.records(std::slice::from_ref(r))
    }

    /// Writes `batch` (and anything staged before) with vectored writes:
    /// the transport bytes go to the output straight from the records.
    pub fn records(&mut self, batch: &[Record]) -> Result<(), StreamError> {
        // (end of the staged bytes before it, transport bytes) per page.
        let mut cuts: Vec<(usize, &[u8])> = Vec::with_capacity(batch.len());
        for r in batch {
            if let Some(t) = self.stage(r) {
                cuts.push((self.staged.len(), t));
            }
        }
        let staged = &self.staged;
        let mut slices: Vec<IoSlice<'_>> = Vec::with_capacity(2 * cuts.len() + 1);
        let mut total = staged.len() as u64;
        let mut at = 0;
        for &(end, t) in &cuts {
            slices.push(IoSlice::new(staged.get(at..end).unwrap_or(&[])));
            slices.push(IoSlice::new(t));
            total += t.len() as u64;
            at = end;
        }
        slices.push(IoSlice::new(staged.get(at..).unwrap_or(&[])));
        slices.retain(|s| !s.is_empty());
        write_all_vectored(&mut self.out, &mut slices)?;
        self.staged.clear();
        self.bytes += total;
        Ok(())
    }

    /// Bytes written so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Flushes the output.
    pub fn flush(&mut self) -> Result<(), StreamError> {
        self.out.flush()?;
        Ok(())
    }

    /// The output.
    pub fn into_inner(self) -> W {
        self.out
    }
}

/// `write_all` for a list of slices (the standard library's is unstable):
/// retries on `Interrupted`, fails on a zero-length write.
fn write_all_vectored<W: Write>(
    out: &mut W,
    mut slices: &mut [IoSlice<'_>],
) -> std::io::Result<()> {
    // At most IOV_MAX (1024) slices per call.
    const MAX_SLICES: usize = 1024;
    while !slices.is_empty() {
        let n = slices.len().min(MAX_SLICES);
        match out.write_vectored(slices.get(..n).unwrap_or(&[])) {
            Ok(0) => {
                return Err(std::io::Error::new(
                    std::io::ErrorKind::WriteZero,
                    "the output accepted no more bytes",
                ))
            }
            Ok(written) => IoSlice::advance_slices(&mut slices, written),
            Err(e) if e.kind() == std::io::ErrorKind::Interrupted => {}
            Err(e) => return Err(e),
        }
    }
    Ok(())
}

/// Reads a stream, checking every bound.
#[derive(Debug)]
pub struct Reader<R: Read> {
    input: R,
    hash: Sha256,
    bytes: u64,
    packets: u64,
    ended: bool,
    /// Version 3 (SEV-ES): VMSA records may follow.
    es: bool,
    /// Buffers (packet header, transport) of recycled page records.
    spare: Vec<(Vec<u8>, Vec<u8>)>,
}

impl<R: Read> Reader<R> {
    /// Reads and checks the magic, version and header.
    pub fn new(input: R) -> Result<(Self, Header), StreamError> {
        let mut r = Reader {
            input,
            hash: Sha256::new(),
            bytes: 0,
            packets: 0,
            ended: false,
            es: false,
            spare: Vec::new(),
        };
        let magic: [u8; 8] = r.array("the magic")?;
        if magic != MAGIC {
            return Err(StreamError::Magic(magic));
        }
        let version = r.u32("the version")?;
        if version != VERSION && version != PLAIN_VERSION {
            return Err(StreamError::Version(version));
        }
        let policy = r.u32("the header")?;
        if version != version_for(policy) {
            return Err(StreamError::Field {
                field: "version",
                value: u64::from(version),
                problem: "a stream has version 3 exactly when the policy has ES",
            });
        }
        let ram_size = r.u64("the header")?;
        let firmware_size = r.u64("the header")?;
        let vcpus = r.u32("the header")?;
        if vcpus == 0 || vcpus > MAX_VCPUS {
            return Err(StreamError::Field {
                field: "vcpus",
                value: u64::from(vcpus),
                problem: "must be 1..=1024",
            });
        }
        let source_pdh = r.exact_vec("pdh_len", SEV_CERT_LEN)?;
        let session = SessionBuffer::from_bytes(&r.exact_array::<SESSION_LEN>("session_len")?);
        r.es = version == VERSION;
        Ok((
            r,
            Header {
                policy,
                ram_size,
                firmware_size,
                vcpus,
                source_pdh,
                session,
            },
        ))
    }

    fn fill(
        &mut self,
        buf: &mut [u8],
        what: &'static str,
        hashed: bool,
    ) -> Result<(), StreamError> {
        self.input.read_exact(buf).map_err(|e| {
            if e.kind() == std::io::ErrorKind::UnexpectedEof {
                StreamError::Truncated(what)
            } else {
                StreamError::Io(e)
            }
        })?;
        if hashed {
            self.hash.update(&*buf);
        }
        self.bytes += buf.len() as u64;
        Ok(())
    }

    fn array<const N: usize>(&mut self, what: &'static str) -> Result<[u8; N], StreamError> {
        let mut b = [0u8; N];
        self.fill(&mut b, what, true)?;
        Ok(b)
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, StreamError> {
        Ok(u32::from_le_bytes(self.array(what)?))
    }

    fn u64(&mut self, what: &'static str) -> Result<u64, StreamError> {
        Ok(u64::from_le_bytes(self.array(what)?))
    }

    fn exact_vec(&mut self, field: &'static str, len: usize) -> Result<Vec<u8>, StreamError> {
        let n = self.u32("the header")?;
        if n as usize != len {
            return Err(StreamError::Field {
                field,
                value: u64::from(n),
                problem: "wrong length",
            });
        }
        let mut v = vec![0u8; len];
        self.fill(&mut v, "the header", true)?;
        Ok(v)
    }

    /// A length-prefixed field of exactly `N` bytes.
    fn exact_array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], StreamError> {
        let n = self.u32("the header")?;
        if n as usize != N {
            return Err(StreamError::Field {
                field,
                value: u64::from(n),
                problem: "wrong length",
            });
        }
        let mut a = [0u8; N];
        self.fill(&mut a, "the header", true)?;
        Ok(a)
    }

    fn bounded_vec(
        &mut self,
        field: &'static str,
        max: u32,
        what: &'static str,
        hashed: bool,
    ) -> Result<Vec<u8>, StreamError> {
        let n = self.u32(what)?;
        if n == 0 || n > max {
            return Err(StreamError::Field {
                field,
                value: u64::from(n),
                problem: "length out of bounds",
            });
        }
        let mut v = vec![0u8; n as usize];
        self.fill(&mut v, what, hashed)?;
        Ok(v)
    }

    /// The next record. After the end record has been returned, nothing
    /// more is read (and this returns an error).
    pub fn next_record(&mut self) -> Result<Record, StreamError> {
        if self.ended {
            return Err(StreamError::Truncated(
                "nothing: the end record was already read",
            ));
        }
        let [tag] = self.array::<1>("a record tag").map_err(|e| match e {
            StreamError::Truncated(_) => StreamError::Truncated("the record list (no end record)"),
            other => other,
        })?;
        Ok(match tag {
            TAG_PAGE => {
                // gpa ‖ packet header ‖ len, read at once; the packet header
                // is outside the digest (the module documentation).
                let fixed = {
                    let mut b = [0u8; 8 + PACKET_HEADER_LEN + 4];
                    self.fill(&mut b, "a page record", false)?;
                    b
                };
                let (gpa, rest) = fixed.split_at(8);
                let (header_bytes, len) = rest.split_at(PACKET_HEADER_LEN);
                self.hash.update(gpa);
                self.hash.update(len);
                let mut g = [0u8; 8];
                g.copy_from_slice(gpa);
                let gpa = u64::from_le_bytes(g);
                let mut l = [0u8; 4];
                l.copy_from_slice(len);
                let n = u32::from_le_bytes(l);
                if n == 0 || n > MAX_PAGE_LEN {
                    return Err(StreamError::Field {
                        field: "page len",
                        value: u64::from(n),
                        problem: "length out of bounds",
                    });
                }
                let (mut header, mut trans) = self.spare.pop().unwrap_or_default();
                header.clear();
                header.extend_from_slice(header_bytes);
                // A recycled buffer of the same length is neither reallocated
                // nor cleared (read_exact overwrites it).
                trans.resize(n as usize, 0);
                self.fill(&mut trans, "a page record", false)?;
                if !trans.len().is_multiple_of(16) {
                    return Err(StreamError::Field {
                        field: "page len",
                        value: trans.len() as u64,
                        problem: "not a multiple of 16",
                    });
                }
                self.packets += 1;
                Record::Page { gpa, header, trans }
            }
            TAG_VCPU => {
                let index = self.u32("a vCPU record")?;
                let state =
                    self.bounded_vec("vcpu len", MAX_VCPU_STATE_LEN, "a vCPU record", true)?;
                Record::Vcpu { index, state }
            }
            TAG_DEVICE => Record::Device(self.bounded_vec(
                "device len",
                MAX_DEVICE_STATE_LEN,
                "a device record",
                true,
            )?),
            TAG_PASS => Record::Pass(self.u64("a pass record")?),
            TAG_VMSA if self.es => {
                let index = self.u32("a VMSA record")?;
                let mut header = vec![0u8; PACKET_HEADER_LEN];
                self.fill(&mut header, "a VMSA record", false)?;
                let n = self.u32("a VMSA record")?;
                if n != VMSA_LEN {
                    return Err(StreamError::Field {
                        field: "VMSA len",
                        value: u64::from(n),
                        problem: "a VMSA packet is one 4 KiB page",
                    });
                }
                let mut trans = vec![0u8; n as usize];
                self.fill(&mut trans, "a VMSA record", false)?;
                Record::Vmsa {
                    index,
                    header,
                    trans,
                }
            }
            TAG_END => {
                let expect: [u8; 32] = self.hash.clone().finalize().into();
                let mut b = [0u8; 40];
                self.fill(&mut b, "the end record", false)?;
                let mut packets = [0u8; 8];
                packets.copy_from_slice(b.get(..8).unwrap_or(&[0; 8]));
                let packets = u64::from_le_bytes(packets);
                let mut digest = [0u8; 32];
                digest.copy_from_slice(b.get(8..).unwrap_or(&[0; 32]));
                if packets != self.packets {
                    return Err(StreamError::Field {
                        field: "end packet count",
                        value: packets,
                        problem: "differs from the page records received",
                    });
                }
                // An unkeyed checksum of public bytes (not a MAC: nothing
                // secret to leak through timing), so a plain comparison.
                if expect != digest {
                    return Err(StreamError::Field {
                        field: "end digest",
                        value: 0,
                        problem: "the stream's SHA-256 digest does not match (corrupted)",
                    });
                }
                self.ended = true;
                Record::End { packets, digest }
            }
            other => return Err(StreamError::Tag(other)),
        })
    }

    /// Bytes read so far.
    pub fn bytes(&self) -> u64 {
        self.bytes
    }

    /// Gives a record back: a page record's buffers are reused for the
    /// next page records read (at most [`Reader::SPARE`] are kept).
    pub fn recycle(&mut self, r: Record) {
        if let Record::Page { header, trans, .. } = r {
            if self.spare.len() < Self::SPARE {
                self.spare.push((header, trans));
            }
        }
    }

    /// Most page buffers kept for reuse.
    pub const SPARE: usize = 1024;

    /// The input.
    pub fn into_inner(self) -> R {
        self.input
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn header() -> Header {
        Header {
            policy: 1,
            ram_size: 16 << 20,
            firmware_size: 2 << 20,
            vcpus: 1,
            source_pdh: vec![7; SEV_CERT_LEN],
            session: SessionBuffer::from_bytes(&[9; SESSION_LEN]),
        }
    }

    fn sample() -> Vec<u8> {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        w.record(&Record::Pass(1)).unwrap();
        w.record(&Record::Page {
            gpa: 0x1000,
            header: vec![1; 52],
            trans: vec![2; 4096],
        })
        .unwrap();
        w.record(&Record::Vcpu {
            index: 0,
            state: vec![3; 100],
        })
        .unwrap();
        w.record(&Record::Device(vec![4; 9])).unwrap();
        w.record(&Record::End {
            packets: 0,
            digest: [0; 32],
        })
        .unwrap();
        assert_eq!(w.bytes() as usize, w.out.len());
        w.into_inner()
    }

    fn es_stream(version: Option<u32>) -> Vec<u8> {
        let h = Header {
            policy: 0x5,
            ..header()
        };
        let mut w = Writer::new(Vec::new(), &h).unwrap();
        w.record(&Record::Vmsa {
            index: 0,
            header: vec![5; 52],
            trans: vec![6; 4096],
        })
        .unwrap();
        w.record(&Record::End {
            packets: 0,
            digest: [0; 32],
        })
        .unwrap();
        let mut b = w.into_inner();
        if let Some(v) = version {
            b[8..12].copy_from_slice(&v.to_le_bytes());
        }
        b
    }

    #[test]
    fn es_streams_are_version_3_and_carry_vmsa_records() {
        assert_eq!(&sample()[8..12], &PLAIN_VERSION.to_le_bytes());
        let b = es_stream(None);
        assert_eq!(&b[8..12], &VERSION.to_le_bytes());
        let (mut r, h) = Reader::new(b.as_slice()).unwrap();
        assert_eq!(h.policy, 0x5);
        assert_eq!(
            r.next_record().unwrap(),
            Record::Vmsa {
                index: 0,
                header: vec![5; 52],
                trans: vec![6; 4096],
            }
        );
        assert!(matches!(
            r.next_record().unwrap(),
            Record::End { packets: 0, .. }
        ));
    }

    #[test]
    fn version_mismatches_are_refused_clearly() {
        // An SEV-ES stream labelled version 2 (what an older sevm reads).
        let e = Reader::new(es_stream(Some(PLAIN_VERSION)).as_slice()).unwrap_err();
        assert!(
            matches!(
                e,
                StreamError::Field {
                    field: "version",
                    value: 2,
                    ..
                }
            ),
            "{e}"
        );
        // A plain stream labelled version 3.
        let mut b = sample();
        b[8..12].copy_from_slice(&VERSION.to_le_bytes());
        assert!(matches!(
            Reader::new(b.as_slice()).unwrap_err(),
            StreamError::Field {
                field: "version",
                value: 3,
                ..
            }
        ));
        // A version this build does not know says which it reads.
        let e = Reader::new(es_stream(Some(4)).as_slice()).unwrap_err();
        assert!(matches!(e, StreamError::Version(4)));
        assert!(e.to_string().contains("reads versions 2 and 3"), "{e}");
        // A VMSA record in a plain stream is an unknown record.
        let mut plain = sample();
        let end = plain.len() - 41;
        plain.truncate(end);
        plain.push(TAG_VMSA);
        let (mut r, _) = Reader::new(plain.as_slice()).unwrap();
        let mut last = r.next_record();
        while let Ok(rec) = &last {
            assert!(!matches!(rec, Record::End { .. }));
            last = r.next_record();
        }
        assert!(matches!(last, Err(StreamError::Tag(TAG_VMSA))));
    }

    #[test]
    fn a_vmsa_record_of_another_length_is_refused() {
        let mut b = es_stream(None);
        // tag ‖ index ‖ 52-byte header ‖ len: after the fixed header.
        let at = b.len() - 41 - 4096 - 4;
        b[at..at + 4].copy_from_slice(&4080u32.to_le_bytes());
        let (mut r, _) = Reader::new(b.as_slice()).unwrap();
        assert!(matches!(
            r.next_record(),
            Err(StreamError::Field {
                field: "VMSA len",
                value: 4080,
                ..
            })
        ));
    }

    #[test]
    fn round_trip() {
        let bytes = sample();
        let (mut r, h) = Reader::new(bytes.as_slice()).unwrap();
        assert_eq!(h, header());
        assert_eq!(r.next_record().unwrap(), Record::Pass(1));
        assert!(matches!(
            r.next_record().unwrap(),
            Record::Page { gpa: 0x1000, .. }
        ));
        assert!(matches!(
            r.next_record().unwrap(),
            Record::Vcpu { index: 0, .. }
        ));
        assert_eq!(r.next_record().unwrap(), Record::Device(vec![4; 9]));
        assert!(matches!(
            r.next_record().unwrap(),
            Record::End { packets: 1, .. }
        ));
        assert_eq!(r.bytes() as usize, bytes.len());
        assert!(r.next_record().is_err());
    }

    #[test]
    fn every_truncation_is_an_error() {
        let bytes = sample();
        for n in 0..bytes.len() {
            let res = Reader::new(&bytes[..n]).and_then(|(mut r, _)| loop {
                if let Record::End { .. } = r.next_record()? {
                    break Ok(());
                }
            });
            assert!(res.is_err(), "prefix of {n} bytes accepted");
        }
    }

    #[test]
    fn corruption_outside_transport_bytes_is_detected() {
        let bytes = sample();
        let header_len = 8 + 4 + 4 + 8 + 8 + 4 + 4 + SEV_CERT_LEN + 4 + SESSION_LEN;
        // The vCPU state's bytes (after pass record and page record).
        let vcpu_at = header_len + 9 + 1 + 8 + 52 + 4 + 4096 + 1 + 4 + 4 + 10;
        let mut bad = bytes.clone();
        bad[vcpu_at] ^= 1;
        let (mut r, _) = Reader::new(bad.as_slice()).unwrap();
        let e = loop {
            match r.next_record() {
                Ok(Record::End { .. }) => panic!("accepted"),
                Ok(_) => {}
                Err(e) => break e,
            }
        };
        assert!(e.to_string().contains("digest"), "{e}");
    }

    /// Reads `bytes` to the end record; the first error.
    fn read_all(bytes: &[u8]) -> Result<(), StreamError> {
        let (mut r, _) = Reader::new(bytes)?;
        loop {
            if let Record::End { .. } = r.next_record()? {
                return Ok(());
            }
        }
    }

    #[test]
    fn page_gpa_and_length_are_in_the_digest_the_packet_header_is_not() {
        let bytes = sample();
        let header_len = 8 + 4 + 4 + 8 + 8 + 4 + 4 + SEV_CERT_LEN + 4 + SESSION_LEN;
        let page_at = header_len + 9;
        // The GPA's top byte: the record still parses, the digest fails.
        let mut bad = bytes.clone();
        bad[page_at + 8] ^= 0x10;
        let e = read_all(&bad).unwrap_err();
        assert!(e.to_string().contains("digest"), "{e}");
        // A packet header byte: the stream layer passes it on (the firmware's
        // MAC covers FLAGS, IV and the MAC itself) ...
        let mut hdr = bytes.clone();
        hdr[page_at + 9 + 20] ^= 1;
        read_all(&hdr).unwrap();
        let (mut r, _) = Reader::new(hdr.as_slice()).unwrap();
        r.next_record().unwrap();
        let Record::Page { header, .. } = r.next_record().unwrap() else {
            panic!("not a page");
        };
        // ... changed, so RECEIVE_UPDATE_DATA sees the corruption.
        assert_ne!(header, vec![1; 52]);
    }

    /// Every one-bit change anywhere in a stream is refused by the stream
    /// layer, except in a page record's packet header and transport bytes,
    /// which only the firmware's MAC can judge: those are passed on, and the
    /// changed stream re-encodes to exactly its bytes.
    #[test]
    fn every_bit_flip_is_refused_unless_the_firmware_mac_covers_it() {
        let bytes = sample();
        let header_len = 8 + 4 + 4 + 8 + 8 + 4 + 4 + SEV_CERT_LEN + 4 + SESSION_LEN;
        let page_at = header_len + 9;
        let packet_header = page_at + 9..page_at + 9 + 52;
        let transport = page_at + 9 + 52 + 4..page_at + 9 + 52 + 4 + 4096;
        for at in 0..bytes.len() {
            let mut bad = bytes.clone();
            bad[at] ^= 0x04;
            let read = Reader::new(bad.as_slice()).and_then(|(mut r, h)| {
                let mut records = Vec::new();
                loop {
                    let rec = r.next_record()?;
                    let end = matches!(rec, Record::End { .. });
                    records.push(rec);
                    if end {
                        return Ok((h, records));
                    }
                }
            });
            let covered = packet_header.contains(&at) || transport.contains(&at);
            match read {
                Ok((h, records)) => {
                    assert!(covered, "a flip at byte {at} was accepted");
                    let mut w = Writer::new(Vec::new(), &h).unwrap();
                    w.records(&records).unwrap();
                    assert_eq!(w.into_inner(), bad, "byte {at}");
                }
                Err(_) => assert!(!covered, "a flip at byte {at} was refused"),
            }
        }
    }

    #[test]
    fn recycled_page_buffers_are_refilled_exactly() {
        let mut w = Writer::new(Vec::new(), &header()).unwrap();
        let pages: Vec<Record> = (0..3u8)
            .map(|i| Record::Page {
                gpa: u64::from(i) << 12,
                header: vec![i; 52],
                trans: vec![i ^ 0x5a; if i == 1 { 16 } else { 4096 }],
            })
            .collect();
        w.records(&pages).unwrap();
        w.record(&Record::End {
            packets: 0,
            digest: [0; 32],
        })
        .unwrap();
        let bytes = w.into_inner();
        let (mut r, _) = Reader::new(bytes.as_slice()).unwrap();
        // A stale, longer buffer to reuse: it must come back resized.
        r.recycle(Record::Page {
            gpa: 0,
            header: vec![0xff; 60],
            trans: vec![0xff; 8192],
        });
        for expected in &pages {
            let got = r.next_record().unwrap();
            assert_eq!(&got, expected);
            r.recycle(got);
        }
        assert!(matches!(
            r.next_record().unwrap(),
            Record::End { packets: 3, .. }
        ));
    }

    #[test]
    fn bounds_are_checked_before_allocation() {
        let mut bytes = sample();
        let header_len = 8 + 4 + 4 + 8 + 8 + 4 + 4 + SEV_CERT_LEN + 4 + SESSION_LEN;
        // Page len field: after pass record (9), tag, gpa, header.
        let len_at = header_len + 9 + 1 + 8 + 52;
        bytes[len_at..len_at + 4].copy_from_slice(&u32::MAX.to_le_bytes());
        let (mut r, _) = Reader::new(bytes.as_slice()).unwrap();
        r.next_record().unwrap();
        let e = r.next_record().unwrap_err();
        assert!(e.to_string().contains("page len"), "{e}");
        let e = Reader::new(&b"QEMU\0\0\0\0xxxx"[..]).unwrap_err();
        assert!(matches!(e, StreamError::Magic(_)));
        let mut v = sample();
        v[8] = 1;
        assert!(matches!(
            Reader::new(v.as_slice()).unwrap_err(),
            StreamError::Version(1)
        ));
        let mut v = sample();
        v[header_len + 9] = 0x77;
        let (mut r, _) = Reader::new(v.as_slice()).unwrap();
        r.next_record().unwrap();
        assert!(matches!(
            r.next_record().unwrap_err(),
            StreamError::Tag(0x77)
        ));
    }
}
