//! An in-memory [`Transport`] for unit tests.

use super::{Attempt, HttpError, Request, Response, Transport};
use std::cell::RefCell;

/// Answers from a script, one per request, and records what was sent.
pub struct Fake {
    pub script: RefCell<Vec<Result<Response, HttpError>>>,
    pub sent: RefCell<Vec<Request>>,
}

impl Fake {
    pub fn new(script: Vec<Result<Response, HttpError>>) -> Fake {
        Fake { script: RefCell::new(script), sent: RefCell::new(Vec::new()) }
    }
}

impl Transport for Fake {
    fn send(&self, request: &Request, _: Attempt) -> Result<Response, HttpError> {
        self.sent.borrow_mut().push(request.clone());
        self.script.borrow_mut().remove(0)
    }
}

/// A 200 answer with `body`.
pub fn ok(body: &str) -> Result<Response, HttpError> {
    Ok(Response { status: 200, headers: Default::default(), body: body.as_bytes().to_vec() })
}
