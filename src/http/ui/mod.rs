//! The rollout dashboard at `/ui`: one HTML page, one stylesheet and one vanilla JS file,
//! embedded in the binary (`include_str!`), so it works offline and needs no build step.
//!
//! The charts are not drawn here: the page fetches each stage's SVG from the admin API
//! (`…/reports/{index}/charts`), rendered by `report::svg_*` exactly as in the HTML report, and
//! styles them with the report's own `chart.css` (served as `/ui/chart.css`).
//!
//! The page is a client of the admin API only: the user enters an API key (kept in the tab's
//! `sessionStorage`, sent as `Authorization: Bearer`), and every read and action goes through the
//! same endpoints, roles and rate limits as any other client. Owns: the assets and their routes.
//! Never: holds a credential, reads the store or acts on a rollout itself. Serving the assets
//! needs no key; they contain no data.

use axum::Router;
use axum::http::{HeaderValue, header};
use axum::response::{IntoResponse, Redirect, Response};
use axum::routing::get;

const INDEX: &str = include_str!("assets/index.html");
const SCRIPT: &str = include_str!("assets/app.js");
const STYLE: &str = include_str!("assets/app.css");

fn asset(body: &'static str, content_type: &'static str) -> Response {
    let mut response = body.into_response();
    let h = response.headers_mut();
    h.insert(header::CONTENT_TYPE, HeaderValue::from_static(content_type));
    h.insert(header::CACHE_CONTROL, HeaderValue::from_static("no-cache"));
    h.insert(
        header::X_CONTENT_TYPE_OPTIONS,
        HeaderValue::from_static("nosniff"),
    );
    h.insert(header::X_FRAME_OPTIONS, HeaderValue::from_static("DENY"));
    h.insert(
        header::REFERRER_POLICY,
        HeaderValue::from_static("no-referrer"),
    );
    response
}

/// `/ui` and its assets (stateless; merge into any router).
pub fn router() -> Router {
    Router::new()
        .route(
            "/ui",
            get(|| async { asset(INDEX, "text/html; charset=utf-8") }),
        )
        .route("/ui/", get(|| async { Redirect::permanent("/ui") }))
        .route(
            "/ui/app.js",
            get(|| async { asset(SCRIPT, "text/javascript; charset=utf-8") }),
        )
        .route(
            "/ui/app.css",
            get(|| async { asset(STYLE, "text/css; charset=utf-8") }),
        )
        .route(
            "/ui/chart.css",
            get(|| async { asset(crate::report::CHART_CSS, "text/css; charset=utf-8") }),
        )
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn the_page_references_only_embedded_assets() {
        assert!(INDEX.contains(r#"src="/ui/app.js""#));
        assert!(INDEX.contains(r#"href="/ui/app.css""#));
        // The SVG namespace is an identifier, not a fetch.
        for text in [INDEX, SCRIPT, STYLE] {
            let text = text.replace("http://www.w3.org/2000/svg", "");
            assert!(!text.contains("http://"), "no external URL");
            assert!(!text.contains("https://"), "no external URL");
            assert!(!text.contains("//cdn"), "no CDN");
        }
    }
}
