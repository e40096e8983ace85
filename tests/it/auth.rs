//! Backend authentication: jwt_auth, backend_oidc_auth and the shared token cache.
