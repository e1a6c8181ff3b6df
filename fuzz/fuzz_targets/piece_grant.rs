//! Piece grants as a parent reads them off a piece request (the
//! `x-darter-grant` header comes from whoever connects to the piece port).
//!
//! Input: the header value as sent, and the same bytes hex-encoded (so the
//! fuzzer reaches the binary layout under the hex).
//!
//! Properties: no panic, and nothing is accepted: no input can carry a
//! signature of a scheduler of the parent's cluster, so every check fails.

#![no_main]

use std::sync::OnceLock;

use darter_common::tls::grant::{Checker, decode};
use darter_common::tls::{Credentials, Identity, Material, Role, certificate};
use libfuzzer_sys::fuzz_target;

/// A parent of cluster 1 under a CA of its own.
fn parent() -> &'static Checker {
    static PARENT: OnceLock<Checker> = OnceLock::new();
    PARENT.get_or_init(|| {
        let ca_key = rcgen::KeyPair::generate().unwrap();
        let mut ca = rcgen::CertificateParams::default();
        ca.is_ca = rcgen::IsCa::Ca(rcgen::BasicConstraints::Unconstrained);
        let ca_cert = ca.self_signed(&ca_key).unwrap();
        let issuer = rcgen::Issuer::new(ca, ca_key);
        let key = rcgen::KeyPair::generate().unwrap();
        let mut leaf = rcgen::CertificateParams::default();
        let uri = Identity::new(Role::Peer, 1, "parent").unwrap().to_uri();
        leaf.subject_alt_names = vec![rcgen::SanType::URI(uri.try_into().unwrap())];
        let cert = leaf.signed_by(&key, &issuer).unwrap();
        let material = Material::new(
            certificate::certs_from_pem(cert.pem().as_bytes()).unwrap(),
            certificate::key_from_pem(key.serialize_pem().as_bytes()).unwrap(),
            certificate::certs_from_pem(ca_cert.pem().as_bytes()).unwrap(),
        )
        .unwrap();
        Checker::new(Credentials::new(material), "parent-host")
    })
}

fuzz_target!(|data: &[u8]| {
    let text = String::from_utf8_lossy(data);
    let wire = format!("01{}", hex::encode(data));
    for value in [text.as_ref(), wire.as_str()] {
        let _ = decode(value);
        let checked = parent().check(Some(value), "task");
        assert!(checked.is_err(), "a grant nobody signed was accepted: {checked:?}");
    }
});
