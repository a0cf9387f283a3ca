//! Hash helpers. Block hashes use rust-bitcoin's `BlockHash` (double SHA-256, shown byte-reversed
//! as Bitcoin does); every other 32-byte digest is a [`Hash256`], shown in natural byte order.

use bitcoin::hashes::{sha256 as bsha256, sha256d as bsha256d, Hash, HashEngine};
use serde::{Deserialize, Serialize};
use std::fmt;
use std::str::FromStr;

/// A 32-byte digest (SHA-256 output, model hash, lottery seed, Merkle root of contributions).
#[derive(Clone, Copy, PartialEq, Eq, PartialOrd, Ord, Hash, Default)]
pub struct Hash256(pub [u8; 32]);

impl Hash256 {
    pub const ZERO: Hash256 = Hash256([0; 32]);

    pub fn as_bytes(&self) -> &[u8; 32] {
        &self.0
    }
}

impl fmt::Display for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&hex::encode(self.0))
    }
}

impl fmt::Debug for Hash256 {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Hash256({self})")
    }
}

impl FromStr for Hash256 {
    type Err = hex::FromHexError;
    fn from_str(s: &str) -> Result<Self, Self::Err> {
        let mut out = [0u8; 32];
        hex::decode_to_slice(s, &mut out)?;
        Ok(Hash256(out))
    }
}

impl Serialize for Hash256 {
    fn serialize<S: serde::Serializer>(&self, s: S) -> Result<S::Ok, S::Error> {
        s.collect_str(self)
    }
}

impl<'de> Deserialize<'de> for Hash256 {
    fn deserialize<D: serde::Deserializer<'de>>(d: D) -> Result<Self, D::Error> {
        let s = String::deserialize(d)?;
        s.parse().map_err(serde::de::Error::custom)
    }
}

/// SHA-256 of `data`.
pub fn sha256(data: &[u8]) -> Hash256 {
    Hash256(bsha256::Hash::hash(data).to_byte_array())
}

/// Double SHA-256 of `data`, as Bitcoin hashes headers and transactions.
pub fn sha256d(data: &[u8]) -> Hash256 {
    Hash256(bsha256d::Hash::hash(data).to_byte_array())
}

/// BIP340-style tagged hash: `SHA256(SHA256(tag) || SHA256(tag) || parts...)`.
///
/// Every signed message carries its own tag, so a signature made for one purpose (a certificate)
/// can never be replayed as another (a block signature, a registration).
pub fn tagged_hash(tag: &str, parts: &[&[u8]]) -> Hash256 {
    let tag_hash = bsha256::Hash::hash(tag.as_bytes()).to_byte_array();
    let mut engine = bsha256::Hash::engine();
    engine.input(&tag_hash);
    engine.input(&tag_hash);
    for part in parts {
        engine.input(part);
    }
    Hash256(bsha256::Hash::from_engine(engine).to_byte_array())
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sha256_matches_known_vector() {
        assert_eq!(
            sha256(b"abc").to_string(),
            "ba7816bf8f01cfea414140de5dae2223b00361a396177a9cb410ff61f20015ad"
        );
    }

    #[test]
    fn tagged_hashes_differ_by_tag() {
        assert_ne!(tagged_hash("a", &[b"x"]), tagged_hash("b", &[b"x"]));
        assert_eq!(tagged_hash("a", &[b"x", b"y"]), tagged_hash("a", &[b"xy"]));
    }

    #[test]
    fn hash256_hex_round_trip() {
        let h = sha256(b"trainchain");
        assert_eq!(h.to_string().parse::<Hash256>().unwrap(), h);
        assert!("zz".parse::<Hash256>().is_err());
    }
}
