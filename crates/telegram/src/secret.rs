//! The webhook secret: the value Telegram sends in `X-Telegram-Bot-Api-Secret-Token`,
//! configured (`BOT_WEBHOOK_SECRET`) or derived from the bot token, compared in constant
//! time.

use hmac::{Hmac, Mac};
use secrecy::{ExposeSecret, SecretString};
use sha2::Sha256;
use subtle::ConstantTimeEq;

/// The header Telegram sends the secret in.
pub const SECRET_HEADER: &str = "X-Telegram-Bot-Api-Secret-Token";
/// Longest secret Telegram accepts.
pub const MAX_SECRET_LEN: usize = 256;
/// The message the derived secret is the HMAC of.
const DERIVATION_LABEL: &[u8] = b"telcall webhook secret";

/// A secret Telegram would refuse: it must be 1–256 characters of `A-Za-z0-9_-`.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("must be 1 to 256 characters of A-Z, a-z, 0-9, _ and -")]
pub struct InvalidSecret;

/// The expected webhook secret.
#[derive(Clone)]
pub struct WebhookSecret {
    value: SecretString,
    derived: bool,
}

impl std::fmt::Debug for WebhookSecret {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.debug_struct("WebhookSecret")
            .field("derived", &self.derived)
            .finish_non_exhaustive()
    }
}

/// Whether `s` is a secret Telegram accepts.
pub fn is_valid_secret(s: &str) -> bool {
    (1..=MAX_SECRET_LEN).contains(&s.len())
        && s.bytes()
            .all(|b| b.is_ascii_alphanumeric() || b == b'_' || b == b'-')
}

impl WebhookSecret {
    /// A configured secret, checked against Telegram's rule.
    pub fn new(value: &str) -> Result<Self, InvalidSecret> {
        if !is_valid_secret(value) {
            return Err(InvalidSecret);
        }
        Ok(Self {
            value: SecretString::from(value.to_owned()),
            derived: false,
        })
    }

    /// The secret derived from the bot token: lowercase hex of
    /// `HMAC-SHA256(key = BOT_TOKEN, message = "telcall webhook secret")` (64 characters,
    /// within Telegram's rule). Whoever knows the token can compute it; nobody else can.
    pub fn derive(bot_token: &SecretString) -> Self {
        let value = match Hmac::<Sha256>::new_from_slice(bot_token.expose_secret().as_bytes()) {
            Ok(mut mac) => {
                mac.update(DERIVATION_LABEL);
                hex::encode(mac.finalize().into_bytes())
            }
            // HMAC takes keys of any length; this arm is unreachable in practice.
            Err(_) => hex::encode(DERIVATION_LABEL),
        };
        Self {
            value: SecretString::from(value),
            derived: true,
        }
    }

    /// `BOT_WEBHOOK_SECRET` when configured, else the secret derived from the token.
    pub fn configured_or_derived(
        configured: Option<&str>,
        bot_token: &SecretString,
    ) -> Result<Self, InvalidSecret> {
        match configured {
            Some(v) => Self::new(v),
            None => Ok(Self::derive(bot_token)),
        }
    }

    /// Whether this secret was derived from the token (no `BOT_WEBHOOK_SECRET`).
    pub fn is_derived(&self) -> bool {
        self.derived
    }

    /// The value, for `setWebhook`.
    pub fn expose(&self) -> &SecretString {
        &self.value
    }

    /// Whether the header value `presented` is exactly the secret (constant time in the
    /// content; a missing header is `None`).
    pub fn verify(&self, presented: Option<&[u8]>) -> bool {
        let expected = self.value.expose_secret().as_bytes();
        match presented {
            // `ct_eq` on slices of different lengths is false without looking at content;
            // the length of the secret is not what it protects.
            Some(p) => bool::from(p.ct_eq(expected)),
            None => false,
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn derived_secret_satisfies_telegram_and_depends_on_the_token() {
        let a = WebhookSecret::derive(&SecretString::from("123:abc"));
        let b = WebhookSecret::derive(&SecretString::from("123:abd"));
        assert!(is_valid_secret(a.expose().expose_secret()));
        assert_eq!(a.expose().expose_secret().len(), 64);
        assert_ne!(a.expose().expose_secret(), b.expose().expose_secret());
        assert!(a.is_derived());
        assert!(!a.expose().expose_secret().contains("abc"));
    }

    #[test]
    fn configured_secrets_follow_telegrams_rule() {
        assert!(WebhookSecret::new("abc-DEF_123").is_ok());
        assert!(WebhookSecret::new(&"a".repeat(256)).is_ok());
        for bad in ["", "has space", "semi;colon", "ünï", &"a".repeat(257)] {
            assert_eq!(
                WebhookSecret::new(bad).unwrap_err(),
                InvalidSecret,
                "{bad:?}"
            );
        }
    }

    #[test]
    fn verify_needs_the_exact_value() {
        let s = WebhookSecret::new("s3cret").unwrap();
        assert!(s.verify(Some(b"s3cret")));
        assert!(!s.verify(Some(b"s3cre")));
        assert!(!s.verify(Some(b"s3cret ")));
        assert!(!s.verify(Some(b"S3cret")));
        assert!(!s.verify(Some(b"")));
        assert!(!s.verify(None));
        assert!(!format!("{s:?}").contains("s3cret"));
    }
}
