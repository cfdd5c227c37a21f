//! Text from the wire made safe for a terminal: principal names and e-texts are chosen by
//! whoever sends a packet, and an ESC or CR in them would let one unauthenticated AS-REQ
//! clear the screen or forge lines. Control characters are shown as visible escapes.

/// `s` with every control character written as `\xNN` (and `\n`, `\r`, `\t`, `\e`).
pub fn clean(s: &str) -> String {
    if !s.chars().any(char::is_control) {
        return s.to_string();
    }
    let mut out = String::with_capacity(s.len() + 8);
    for c in s.chars() {
        match c {
            '\n' => out.push_str("\\n"),
            '\r' => out.push_str("\\r"),
            '\t' => out.push_str("\\t"),
            '\u{1b}' => out.push_str("\\e"),
            c if c.is_control() => out.push_str(&format!("\\x{:02x}", c as u32)),
            c => out.push(c),
        }
    }
    out
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
        assert_eq!(clean("a\u{1b}[2Jb\r\nc\u{7}"), "a\\e[2Jb\\r\\nc\\x07");
        assert!(!clean("\u{9b}31m").chars().any(char::is_control));
        assert_eq!(fit("abcdef", 4), "abc…");
        assert_eq!(fit("abc", 4), "abc");
    }
}
