//! Front matter: finds the `---` block at the top of a Hexo post and, with a real YAML parser
//! (saphyr-parser, which reports the span of every scalar), the byte range of every string
//! value, with its key path. It never re-serialises YAML: the caller splices new values into
//! the original bytes, so comments, key order, quoting and line endings survive.
//!
//! Only the `---` form is recognised; Hexo's `;;;` JSON front matter and its front matter
//! without an opening separator are treated as body text.

use std::ops::Range;

use saphyr_parser::{Event, Parser, ScalarStyle};

use super::ArticleError;

/// Where the front matter is, in bytes of the whole file.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct FrontMatter {
    /// The YAML text between the separator lines.
    pub yaml: Range<usize>,
    /// Where the body starts (after the closing separator's line ending).
    pub body_start: usize,
}

/// A string value in the front matter.
#[derive(Debug, Clone, PartialEq, Eq)]
pub(crate) struct Value {
    /// `headimg`, `photos[1]`, `cover.image`.
    pub key: String,
    /// The decoded value.
    pub value: String,
    /// The bytes to replace, in the whole file.
    pub range: Range<usize>,
    /// When set, `range` covers the quotes too (the value was written with escapes or folded
    /// over lines) and the replacement must be written quoted with this character.
    pub requote: Option<char>,
}

/// Finds the front matter, if the file has one. Blank lines before the opening `---` are
/// allowed (the seed post starts with one, and Hexo reads its front matter). A file whose
/// first line is `---` but that never closes it has none: Markdown reads that line as a
/// thematic break.
pub(crate) fn split(text: &str) -> Option<FrontMatter> {
    let start = if text.starts_with('\u{feff}') { 3 } else { 0 };
    let mut lines = LineIter { text, pos: start };
    let first = loop {
        let (line, content_end) = lines.next()?;
        let content = &text[line.start..content_end];
        if content.trim_end_matches([' ', '\t']) == "---" {
            break line;
        }
        if !content.trim().is_empty() {
            return None;
        }
    };
    let yaml_start = first.end;
    for (line, content_end) in lines {
        let content = text[line.start..content_end].trim_end_matches([' ', '\t']);
        if content == "---" || content == "..." {
            return Some(FrontMatter {
                yaml: yaml_start..line.start,
                body_start: line.end,
            });
        }
    }
    None
}

/// Every string value of the front matter (not keys), in document order.
pub(crate) fn values(text: &str, fm: &FrontMatter) -> Result<Vec<Value>, ArticleError> {
    let yaml = &text[fm.yaml.clone()];
    // saphyr reports positions in characters; this maps them back to bytes.
    let mut char_to_byte: Vec<usize> = yaml.char_indices().map(|(i, _)| i).collect();
    char_to_byte.push(yaml.len());
    let to_byte = |index: usize| char_to_byte.get(index).copied();
    let first_line = line_of(text, fm.yaml.start);

    let mut stack: Vec<Frame> = Vec::new();
    let mut out = Vec::new();
    let mut parser = Parser::new_from_str(yaml);
    while let Some(next) = parser.next_event() {
        let (event, span) = next.map_err(|e| ArticleError::FrontMatter {
            line: first_line + e.marker().line().saturating_sub(1),
            message: e.info().to_owned(),
        })?;
        match event {
            Event::MappingStart(..) => {
                let key = value_key(&mut stack);
                stack.push(Frame::Map {
                    path: key,
                    key: None,
                });
            }
            Event::SequenceStart(..) => {
                let key = value_key(&mut stack);
                stack.push(Frame::Seq {
                    path: key,
                    index: 0,
                });
            }
            Event::MappingEnd | Event::SequenceEnd => {
                stack.pop();
            }
            Event::Alias(_) => {
                value_key(&mut stack);
            }
            Event::Scalar(value, style, _, _) => {
                if let Some(Frame::Map {
                    key: key @ None, ..
                }) = stack.last_mut()
                {
                    *key = Some(value.into_owned());
                    continue;
                }
                let key = value_key(&mut stack);
                let (Some(start), Some(end)) =
                    (to_byte(span.start.index()), to_byte(span.end.index()))
                else {
                    continue;
                };
                let raw = &yaml[start..end];
                let located = locate(raw, &value, style);
                if let Some((inner, requote)) = located {
                    out.push(Value {
                        key,
                        value: value.into_owned(),
                        range: fm.yaml.start + start + inner.start
                            ..fm.yaml.start + start + inner.end,
                        requote,
                    });
                }
            }
            _ => {}
        }
    }
    Ok(out)
}

enum Frame {
    Map { path: String, key: Option<String> },
    Seq { path: String, index: usize },
}

/// The key path of the node that starts now, advancing the parent frame past it.
fn value_key(stack: &mut [Frame]) -> String {
    match stack.last_mut() {
        None => String::new(),
        Some(Frame::Map { path, key }) => {
            let key = key.take().unwrap_or_default();
            if path.is_empty() {
                key
            } else {
                format!("{path}.{key}")
            }
        }
        Some(Frame::Seq { path, index }) => {
            let key = format!("{path}[{index}]");
            *index += 1;
            key
        }
    }
}

/// Where the replaceable bytes of a scalar are, relative to its raw token. In a block scalar
/// (`|`, `>-`, …) the URL is replaced on its line, in place, so the indicator, the
/// indentation and the chomping stay as written; one folded over several lines is left.
fn locate(raw: &str, value: &str, style: ScalarStyle) -> Option<(Range<usize>, Option<char>)> {
    match style {
        ScalarStyle::Literal | ScalarStyle::Folded => {
            let url = value.trim_end_matches(['\n', '\r']);
            if url.is_empty() || url.contains(['\n', '\r']) {
                return None;
            }
            // saphyr's span of a block scalar starts at its content (after the indentation of
            // the first line); the URL is the first thing there.
            let at = raw.len() - raw.trim_start().len();
            raw[at..]
                .starts_with(url)
                .then_some((at..at + url.len(), None))
        }
        // A plain scalar folded over lines (raw != value) is replaced whole by a one-line value.
        ScalarStyle::Plain => Some((0..raw.len(), None)),
        ScalarStyle::SingleQuoted | ScalarStyle::DoubleQuoted => {
            let quote = if style == ScalarStyle::SingleQuoted {
                '\''
            } else {
                '"'
            };
            // The parser's end can run past the closing quote (over a trailing `# comment`),
            // so the closing quote is found here, by YAML's escaping rules.
            let end = closing_quote(raw, quote)?;
            let inner = &raw[1..end];
            if inner == value {
                Some((1..end, None))
            } else {
                Some((0..end + 1, Some(quote)))
            }
        }
    }
}

/// The byte index of the quote closing the quoted scalar at the start of `raw`: in single
/// quotes `''` is an escaped quote, in double quotes a backslash escapes the next character.
fn closing_quote(raw: &str, quote: char) -> Option<usize> {
    let bytes = raw.as_bytes();
    if bytes.first() != Some(&(quote as u8)) {
        return None;
    }
    let mut i = 1;
    while i < bytes.len() {
        match bytes[i] {
            b'\\' if quote == '"' => i += 2,
            b'\'' if quote == '\'' && bytes.get(i + 1) == Some(&b'\'') => i += 2,
            b if b == quote as u8 => return Some(i),
            _ => i += 1,
        }
    }
    None
}

/// 1-based line number of a byte offset.
pub(crate) fn line_of(text: &str, offset: usize) -> usize {
    let offset = offset.min(text.len());
    text.as_bytes()[..offset]
        .iter()
        .filter(|&&b| b == b'\n')
        .count()
        + 1
}

/// Lines as (whole line including its ending, end of content without `\r\n`/`\n`).
struct LineIter<'a> {
    text: &'a str,
    pos: usize,
}

impl Iterator for LineIter<'_> {
    type Item = (Range<usize>, usize);

    fn next(&mut self) -> Option<Self::Item> {
        if self.pos >= self.text.len() {
            return None;
        }
        let start = self.pos;
        let end = self.text[start..]
            .find('\n')
            .map_or(self.text.len(), |i| start + i + 1);
        self.pos = end;
        let content_end = start + trim_eol(&self.text[start..end]).len();
        Some((start..end, content_end))
    }
}

fn trim_eol(line: &str) -> &str {
    let line = line.strip_suffix('\n').unwrap_or(line);
    line.strip_suffix('\r').unwrap_or(line)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn split_table() {
        let cases: &[(&str, Option<(&str, &str)>)] = &[
            ("---\na: 1\n---\nbody", Some(("a: 1\n", "body"))),
            ("---\r\na: 1\r\n---\r\nbody", Some(("a: 1\r\n", "body"))),
            ("---\na: 1\n...\nbody", Some(("a: 1\n", "body"))),
            ("---\na: 1\n---", Some(("a: 1\n", ""))),
            ("\u{feff}---\na: 1\n---\nb", Some(("a: 1\n", "b"))),
            ("---\n---\nbody", Some(("", "body"))),
            ("no front matter\n---\n", None),
            ("---\nnever closed\n", None),
            ("", None),
            ("----\na\n----\n", None),
            ("\n \n---\na: 1\n--- \nb", Some(("a: 1\n", "b"))),
            ("text\n---\na: 1\n---\n", None),
        ];
        for (text, want) in cases {
            let got = split(text).map(|fm| (&text[fm.yaml], &text[fm.body_start..]));
            assert_eq!(got, *want, "{text:?}");
        }
    }

    fn values_of(text: &str) -> Vec<(String, String, String, Option<char>)> {
        let fm = split(text).expect("front matter");
        values(text, &fm)
            .expect("valid yaml")
            .into_iter()
            .map(|v| (v.key, v.value, text[v.range].to_owned(), v.requote))
            .collect()
    }

    #[test]
    fn values_with_keys_styles_and_lists() {
        let text = "---\ntitle: 'héllo'\nheadimg: \"http://a/x.jpg\"\nphotos:\n  - http://a/1.jpg\n  - 'http://a/2.jpg'\nnested:\n  cover: http://a/c.jpg\ncommented: \"http://a/k.jpg\" # it's \"x\"\nsq: 'it''s' # 'c'\nflow: [http://a/f.jpg, 'x']\nesc: \"http://a/\\x41.jpg\"\n---\n";
        let got = values_of(text);
        let want: Vec<(String, String, String, Option<char>)> = vec![
            ("title", "héllo", "héllo", None),
            ("headimg", "http://a/x.jpg", "http://a/x.jpg", None),
            ("photos[0]", "http://a/1.jpg", "http://a/1.jpg", None),
            ("photos[1]", "http://a/2.jpg", "http://a/2.jpg", None),
            ("nested.cover", "http://a/c.jpg", "http://a/c.jpg", None),
            ("commented", "http://a/k.jpg", "http://a/k.jpg", None),
            ("sq", "it's", "\'it\'\'s\'", Some('\'')),
            ("flow[0]", "http://a/f.jpg", "http://a/f.jpg", None),
            ("flow[1]", "x", "x", None),
            ("esc", "http://a/A.jpg", "\"http://a/\\x41.jpg\"", Some('"')),
        ]
        .into_iter()
        .map(|(a, b, c, d)| (a.into(), b.into(), c.into(), d))
        .collect();
        assert_eq!(got, want);
    }

    #[test]
    fn block_scalars_are_replaced_on_their_line() {
        let text = "---\nfolded: >-\n  http://a/f.jpg\nliteral: |\n    http://a/l.jpg\nkeep: |+\n  http://a/k.jpg\n\nafter: x\n---\n";
        let got = values_of(text);
        let urls: Vec<(&str, &str)> = got
            .iter()
            .map(|(k, _, raw, q)| {
                assert_eq!(*q, None);
                (k.as_str(), raw.as_str())
            })
            .collect();
        assert_eq!(
            urls,
            [
                ("folded", "http://a/f.jpg"),
                ("literal", "http://a/l.jpg"),
                ("keep", "http://a/k.jpg"),
                ("after", "x"),
            ]
        );
        // Over CRLF too.
        let text = "---\r\nheadimg: >-\r\n  http://a/f.jpg\r\n---\r\n";
        assert_eq!(values_of(text)[0].2, "http://a/f.jpg");
    }

    #[test]
    fn crlf_offsets_are_bytes() {
        let text = "---\r\ntitle: 'é'\r\nheadimg: 'http://a/x.jpg'\r\n---\r\n";
        let got = values_of(text);
        assert_eq!(got[1].2, "http://a/x.jpg");
    }

    #[test]
    fn invalid_yaml_names_the_line() {
        let text = "---\ntitle: ok\nbad: [unclosed\n---\nbody";
        let fm = split(text).expect("front matter");
        let err = values(text, &fm).expect_err("invalid yaml");
        let msg = err.to_string();
        assert!(msg.contains("front matter"), "{msg}");
        match err {
            ArticleError::FrontMatter { line, .. } => assert!((3..=5).contains(&line), "{line}"),
            other => panic!("unexpected {other:?}"),
        }
    }
}
