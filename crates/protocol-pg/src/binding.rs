//! `tls-server-end-point` channel binding data (RFC 5929) for
//! SCRAM-SHA-256-PLUS: a hash of the server's certificate, with the hash of
//! its signature algorithm (SHA-256 for MD5 and SHA-1), as PostgreSQL
//! computes it.

use sha2::{Digest, Sha256, Sha384, Sha512};

/// `1.2.840.113549.1.1` (PKCS #1 signature algorithms), without the last arc.
const PKCS1: [u8; 8] = [0x2a, 0x86, 0x48, 0x86, 0xf7, 0x0d, 0x01, 0x01];
/// `1.2.840.10045.4` (ECDSA signature algorithms), without the last arcs.
const ECDSA: [u8; 6] = [0x2a, 0x86, 0x48, 0xce, 0x3d, 0x04];

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
enum Hash {
    Sha256,
    Sha384,
    Sha512,
}

/// One DER element: its tag and contents; advances `der` past it.
fn element<'a>(der: &mut &'a [u8]) -> Option<(u8, &'a [u8])> {
    let (&tag, rest) = der.split_first()?;
    let (&first, mut rest) = rest.split_first()?;
    let len = if first < 0x80 {
        usize::from(first)
    } else {
        let n = usize::from(first & 0x7f);
        if n == 0 || n > 4 {
            return None;
        }
        let (bytes, tail) = rest.split_at_checked(n)?;
        rest = tail;
        bytes
            .iter()
            .fold(0usize, |acc, &b| (acc << 8) | usize::from(b))
    };
    let (contents, tail) = rest.split_at_checked(len)?;
    *der = tail;
    Some((tag, contents))
}

/// The hash RFC 5929 picks for a certificate's signature algorithm, or
/// `None` when there is none (Ed25519, RSASSA-PSS: PostgreSQL offers no
/// channel binding for those either).
fn hash_for(cert: &[u8]) -> Option<Hash> {
    let mut der = cert;
    let (0x30, mut certificate) = element(&mut der)? else {
        return None;
    };
    let (0x30, _tbs) = element(&mut certificate)? else {
        return None;
    };
    let (0x30, mut algorithm) = element(&mut certificate)? else {
        return None;
    };
    let (0x06, oid) = element(&mut algorithm)? else {
        return None;
    };
    if let Some(last) = oid.strip_prefix(&PKCS1[..]) {
        return match last {
            [4 | 5 | 11 | 14] => Some(Hash::Sha256),
            [12] => Some(Hash::Sha384),
            [13] => Some(Hash::Sha512),
            _ => None,
        };
    }
    match oid.strip_prefix(&ECDSA[..])? {
        [1] | [3, 1] | [3, 2] => Some(Hash::Sha256),
        [3, 3] => Some(Hash::Sha384),
        [3, 4] => Some(Hash::Sha512),
        _ => None,
    }
}

/// The `tls-server-end-point` binding data of a DER certificate, or `None`
/// when the certificate does not parse or its algorithm has no hash.
pub(crate) fn server_end_point(cert: &[u8]) -> Option<Vec<u8>> {
    Some(match hash_for(cert)? {
        Hash::Sha256 => Sha256::digest(cert).to_vec(),
        Hash::Sha384 => Sha384::digest(cert).to_vec(),
        Hash::Sha512 => Sha512::digest(cert).to_vec(),
    })
}

#[cfg(test)]
mod tests {
    use super::*;

    /// A certificate's outer structure with the given algorithm OID.
    fn cert_with(oid: &[u8]) -> Vec<u8> {
        let tbs = [0x30, 0x03, 0x02, 0x01, 0x01];
        let mut alg = vec![0x06, oid.len() as u8];
        alg.extend_from_slice(oid);
        let mut alg_seq = vec![0x30, alg.len() as u8];
        alg_seq.extend(alg);
        let mut body = tbs.to_vec();
        body.extend(alg_seq);
        body.extend([0x03, 0x01, 0x00]);
        let mut cert = vec![0x30, 0x81, body.len() as u8];
        cert.extend(body);
        cert
    }

    #[test]
    fn the_hash_follows_the_signature_algorithm() {
        let mut ecdsa384 = ECDSA.to_vec();
        ecdsa384.extend([3, 3]);
        let mut rsa256 = PKCS1.to_vec();
        rsa256.push(11);
        let mut sha1 = PKCS1.to_vec();
        sha1.push(5);
        let mut rsa512 = PKCS1.to_vec();
        rsa512.push(13);
        assert_eq!(hash_for(&cert_with(&ecdsa384)), Some(Hash::Sha384));
        assert_eq!(hash_for(&cert_with(&rsa256)), Some(Hash::Sha256));
        assert_eq!(hash_for(&cert_with(&sha1)), Some(Hash::Sha256));
        assert_eq!(hash_for(&cert_with(&rsa512)), Some(Hash::Sha512));
        // Ed25519 (1.3.101.112): no binding.
        assert_eq!(hash_for(&cert_with(&[0x2b, 0x65, 0x70])), None);
        let c = cert_with(&rsa256);
        assert_eq!(server_end_point(&c).unwrap(), Sha256::digest(&c).to_vec());
    }

    #[test]
    fn truncated_certificates_give_none() {
        let mut rsa256 = PKCS1.to_vec();
        rsa256.push(11);
        let c = cert_with(&rsa256);
        for end in 0..c.len() {
            assert_eq!(server_end_point(&c[..end]), None);
        }
        assert_eq!(
            server_end_point(&[0x30, 0x84, 0xff, 0xff, 0xff, 0xff]),
            None
        );
    }
}
