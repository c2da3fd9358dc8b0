//! Authentication: who is asking.
//!
//! Two credential kinds are accepted, as kube-apiserver does:
//! - a TLS client certificate signed by the cluster CA (user = CN, groups = O), verified by
//!   rustls during the handshake;
//! - a bearer token: either the admin token in `<data-dir>/pki/admin.token`, or a
//!   ServiceAccount token (a JWT signed with the cluster's token key, HS256).
//!
//! Requests with neither are anonymous and get `401 Unauthorized`, except the public
//! health and version endpoints. Every authenticated user may do everything (skiff has
//! no RBAC yet; the admin group is recorded for when it does).

use base64::engine::general_purpose::URL_SAFE_NO_PAD;
use base64::Engine;
use ring::hmac;
use serde_json::{json, Value};

/// An authenticated caller.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct Identity {
    pub user: String,
    pub groups: Vec<String>,
}

/// Extracts the identity from a verified client certificate (DER).
pub fn identity_from_cert(der: &[u8]) -> Option<Identity> {
    let (_, cert) = x509_parser::parse_x509_certificate(der).ok()?;
    let subject = cert.subject();
    let user = subject.iter_common_name().next()?.as_str().ok()?.to_string();
    let groups = subject.iter_organization().filter_map(|o| o.as_str().ok().map(str::to_string)).collect();
    Some(Identity { user, groups })
}

/// Verifies bearer tokens.
pub struct TokenAuthenticator {
    admin_token: String,
    key: hmac::Key,
}

/// Issuer and default audience of ServiceAccount tokens (as a kube-apiserver configured
/// with `--service-account-issuer=https://kubernetes.default.svc.cluster.local`).
pub const DEFAULT_AUDIENCE: &str = "https://kubernetes.default.svc.cluster.local";

/// What a ServiceAccount token says.
pub struct TokenClaims<'a> {
    pub namespace: &'a str,
    pub name: &'a str,
    pub uid: &'a str,
    pub audiences: &'a [String],
    /// Unix time after which the token is refused.
    pub expires_at: Option<i64>,
    /// Name and uid of the pod the token is bound to.
    pub pod: Option<(&'a str, &'a str)>,
}

impl TokenAuthenticator {
    pub fn new(admin_token: String, signing_key: &[u8]) -> Self {
        TokenAuthenticator { admin_token, key: hmac::Key::new(hmac::HMAC_SHA256, signing_key) }
    }

    /// Issues a ServiceAccount token that does not expire (the legacy Secret-style token).
    pub fn issue_service_account_token(&self, namespace: &str, name: &str, uid: &str) -> String {
        self.issue(&TokenClaims { namespace, name, uid, audiences: &[], expires_at: None, pod: None })
    }

    /// Issues a ServiceAccount token (what pods find in
    /// `/var/run/secrets/kubernetes.io/serviceaccount/token`), with the claims upstream's
    /// TokenRequest puts in: audiences, expiry, and the pod it is bound to.
    pub fn issue(&self, claims: &TokenClaims) -> String {
        let header = URL_SAFE_NO_PAD.encode(br#"{"alg":"HS256","typ":"JWT"}"#);
        let now = chrono::Utc::now().timestamp();
        let audiences: Vec<&str> = if claims.audiences.is_empty() {
            vec![DEFAULT_AUDIENCE]
        } else {
            claims.audiences.iter().map(String::as_str).collect()
        };
        let mut body = json!({
            "iss": DEFAULT_AUDIENCE,
            "sub": format!("system:serviceaccount:{}:{}", claims.namespace, claims.name),
            "aud": audiences,
            "iat": now,
            "nbf": now,
            "kubernetes.io": {"namespace": claims.namespace, "serviceaccount": {"name": claims.name, "uid": claims.uid}},
        });
        if let Some(exp) = claims.expires_at {
            body["exp"] = json!(exp);
        }
        if let Some((pod, pod_uid)) = claims.pod {
            body["kubernetes.io"]["pod"] = json!({"name": pod, "uid": pod_uid});
        }
        let payload = URL_SAFE_NO_PAD.encode(body.to_string());
        let signing_input = format!("{header}.{payload}");
        let sig = hmac::sign(&self.key, signing_input.as_bytes());
        format!("{signing_input}.{}", URL_SAFE_NO_PAD.encode(sig.as_ref()))
    }

    /// Returns the identity a bearer token stands for, if it is valid.
    pub fn authenticate(&self, token: &str) -> Option<Identity> {
        if !self.admin_token.is_empty() && constant_time_eq(token.as_bytes(), self.admin_token.as_bytes()) {
            return Some(Identity {
                user: crate::pki::ADMIN_USER.into(),
                groups: vec![crate::pki::ADMIN_GROUP.into()],
            });
        }
        let mut parts = token.rsplitn(2, '.');
        let sig = URL_SAFE_NO_PAD.decode(parts.next()?).ok()?;
        let signing_input = parts.next()?;
        hmac::verify(&self.key, signing_input.as_bytes(), &sig).ok()?;
        let payload = signing_input.split('.').nth(1)?;
        let claims: Value = serde_json::from_slice(&URL_SAFE_NO_PAD.decode(payload).ok()?).ok()?;
        if claims.get("exp").and_then(Value::as_i64).is_some_and(|exp| chrono::Utc::now().timestamp() >= exp) {
            return None;
        }
        let sub = claims.get("sub")?.as_str()?.to_string();
        let namespace = claims.pointer("/kubernetes.io/namespace").and_then(Value::as_str).unwrap_or("");
        Some(Identity {
            user: sub,
            groups: vec![
                "system:serviceaccounts".into(),
                format!("system:serviceaccounts:{namespace}"),
                "system:authenticated".into(),
            ],
        })
    }
}

fn constant_time_eq(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn service_account_tokens_verify_and_tampering_fails() {
        let auth = TokenAuthenticator::new("admintoken".into(), b"0123456789abcdef0123456789abcdef");
        let t = auth.issue_service_account_token("default", "default", "u1");
        let id = auth.authenticate(&t).unwrap();
        assert_eq!(id.user, "system:serviceaccount:default:default");
        let mut bad = t.clone();
        bad.push('x');
        assert!(auth.authenticate(&bad).is_none());
        assert!(auth.authenticate("garbage").is_none());
        assert_eq!(auth.authenticate("admintoken").unwrap().user, crate::pki::ADMIN_USER);
    }

    #[test]
    fn expired_tokens_are_refused() {
        let auth = TokenAuthenticator::new(String::new(), b"0123456789abcdef0123456789abcdef");
        let claims = |expires_at| TokenClaims {
            namespace: "ns",
            name: "sa",
            uid: "u",
            audiences: &[],
            expires_at: Some(expires_at),
            pod: Some(("p", "pu")),
        };
        let now = chrono::Utc::now().timestamp();
        assert!(auth.authenticate(&auth.issue(&claims(now + 600))).is_some());
        assert!(auth.authenticate(&auth.issue(&claims(now - 1))).is_none());
    }
}
