use super::*;

const HEX_A: &str = "000102030405060708090a0b0c0d0e0f101112131415161718191a1b1c1d1e1f";
const HEX_B: &str = "FFEEDDCCBBAA99887766554433221100FFEEDDCCBBAA99887766554433221100";

/// Parses `text` and compares the ring's ids and send key id, or the error.
#[track_caller]
fn check(text: &str, expected: Result<(&[u16], u16), KeyFileError>) {
    let got = KeyRing::parse(text).map(|ring| (ring.key_ids().collect::<Vec<_>>(), ring.send_key_id()));
    let expected = expected.map(|(ids, send)| (ids.to_vec(), send));
    assert_eq!(got, expected, "{text:?}");
}

#[test]
fn key_file_table() {
    let too_many: String = (0..17).map(|id| format!("{id}:{HEX_A}\n")).collect();
    let sixteen: String = (0..16).map(|id| format!("{id}:{HEX_A}\n")).collect();
    let ids: Vec<u16> = (0..16).collect();
    check(&format!("1:{HEX_A}"), Ok((&[1], 1)));
    check(&format!("1:{HEX_A}\n2:{HEX_B}\n"), Ok((&[1, 2], 2)));
    // The last key sends, whatever the ids.
    check(&format!("7:{HEX_A}\n3:{HEX_B}"), Ok((&[7, 3], 3)));
    check(
        &format!("# rollcall keys\n\n  1:{HEX_A}  \r\n\t# old key above\n65535 : {HEX_B}\n"),
        Ok((&[1, 65535], 65535)),
    );
    check(&format!("0:{HEX_A}"), Ok((&[0], 0)));
    check(&sixteen, Ok((&ids, 15)));

    check("", Err(KeyFileError::Empty));
    check("# nothing\n\n", Err(KeyFileError::Empty));
    check(&format!("\n{HEX_A}"), Err(KeyFileError::MissingColon { line: 2 }));
    check(&format!("65536:{HEX_A}"), Err(KeyFileError::BadId { line: 1 }));
    check(&format!("-1:{HEX_A}"), Err(KeyFileError::BadId { line: 1 }));
    check(&format!("+1:{HEX_A}"), Err(KeyFileError::BadId { line: 1 }));
    check(&format!("0x1:{HEX_A}"), Err(KeyFileError::BadId { line: 1 }));
    check(&format!(":{HEX_A}"), Err(KeyFileError::BadId { line: 1 }));
    check("1:abcd", Err(KeyFileError::BadSecretLength { line: 1, len: 4 }));
    check(&format!("1:{HEX_A}0"), Err(KeyFileError::BadSecretLength { line: 1, len: 65 }));
    check(&format!("1:{}", "g".repeat(64)), Err(KeyFileError::BadHex { line: 1 }));
    check(&format!("1:{}é", &HEX_A[..63]), Err(KeyFileError::BadHex { line: 1 }));
    check(&format!("1:{HEX_A}\n# c\n1:{HEX_B}"), Err(KeyFileError::DuplicateId { line: 3, id: 1, first: 1 }));
    check(&too_many, Err(KeyFileError::TooManyKeys { line: 17 }));
}

#[test]
fn key_file_errors_name_the_line_in_one_sentence() {
    let error = KeyRing::parse(&format!("# keys\n1:{HEX_A}\n2:{}", &HEX_B[..10])).unwrap_err();
    assert_eq!(error.to_string(), "line 3: the secret must be exactly 64 hex digits (32 bytes), not 10");
    // A bad line is never quoted back: it may be most of a secret.
    assert!(!error.to_string().contains(&HEX_B[..10]));
}

#[test]
fn generated_lines_parse_back() {
    let secret: [u8; 32] = core::array::from_fn(|i| (i * 7) as u8);
    let line = Key::generate_line(513, &secret);
    assert_eq!(line.len(), "513:".len() + 64);
    let ring = KeyRing::parse(&line).unwrap();
    let expected = KeyRing::new(&[Key::new(513, secret)]).unwrap();
    assert_eq!(ring.send_key_id(), 513);
    assert_eq!(ring.sign(b"x"), expected.sign(b"x"));
    assert_eq!(Key::generate_line(1, &[0; 32]), format!("1:{}", "0".repeat(64)));
}

#[test]
fn hex_case_does_not_matter() {
    let lower = KeyRing::parse(&format!("1:{}", HEX_B.to_lowercase())).unwrap();
    let upper = KeyRing::parse(&format!("1:{HEX_B}")).unwrap();
    assert_eq!(lower.sign(b"abc"), upper.sign(b"abc"));
}

#[test]
fn debug_never_prints_secrets() {
    let key = Key::new(4, [0xab; 32]);
    let ring = KeyRing::new(std::slice::from_ref(&key)).unwrap();
    for text in [format!("{key:?}"), format!("{key:#?}"), format!("{ring:?}"), format!("{ring:#?}")] {
        assert!(!text.to_lowercase().contains("abab"), "{text}");
        assert!(!text.contains("171"), "{text}"); // 0xab in decimal
    }
    assert_eq!(format!("{key:?}"), r#"Key { id: 4, secret: "<redacted>" }"#);
    assert_eq!(format!("{ring:?}"), "KeyRing { key_ids: [4], send_key_id: 4 }");
}

#[test]
fn new_refuses_empty_oversized_and_duplicate_rings() {
    let key = |id| Key::new(id, [id as u8; 32]);
    assert_eq!(KeyRing::new(&[]).unwrap_err(), KeyRingError::Empty);
    let many: Vec<Key> = (0..17).map(key).collect();
    assert_eq!(KeyRing::new(&many).unwrap_err(), KeyRingError::TooManyKeys);
    assert!(KeyRing::new(&many[..16]).is_ok());
    assert_eq!(KeyRing::new(&[key(1), key(2), key(1)]).unwrap_err(), KeyRingError::DuplicateId(1));
}

#[test]
fn sign_and_verify() {
    let ring = KeyRing::new(&[Key::new(1, [1; 32]), Key::new(2, [2; 32])]).unwrap();
    assert!(ring.contains(1) && ring.contains(2) && !ring.contains(3));
    assert_eq!(ring.len(), 2);
    let tag = ring.sign(b"body");
    assert_eq!(ring.verify(2, b"body", &tag), Ok(()));
    assert_eq!(ring.verify(1, b"body", &tag), Err(DecodeError::BadTag));
    assert_eq!(ring.verify(3, b"body", &tag), Err(DecodeError::UnknownKey));
    assert_eq!(ring.verify(2, b"bodx", &tag), Err(DecodeError::BadTag));
    assert_eq!(ring.verify(2, b"body", &tag[..31]), Err(DecodeError::BadTag));
    assert_eq!(ring.verify(2, b"body", &[]), Err(DecodeError::BadTag));
}

/// RFC 4231, test case 2: the ring computes standard HMAC-SHA256.
#[test]
fn matches_rfc_4231() {
    // The key "Jefe" is shorter than 32 bytes; HMAC pads keys with zeros to the block size,
    // so the same secret padded to 32 bytes gives the same tag.
    let mut secret = [0u8; 32];
    secret[..4].copy_from_slice(b"Jefe");
    let ring = KeyRing::new(&[Key::new(1, secret)]).unwrap();
    let tag = ring.sign(b"what do ya want for nothing?");
    let hex: String = tag.iter().map(|b| format!("{b:02x}")).collect();
    assert_eq!(hex, "5bdcc146bf60754e6a042426089575c75a003f089d2739839dec58b964ec3843");
}
