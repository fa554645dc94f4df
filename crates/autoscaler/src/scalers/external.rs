//! `external` triggers: a KEDA external gRPC scaler, as KServe renders for OpenTelemetry pod
//! metrics (`type: external` with `scalerAddress`, `metricQuery`, `targetValue`).
//!
//! Metadata: `scalerAddress` (required), `targetValue` (or `threshold`; one is required and
//! must be greater than 0), `activationTargetValue` (or `activationThreshold`; default 0), and
//! every other key is kept in [`ExternalScaler::metadata`] to be passed to the external scaler
//! untouched. KEDA takes the metric name from the external scaler's `GetMetricSpec`; without
//! that call Tidal names the metric `s{index}-external`.

use std::collections::BTreeMap;

use tidal_api::keda::ScaleTrigger;

use super::{Metadata, Scaler, ScalerError, external_target, positive_milli};
use crate::spec::{MetricSource, MetricTarget};

/// A parsed `external` trigger.
#[derive(Debug, Clone, PartialEq)]
pub struct ExternalScaler {
    /// Position of the trigger in `spec.triggers` (names the metric `s{index}-external`).
    pub index: usize,
    /// `scalerAddress` (`host:port` of the gRPC external scaler).
    pub scaler_address: String,
    /// `targetValue` (or `threshold`).
    pub target_value: f64,
    /// `activationTargetValue` (or `activationThreshold`).
    pub activation_threshold: f64,
    /// All metadata, for the external scaler's requests.
    pub metadata: BTreeMap<String, String>,
    /// The HPA target (AverageValue by default, or Value per the trigger's `metricType`).
    pub target: MetricTarget,
}

pub(super) fn parse(index: usize, trigger: &ScaleTrigger) -> Result<ExternalScaler, ScalerError> {
    let md = Metadata::new("external", &trigger.metadata);
    let scaler_address = md.required("scalerAddress")?;
    let (key, raw) = match (md.optional("targetValue"), md.optional("threshold")) {
        (Some(v), _) => ("targetValue", v),
        (None, Some(v)) => ("threshold", v),
        (None, None) => {
            return Err(ScalerError::Missing {
                scaler: "external",
                key: "targetValue",
            });
        }
    };
    let target_value = md.float(key, raw)?;
    let target_milli = positive_milli(&md, key, target_value)?;
    let activation_threshold = if md.optional("activationTargetValue").is_some() {
        md.float_or("activationTargetValue", 0.0)?
    } else {
        md.float_or("activationThreshold", 0.0)?
    };
    Ok(ExternalScaler {
        index,
        scaler_address: scaler_address.to_string(),
        target_value,
        activation_threshold,
        metadata: trigger.metadata.clone(),
        target: external_target("external", trigger, target_milli)?,
    })
}

impl Scaler for ExternalScaler {
    fn trigger_type(&self) -> &'static str {
        "external"
    }
    fn metric_name(&self) -> String {
        format!("s{}-external", self.index)
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
    use crate::scalers::{parse_trigger, trigger};

    #[test]
    fn kserve_otel_trigger_parses() {
        let s = parse_trigger(
            0,
            &trigger(
                "external",
                None,
                &[
                    ("scalerAddress", "keda-otel-scaler.keda.svc:4318"),
                    (
                        "metricQuery",
                        "sum(process_cpu_seconds_total{namespace=\"ns\"})",
                    ),
                    ("targetValue", "8"),
                ],
            ),
        )
        .unwrap();
        assert_eq!(s.metric_name(), "s0-external");
        assert_eq!(s.target(), MetricTarget::AverageValue(8000));
    }

    #[test]
    fn external_trigger_errors_name_the_key() {
        let cases: &[(&[(&str, &str)], &str)] = &[
            (&[("targetValue", "8")], "metadata.scalerAddress"),
            (&[("scalerAddress", "a:1")], "metadata.targetValue"),
            (
                &[("scalerAddress", "a:1"), ("targetValue", "x")],
                "metadata.targetValue",
            ),
            (
                &[("scalerAddress", "a:1"), ("threshold", "0")],
                "metadata.threshold",
            ),
            (
                &[
                    ("scalerAddress", "a:1"),
                    ("targetValue", "1"),
                    ("activationTargetValue", "?"),
                ],
                "metadata.activationTargetValue",
            ),
        ];
        for (metadata, field) in cases {
            let err = parse_trigger(0, &trigger("external", None, metadata)).unwrap_err();
            assert!(err.to_string().contains(field), "{err} should name {field}");
        }
    }
}
