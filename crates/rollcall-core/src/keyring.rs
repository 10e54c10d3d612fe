//! Shared secrets for HMAC-SHA256, with key ids so keys can be rotated online.
//!
//! A [`KeyRing`] holds up to [`MAX_KEYS`] keys: every one of them is accepted when verifying,
//! and exactly one (the last in the key file) is used to sign what we send.
//! Rotation is therefore: append the new key to every ring (monitors first, then senders),
//! then remove the old key everywhere once no sender uses it (see `docs/PROTOCOL.md`, "Keys").
//!
//! The ring stores, per key, an HMAC state that has already absorbed the key, so that signing
//! or verifying a datagram costs one clone, one update and one finalize: verification is on the
//! monitor's hot path.
//! This module draws no randomness: `rollcall keygen` supplies the random bytes and calls
//! [`Key::generate_line`].

use std::fmt;

use hmac::{Hmac, Mac};
use sha2::Sha256;

use crate::wire::{DecodeError, TAG_LEN};

/// Most keys a ring holds. Two are enough for a rotation; the bound keeps verification cheap.
pub const MAX_KEYS: usize = 16;
/// Length of a secret, in bytes.
pub const SECRET_LEN: usize = 32;

type HmacSha256 = Hmac<Sha256>;

/// One shared secret and the id that names it on the wire.
///
/// `Debug` prints the id only: secrets must never reach a log.
#[derive(Clone, PartialEq, Eq)]
pub struct Key {
    pub id: u16,
    pub secret: [u8; SECRET_LEN],
}

/// The keys a node accepts, and the one it signs with.
///
/// `Debug` prints the key ids only.
#[derive(Clone)]
pub struct KeyRing {
    /// In key-file order; at least one and at most [`MAX_KEYS`], ids distinct.
    entries: Vec<Entry>,
    /// Index into `entries` of the key used to sign.
    send: usize,
}

#[derive(Clone)]
struct Entry {
    id: u16,
    /// An HMAC state that has absorbed the key and nothing else; cloned for every message.
    mac: HmacSha256,
}

/// Why a list of keys cannot form a ring. The caller's fault; nothing was built.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyRingError {
    /// No key at all: there would be nothing to sign with.
    #[error("the key ring is empty: at least one key is needed to sign")]
    Empty,
    /// More than [`MAX_KEYS`] keys.
    #[error("the key ring holds more than {MAX_KEYS} keys: remove keys that are no longer used")]
    TooManyKeys,
    /// Two keys with the same id.
    #[error("key id {0} appears twice: every key needs its own id")]
    DuplicateId(u16),
}

/// Why a key file was refused, naming the line (counted from 1). The file's author's fault;
/// nothing was built. Messages never quote the line: it may hold a secret.
#[derive(Clone, Copy, Debug, PartialEq, Eq, thiserror::Error)]
#[non_exhaustive]
pub enum KeyFileError {
    /// A line that is neither blank, a comment, nor `ID:HEX`.
    #[error("line {line}: expected `ID:HEX` (a key id, a colon, 64 hex digits) but found no colon")]
    MissingColon { line: usize },
    /// The part before the colon is not a decimal number in `0..=65535`.
    #[error("line {line}: the key id must be a decimal number from 0 to 65535")]
    BadId { line: usize },
    /// The part after the colon does not have exactly 64 characters.
    #[error("line {line}: the secret must be exactly 64 hex digits (32 bytes), not {len}")]
    BadSecretLength { line: usize, len: usize },
    /// The part after the colon has a character outside `0-9a-fA-F`.
    #[error("line {line}: the secret contains a character that is not a hex digit")]
    BadHex { line: usize },
    /// The id was already used by an earlier line.
    #[error("line {line}: key id {id} was already defined on line {first}")]
    DuplicateId { line: usize, id: u16, first: usize },
    /// The file defines more than [`MAX_KEYS`] keys.
    #[error("line {line}: more than {MAX_KEYS} keys; remove keys that are no longer used")]
    TooManyKeys { line: usize },
    /// The file has no key line at all.
    #[error("the key file contains no key: add a line `ID:HEX` (see `rollcall keygen`)")]
    Empty,
}

impl Key {
    pub const fn new(id: u16, secret: [u8; SECRET_LEN]) -> Self {
        Key { id, secret }
    }

    /// Formats a key-file line `ID:HEX` (lowercase hex, no newline) for this id and secret.
    /// The caller supplies the secret, from a cryptographically secure source.
    pub fn generate_line(id: u16, secret: &[u8; SECRET_LEN]) -> String {
        let mut line = String::with_capacity(6 + 2 * SECRET_LEN);
        line.push_str(&id.to_string());
        line.push(':');
        for byte in secret {
            line.push(hex_digit(byte >> 4));
            line.push(hex_digit(byte & 0x0f));
        }
        line
    }
}

impl fmt::Debug for Key {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("Key").field("id", &self.id).field("secret", &"<redacted>").finish()
    }
}

impl KeyRing {
    /// Builds a ring from keys in order; the last one is the send key.
    pub fn new(keys: &[Key]) -> Result<KeyRing, KeyRingError> {
        if keys.is_empty() {
            return Err(KeyRingError::Empty);
        }
        if keys.len() > MAX_KEYS {
            return Err(KeyRingError::TooManyKeys);
        }
        let mut entries: Vec<Entry> = Vec::with_capacity(keys.len());
        for key in keys {
            if entries.iter().any(|e| e.id == key.id) {
                return Err(KeyRingError::DuplicateId(key.id));
            }
            entries.push(Entry {
                id: key.id,
                mac: HmacSha256::new_from_slice(&key.secret).expect("HMAC accepts keys of any length"),
            });
        }
        let send = entries.len() - 1;
        Ok(KeyRing { entries, send })
    }

    /// Parses a key file: one `ID:HEX` per line, blank lines and `#` comment lines allowed,
    /// the last key is the send key. See `docs/PROTOCOL.md`, "Keys".
    pub fn parse(text: &str) -> Result<KeyRing, KeyFileError> {
        // (id, line) of every key seen so far, to name the first line of a duplicate.
        let mut seen: Vec<(u16, usize)> = Vec::new();
        let mut keys: Vec<Key> = Vec::new();
        for (index, raw) in text.lines().enumerate() {
            let line = index + 1;
            let trimmed = raw.trim();
            if trimmed.is_empty() || trimmed.starts_with('#') {
                continue;
            }
            let key = parse_line(trimmed, line)?;
            if let Some(&(_, first)) = seen.iter().find(|(id, _)| *id == key.id) {
                return Err(KeyFileError::DuplicateId { line, id: key.id, first });
            }
            if keys.len() == MAX_KEYS {
                return Err(KeyFileError::TooManyKeys { line });
            }
            seen.push((key.id, line));
            keys.push(key);
        }
        KeyRing::new(&keys).map_err(|error| match error {
            KeyRingError::Empty => KeyFileError::Empty,
            // Duplicates and the size bound were checked above, with line numbers.
            KeyRingError::TooManyKeys | KeyRingError::DuplicateId(_) => {
                unreachable!("checked while parsing: {error}")
            }
        })
    }

    /// The id of the key [`KeyRing::sign`] uses: the last key of the file.
    pub fn send_key_id(&self) -> u16 {
        self.entries[self.send].id
    }

    /// Whether a key with this id is in the ring.
    pub fn contains(&self, key_id: u16) -> bool {
        self.entry(key_id).is_some()
    }

    /// The ids in the ring, in key-file order.
    pub fn key_ids(&self) -> impl Iterator<Item = u16> + '_ {
        self.entries.iter().map(|e| e.id)
    }

    /// How many keys the ring holds (at least one).
    pub fn len(&self) -> usize {
        self.entries.len()
    }

    /// Always false: a ring holds at least one key. Present for API symmetry with `len`.
    pub fn is_empty(&self) -> bool {
        self.entries.is_empty()
    }

    /// HMAC-SHA256 of `bytes` under the send key.
    pub fn sign(&self, bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.entries[self.send].mac.clone();
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag` against HMAC-SHA256 of `bytes` under key `key_id`, in constant time.
    ///
    /// Returns [`DecodeError::UnknownKey`] if the ring has no such key and
    /// [`DecodeError::BadTag`] if the tag does not match (including a tag of the wrong length).
    pub fn verify(&self, key_id: u16, bytes: &[u8], tag: &[u8]) -> Result<(), DecodeError> {
        let entry = self.entry(key_id).ok_or(DecodeError::UnknownKey)?;
        let mut mac = entry.mac.clone();
        mac.update(bytes);
        mac.verify_slice(tag).map_err(|_| DecodeError::BadTag)
    }

    /// HMAC-SHA256 of `context` then `bytes` under the send key. The peer protocol signs
    /// its full cluster id this way without sending it.
    pub fn sign_with(&self, context: &[u8], bytes: &[u8]) -> [u8; TAG_LEN] {
        let mut mac = self.entries[self.send].mac.clone();
        mac.update(context);
        mac.update(bytes);
        mac.finalize().into_bytes().into()
    }

    /// Checks `tag`, the first `tag.len()` bytes (1 to 32) of HMAC-SHA256 of `context` then
    /// `bytes` under key `key_id`, in constant time. Errors as [`KeyRing::verify`].
    pub fn verify_truncated(
        &self,
        key_id: u16,
        context: &[u8],
        bytes: &[u8],
        tag: &[u8],
    ) -> Result<(), DecodeError> {
        let entry = self.entry(key_id).ok_or(DecodeError::UnknownKey)?;
        let mut mac = entry.mac.clone();
        mac.update(context);
        mac.update(bytes);
        mac.verify_truncated_left(tag).map_err(|_| DecodeError::BadTag)
    }

    fn entry(&self, key_id: u16) -> Option<&Entry> {
        // At most 16 entries: a linear scan beats any map here.
        self.entries.iter().find(|e| e.id == key_id)
    }
}

impl fmt::Debug for KeyRing {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.debug_struct("KeyRing")
            .field("key_ids", &self.key_ids().collect::<Vec<_>>())
            .field("send_key_id", &self.send_key_id())
            .finish()
    }
}

/// Parses one non-blank, non-comment line, already trimmed.
fn parse_line(text: &str, line: usize) -> Result<Key, KeyFileError> {
    let (id_text, hex_text) = text.split_once(':').ok_or(KeyFileError::MissingColon { line })?;
    let (id_text, hex_text) = (id_text.trim(), hex_text.trim());
    // `u16::from_str` accepts a leading `+`; the format says digits only.
    if id_text.is_empty() || !id_text.bytes().all(|b| b.is_ascii_digit()) {
        return Err(KeyFileError::BadId { line });
    }
    let id: u16 = id_text.parse().map_err(|_| KeyFileError::BadId { line })?;
    let len = hex_text.chars().count();
    if len != 2 * SECRET_LEN {
        return Err(KeyFileError::BadSecretLength { line, len });
    }
    let mut secret = [0u8; SECRET_LEN];
    // 64 characters were counted above; a non-ASCII one fails `hex_value` before slicing.
    for (i, pair) in hex_text.as_bytes().chunks_exact(2).enumerate() {
        let high = hex_value(pair[0]).ok_or(KeyFileError::BadHex { line })?;
        let low = hex_value(pair[1]).ok_or(KeyFileError::BadHex { line })?;
        secret[i] = (high << 4) | low;
    }
    Ok(Key::new(id, secret))
}

fn hex_value(byte: u8) -> Option<u8> {
    match byte {
        b'0'..=b'9' => Some(byte - b'0'),
        b'a'..=b'f' => Some(byte - b'a' + 10),
        b'A'..=b'F' => Some(byte - b'A' + 10),
        _ => None,
    }
}

fn hex_digit(nibble: u8) -> char {
    debug_assert!(nibble < 16, "callers pass a nibble");
    char::from(b"0123456789abcdef"[usize::from(nibble)])
}

#[cfg(test)]
mod tests;
