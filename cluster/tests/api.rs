//! The coordinator's API through its router, without a socket: status codes, JSON errors with
//! spec paths, auth, body limits, idempotent submits, illegal transitions, and the generated
//! OpenAPI document.

use std::sync::Arc;
use std::time::Duration;

use axum::body::Body;
use axum::http::{Request, StatusCode};
use http_body_util::BodyExt;
use serde_json::Value;
use tower::ServiceExt;
use weir_cluster::coordinator::{router, Coordinator, JobStore, Timings};

const TOKEN: &str = "s3cret";

async fn coordinator(dir: &std::path::Path, token: Option<&str>) -> Arc<Coordinator> {
    let store = JobStore::open(dir).await.expect("job store");
    Coordinator::open(
        store,
        token.map(str::to_string),
        Timings {
            worker_timeout: Duration::from_secs(5),
        },
    )
    .await
    .expect("coordinator")
}

/// Sends one request through the router: status and body (JSON when it parses).
async fn send(
    c: &Arc<Coordinator>,
    method: &str,
    uri: &str,
    body: &str,
    headers: &[(&str, &str)],
) -> (StatusCode, Value) {
    let mut request = Request::builder().method(method).uri(uri);
    for (k, v) in headers {
        request = request.header(*k, *v);
    }
    let response = router(c.clone())
        .oneshot(request.body(Body::from(body.to_string())).unwrap())
        .await
        .unwrap();
    let status = response.status();
    let bytes = response.into_body().collect().await.unwrap().to_bytes();
    let text = String::from_utf8_lossy(&bytes).to_string();
    (
        status,
        serde_json::from_str(&text).unwrap_or(Value::String(text)),
    )
}

const AUTH: (&str, &str) = ("authorization", "Bearer s3cret");

fn spec(name: &str, checkpoint: bool) -> String {
    let checkpoint = if checkpoint {
        "checkpoint: { interval: 1s, store: \"file:///tmp/weir-api-test\" }\n"
    } else {
        ""
    };
    format!(
        "name: {name}\n{checkpoint}sources:\n  p: {{ kind: generator, stream: payments, events: 10 }}\n\
         sinks:\n  out: {{ from: p, kind: blackhole }}\n"
    )
}

#[tokio::test]
async fn a_bad_spec_is_a_400_naming_every_path() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), None).await;
    let bad = "name: x\nsources:\n  p: { kind: generator, stream: payments }\nsteps:\n  w: { from: nowhere, filter: \"amount >\" }\nsinks:\n  out: { from: w, kind: blackhole }\n";
    let (status, body) = send(&c, "POST", "/api/v1/jobs", bad, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let paths: Vec<&str> = body["problems"]
        .as_array()
        .expect("problems")
        .iter()
        .map(|p| p["path"].as_str().unwrap())
        .collect();
    assert!(paths.iter().any(|p| p.starts_with("steps.w")), "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("invalid spec"),
        "{body}"
    );
    // Not YAML at all.
    let (status, body) = send(&c, "POST", "/api/v1/jobs", "{{{", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // A relative checkpoint store cannot be shared by processes on other hosts.
    let relative = spec("rel", false).replace(
        "sources:",
        "checkpoint: { interval: 1s, store: store }\nsources:",
    );
    let (status, body) = send(&c, "POST", "/api/v1/jobs", &relative, &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert_eq!(body["problems"][0]["path"], "checkpoint.store", "{body}");
    // Nothing was stored.
    let (_, list) = send(&c, "GET", "/api/v1/jobs", "", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 0);
}

#[tokio::test]
async fn the_token_guards_everything_but_health_and_metrics() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), Some(TOKEN)).await;
    for (method, uri) in [
        ("GET", "/api/v1/jobs"),
        ("POST", "/api/v1/jobs"),
        ("GET", "/api/v1/workers"),
        ("GET", "/api/v1/openapi.json"),
        ("GET", "/api/v1/prometheus/targets"),
        ("DELETE", "/api/v1/jobs/x"),
    ] {
        let (status, body) = send(&c, method, uri, "", &[]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}: {body}");
        assert!(body["error"].as_str().unwrap().contains("token"), "{body}");
        let (status, _) = send(&c, method, uri, "", &[("authorization", "Bearer wrong")]).await;
        assert_eq!(status, StatusCode::UNAUTHORIZED, "{method} {uri}");
    }
    let (status, _) = send(&c, "GET", "/healthz", "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    let (status, body) = send(&c, "GET", "/metrics", "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(
        body.as_str().unwrap().contains("weir_coordinator_jobs"),
        "{body}"
    );
    let (status, _) = send(&c, "GET", "/api/v1/jobs", "", &[AUTH]).await;
    assert_eq!(status, StatusCode::OK);
}

#[tokio::test]
async fn unknown_jobs_are_404_and_illegal_transitions_409() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), None).await;
    for (method, uri) in [
        ("GET", "/api/v1/jobs/nope"),
        ("DELETE", "/api/v1/jobs/nope"),
        ("POST", "/api/v1/jobs/nope/stop"),
        ("GET", "/api/v1/jobs/nope/checkpoints"),
        ("POST", "/api/v1/jobs/nope/resume"),
        ("GET", "/api/v1/no/such/route"),
    ] {
        let (status, body) = send(&c, method, uri, "", &[]).await;
        assert_eq!(status, StatusCode::NOT_FOUND, "{method} {uri}: {body}");
        assert!(body["error"].is_string(), "{body}");
    }
    let (status, body) = send(&c, "POST", "/api/v1/jobs", &spec("plain", false), &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let id = body["id"].as_str().unwrap().to_string();
    // A second job of the same name would share its checkpoints and sinks.
    let (status, body) = send(&c, "POST", "/api/v1/jobs", &spec("plain", false), &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Only a stopped or failed job resumes.
    let (status, body) = send(&c, "POST", &format!("/api/v1/jobs/{id}/resume"), "", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"]
            .as_str()
            .unwrap()
            .contains("stopped or failed"),
        "{body}"
    );
    // Not running yet: no savepoint, no rescale; a savepoint needs checkpoints anyway.
    let (status, body) = send(
        &c,
        "POST",
        &format!("/api/v1/jobs/{id}/savepoints"),
        "",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    let (status, body) = send(
        &c,
        "POST",
        &format!("/api/v1/jobs/{id}/stop"),
        r#"{"savepoint": true}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("checkpoint"),
        "{body}"
    );
    let (status, body) = send(
        &c,
        "PATCH",
        &format!("/api/v1/jobs/{id}"),
        r#"{"parallelism": 3}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // Bad bodies are 400s that say what is wrong.
    let (status, body) = send(
        &c,
        "PATCH",
        &format!("/api/v1/jobs/{id}"),
        r#"{"parallelism": "x"}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    let (status, body) = send(
        &c,
        "POST",
        &format!("/api/v1/jobs/{id}/replay"),
        r#"{"from": "yesterday"}"#,
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    // Cancelled before it ran: stopped at once; then every command is a conflict.
    let (status, body) = send(&c, "DELETE", &format!("/api/v1/jobs/{id}"), "", &[]).await;
    assert_eq!(status, StatusCode::ACCEPTED, "{body}");
    let (_, job) = send(&c, "GET", &format!("/api/v1/jobs/{id}"), "", &[]).await;
    assert_eq!(job["state"], "stopped", "{job}");
    for (method, uri, body) in [
        ("DELETE", format!("/api/v1/jobs/{id}"), ""),
        ("POST", format!("/api/v1/jobs/{id}/stop"), ""),
        (
            "PATCH",
            format!("/api/v1/jobs/{id}"),
            r#"{"parallelism": 2}"#,
        ),
    ] {
        let (status, answer) = send(&c, method, &uri, body, &[]).await;
        assert_eq!(status, StatusCode::CONFLICT, "{method} {uri}: {answer}");
        assert!(
            answer["error"].as_str().unwrap().contains("stopped"),
            "{answer}"
        );
    }
    // Stopped, but without checkpoints: nothing to resume from.
    let (status, body) = send(&c, "POST", &format!("/api/v1/jobs/{id}/resume"), "", &[]).await;
    assert_eq!(status, StatusCode::BAD_REQUEST, "{body}");
    assert!(
        body["error"].as_str().unwrap().contains("checkpoint"),
        "{body}"
    );
    // With checkpoints: a new job of the same name restores the latest one.
    let (_, body) = send(&c, "POST", "/api/v1/jobs", &spec("resumable", true), &[]).await;
    let first = body["id"].as_str().unwrap().to_string();
    send(&c, "DELETE", &format!("/api/v1/jobs/{first}"), "", &[]).await;
    let (status, body) = send(&c, "POST", &format!("/api/v1/jobs/{first}/resume"), "", &[]).await;
    assert_eq!(status, StatusCode::CREATED, "{body}");
    let resumed = body["id"].as_str().unwrap().to_string();
    let (_, again) = send(&c, "GET", &format!("/api/v1/jobs/{resumed}"), "", &[]).await;
    assert_eq!(again["name"], "resumable", "{again}");
    assert_eq!(again["replay_of"], first.as_str(), "{again}");
    // Resumed once: a second would run two jobs of one name.
    let (status, body) = send(&c, "POST", &format!("/api/v1/jobs/{first}/resume"), "", &[]).await;
    assert_eq!(status, StatusCode::CONFLICT, "{body}");
    // The history records the legal transitions only.
    let states: Vec<(&str, &str)> = job["history"]
        .as_array()
        .unwrap()
        .iter()
        .map(|t| (t["from"].as_str().unwrap(), t["to"].as_str().unwrap()))
        .collect();
    assert_eq!(states, [("submitted", "stopped")]);
}

#[tokio::test]
async fn bodies_over_a_mebibyte_are_413() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), None).await;
    let big = format!("{}\n# {}", spec("big", false), "x".repeat(2 << 20));
    let (status, body) = send(&c, "POST", "/api/v1/jobs", &big, &[]).await;
    assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE, "{body}");
    assert!(body["error"].is_string(), "{body}");
}

#[tokio::test]
async fn dry_runs_plan_and_idempotency_keys_make_retries_safe() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), None).await;
    let (status, body) = send(
        &c,
        "POST",
        "/api/v1/jobs?dry_run=true",
        &spec("dry", true),
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{body}");
    assert!(
        body["plan"]
            .as_str()
            .unwrap()
            .contains("checkpoints every 1s"),
        "{body}"
    );
    let (_, list) = send(&c, "GET", "/api/v1/jobs", "", &[]).await;
    assert_eq!(
        list.as_array().unwrap().len(),
        0,
        "a dry run stores nothing"
    );

    let key = [("idempotency-key", "submit-1")];
    let (first, a) = send(&c, "POST", "/api/v1/jobs", &spec("idem", true), &key).await;
    let (again, b) = send(&c, "POST", "/api/v1/jobs", &spec("idem", true), &key).await;
    assert_eq!((first, again), (StatusCode::CREATED, StatusCode::OK));
    assert_eq!(a["id"], b["id"]);
    let (other, body) = send(&c, "POST", "/api/v1/jobs", &spec("idem2", true), &key).await;
    assert_eq!(
        other,
        StatusCode::CONFLICT,
        "the key belongs to another spec: {body}"
    );
    let (_, list) = send(&c, "GET", "/api/v1/jobs", "", &[]).await;
    assert_eq!(list.as_array().unwrap().len(), 1);

    // The store outlives the coordinator.
    drop(c);
    let c = coordinator(dir.path(), None).await;
    let (status, job) = send(
        &c,
        "GET",
        &format!("/api/v1/jobs/{}", a["id"].as_str().unwrap()),
        "",
        &[],
    )
    .await;
    assert_eq!(status, StatusCode::OK, "{job}");
    assert_eq!(job["name"], "idem");
    let (_, again) = send(&c, "POST", "/api/v1/jobs", &spec("idem", true), &key).await;
    assert_eq!(again["id"], a["id"]);
}

#[tokio::test]
async fn the_openapi_document_lists_every_route() {
    let dir = tempfile::tempdir().unwrap();
    let c = coordinator(dir.path(), None).await;
    let (status, doc) = send(&c, "GET", "/api/v1/openapi.json", "", &[]).await;
    assert_eq!(status, StatusCode::OK);
    assert!(doc["openapi"].as_str().unwrap().starts_with("3."), "{doc}");
    let paths = doc["paths"].as_object().unwrap();
    for p in [
        "/api/v1/jobs",
        "/api/v1/jobs/{id}",
        "/api/v1/jobs/{id}/checkpoints",
        "/api/v1/jobs/{id}/stop",
        "/api/v1/jobs/{id}/savepoints",
        "/api/v1/jobs/{id}/replay",
        "/api/v1/workers",
        "/api/v1/prometheus/targets",
        "/metrics",
    ] {
        assert!(paths.contains_key(p), "{p} missing from {:?}", paths.keys());
    }
    assert!(doc["paths"]["/api/v1/jobs/{id}"]["patch"].is_object());
    assert!(doc["components"]["schemas"]["JobStatus"].is_object());
}
