//! CDN surrogate keys: the names a CDN purges by (`Surrogate-Key`, `Cache-Tag`). An image
//! response carries the keys of what it derives from; a purge names the keys it
//! invalidates, in the same spelling, so an operator can hand one to the other.

/// Longest `Surrogate-Key` / `Cache-Tag` value sent; article keys beyond it are left out
/// (CDNs cap the header at 16 KiB, and the image and host keys come first).
const MAX_SURROGATE_KEYS_LEN: usize = 8 * 1024;

/// Characters that cannot appear in a surrogate key: the separators of `Surrogate-Key`
/// (space) and `Cache-Tag` (comma), quotes, and `%` itself, so encoding is reversible.
const KEY_UNSAFE: &percent_encoding::AsciiSet = &percent_encoding::CONTROLS
    .add(b' ')
    .add(b',')
    .add(b'"')
    .add(b'%')
    .add(b'\\');
/// The purge keys of an image: `sha256:<original's hash>` (everything derived from one
/// original), `host:<upstream host>` and `article:<id>` for each article that pins it,
/// ids percent-encoded where they hold a separator.
pub fn surrogate_keys(
    original_sha256: &str,
    host: Option<&str>,
    articles: &[String],
) -> Vec<String> {
    let mut keys = vec![format!("sha256:{original_sha256}")];
    keys.extend(host.map(|h| format!("host:{h}")));
    let mut len: usize = keys.iter().map(|k| k.len() + 1).sum();
    for article in articles {
        let key = format!(
            "article:{}",
            percent_encoding::utf8_percent_encode(article, KEY_UNSAFE)
        );
        len += key.len() + 1;
        if len > MAX_SURROGATE_KEYS_LEN {
            break;
        }
        keys.push(key);
    }
    keys
}

/// The keys a purge invalidates: each removed original (which covers its variants) and,
/// for an article purge, the article.
pub fn purge_keys(objects: &[String], article: Option<&str>) -> Vec<String> {
    let mut keys: Vec<String> = objects.iter().map(|o| format!("sha256:{o}")).collect();
    if let Some(id) = article {
        keys.push(format!(
            "article:{}",
            percent_encoding::utf8_percent_encode(id, KEY_UNSAFE)
        ));
    }
    keys
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn surrogate_keys_name_the_original_host_and_articles() {
        let keys = surrogate_keys(
            "ab12",
            Some("img.example"),
            &["post 1".into(), "a,b".into(), "sha256:99".into()],
        );
        assert_eq!(
            keys,
            [
                "sha256:ab12",
                "host:img.example",
                "article:post%201",
                "article:a%2Cb",
                "article:sha256:99"
            ]
        );
        let many: Vec<String> = (0..2000).map(|i| format!("article-{i}")).collect();
        let keys = surrogate_keys("ab12", None, &many);
        assert!(keys.join(" ").len() <= MAX_SURROGATE_KEYS_LEN);
        assert_eq!(keys[0], "sha256:ab12");
    }

    #[test]
    fn purge_keys_are_spelled_like_response_keys() {
        let response = surrogate_keys("ab12", None, &["post 1".into()]);
        let purge = purge_keys(&["ab12".into()], Some("post 1"));
        assert_eq!(response, purge);
    }
}
