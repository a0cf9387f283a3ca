//! Certificate signature rules and equivocation evidence.

use bitcoin::hashes::Hash;
use bitcoin::BlockHash;
use consensus::{is_equivocation, verify_certificate_signature, CertificateError};
use testkit::{key, TestChain};

#[test]
fn certificate_from_the_coordinator_verifies_and_forgeries_do_not() {
    let chain = TestChain::new();
    let miner = key(1).public_key(&chain.secp);
    let body = chain.certificate_body(5, BlockHash::all_zeros(), 0, miner);
    let cert = chain.sign_certificate(body.clone());
    assert_eq!(verify_certificate_signature(&cert, &chain.params), Ok(()));

    // A miner raising its own score invalidates the signature.
    let mut inflated = cert.clone();
    inflated.body.score *= 2;
    assert_eq!(
        verify_certificate_signature(&inflated, &chain.params),
        Err(CertificateError::BadSignature)
    );
    // Naming the real coordinator but signing with another key fails too.
    let forged = body.sign(&chain.secp, &key(99));
    assert_eq!(
        verify_certificate_signature(&forged, &chain.params),
        Err(CertificateError::BadSignature)
    );
}

#[test]
fn two_different_certificates_for_one_slot_are_equivocation() {
    let chain = TestChain::new();
    let parent = BlockHash::all_zeros();
    let a = chain.sign_certificate(chain.certificate_body(
        5,
        parent,
        0,
        key(1).public_key(&chain.secp),
    ));
    let b = chain.sign_certificate(chain.certificate_body(
        5,
        parent,
        0,
        key(2).public_key(&chain.secp),
    ));
    let next_attempt = chain.sign_certificate(chain.certificate_body(
        5,
        parent,
        1,
        key(2).public_key(&chain.secp),
    ));

    let evidence = is_equivocation(&a, &b, &chain.params).expect("conflicting certificates");
    assert_eq!((evidence.height, evidence.attempt), (5, 0));
    assert!(is_equivocation(&a, &a.clone(), &chain.params).is_none());
    assert!(is_equivocation(&a, &next_attempt, &chain.params).is_none());
    // The next cycle's reissue for the same height and attempt, after every winner of this one
    // stayed silent, is what an honest coordinator does.
    let mut next_cycle = chain.certificate_body(5, parent, 0, key(2).public_key(&chain.secp));
    next_cycle.cycle += 1;
    let next_cycle = chain.sign_certificate(next_cycle);
    assert!(is_equivocation(&a, &next_cycle, &chain.params).is_none());

    // A pair in which one is not validly signed proves nothing about the coordinator.
    let mut unsigned_b = b.clone();
    unsigned_b.body.score += 1;
    assert!(is_equivocation(&a, &unsigned_b, &chain.params).is_none());
}
