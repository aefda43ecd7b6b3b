//! Turns the caller and called numbers Vapi sends (E.164, national, `tel:`/`sip:` URIs) into
//! E.164 without ever failing, and masks numbers so that full numbers never reach a log.

/// An ISO 3166-1 alpha-2 country the product knows the dialling rules of.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Country {
    iso: &'static str,
    calling_code: &'static str,
    /// Shortest and longest national significant number: what follows the calling code in
    /// E.164, covering fixed, mobile and freephone numbers.
    min_len: usize,
    max_len: usize,
    /// Dialled before a national number at home and dropped after the calling code.
    trunk_prefix: Option<u8>,
    /// The country's own international prefix; `00` is accepted everywhere besides it.
    exit_prefix: &'static str,
}

const fn nanp(iso: &'static str) -> Country {
    // NANP's trunk prefix is the `1` of "1-415-555-0142", which is also its calling code.
    Country {
        iso,
        calling_code: "1",
        min_len: 10,
        max_len: 10,
        trunk_prefix: Some(b'1'),
        exit_prefix: "011",
    }
}

const fn country(
    iso: &'static str,
    calling_code: &'static str,
    min_len: usize,
    max_len: usize,
    trunk_prefix: Option<u8>,
    exit_prefix: &'static str,
) -> Country {
    Country {
        iso,
        calling_code,
        min_len,
        max_len,
        trunk_prefix,
        exit_prefix,
    }
}

const COUNTRIES: &[Country] = &[
    nanp("US"),
    nanp("CA"),
    nanp("PR"),
    nanp("VI"),
    nanp("GU"),
    nanp("DO"),
    nanp("JM"),
    nanp("BS"),
    nanp("BB"),
    nanp("TT"),
    country("GB", "44", 9, 10, Some(b'0'), "00"),
    country("IE", "353", 7, 10, Some(b'0'), "00"),
    country("DE", "49", 5, 13, Some(b'0'), "00"),
    country("FR", "33", 9, 9, Some(b'0'), "00"),
    country("ES", "34", 9, 9, None, "00"),
    // Italian fixed-line numbers keep their leading 0 after +39, so it is no trunk prefix.
    country("IT", "39", 6, 11, None, "00"),
    country("NL", "31", 7, 10, Some(b'0'), "00"),
    country("BE", "32", 8, 9, Some(b'0'), "00"),
    country("CH", "41", 9, 9, Some(b'0'), "00"),
    country("AT", "43", 4, 13, Some(b'0'), "00"),
    country("SE", "46", 6, 10, Some(b'0'), "00"),
    country("NO", "47", 8, 8, None, "00"),
    country("DK", "45", 8, 8, None, "00"),
    // Poland dropped its trunk prefix in 2009.
    country("PL", "48", 9, 9, None, "00"),
    country("PT", "351", 9, 9, None, "00"),
    country("AU", "61", 9, 10, Some(b'0'), "0011"),
    country("NZ", "64", 8, 10, Some(b'0'), "00"),
    country("IN", "91", 10, 11, Some(b'0'), "00"),
    // Mexico dropped its trunk prefixes (01, 044, 045) in 2019.
    country("MX", "52", 10, 10, None, "00"),
    country("BR", "55", 10, 11, Some(b'0'), "00"),
    country("JP", "81", 9, 10, Some(b'0'), "010"),
    country("SG", "65", 8, 11, None, "001"),
    country("ZA", "27", 9, 9, Some(b'0'), "00"),
];

impl Country {
    /// The country for an ISO 3166-1 alpha-2 code, in any case; `None` when it is not in the table.
    pub fn from_iso(code: &str) -> Option<Country> {
        COUNTRIES
            .iter()
            .find(|c| c.iso.eq_ignore_ascii_case(code))
            .copied()
    }

    /// The upper-case ISO 3166-1 alpha-2 code.
    pub fn iso(&self) -> &'static str {
        self.iso
    }

    /// The ITU calling code, digits only ("44").
    pub fn calling_code(&self) -> &'static str {
        self.calling_code
    }

    fn is_nanp(&self) -> bool {
        self.calling_code == "1"
    }

    /// Whether `nsn` (digits after the calling code) can be a number of this country.
    fn accepts(&self, nsn: &str) -> bool {
        if !(self.min_len..=self.max_len).contains(&nsn.len()) {
            return false;
        }
        let b = nsn.as_bytes();
        if self.is_nanp() {
            // NXX-NXX-XXXX: area code and exchange start with 2-9.
            return matches!(b.first(), Some(b'2'..=b'9')) && matches!(b.get(3), Some(b'2'..=b'9'));
        }
        match self.trunk_prefix {
            Some(trunk) => b.first() != Some(&trunk),
            None => true,
        }
    }
}

/// The table entry whose calling code starts `digits`; ITU calling codes are prefix-free, so
/// only entries sharing one code (NANP) can match together, and they share their rules.
fn country_for_calling_code(digits: &str) -> Option<&'static Country> {
    COUNTRIES
        .iter()
        .find(|c| digits.starts_with(c.calling_code))
}

/// The result of [`normalize`].
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Normalized {
    /// Valid E.164.
    E164(String),
    /// Could not be made E.164: `best_effort` is what to store instead (digits kept, `+` kept
    /// if given, separators removed; the trimmed input if it has no digits), `reason` a short
    /// static explanation for the warning log.
    Fallback {
        best_effort: String,
        reason: &'static str,
    },
}

impl Normalized {
    /// What to store: the E.164 number or the best-effort value.
    pub fn value(&self) -> &str {
        match self {
            Normalized::E164(number) => number,
            Normalized::Fallback { best_effort, .. } => best_effort,
        }
    }

    /// Whether the value is valid E.164.
    pub fn is_e164(&self) -> bool {
        matches!(self, Normalized::E164(_))
    }

    /// Why the number is not E.164, for the warning log; `None` when it is.
    pub fn reason(&self) -> Option<&'static str> {
        match self {
            Normalized::E164(_) => None,
            Normalized::Fallback { reason, .. } => Some(reason),
        }
    }
}

const EMPTY: &str = "empty";
const NOT_A_NUMBER: &str = "not a number";
const TOO_FEW_DIGITS: &str = "too few digits";
const TOO_MANY_DIGITS: &str = "too many digits";
const BAD_CALLING_CODE: &str = "invalid country calling code";
const INVALID_FOR_COUNTRY: &str = "invalid for its country";
const INVALID_FOR_DEFAULT: &str = "invalid for default country";

/// E.164 allows at most 15 digits; 8 is the product's floor, below which a "number" is far more
/// likely a typo or a short code than a real subscriber.
const E164_DIGITS: std::ops::RangeInclusive<usize> = 8..=15;

/// Longest first, so that "ext." is not read as "ext" followed by a stray dot.
const EXTENSION_MARKERS: [&str; 5] = [";ext=", "extension", "ext.", "ext", "x"];

/// Normalises `raw` using `default_country` for national numbers.
pub fn normalize(raw: &str, default_country: &Country) -> Normalized {
    let trimmed = raw.trim();
    if trimmed.is_empty() {
        return Normalized::Fallback {
            best_effort: String::new(),
            reason: EMPTY,
        };
    }
    let number = uri_user_part(trimmed).trim();
    let Some(body) = without_extension(number) else {
        return fallback(trimmed, number, NOT_A_NUMBER);
    };
    let Some((plus, digits)) = dialled_digits(body) else {
        return fallback(trimmed, number, NOT_A_NUMBER);
    };
    if digits.is_empty() {
        return fallback(trimmed, body, NOT_A_NUMBER);
    }
    let e164 = if plus {
        international(&digits)
    } else if let Some(rest) = without_exit_prefix(&digits, default_country) {
        international(rest)
    } else {
        national(&digits, default_country)
    };
    match e164 {
        Ok(number) => Normalized::E164(number),
        Err(reason) => fallback(trimmed, body, reason),
    }
}

/// For logs: keeps a leading `+` and the first 2 digits and the last 2 digits, replaces every
/// other digit with `*`, e.g. "+14155550142" -> "+14*******42"; anything with fewer than 6
/// digits becomes all `*` (except `+`). Works on any string (non-digits dropped, SIP URIs
/// reduced to their user part first).
pub fn mask(raw: &str) -> String {
    let number = uri_user_part(raw.trim());
    let digits: Vec<char> = number.chars().filter(char::is_ascii_digit).collect();
    let mut masked = String::with_capacity(digits.len() + 1);
    if starts_with_plus(number) {
        masked.push('+');
    }
    let keep_ends = digits.len() >= 6;
    for (i, digit) in digits.iter().enumerate() {
        if keep_ends && (i < 2 || i >= digits.len() - 2) {
            masked.push(*digit);
        } else {
            masked.push('*');
        }
    }
    masked
}

/// `text` with every phone number in it masked as [`mask`] does, or `None`
/// when it holds none. A number here is what [`normalize`] makes E.164 of: a
/// run of digits and the separators people write between them (spaces, `-`,
/// `.`, `(`, `)`), with an optional leading `+`, 8 to 15 digits, standing as
/// a word of its own (not glued to a letter, a digit, `/` or `_`, nor hyphened
/// to a word: so an id or a path in a URL is not taken for one). Not caught: numbers written as
/// words ("four one five ..."), national numbers that are not valid in
/// `default_country` without their country code, numbers split over
/// separators other than those, and numbers stored as JSON numbers.
pub fn mask_in_text(text: &str, default_country: &Country) -> Option<String> {
    let bytes = text.as_bytes();
    let starts_run = |b: u8| b.is_ascii_digit() || b == b'+' || b == b'(';
    let in_run = |b: u8| b.is_ascii_digit() || matches!(b, b' ' | b'-' | b'.' | b'(' | b')');
    let glued = |b: u8| b.is_ascii_alphanumeric() || b == b'/' || b == b'_';
    let mut out: Option<String> = None;
    let mut copied = 0;
    let mut i = 0;
    while i < bytes.len() {
        // Glued on the left: to a word, or to one by a hyphen (`call-4155550142`).
        let glued_left = i > 0
            && (glued(bytes[i - 1])
                || bytes[i - 1] == b'+'
                || (bytes[i - 1] == b'-' && i > 1 && bytes[i - 2].is_ascii_alphanumeric()));
        if !starts_run(bytes[i]) || glued_left {
            i += 1;
            continue;
        }
        let start = i;
        let mut end = i + 1;
        while end < bytes.len() && in_run(bytes[end]) {
            end += 1;
        }
        // The run ends at its last digit (a closing `)` of "(415)" aside, it
        // never ends on a separator).
        while end > start && !bytes[end - 1].is_ascii_digit() {
            end -= 1;
        }
        let digits = bytes[start..end]
            .iter()
            .filter(|b| b.is_ascii_digit())
            .count();
        let standalone = end == bytes.len() || !glued(bytes[end]);
        if standalone && E164_DIGITS.contains(&digits) {
            let run = &text[start..end];
            if !starts_with_a_date(run) && normalize(run, default_country).is_e164() {
                let masked = out.get_or_insert_with(String::new);
                masked.push_str(&text[copied..start]);
                masked.push_str(&mask(run));
                copied = end;
            }
        }
        i = end.max(start + 1);
    }
    out.map(|mut masked| {
        masked.push_str(&text[copied..]);
        masked
    })
}

/// `2026-12-07`, `2026.12.07 18`: a year, a month and a day, which can pass
/// for a national number with the hour after it.
fn starts_with_a_date(run: &str) -> bool {
    let mut groups = run.split(['-', '.', '/']);
    let year = groups.next().unwrap_or_default();
    let month = groups.next().unwrap_or_default();
    year.len() == 4
        && (year.starts_with("19") || year.starts_with("20"))
        && year.bytes().all(|b| b.is_ascii_digit())
        && matches!(month.parse::<u8>(), Ok(1..=12))
        && groups.next().is_some()
}

fn fallback(trimmed: &str, number: &str, reason: &'static str) -> Normalized {
    let digits: String = number.chars().filter(char::is_ascii_digit).collect();
    let best_effort = if digits.is_empty() {
        trimmed.to_owned()
    } else if starts_with_plus(number) {
        format!("+{digits}")
    } else {
        digits
    };
    Normalized::Fallback {
        best_effort,
        reason,
    }
}

fn starts_with_plus(number: &str) -> bool {
    number.trim_start_matches(is_separator).starts_with('+')
}

fn is_separator(c: char) -> bool {
    // `char::is_whitespace` covers the non-breaking and thin spaces of copied numbers; the
    // Unicode hyphens and minus come from word processors.
    c.is_whitespace()
        || matches!(
            c,
            '-' | '.' | '(' | ')' | '/' | '\u{2010}'..='\u{2015}' | '\u{2212}'
        )
}

/// The number inside a `tel:` or `sip:`/`sips:` URI (scheme in any case), or `s` itself.
fn uri_user_part(s: &str) -> &str {
    if let Some(rest) = strip_scheme(s, "tel:") {
        return before(rest, ';');
    }
    if let Some(rest) = strip_scheme(s, "sip:").or_else(|| strip_scheme(s, "sips:")) {
        // sip:user;params:password@host;uri-params
        return before(before(before(rest, '@'), ';'), ':');
    }
    s
}

fn strip_scheme<'a>(s: &'a str, scheme: &str) -> Option<&'a str> {
    let head = s.get(..scheme.len())?;
    let rest = s.get(scheme.len()..)?;
    head.eq_ignore_ascii_case(scheme).then_some(rest)
}

fn before(s: &str, delimiter: char) -> &str {
    s.find(delimiter).map_or(s, |at| &s[..at])
}

/// `number` without a trailing extension; `None` when something other than an extension
/// follows the dialled characters.
fn without_extension(number: &str) -> Option<&str> {
    let Some(at) = number.find(|c: char| !(c.is_ascii_digit() || c == '+' || is_separator(c)))
    else {
        return Some(number);
    };
    let (body, tail) = number.split_at(at);
    let tail = tail.to_ascii_lowercase();
    let after_marker = EXTENSION_MARKERS
        .iter()
        .find_map(|marker| tail.strip_prefix(marker))?;
    let extension = after_marker
        .trim_start_matches(|c: char| c.is_whitespace() || c == '.' || c == ':')
        .trim_end();
    (!extension.is_empty() && extension.bytes().all(|b| b.is_ascii_digit())).then_some(body)
}

/// Whether `body` starts with `+`, and its digits; `None` when a `+` is anywhere but first.
fn dialled_digits(body: &str) -> Option<(bool, String)> {
    let mut plus = false;
    let mut digits = String::with_capacity(body.len());
    for c in body.chars() {
        if c.is_ascii_digit() {
            digits.push(c);
        } else if c == '+' {
            if plus || !digits.is_empty() {
                return None;
            }
            plus = true;
        }
    }
    Some((plus, digits))
}

fn without_exit_prefix<'a>(digits: &'a str, country: &Country) -> Option<&'a str> {
    digits
        .strip_prefix(country.exit_prefix)
        .or_else(|| digits.strip_prefix("00"))
}

/// `digits` are everything after the `+` (or international prefix).
fn international(digits: &str) -> Result<String, &'static str> {
    match digits.as_bytes().first() {
        None => return Err(TOO_FEW_DIGITS),
        Some(b'0') => return Err(BAD_CALLING_CODE),
        Some(_) => {}
    }
    check_length(digits.len())?;
    let Some(country) = country_for_calling_code(digits) else {
        return Ok(format!("+{digits}"));
    };
    let mut nsn = &digits[country.calling_code.len()..];
    if country.trunk_prefix == Some(b'0') {
        // "+44 (0)20 …": such countries' numbers never start with 0 after the calling code, so
        // a 0 there can only be the trunk prefix written by habit.
        nsn = nsn.strip_prefix('0').unwrap_or(nsn);
    }
    if !country.accepts(nsn) {
        return Err(INVALID_FOR_COUNTRY);
    }
    check_length(country.calling_code.len() + nsn.len())?;
    Ok(format!("+{}{nsn}", country.calling_code))
}

fn check_length(digit_count: usize) -> Result<(), &'static str> {
    if digit_count < *E164_DIGITS.start() {
        Err(TOO_FEW_DIGITS)
    } else if digit_count > *E164_DIGITS.end() {
        Err(TOO_MANY_DIGITS)
    } else {
        Ok(())
    }
}

fn national(digits: &str, country: &Country) -> Result<String, &'static str> {
    let nsn = match country.trunk_prefix {
        Some(trunk) if digits.as_bytes().first() == Some(&trunk) => &digits[1..],
        _ => digits,
    };
    if country.accepts(nsn) {
        if let Ok(e164) = international(&format!("{}{nsn}", country.calling_code)) {
            return Ok(e164);
        }
    }
    // Numbers stored without their `+` ("442079460018") are common when E.164 checks are off.
    if digits.starts_with(country.calling_code) {
        if let Ok(e164) = international(digits) {
            return Ok(e164);
        }
    }
    if nsn.len() < country.min_len {
        Err(TOO_FEW_DIGITS)
    } else if nsn.len() > country.max_len {
        Err(TOO_MANY_DIGITS)
    } else {
        Err(INVALID_FOR_DEFAULT)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn country(iso: &str) -> Country {
        Country::from_iso(iso).expect("country in table")
    }

    fn e164(raw: &str, iso: &str) -> String {
        match normalize(raw, &country(iso)) {
            Normalized::E164(number) => number,
            other => panic!("{raw:?} with {iso}: expected E.164, got {other:?}"),
        }
    }

    fn fallback_of(raw: &str, iso: &str) -> (String, &'static str) {
        match normalize(raw, &country(iso)) {
            Normalized::Fallback {
                best_effort,
                reason,
            } => (best_effort, reason),
            other => panic!("{raw:?} with {iso}: expected a fallback, got {other:?}"),
        }
    }

    #[test]
    fn country_lookup_ignores_case() {
        let us = Country::from_iso("us").unwrap();
        assert_eq!(us.iso(), "US");
        assert_eq!(us.calling_code(), "1");
        assert_eq!(Country::from_iso("Gb").unwrap().calling_code(), "44");
        assert_eq!(Country::from_iso("XX"), None);
        assert_eq!(Country::from_iso(""), None);
        assert_eq!(Country::from_iso("USA"), None);
        assert_eq!(Country::from_iso("ü"), None);
    }

    #[test]
    fn table_is_consistent() {
        for (i, c) in COUNTRIES.iter().enumerate() {
            assert_eq!(c.iso.len(), 2, "{}", c.iso);
            assert!(c.iso.bytes().all(|b| b.is_ascii_uppercase()), "{}", c.iso);
            assert!(COUNTRIES[..i].iter().all(|o| o.iso != c.iso), "{}", c.iso);
            assert!(c.min_len <= c.max_len, "{}", c.iso);
            assert!(c.calling_code.len() + c.max_len <= 15, "{}", c.iso);
            assert!(!c.calling_code.starts_with('0'), "{}", c.iso);
            assert!(c.exit_prefix.starts_with('0'), "{}", c.iso);
            for other in COUNTRIES {
                if other.calling_code != c.calling_code {
                    assert!(
                        !other.calling_code.starts_with(c.calling_code),
                        "{} is a prefix of {}",
                        c.calling_code,
                        other.calling_code
                    );
                }
            }
        }
        for iso in [
            "US", "CA", "GB", "IE", "DE", "FR", "ES", "IT", "NL", "BE", "CH", "AT", "SE", "NO",
            "DK", "PL", "PT", "AU", "NZ", "IN", "MX", "BR", "JP", "SG", "ZA",
        ] {
            assert!(Country::from_iso(iso).is_some(), "{iso}");
        }
    }

    #[test]
    fn e164_input_with_separators() {
        assert_eq!(e164("+1 (415) 555-0142", "US"), "+14155550142");
        assert_eq!(e164("+14155550142", "GB"), "+14155550142");
        assert_eq!(e164("  +44 20 7946 0018 ", "US"), "+442079460018");
        assert_eq!(e164("+44.20.7946.0018", "US"), "+442079460018");
        assert_eq!(e164("+44/20/7946/0018", "US"), "+442079460018");
        assert_eq!(
            e164("+44\u{a0}20\u{a0}7946\u{a0}0018", "US"),
            "+442079460018"
        );
        assert_eq!(
            e164("+44 20\u{2011}7946\u{2013}0018", "US"),
            "+442079460018"
        );
        assert_eq!(e164("(+44) 20 7946 0018", "US"), "+442079460018");
    }

    #[test]
    fn e164_trunk_zero_written_after_calling_code_is_dropped() {
        assert_eq!(e164("+44 (0)20 7946 0018", "US"), "+442079460018");
        assert_eq!(e164("+49 (0)30 1234 5678", "US"), "+493012345678");
        // Italy's 0 belongs to the number.
        assert_eq!(e164("+39 (0)6 1234 5678", "US"), "+390612345678");
    }

    #[test]
    fn e164_uses_country_rules_when_calling_code_is_known() {
        for bad in [
            "+1 415 555 014",   // 9 digits after the 1
            "+1 415 555 01420", // 11
            "+1 015 555 0142",  // area code starts with 0
            "+1 115 555 0142",  // area code starts with 1
            "+1 415 055 0142",  // exchange starts with 0
            "+1 415 155 0142",  // exchange starts with 1
            "+33 1 23 45 67 8", // France needs 9
            "+44 0 0 20 7946 0018",
        ] {
            assert_eq!(fallback_of(bad, "US").1, INVALID_FOR_COUNTRY, "{bad}");
        }
        assert_eq!(e164("+1 604 555 0199", "GB"), "+16045550199");
    }

    #[test]
    fn e164_unknown_calling_code_uses_generic_rule() {
        assert_eq!(e164("+971 50 123 4567", "US"), "+971501234567");
        assert_eq!(e164("+86 10 1234 5678", "US"), "+861012345678");
        assert_eq!(e164("+290 12345", "US"), "+29012345");
    }

    #[test]
    fn national_nanp() {
        assert_eq!(e164("415-555-0142", "US"), "+14155550142");
        assert_eq!(e164("(415) 555-0142", "US"), "+14155550142");
        assert_eq!(e164("1-415-555-0142", "US"), "+14155550142");
        assert_eq!(e164("14155550142", "US"), "+14155550142");
        assert_eq!(e164("604 555 0199", "CA"), "+16045550199");
        assert_eq!(e164("787 555 0100", "PR"), "+17875550100");
        assert_eq!(
            fallback_of("015 555 0142", "US"),
            ("0155550142".into(), INVALID_FOR_DEFAULT)
        );
        assert_eq!(
            fallback_of("2-415-555-0142", "US"),
            ("24155550142".into(), TOO_MANY_DIGITS)
        );
    }

    #[test]
    fn national_with_trunk_prefix() {
        assert_eq!(e164("020 7946 0018", "GB"), "+442079460018");
        assert_eq!(e164("07700 900123", "GB"), "+447700900123");
        assert_eq!(e164("030 12345678", "DE"), "+493012345678");
        assert_eq!(e164("01 23 45 67 89", "FR"), "+33123456789");
        assert_eq!(e164("020 123 4567", "NL"), "+31201234567");
        assert_eq!(e164("02 123 45 67", "BE"), "+3221234567");
        assert_eq!(e164("044 668 18 00", "CH"), "+41446681800");
        assert_eq!(e164("01 234567", "AT"), "+431234567");
        assert_eq!(e164("08-123 456 78", "SE"), "+46812345678");
        assert_eq!(e164("01 234 5678", "IE"), "+35312345678");
        assert_eq!(e164("0412 345 678", "AU"), "+61412345678");
        assert_eq!(e164("021 123 4567", "NZ"), "+64211234567");
        assert_eq!(e164("098765 43210", "IN"), "+919876543210");
        assert_eq!(e164("(011) 91234-5678", "BR"), "+5511912345678");
        assert_eq!(e164("03-1234-5678", "JP"), "+81312345678");
        assert_eq!(e164("021 123 4567", "ZA"), "+27211234567");
    }

    #[test]
    fn national_without_trunk_prefix() {
        // Written without the trunk prefix, as people often do.
        assert_eq!(e164("20 7946 0018", "GB"), "+442079460018");
        assert_eq!(e164("912 345 678", "ES"), "+34912345678");
        assert_eq!(e164("22 12 34 56", "NO"), "+4722123456");
        assert_eq!(e164("32 12 34 56", "DK"), "+4532123456");
        assert_eq!(e164("12 345 67 89", "PL"), "+48123456789");
        assert_eq!(e164("21 234 5678", "PT"), "+351212345678");
        assert_eq!(e164("55 1234 5678", "MX"), "+525512345678");
        assert_eq!(e164("6123 4567", "SG"), "+6561234567");
        assert_eq!(e164("(11) 91234-5678", "BR"), "+5511912345678");
    }

    #[test]
    fn national_italy_keeps_leading_zero() {
        assert_eq!(e164("06 1234 5678", "IT"), "+390612345678");
        assert_eq!(e164("+39 06 1234 5678", "US"), "+390612345678");
        assert_eq!(e164("312 345 6789", "IT"), "+393123456789");
    }

    #[test]
    fn national_already_carrying_calling_code() {
        assert_eq!(e164("442079460018", "GB"), "+442079460018");
        assert_eq!(e164("33 1 23 45 67 89", "FR"), "+33123456789");
    }

    #[test]
    fn national_wrong_length_for_default_country() {
        assert_eq!(
            fallback_of("555-0142", "US"),
            ("5550142".into(), TOO_FEW_DIGITS)
        );
        assert_eq!(
            fallback_of("020 7946 00", "GB"),
            ("020794600".into(), TOO_FEW_DIGITS)
        );
        assert_eq!(
            fallback_of("020 7946 0018 99", "GB"),
            ("0207946001899".into(), TOO_MANY_DIGITS)
        );
        assert_eq!(
            fallback_of("00 1234", "FR"),
            ("001234".into(), TOO_FEW_DIGITS)
        );
    }

    #[test]
    fn international_prefixes() {
        assert_eq!(e164("0044 20 7946 0018", "GB"), "+442079460018");
        assert_eq!(e164("0044 20 7946 0018", "US"), "+442079460018");
        assert_eq!(e164("011 44 20 7946 0018", "US"), "+442079460018");
        assert_eq!(e164("011 44 20 7946 0018", "CA"), "+442079460018");
        assert_eq!(e164("0011 44 20 7946 0018", "AU"), "+442079460018");
        assert_eq!(e164("010 1 415 555 0142", "JP"), "+14155550142");
        assert_eq!(e164("001 1 415 555 0142", "SG"), "+14155550142");
        assert_eq!(e164("001 415 555 0142", "DE"), "+14155550142");
        // 011 is only NANP's.
        assert!(!normalize("011 44 20 7946 0018", &country("GB")).is_e164());
        assert_eq!(
            fallback_of("000 44 20 7946 0018", "DE"),
            ("000442079460018".into(), BAD_CALLING_CODE)
        );
    }

    #[test]
    fn uris() {
        assert_eq!(
            e164("sip:+14155550142@sip.example.com", "GB"),
            "+14155550142"
        );
        assert_eq!(
            e164("SIP:+14155550142;user=phone@sip.example.com", "GB"),
            "+14155550142"
        );
        assert_eq!(
            e164("sips:+442079460018@example.com;transport=tls", "US"),
            "+442079460018"
        );
        assert_eq!(e164("sip:14155550142@10.0.0.1:5060", "US"), "+14155550142");
        assert_eq!(e164("sip:+14155550142", "US"), "+14155550142");
        assert_eq!(e164("tel:+14155550142", "GB"), "+14155550142");
        assert_eq!(e164("TEL:+1-415-555-0142;ext=7", "GB"), "+14155550142");
        assert_eq!(e164("tel:415-555-0142", "US"), "+14155550142");
        assert_eq!(
            fallback_of("sip:alice@example.com", "US"),
            ("sip:alice@example.com".into(), NOT_A_NUMBER)
        );
        // The host's digits are not the number's.
        assert_eq!(
            fallback_of("sip:1234@10.0.0.1", "US"),
            ("1234".into(), TOO_FEW_DIGITS)
        );
    }

    #[test]
    fn extensions_are_dropped() {
        for raw in [
            "+1 415 555 0142 ext. 12",
            "+1 415 555 0142 ext 12",
            "+1 415 555 0142 EXT:12",
            "+1 415 555 0142 extension 12",
            "+1 415 555 0142x123",
            "+1 415 555 0142 x 123",
            "+14155550142;ext=123",
            "415-555-0142 ext. 9",
        ] {
            assert_eq!(e164(raw, "US"), "+14155550142", "{raw}");
        }
        let (best_effort, reason) = fallback_of("555-0142 x12", "US");
        assert_eq!((best_effort.as_str(), reason), ("5550142", TOO_FEW_DIGITS));
    }

    #[test]
    fn letters_are_not_a_number() {
        assert_eq!(fallback_of("abc", "US"), ("abc".into(), NOT_A_NUMBER));
        assert_eq!(
            fallback_of("415-CALL-NOW", "US"),
            ("415".into(), NOT_A_NUMBER)
        );
        assert_eq!(
            fallback_of("+1 415 555 0142 ext", "US"),
            ("+14155550142".into(), NOT_A_NUMBER)
        );
        assert_eq!(
            fallback_of("+1 415 555 0142 x12a", "US"),
            ("+1415555014212".into(), NOT_A_NUMBER)
        );
        assert_eq!(
            fallback_of("+1 415 + 555 0142", "US"),
            ("+14155550142".into(), NOT_A_NUMBER)
        );
        assert_eq!(fallback_of("x123", "US"), ("x123".into(), NOT_A_NUMBER));
        assert_eq!(fallback_of("(-)", "US"), ("(-)".into(), NOT_A_NUMBER));
        assert_eq!(fallback_of(" + ", "US"), ("+".into(), NOT_A_NUMBER));
        // Only ASCII digits are dialled digits.
        assert_eq!(fallback_of("+٤٤٢٠٧٩٤٦٠٠١٨", "US").1, NOT_A_NUMBER);
    }

    #[test]
    fn invalid_inputs_fall_back() {
        assert_eq!(fallback_of("12345", "US"), ("12345".into(), TOO_FEW_DIGITS));
        assert_eq!(fallback_of("", "US"), (String::new(), EMPTY));
        assert_eq!(fallback_of(" \t\u{a0}", "US"), (String::new(), EMPTY));
        assert_eq!(
            fallback_of("+0123456789", "US"),
            ("+0123456789".into(), BAD_CALLING_CODE)
        );
        assert_eq!(
            fallback_of("+1234567890123456", "US"),
            ("+1234567890123456".into(), TOO_MANY_DIGITS)
        );
        assert_eq!(
            fallback_of("+971 1234", "US"),
            ("+9711234".into(), TOO_FEW_DIGITS)
        );
        assert_eq!(
            fallback_of("+971 2345 6789 0123 4", "US"),
            ("+9712345678901234".into(), TOO_MANY_DIGITS)
        );
    }

    #[test]
    fn normalized_accessors() {
        let ok = normalize("+14155550142", &country("US"));
        assert!(ok.is_e164());
        assert_eq!(ok.value(), "+14155550142");
        assert_eq!(ok.reason(), None);
        let bad = normalize("555-0142", &country("US"));
        assert!(!bad.is_e164());
        assert_eq!(bad.value(), "5550142");
        assert_eq!(bad.reason(), Some(TOO_FEW_DIGITS));
    }

    #[test]
    fn mask_examples() {
        assert_eq!(mask("+14155550142"), "+14*******42");
        assert_eq!(mask("+1 (415) 555-0142"), "+14*******42");
        assert_eq!(mask("4155550142"), "41******42");
        assert_eq!(mask("123456"), "12**56");
        assert_eq!(mask("12345"), "*****");
        assert_eq!(mask("+12345"), "+*****");
        assert_eq!(mask("+1"), "+*");
        assert_eq!(mask(""), "");
        assert_eq!(mask("abc"), "");
        assert_eq!(mask("sip:+14155550142@sip.example.com"), "+14*******42");
        assert_eq!(mask("sips:442079460018@10.1.2.3:5061"), "44********18");
        assert_eq!(mask("sip:alice@10.1.2.3"), "");
        assert_eq!(mask("tel:+14155550142;ext=99"), "+14*******42");
        assert_eq!(mask("call me on 020 7946 0018!"), "02*******18");
    }

    /// Every assertion that must hold for any input whatsoever.
    fn check_invariants(raw: &str) {
        for default in [country("US"), country("GB"), country("IT")] {
            match normalize(raw, &default) {
                Normalized::E164(number) => {
                    let digits = number.strip_prefix('+').expect("E.164 starts with +");
                    assert!(E164_DIGITS.contains(&digits.len()), "{raw:?} -> {number}");
                    assert!(digits.bytes().all(|b| b.is_ascii_digit()), "{raw:?}");
                    assert!(!digits.starts_with('0'), "{raw:?} -> {number}");
                    assert_eq!(
                        normalize(&number, &default),
                        Normalized::E164(number.clone()),
                        "not idempotent for {raw:?}"
                    );
                }
                Normalized::Fallback {
                    best_effort,
                    reason,
                } => {
                    assert!(!reason.is_empty());
                    assert!(best_effort.len() <= raw.trim().len(), "{raw:?}");
                }
            }
        }
        let masked = mask(raw);
        assert!(
            masked
                .chars()
                .all(|c| c == '+' || c == '*' || c.is_ascii_digit()),
            "{raw:?} -> {masked:?}"
        );
        let longest_run = masked
            .split(|c: char| !c.is_ascii_digit())
            .map(str::len)
            .max()
            .unwrap_or(0);
        assert!(longest_run <= 2, "{raw:?} -> {masked:?}");
        let chars: Vec<char> = raw.chars().collect();
        for window in chars.windows(6) {
            if window.iter().all(char::is_ascii_digit) {
                let run: String = window.iter().collect();
                assert!(!masked.contains(&run), "{raw:?} -> {masked:?}");
            }
        }
    }

    /// Calls `visit` with every concatenation of up to `max_len` pieces from `alphabet`.
    fn each_combination(alphabet: &[&str], max_len: usize, visit: &mut dyn FnMut(&str)) {
        let mut indices: Vec<usize> = Vec::new();
        let mut text = String::new();
        loop {
            text.clear();
            for &i in &indices {
                text.push_str(alphabet[i]);
            }
            visit(&text);
            // Odometer increment; grow when every position has wrapped.
            let mut position = indices.len();
            loop {
                if position == 0 {
                    if indices.len() == max_len {
                        return;
                    }
                    indices.iter_mut().for_each(|i| *i = 0);
                    indices.push(0);
                    break;
                }
                position -= 1;
                indices[position] += 1;
                if indices[position] < alphabet.len() {
                    break;
                }
                indices[position] = 0;
            }
        }
    }

    #[test]
    fn property_small_alphabet_never_panics_or_leaks() {
        let mut count = 0;
        each_combination(
            &["0", "1", "4", "+", " ", "x", ";", "\u{a0}"],
            6,
            &mut |s| {
                check_invariants(s);
                count += 1;
            },
        );
        assert_eq!(count, (0..=6).map(|n| 8usize.pow(n)).sum::<usize>());
    }

    #[test]
    fn property_tokens_never_panic_or_leak() {
        let tokens = [
            "sip:", "tel:", "sips:", "+", "00", "011", "44", "1", "0", "415", "5550142", "@",
            ";ext=", "x", " ", "(0)", "é", "ext. ", ":",
        ];
        each_combination(&tokens, 4, &mut |s| check_invariants(s));
    }

    #[test]
    fn property_long_generated_strings_never_panic_or_leak() {
        let pool: Vec<char> = "0123456789+-.()/ xXeEtT;=:@sSiIpP#abc\u{a0}\u{2011}é€٣＋\t\n\u{0}"
            .chars()
            .collect();
        // A fixed xorshift sequence: deterministic, yet far from the shapes tested above.
        let mut next = crate::test_support::xorshift(0x9E37_79B9_7F4A_7C15);
        for _ in 0..3000 {
            let len = (next() % 300) as usize;
            let digit_heavy = next().is_multiple_of(2);
            let s: String = (0..len)
                .map(|_| {
                    let r = next() as usize;
                    if digit_heavy && !r.is_multiple_of(3) {
                        char::from(b'0' + (r / 3 % 10) as u8)
                    } else {
                        pool[r % pool.len()]
                    }
                })
                .collect();
            check_invariants(&s);
            check_invariants(&format!("+{s}"));
            check_invariants(&format!("sip:{s}@example.com"));
        }
    }

    #[test]
    fn numbers_in_free_text_are_masked_and_the_rest_is_kept() {
        let us = Country::from_iso("US").unwrap();
        let cases = [
            (
                "AI: Can I call you back?\nUser: Sure, at 415-555-0142.",
                "AI: Can I call you back?\nUser: Sure, at 41******42.",
            ),
            (
                "my cell is (415) 555 0142, thanks",
                "my cell is 41******42, thanks",
            ),
            (
                "+44 20 7946 0958 is the office",
                "+44********58 is the office",
            ),
            (
                "call +14155550142 or 415.555.0199",
                "call +14*******42 or 41******99",
            ),
            ("number=+14155550142&x=1", "number=+14*******42&x=1"),
        ];
        for (text, masked) in cases {
            assert_eq!(mask_in_text(text, &us).as_deref(), Some(masked), "{text}");
        }
        for untouched in [
            "The call lasted 2026-12-07 18:42, cost $0.42.",
            "booked 2026.12.07 10 am",
            "order 12345, booked for 3 people",
            "https://storage.vapi.ai/4155550142-recording.wav",
            "call-4155550142",
            "0b5e3c1d-2a4f-4e6b-8c7d-415555014299",
            "id_4155550142",
            "seven digits 555-0142",
            "four one five five five five zero one four two",
            "",
        ] {
            assert_eq!(mask_in_text(untouched, &us), None, "{untouched}");
        }
    }
}
