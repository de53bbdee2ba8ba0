//! The HTTP transport: one ECS endpoint at `/` (GET and POST) and the operator's `/admin/`.
//! It only moves bytes: authentication, parsing and rendering live in `ecs-api`, the rules in
//! `control`, and both run on blocking threads because SQLite is synchronous.

use axum::Router;
use axum::body::Bytes;
use axum::extract::{Path, State};
use axum::http::{HeaderMap, Method, StatusCode, Uri};
use axum::response::{IntoResponse, Response};
use axum::routing::{any, post};
use control::Control;
use ecs_api::action::Action;
use ecs_api::auth::{self, Format, HttpRequest, NonceCache};
use ecs_api::{ApiError, Code, render};
use std::sync::Arc;

#[derive(Clone)]
pub struct AppState {
    control: Arc<Control>,
    pub nonces: Arc<NonceCache>,
    admin_token: Arc<String>,
    /// How long a request's body may take to arrive.
    body_timeout: std::time::Duration,
    /// The NBD credential commands (`nbd-credential-*`), answered by the binary.
    pub nbd_admin: Option<Arc<crate::nbd_tls::NbdAdmin>>,
    /// The VM commands (`instance-vm`), when instances run VMs.
    pub vm_admin: Option<Arc<crate::vms::QemuMachines>>,
}

/// Largest request body read, in bytes (the SDKs send parameters in the query or a form).
const MAX_BODY_BYTES: usize = 2 << 20;

impl AppState {
    pub fn new(
        control: Arc<Control>,
        nonces: Arc<NonceCache>,
        admin_token: String,
        body_timeout: std::time::Duration,
    ) -> Self {
        AppState { control, nonces, admin_token: Arc::new(admin_token), body_timeout, nbd_admin: None, vm_admin: None }
    }
}

/// The whole body, or the response that ends the request: 408 (closing the connection) when
/// it does not arrive within the body timeout, 413 when it is larger than [`MAX_BODY_BYTES`].
async fn read_body(app: &AppState, body: axum::body::Body) -> Result<Bytes, Response> {
    match tokio::time::timeout(app.body_timeout, axum::body::to_bytes(body, MAX_BODY_BYTES)).await {
        Ok(Ok(b)) => Ok(b),
        Ok(Err(_)) => Err((StatusCode::PAYLOAD_TOO_LARGE, [("connection", "close")]).into_response()),
        Err(_) => Err((StatusCode::REQUEST_TIMEOUT, [("connection", "close")]).into_response()),
    }
}

pub fn router(state: AppState) -> Router {
    Router::new().route("/", any(ecs)).route("/admin/{command}", post(admin)).with_state(state)
}

async fn ecs(
    State(app): State<AppState>,
    method: Method,
    uri: Uri,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let req = HttpRequest {
        method: method.as_str().to_string(),
        query: uri.query().unwrap_or_default().to_string(),
        headers: headers
            .iter()
            // `HeaderName::as_str` is lowercase already.
            .map(|(k, v)| (k.as_str().to_string(), String::from_utf8_lossy(v.as_bytes()).into_owned()))
            .collect(),
        body: body.to_vec(),
    };
    let request_id = render::new_request_id();
    // Reads are short and never wait on a lock (reader connections, WAL): they run here, which
    // saves two thread hand-offs per request. Writes may wait for the catalog lock and the
    // store, so they run on a blocking thread.
    let outcome = match prepare(&app, &req) {
        Ok(p) if p.1.action.is_read_only() => Ok(run(&app, p)),
        Ok(p) => tokio::task::spawn_blocking(move || run(&app, p)).await,
        Err(e) => Ok(Err(e)),
    };
    let mut retry_after = None;
    let rendered = match outcome {
        Ok(Ok((action, format, body))) => render::success(&action, format, &request_id, body),
        Ok(Err((err, format))) => {
            tracing::debug!(code = err.code.as_str(), message = %err.message, "request refused");
            retry_after = err.retry_after_ms;
            render::error(&err, format, &request_id)
        }
        Err(e) => {
            tracing::error!(error = %e, "request handler panicked");
            render::error(&ApiError::new(Code::InternalFailure), Format::Json, &request_id)
        }
    };
    let status = StatusCode::from_u16(rendered.status).unwrap_or(StatusCode::INTERNAL_SERVER_ERROR);
    let mut response = (status, [("content-type", rendered.content_type)], rendered.body).into_response();
    if let Some(ms) = retry_after {
        // Milliseconds, as the SDKs read it (they wait, then retry).
        response.headers_mut().insert("x-acs-retry-after", axum::http::HeaderValue::from(ms));
    }
    response
}

type Handled = Result<(String, Format, ecs_api::Node), (ApiError, Format)>;

/// A request that passed authentication and parsing: (verified envelope, typed request).
type Prepared = (auth::Verified, ecs_api::action::Request);

fn prepare(app: &AppState, req: &HttpRequest) -> Result<Prepared, (ApiError, Format)> {
    let verified = match auth::verify(req, app.control.as_ref(), &app.nonces, chrono::Utc::now()) {
        Ok(v) => v,
        Err(e) => return Err((e, auth::requested_format(req))),
    };
    let format = verified.format;
    let parsed =
        Action::parse_versioned(&verified.version, &verified.action, &verified.params).map_err(|e| (e, format))?;
    Ok((verified, parsed))
}

fn run(app: &AppState, (verified, parsed): Prepared) -> Handled {
    let format = verified.format;
    let body = app.control.respond(&verified.account_id, parsed).map_err(|e| (e, format))?;
    Ok((verified.action, format, body))
}

async fn admin(
    State(app): State<AppState>,
    Path(command): Path<String>,
    headers: HeaderMap,
    body: axum::body::Body,
) -> Response {
    let body = match read_body(&app, body).await {
        Ok(b) => b,
        Err(r) => return r,
    };
    let presented = headers
        .get("authorization")
        .and_then(|v| v.to_str().ok())
        .and_then(|v| v.strip_prefix("Bearer "))
        .unwrap_or_default();
    let ok = {
        use subtle::ConstantTimeEq;
        presented.len() == app.admin_token.len() && bool::from(presented.as_bytes().ct_eq(app.admin_token.as_bytes()))
    };
    if !ok {
        return json_error(StatusCode::UNAUTHORIZED, "missing or wrong admin token");
    }
    let body: serde_json::Value = if body.is_empty() {
        serde_json::Value::Null
    } else {
        match serde_json::from_slice(&body) {
            Ok(v) => v,
            Err(e) => {
                return json_error(StatusCode::BAD_REQUEST, &format!("body is not JSON: {e}"));
            }
        }
    };
    if crate::nbd_tls::COMMANDS.contains(&command.as_str())
        && let Some(nbd) = app.nbd_admin.clone()
    {
        return match tokio::task::spawn_blocking(move || nbd.run(&command, body)).await {
            Ok(Ok(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
            Ok(Err((code, msg))) => json_error(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), &msg),
            Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
        };
    }
    if crate::vms::COMMANDS.contains(&command.as_str()) {
        let Some(vms) = app.vm_admin.clone() else {
            return json_error(StatusCode::CONFLICT, "instances run no VMs on this server (--vms)");
        };
        return match vms.admin(&command, &body) {
            Ok(v) => (StatusCode::OK, axum::Json(v)).into_response(),
            Err((code, msg)) => json_error(StatusCode::from_u16(code).unwrap_or(StatusCode::BAD_REQUEST), &msg),
        };
    }
    let control = app.control.clone();
    match tokio::task::spawn_blocking(move || control.admin(&command, body)).await {
        Ok(Ok(v)) => (StatusCode::OK, axum::Json(v)).into_response(),
        Ok(Err(e)) => json_error(StatusCode::from_u16(e.status()).unwrap_or(StatusCode::BAD_REQUEST), &e.to_string()),
        Err(e) => json_error(StatusCode::INTERNAL_SERVER_ERROR, &e.to_string()),
    }
}

fn json_error(status: StatusCode, message: &str) -> Response {
    (status, axum::Json(serde_json::json!({ "Error": message }))).into_response()
}
