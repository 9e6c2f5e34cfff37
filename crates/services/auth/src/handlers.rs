//! The routes of the auth service, each registered together with its OpenAPI description
//! ([`routes`]); the service's document is [`openapi`], served at `/api/users/openapi.json`.

use std::sync::{Arc, OnceLock};

use axum::extract::State;
use axum::http::StatusCode;
use axum::response::Response;
use axum::{Json, Router, middleware};
use axum_extra::extract::CookieJar;
use bt_contract::events::{SessionRevoked, UserCreated};
use bt_contract::json::string_field;
use bt_contract::openapi::{JsonBodyRefused, RateLimited};
use bt_contract::{ApiError, ApiJson, ApiResult, JsonField, MaybeUser, UserId, validate};
use bt_platform::api_docs::{self, OpenApiDocument};
use bt_platform::rate_limit;
use serde::{Deserialize, Serialize};
use utoipa_axum::router::OpenApiRouter;
use utoipa_axum::routes;

use crate::AppState;
use crate::domain::{Email, Password};
use crate::store::{self, User};

pub fn router(state: AppState) -> Router {
    let (router, _) = routes(&state).split_for_parts();
    router.with_state(state)
}

/// Every route of the service with its description; sign-up and sign-in are rate limited.
fn routes(state: &AppState) -> OpenApiRouter<AppState> {
    let limited = OpenApiRouter::new()
        .routes(routes!(sign_up))
        .routes(routes!(sign_in))
        .route_layer(middleware::from_fn_with_state(
            state.rate_limit.clone(),
            rate_limit::enforce,
        ));
    OpenApiRouter::new()
        .merge(limited)
        .routes(routes!(sign_out))
        .routes(routes!(current_user))
        .routes(routes!(openapi_document))
}

/// The OpenAPI document of the auth service.
pub fn openapi() -> serde_json::Value {
    // The description does not depend on the state; any limiter will do.
    let (_, mut doc) = OpenApiRouter::<AppState>::new()
        .routes(routes!(sign_up))
        .routes(routes!(sign_in))
        .routes(routes!(sign_out))
        .routes(routes!(current_user))
        .routes(routes!(openapi_document))
        .split_for_parts();
    doc.tags = Some(vec![api_docs::tag(
        "auth",
        "Accounts and sessions: sign up, sign in, sign out, the current user (service `auth`).",
    )]);
    api_docs::finish(
        doc,
        "BuyTicket auth API",
        "Accounts and sessions. Sign-up and sign-in set the `session` cookie (a JWT), also \
         accepted as `Authorization: Bearer <jwt>` by every service.",
    )
}

#[utoipa::path(
    get,
    path = "/api/users/openapi.json",
    tag = "auth",
    operation_id = "auth_openapi",
    summary = "The OpenAPI document of the auth service",
    responses((status = 200, description = "The OpenAPI 3.1 document.", body = OpenApiDocument))
)]
async fn openapi_document() -> Response {
    static DOCUMENT: OnceLock<Arc<String>> = OnceLock::new();
    api_docs::document_response(DOCUMENT.get_or_init(|| Arc::new(openapi().to_string())))
}

/// The body of sign-up: `{email, password}`. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = SignUpBody)]
pub struct SignUp {
    /// A valid address with a dotted domain (trimmed, lower-cased, NFKC; international
    /// domains allowed); at most 254 bytes.
    #[schema(value_type = String, required = true, format = Email, max_length = 254, examples("ada@example.com"))]
    email: Option<JsonField>,
    /// 4 to 128 characters once white space around it is trimmed (the pattern says so: white
    /// space is Unicode's `White_Space`, which trimming removes).
    #[schema(value_type = String, required = true, pattern = r"^[\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\s\S]{2,126}[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000][\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]*$", examples("correct horse"))]
    password: Option<JsonField>,
}

/// The body of sign-in: `{email, password}`. Other fields are ignored.
#[derive(Debug, Deserialize, utoipa::ToSchema)]
#[schema(as = SignInBody)]
pub struct SignIn {
    /// The address signed up with (compared in its canonical form).
    #[schema(value_type = String, required = true, format = Email, max_length = 254, examples("ada@example.com"))]
    email: Option<JsonField>,
    /// Not only white space.
    #[schema(value_type = String, required = true, pattern = r"[^\t\n\x0b\x0c\r \x85\xa0\u1680\u2000-\u200a\u2028\u2029\u202f\u205f\u3000]", examples("correct horse"))]
    password: Option<JsonField>,
}

/// A user as the API shows it: `{id, email}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[schema(as = User)]
pub struct UserJson {
    #[schema(value_type = UserId)]
    id: String,
    /// The canonical form of the address.
    email: String,
}

/// `{"currentUser": {id, email, iat}}`, or `{"currentUser": null}` without a valid session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
#[serde(rename_all = "camelCase")]
pub struct CurrentUserBody {
    #[schema(required = true)]
    current_user: Option<SessionUser>,
}

/// The user of a session.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct SessionUser {
    id: UserId,
    email: String,
    /// When the session began, in seconds since the Unix epoch.
    iat: i64,
}

/// `{}`.
#[derive(Debug, Serialize, utoipa::ToSchema)]
pub struct Empty {}

#[utoipa::path(
    post,
    path = "/api/users/signup",
    tag = "auth",
    operation_id = "sign_up",
    summary = "Create an account and sign in",
    request_body(content = SignUp, content_type = "application/json"),
    responses(
        (status = 201, description = "The account; the `session` cookie is set.", body = UserJson,
            headers(("Set-Cookie" = String, description = "`session=<jwt>; HttpOnly; SameSite=Lax; Path=/` (and `Secure` where configured)."))),
        (status = 400, description = "`Email in use`, validation (one entry per failed field: `email`, `password`), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        JsonBodyRefused,
        RateLimited,
        (status = 503, description = "Too many sign-ins at once (password hashing is full), with `Retry-After`; or busy (database connections exhausted).", body = bt_contract::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait before trying again."))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn sign_up(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<SignUp>,
) -> ApiResult<(StatusCode, CookieJar, Json<UserJson>)> {
    let (email, password) = validate!(
        email: Email::parse(string_field(&body.email)),
        password: Password::new_password(string_field(&body.password)),
    )?;
    if store::user_by_email(&state.db, email.as_str())
        .await?
        .is_some()
    {
        return Err(ApiError::bad_request("Email in use"));
    }
    let password_hash = state
        .hasher
        .run(move || password.hash())
        .await?
        .map_err(|e| ApiError::internal(e.to_string()))?;
    let user = User {
        id: uuid::Uuid::now_v7().to_string(),
        email: email.as_str().to_owned(),
        password_hash,
    };
    // The account and its `user.created` event commit together (the outbox).
    let mut tx = state.db.begin().await?;
    match store::insert_user(&mut tx, &user, bt_platform::db::now_millis()).await {
        Ok(()) => {}
        Err(err) if bt_platform::db::is_unique_violation(&err) => {
            return Err(ApiError::bad_request("Email in use"));
        }
        Err(err) => return Err(err.into()),
    }
    state
        .outbox
        .stage(
            &mut tx,
            UserCreated {
                id: user.id.as_str().into(),
                email: user.email.clone(),
            },
        )
        .await?;
    state.outbox.commit(tx).await?;
    tracing::info!(user.id = %user.id, "user signed up");
    let (token, _) = state.sessions.issue(&user.id, &user.email)?;
    let jar = jar.add(state.sessions.session_cookie(token));
    Ok((
        StatusCode::CREATED,
        jar,
        Json(UserJson {
            id: user.id,
            email: user.email,
        }),
    ))
}

#[utoipa::path(
    post,
    path = "/api/users/signin",
    tag = "auth",
    operation_id = "sign_in",
    summary = "Sign in",
    request_body(content = SignIn, content_type = "application/json"),
    responses(
        (status = 200, description = "The user; the `session` cookie is set.", body = UserJson,
            headers(("Set-Cookie" = String, description = "`session=<jwt>; HttpOnly; SameSite=Lax; Path=/` (and `Secure` where configured)."))),
        (status = 400, description = "`Invalid credentials` (the same for an unknown email and a wrong password), validation (one entry per failed field), or a body that is not a JSON object.", body = bt_contract::error::ErrorBody),
        JsonBodyRefused,
        RateLimited,
        (status = 503, description = "Too many sign-ins at once (password hashing is full), with `Retry-After`; or busy (database connections exhausted).", body = bt_contract::error::ErrorBody,
            headers(("Retry-After" = i64, description = "Seconds to wait before trying again."))),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<SignIn>,
) -> ApiResult<(CookieJar, Json<UserJson>)> {
    let (email, password) = validate!(
        email: Email::parse(string_field(&body.email)),
        password: Password::given(string_field(&body.password)),
    )?;
    let user = store::user_by_email(&state.db, email.as_str()).await?;
    let hash = user.as_ref().map(|u| u.password_hash.clone());
    let matches = state
        .hasher
        .run(move || password.verify(hash.as_deref()))
        .await?;
    let Some(user) = user.filter(|_| matches) else {
        return Err(ApiError::bad_request("Invalid credentials"));
    };
    let (token, _) = state.sessions.issue(&user.id, &user.email)?;
    let jar = jar.add(state.sessions.session_cookie(token));
    Ok((
        jar,
        Json(UserJson {
            id: user.id,
            email: user.email,
        }),
    ))
}

/// Ends the session the request carries (if any): its token is refused from now on, by every
/// service, and the browser's cookie is cleared.
#[utoipa::path(
    post,
    path = "/api/users/signout",
    tag = "auth",
    operation_id = "sign_out",
    summary = "Sign out",
    description = "Ends the session the request carries, if any: its token is refused from now on \
        by every service, and the cookie is cleared. Any body is ignored.",
    security((), ("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "`{}`; the `session` cookie is cleared.", body = Empty,
            headers(("Set-Cookie" = String, description = "`session=; Max-Age=0; ...`: clears the cookie."))),
        (status = 503, description = "Busy (database connections exhausted); try again.", body = bt_contract::error::ErrorBody),
    )
)]
#[tracing::instrument(level = "debug", skip_all)]
async fn sign_out(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    jar: CookieJar,
) -> ApiResult<(CookieJar, Json<Empty>)> {
    if let Some(claims) = user {
        let mut tx = state.db.begin().await?;
        let first = store::revoke_session(
            &mut tx,
            &claims.sid,
            claims.id.as_str(),
            claims.exp,
            bt_platform::db::now_millis(),
        )
        .await?;
        if first {
            state
                .outbox
                .stage(
                    &mut tx,
                    SessionRevoked {
                        sid: claims.sid.clone(),
                        user_id: claims.id.clone(),
                        expires_at: claims.exp,
                    },
                )
                .await?;
        }
        state.outbox.commit(tx).await?;
        state.sessions.revoke(&claims.sid, claims.exp);
        tracing::info!(user.id = %claims.id, "signed out");
    }
    Ok((jar.add(state.sessions.cleared_cookie()), Json(Empty {})))
}

#[utoipa::path(
    get,
    path = "/api/users/currentuser",
    tag = "auth",
    operation_id = "current_user",
    summary = "Who is signed in",
    security((), ("sessionCookie" = []), ("bearerJwt" = [])),
    responses(
        (status = 200, description = "The session's user, or `null` without a valid session.", body = CurrentUserBody),
    )
)]
async fn current_user(MaybeUser(user): MaybeUser) -> Json<CurrentUserBody> {
    Json(CurrentUserBody {
        current_user: user.map(|c| SessionUser {
            id: c.id,
            email: c.email,
            iat: c.iat,
        }),
    })
}
