//! Onboarding domain types: raw application input is parsed into these once, at the edge,
//! and the rest of the identity service only ever sees values already known to be well
//! formed — a unified social credit code with a correct check character, a resident identity
//! number with a real birth date, an org key that is a usable ed25519 point.
//!
//! Personal data (a person's name, ID number, e-mail, phone) has a redacted `Debug` so it
//! cannot reach logs by accident; the code that stores or encrypts it asks for the text
//! explicitly.

use std::fmt;

use trellis_consensus::PublicKey;
use trellis_consensus::crypto;

/// A field of the input that did not parse, named by its JSON path
/// (e.g. `legal_representative.id_number`) so the API can point at it.
#[derive(Debug, Clone, PartialEq, Eq, thiserror::Error)]
#[error("field `{field}`: {reason}")]
pub struct DomainError {
    pub field: String,
    pub reason: String,
}

impl DomainError {
    pub fn new(field: &str, reason: impl Into<String>) -> DomainError {
        DomainError {
            field: field.to_string(),
            reason: reason.into(),
        }
    }
}

/// Characters that are not control characters but can still make a name render differently
/// from what it holds (zero-width characters and bidirectional overrides), which would let an
/// applicant disguise a name in front of a reviewer.
fn is_invisible_format(c: char) -> bool {
    matches!(c, '\u{200B}'..='\u{200F}' | '\u{202A}'..='\u{202E}' | '\u{2060}'..='\u{2064}'
        | '\u{2066}'..='\u{2069}' | '\u{FEFF}')
}

/// Trims `s` and checks it is 1..=`max` characters of printable text.
fn printable_text<'a>(s: &'a str, field: &str, max: usize) -> Result<&'a str, DomainError> {
    let t = s.trim();
    let n = t.chars().count();
    if n == 0 {
        return Err(DomainError::new(field, "must not be empty"));
    }
    if n > max {
        return Err(DomainError::new(
            field,
            format!("must be at most {max} characters, got {n}"),
        ));
    }
    if t.chars().any(char::is_control) {
        return Err(DomainError::new(
            field,
            "must not contain control characters",
        ));
    }
    if t.chars().any(is_invisible_format) {
        return Err(DomainError::new(
            field,
            "must not contain zero-width or bidirectional formatting characters",
        ));
    }
    Ok(t)
}

// ---------------------------------------------------------------------------------------------
// Unified social credit code (GB 32100-2015)
// ---------------------------------------------------------------------------------------------

/// The 31 characters a credit code is written in: digits and upper-case letters without
/// I, O, Z, S, V (too easily confused with 1, 0, 2, 5, U).
const CREDIT_ALPHABET: &[u8; 31] = b"0123456789ABCDEFGHJKLMNPQRTUWXY";
/// Weight of position i is 3^i mod 31.
const CREDIT_WEIGHTS: [u32; 17] = [
    1, 3, 9, 27, 19, 26, 16, 17, 20, 29, 25, 13, 8, 24, 10, 30, 28,
];

fn credit_value(c: u8) -> Option<u32> {
    CREDIT_ALPHABET
        .iter()
        .position(|&a| a == c)
        .map(|i| i as u32)
}

/// The check character for the first 17 characters of a credit code. `None` if any is
/// outside the alphabet.
pub fn credit_code_check_char(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0u32;
    for (&c, w) in first17.iter().zip(CREDIT_WEIGHTS) {
        sum += credit_value(c)? * w;
    }
    let check = (31 - sum % 31) % 31;
    Some(char::from(CREDIT_ALPHABET[check as usize]))
}

/// An enterprise's unified social credit code (统一社会信用代码, GB 32100-2015): 18
/// characters, positions 3–8 the administrative division code, the last a check character.
/// Public business data, so `Debug` shows it.
#[derive(Clone, Debug, PartialEq, Eq, PartialOrd, Ord, Hash)]
pub struct CreditCode(String);

impl CreditCode {
    pub fn parse(s: &str, field: &str) -> Result<CreditCode, DomainError> {
        let n = s.chars().count();
        if n != 18 {
            return Err(DomainError::new(
                field,
                format!("a unified social credit code has 18 characters, got {n}"),
            ));
        }
        for (i, c) in s.chars().enumerate() {
            let pos = i + 1;
            if c.is_ascii_lowercase() {
                return Err(DomainError::new(
                    field,
                    format!(
                        "character {pos} `{c}` is lower-case; the code is defined in upper case"
                    ),
                ));
            }
            if !c.is_ascii() || credit_value(c as u8).is_none() {
                return Err(DomainError::new(
                    field,
                    format!(
                        "character {pos} `{c}` is not in the code alphabet \
                         (digits and A–Y without I, O, S, V, Z)"
                    ),
                ));
            }
            if (3..=8).contains(&pos) && !c.is_ascii_digit() {
                return Err(DomainError::new(
                    field,
                    format!(
                        "character {pos} `{c}` must be a digit (characters 3–8 are the \
                         administrative division code)"
                    ),
                ));
            }
        }
        // All 18 characters are ASCII now, so byte indexing is character indexing.
        let bytes = s.as_bytes();
        let mut first17 = [0u8; 17];
        first17.copy_from_slice(&bytes[..17]);
        let expected = credit_code_check_char(&first17)
            .ok_or_else(|| DomainError::new(field, "not in the code alphabet"))?;
        let got = char::from(bytes[17]);
        if got != expected {
            return Err(DomainError::new(
                field,
                format!("check character is `{got}`, the code requires `{expected}`"),
            ));
        }
        Ok(CreditCode(s.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }

    /// The administrative division code (characters 3–8) of the registering authority.
    pub fn division_code(&self) -> &str {
        &self.0[2..8]
    }
}

impl fmt::Display for CreditCode {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

// ---------------------------------------------------------------------------------------------
// PRC resident identity number (GB 11643-1999)
// ---------------------------------------------------------------------------------------------

/// ISO 7064 MOD 11-2 weights (2^(17-i) mod 11) for the first 17 digits.
const ID_WEIGHTS: [u32; 17] = [7, 9, 10, 5, 8, 4, 2, 1, 6, 3, 7, 9, 10, 5, 8, 4, 2];

/// The check character for the first 17 digits of a resident identity number. `None` if any
/// is not an ASCII digit.
pub fn resident_id_check_char(first17: &[u8; 17]) -> Option<char> {
    let mut sum = 0u32;
    for (&c, w) in first17.iter().zip(ID_WEIGHTS) {
        if !c.is_ascii_digit() {
            return None;
        }
        sum += u32::from(c - b'0') * w;
    }
    match (12 - sum % 11) % 11 {
        10 => Some('X'),
        v => char::from_digit(v, 10),
    }
}

fn is_leap_year(y: i32) -> bool {
    (y % 4 == 0 && y % 100 != 0) || y % 400 == 0
}

fn days_in_month(y: i32, m: u32) -> u32 {
    match m {
        1 | 3 | 5 | 7 | 8 | 10 | 12 => 31,
        4 | 6 | 9 | 11 => 30,
        2 if is_leap_year(y) => 29,
        2 => 28,
        _ => 0,
    }
}

/// A PRC resident identity number (居民身份证号码): 17 digits and a check character, with a
/// real birth date at characters 7–14.
///
/// Personal data: `Debug` and `Display` never show it. The code that encrypts it for storage
/// calls [`ResidentId::expose_secret`].
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct ResidentId {
    number: String,
    birth: (i32, u32, u32),
}

impl ResidentId {
    /// Parses `s`, refusing birth dates before 1900 or after `today` (year, month, day).
    /// Reasons never quote the number.
    pub fn parse(s: &str, field: &str, today: (i32, u32, u32)) -> Result<ResidentId, DomainError> {
        let n = s.chars().count();
        if n != 18 {
            return Err(DomainError::new(
                field,
                format!("a resident identity number has 18 characters, got {n}"),
            ));
        }
        for (i, c) in s.chars().enumerate() {
            let pos = i + 1;
            if c.is_ascii_digit() || (pos == 18 && c == 'X') {
                continue;
            }
            let reason = if pos == 18 && c == 'x' {
                "the check character must be an upper-case `X`".to_string()
            } else if pos == 18 {
                "character 18 must be a digit or `X`".to_string()
            } else {
                format!("character {pos} must be a digit")
            };
            return Err(DomainError::new(field, reason));
        }
        // All ASCII now: byte indexing is character indexing.
        let bytes = s.as_bytes();
        let digits = |r: std::ops::Range<usize>| {
            bytes[r]
                .iter()
                .fold(0u32, |acc, &b| acc * 10 + u32::from(b - b'0'))
        };
        let (year, month, day) = (digits(6..10) as i32, digits(10..12), digits(12..14));
        if year < 1900 {
            return Err(DomainError::new(
                field,
                "birth year (characters 7–10) is before 1900",
            ));
        }
        if !(1..=12).contains(&month) {
            return Err(DomainError::new(
                field,
                "birth month (characters 11–12) is not 01–12",
            ));
        }
        if day == 0 || day > days_in_month(year, month) {
            return Err(DomainError::new(
                field,
                "birth date (characters 7–14) is not a calendar date",
            ));
        }
        if (year, month, day) > today {
            return Err(DomainError::new(
                field,
                "birth date (characters 7–14) is in the future",
            ));
        }
        let mut first17 = [0u8; 17];
        first17.copy_from_slice(&bytes[..17]);
        let expected = resident_id_check_char(&first17)
            .ok_or_else(|| DomainError::new(field, "characters 1–17 must be digits"))?;
        if char::from(bytes[17]) != expected {
            return Err(DomainError::new(
                field,
                "check character does not match (ISO 7064 MOD 11-2)",
            ));
        }
        Ok(ResidentId {
            number: s.to_string(),
            birth: (year, month, day),
        })
    }

    /// The number itself, for the code that encrypts it. Never log the result.
    pub fn expose_secret(&self) -> &str {
        &self.number
    }

    /// Birth date as (year, month, day).
    pub fn birth_date(&self) -> (i32, u32, u32) {
        self.birth
    }
}

impl fmt::Debug for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("ResidentId(***)")
    }
}

impl fmt::Display for ResidentId {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("***")
    }
}

// ---------------------------------------------------------------------------------------------
// Names and contacts
// ---------------------------------------------------------------------------------------------

/// A natural person's name (legal representative, contact): 1–64 characters after trimming.
/// Personal data: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct PersonName(String);

impl PersonName {
    pub const MAX_CHARS: usize = 64;

    pub fn parse(s: &str, field: &str) -> Result<PersonName, DomainError> {
        printable_text(s, field, Self::MAX_CHARS).map(|t| PersonName(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for PersonName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("PersonName(***)")
    }
}

/// An enterprise's registered legal name: 1–200 characters after trimming. Public business
/// data, so `Debug` shows it.
#[derive(Clone, Debug, PartialEq, Eq, Hash)]
pub struct LegalName(String);

impl LegalName {
    pub const MAX_CHARS: usize = 200;

    pub fn parse(s: &str, field: &str) -> Result<LegalName, DomainError> {
        printable_text(s, field, Self::MAX_CHARS).map(|t| LegalName(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Display for LegalName {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.0)
    }
}

/// A contact e-mail address. Only the shape is checked (one `@`, a dotted domain); whether
/// it is reachable is for a confirmation mail to find out. The domain is stored lower-case,
/// as domains are case-insensitive; the local part is kept as given. Personal data: `Debug`
/// is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Email(String);

impl Email {
    pub const MAX_CHARS: usize = 254;
    const MAX_LOCAL_CHARS: usize = 64;

    pub fn parse(s: &str, field: &str) -> Result<Email, DomainError> {
        let t = s.trim();
        if t.is_empty() {
            return Err(DomainError::new(field, "must not be empty"));
        }
        if t.chars().count() > Self::MAX_CHARS {
            return Err(DomainError::new(field, "must be at most 254 characters"));
        }
        if t.chars().any(|c| c.is_whitespace() || c.is_control()) {
            return Err(DomainError::new(
                field,
                "must not contain whitespace or control characters",
            ));
        }
        let mut parts = t.split('@');
        let (Some(local), Some(domain), None) = (parts.next(), parts.next(), parts.next()) else {
            return Err(DomainError::new(field, "must contain exactly one `@`"));
        };
        if local.is_empty() {
            return Err(DomainError::new(field, "the part before `@` is empty"));
        }
        if local.chars().count() > Self::MAX_LOCAL_CHARS {
            return Err(DomainError::new(
                field,
                "the part before `@` must be at most 64 characters",
            ));
        }
        if !domain.contains('.') || domain.split('.').any(str::is_empty) {
            return Err(DomainError::new(
                field,
                "the domain must be dotted labels such as `example.com`",
            ));
        }
        Ok(Email(format!("{local}@{}", domain.to_lowercase())))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Email {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Email(***)")
    }
}

/// A contact phone number: an optional leading `+`, then 5–20 digits, spaces or hyphens with
/// at least 5 digits. Kept as written (trimmed) because applicants format numbers many ways.
/// Personal data: `Debug` is redacted.
#[derive(Clone, PartialEq, Eq, Hash)]
pub struct Phone(String);

impl Phone {
    pub fn parse(s: &str, field: &str) -> Result<Phone, DomainError> {
        let t = s.trim();
        let body = t.strip_prefix('+').unwrap_or(t);
        if !body
            .chars()
            .all(|c| c.is_ascii_digit() || c == ' ' || c == '-')
        {
            return Err(DomainError::new(
                field,
                "may only hold a leading `+`, digits, spaces and hyphens",
            ));
        }
        // ASCII only from here on, so `len` counts characters.
        if !(5..=20).contains(&body.len()) {
            return Err(DomainError::new(
                field,
                "must be 5 to 20 digits, spaces or hyphens",
            ));
        }
        if body.chars().filter(char::is_ascii_digit).count() < 5 {
            return Err(DomainError::new(field, "must hold at least 5 digits"));
        }
        Ok(Phone(t.to_string()))
    }

    pub fn as_str(&self) -> &str {
        &self.0
    }
}

impl fmt::Debug for Phone {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str("Phone(***)")
    }
}

// ---------------------------------------------------------------------------------------------
// Org key
// ---------------------------------------------------------------------------------------------

/// An organisation's ed25519 key, as it will be admitted on chain and bound into the org
/// certificate: 64 hex characters that decode to a curve point (ZIP-215 rules, as consensus
/// uses) that is not of small order.
#[derive(Clone, Copy, Debug, PartialEq, Eq, Hash)]
pub struct OrgPublicKey(PublicKey);

impl OrgPublicKey {
    pub fn parse(s: &str, field: &str) -> Result<OrgPublicKey, DomainError> {
        let s = s.trim();
        if s.len() != 64 {
            return Err(DomainError::new(
                field,
                "an ed25519 public key is 64 hex characters (32 bytes)",
            ));
        }
        let mut bytes = [0u8; 32];
        hex::decode_to_slice(s, &mut bytes)
            .map_err(|_| DomainError::new(field, "must be hexadecimal"))?;
        let key = PublicKey(bytes);
        // A weak key (small order, a torsion part, a non-canonical encoding) would let anyone
        // forge the org's signatures, or let one holder appear as two orgs; the chain refuses
        // to admit one, so the application is refused up front.
        if !crypto::is_strong_key(&key) {
            return Err(DomainError::new(
                field,
                "is not a strong ed25519 public key (not a curve point, small order, a torsion \
                 part or a non-canonical encoding)",
            ));
        }
        Ok(OrgPublicKey(key))
    }

    pub fn public_key(&self) -> PublicKey {
        self.0
    }

    pub fn to_bytes(&self) -> [u8; 32] {
        self.0.0
    }

    /// Lower-case hex, the canonical spelling.
    pub fn to_hex(&self) -> String {
        hex::encode(self.0.0)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    const TODAY: (i32, u32, u32) = (2025, 6, 15);

    /// splitmix64: a deterministic generator so a failing case replays from its seed.
    struct Rng(u64);
    impl Rng {
        fn next(&mut self) -> u64 {
            self.0 = self.0.wrapping_add(0x9E37_79B9_7F4A_7C15);
            let mut z = self.0;
            z = (z ^ (z >> 30)).wrapping_mul(0xBF58_476D_1CE4_E5B9);
            z = (z ^ (z >> 27)).wrapping_mul(0x94D0_49BB_1331_11EB);
            z ^ (z >> 31)
        }
        fn below(&mut self, n: usize) -> usize {
            (self.next() % n as u64) as usize
        }
    }

    // Independent re-derivations of the check characters (not the production functions).
    fn credit_check(first17: &str) -> char {
        let alphabet = "0123456789ABCDEFGHJKLMNPQRTUWXY";
        let mut weight = 1u32;
        let mut sum = 0u32;
        for c in first17.chars() {
            sum += alphabet.find(c).expect("prefix in alphabet") as u32 * weight;
            weight = weight * 3 % 31;
        }
        let v = match 31 - sum % 31 {
            31 => 0,
            v => v,
        };
        alphabet.chars().nth(v as usize).expect("index < 31")
    }

    fn id_check(first17: &str) -> char {
        let mut sum = 0u32;
        for (i, c) in first17.chars().enumerate() {
            let w = (1u32 << (17 - i)) % 11;
            sum += c.to_digit(10).expect("digit") * w;
        }
        match (12 - sum % 11) % 11 {
            10 => 'X',
            v => char::from_digit(v, 10).expect("digit"),
        }
    }

    fn id_with_check(first17: &str) -> String {
        format!("{first17}{}", id_check(first17))
    }

    fn credit_err(s: &str) -> String {
        CreditCode::parse(s, "credit_code").expect_err(s).reason
    }

    fn id_err(s: &str) -> String {
        ResidentId::parse(s, "legal_representative.id_number", TODAY)
            .expect_err("should be refused")
            .reason
    }

    #[test]
    fn known_credit_code_is_valid() {
        let code = CreditCode::parse("91350100M000100Y43", "credit_code").expect("valid");
        assert_eq!(code.as_str(), "91350100M000100Y43");
        assert_eq!(code.division_code(), "350100");
        assert_eq!(credit_check("91350100M000100Y4"), '3');
    }

    #[test]
    fn generated_credit_codes_round_trip() {
        let seed = 0x7472_656c_6c69_7301;
        let mut rng = Rng(seed);
        let alphabet: Vec<char> = "0123456789ABCDEFGHJKLMNPQRTUWXY".chars().collect();
        for case in 0..2000 {
            let prefix: String = (0..17)
                .map(|i| {
                    if (2..8).contains(&i) {
                        alphabet[rng.below(10)]
                    } else {
                        alphabet[rng.below(31)]
                    }
                })
                .collect();
            let good = format!("{prefix}{}", credit_check(&prefix));
            assert!(
                CreditCode::parse(&good, "c").is_ok(),
                "seed {seed:#x} case {case}: {good} refused"
            );
            // Every other check character must be refused.
            for &wrong in alphabet.iter().filter(|&&c| c != credit_check(&prefix)) {
                let bad = format!("{prefix}{wrong}");
                assert!(
                    CreditCode::parse(&bad, "c").is_err(),
                    "seed {seed:#x} case {case}: {bad} accepted"
                );
            }
        }
    }

    #[test]
    fn credit_code_refusals() {
        assert!(credit_err("91350100M000100Y4").contains("18 characters"));
        assert!(credit_err("91350100M000100Y433").contains("18 characters"));
        assert!(credit_err("").contains("18 characters"));
        for bad in ['I', 'O', 'Z', 'S', 'V', '-', '中'] {
            let s = format!("91350100M000100{bad}43");
            assert!(credit_err(&s).contains("alphabet"), "{s}");
        }
        assert!(credit_err("91350100m000100Y43").contains("lower-case"));
        assert!(credit_err("91350100M000100y43").contains("lower-case"));
        // Non-digit inside the division code, with a correct check character.
        let prefix = "913501A0M000100Y4";
        let s = format!("{prefix}{}", credit_check(prefix));
        assert!(credit_err(&s).contains("must be a digit"));
        assert!(credit_err("91350100M000100Y44").contains("check character"));
        let e = CreditCode::parse("x", "applicant.credit_code").expect_err("short");
        assert_eq!(e.field, "applicant.credit_code");
        assert!(e.to_string().starts_with("field `applicant.credit_code`: "));
    }

    #[test]
    fn standard_id_example_is_valid() {
        let id = ResidentId::parse("11010519491231002X", "id", TODAY).expect("valid");
        assert_eq!(id.expose_secret(), "11010519491231002X");
        assert_eq!(id.birth_date(), (1949, 12, 31));
        assert_eq!(id_check("11010519491231002"), 'X');
    }

    #[test]
    fn generated_ids_round_trip() {
        let seed = 0x6964_6e75_6d62_6572;
        let mut rng = Rng(seed);
        for case in 0..2000 {
            let region: String = (0..6)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            let year = 1900 + rng.below(125);
            let month = 1 + rng.below(12);
            let day = 1 + rng.below(28);
            let seq: String = (0..3)
                .map(|_| char::from(b'0' + rng.below(10) as u8))
                .collect();
            let prefix = format!("{region}{year:04}{month:02}{day:02}{seq}");
            let good = id_with_check(&prefix);
            let id = ResidentId::parse(&good, "id", TODAY)
                .unwrap_or_else(|e| panic!("seed {seed:#x} case {case}: {e}"));
            assert_eq!(id.birth_date(), (year as i32, month as u32, day as u32));
            for wrong in "0123456789X".chars().filter(|&c| c != id_check(&prefix)) {
                let bad = format!("{prefix}{wrong}");
                assert!(
                    ResidentId::parse(&bad, "id", TODAY).is_err(),
                    "seed {seed:#x} case {case}: wrong check accepted"
                );
            }
        }
    }

    #[test]
    fn id_birth_dates() {
        // Feb 29 exists in 2000 (divisible by 400) and 2004, not in 1900 (by 100) or 2001.
        for ok in ["20000229", "20040229", "19000101", "20250615"] {
            let s = id_with_check(&format!("110105{ok}002"));
            assert!(ResidentId::parse(&s, "id", TODAY).is_ok(), "{ok}");
        }
        for bad in ["19000229", "20010229", "20010431"] {
            let s = id_with_check(&format!("110105{bad}002"));
            assert!(id_err(&s).contains("not a calendar date"), "{bad}");
        }
        assert!(id_err(&id_with_check("11010519491331002")).contains("month"));
        assert!(id_err(&id_with_check("11010519490031002")).contains("month"));
        assert!(id_err(&id_with_check("11010519491200002")).contains("calendar"));
        assert!(id_err(&id_with_check("11010520250616002")).contains("future"));
        assert!(id_err(&id_with_check("11010530000101002")).contains("future"));
        assert!(id_err(&id_with_check("11010518991231002")).contains("1900"));
    }

    #[test]
    fn id_refusals() {
        assert!(id_err("110105194912310021").contains("check character"));
        assert!(id_err("11010519491231002x").contains("upper-case"));
        assert!(id_err("11010519491231002").contains("18 characters"));
        assert!(id_err("11010519491231002XX").contains("18 characters"));
        assert!(id_err("1101051949123100XX").contains("character 17"));
        assert!(id_err("11010519491231002Y").contains("digit or `X`"));
        // A full-width digit is one character but not an ASCII digit.
        assert!(id_err("１1010519491231002X").contains("character 1 must be a digit"));
        // Reasons never quote the number.
        let e = ResidentId::parse("110105194912310021", "id", TODAY).expect_err("bad check");
        assert!(!e.to_string().contains("110105194912310021"));
    }

    #[test]
    fn pii_debug_and_display_are_redacted() {
        let id = ResidentId::parse("11010519491231002X", "id", TODAY).expect("valid");
        for shown in [
            format!("{id:?}"),
            format!("{id}"),
            format!("{:?}", Some(&id)),
        ] {
            assert!(!shown.contains("11010519491231002X"), "{shown}");
            assert!(!shown.contains("1949"), "{shown}");
        }
        let name = PersonName::parse("张三丰", "legal_representative.name").expect("valid");
        assert!(!format!("{name:?}").contains("张三"));
        let email = Email::parse("zhang.san@example.cn", "contact.email").expect("valid");
        assert!(!format!("{email:?}").contains("zhang"));
        let phone = Phone::parse("+86 138-0013-8000", "contact.phone").expect("valid");
        assert!(!format!("{phone:?}").contains("138"));
    }

    #[test]
    fn names() {
        assert_eq!(
            PersonName::parse("  阿依古丽·买买提 ", "n")
                .expect("valid")
                .as_str(),
            "阿依古丽·买买提"
        );
        assert!(PersonName::parse("   ", "n").is_err());
        assert!(PersonName::parse("", "n").is_err());
        assert!(PersonName::parse("Zhang\nSan", "n").is_err());
        assert!(PersonName::parse("Zhang\u{202E}naS", "n").is_err());
        assert!(PersonName::parse(&"名".repeat(64), "n").is_ok());
        assert!(PersonName::parse(&"名".repeat(65), "n").is_err());

        let legal =
            LegalName::parse("福建某某科技有限公司（厦门分公司）", "legal_name").expect("valid");
        assert!(format!("{legal:?}").contains("福建"));
        assert!(LegalName::parse(&"企".repeat(200), "l").is_ok());
        assert!(LegalName::parse(&"企".repeat(201), "l").is_err());
        assert!(LegalName::parse("Acme\u{7}Ltd", "l").is_err());
        assert!(LegalName::parse("", "l").is_err());
    }

    #[test]
    fn emails() {
        assert_eq!(
            Email::parse(" Ops.Team@Example.COM ", "e")
                .expect("valid")
                .as_str(),
            "Ops.Team@example.com"
        );
        assert!(Email::parse("a@b.cn", "e").is_ok());
        for bad in [
            "",
            "no-at.example.com",
            "two@@example.com",
            "a@b@example.com",
            "@example.com",
            "a@localhost",
            "a@.example.com",
            "a@example.com.",
            "a@example..com",
            "a b@example.com",
            "a@exa\tmple.com",
        ] {
            assert!(Email::parse(bad, "e").is_err(), "{bad:?}");
        }
        let long_local = format!("{}@example.com", "a".repeat(65));
        assert!(Email::parse(&long_local, "e").is_err());
        let long = format!("{}@{}.com", "a".repeat(64), "b".repeat(186));
        assert_eq!(long.len(), 255);
        assert!(Email::parse(&long, "e").is_err());
        assert!(Email::parse(&long[1..], "e").is_ok());
    }

    #[test]
    fn phones() {
        for ok in [
            "13800138000",
            "+86 138 0013 8000",
            "010-8888-6666",
            "12345",
            "+1-555-0100",
        ] {
            assert!(Phone::parse(ok, "p").is_ok(), "{ok}");
        }
        for bad in [
            "",
            "+",
            "1234",
            "12-34",
            "----- -----",
            "123456789012345678901",
            "++8613800138000",
            "138 0013 800a",
            "(010) 8888",
            "13800138000+",
        ] {
            assert!(Phone::parse(bad, "p").is_err(), "{bad:?}");
        }
        assert!(Phone::parse(&"1".repeat(20), "p").is_ok());
    }

    #[test]
    fn org_public_keys() {
        let signer = trellis_consensus::Signer::from_seed([7u8; 32]);
        let hex_key = hex::encode(signer.public_key().0);
        let key = OrgPublicKey::parse(&hex_key, "org_public_key").expect("valid");
        assert_eq!(key.public_key(), signer.public_key());
        assert_eq!(key.to_hex(), hex_key);
        assert_eq!(
            OrgPublicKey::parse(&hex_key.to_uppercase(), "k").expect("valid"),
            key
        );

        assert!(OrgPublicKey::parse(&hex_key[..62], "k").is_err());
        assert!(OrgPublicKey::parse(&format!("{hex_key}00"), "k").is_err());
        assert!(OrgPublicKey::parse(&"zz".repeat(32), "k").is_err());
        // y = 2 is not on the curve.
        let off_curve = format!("02{}", "00".repeat(31));
        assert!(
            OrgPublicKey::parse(&off_curve, "k")
                .expect_err("off curve")
                .reason
                .contains("not a strong ed25519 public key")
        );
        // The identity (y = 1) and the order-2 point (y = -1) have small order; y = p + 1 is
        // the identity again, not canonically encoded.
        let identity = format!("01{}", "00".repeat(31));
        let minus_one = "ecffffffffffffffffffffffffffffffffffffffffffffffffffffffffffff7f";
        let non_canonical = format!("ee{}7f", "ff".repeat(30));
        for weak in [identity.as_str(), minus_one, &non_canonical] {
            assert!(
                OrgPublicKey::parse(weak, "k")
                    .expect_err("weak")
                    .reason
                    .contains("not a strong ed25519 public key")
            );
        }
    }
}
