//! The sync protocol's messages and their byte encoding, and the request-response codec.
//!
//! Every message travels as one frame on its own stream: a 4-byte little-endian payload length,
//! then the payload. A length over the limit for that direction is refused before any payload
//! byte is read, so a peer cannot make us allocate more than the limit.
//!
//! Payloads (integers little-endian, hashes in internal byte order as in Bitcoin's wire format):
//! - `GetHeaders`: `0x01`, u16 count (1..=[`LOCATOR_HASHES_MAX`]), count x 32-byte block hash.
//! - `GetBlocks`:  `0x02`, u16 count (1..=[`BLOCKS_BATCH_MAX`]), count x 32-byte block hash.
//! - `Headers`:    `0x81`, u16 count (0..=[`HEADERS_BATCH_MAX`]), count x 400-byte header.
//! - `Blocks`:     `0x82`, u16 count (0..=[`BLOCKS_BATCH_MAX`]), count x (u32 length, block).

use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use futures::{AsyncRead, AsyncReadExt, AsyncWrite, AsyncWriteExt};
use primitives::block::BLOCK_BYTES_DECODE_MAX;
use primitives::header::HEADER_BYTES;
use primitives::{Block, BlockHeader};
use std::io;
use thiserror::Error;

/// Protocol name of block sync, negotiated by multistream-select.
pub const SYNC_PROTOCOL: &str = "/trainchain/sync/1";

/// Hashes in a block locator. Ten single steps then doubling steps reach back 2^32 blocks in
/// about 42 hashes; 64 leaves room and keeps a request tiny.
pub const LOCATOR_HASHES_MAX: usize = 64;

/// Headers per `Headers` response: 500 x 400 bytes = 200 kB, a round trip's worth that keeps a
/// response small next to a block batch (Bitcoin sends 2,000 headers of 80 bytes: 160 kB).
pub const HEADERS_BATCH_MAX: usize = 500;

/// Blocks asked for in one `GetBlocks` (Bitcoin keeps 16 blocks in flight per peer).
pub const BLOCKS_BATCH_MAX: usize = 16;

/// A `Blocks` response stops adding blocks once it holds this many bytes (it always carries at
/// least one block, which may be up to [`BLOCK_BYTES_DECODE_MAX`]), so a response stays within
/// [`RESPONSE_BYTES_MAX`] whatever the chain's block size.
pub const BLOCKS_RESPONSE_SOFT_BYTES: usize = 4 * 1024 * 1024;

/// Tag byte plus u16 count.
const PAYLOAD_PREFIX_BYTES: usize = 3;

/// Largest request payload: a full locator.
pub const REQUEST_BYTES_MAX: usize = PAYLOAD_PREFIX_BYTES + LOCATOR_HASHES_MAX * 32;

/// Largest response payload: the soft limit, plus one largest block with its length prefix.
pub const RESPONSE_BYTES_MAX: usize =
    PAYLOAD_PREFIX_BYTES + BLOCKS_RESPONSE_SOFT_BYTES + 4 + BLOCK_BYTES_DECODE_MAX;

const TAG_GET_HEADERS: u8 = 0x01;
const TAG_GET_BLOCKS: u8 = 0x02;
const TAG_HEADERS: u8 = 0x81;
const TAG_BLOCKS: u8 = 0x82;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncRequest {
    /// Headers of the sender's best chain after the first locator hash it has on it.
    GetHeaders { locator: Vec<BlockHash> },
    /// Bodies of these blocks (those the responder has; unknown ones are left out).
    GetBlocks { hashes: Vec<BlockHash> },
}

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum SyncResponse {
    Headers(Vec<BlockHeader>),
    Blocks(Vec<Block>),
}

/// Why a frame was refused. Each one is misbehaviour by the sender.
#[derive(Debug, Error)]
pub enum WireError {
    #[error("frame of {len} bytes is over the {max}-byte limit")]
    Oversize { len: usize, max: usize },
    #[error("empty frame")]
    Empty,
    #[error("unknown message tag {0:#04x}")]
    UnknownTag(u8),
    #[error("{what} count {count} is out of range 0..={max}")]
    Count {
        what: &'static str,
        count: usize,
        max: usize,
    },
    #[error("frame ends early: {0}")]
    Truncated(&'static str),
    #[error("{0} trailing bytes after the message")]
    TrailingBytes(usize),
    #[error("header {index}: {error}")]
    Header {
        index: usize,
        error: primitives::DecodeError,
    },
    #[error("block {index}: {error}")]
    Block {
        index: usize,
        error: primitives::BlockDecodeError,
    },
}

impl From<WireError> for io::Error {
    fn from(error: WireError) -> io::Error {
        io::Error::new(io::ErrorKind::InvalidData, error)
    }
}

impl WireError {
    /// The wire error inside an I/O error from the codec, if that is what it is.
    pub fn from_io(error: &io::Error) -> Option<&WireError> {
        error
            .get_ref()
            .and_then(|inner| inner.downcast_ref::<WireError>())
    }
}

struct Cursor<'a> {
    bytes: &'a [u8],
}

impl<'a> Cursor<'a> {
    fn take(&mut self, n: usize, what: &'static str) -> Result<&'a [u8], WireError> {
        if self.bytes.len() < n {
            return Err(WireError::Truncated(what));
        }
        let (head, tail) = self.bytes.split_at(n);
        self.bytes = tail;
        Ok(head)
    }

    fn u16(&mut self, what: &'static str) -> Result<u16, WireError> {
        let b = self.take(2, what)?;
        Ok(u16::from_le_bytes([b[0], b[1]]))
    }

    fn u32(&mut self, what: &'static str) -> Result<u32, WireError> {
        let b = self.take(4, what)?;
        Ok(u32::from_le_bytes([b[0], b[1], b[2], b[3]]))
    }

    fn count(&mut self, what: &'static str, min: usize, max: usize) -> Result<usize, WireError> {
        let count = usize::from(self.u16(what)?);
        if count < min || count > max {
            return Err(WireError::Count { what, count, max });
        }
        Ok(count)
    }

    fn hashes(&mut self, count: usize) -> Result<Vec<BlockHash>, WireError> {
        (0..count)
            .map(|_| {
                let b = self.take(32, "block hash")?;
                let mut array = [0u8; 32];
                array.copy_from_slice(b);
                Ok(BlockHash::from_byte_array(array))
            })
            .collect()
    }

    fn finish(self) -> Result<(), WireError> {
        match self.bytes.len() {
            0 => Ok(()),
            n => Err(WireError::TrailingBytes(n)),
        }
    }
}

fn push_hashes(out: &mut Vec<u8>, tag: u8, hashes: &[BlockHash]) {
    out.push(tag);
    out.extend_from_slice(&(hashes.len() as u16).to_le_bytes());
    for hash in hashes {
        out.extend_from_slice(hash.as_byte_array());
    }
}

impl SyncRequest {
    pub fn encode(&self) -> Vec<u8> {
        let mut out = Vec::with_capacity(REQUEST_BYTES_MAX);
        match self {
            SyncRequest::GetHeaders { locator } => push_hashes(&mut out, TAG_GET_HEADERS, locator),
            SyncRequest::GetBlocks { hashes } => push_hashes(&mut out, TAG_GET_BLOCKS, hashes),
        }
        out
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncRequest, WireError> {
        let (&tag, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        let mut cursor = Cursor { bytes: rest };
        let request = match tag {
            TAG_GET_HEADERS => {
                let count = cursor.count("locator", 1, LOCATOR_HASHES_MAX)?;
                SyncRequest::GetHeaders {
                    locator: cursor.hashes(count)?,
                }
            }
            TAG_GET_BLOCKS => {
                let count = cursor.count("block hash", 1, BLOCKS_BATCH_MAX)?;
                SyncRequest::GetBlocks {
                    hashes: cursor.hashes(count)?,
                }
            }
            other => return Err(WireError::UnknownTag(other)),
        };
        cursor.finish()?;
        Ok(request)
    }
}

impl SyncResponse {
    pub fn encode(&self) -> Vec<u8> {
        match self {
            SyncResponse::Headers(headers) => {
                let mut out =
                    Vec::with_capacity(PAYLOAD_PREFIX_BYTES + headers.len() * HEADER_BYTES);
                out.push(TAG_HEADERS);
                out.extend_from_slice(&(headers.len() as u16).to_le_bytes());
                for header in headers {
                    out.extend_from_slice(&header.encode());
                }
                out
            }
            SyncResponse::Blocks(blocks) => {
                let mut out = vec![TAG_BLOCKS];
                out.extend_from_slice(&(blocks.len() as u16).to_le_bytes());
                for block in blocks {
                    let bytes = block.encode();
                    out.extend_from_slice(&(bytes.len() as u32).to_le_bytes());
                    out.extend_from_slice(&bytes);
                }
                out
            }
        }
    }

    pub fn decode(bytes: &[u8]) -> Result<SyncResponse, WireError> {
        let (&tag, rest) = bytes.split_first().ok_or(WireError::Empty)?;
        let mut cursor = Cursor { bytes: rest };
        let response = match tag {
            TAG_HEADERS => {
                let count = cursor.count("header", 0, HEADERS_BATCH_MAX)?;
                let headers = (0..count)
                    .map(|index| {
                        let raw = cursor.take(HEADER_BYTES, "header")?;
                        BlockHeader::decode(raw).map_err(|error| WireError::Header { index, error })
                    })
                    .collect::<Result<_, _>>()?;
                SyncResponse::Headers(headers)
            }
            TAG_BLOCKS => {
                let count = cursor.count("block", 0, BLOCKS_BATCH_MAX)?;
                let blocks = (0..count)
                    .map(|index| {
                        let len = cursor.u32("block length")? as usize;
                        let raw = cursor.take(len, "block")?;
                        Block::decode(raw).map_err(|error| WireError::Block { index, error })
                    })
                    .collect::<Result<_, _>>()?;
                SyncResponse::Blocks(blocks)
            }
            other => return Err(WireError::UnknownTag(other)),
        };
        cursor.finish()?;
        Ok(response)
    }
}

/// Reads one length-prefixed frame of at most `max` payload bytes. The outer error is the
/// stream failing; the inner one a frame over the limit (its payload is not read).
pub async fn read_frame<T: AsyncRead + Unpin>(
    io: &mut T,
    max: usize,
) -> io::Result<Result<Vec<u8>, WireError>> {
    let mut len = [0u8; 4];
    io.read_exact(&mut len).await?;
    let len = u32::from_le_bytes(len) as usize;
    if len > max {
        return Ok(Err(WireError::Oversize { len, max }));
    }
    let mut payload = vec![0u8; len];
    io.read_exact(&mut payload).await?;
    Ok(Ok(payload))
}

/// A request as read from a peer: a refused frame is still delivered, as `Err`, so the node
/// can score the sender (libp2p's request-response drops failed request reads silently).
pub type InboundRequest = Result<SyncRequest, WireError>;

/// Writes one length-prefixed frame and closes the stream for writing.
pub async fn write_frame<T: AsyncWrite + Unpin>(io: &mut T, payload: &[u8]) -> io::Result<()> {
    let len = u32::try_from(payload.len())
        .map_err(|_| io::Error::new(io::ErrorKind::InvalidInput, "frame over 4 GiB"))?;
    io.write_all(&len.to_le_bytes()).await?;
    io.write_all(payload).await?;
    io.close().await
}

/// The request-response codec of [`SYNC_PROTOCOL`].
#[derive(Debug, Clone, Default)]
pub struct SyncCodec;

impl libp2p::request_response::Codec for SyncCodec {
    type Protocol = libp2p::StreamProtocol;
    type Request = InboundRequest;
    type Response = SyncResponse;

    async fn read_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
    ) -> io::Result<InboundRequest>
    where
        T: AsyncRead + Unpin + Send,
    {
        Ok(read_frame(io, REQUEST_BYTES_MAX)
            .await?
            .and_then(|frame| SyncRequest::decode(&frame)))
    }

    async fn read_response<T>(&mut self, _: &Self::Protocol, io: &mut T) -> io::Result<SyncResponse>
    where
        T: AsyncRead + Unpin + Send,
    {
        let frame = read_frame(io, RESPONSE_BYTES_MAX).await??;
        Ok(SyncResponse::decode(&frame)?)
    }

    async fn write_request<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        request: InboundRequest,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        let request = request.map_err(|_| {
            io::Error::new(
                io::ErrorKind::InvalidInput,
                "a refused request is never sent",
            )
        })?;
        write_frame(io, &request.encode()).await
    }

    async fn write_response<T>(
        &mut self,
        _: &Self::Protocol,
        io: &mut T,
        response: SyncResponse,
    ) -> io::Result<()>
    where
        T: AsyncWrite + Unpin + Send,
    {
        write_frame(io, &response.encode()).await
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn hash(n: u8) -> BlockHash {
        BlockHash::from_byte_array([n; 32])
    }

    #[test]
    fn requests_round_trip_byte_for_byte() {
        let request = SyncRequest::GetHeaders {
            locator: vec![hash(1), hash(2)],
        };
        let bytes = request.encode();
        assert_eq!(&bytes[..3], &[0x01, 2, 0]);
        assert_eq!(bytes.len(), 3 + 64);
        assert_eq!(SyncRequest::decode(&bytes).unwrap(), request);
        let blocks = SyncRequest::GetBlocks {
            hashes: vec![hash(3)],
        };
        assert_eq!(SyncRequest::decode(&blocks.encode()).unwrap(), blocks);
    }

    #[test]
    fn malformed_requests_are_refused() {
        assert!(matches!(SyncRequest::decode(&[]), Err(WireError::Empty)));
        assert!(matches!(
            SyncRequest::decode(&[0x07, 0, 0]),
            Err(WireError::UnknownTag(0x07))
        ));
        assert!(matches!(
            SyncRequest::decode(&[0x01, 0, 0]),
            Err(WireError::Count { .. })
        ));
        let too_many = SyncRequest::GetBlocks {
            hashes: vec![hash(1); BLOCKS_BATCH_MAX + 1],
        };
        assert!(matches!(
            SyncRequest::decode(&too_many.encode()),
            Err(WireError::Count { .. })
        ));
        let mut trailing = SyncRequest::GetBlocks {
            hashes: vec![hash(1)],
        }
        .encode();
        trailing.push(0);
        assert!(matches!(
            SyncRequest::decode(&trailing),
            Err(WireError::TrailingBytes(1))
        ));
        assert!(matches!(
            SyncRequest::decode(&[0x02, 1, 0, 9]),
            Err(WireError::Truncated(_))
        ));
    }

    #[test]
    fn responses_round_trip() {
        let chain = testkit::TestChain::new();
        let blocks = chain.empty_chain(2, &testkit::key(1));
        let headers = SyncResponse::Headers(blocks.iter().map(|b| b.header.clone()).collect());
        assert_eq!(SyncResponse::decode(&headers.encode()).unwrap(), headers);
        let bodies = SyncResponse::Blocks(blocks);
        assert_eq!(SyncResponse::decode(&bodies.encode()).unwrap(), bodies);
        assert!(matches!(
            SyncResponse::decode(&[0x82, 1, 0, 3, 0, 0, 0, 1, 2, 3]),
            Err(WireError::Block { index: 0, .. })
        ));
    }

    #[test]
    fn oversized_frame_is_refused_before_reading_it() {
        let mut bytes = ((REQUEST_BYTES_MAX + 1) as u32).to_le_bytes().to_vec();
        bytes.extend_from_slice(&[0; 8]);
        let mut io = futures::io::Cursor::new(bytes);
        let read = futures::executor::block_on(read_frame(&mut io, REQUEST_BYTES_MAX)).unwrap();
        assert!(matches!(read, Err(WireError::Oversize { .. })));
    }
}
