//! Round trips, tamper detection, framing and keyring parsing.

use super::*;
use base64::Engine as _;
use base64::engine::general_purpose::STANDARD;
use proptest::prelude::*;
use uuid::Uuid;

const KEY_A: [u8; 32] = [0x11; 32];
const KEY_B: [u8; 32] = [0x22; 32];

fn entry(kid: &str, key: [u8; 32]) -> String {
    format!("{kid}:{}", STANDARD.encode(key))
}

fn ring(spec: &str) -> Keyring {
    Keyring::parse(spec).unwrap()
}

fn slot(row: u128) -> SecretSlot<'static> {
    SecretSlot::new("websocket_sources", "secrets", Uuid::from_u128(row))
}

fn min_len(kid: &str) -> usize {
    2 + kid.len() + NONCE_LEN + TAG_LEN
}

proptest! {
    #[test]
    fn round_trips_any_bytes_and_slot(
        plaintext in proptest::collection::vec(any::<u8>(), 0..512),
        table in "[a-z_]{0,24}",
        column in "[a-z_]{0,24}",
        row in any::<u128>(),
    ) {
        let keys = ring(&entry("k1", KEY_A));
        let slot = SecretSlot::new(&table, &column, Uuid::from_u128(row));
        let blob = keys.seal(&plaintext, slot).unwrap();
        prop_assert_eq!(blob.len(), min_len("k1") + plaintext.len());
        prop_assert_eq!(keys.open(&blob, slot).unwrap(), plaintext);
    }

    #[test]
    fn round_trips_strings(text in "\\PC{0,64}") {
        let keys = ring(&entry("k1", KEY_A));
        let blob = keys.seal_str(&text, slot(7)).unwrap();
        prop_assert_eq!(keys.open_str(&blob, slot(7)).unwrap(), text);
    }

    #[test]
    fn any_single_bit_flip_is_rejected(
        plaintext in proptest::collection::vec(any::<u8>(), 0..64),
        position in any::<proptest::sample::Index>(),
        bit in 0u8..8,
    ) {
        let keys = ring(&format!("{},{}", entry("k1", KEY_A), entry("k2", KEY_B)));
        let mut blob = keys.seal(&plaintext, slot(1)).unwrap();
        let at = position.index(blob.len());
        blob[at] ^= 1 << bit;
        prop_assert!(keys.open(&blob, slot(1)).is_err());
    }

    #[test]
    fn arbitrary_bytes_never_panic(blob in proptest::collection::vec(any::<u8>(), 0..128)) {
        let keys = ring(&entry("k1", KEY_A));
        prop_assert!(keys.open(&blob, slot(1)).is_err());
        let _ = Keyring::sealed_kid(&blob);
    }
}

#[test]
fn blob_layout_matches_the_documented_format() {
    let keys = ring(&entry("primary-1", KEY_A));
    let blob = keys.seal(b"hello", slot(1)).unwrap();
    assert_eq!(blob[0], FORMAT_VERSION);
    assert_eq!(usize::from(blob[1]), "primary-1".len());
    assert_eq!(&blob[2..11], b"primary-1");
    assert_eq!(blob.len(), min_len("primary-1") + 5);
    assert_eq!(Keyring::sealed_kid(&blob).unwrap(), "primary-1");
}

#[test]
fn nonces_are_fresh() {
    let keys = ring(&entry("k1", KEY_A));
    let one = keys.seal(b"same", slot(1)).unwrap();
    let two = keys.seal(b"same", slot(1)).unwrap();
    assert_ne!(one, two);
}

#[test]
fn wrong_key_under_same_kid_is_a_decrypt_error_naming_the_kid() {
    let blob = ring(&entry("k1", KEY_A)).seal(b"s", slot(1)).unwrap();
    let err = ring(&entry("k1", KEY_B)).open(&blob, slot(1)).unwrap_err();
    assert!(matches!(&err, CryptoError::Decrypt(kid) if kid == "k1"));
    assert!(err.to_string().contains("`k1`"));
}

#[test]
fn unknown_kid_is_reported() {
    let blob = ring(&entry("old", KEY_A)).seal(b"s", slot(1)).unwrap();
    let err = ring(&entry("new", KEY_B)).open(&blob, slot(1)).unwrap_err();
    assert!(matches!(&err, CryptoError::UnknownKey(kid) if kid == "old"));
    assert!(err.to_string().contains("SWITCHBOARD_SECRET_KEYS"));
}

#[test]
fn blobs_are_bound_to_their_slot() {
    let keys = ring(&entry("k1", KEY_A));
    let row = Uuid::from_u128(1);
    let home = SecretSlot::new("webhooks", "secrets", row);
    let blob = keys.seal(b"s", home).unwrap();
    let elsewhere = [
        SecretSlot::new("webhooks", "secrets", Uuid::from_u128(2)),
        SecretSlot::new("websocket_sources", "secrets", row),
        SecretSlot::new("webhooks", "config", row),
        // Moving a byte across the separator must not produce the same associated data.
        SecretSlot::new("webhook", "ssecrets", row),
    ];
    for other in elsewhere {
        let err = keys.open(&blob, other).unwrap_err();
        assert!(matches!(err, CryptoError::Decrypt(_)), "{other:?}: {err:?}");
    }
    assert_eq!(keys.open(&blob, home).unwrap(), b"s");
}

#[test]
fn every_truncation_is_an_error_and_short_ones_are_malformed() {
    for kid in ["k", "abcdefghijklmnopqrstuvwxyz012345"] {
        let keys = ring(&entry(kid, KEY_A));
        let blob = keys.seal(b"some secret", slot(1)).unwrap();
        for len in 0..blob.len() {
            let err = keys.open(&blob[..len], slot(1)).unwrap_err();
            if len < min_len(kid) {
                assert!(
                    matches!(err, CryptoError::Malformed(_)),
                    "{kid} {len}: {err:?}"
                );
                assert!(Keyring::sealed_kid(&blob[..len]).is_err());
            } else {
                assert!(
                    matches!(err, CryptoError::Decrypt(_)),
                    "{kid} {len}: {err:?}"
                );
            }
        }
    }
}

#[test]
fn empty_plaintext_has_exactly_the_minimum_length() {
    let keys = ring(&entry("k1", KEY_A));
    let blob = keys.seal(b"", slot(1)).unwrap();
    assert_eq!(blob.len(), min_len("k1"));
    assert_eq!(keys.open(&blob, slot(1)).unwrap(), b"");
}

#[test]
fn bad_headers_are_malformed() {
    let keys = ring(&entry("k1", KEY_A));
    let blob = keys.seal(b"secret", slot(1)).unwrap();
    let mut version = blob.clone();
    version[0] = 2;
    let mut zero_kid = blob.clone();
    zero_kid[1] = 0;
    let mut long_kid = blob.clone();
    long_kid[1] = 33;
    let mut bad_char = blob.clone();
    bad_char[2] = b'.';
    let mut non_ascii = blob;
    non_ascii[2] = 0xc3;
    for bad in [version, zero_kid, long_kid, bad_char, non_ascii] {
        assert!(matches!(
            keys.open(&bad, slot(1)),
            Err(CryptoError::Malformed(_))
        ));
        assert!(matches!(
            Keyring::sealed_kid(&bad),
            Err(CryptoError::Malformed(_))
        ));
    }
}

#[test]
fn open_str_rejects_non_utf8() {
    let keys = ring(&entry("k1", KEY_A));
    let blob = keys.seal(&[0xff, 0xfe], slot(1)).unwrap();
    assert!(matches!(
        keys.open_str(&blob, slot(1)),
        Err(CryptoError::NotUtf8)
    ));
}

#[test]
fn parse_accepts_whitespace_url_safe_and_unpadded_keys() {
    let key: [u8; 32] = std::array::from_fn(|i| (i * 8 + 3) as u8);
    let standard = STANDARD.encode(key);
    assert!(standard.contains(['+', '/']) && standard.ends_with('='));
    let url_safe = base64::engine::general_purpose::URL_SAFE_NO_PAD.encode(key);
    let spec = format!(
        " a:{standard} ,\n b:{} ,\tc:{url_safe}",
        standard.trim_end_matches('=')
    );
    let keys = ring(&spec);
    assert_eq!(keys.kids(), ["a", "b", "c"]);
    assert_eq!(keys.primary_kid(), "a");
    let blob = keys.seal(b"x", slot(1)).unwrap();
    let c_only = ring(&format!("c:{standard}"));
    assert!(matches!(
        c_only.open(&blob, slot(1)),
        Err(CryptoError::UnknownKey(_))
    ));
    assert_eq!(
        ring(&format!("a:{url_safe}")).open(&blob, slot(1)).unwrap(),
        b"x"
    );
}

#[test]
fn to_spec_is_the_inverse_of_parse() {
    let spec = format!("{},{}", entry("new", KEY_B), entry("old", KEY_A));
    let keys = ring(&spec);
    assert_eq!(keys.to_spec(), spec);
    let again = ring(&keys.to_spec());
    let blob = keys.seal(b"s", slot(1)).unwrap();
    assert_eq!(again.open(&blob, slot(1)).unwrap(), b"s");
}

#[test]
fn generated_entries_parse_and_differ() {
    let one = Keyring::generate_entry("gen");
    let two = Keyring::generate_entry("gen");
    assert_ne!(one, two);
    assert_eq!(ring(&one).kids(), ["gen"]);
    let generated = Keyring::generate("fresh").unwrap();
    assert_eq!(ring(&generated.to_spec()).kids(), ["fresh"]);
    assert!(matches!(
        Keyring::generate("bad kid"),
        Err(KeyringError::BadKeyId { .. })
    ));
}

#[test]
fn parse_errors_are_specific() {
    let good = STANDARD.encode(KEY_A);
    type Expected = fn(&KeyringError) -> bool;
    let cases: Vec<(String, Expected)> = vec![
        (String::new(), |e| matches!(e, KeyringError::Empty)),
        (" \n\t".into(), |e| matches!(e, KeyringError::Empty)),
        (good.clone(), |e| {
            matches!(e, KeyringError::Malformed { entry: 1, .. })
        }),
        (format!("a:{good},"), |e| {
            matches!(e, KeyringError::Malformed { entry: 2, .. })
        }),
        ("a:".into(), |e| {
            matches!(e, KeyringError::Malformed { entry: 1, .. })
        }),
        (format!(":{good}"), |e| {
            matches!(e, KeyringError::BadKeyId { entry: 1, .. })
        }),
        (format!("a.b:{good}"), |e| {
            matches!(e, KeyringError::BadKeyId { entry: 1, .. })
        }),
        (format!("é:{good}"), |e| {
            matches!(e, KeyringError::BadKeyId { .. })
        }),
        (format!("{}:{good}", "k".repeat(33)), |e| {
            matches!(e, KeyringError::BadKeyId { .. })
        }),
        (
            "a:not base64!".into(),
            |e| matches!(e, KeyringError::BadBase64 { kid } if kid == "a"),
        ),
        (
            format!("a:{}", STANDARD.encode([0u8; 31])),
            |e| matches!(e, KeyringError::BadLength { kid, len: 31 } if kid == "a"),
        ),
        (format!("a:{}", STANDARD.encode([0u8; 33])), |e| {
            matches!(e, KeyringError::BadLength { len: 33, .. })
        }),
        (
            format!("a:{good},a:{}", STANDARD.encode(KEY_B)),
            |e| matches!(e, KeyringError::DuplicateKid(kid) if kid == "a"),
        ),
    ];
    for (spec, expected) in cases {
        let err = Keyring::parse(&spec).unwrap_err();
        assert!(expected(&err), "{spec:?} gave {err:?}");
        assert!(!err.to_string().contains(&good), "{err}");
    }
    let longest = format!("{}:{good}", "k".repeat(32));
    assert!(Keyring::parse(&longest).is_ok());
}

#[test]
fn error_messages_say_how_to_fix() {
    let msg = Keyring::parse("").unwrap_err().to_string();
    assert!(msg.contains("switchboard keys generate"), "{msg}");
    let short = format!("a:{}", STANDARD.encode([0u8; 31]));
    let msg = Keyring::parse(&short).unwrap_err().to_string();
    assert!(msg.contains("31 bytes") && msg.contains("32"), "{msg}");
}

#[test]
fn rotation_opens_old_blobs_and_reseals_under_the_new_primary() {
    let old = ring(&entry("old", KEY_A));
    let rotated = ring(&format!("{},{}", entry("new", KEY_B), entry("old", KEY_A)));
    let blob = old.seal(b"token", slot(9)).unwrap();
    assert_eq!(rotated.open(&blob, slot(9)).unwrap(), b"token");

    let moved = rotated.reseal(&blob, slot(9)).unwrap().unwrap();
    assert_eq!(Keyring::sealed_kid(&moved).unwrap(), "new");
    assert_eq!(rotated.open(&moved, slot(9)).unwrap(), b"token");
    assert!(rotated.reseal(&moved, slot(9)).unwrap().is_none());
    assert!(matches!(
        old.open(&moved, slot(9)),
        Err(CryptoError::UnknownKey(_))
    ));
    // A resealed blob is still bound to its slot.
    assert!(rotated.open(&moved, slot(10)).is_err());
    assert!(rotated.reseal(&blob, slot(10)).is_err());
}

#[test]
fn with_new_primary_keeps_older_keys() {
    let old = ring(&entry("old", KEY_A));
    let blob = old.seal(b"s", slot(1)).unwrap();
    let rotated = old.with_new_primary("new").unwrap();
    assert_eq!(rotated.kids(), ["new", "old"]);
    assert_eq!(rotated.open(&blob, slot(1)).unwrap(), b"s");
    assert!(
        ring(&rotated.to_spec())
            .reseal(&blob, slot(1))
            .unwrap()
            .is_some()
    );
    assert!(matches!(
        old.with_new_primary("old"),
        Err(KeyringError::DuplicateKid(_))
    ));
}

#[test]
fn debug_output_contains_no_key_material() {
    let keys = ring(&format!("{},{}", entry("new", KEY_B), entry("old", KEY_A)));
    for shown in [
        format!("{keys:?}"),
        format!("{keys:#?}"),
        format!("{:?}", keys.primary),
    ] {
        assert!(shown.contains("new"), "{shown}");
        for key in [KEY_A, KEY_B] {
            assert!(!shown.contains(&STANDARD.encode(key)), "{shown}");
            assert!(
                !shown.contains("17, 17") && !shown.contains("34, 34"),
                "{shown}"
            );
        }
    }
}
