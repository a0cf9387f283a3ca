//! Query-string and path parameters, checked: a known name, a number in range, at most once,
//! within [`QUERY_BYTES_MAX`]. Anything else is refused with a [`BadRequest`] that says what
//! was wrong (the server answers it 400).

use crate::limits::QUERY_BYTES_MAX;
use bitcoin::{BlockHash, Txid};
use std::collections::BTreeMap;
use std::str::FromStr;

/// Why a request was refused.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct BadRequest(pub String);

impl std::fmt::Display for BadRequest {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str(&self.0)
    }
}

/// A query string split into its parameters, each name one of `allowed` and given once.
#[derive(Debug)]
pub struct Params(BTreeMap<String, String>);

impl Params {
    pub fn parse(query: Option<&str>, allowed: &[&str]) -> Result<Params, BadRequest> {
        let mut out = BTreeMap::new();
        let Some(query) = query.filter(|q| !q.is_empty()) else {
            return Ok(Params(out));
        };
        if query.len() > QUERY_BYTES_MAX {
            return Err(BadRequest(format!(
                "the query string is {} bytes, over the limit of {QUERY_BYTES_MAX}",
                query.len()
            )));
        }
        for pair in query.split('&').filter(|p| !p.is_empty()) {
            let (name, value) = pair.split_once('=').unwrap_or((pair, ""));
            if !allowed.contains(&name) {
                let known = if allowed.is_empty() {
                    "this page takes no parameters".to_owned()
                } else {
                    format!("this page takes {}", allowed.join(", "))
                };
                return Err(BadRequest(format!("unknown parameter {name:?}: {known}")));
            }
            if out.insert(name.to_owned(), value.to_owned()).is_some() {
                return Err(BadRequest(format!("parameter {name:?} given twice")));
            }
        }
        Ok(Params(out))
    }

    /// `name` as a whole number in `min..=max`, or `default` when absent.
    pub fn number(&self, name: &str, min: u64, max: u64, default: u64) -> Result<u64, BadRequest> {
        match self.0.get(name) {
            None => Ok(default),
            Some(text) => bounded(name, text, min, max),
        }
    }

    /// `name` as a whole number in `min..=max`, or `None` when absent.
    pub fn optional(&self, name: &str, min: u64, max: u64) -> Result<Option<u64>, BadRequest> {
        self.0
            .get(name)
            .map(|text| bounded(name, text, min, max))
            .transpose()
    }

    /// `name` as a block hash, or `None` when absent.
    pub fn block_hash(&self, name: &str) -> Result<Option<BlockHash>, BadRequest> {
        self.0
            .get(name)
            .map(|text| block_hash(name, text))
            .transpose()
    }
}

/// `text` as a whole number in `min..=max`.
pub fn bounded(name: &str, text: &str, min: u64, max: u64) -> Result<u64, BadRequest> {
    let shown: String = text.chars().take(24).collect();
    if text.is_empty() || text.len() > 20 || !text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(BadRequest(format!(
            "{name} must be a whole number in {min}..={max}, not {shown:?}"
        )));
    }
    match text.parse::<u64>() {
        Ok(value) if (min..=max).contains(&value) => Ok(value),
        _ => Err(BadRequest(format!(
            "{name} must be in {min}..={max}, not {shown}"
        ))),
    }
}

fn is_hash(text: &str) -> bool {
    text.len() == 64 && text.bytes().all(|b| b.is_ascii_hexdigit())
}

pub fn block_hash(name: &str, text: &str) -> Result<BlockHash, BadRequest> {
    if !is_hash(text) {
        return Err(BadRequest(format!("{name} must be 64 hex digits")));
    }
    BlockHash::from_str(text).map_err(|e| BadRequest(format!("{name}: {e}")))
}

pub fn txid(name: &str, text: &str) -> Result<Txid, BadRequest> {
    if !is_hash(text) {
        return Err(BadRequest(format!("{name} must be 64 hex digits")));
    }
    Txid::from_str(text).map_err(|e| BadRequest(format!("{name}: {e}")))
}

/// A block named by its height or its hash (`/block/{id}`).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum BlockId {
    Height(u32),
    Hash(BlockHash),
}

pub fn block_id(text: &str) -> Result<BlockId, BadRequest> {
    if is_hash(text) {
        return block_hash("block", text).map(BlockId::Hash);
    }
    let height = bounded("block height", text, 0, u64::from(u32::MAX)).map_err(|_| {
        BadRequest(
            "a block is named by its height (a whole number) or its hash (64 hex digits)".into(),
        )
    })?;
    Ok(BlockId::Height(height as u32))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn numbers_are_bounded_and_garbage_is_named() {
        let p = Params::parse(Some("count=10&from=3"), &["count", "from"]).unwrap();
        assert_eq!(p.number("count", 1, 50, 20).unwrap(), 10);
        assert_eq!(p.optional("from", 0, u64::MAX).unwrap(), Some(3));
        assert_eq!(p.number("absent", 1, 50, 20).unwrap(), 20);
        let big = Params::parse(Some("count=51"), &["count"]).unwrap();
        let e = big.number("count", 1, 50, 20).unwrap_err();
        assert!(e.0.contains("1..=50"), "{e}");
        for garbage in [
            "count=-1",
            "count=1e3",
            "count=",
            "count=%31",
            "count=99999999999999999999999",
        ] {
            let p = Params::parse(Some(garbage), &["count"]).unwrap();
            assert!(p.number("count", 1, 50, 20).is_err(), "{garbage}");
        }
    }

    #[test]
    fn unknown_repeated_and_oversized_parameters_are_refused() {
        assert!(Params::parse(Some("x=1"), &["count"])
            .unwrap_err()
            .0
            .contains("unknown"));
        assert!(Params::parse(Some("count=1&count=2"), &["count"])
            .unwrap_err()
            .0
            .contains("twice"));
        let long = format!("count={}", "1".repeat(QUERY_BYTES_MAX));
        assert!(Params::parse(Some(&long), &["count"])
            .unwrap_err()
            .0
            .contains("over the limit"));
        assert!(Params::parse(None, &[]).is_ok());
    }

    #[test]
    fn blocks_are_named_by_height_or_hash() {
        assert_eq!(block_id("7").unwrap(), BlockId::Height(7));
        let hash = "ab".repeat(32);
        assert!(matches!(block_id(&hash).unwrap(), BlockId::Hash(_)));
        assert!(block_id("tip").is_err());
        assert!(block_id(&"zz".repeat(32)).is_err());
        assert!(block_id("4294967296").is_err());
        assert!(txid("txid", "00").is_err());
    }
}
