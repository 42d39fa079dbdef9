//! Certificate serial numbers, held as the beacon's revocation list holds them: minimal
//! big-endian bytes of a positive integer.

use std::fmt;

use crate::PkiError;

/// A certificate serial: positive, at most 20 octets once DER-encoded (RFC 5280 §4.1.2.2),
/// held as its minimal big-endian bytes (no leading zero byte).
#[derive(Clone, PartialEq, Eq, Hash, PartialOrd, Ord)]
pub struct Serial(Vec<u8>);

impl Serial {
    /// 16 random bytes with the top bit clear (a positive DER integer needs no padding byte)
    /// and a non-zero first byte (DER would drop a leading zero), so the encoding is exactly
    /// these 16 bytes and [`Serial::to_hex`] matches what parsers report.
    pub fn random() -> Result<Serial, PkiError> {
        let mut serial = [0u8; 16];
        aws_lc_rs::rand::fill(&mut serial).map_err(|_| PkiError::Random)?;
        serial[0] = (serial[0] & 0x7f).max(1);
        Ok(Serial(serial.to_vec()))
    }

    /// A small serial, e.g. a devnet validator's number. Zero is refused.
    pub fn from_u64(n: u64) -> Result<Serial, PkiError> {
        if n == 0 {
            return Err(PkiError::InvalidSerial {
                serial: "0".into(),
                reason: "serial numbers must be positive",
            });
        }
        Serial::from_bytes(&n.to_be_bytes(), &n.to_string())
    }

    /// A serial written in hex, either case, leading zero bytes ignored.
    pub fn parse_hex(serial_hex: &str) -> Result<Serial, PkiError> {
        let bytes = hex::decode(serial_hex).map_err(|_| PkiError::InvalidSerial {
            serial: serial_hex.to_string(),
            reason: "not an even number of hex digits",
        })?;
        Serial::from_bytes(&bytes, serial_hex)
    }

    /// A serial from big-endian bytes as a parser reports them (a leading 0x00 that DER
    /// needs before a set top bit is dropped).
    pub fn from_der_bytes(raw: &[u8]) -> Result<Serial, PkiError> {
        Serial::from_bytes(raw, &hex::encode(raw))
    }

    fn from_bytes(bytes: &[u8], shown: &str) -> Result<Serial, PkiError> {
        let invalid = |reason| PkiError::InvalidSerial {
            serial: shown.to_string(),
            reason,
        };
        let start = bytes.iter().position(|&b| b != 0).unwrap_or(bytes.len());
        let minimal = &bytes[start..];
        if minimal.is_empty() {
            return Err(invalid("serial numbers must be positive"));
        }
        // At most 20 octets, counting the 0x00 that a set top bit needs.
        let encoded_len = minimal.len() + usize::from(minimal[0] & 0x80 != 0);
        if encoded_len > 20 {
            return Err(invalid("longer than 20 octets"));
        }
        Ok(Serial(minimal.to_vec()))
    }

    /// The minimal big-endian bytes (as the beacon's revocation list carries them).
    pub fn as_bytes(&self) -> &[u8] {
        &self.0
    }

    /// Lower-case hex of [`Serial::as_bytes`].
    pub fn to_hex(&self) -> String {
        hex::encode(&self.0)
    }

    pub(crate) fn to_rcgen(&self) -> rcgen::SerialNumber {
        rcgen::SerialNumber::from_slice(&self.0)
    }
}

impl fmt::Debug for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        write!(f, "Serial({})", self.to_hex())
    }
}

impl fmt::Display for Serial {
    fn fmt(&self, f: &mut fmt::Formatter<'_>) -> fmt::Result {
        f.write_str(&self.to_hex())
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn serials_are_minimal_and_bounded() {
        assert_eq!(Serial::from_u64(4).expect("4").to_hex(), "04");
        assert_eq!(Serial::parse_hex("0001AB").expect("ab").to_hex(), "01ab");
        assert_eq!(
            Serial::from_der_bytes(&[0, 0x80])
                .expect("padded")
                .as_bytes(),
            &[0x80]
        );
        assert!(Serial::from_u64(0).is_err());
        for bad in [
            "",
            "0",
            "00",
            "xyz1",
            "abc",
            &"7f".repeat(21),
            &"80".repeat(20),
        ] {
            assert!(Serial::parse_hex(bad).is_err(), "{bad:?}");
        }
        assert!(Serial::parse_hex(&"7f".repeat(20)).is_ok());
        let r = Serial::random().expect("random");
        assert_eq!(r.as_bytes().len(), 16);
        assert!(r.as_bytes()[0] != 0 && r.as_bytes()[0] & 0x80 == 0);
    }
}
