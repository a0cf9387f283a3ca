//! The canonical fixed-width encoding used by certificates and headers.
//!
//! Every field has one width and integers are little-endian, as in Bitcoin's headers, so there
//! is exactly one encoding of each value and decoding is a bounds-checked walk with no length
//! prefixes to lie about. `docs/protocol.md` lists every field byte by byte.

use bitcoin::secp256k1::{ecdsa, PublicKey};
use thiserror::Error;

/// Why a byte string is not the canonical encoding of a value.
#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum DecodeError {
    #[error("input ended early: needed {needed} more bytes for {field}")]
    Truncated { field: &'static str, needed: usize },
    #[error("{count} trailing bytes after the encoded value")]
    TrailingBytes { count: usize },
    #[error("input of {len} bytes is over the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("unknown {field} version {value}")]
    UnknownVersion { field: &'static str, value: u32 },
    #[error("invalid value {value} for {field}")]
    InvalidEnum { field: &'static str, value: u8 },
    #[error("{field} is not a valid compressed secp256k1 public key")]
    InvalidPublicKey { field: &'static str },
    #[error("{field} is not a valid compact ECDSA signature")]
    InvalidSignature { field: &'static str },
    #[error("{field} has a high-S ECDSA signature; only the low-S form is canonical")]
    HighS { field: &'static str },
}

/// Appends fixed-width fields to a buffer.
#[derive(Default)]
pub struct Writer {
    buf: Vec<u8>,
}

impl Writer {
    pub fn with_capacity(capacity: usize) -> Self {
        Writer {
            buf: Vec::with_capacity(capacity),
        }
    }
    pub fn u8(&mut self, v: u8) -> &mut Self {
        self.buf.push(v);
        self
    }
    pub fn u16(&mut self, v: u16) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u32(&mut self, v: u32) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn u64(&mut self, v: u64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn i64(&mut self, v: i64) -> &mut Self {
        self.bytes(&v.to_le_bytes())
    }
    pub fn bytes(&mut self, v: &[u8]) -> &mut Self {
        self.buf.extend_from_slice(v);
        self
    }
    pub fn public_key(&mut self, key: &PublicKey) -> &mut Self {
        self.bytes(&key.serialize())
    }
    pub fn signature(&mut self, sig: &ecdsa::Signature) -> &mut Self {
        self.bytes(&sig.serialize_compact())
    }
    pub fn finish(self) -> Vec<u8> {
        self.buf
    }
}

/// Reads fixed-width fields from a slice; every read is bounds-checked.
pub struct Reader<'a> {
    data: &'a [u8],
}

impl<'a> Reader<'a> {
    pub fn new(data: &'a [u8]) -> Self {
        Reader { data }
    }

    pub fn remaining(&self) -> &'a [u8] {
        self.data
    }

    pub fn array<const N: usize>(&mut self, field: &'static str) -> Result<[u8; N], DecodeError> {
        if self.data.len() < N {
            return Err(DecodeError::Truncated {
                field,
                needed: N - self.data.len(),
            });
        }
        let (head, tail) = self.data.split_at(N);
        self.data = tail;
        let mut out = [0u8; N];
        out.copy_from_slice(head);
        Ok(out)
    }
    pub fn u8(&mut self, field: &'static str) -> Result<u8, DecodeError> {
        Ok(self.array::<1>(field)?[0])
    }
    pub fn u16(&mut self, field: &'static str) -> Result<u16, DecodeError> {
        Ok(u16::from_le_bytes(self.array(field)?))
    }
    pub fn u32(&mut self, field: &'static str) -> Result<u32, DecodeError> {
        Ok(u32::from_le_bytes(self.array(field)?))
    }
    pub fn u64(&mut self, field: &'static str) -> Result<u64, DecodeError> {
        Ok(u64::from_le_bytes(self.array(field)?))
    }
    pub fn i64(&mut self, field: &'static str) -> Result<i64, DecodeError> {
        Ok(i64::from_le_bytes(self.array(field)?))
    }
    pub fn public_key(&mut self, field: &'static str) -> Result<PublicKey, DecodeError> {
        let bytes: [u8; 33] = self.array(field)?;
        PublicKey::from_slice(&bytes).map_err(|_| DecodeError::InvalidPublicKey { field })
    }

    /// A 64-byte compact signature in low-S form: the high-S twin of a valid signature is also
    /// valid ECDSA, so accepting both would give one certificate two encodings.
    pub fn signature(&mut self, field: &'static str) -> Result<ecdsa::Signature, DecodeError> {
        let bytes: [u8; 64] = self.array(field)?;
        let sig = ecdsa::Signature::from_compact(&bytes)
            .map_err(|_| DecodeError::InvalidSignature { field })?;
        let mut normalized = sig;
        normalized.normalize_s();
        if normalized != sig {
            return Err(DecodeError::HighS { field });
        }
        Ok(sig)
    }

    /// Succeeds only if every byte was consumed.
    pub fn finish(self) -> Result<(), DecodeError> {
        if self.data.is_empty() {
            Ok(())
        } else {
            Err(DecodeError::TrailingBytes {
                count: self.data.len(),
            })
        }
    }
}
