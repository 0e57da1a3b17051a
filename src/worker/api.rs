//! The reference worker's HTTP side: one JSON `POST` to the service with the worker's key,
//! answering the status and the JSON body (`null` when the body is no JSON).

use std::time::Duration;

use serde_json::Value;

/// Largest answer read (a claim of 100 runs with their payloads).
const MAX_ANSWER_BYTES: usize = 16 * 1024 * 1024;

/// The service, as the worker calls it.
#[derive(Clone)]
pub struct Api {
    client: awc::Client,
    url: String,
    key: String,
}

impl Api {
    /// The service at `url` (a trailing `/` is ignored), called with `key`. A call gives up
    /// after 60 s (a claim long-polls at most 30 s).
    pub fn new(url: &str, key: &str) -> Api {
        Api {
            client: awc::Client::builder()
                .timeout(Duration::from_secs(60))
                .finish(),
            url: url.trim_end_matches('/').to_owned(),
            key: key.to_owned(),
        }
    }

    /// `POST {url}{path}` with `body`: the answer's status and JSON body, or why there was no
    /// answer (the service could not be reached, or the answer could not be read).
    pub async fn post(&self, path: &str, body: &Value) -> anyhow::Result<(u16, Value)> {
        let mut response = self
            .client
            .post(format!("{}{path}", self.url))
            .insert_header(("Authorization", format!("Bearer {}", self.key)))
            .send_json(body)
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: {e}"))?;
        let status = response.status().as_u16();
        let bytes = response
            .body()
            .limit(MAX_ANSWER_BYTES)
            .await
            .map_err(|e| anyhow::anyhow!("POST {path}: reading the answer: {e}"))?;
        Ok((
            status,
            serde_json::from_slice(&bytes).unwrap_or(Value::Null),
        ))
    }
}
