//! What every request goes through: authentication, the cross-site request forgery token and
//! checks, and the security headers of every response; and [`Ctx`], what a page handler knows
//! of its request.

use std::sync::Arc;

use axum::extract::{FromRequestParts, OriginalUri, Request, State};
use axum::http::header::{self, HeaderMap, HeaderValue};
use axum::http::request::Parts;
use axum::http::{Method, StatusCode};
use axum::middleware::Next;
use axum::response::{IntoResponse, Redirect, Response};

use crate::App;

/// How requests authenticate.
#[derive(Clone)]
#[non_exhaustive]
pub enum Auth {
    /// None: for a loopback address, or when the host application authenticates (see
    /// [`Dashboard::authorize`](crate::Dashboard::authorize)).
    None,
    /// `Authorization: Bearer TOKEN`; a browser opens the dashboard once with `?token=TOKEN`,
    /// which is then kept in an `HttpOnly`, `SameSite=Strict` cookie.
    Bearer(String),
    /// HTTP basic authentication (the browser asks for the user and password).
    Basic {
        /// The user name.
        user: String,
        /// The password.
        password: String,
    },
}

impl std::fmt::Debug for Auth {
    fn fmt(&self, f: &mut std::fmt::Formatter<'_>) -> std::fmt::Result {
        // Never the secrets.
        f.write_str(match self {
            Auth::None => "Auth::None",
            Auth::Bearer(_) => "Auth::Bearer(..)",
            Auth::Basic { .. } => "Auth::Basic { .. }",
        })
    }
}

const TOKEN_COOKIE: &str = "conveyor_token";
const CSRF_COOKIE: &str = "conveyor_csrf";
pub(crate) const REFRESH_COOKIE: &str = "conveyor_refresh";

/// The security headers of every response. The pages have no inline script or style: the
/// policy allows only the dashboard's own stylesheet and script.
const CSP: &str = "default-src 'none'; style-src 'self'; script-src 'self'; img-src 'self'; \
                   form-action 'self'; frame-ancestors 'none'; base-uri 'none'";

/// Equal, in a time that does not depend on where they differ.
fn same(a: &[u8], b: &[u8]) -> bool {
    a.len() == b.len() && a.iter().zip(b).fold(0u8, |acc, (x, y)| acc | (x ^ y)) == 0
}

pub(crate) fn cookie<'a>(headers: &'a HeaderMap, name: &str) -> Option<&'a str> {
    headers.get_all(header::COOKIE).iter().filter_map(|v| v.to_str().ok()).flat_map(|v| v.split(';')).find_map(|kv| {
        let (k, v) = kv.trim().split_once('=')?;
        (k == name).then_some(v)
    })
}

/// Decodes standard base64 (for basic authentication); `None` if it is not.
fn base64(s: &str) -> Option<Vec<u8>> {
    let mut out = Vec::with_capacity(s.len() * 3 / 4);
    let (mut acc, mut bits) = (0u32, 0);
    for c in s.trim_end_matches('=').bytes() {
        let v = match c {
            b'A'..=b'Z' => c - b'A',
            b'a'..=b'z' => c - b'a' + 26,
            b'0'..=b'9' => c - b'0' + 52,
            b'+' => 62,
            b'/' => 63,
            _ => return None,
        };
        acc = (acc << 6) | u32::from(v);
        bits += 6;
        if bits >= 8 {
            bits -= 8;
            out.push((acc >> bits) as u8);
        }
    }
    Some(out)
}

/// The path the dashboard is mounted under (`""` at the root, `/admin/queues` when nested).
pub(crate) fn base(original: &str, local: &str) -> String {
    // Nested at `/admin`, a request for `/admin` reaches the router as `/`.
    let base = original.strip_suffix(local).or_else(|| (local == "/").then_some(original)).unwrap_or("");
    base.trim_end_matches('/').to_owned()
}

fn authenticated(app: &App, parts: &Parts) -> Result<(), Box<Response>> {
    let given = parts.headers.get(header::AUTHORIZATION).and_then(|v| v.to_str().ok()).unwrap_or("");
    match &app.auth {
        Auth::None => Ok(()),
        Auth::Bearer(token) => {
            let bearer = given.strip_prefix("Bearer ").unwrap_or("");
            let cookie = cookie(&parts.headers, TOKEN_COOKIE).unwrap_or("");
            // An empty token matches nothing (not even a request without any).
            let ok = !token.is_empty()
                && (same(bearer.as_bytes(), token.as_bytes()) || same(cookie.as_bytes(), token.as_bytes()));
            if ok {
                Ok(())
            } else {
                Err(Box::new(
                    (StatusCode::UNAUTHORIZED, "a token is needed: open the dashboard with ?token=…").into_response(),
                ))
            }
        }
        Auth::Basic { user, password } => {
            let decoded = given.strip_prefix("Basic ").and_then(base64).unwrap_or_default();
            let expected = format!("{user}:{password}");
            if !user.is_empty() && !password.is_empty() && same(&decoded, expected.as_bytes()) {
                Ok(())
            } else {
                let challenge = [(header::WWW_AUTHENTICATE, "Basic realm=\"conveyor\", charset=\"UTF-8\"")];
                Err(Box::new((StatusCode::UNAUTHORIZED, challenge, "authentication needed").into_response()))
            }
        }
    }
}

/// A cross-site request: a `POST` that `Sec-Fetch-Site` (every current browser sends it) says
/// came from another site or origin; without it, one whose `Origin` names another host than
/// the request's. The form token is checked as well, whatever these say.
fn cross_site(parts: &Parts) -> bool {
    if let Some(site) = parts.headers.get("sec-fetch-site").and_then(|v| v.to_str().ok()) {
        return !matches!(site, "same-origin" | "none");
    }
    let Some(origin) = parts.headers.get(header::ORIGIN).and_then(|v| v.to_str().ok()).filter(|o| *o != "null") else {
        return false;
    };
    // The request's host: `Host` (HTTP/1.1), else the URI's authority (HTTP/2).
    let host = parts
        .headers
        .get(header::HOST)
        .and_then(|v| v.to_str().ok())
        .or(parts.uri.authority().map(|a| a.as_str()))
        .unwrap_or("");
    origin.split_once("://").map_or("", |(_, h)| h) != host
}

/// The token a page's forms carry: the value of the `conveyor_csrf` cookie, which a
/// cross-site page can neither read nor set.
#[derive(Clone)]
pub(crate) struct Csrf(pub(crate) String);

/// Authentication, forgery checks and headers, around every request.
pub(crate) async fn guard(State(app): State<Arc<App>>, req: Request, next: Next) -> Response {
    let (mut parts, body) = req.into_parts();
    let original = parts.extensions.get::<OriginalUri>().map_or(parts.uri.path().to_owned(), |o| o.path().to_owned());
    let base = base(&original, parts.uri.path());
    let cookie_path = if base.is_empty() { "/".to_owned() } else { base.clone() };
    // Over HTTPS (as a proxy in front says), cookies are sent over HTTPS only.
    let https = parts.uri.scheme_str() == Some("https")
        || parts.headers.get("x-forwarded-proto").is_some_and(|v| v.as_bytes().eq_ignore_ascii_case(b"https"));
    let secure = if https { "; Secure" } else { "" };

    // `?token=…` once: kept in a cookie, and taken out of the address bar (and history).
    if let (Auth::Bearer(token), Some(query)) = (&app.auth, parts.uri.query()) {
        let given = url::form_urlencoded::parse(query.as_bytes()).find(|(k, _)| k == "token").map(|(_, v)| v);
        if let Some(given) = given {
            if !same(given.as_bytes(), token.as_bytes()) {
                return secured((StatusCode::UNAUTHORIZED, "wrong token").into_response());
            }
            let mut to = Redirect::to(&original).into_response();
            let c = format!("{TOKEN_COOKIE}={given}; Path={cookie_path}; HttpOnly; SameSite=Strict{secure}");
            if let Ok(v) = HeaderValue::from_str(&c) {
                to.headers_mut().append(header::SET_COOKIE, v);
            }
            return secured(to);
        }
    }
    if let Err(denied) = authenticated(&app, &parts) {
        return secured(*denied);
    }
    if app.authorize.as_ref().is_some_and(|check| !check(&parts)) {
        return secured((StatusCode::FORBIDDEN, "not allowed").into_response());
    }
    if parts.method == Method::POST && cross_site(&parts) {
        return secured((StatusCode::FORBIDDEN, "cross-site request refused").into_response());
    }
    let (csrf, new) = match cookie(&parts.headers, CSRF_COOKIE) {
        Some(c) if c.len() == 64 && c.bytes().all(|b| b.is_ascii_hexdigit()) => (c.to_owned(), false),
        _ => (format!("{}{}", uuid::Uuid::new_v4().simple(), uuid::Uuid::new_v4().simple()), true),
    };
    parts.extensions.insert(Csrf(csrf.clone()));
    let mut res = next.run(Request::from_parts(parts, body)).await;
    if new {
        let c = format!("{CSRF_COOKIE}={csrf}; Path={cookie_path}; HttpOnly; SameSite=Strict{secure}");
        if let Ok(v) = HeaderValue::from_str(&c) {
            res.headers_mut().append(header::SET_COOKIE, v);
        }
    }
    secured(res)
}

fn secured(mut res: Response) -> Response {
    let h = res.headers_mut();
    h.insert(header::CONTENT_SECURITY_POLICY, HeaderValue::from_static(CSP));
    h.insert(header::X_CONTENT_TYPE_OPTIONS, HeaderValue::from_static("nosniff"));
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(header::REFERRER_POLICY, HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-opener-policy", HeaderValue::from_static("same-origin"));
    h.insert("cross-origin-resource-policy", HeaderValue::from_static("same-origin"));
    if !h.contains_key(header::CACHE_CONTROL) {
        h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-store"));
    }
    res
}

/// What a handler knows of its request: the application, where the dashboard is mounted, the
/// forms' token and the refresh interval.
pub(crate) struct Ctx {
    pub(crate) app: Arc<App>,
    pub(crate) base: String,
    pub(crate) csrf: String,
    /// Seconds between refreshes (0: off).
    pub(crate) refresh: u32,
    /// The path and query of this page, for coming back to it.
    pub(crate) here: String,
    /// A `GET` (a page that may refresh itself), not the answer to a form.
    pub(crate) get: bool,
}

impl Ctx {
    /// The dashboard's path `path` (which starts with `/`). Its root, nested, is the mount
    /// path itself (`/admin/queues`, which a nested router serves; not `/admin/queues/`).
    pub(crate) fn at(&self, path: &str) -> String {
        match (path, self.base.is_empty()) {
            ("/", false) => self.base.clone(),
            _ => format!("{}{path}", self.base),
        }
    }

    /// Whether `to` is a path (and query) of this dashboard: where a form may send the browser
    /// back to, never elsewhere (no open redirect). Refused: anything with a control character,
    /// a space or a backslash (browsers strip some of them from a `Location`), and `//…`.
    pub(crate) fn inside(&self, to: &str) -> bool {
        if to.bytes().any(|b| b.is_ascii_control() || b == b' ' || b == b'\\') || to.starts_with("//") {
            return false;
        }
        let root = self.at("/");
        to == root || to.starts_with(&format!("{root}?")) || to.starts_with(&format!("{}/", self.base))
    }

    /// Checks a form's token against the cookie's.
    pub(crate) fn check_form(&self, form: &[(String, String)]) -> Result<(), Box<Response>> {
        let given = form.iter().find(|(k, _)| k == "csrf").map_or("", |(_, v)| v.as_str());
        if same(given.as_bytes(), self.csrf.as_bytes()) {
            Ok(())
        } else {
            let refused = (StatusCode::FORBIDDEN, "the form's token does not match: reload the page and try again");
            Err(Box::new(refused.into_response()))
        }
    }
}

impl FromRequestParts<Arc<App>> for Ctx {
    type Rejection = Response;

    async fn from_request_parts(parts: &mut Parts, app: &Arc<App>) -> Result<Self, Self::Rejection> {
        let original = parts.extensions.get::<OriginalUri>().map(|o| o.0.clone()).unwrap_or_else(|| parts.uri.clone());
        let base = base(original.path(), parts.uri.path());
        let csrf = parts.extensions.get::<Csrf>().map(|c| c.0.clone()).unwrap_or_default();
        let refresh = cookie(&parts.headers, REFRESH_COOKIE).and_then(|v| v.parse().ok()).unwrap_or(0u32).min(3600);
        let here = original.path_and_query().map_or_else(|| original.path().to_owned(), |pq| pq.as_str().to_owned());
        let get = parts.method == Method::GET;
        Ok(Ctx { app: app.clone(), base, csrf, refresh, here, get })
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn basic_credentials_decode() {
        assert_eq!(base64("dXNlcjpwYXNz").unwrap(), b"user:pass");
        assert_eq!(base64("YQ==").unwrap(), b"a");
        assert!(base64("not base64!").is_none());
    }

    #[test]
    fn base_path_of_a_nested_router() {
        assert_eq!(base("/admin/queues/tasks/1", "/tasks/1"), "/admin/queues");
        assert_eq!(base("/admin/queues/", "/"), "/admin/queues");
        assert_eq!(base("/workers", "/workers"), "");
        assert_eq!(base("/admin", "/"), "/admin");
    }
}
