//! The stylesheet, compiled into the binary: the console fetches nothing
//! from anywhere else, and needs no script.

use axum::http::header;
use axum::response::IntoResponse;

pub const CSS_PATH: &str = "/ui/static/console.css";
const CSS: &str = include_str!("../assets/console.css");

pub async fn css() -> impl IntoResponse {
    ([(header::CONTENT_TYPE, "text/css; charset=utf-8")], CSS)
}
