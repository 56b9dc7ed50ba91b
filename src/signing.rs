//! Signed URLs (`security.signing_keys`): what is signed, how, and which requests need it.
//!
//! A signature is HMAC-SHA256, base64url without padding, over a canonical message: the
//! kind of address, its canonical target (the normalised upstream URL that is the index
//! key, or the permalink's hash) and the canonical options ([`Spec::canonical`], so
//! `w=240&dpr=2` and `dpr=2&w=480`… share one signature, as they share one variant). The
//! base a URL is served under is not signed, so `rewrite --from-base` keeps signatures
//! valid. URLs are signed with the first key and verified against every key, so a key is
//! rotated by putting the new one first and dropping the old one once posts are rewritten.
//! Tags are compared in constant time.
//!
//! With keys set ([`Signer::check`]): the `url=` form always needs `sig=`, a permalink
//! needs it when it carries options, a bare `/m/<sha256>` never does (it only serves what
//! is mirrored, as is), and the worker form `/?<URL>` (which has nowhere to put a `sig=`)
//! is served only for hosts on `upstream.allow_hosts`.
//!
//! A leaf beside [`crate::url_grammar`]: strings and [`Address`]es in, signatures out; it
//! reads option meaning from [`crate::transform`]'s [`Spec`], and never touches the store
//! or the network. Key material lives in [`SigningKey`], whose `Debug` never shows it.

use std::sync::Arc;

use base64::Engine as _;
use hmac::{Hmac, KeyInit, Mac};
use serde::Deserialize;
use sha2::Sha256;
use subtle::ConstantTimeEq;

use crate::config::ConfigError;
use crate::transform::{self, Spec, SpecError};
use crate::upstream::guard::host_matches;
use crate::url_grammar::{self, Address};

/// Shortest key accepted, in bytes: a guessable key makes every signature forgeable.
pub const MIN_KEY_BYTES: usize = 16;

/// Bumped if the message ever changes, so old signatures fail rather than mean something else.
const DOMAIN: &str = "imgmirror-sig-v1";

/// `[security]` of the config.
#[derive(Debug, Clone, Default, Deserialize)]
#[serde(default, deny_unknown_fields)]
pub struct SecurityConfig {
    /// HMAC keys for signed URLs; empty = signing off. A list in the file; in
    /// `IMGMIRROR_SECURITY_SIGNING_KEYS`, comma-separated. Sign with the first, verify
    /// against any. Each at least [`MIN_KEY_BYTES`] bytes. Default [].
    #[serde(deserialize_with = "keys_from_list_or_commas")]
    pub signing_keys: Vec<SigningKey>,
}

impl SecurityConfig {
    /// Refuses a key that is too short, naming it by position (never by value).
    pub fn validate(&self) -> Result<(), ConfigError> {
        match self
            .signing_keys
            .iter()
            .position(|k| k.0.len() < MIN_KEY_BYTES)
        {
            Some(i) => Err(ConfigError::Invalid {
                key: "security.signing_keys",
                message: format!(
                    "key #{} is shorter than {MIN_KEY_BYTES} bytes (make one with \
                     `openssl rand -base64 32`)",
                    i + 1
                ),
            }),
            None => Ok(()),
        }
    }
}

/// One HMAC key (its UTF-8 bytes, surrounding whitespace trimmed).
#[derive(Clone, PartialEq, Eq)]
pub struct SigningKey(String);

impl SigningKey {
    pub fn new(key: impl Into<String>) -> SigningKey {
        SigningKey(key.into().trim().to_owned())
    }

    fn mac(&self) -> Hmac<Sha256> {
        // HMAC takes a key of any length: this cannot fail.
        Hmac::<Sha256>::new_from_slice(self.0.as_bytes()).expect("HMAC accepts any key length")
    }
}

impl std::fmt::Debug for SigningKey {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        f.write_str("SigningKey(<redacted>)")
    }
}

fn keys_from_list_or_commas<'de, D: serde::Deserializer<'de>>(
    d: D,
) -> Result<Vec<SigningKey>, D::Error> {
    #[derive(Deserialize)]
    #[serde(untagged)]
    enum Keys {
        List(Vec<String>),
        Commas(String),
    }
    let keys = match Keys::deserialize(d)? {
        Keys::List(list) => list,
        Keys::Commas(text) => text.split(',').map(str::to_owned).collect(),
    };
    Ok(keys
        .into_iter()
        .filter(|k| !k.trim().is_empty())
        .map(SigningKey::new)
        .collect())
}

/// Why a request's signature is not good enough.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
pub enum SignatureError {
    #[error("this URL must be signed: add the sig= that `imgmirror sign` writes")]
    Missing,
    #[error("the URL's sig= does not match it (tampered, or signed with an unknown key)")]
    Bad,
    #[error(
        "with signed URLs on, the /?<URL> form is served only for hosts on upstream.allow_hosts \
         ({0} is not); use a signed /?url=… URL"
    )]
    WorkerForm(String),
    /// The options cannot be canonicalised (a bad option): the client's error, as always.
    #[error(transparent)]
    Options(#[from] SpecError),
}

/// Signs and verifies URLs with the configured keys.
#[derive(Clone)]
pub struct Signer {
    keys: Arc<[SigningKey]>,
    settings: transform::Settings,
}

/// Two signers are the same when they hold the same keys in the same order.
impl PartialEq for Signer {
    fn eq(&self, other: &Signer) -> bool {
        self.keys == other.keys
    }
}

impl Eq for Signer {}

impl std::fmt::Debug for Signer {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        write!(f, "Signer({} keys)", self.keys.len())
    }
}

impl Signer {
    /// `None` when signing is off (no keys). `settings` validate options as the server does.
    pub fn new(keys: &[SigningKey], settings: &transform::Settings) -> Option<Signer> {
        (!keys.is_empty()).then(|| Signer {
            keys: keys.into(),
            settings: settings.clone(),
        })
    }

    /// The signature of `address` with the first key.
    pub fn sign(&self, address: &Address) -> Result<String, SpecError> {
        let message = message(address, &self.settings)?;
        Ok(encode(&tag(&self.keys[0], &message)))
    }

    /// A URL written by [`url_grammar::proxy_url`] or [`url_grammar::permalink_url`] under
    /// `base`, with its `sig=` appended. It is parsed back first, so what is signed is what
    /// the server will parse; a URL that does not parse (or has a bad option) is returned
    /// as it is, and the server will refuse it as it would anyway.
    pub fn sign_written(&self, written: String, base: &str) -> String {
        let base = base.trim_end_matches('/');
        let Some(path_and_query) = written.strip_prefix(base) else {
            return written;
        };
        let address = match url_grammar::parse_path_and_query(path_and_query) {
            // A bare permalink needs no signature (see [`Signer::check`]).
            Ok(Address::Permalink { options, .. }) if options.is_empty() => return written,
            Ok(address) => address,
            Err(_) => return written,
        };
        match self.sign(&address).ok() {
            Some(sig) => url_grammar::with_signature(written, &sig),
            None => written,
        }
    }

    /// Whether `sig` (base64url) signs `address` under any key, in constant time per key.
    pub fn verify(&self, address: &Address, sig: Option<&str>) -> Result<(), SignatureError> {
        let sig = sig.ok_or(SignatureError::Missing)?;
        let message = message(address, &self.settings)?;
        let given = base64::engine::general_purpose::URL_SAFE_NO_PAD
            .decode(sig.trim_end_matches('='))
            .map_err(|_| SignatureError::Bad)?;
        let mut good = subtle::Choice::from(0);
        for key in self.keys.iter() {
            good |= tag(key, &message).as_slice().ct_eq(&given);
        }
        if bool::from(good) {
            Ok(())
        } else {
            Err(SignatureError::Bad)
        }
    }

    /// The rule for a request to `address`, whose raw query was `query`: see the module
    /// documentation.
    pub fn check(
        &self,
        address: &Address,
        query: &str,
        allow_hosts: &[String],
    ) -> Result<(), SignatureError> {
        match address {
            Address::Proxy { upstream, .. } if url_grammar::is_worker_form(query) => {
                let host = upstream.host_str().unwrap_or_default();
                if allow_hosts.iter().any(|p| host_matches(p, host)) {
                    Ok(())
                } else {
                    Err(SignatureError::WorkerForm(host.to_owned()))
                }
            }
            Address::Permalink { options, .. } if options.is_empty() => Ok(()),
            _ => self.verify(address, url_grammar::signature(query).as_deref()),
        }
    }
}

/// The canonical message for `address`: domain, kind, target and options, one per line.
pub fn message(address: &Address, settings: &transform::Settings) -> Result<String, SpecError> {
    let (kind, target) = match address {
        Address::Proxy { upstream, .. } => ("url", upstream.as_str().to_owned()),
        Address::Permalink { hash, .. } => ("m", hash.to_hex()),
    };
    let options = if address.placeholder_of().is_some() {
        "placeholder".to_owned()
    } else {
        let pairs = address
            .options()
            .iter()
            .map(|(k, v)| (k.as_str(), v.as_str()));
        Spec::from_query(pairs, settings)?.map_or_else(String::new, |spec| spec.canonical())
    };
    Ok(format!("{DOMAIN}\n{kind}\n{target}\n{options}"))
}

fn tag(key: &SigningKey, message: &str) -> [u8; 32] {
    let mut mac = key.mac();
    mac.update(message.as_bytes());
    mac.finalize().into_bytes().into()
}

fn encode(tag: &[u8]) -> String {
    base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(tag)
}

#[cfg(test)]
#[path = "signing_tests.rs"]
mod tests;
