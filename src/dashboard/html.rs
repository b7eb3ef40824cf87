//! The one escaping helper: every text that goes into the page, in an
//! element or an attribute, goes through [`esc`].

use std::fmt;

/// `text` escaped for HTML text and quoted attribute values: `&`, `<`,
/// `>`, `"` and `'` become entities, so nothing in it can end an element
/// or an attribute.
pub fn esc(text: &str) -> Escaped<'_> {
    Escaped(text)
}

/// Text that [`fmt::Display`]s escaped.
pub struct Escaped<'a>(&'a str);

impl fmt::Display for Escaped<'_> {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        let mut rest = self.0;
        while let Some(i) = rest.find(['&', '<', '>', '"', '\'']) {
            f.write_str(&rest[..i])?;
            f.write_str(match rest.as_bytes()[i] {
                b'&' => "&amp;",
                b'<' => "&lt;",
                b'>' => "&gt;",
                b'"' => "&quot;",
                _ => "&#39;",
            })?;
            rest = &rest[i + 1..];
        }
        f.write_str(rest)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn escapes_what_could_end_an_element_or_attribute() {
        assert_eq!(
            esc(r#"<a href="x" title='y'>&amp;</a>"#).to_string(),
            "&lt;a href=&quot;x&quot; title=&#39;y&#39;&gt;&amp;amp;&lt;/a&gt;"
        );
        assert_eq!(esc("plain ünïcode").to_string(), "plain ünïcode");
        assert_eq!(esc("").to_string(), "");
    }
}
