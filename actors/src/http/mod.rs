//! The HTTP endpoints on `http.listen` (SPEC §6): metrics, probes, the
//! workers as JSON, and a status page for a person.
//!
//! actix-web runs its one worker on a thread (and actix system) of its own,
//! and every handler only reads the shared [`Status`]: a scrape, a probe or
//! a client that connects and never sends anything cannot hold up a fold,
//! and nothing served changes any state. Requests must arrive within
//! [`REQUEST_TIMEOUT`], and connections are capped, so hostile clients cost
//! a bounded amount of memory.
//!
//! Every endpoint answers GET and HEAD; any other method is 405 with an
//! `Allow` header, and any other path is 404. Responses carry no password
//! and no connection string: the status holds none. The actions
//! ([`actions`]: fold, pause, resume, rescan) are the only POSTs, and the
//! only requests that change anything; [`auth`] decides who may send them.

mod actions;
mod auth;
mod page;

use std::collections::HashMap;
use std::net::{SocketAddr, TcpListener};
use std::time::{Duration, SystemTime};

use actix_web::http::header::{self, ContentType};
use actix_web::middleware::DefaultHeaders;
use actix_web::{
    guard, web, App, FromRequest, Handler, HttpRequest, HttpResponse, HttpServer, Responder,
};
use serde::Serialize;
use slog::{info, Logger};

use crate::control::Actions;
use crate::counter::Total;
use crate::status::{history, Status, WorkerStatus};

/// A request (its head) must arrive this soon after the connection opens.
pub const REQUEST_TIMEOUT: Duration = Duration::from_secs(5);
/// Open connections at most; more wait in the listen backlog.
const MAX_CONNECTIONS: usize = 256;

const OPENMETRICS: &str = "application/openmetrics-text; version=1.0.0; charset=utf-8";

/// Binds `listen` (`http.listen`): None when it is empty (HTTP turned
/// off). A plain socket, so that the binary binds it before it says the
/// service started, and a port in use is the first thing it reports. A bind
/// failure is an error that names the key and the address.
pub fn bind(listen: &str) -> Result<Option<TcpListener>, String> {
    if listen.is_empty() {
        return Ok(None);
    }
    let address: SocketAddr = listen
        .parse()
        .map_err(|e| format!("http.listen {listen}: {e}"))?;
    TcpListener::bind(address)
        .map(Some)
        .map_err(|e| bind_error(listen, &e))
}

/// What the endpoints serve from: the status they read, and the actions
/// they may carry out.
pub struct Serving {
    pub status: Status,
    pub actions: Actions,
    /// `http.token_file` (empty: none).
    pub token_file: String,
}

/// Serves the endpoints on `listener` (from [`bind`]) on the current actix
/// system. Returns the bound address (useful with port 0).
pub fn serve(listener: TcpListener, serving: Serving, log: &Logger) -> Result<SocketAddr, String> {
    let bound = listener
        .local_addr()
        .map_err(|e| format!("http.listen: {e}"))?;
    let listen = bound.to_string();
    let Serving {
        status,
        actions,
        token_file,
    } = serving;
    let action_state = actions::ActionState {
        actions,
        token_file,
        loopback: bound.ip().is_loopback(),
        log: log.new(slog::o!()),
    };
    sample_history(status.clone())?;
    let server = HttpServer::new(move || {
        App::new()
            .app_data(web::Data::new(status.clone()))
            .app_data(web::Data::new(action_state.clone()))
            .wrap(
                DefaultHeaders::new()
                    .add((header::CACHE_CONTROL, "no-store"))
                    .add((header::X_CONTENT_TYPE_OPTIONS, "nosniff")),
            )
            .service(endpoint("/", status_page))
            .service(endpoint("/metrics", metrics))
            .service(endpoint("/healthz", healthz))
            .service(endpoint("/readyz", readyz))
            .service(endpoint("/workers", workers))
            .service(endpoint("/coordination", coordination))
            .service(endpoint("/workers/{schema}", worker))
            .service(action(
                "/workers/{schema}/{action:fold|pause|resume}",
                actions::worker_action,
            ))
            .service(action("/rescan", actions::rescan))
            .service(action("/unlock", actions::unlock))
            .default_service(web::to(not_found))
    })
    .workers(1)
    .disable_signals()
    .client_request_timeout(REQUEST_TIMEOUT)
    .client_disconnect_timeout(Duration::from_secs(1))
    .keep_alive(Duration::from_secs(5))
    .max_connections(MAX_CONNECTIONS)
    .shutdown_timeout(1)
    .listen(listener)
    .map_err(|e| bind_error(&listen, &e))?
    .run();
    actix_rt::spawn(server);
    info!(log, "serving /metrics, /healthz, /readyz, /workers, /coordination and the status page on http://{bound}/";
        "event" => "http_listening", "address" => bound.to_string());
    Ok(bound)
}

/// Samples the fleet's counters every [`history::SAMPLE_EVERY`] for the
/// status page's charts, on a thread of its own that lives as long as the
/// process: the workers do nothing more for it, and the charts fill
/// whether anyone looks or not.
fn sample_history(status: Status) -> Result<(), String> {
    std::thread::Builder::new()
        .name("pgfleet-history".into())
        .spawn(move || loop {
            status.sample_history();
            std::thread::sleep(history::SAMPLE_EVERY);
        })
        .map(drop)
        .map_err(|e| format!("cannot start the status page's sampler thread: {e}"))
}

fn bind_error(listen: &str, e: &std::io::Error) -> String {
    match e.kind() {
        std::io::ErrorKind::AddrInUse => format!("http.listen {listen}: address already in use"),
        std::io::ErrorKind::PermissionDenied => {
            format!("http.listen {listen}: permission denied")
        }
        std::io::ErrorKind::AddrNotAvailable => {
            format!("http.listen {listen}: no interface of this machine has that address")
        }
        _ => format!("http.listen {listen}: {e}"),
    }
}

/// A read-only resource: GET and HEAD, 405 for anything else.
fn endpoint<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(
            web::route()
                .guard(guard::Any(guard::Get()).or(guard::Head()))
                .to(handler),
        )
        .default_service(web::to(method_not_allowed))
}

/// An action: POST only (405 with `Allow: POST` otherwise).
fn action<F, Args>(path: &str, handler: F) -> actix_web::Resource
where
    F: Handler<Args>,
    Args: FromRequest + 'static,
    F::Output: Responder + 'static,
{
    web::resource(path)
        .route(web::post().to(handler))
        .default_service(web::to(|| async {
            HttpResponse::MethodNotAllowed()
                .insert_header((header::ALLOW, "POST"))
                .content_type(ContentType::plaintext())
                .body("this action takes POST\n")
        }))
}

async fn metrics(status: web::Data<Status>) -> HttpResponse {
    match status.encode_metrics() {
        Ok(text) => HttpResponse::Ok().content_type(OPENMETRICS).body(text),
        Err(_) => HttpResponse::InternalServerError()
            .content_type(ContentType::plaintext())
            .body("cannot encode the metrics\n"),
    }
}

async fn healthz(status: web::Data<Status>) -> HttpResponse {
    match status.liveness() {
        Ok(()) => text(HttpResponse::Ok(), "ok\n".into()),
        Err(reason) => text(
            HttpResponse::ServiceUnavailable(),
            format!("unhealthy: {reason}\n"),
        ),
    }
}

async fn readyz(status: web::Data<Status>) -> HttpResponse {
    match status.readiness() {
        Ok(()) => text(HttpResponse::Ok(), "ready\n".into()),
        Err(reasons) => {
            let mut body = String::from("not ready:\n");
            for reason in reasons {
                body.push_str("- ");
                body.push_str(&reason);
                body.push('\n');
            }
            text(HttpResponse::ServiceUnavailable(), body)
        }
    }
}

async fn workers(status: web::Data<Status>) -> HttpResponse {
    let workers = status.workers();
    let views: Vec<WorkerView<'_>> = workers.iter().map(WorkerView::from).collect();
    json(HttpResponse::Ok(), &views)
}

/// With `coordination.enabled`: this instance's share; 404 without.
async fn coordination(status: web::Data<Status>) -> HttpResponse {
    match status.coordination_view() {
        Some(view) => json(HttpResponse::Ok(), &view),
        None => json(
            HttpResponse::NotFound(),
            &serde_json::json!({ "error": "coordination.enabled is false: this instance folds every schema alone" }),
        ),
    }
}

async fn worker(status: web::Data<Status>, schema: web::Path<String>) -> HttpResponse {
    match status.worker(&schema) {
        Some(worker) => json(HttpResponse::Ok(), &WorkerView::from(&worker)),
        None => json(
            HttpResponse::NotFound(),
            &serde_json::json!({ "error": format!("no worker for schema {:?}", schema.as_str()) }),
        ),
    }
}

async fn status_page(
    status: web::Data<Status>,
    action_state: web::Data<actions::ActionState>,
    request: HttpRequest,
) -> HttpResponse {
    // A query that does not parse is no query: the page, not a 400.
    let params = web::Query::<HashMap<String, String>>::from_query(request.query_string())
        .map(web::Query::into_inner)
        .unwrap_or_default();
    let query = page::Query::new(
        params.get("q").map(String::as_str),
        params.get("page").map(String::as_str),
    );
    HttpResponse::Ok()
        .content_type(ContentType::html())
        // The page is self-contained: nothing from elsewhere, no scripts.
        .insert_header((
            header::CONTENT_SECURITY_POLICY,
            "default-src 'none'; style-src 'unsafe-inline'; form-action 'self'",
        ))
        .body(page::render(
            &status,
            &query,
            action_state.controls(&request, status.discovers()),
        ))
}

async fn not_found() -> HttpResponse {
    text(
        HttpResponse::NotFound(),
        "not found; pgfleet serves GET /, /metrics, /healthz, /readyz, /coordination, /workers and /workers/{schema}, \
         and POST /workers/{schema}/fold, /pause, /resume, /rescan and /unlock\n"
            .into(),
    )
}

async fn method_not_allowed() -> HttpResponse {
    HttpResponse::MethodNotAllowed()
        .insert_header((header::ALLOW, "GET, HEAD"))
        .content_type(ContentType::plaintext())
        .body("method not allowed: pgfleet's HTTP endpoints are read-only (GET, HEAD)\n")
}

fn text(mut response: actix_web::HttpResponseBuilder, body: String) -> HttpResponse {
    response.content_type(ContentType::plaintext()).body(body)
}

fn json(mut response: actix_web::HttpResponseBuilder, value: &impl Serialize) -> HttpResponse {
    match serde_json::to_string(value) {
        Ok(body) => response.content_type(ContentType::json()).body(body),
        Err(e) => text(
            HttpResponse::InternalServerError(),
            format!("cannot encode JSON: {e}\n"),
        ),
    }
}

/// One worker in `/workers`: times in RFC 3339 (UTC), durations in
/// milliseconds.
#[derive(Serialize)]
struct WorkerView<'a> {
    schema: &'a str,
    worker: &'a str,
    generation: u64,
    /// `listed` (workers.schemas, workers.total) or `discovered`
    /// (workers.match).
    origin: &'static str,
    state: &'static str,
    state_since: String,
    last_fold_at: Option<String>,
    last_fold_ms: Option<f64>,
    /// A number for a whole total within bigint's range, else the exact
    /// text as a string (see `counter::Total`).
    last_total: Option<&'a Total>,
    /// Deltas the last fold left because its batch was full; 0 when none.
    backlog: u64,
    /// The backlog was counted up to ten batches' worth: at least that.
    backlog_at_least: bool,
    /// Deltas kept because the table has no total row (state
    /// `waiting_for_total`); 0 otherwise.
    waiting_for_total: u64,
    waiting_for_total_at_least: bool,
    folds: u64,
    rows_folded: u64,
    failures: u64,
    restarts: u64,
    ticks_skipped: u64,
    last_error: Option<&'a str>,
    last_error_at: Option<String>,
    restart_at: Option<String>,
    given_up_reason: Option<&'a str>,
}

impl<'a> From<&'a WorkerStatus> for WorkerView<'a> {
    fn from(w: &'a WorkerStatus) -> Self {
        WorkerView {
            schema: &w.schema,
            worker: &w.worker,
            generation: w.generation,
            origin: w.origin.as_str(),
            state: w.state.as_str(),
            state_since: rfc3339(w.state_since),
            last_fold_at: w.last_fold_at.map(rfc3339),
            last_fold_ms: w.last_fold_duration.map(|d| d.as_secs_f64() * 1000.0),
            last_total: w.last_total.as_ref(),
            backlog: w.backlog().left,
            backlog_at_least: w.backlog().at_least,
            waiting_for_total: w.waiting().map_or(0, |waiting| waiting.left),
            waiting_for_total_at_least: w.waiting().is_some_and(|waiting| waiting.at_least),
            folds: w.folds,
            rows_folded: w.rows_folded,
            failures: w.failures(),
            restarts: w.restarts(),
            ticks_skipped: w.ticks_skipped,
            last_error: w.last_error(),
            last_error_at: w.last_error_at().map(rfc3339),
            restart_at: w.restart_at().map(rfc3339),
            given_up_reason: w.given_up_reason(),
        }
    }
}

fn rfc3339(time: SystemTime) -> String {
    humantime::format_rfc3339_millis(time).to_string()
}
