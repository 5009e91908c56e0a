//! Signed tokens for links in mail (confirm, unsubscribe) and for bounce addresses.
//!
//! A link token is `base64url(version | purpose | subscriber id | issued hour | mac)`, the
//! MAC being HMAC-SHA256 over the rest plus the subscriber's nonce, cut to 128 bits
//! (MAIL-RULES 5). Not guessable, not enumerable (ids are covered by the MAC), and dead
//! once the subscriber's nonce changes (erasure). Comparison is constant time.

use crate::domain::EmailAddress;
use crate::domain::ids::{DeliveryId, SubscriberId};
use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use chrono::{DateTime, Utc};
use hmac::{Hmac, Mac};
use sha2::Sha256;

type HmacSha256 = Hmac<Sha256>;

const VERSION: u8 = 1;
const MAC_LEN: usize = 16;
const TOKEN_LEN: usize = 1 + 1 + 8 + 4 + MAC_LEN;
/// Confirmation links stop working after this many hours (unconfirmed sign-ups are
/// forgotten after about 30 days, MAIL-RULES 6).
pub const CONFIRM_VALID_HOURS: u32 = 30 * 24;

#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Purpose {
    Confirm = 1,
    Unsubscribe = 2,
}

/// Why a token was not accepted. Unknown and forged look the same from outside.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum TokenError {
    #[error("the token is not well-formed")]
    Malformed,
    #[error("the token is not valid")]
    Invalid,
    #[error("the token has expired")]
    Expired,
}

/// What a valid token says.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Claims {
    pub subscriber_id: SubscriberId,
    pub issued: DateTime<Utc>,
}

/// Signs and checks tokens with the configured secret.
#[derive(Clone)]
pub struct Signer {
    key: Vec<u8>,
}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("Signer(..)")
    }
}

fn hours(t: DateTime<Utc>) -> u32 {
    u32::try_from(t.timestamp().max(0) / 3600).unwrap_or(u32::MAX)
}

impl Signer {
    pub fn new(secret: &[u8]) -> Self {
        Self { key: secret.to_vec() }
    }

    fn mac(&self, parts: &[&[u8]]) -> HmacSha256 {
        let mut m = HmacSha256::new_from_slice(&self.key).expect("HMAC takes any key length");
        for p in parts {
            m.update(&(p.len() as u32).to_be_bytes());
            m.update(p);
        }
        m
    }

    /// A link token for `subscriber_id` whose current nonce is `nonce`.
    pub fn token(&self, purpose: Purpose, subscriber_id: SubscriberId, nonce: &str, now: DateTime<Utc>) -> String {
        let mut body = Vec::with_capacity(TOKEN_LEN);
        body.push(VERSION);
        body.push(purpose as u8);
        body.extend_from_slice(&subscriber_id.get().to_be_bytes());
        body.extend_from_slice(&hours(now).to_be_bytes());
        let tag = self.mac(&[b"link", &body, nonce.as_bytes()]).finalize().into_bytes();
        body.extend_from_slice(&tag[..MAC_LEN]);
        URL_SAFE_NO_PAD.encode(body)
    }

    /// The subscriber id a token claims, before the MAC is checked (to look up the nonce).
    pub fn claimed_id(token: &str, purpose: Purpose) -> Result<SubscriberId, TokenError> {
        let raw = decode(token)?;
        if raw[0] != VERSION || raw[1] != purpose as u8 {
            return Err(TokenError::Malformed);
        }
        Ok(SubscriberId(i64::from_be_bytes(raw[2..10].try_into().expect("8 bytes"))))
    }

    /// Checks a token against the subscriber's nonce (`None`: no such subscriber, checked
    /// against a dummy so the answer and its timing are the same).
    pub fn verify(
        &self,
        token: &str,
        purpose: Purpose,
        nonce: Option<&str>,
        valid_hours: Option<u32>,
        now: DateTime<Utc>,
    ) -> Result<Claims, TokenError> {
        let raw = decode(token)?;
        if raw[0] != VERSION || raw[1] != purpose as u8 {
            return Err(TokenError::Malformed);
        }
        let (body, tag) = raw.split_at(TOKEN_LEN - MAC_LEN);
        let ok = self.mac(&[b"link", body, nonce.unwrap_or("\0no subscriber").as_bytes()]).verify_truncated_left(tag);
        if ok.is_err() || nonce.is_none() {
            return Err(TokenError::Invalid);
        }
        let issued_h = u32::from_be_bytes(body[10..14].try_into().expect("4 bytes"));
        if let Some(valid) = valid_hours
            && hours(now).saturating_sub(issued_h) > valid
        {
            return Err(TokenError::Expired);
        }
        Ok(Claims {
            subscriber_id: SubscriberId(i64::from_be_bytes(body[2..10].try_into().expect("8 bytes"))),
            issued: DateTime::from_timestamp(i64::from(issued_h) * 3600, 0).unwrap_or_default(),
        })
    }

    /// The keyed hash kept of an erased address (`hmac-sha256:<hex>`): HMAC-SHA256 with
    /// the secret over the mailbox (lower case, without a `+tag`). Unlike a bare hash it
    /// cannot be tested against a list of addresses without the secret.
    pub fn address_hash(&self, addr: &EmailAddress) -> String {
        let tag = self.mac(&[b"erased address", addr.normalized().as_bytes()]).finalize().into_bytes();
        format!("hmac-sha256:{}", hex::encode(tag))
    }

    /// The plus tag of a delivery's bounce address: `b-<delivery>-<mac>`, lower case so
    /// that it survives MTAs that fold case.
    pub fn bounce_tag(&self, delivery: DeliveryId) -> String {
        let delivery_id = delivery.get();
        let tag = self.mac(&[b"bounce", &delivery_id.to_be_bytes()]).finalize().into_bytes();
        format!("b-{delivery_id}-{}", hex::encode(&tag[..8]))
    }

    /// The delivery a bounce tag names, when its MAC is right.
    pub fn check_bounce_tag(&self, tag: &str) -> Option<DeliveryId> {
        let rest = tag.strip_prefix("b-")?;
        let (id, mac) = rest.split_once('-')?;
        let id: i64 = id.parse().ok()?;
        let mac = hex::decode(mac.get(..16)?).ok()?;
        self.mac(&[b"bounce", &id.to_be_bytes()]).verify_truncated_left(&mac).ok()?;
        Some(DeliveryId(id))
    }
}

fn decode(token: &str) -> Result<Vec<u8>, TokenError> {
    if token.len() > 64 {
        return Err(TokenError::Malformed);
    }
    let raw = URL_SAFE_NO_PAD.decode(token.trim()).map_err(|_| TokenError::Malformed)?;
    if raw.len() != TOKEN_LEN {
        return Err(TokenError::Malformed);
    }
    Ok(raw)
}

/// A fresh random nonce for a subscriber.
pub fn new_nonce() -> String {
    let mut b = [0u8; 16];
    rand::Rng::fill(&mut rand::rng(), &mut b);
    hex::encode(b)
}

#[cfg(test)]
mod tests {
    use super::*;

    fn now() -> DateTime<Utc> {
        DateTime::from_timestamp(1_800_000_000, 0).unwrap()
    }

    #[test]
    fn a_token_verifies_only_with_its_secret_nonce_and_purpose() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.token(Purpose::Unsubscribe, SubscriberId(42), "n1", now());
        assert!(t.len() >= 40, "{t}");
        let c = s.verify(&t, Purpose::Unsubscribe, Some("n1"), None, now()).unwrap();
        assert_eq!(c.subscriber_id, SubscriberId(42));
        assert_eq!(Signer::claimed_id(&t, Purpose::Unsubscribe), Ok(SubscriberId(42)));
        assert_eq!(s.verify(&t, Purpose::Unsubscribe, Some("n2"), None, now()), Err(TokenError::Invalid));
        assert_eq!(s.verify(&t, Purpose::Unsubscribe, None, None, now()), Err(TokenError::Invalid));
        assert_eq!(s.verify(&t, Purpose::Confirm, Some("n1"), None, now()), Err(TokenError::Malformed));
        let other = Signer::new(b"another secret of thirty-two chars!");
        assert_eq!(other.verify(&t, Purpose::Unsubscribe, Some("n1"), None, now()), Err(TokenError::Invalid));
    }

    #[test]
    fn forged_truncated_and_tampered_tokens_are_refused() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.token(Purpose::Confirm, SubscriberId(7), "n", now());
        let v = |x: &str| s.verify(x, Purpose::Confirm, Some("n"), None, now());
        assert_eq!(v(&t[..t.len() - 1]), Err(TokenError::Malformed));
        assert_eq!(v(""), Err(TokenError::Malformed));
        assert_eq!(v("../../etc/passwd"), Err(TokenError::Malformed));
        assert_eq!(v(&"A".repeat(500)), Err(TokenError::Malformed));
        // Another subscriber id with the old MAC.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[9] ^= 1;
        assert_eq!(v(&URL_SAFE_NO_PAD.encode(&raw)), Err(TokenError::Invalid));
        // A flipped MAC bit.
        let mut raw = URL_SAFE_NO_PAD.decode(&t).unwrap();
        raw[TOKEN_LEN - 1] ^= 0x80;
        assert_eq!(v(&URL_SAFE_NO_PAD.encode(&raw)), Err(TokenError::Invalid));
    }

    #[test]
    fn confirm_tokens_expire() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let t = s.token(Purpose::Confirm, SubscriberId(7), "n", now());
        let later = now() + chrono::Duration::hours(i64::from(CONFIRM_VALID_HOURS) + 2);
        assert_eq!(
            s.verify(&t, Purpose::Confirm, Some("n"), Some(CONFIRM_VALID_HOURS), later),
            Err(TokenError::Expired)
        );
        assert!(s.verify(&t, Purpose::Confirm, Some("n"), Some(CONFIRM_VALID_HOURS), now()).is_ok());
    }

    #[test]
    fn address_hashes_are_keyed_and_name_the_mailbox() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let a = |x: &str| EmailAddress::parse(x).unwrap();
        let h = s.address_hash(&a("Ann.Smit@Example.nl"));
        assert!(h.starts_with("hmac-sha256:") && h.len() == 12 + 64, "{h}");
        assert_eq!(h, s.address_hash(&a("ann.smit+nieuws@example.nl")), "the same mailbox");
        assert_ne!(h, s.address_hash(&a("ann.smits@example.nl")));
        let other = Signer::new(b"another secret of thirty-two chars!");
        assert_ne!(h, other.address_hash(&a("ann.smit@example.nl")), "keyed: another secret, another hash");
        use sha2::Digest;
        let bare = hex::encode(Sha256::digest(b"ann.smit@example.nl"));
        assert!(!h.contains(&bare), "not the bare SHA-256 of the address");
    }

    #[test]
    fn bounce_tags_round_trip_and_resist_forgery() {
        let s = Signer::new(b"0123456789abcdef0123456789abcdef");
        let tag = s.bounce_tag(DeliveryId(1234));
        assert!(tag.starts_with("b-1234-") && tag == tag.to_lowercase(), "{tag}");
        assert_eq!(s.check_bounce_tag(&tag), Some(DeliveryId(1234)));
        assert_eq!(s.check_bounce_tag(&tag.replace("1234", "1235")), None);
        assert_eq!(s.check_bounce_tag("b-1-zz"), None);
    }
}
