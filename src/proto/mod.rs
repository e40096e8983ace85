//! The Postfix wire protocols (and Dovecot's auth protocol, which smtpd speaks) as pure functions
//! over bytes.
//!
//! Each decoder looks at the bytes buffered so far and says whether they hold a complete request
//! ([`Decoded::Frame`]), need more bytes ([`Decoded::Incomplete`]) or can never become a valid
//! request ([`Decoded::Invalid`]). Decoders check length limits before anything is allocated, so a
//! client cannot make the process allocate what it asks for.

pub mod dovecot;
pub mod netstring;
pub mod policy;
pub mod socketmap;
pub mod tcp;

/// The result of looking at buffered bytes.
#[derive(Debug, PartialEq, Eq)]
pub enum Decoded<T> {
    /// A complete request, and how many bytes of the buffer it used.
    Frame(T, usize),
    /// More bytes are needed.
    Incomplete,
    /// The bytes can never form a valid request; the reason is for the log.
    Invalid(String),
}
