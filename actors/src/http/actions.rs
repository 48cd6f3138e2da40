//! The HTTP actions, for people (the status page's buttons) and scripts:
//! `POST /workers/{schema}/fold`, `…/pause`, `…/resume`, `POST /rescan`.
//! The same commands as `NOTIFY pgfleet, '…'` (see `control`), carried
//! out by the Supervisor and counted the same way; who may send them is
//! decided by [`auth`](super::auth).
//!
//! A browser's form post (it accepts HTML) is answered with a redirect to
//! the status page; anything else with the answer as text and a status
//! code that says what happened: 200 done, 404 no such schema, 409 not
//! now (a failed worker, every schema paused, no discovery), 401/403 not
//! allowed, 503 stopping. `POST /unlock` takes the token from the status
//! page's form and keeps it in a cookie (HttpOnly, SameSite=Strict), so
//! that the buttons work behind `http.token_file`.

use std::collections::HashMap;

use actix_web::http::header;
use actix_web::{web, HttpRequest, HttpResponse};
use slog::{info, warn, Logger};

use super::auth::{self, Refusal};
use super::page;
use crate::control::{Actions, Command, Refused, Target};

/// The cookie that carries the token for the status page's buttons.
pub const TOKEN_COOKIE: &str = "pgfleet_token";

/// What the action handlers share.
#[derive(Clone)]
pub struct ActionState {
    pub actions: Actions,
    /// `http.token_file`, read again at every action (a rotated token
    /// needs no reload); empty: none.
    pub token_file: String,
    /// `http.listen` is a loopback address.
    pub loopback: bool,
    pub log: Logger,
}

impl ActionState {
    /// The token the file holds now, if a file is set.
    fn expected(&self) -> Result<Option<String>, String> {
        if self.token_file.is_empty() {
            return Ok(None);
        }
        let text = std::fs::read_to_string(&self.token_file)
            .map_err(|e| format!("cannot read http.token_file {:?}: {e}", self.token_file))?;
        // Empty (a rotation half done): no token, never the empty one.
        match text.trim() {
            "" => Err(format!("http.token_file {:?} is empty", self.token_file)),
            token => Ok(Some(token.to_owned())),
        }
    }

    /// What the status page offers `request`'s browser (nothing logged).
    pub fn controls(&self, request: &HttpRequest, discovers: bool) -> page::Controls {
        let token = presented(request);
        let seen = auth::Request {
            token: token.as_deref(),
            ..auth::Request::default()
        };
        // A token file that cannot be read now lets no action through.
        let buttons = self.expected().is_ok_and(|expected| {
            auth::authorize(self.loopback, expected.as_deref(), seen).is_ok()
        });
        page::Controls {
            buttons,
            unlock: !buttons && !self.token_file.is_empty(),
            rescan: discovers,
        }
    }

    /// Whether `request` may act, with `presented` as its token; else the
    /// status and why.
    fn allows(&self, request: &HttpRequest, presented: Option<&str>) -> Result<(), (u16, String)> {
        let expected = self.expected().map_err(|why| {
            warn!(self.log, "{why}"; "event" => "http_action_refused", "status" => 500);
            (500, why)
        })?;
        let header_text = |name: header::HeaderName| {
            request
                .headers()
                .get(name)
                .and_then(|value| value.to_str().ok())
        };
        let seen = auth::Request {
            token: presented,
            origin: header_text(header::ORIGIN).map(auth::origin_host),
            host: header_text(header::HOST),
            cross_site: header_text(header::HeaderName::from_static("sec-fetch-site"))
                == Some("cross-site"),
        };
        auth::authorize(self.loopback, expected.as_deref(), seen).map_err(
            |Refusal { status, why }| {
                warn!(self.log, "HTTP action {} {} refused: {why}", request.method(), request.path();
                    "event" => "http_action_refused", "status" => status);
                (status, why.to_owned())
            },
        )
    }
}

/// The token a request presents: `Authorization: Bearer`, else the
/// status page's cookie.
fn presented(request: &HttpRequest) -> Option<String> {
    let bearer = request
        .headers()
        .get(header::AUTHORIZATION)
        .and_then(|value| value.to_str().ok())
        // The scheme's name is case-insensitive (RFC 9110).
        .and_then(|value| {
            let (scheme, token) = value.split_once(' ')?;
            scheme.eq_ignore_ascii_case("bearer").then_some(token)
        })
        .map(|token| token.trim().to_owned());
    bearer.or_else(|| {
        let header = request.headers().get(header::COOKIE)?.to_str().ok()?;
        auth::cookie(header, TOKEN_COOKIE).map(auth::token_of_cookie)
    })
}

/// A browser's form post gets the page back; anything else the text.
fn reply(request: &HttpRequest, status: u16, text: &str) -> HttpResponse {
    let browser = request
        .headers()
        .get(header::ACCEPT)
        .and_then(|value| value.to_str().ok())
        .is_some_and(|accept| accept.contains("text/html"));
    if browser && status < 300 {
        return HttpResponse::SeeOther()
            .insert_header((header::LOCATION, "/"))
            .finish();
    }
    let code = actix_web::http::StatusCode::from_u16(status)
        .unwrap_or(actix_web::http::StatusCode::INTERNAL_SERVER_ERROR);
    HttpResponse::build(code)
        .content_type("text/plain; charset=utf-8")
        .body(format!("{text}\n"))
}

async fn carry_out(state: &ActionState, request: &HttpRequest, command: Command) -> HttpResponse {
    let token = presented(request);
    if let Err((status, why)) = state.allows(request, token.as_deref()) {
        state.actions.count(command.kind(), "rejected");
        return reply(request, status, &why);
    }
    let kind = command.kind();
    match state.actions.run(command).await {
        Ok(done) => {
            info!(state.log, "HTTP action {}: {done}", request.path();
                "event" => "control_received", "kind" => kind, "via" => "http");
            reply(request, 200, &done)
        }
        Err(refused) => {
            let status = match refused {
                Refused::UnknownSchema(_) => 404,
                Refused::NotNow(_) | Refused::Elsewhere(_) => 409,
                Refused::Stopping => 503,
            };
            info!(state.log, "HTTP action {} {} did nothing: {refused}", request.method(), request.path();
                "event" => "http_action_refused", "status" => status);
            reply(request, status, &refused.to_string())
        }
    }
}

/// `POST /workers/{schema}/{action}`.
pub async fn worker_action(
    state: web::Data<ActionState>,
    request: HttpRequest,
    path: web::Path<(String, String)>,
) -> HttpResponse {
    let (schema, action) = path.into_inner();
    let command = match action.as_str() {
        "fold" => Command::Fold(schema),
        "pause" => Command::Pause(Target::Schema(schema)),
        "resume" => Command::Resume(Target::Schema(schema)),
        _ => {
            return reply(
                &request,
                404,
                "no such action: POST /workers/{schema}/fold, /pause or /resume",
            )
        }
    };
    carry_out(&state, &request, command).await
}

/// `POST /rescan`.
pub async fn rescan(state: web::Data<ActionState>, request: HttpRequest) -> HttpResponse {
    carry_out(&state, &request, Command::Rescan).await
}

/// `POST /unlock` (form field `token`): the status page's buttons work
/// from now on in this browser.
pub async fn unlock(
    state: web::Data<ActionState>,
    request: HttpRequest,
    form: web::Form<HashMap<String, String>>,
) -> HttpResponse {
    let token = form.get("token").map(|token| token.trim().to_owned());
    if let Err((status, why)) = state.allows(&request, token.as_deref()) {
        return reply(&request, status, &why);
    }
    let mut response = HttpResponse::SeeOther();
    response.insert_header((header::LOCATION, "/"));
    if let Some(token) = token {
        response.insert_header((
            header::SET_COOKIE,
            format!(
                "{TOKEN_COOKIE}={}; Path=/; HttpOnly; SameSite=Strict",
                auth::cookie_value(&token)
            ),
        ));
    }
    response.finish()
}
