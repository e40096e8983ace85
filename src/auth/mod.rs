//! Tokens for backends behind `jwt_auth` or `backend_oidc_auth` (spec §7).

pub mod fetch;
pub mod token;
