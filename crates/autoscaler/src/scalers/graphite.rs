//! `graphite` triggers: the latest non-null datapoint of one Graphite series.
//!
//! Metadata (KEDA's names): `serverAddress` (required, `http://` or `https://`), `query`
//! (required; must return one series), `queryTime` (required, Graphite's `from`, e.g.
//! `-10Minutes`), `threshold` (default 100, as in KEDA's code and docs; must be > 0),
//! `activationThreshold` (default 0), `authMode` (`basic` only; then `username` is required
//! unless the trigger has an `authenticationRef` that may supply it, and `password` is
//! optional).

use tidal_api::keda::ScaleTrigger;

use super::{Metadata, Scaler, ScalerError, external_target, positive_milli};
use crate::spec::{MetricSource, MetricTarget};

/// How the daemon authenticates to Graphite (`metadata.authMode`).
#[derive(Debug, Clone, PartialEq, Eq)]
pub enum GraphiteAuthMode {
    /// HTTP basic auth. `username`/`password` as given in metadata; `None` when they are to
    /// come from the TriggerAuthentication.
    Basic {
        /// `metadata.username`.
        username: Option<String>,
        /// `metadata.password`.
        password: Option<String>,
    },
}

/// A parsed `graphite` trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct GraphiteScaler {
    /// Position of the trigger in `spec.triggers` (names the metric `s{index}-graphite`).
    pub index: usize,
    /// `serverAddress`.
    pub server_address: String,
    /// `query` (Graphite's `target`).
    pub query: String,
    /// `queryTime` (Graphite's `from`).
    pub query_time: String,
    /// `threshold`.
    pub threshold: f64,
    /// `activationThreshold`: active when the value is strictly greater.
    pub activation_threshold: f64,
    /// `authMode`.
    pub auth: Option<GraphiteAuthMode>,
    /// The HPA target (AverageValue by default, or Value per the trigger's `metricType`).
    pub target: MetricTarget,
}

/// KEDA's default `threshold` for graphite.
const DEFAULT_THRESHOLD: f64 = 100.0;

pub(super) fn parse(index: usize, trigger: &ScaleTrigger) -> Result<GraphiteScaler, ScalerError> {
    let md = Metadata::new("graphite", &trigger.metadata);
    let server_address = md.required("serverAddress")?;
    if !(server_address.starts_with("http://") || server_address.starts_with("https://")) {
        return Err(md.invalid(
            "serverAddress",
            server_address,
            "must be an http:// or https:// URL",
        ));
    }
    let query = md.required("query")?;
    let query_time = md.required("queryTime")?;
    let threshold = md.float_or("threshold", DEFAULT_THRESHOLD)?;
    let threshold_milli = positive_milli(&md, "threshold", threshold)?;
    let activation_threshold = md.float_or("activationThreshold", 0.0)?;
    let auth = match md.optional("authMode") {
        None => None,
        Some("basic") => {
            let username = md.optional("username").map(str::to_string);
            if username.is_none() && trigger.authentication_ref.is_none() {
                return Err(ScalerError::Missing {
                    scaler: "graphite",
                    key: "username",
                });
            }
            Some(GraphiteAuthMode::Basic {
                username,
                password: md.optional("password").map(str::to_string),
            })
        }
        Some(other) => return Err(md.invalid("authMode", other, "only basic is supported")),
    };
    Ok(GraphiteScaler {
        index,
        server_address: server_address.to_string(),
        query: query.to_string(),
        query_time: query_time.to_string(),
        threshold,
        activation_threshold,
        auth,
        target: external_target("graphite", trigger, threshold_milli)?,
    })
}

impl Scaler for GraphiteScaler {
    fn trigger_type(&self) -> &'static str {
        "graphite"
    }
    fn metric_name(&self) -> String {
        format!("s{}-graphite", self.index)
    }
    fn source(&self) -> MetricSource {
        MetricSource::External
    }
    fn target(&self) -> MetricTarget {
        self.target
    }
    fn activation_threshold(&self) -> f64 {
        self.activation_threshold
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalers::{AnyScaler, parse_trigger, trigger};

    /// (case, metadata, Ok(()) or the field the error must name)
    #[test]
    fn graphite_metadata_table() {
        let base = [
            ("serverAddress", "http://graphite:81"),
            (
                "query",
                "stats.counters.http.hello-world.request.count.count",
            ),
            ("queryTime", "-10Minutes"),
            ("threshold", "100"),
        ];
        let drop = |key: &str| -> Vec<(&str, &str)> {
            base.iter().copied().filter(|(k, _)| *k != key).collect()
        };
        let add = |extra: &[(&'static str, &'static str)]| -> Vec<(&'static str, &'static str)> {
            let mut v = base.to_vec();
            v.extend_from_slice(extra);
            v
        };
        type Case<'a> = (&'a str, Vec<(&'a str, &'a str)>, Result<(), &'a str>);
        let cases: Vec<Case> = vec![
            ("complete trigger", base.to_vec(), Ok(())),
            ("threshold defaults to 100", drop("threshold"), Ok(())),
            (
                "activation threshold",
                add(&[("activationThreshold", "10")]),
                Ok(()),
            ),
            (
                "basic auth with username",
                add(&[("authMode", "basic"), ("username", "u")]),
                Ok(()),
            ),
            (
                "serverAddress required",
                drop("serverAddress"),
                Err("metadata.serverAddress"),
            ),
            ("query required", drop("query"), Err("metadata.query")),
            (
                "queryTime required (KServe omits it)",
                drop("queryTime"),
                Err("metadata.queryTime"),
            ),
            (
                "threshold must be a number",
                add(&[("threshold", "ten")]),
                Err("metadata.threshold"),
            ),
            (
                "activationThreshold must be a number",
                add(&[("activationThreshold", "ten")]),
                Err("metadata.activationThreshold"),
            ),
            (
                "basic auth needs a username",
                add(&[("authMode", "basic")]),
                Err("metadata.username"),
            ),
            (
                "only basic auth",
                add(&[("authMode", "bearer")]),
                Err("metadata.authMode"),
            ),
        ];
        for (case, metadata, expected) in cases {
            // Later entries override earlier ones with the same key.
            let got = parse_trigger(1, &trigger("graphite", None, &metadata));
            match (got, expected) {
                (Ok(_), Ok(())) => {}
                (Err(err), Err(field)) => {
                    assert!(
                        err.to_string().contains(field),
                        "{case}: {err} should name {field}"
                    )
                }
                (got, expected) => panic!("{case}: got {got:?}, expected {expected:?}"),
            }
        }
    }

    #[test]
    fn graphite_metric_name_and_default_threshold() {
        let AnyScaler::Graphite(s) = parse_trigger(
            1,
            &trigger(
                "graphite",
                None,
                &[
                    ("serverAddress", "http://g"),
                    ("query", "q"),
                    ("queryTime", "-1h"),
                ],
            ),
        )
        .unwrap() else {
            panic!("not graphite")
        };
        assert_eq!(s.metric_name(), "s1-graphite");
        assert_eq!(s.target, MetricTarget::AverageValue(100_000));
    }
}
