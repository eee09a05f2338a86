//! The contract and its interactive UI. The UI's assets are compiled into the binary, so
//! `/docs` works offline and loads nothing from a CDN.

use actix_web::{get, web, HttpResponse};

use crate::openapi;

const SWAGGER_JS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui-bundle.js");
const SWAGGER_CSS: &[u8] = include_bytes!("../../assets/swagger-ui/swagger-ui.css");

const INDEX: &str = r##"<!doctype html>
<html lang="en">
<head>
  <meta charset="utf-8">
  <title>Mailbaar API</title>
  <link rel="stylesheet" href="/docs/swagger-ui.css">
</head>
<body>
  <div id="swagger-ui"></div>
  <script src="/docs/swagger-ui-bundle.js"></script>
  <script>
    window.ui = SwaggerUIBundle({ url: "/openapi.json", dom_id: "#swagger-ui", persistAuthorization: true });
  </script>
</body>
</html>
"##;

/// The OpenAPI document of this service; the same as `openapi/openapi.json` in the repository.
#[utoipa::path(tag = "service",
    responses((status = 200, description = "The OpenAPI 3.1 document", content_type = "application/json")))]
#[get("/openapi.json")]
pub async fn openapi_json() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("application/json")
        .body(openapi::document_json())
}

/// The interactive API documentation (Swagger UI, served from the binary).
#[utoipa::path(tag = "service",
    responses((status = 200, description = "An HTML page", content_type = "text/html")))]
#[get("/docs")]
pub async fn docs_index() -> HttpResponse {
    HttpResponse::Ok()
        .content_type("text/html; charset=utf-8")
        .body(INDEX)
}

#[get("/docs/{file}")]
pub async fn docs_asset(file: web::Path<String>) -> HttpResponse {
    let (body, kind) = match file.as_str() {
        "swagger-ui-bundle.js" => (SWAGGER_JS, "text/javascript"),
        "swagger-ui.css" => (SWAGGER_CSS, "text/css"),
        _ => return HttpResponse::NotFound().finish(),
    };
    HttpResponse::Ok()
        .content_type(kind)
        .insert_header(("Cache-Control", "public, max-age=86400"))
        .body(body)
}
