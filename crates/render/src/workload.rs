//! A component's Deployment and Service.

use k8s_openapi::api::apps::v1::{
    Deployment, DeploymentSpec, DeploymentStrategy, RollingUpdateDeployment,
};
use k8s_openapi::api::core::v1::{PodTemplateSpec, Service, ServicePort, ServiceSpec};
use k8s_openapi::apimachinery::pkg::apis::meta::v1::{LabelSelector, ObjectMeta};
use k8s_openapi::apimachinery::pkg::util::intstr::IntOrString;
use tidal_api::annotations::AutoscalerClass;

use crate::component::Component;

/// The Deployment. `replicas` is left unset (the autoscaler owns it) except for class `none`,
/// where it is fixed at minReplicas.
pub fn deployment(c: &Component) -> Deployment {
    let strategy = c
        .deployment_strategy
        .clone()
        .unwrap_or_else(|| DeploymentStrategy {
            type_: Some("RollingUpdate".into()),
            rolling_update: Some(RollingUpdateDeployment {
                max_surge: Some(IntOrString::String("25%".into())),
                max_unavailable: Some(IntOrString::String("25%".into())),
            }),
        });
    Deployment {
        metadata: c.meta.clone(),
        spec: Some(DeploymentSpec {
            replicas: (c.class == AutoscalerClass::None).then_some(c.min_replicas),
            selector: LabelSelector {
                match_labels: Some(c.selector.clone()),
                match_expressions: None,
            },
            strategy: Some(strategy),
            revision_history_limit: Some(10),
            progress_deadline_seconds: Some(600),
            template: PodTemplateSpec {
                metadata: Some(ObjectMeta {
                    labels: c.meta.labels.clone(),
                    annotations: c.meta.annotations.clone(),
                    ..Default::default()
                }),
                spec: Some(c.pod.clone()),
            },
            ..Default::default()
        }),
        status: None,
    }
}

/// The Service: port 80 to the server's first port (8080 when it declares none), selecting the
/// component's pods.
pub fn service(c: &Component) -> Service {
    let name = c.meta.name.clone().unwrap_or_default();
    let declared = c
        .pod
        .containers
        .first()
        .and_then(|s| s.ports.clone())
        .unwrap_or_default();
    let ports = if declared.is_empty() {
        vec![ServicePort {
            name: Some(name),
            port: 80,
            target_port: Some(IntOrString::Int(8080)),
            protocol: Some("TCP".into()),
            ..Default::default()
        }]
    } else {
        declared
            .iter()
            .enumerate()
            .map(|(i, p)| {
                let port_name = p.name.clone();
                let h2c = port_name
                    .as_deref()
                    .is_some_and(|n| n.contains("grpc") || n.contains("h2c"));
                ServicePort {
                    name: port_name,
                    port: if i == 0 { 80 } else { p.container_port },
                    target_port: Some(IntOrString::Int(p.container_port)),
                    protocol: Some(p.protocol.clone().unwrap_or_else(|| "TCP".into())),
                    app_protocol: (i == 0 && h2c).then(|| "kubernetes.io/h2c".into()),
                    ..Default::default()
                }
            })
            .collect()
    };
    Service {
        metadata: c.meta.clone(),
        spec: Some(ServiceSpec {
            selector: Some(c.selector.clone()),
            ports: Some(ports),
            ..Default::default()
        }),
        status: None,
    }
}
