//! Shows URLs without credentials: user info (a user name alone is often a token, as in
//! `wss://sk_live_…@host/`), passwords and credential-looking query values become `***`.

/// Query parameter names whose values are treated as credentials (compared in lower case without
/// `-` and `_`, so `X-Amz-Signature` is `xamzsignature`).
const SECRET_PARAMS: &[&str] = &["key", "pass", "ticket", "sig", "code", "hmac", "jwt"];

/// Parts that make any parameter name a credential's (`access_token`, `X-Amz-Credential`,
/// `client_secret`, `authorization`, `sessionid`, …).
const SECRET_NAME_PARTS: &[&str] = &[
    "token",
    "secret",
    "passw",
    "signature",
    "credential",
    "auth",
    "apikey",
    "session",
    "bearer",
    "jwt",
];

/// Value prefixes of well-known credentials, whatever the parameter is called (Stripe, Slack,
/// GitHub, GitLab, AWS access key ids).
const SECRET_VALUE_PREFIXES: &[&str] = &[
    "sk_live_",
    "sk_test_",
    "rk_live_",
    "rk_test_",
    "xoxa-",
    "xoxb-",
    "xoxp-",
    "xoxr-",
    "xoxe",
    "xapp-",
    "ghp_",
    "gho_",
    "ghs_",
    "ghu_",
    "ghr_",
    "github_pat_",
    "glpat-",
    "AKIA",
    "ASIA",
];

fn is_secret_param(name: &str) -> bool {
    let lower: String = name
        .chars()
        .filter(|c| *c != '-' && *c != '_')
        .flat_map(char::to_lowercase)
        .collect();
    SECRET_PARAMS.contains(&lower.as_str())
        || lower.ends_with("key")
        || SECRET_NAME_PARTS.iter().any(|part| lower.contains(part))
}

/// Whether a value looks like a credential by itself: a well-known token prefix, or a JWT
/// (`eyJ…` in three dot-separated parts).
fn is_secret_value(value: &str) -> bool {
    let trimmed = value.trim_start_matches("Bearer ").trim();
    SECRET_VALUE_PREFIXES
        .iter()
        .any(|prefix| trimmed.starts_with(prefix) && trimmed.len() > prefix.len() + 8)
        || (trimmed.starts_with("eyJ") && trimmed.split('.').count() == 3)
}

/// The URL with its user name, password and credential-looking query values replaced by `***`.
/// Unparseable input is replaced entirely, since it cannot be inspected.
pub fn redact_url(raw: &str) -> String {
    let Ok(mut url) = url::Url::parse(raw) else {
        return "***".to_owned();
    };
    if !url.username().is_empty() {
        let _ = url.set_username("***");
    }
    if url.password().is_some() {
        let _ = url.set_password(Some("***"));
    }
    if url.query().is_some() {
        let pairs: Vec<(String, String)> = url
            .query_pairs()
            .map(|(k, v)| {
                let v = if is_secret_param(&k) || is_secret_value(&v) {
                    "***".to_owned()
                } else {
                    v.into_owned()
                };
                (k.into_owned(), v)
            })
            .collect();
        url.query_pairs_mut().clear().extend_pairs(pairs);
    }
    url.to_string()
}

/// Whether the URL carries credentials that [`redact_url`] would hide.
pub fn has_credentials(raw: &str) -> bool {
    match url::Url::parse(raw) {
        Ok(url) => redact_url(raw) != url.to_string(),
        Err(_) => false,
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn hides_credentials_by_name_and_by_look() {
        for query in [
            "X-Amz-Signature=abc",
            "X-Amz-Credential=AKID%2F20260101",
            "X-Amz-Security-Token=t",
            "jwt=x",
            "bearer=x",
            "credential=x",
            "hmac=x",
            "authorization=Bearer%20x",
            "client_secret=x",
            "sessionid=x",
            "x=sk_live_0123456789abcdef",
            "x=xoxb-0123456789-abcdef",
            "x=ghp_0123456789abcdefghij",
            "x=eyJhbGciOiJIUzI1NiJ9.eyJzdWIiOiIxIn0.c2ln",
        ] {
            let url = format!("wss://feed.example.com/ws?{query}&room=7");
            let shown = redact_url(&url);
            assert!(
                shown.contains("=***") && shown.ends_with("&room=7"),
                "{query}: {shown}"
            );
            assert!(has_credentials(&url), "{query}");
        }
        for query in ["room=7", "x=sk_", "page=2&sort=asc", "format=eyJ"] {
            let url = format!("wss://feed.example.com/ws?{query}");
            assert!(!has_credentials(&url), "{query}");
        }
    }

    #[test]
    fn hides_query_credentials_and_passwords() {
        assert_eq!(
            redact_url("wss://u:p@feed.example.com/ws?token=abc&room=1&ticket=t"),
            "wss://***:***@feed.example.com/ws?token=***&room=1&ticket=***"
        );
        assert_eq!(
            redact_url("wss://sk_live_1@feed.example.com/ws"),
            "wss://***@feed.example.com/ws"
        );
        assert!(has_credentials("wss://sk_live_1@feed.example.com/ws"));
        assert!(has_credentials(
            "wss://:only-a-password@feed.example.com/ws"
        ));
        assert_eq!(
            redact_url("wss://feed.example.com/ws"),
            "wss://feed.example.com/ws"
        );
        assert_eq!(redact_url("not a url"), "***");
        assert!(has_credentials("wss://x.example.com/?token=1"));
        assert!(!has_credentials("wss://x.example.com"));
    }
}
