//! Shared secrets for HMAC-SHA256, with key ids so keys can be rotated online. STUB.
pub struct Key;
pub struct KeyRing;
