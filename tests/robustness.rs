//! The robustness tests: bad client input, backend faults, secrets, load.
//! `cargo test --test robustness`.
//!
//! A test binary of their own, because they start hundreds of pfxhttp processes and time replies
//! against deadlines: cargo runs test binaries one after another, so their load never eats into
//! the time limits of the tests in `it`, nor theirs into these. Within this binary, the tests
//! that time replies or start more than a few dozen processes run [`alone`]; the others share
//! the machine ([`shared`]).
//!
//! Modules live in `tests/robustness/` (no `main.rs` there, so cargo builds no binary of it).

// The harness shared with the `it` tests (tests/support, a library of its own).
use pfxhttp_test_support as support;

#[path = "robustness/common.rs"]
mod common;

#[path = "robustness/input.rs"]
mod input;

#[path = "robustness/faults.rs"]
mod faults;

#[path = "robustness/secrets.rs"]
mod secrets;

#[path = "robustness/load.rs"]
mod load;

use std::sync::{PoisonError, RwLock, RwLockReadGuard, RwLockWriteGuard};

static MACHINE: RwLock<()> = RwLock::new(());

/// Held by a test that must have the machine to itself.
pub(crate) fn alone() -> RwLockWriteGuard<'static, ()> {
    MACHINE.write().unwrap_or_else(PoisonError::into_inner)
}

/// Held by a test that may run beside another one, but not beside one that runs [`alone`].
pub(crate) fn shared() -> RwLockReadGuard<'static, ()> {
    MACHINE.read().unwrap_or_else(PoisonError::into_inner)
}
