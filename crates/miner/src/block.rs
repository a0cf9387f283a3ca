//! Assembling the winner's block from a node template and a block-signing certificate. Pure:
//! the template and the time come in, a signed block goes out.

use bitcoin::absolute::LockTime;
use bitcoin::secp256k1::{PublicKey, Secp256k1, SecretKey, Signing};
use bitcoin::transaction::Version;
use bitcoin::{
    Amount, BlockHash, OutPoint, ScriptBuf, Sequence, Transaction, TxIn, TxOut, Witness,
};
use primitives::block::coinbase_script_sig;
use primitives::header::HEADER_VERSION;
use primitives::merkle::block_merkle_root;
use primitives::{Block, BlockHeader, Certificate, CertificateKind};

/// Bytes after the BIP34 height in the miner's coinbase `script_sig`, naming the software.
pub const COINBASE_EXTRA: &[u8] = b"/trainchain-miner/";

/// What the miner needs from a node's `gettemplate` answer.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Template {
    pub height: u32,
    pub prev_hash: BlockHash,
    /// Earliest valid header time (median time past + 1).
    pub min_time: u32,
    /// The node's clock.
    pub cur_time: u32,
    /// Subsidy plus the fees of `transactions`.
    pub coinbase_value: Amount,
    /// Mempool transactions chosen by the node, parents first.
    pub transactions: Vec<Transaction>,
}

#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum AssemblyError {
    #[error("a {0:?} certificate cannot sign a block")]
    NotBlockSigning(CertificateKind),
    #[error("the certificate names miner {named}, this miner is {ours}")]
    NotOurs { named: PublicKey, ours: PublicKey },
    #[error("the certificate is for height {certificate} on {certificate_parent}, the node's template is for height {template} on {template_parent}")]
    TemplateMismatch {
        certificate: u32,
        certificate_parent: BlockHash,
        template: u32,
        template_parent: BlockHash,
    },
    #[error("no header time fits both the chain (at least {min_time}) and the certificate's window [{issued_at}, {expires_at}]")]
    NoValidTime {
        min_time: u32,
        issued_at: u64,
        expires_at: u64,
    },
}

/// The header time: the node's clock, raised to the median time past + 1, then kept inside the
/// certificate's window (consensus refuses a block outside it). A node clock a little behind the
/// coordinator's, or a little ahead near the window's end, still gives a valid block.
fn header_time(template: &Template, certificate: &Certificate) -> Result<u32, AssemblyError> {
    let body = &certificate.body;
    let error = || AssemblyError::NoValidTime {
        min_time: template.min_time,
        issued_at: body.issued_at,
        expires_at: body.expires_at,
    };
    let lowest = u64::from(template.min_time).max(body.issued_at);
    let highest = body.expires_at.min(u64::from(u32::MAX));
    if lowest > highest {
        return Err(error());
    }
    let wanted = u64::from(template.cur_time.max(template.min_time));
    u32::try_from(wanted.clamp(lowest, highest)).map_err(|_| error())
}

/// The coinbase of the winner's block: BIP34 height, then [`COINBASE_EXTRA`]; one output
/// paying `value` to `payout`.
pub fn coinbase(height: u32, value: Amount, payout: ScriptBuf) -> Transaction {
    Transaction {
        version: Version::TWO,
        lock_time: LockTime::ZERO,
        input: vec![TxIn {
            previous_output: OutPoint::null(),
            script_sig: coinbase_script_sig(height, COINBASE_EXTRA),
            sequence: Sequence::MAX,
            witness: Witness::new(),
        }],
        output: vec![TxOut {
            value,
            script_pubkey: payout,
        }],
    }
}

/// The block for `certificate` on `template`, paying the subsidy and fees to `payout`, signed
/// by `key` (which must be the certificate's miner).
pub fn assemble<C: Signing>(
    secp: &Secp256k1<C>,
    template: &Template,
    certificate: &Certificate,
    payout: ScriptBuf,
    key: &SecretKey,
) -> Result<Block, AssemblyError> {
    let body = &certificate.body;
    if body.kind != CertificateKind::BlockSigning {
        return Err(AssemblyError::NotBlockSigning(body.kind));
    }
    let ours = key.public_key(secp);
    if body.miner != ours {
        return Err(AssemblyError::NotOurs {
            named: body.miner,
            ours,
        });
    }
    if body.height != template.height || body.prev_block_hash != template.prev_hash {
        return Err(AssemblyError::TemplateMismatch {
            certificate: body.height,
            certificate_parent: body.prev_block_hash,
            template: template.height,
            template_parent: template.prev_hash,
        });
    }
    let mut txdata = vec![coinbase(template.height, template.coinbase_value, payout)];
    txdata.extend(template.transactions.iter().cloned());
    let header = BlockHeader {
        version: HEADER_VERSION,
        prev_block_hash: template.prev_hash,
        merkle_root: block_merkle_root(&txdata).root,
        time: header_time(template, certificate)?,
        certificate: certificate.clone(),
    };
    Ok(Block::sign(secp, header, txdata, key))
}

#[cfg(test)]
mod tests {
    use super::*;
    use bitcoin::secp256k1::Secp256k1;
    use consensus::{check_block, check_block_context, BlockContext};
    use testkit::{block_time, key, p2wpkh, TestChain};

    fn template(chain: &TestChain) -> Template {
        Template {
            height: 1,
            prev_hash: chain.params.genesis_hash(),
            min_time: block_time(0) + 1,
            cur_time: block_time(1),
            coinbase_value: chain.subsidy(),
            transactions: vec![],
        }
    }

    #[test]
    fn assembled_block_passes_the_consensus_checks() {
        let chain = TestChain::new();
        let secp = Secp256k1::new();
        let miner = key(7);
        let cert = chain.sign_certificate(chain.certificate_body(
            1,
            chain.params.genesis_hash(),
            0,
            miner.public_key(&secp),
        ));
        let block = assemble(
            &secp,
            &template(&chain),
            &cert,
            p2wpkh(&secp, &miner),
            &miner,
        )
        .unwrap();
        let checked = check_block(&block, &chain.params).expect("block is valid");
        let context = BlockContext {
            height: 1,
            parent_hash: chain.params.genesis_hash(),
            median_time_past: block_time(0),
            now_secs: u64::from(block_time(1)),
            certificate_used_by: None,
            coinbase_maturity_blocks: 1,
            parent_next_model_hash: None,
        };
        check_block_context(&checked, &context).expect("block fits its position");
        assert_eq!(block.txdata[0].output[0].value, chain.subsidy());
        assert_eq!(
            block.txdata[0].output[0].script_pubkey,
            p2wpkh(&secp, &miner)
        );
    }

    #[test]
    fn refuses_someone_elses_or_a_stale_certificate() {
        let chain = TestChain::new();
        let secp = Secp256k1::new();
        let (miner, other) = (key(7), key(8));
        let theirs = chain.sign_certificate(chain.certificate_body(
            1,
            chain.params.genesis_hash(),
            0,
            other.public_key(&secp),
        ));
        let error = assemble(
            &secp,
            &template(&chain),
            &theirs,
            p2wpkh(&secp, &miner),
            &miner,
        )
        .unwrap_err();
        assert!(matches!(error, AssemblyError::NotOurs { .. }), "{error}");

        let stale = chain.sign_certificate(chain.certificate_body(
            2,
            BlockHash::from_raw_hash(bitcoin::hashes::Hash::all_zeros()),
            0,
            miner.public_key(&secp),
        ));
        let error = assemble(
            &secp,
            &template(&chain),
            &stale,
            p2wpkh(&secp, &miner),
            &miner,
        )
        .unwrap_err();
        assert!(
            matches!(error, AssemblyError::TemplateMismatch { .. }),
            "{error}"
        );

        let mut contribution =
            chain.certificate_body(1, chain.params.genesis_hash(), 0, miner.public_key(&secp));
        contribution.kind = CertificateKind::Contribution;
        let contribution = chain.sign_certificate(contribution);
        let error = assemble(
            &secp,
            &template(&chain),
            &contribution,
            p2wpkh(&secp, &miner),
            &miner,
        )
        .unwrap_err();
        assert_eq!(
            error,
            AssemblyError::NotBlockSigning(CertificateKind::Contribution)
        );
    }
}
