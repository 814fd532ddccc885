//! Public JWKs and registration bodies as sent by clients.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::agent::NewAgent;
use mandate_core::jwk::Ed25519Jwk;

fuzz_target!(|data: &[u8]| {
    if let Ok(v) = serde_json::from_slice::<serde_json::Value>(data) {
        if let Ok(jwk) = Ed25519Jwk::from_json(&v) {
            let again = Ed25519Jwk::from_json(&serde_json::to_value(&jwk).unwrap()).unwrap();
            assert_eq!(again, jwk);
        }
    }
    if let Ok(a) = serde_json::from_slice::<NewAgent>(data) {
        let _ = a.validate();
    }
});
