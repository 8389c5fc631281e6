//! Which operation a method and path ask for.
//!
//! Session actions are custom methods in the last path segment
//! (`/sessions/{id}:leave`). API Gateway cannot route on part of a segment,
//! so `POST /sessions/{id}` reaches one function that splits the action off
//! here; `cargo lambda watch` routes the same way.

use lambda_http::http::Method;

use super::BASE_PATH;
use super::json::ApiError;

#[derive(Debug, Clone, PartialEq, Eq)]
pub enum Route {
    /// `GET /.well-known/jwks.json`: the keys admission tokens are signed with.
    Jwks,
    Join,
    /// The raw id as it appeared in the path; validated by the handler.
    Status(String),
    Heartbeat(String),
    Leave(String),
    /// `GET /waiting-room/{eventId}`: the fan's page, before joining.
    Page(String),
    /// `POST /waiting-room/{eventId}`: the page's join form.
    PageJoin(String),
    /// `GET /waiting-room/{eventId}/{sessionId}`: a fan's place in line.
    PageSession(String, String),
    /// `POST /waiting-room/{eventId}/{sessionId}`: the page's leave form.
    PageLeave(String, String),
    /// `GET /checkout/{eventId}`: the demo origin's page.
    Checkout(String),
    /// `POST /checkout/{eventId}`: complete the purchase, or give up.
    CheckoutOutcome(String),
}

pub const JWKS_PATH: &str = "/.well-known/jwks.json";
/// The fan's waiting page, below which each event has its own.
pub const PAGE_PATH: &str = "/waiting-room";
/// The demo origin.
pub const CHECKOUT_PATH: &str = "/checkout";

pub fn route(method: &Method, path: &str) -> Result<Route, ApiError> {
    let path = path.strip_suffix('/').unwrap_or(path);
    if path == JWKS_PATH {
        return match *method {
            Method::GET => Ok(Route::Jwks),
            _ => Err(ApiError::method_not_allowed("GET")),
        };
    }
    if let Some(rest) = path
        .strip_prefix(PAGE_PATH)
        .and_then(|r| r.strip_prefix('/'))
    {
        return match segments(rest).as_deref() {
            Some([event]) => match *method {
                Method::GET => Ok(Route::Page((*event).to_owned())),
                Method::POST => Ok(Route::PageJoin((*event).to_owned())),
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            Some([event, session]) => match *method {
                Method::GET => Ok(Route::PageSession(
                    (*event).to_owned(),
                    (*session).to_owned(),
                )),
                Method::POST => Ok(Route::PageLeave((*event).to_owned(), (*session).to_owned())),
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            _ => Err(ApiError::route_not_found()),
        };
    }
    if let Some(rest) = path
        .strip_prefix(CHECKOUT_PATH)
        .and_then(|r| r.strip_prefix('/'))
    {
        return match segments(rest).as_deref() {
            Some([event]) => match *method {
                Method::GET => Ok(Route::Checkout((*event).to_owned())),
                Method::POST => Ok(Route::CheckoutOutcome((*event).to_owned())),
                _ => Err(ApiError::method_not_allowed("GET, POST")),
            },
            _ => Err(ApiError::route_not_found()),
        };
    }
    if path == BASE_PATH {
        return match *method {
            Method::POST => Ok(Route::Join),
            _ => Err(ApiError::method_not_allowed("POST")),
        };
    }
    let Some(segment) = below(path, BASE_PATH) else {
        return Err(ApiError::route_not_found());
    };
    let segment = decode_colons(segment);
    match segment.rsplit_once(':') {
        None => match *method {
            Method::GET => Ok(Route::Status(segment)),
            _ => Err(ApiError::method_not_allowed("GET")),
        },
        Some((id, action)) => {
            let route = match action {
                "heartbeat" => Route::Heartbeat(id.to_owned()),
                "leave" => Route::Leave(id.to_owned()),
                _ => return Err(ApiError::unknown_action(action)),
            };
            match *method {
                Method::POST => Ok(route),
                _ => Err(ApiError::method_not_allowed("POST")),
            }
        }
    }
}

/// One or two non-empty path segments.
fn segments(rest: &str) -> Option<Vec<&str>> {
    let parts: Vec<&str> = rest.split('/').collect();
    (parts.len() <= 2 && parts.iter().all(|p| !p.is_empty())).then_some(parts)
}

/// Clients may send the `:` of a custom method percent-encoded.
/// The one path segment below `base`, if the path is exactly that.
pub(super) fn below<'a>(path: &'a str, base: &str) -> Option<&'a str> {
    path.strip_prefix(base)?
        .strip_prefix('/')
        .filter(|rest| !rest.is_empty() && !rest.contains('/'))
}

pub(super) fn decode_colons(segment: &str) -> String {
    segment.replace("%3A", ":").replace("%3a", ":")
}

#[cfg(test)]
mod tests {
    use super::*;
    use lambda_http::http::StatusCode;

    fn status_of(method: Method, path: &str) -> StatusCode {
        route(&method, path).unwrap_err().status()
    }

    #[test]
    fn public_routes_resolve() {
        assert_eq!(
            route(&Method::GET, "/.well-known/jwks.json"),
            Ok(Route::Jwks)
        );
        let base = "/api/waiting-room/sessions";
        assert_eq!(route(&Method::POST, base), Ok(Route::Join));
        assert_eq!(route(&Method::POST, &format!("{base}/")), Ok(Route::Join));
        assert_eq!(
            route(&Method::GET, &format!("{base}/E1.abc")),
            Ok(Route::Status("E1.abc".into()))
        );
        assert_eq!(
            route(&Method::POST, &format!("{base}/E1.abc:leave")),
            Ok(Route::Leave("E1.abc".into()))
        );
        assert_eq!(
            route(&Method::POST, &format!("{base}/E1.abc%3Aheartbeat")),
            Ok(Route::Heartbeat("E1.abc".into()))
        );
    }

    #[test]
    fn wrong_methods_are_405_and_unknown_paths_404() {
        let base = "/api/waiting-room/sessions";
        assert_eq!(status_of(Method::GET, base), StatusCode::METHOD_NOT_ALLOWED);
        assert_eq!(
            status_of(Method::DELETE, &format!("{base}/x")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_of(Method::GET, &format!("{base}/x:leave")),
            StatusCode::METHOD_NOT_ALLOWED
        );
        assert_eq!(
            status_of(Method::POST, &format!("{base}/x:explode")),
            StatusCode::NOT_FOUND
        );
        assert_eq!(status_of(Method::GET, "/"), StatusCode::NOT_FOUND);
        assert_eq!(
            status_of(Method::GET, "/api/waiting-room"),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(Method::GET, &format!("{base}/a/b")),
            StatusCode::NOT_FOUND
        );
        assert_eq!(
            status_of(Method::GET, &format!("{base}x")),
            StatusCode::NOT_FOUND
        );
    }

    #[test]
    fn page_and_demo_origin_routes_resolve() {
        assert_eq!(
            route(&Method::GET, "/waiting-room/E1"),
            Ok(Route::Page("E1".into()))
        );
        assert_eq!(
            route(&Method::POST, "/waiting-room/E1/"),
            Ok(Route::PageJoin("E1".into()))
        );
        assert_eq!(
            route(&Method::GET, "/waiting-room/E1/E1.abc"),
            Ok(Route::PageSession("E1".into(), "E1.abc".into()))
        );
        assert_eq!(
            route(&Method::POST, "/waiting-room/E1/E1.abc"),
            Ok(Route::PageLeave("E1".into(), "E1.abc".into()))
        );
        assert_eq!(
            route(&Method::GET, "/checkout/E1"),
            Ok(Route::Checkout("E1".into()))
        );
        assert_eq!(
            route(&Method::POST, "/checkout/E1"),
            Ok(Route::CheckoutOutcome("E1".into()))
        );
        for path in [
            "/waiting-room",
            "/waiting-room/",
            "/waiting-room/a/b/c",
            "/waiting-room//x",
            "/checkout/E1/x",
        ] {
            assert_eq!(
                status_of(Method::GET, path),
                StatusCode::NOT_FOUND,
                "{path}"
            );
        }
        assert_eq!(
            status_of(Method::DELETE, "/waiting-room/E1"),
            StatusCode::METHOD_NOT_ALLOWED
        );
    }

    #[test]
    fn method_not_allowed_names_the_allowed_method() {
        let err = route(&Method::PUT, "/api/waiting-room/sessions").unwrap_err();
        let response = err.into_response();
        assert_eq!(response.headers()["allow"], "POST");
    }
}
