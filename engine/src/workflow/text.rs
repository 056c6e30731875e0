//! The bytes of a workflow file before YAML sees them. The YAML scanner ends a document at a NUL byte without a word
//! (every step after it would silently vanish) and reads a byte-order mark as part of the first key; both are
//! settled here, with the position of anything refused.

use crate::config::{Located, Span};

const BOM: char = '\u{feff}';

/// The file's text: UTF-8, or an error at the line and column of the first byte that is not.
pub(super) fn decode(bytes: &[u8]) -> Result<&str, Located> {
    // Without the BOM, so that columns on the first line count as everywhere else.
    let bytes = bytes.strip_prefix("\u{feff}".as_bytes()).unwrap_or(bytes);
    match std::str::from_utf8(bytes) {
        Ok(text) => Ok(text),
        Err(e) => {
            let valid = std::str::from_utf8(&bytes[..e.valid_up_to()]).expect("valid up to here");
            Err(Located::new(end_of(valid), format!("byte 0x{:02x} is not UTF-8 text", bytes[e.valid_up_to()])))
        }
    }
}

/// `text` without a leading BOM; a control character (other than tab, line feed and carriage return) anywhere is
/// refused at its position.
pub(super) fn check(text: &str) -> Result<&str, Located> {
    let text = text.strip_prefix(BOM).unwrap_or(text);
    let bad = |c: char| (c.is_control() && !matches!(c, '\t' | '\n' | '\r')) || c == BOM;
    match text.char_indices().find(|(_, c)| bad(*c)) {
        None => Ok(text),
        Some((at, c)) => {
            let what = match c {
                '\0' => "a NUL byte".to_string(),
                BOM => "a byte-order mark (U+FEFF) after the start".to_string(),
                c => format!("control character U+{:04X}", c as u32),
            };
            Err(Located::new(
                end_of(&text[..at]),
                format!("{what}: a workflow is plain text (is this the right file?)"),
            ))
        }
    }
}

/// The position just after `prefix` (1-based line and column, columns counted in characters).
fn end_of(prefix: &str) -> Span {
    let line = prefix.matches('\n').count() + 1;
    let col = prefix.rsplit('\n').next().map_or(0, |l| l.chars().count()) + 1;
    Span::new(line as u32, col as u32)
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn a_bom_is_dropped_and_control_characters_are_placed() {
        assert_eq!(check(decode(b"\xef\xbb\xbfname: x\n").unwrap()).unwrap(), "name: x\n");
        let e = check("name: x\nsteps:\n  a\0b\n").unwrap_err();
        assert_eq!((e.span, e.message.starts_with("a NUL byte")), (Span::new(3, 4), true), "{}", e.message);
        let e = check("name: \x1b[0m\n").unwrap_err();
        assert!(e.message.contains("U+001B") && e.span == Span::new(1, 7), "{e:?}");
        let e = decode(b"a: 1\nb: \xff\n").unwrap_err();
        assert_eq!((e.span, e.message.as_str()), (Span::new(2, 4), "byte 0xff is not UTF-8 text"));
        assert_eq!(check("a:\tb\r\n").unwrap(), "a:\tb\r\n");
    }
}
