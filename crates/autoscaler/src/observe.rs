//! [`Observations`]: what the daemon measured in one poll.

use std::collections::BTreeMap;

/// One pod's sample for a Resource metric, in milli-units (millicores for CPU, milli-bytes
/// for memory).
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct PodSample {
    /// Whether the pod is Ready. Unready pods are left out of the usage, as Kubernetes leaves
    /// out Pending pods and CPU pods that are not yet Ready; see the crate docs.
    pub ready: bool,
    /// The pod's usage; `None` when no sample is available (a "missing" pod).
    pub usage: Option<i64>,
    /// The sum of the pod's container requests for the resource (0 when a container has none).
    pub request: i64,
}

impl PodSample {
    /// A Ready pod with a sample.
    pub fn ready(usage: i64, request: i64) -> Self {
        PodSample {
            ready: true,
            usage: Some(usage),
            request,
        }
    }
}

/// The outcome of reading one metric in one poll.
#[derive(Debug, Clone, PartialEq)]
pub enum MetricObservation {
    /// A Resource metric: one sample per pod of the scale target.
    Resource(Vec<PodSample>),
    /// An External metric: the value the trigger's query returned (Prometheus' sample, the
    /// latest Graphite datapoint, ...). NaN, infinities and negative values read as 0 for
    /// scaling, as KEDA turns them into quantities.
    External(f64),
    /// The metric could not be read. For External metrics this counts towards the fallback.
    Failed(String),
}

/// Everything measured in one poll, keyed by [`MetricSpec::name`](crate::MetricSpec::name).
///
/// A metric of the spec that has no entry reads as [`MetricObservation::Failed`].
#[derive(Debug, Clone, Default, PartialEq)]
pub struct Observations {
    /// Pods of the scale target that exist (Kubernetes' `scale.status.replicas`).
    pub total_pods: u32,
    /// Of those, the Running and Ready ones.
    pub ready_pods: u32,
    /// Per metric.
    pub metrics: BTreeMap<String, MetricObservation>,
}

impl Observations {
    /// No pods, no metrics.
    pub fn new() -> Self {
        Self::default()
    }

    /// Sets the pod counts.
    pub fn pods(mut self, total: u32, ready: u32) -> Self {
        self.total_pods = total;
        self.ready_pods = ready;
        self
    }

    /// Adds an External metric value.
    pub fn external(mut self, name: &str, value: f64) -> Self {
        self.metrics
            .insert(name.to_string(), MetricObservation::External(value));
        self
    }

    /// Adds Resource samples.
    pub fn resource(mut self, name: &str, pods: Vec<PodSample>) -> Self {
        self.metrics
            .insert(name.to_string(), MetricObservation::Resource(pods));
        self
    }

    /// Records a failed read.
    pub fn failed(mut self, name: &str, error: &str) -> Self {
        self.metrics.insert(
            name.to_string(),
            MetricObservation::Failed(error.to_string()),
        );
        self
    }
}

/// A scaler's float as the milli-value of the quantity KEDA would hand the HPA: rounded to
/// three decimals; NaN, infinities and negative values become 0.
pub fn milli_from_f64(value: f64) -> i64 {
    if !value.is_finite() || value <= 0.0 {
        return 0;
    }
    // `as` saturates at i64::MAX for absurdly large values.
    (value * 1000.0).round() as i64
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn floats_become_milli_values_like_keda_quantities() {
        assert_eq!(milli_from_f64(1.5), 1500);
        assert_eq!(milli_from_f64(0.0004), 0);
        assert_eq!(milli_from_f64(0.0005), 1);
        assert_eq!(milli_from_f64(-3.0), 0);
        assert_eq!(milli_from_f64(f64::NAN), 0);
        assert_eq!(milli_from_f64(f64::INFINITY), 0);
    }
}
