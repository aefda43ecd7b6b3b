//! For the conversion tests: the WIT side and the backends' side name every
//! variant and field alike, so a value converts correctly exactly when both
//! print the same.

/// Debug text without enum paths, fields in snake case: the generated
/// types print `Value::Integer(1)` and `as-text` where the backends'
/// print `Integer(1)` and `as_text`.
pub fn unqualified(text: String) -> String {
    let mut out = String::new();
    let mut word = String::new();
    let mut chars = text.chars().peekable();
    while let Some(c) = chars.next() {
        if c.is_alphanumeric() || c == '_' {
            word.push(c);
            continue;
        }
        if c == ':' && chars.peek() == Some(&':') && !word.is_empty() {
            chars.next();
            word.clear();
            continue;
        }
        out.push_str(&word);
        word.clear();
        out.push(c);
    }
    (out + &word).replace('-', "_")
}

pub fn same<A: std::fmt::Debug, B: std::fmt::Debug>(a: A, b: B) {
    assert_eq!(unqualified(format!("{a:?}")), unqualified(format!("{b:?}")));
}
