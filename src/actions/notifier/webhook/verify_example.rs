use base64::Engine as _;
use base64::engine::general_purpose::STANDARD as BASE64;
use hmac::{Hmac, KeyInit, Mac};
use sha2::Sha256;

/// How far `webhook-timestamp` may be from the receiver's clock, either way.
const TOLERANCE_SECS: i64 = 5 * 60;

/// Verifies a graywatch webhook request: `secret` as configured in graywatch (`whsec_...` or
/// plain), the three `webhook-*` headers, the raw body bytes as received (before any JSON
/// parsing), and the receiver's clock in Unix seconds.
pub fn verify(
    secret: &str,
    id: &str,
    timestamp: &str,
    signatures: &str,
    body: &[u8],
    now: i64,
) -> bool {
    let key = match secret.strip_prefix("whsec_") {
        Some(b64) => match BASE64.decode(b64) {
            Ok(key) => key,
            Err(_) => return false,
        },
        None => secret.as_bytes().to_vec(),
    };
    let Ok(ts) = timestamp.parse::<i64>() else {
        return false;
    };
    if (now - ts).abs() > TOLERANCE_SECS {
        return false; // too old (a replay) or too far ahead
    }
    signatures
        .split(' ')
        .filter_map(|s| s.strip_prefix("v1,"))
        .filter_map(|s| BASE64.decode(s).ok())
        .any(|signature| {
            let mut mac = Hmac::<Sha256>::new_from_slice(&key).expect("any key length");
            mac.update(format!("{id}.{timestamp}.").as_bytes());
            mac.update(body);
            mac.verify_slice(&signature).is_ok() // constant-time comparison
        })
}
