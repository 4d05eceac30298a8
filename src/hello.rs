//! TEMPORARY STUB (replaced by the real parser).
pub const MAX_HELLO_BYTES: usize = 16 * 1024 + 5 + 2048;
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum HelloFormat {
    Tls,
    Sslv2,
}
#[derive(Debug, Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct ProtocolVersion(pub u16);
impl ProtocolVersion {
    pub const SSL3: Self = Self(0x0300);
    pub const TLS1_0: Self = Self(0x0301);
    pub const TLS1_1: Self = Self(0x0302);
    pub const TLS1_2: Self = Self(0x0303);
    pub const TLS1_3: Self = Self(0x0304);
}
impl std::fmt::Display for ProtocolVersion {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "0x{:04x}", self.0)
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct ClientHello {
    pub format: HelloFormat,
    pub record_version: ProtocolVersion,
    pub client_version: ProtocolVersion,
    pub supported_versions: Vec<ProtocolVersion>,
    pub cipher_suites: Vec<u16>,
    pub sslv2_only_ciphers: Vec<u32>,
    pub compression_methods: Vec<u8>,
    pub extensions: Vec<u16>,
    pub sni: Option<String>,
    pub alpn: Vec<String>,
    pub signature_algorithms: Vec<u16>,
    pub supported_groups: Vec<u16>,
    pub has_grease: bool,
    pub wire_len: usize,
}
impl ClientHello {
    pub fn max_version(&self) -> ProtocolVersion {
        self.client_version
    }
    pub fn offers_cipher(&self, suite: u16) -> bool {
        self.cipher_suites.contains(&suite)
    }
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Parse {
    Incomplete { needed: Option<usize> },
    Parsed(ClientHello),
    NotTls(NotTls),
}
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum NotTls {
    PlainHttp,
}
impl std::fmt::Display for NotTls {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("plain HTTP")
    }
}
impl std::error::Error for NotTls {}
pub fn parse(_buf: &[u8]) -> Parse {
    Parse::Incomplete { needed: None }
}
pub fn cipher_name(_suite: u16) -> Option<&'static str> {
    None
}
