//! ClientHello bytes for tests: the one builder the unit tests, the integration tests and
//! anything else that needs a hello on the wire share. Compiled for the crate's own tests and
//! with the `test-util` feature (the integration tests get it through the crate's
//! dev-dependency on itself); never in a release build.
//!
//! * [`TlsHello`]: a ClientHello in TLS handshake records: version, cipher suites, session id,
//!   compression methods and extensions (SNI, ALPN, supported_versions, supported_groups,
//!   signature_algorithms, or any type with raw data, or a raw extensions block), sent as one
//!   record ([`TlsHello::wire`], [`TlsHello::record`]) or fragmented over several
//!   ([`TlsHello::records`] at given offsets, [`TlsHello::fragmented`] in fixed sizes).
//! * [`Sslv2Hello`]: an SSLv2-format ("compat") CLIENT-HELLO.
//! * Free functions for the pieces, to build deliberately broken input: [`record`] (any
//!   content type), [`handshake_message`] (any handshake type), [`handshake_records`] (a
//!   message cut at given offsets), [`fragment_cuts`], and the extension data encoders.
//!
//! Nothing here validates: a builder can produce any hello, valid or not, as long as every
//! length fits its field (a length that does not fit panics rather than wrap).
//!
//! ```
//! use provgate::hello::builder::{Sslv2Hello, TlsHello};
//! use provgate::hello::{parse, Parse};
//!
//! let hello = TlsHello::new(0x0303, &[0x1301, 0xc02f])
//!     .sni("prov.example.com")
//!     .alpn(&["http/1.1"])
//!     .supported_versions(&[0x0304, 0x0303]);
//! // A 2-byte first record, then 100-byte records.
//! let wire = hello.fragmented(0x0301, 2, 100);
//! let Parse::Parsed(h) = parse(&wire) else { panic!() };
//! assert_eq!(h.sni.as_deref(), Some("prov.example.com"));
//! assert_eq!(h.wire_len, wire.len());
//!
//! let old = Sslv2Hello::new(0x0301, &[0x00_002f, 0x01_0080]).wire();
//! assert!(matches!(parse(&old), Parse::Parsed(_)));
//! ```

/// Record content type of handshake records.
pub const HANDSHAKE: u8 = 0x16;
/// Handshake message type of a ClientHello.
pub const CLIENT_HELLO: u8 = 1;
/// Record version [`TlsHello::wire`] uses: TLS 1.0, as most clients send their first record.
pub const DEFAULT_RECORD_VERSION: u16 = 0x0301;

/// A ClientHello in TLS handshake records. Defaults: a fixed random (`i * 7` for byte `i`),
/// empty session id, compression methods `[0]` (null), and no extensions block at all (as
/// SSLv3 and many TLS 1.0 clients send); the first extension added creates the block.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct TlsHello {
    version: u16,
    random: [u8; 32],
    session_id: Vec<u8>,
    suites: Vec<u16>,
    compression: Vec<u8>,
    extensions: Extensions,
}

#[derive(Debug, Clone, PartialEq, Eq)]
enum Extensions {
    /// No extensions block.
    Absent,
    /// (type, extension_data) in order.
    List(Vec<(u16, Vec<u8>)>),
    /// The block's contents, verbatim (its 2-byte length is still computed).
    Raw(Vec<u8>),
}

impl TlsHello {
    /// A hello with `client_version` `version` offering `suites` in this order (GREASE
    /// values included, as given).
    pub fn new(version: u16, suites: &[u16]) -> Self {
        let mut random = [0u8; 32];
        for (i, b) in (0u8..).zip(random.iter_mut()) {
            *b = i.wrapping_mul(7);
        }
        TlsHello {
            version,
            random,
            session_id: Vec::new(),
            suites: suites.to_vec(),
            compression: vec![0],
            extensions: Extensions::Absent,
        }
    }

    /// The 32 random bytes.
    pub fn random(mut self, random: [u8; 32]) -> Self {
        self.random = random;
        self
    }

    /// The legacy session id (any length up to 255; the parser allows 32).
    pub fn session_id(mut self, id: &[u8]) -> Self {
        self.session_id = id.to_vec();
        self
    }

    /// The compression methods (default `[0]`).
    pub fn compression(mut self, methods: &[u8]) -> Self {
        self.compression = methods.to_vec();
        self
    }

    /// Append an extension of type `ext_type` with `data` as its extension_data, verbatim
    /// (a GREASE type, a duplicate or malformed data included). Replaces a raw block set
    /// with [`TlsHello::raw_extensions`].
    pub fn ext(mut self, ext_type: u16, data: impl Into<Vec<u8>>) -> Self {
        let data = data.into();
        match &mut self.extensions {
            Extensions::List(list) => list.push((ext_type, data)),
            other => *other = Extensions::List(vec![(ext_type, data)]),
        }
        self
    }

    /// server_name (0) with one host_name entry: `name` as raw bytes (any bytes, so a hostile
    /// or non-DNS name can be sent).
    pub fn sni(self, name: impl AsRef<[u8]>) -> Self {
        self.ext(0, sni_data(name.as_ref()))
    }

    /// application_layer_protocol_negotiation (16).
    pub fn alpn(self, protocols: &[&str]) -> Self {
        self.ext(16, alpn_data(protocols))
    }

    /// supported_versions (43), in this order.
    pub fn supported_versions(self, versions: &[u16]) -> Self {
        self.ext(43, supported_versions_data(versions))
    }

    /// supported_groups (10).
    pub fn supported_groups(self, groups: &[u16]) -> Self {
        self.ext(10, u16_list_data(groups))
    }

    /// signature_algorithms (13).
    pub fn signature_algorithms(self, schemes: &[u16]) -> Self {
        self.ext(13, u16_list_data(schemes))
    }

    /// The extensions block's contents, verbatim, instead of a list of extensions (for a
    /// block whose inner lengths are wrong). Replaces extensions added before.
    pub fn raw_extensions(mut self, block: &[u8]) -> Self {
        self.extensions = Extensions::Raw(block.to_vec());
        self
    }

    /// The ClientHello body: what follows the 4-byte handshake header.
    pub fn body(&self) -> Vec<u8> {
        let mut b = self.version.to_be_bytes().to_vec();
        b.extend_from_slice(&self.random);
        b.extend(vec8(&self.session_id));
        b.extend(vec16(&u16s(&self.suites)));
        b.extend(vec8(&self.compression));
        match &self.extensions {
            Extensions::Absent => {}
            Extensions::List(list) => {
                let mut block = Vec::new();
                for (ext_type, data) in list {
                    block.extend(extension(*ext_type, data));
                }
                b.extend(vec16(&block));
            }
            Extensions::Raw(block) => b.extend(vec16(block)),
        }
        b
    }

    /// The handshake message: type 1 (ClientHello), 24-bit length, body.
    pub fn handshake(&self) -> Vec<u8> {
        handshake_message(CLIENT_HELLO, &self.body())
    }

    /// One handshake record with record version [`DEFAULT_RECORD_VERSION`] (TLS 1.0).
    pub fn wire(&self) -> Vec<u8> {
        self.record(DEFAULT_RECORD_VERSION)
    }

    /// One handshake record with record version `record_version`.
    pub fn record(&self, record_version: u16) -> Vec<u8> {
        self.records(record_version, &[])
    }

    /// The handshake message fragmented over handshake records with record version
    /// `record_version`, cut at the offsets `cuts` into the message (see
    /// [`handshake_records`]).
    pub fn records(&self, record_version: u16, cuts: &[usize]) -> Vec<u8> {
        handshake_records(record_version, &self.handshake(), cuts)
    }

    /// The handshake message in a first record of `first` bytes, then records of `rest`
    /// bytes (see [`fragment_cuts`]): `fragmented(v, 1, 1)` sends every byte in its own
    /// record. Panics if `rest` is 0.
    pub fn fragmented(&self, record_version: u16, first: usize, rest: usize) -> Vec<u8> {
        let msg = self.handshake();
        handshake_records(record_version, &msg, &fragment_cuts(msg.len(), first, rest))
    }
}

/// An SSLv2-format CLIENT-HELLO: 2-byte header (high bit set, 15-bit length), msg_type 1,
/// version, the three lengths, then 3-byte cipher specs, session id and challenge. Defaults:
/// empty session id, a 16-byte challenge of `0x42`.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Sslv2Hello {
    version: u16,
    specs: Vec<u32>,
    session_id: Vec<u8>,
    challenge: Vec<u8>,
}

impl Sslv2Hello {
    /// A hello with version `version` (`0x0002` for SSLv2 itself, `0x0300..` for a compat
    /// hello) offering the 3-byte cipher specs `specs` (the low 24 bits of each; a TLS suite
    /// is `0x00_xxxx`).
    pub fn new(version: u16, specs: &[u32]) -> Self {
        Sslv2Hello {
            version,
            specs: specs.to_vec(),
            session_id: Vec::new(),
            challenge: vec![0x42; 16],
        }
    }

    /// The session id (the parser allows up to 32 bytes).
    pub fn session_id(mut self, id: &[u8]) -> Self {
        self.session_id = id.to_vec();
        self
    }

    /// The challenge (the parser allows 16..=32 bytes).
    pub fn challenge(mut self, challenge: &[u8]) -> Self {
        self.challenge = challenge.to_vec();
        self
    }

    /// The bytes on the wire, header included.
    pub fn wire(&self) -> Vec<u8> {
        let specs: Vec<u8> = self
            .specs
            .iter()
            .flat_map(|s| s.to_be_bytes().into_iter().skip(1))
            .collect();
        let mut body = vec![CLIENT_HELLO];
        body.extend(self.version.to_be_bytes());
        body.extend(len16(specs.len()));
        body.extend(len16(self.session_id.len()));
        body.extend(len16(self.challenge.len()));
        body.extend(specs);
        body.extend_from_slice(&self.session_id);
        body.extend_from_slice(&self.challenge);
        let len = u16::try_from(body.len())
            .ok()
            .filter(|&n| n <= 0x7fff)
            .expect("SSLv2 hello longer than its 15-bit length field");
        let mut out = (0x8000 | len).to_be_bytes().to_vec();
        out.extend(body);
        out
    }
}

/// One TLS record: content type, version, 16-bit length, `fragment`.
pub fn record(content_type: u8, version: u16, fragment: &[u8]) -> Vec<u8> {
    let mut r = vec![content_type];
    r.extend(version.to_be_bytes());
    r.extend(vec16(fragment));
    r
}

/// A handshake message: `msg_type`, 24-bit length, `body`.
pub fn handshake_message(msg_type: u8, body: &[u8]) -> Vec<u8> {
    let mut m = vec![msg_type];
    m.extend(u24(body.len()));
    m.extend_from_slice(body);
    m
}

/// `msg` in handshake records with record version `version`, cut at the offsets `cuts`
/// (ascending, each at most `msg.len()`; a repeated offset gives an empty record). No cuts:
/// one record.
pub fn handshake_records(version: u16, msg: &[u8], cuts: &[usize]) -> Vec<u8> {
    let mut out = Vec::new();
    let mut start = 0;
    for end in cuts.iter().copied().chain([msg.len()]) {
        out.extend(record(HANDSHAKE, version, &msg[start..end]));
        start = end;
    }
    out
}

/// Cut offsets for a `len`-byte message sent as a first record of `first` bytes, then records
/// of `rest` bytes (the last one shorter). `fragment_cuts(len, 1, 1)`: every byte in its own
/// record. Panics if `rest` is 0.
pub fn fragment_cuts(len: usize, first: usize, rest: usize) -> Vec<usize> {
    assert!(rest > 0, "fragment_cuts: records of 0 bytes never end");
    (0..)
        .map(|i| first + i * rest)
        .take_while(|&cut| cut < len)
        .collect()
}

/// One encoded extension: type, 16-bit length, `data`.
pub fn extension(ext_type: u16, data: &[u8]) -> Vec<u8> {
    let mut e = ext_type.to_be_bytes().to_vec();
    e.extend(vec16(data));
    e
}

/// server_name extension data: a list of one host_name entry carrying `name` as is.
pub fn sni_data(name: &[u8]) -> Vec<u8> {
    let mut entry = vec![0u8];
    entry.extend(vec16(name));
    vec16(&entry)
}

/// ALPN extension data: the protocol name list.
pub fn alpn_data(protocols: &[&str]) -> Vec<u8> {
    let list: Vec<u8> = protocols.iter().flat_map(|p| vec8(p.as_bytes())).collect();
    vec16(&list)
}

/// supported_versions extension data (ClientHello form: a 1-byte-length list).
pub fn supported_versions_data(versions: &[u16]) -> Vec<u8> {
    vec8(&u16s(versions))
}

/// Extension data that is a 2-byte-length list of u16s (supported_groups,
/// signature_algorithms).
pub fn u16_list_data(values: &[u16]) -> Vec<u8> {
    vec16(&u16s(values))
}

/// `data` with a 1-byte length prefix.
pub fn vec8(data: &[u8]) -> Vec<u8> {
    let len = u8::try_from(data.len()).expect("vector longer than its 8-bit length field");
    let mut v = vec![len];
    v.extend_from_slice(data);
    v
}

/// `data` with a 2-byte length prefix.
pub fn vec16(data: &[u8]) -> Vec<u8> {
    let mut v = len16(data.len()).to_vec();
    v.extend_from_slice(data);
    v
}

/// `n` as a 24-bit big-endian length.
pub fn u24(n: usize) -> [u8; 3] {
    let n = u32::try_from(n)
        .ok()
        .filter(|&n| n < 1 << 24)
        .expect("length longer than its 24-bit field");
    let [_, a, b, c] = n.to_be_bytes();
    [a, b, c]
}

fn len16(n: usize) -> [u8; 2] {
    u16::try_from(n)
        .expect("vector longer than its 16-bit length field")
        .to_be_bytes()
}

fn u16s(values: &[u16]) -> Vec<u8> {
    values.iter().flat_map(|v| v.to_be_bytes()).collect()
}
