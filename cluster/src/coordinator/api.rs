//! The coordinator's HTTP/JSON API. Errors are JSON (`{"error": ..., "problems": [{path,
//! message}]}` for a spec); bodies are limited to 1 MiB (413); with a token configured every
//! route but `/healthz` and `/metrics` needs `Authorization: Bearer <token>` (401).

use std::sync::Arc;

use axum::body::Bytes;
use axum::extract::rejection::BytesRejection;
use axum::extract::{DefaultBodyLimit, Path, Query, Request, State};
use axum::http::{header, HeaderMap, StatusCode};
use axum::middleware::{self, Next};
use axum::response::{IntoResponse, Response};
use axum::routing::{get, post};
use axum::{Json, Router};
use serde::de::DeserializeOwned;
use serde::Deserialize;
use serde_json::json;

use super::{AfterStop, ApiFailure, Coordinator, Refused};
use crate::metrics_http::TEXT_FORMAT;
use utoipa::OpenApi;

use crate::wire::{
    ApiError, Assignment, CheckpointInfo, Created, Heartbeat, HeartbeatReply, JobState, JobStatus,
    JobSummary, ProcessReport, ProcessState, ProcessStatus, ReplayRequest, SpecProblem, StopKind,
    Transition, WorkerStatus,
};

/// The largest request body accepted.
pub const BODY_LIMIT: usize = 1 << 20;

type Shared = State<Arc<Coordinator>>;

/// Every route of the API.
pub fn router(coordinator: Arc<Coordinator>) -> Router {
    let api = Router::new()
        .route("/api/v1/jobs", post(submit).get(list))
        .route(
            "/api/v1/jobs/{id}",
            get(status).patch(rescale).delete(cancel),
        )
        .route("/api/v1/jobs/{id}/checkpoints", get(checkpoints))
        .route("/api/v1/jobs/{id}/stop", post(stop))
        .route("/api/v1/jobs/{id}/savepoints", post(savepoint))
        .route("/api/v1/jobs/{id}/replay", post(replay))
        .route("/api/v1/jobs/{id}/resume", post(resume))
        .route("/api/v1/workers", get(workers))
        .route("/api/v1/workers/heartbeat", post(heartbeat))
        .route("/api/v1/prometheus/targets", get(targets))
        .route("/api/v1/openapi.json", get(openapi))
        .route_layer(middleware::from_fn_with_state(coordinator.clone(), auth));
    Router::new()
        .route("/healthz", get(|| async { "ok\n" }))
        .route("/metrics", get(metrics))
        .merge(api)
        .fallback(|| async {
            failure(
                StatusCode::NOT_FOUND,
                "no such route: see /api/v1/openapi.json".into(),
            )
        })
        .layer(DefaultBodyLimit::max(BODY_LIMIT))
        .with_state(coordinator)
}

fn failure(status: StatusCode, error: String) -> Response {
    (
        status,
        Json(ApiError {
            error,
            problems: Vec::new(),
        }),
    )
        .into_response()
}

impl IntoResponse for ApiFailure {
    fn into_response(self) -> Response {
        match self {
            ApiFailure::Refused(r) => {
                let status = match &r {
                    Refused::NotFound(_) => StatusCode::NOT_FOUND,
                    Refused::Conflict(_) => StatusCode::CONFLICT,
                    Refused::Invalid(_) => StatusCode::BAD_REQUEST,
                };
                failure(status, r.to_string())
            }
            ApiFailure::Spec(errors) => {
                let problems: Vec<SpecProblem> = errors
                    .0
                    .iter()
                    .map(|e| SpecProblem {
                        path: e.path.clone(),
                        message: e.message.clone(),
                    })
                    .collect();
                let first = problems
                    .first()
                    .map(|p| format!("{}: {}", p.path, p.message))
                    .unwrap_or_default();
                (
                    StatusCode::BAD_REQUEST,
                    Json(ApiError {
                        error: format!("invalid spec ({} problem(s)); {first}", problems.len()),
                        problems,
                    }),
                )
                    .into_response()
            }
            ApiFailure::Internal(e) => failure(StatusCode::INTERNAL_SERVER_ERROR, e),
        }
    }
}

async fn auth(State(c): Shared, request: Request, next: Next) -> Response {
    if let Some(token) = &c.token {
        let given = request
            .headers()
            .get(header::AUTHORIZATION)
            .and_then(|v| v.to_str().ok())
            .and_then(|v| v.strip_prefix("Bearer "));
        if given != Some(token.as_str()) {
            let mut r = failure(
                StatusCode::UNAUTHORIZED,
                "missing or wrong bearer token (Authorization: Bearer <token>)".into(),
            );
            r.headers_mut()
                .insert(header::WWW_AUTHENTICATE, "Bearer".parse().expect("header"));
            return r;
        }
    }
    next.run(request).await
}

/// A request that cannot be read: its status and why.
struct BadBody(StatusCode, String);

impl IntoResponse for BadBody {
    fn into_response(self) -> Response {
        failure(self.0, self.1)
    }
}

/// A body that is too large is a JSON 413; one that cannot be read a JSON 400.
fn body(body: Result<Bytes, BytesRejection>) -> Result<Bytes, BadBody> {
    body.map_err(|r| BadBody(r.status(), format!("request body: {}", r.body_text())))
}

/// A JSON body (an empty one is `{}`).
fn json_body<T: DeserializeOwned>(
    b: Result<Bytes, BytesRejection>,
    what: &str,
) -> Result<T, BadBody> {
    let bytes = body(b)?;
    let bytes: &[u8] = if bytes.iter().all(u8::is_ascii_whitespace) {
        b"{}"
    } else {
        &bytes
    };
    serde_json::from_slice(bytes).map_err(|e| {
        BadBody(
            StatusCode::BAD_REQUEST,
            format!("{what}: bad JSON body: {e}"),
        )
    })
}

#[derive(Deserialize)]
struct SubmitQuery {
    #[serde(default)]
    dry_run: bool,
}

/// Submits a job spec (YAML or JSON); `?dry_run=true` only validates it and returns the plan.
#[utoipa::path(post, path = "/api/v1/jobs", tag = "jobs",
    params(("dry_run" = Option<bool>, Query, description = "Validate and return the plan only"),
           ("Idempotency-Key" = Option<String>, Header, description = "Makes a retried submit return the same job")),
    request_body(content = String, content_type = "application/yaml", description = "The job spec"),
    responses((status = 201, description = "Created", body = Created),
              (status = 200, description = "Already submitted with this Idempotency-Key, or the dry-run plan", body = Created),
              (status = 400, description = "Invalid spec: every problem with its path", body = ApiError),
              (status = 401, body = ApiError), (status = 409, description = "A job of that name runs", body = ApiError),
              (status = 413, body = ApiError)))]
async fn submit(
    State(c): Shared,
    Query(q): Query<SubmitQuery>,
    headers: HeaderMap,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let bytes = match body(b) {
        Ok(b) => b,
        Err(r) => return r.into_response(),
    };
    let Ok(text) = std::str::from_utf8(&bytes) else {
        return failure(StatusCode::BAD_REQUEST, "the spec is not UTF-8".into());
    };
    if q.dry_run {
        return match super::validate(text) {
            Ok(plan) => (
                StatusCode::OK,
                Json(json!({ "valid": true, "name": plan.name, "plan": plan.to_string() })),
            )
                .into_response(),
            Err(e) => e.into_response(),
        };
    }
    let key = headers
        .get("idempotency-key")
        .and_then(|v| v.to_str().ok())
        .map(str::to_string);
    match c.submit(text, key).await {
        Ok((id, true)) => (StatusCode::CREATED, Json(Created { id })).into_response(),
        Ok((id, false)) => (StatusCode::OK, Json(Created { id })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every job, in submission order.
#[utoipa::path(get, path = "/api/v1/jobs", tag = "jobs",
    responses((status = 200, body = Vec<JobSummary>), (status = 401, body = ApiError)))]
async fn list(State(c): Shared) -> Response {
    Json(c.list()).into_response()
}

/// A job's state, placement, last checkpoint, restarts, watermark, lag and errors.
#[utoipa::path(get, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = JobStatus), (status = 404, body = ApiError), (status = 401, body = ApiError)))]
async fn status(State(c): Shared, Path(id): Path<String>) -> Response {
    match c.status(&id).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A job's complete checkpoints and savepoints, oldest first.
#[utoipa::path(get, path = "/api/v1/jobs/{id}/checkpoints", tag = "jobs", params(("id" = String, Path)),
    responses((status = 200, body = Vec<CheckpointInfo>), (status = 404, body = ApiError)))]
async fn checkpoints(State(c): Shared, Path(id): Path<String>) -> Response {
    match c.checkpoints(&id).await {
        Ok(s) => Json(s).into_response(),
        Err(e) => e.into_response(),
    }
}

/// `POST /api/v1/jobs/{id}/stop`.
#[derive(Deserialize, Default, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct StopRequest {
    /// Take a savepoint before stopping.
    #[serde(default)]
    pub savepoint: bool,
}

fn accepted(id: &str, what: &str) -> Response {
    (
        StatusCode::ACCEPTED,
        Json(json!({ "id": id, "accepted": what })),
    )
        .into_response()
}

/// Stops a running job; `{"savepoint": true}` takes a savepoint first (stop-with-savepoint).
#[utoipa::path(post, path = "/api/v1/jobs/{id}/stop", tag = "jobs", params(("id" = String, Path)),
    request_body(content = StopRequest, description = "Optional"),
    responses((status = 202, description = "Stopping"), (status = 404, body = ApiError),
              (status = 409, description = "Not running, or no checkpoints for a savepoint", body = ApiError)))]
async fn stop(
    State(c): Shared,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let req: StopRequest = match json_body(b, "stop") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match c.stop(&id, req.savepoint, AfterStop::Stop).await {
        Ok(()) => accepted(
            &id,
            if req.savepoint {
                "stop with savepoint"
            } else {
                "stop"
            },
        ),
        Err(e) => e.into_response(),
    }
}

/// Cancels a job: its processes are killed; sinks keep what their last checkpoint committed.
#[utoipa::path(delete, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    responses((status = 202, description = "Cancelling"), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn cancel(State(c): Shared, Path(id): Path<String>) -> Response {
    match c.stop(&id, false, AfterStop::Cancel).await {
        Ok(()) => accepted(&id, "cancel"),
        Err(e) => e.into_response(),
    }
}

/// Takes a savepoint of a running job without stopping it.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/savepoints", tag = "jobs", params(("id" = String, Path)),
    responses((status = 202, description = "Savepoint requested"), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn savepoint(State(c): Shared, Path(id): Path<String>) -> Response {
    match c.savepoint(&id).await {
        Ok(()) => accepted(&id, "savepoint"),
        Err(e) => e.into_response(),
    }
}

/// `PATCH /api/v1/jobs/{id}`.
#[derive(Deserialize, utoipa::ToSchema)]
#[serde(deny_unknown_fields)]
pub struct PatchRequest {
    /// Processes to run the job at.
    pub parallelism: usize,
}

/// Rescales a running job: stop with a savepoint, then run from it at `parallelism` processes.
#[utoipa::path(patch, path = "/api/v1/jobs/{id}", tag = "jobs", params(("id" = String, Path)),
    request_body = PatchRequest,
    responses((status = 202, description = "Rescaling"), (status = 400, body = ApiError), (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn rescale(
    State(c): Shared,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let req: PatchRequest = match json_body(b, "PATCH") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match c.rescale(&id, req.parallelism).await {
        Ok(()) => accepted(&id, "rescale"),
        Err(e) => e.into_response(),
    }
}

/// A new run of a job from a position or savepoint, into shadow sinks when asked.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/replay", tag = "jobs", params(("id" = String, Path)),
    request_body = ReplayRequest,
    responses((status = 201, description = "The replay job", body = Created), (status = 400, body = ApiError),
              (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn replay(
    State(c): Shared,
    Path(id): Path<String>,
    b: Result<Bytes, BytesRejection>,
) -> Response {
    let req: ReplayRequest = match json_body(b, "replay") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    match c.replay(&id, req).await {
        Ok(id) => (StatusCode::CREATED, Json(Created { id })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// A stopped or failed job started again, as a new job, from its last checkpoint or
/// savepoint.
#[utoipa::path(post, path = "/api/v1/jobs/{id}/resume", tag = "jobs", params(("id" = String, Path)),
    responses((status = 201, description = "The resumed job", body = Created), (status = 400, body = ApiError),
              (status = 404, body = ApiError), (status = 409, body = ApiError)))]
async fn resume(State(c): Shared, Path(id): Path<String>) -> Response {
    match c.resume(&id).await {
        Ok(id) => (StatusCode::CREATED, Json(Created { id })).into_response(),
        Err(e) => e.into_response(),
    }
}

/// Every worker that has heartbeated.
#[utoipa::path(get, path = "/api/v1/workers", tag = "workers", responses((status = 200, body = Vec<WorkerStatus>)))]
async fn workers(State(c): Shared) -> Response {
    Json(c.cluster().workers()).into_response()
}

/// A worker's heartbeat: what it runs; answered with what it must run.
#[utoipa::path(post, path = "/api/v1/workers/heartbeat", tag = "workers", request_body = Heartbeat,
    responses((status = 200, body = HeartbeatReply), (status = 400, body = ApiError)))]
async fn heartbeat(State(c): Shared, b: Result<Bytes, BytesRejection>) -> Response {
    let hb: Heartbeat = match json_body(b, "heartbeat") {
        Ok(r) => r,
        Err(r) => return r.into_response(),
    };
    let reply = c.cluster().heartbeat(hb);
    Json(reply).into_response()
}

/// Prometheus HTTP service discovery of every process's metrics endpoint.
#[utoipa::path(get, path = "/api/v1/prometheus/targets", tag = "observability",
    responses((status = 200, description = "http_sd_config target groups")))]
async fn targets(State(c): Shared) -> Response {
    let cluster = c.cluster();
    let mut groups = vec![json!({
        "targets": [c.addr.lock().expect("addr").clone()],
        "labels": { "weir_role": "coordinator" },
    })];
    for (job, process, addr) in cluster.metrics_targets() {
        groups.push(json!({
            "targets": [addr],
            "labels": {
                "weir_role": "job",
                "weir_job": job.name,
                "weir_job_id": job.id,
                "weir_process": process.to_string(),
            },
        }));
    }
    Json(groups).into_response()
}

/// The coordinator's metrics (Prometheus text format).
#[utoipa::path(get, path = "/metrics", tag = "observability", responses((status = 200, description = "Prometheus text format")))]
async fn metrics(State(c): Shared) -> Response {
    let text = c.metrics.encode(&c.cluster());
    ([(header::CONTENT_TYPE, TEXT_FORMAT)], text).into_response()
}

/// This document.
#[utoipa::path(get, path = "/api/v1/openapi.json", tag = "observability", responses((status = 200, description = "OpenAPI 3.1")))]
async fn openapi() -> Response {
    Json(ApiDoc::openapi()).into_response()
}

/// The API's OpenAPI document, generated from the handlers above.
#[derive(utoipa::OpenApi)]
#[openapi(
    info(title = "weir coordinator", description = "Submit, watch, stop, rescale and replay weir jobs."),
    paths(submit, list, status, checkpoints, stop, cancel, savepoint, rescale, replay, resume, workers,
          heartbeat, targets, metrics, openapi),
    components(schemas(Created, ApiError, SpecProblem, JobStatus, JobSummary, ProcessStatus,
        CheckpointInfo, Transition, JobState, WorkerStatus, ReplayRequest, Heartbeat,
        HeartbeatReply, Assignment, ProcessReport, ProcessState, StopKind, StopRequest,
        PatchRequest)),
    modifiers(&BearerAuth),
)]
pub struct ApiDoc;

struct BearerAuth;

impl utoipa::Modify for BearerAuth {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(HttpBuilder::new().scheme(HttpAuthScheme::Bearer).build()),
        );
    }
}
