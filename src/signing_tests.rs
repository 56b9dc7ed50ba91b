use super::*;
use crate::url_grammar::{parse_path_and_query, permalink_url, proxy_url};

fn settings() -> transform::Settings {
    transform::Settings::default()
}

fn signer(keys: &[&str]) -> Signer {
    let keys: Vec<SigningKey> = keys.iter().map(|k| SigningKey::new(*k)).collect();
    Signer::new(&keys, &settings()).unwrap()
}

fn address(path_and_query: &str) -> Address {
    parse_path_and_query(path_and_query).unwrap()
}

fn query_of(path_and_query: &str) -> &str {
    path_and_query.split_once('?').map_or("", |(_, q)| q)
}

const K1: &str = "first-key-0123456789abcdef";
const K2: &str = "second-key-0123456789abcdef";

#[test]
fn equivalent_spellings_share_one_message() {
    let s = settings();
    let same = [
        "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=480",
        "/?url=HTTP%3A%2F%2FA.EXAMPLE%3A80%2Fx.jpg%23frag&w=480",
        "/?w=240&dpr=2&url=http%3A%2F%2Fa.example%2Fx.jpg",
        "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=480&fit=cover",
        "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=480&format=AUTO&enlarge=0",
    ];
    let first = message(&address(same[0]), &s).unwrap();
    assert_eq!(
        first,
        "imgmirror-sig-v1\nurl\nhttp://a.example/x.jpg\n\
         bg=default&enlarge=0&fit=inside&format=auto&h=-&q=default&w=480"
    );
    for other in &same[1..] {
        assert_eq!(message(&address(other), &s).unwrap(), first, "{other}");
    }
    // A different size, target or kind is a different message.
    let different = [
        "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=481",
        "/?url=http%3A%2F%2Fa.example%2Fy.jpg&w=480",
        "/?url=http%3A%2F%2Fa.example%2Fx.jpg",
        "/?url=https%3A%2F%2Fa.example%2Fx.jpg&w=480",
    ];
    for other in different {
        assert_ne!(message(&address(other), &s).unwrap(), first, "{other}");
    }
    let sha = "ab".repeat(32);
    let permalink = message(&address(&format!("/m/{sha}.jpg?w=480")), &s).unwrap();
    assert!(permalink.starts_with(&format!("imgmirror-sig-v1\nm\n{sha}\n")));
    assert_eq!(
        permalink,
        message(&address(&format!("/m/{sha}?w=480")), &s).unwrap(),
        "the extension is cosmetic"
    );
    assert_eq!(
        message(&address(&format!("/m/{sha}?placeholder")), &s).unwrap(),
        format!("imgmirror-sig-v1\nm\n{sha}\nplaceholder")
    );
}

#[test]
fn a_signature_verifies_and_tampering_does_not() {
    let signer = signer(&[K1]);
    let written = proxy_url(
        "https://img.example.com",
        "http://a.example/x.jpg",
        &[("w", "480".into())],
    );
    let signed = signer.sign_written(written, "https://img.example.com/");
    let pq = signed.strip_prefix("https://img.example.com").unwrap();
    let sig = url_grammar::signature(query_of(pq)).unwrap();
    assert_eq!(sig.len(), 43, "base64url of 32 bytes, no padding: {sig}");
    assert!(!sig.contains(['=', '+', '/']));
    assert_eq!(signer.check(&address(pq), query_of(pq), &[]), Ok(()));
    // Same signature, equivalent spelling.
    let respelled = format!("/?w=240&dpr=2&url=http%3A%2F%2FA.example%2Fx.jpg&sig={sig}");
    assert_eq!(
        signer.check(&address(&respelled), query_of(&respelled), &[]),
        Ok(())
    );
    // Tampered: other size, other upstream, a flipped signature, none at all.
    for bad in [
        pq.replace("w=480", "w=481"),
        pq.replace("x.jpg", "y.jpg"),
        pq.replace(&sig, &format!("A{}", &sig[1..])),
        pq.replace(&sig, "not base64!"),
    ] {
        if bad == pq {
            continue;
        }
        assert_eq!(
            signer.check(&address(&bad), query_of(&bad), &[]),
            Err(SignatureError::Bad),
            "{bad}"
        );
    }
    let unsigned = "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=480";
    assert_eq!(
        signer.check(&address(unsigned), query_of(unsigned), &[]),
        Err(SignatureError::Missing)
    );
}

#[test]
fn rotation_signs_with_the_first_key_and_verifies_with_any() {
    let old = signer(&[K1]);
    let rotated = signer(&[K2, K1]);
    let only_new = signer(&[K2]);
    let sha = "cd".repeat(32);
    let written = permalink_url("", &sha, "jpg", &[("w", "320".into())]);
    let by_old = old.sign_written(written.clone(), "");
    let by_rotated = rotated.sign_written(written, "");
    assert_ne!(by_old, by_rotated, "the first key signs");
    for url in [&by_old, &by_rotated] {
        assert_eq!(
            rotated.check(&address(url), query_of(url), &[]),
            Ok(()),
            "{url}"
        );
    }
    assert_eq!(
        only_new.check(&address(&by_old), query_of(&by_old), &[]),
        Err(SignatureError::Bad),
        "a dropped key no longer verifies"
    );
}

#[test]
fn which_requests_need_a_signature() {
    let signer = signer(&[K1]);
    let sha = "ef".repeat(32);
    // A bare permalink serves only what is mirrored: no signature needed.
    let bare = format!("/m/{sha}.jpg");
    assert_eq!(signer.check(&address(&bare), "", &[]), Ok(()));
    let sized = format!("/m/{sha}?w=10");
    assert_eq!(
        signer.check(&address(&sized), query_of(&sized), &[]),
        Err(SignatureError::Missing)
    );
    // The worker form: only for allow-listed hosts, whatever it carries.
    let worker = "/?http://static.1sapp.com/a.jpg?sig=whatever";
    let allow = ["*.1sapp.com".to_owned()];
    assert_eq!(
        signer.check(&address(worker), query_of(worker), &allow),
        Ok(())
    );
    assert_eq!(
        signer.check(&address(worker), query_of(worker), &[]),
        Err(SignatureError::WorkerForm("static.1sapp.com".into()))
    );
    // A bad option is the option's error, not a signature's.
    let bad = "/?url=http%3A%2F%2Fa.example%2Fx.jpg&w=abc&sig=x";
    assert!(matches!(
        signer.check(&address(bad), query_of(bad), &[]),
        Err(SignatureError::Options(_))
    ));
}

#[test]
fn keys_come_from_a_list_or_commas_and_never_show() {
    let from_list: SecurityConfig =
        toml::from_str(&format!("signing_keys = [\"{K1}\", \" {K2} \"]")).unwrap();
    let from_env: SecurityConfig =
        toml::from_str(&format!("signing_keys = \"{K1}, {K2},\"")).unwrap();
    assert_eq!(from_list.signing_keys, from_env.signing_keys);
    assert_eq!(from_list.signing_keys.len(), 2);
    assert!(from_list.validate().is_ok());
    let shown = format!("{from_list:?} {:?}", signer(&[K1, K2]));
    assert!(!shown.contains("key-0123"), "{shown}");
    let short: SecurityConfig = toml::from_str("signing_keys = [\"tiny-k\"]").unwrap();
    let why = short.validate().unwrap_err().to_string();
    assert!(why.contains("#1") && !why.contains("tiny-k"), "{why}");
    assert!(SecurityConfig::default().signing_keys.is_empty());
}
