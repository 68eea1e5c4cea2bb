//! The HTTP API (`/v1`, JSON) and its OpenAPI document, generated from the
//! handlers' annotations (utoipa): one source for the routes and their
//! description.
//!
//! | method and path | what | statuses |
//! | --- | --- | --- |
//! | `PUT /v1/plugins` | store a component (raw `application/wasm` body) | 200, 400 |
//! | `GET /v1/versions` | every stored component | 200 |
//! | `POST /v1/jobs` | deploy: returns once the job runs | 201, 400, 404, 409, 422 |
//! | `GET /v1/jobs` | every job | 200 |
//! | `GET /v1/jobs/{name}` | a job's status | 200, 404 |
//! | `GET /v1/jobs/{name}/logs?follow=` | its log (text lines, streamed) | 200, 404 |
//! | `POST /v1/jobs/{name}/upgrade` | a new version; returns once it runs | 200, 404, 409, 422 |
//! | `POST /v1/jobs/{name}/rollback` | back to an earlier version | 200, 400, 404, 409, 422 |
//! | `POST /v1/jobs/{name}/stop` | stop; returns once it stopped | 200, 404, 409 |
//! | `POST /v1/jobs/{name}/start` | start a stopped or failed job again | 200, 404, 409, 422 |
//! | `DELETE /v1/jobs/{name}` | forget a stopped or failed job | 204, 404, 409 |
//! | `GET /v1/openapi.json` | this API's OpenAPI 3 document | 200 |
//!
//! Every route needs the bearer token (401 otherwise). Errors have an
//! [`ErrorBody`]. A component may have [`MAX_PLUGIN_BYTES`], a JSON body
//! axum's default 2 MiB (413 beyond). Every call of [`Jobs`] runs on the
//! blocking pool: some wait for a job (deploy, upgrade, rollback, stop),
//! and every one may wait for the jobs' lock while a record is written.

use std::convert::Infallible;
use std::sync::Arc;
use std::time::Duration;

use axum::Json;
use axum::body::{Body, Bytes};
use axum::extract::{DefaultBodyLimit, FromRequest, Path, Query, State};
use axum::http::{StatusCode, header};
use axum::response::{IntoResponse, Response};
use serde::Deserialize;
use utoipa::openapi::security::{Http, HttpAuthScheme, SecurityScheme};
use utoipa::{Modify, OpenApi};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use super::api::{
    DeployRequest, ErrorBody, JobStatus, JobSummary, PluginStored, RollbackRequest, StopRequest,
    UpgradeDone, UpgradeRequest, Versions,
};
use super::auth::{Token, require_token};
use super::jobs::{Jobs, JobsError};

/// The largest component `PUT /v1/plugins` takes.
pub const MAX_PLUGIN_BYTES: usize = 512 << 20;

#[derive(OpenApi)]
#[openapi(
    info(
        title = "Sluice",
        description = "Deploy, upgrade and watch Sluice jobs on a running host (`sluice serve`)."
    ),
    modifiers(&BearerAuth),
    security(("bearer" = []))
)]
struct ApiDoc;

struct BearerAuth;

impl Modify for BearerAuth {
    fn modify(&self, openapi: &mut utoipa::openapi::OpenApi) {
        let components = openapi.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(Http::new(HttpAuthScheme::Bearer)),
        );
    }
}

/// The API's router, every route behind the token, and its OpenAPI
/// document (also served at `/v1/openapi.json`).
pub fn router(jobs: Arc<Jobs>, token: Token) -> (axum::Router, utoipa::openapi::OpenApi) {
    // Only a component may be large.
    let plugins = OpenApiRouter::new()
        .routes(routes!(put_plugin))
        .layer(DefaultBodyLimit::max(MAX_PLUGIN_BYTES));
    let (router, openapi) = OpenApiRouter::with_openapi(ApiDoc::openapi())
        .merge(plugins)
        .routes(routes!(get_versions))
        .routes(routes!(deploy, list_jobs))
        .routes(routes!(job_status, remove))
        .routes(routes!(job_logs))
        .routes(routes!(upgrade))
        .routes(routes!(rollback))
        .routes(routes!(stop))
        .routes(routes!(start))
        .with_state(jobs)
        .split_for_parts();
    let document = Arc::new(openapi.clone());
    let router = router
        .route(
            "/v1/openapi.json",
            axum::routing::get(move || {
                let document = Arc::clone(&document);
                async move { Json((*document).clone()) }
            }),
        )
        .layer(axum::middleware::from_fn_with_state(token, require_token));
    (router, openapi)
}

impl JobsError {
    fn status_and_kind(&self) -> (StatusCode, &'static str) {
        match self {
            JobsError::BadRequest(_) => (StatusCode::BAD_REQUEST, "bad-request"),
            JobsError::NotFound(_) => (StatusCode::NOT_FOUND, "not-found"),
            JobsError::Conflict(_) => (StatusCode::CONFLICT, "conflict"),
            JobsError::Refused { .. } => (StatusCode::CONFLICT, "refused"),
            JobsError::RolledBack(_) => (StatusCode::UNPROCESSABLE_ENTITY, "rolled-back"),
            JobsError::Failed(_) => (StatusCode::UNPROCESSABLE_ENTITY, "failed"),
            JobsError::Registry(_) => (StatusCode::INTERNAL_SERVER_ERROR, "internal"),
        }
    }
}

impl IntoResponse for JobsError {
    fn into_response(self) -> Response {
        let (status, kind) = self.status_and_kind();
        let diff = match &self {
            JobsError::Refused { diff, .. } if !diff.is_empty() => Some(diff.clone()),
            _ => None,
        };
        let body = ErrorBody {
            error: self.to_string(),
            kind: kind.into(),
            diff,
        };
        (status, Json(body)).into_response()
    }
}

/// Runs a blocking call of [`Jobs`] on the blocking pool.
async fn blocking<T: Send + 'static>(
    jobs: Arc<Jobs>,
    call: impl FnOnce(&Jobs) -> Result<T, JobsError> + Send + 'static,
) -> Result<T, JobsError> {
    tokio::task::spawn_blocking(move || call(&jobs))
        .await
        .unwrap_or_else(|e| Err(JobsError::Failed(format!("the call panicked: {e}"))))
}

/// [`blocking`], its answer as JSON.
async fn blocking_json<T: Send + 'static>(
    jobs: Arc<Jobs>,
    call: impl FnOnce(&Jobs) -> Result<T, JobsError> + Send + 'static,
) -> Result<Json<T>, JobsError> {
    blocking(jobs, call).await.map(Json)
}

/// A JSON body, with a 400 that says what is wrong with it (413 when it is
/// too large).
struct Body400<T>(T);

impl<T: serde::de::DeserializeOwned, S: Send + Sync> FromRequest<S> for Body400<T> {
    type Rejection = Response;

    async fn from_request(request: axum::extract::Request, state: &S) -> Result<Self, Response> {
        let bytes = Bytes::from_request(request, state).await.map_err(|e| {
            let kind = match e.status() {
                StatusCode::PAYLOAD_TOO_LARGE => "too-large",
                _ => "bad-request",
            };
            let body = ErrorBody {
                error: format!("cannot read the body: {}", e.body_text()),
                kind: kind.into(),
                diff: None,
            };
            (e.status(), Json(body)).into_response()
        })?;
        let parsed = if bytes.is_empty() {
            serde_json::from_slice(b"{}")
                .map_err(|e| JobsError::BadRequest(format!("a body is needed: {e}")))
        } else {
            serde_json::from_slice(&bytes).map_err(|e| {
                JobsError::BadRequest(format!("the body is not the JSON expected: {e}"))
            })
        };
        parsed.map(Body400).map_err(IntoResponse::into_response)
    }
}

/// Store a component; its SHA-256 names it from then on.
#[utoipa::path(
    put,
    path = "/v1/plugins",
    request_body(content = Vec<u8>, content_type = "application/wasm"),
    responses(
        (status = 200, description = "Stored (or already there)", body = PluginStored),
        (status = 400, description = "Not a WebAssembly file", body = ErrorBody),
        (status = 401, description = "No or a wrong token", body = ErrorBody),
    )
)]
async fn put_plugin(
    State(jobs): State<Arc<Jobs>>,
    body: Bytes,
) -> Result<Json<PluginStored>, JobsError> {
    if !body.starts_with(b"\0asm") {
        return Err(JobsError::BadRequest(format!(
            "the body ({} bytes) is not a WebAssembly file (no `\\0asm` header)",
            body.len()
        )));
    }
    let size = body.len() as u64;
    let digest = blocking(jobs, move |jobs| Ok(jobs.registry().store_plugin(&body)?)).await?;
    Ok(Json(PluginStored { digest, size }))
}

/// Every stored component.
#[utoipa::path(
    get,
    path = "/v1/versions",
    responses((status = 200, body = Versions), (status = 401, body = ErrorBody))
)]
async fn get_versions(State(jobs): State<Arc<Jobs>>) -> Result<Json<Versions>, JobsError> {
    blocking_json(jobs, |jobs| {
        Ok(Versions {
            plugins: jobs.registry().plugins()?,
        })
    })
    .await
}

/// Deploy a stored component as a new job; returns once it runs.
#[utoipa::path(
    post,
    path = "/v1/jobs",
    request_body = DeployRequest,
    responses(
        (status = 201, description = "The job runs", body = JobStatus),
        (status = 400, description = "A bad name or spec", body = ErrorBody),
        (status = 404, description = "No such component", body = ErrorBody),
        (status = 409, description = "The name is taken", body = ErrorBody),
        (status = 422, description = "The job did not start", body = ErrorBody),
    )
)]
async fn deploy(
    State(jobs): State<Arc<Jobs>>,
    Body400(request): Body400<DeployRequest>,
) -> Result<(StatusCode, Json<JobStatus>), JobsError> {
    let status = blocking(jobs, move |jobs| jobs.deploy(request)).await?;
    Ok((StatusCode::CREATED, Json(status)))
}

/// Every job.
#[utoipa::path(
    get,
    path = "/v1/jobs",
    responses((status = 200, body = Vec<JobSummary>), (status = 401, body = ErrorBody))
)]
async fn list_jobs(State(jobs): State<Arc<Jobs>>) -> Result<Json<Vec<JobSummary>>, JobsError> {
    blocking_json(jobs, |jobs| Ok(jobs.list())).await
}

/// A job's status: state, version, last batches, errors, accumulators,
/// version history.
#[utoipa::path(
    get,
    path = "/v1/jobs/{name}",
    params(("name" = String, Path, description = "The job")),
    responses((status = 200, body = JobStatus), (status = 404, body = ErrorBody))
)]
async fn job_status(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
) -> Result<Json<JobStatus>, JobsError> {
    blocking_json(jobs, move |jobs| jobs.status(&name)).await
}

#[derive(Debug, Deserialize, utoipa::IntoParams)]
#[into_params(parameter_in = Query)]
struct LogsQuery {
    /// Keep the response open and send new lines as they come, until the
    /// job ends.
    #[serde(default)]
    follow: bool,
}

/// A job's log: the host's lines about it and its guests' output, one per
/// line (`text/plain`, streamed with `follow=true`).
#[utoipa::path(
    get,
    path = "/v1/jobs/{name}/logs",
    params(("name" = String, Path, description = "The job"), LogsQuery),
    responses(
        (status = 200, description = "Lines", body = String, content_type = "text/plain"),
        (status = 404, body = ErrorBody)
    )
)]
async fn job_logs(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
    Query(query): Query<LogsQuery>,
) -> Result<Response, JobsError> {
    let log = {
        let name = name.clone();
        blocking(Arc::clone(&jobs), move |jobs| jobs.log(&name)).await?
    };
    let text_plain = [(header::CONTENT_TYPE, "text/plain; charset=utf-8")];
    if !query.follow {
        let mut text = log.recent().join("\n");
        if !text.is_empty() {
            text.push('\n');
        }
        return Ok((text_plain, text).into_response());
    }
    let (kept, receiver) = log.follow();
    let first = kept.into_iter().map(|line| line + "\n").collect::<String>();
    struct Follow {
        jobs: Arc<Jobs>,
        name: String,
        receiver: tokio::sync::broadcast::Receiver<String>,
    }
    let tail = futures::stream::unfold(
        Follow {
            jobs,
            name,
            receiver,
        },
        |mut f| async move {
            use tokio::sync::broadcast::error::RecvError;
            loop {
                match tokio::time::timeout(Duration::from_millis(500), f.receiver.recv()).await {
                    Ok(Ok(line)) => {
                        return Some((Ok::<_, Infallible>(Bytes::from(line + "\n")), f));
                    }
                    Ok(Err(RecvError::Lagged(n))) => {
                        let line = format!("[... {n} lines skipped: the reader fell behind ...]\n");
                        return Some((Ok(Bytes::from(line)), f));
                    }
                    Ok(Err(RecvError::Closed)) => return None,
                    // The stream ends with the job (after its last lines).
                    Err(_) if f.jobs.has_ended(&f.name) && f.receiver.is_empty() => return None,
                    Err(_) => {}
                }
            }
        },
    );
    let head = futures::stream::once(async move { Ok::<_, Infallible>(Bytes::from(first)) });
    let body = Body::from_stream(futures::StreamExt::chain(head, tail));
    Ok((text_plain, body).into_response())
}

/// Replace a running job's component; returns once the new version runs,
/// or why it was refused (409, with a diff of the graphs) or rolled back
/// (422).
#[utoipa::path(
    post,
    path = "/v1/jobs/{name}/upgrade",
    params(("name" = String, Path, description = "The job")),
    request_body = UpgradeRequest,
    responses(
        (status = 200, description = "The new version runs", body = UpgradeDone),
        (status = 404, description = "No such job or component", body = ErrorBody),
        (status = 409, description = "Refused, or the job does not run", body = ErrorBody),
        (status = 422, description = "The new version failed and was rolled back", body = ErrorBody),
    )
)]
async fn upgrade(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
    Body400(request): Body400<UpgradeRequest>,
) -> Result<Json<UpgradeDone>, JobsError> {
    blocking_json(jobs, move |jobs| {
        jobs.upgrade(&name, &request.digest, request.reset_state)
    })
    .await
}

/// Return a running job to the version it ran before, or to the one `to`
/// names: an upgrade to that version.
#[utoipa::path(
    post,
    path = "/v1/jobs/{name}/rollback",
    params(("name" = String, Path, description = "The job")),
    request_body = RollbackRequest,
    responses(
        (status = 200, description = "The earlier version runs", body = UpgradeDone),
        (status = 400, description = "A digest prefix shorter than 12", body = ErrorBody),
        (status = 404, description = "No such job or version", body = ErrorBody),
        (status = 409, description = "Refused, nothing to roll back to, or not running", body = ErrorBody),
        (status = 422, description = "That version failed and was rolled back", body = ErrorBody),
    )
)]
async fn rollback(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
    Body400(request): Body400<RollbackRequest>,
) -> Result<Json<UpgradeDone>, JobsError> {
    blocking_json(jobs, move |jobs| {
        jobs.rollback(&name, request.to.as_deref(), request.reset_state)
    })
    .await
}

/// Stop a job (gracefully unless `now`); returns once it stopped. It stays
/// stopped when the host restarts.
#[utoipa::path(
    post,
    path = "/v1/jobs/{name}/stop",
    params(("name" = String, Path, description = "The job")),
    request_body = StopRequest,
    responses(
        (status = 200, description = "Stopped", body = JobStatus),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It does not run", body = ErrorBody),
    )
)]
async fn stop(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
    Body400(request): Body400<StopRequest>,
) -> Result<Json<JobStatus>, JobsError> {
    blocking_json(jobs, move |jobs| jobs.stop(&name, request.now)).await
}

/// Start a stopped or failed job again, from its checkpoint, with its
/// current version; returns once it runs.
#[utoipa::path(
    post,
    path = "/v1/jobs/{name}/start",
    params(("name" = String, Path, description = "The job")),
    responses(
        (status = 200, description = "It runs", body = JobStatus),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It runs already", body = ErrorBody),
        (status = 422, description = "It did not start", body = ErrorBody),
    )
)]
async fn start(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
) -> Result<Json<JobStatus>, JobsError> {
    blocking_json(jobs, move |jobs| jobs.start_again(&name)).await
}

/// Forget a stopped or failed job: its record, and its checkpoints when
/// they are in the default location.
#[utoipa::path(
    delete,
    path = "/v1/jobs/{name}",
    params(("name" = String, Path, description = "The job")),
    responses(
        (status = 204, description = "Removed"),
        (status = 404, body = ErrorBody),
        (status = 409, description = "It runs", body = ErrorBody),
    )
)]
async fn remove(
    State(jobs): State<Arc<Jobs>>,
    Path(name): Path<String>,
) -> Result<StatusCode, JobsError> {
    blocking(jobs, move |jobs| jobs.remove(&name))
        .await
        .map(|()| StatusCode::NO_CONTENT)
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::serve::jobs::fake::FakeLauncher;
    use crate::serve::registry::Registry;
    use axum::http::Request;
    use tower::ServiceExt;

    fn app(dir: &std::path::Path) -> axum::Router {
        let registry = Registry::open(dir).unwrap();
        let jobs = Jobs::new(registry, Arc::new(FakeLauncher::default()));
        router(jobs, Token::new("secret")).0
    }

    async fn call(
        app: &axum::Router,
        request: Request<Body>,
    ) -> (StatusCode, Vec<u8>, Option<String>) {
        let response = app.clone().oneshot(request).await.unwrap();
        let status = response.status();
        let www = response
            .headers()
            .get(header::WWW_AUTHENTICATE)
            .map(|v| v.to_str().unwrap().to_string());
        let body = axum::body::to_bytes(response.into_body(), usize::MAX)
            .await
            .unwrap()
            .to_vec();
        (status, body, www)
    }

    fn get(path: &str, auth: Option<&str>) -> Request<Body> {
        let mut request = Request::get(path);
        if let Some(auth) = auth {
            request = request.header(header::AUTHORIZATION, auth);
        }
        request.body(Body::empty()).unwrap()
    }

    #[tokio::test]
    async fn every_route_needs_the_bearer_token() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        for path in [
            "/v1/jobs",
            "/v1/openapi.json",
            "/v1/jobs/none",
            "/v1/nothing",
        ] {
            for auth in [
                None,
                Some("Bearer wrong"),
                Some("Basic secret"),
                Some("secret"),
            ] {
                let (status, body, www) = call(&app, get(path, auth)).await;
                assert_eq!(status, StatusCode::UNAUTHORIZED, "{path} with {auth:?}");
                assert_eq!(www.as_deref(), Some("Bearer"));
                let body: ErrorBody = serde_json::from_slice(&body).unwrap();
                assert_eq!(body.kind, "unauthorized");
            }
        }
        let (status, body, _) = call(&app, get("/v1/jobs", Some("Bearer secret"))).await;
        assert_eq!(status, StatusCode::OK);
        assert_eq!(body, b"[]");
        let (status, _, _) = call(&app, get("/v1/jobs", Some("bearer  secret"))).await;
        assert_eq!(status, StatusCode::OK);
        let (status, _, _) = call(&app, get("/v1/jobs/none", Some("Bearer secret"))).await;
        assert_eq!(status, StatusCode::NOT_FOUND);
    }

    #[tokio::test]
    async fn the_openapi_document_describes_every_route() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let (status, body, _) = call(&app, get("/v1/openapi.json", Some("Bearer secret"))).await;
        assert_eq!(status, StatusCode::OK);
        let document: serde_json::Value = serde_json::from_slice(&body).unwrap();
        assert!(document["openapi"].as_str().unwrap().starts_with("3."));
        let paths = document["paths"].as_object().unwrap();
        let mut names: Vec<&str> = paths.keys().map(String::as_str).collect();
        names.sort();
        assert_eq!(
            names,
            [
                "/v1/jobs",
                "/v1/jobs/{name}",
                "/v1/jobs/{name}/logs",
                "/v1/jobs/{name}/rollback",
                "/v1/jobs/{name}/start",
                "/v1/jobs/{name}/stop",
                "/v1/jobs/{name}/upgrade",
                "/v1/plugins",
                "/v1/versions",
            ]
        );
        assert!(paths["/v1/jobs"]["post"].is_object());
        assert!(paths["/v1/jobs/{name}"]["delete"].is_object());
        assert!(document["components"]["schemas"]["JobSpec"].is_object());
        assert!(document["components"]["securitySchemes"]["bearer"].is_object());
    }

    #[tokio::test]
    async fn only_a_component_may_be_larger_than_two_mib() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let large = 3 << 20;
        let request = |method: &str, path: &str, body: Vec<u8>| {
            Request::builder()
                .method(method)
                .uri(path)
                .header(header::AUTHORIZATION, "Bearer secret")
                .body(Body::from(body))
                .unwrap()
        };
        let mut wasm = b"\0asm\x0d\0\x01\0".to_vec();
        wasm.resize(large, 0);
        let (status, body, _) = call(&app, request("PUT", "/v1/plugins", wasm)).await;
        assert_eq!(status, StatusCode::OK, "{}", String::from_utf8_lossy(&body));
        let stored: PluginStored = serde_json::from_slice(&body).unwrap();
        assert_eq!(stored.size, large as u64);

        let mut json = br#"{"name": "wc", "digest": ""#.to_vec();
        json.resize(large, b'0');
        json.extend_from_slice(br#""}"#);
        let (status, body, _) = call(&app, request("POST", "/v1/jobs", json)).await;
        assert_eq!(status, StatusCode::PAYLOAD_TOO_LARGE);
        let body: ErrorBody = serde_json::from_slice(&body).unwrap();
        assert_eq!(body.kind, "too-large", "{}", body.error);
        let (status, body, _) = call(&app, get("/v1/jobs", Some("Bearer secret"))).await;
        assert_eq!(
            (status, body.as_slice()),
            (StatusCode::OK, b"[]".as_slice())
        );
    }

    #[tokio::test]
    async fn upload_deploy_and_status_over_http() {
        let dir = tempfile::tempdir().unwrap();
        let app = app(dir.path());
        let auth = "Bearer secret";
        let put = |body: &'static [u8]| {
            Request::put("/v1/plugins")
                .header(header::AUTHORIZATION, auth)
                .header(header::CONTENT_TYPE, "application/wasm")
                .body(Body::from(body))
                .unwrap()
        };
        let (status, _, _) = call(&app, put(b"not wasm")).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body, _) = call(&app, put(b"\0asm\x0d\0\x01\0")).await;
        assert_eq!(status, StatusCode::OK);
        let stored: PluginStored = serde_json::from_slice(&body).unwrap();
        assert_eq!(stored.size, 8);
        let post = |path: &str, json: String| {
            Request::post(path)
                .header(header::AUTHORIZATION, auth)
                .header(header::CONTENT_TYPE, "application/json")
                .body(Body::from(json))
                .unwrap()
        };
        let deploy = format!(
            r#"{{"name": "wc", "digest": "{}", "spec": {{"args": [{{"key": "port", "value": "1"}}], "batch_interval_ms": 500}}}}"#,
            stored.digest
        );
        let (status, body, _) = call(&app, post("/v1/jobs", deploy.clone())).await;
        assert_eq!(
            status,
            StatusCode::CREATED,
            "{}",
            String::from_utf8_lossy(&body)
        );
        let (status, _, _) = call(&app, post("/v1/jobs", deploy)).await;
        assert_eq!(status, StatusCode::CONFLICT);
        let (status, _, _) = call(&app, post("/v1/jobs", "{\"name\": 1}".into())).await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body, _) = call(&app, get("/v1/jobs/wc", Some(auth))).await;
        assert_eq!(status, StatusCode::OK);
        let job: JobStatus = serde_json::from_slice(&body).unwrap();
        assert_eq!(
            (job.state.as_str(), job.version),
            ("running", stored.digest.clone())
        );
        assert_eq!(job.spec.batch_interval_ms, Some(500));
        let (status, _, _) = call(
            &app,
            post("/v1/jobs/wc/rollback", "{\"to\": \"abc\"}".into()),
        )
        .await;
        assert_eq!(status, StatusCode::BAD_REQUEST);
        let (status, body, _) = call(&app, post("/v1/jobs/wc/stop", String::new())).await;
        assert_eq!(status, StatusCode::OK);
        let job: JobStatus = serde_json::from_slice(&body).unwrap();
        assert_eq!(job.state, "stopped");
        let (status, body, _) = call(&app, get("/v1/jobs/wc/logs", Some(auth))).await;
        assert_eq!(status, StatusCode::OK);
        let text = String::from_utf8(body).unwrap();
        assert!(text.contains("deploying version"), "{text}");
        assert!(text.trim_end().ends_with("stopped"), "{text}");
    }
}
