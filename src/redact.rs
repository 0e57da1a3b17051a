//! Shows URLs without credentials: user info (a user name alone is often a token, as in
//! `wss://sk_live_…@host/`), passwords and credential-looking query values become `***`.

/// Query parameter names whose values are treated as credentials.
const SECRET_PARAMS: &[&str] = &[
    "token",
    "access_token",
    "key",
    "api_key",
    "apikey",
    "secret",
    "password",
    "pass",
    "ticket",
    "auth",
    "sig",
    "signature",
    "code",
    "session",
];

fn is_secret_param(name: &str) -> bool {
    let lower = name.to_ascii_lowercase();
    SECRET_PARAMS.contains(&lower.as_str())
        || lower.ends_with("token")
        || lower.ends_with("secret")
        || lower.ends_with("key")
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
                let v = if is_secret_param(&k) {
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
