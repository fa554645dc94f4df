//! `cpu` and `memory` triggers: resource metrics the HPA reads from the pods themselves.
//!
//! Metadata: `value` (required) and `containerName` (optional; the metric then covers that
//! container only, a `ContainerResource` metric). The trigger's `metricType` must be
//! `Utilization` (`value` is a whole percentage of the pods' requests) or `AverageValue`
//! (`value` is a quantity per pod, e.g. `500m` CPU or `512Mi`). KEDA 2.18 removed the old
//! `metadata.type`; like KEDA, a trigger without `metricType` is rejected.

use tidal_api::keda::ScaleTrigger;
use tidal_api::quantity::Quantity;

use super::{Metadata, Scaler, ScalerError};
use crate::spec::{MetricSource, MetricTarget, ResourceName};

/// A parsed `cpu` or `memory` trigger.
#[derive(Debug, Clone, PartialEq, Eq)]
pub struct CpuMemoryScaler {
    /// Which resource.
    pub resource: ResourceName,
    /// `metadata.containerName`: only this container's usage and request count.
    pub container_name: Option<String>,
    /// `Utilization` (percent of request) or `AverageValue` (milli-units per pod).
    pub target: MetricTarget,
}

pub(super) fn parse(trigger: &ScaleTrigger) -> Result<CpuMemoryScaler, ScalerError> {
    let (scaler, resource) = match trigger.type_.as_str() {
        "memory" => ("memory", ResourceName::Memory),
        _ => ("cpu", ResourceName::Cpu),
    };
    let md = Metadata::new(scaler, &trigger.metadata);
    let value = md.required("value")?;
    let metric_type = trigger.metric_type.as_deref().map(str::trim).unwrap_or("");
    let target = match metric_type {
        "Utilization" => match value.parse::<i32>() {
            Ok(pct) if pct > 0 => MetricTarget::Utilization(pct as u32),
            _ => {
                return Err(md.invalid(
                    "value",
                    value,
                    "must be a whole percentage greater than 0 for metricType Utilization",
                ));
            }
        },
        "AverageValue" => {
            let quantity: Quantity = value
                .parse()
                .map_err(|_| md.invalid("value", value, "must be a quantity (e.g. 500m, 1Gi)"))?;
            match i64::try_from(quantity.millis()) {
                Ok(milli) if milli > 0 => MetricTarget::AverageValue(milli),
                _ => {
                    return Err(md.invalid("value", value, "must be a quantity greater than 0"));
                }
            }
        }
        other => {
            return Err(ScalerError::Invalid {
                scaler,
                field: "metricType".to_string(),
                value: other.to_string(),
                message: format!(
                    "{scaler} triggers need metricType Utilization or AverageValue \
                     (metadata.type was removed in KEDA 2.18)"
                ),
            });
        }
    };
    Ok(CpuMemoryScaler {
        resource,
        container_name: md.optional("containerName").map(str::to_string),
        target,
    })
}

impl Scaler for CpuMemoryScaler {
    fn trigger_type(&self) -> &'static str {
        self.resource.as_str()
    }

    /// `cpu` / `memory`, or `cpu:<container>` for a container metric, so two triggers on
    /// different containers do not collide.
    fn metric_name(&self) -> String {
        match &self.container_name {
            Some(c) => format!("{}:{c}", self.resource.as_str()),
            None => self.resource.as_str().to_string(),
        }
    }

    fn source(&self) -> MetricSource {
        MetricSource::Resource {
            resource: self.resource,
            container: self.container_name.clone(),
        }
    }

    fn target(&self) -> MetricTarget {
        self.target
    }

    fn activation_threshold(&self) -> f64 {
        0.0
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use crate::scalers::{AnyScaler, parse_trigger, trigger};

    /// (case, type, metricType, metadata, expected target or the field the error names)
    #[test]
    fn cpu_memory_metadata_table() {
        type Case<'a> = (
            &'a str,
            &'a str,
            Option<&'a str>,
            &'a [(&'a str, &'a str)],
            Result<MetricTarget, &'a str>,
        );
        let cases: &[Case] = &[
            (
                "cpu utilization",
                "cpu",
                Some("Utilization"),
                &[("value", "50")],
                Ok(MetricTarget::Utilization(50)),
            ),
            (
                "memory average value in Mi",
                "memory",
                Some("AverageValue"),
                &[("value", "512Mi")],
                Ok(MetricTarget::AverageValue(512 * 1024 * 1024 * 1000)),
            ),
            (
                "cpu average value in millicores",
                "cpu",
                Some("AverageValue"),
                &[("value", "500m")],
                Ok(MetricTarget::AverageValue(500)),
            ),
            (
                "value is required",
                "cpu",
                Some("Utilization"),
                &[],
                Err("metadata.value"),
            ),
            (
                "empty value counts as missing",
                "cpu",
                Some("Utilization"),
                &[("value", " ")],
                Err("metadata.value"),
            ),
            (
                "utilization must be an integer",
                "cpu",
                Some("Utilization"),
                &[("value", "50.5")],
                Err("metadata.value"),
            ),
            (
                "utilization 0 is invalid (KServe's memory default)",
                "memory",
                Some("Utilization"),
                &[("value", "0")],
                Err("metadata.value"),
            ),
            (
                "bad quantity",
                "memory",
                Some("AverageValue"),
                &[("value", "lots")],
                Err("metadata.value"),
            ),
            (
                "metricType is required",
                "cpu",
                None,
                &[("value", "50")],
                Err("metricType"),
            ),
            (
                "Value is not allowed",
                "cpu",
                Some("Value"),
                &[("value", "50")],
                Err("metricType"),
            ),
            (
                "legacy metadata.type is not enough",
                "cpu",
                None,
                &[("type", "Utilization"), ("value", "50")],
                Err("metricType"),
            ),
        ];
        for (case, ty, metric_type, metadata, expected) in cases {
            let got = parse_trigger(0, &trigger(ty, *metric_type, metadata));
            match (got, expected) {
                (Ok(AnyScaler::CpuMemory(s)), Ok(target)) => {
                    assert_eq!(s.target, *target, "{case}")
                }
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
    fn container_triggers_get_their_own_metric_name() {
        let s = parse_trigger(
            3,
            &trigger(
                "cpu",
                Some("Utilization"),
                &[("value", "60"), ("containerName", "kserve-container")],
            ),
        )
        .unwrap();
        assert_eq!(s.metric_name(), "cpu:kserve-container");
        assert!(s.is_resource());
        assert_eq!(s.trigger_type(), "cpu");
        let plain = parse_trigger(
            0,
            &trigger("memory", Some("Utilization"), &[("value", "60")]),
        )
        .unwrap();
        assert_eq!(plain.metric_name(), "memory");
    }
}
