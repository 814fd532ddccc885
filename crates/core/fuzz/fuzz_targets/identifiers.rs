//! Every text parser of untrusted identifiers: names, SPIFFE ids, patterns,
//! admin tokens. None may panic; accepted values must round-trip.
#![no_main]

use libfuzzer_sys::fuzz_target;
use mandate_core::admin::AdminToken;
use mandate_core::ids::{AgentName, SpiffeId, TrustDomain};
use mandate_core::scope::{ActionPattern, ResourcePattern};

fuzz_target!(|s: &str| {
    if let Ok(n) = AgentName::parse(s) {
        assert_eq!(n.as_str(), s);
    }
    if let Ok((td, kind, name)) = SpiffeId::parse(s) {
        assert_eq!(SpiffeId::for_agent(&td, kind, &name).as_str(), s);
    }
    let _ = TrustDomain::parse(s);
    if let Ok(p) = ActionPattern::parse(s) {
        assert!(p.within(&p));
    }
    let _ = ResourcePattern::parse(s);
    if let Ok(t) = AdminToken::parse(s) {
        assert_eq!(AdminToken::parse(&t.expose()).unwrap().id(), t.id());
    }
});
