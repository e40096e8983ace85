//! The single integration-test binary (`cargo test --test it`).
//!
//! Test modules live in `tests/it/` and are included with `#[path]`: a file
//! directly in `tests/` would also be built by cargo as a test binary of its
//! own, where `crate::support` does not exist.

// The harness is a library of its own (tests/support); `crate::support` names it here.
use pfxhttp_test_support as support;

#[path = "it/harness.rs"]
mod harness;

#[path = "it/socketmap.rs"]
mod socketmap;

#[path = "it/tcp.rs"]
mod tcp;

#[path = "it/policy.rs"]
mod policy;

#[path = "it/lifecycle.rs"]
mod lifecycle;

#[path = "it/logging.rs"]
mod logging;

#[path = "it/cli.rs"]
mod cli;

#[path = "it/exchange.rs"]
mod exchange;

#[path = "it/failover.rs"]
mod failover;

#[path = "it/state.rs"]
mod state;

#[path = "it/auth.rs"]
mod auth;

#[path = "it/deploy.rs"]
mod deploy;

#[path = "it/state_attack.rs"]
mod state_attack;

#[path = "it/check.rs"]
mod check;

#[path = "it/unread.rs"]
mod unread;

#[path = "it/cache.rs"]
mod cache;

#[path = "it/sasl.rs"]
mod sasl;

#[path = "it/sasl_oidc.rs"]
mod sasl_oidc;

#[path = "it/admin.rs"]
mod admin;

#[path = "it/formats.rs"]
mod formats;

#[path = "it/metrics.rs"]
mod metrics;
