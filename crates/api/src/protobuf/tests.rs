use super::*;

#[test]
fn placeholder_build_check() {
    assert!(decode(b"").is_err());
}
