//! The lease operations of the OpenAPI document, against the real API (a part of
//! `every_operation_answers_as_documented`, kept apart for length).

use super::{Api, Call, TOKEN, media_matches};
use serde_json::{Value, json};
use std::io::{BufRead, BufReader};

pub fn lease_endpoints(api: &Api) {
    let (all, one) = ("/v1/leases", "/v1/leases/{name}");
    let (acquire, renew, release) =
        ("/v1/leases/{name}/acquire", "/v1/leases/{name}/renew", "/v1/leases/{name}/release");
    let body = r#"{"node": "web-1", "holder": "w", "ttl_ms": 10000}"#;
    assert_eq!(api.get(all, all, 200).json(), json!([]));
    api.get(one, "/v1/leases/leader", 404);
    api.get(one, "/v1/leases/bad%20name", 400);
    api.call(Call::new("post", acquire, "/v1/leases/leader/acquire").json(body), 401);
    api.call(
        Call::new("post", acquire, "/v1/leases/leader/acquire").token("wrong-token-0123456789").json(body),
        403,
    );
    let path = "/v1/leases/leader/acquire";
    api.call(Call::new("post", acquire, path).token(TOKEN).json(r#"{"node": "web-1", "ttl_ms": 10}"#), 400);
    api.call(
        Call::new("post", acquire, path).token(TOKEN).json(r#"{"node": "ghost", "ttl_ms": 10000}"#),
        404,
    );
    let lease = api.call(Call::new("post", acquire, path).token(TOKEN).json(body), 200).json();
    let other = r#"{"node": "web-1", "holder": "x", "ttl_ms": 10000}"#;
    api.call(Call::new("post", acquire, path).token(TOKEN).json(other), 409);
    assert_eq!(api.get(one, "/v1/leases/leader", 200).json()["token"], lease["token"]);
    assert_eq!(api.get(all, all, 200).json().as_array().map(Vec::len), Some(1));
    let first = api.watch("/v1/leases/leader/watch");
    assert_eq!(first["change"], "current", "{first}");
    let holder = json!({ "holder": "w", "token": lease["token"] }).to_string();
    let stranger = json!({ "holder": "x", "token": lease["token"] }).to_string();
    for (template, verb) in [(renew, "renew"), (release, "release")] {
        let path = format!("/v1/leases/leader/{verb}");
        api.call(Call::new("post", template, &path).json(&holder), 401);
        api.call(Call::new("post", template, &path).token("wrong-token-0123456789").json(&holder), 403);
        api.call(Call::new("post", template, &path).token(TOKEN).json("{}"), 400);
        api.call(Call::new("post", template, &path).token(TOKEN).json(&stranger), 409);
        api.call(Call::new("post", template, &path).token(TOKEN).json(&holder), 200);
    }
    api.get(one, "/v1/leases/leader", 404);
}

impl Api {
    /// Opens a lease's watch stream, checks the response against the document, and returns
    /// the first event's data.
    fn watch(&self, path: &str) -> Value {
        let template = "/v1/leases/{name}/watch";
        self.hits.borrow_mut().insert(("get".into(), template.into()));
        let response = self.agent.get(format!("{}{path}", self.base)).call().expect("the watch opens");
        assert_eq!(response.status(), 200);
        let content_type = response.headers().get("content-type").and_then(|v| v.to_str().ok()).unwrap_or("");
        let documented = &self.doc["paths"][template]["get"]["responses"]["200"]["content"];
        assert!(
            documented.as_object().expect("content").keys().any(|media| media_matches(media, content_type))
        );
        let mut lines = BufReader::new(response.into_body().into_reader()).lines();
        loop {
            let line = lines.next().expect("the stream stays open").expect("the stream reads");
            if let Some(data) = line.strip_prefix("data:") {
                return serde_json::from_str(data.trim()).expect("data is JSON");
            }
        }
    }
}
