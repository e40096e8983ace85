//! Templates in the config file: rewritten from Go syntax, compiled and tried on sample values
//! at load time, so that a template that cannot render is an error before any lookup.

use super::Kind;
use super::tree::Diagnostics;
use crate::template::{self, Context, Template};

/// Variables with sample values, to try every template at load time.
pub(super) fn sample_vars(kind: Kind, name: &str) -> upon::Value {
    match kind {
        Kind::Map => template::lookup_vars(name, "user@example.org", "0123456789abcdef"),
        Kind::Policy => {
            let attrs = [("request", "smtpd_access_policy"), ("recipient", "user@example.org")]
                .iter()
                .map(|(k, v)| (k.to_string(), v.to_string()))
                .collect();
            template::policy_vars(name, &attrs, "0123456789abcdef")
        }
        Kind::Sasl => {
            let fields: Vec<(&str, &str)> = template::SASL_VARIABLES.iter().map(|v| (*v, "sample")).collect();
            template::sasl_vars(name, &fields, "0123456789abcdef")
        }
    }
}

/// Compiles (after rewriting Go syntax) and test-renders a template.
pub(super) fn compile(
    path: &str,
    source: &str,
    ctx: Context,
    sample: &upon::Value,
    d: &mut Diagnostics,
) -> Option<Template> {
    let rewritten = match template::from_go(source) {
        Ok(s) => s,
        Err(e) => {
            d.error(path, e);
            return None;
        }
    };
    let tpl = match Template::compile(&rewritten, ctx) {
        Ok(t) => t,
        Err(e) => {
            d.error(path, format!("template error: {e}"));
            return None;
        }
    };
    if let Err(e) = tpl.render(sample) {
        d.error(path, format!("template error: {e}"));
        return None;
    }
    Some(tpl)
}
