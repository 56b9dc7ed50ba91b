use super::*;

fn entry(url: &str, sha: &str) -> UrlEntry {
    UrlEntry {
        url: url.into(),
        sha256: sha.into(),
        media_type: "image/jpeg".into(),
        bytes: 3,
        width: 1,
        height: 1,
        first_fetched: 1,
        last_verified: 1,
        last_checked: 1,
        validators: Validators::default(),
        last_upstream_status: 200,
        pinned_by: vec![],
    }
}

fn object(sha: &str) -> ObjectMeta {
    ObjectMeta {
        sha256: sha.into(),
        media_type: "image/jpeg".into(),
        extension: "jpg".into(),
        bytes: 3,
        width: 1,
        height: 1,
        created: 1,
        last_used: 0,
    }
}

#[test]
fn survives_reopen() {
    let dir = tempfile::tempdir().unwrap();
    let path = dir.path().join("index.redb");
    {
        let index = Index::open_with_cache(&path, 1 << 20).unwrap();
        for url in ["http://a/1.jpg", "http://b/2.jpg"] {
            let written = index.commit_url(&object("aa"), &entry(url, "aa"), false);
            assert!(written.unwrap().is_some());
        }
    }
    let index = Index::open_with_cache(&path, 1 << 20).unwrap();
    assert_eq!(index.url("http://a/1.jpg").unwrap().unwrap().sha256, "aa");
    assert_eq!(index.object("aa").unwrap().unwrap().extension, "jpg");
    assert_eq!(index.url_count().unwrap(), 2);
    assert!(index.remove_url("http://a/1.jpg").unwrap());
    assert_eq!(index.url("http://a/1.jpg").unwrap(), None);
    assert!(index.object("aa").unwrap().is_some());
    index
        .commit_url(&object("bb"), &entry("http://c/3.jpg", "bb"), false)
        .unwrap();
    let wanted = std::collections::HashSet::from(["aa".to_string()]);
    let named: Vec<String> = index
        .urls_naming(&wanted)
        .unwrap()
        .into_iter()
        .map(|e| e.url)
        .collect();
    assert_eq!(named, ["http://b/2.jpg"]);
}

#[test]
fn pins_and_purges_are_not_lost_to_concurrent_writers() {
    let dir = tempfile::tempdir().unwrap();
    let index = Index::open_with_cache(&dir.path().join("index.redb"), 1 << 20).unwrap();
    let url = "http://a/1.jpg";
    index
        .commit_url(&object("aa"), &entry(url, "aa"), false)
        .unwrap();
    // A pin lands while a revalidation holds an older copy of the record.
    let stale = index.url(url).unwrap().unwrap();
    index
        .update_url(url, |e| {
            e.pinned_by.push("post-a".into());
            true
        })
        .unwrap();
    let written = index.commit_url(
        &object("bb"),
        &UrlEntry {
            sha256: "bb".into(),
            ..stale
        },
        true,
    );
    assert_eq!(written.unwrap().unwrap().pinned_by, ["post-a"]);
    // A purge lands while a revalidation runs: its write-back must not resurrect the URL.
    assert!(index.remove_url(url).unwrap());
    let written = index
        .commit_url(&object("bb"), &entry(url, "bb"), true)
        .unwrap();
    assert_eq!(written, None);
    assert_eq!(index.url(url).unwrap(), None);
    assert_eq!(index.update_url(url, |_| true).unwrap(), None);
}
