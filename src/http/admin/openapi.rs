//! `GET /openapi.json`: the admin API's OpenAPI document, generated from the handlers' and
//! types' annotations (utoipa). The errors every authenticated route can answer (401, 403, 429
//! with `Retry-After`, 500, 503) are added to each operation here, in one place.

use utoipa::openapi::security::{HttpAuthScheme, HttpBuilder, SecurityScheme};
use utoipa::openapi::{HeaderBuilder, RefOr, ResponseBuilder};
use utoipa::{Modify, OpenApi};

use super::{ErrorDetail, ErrorResponse};
use super::{canary, deployments, history, hooks, keys, reports, rollouts, traffic};

#[derive(OpenApi)]
#[openapi(
    info(title = "canarist admin API", description = "Rollout control, traffic changes and API keys of a canarist gateway."),
    paths(
        canary::start_canary,
        traffic::patch_traffic,
        deployments::list,
        deployments::status,
        deployments::audit,
        deployments::stage_report,
        reports::all,
        reports::html,
        reports::charts,
        history::history,
        reports::link,
        reports::whoami,
        rollouts::status,
        rollouts::start,
        rollouts::promote,
        rollouts::rollback,
        rollouts::pause,
        rollouts::resume,
        rollouts::approve,
        hooks::verdict_get,
        hooks::verdict_post,
        hooks::promote,
        hooks::rollback,
        keys::list,
        keys::create,
        keys::revoke,
    ),
    components(schemas(ErrorResponse, ErrorDetail)),
    modifiers(&Common)
)]
struct AdminApi;

struct Common;

impl Modify for Common {
    fn modify(&self, doc: &mut utoipa::openapi::OpenApi) {
        let components = doc.components.get_or_insert_with(Default::default);
        components.add_security_scheme(
            "bearer",
            SecurityScheme::Http(
                HttpBuilder::new()
                    .scheme(HttpAuthScheme::Bearer)
                    .description(Some("An API key (`cnr_…`) or, when configured, a JWT"))
                    .build(),
            ),
        );
        let error = |description: &str| {
            ResponseBuilder::new().description(description).content(
                "application/json",
                utoipa::openapi::ContentBuilder::new()
                    .schema(Some(utoipa::openapi::Ref::from_schema_name(
                        "ErrorResponse",
                    )))
                    .build(),
            )
        };
        for item in doc.paths.paths.values_mut() {
            for op in [
                &mut item.get,
                &mut item.post,
                &mut item.patch,
                &mut item.delete,
                &mut item.put,
            ]
            .into_iter()
            .flatten()
            {
                let r = &mut op.responses.responses;
                r.entry("401".into()).or_insert_with(|| {
                    RefOr::T(error("`invalid_api_key`: no valid key or token").build())
                });
                r.entry("403".into()).or_insert_with(|| {
                    RefOr::T(
                        error("`insufficient_role`: insufficient role for this operation").build(),
                    )
                });
                r.entry("429".into()).or_insert_with(|| {
                    RefOr::T(
                        error("`rate_limit_exceeded`: over this key's rate limit")
                            .header(
                                "Retry-After",
                                HeaderBuilder::new()
                                    .schema(Some(utoipa::openapi::schema::Object::with_type(
                                        utoipa::openapi::schema::Type::Integer,
                                    )))
                                    .description(Some("Seconds to wait"))
                                    .build(),
                            )
                            .build(),
                    )
                });
                r.entry("500".into())
                    .or_insert_with(|| RefOr::T(error("`internal_error`").build()));
                r.entry("503".into()).or_insert_with(|| {
                    RefOr::T(error("`store_unavailable`: the gateway has no database").build())
                });
            }
        }
    }
}

/// The document.
pub fn openapi() -> utoipa::openapi::OpenApi {
    AdminApi::openapi()
}

pub async fn serve() -> axum::Json<utoipa::openapi::OpenApi> {
    axum::Json(openapi())
}
