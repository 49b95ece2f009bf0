//! Reading the key columns (`record_key`, `person_key`) of a dataset file in either of their
//! stored forms ([`KeyEncoding`](crate::KeyEncoding)).
//!
//! The two forms order alike: lowercase hex of big-endian bytes sorts as the bytes do, so "a
//! person's first k records in record-key order" selects the same records in a format 1 and a
//! format 2 dataset of the same file. [`KeyColumn::bytes`] is the stored form, to compare and
//! sort; [`KeyColumn::hex`] is the form shown to people and kept in manifests.

use std::borrow::Cow;

use arrow::array::{Array, AsArray, FixedSizeBinaryArray, StringArray};
use arrow::datatypes::DataType;

/// Bytes of a stored pseudonym (128 bits of keyed BLAKE3).
pub const BYTES: usize = 16;

/// A key column of either stored form.
#[derive(Debug, Clone, Copy)]
pub enum KeyColumn<'a> {
    Hex(&'a StringArray),
    Binary(&'a FixedSizeBinaryArray),
}

impl<'a> KeyColumn<'a> {
    /// The key column `array`, or `None` when it is of neither stored type.
    pub fn new(array: &'a dyn Array) -> Option<KeyColumn<'a>> {
        match array.data_type() {
            DataType::Utf8 => Some(KeyColumn::Hex(array.as_string::<i32>())),
            DataType::FixedSizeBinary(n) if *n as usize == BYTES => {
                Some(KeyColumn::Binary(array.as_fixed_size_binary()))
            }
            _ => None,
        }
    }

    pub fn len(&self) -> usize {
        match self {
            KeyColumn::Hex(a) => a.len(),
            KeyColumn::Binary(a) => a.len(),
        }
    }

    pub fn is_empty(&self) -> bool {
        self.len() == 0
    }

    pub fn is_null(&self, i: usize) -> bool {
        match self {
            KeyColumn::Hex(a) => a.is_null(i),
            KeyColumn::Binary(a) => a.is_null(i),
        }
    }

    /// The stored bytes of row `i`: ordered as the keys are, within one dataset.
    pub fn bytes(&self, i: usize) -> &'a [u8] {
        match self {
            KeyColumn::Hex(a) => a.value(i).as_bytes(),
            KeyColumn::Binary(a) => a.value(i),
        }
    }

    /// Row `i` as lowercase hex (empty for a null).
    pub fn hex(&self, i: usize) -> Cow<'a, str> {
        if self.is_null(i) {
            return Cow::Borrowed("");
        }
        match self {
            KeyColumn::Hex(a) => Cow::Borrowed(a.value(i)),
            KeyColumn::Binary(a) => Cow::Owned(to_hex(a.value(i))),
        }
    }
}

/// Lowercase hex of `bytes`.
pub fn to_hex(bytes: &[u8]) -> String {
    const DIGITS: &[u8; 16] = b"0123456789abcdef";
    let mut out = String::with_capacity(bytes.len() * 2);
    for b in bytes {
        out.push(DIGITS[(b >> 4) as usize] as char);
        out.push(DIGITS[(b & 15) as usize] as char);
    }
    out
}

/// The 16 bytes a 32-character hex pseudonym stands for; `None` for anything else.
pub fn from_hex(hex: &str) -> Option<[u8; BYTES]> {
    let digits = hex.as_bytes();
    if digits.len() != 2 * BYTES {
        return None;
    }
    let nibble = |c: u8| match c {
        b'0'..=b'9' => Some(c - b'0'),
        b'a'..=b'f' => Some(c - b'a' + 10),
        _ => None,
    };
    let mut out = [0u8; BYTES];
    for (i, pair) in digits.chunks_exact(2).enumerate() {
        out[i] = (nibble(pair[0])? << 4) | nibble(pair[1])?;
    }
    Some(out)
}

#[cfg(test)]
mod tests {
    use super::*;
    use arrow::array::FixedSizeBinaryBuilder;

    #[test]
    fn hex_round_trips_and_orders_as_the_bytes() {
        let keys = [
            "00000000000000000000000000000000",
            "0f1e2d3c4b5a69788796a5b4c3d2e1f0",
            "a0000000000000000000000000000000",
            "ffffffffffffffffffffffffffffffff",
        ];
        let bytes: Vec<[u8; BYTES]> = keys.iter().map(|k| from_hex(k).unwrap()).collect();
        for (k, b) in keys.iter().zip(&bytes) {
            assert_eq!(&to_hex(b), k);
        }
        assert!(bytes.windows(2).all(|w| w[0] < w[1]));
        assert!(keys.windows(2).all(|w| w[0] < w[1]));
        assert_eq!(
            from_hex("0F1E2D3C4B5A69788796A5B4C3D2E1F0"),
            None,
            "lowercase only"
        );
        assert_eq!(from_hex("abc"), None);
        assert_eq!(from_hex("zz000000000000000000000000000000"), None);
    }

    #[test]
    fn both_stored_forms_read_as_the_same_hex() {
        let key = "0f1e2d3c4b5a69788796a5b4c3d2e1f0";
        let text = StringArray::from(vec![Some(key), None]);
        let mut b = FixedSizeBinaryBuilder::with_capacity(2, BYTES as i32);
        b.append_value(from_hex(key).unwrap()).unwrap();
        b.append_null();
        let binary = b.finish();
        for column in [
            KeyColumn::new(&text).unwrap(),
            KeyColumn::new(&binary).unwrap(),
        ] {
            assert_eq!(column.len(), 2);
            assert_eq!(column.hex(0), key);
            assert_eq!(column.hex(1), "");
            assert!(column.is_null(1));
        }
        assert!(KeyColumn::new(&arrow::array::Int64Array::from(vec![1])).is_none());
    }
}
