//! The routes of the auth service.

use axum::extract::State;
use axum::http::StatusCode;
use axum::routing::{get, post};
use axum::{Json, Router, middleware};
use axum_extra::extract::CookieJar;
use bt_contract::events::SessionRevoked;
use bt_contract::json::string_field;
use bt_contract::{ApiError, ApiJson, ApiResult, JsonField, MaybeUser, validate};
use bt_platform::rate_limit;
use serde::{Deserialize, Serialize};
use serde_json::{Value, json};

use crate::AppState;
use crate::domain::{Email, Password};
use crate::store::{self, User};

pub fn router(state: AppState) -> Router {
    let limited = Router::new()
        .route("/api/users/signup", post(sign_up))
        .route("/api/users/signin", post(sign_in))
        .route_layer(middleware::from_fn_with_state(
            state.rate_limit.clone(),
            rate_limit::enforce,
        ));
    Router::new()
        .merge(limited)
        .route("/api/users/signout", post(sign_out))
        .route("/api/users/currentuser", get(current_user))
        .with_state(state)
}

/// The body of sign-up and sign-in.
#[derive(Debug, Deserialize)]
pub struct Credentials {
    email: Option<JsonField>,
    password: Option<JsonField>,
}

/// A user as the API shows it.
#[derive(Debug, Serialize)]
pub struct UserJson {
    id: String,
    email: String,
}

#[tracing::instrument(skip_all)]
async fn sign_up(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<Credentials>,
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
    match store::insert_user(&state.db, &user, bt_platform::db::now_millis()).await {
        Ok(()) => {}
        Err(err) if bt_platform::db::is_unique_violation(&err) => {
            return Err(ApiError::bad_request("Email in use"));
        }
        Err(err) => return Err(err.into()),
    }
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

#[tracing::instrument(skip_all)]
async fn sign_in(
    State(state): State<AppState>,
    jar: CookieJar,
    ApiJson(body): ApiJson<Credentials>,
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
#[tracing::instrument(skip_all)]
async fn sign_out(
    State(state): State<AppState>,
    MaybeUser(user): MaybeUser,
    jar: CookieJar,
) -> ApiResult<(CookieJar, Json<Value>)> {
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
    Ok((jar.add(state.sessions.cleared_cookie()), Json(json!({}))))
}

async fn current_user(MaybeUser(user): MaybeUser) -> Json<Value> {
    Json(json!({
        "currentUser": user.map(|c| json!({"id": c.id, "email": c.email, "iat": c.iat}))
    }))
}
