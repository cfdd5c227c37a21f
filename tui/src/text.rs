//! Text from the wire made safe for a terminal: principal names and e-texts are chosen by
//! whoever sends a packet, and an ESC or CR in them would let one unauthenticated AS-REQ
//! clear the screen or forge lines. Control characters are shown as visible escapes.

/// `s` with every control and invisible format character escaped, as the listing and the
/// report show them (one rule for every text output).
pub fn clean(s: &str) -> String {
    kcd_export::visible(s).into_owned()
}

/// At most `width` characters of `s`, with an ellipsis when cut.
pub fn fit(s: &str, width: usize) -> String {
    if s.chars().count() <= width {
        return s.to_string();
    }
    if width == 0 {
        return String::new();
    }
    let mut t: String = s.chars().take(width - 1).collect();
    t.push('…');
    t
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn control_characters_are_visible_not_executed() {
        assert_eq!(clean("alice@LAB.TEST"), "alice@LAB.TEST");
        assert_eq!(clean("a\u{1b}[2Jb\r\nc\u{7}"), "a\\x1b[2Jb\\r\\nc\\x07");
        assert!(!clean("\u{9b}31m").chars().any(char::is_control));
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
