//! A block's payload: the signed transactions it orders, as one byte string.
//!
//! Layout: `u32` count, then per transaction a `u32` length and the transaction's exact signed
//! bytes (big-endian lengths). One list has exactly one encoding, so the payload digest in the
//! header commits to the transactions and their order.

/// Why a payload could not be read.
#[derive(Debug, thiserror::Error, PartialEq, Eq)]
pub enum PayloadError {
    #[error("payload is truncated")]
    Truncated,
    #[error("payload has {0} trailing bytes")]
    Trailing(usize),
    #[error("payload holds {got} transactions, more than the limit {max}")]
    TooManyTxs { got: usize, max: usize },
}

pub fn encode(txs: &[&[u8]]) -> Vec<u8> {
    let size = 4 + txs.iter().map(|t| 4 + t.len()).sum::<usize>();
    let mut out = Vec::with_capacity(size);
    out.extend_from_slice(&(txs.len() as u32).to_be_bytes());
    for t in txs {
        out.extend_from_slice(&(t.len() as u32).to_be_bytes());
        out.extend_from_slice(t);
    }
    out
}

/// The transactions of a payload as slices of it. An empty payload is an empty block.
pub fn decode(bytes: &[u8], max_txs: usize) -> Result<Vec<&[u8]>, PayloadError> {
    if bytes.is_empty() {
        return Ok(Vec::new());
    }
    let mut rest = bytes;
    let count = take_u32(&mut rest)? as usize;
    if count > max_txs {
        return Err(PayloadError::TooManyTxs {
            got: count,
            max: max_txs,
        });
    }
    let mut out = Vec::with_capacity(count.min(rest.len() / 4));
    for _ in 0..count {
        let len = take_u32(&mut rest)? as usize;
        if rest.len() < len {
            return Err(PayloadError::Truncated);
        }
        let (tx, tail) = rest.split_at(len);
        out.push(tx);
        rest = tail;
    }
    if !rest.is_empty() {
        return Err(PayloadError::Trailing(rest.len()));
    }
    Ok(out)
}

fn take_u32(rest: &mut &[u8]) -> Result<u32, PayloadError> {
    let (head, tail) = rest
        .split_first_chunk::<4>()
        .ok_or(PayloadError::Truncated)?;
    *rest = tail;
    Ok(u32::from_be_bytes(*head))
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn round_trip_and_bad_input() {
        let txs: Vec<&[u8]> = vec![b"a", b"", b"hello"];
        let bytes = encode(&txs);
        assert_eq!(decode(&bytes, 10).unwrap(), txs);
        assert_eq!(decode(&[], 10).unwrap(), Vec::<&[u8]>::new());
        for cut in 1..bytes.len() {
            assert!(decode(&bytes[..cut], 10).is_err(), "cut at {cut}");
        }
        let mut long = bytes.clone();
        long.push(0);
        assert_eq!(decode(&long, 10), Err(PayloadError::Trailing(1)));
        assert!(matches!(
            decode(&bytes, 2),
            Err(PayloadError::TooManyTxs { .. })
        ));
    }
}
