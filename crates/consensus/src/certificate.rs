//! Certificate rules that need no chain context: right chain, listed coordinator, valid signature.
//! Binding to a height and parent is checked with the block (see [`crate::block`]).

use crate::SECP;
use bitcoin::secp256k1::{Message, PublicKey};
use primitives::{Certificate, CertificateKind, ChainParams};
use thiserror::Error;

#[derive(Debug, Clone, PartialEq, Eq, Error)]
pub enum CertificateError {
    #[error("certificate is for chain {found}, this chain is {expected}")]
    WrongChain { expected: u32, found: u32 },
    #[error("certificate signer {0} is not a coordinator key of this chain")]
    UnknownCoordinator(PublicKey),
    #[error("certificate signature does not verify under its coordinator key")]
    BadSignature,
    #[error("a {0:?} certificate cannot sign a block")]
    NotBlockSigning(CertificateKind),
}

/// Checks chain id, that the signer is a coordinator of this chain, and the ECDSA signature.
pub fn verify_certificate_signature(
    cert: &Certificate,
    params: &ChainParams,
) -> Result<(), CertificateError> {
    let body = &cert.body;
    if body.chain_id != params.chain_id {
        return Err(CertificateError::WrongChain {
            expected: params.chain_id,
            found: body.chain_id,
        });
    }
    if !params.coordinator_keys.contains(&body.coordinator) {
        return Err(CertificateError::UnknownCoordinator(body.coordinator));
    }
    let msg = Message::from_digest(body.signing_hash().0);
    SECP.verify_ecdsa(&msg, &cert.signature, &body.coordinator)
        .map_err(|_| CertificateError::BadSignature)
}

/// [`verify_certificate_signature`] plus: the certificate is of the block-signing kind.
pub fn verify_block_certificate(
    cert: &Certificate,
    params: &ChainParams,
) -> Result<(), CertificateError> {
    if cert.body.kind != CertificateKind::BlockSigning {
        return Err(CertificateError::NotBlockSigning(cert.body.kind));
    }
    verify_certificate_signature(cert, params)
}
