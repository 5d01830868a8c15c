//! Short-lived signed report links. A browser navigation cannot send `Authorization: Bearer`,
//! so the dashboard asks the admin API (with its key, viewer role) for a link to one stage
//! report, `/reports/{slug}/{index}?exp=…&sig=…`, and opens that URL: `sig` is an HMAC-SHA256
//! over the deployment, the stage index and the expiry, so the link opens that one report, for
//! [`LINK_TTL`], and nothing else. The key is `admin.link_secret` (shared by every replica behind
//! one URL) or a random one made at start (links then die with the process).
//!
//! Never: puts a key in a URL or accepts a link for another report. Fails closed: a bad or
//! expired signature is a 401.

use std::time::Duration;

use base64::Engine as _;
use rand::Rng;
use sha2::{Digest, Sha256};
use subtle::ConstantTimeEq;

/// How long a report link opens its report.
pub const LINK_TTL: Duration = Duration::from_secs(5 * 60);

/// Signs and checks report links.
pub struct LinkSigner {
    key: Vec<u8>,
}

impl std::fmt::Debug for LinkSigner {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("LinkSigner(<redacted>)")
    }
}

impl LinkSigner {
    /// With `secret` (`admin.link_secret`), or a random 32-byte key.
    pub fn new(secret: Option<&str>) -> Self {
        let key = match secret {
            Some(s) => s.as_bytes().to_vec(),
            None => {
                let mut k = vec![0u8; 32];
                rand::rng().fill_bytes(&mut k);
                k
            }
        };
        Self { key }
    }

    fn mac(&self, slug: &str, index: u32, exp: i64) -> [u8; 32] {
        hmac_sha256(
            &self.key,
            format!("report\n{slug}\n{index}\n{exp}").as_bytes(),
        )
    }

    /// The signature of the link to report `index` of `slug`, valid until `exp` (Unix seconds).
    pub fn sign(&self, slug: &str, index: u32, exp: i64) -> String {
        base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(self.mac(slug, index, exp))
    }

    /// The path and query of a link made now (`now`: Unix seconds) and its expiry.
    pub fn link(&self, slug: &str, index: u32, now: i64) -> (String, i64) {
        let exp = now + i64::try_from(LINK_TTL.as_secs()).unwrap_or(300);
        let sig = self.sign(slug, index, exp);
        let path = format!(
            "/reports/{}/{index}?exp={exp}&sig={sig}",
            crate::rollout::alerts::path_segment(slug)
        );
        (path, exp)
    }

    /// Whether `sig` signs report `index` of `slug` until `exp`, and `exp` is still ahead.
    pub fn verify(&self, slug: &str, index: u32, exp: i64, sig: &str, now: i64) -> bool {
        let Ok(given) = base64::engine::general_purpose::URL_SAFE_NO_PAD.decode(sig) else {
            return false;
        };
        let want = self.mac(slug, index, exp);
        let same: bool = given.as_slice().ct_eq(want.as_slice()).into();
        same && now <= exp
    }
}

/// HMAC-SHA256 (RFC 2104).
fn hmac_sha256(key: &[u8], message: &[u8]) -> [u8; 32] {
    let mut block = [0u8; 64];
    if key.len() > block.len() {
        block[..32].copy_from_slice(Sha256::digest(key).as_slice());
    } else {
        block[..key.len()].copy_from_slice(key);
    }
    let mut inner = Sha256::new();
    inner.update(block.map(|b| b ^ 0x36));
    inner.update(message);
    let mut outer = Sha256::new();
    outer.update(block.map(|b| b ^ 0x5c));
    outer.update(inner.finalize().as_slice());
    let mut out = [0u8; 32];
    out.copy_from_slice(outer.finalize().as_slice());
    out
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hmac_matches_rfc_4231() {
        // Test case 2.
        assert_eq!(
            hex::encode(hmac_sha256(b"Jefe", b"what do ya want for nothing?")),
            "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843"
        );
        // Test case 6: a key longer than the block is hashed first.
        assert_eq!(
            hex::encode(hmac_sha256(
                &[0xaa; 131],
                b"Test Using Larger Than Block-Size Key - Hash Key First"
            )),
            "60e431591ee0b67f0d8a26aacbf5b77f8e0bc6213728c5140546040f0ee37f54"
        );
    }

    #[test]
    fn a_link_opens_its_one_report_until_it_expires() {
        let s = LinkSigner::new(Some("a shared secret of some length"));
        let (path, exp) = s.link("chat bot", 2, 1_000);
        assert_eq!(exp, 1_300);
        assert!(
            path.starts_with("/reports/chat%20bot/2?exp=1300&sig="),
            "{path}"
        );
        let sig = path.split("sig=").nth(1).unwrap();
        assert!(s.verify("chat bot", 2, exp, sig, 1_299));
        assert!(s.verify("chat bot", 2, exp, sig, 1_300));
        assert!(!s.verify("chat bot", 2, exp, sig, 1_301), "expired");
        assert!(!s.verify("chat bot", 1, exp, sig, 1_000), "another stage");
        assert!(!s.verify("other", 2, exp, sig, 1_000), "another deployment");
        assert!(
            !s.verify("chat bot", 2, exp + 600, sig, 1_000),
            "a longer expiry"
        );
        assert!(!s.verify("chat bot", 2, exp, "not base64!", 1_000));
        // Another process's random key does not accept it; the same shared secret does.
        assert!(!LinkSigner::new(None).verify("chat bot", 2, exp, sig, 1_000));
        let again = LinkSigner::new(Some("a shared secret of some length"));
        assert!(again.verify("chat bot", 2, exp, sig, 1_000));
    }
}
