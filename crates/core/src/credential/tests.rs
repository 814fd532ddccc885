use super::*;
use crate::agent::AgentKind;
use crate::ids::{AgentName, TrustDomain};

const NOW: Timestamp = Timestamp::from_millis(1_800_000_000_000);
const ISS: &str = "https://mandate.acme.example";

fn spiffe(name: &str) -> SpiffeId {
    SpiffeId::for_agent(
        &TrustDomain::parse("acme.example").unwrap(),
        AgentKind::Agent,
        &AgentName::parse(name).unwrap(),
    )
}

fn claims(exp_in: i64) -> TaskClaims {
    let chain = Act::then(
        Some(&Act::then(None, &spiffe("orchestrator"))),
        &spiffe("research"),
    );
    TaskClaims {
        iss: ISS.into(),
        sub: "human-1".into(),
        aud: ISS.into(),
        exp: NOW.as_secs() + exp_in,
        iat: NOW.as_secs(),
        jti: "t1".into(),
        task_id: TaskId::from_uuid(uuid::Uuid::from_u128(9)),
        client_id: spiffe("research").to_string(),
        authorization_details: vec![],
        act: chain,
        cnf: None,
    }
}

fn server_key() -> SigningKey {
    SigningKey::from_bytes(&[11; 32])
}

fn keys(kid: &str) -> Option<VerifyingKey> {
    (kid == "k1").then(|| server_key().verifying_key())
}

#[test]
fn a_task_token_round_trips_with_its_chain() {
    let token = JwtSigner::new("k1", &server_key()).sign(&claims(60));
    let c = verify_task_token(&token, keys, ISS, ISS, NOW).unwrap();
    assert_eq!(c, claims(60));
    assert_eq!(
        c.act.chain(),
        vec![
            spiffe("orchestrator").to_string(),
            spiffe("research").to_string()
        ]
    );
    let raw: serde_json::Value = peek_claims(&token).unwrap();
    assert_eq!(
        raw["act"]["sub"],
        spiffe("research").to_string(),
        "the current actor is outermost (RFC 8693)"
    );
    assert_eq!(raw["act"]["act"]["sub"], spiffe("orchestrator").to_string());
}

/// Checks the JWS with ed25519-dalek directly: an implementation independent
/// of the jsonwebtoken crate that produced it.
#[test]
fn independent_jws_verification() {
    let token = JwtSigner::new("k1", &server_key()).sign(&claims(60));
    let parts: Vec<&str> = token.split('.').collect();
    let header: serde_json::Value =
        serde_json::from_slice(&B64URL.decode(parts[0]).unwrap()).unwrap();
    assert_eq!(
        (header["alg"].as_str(), header["kid"].as_str()),
        (Some("EdDSA"), Some("k1"))
    );
    let sig = ed25519_dalek::Signature::from_slice(&B64URL.decode(parts[2]).unwrap()).unwrap();
    server_key()
        .verifying_key()
        .verify_strict(format!("{}.{}", parts[0], parts[1]).as_bytes(), &sig)
        .unwrap();
}

#[test]
fn bad_task_tokens_are_refused() {
    let good = JwtSigner::new("k1", &server_key()).sign(&claims(60));
    assert_eq!(
        verify_task_token(
            &JwtSigner::new("k1", &server_key()).sign(&claims(-1)),
            keys,
            ISS,
            ISS,
            NOW
        ),
        Err(TokenError::Expired)
    );
    assert_eq!(
        verify_task_token(
            &JwtSigner::new("k9", &server_key()).sign(&claims(60)),
            keys,
            ISS,
            ISS,
            NOW
        ),
        Err(TokenError::UnknownKey)
    );
    let forged = JwtSigner::new("k1", &SigningKey::from_bytes(&[12; 32])).sign(&claims(60));
    assert_eq!(
        verify_task_token(&forged, keys, ISS, ISS, NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        verify_task_token(&good, keys, ISS, "https://other", NOW),
        Err(TokenError::Audience)
    );
    assert_eq!(
        verify_task_token(&good, keys, "https://other", ISS, NOW),
        Err(TokenError::Issuer)
    );
    // Tampered payload: widen the scope without re-signing.
    let parts: Vec<&str> = good.split('.').collect();
    let mut c = claims(60);
    c.client_id = spiffe("mallory").to_string();
    let tampered = format!(
        "{}.{}.{}",
        parts[0],
        B64URL.encode(serde_json::to_vec(&c).unwrap()),
        parts[2]
    );
    assert_eq!(
        verify_task_token(&tampered, keys, ISS, ISS, NOW),
        Err(TokenError::BadSignature)
    );
    // alg: none, unsigned.
    let none = format!(
        "{}.{}.",
        B64URL.encode(br#"{"alg":"none","kid":"k1"}"#),
        parts[1]
    );
    assert!(verify_task_token(&none, keys, ISS, ISS, NOW).is_err());
    // HS256 with the public key as the secret (algorithm confusion).
    let hs = jsonwebtoken::encode(
        &Header {
            kid: Some("k1".into()),
            ..Header::new(Algorithm::HS256)
        },
        &claims(60),
        &EncodingKey::from_secret(server_key().verifying_key().as_bytes()),
    )
    .unwrap();
    assert!(matches!(
        verify_task_token(&hs, keys, ISS, ISS, NOW),
        Err(TokenError::Algorithm(_))
    ));
}

#[test]
fn assertions_are_checked_against_the_agents_keys() {
    let agent_key = SigningKey::from_bytes(&[21; 32]);
    let id = spiffe("research");
    let keys = vec![("a1".to_owned(), agent_key.verifying_key())];
    let a = mint_assertion(&agent_key, "a1", &id, ISS, NOW, "j-1");
    assert_eq!(
        verify_assertion(&a, &id, &keys, ISS, NOW).unwrap().jti,
        "j-1"
    );
    let other = mint_assertion(
        &SigningKey::from_bytes(&[22; 32]),
        "a1",
        &id,
        ISS,
        NOW,
        "j-2",
    );
    assert_eq!(
        verify_assertion(&other, &id, &keys, ISS, NOW),
        Err(TokenError::BadSignature)
    );
    let unknown_kid = mint_assertion(&agent_key, "zz", &id, ISS, NOW, "j-3");
    assert_eq!(
        verify_assertion(&unknown_kid, &id, &keys, ISS, NOW),
        Err(TokenError::UnknownKey)
    );
    assert_eq!(
        verify_assertion(&a, &spiffe("procurement"), &keys, ISS, NOW),
        Err(TokenError::Issuer)
    );
    let later = Timestamp::from_millis(NOW.as_millis() + 200_000);
    assert_eq!(
        verify_assertion(&a, &id, &keys, ISS, later),
        Err(TokenError::Expired)
    );
    let long = JwtSigner::new("a1", &agent_key).sign(&AssertionClaims {
        iss: id.to_string(),
        sub: id.to_string(),
        aud: ISS.into(),
        iat: NOW.as_secs(),
        exp: NOW.as_secs() + 3600,
        jti: "j".into(),
    });
    assert!(matches!(
        verify_assertion(&long, &id, &keys, ISS, NOW),
        Err(TokenError::Claims(_))
    ));
}

#[test]
fn id_tokens_verify_against_the_issuers_jwks_only() {
    let dev = DevIssuer::new("https://dev-issuer.local", [31; 32]);
    let jwks: JwkSet = serde_json::from_value(dev.jwks()).unwrap();
    let t = dev.mint("alice", ISS, NOW, 300);
    assert_eq!(
        verify_id_token(&t, dev.issuer(), &jwks, ISS, NOW)
            .unwrap()
            .sub,
        "alice"
    );
    let impostor =
        DevIssuer::new("https://dev-issuer.local", [32; 32]).mint("alice", ISS, NOW, 300);
    assert_eq!(
        verify_id_token(&impostor, dev.issuer(), &jwks, ISS, NOW),
        Err(TokenError::BadSignature)
    );
    assert_eq!(
        verify_id_token(&t, dev.issuer(), &jwks, "https://other", NOW),
        Err(TokenError::Audience)
    );
}

#[test]
fn details_become_a_cross_product_scope() {
    let d: Vec<RequestedDetail> = serde_json::from_value(serde_json::json!([{
        "type": "mandate_task", "purpose": "buy", "actions": ["po.read", "po.create"],
        "resources": ["erp:po/*"], "limits": { "max_calls": 5 }
    }]))
    .unwrap();
    let r = task_request(&d, Some(1000)).unwrap();
    assert_eq!(r.scope.len(), 2);
    assert_eq!(r.limits.max_calls, Some(5));
    let bad: Vec<RequestedDetail> = serde_json::from_value(serde_json::json!([{
        "type": "payment_initiation", "purpose": "x", "actions": ["a"], "resources": ["r"]
    }]))
    .unwrap();
    assert!(task_request(&bad, None).is_err());
    assert!(task_request(&[], None).is_err());
}
