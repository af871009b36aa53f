//! Turns a JWKS document into verification keys, each pinned to the one
//! algorithm its key type allows.

use std::collections::HashMap;
use std::collections::hash_map::Entry;

use base64::Engine;
use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use ed25519_dalek::VerifyingKey;
use jsonwebtoken::jwk::{AlgorithmParameters, EllipticCurve, Jwk, KeyOperations, PublicKeyUse};
use jsonwebtoken::{Algorithm, DecodingKey};
use serde::Deserialize;
use serde_json::Value;

use super::AuthSetupError;

/// A key from the JWKS together with the only algorithm it may verify.
pub(crate) struct PinnedKey {
    pub(crate) alg: Algorithm,
    pub(crate) key: DecodingKey,
}

#[derive(Deserialize)]
struct RawKeySet {
    keys: Vec<Value>,
}

// RSA moduli below this are breakable in practice; above the upper bound the
// rsa crate refuses the key at verification time, so refuse it up front.
const MIN_RSA_BITS: usize = 2048;
const MAX_RSA_BITS: usize = 4096;
const MAX_RSA_EXPONENT: u64 = (1 << 33) - 1;

// JWK members that only private or symmetric keys carry: a JWKS holding them
// is most likely the signing key file given by mistake.
const SECRET_MEMBERS: [&str; 8] = ["d", "p", "q", "dp", "dq", "qi", "oth", "k"];

/// Parses `json` into keys by kid. `origin` names the source in errors.
pub(crate) fn parse_key_set(
    json: &str,
    origin: &str,
) -> Result<HashMap<String, PinnedKey>, AuthSetupError> {
    let invalid_set = |reason: String| AuthSetupError::InvalidJwks {
        origin: origin.to_owned(),
        reason,
    };
    let raw: RawKeySet = serde_json::from_str(json).map_err(|err| invalid_set(err.to_string()))?;
    if raw.keys.is_empty() {
        return Err(invalid_set("it has no keys".to_owned()));
    }

    let mut keys = HashMap::with_capacity(raw.keys.len());
    for (index, member) in raw.keys.iter().enumerate() {
        let invalid_key = |reason: &str| AuthSetupError::InvalidKey {
            origin: origin.to_owned(),
            index,
            kid: member.get("kid").and_then(Value::as_str).map(str::to_owned),
            reason: reason.to_owned(),
        };
        let kid = match member.get("kid") {
            None | Some(Value::Null) => {
                return Err(invalid_key("it has no kid, which tokens need to select it"));
            }
            Some(Value::String(kid)) if !kid.is_empty() => kid.clone(),
            Some(_) => return Err(invalid_key("kid must be a non-empty string")),
        };
        let pinned = pin_key(member).map_err(|reason| invalid_key(&reason))?;
        match keys.entry(kid) {
            Entry::Occupied(_) => {
                return Err(invalid_key("its kid is used by an earlier key as well"));
            }
            Entry::Vacant(slot) => {
                slot.insert(pinned);
            }
        }
    }
    Ok(keys)
}

fn pin_key(member: &Value) -> Result<PinnedKey, String> {
    let object = member
        .as_object()
        .ok_or_else(|| "it is not a json object".to_owned())?;
    let kty = object
        .get("kty")
        .and_then(Value::as_str)
        .ok_or_else(|| "it has no kty".to_owned())?;
    if kty == "oct" {
        return Err("symmetric (oct) keys are not accepted".to_owned());
    }
    if let Some(name) = SECRET_MEMBERS
        .iter()
        .find(|name| object.contains_key(**name))
    {
        return Err(format!(
            "it holds private key material (`{name}`): the jwks must contain public keys only"
        ));
    }

    let jwk: Jwk = serde_json::from_value(member.clone()).map_err(|err| err.to_string())?;
    match &jwk.common.public_key_use {
        None | Some(PublicKeyUse::Signature) => {}
        Some(_) => return Err("its use is not sig".to_owned()),
    }
    if let Some(operations) = &jwk.common.key_operations
        && !operations.contains(&KeyOperations::Verify)
    {
        return Err("its key_ops do not include verify".to_owned());
    }

    let pinned = match &jwk.algorithm {
        AlgorithmParameters::OctetKeyPair(params) => {
            if params.curve != EllipticCurve::Ed25519 {
                return Err("OKP keys must use crv Ed25519".to_owned());
            }
            let x = decode_member("x", &params.x)?;
            let bytes: [u8; 32] = x
                .as_slice()
                .try_into()
                .map_err(|_| "x must be 32 bytes for Ed25519".to_owned())?;
            let point = VerifyingKey::from_bytes(&bytes)
                .map_err(|_| "x is not a valid Ed25519 public key".to_owned())?;
            // A small-order point lets one signature verify many messages.
            if point.is_weak() {
                return Err("x is a weak Ed25519 public key".to_owned());
            }
            PinnedKey {
                alg: Algorithm::EdDSA,
                key: DecodingKey::from_ed_components(&params.x).map_err(|err| err.to_string())?,
            }
        }
        AlgorithmParameters::EllipticCurve(params) => {
            if params.curve != EllipticCurve::P256 {
                return Err("EC keys must use crv P-256".to_owned());
            }
            for (name, value) in [("x", &params.x), ("y", &params.y)] {
                if decode_member(name, value)?.len() != 32 {
                    return Err(format!("{name} must be 32 bytes for P-256"));
                }
            }
            PinnedKey {
                alg: Algorithm::ES256,
                key: DecodingKey::from_ec_components(&params.x, &params.y)
                    .map_err(|err| err.to_string())?,
            }
        }
        AlgorithmParameters::RSA(params) => {
            check_rsa_modulus(&decode_member("n", &params.n)?)?;
            check_rsa_exponent(&decode_member("e", &params.e)?)?;
            PinnedKey {
                alg: Algorithm::RS256,
                key: DecodingKey::from_rsa_components(&params.n, &params.e)
                    .map_err(|err| err.to_string())?,
            }
        }
        _ => return Err(format!("kty {kty} with these members is not supported")),
    };

    // Debug names the variants exactly as JOSE spells them.
    let expected = format!("{:?}", pinned.alg);
    match object.get("alg") {
        None | Some(Value::Null) => {}
        Some(Value::String(alg)) if *alg == expected => {}
        Some(Value::String(alg)) => {
            return Err(format!(
                "alg {alg} does not fit kty {kty}, which requires {expected}"
            ));
        }
        Some(_) => return Err("alg must be a string".to_owned()),
    }

    // The library only parses an EC point when it builds a verifier; do it
    // now so that a bad point fails at start-up, not on the first call. The
    // signature is junk on purpose: only a key error surfaces as `Err`.
    jsonwebtoken::crypto::verify("AA", b"", &pinned.key, pinned.alg)
        .map_err(|_| format!("its parameters are not a usable {expected} public key"))?;
    Ok(pinned)
}

fn decode_member(name: &str, value: &str) -> Result<Vec<u8>, String> {
    URL_SAFE_NO_PAD
        .decode(value)
        .map_err(|_| format!("{name} is not unpadded base64url"))
}

fn check_rsa_modulus(n: &[u8]) -> Result<(), String> {
    let significant = match n.iter().position(|byte| *byte != 0) {
        Some(first) => &n[first..],
        None => return Err("n is zero".to_owned()),
    };
    let leading_zero_bits = significant.first().map_or(0, |byte| byte.leading_zeros());
    let bits = significant.len() * 8 - leading_zero_bits as usize;
    if !(MIN_RSA_BITS..=MAX_RSA_BITS).contains(&bits) {
        return Err(format!(
            "the rsa modulus has {bits} bits, between {MIN_RSA_BITS} and {MAX_RSA_BITS} are accepted"
        ));
    }
    if significant.last().is_some_and(|byte| byte % 2 == 0) {
        return Err("the rsa modulus is even".to_owned());
    }
    Ok(())
}

fn check_rsa_exponent(e: &[u8]) -> Result<(), String> {
    let significant = match e.iter().position(|byte| *byte != 0) {
        Some(first) => &e[first..],
        None => return Err("e is zero".to_owned()),
    };
    if significant.len() > 8 {
        return Err("e is too large".to_owned());
    }
    let value = significant
        .iter()
        .fold(0u64, |acc, byte| (acc << 8) | u64::from(*byte));
    if !(3..=MAX_RSA_EXPONENT).contains(&value) || value % 2 == 0 {
        return Err("e must be odd and between 3 and 2^33-1".to_owned());
    }
    Ok(())
}
